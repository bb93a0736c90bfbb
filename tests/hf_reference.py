"""What the Hugging Face tests share: small models with every parameter moved off its initial value,
inputs with a padded row, and a BERT, a GPT-2 and an OpenAI GPT forward written from the Hugging Face
names and layouts alone (nn.Linear is x @ W.T + b, Conv1D is x @ W + b, as
../shared/reference/hf_layouts.md says), which need no torch.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from numpretrain.app import cli
from numpretrain.models.bert import BertConfig, BertForPreTraining
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.storage.formats import save_safetensors

FIXTURES = Path(__file__).parent / "fixtures"
BERT = dict(vocab_size=50, max_position=16, n_layer=2, n_head=4, n_embd=32, intermediate_size=48, dropout=0.0)
GPT2 = dict(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)


def jiggle(model, seed=1):
    """Move every parameter off its initial value (LayerNorm gains off 1, biases off 0), so a swapped or
    mis-transposed tensor cannot hide."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data[...] += rng.normal(0, 0.1, p.shape)
    return model.eval()


def bert(cls=BertForPreTraining, dtype=np.float64, **overrides):
    return jiggle(cls(BertConfig(**{**BERT, **overrides})).to(dtype))


def gpt(dtype=np.float64, **overrides):
    return jiggle(GPT(GPTConfig(**{**GPT2, **overrides})).to(dtype))


