"""LayerNorm as one op: its forward and its backward, each a few lines of NumPy over rows.

    mean = mean_c(x)                    var = mean_c((x - mean)^2)
    rstd = 1 / sqrt(var + eps)          xhat = (x - mean) * rstd
    out  = xhat * weight + bias         over the last axis C (biased variance, as nn.LayerNorm)

`layer_norm_forward` and `layer_norm_backward` work on a block of rows, as llm.c's
layernorm_forward / layernorm_backward do. The op `layer_norm` runs them when a debugger is
attached, and otherwise the same arithmetic in place in its own buffers (speed/kernels.py: the
same bits, tests/test_kernels.py), over every row (on all cores for large arrays,
speed/threads.py: the same bits again). The derivation is in docs/gradients.md.
"""

import numpy as np

from numpretrain.autograd.tensor import Tensor
from numpretrain.speed import kernels, threads
from numpretrain.speed.kernels import row_mean, sum_over_rows


def layer_norm_forward(x, weight, bias, eps):
    """x (n, C) -> out (n, C), and what the backward needs: xhat (n, C) and rstd (n, 1)."""
    centered = x - row_mean(x)                            # x - mean
    rstd = 1 / np.sqrt(row_mean(centered, centered) + eps)  # 1 / sqrt(var + eps)
    xhat = centered * rstd
    return xhat * weight + bias, xhat, rstd


def layer_norm_backward(g, xhat, rstd, weight):
    """g (n, C), the gradient of out -> dx (n, C), and the rows' terms of dweight and dbias.

    With gxhat = g * weight (the gradient reaching xhat), x enters xhat three ways: directly,
    through the mean and through the variance. Summing the three:
        dx = rstd * (gxhat - mean_c(gxhat) - xhat * mean_c(gxhat * xhat))
    and for the parameters, summed over rows by the caller:
        dweight = g * xhat,  dbias = g
    """
    g_xhat = g * xhat                                     # also dweight's rows
    dx = g * weight                                       # gxhat
    dx -= row_mean(g, weight)                             # - mean(gxhat)
    dx -= xhat * row_mean(g_xhat, weight)                 # - xhat * mean(gxhat * xhat)
    dx *= rstd
    return dx, g_xhat


def layer_norm(x, weight, bias, eps=1e-5):
    """LayerNorm of x (..., C) over its last axis, with weight and bias (C,)."""
    C = x.shape[-1]
    x2 = x.data.reshape(-1, C)                            # (N, C), N = the leading axes' product
    N = len(x2)
    out, xhat, rstd = np.empty_like(x2), np.empty_like(x2), np.empty((N, 1), x2.dtype)   # saved: xhat, rstd

    def forward_rows(rows):                               # rows: a slice of range(N)
        if threads.debugger_attached():                   # a debugger steps through the formula
            out[rows], xhat[rows], rstd[rows] = layer_norm_forward(x2[rows], weight.data, bias.data, eps)
        else:                                             # the same arithmetic in place, same bits
            kernels.layer_norm_forward(out[rows], xhat[rows], rstd[rows], x2[rows], weight.data, bias.data, eps)

    threads.for_each_row_block(forward_rows, N, x2.size)
    def backward(g):                                      # g: (..., C)
        g2 = g.reshape(-1, C)                             # (N, C)
        dx, g_xhat = np.empty_like(g2), np.empty_like(g2)

        def backward_rows(rows):
            if threads.debugger_attached():
                dx[rows], g_xhat[rows] = layer_norm_backward(g2[rows], xhat[rows], rstd[rows], weight.data)
            else:
                kernels.layer_norm_backward(dx[rows], g_xhat[rows], g2[rows], xhat[rows], rstd[rows], weight.data)

        threads.for_each_row_block(backward_rows, N, g2.size)
        return dx.reshape(x.shape), sum_over_rows(g_xhat), sum_over_rows(g2)   # dweight, dbias: sums over rows

    return Tensor.from_op(out.reshape(x.shape), (x, weight, bias), backward, "layer_norm")
