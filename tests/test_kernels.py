"""The in-place kernels (numpretrain/speed/kernels.py) compute the engine's plain forms bit for bit.

The ops run the kernels; generation, the docs and a debugger's reader see the plain forms. Both
must give the same numbers exactly, in float32 (training) and float64 (gradcheck), for shapes
small and large (LayerNorm's row-vector trick switches on past 4 x 64 rows of 128).
"""

import numpy as np
import pytest

from numpretrain.autograd import gelu, layer_norm
from numpretrain.autograd.attention import allowed_keys, attention_backward, attention_forward, softmax_in_place
from numpretrain.autograd.dropout import dropout_mask
from numpretrain.speed import kernels

DTYPES = [np.float32, np.float64]


def standard_normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (1024, 128), (1030, 384)], ids=["small", "long-rows", "remainder"])
def test_layer_norm_kernels_give_the_plain_forms_bits(dtype, shape):
    rng = np.random.default_rng(0)
    x, g = standard_normal(rng, shape, dtype, 3.0), standard_normal(rng, shape, dtype)
    weight, bias = standard_normal(rng, shape[1:], dtype), standard_normal(rng, shape[1:], dtype)
    out, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty((len(x), 1), dtype)
    kernels.layer_norm_forward(out, xhat, rstd, x, weight, bias, 1e-5)
    for got, want in zip((out, xhat, rstd), layer_norm.layer_norm_forward(x, weight, bias, 1e-5)):
        np.testing.assert_array_equal(got, want)
    dx, g_xhat = np.empty_like(x), np.empty_like(x)
    kernels.layer_norm_backward(dx, g_xhat, g, xhat, rstd, weight)
    for got, want in zip((dx, g_xhat), layer_norm.layer_norm_backward(g, xhat, rstd, weight)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_kernels_give_the_plain_forms_bits(dtype):
    rng = np.random.default_rng(1)
    x, g = standard_normal(rng, 5000, dtype, 4.0), standard_normal(rng, 5000, dtype)
    for approximate, plain_forward, plain_backward in [
            ("tanh", gelu.gelu_tanh_forward, gelu.gelu_tanh_backward),
            ("none", gelu.gelu_erf_forward, gelu.gelu_erf_backward)]:
        forward, backward = gelu._in_place_forms(approximate, np.dtype(dtype))
        out, saved, grad = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        forward(out, saved, x)
        want_out, want_saved = plain_forward(x)
        np.testing.assert_array_equal(out, want_out, err_msg=approximate)
        np.testing.assert_array_equal(saved, want_saved, err_msg=approximate)
        backward(grad, g, x, saved)
        np.testing.assert_array_equal(grad, plain_backward(g, x, want_saved), err_msg=approximate)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal, padded, dropout", [(True, False, 0.0), (False, True, 0.3), (True, True, 0.1)])
def test_attention_kernels_give_the_plain_forms_bits(dtype, causal, padded, dropout):
    rng = np.random.default_rng(2)
    b, nh, T, hs = 3, 2, 7, 4
    q, k, v, gy = (standard_normal(rng, (b, nh, T, hs), dtype) for _ in range(4))
    padding = rng.random((b, T)) > 0.3 if padded else None
    if padded:
        padding[0] = False                                   # a sequence with no key at all: zeros
    allowed = allowed_keys(T, T, causal, padding)
    keep = dropout_mask((b, nh, T, T), dropout, rng, dtype) if dropout else None
    y, probs = np.empty((b, nh, T, hs), dtype), np.empty((b, nh, T, T), dtype)
    kernels.attention_forward(y, probs, q, k, v, allowed, keep, softmax_in_place)
    want_y, want_probs = attention_forward(q, k, v, allowed, keep)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(probs, want_probs)
    dq, dk, dv = (np.empty_like(q) for _ in range(3))
    kernels.attention_backward(dq, dk, dv, gy, q, k, v, probs, keep)
    for got, want in zip((dq, dk, dv), attention_backward(gy, q, k, v, probs, keep)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(1024, 128), (1030, 384), (300, 128), (5, 3)],
                         ids=["whole-long-rows", "remainder-rows", "few-long-rows", "small"])
@pytest.mark.parametrize("ufunc", [np.add, np.multiply])
def test_apply_row_vector_gives_broadcastings_bits(shape, ufunc):
    rng = np.random.default_rng(3)
    x2 = rng.standard_normal(shape).astype(np.float32)
    vector = rng.standard_normal(shape[1]).astype(np.float32)
    out = np.full_like(x2, np.nan)
    assert kernels.apply_row_vector(ufunc, x2, vector, out) is out
    np.testing.assert_array_equal(out, ufunc(x2, vector))
    in_place = x2.copy()                                   # as LayerNorm uses it
    kernels.apply_row_vector(ufunc, in_place, vector, in_place)
    np.testing.assert_array_equal(in_place, ufunc(x2, vector))


def test_apply_row_vector_writes_into_a_strided_output():
    rng = np.random.default_rng(4)
    x2 = rng.standard_normal((1024, 128)).astype(np.float32)
    vector = rng.standard_normal(128).astype(np.float32)
    out = np.zeros((1024, 130), np.float32)[:, :128]      # rows with gaps: reshaping it would copy
    kernels.apply_row_vector(np.multiply, x2, vector, out)
    np.testing.assert_array_equal(out, x2 * vector)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_flat_gives_adamw_updates_bits(dtype, weight_decay, monkeypatch):
    from numpretrain.training.optimizers import adamw_update
    monkeypatch.setattr(kernels, "ADAM_CHUNK", 7)             # chunks that cross the parameters' borders
    rng = np.random.default_rng(5)
    shapes = [(3, 4), (5,), (2, 3, 2), ()]
    params = [standard_normal(rng, s, dtype) for s in shapes]
    size = sum(p.size for p in params)
    m, v = standard_normal(rng, size, dtype, 0.1), np.abs(standard_normal(rng, size, dtype, 0.01))
    plain = [(p.copy(), mm.copy(), vv.copy()) for p, mm, vv in zip(
        params, np.split(m, np.cumsum([p.size for p in params])[:-1]), np.split(v, np.cumsum([p.size for p in params])[:-1]))]
    for t in (1, 2, 7):
        grads = [standard_normal(rng, s, dtype) for s in shapes]
        kernels.adamw_update_flat(params, grads, m, v, t, 1e-2, 0.9, 0.99, 1e-8, weight_decay)
        for (p, mm, vv), g in zip(plain, grads):
            adamw_update(p, g, mm.reshape(p.shape), vv.reshape(p.shape), t, 1e-2, 0.9, 0.99, 1e-8, weight_decay)
        for got, (want, _, _) in zip(params, plain):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(m, np.concatenate([mm.reshape(-1) for _, mm, _ in plain]))
    np.testing.assert_array_equal(v, np.concatenate([vv.reshape(-1) for _, _, vv in plain]))
