"""Fine-tuned classifiers (models/heads.py) as Hugging Face sequence classifiers, both ways.

    save_hf_classifier("folder", model, tokenizer)   what `numpretrain export-hf` writes for a finetune run
    load_hf_classifier("folder")                     BertForSequenceClassification, GPT2ForSequenceClassification
                                                     or OpenAIGPTForSequenceClassification -> ours

    ours                                       transformers
    BertClassifier, --pooling cls (default)    BertForSequenceClassification: bert.* (with the pooler),
                                               dropout (classifier_dropout), classifier.{weight,bias} (n_labels, C)
    GPTClassifier, pre-LN                      GPT2ForSequenceClassification: transformer.*, score.weight (n_labels, C)
    GPTClassifier, post-LN (--post-ln)         OpenAIGPTForSequenceClassification: the same names

The body goes by the tables of hf_names.py, as a pretrained model does; the classifier layer
is an nn.Linear there, (out, in), so its weight is transposed.

Where the two agree exactly, and where they cannot:
* A BERT reads the pooled [CLS] output in both. --pooling mean (the real tokens' mean) has no
  transformers head: refused.
* A GPT reads the state of the last real token. transformers takes "the rightmost token that
  is not pad_token_id"; we write pad_token_id = 0, our [PAD], and pad on the right, so for every
  text without a literal "[PAD]" of its own both read the same position.
* transformers' GPT classifiers have no bias in `score` (nor has the GPT paper's W_y): a GPT
  classifier with a bias is refused (fine-tune it with --no-classifier-bias).
* What changes training but not the logits is exported with a note, not refused: a GPT's
  auxiliary LM loss (--lm-weight) and its dropout before the classifier (--dropout) are not in
  GPT2ForSequenceClassification, whose logits are ours but whose loss is the cross-entropy alone.
* A separate (untied) LM head is used by the auxiliary loss only, and is left out.

On the way in the logits are equal (float64: 1e-12, tests/test_hf_classifier.py); a GPT classifier
comes in with lm_weight 0, no dropout before its head and no bias, as transformers' has none.
"""

import sys
from pathlib import Path

import numpy as np

from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.models.heads import BertClassifier, ClassifierConfig, GPTClassifier
from numpretrain.storage.formats import save_safetensors
from numpretrain.storage.hf import (
    CONFIG_FILE,
    HF_CONFIG_FIELDS,
    SAFETENSORS_METADATA,
    WEIGHTS_FILE,
    _canonical_names,
    check_fits_weights,
    expand,
    hf_shapes,
    hf_state_dict,
    hf_weight_files,
    read_hf_weights,
    to_ours,
)
from numpretrain.storage.hf_names import (
    BERT_BUFFERS,
    BERT_TABLE,
    COPY,
    GPT2_BUFFERS,
    GPT2_TABLE,
    OPENAI_GPT_BUFFERS,
    OPENAI_GPT_TABLE,
    TRANSPOSE,
    bert_config_from_hf,
    gpt2_config_from_hf,
    openai_gpt_config_from_hf,
)
from numpretrain.storage.hf_tokenizers import write_hf_tokenizer
from numpretrain.storage.json_files import load_json, save_json
from numpretrain.tokenizers import PAD_ID

# architecture -> (its body's prefix, its head's weight and bias names (None: no bias), body table, buffers, config reader)
SEQUENCE_CLASSIFIERS = {
    "BertForSequenceClassification": ("bert.", "classifier.weight", "classifier.bias", BERT_TABLE, BERT_BUFFERS,
                                      bert_config_from_hf),
    "GPT2ForSequenceClassification": ("transformer.", "score.weight", None, GPT2_TABLE, GPT2_BUFFERS,
                                      gpt2_config_from_hf),
    "OpenAIGPTForSequenceClassification": ("transformer.", "score.weight", None, OPENAI_GPT_TABLE,
                                           OPENAI_GPT_BUFFERS, openai_gpt_config_from_hf),
}


def _stderr(message):
    print(message, file=sys.stderr)


