"""Primitive ops: each forward, with its backward written right beneath it.

Every op computes its output with NumPy and hands `Tensor.from_op` a closure
`backward(g)` that maps the output's gradient `g` to one gradient per input,
shaped exactly like that input. Broadcasting is undone by `unbroadcast`, which
sums a gradient back down to the shape of the input it belongs to.
"""

import numpy as np

from numpretrain.autograd.tensor import Tensor


def as_tensor(x, like=None):
    """Wrap a Python number or ndarray; numbers take the dtype of a float `like` (so 2 * x stays float32)."""
    if isinstance(x, Tensor):
        return x
    # only a float `like` lends its dtype: an integer tensor would truncate 0.5 to 0
    if like is not None and like.dtype.kind == "f" and not isinstance(x, np.ndarray):
        return Tensor(np.asarray(x, dtype=like.dtype))
    return Tensor(x)


def _operands(a, b):
    """Two tensors from a binary op's arguments; a plain number takes the other's dtype."""
    like = a if isinstance(a, Tensor) else b
    return as_tensor(a, like), as_tensor(b, like)


def unbroadcast(grad, shape):
    """Sum `grad` over the axes that broadcasting added or stretched, back to `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _broadcast_shapes(op, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None


# ----- elementwise arithmetic -----

def add(a, b):
    a, b = _operands(a, b)
    _broadcast_shapes("add", a, b)
    def backward(g):
        return unbroadcast(g, a.shape), unbroadcast(g, b.shape)
    return Tensor.from_op(a.data + b.data, (a, b), backward, "add")


def sub(a, b):
    a, b = _operands(a, b)
    _broadcast_shapes("sub", a, b)
    def backward(g):
        return unbroadcast(g, a.shape), unbroadcast(-g, b.shape)
    return Tensor.from_op(a.data - b.data, (a, b), backward, "sub")


def mul(a, b):
    a, b = _operands(a, b)
    _broadcast_shapes("mul", a, b)
    def backward(g):
        ga = unbroadcast(g * b.data, a.shape) if a.requires_grad else None
        gb = unbroadcast(g * a.data, b.shape) if b.requires_grad else None
        return ga, gb
    return Tensor.from_op(a.data * b.data, (a, b), backward, "mul")


def div(a, b):
    a, b = _operands(a, b)
    _broadcast_shapes("div", a, b)
    out = a.data / b.data
    def backward(g):
        ga = unbroadcast(g / b.data, a.shape) if a.requires_grad else None
        gb = unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None  # d(a/b)/db = -a/b^2
        return ga, gb
    return Tensor.from_op(out, (a, b), backward, "div")


def neg(a):
    def backward(g):
        return (-g,)
    return Tensor.from_op(-a.data, (a,), backward, "neg")


def pow(a, exponent):
    """a ** exponent for a constant Python number `exponent`."""
    if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
        raise TypeError("pow: the exponent must be a Python number (a tensor exponent is not supported)")
    exponent = np.asarray(exponent).item()  # a Python number: a NumPy float64 would turn float32 into float64
    def backward(g):
        return (g * exponent * a.data ** (exponent - 1),)
    return Tensor.from_op(a.data ** exponent, (a,), backward, "pow")


# ----- matrix multiply -----

def matmul(a, b):
    """a @ b for 2-D or batched operands (batch dimensions broadcast); 1-D operands as in NumPy."""
    a, b = _operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    inner = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if a.shape[-1] != inner:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit: {a.shape[-1]} (last of the first) "
                         f"!= {inner} ({'second-to-last' if b.ndim > 1 else 'length'} of the second)")
    if a.ndim == 1 or b.ndim == 1:
        # as in NumPy: a vector on the left is a row (1, k), on the right a column (k, 1),
        # and the axis it gained is dropped from the result again
        out = matmul(reshape(a, (1, -1)) if a.ndim == 1 else a,
                     reshape(b, (-1, 1)) if b.ndim == 1 else b)        # (..., n, m)
        rows = out.shape[-2:-1] if a.ndim > 1 else ()
        cols = out.shape[-1:] if b.ndim > 1 else ()
        return reshape(out, out.shape[:-2] + rows + cols)
    if a.ndim > 2 and b.ndim == 2:
        # (..., n, k) @ (k, m), e.g. an LM head (B, T, C) @ (C, V), as one GEMM (B*T, k) @ (k, m):
        # BLAS gets one large product instead of B small ones, and b's gradient is one product
        # instead of a (B, k, m) stack summed over the batch (3-5x faster at the benchmark's sizes)
        out = matmul(reshape(a, (-1, a.shape[-1])), b)                 # (N, m)
        return reshape(out, a.shape[:-1] + b.shape[-1:])                # (..., n, m)
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast") from None
    def backward(g):                                   # g: (..., n, m)
        ga = unbroadcast(g @ b.data.swapaxes(-1, -2), a.shape) if a.requires_grad else None  # (..., n, k)
        gb = unbroadcast(a.data.swapaxes(-1, -2) @ g, b.shape) if b.requires_grad else None  # (..., k, m)
        return ga, gb
    return Tensor.from_op(a.data @ b.data, (a, b), backward, "matmul")


# ----- reductions -----

def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < ndim:  # checked, because `% ndim` would quietly wrap axis 5 round to another
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
    return tuple(ax % ndim for ax in axes)


def _expand_reduced(g, shape, axes, keepdims):
    """Put back the reduced axes (as size 1) so g broadcasts against the input."""
    return g if keepdims else np.expand_dims(g, axes)


def sum(a, axis=None, keepdims=False):
    axes = _normalize_axes(axis, a.ndim)
    def backward(g):
        return (np.broadcast_to(_expand_reduced(g, a.shape, axes, keepdims), a.shape),)
    return Tensor.from_op(np.sum(a.data, axis=axes, keepdims=keepdims), (a,), backward, "sum")


def mean(a, axis=None, keepdims=False):
    axes = _normalize_axes(axis, a.ndim)
    count = int(np.prod([a.shape[ax] for ax in axes]))
    # (count or 1), not max(count, 1): in this module `max` is the op below, not the builtin
    return mul(sum(a, axis, keepdims), 1.0 / (count or 1))


def max(a, axis=None, keepdims=False):
    """Maximum over axes; the gradient goes to the maximal entries (split evenly between ties)."""
    axes = _normalize_axes(axis, a.ndim)
    out = np.max(a.data, axis=axes, keepdims=True)
    def backward(g):
        is_max = (a.data == out).astype(a.dtype)
        share = is_max / is_max.sum(axis=axes, keepdims=True)
        return (share * _expand_reduced(g, a.shape, axes, keepdims),)
    return Tensor.from_op(out if keepdims else np.squeeze(out, axes), (a,), backward, "max")


# ----- shape -----

def reshape(a, shape):
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) into {shape}") from None
    def backward(g):
        return (g.reshape(a.shape),)
    return Tensor.from_op(out, (a,), backward, "reshape")


def transpose(a, axes=None):
    """Permute axes (reverse them when axes is None), like np.transpose."""
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(axes)
    in_range = all(-a.ndim <= ax < a.ndim for ax in axes)  # before `%`, which would wrap 2 round to 0
    if not in_range or sorted(ax % a.ndim for ax in axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the axes of a tensor of shape {a.shape}")
    axes = tuple(ax % a.ndim for ax in axes)
    inverse = tuple(np.argsort(axes))
    def backward(g):
        return (g.transpose(inverse),)
    return Tensor.from_op(a.data.transpose(axes), (a,), backward, "transpose")


def _is_basic_index(index):
    """Slices, ints, None and Ellipsis select each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (slice, int, np.integer)) or p is None or p is Ellipsis for p in parts)


