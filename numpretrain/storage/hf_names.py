"""Hugging Face names: one table per architecture (BERT, GPT-2, OpenAI GPT), and the config.json fields each way.

Each row of a table is (our name, the Hugging Face name(s), how the array changes on the way,
the group it belongs to); `{i}` stands for the layer number. hf.py reads and writes checkpoints
by these tables; docs/weights.md explains them for a reader. The three ways an array changes:

    COPY        the same array
    TRANSPOSE   HF's nn.Linear stores weight (out, in) and computes x @ W.T; our Linear
                stores (in, out) and computes x @ W. (GPT-2's Conv1D is already (in, out).)
    QKV         BERT's query, key and value Linears, each (C, C) as (out, in), are our one
                fused c_attn (C, 3C): c_attn.weight = concat([Wq, Wk, Wv], axis=0).T
"""

import re

from numpretrain.errors import ConfigError
from numpretrain.models.bert import BertConfig
from numpretrain.models.gpt import GPTConfig

COPY, TRANSPOSE, QKV = "copy", "transpose", "qkv"

# --------------------------------------------------------------------------
# BERT. Our names are BertForPreTraining's; a BertModel's are the same without "bert.".
# --------------------------------------------------------------------------

_HF_LAYER = "bert.encoder.layer.{i}."
BERT_TABLE = (
    # our name                                    Hugging Face name                                         how        group
    ("bert.embeddings.word_embeddings.weight",       "bert.embeddings.word_embeddings.weight",       COPY,      "body"),
    ("bert.embeddings.position_embeddings.weight",   "bert.embeddings.position_embeddings.weight",   COPY,      "body"),
    ("bert.embeddings.token_type_embeddings.weight", "bert.embeddings.token_type_embeddings.weight", COPY,      "body"),
    ("bert.embeddings.LayerNorm.weight",             "bert.embeddings.LayerNorm.weight",             COPY,      "body"),
    ("bert.embeddings.LayerNorm.bias",               "bert.embeddings.LayerNorm.bias",               COPY,      "body"),
    ("bert.layer.{i}.attn.c_attn.weight",  tuple(_HF_LAYER + f"attention.self.{p}.weight" for p in ("query", "key", "value")),
                                                                                                     QKV,       "body"),
    ("bert.layer.{i}.attn.c_attn.bias",    tuple(_HF_LAYER + f"attention.self.{p}.bias" for p in ("query", "key", "value")),
                                                                                                     QKV,       "body"),
    ("bert.layer.{i}.attn.c_proj.weight",            _HF_LAYER + "attention.output.dense.weight",    TRANSPOSE, "body"),
    ("bert.layer.{i}.attn.c_proj.bias",              _HF_LAYER + "attention.output.dense.bias",      COPY,      "body"),
    ("bert.layer.{i}.ln_1.weight",                   _HF_LAYER + "attention.output.LayerNorm.weight", COPY,     "body"),
    ("bert.layer.{i}.ln_1.bias",                     _HF_LAYER + "attention.output.LayerNorm.bias",  COPY,      "body"),
    ("bert.layer.{i}.mlp.c_fc.weight",               _HF_LAYER + "intermediate.dense.weight",        TRANSPOSE, "body"),
    ("bert.layer.{i}.mlp.c_fc.bias",                 _HF_LAYER + "intermediate.dense.bias",          COPY,      "body"),
    ("bert.layer.{i}.mlp.c_proj.weight",             _HF_LAYER + "output.dense.weight",              TRANSPOSE, "body"),
    ("bert.layer.{i}.mlp.c_proj.bias",               _HF_LAYER + "output.dense.bias",                COPY,      "body"),
    ("bert.layer.{i}.ln_2.weight",                   _HF_LAYER + "output.LayerNorm.weight",          COPY,      "body"),
    ("bert.layer.{i}.ln_2.bias",                     _HF_LAYER + "output.LayerNorm.bias",            COPY,      "body"),
    ("bert.pooler.weight",                           "bert.pooler.dense.weight",                     TRANSPOSE, "pooler"),
    ("bert.pooler.bias",                             "bert.pooler.dense.bias",                       COPY,      "pooler"),
    ("mlm_dense.weight",                             "cls.predictions.transform.dense.weight",       TRANSPOSE, "mlm"),
    ("mlm_dense.bias",                               "cls.predictions.transform.dense.bias",         COPY,      "mlm"),
    ("mlm_LayerNorm.weight",                         "cls.predictions.transform.LayerNorm.weight",   COPY,      "mlm"),
    ("mlm_LayerNorm.bias",                           "cls.predictions.transform.LayerNorm.bias",     COPY,      "mlm"),
    ("mlm_bias",                                     "cls.predictions.bias",                         COPY,      "mlm"),
    ("nsp.weight",                                   "cls.seq_relationship.weight",                  TRANSPOSE, "nsp"),
    ("nsp.bias",                                     "cls.seq_relationship.bias",                    COPY,      "nsp"),
)
BERT_ALIASES = {   # second name -> (the name in the table it is tied to, group): the MLM decoder
    "cls.predictions.decoder.weight": ("bert.embeddings.word_embeddings.weight", "mlm"),
    "cls.predictions.decoder.bias": ("cls.predictions.bias", "mlm"),
}
BERT_BUFFERS = re.compile(r"bert\.embeddings\.(position_ids|token_type_ids)")
GROUP_NAMES = {"body": "encoder", "pooler": "pooler (bert.pooler.*)", "mlm": "masked-LM head (cls.predictions.*)",
               "nsp": "next-sentence head (cls.seq_relationship.*)", "untied": "separate LM head (lm_head.weight)"}