def inputs(seed=0, B=3, T=12, V=50):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    token_types = (np.arange(T) >= T // 2).astype(np.int64)[None].repeat(B, 0)
    mask = np.ones((B, T), dtype=bool)
    mask[1, T - 4:] = False                                    # one padded row
    return ids, token_types, mask


# ---- forwards written from the Hugging Face names alone ------------------------------------------

def _layer_norm(x, w, name, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


_erf = np.vectorize(math.erf)


def hf_bert_forward(w, ids, token_types, mask, n_head, eps=1e-12):
    """BertForPreTraining from its state dict: nn.Linear is x @ W.T + b; post-LN; erf GELU."""
    dense = lambda x, name: x @ w[name + ".weight"].T + w[name + ".bias"]
    gelu = lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    B, T = ids.shape
    x = (w["bert.embeddings.word_embeddings.weight"][ids] + w["bert.embeddings.token_type_embeddings.weight"][token_types]
         + w["bert.embeddings.position_embeddings.weight"][np.arange(T)])
    x = _layer_norm(x, w, "bert.embeddings.LayerNorm", eps)
    n_layer = len({k.split(".")[3] for k in w if k.startswith("bert.encoder.layer.")})
    for i in range(n_layer):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (dense(x, p + "attention.self." + n).reshape(B, T, n_head, -1).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + np.where(mask, 0, -1e30)[:, None, None, :]
        a = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(B, T, -1)
        x = _layer_norm(x + dense(a, p + "attention.output.dense"), w, p + "attention.output.LayerNorm", eps)
        h = gelu(dense(x, p + "intermediate.dense"))
        x = _layer_norm(x + dense(h, p + "output.dense"), w, p + "output.LayerNorm", eps)
    pooled = np.tanh(dense(x[:, 0], "bert.pooler.dense"))
    t = _layer_norm(gelu(dense(x, "cls.predictions.transform.dense")), w, "cls.predictions.transform.LayerNorm", eps)
    mlm = t @ w["cls.predictions.decoder.weight"].T + w["cls.predictions.decoder.bias"]
    return x, mlm, dense(pooled, "cls.seq_relationship")


def hf_gpt2_forward(w, ids, n_head, eps=1e-5):
    """GPT2LMHeadModel from its state dict: Conv1D is x @ W + b; pre-LN; tanh GELU; fused c_attn."""
    conv = lambda x, name: x @ w[name + ".weight"] + w[name + ".bias"]
    gelu = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    B, T = ids.shape
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][np.arange(T)]
    n_layer = len({k.split(".")[2] for k in w if k.startswith("transformer.h.")})
    causal = np.where(np.tri(T, dtype=bool), 0, -1e30)
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        q, k, v = np.split(conv(_layer_norm(x, w, p + "ln_1", eps), p + "attn.c_attn"), 3, axis=-1)
        q, k, v = (t.reshape(B, T, n_head, -1).transpose(0, 2, 1, 3) for t in (q, k, v))
        a = (_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + causal) @ v)
        x = x + conv(a.transpose(0, 2, 1, 3).reshape(B, T, -1), p + "attn.c_proj")
        x = x + conv(gelu(conv(_layer_norm(x, w, p + "ln_2", eps), p + "mlp.c_fc")), p + "mlp.c_proj")
    return _layer_norm(x, w, "transformer.ln_f", eps) @ w["lm_head.weight"].T


def hf_openai_gpt_forward(w, ids, n_head, eps=1e-5):
    """OpenAIGPTLMHeadModel from its state dict: Conv1D; post-LN, no final LN; tanh GELU; the -1e4 causal mask."""
    conv = lambda x, name: x @ w[name + ".weight"] + w[name + ".bias"]
    gelu = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    B, T = ids.shape
    x = w["transformer.tokens_embed.weight"][ids] + w["transformer.positions_embed.weight"][np.arange(T)]
    n_layer = len({k.split(".")[2] for k in w if k.startswith("transformer.h.")})
    b = np.tri(T)                                                       # w * b + -1e4 * (1 - b)
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        q, k, v = (t.reshape(B, T, n_head, -1).transpose(0, 2, 1, 3) for t in np.split(conv(x, p + "attn.c_attn"), 3, -1))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
        a = _softmax(scores * b + -1e4 * (1 - b)) @ v
        x = _layer_norm(x + conv(a.transpose(0, 2, 1, 3).reshape(B, T, -1), p + "attn.c_proj"), w, p + "ln_1", eps)
        x = _layer_norm(x + conv(gelu(conv(x, p + "mlp.c_fc")), p + "mlp.c_proj"), w, p + "ln_2", eps)
    return x @ w["lm_head.weight"].T


def random_hf_bert(seed=0, heads=True, prefix="bert."):
    """A BERT state dict made directly in Hugging Face's names and (out, in) layouts."""
    rng = np.random.default_rng(seed)
    C, I, V = BERT["n_embd"], BERT["intermediate_size"], BERT["vocab_size"]
    r = lambda *shape: rng.normal(0, 0.2, shape)
    w = {"embeddings.word_embeddings.weight": r(V, C), "embeddings.position_embeddings.weight": r(16, C),
         "embeddings.token_type_embeddings.weight": r(2, C),
         "embeddings.LayerNorm.weight": 1 + r(C), "embeddings.LayerNorm.bias": r(C),
         "pooler.dense.weight": r(C, C), "pooler.dense.bias": r(C)}
    for i in range(BERT["n_layer"]):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            w[p + name + ".weight"], w[p + name + ".bias"] = r(C, C), r(C)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(I, C), r(I)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(C, I), r(C)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + name + ".weight"], w[p + name + ".bias"] = 1 + r(C), r(C)
    w = {prefix + k: v for k, v in w.items()}
    if heads:
        w.update({"cls.predictions.transform.dense.weight": r(C, C), "cls.predictions.transform.dense.bias": r(C),
                  "cls.predictions.transform.LayerNorm.weight": 1 + r(C),
                  "cls.predictions.transform.LayerNorm.bias": r(C), "cls.predictions.bias": r(V),
                  "cls.seq_relationship.weight": r(2, C), "cls.seq_relationship.bias": r(2)})
        w["cls.predictions.decoder.weight"] = w[prefix + "embeddings.word_embeddings.weight"]
        w["cls.predictions.decoder.bias"] = w["cls.predictions.bias"]
    return w


def write_hf_folder(folder, tensors, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_safetensors(folder / "model.safetensors", tensors, metadata={"format": "pt"})
    return folder


HF_BERT_CONFIG = {"model_type": "bert", "architectures": ["BertForPreTraining"], "vocab_size": 50,
                  "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48,
                  "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu",
                  "hidden_dropout_prob": 0.0, "layer_norm_eps": 1e-12}


def silent(messages):
    return messages.append


def import_transformers():
    """(torch, transformers), or a skip that tests/conftest.py recognises as a missing extra."""
    transformers = pytest.importorskip("transformers")   # first: without it, torch need not be imported
    torch = pytest.importorskip("torch")
    return torch, transformers


# a GPT or BERT pretrained for a few steps, through the command line, in seconds
TINY_RUN = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
            "--batch-size", "8", "--max-iters", "30", "--lr", "3e-3", "--warmup-iters", "5", "--eval-interval", "30",
            "--eval-iters", "1", "--log-interval", "30"]


def pretrain_tiny(folder, command="pretrain-gpt", *extra):
    assert cli.main([command, "--out", str(folder), *TINY_RUN, *extra]) == 0
    return folder