def getitem(a, index):
    """x[index] for slices and integer arrays; backward scatters (and adds repeats) into zeros."""
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    try:
        out = a.data[index]
    except IndexError as error:
        raise IndexError(f"getitem: {error} (tensor shape {a.shape})") from None
    def backward(g):
        grad = np.zeros_like(a.data)
        if _is_basic_index(index) or _selects_each_once(index, a.shape):
            grad[index] = g            # each element picked at most once: assigning is adding
        else:
            np.add.at(grad, index, g)  # an index may repeat: its gradients add up
        return (grad,)
    return Tensor.from_op(out, (a,), backward, "getitem")


def _selects_each_once(index, shape):
    """True when `index` is integer arrays alone (like BERT's hidden[rows, cols] at the masked
    positions) naming distinct positions, so that backward may assign instead of calling np.add.at,
    which is about 10x slower. Other advanced indices answer False (and keep np.add.at)."""
    parts = index if isinstance(index, tuple) else (index,)
    arrays = [np.asarray(p) for p in parts]
    if not arrays or len(arrays) > len(shape) or any(p.dtype.kind not in "iu" for p in arrays):
        return False
    flat = np.ravel_multi_index(np.broadcast_arrays(*arrays), shape[:len(arrays)], mode="wrap")  # wrap: -1 is last
    return len(np.unique(flat)) == flat.size


def concatenate(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    try:
        out = np.concatenate([t.data for t in tensors], axis=axis)
    except ValueError as error:
        raise ValueError(f"concatenate: shapes {[t.shape for t in tensors]} along axis {axis}: {error}") from None
    boundaries = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    def backward(g):
        return tuple(np.split(g, boundaries, axis=axis))
    return Tensor.from_op(out, tuple(tensors), backward, "concatenate")


def stack(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    try:
        out = np.stack([t.data for t in tensors], axis=axis)
    except ValueError as error:
        raise ValueError(f"stack: shapes {[t.shape for t in tensors]}: {error}") from None
    def backward(g):
        return tuple(np.moveaxis(g, axis, 0))
    return Tensor.from_op(out, tuple(tensors), backward, "stack")


# ----- elementwise functions -----

def exp(a):
    out = np.exp(a.data)
    def backward(g):
        return (g * out,)
    return Tensor.from_op(out, (a,), backward, "exp")


def log(a):
    def backward(g):
        return (g / a.data,)
    return Tensor.from_op(np.log(a.data), (a,), backward, "log")


def sqrt(a):
    out = np.sqrt(a.data)
    def backward(g):
        return (g * 0.5 / out,)
    return Tensor.from_op(out, (a,), backward, "sqrt")


def tanh(a):
    out = np.tanh(a.data)
    def backward(g):
        return (g * (1 - out * out),)
    return Tensor.from_op(out, (a,), backward, "tanh")


def relu(a):
    def backward(g):
        return (g * (a.data > 0),)
    return Tensor.from_op(np.maximum(a.data, 0), (a,), backward, "relu")


# ----- selection by a mask -----

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
