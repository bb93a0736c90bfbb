"""GELU, x * Phi(x), as one op: GPT's tanh form and BERT's exact erf form.

    tanh form:  gelu(x) = 0.5 x (1 + tanh(k (x + c x^3))),  k = sqrt(2 / pi), c = 0.044715
    exact form: gelu(x) = x Phi(x),  Phi(x) = 0.5 (1 + erf(x / sqrt 2)), the standard normal CDF

Each form is a forward / backward pair of plain NumPy functions on arrays (the backward's
derivation is in its docstring and in docs/gradients.md). The op `gelu` runs them when a
debugger is attached, and otherwise the same arithmetic in place in its own buffers
(speed/kernels.py: the same bits, tests/test_kernels.py), over blocks of the flattened array
(on all cores for large arrays, speed/threads.py: the same bits again).
"""

import functools
import math

import numpy as np

from numpretrain.autograd.erf import erf
from numpretrain.autograd.tensor import Tensor
from numpretrain.speed import kernels, threads

GELU_TANH_COEFF = 0.044715  # c, from Hendrycks & Gimpel (2016); GPT-2's "gelu_new"
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)  # k
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)  # the normal density's constant


def gelu_tanh_forward(x):
    """-> (gelu(x), t), t = tanh(k (x + c x^3)) saved for the backward (x^2 is cheaper to redo than to keep)."""
    t = np.tanh((x * x * (SQRT_2_OVER_PI * GELU_TANH_COEFF) + SQRT_2_OVER_PI) * x)   # k (x + c x^3) = x (k + k c x^2)
    return (1 + t) * x * 0.5, t


def gelu_tanh_backward(g, x, t):
    """d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), times g."""
    x_dt = (x * x * (3 * SQRT_2_OVER_PI * GELU_TANH_COEFF) + SQRT_2_OVER_PI) * x * (1 - t * t)  # x dt/dx
    return (x_dt + t + 1) * 0.5 * g


def gelu_erf_forward(x):
    """-> (gelu(x), Phi(x)), Phi saved for the backward."""
    cdf = normal_cdf(x)
    return x * cdf, cdf


def gelu_erf_backward(g, x, cdf):
    """d/dx [x Phi(x)] = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi), times g."""
    return (np.exp(x * x * -0.5) * (x * INV_SQRT_2PI) + cdf) * g


def gelu(x, approximate="tanh"):
    """GELU of x: approximate="tanh" is GPT's form, "none" the exact erf form BERT uses."""
    if approximate not in ("tanh", "none"):
        raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
    forward, backward_of = (gelu_tanh_forward, gelu_tanh_backward) if approximate == "tanh" else \
        (gelu_erf_forward, gelu_erf_backward)
    forward_in_place, backward_in_place = _in_place_forms(approximate, x.dtype)
    x_flat = x.data.reshape(-1)
    out, saved = np.empty_like(x_flat), np.empty_like(x_flat)    # saved: t (tanh form) or Phi(x) (erf form)

    def forward_block(i):                                         # i: a slice of the flat array
        if threads.debugger_attached():                           # a debugger steps through the formula
            out[i], saved[i] = forward(x_flat[i])
        else:                                                     # the same arithmetic in place, same bits
            forward_in_place(out[i], saved[i], x_flat[i])

    threads.for_each_row_block(forward_block, x_flat.size, x_flat.size)
    def backward(g):
        g_flat, grad = g.reshape(-1), np.empty_like(x_flat)

        def backward_block(i):
            if threads.debugger_attached():
                grad[i] = backward_of(g_flat[i], x_flat[i], saved[i])
            else:
                backward_in_place(grad[i], g_flat[i], x_flat[i], saved[i])

        threads.for_each_row_block(backward_block, x_flat.size, x_flat.size)
        return (grad.reshape(x.shape),)

    return Tensor.from_op(out.reshape(x.shape), (x,), backward, "gelu_tanh" if approximate == "tanh" else "gelu_erf")


def _in_place_forms(approximate, dtype):
    """(forward(out, saved, x), backward(grad, g, x, saved)): the forms above computed into the op's
    buffers by speed/kernels.py, with the same bits (tests/test_kernels.py) and 1.2-1.4x faster."""
    if approximate == "tanh":
        return (functools.partial(kernels.gelu_tanh_forward, k=SQRT_2_OVER_PI, c=GELU_TANH_COEFF),
                functools.partial(kernels.gelu_tanh_backward, k=SQRT_2_OVER_PI, c=GELU_TANH_COEFF))
    if dtype == np.float32:
        return (functools.partial(kernels.gelu_erf_forward, polynomial=_PHI_TANH_P),
                functools.partial(kernels.gelu_erf_backward, inv_sqrt_2pi=INV_SQRT_2PI))

    def forward(out, cdf, x):                                     # float64: erf.py's exact Phi, for gradcheck
        out[...], cdf[...] = gelu_erf_forward(x)

    def backward(grad, g, x, cdf):
        grad[...] = gelu_erf_backward(g, x, cdf)

    return forward, backward


# Phi(x) = 0.5 (1 + erf(x / sqrt 2)) = 0.5 (1 + tanh(h(x))), with h(x) = atanh(erf(x / sqrt 2)).
# h is odd, smooth and grows like x^2 / 4, so x P(x^2) fits it closely, and tanh does the
# saturation that a polynomial cannot. P has degree 6, fitted (Lawson's weighted least squares)
# for the smallest largest error in Phi on [0, 4 sqrt 2]: below 1e-7 evaluated in float32, about
# one float32 ulp near 1 (tests/test_dtype_perf_invariants.py checks it against math.erf). P > 0
# everywhere, so beyond that range h only grows and Phi is exactly 0 or 1, up to infinity.
# Coefficients of P in powers of x^2, the highest first (the last, h's slope at 0, fits to within
# 5e-7 of sqrt(2 / pi), the exact slope).
_PHI_TANH_P = (1.7562773438692422e-09, -1.32266275886179e-07, 3.964773125941543e-06, -5.5306316666777756e-05,
               -3.2594744759271174e-05, 0.03633308440890312, 0.7978849414898249)


def normal_cdf(x):
    """Phi(x) = 0.5 (1 + erf(x / sqrt 2)), the standard normal CDF, elementwise in the dtype of x.

    float64 goes through erf.py, exact to float64 (what gradcheck needs). float32 uses the
    tanh form above, 0.5 (1 + tanh(x P(x^2))) by Horner's rule (speed/kernels.py): 20 passes
    over the array and no masks, a third fewer than a rational erf (BERT's step 3% faster).
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        return 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
    return kernels.normal_cdf_float32(np.empty_like(x), x, np.empty_like(x), _PHI_TANH_P)
