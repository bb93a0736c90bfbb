"""The attention core as one fused op: scores, mask, softmax, dropout and the weighted sum of values.

    scores = q k^T / sqrt(hs)        (B, nh, T, Tk)
    probs  = softmax(scores + mask)  masked keys get -inf, hence probability exactly 0
    y      = dropout(probs) v        (B, nh, T, hs), heads merged back to (B, T, C)

Written as a single graph node because its backward is the most instructive one in the
model (derived term by term below) and because fusing it avoids materialising a dozen
intermediate (B, nh, T, Tk) tensors. The same computation built from primitive ops
lives in nn/attention.py (used when you ask for the attention probabilities as a
tensor with a gradient); tests/test_attention.py checks that both agree and gradchecks
this one in float64.
"""

import math

import numpy as np

from numpretrain.speed import threads as parallel
from numpretrain.autograd.tensor import Tensor


def allowed_keys(n_queries, n_keys, causal, key_padding_mask):
    """Boolean mask (B or 1, 1, Tq, Tk): True where a query may attend to a key, or None for all.

    causal: query i (the last Tq of Tk positions) sees keys j <= i + (Tk - Tq).
    key_padding_mask: (B, Tk) bool, True at real tokens, False at padding.
    """
    allowed = None
    if causal and n_queries > 1:   # one query is the last position, which sees every key: no mask
        offset = n_keys - n_queries
        allowed = np.tri(n_queries, n_keys, k=offset, dtype=bool)[None, None]   # (1, 1, Tq, Tk)
    if key_padding_mask is not None:
        keys = np.asarray(key_padding_mask, dtype=bool)[:, None, None, :]         # (B, 1, 1, Tk)
        allowed = keys if allowed is None else allowed & keys
    return allowed


def attention_probs(q, k, allowed, out=None):
    """softmax(q k^T / sqrt(hs)) over allowed keys, as plain arrays; a row with no key allowed is 0.

    q: (B, nh, Tq, hs), k: (B, nh, Tk, hs) -> (B, nh, Tq, Tk), computed in place in `out`
    (a new array if None).
    """
    probs = np.matmul(q, k.swapaxes(-1, -2), out=out)    # (B, nh, Tq, Tk)
    probs *= 1.0 / math.sqrt(q.shape[-1])
    if allowed is not None:
        np.copyto(probs, -np.inf, where=~allowed)
    peak = probs.max(axis=-1, keepdims=True)
    peak[~np.isfinite(peak)] = 0                         # a fully masked row: exp(-inf) = 0, not NaN
    probs -= peak
    np.exp(probs, out=probs)
    total = probs.sum(axis=-1, keepdims=True)
    total[total == 0] = 1
    probs /= total
    return probs


def merge_heads(y):
    """(B, nh, T, hs) -> (B, T, nh * hs)."""
    B, nh, T, hs = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, nh * hs)


def split_qkv(qkv, n_head):
    """(B, T, 3C) -> three views (B, nh, T, hs) for q, k and v (no copy)."""
    B, T, three_C = qkv.shape
    hs = three_C // (3 * n_head)
    q, k, v = qkv.reshape(B, T, 3, n_head, hs).transpose(2, 0, 3, 1, 4)
    return q, k, v


def self_attention(qkv, n_head, causal=False, key_padding_mask=None, dropout=0.0, rng=None, training=False):
    """Multi-head self-attention from the fused projection qkv (B, T, 3C) -> y (B, T, C).

    key_padding_mask: (B, T) bool, True at real tokens. Dropout on the probabilities needs `rng`.
    """
    B, T, three_C = qkv.shape
    if three_C % (3 * n_head):
        raise ValueError(f"self_attention: qkv width {three_C} is not 3 * n_head * head_size for n_head={n_head}")
    if key_padding_mask is not None and np.shape(key_padding_mask) != (B, T):
        raise ValueError(f"self_attention: key_padding_mask must have shape {(B, T)}, got {np.shape(key_padding_mask)}")
    q, k, v = split_qkv(qkv.data, n_head)               # each (B, nh, T, hs)
    hs = q.shape[-1]
    allowed = allowed_keys(T, T, causal, key_padding_mask)   # (B or 1, 1, T, T) or None
    keep = None
    if training and dropout > 0:
        if rng is None:
            raise ValueError("self_attention: training with dropout > 0 needs rng, a numpy.random.Generator")
        keep = (rng.random((B, n_head, T, T), dtype=np.float32) >= dropout) * np.asarray(1 / (1 - dropout), q.dtype)
    probs = np.empty((B, n_head, T, T), dtype=q.dtype)   # saved for backward
    dropped = probs if keep is None else np.empty_like(probs)   # saved: what multiplied v
    y = np.empty((B, T, n_head, hs), dtype=q.dtype)     # (B, T, nh, hs): heads merged ...
    y_heads = y.transpose(0, 2, 1, 3)                    # ... as the product writes them (no copy)

    # Each sequence of the batch attends only within itself, so the work is split over
    # blocks of sequences, one per thread (parallel.py).
    def mask_of(b):
        return None if allowed is None else allowed[b] if len(allowed) == B else allowed

    def forward_block(b):                                # b: a slice of the batch
        attention_probs(q[b], k[b], mask_of(b), out=probs[b])
        if keep is not None:
            np.multiply(probs[b], keep[b], out=dropped[b])
        np.matmul(dropped[b], v[b], out=y_heads[b])

    parallel.for_each_row_block(forward_block, B, probs.size)
    y = y.reshape(B, T, three_C // 3)                    # (B, T, C)

    def backward(g):                                     # g: (B, T, C)
        gy = g.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)          # (B, nh, T, hs)
        gqkv = np.empty((B, T, 3, n_head, hs), dtype=g.dtype)
        gq, gk, gv = gqkv.transpose(2, 0, 3, 1, 4)                      # views to write into

        def backward_block(b):
            # y = dropped @ v  =>  d dropped = gy v^T,  d v = dropped^T gy
            np.matmul(dropped[b].swapaxes(-1, -2), gy[b], out=gv[b])
            gprobs = gy[b] @ v[b].swapaxes(-1, -2)                      # (b, nh, T, T)
            if keep is not None:
                gprobs *= keep[b]                                       # dropout passes grads where it kept
            # softmax: d scores_j = p_j (d p_j - sum_i p_i d p_i); masked keys have p = 0, so get 0
            gprobs -= np.einsum("bhqk,bhqk->bhq", gprobs, probs[b])[..., None]  # (no (b, nh, T, T) temporary)
            gprobs *= probs[b]
            gprobs *= 1.0 / math.sqrt(hs)                               # scores = q k^T / sqrt(hs)
            # scores = q k^T  =>  d q = d scores k,  d k = d scores^T q
            np.matmul(gprobs, k[b], out=gq[b])
            np.matmul(gprobs.swapaxes(-1, -2), q[b], out=gk[b])

        parallel.for_each_row_block(backward_block, B, probs.size)
        return (gqkv.reshape(B, T, three_C),)

    return Tensor.from_op(y, (qkv,), backward, "self_attention"), probs
