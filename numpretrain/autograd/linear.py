"""The affine map of a Linear layer as one op: x @ weight + bias over the last axis of x.

    out = x W + b          x (..., in), W (in, out), b (out,)
    backward: dx = g W^T,  dW = x^T g,  db = sum of g over every leading position

The leading axes are flattened so BLAS sees one large GEMM, (N, in) @ (in, out) with N = B*T,
in the forward and in each of the two backward products (measured on a (16, 64, 128) x
(128, 384) float32 case: about 1.3x faster forward and 4x faster weight gradient than a batched
matmul whose gradient is then summed over the batch).
"""

from numpretrain.autograd.tensor import Tensor
from numpretrain.speed.kernels import sum_over_rows


def linear(x, weight, bias=None):
    """x @ weight + bias over the last axis of x (any leading shape), weight (in, out)."""
    n_in, n_out = weight.shape
    x2 = x.data.reshape(-1, n_in)                       # (N, in), a view when x is contiguous; saved
    out = x2 @ weight.data                              # (N, out)
    if bias is not None:
        out += bias.data

    def backward(g):                                    # g: (..., out)
        g2 = g.reshape(-1, n_out)                       # (N, out)
        gx = (g2 @ weight.data.T).reshape(x.shape) if x.requires_grad else None     # dx = g W^T
        gw = x2.T @ g2 if weight.requires_grad else None                              # dW = x^T g
        if bias is None:
            return gx, gw
        return gx, gw, sum_over_rows(g2) if bias.requires_grad else None             # db = sum_n g_n

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out.reshape(x.shape[:-1] + (n_out,)), parents, backward, "linear")