def architecture_of(model):
    """The transformers class that computes what our classifier computes; a ConfigError naming the
    option where none does."""
    config = model.config
    if isinstance(model, BertClassifier):
        if config.pooling != "cls":
            reads = {"mean": "the mean of its tokens' states",
                     "cloze": "its MLM head's scores of the verbalizers at [MASK]s"}[config.pooling]
            raise ConfigError(f"this BERT classifier reads {reads} (--pooling {config.pooling}); "
                              f"BertForSequenceClassification reads the pooled [CLS] output, so no transformers "
                              f"class computes its logits (fine-tune with --pooling cls to export)")
        return "BertForSequenceClassification"
    if not isinstance(model, GPTClassifier):
        raise TypeError(f"not a classifier of ours: {type(model).__name__}")
    if config.classifier_bias:
        raise ConfigError("this GPT classifier's layer has a bias; transformers' GPT2ForSequenceClassification and "
                          "OpenAIGPTForSequenceClassification have none (score = Linear(C, n_labels, bias=False)), "
                          "so no transformers class computes its logits (fine-tune with --no-classifier-bias to export)")
    return "GPT2ForSequenceClassification" if model.body.config.norm_first else "OpenAIGPTForSequenceClassification"


def training_notes(model):
    """What the exported model computes alike but would train otherwise, one line each."""
    config, notes = model.config, []
    if isinstance(model, GPTClassifier):
        if config.lm_weight:
            notes.append(f"this classifier was trained with an auxiliary LM loss (--lm-weight {config.lm_weight}); "
                         f"transformers' loss is the cross-entropy alone (the logits are the same)")
        if config.dropout:
            notes.append(f"its dropout before the classifier layer (--dropout {config.dropout}) has no place in "
                         f"transformers' GPT classifiers; it acts in training only (the logits are the same)")
        if not model.body.config.tie_weights:
            notes.append("its separate LM head (lm_head.weight) served the auxiliary loss only and is left out")
    return notes


def hf_classifier_state_dict(model):
    """(tensors under transformers' names, config.json) of a classifier that architecture_of accepts."""
    architecture = architecture_of(model)
    body, hf_config = hf_state_dict(model.body)
    prefix, weight, bias, *_ = SEQUENCE_CLASSIFIERS[architecture]
    if isinstance(model, BertClassifier):
        body = {prefix + name: array for name, array in body.items()}     # a BertModel is saved without "bert."
    body.pop("lm_head.weight", None)                                      # not in a sequence classifier
    head = model.classifier
    tensors = {**body, weight: np.ascontiguousarray(head.weight.data.T)}  # (C, n_labels) -> (n_labels, C)
    if bias is not None:
        tensors[bias] = head.bias.data if head.bias is not None else np.zeros(head.out_features, head.weight.data.dtype)
    config = model.config
    labels = config.labels or [f"LABEL_{i}" for i in range(config.n_labels)]
    hf_config.update({"architectures": [architecture], "id2label": {str(i): name for i, name in enumerate(labels)},
                      "label2id": {name: i for i, name in enumerate(labels)},
                      "problem_type": "single_label_classification"})
    if isinstance(model, BertClassifier):
        hf_config["classifier_dropout"] = config.dropout
    else:
        hf_config["pad_token_id"] = PAD_ID      # pooled at the rightmost token that is not [PAD]
    return tensors, hf_config


