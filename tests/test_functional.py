"""Fused ops (numpretrain/autograd/functional.py): gradients and the properties that define them.

Every fused op is gradchecked in float64 under hypothesis. Then each is held to its
defining property, computed independently here: softmax rows sum to 1 even at 1e4,
logsumexp / log_softmax do not overflow, cross_entropy is -log softmax at the target
averaged over the targets that count, layer_norm normalises each row, both GELU forms
match their formulas (math.erf for the exact one), dropout keeps about 1-p of the
elements and scales them by 1/(1-p), embedding scatters gradients like np.add.at.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

from numpretrain import Tensor, gradcheck
from numpretrain import functional as F

FAST = settings(max_examples=60, deadline=None)
seeds = st.integers(0, 2**32 - 1)
shapes = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def uniform(seed, shape, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def leaf(array, name="x"):
    return Tensor(np.array(array, dtype=np.float64), requires_grad=True, name=name)


def naive_softmax(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


# ----- gradchecks under hypothesis -----

@FAST
@given(shapes, seeds, st.data())
def test_softmax_gradcheck(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = leaf(uniform(seed, shape))
    np.testing.assert_allclose(F.softmax(x, axis).data, naive_softmax(x.data, axis), rtol=1e-12)
    assert gradcheck(lambda x: F.softmax(x, axis), [x])


@FAST
@given(shapes, seeds, st.data())
def test_log_softmax_gradcheck(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = leaf(uniform(seed, shape))
    np.testing.assert_allclose(F.log_softmax(x, axis).data, np.log(naive_softmax(x.data, axis)), atol=1e-12)
    assert gradcheck(lambda x: F.log_softmax(x, axis), [x])


@FAST
@given(shapes, seeds, st.booleans(), st.data())
def test_logsumexp_gradcheck(shape, seed, keepdims, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = leaf(uniform(seed, shape))
    expected = np.log(np.exp(x.data).sum(axis=axis, keepdims=keepdims))
    np.testing.assert_allclose(F.logsumexp(x, axis, keepdims).data, expected, rtol=1e-12)
    assert gradcheck(lambda x: F.logsumexp(x, axis, keepdims), [x])


@FAST
@given(array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3), st.integers(1, 5), seeds)
def test_cross_entropy_gradcheck(batch_shape, n_classes, seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, n_classes, size=batch_shape)
    targets = np.where(rng.random(batch_shape) < 0.3, F.IGNORE_INDEX, targets)  # some ignored
    logits = leaf(uniform(seed, batch_shape + (n_classes,), -3, 3))
    assert gradcheck(lambda z: F.cross_entropy(z, targets), [logits])


@FAST
@given(array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3), st.integers(2, 5), seeds)
def test_layer_norm_gradcheck(batch_shape, C, seed):
    x = leaf(uniform(seed, batch_shape + (C,)), "x")
    weight = leaf(uniform(seed + 1, (C,)), "weight")
    bias = leaf(uniform(seed + 2, (C,)), "bias")
    assert gradcheck(F.layer_norm, [x, weight, bias])


@FAST
@given(shapes, seeds, st.sampled_from(["tanh", "none"]))
def test_gelu_gradcheck(shape, seed, approximate):
    x = leaf(uniform(seed, shape, -4, 4))
    assert gradcheck(lambda x: F.gelu(x, approximate), [x])


@FAST
@given(mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=1, max_side=3), seeds)
def test_where_gradcheck(shapes, seed):
    cond_shape, a_shape, b_shape = shapes.input_shapes
    condition = np.random.default_rng(seed).random(cond_shape) < 0.5
    a, b = leaf(uniform(seed, a_shape), "a"), leaf(uniform(seed + 1, b_shape), "b")
    out = F.where(condition, a, b)
    np.testing.assert_array_equal(out.data, np.where(condition, a.data, b.data))
    assert gradcheck(lambda a, b: F.where(condition, a, b), [a, b])


@FAST
@given(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3), seeds)
def test_masked_fill_gradcheck(shapes, seed):
    """The mask broadcasts against x either way (smaller, as for attention masks, or larger)."""
    x_shape, mask_shape = shapes.input_shapes
    mask = np.random.default_rng(seed).random(mask_shape) < 0.5
    x = leaf(uniform(seed, x_shape))
    np.testing.assert_array_equal(F.masked_fill(x, mask, -7.0).data, np.where(mask, -7.0, x.data))
    assert gradcheck(lambda x: F.masked_fill(x, mask, -7.0), [x])


@FAST
@given(st.integers(1, 5), st.integers(1, 3), array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4), seeds)
def test_embedding_gradcheck(V, C, ids_shape, seed):
    ids = np.random.default_rng(seed).integers(0, V, size=ids_shape)  # repeats are likely
    weight = leaf(uniform(seed, (V, C)), "wte")
    np.testing.assert_array_equal(F.embedding(weight, ids).data, weight.data[ids])
    assert gradcheck(lambda w: F.embedding(w, ids), [weight])


@FAST
@given(shapes, seeds, st.sampled_from([0.1, 0.5, 0.9]))
def test_dropout_gradcheck(shape, seed, p):
    x = leaf(uniform(seed, shape))
    # a fresh generator per call, so every evaluation inside gradcheck draws the same mask
    assert gradcheck(lambda x: F.dropout(x, p, np.random.default_rng(seed), training=True), [x])


# ----- softmax, logsumexp, log_softmax: stability -----

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_sum_to_one_and_stay_finite_at_1e4(dtype):
    x = Tensor(uniform(0, (8, 16), -1e4, 1e4).astype(dtype))
    x.data[0] = 1e4                              # a row of ties at the top
    x.data[1] = -1e4
    p = F.softmax(x).data
    assert p.dtype == dtype and np.all(np.isfinite(p)) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0], 1 / 16, rtol=1e-6)


def test_softmax_of_a_row_of_minus_inf_is_zero_not_nan():
    x = leaf([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    p = F.softmax(x)
    np.testing.assert_allclose(p.data, [naive_softmax(np.array([0.0, -np.inf, 1.0])), [0, 0, 0]])
    p.backward(np.ones((2, 3)))
    assert np.all(np.isfinite(x.grad))


def test_logsumexp_of_a_row_of_minus_inf_is_minus_inf():
    # log(sum of no exp) = log 0: the shared stable form must not leave the shift's 0 behind
    x = Tensor(np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]]))
    np.testing.assert_allclose(F.logsumexp(x).data, [np.log(1 + np.e), -np.inf])


def test_softmax_is_shift_invariant():
    x = uniform(0, (3, 5))
    np.testing.assert_allclose(F.softmax(Tensor(x + 1e4)).data, naive_softmax(x), rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_and_log_softmax_do_not_overflow_at_1e4(dtype):
    x = uniform(1, (6, 10), -1e4, 1e4).astype(dtype)
    lse = F.logsumexp(Tensor(x)).data
    ls = F.log_softmax(Tensor(x)).data
    assert lse.dtype == dtype and ls.dtype == dtype
    assert np.all(np.isfinite(lse)) and np.all(np.isfinite(ls))
    peak = x.max(axis=-1)
    assert np.all(lse >= peak) and np.all(lse <= peak + np.log(10) + 1e-3)
    # shift invariance: logsumexp(x + c) = logsumexp(x) + c, log_softmax(x + c) = log_softmax(x)
    small = uniform(2, (6, 10))
    np.testing.assert_allclose(F.logsumexp(Tensor(small + 1e4)).data,
                               F.logsumexp(Tensor(small)).data + 1e4, rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(Tensor(small + 1e4)).data,
                               F.log_softmax(Tensor(small)).data, atol=1e-9)


def test_logsumexp_and_log_softmax_agree_with_the_naive_formula_on_moderate_inputs():
    x = uniform(3, (4, 7), -5, 5)
    naive = np.log(np.exp(x).sum(axis=-1))
    np.testing.assert_allclose(F.logsumexp(Tensor(x)).data, naive, rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(Tensor(x)).data, x - naive[:, None], atol=1e-12)
    np.testing.assert_allclose(np.exp(F.log_softmax(Tensor(x)).data).sum(-1), 1.0, rtol=1e-12)


# ----- cross_entropy -----

def reference_cross_entropy(logits, targets, ignore_index=F.IGNORE_INDEX):
    """-log softmax(logits)[target], averaged over the targets that are not ignored; 0 if none."""
    total, count = 0.0, 0
    for row, target in zip(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)):
        if target == ignore_index:
            continue
        shifted = row - row.max()
        total -= shifted[target] - math.log(np.exp(shifted).sum())
        count += 1
    return total / count if count else 0.0


@FAST
@given(st.integers(1, 4), st.integers(1, 4), st.integers(2, 6), seeds)
def test_cross_entropy_is_minus_log_softmax_at_the_target(B, T, V, seed):
    rng = np.random.default_rng(seed)
    logits = uniform(seed, (B, T, V), -5, 5)
    targets = rng.integers(0, V, size=(B, T))
    targets[rng.random((B, T)) < 0.25] = F.IGNORE_INDEX
    loss = F.cross_entropy(Tensor(logits), targets)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), reference_cross_entropy(logits, targets), rtol=1e-12, atol=1e-15)


def test_cross_entropy_ignores_ignore_index():
    rng = np.random.default_rng(0)
    logits = leaf(rng.normal(size=(5, 4)))
    targets = np.array([1, F.IGNORE_INDEX, 3, F.IGNORE_INDEX, 0])
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    # the ignored rows get no gradient, and changing them leaves the loss unchanged
    np.testing.assert_array_equal(logits.grad[[1, 3]], 0)
    changed = logits.data.copy()
    changed[[1, 3]] = 1e3
    assert F.cross_entropy(Tensor(changed), targets).item() == pytest.approx(loss.item(), rel=1e-15)
    # the mean is over the 3 counted rows
    kept = [0, 2, 4]
    assert loss.item() == pytest.approx(reference_cross_entropy(logits.data[kept], targets[kept]), rel=1e-12)


def test_cross_entropy_with_a_custom_ignore_index():
    logits = uniform(0, (3, 4))
    targets = np.array([0, 2, 0])
    loss = F.cross_entropy(Tensor(logits), targets, ignore_index=0)
    assert loss.item() == pytest.approx(reference_cross_entropy(logits[[1]], targets[[1]]), rel=1e-12)


def test_cross_entropy_with_every_target_ignored_is_zero():
    logits = leaf(uniform(0, (2, 3, 5)))
    loss = F.cross_entropy(logits, np.full((2, 3), F.IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(logits.grad, 0)


@pytest.mark.parametrize("bad", [5, 7, -1, -2])
def test_cross_entropy_out_of_range_target_raises(bad):
    with pytest.raises(ValueError, match=rf"target {bad} is out of range.*\[0, 5\)"):
        F.cross_entropy(Tensor(np.zeros((3, 5))), np.array([0, bad, 1]))


def test_cross_entropy_rejects_float_targets_and_mismatched_shapes():
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(Tensor(np.zeros((3, 5))), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(4,\)"):
        F.cross_entropy(Tensor(np.zeros((3, 5))), np.array([0, 1, 2, 3]))


# ----- layer_norm -----

def test_layer_norm_normalises_each_row_before_the_affine():
    x = uniform(0, (4, 3, 16), -5, 5) * np.arange(1, 17)  # rows with very different scales
    out = F.layer_norm(Tensor(x), Tensor(np.ones(16)), Tensor(np.zeros(16)), eps=1e-12).data
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=-1), 1, rtol=1e-9)


def test_layer_norm_matches_the_formula():
    x, w, b = uniform(0, (2, 3, 8)), uniform(1, (8,)), uniform(2, (8,))
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(F.layer_norm(Tensor(x), Tensor(w), Tensor(b)).data, expected, rtol=1e-12, atol=1e-12)


# ----- GELU -----

def test_gelu_tanh_matches_the_formula():
    x = np.linspace(-8, 8, 1001)
    expected = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(F.gelu(Tensor(x), "tanh").data, expected, rtol=1e-14, atol=1e-15)


def test_gelu_exact_matches_math_erf():
    x = np.linspace(-8, 8, 1001)
    expected = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(F.gelu(Tensor(x), "none").data, expected, rtol=1e-14, atol=1e-15)


def test_gelu_forms_are_close_but_not_equal():
    x = Tensor(np.linspace(-3, 3, 61))
    difference = np.abs(F.gelu(x, "tanh").data - F.gelu(x, "none").data)
    assert 0 < difference.max() < 1e-3


def test_gelu_rejects_an_unknown_form():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(Tensor(np.ones(2)), "erf")


# ----- dropout -----

def test_dropout_is_the_identity_in_eval_mode_and_for_p_zero():
    x = leaf(uniform(0, (4, 5)))
    rng = np.random.default_rng(0)
    for out in (F.dropout(x, 0.5, rng, training=False), F.dropout(x, 0.0, rng, training=True)):
        np.testing.assert_array_equal(out.data, x.data)


def test_dropout_with_the_same_seed_draws_the_same_mask():
    x = Tensor(np.ones((50, 50)))
    a = F.dropout(x, 0.3, np.random.default_rng(7)).data
    b = F.dropout(x, 0.3, np.random.default_rng(7)).data
    c = F.dropout(x, 0.3, np.random.default_rng(8)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_about_one_minus_p_and_scales_by_its_inverse(p):
    n = 200_000
    x = Tensor(np.full(n, 2.0, dtype=np.float32))
    out = F.dropout(x, p, np.random.default_rng(1)).data
    kept = out != 0
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 6 * sigma         # a 6-sigma bound: fails by chance ~1e-9
    np.testing.assert_allclose(out[kept], 2.0 / (1 - p), rtol=1e-6)
    assert out.dtype == np.float32


def test_dropout_gradient_is_the_scaled_mask():
    x = leaf(uniform(0, (6, 7)))
    out = F.dropout(x, 0.4, np.random.default_rng(3))
    out.backward(np.ones(x.shape))
    np.testing.assert_allclose(x.grad, (out.data != 0) / 0.6, rtol=1e-12)


def test_dropout_rejects_bad_p_and_a_missing_generator():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="p must be"):
            F.dropout(Tensor(np.ones(3)), p, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        F.dropout(Tensor(np.ones(3)), 0.5, None)


# ----- embedding -----

@pytest.mark.parametrize("bad", [10, 11, -1])
def test_embedding_out_of_range_id_raises_naming_the_id(bad):
    with pytest.raises(IndexError, match=rf"id {bad} is out of range.*\[0, 10\)"):
        F.embedding(Tensor(np.zeros((10, 3))), np.array([[0, 1], [bad, 2]]))


def test_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="integer"):
        F.embedding(Tensor(np.zeros((10, 3))), np.array([1.0, 2.0]))


def test_embedding_gradient_with_repeated_ids_equals_add_at():
    rng = np.random.default_rng(0)
    weight = leaf(rng.normal(size=(6, 4)))
    ids = np.array([[1, 3, 1, 1], [5, 3, 0, 1]])
    g = rng.normal(size=(2, 4, 4))
    F.embedding(weight, Tensor(ids)).backward(g)
    expected = np.zeros((6, 4))
    np.add.at(expected, ids, g)
    np.testing.assert_allclose(weight.grad, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(weight.grad[[2, 4]], 0)


@pytest.mark.parametrize("id_dtype", [np.int64, np.uint8])
def test_embedding_gradient_has_the_bits_of_add_at_in_float32(id_dtype):
    """Many repeats of a few ids, summed in float32: the order of the sum shows in the bits."""
    rng = np.random.default_rng(1)
    weight = Tensor(np.zeros((256, 128), dtype=np.float32), requires_grad=True)
    ids = rng.integers(0, 256, (16, 64)).astype(id_dtype)
    ids[0, :40] = 255                                       # 255 * 128 overflows uint8
    g = rng.standard_normal((16, 64, 128), dtype=np.float32)
    F.embedding(weight, ids).backward(g)
    expected = np.zeros((256, 128), dtype=np.float32)
    np.add.at(expected, ids, g)
    np.testing.assert_array_equal(weight.grad, expected)


# ----- where / masked_fill -----

def test_masked_fill_with_minus_inf_then_softmax_gives_zero_probability():
    scores = leaf(uniform(0, (3, 4)))
    mask = np.array([[False, True, False, True]])
    p = F.softmax(F.masked_fill(scores, mask, -np.inf))
    np.testing.assert_array_equal(p.data[:, [1, 3]], 0)
    np.testing.assert_allclose(p.data.sum(-1), 1, rtol=1e-12)
    p.backward(uniform(1, (3, 4)))
    np.testing.assert_array_equal(scores.grad[:, [1, 3]], 0)


def test_masked_fill_rejects_a_non_boolean_mask_and_a_mask_that_does_not_broadcast():
    with pytest.raises(TypeError, match="boolean"):
        F.masked_fill(Tensor(np.ones(3)), np.array([0, 1, 0]), 0.0)
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        F.masked_fill(Tensor(np.ones(3)), np.ones(4, dtype=bool), 0.0)


def test_where_with_a_python_number_on_one_side():
    a = leaf([1.0, 2.0, 3.0])
    out = F.where(np.array([True, False, True]), a, 0.0)
    np.testing.assert_array_equal(out.data, [1, 0, 3])
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, [1, 0, 1])
