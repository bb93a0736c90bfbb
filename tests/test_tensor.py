"""The engine (numpretrain/autograd/tensor.py): accumulation, retained and freed gradients, no_grad,
detach, dtypes, deep graphs, and the graph printers.

The float32 test is the one that guards speed: it instruments every node of a float32
graph so that every array a forward or backward produces is checked, not just the
final output and the leaves' gradients (which the engine casts to the leaf's dtype).
"""

import math
import re

import numpy as np
import pytest
from float32_check import instrument_float32

from numpretrain import Tensor, capture, graph_dot, graph_text, is_grad_enabled, no_grad, ops, self_attention
from numpretrain import functional as F


def leaf(array, name=None, dtype=np.float64):
    return Tensor(np.array(array, dtype=dtype), requires_grad=True, name=name)


# ----- accumulation, retained and freed gradients -----

def test_gradients_accumulate_over_two_backward_passes():
    x = leaf([1.0, -2.0, 3.0], "x")
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    (3 * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data + 3)


def test_backward_twice_through_the_same_graph_doubles_the_gradient():
    x = leaf([1.0, 2.0], "x")
    loss = (x * x).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(x.grad, 4 * x.data)


def test_zero_grad_resets_to_none():
    x = leaf([1.0, 2.0], "x")
    (x * 2).sum().backward()
    x.zero_grad()
    assert x.grad is None
    (x * 5).sum().backward()
    np.testing.assert_array_equal(x.grad, [5, 5])


def test_gradients_from_several_paths_add_up():
    x = leaf([0.5, -1.5], "x")
    z = x * 2
    (z * z + z + x).sum().backward()        # d/dx (4x^2 + 2x + x) = 8x + 3
    np.testing.assert_allclose(x.grad, 8 * x.data + 3)
    y = leaf([3.0], "y")
    (y + y).backward()
    np.testing.assert_array_equal(y.grad, [2.0])


def test_retain_grad_keeps_an_intermediate_gradient_and_others_are_freed():
    x = leaf([[1.0, 2.0], [3.0, 4.0]], "x")
    h = (x * 3).retain_grad()
    a = h.tanh()
    loss = (a * a).sum()
    loss.backward()
    np.testing.assert_allclose(h.grad, 2 * a.data * (1 - a.data ** 2))
    assert a.grad is None and loss.grad is None          # freed: nobody asked to keep them
    np.testing.assert_allclose(x.grad, 3 * h.grad)


def test_leaf_gradients_are_their_own_writable_arrays():
    """add hands the same g to both inputs and sum's backward is a read-only broadcast view;
    a .grad must still be safe to update in place (gradient clipping, optimizers)."""
    a, b = leaf([1.0, 2.0], "a"), leaf([3.0, 4.0], "b")
    (a + b).sum().backward()
    assert a.grad is not b.grad and a.grad.flags.writeable and b.grad.flags.writeable
    a.grad *= 0.5
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_a_leaf_gradient_has_the_leaf_dtype():
    w = leaf(np.ones((3, 2)), "w", dtype=np.float32)
    x = np.ones((4, 3))                                  # float64 data from the user
    out = x @ w
    assert out.dtype == np.float64                        # NumPy's promotion, as in NumPy
    out.sum().backward()
    assert w.grad.dtype == np.float32


# ----- no_grad, detach, item, numpy -----

def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0], "x")
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2 + 1).exp().sum()
        z = F.softmax(x)
    assert is_grad_enabled()
    for t in (y, z):
        assert not t.requires_grad and t._parents == () and t._backward is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_no_grad_nests_and_restores_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            with no_grad():
                pass
            assert not is_grad_enabled()
            1 / 0
    assert is_grad_enabled()


def test_detach_shares_data_and_cuts_the_graph():
    x = leaf([1.0, 2.0], "x")
    d = (x * 1).detach()
    assert not d.requires_grad and d.is_leaf
    (d * x).sum().backward()
    np.testing.assert_array_equal(x.grad, d.data)        # d is a constant: no 2x
    plain = x.detach()
    assert np.shares_memory(plain.data, x.data) and plain.name == "x"


def test_item_and_numpy():
    t = Tensor(np.array([[3.5]]))
    assert t.item() == 3.5 and isinstance(t.item(), float)
    assert t.numpy() is t.data
    with pytest.raises(ValueError):
        Tensor(np.ones(2)).item()


def test_repr_shows_data_name_op_and_grad():
    x = leaf([1.0, 2.0], "x")
    (x * 2).sum().backward()
    text = repr(x)
    assert "name='x'" in text and "grad=" in text and "1." in text and "float64" in text
    assert "op=mul" in repr(x * 2)


def test_tensors_are_hashed_by_identity():
    a, b = Tensor(np.ones(2)), Tensor(np.ones(2))
    assert len({a: 1, b: 2}) == 2


# ----- errors from backward and from bad dtypes -----

def test_backward_of_a_non_scalar_without_a_gradient_raises():
    y = leaf(np.ones((2, 3)), "x") * 2
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        y.backward()


