"""In-place forms of the engine's hottest formulas, and two fast reductions.

NumPy cannot fuse a formula: `0.5 * x * (1 + t)` makes a new array for every operator. For
the MLP's hidden layer (B*T*4C floats, 2 MB at the benchmark's small size) each such array
is a pass through memory and an allocation. The kernels below compute exactly what the
engine's plain forms compute (numpretrain/autograd/gelu.py, layer_norm.py, attention.py),
operation for operation in the same order, so the bits are the same, but into buffers the
op owns, with `out=` and in-place operators. tests/test_kernels.py checks each against its
plain form bit for bit. Measured on the small GPT's shapes (B 16, T 64, C 128; one thread,
forward and backward, benchmarks/op_profile.py): GELU tanh 1.25 ms against 1.78 for the
plain form, exact GELU 1.75 against 2.0, LayerNorm 0.38 against 0.48, attention 2.5 against
2.8: together about 7% of a training step.

Read the plain forms to learn the math; read these to see where the time went.
"""

import math

import numpy as np

from numpretrain.speed import threads

# ----- reductions -----

def row_mean(a, times=None):
    """(n, C) -> (n, 1): the mean of each row of a, or of a * times (times: (n, C) or (C,)).

    By np.einsum, which sums short rows about 3x faster than np.mean and never forms the
    product a * times; and its sum for a row never depends on the other rows, so the result
    is the same however the rows are split over threads.
    """
    if times is None:
        sums = np.einsum("nc->n", a)
    else:
        sums = np.einsum("nc,nc->n" if times.ndim == 2 else "nc,c->n", a, times)
    sums *= 1.0 / a.shape[1]
    return sums[:, None]


def sum_over_rows(a):
    """(N, C) -> (C,): column sums as the product ones @ a, which BLAS does 2-3x faster than
    np.sum(axis=0) or np.einsum. Call it on one thread: a sum across rows split between
    threads would change with the split, and the bits with it."""
    return np.ones(len(a), a.dtype) @ a


def apply_row_vector(ufunc, x2, vector, out):
    """out = ufunc(x2, vector) for x2 (N, C) and a row vector (C,), exactly as broadcasting gives it.

    NumPy broadcasts a vector over rows shorter than its iteration buffer (np.getbufsize(),
    8192 elements) by copying the vector into that buffer again for every row, which makes
    `x2 * w` at (1024, 128) 1.6x slower than a product of two (1024, 128) arrays. Here k rows
    are viewed as one row of k * C elements, against the vector tiled k times: every element
    meets the same numbers, with no per-row copies (LayerNorm's weight and bias: ~1% of a step).
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


# ----- LayerNorm (autograd/layer_norm.py) -----

def layer_norm_forward(out, xhat, rstd, x, weight, bias, eps):
    """out, xhat (n, C) and rstd (n, 1) of layer_norm_forward(x, weight, bias, eps), in place."""
    np.subtract(x, row_mean(x), out=xhat)                  # centered
    rstd[:] = row_mean(xhat, xhat)                         # variance ...
    rstd += eps
    np.sqrt(rstd, out=rstd)
    np.divide(1, rstd, out=rstd)                           # ... and 1 / sqrt(var + eps)
    xhat *= rstd
    apply_row_vector(np.multiply, xhat, weight, out)
    apply_row_vector(np.add, out, bias, out)


def layer_norm_backward(dx, g_xhat, g, xhat, rstd, weight):
    """dx and g * xhat (n, C) of layer_norm_backward(g, xhat, rstd, weight), in place."""
    np.multiply(g, xhat, out=g_xhat)
    mean_gxhat = row_mean(g, weight)
    mean_gxhat_xhat = row_mean(g_xhat, weight)
    apply_row_vector(np.multiply, g, weight, dx)             # gxhat = g * weight
    dx -= mean_gxhat
    dx -= xhat * mean_gxhat_xhat
    dx *= rstd


# ----- GELU (autograd/gelu.py): k = sqrt(2 / pi), c = 0.044715 -----

def gelu_tanh_forward(out, t, x, k, c):
    """out and t of gelu_tanh_forward(x), in place."""
    np.multiply(x, x, out=t)                               # t = tanh((x^2 (k c) + k) x)
    t *= k * c
    t += k
    t *= x
    np.tanh(t, out=t)
    np.add(t, 1, out=out)                                  # out = (1 + t) x 0.5
    out *= x
    out *= 0.5


def gelu_tanh_backward(grad, g, x, t, k, c):
    """grad = gelu_tanh_backward(g, x, t), in place."""
    np.multiply(x, x, out=grad)                            # x dt/dx = (x^2 (3 k c) + k) x (1 - t^2)
    grad *= 3 * k * c
    grad += k
    grad *= x
    grad *= 1 - t * t
    grad += t                                              # (x dt/dx + t + 1) 0.5 g
    grad += 1
    grad *= 0.5
    grad *= g


def normal_cdf_float32(out, x, scratch, polynomial):
    """out = 0.5 (1 + tanh(x P(x^2))), P's coefficients highest first, as gelu.normal_cdf's float32 form."""
    with np.errstate(over="ignore"):                        # |x| > 1e4 overflows to inf, and tanh(inf) = 1
        x2 = np.multiply(x, x, out=scratch)
        np.multiply(x2, polynomial[0], out=out)
        out += polynomial[1]
        for coefficient in polynomial[2:]:
            out *= x2
            out += coefficient
        out *= x
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def gelu_erf_forward(out, cdf, x, polynomial):
    """out and cdf of gelu_erf_forward(x) for float32 x, in place."""
    normal_cdf_float32(cdf, x, out, polynomial)            # out as scratch until the last line
    np.multiply(x, cdf, out=out)


def gelu_erf_backward(grad, g, x, cdf, inv_sqrt_2pi):
    """grad = gelu_erf_backward(g, x, cdf), in place."""
    np.multiply(x, x, out=grad)                            # phi(x) x = exp(x^2 (-0.5)) (x / sqrt(2 pi))
    grad *= -0.5
    np.exp(grad, out=grad)
    grad *= x * inv_sqrt_2pi
    grad += cdf
    grad *= g


# ----- attention (autograd/attention.py) -----

def attention_forward(y, probs, q, k, v, allowed, keep, softmax_in_place):
    """y (b, nh, T, hs) and probs (b, nh, T, Tk) of attention_forward(q, k, v, allowed, keep),
    written straight into the op's buffers (y may be a strided view of the merged heads)."""
    np.matmul(q, k.swapaxes(-1, -2), out=probs)
    probs *= 1.0 / math.sqrt(q.shape[-1])
    if allowed is not None:
        np.copyto(probs, -np.inf, where=~allowed)
    softmax_in_place(probs)
    np.matmul(probs if keep is None else probs * keep, v, out=y)