# --------------------------------------------------------------------------
# GPT-2. Conv1D stores (in, out), as our Linear: every row is a copy.
# --------------------------------------------------------------------------

_HF_BLOCK = "transformer.h.{i}."
GPT2_TABLE = (
    # our name                   Hugging Face name                       how   group
    ("wte.weight",               "transformer.wte.weight",               COPY, "body"),
    ("wpe.weight",               "transformer.wpe.weight",               COPY, "body"),
    ("h.{i}.ln_1.weight",        _HF_BLOCK + "ln_1.weight",              COPY, "body"),
    ("h.{i}.ln_1.bias",          _HF_BLOCK + "ln_1.bias",                COPY, "body"),
    ("h.{i}.attn.c_attn.weight", _HF_BLOCK + "attn.c_attn.weight",       COPY, "body"),   # (C, 3C), q | k | v
    ("h.{i}.attn.c_attn.bias",   _HF_BLOCK + "attn.c_attn.bias",         COPY, "body"),
    ("h.{i}.attn.c_proj.weight", _HF_BLOCK + "attn.c_proj.weight",       COPY, "body"),
    ("h.{i}.attn.c_proj.bias",   _HF_BLOCK + "attn.c_proj.bias",         COPY, "body"),
    ("h.{i}.ln_2.weight",        _HF_BLOCK + "ln_2.weight",              COPY, "body"),
    ("h.{i}.ln_2.bias",          _HF_BLOCK + "ln_2.bias",                COPY, "body"),
    ("h.{i}.mlp.c_fc.weight",    _HF_BLOCK + "mlp.c_fc.weight",          COPY, "body"),
    ("h.{i}.mlp.c_fc.bias",      _HF_BLOCK + "mlp.c_fc.bias",            COPY, "body"),
    ("h.{i}.mlp.c_proj.weight",  _HF_BLOCK + "mlp.c_proj.weight",        COPY, "body"),
    ("h.{i}.mlp.c_proj.bias",    _HF_BLOCK + "mlp.c_proj.bias",          COPY, "body"),
    ("ln_f.weight",              "transformer.ln_f.weight",              COPY, "body"),
    ("ln_f.bias",                "transformer.ln_f.bias",                COPY, "body"),
    ("lm_head.weight",           "lm_head.weight",                       COPY, "untied"),  # nn.Linear (V, C) = our (V, C) table
)
GPT2_ALIASES = {"lm_head.weight": ("transformer.wte.weight", "body")}   # when tie_word_embeddings (GPT-2 always)
GPT2_BUFFERS = re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)")   # old causal-mask buffers

