"""Fused ops with hand-derived backward: stable where composites overflow, fast where they crawl.

Each is one graph node. Its forward saves exactly what its backward needs (named in
a comment), and its backward names the terms of the derivative. Every one is
gradchecked in float64 (tests/test_functional.py). The attention core lives in
attention.py; erf (for the exact GELU) in special.py.
"""

import math

import numpy as np

from .ops import as_tensor, unbroadcast
from .special import erf
from .tensor import Tensor

IGNORE_INDEX = -100  # the target value cross_entropy skips (PyTorch's and Hugging Face's convention)


# ----- softmax family -----

def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)), computed as exp(x - max) so that large inputs cannot overflow.

    A row that is entirely -inf (every key masked) gives zeros, not NaN.
    """
    peak = x.data.max(axis=axis, keepdims=True)
    probs = np.exp(x.data - np.where(np.isfinite(peak), peak, 0))  # -inf - 0, not -inf - (-inf) = NaN
    total = probs.sum(axis=axis, keepdims=True)
    probs /= np.where(total == 0, 1, total)                         # 0 only for an all -inf row
    def backward(g):
        # dL/dx_i = y_i * (g_i - sum_j g_j y_j): the Jacobian diag(y) - y y^T applied to g
        return (probs * (g - (g * probs).sum(axis=axis, keepdims=True)),)
    return Tensor.from_op(probs, (x,), backward, "softmax")


def _logsumexp(data, axis):
    peak = data.max(axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)  # a row of -inf stays -inf instead of NaN
    return peak + np.log(np.exp(data - peak).sum(axis=axis, keepdims=True))


def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) along `axis`, shifted by the maximum so it never overflows."""
    lse = _logsumexp(x.data, axis)                       # saved: the result, to rebuild softmax
    def backward(g):
        g = g if keepdims else np.expand_dims(g, axis)
        return (g * np.exp(x.data - lse),)               # d lse / dx = softmax(x)
    return Tensor.from_op(lse if keepdims else np.squeeze(lse, axis), (x,), backward, "logsumexp")


def log_softmax(x, axis=-1):
    """x - logsumexp(x): log-probabilities without ever forming exp(x)."""
    out = x.data - _logsumexp(x.data, axis)
    def backward(g):
        # d/dx_i of (x_j - lse) summed against g_j: g_i - softmax_i * sum_j g_j
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)
    return Tensor.from_op(out, (x,), backward, "log_softmax")


def cross_entropy(logits, targets, ignore_index=IGNORE_INDEX):
    """Mean of -log softmax(logits)[target] over the targets that are not `ignore_index`.

    logits: (..., V) float; targets: (...) integer class ids. With no target left to
    count, the loss is 0 (nothing to learn from), not NaN.
    """
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class ids, got dtype {targets.dtype}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need targets of shape "
                         f"{logits.shape[:-1]}, got {targets.shape}")
    n_classes = logits.shape[-1]
    counted = targets != ignore_index
    bad = counted & ((targets < 0) | (targets >= n_classes))
    if bad.any():
        raise ValueError(f"cross_entropy: target {targets[bad][0]} is out of range for {n_classes} classes")
    flat_logits = logits.data.reshape(-1, n_classes)          # (N, V)
    flat_targets = np.where(counted, targets, 0).reshape(-1)  # (N,)
    weights = counted.reshape(-1).astype(logits.dtype)        # 1 where counted, 0 where ignored
    count = max(int(counted.sum()), 1)
    lse = _logsumexp(flat_logits, -1)[:, 0]                   # (N,)
    rows = np.arange(len(flat_targets))
    losses = (lse - flat_logits[rows, flat_targets]) * weights
    def backward(g):
        # d loss / d logits = (softmax - onehot(target)) / count, zero on ignored rows
        grad = np.exp(flat_logits - lse[:, None])
        grad[rows, flat_targets] -= 1
        grad *= (weights * (g / count))[:, None]
        return (grad.reshape(logits.shape),)
    return Tensor.from_op(np.asarray(losses.sum() / count, dtype=logits.dtype), (logits,), backward, "cross_entropy")


# ----- normalisation and activations -----

