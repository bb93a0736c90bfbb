"""Multi-head self-attention as one op: scores, mask, softmax, dropout and the weighted sum of values.

    scores = q k^T / sqrt(hs)        (B, nh, T, Tk)
    probs  = softmax(scores + mask)  masked keys get -inf, hence probability exactly 0
    y      = dropout(probs) v        (B, nh, T, hs), heads merged back to (B, T, C)

One graph node, because its backward is the most instructive one in the model (derived term
by term in `attention_backward` and docs/gradients.md) and because fusing it avoids a dozen
intermediate (B, nh, T, Tk) tensors. The same computation from primitive ops lives in
nn/self_attention.py (`_attend_composite`, taken when you ask for the probabilities as a
tensor with a gradient); tests/test_attention_core.py checks that both agree and gradchecks
this one in float64.

Each sequence attends only within itself, so `attention_forward` / `attention_backward` work
on a block of sequences. The op runs them when a debugger is attached, and otherwise the same
arithmetic straight into its buffers (speed/kernels.py: the same bits, tests/test_kernels.py),
over the batch (on all cores for large batches, speed/threads.py: the same bits again).
"""

import math

import numpy as np

from numpretrain.autograd.dropout import dropout_mask
from numpretrain.autograd.softmax import stable_softmax
from numpretrain.autograd.tensor import Tensor
from numpretrain.speed import kernels, threads


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


def attention_probs(q, k, allowed):
    """softmax(q k^T / sqrt(hs)) over the allowed keys; a row with no key allowed is 0.

    q: (b, nh, Tq, hs), k: (b, nh, Tk, hs), allowed: broadcastable to (b, nh, Tq, Tk) or None.
    """
    scores = q @ k.swapaxes(-1, -2)                      # (b, nh, Tq, Tk)
    scores *= 1.0 / math.sqrt(q.shape[-1])
    if allowed is not None:
        np.copyto(scores, -np.inf, where=~allowed)
    probs, _ = stable_softmax(scores, out=scores)        # in place: the scores are not needed again
    return probs


def softmax_in_place(scores):
    """scores -> their softmax over the last axis, in place (for speed/kernels.py)."""
    stable_softmax(scores, out=scores)


def attention_forward(q, k, v, allowed, keep=None):
    """One block of sequences: q, k, v (b, nh, T, hs) -> y (b, nh, T, hs) and probs (b, nh, T, T).

    keep: dropout's scaled keep-mask on the probabilities (b, nh, T, T), or None.
    """
    probs = attention_probs(q, k, allowed)
    dropped = probs if keep is None else probs * keep
    return dropped @ v, probs


def attention_backward(gy, q, k, v, probs, keep=None):
    """gy (b, nh, T, hs), the gradient of y -> (dq, dk, dv), each (b, nh, T, hs)."""
    hs = q.shape[-1]
    dropped = probs if keep is None else probs * keep
    # y = dropped v  =>  d dropped = gy v^T,  dv = dropped^T gy
    dv = dropped.swapaxes(-1, -2) @ gy
    dprobs = gy @ v.swapaxes(-1, -2)                     # (b, nh, T, T)
    if keep is not None:
        dprobs *= keep                                   # dropout passes gradients where it kept
    # softmax: d scores_j = p_j (d p_j - sum_i p_i d p_i); masked keys have p = 0, so they get 0.
    # (The row sums by np.einsum, without forming the (b, nh, T, T) product.)
    dscores = dprobs
    dscores -= np.einsum("bhqk,bhqk->bhq", dprobs, probs)[..., None]
    dscores *= probs
    dscores *= 1.0 / math.sqrt(hs)                       # scores = q k^T / sqrt(hs)
    # scores = q k^T  =>  dq = d scores k,  dk = d scores^T q
    return dscores @ k, dscores.swapaxes(-1, -2) @ q, dv


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
    """Multi-head self-attention from the fused projection qkv (B, T, 3C) -> (y (B, T, C), probs).

    key_padding_mask: (B, T) bool, True at real tokens. Dropout on the probabilities needs `rng`.
    probs (B, nh, T, T) is returned as an array, for plotting.
    """
    B, T, three_C = qkv.shape
    if three_C % (3 * n_head):
        raise ValueError(f"self_attention: qkv width {three_C} is not 3 * n_head * head_size for n_head={n_head}")
    if key_padding_mask is not None and np.shape(key_padding_mask) != (B, T):
        raise ValueError(f"self_attention: key_padding_mask must have shape {(B, T)}, got {np.shape(key_padding_mask)}")
    if training and dropout > 0 and rng is None:
        raise ValueError("self_attention: training with dropout > 0 needs rng, a numpy.random.Generator")
    q, k, v = split_qkv(qkv.data, n_head)                # each (B, nh, T, hs)
    allowed = allowed_keys(T, T, causal, key_padding_mask)   # (B or 1, 1, T, T) or None
    keep = dropout_mask((B, n_head, T, T), dropout, rng, q.dtype) if training and dropout > 0 else None
    probs = np.empty((B, n_head, T, T), dtype=q.dtype)   # saved for backward, with keep
    y = np.empty((B, T, n_head, q.shape[-1]), dtype=q.dtype)   # heads merged ...
    y_heads = y.transpose(0, 2, 1, 3)                    # ... (B, nh, T, hs) is a view of it

    def mask_for(b):                                     # b: a slice of the batch
        return None if allowed is None else allowed[b] if len(allowed) == B else allowed

    def forward_rows(b):
        keep_b = None if keep is None else keep[b]
        if threads.debugger_attached():                  # a debugger steps through the formula
            y_heads[b], probs[b] = attention_forward(q[b], k[b], v[b], mask_for(b), keep_b)
        else:                                            # the same arithmetic into the buffers, same bits
            kernels.attention_forward(y_heads[b], probs[b], q[b], k[b], v[b], mask_for(b), keep_b, softmax_in_place)

    threads.for_each_row_block(forward_rows, B, probs.size)

    def backward(g):                                     # g: (B, T, C)
        gy = g.reshape(B, T, n_head, -1).transpose(0, 2, 1, 3)        # (B, nh, T, hs)
        gqkv = np.empty((B, T, 3, n_head, q.shape[-1]), dtype=g.dtype)
        gq, gk, gv = gqkv.transpose(2, 0, 3, 1, 4)                    # views to write into

        def backward_rows(b):
            keep_b = None if keep is None else keep[b]
            if threads.debugger_attached():
                gq[b], gk[b], gv[b] = attention_backward(gy[b], q[b], k[b], v[b], probs[b], keep_b)
            else:
                kernels.attention_backward(gq[b], gk[b], gv[b], gy[b], q[b], k[b], v[b], probs[b], keep_b)

        threads.for_each_row_block(backward_rows, B, probs.size)
        return (gqkv.reshape(B, T, three_C),)

    return Tensor.from_op(y.reshape(B, T, three_C // 3), (qkv,), backward, "self_attention"), probs