# --------------------------------------------------------------------------
# OpenAI GPT (GPT-1): our post-LN GPT (norm_first=False). The same Conv1D blocks as GPT-2,
# other embedding names, ln_1 / ln_2 *after* attention / the MLP, and no final LayerNorm.
# --------------------------------------------------------------------------

OPENAI_GPT_TABLE = (
    # our name                   Hugging Face name                       how   group
    ("wte.weight",               "transformer.tokens_embed.weight",      COPY, "body"),
    ("wpe.weight",               "transformer.positions_embed.weight",   COPY, "body"),
    ("h.{i}.attn.c_attn.weight", _HF_BLOCK + "attn.c_attn.weight",       COPY, "body"),   # (C, 3C), q | k | v
    ("h.{i}.attn.c_attn.bias",   _HF_BLOCK + "attn.c_attn.bias",         COPY, "body"),
    ("h.{i}.attn.c_proj.weight", _HF_BLOCK + "attn.c_proj.weight",       COPY, "body"),
    ("h.{i}.attn.c_proj.bias",   _HF_BLOCK + "attn.c_proj.bias",         COPY, "body"),
    ("h.{i}.ln_1.weight",        _HF_BLOCK + "ln_1.weight",              COPY, "body"),   # ln_1(x + attn(x))
    ("h.{i}.ln_1.bias",          _HF_BLOCK + "ln_1.bias",                COPY, "body"),
    ("h.{i}.mlp.c_fc.weight",    _HF_BLOCK + "mlp.c_fc.weight",          COPY, "body"),
    ("h.{i}.mlp.c_fc.bias",      _HF_BLOCK + "mlp.c_fc.bias",            COPY, "body"),
    ("h.{i}.mlp.c_proj.weight",  _HF_BLOCK + "mlp.c_proj.weight",        COPY, "body"),
    ("h.{i}.mlp.c_proj.bias",    _HF_BLOCK + "mlp.c_proj.bias",          COPY, "body"),
    ("h.{i}.ln_2.weight",        _HF_BLOCK + "ln_2.weight",              COPY, "body"),   # ln_2(n + mlp(n))
    ("h.{i}.ln_2.bias",          _HF_BLOCK + "ln_2.bias",                COPY, "body"),
    ("lm_head.weight",           "lm_head.weight",                       COPY, "untied"),
)
OPENAI_GPT_ALIASES = {"lm_head.weight": ("transformer.tokens_embed.weight", "body")}   # when tie_word_embeddings
OPENAI_GPT_BUFFERS = re.compile(r"transformer\.(position_ids|h\.\d+\.attn\.bias)")   # non-persistent in transformers


def bert_config_from_hf(hf, source="config.json"):
    """A Hugging Face BertConfig dict -> our BertConfig. Missing fields take transformers' defaults."""
    checks = {"hidden_act": ("gelu",), "position_embedding_type": ("absolute",),
              "is_decoder": (False,), "add_cross_attention": (False,)}
    for field, allowed in checks.items():
        value = hf.get(field, allowed[0])
        if value not in allowed:
            raise ConfigError(f"{source}: {field}={value!r} is not supported (numpretrain's BERT needs "
                              f"{field}={allowed[0]!r}: exact erf GELU, learned absolute positions, an encoder)")
    try:
        return BertConfig(vocab_size=hf.get("vocab_size", 30522), max_position=hf.get("max_position_embeddings", 512),
                          type_vocab_size=hf.get("type_vocab_size", 2), n_layer=hf.get("num_hidden_layers", 12),
                          n_head=hf.get("num_attention_heads", 12), n_embd=hf.get("hidden_size", 768),
                          intermediate_size=hf.get("intermediate_size", 3072),
                          dropout=hf.get("hidden_dropout_prob", 0.1), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
                          pad_token_id=hf.get("pad_token_id", 0))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def bert_config_to_hf(config, architecture):
    return {"architectures": [architecture], "model_type": "bert",
            "vocab_size": config.vocab_size, "hidden_size": config.n_embd,
            "num_hidden_layers": config.n_layer, "num_attention_heads": config.n_head,
            "intermediate_size": config.intermediate_size, "hidden_act": "gelu",
            "hidden_dropout_prob": config.dropout, "attention_probs_dropout_prob": config.dropout,
            "max_position_embeddings": config.max_position, "type_vocab_size": config.type_vocab_size,
            "layer_norm_eps": config.layer_norm_eps, "initializer_range": 0.02, "pad_token_id": config.pad_token_id,
            "position_embedding_type": "absolute", "tie_word_embeddings": True}