def layer_norm(x, weight, bias, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance, as nn.LayerNorm)."""
    mean = x.data.mean(axis=-1, keepdims=True)
    centered = x.data - mean
    rstd = 1.0 / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)
    xhat = centered * rstd                                  # saved: xhat and rstd, all backward needs
    out = xhat * weight.data + bias.data
    def backward(g):
        reduce_axes = tuple(range(g.ndim - 1))
        gxhat = g * weight.data
        # dx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)): the three terms come from
        # xhat's direct path, the mean's path and the variance's path
        gx = rstd * (gxhat - gxhat.mean(axis=-1, keepdims=True)
                     - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True))
        return gx, (g * xhat).sum(axis=reduce_axes), g.sum(axis=reduce_axes)
    return Tensor.from_op(out, (x, weight, bias), backward, "layer_norm")


GELU_TANH_COEFF = 0.044715  # from Hendrycks & Gimpel (2016); GPT-2's "gelu_new"


def gelu(x, approximate="tanh"):
    """x * Phi(x). approximate="tanh" is GPT's form; "none" is the exact erf form BERT uses."""
    if approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        x_data = x.data
        x2 = x_data * x_data                              # saved: x^2 and t (x ** 3 would call pow, slowly)
        t = np.tanh(k * x_data * (1 + GELU_TANH_COEFF * x2))   # k (x + c x^3)
        out = 0.5 * x_data * (1 + t)
        def backward(g):
            # d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)
            dt = (1 - t * t) * k * (1 + 3 * GELU_TANH_COEFF * x2)
            return (g * (0.5 * (1 + t) + 0.5 * x_data * dt),)
        return Tensor.from_op(out, (x,), backward, "gelu_tanh")
    if approximate == "none":
        cdf = 0.5 * (1 + erf(x.data / math.sqrt(2)))
        def backward(g):
            pdf = np.exp(-0.5 * x.data * x.data) / math.sqrt(2 * math.pi)
            return (g * (cdf + x.data * pdf),)                # d/dx [x Phi(x)] = Phi(x) + x phi(x)
        return Tensor.from_op(x.data * cdf, (x,), backward, "gelu_erf")
    raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")


# ----- masking, selection, lookup, dropout -----

def where(condition, a, b):
    """a where condition is True, else b (all three broadcast together)."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like), as_tensor(b, like)
    def backward(g):
        ga = unbroadcast(np.where(condition, g, 0), a.shape) if a.requires_grad else None
        gb = unbroadcast(np.where(condition, 0, g), b.shape) if b.requires_grad else None
        return ga, gb
    return Tensor.from_op(np.where(condition, a.data, b.data), (a, b), backward, "where")


def masked_fill(x, mask, value):
    """x with `value` wherever the boolean mask is True; no gradient flows through filled places."""
    mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if mask.dtype != bool:
        raise TypeError(f"masked_fill: the mask must be boolean, got dtype {mask.dtype}")
    try:
        np.broadcast_shapes(mask.shape, x.shape)
    except ValueError:
        raise ValueError(f"masked_fill: a mask of shape {mask.shape} cannot be broadcast against {x.shape}") from None
    def backward(g):
        return (unbroadcast(np.where(mask, 0, g), x.shape),)  # a larger mask broadcast x up: sum back
    return Tensor.from_op(np.where(mask, np.asarray(value, dtype=x.dtype), x.data), (x,), backward, "masked_fill")


def embedding(weight, ids):
    """weight[ids]: rows of a (V, C) table for integer ids of any shape -> (*ids.shape, C)."""
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    n_rows = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= n_rows):
        bad = ids[(ids < 0) | (ids >= n_rows)][0]
        raise IndexError(f"embedding: id {bad} is out of range for a table of {n_rows} rows")
    def backward(g):
        # Scatter-add the rows' gradients: sort the ids so equal ids are adjacent, then sum each
        # run with one np.add.reduceat (several times faster than np.add.at).
        grad = np.zeros_like(weight.data)
        flat_ids = ids.reshape(-1)
        if flat_ids.size:
            order = np.argsort(flat_ids, kind="stable")
            sorted_ids = flat_ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            grad[sorted_ids[starts]] = np.add.reduceat(g.reshape(-1, weight.shape[1])[order], starts, axis=0)
        return (grad,)
    return Tensor.from_op(weight.data[ids], (weight,), backward, "embedding")


def dropout(x, p, rng, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    if rng is None:
        raise ValueError("dropout: training with p > 0 needs rng, a numpy.random.Generator")
    scale = np.asarray(1 / (1 - p), dtype=x.dtype)
    keep = (rng.random(x.shape, dtype=np.float32) >= p) * scale   # saved: the scaled keep-mask
    def backward(g):
        return (g * keep,)
    return Tensor.from_op(x.data * keep, (x,), backward, "dropout")
