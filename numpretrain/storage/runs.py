"""Model directories: the weights, the config and the tokenizer, saved and loaded together.

    DIR/config.json        {"model": {"model_type": "gpt", ...}, "train": {...}, "options": {...},
                            "numpretrain_version": "0.1.0"}
    DIR/model.safetensors  the weights (our names; see numpretrain/storage/hf.py for Hugging Face's)
    DIR/tokenizer.json     the tokenizer

config.json's "model" is what builds the model. A training run also records its TrainConfig
("train") and every option of the command that made it ("options", see app/settings.py), which
`--resume` takes back; folders written before "options" existed lack it, and a model saved
outside a run has only "model". `load_run_record` reads the sections, None for a missing one.

Every file is written atomically and read without pickle; a missing, truncated or
foreign file is a CheckpointError naming the file and the problem. A config is
checked against the size of the weights file before the model is built, so a
config claiming absurd sizes fails at once instead of allocating them.
"""

import os

from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.storage.formats import load_safetensors, load_safetensors_metadata, save_safetensors
from numpretrain.storage.json_files import load_json, save_json, type_name
from numpretrain.tokenizers import load_tokenizer

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
RUN_FILES = (CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE)      # what a folder needs to be loaded as a model
# config.json's sections (json_files.check_fields: "key?" may be absent); the model section's own
# fields are checked by its config class, the recorded settings hold plain values only
CONFIG_FIELDS = {"model": dict, "train?": dict, "options?": dict, "numpretrain_version?": str}
SETTING_TYPES = (str, int, float, bool, type(None))


def model_classes():
    """model_type (in config.json) -> (config class, model class)."""
    from numpretrain.models.bert import BertConfig, BertForPreTraining
    from numpretrain.models.gpt import GPT, GPTConfig
    from numpretrain.models.heads import BertClassifier, ClassifierConfig, GPTClassifier
    return {"gpt": (GPTConfig, GPT), "bert": (BertConfig, BertForPreTraining),
            "gpt_classifier": (ClassifierConfig, GPTClassifier),
            "bert_classifier": (ClassifierConfig, BertClassifier)}


def save_config(run_dir, model_config, train_config=None, options=None, version=None):
    """Write config.json: the model config, and for a training run its TrainConfig (a dict),
    its options ({option name: value}) and the numpretrain version that made it."""
    os.makedirs(run_dir, exist_ok=True)
    content = {"model": model_config.to_dict()}
    for section, value in (("train", train_config), ("options", options), ("numpretrain_version", version)):
        if value is not None:
            content[section] = value
    save_json(os.path.join(run_dir, CONFIG_FILE), content)


def load_run_record(run_dir):
    """{"train": dict, "options": dict, "numpretrain_version": str} from a run's config.json;
    a section the file does not have is None (not recorded)."""
    path = os.path.join(run_dir, CONFIG_FILE)
    content = load_json(path, fields=CONFIG_FIELDS)
    for section in ("train", "options"):
        for name, value in (content.get(section) or {}).items():
            if not isinstance(value, SETTING_TYPES):
                raise CheckpointError(f"{path}: the setting {section}.{name} is a JSON {type_name(value)}, "
                                      f"not a string, number, boolean or null")
    return {section: content.get(section) for section in ("train", "options", "numpretrain_version")}


def folder_problem(path, needs=RUN_FILES):
    """None when `path` is a folder holding every file in `needs`; else what it is, as a clause:
    "runs/x: no such folder", "runs/x: an empty folder", "runs/x/config.json: no such file
    (runs/x holds notes.txt)", "runs/x: a file, not a folder"."""
    if not os.path.exists(path):
        return f"{path}: no such folder"
    if not os.path.isdir(path):
        return f"{path}: a file, not a folder"
    names = sorted(name for name in os.listdir(path) if not name.startswith("."))
    if not names:
        return f"{path}: an empty folder"
    missing = [name for name in needs if name not in names]
    if not missing:
        return None
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{os.path.join(path, missing[0])}: no such file ({path} holds {shown})"


def check_run_folder(path, needs=RUN_FILES):
    """A CheckpointError saying what `path` holds, unless it is a folder with the files in `needs`."""
    problem = folder_problem(path, needs)
    if problem:
        raise CheckpointError(f"{problem}; a run folder, as pretrain-gpt, pretrain-bert and finetune --out "
                              f"write it, holds {', '.join(RUN_FILES[:-1])} and {RUN_FILES[-1]}")


def save_pretrained(run_dir, model, tokenizer, train_config=None):
    """Write config.json, tokenizer.json and model.safetensors into run_dir."""
    save_config(run_dir, model.config, train_config)
    tokenizer.save(os.path.join(run_dir, TOKENIZER_FILE))
    save_safetensors(os.path.join(run_dir, MODEL_FILE), model.state_dict())