def test_backward_with_a_gradient_of_the_wrong_shape_raises():
    y = leaf(np.ones((2, 3))) * 2
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_backward_with_a_gradient_works_for_non_scalars():
    x = leaf([1.0, 2.0, 3.0])
    (x * x).backward(np.array([1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(x.grad, [2, 0, 12])


@pytest.mark.parametrize("data", [np.array([1 + 2j]), 1j, np.array([object()], dtype=object),
                                  np.ones(2, dtype=np.float16), "abc", np.array(["a", "b"]),
                                  np.array([1.0], dtype=np.longdouble)],
                         ids=["complex", "python-complex", "object", "float16", "str", "str-array", "longdouble"])
def test_unsupported_dtype_raises_naming_the_dtype(data):
    dtype = np.asarray(data).dtype
    with pytest.raises(TypeError, match=re.escape(str(dtype))):
        Tensor(data)


def test_requires_grad_needs_a_float_tensor():
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_integer_and_boolean_arrays_are_accepted_as_indices_and_masks():
    assert Tensor([1, 2]).dtype == np.int64
    assert Tensor(np.array([True, False])).dtype == bool


# ----- Python numbers and ndarrays mix in; float32 stays float32 -----

def test_python_floats_become_float32_and_numpy_arrays_keep_their_dtype():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64
    assert Tensor(np.ones(2, dtype=np.float32)).dtype == np.float32


X32 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=np.float32)


@pytest.mark.parametrize("expression", [
    lambda x: x + 1, lambda x: 1 + x, lambda x: x - 2.5, lambda x: 2.5 - x, lambda x: x * 3,
    lambda x: 3 * x, lambda x: x / 7, lambda x: 7 / x, lambda x: x ** 2, lambda x: -x,
    lambda x: x + np.float64(1.5), lambda x: np.float64(2) * x, lambda x: x * True,
], ids=["x+1", "1+x", "x-2.5", "2.5-x", "x*3", "3*x", "x/7", "7/x", "x**2", "-x",
        "x+np.float64", "np.float64*x", "x*True"])
def test_python_and_numpy_scalars_keep_float32(expression):
    x = leaf(X32, "x", dtype=np.float32)
    y = expression(x)
    assert isinstance(y, Tensor) and y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("expression, expected", [
    (lambda x, a: a + x, lambda x, a: a + x), (lambda x, a: a - x, lambda x, a: a - x),
    (lambda x, a: a * x, lambda x, a: a * x), (lambda x, a: a / x, lambda x, a: a / x),
    (lambda x, a: x - a, lambda x, a: x - a),
])
def test_ndarrays_mix_in_on_either_side(expression, expected):
    """ndarray (op) Tensor must call the Tensor's reflected operator, not loop over the array."""
    x = leaf(X32, "x", dtype=np.float32)
    a = np.arange(1, 4, dtype=np.float32)
    y = expression(x, a)
    assert isinstance(y, Tensor) and y.dtype == np.float32
    np.testing.assert_allclose(y.data, expected(X32, a))
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_an_integer_tensor_times_a_python_float_is_not_truncated():
    np.testing.assert_allclose((Tensor(np.array([1, 2, 3])) * 0.5).data, [0.5, 1.0, 1.5])


def _f32(shape, seed, low=-2.0, high=2.0):
    return leaf(np.random.default_rng(seed).uniform(low, high, shape), f"in{seed}", dtype=np.float32)


FLOAT32_CASES = {
    "add": lambda: _f32((2, 3), 0) + _f32((3,), 1),
    "sub": lambda: _f32((2, 1), 0) - _f32((3,), 1),
    "mul": lambda: _f32((2, 3), 0) * _f32((1, 3), 1),
    "div": lambda: _f32((2, 3), 0) / _f32((3,), 1, 0.5, 2),
    "neg": lambda: -_f32((2, 3), 0),
    "pow": lambda: _f32((2, 3), 0, 0.5, 2) ** 1.5,
    "matmul": lambda: _f32((2, 3), 0) @ _f32((3, 4), 1),
    "matmul-batched": lambda: _f32((2, 1, 2, 3), 0) @ _f32((3, 3, 2), 1),
    "matmul-vectors": lambda: _f32((3,), 0) @ _f32((3,), 1),
    "sum": lambda: _f32((2, 3, 4), 0).sum(axis=(0, 2)),
    "mean": lambda: _f32((2, 3, 4), 0).mean(axis=-1, keepdims=True),
    "max": lambda: _f32((2, 3, 4), 0).max(axis=1),
    "reshape": lambda: _f32((2, 3, 4), 0).reshape(4, -1),
    "transpose": lambda: _f32((2, 3, 4), 0).permute(2, 0, 1),
    "getitem-slice": lambda: _f32((4, 3), 0)[1:, ::2],
    "getitem-ints": lambda: _f32((4, 3), 0)[np.array([0, 0, 3])],
    "getitem-mask": lambda: _f32((4, 3), 0)[np.array([True, False, True, True])],
    "concatenate": lambda: ops.concatenate([_f32((2, 3), 0), _f32((1, 3), 1)]),
    "stack": lambda: ops.stack([_f32((2, 3), 0), _f32((2, 3), 1)], axis=-1),
    "exp": lambda: _f32((2, 3), 0).exp(),
    "log": lambda: _f32((2, 3), 0, 0.5, 2).log(),
    "sqrt": lambda: _f32((2, 3), 0, 0.5, 2).sqrt(),
    "tanh": lambda: _f32((2, 3), 0).tanh(),
    "relu": lambda: _f32((2, 3), 0).relu(),
    "softmax": lambda: F.softmax(_f32((2, 5), 0)),
    "log_softmax": lambda: F.log_softmax(_f32((2, 5), 0)),
    "logsumexp": lambda: F.logsumexp(_f32((2, 5), 0)),
    "cross_entropy": lambda: F.cross_entropy(_f32((2, 3, 5), 0), np.array([[1, 4, -100], [0, 2, 2]])),
    "layer_norm": lambda: F.layer_norm(_f32((2, 3, 4), 0), _f32((4,), 1), _f32((4,), 2)),
    "gelu-tanh": lambda: F.gelu(_f32((2, 3), 0), "tanh"),
    "gelu-erf": lambda: F.gelu(_f32((2, 3), 0), "none"),
    "where": lambda: F.where(np.array([True, False, True]), _f32((2, 3), 0), 0.0),
    "masked_fill": lambda: F.masked_fill(_f32((2, 3), 0), np.array([True, False, True]), -np.inf),
    "embedding": lambda: F.embedding(_f32((5, 3), 0), np.array([[1, 1, 4]])),
    "dropout": lambda: F.dropout(_f32((2, 3), 0), 0.3, np.random.default_rng(0)),
    "mlp": lambda: ((_f32((4, 3), 0) @ _f32((3, 5), 1) + _f32((5,), 2)).relu() @ _f32((5, 1), 3)).mean(),
    "self_attention": lambda: self_attention(_f32((2, 3, 12), 0), 2, causal=True,
                                             key_padding_mask=np.array([[1, 1, 0], [1, 1, 1]], dtype=bool),
                                             dropout=0.2, rng=np.random.default_rng(0), training=True)[0],
}


@pytest.mark.parametrize("case", FLOAT32_CASES)
def test_float32_in_float32_out_for_every_array_forward_and_backward(case):
    root = FLOAT32_CASES[case]()
    problems = instrument_float32(root)
    root.backward(np.ones(root.shape))  # a float64 gradient, as users pass: the backward stays float32
    leaves = [node for node in root._topological_order() if node.is_leaf]
    assert leaves and all(node.grad.dtype == np.float32 for node in leaves)
    assert not problems, "; ".join(problems)


# ----- deep graphs -----

def test_a_graph_of_ten_thousand_chained_adds_does_not_hit_the_recursion_limit():
    x = leaf([1.0, 2.0], "x")
    y = x
    for _ in range(10_000):
        y = y + x
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [10_001, 10_001])
    assert graph_dot(y).count("->") == 20_000
    del y                                            # freeing a deep chain must not recurse either


# ----- graph printers -----

def _mlp_graph():
    x = Tensor(np.ones((2, 3)), name="x")
    w = leaf(np.full((3, 4), 0.1), "w")
    h = (x @ w).named("h")
    loss = h.relu().sum()
    return loss, h, w


def test_graph_text_shows_op_shape_and_name():
    loss, h, w = _mlp_graph()
    text = graph_text(loss)
    lines = text.splitlines()
    assert lines[0].startswith("#0 sum") and "()" in lines[0]
    assert any("relu" in line and "(2, 4)" in line for line in lines)
    assert any("matmul 'h' (2, 4)" in line for line in lines)
    assert any("parameter 'w' (3, 4)" in line for line in lines)
    assert any("constant 'x' (2, 3)" in line for line in lines)
    assert "|grad|" not in text
    loss.backward()
    assert f"|grad|={np.linalg.norm(w.grad):.4g}" in graph_text(loss)


def test_graph_text_prints_a_shared_node_once_and_refers_back_to_it():
    x = leaf([1.0], "x")
    z = (x * 2).named("z")
    text = graph_text(z * z)
    assert text.count("mul 'z'") == 2 and "(see #1)" in text


def test_graph_dot_is_graphviz_text_with_op_shape_and_name():
    loss, h, w = _mlp_graph()
    dot = graph_dot(loss)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count("->") == 4                       # x->matmul, w->matmul, matmul->relu, relu->sum
    assert re.search(r"label=\"matmul 'h' \(2, 4\)", dot) and re.search(r"label=\"parameter 'w' \(3, 4\)", dot)
    assert dot.count("[label=") == 5


# ----- capture -----

def test_capture_keeps_named_tensors_and_their_gradients():
    x = leaf([1.0, 2.0], "x")
    with capture("h.*") as seen:
        h = (x * 3).named("h.0")
        other = (x * 2).named("other")
        loss = (h * h).sum() + other.sum()
        loss.backward()
    assert set(seen) == {"h.0"}
    np.testing.assert_array_equal(seen["h.0"].grad, 2 * h.data)
    assert other.grad is None
    assert math.isclose(loss.item(), 9 * 5 + 6)
