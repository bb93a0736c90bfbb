"""Hugging Face checkpoints in and out: BERT (BertModel, BertForPreTraining), GPT-2 (GPT2LMHeadModel)
and OpenAI GPT (OpenAIGPTLMHeadModel, GPT-1: our post-LN GPT).

    model = from_pretrained("folder")     # config.json + model.safetensors, as transformers saves them
    save_hf("folder", model)              # the same layout, which transformers loads back

Our models use the checkpoints' names wherever they can, so a checkpoint maps by a table of
names, one per model family (hf_names.py, with the config.json fields each way).

Some names are a second name of a tensor in the table (tied weights, which transformers
writes under both names): BERT_ALIASES, GPT2_ALIASES, OPENAI_GPT_ALIASES. On the way out
they are written too; on the way in the tensor is read under its first name and tied.
Non-persistent buffers that old checkpoints carry (BERT's position_ids, GPT-2's and OpenAI
GPT's attn.bias masks) are skipped. Any other name the table does not know, and any name it
needs and the checkpoint lacks, is a CheckpointError that lists them all by name.

Groups. "body" must be complete. A checkpoint of a BertModel (as all-MiniLM-L6-v2) has no
pretraining heads: loaded as BertModel nothing is missing; loaded as BertForPreTraining
the heads ("mlm", "nsp") are freshly initialised, and a warning line says so. Likewise a
missing pooler. A `Layout` says which groups, prefixes and aliases one model class has;
from_pretrained and save_hf both read it. docs/weights.md explains the tables for a reader.

Fine-tuned classifiers (BertForSequenceClassification ...) go through hf_classifier.py, and our char and
BPE tokenizers are written beside the model in the tokenizers format by hf_tokenizers.py.
"""

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.models.bert import BertForPreTraining, BertModel
from numpretrain.models.gpt import GPT
from numpretrain.models.heads import SequenceClassifier
from numpretrain.storage.formats import load_safetensors, save_safetensors
from numpretrain.storage.hf_names import (
    BERT_ALIASES,
    BERT_BUFFERS,
    BERT_TABLE,
    GPT2_ALIASES,
    GPT2_BUFFERS,
    GPT2_TABLE,
    GROUP_NAMES,
    OPENAI_GPT_ALIASES,
    OPENAI_GPT_BUFFERS,
    OPENAI_GPT_TABLE,
    QKV,
    TRANSPOSE,
    bert_config_from_hf,
    bert_config_to_hf,
    gpt2_config_from_hf,
    gpt2_config_to_hf,
    openai_gpt_config_from_hf,
    openai_gpt_config_to_hf,
)
from numpretrain.storage.hf_tokenizers import write_hf_tokenizer
from numpretrain.storage.json_files import NUMBER, check_type, file_in_folder, load_json, save_json
from numpretrain.storage.runs import parameter_lower_bound

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"   # a checkpoint sharded into several files
SAFETENSORS_METADATA = {"format": "pt"}               # transformers refuses safetensors without it
# The fields of a Hugging Face config.json that we read, and their JSON types ("key?": may be absent;
# json_files.check_fields); the values are checked by our config classes.
HF_CONFIG_FIELDS = {
    "model_type": str, "architectures?": [str], "tie_word_embeddings?": bool,
    "pad_token_id?": (int, type(None)), "n_inner?": (int, type(None)),
    **{f"{name}?": int for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "max_position_embeddings", "type_vocab_size",
                                    "n_positions", "n_embd", "n_layer", "n_head")},
    **{f"{name}?": NUMBER for name in ("hidden_dropout_prob", "resid_pdrop", "layer_norm_eps", "layer_norm_epsilon")},
}

def _stderr(message):
    print(message, file=sys.stderr)


# --------------------------------------------------------------------------
# How one model class sits in a checkpoint
# --------------------------------------------------------------------------

BERT_GROUPS = ("body", "pooler", "mlm", "nsp")


@dataclass(frozen=True)
class Layout:
    """Everything the loader and the exporter need to know about one model class's checkpoint."""
    table: tuple             # rows (ours, hf, how, group), ours in the family's fullest naming
    groups: tuple            # the table's groups this model class has
    all_groups: tuple        # every group a checkpoint of the family may carry
    aliases: dict            # second names of tied tensors -> (the name in the table, group)
    buffers: re.Pattern      # names to skip: non-persistent buffers that old checkpoints carry
    prefix: str              # Hugging Face's prefix of the body ("bert.", "transformer.")
    head_prefixes: tuple     # Hugging Face names that never carry that prefix ("cls.", "lm_head.")
    strip: str = ""          # what our model class's names lack ("bert." for a BertModel)

    def rows(self, n_layer, groups=None):
        """Expanded rows, with our names as this model class spells them."""
        rows = expand(self.table, n_layer, self.groups if groups is None else groups)
        return [(ours.removeprefix(self.strip), hf, how, group) for ours, hf, how, group in rows]