def gpt2_config_from_hf(hf, source="config.json"):
    """A Hugging Face GPT2Config dict -> our GPTConfig. Missing fields take transformers' defaults."""
    n_embd = hf.get("n_embd", 768)
    checks = {"activation_function": (("gelu_new", "gelu_pytorch_tanh"), "the tanh GELU, gelu_new"),
              "n_inner": ((None, 4 * n_embd), f"a feed-forward width of 4 * n_embd = {4 * n_embd}"),
              "scale_attn_weights": ((True,), "scores scaled by 1/sqrt(head size)"),
              "scale_attn_by_inverse_layer_idx": ((False,), "no extra 1/(layer+1) scaling"),
              "reorder_and_upcast_attn": ((False,), "the ordinary attention order")}
    for field, (allowed, meaning) in checks.items():
        value = hf.get(field, allowed[0])
        if value not in allowed:
            raise ConfigError(f"{source}: {field}={value!r} is not supported (numpretrain's GPT has {meaning})")
    return _gpt_config_from_hf(hf, source, norm_first=True, vocab_size=50257, n_positions=1024)


def _gpt_config_from_hf(hf, source, norm_first, vocab_size, n_positions):
    """GPT-2's and OpenAI GPT's shared config fields -> our GPTConfig; the defaults that differ are given."""
    try:
        return GPTConfig(vocab_size=hf.get("vocab_size", vocab_size), block_size=hf.get("n_positions", n_positions),
                         n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=hf.get("n_embd", 768),
                         dropout=hf.get("resid_pdrop", 0.1), bias=True, norm_first=norm_first,
                         layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                         tie_weights=bool(hf.get("tie_word_embeddings", True)))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def gpt2_config_to_hf(config):
    if not (config.norm_first and config.bias):
        raise ConfigError("only a GPT-2-shaped GPT (pre-LN blocks with biases) has a Hugging Face GPT-2 layout; "
                          "this one has " + ("post-LN blocks (OpenAI GPT's)" if not config.norm_first else "no biases"))
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_embd": config.n_embd,
            "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
            "activation_function": "gelu_new", "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
            "attn_pdrop": config.dropout, "layer_norm_epsilon": config.layer_norm_eps,
            "initializer_range": 0.02, "tie_word_embeddings": config.tie_weights,
            "bos_token_id": None, "eos_token_id": None}


def openai_gpt_config_from_hf(hf, source="config.json"):
    """A Hugging Face OpenAIGPTConfig dict -> our post-LN GPTConfig. Missing fields take transformers' defaults.

    afn "gelu" is the tanh GELU: modeling_openai.py maps it to gelu_new (ACT_FNS), not to the erf form
    that ACT2FN["gelu"] is, so our GPT's GELU computes it as it is.
    """
    afn = hf.get("afn", "gelu")
    if afn != "gelu":
        raise ConfigError(f"{source}: afn={afn!r} is not supported (numpretrain's GPT has the tanh GELU, "
                          f"which OpenAI GPT calls afn='gelu')")
    return _gpt_config_from_hf(hf, source, norm_first=False, vocab_size=40478, n_positions=512)


def openai_gpt_config_to_hf(config):
    if config.norm_first or not config.bias:
        raise ConfigError("only a GPT-1-shaped GPT (post-LN blocks with biases) has the OpenAI GPT layout")
    return {"architectures": ["OpenAIGPTLMHeadModel"], "model_type": "openai-gpt",
            "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_embd": config.n_embd,
            "n_layer": config.n_layer, "n_head": config.n_head, "afn": "gelu",
            "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
            "layer_norm_epsilon": config.layer_norm_eps, "initializer_range": 0.02,
            "tie_word_embeddings": config.tie_weights}