def attention_backward(dq, dk, dv, gy, q, k, v, probs, keep):
    """dq, dk, dv of attention_backward(gy, q, k, v, probs, keep), written into the op's views."""
    dropped = probs if keep is None else probs * keep
    np.matmul(dropped.swapaxes(-1, -2), gy, out=dv)
    dscores = gy @ v.swapaxes(-1, -2)
    if keep is not None:
        dscores *= keep
    dscores -= np.einsum("bhqk,bhqk->bhq", dscores, probs)[..., None]
    dscores *= probs
    dscores *= 1.0 / math.sqrt(q.shape[-1])
    np.matmul(dscores, k, out=dq)
    np.matmul(dscores.swapaxes(-1, -2), q, out=dk)


# ----- AdamW (training/optimizers.py) -----

ADAM_CHUNK = 1 << 16   # elements per pass: the scratch array stays in cache, and no temporary is as big as the model


def adamw_update_flat(params, grads, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """adamw_update of every array in `params`, in place, with their moments laid end to end in
    the flat arrays m and v and one step count t: the gradients are gathered into one flat
    array, which becomes the step to subtract, chunk by chunk, on all threads."""
    step = np.empty_like(m)
    np.concatenate([g.reshape(-1) for g in grads], out=step)
    step_size = lr / (1 - beta1 ** t)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)

    def update(rows):                                      # rows: a slice of the flat arrays
        scratch = np.empty(min(ADAM_CHUNK, rows.stop - rows.start), m.dtype)
        for start in range(rows.start, rows.stop, ADAM_CHUNK):
            chunk = slice(start, min(start + ADAM_CHUNK, rows.stop))
            g, m_c, v_c, s = step[chunk], m[chunk], v[chunk], scratch[:chunk.stop - chunk.start]
            m_c *= beta1                                   # m = b1 m + (1 - b1) g
            np.multiply(g, 1 - beta1, out=s)
            m_c += s
            v_c *= beta2                                   # v = b2 v + (1 - b2) g^2
            np.multiply(g, g, out=s)
            s *= 1 - beta2
            v_c += s
            np.sqrt(v_c, out=s)                            # sqrt(v_hat) + eps
            s /= bias_correction2_sqrt
            s += eps
            np.divide(m_c, s, out=g)                       # the step: m / (sqrt(v_hat) + eps) * lr / (1 - b1^t)
            g *= step_size

    threads.for_each_row_block(update, len(step), len(step))
    start = 0
    for param in params:
        param *= 1 - lr * weight_decay                     # decoupled weight decay, before the step
        param -= step[start:start + param.size].reshape(param.shape)
        start += param.size
