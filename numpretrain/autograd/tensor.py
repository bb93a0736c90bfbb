"""Tensor: an ndarray that remembers how it was made, and reverse-mode autodiff over it.

A Tensor made by an op keeps its parents and a `backward` closure written right
beneath the op's forward (see ops.py and the fused ops' files). `loss.backward()` sorts
the graph topologically (iteratively, so deep graphs are fine) and walks it in
reverse, handing each node's gradient to its closure, which returns one gradient
per parent, shaped exactly like that parent.

Rules the whole engine keeps:
- gradients accumulate (`+=` semantics) until `zero_grad` sets them to None;
- gradients of intermediate tensors are freed once used, unless `retain_grad()`;
- backward closures never modify the gradient they are given (it may be shared);
- under `no_grad()` ops build no graph at all.
"""

import contextlib

import numpy as np

# Imported from the module, not the package: the package attribute numpretrain.autograd.capture is the
# capture() context manager. Once, here: an import inside named() cost a microsecond per tensor.
from numpretrain.autograd.capture import record as _capture_record
from numpretrain.speed import memory

# float32 is what parameters and activations use by default; float64 is what
# gradcheck uses. Integers and booleans ride along as indices and masks.
SUPPORTED_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
DEFAULT_DTYPE = np.dtype(np.float32)

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph: for evaluation and generation."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


def _as_array(data, dtype=None):
    """User data as an ndarray. Python floats become float32 (as parameters are);
    NumPy arrays keep their dtype; ints and bools stay as indices and masks."""
    if isinstance(data, Tensor):
        data = data.data
    from_python = not isinstance(data, (np.ndarray, np.generic))
    array = np.asarray(data, dtype=dtype)
    if from_python and dtype is None and array.dtype.kind == "f":
        array = array.astype(DEFAULT_DTYPE)
    if array.dtype.kind not in "fiub" or (array.dtype.kind == "f" and array.dtype not in SUPPORTED_FLOAT_DTYPES):
        raise TypeError(f"unsupported dtype {array.dtype}: numpretrain computes in float32 or float64 "
                        "(integer and boolean arrays are accepted as indices and masks)")
    return array


class Tensor:
    """An ndarray `data`, its gradient `grad`, and the op that made it."""

    def __init__(self, data, requires_grad=False, name=None, dtype=None):
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype not in SUPPORTED_FLOAT_DTYPES:
            raise TypeError(f"only float32/float64 tensors can require grad, got {self.data.dtype}")
        self.grad = None
        self.requires_grad = requires_grad
        self.name = name
        self.op = None            # name of the op that made this tensor; None for a leaf
        self._parents = ()        # the tensors this one was computed from
        self._backward = None     # grad of output -> tuple of grads, one per parent
        self._retain_grad = False

    @staticmethod
    def from_op(data, parents, backward, op):
        """The output of an op. It joins the graph only if some parent needs a gradient."""
        out = Tensor.__new__(Tensor)
        out.data = data
        out.grad = None
        out.name = None
        out.op = op
        out._retain_grad = False
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        out._parents = parents if out.requires_grad else ()
        out._backward = backward if out.requires_grad else None
        return out

    # ----- looking at it -----
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def item(self):
        return self.data.item()

    def numpy(self):
        return self.data

    def detach(self):
        """The same data, cut off from the graph."""
        return Tensor(self.data, name=self.name)

    def named(self, name):
        """Give this tensor a name (shown in graphs and errors); returns self."""
        self.name = name
        _capture_record(self)        # capture contexts record tensors by name
        return self

    def retain_grad(self):
        """Keep this intermediate tensor's .grad after backward (leaves always keep theirs)."""
        self._retain_grad = True
        return self

    @property
    def is_leaf(self):
        return self._backward is None

    def __repr__(self):
        label = f", name={self.name!r}" if self.name else ""
        op = f", op={self.op}" if self.op else ""
        grad = "" if self.grad is None else f", grad={np.array2string(self.grad, precision=4, threshold=6)}"
        return (f"Tensor({np.array2string(self.data, precision=4, threshold=6)}, "
                f"shape={self.shape}, dtype={self.dtype}{label}{op}{grad})")

    # ----- the backward pass -----
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's .grad that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar, but this tensor "
                                   f"has shape {self.shape}; pass grad= of that shape")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad) has shape {grad.shape}, but the tensor has shape {self.shape}")

        memory.keep_freed_memory()      # once per process: reuse freed arrays (speed/memory.py)
        order = self._topological_order()
        pending = {id(self): grad}  # gradients on their way to intermediate nodes
        for node in reversed(order):
            node_grad = pending.pop(id(node), None)
            if node_grad is None:
                continue
            if node._backward is None or node._retain_grad:
                # .grad is the tensor's own array in its own dtype: the gradient handed down may be
                # shared with another input (add gives g to both) or a read-only view (sum's backward),
                # and an optimizer or clipper may update .grad in place
                own_grad = node_grad.astype(node.dtype)  # a copy
                node.grad = own_grad if node.grad is None else node.grad + own_grad
            if node._backward is None:
                continue
            parent_grads = node._backward(node_grad)
            for parent, parent_grad in zip(node._parents, parent_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                assert parent_grad.shape == parent.shape, (
                    f"{node.op} produced a gradient of shape {parent_grad.shape} for an input of shape {parent.shape}")
                key = id(parent)
                pending[key] = parent_grad if key not in pending else pending[key] + parent_grad

    def _topological_order(self):
        """Every node reachable from self, parents before children (iterative DFS)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if id(parent) not in visited and parent.requires_grad:
                    stack.append((parent, False))
        return order

    def zero_grad(self):
        self.grad = None

    # ----- operators: thin wrappers over ops.py -----
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __neg__(self): return ops.neg(self)
    def __pow__(self, exponent): return ops.pow(self, exponent)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __getitem__(self, index): return ops.getitem(self, index)

    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)
    def reshape(self, *shape): return ops.reshape(self, shape[0] if len(shape) == 1 else shape)
    def transpose(self, *axes): return ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))
    def permute(self, *axes): return ops.transpose(self, axes[0] if len(axes) == 1 else axes)
    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def tanh(self): return ops.tanh(self)
    def relu(self): return ops.relu(self)

    @property
    def T(self):
        return ops.transpose(self, None)

    # Tensors are graph nodes: identity, not value, decides equality and hashing.
    __hash__ = object.__hash__

    # NumPy must not treat a Tensor as an opaque object: without this, `ndarray + tensor` would
    # loop over the array and return an object array of Tensors. With it, NumPy steps aside and
    # Python calls Tensor.__radd__ (and friends), so ndarrays mix in like Python numbers.
    __array_ufunc__ = None


from numpretrain.autograd import ops  # noqa: E402  (ops imports Tensor; the operators above call into it)
