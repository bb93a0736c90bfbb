"""Fused ops with hand-derived backward: stable where composites overflow, fast where they crawl.

Each is one graph node. Its forward saves exactly what its backward needs (named in
a comment), and its backward names the terms of the derivative. Every one is
gradchecked in float64 (tests/test_functional.py). The attention core lives in
attention.py; erf (for the exact GELU) in special.py.
"""

import functools
import math

import numpy as np

from numpretrain.speed import threads as parallel
from numpretrain.autograd.ops import as_tensor, unbroadcast
from numpretrain.autograd.erf import erf
from numpretrain.autograd.tensor import Tensor

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
    rows = np.arange(len(flat_targets))
    # softmax and logsumexp from one buffer: probs = exp(x - peak) / total, lse = peak + log(total)
    peak = flat_logits.max(axis=-1, keepdims=True)            # (N, 1)
    peak[~np.isfinite(peak)] = 0                              # a row of -inf stays -inf instead of NaN
    probs = flat_logits - peak                                # (N, V)
    np.exp(probs, out=probs)
    total = probs.sum(axis=-1, keepdims=True)                 # (N, 1)
    probs /= total                                            # saved: the softmax, for backward
    lse = (peak + np.log(total))[:, 0]                        # (N,)
    losses = (lse - flat_logits[rows, flat_targets]) * weights
    def backward(g):
        # d loss / d logits = (softmax - onehot(target)) / count, zero on ignored rows
        row_scale = (weights * (g / count))[:, None]          # (N, 1)
        grad = probs * row_scale                              # (N, V), a new array: probs stays as saved
        grad[rows, flat_targets] -= row_scale[:, 0]
        return (grad.reshape(logits.shape),)
    return Tensor.from_op(np.asarray(losses.sum() / count, dtype=logits.dtype), (logits,), backward, "cross_entropy")


# ----- normalisation and activations -----