def save_hf_classifier(directory, model, tokenizer=None, log=_stderr):
    """Write a Hugging Face sequence-classifier folder: config.json, model.safetensors and, given our
    char or BPE tokenizer, the tokenizer files (hf_tokenizers.py). A ConfigError, before anything is
    written, when no transformers class computes this classifier's logits."""
    tensors, hf_config = hf_classifier_state_dict(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_json(directory / CONFIG_FILE, hf_config)
    save_safetensors(directory / WEIGHTS_FILE, tensors, metadata=SAFETENSORS_METADATA)
    if tokenizer is not None:
        write_hf_tokenizer(directory, tokenizer, hf_config)
    for note in training_notes(model):
        log(f"note: {note}")
    return directory


def _labels(hf_config, source):
    """Label names in id order from id2label (transformers' LABEL_0 ... when it has none)."""
    id2label = hf_config.get("id2label") or {}
    n = len(id2label) if isinstance(id2label, dict) and id2label else hf_config.get("num_labels", 2)
    if not isinstance(id2label, dict) or type(n) is not int:
        raise CheckpointError(f"{source}: id2label must be an object and num_labels a number")
    names = [id2label.get(str(i)) for i in range(n)] if id2label else [f"LABEL_{i}" for i in range(n)]
    if None in names:
        raise CheckpointError(f"{source}: id2label must name ids 0..{n - 1}, has {sorted(id2label)[:12]}")
    return n, [str(name) for name in names]


def load_hf_classifier(directory, dtype=None, log=_stderr):
    """One of SEQUENCE_CLASSIFIERS' folders -> our BertClassifier or GPTClassifier, in eval mode, with
    the same logits. dtype as from_pretrained's: None keeps float64 and reads anything else as float32."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    hf_config = load_json(config_path, fields=HF_CONFIG_FIELDS)
    architecture = next((a for a in hf_config.get("architectures") or [] if a in SEQUENCE_CLASSIFIERS), None)
    if architecture is None:
        raise CheckpointError(f"{config_path}: architectures {hf_config.get('architectures')} names none of "
                              f"{', '.join(SEQUENCE_CLASSIFIERS)}")
    prefix, weight, bias, table, buffers, read_config = SEQUENCE_CLASSIFIERS[architecture]
    body = read_config(hf_config, config_path)
    n_labels, labels = _labels(hf_config, config_path)
    bert = architecture.startswith("Bert")
    if not bert:
        pad = hf_config.get("pad_token_id")
        if pad not in (None, PAD_ID):
            raise CheckpointError(f"{config_path}: pad_token_id {pad}: transformers pools at the last token that is "
                                  f"not {pad}, ours at the last real token before [PAD] = {PAD_ID} padding")
        body.tie_weights = True                 # no LM head to read: the classifier does not use one
    if hf_config.get("problem_type") not in (None, "single_label_classification"):
        raise CheckpointError(f"{config_path}: problem_type {hf_config['problem_type']!r}; numpretrain's classifiers "
                              f"pick one label of several (softmax cross-entropy, single_label_classification)")
    dropout = hf_config.get("classifier_dropout") if bert else 0.0
    try:
        config = ClassifierConfig(body=body.to_dict(), n_labels=n_labels, labels=labels,
                                  pooling="cls" if bert else "last", lm_weight=0.0,
                                  dropout=body.dropout if dropout is None else dropout, classifier_bias=bert)
    except ConfigError as error:
        raise CheckpointError(f"{config_path}: {error}") from None
    check_fits_weights(body, config_path, hf_weight_files(directory))   # before allocating what the config claims
    model = (BertClassifier if bert else GPTClassifier)(config)

    tensors = _canonical_names(read_hf_weights(directory), prefix, (weight.split(".")[0] + ".",))
    if dtype is None:
        floats = [a.dtype for a in tensors.values() if a.dtype.kind == "f"]
        dtype = np.float64 if floats and all(d == np.float64 for d in floats) else np.float32
    model.to(dtype)
    params = dict(model.named_parameters())
    ours_prefix = "" if bert else "gpt."        # BERT_TABLE's names already start with "bert."
    rows = [(ours_prefix + ours, hf, how) for ours, hf, how, _ in expand(table, body.n_layer, ("body", "pooler"))]
    rows.append(("classifier.weight", (weight,), TRANSPOSE))
    if bias is not None:
        rows.append(("classifier.bias", (bias,), COPY))
    needed = {h for _, hf, _ in rows for h in hf}
    missing = sorted(needed - tensors.keys())
    unknown = sorted(n for n in tensors.keys() - needed if not buffers.fullmatch(n) and n != "lm_head.weight")
    if missing or unknown:
        raise CheckpointError(f"{directory / WEIGHTS_FILE} does not fit {architecture} with {CONFIG_FILE}: "
                              + "; ".join(f"{what} ({len(names)}): {', '.join(names[:12])}"
                                          for what, names in (("missing", missing), ("unknown", unknown)) if names))
    state = {}
    for ours, hf, how in rows:
        for name, shape in zip(hf, hf_shapes(how, params[ours].shape)):
            if tensors[name].shape != shape:
                raise CheckpointError(f"{directory / WEIGHTS_FILE}: {name} has shape {tensors[name].shape}, but "
                                      f"{CONFIG_FILE} asks for {shape}")
        state[ours] = to_ours(how, [tensors[name] for name in hf]).astype(dtype)
    model.load_state_dict(state)
    log(f"{directory}: {architecture} with {n_labels} labels loaded as {type(model).__name__}")
    return model.eval()
