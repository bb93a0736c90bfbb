"""Property tests for every primitive op in numpretrain/autograd/ops.py.

For each op, hypothesis draws shapes (broadcasting, size-1 dims, 0-d where it makes
sense) and a seed for the values, then checks two things in float64:
- the forward equals NumPy's own computation;
- the analytic gradient equals central differences (`gradcheck`, rtol 1e-5, atol 1e-7).
Values stay away from kinks and poles (relu away from 0, max with distinct values,
log / sqrt / div on inputs away from 0), where finite differences are meaningless.
The last section checks that bad input raises errors naming the shapes.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, basic_indices, integer_array_indices, mutually_broadcastable_shapes

from numpretrain import Tensor, gradcheck, ops

FAST = settings(max_examples=60, deadline=None)
seeds = st.integers(0, 2**32 - 1)
shapes = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
pair_shapes = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)


def uniform(seed, shape, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def away_from_zero(seed, shape, low=0.5, high=2.0):
    """Values with |x| in [low, high] and a random sign."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def leaf(array, name):
    return Tensor(np.array(array, dtype=np.float64), requires_grad=True, name=name)


def check_op(fn, reference, *arrays):
    """fn on Tensors equals reference on arrays, and fn's backward passes gradcheck."""
    inputs = [leaf(a, f"x{i}") for i, a in enumerate(arrays)]
    out = fn(*inputs)
    assert isinstance(out, Tensor)
    expected = reference(*[np.array(a, dtype=np.float64) for a in arrays])
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert gradcheck(fn, inputs)


# ----- elementwise arithmetic, with broadcasting -----

@FAST
@given(pair_shapes, seeds)
def test_add(shapes, seed):
    a, b = shapes.input_shapes
    check_op(ops.add, np.add, uniform(seed, a), uniform(seed + 1, b))


@FAST
@given(pair_shapes, seeds)
def test_sub(shapes, seed):
    a, b = shapes.input_shapes
    check_op(ops.sub, np.subtract, uniform(seed, a), uniform(seed + 1, b))


@FAST
@given(pair_shapes, seeds)
def test_mul(shapes, seed):
    a, b = shapes.input_shapes
    check_op(ops.mul, np.multiply, uniform(seed, a), uniform(seed + 1, b))


@FAST
@given(pair_shapes, seeds)
def test_div(shapes, seed):
    a, b = shapes.input_shapes
    check_op(ops.div, np.divide, uniform(seed, a), away_from_zero(seed + 1, b))


@FAST
@given(shapes, seeds)
def test_neg(shape, seed):
    check_op(ops.neg, np.negative, uniform(seed, shape))


@FAST
@given(shapes, seeds, st.sampled_from([2, 3, 0.5, -1, -0.5, 1.5, 1, 0, -2.5]))
def test_pow_positive_base(shape, seed, exponent):
    check_op(lambda x: ops.pow(x, exponent), lambda x: x ** exponent, uniform(seed, shape, 0.5, 2.0))


@FAST
@given(shapes, seeds, st.sampled_from([1, 2, 3, -1, -2]))
def test_pow_integer_exponent_any_sign_base(shape, seed, exponent):
    check_op(lambda x: x ** exponent, lambda x: x ** exponent, away_from_zero(seed, shape))


def test_pow_with_numpy_scalar_exponent_keeps_float32():
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x ** np.float64(2.0)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


# ----- matmul -----

@st.composite
def matmul_shapes(draw):
    """Shapes (a, b) for a @ b: 2-D, batched with broadcast batch dims, or 1-D on either side."""
    n, k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, min_side=1, max_side=3))
    a_batch, b_batch = batch.input_shapes
    a = (k,) if draw(st.booleans()) and draw(st.booleans()) else a_batch + (n, k)
    b = (k,) if draw(st.booleans()) and draw(st.booleans()) else b_batch + (k, m)
    return a, b


@settings(max_examples=100, deadline=None)
@given(matmul_shapes(), seeds)
def test_matmul(shapes, seed):
    a, b = shapes
    check_op(ops.matmul, np.matmul, uniform(seed, a), uniform(seed + 1, b))


@pytest.mark.parametrize("a, b", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3,)),
                                  ((3,), (4, 3, 2)), ((2, 3), (3, 4)), ((2, 1, 2, 3), (5, 3, 2)),
                                  ((1, 3), (3, 1))])
def test_matmul_named_shapes(a, b):
    """The cases that matter most, each spelled out (vector . vector gives a 0-d tensor)."""
    check_op(ops.matmul, np.matmul, uniform(0, a), uniform(1, b))


def test_matmul_operator_with_ndarray_on_either_side():
    w = leaf(uniform(0, (3, 2)), "w")
    x = uniform(1, (4, 3))
    y = x @ w
    assert isinstance(y, Tensor) and y.shape == (4, 2)
    y2 = w.T @ x.T
    assert isinstance(y2, Tensor) and y2.shape == (2, 4)


# ----- reductions -----