def layer_norm(x, weight, bias, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance, as nn.LayerNorm).

    For speed: rows are normalised in blocks on all threads (parallel.py), row means are
    np.einsum's, also of products, which are never formed (see `_row_means`), column sums
    matrix-vector products (`ones`), and buffers are updated in place.
    """
    C = x.shape[-1]
    x2 = x.data.reshape(-1, C)                             # (N, C), N = product of the leading axes
    N = len(x2)
    xhat, rstd, out = np.empty_like(x2), np.empty((N, 1), x2.dtype), np.empty_like(x2)

    def forward_block(r):                                  # r: a slice of the rows
        xhat_r, rstd_r, out_r = xhat[r], rstd[r], out[r]
        np.subtract(x2[r], _row_means(x2[r]), out=xhat_r)  # centered
        rstd_r[:] = _row_means(xhat_r, xhat_r)             # variance ...
        rstd_r += eps
        np.sqrt(rstd_r, out=rstd_r)
        np.divide(1, rstd_r, out=rstd_r)                   # ... and 1 / sqrt(var + eps)
        xhat_r *= rstd_r                                   # saved: xhat and rstd, all backward needs
        rowwise(np.multiply, xhat_r, weight.data, out_r)
        rowwise(np.add, out_r, bias.data, out_r)

    parallel.for_each_row_block(forward_block, N, x2.size)

    def backward(g):                                       # g: (..., C)
        g2 = g.reshape(-1, C)                              # (N, C)
        g_xhat, gx = np.empty_like(g2), np.empty_like(g2)

        def backward_block(r):
            # dx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)),  gxhat = g * weight: the
            # three terms come from xhat's direct path, the mean's path and the variance's path
            g_r, xhat_r, g_xhat_r, gx_r = g2[r], xhat[r], g_xhat[r], gx[r]
            np.multiply(g_r, xhat_r, out=g_xhat_r)         # g * xhat, kept for dweight
            mean_gxhat = _row_means(g_r, weight.data)      # (rows, 1)
            mean_gxhat_xhat = _row_means(g_xhat_r, weight.data)
            rowwise(np.multiply, g_r, weight.data, gx_r)   # gxhat
            gx_r -= mean_gxhat
            gx_r -= xhat_r * mean_gxhat_xhat
            gx_r *= rstd[r]

        parallel.for_each_row_block(backward_block, N, g2.size)
        # dweight = sum over rows of g * xhat,  dbias = sum over rows of g (on one thread: sums
        # across rows would change with the split, and the bits with them)
        gw = ones(N, g2.dtype) @ g_xhat
        gb = ones(N, g2.dtype) @ g2
        return gx.reshape(x.shape), gw, gb

    return Tensor.from_op(out.reshape(x.shape), (x, weight, bias), backward, "layer_norm")


@functools.lru_cache(maxsize=32)
def ones(n, dtype):
    """A read-only vector of n ones: column sums as the matrix-vector product ones @ x (BLAS),
    2-3x faster than np.einsum's or np.sum's sums over the rows."""
    vector = np.ones(n, dtype=dtype)
    vector.flags.writeable = False
    return vector


def rowwise(ufunc, x2, vector, out):
    """out = ufunc(x2, vector) for x2 (N, C) and a row vector (C,), exactly as broadcasting gives it.

    NumPy broadcasts a vector over rows shorter than its iteration buffer (np.getbufsize(),
    8192 elements) by copying the vector into that buffer again for every row, which makes
    `x2 * w` at (1024, 128) 1.6x slower than a product of two (1024, 128) arrays. Here k rows
    are viewed as one row of k * C elements, against the vector tiled k times: every element
    meets the same numbers, with no per-row copies.
    """
    N, C = x2.shape
    k = -(-np.getbufsize() // C)                           # rows per long row: k * C >= the buffer
    whole = N - N % k                                      # rows that fill long rows
    if whole < 4 * k or not (x2.flags.c_contiguous and out.flags.c_contiguous):
        return ufunc(x2, vector, out=out)                  # small: tiling would cost more than it saves
    tiled = np.empty((k, C), vector.dtype)
    tiled[:] = vector                                      # (k, C): the vector k times
    ufunc(x2[:whole].reshape(-1, k * C), tiled.reshape(-1), out=out[:whole].reshape(-1, k * C))
    if whole < N:
        ufunc(x2[whole:], vector, out=out[whole:])
    return out


def _row_means(x2, times=None):
    """(N, C) -> (N, 1) means of the rows of x2, or of x2 * times (times: (N, C) or (C,)) without
    forming that product. np.einsum sums short rows about 3x faster than np.mean. A
    matrix-vector product x2 @ ones would be a little faster still, but OpenBLAS's sum for a row
    changes with the rows around it, so LayerNorm's results would change with how parallel.py
    splits the rows; np.einsum's never do."""
    if times is None:
        sums = np.einsum("nc->n", x2)
    else:
        sums = np.einsum("nc,nc->n" if times.ndim == 2 else "nc,c->n", x2, times)
    means = sums[:, None]
    means *= 1.0 / x2.shape[1]
    return means