def layout_of(model_class, config):
    if model_class is BertForPreTraining or model_class is BertModel:
        pretraining = model_class is BertForPreTraining
        return Layout(BERT_TABLE, BERT_GROUPS if pretraining else ("body", "pooler"), BERT_GROUPS, BERT_ALIASES,
                      BERT_BUFFERS, "bert.", ("cls.",), strip="" if pretraining else "bert.")
    if model_class is GPT:   # pre-LN is GPT-2, post-LN is OpenAI GPT (GPT-1)
        table, aliases, buffers = ((GPT2_TABLE, GPT2_ALIASES, GPT2_BUFFERS) if config.norm_first else
                                   (OPENAI_GPT_TABLE, OPENAI_GPT_ALIASES, OPENAI_GPT_BUFFERS))
        groups = ("body",) if config.tie_weights else ("body", "untied")
        return Layout(table, groups, groups, aliases if config.tie_weights else {}, buffers,
                      "transformer.", ("lm_head.",))
    raise TypeError(f"Hugging Face layouts exist for GPT, BertModel and BertForPreTraining, "
                    f"not {getattr(model_class, '__name__', model_class)}")


# --------------------------------------------------------------------------
# The table, expanded for one model
# --------------------------------------------------------------------------

def expand(table, n_layer, groups):
    """The table's rows for `groups`, with {i} replaced by 0 .. n_layer-1: [(ours, hf tuple, how, group)]."""
    rows = []
    for ours, hf, how, group in table:
        if group not in groups:
            continue
        hf = hf if isinstance(hf, tuple) else (hf,)
        layers = range(n_layer) if "{i}" in ours else (None,)
        for i in layers:
            rows.append((ours.format(i=i) if i is not None else ours,
                         tuple(h.format(i=i) if i is not None else h for h in hf), how, group))
    return rows


def to_ours(how, arrays):
    """Hugging Face arrays (one per HF name of the row) -> our array."""
    if how == QKV and arrays[0].ndim == 2:
        return np.ascontiguousarray(np.concatenate(arrays, axis=0).T)    # 3 x (C, C) as (out, in) -> (C, 3C)
    if how == QKV:
        return np.concatenate(arrays)                                     # 3 x (C,) -> (3C,)
    return np.ascontiguousarray(arrays[0].T) if how == TRANSPOSE else arrays[0]


def to_hf(how, array):
    """Our array -> the Hugging Face arrays (one per HF name of the row)."""
    if how == QKV and array.ndim == 2:
        return [np.ascontiguousarray(w) for w in np.split(array.T, 3)]   # (C, 3C) -> 3 x (C, C) as (out, in)
    if how == QKV:
        return np.split(array, 3)                                         # (3C,) -> 3 x (C,)
    return [np.ascontiguousarray(array.T) if how == TRANSPOSE else array]


