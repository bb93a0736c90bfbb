"""Model directories: the weights, the config and the tokenizer, saved and loaded together.

    DIR/config.json        {"model": {"model_type": "gpt", ...}, "train": {...}}
    DIR/model.safetensors  the weights (our names; see numpretrain/hf.py for Hugging Face's)
    DIR/tokenizer.json     the tokenizer

Every file is written atomically and read without pickle; a missing, truncated or
foreign file is a CheckpointError naming the file and the problem.
"""

import os

from .checkpoint import load_json, load_safetensors, save_json, save_safetensors
from .errors import CheckpointError, ConfigError
from .tokenizers import load_tokenizer

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


def model_classes():
    """model_type (in config.json) -> (config class, model class)."""
    from .models.bert import BertConfig, BertForPreTraining
    from .models.gpt import GPT, GPTConfig
    from .models.heads import BertClassifier, ClassifierConfig, GPTClassifier
    return {"gpt": (GPTConfig, GPT), "bert": (BertConfig, BertForPreTraining),
            "gpt_classifier": (ClassifierConfig, GPTClassifier),
            "bert_classifier": (ClassifierConfig, BertClassifier)}


def save_config(run_dir, model_config, train_config=None):
    os.makedirs(run_dir, exist_ok=True)
    content = {"model": model_config.to_dict()}
    if train_config is not None:
        content["train"] = train_config
    save_json(os.path.join(run_dir, CONFIG_FILE), content)


def save_pretrained(run_dir, model, tokenizer, train_config=None):
    """Write config.json, tokenizer.json and model.safetensors into run_dir."""
    save_config(run_dir, model.config, train_config)
    tokenizer.save(os.path.join(run_dir, TOKENIZER_FILE))
    save_safetensors(os.path.join(run_dir, MODEL_FILE), model.state_dict())


def load_config(run_dir):
    """The model config of a run directory, as its config class."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"{run_dir}: no such checkpoint directory")
    content = load_json(path)
    model = content.get("model")
    if not isinstance(model, dict) or "model_type" not in model:
        raise CheckpointError(f"{path}: no 'model' section with a 'model_type'")
    classes = model_classes()
    if model["model_type"] not in classes:
        raise CheckpointError(f"{path}: unknown model_type {model['model_type']!r} (known: {', '.join(classes)})")
    config_class, _ = classes[model["model_type"]]
    try:
        return config_class.from_dict(model)
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from None


def load_pretrained(run_dir, expect=None):
    """(model, tokenizer, config) from a directory written by save_pretrained or a training run.

    expect: a model_type or tuple of them; another type is a CheckpointError saying what it is.
    """
    config = load_config(run_dir)
    model_type = config.to_dict()["model_type"]
    expected = (expect,) if isinstance(expect, str) else expect
    if expected is not None and model_type not in expected:
        raise CheckpointError(f"{run_dir}: this is a {model_type} checkpoint, but a "
                              f"{' or '.join(expected)} checkpoint is needed here")
    _, model_class = model_classes()[model_type]
    model = model_class(config)
    weights_path = os.path.join(run_dir, MODEL_FILE)
    try:
        model.load_state_dict(load_safetensors(weights_path))
    except CheckpointError:
        raise
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: does not fit the model in config.json: {error}") from None
    tokenizer = load_tokenizer(os.path.join(run_dir, TOKENIZER_FILE))
    if tokenizer.vocab_size > getattr(config, "vocab_size", tokenizer.vocab_size):
        raise CheckpointError(f"{run_dir}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                              f"only {config.vocab_size}")
    model.eval()
    return model, tokenizer, config
