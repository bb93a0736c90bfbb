"""Generation's inner loop in plain NumPy: a Transformer block applied to the new positions
only, with a KV cache, reading the weights of the block's modules (picoGPT's form of the model).

Generating, every layer works on a single row, and the bookkeeping around each op (checking
inputs, naming outputs, making Tensors) costs more than the arithmetic: the small GPT spends
about 60 module calls per token. These functions do the same computation on plain arrays, which
makes generation about 1.8x faster (benchmarks/bench.py). No gradient flows through them, so
they run only under no_grad(). TransformerBlock.forward takes this path when it is given a
kv_cache in eval mode; tests/test_transformer.py checks it against the full forward pass.
"""

import numpy as np

from numpretrain.autograd.attention import allowed_keys, attention_forward, merge_heads, split_qkv
from numpretrain.autograd.dropout import dropout_mask
from numpretrain.autograd.gelu import gelu_erf_forward, gelu_tanh_forward
from numpretrain.autograd.tensor import is_grad_enabled


def layer_norm(x, ln):
    """x (..., C) normalised over its last axis by the LayerNorm `ln`.

    autograd/layer_norm.py's `layer_norm_forward`, with the row means by np.sum: on the one row
    a generated token has, np.einsum's fixed cost per call (what makes it 3x faster on a
    training batch's rows) dominates, and this form makes generation about 1.1x faster. The results
    agree to float32 rounding (tests/test_transformer.py compares generation with the full pass).
    """
    n = x.shape[-1]
    centered = x - x.sum(axis=-1, keepdims=True) / n               # x - mean
    variance = (centered * centered).sum(axis=-1, keepdims=True) / n
    centered /= np.sqrt(variance + ln.eps)                         # xhat
    return centered * ln.weight.data + ln.bias.data


def linear(x, lin):
    """x (..., in) @ weight (in, out) + bias of the Linear `lin`."""
    out = x @ lin.weight.data
    if lin.bias is not None:
        out += lin.bias.data
    return out


def gelu(x, approximate):
    """x * Phi(x): the tanh form (GPT) or the exact erf form (approximate="none", BERT), as the op computes it."""
    out, _ = gelu_tanh_forward(x) if approximate == "tanh" else gelu_erf_forward(x)
    return out


def check_cached_input(attn, shape, key_padding_mask):
    """Fail clearly on a KV cache used with gradients or full attention, on x not (B, T, C) or on
    a bad mask, before any arithmetic; returns the mask as a bool array (or None)."""
    if is_grad_enabled():
        raise RuntimeError(f"SelfAttention {attn.path!r}: a kv_cache is for generation; "
                           f"run it under `with no_grad():`")
    if not attn.causal:
        raise ValueError(f"SelfAttention {attn.path!r}: a kv_cache needs causal attention (with full attention "
                         f"the earlier positions would have to see the new ones)")
    return attn.check_input(shape, key_padding_mask)


def attention(x, attn, cache, key_padding_mask=None):
    """The new positions x (B, T, C) attend to every cached key and to their own -> (B, T, C).

    Their keys and values are appended to `cache` first. key_padding_mask (B, T): the new
    positions' flags (True at real tokens), kept in the cache with the earlier ones. x and the
    mask are as check_cached_input returns them.
    """
    T = x.shape[1]
    q, k, v = split_qkv(linear(x, attn.c_attn), attn.n_head)      # each (B, nh, T, hs)
    past = len(cache)
    keys, values = cache.append(k, v, key_padding_mask)            # (B, nh, past + T, hs)
    # query i of the new ones sits at position past + i and sees keys 0 .. past + i
    allowed = allowed_keys(T, past + T, True, cache.key_padding_mask)   # (B or 1, 1, T, past + T)
    p = attn.attn_dropout.p
    keep = None
    if attn.training and p > 0:                                    # dropout drawn as the fused op draws it
        keep = dropout_mask((q.shape[0], q.shape[1], T, past + T), p, attn.rng, q.dtype)
    y, probs = attention_forward(q, keys, values, allowed, keep)   # (B, nh, T, hs), (B, nh, T, past + T)
    attn.record_probs(probs)
    return linear(merge_heads(y), attn.c_proj)                     # (B, T, C)


def mlp(x, module):
    """The MLP `module`: c_fc -> GELU -> c_proj."""
    return linear(gelu(linear(x, module.c_fc), module.gelu.approximate), module.c_proj)


def block(x, blk, cache, key_padding_mask=None):
    """The TransformerBlock `blk` (pre-LN or post-LN) on the new positions x (B, T, C), in eval mode."""
    key_padding_mask = check_cached_input(blk.attn, x.shape, key_padding_mask)
    if blk.norm_first:
        x = x + attention(layer_norm(x, blk.ln_1), blk.attn, cache, key_padding_mask)
        return x + mlp(layer_norm(x, blk.ln_2), blk.mlp)
    x = layer_norm(x + attention(x, blk.attn, cache, key_padding_mask), blk.ln_1)
    return layer_norm(x + mlp(x, blk.mlp), blk.ln_2)