def hf_shapes(how, shape):
    """The shapes the Hugging Face arrays of a row must have, given our parameter's shape."""
    if how == QKV and len(shape) == 2:
        return [(shape[1] // 3, shape[0])] * 3
    if how == QKV:
        return [(shape[0] // 3,)] * 3
    return [tuple(reversed(shape)) if how == TRANSPOSE else tuple(shape)]


# --------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------

def read_hf_weights(directory):
    """{name: array} from model.safetensors, or from the shards a model.safetensors.index.json lists."""
    tensors = {}
    for path in hf_weight_files(directory):
        tensors.update(load_safetensors(path))
    return tensors


def hf_weight_files(directory):
    """[model.safetensors], or the shards model.safetensors.index.json lists: each a plain file name
    whose real path stays in the folder (or, in the Hugging Face cache, beside the index's own blob)."""
    directory = Path(directory)
    single, index = directory / WEIGHTS_FILE, directory / WEIGHTS_INDEX_FILE
    if single.is_file():
        return [single]
    if index.is_file():
        shards = list(load_json(index, fields={"weight_map": dict})["weight_map"].values())
        check_type(shards, [str], f"{index}: the shards of \"weight_map\"")
        return [Path(file_in_folder(directory, shard, f"{index}: weight_map", also_under=[index.resolve().parent]))
                for shard in sorted(set(shards))]
    others = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt"))
    hint = (f" (it has {', '.join(others)}: a pickle, which numpretrain does not read; save the model with "
            f"safe_serialization=True, the default of transformers)" if others else "")
    raise CheckpointError(f"{directory}: no {WEIGHTS_FILE}{hint}")


def check_fits_weights(config, config_path, files):
    """Refuse, before allocating anything, a config describing more parameters than the weights files
    have bytes, as runs.check_fits_weights_file does for our own folders."""
    try:
        size = sum(os.path.getsize(path) for path in files)
    except OSError as error:
        raise CheckpointError(f"{error.filename}: cannot read its size ({error.strerror})") from None
    needed = parameter_lower_bound(config)
    if needed > size:
        raise CheckpointError(f"{config_path}: describes a model of at least {needed:,} parameters, but the "
                              f"weights ({', '.join(p.name for p in files)}) hold only {size:,} bytes")


def _canonical_names(tensors, prefix, heads):
    """Old TensorFlow names (LayerNorm.gamma/beta) renamed; a bare checkpoint (saved from BertModel or
    GPT2Model, so without `prefix`) given the prefix, except for the names of head weights."""
    renamed = {}
    for name, array in tensors.items():
        if name.endswith(".gamma") or name.endswith(".beta"):
            name = name.rsplit(".", 1)[0] + (".weight" if name.endswith(".gamma") else ".bias")
        renamed[name] = array
    if any(name.startswith(prefix) for name in renamed):
        return renamed
    return {(name if name.startswith(heads) else prefix + name): array for name, array in renamed.items()}


def _describe(names, limit=12):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown


# --------------------------------------------------------------------------
# from_pretrained
# --------------------------------------------------------------------------

def from_pretrained(directory, model_class=None, dtype=None, log=_stderr):
    """Load a Hugging Face folder (config.json + model.safetensors) into our model, in eval mode.

    model_class: BertModel, BertForPreTraining or GPT; None takes it from config.json
        (GPT-2 -> a pre-LN GPT, OpenAI GPT -> a post-LN GPT; a BERT whose "architectures" names
        a pretraining or masked-LM head -> BertForPreTraining, otherwise BertModel).
    dtype: np.float32 or np.float64; None keeps a float64 checkpoint in float64 and loads anything
        else (float32, float16, bfloat16) in float32.
    log: called with one line per thing worth knowing (heads absent, heads unused, heads
        freshly initialised); lines that start with "warning:" mean the model is not fully
        pretrained. Default: printed to stderr.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such model folder")
    config_path = directory / CONFIG_FILE
    hf_config = load_json(config_path, fields=HF_CONFIG_FIELDS)
    if model_class is None and any(str(a).endswith("ForSequenceClassification") for a in hf_config.get("architectures") or []):
        from numpretrain.storage.hf_classifier import load_hf_classifier   # a classifier: hf_classifier.py
        return load_hf_classifier(directory, dtype, log)
    model_type = hf_config.get("model_type")
    if model_type == "bert":
        config = bert_config_from_hf(hf_config, config_path)
        if model_class is None:
            heads = any(a.endswith(("ForPreTraining", "ForMaskedLM")) for a in hf_config.get("architectures") or [])
            model_class = BertForPreTraining if heads else BertModel
        allowed = (BertModel, BertForPreTraining)
    elif model_type in ("gpt2", "openai-gpt"):
        read_config = gpt2_config_from_hf if model_type == "gpt2" else openai_gpt_config_from_hf
        config = read_config(hf_config, config_path)
        model_class = GPT if model_class is None else model_class
        allowed = (GPT,)
    else:
        raise CheckpointError(f"{config_path}: model_type {model_type!r} is not supported "
                              f"(numpretrain reads \"bert\", \"gpt2\" and \"openai-gpt\" checkpoints)")
    if model_class not in allowed:
        raise ConfigError(f"{config_path}: a {model_type} checkpoint loads as "
                          f"{' or '.join(c.__name__ for c in allowed)}, not {getattr(model_class, '__name__', model_class)}")
    files = hf_weight_files(directory)
    check_fits_weights(config, config_path, files)
    layout = layout_of(model_class, config)
    source = directory / WEIGHTS_FILE
    tensors = _canonical_names(read_hf_weights(directory), layout.prefix, layout.head_prefixes)
    if dtype is None:
        floats = [a.dtype for a in tensors.values() if a.dtype.kind == "f"]
        dtype = np.float64 if floats and all(d == np.float64 for d in floats) else np.float32
    model = model_class(config).to(dtype)
    params = dict(model.named_parameters())

    # 1. each group is all there, all absent (then freshly initialised, except the body), or an error
    missing, fresh, state, used = [], [], {}, set()
    for group in layout.groups:
        rows = layout.rows(config.n_layer, (group,))
        needed = [h for _, hf, _, _ in rows for h in hf]
        absent = [h for h in needed if h not in tensors]
        used.update(h for h in needed if h in tensors)
        if group != "body" and len(absent) == len(needed):
            fresh.append(group)
            continue
        missing += absent
        # 2. the rows: check each Hugging Face tensor's shape, then rename, transpose, fuse
        for ours, hf, how, _ in rows if not absent else ():
            for name, shape in zip(hf, hf_shapes(how, params[ours].shape)):
                if tensors[name].shape != shape:
                    raise CheckpointError(f"{source}: {name} has shape {tensors[name].shape}, but "
                                          f"{config_path.name} asks for {shape}")
            state[ours] = to_ours(how, [tensors[name] for name in hf])

    # 3. the rest must be second names of tied tensors, old buffers, or heads this model class lacks
    other_heads = {h for _, hf, _, group in layout.rows(config.n_layer, layout.all_groups)
                   if group not in layout.groups for h in hf}
    other_heads |= {alias for alias, (_, group) in layout.aliases.items() if group not in layout.groups}
    tied = {alias for alias, (_, group) in layout.aliases.items() if group in layout.groups}
    unknown = [name for name in tensors if name not in used | tied | other_heads and not layout.buffers.fullmatch(name)]
    if missing or unknown:
        problems = [f"{source} does not fit {model_class.__name__} with {config_path.name}:"]
        if missing:
            problems.append(f"  missing tensors ({len(missing)}): {_describe(missing)}")
        if unknown:
            problems.append(f"  unknown tensors ({len(unknown)}): {_describe(unknown)}")
        raise CheckpointError("\n".join(problems))
    model.load_state_dict(state, strict=False)   # every name in `state` fits; fresh groups keep their init

    # 4. say what happened
    name = model_class.__name__
    if model_class is BertModel and not any(n.startswith("cls.") for n in tensors):
        log(f"{directory}: no pretraining heads in the checkpoint (cls.predictions, cls.seq_relationship); "
            f"a BertModel needs none")
    for group in sorted({g for _, hf, _, g in layout.rows(config.n_layer, layout.all_groups)
                         if g not in layout.groups and set(hf) & set(tensors)}):
        log(f"{directory}: the {GROUP_NAMES[group]} in the checkpoint is not used by {name}")
    for group in fresh:
        log(f"warning: {directory} has no {GROUP_NAMES[group]}: {name}'s is freshly initialised "
            f"(random), so its outputs mean nothing until it is trained")
    return model.eval()


# --------------------------------------------------------------------------
# save_hf
# --------------------------------------------------------------------------

def hf_state_dict(model):
    """Our model's weights under Hugging Face names (second names of tied tensors included), and its config.json."""
    layout = layout_of(type(model), model.config)
    if isinstance(model, GPT):   # pre-LN -> GPT2LMHeadModel, post-LN -> OpenAIGPTLMHeadModel
        to_hf_config = gpt2_config_to_hf if model.config.norm_first else openai_gpt_config_to_hf
        hf_config = to_hf_config(model.config)
    else:
        hf_config = bert_config_to_hf(model.config, type(model).__name__)
    ours = model.state_dict()
    tensors = {}
    for name, hf, how, _ in layout.rows(model.config.n_layer):
        tensors.update(zip(hf, to_hf(how, ours[name])))
    tensors.update({alias: tensors[target] for alias, (target, group) in layout.aliases.items() if group in layout.groups})
    if layout.strip:   # transformers saves a BertModel without the "bert." prefix
        tensors = {name.removeprefix(layout.strip): array for name, array in tensors.items()}
    return tensors, hf_config


def save_hf(directory, model, tokenizer=None):
    """Write `model` as a Hugging Face folder: config.json and model.safetensors (float32 or float64, as
    the model is), plus vocab.txt and tokenizer_config.json when the tokenizer is a WordPiece one, and
    tokenizer.json (hf_tokenizers.py) when it is our char or BPE one. A fine-tuned classifier goes to
    hf_classifier.py (BertForSequenceClassification, GPT2ForSequenceClassification ...)."""
    if isinstance(model, SequenceClassifier):
        from numpretrain.storage.hf_classifier import save_hf_classifier   # a fine-tuned classifier: hf_classifier.py
        return save_hf_classifier(directory, model, tokenizer)
    directory = Path(directory)
    tensors, hf_config = hf_state_dict(model)
    directory.mkdir(parents=True, exist_ok=True)
    save_json(directory / CONFIG_FILE, hf_config)
    save_safetensors(directory / WEIGHTS_FILE, tensors, metadata=SAFETENSORS_METADATA)
    if tokenizer is not None and hasattr(tokenizer, "save_vocab"):
        tokenizer.save_vocab(directory)
    elif tokenizer is not None:      # our char or BPE tokenizer, in the tokenizers format (hf_tokenizers.py)
        write_hf_tokenizer(directory, tokenizer, hf_config)
    return directory