GELU_TANH_COEFF = 0.044715  # from Hendrycks & Gimpel (2016); GPT-2's "gelu_new"
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def gelu(x, approximate="tanh"):
    """x * Phi(x). approximate="tanh" is GPT's form; "none" is the exact erf form BERT uses.

    Both run in the dtype of x, over blocks of the flattened array on all threads
    (parallel.py), updating each block's buffers in place: every `out=` or `*=` below saves
    allocating, and page-faulting, an array as large as the MLP's hidden layer.
    """
    x_flat = x.data.reshape(-1)
    if approximate == "tanh":
        t, out = np.empty_like(x_flat), np.empty_like(x_flat)
        def forward_block(i):                               # i: a slice of the flat arrays
            xi, ti, outi = x_flat[i], t[i], out[i]
            # t = tanh(k (x + c x^3)) = tanh(k x (1 + c x^2)),  out = 0.5 x (1 + t)
            np.multiply(xi, xi, out=ti)                     # x^2 (x ** 3 would call pow, slowly)
            ti *= SQRT_2_OVER_PI * GELU_TANH_COEFF
            ti += SQRT_2_OVER_PI
            ti *= xi
            np.tanh(ti, out=ti)                             # saved: t (x^2 is cheaper to redo than to keep)
            np.add(ti, 1, out=outi)
            outi *= xi
            outi *= 0.5
        parallel.for_each_row_block(forward_block, x_flat.size, x_flat.size)
        def backward(g):
            g_flat, grad = g.reshape(-1), np.empty_like(x_flat)
            def backward_block(i):
                xi, ti, gradi = x_flat[i], t[i], grad[i]
                # d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)
                np.multiply(xi, xi, out=gradi)
                gradi *= 3 * SQRT_2_OVER_PI * GELU_TANH_COEFF
                gradi += SQRT_2_OVER_PI                     # k (1 + 3 c x^2)
                gradi *= xi
                gradi *= 1 - ti * ti                        # x (1 - t^2) k (1 + 3 c x^2)
                gradi += ti
                gradi += 1
                gradi *= 0.5
                gradi *= g_flat[i]
            parallel.for_each_row_block(backward_block, x_flat.size, x_flat.size)
            return (grad.reshape(x.shape),)
        return Tensor.from_op(out.reshape(x.shape), (x,), backward, "gelu_tanh")
    if approximate == "none":
        cdf, out = np.empty_like(x_flat), np.empty_like(x_flat)
        def forward_block(i):
            normal_cdf(x_flat[i], out=cdf[i], scratch=out[i])   # saved: Phi(x)
            np.multiply(x_flat[i], cdf[i], out=out[i])
        parallel.for_each_row_block(forward_block, x_flat.size, x_flat.size)
        def backward(g):
            g_flat, grad = g.reshape(-1), np.empty_like(x_flat)
            def backward_block(i):
                xi, gradi = x_flat[i], grad[i]
                # d/dx [x Phi(x)] = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
                np.multiply(xi, xi, out=gradi)
                gradi *= -0.5
                np.exp(gradi, out=gradi)
                gradi *= xi * (1 / math.sqrt(2 * math.pi))
                gradi += cdf[i]
                gradi *= g_flat[i]
            parallel.for_each_row_block(backward_block, x_flat.size, x_flat.size)
            return (grad.reshape(x.shape),)
        return Tensor.from_op(out.reshape(x.shape), (x,), backward, "gelu_erf")
    raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")


# Phi(x) = 0.5 (1 + erf(x / sqrt 2)) = 0.5 (1 + tanh(h(x))), with h(x) = atanh(erf(x / sqrt 2)).
# h is odd, smooth and grows like x^2 / 4, so x P(x^2) fits it closely, and tanh does the
# saturation that a polynomial cannot. P has degree 6, fitted (Lawson's weighted least squares)
# for the smallest largest error in Phi on [0, 4 sqrt 2]: below 1e-7 evaluated in float32, about
# one float32 ulp near 1 (tests/test_dtype_perf_invariants.py checks it against math.erf). P > 0
# everywhere, so beyond that range h only grows and Phi is exactly 0 or 1, up to infinity.
# Coefficients of P in powers of x^2, the highest first (the last, sqrt(2 / pi), is h's slope at 0).
_PHI_TANH_P = (1.7562773438692422e-09, -1.32266275886179e-07, 3.964773125941543e-06, -5.5306316666777756e-05,
               -3.2594744759271174e-05, 0.03633308440890312, 0.7978849414898249)


def normal_cdf(x, out=None, scratch=None):
    """Phi(x) = 0.5 (1 + erf(x / sqrt 2)), the standard normal CDF, elementwise in the dtype of x.

    float64 goes through special.erf, exact to float64 (what gradcheck needs). float32 uses the
    tanh form above: 20 passes over the array and no masks, a third fewer than a rational erf,
    and no new arrays when `out` and `scratch` (as large as x) are given.
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        phi = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
        if out is None:
            return phi
        out[...] = phi
        return out
    h = np.empty_like(x) if out is None else out
    with np.errstate(over="ignore"):                        # |x| > 1e4 overflows to inf, and tanh(inf) = 1
        x2 = np.multiply(x, x, out=np.empty_like(x) if scratch is None else scratch)
        np.multiply(x2, _PHI_TANH_P[0], out=h)              # Horner's rule in x^2 ...
        h += _PHI_TANH_P[1]
        for coefficient in _PHI_TANH_P[2:]:
            h *= x2
            h += coefficient
        h *= x                                              # ... times x: h(x)
    np.tanh(h, out=h)
    h *= 0.5
    h += 0.5
    return h


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