@st.composite
def reduction_args(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    ndim = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        axis = tuple(ax - ndim if draw(st.booleans()) else ax for ax in chosen)  # some negative
    return shape, axis, draw(st.booleans())


@FAST
@given(reduction_args(), seeds)
def test_sum(args, seed):
    shape, axis, keepdims = args
    check_op(lambda x: ops.sum(x, axis, keepdims), lambda x: np.sum(x, axis=axis, keepdims=keepdims),
             uniform(seed, shape))


@FAST
@given(reduction_args(), seeds)
def test_mean(args, seed):
    shape, axis, keepdims = args
    check_op(lambda x: x.mean(axis, keepdims), lambda x: np.mean(x, axis=axis, keepdims=keepdims),
             uniform(seed, shape))


def distinct_values(seed, shape):
    """Values at least 0.3 apart, in random order: the maximum is unique and away from a tie."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.3 - 0.15 * size + rng.uniform(0, 0.1)).reshape(shape)


@FAST
@given(reduction_args(), seeds)
def test_max(args, seed):
    shape, axis, keepdims = args
    check_op(lambda x: ops.max(x, axis, keepdims), lambda x: np.max(x, axis=axis, keepdims=keepdims),
             distinct_values(seed, shape))


def test_max_splits_the_gradient_evenly_between_ties():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], "x")
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


def test_reductions_of_a_0d_tensor():
    x = leaf(2.5, "x")
    for op in (ops.sum, ops.mean, ops.max):
        x.zero_grad()
        y = op(x)
        y.backward()
        assert y.shape == () and y.item() == 2.5 and x.grad == 1.0


# ----- shape ops -----

@st.composite
def reshape_args(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    sides = list(shape) + [1] * draw(st.integers(0, 2))       # the same size, maybe with extra 1s
    target = list(draw(st.permutations(sides)))
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1     # let reshape infer one side
    return shape, tuple(target)


@FAST
@given(reshape_args(), seeds)
def test_reshape(args, seed):
    shape, target = args
    check_op(lambda x: x.reshape(target), lambda x: x.reshape(target), uniform(seed, shape))


@st.composite
def transpose_args(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3))
    if draw(st.booleans()):
        return shape, None
    axes = draw(st.permutations(range(len(shape))))
    return shape, tuple(ax - len(shape) if draw(st.booleans()) else ax for ax in axes)


@FAST
@given(transpose_args(), seeds)
def test_transpose(args, seed):
    shape, axes = args
    check_op(lambda x: ops.transpose(x, axes), lambda x: np.transpose(x, axes), uniform(seed, shape))


def test_permute_and_T_are_transposes():
    x = leaf(uniform(0, (2, 3, 4)), "x")
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.transpose(1, 0, 2).shape == (3, 2, 4)
    assert x.T.shape == (4, 3, 2)
    assert x.transpose().shape == (4, 3, 2)


# ----- indexing: basic slices, integer arrays (scatter-add), boolean masks -----

@FAST
@given(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4).flatmap(
    lambda shape: st.tuples(st.just(shape), basic_indices(shape, allow_newaxis=True))), seeds)
def test_getitem_basic(args, seed):
    shape, index = args
    check_op(lambda x: x[index], lambda x: x[index], uniform(seed, shape))


@FAST
@given(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4).flatmap(
    lambda shape: st.tuples(st.just(shape), integer_array_indices(
        shape, result_shape=array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=5)))), seeds)
def test_getitem_integer_arrays(args, seed):
    """Integer arrays (which repeat and go negative) select elements; backward adds up repeats."""
    shape, index = args
    check_op(lambda x: x[index], lambda x: x[index], uniform(seed, shape))


@FAST
@given(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), st.integers(1, 3), seeds)
def test_getitem_boolean_mask(shape, mask_dims, seed):
    mask_shape = shape[:mask_dims]
    mask = np.random.default_rng(seed + 7).random(mask_shape) < 0.5
    check_op(lambda x: x[mask], lambda x: x[mask], uniform(seed, shape))
    check_op(lambda x: x[Tensor(mask)], lambda x: x[mask], uniform(seed, shape))


def test_getitem_repeated_index_scatter_adds():
    x = leaf([10.0, 20.0, 30.0], "x")
    y = x[np.array([0, 2, 0, 0])]
    (y * Tensor(np.array([1.0, 2.0, 3.0, 4.0]))).sum().backward()
    np.testing.assert_array_equal(x.grad, [1 + 3 + 4, 0, 2])


def test_getitem_mixed_slice_and_integer_array():
    check_op(lambda x: x[:, [2, 0, 2]], lambda x: x[:, [2, 0, 2]], uniform(0, (2, 3)))
    check_op(lambda x: x[1:, np.array([[0, 1], [1, 1]])], lambda x: x[1:, np.array([[0, 1], [1, 1]])],
             uniform(1, (3, 2)))


# ----- concatenate and stack -----

@st.composite
def concatenate_args(draw):
    ndim = draw(st.integers(1, 3))
    base = list(draw(array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=3)))
    axis = draw(st.integers(-ndim, ndim - 1))
    shapes = []
    for _ in range(draw(st.integers(1, 3))):
        shape = list(base)
        shape[axis] = draw(st.integers(1, 3))
        shapes.append(tuple(shape))
    return shapes, axis


@FAST
@given(concatenate_args(), seeds)
def test_concatenate(args, seed):
    shapes, axis = args
    arrays = [uniform(seed + i, s) for i, s in enumerate(shapes)]
    check_op(lambda *xs: ops.concatenate(xs, axis), lambda *xs: np.concatenate(xs, axis), *arrays)


@FAST
@given(array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3), st.integers(1, 3), st.data(), seeds)
def test_stack(shape, count, data, seed):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    arrays = [uniform(seed + i, shape) for i in range(count)]
    check_op(lambda *xs: ops.stack(xs, axis), lambda *xs: np.stack(xs, axis), *arrays)


def test_concatenate_with_a_constant_passes_gradient_only_to_the_tensor():
    x = leaf(np.ones((2, 2)), "x")
    y = ops.concatenate([np.zeros((1, 2)), x], axis=0)
    (y * Tensor(np.arange(6.0).reshape(3, 2))).sum().backward()
    np.testing.assert_array_equal(x.grad, [[2, 3], [4, 5]])


# ----- elementwise functions -----

@FAST
@given(shapes, seeds)
def test_exp(shape, seed):
    check_op(ops.exp, np.exp, uniform(seed, shape))


@FAST
@given(shapes, seeds)
def test_log(shape, seed):
    check_op(ops.log, np.log, uniform(seed, shape, 0.2, 3.0))


@FAST
@given(shapes, seeds)
def test_sqrt(shape, seed):
    check_op(ops.sqrt, np.sqrt, uniform(seed, shape, 0.2, 3.0))


@FAST
@given(shapes, seeds)
def test_tanh(shape, seed):
    check_op(ops.tanh, np.tanh, uniform(seed, shape))


@FAST
@given(shapes, seeds)
def test_relu(shape, seed):
    check_op(ops.relu, lambda x: np.maximum(x, 0), away_from_zero(seed, shape, 0.1, 2.0))


def test_relu_gradient_is_zero_for_negative_inputs():
    x = leaf([-1.0, 2.0, -0.5, 3.0], "x")
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 0, 1])


# ----- unbroadcast, the helper every binary op leans on -----

@FAST
@given(pair_shapes, seeds)
def test_unbroadcast_is_the_adjoint_of_broadcasting(shapes, seed):
    """<broadcast_to(x, B), g> == <x, unbroadcast(g, x.shape)> for every x and g."""
    small, _ = shapes.input_shapes
    big = shapes.result_shape
    x, g = uniform(seed, small), uniform(seed + 1, big)
    reduced = ops.unbroadcast(g, small)
    assert reduced.shape == small
    np.testing.assert_allclose(np.sum(np.broadcast_to(x, big) * g), np.sum(x * reduced), rtol=1e-12, atol=1e-12)


# ----- bad input: errors that name the shapes -----

@pytest.mark.parametrize("op", [ops.add, ops.sub, ops.mul, ops.div])
def test_broadcasting_mismatch_names_both_shapes(op):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        op(Tensor(np.ones((2, 3))), Tensor(np.ones(4)))


@pytest.mark.parametrize("a, b", [((2, 3), (4, 5)), ((3,), (4, 2)), ((2, 3), (4,)), ((3,), (4,)),
                                  ((2, 2, 3), (3, 3, 4))])
def test_matmul_mismatch_names_both_shapes(a, b):
    with pytest.raises(ValueError, match="matmul") as error:
        ops.matmul(Tensor(np.ones(a)), Tensor(np.ones(b)))
    assert str(a) in str(error.value) and str(b) in str(error.value)


def test_matmul_of_a_0d_tensor_raises():
    with pytest.raises(ValueError, match=r"\(\)"):
        ops.matmul(Tensor(np.ones(())), Tensor(np.ones(3)))


def test_reshape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        Tensor(np.ones((2, 3))).reshape(4, 2)


@pytest.mark.parametrize("axes", [(0, 0), (0, 2), (2, 1), (0,), (0, 1, 2)])
def test_transpose_rejects_axes_that_are_not_a_permutation(axes):
    with pytest.raises(ValueError, match=r"permutation.*\(2, 3\)"):
        ops.transpose(Tensor(np.ones((2, 3))), axes)


@pytest.mark.parametrize("op", [ops.sum, ops.mean, ops.max])
@pytest.mark.parametrize("axis", [2, -3, (0, 5)])
def test_reductions_reject_an_axis_out_of_range(op, axis):
    with pytest.raises(ValueError, match="out of range"):
        op(Tensor(np.ones((2, 3))), axis)


def test_pow_rejects_a_tensor_exponent():
    with pytest.raises(TypeError, match="exponent"):
        ops.pow(Tensor(np.ones(2)), Tensor(np.ones(2)))


def test_getitem_out_of_range_names_the_shape():
    with pytest.raises(IndexError, match=r"\(2, 3\)"):
        Tensor(np.ones((2, 3)))[np.array([0, 5])]


def test_concatenate_and_stack_mismatch_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        ops.concatenate([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))], axis=0)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        ops.stack([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))])
