"""Softmax and its family: softmax, log_softmax, logsumexp, cross_entropy.

All of them rest on one stable form, `stable_softmax`: exp(x - max(x)) cannot overflow, and
the shift cancels in the ratio, so

    softmax(x)   = exp(x - m) / sum(exp(x - m))        m = max(x) over the axis
    logsumexp(x) = m + log(sum(exp(x - m)))
    log_softmax(x) = x - logsumexp(x)

A row that is entirely -inf (a query whose every key is masked) has no maximum to shift by:
it is shifted by 0 instead, and gives probabilities 0 and logsumexp -inf, never NaN.
Every other softmax in the package (attention, generation, probing, classification) calls
`stable_softmax` too.
"""

import numpy as np

from numpretrain.autograd.tensor import Tensor
from numpretrain.errors import check_ids_in_range

IGNORE_INDEX = -100  # the target value cross_entropy skips (PyTorch's and Hugging Face's convention)


def stable_softmax(x, axis=-1, out=None):
    """(softmax(x), logsumexp(x)) along `axis` of the array x, both from exp(x - max).

    probs has the shape of x and is written into `out` when given (out may be x itself);
    lse keeps the reduced axis with size 1.
    """
    peak = x.max(axis=axis, keepdims=True)
    peak[~np.isfinite(peak)] = 0                 # an all -inf row: -inf - 0, not -inf - (-inf) = NaN
    probs = np.subtract(x, peak, out=out)
    np.exp(probs, out=probs)
    total = probs.sum(axis=axis, keepdims=True)
    empty = total == 0                           # the all -inf rows ...
    total[empty] = 1                             # ... whose probabilities stay 0
    probs /= total
    lse = peak + np.log(total)
    lse[empty] = -np.inf                         # ... and whose logsumexp is log(0)
    return probs, lse


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`."""
    probs, _ = stable_softmax(x.data, axis)      # saved: the probabilities p
    def backward(g):
        # p_i = e^{x_i} / sum_j e^{x_j}  =>  dp_i/dx_k = p_i (delta_ik - p_k), so
        # dx_k = sum_i g_i p_i (delta_ik - p_k) = p_k (g_k - sum_i g_i p_i)
        return (probs * (g - (g * probs).sum(axis=axis, keepdims=True)),)
    return Tensor.from_op(probs, (x,), backward, "softmax")


def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) along `axis`."""
    _, lse = stable_softmax(x.data, axis)        # saved: lse, to rebuild the softmax in backward
    def backward(g):
        # d lse / dx_k = e^{x_k} / sum_j e^{x_j} = softmax(x)_k = exp(x_k - lse)
        g = g if keepdims else np.expand_dims(g, axis)
        return (g * np.exp(x.data - lse),)
    return Tensor.from_op(lse if keepdims else np.squeeze(lse, axis), (x,), backward, "logsumexp")


def log_softmax(x, axis=-1):
    """x - logsumexp(x): log-probabilities without ever forming exp(x) of a large x."""
    _, lse = stable_softmax(x.data, axis)
    out = x.data - lse                           # saved: log p, whose exp is p
    def backward(g):
        # out_i = x_i - lse  =>  dx_k = g_k - p_k sum_i g_i   (d lse / dx_k = p_k)
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
    V = logits.shape[-1]
    counted = targets != ignore_index                           # (...)
    check_ids_in_range(targets[counted], V, what="target", where="cross_entropy")
    flat_logits = logits.data.reshape(-1, V)                    # (N, V)
    flat_targets = np.where(counted, targets, 0).reshape(-1)    # (N,)
    weights = counted.reshape(-1).astype(logits.dtype)          # (N,) 1 where counted, 0 where ignored
    count = max(int(counted.sum()), 1)
    rows = np.arange(len(flat_targets))
    probs, lse = stable_softmax(flat_logits)                    # saved: probs (N, V); lse (N, 1)
    losses = (lse[:, 0] - flat_logits[rows, flat_targets]) * weights   # -log p[target] = lse - x[target]
    def backward(g):
        # loss = (1/count) sum_n w_n (lse_n - x_n[t_n])  =>  dx_n = g w_n / count * (p_n - onehot(t_n))
        row_scale = (weights * (g / count))[:, None]            # (N, 1)
        grad = probs * row_scale                                # (N, V), a new array: probs stays as saved
        grad[rows, flat_targets] -= row_scale[:, 0]
        return (grad.reshape(logits.shape),)
    return Tensor.from_op(np.asarray(losses.sum() / count, dtype=logits.dtype), (logits,), backward, "cross_entropy")