def load_config(run_dir):
    """The model config of a run directory, as its config class."""
    path = os.path.join(run_dir, CONFIG_FILE)
    check_run_folder(run_dir, needs=(CONFIG_FILE,))
    content = load_json(path)
    model = content.get("model")
    if not isinstance(model, dict) or "model_type" not in model:
        raise CheckpointError(f"{path}: no 'model' section with a 'model_type'")
    classes = model_classes()
    if not isinstance(model["model_type"], str) or model["model_type"] not in classes:
        raise CheckpointError(f"{path}: unknown model_type {model['model_type']!r} (known: {', '.join(classes)})")
    config_class, _ = classes[model["model_type"]]
    try:
        config = config_class.from_dict(model)
        if model["model_type"].endswith("_classifier"):
            _check_classifier_config(config)
    except (ConfigError, TypeError, ValueError, AttributeError, OverflowError) as error:
        raise CheckpointError(f"{path}: {error}") from None
    return config


def _check_classifier_config(config):
    """What ClassifierConfig leaves to later: a body that parses, label names that fit n_labels."""
    config.body_config                                  # parses the body; raises on a bad one
    if not (isinstance(config.n_labels, int) and isinstance(config.labels, list)
            and all(isinstance(label, str) for label in config.labels)
            and len(config.labels) in (0, config.n_labels)):
        raise ConfigError(f"n_labels {config.n_labels!r} and labels {str(config.labels)[:60]} do not fit together")


def parameter_lower_bound(config):
    """At least this many parameters are in the model a config describes (its big matrices only).

    Exact Python integers, so absurd sizes cannot overflow; a model's real count is never smaller.
    """
    d = config.to_dict()
    if d["model_type"].endswith("_classifier"):
        body = config.body_config
        return parameter_lower_bound(body) + config.n_labels * body.n_embd     # + the (C, n_labels) classifier
    C, L = d["n_embd"], d["n_layer"]
    if d["model_type"] == "gpt":
        # wte (V, C), wpe (T, C); per block 4C² of attention and 8C² of MLP
        return (d["vocab_size"] + d["block_size"]) * C + L * 12 * C * C
    # word, position and token-type embeddings; per layer 4C² of attention and 2 C x intermediate of MLP
    return ((d["vocab_size"] + d["max_position"] + d["type_vocab_size"]) * C
            + L * (4 * C * C + 2 * C * d["intermediate_size"]))


def check_fits_weights_file(config, config_path, weights_path):
    """Refuse, before allocating anything, a config describing more parameters than the weights
    file has bytes (every safetensors dtype takes at least one byte per value)."""
    try:
        size = os.path.getsize(weights_path)
    except OSError:
        raise CheckpointError(f"{weights_path}: no such file") from None
    needed = parameter_lower_bound(config)
    if needed > size:
        raise CheckpointError(f"{config_path}: describes a model of at least {needed:,} parameters, but "
                              f"{weights_path} holds only {size:,} bytes (absurd sizes in the config, "
                              f"or weights of another model)")


def load_pretrained(run_dir, expect=None):
    """(model, tokenizer, config) from a directory written by save_pretrained or a training run.

    expect: a model_type or tuple of them; another type is a CheckpointError saying what it is.
    """
    check_run_folder(run_dir)
    config = load_config(run_dir)
    model_type = config.to_dict()["model_type"]
    expected = (expect,) if isinstance(expect, str) else expect
    if expected is not None and model_type not in expected:
        raise CheckpointError(f"{run_dir}: this is a {model_type} checkpoint, but a "
                              f"{' or '.join(expected)} checkpoint is needed here")
    _, model_class = model_classes()[model_type]
    weights_path = os.path.join(run_dir, MODEL_FILE)
    load_safetensors_metadata(weights_path)      # a broken header says so first, before the sizes are compared
    check_fits_weights_file(config, os.path.join(run_dir, CONFIG_FILE), weights_path)
    try:
        model = model_class(config)
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(f"{os.path.join(run_dir, CONFIG_FILE)}: cannot build the model: {error}") from None
    weights = load_safetensors(weights_path)      # a broken file names itself
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as error:       # StateDictError lists every missing key and bad shape
        raise CheckpointError(f"{weights_path}: does not fit the model in config.json: {error}") from None
    tokenizer = load_tokenizer(os.path.join(run_dir, TOKENIZER_FILE))
    if tokenizer.vocab_size > getattr(config, "vocab_size", tokenizer.vocab_size):
        raise CheckpointError(f"{run_dir}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                              f"only {config.vocab_size}")
    model.eval()
    return model, tokenizer, config
