"""Invariants the fast paths rely on (never timings): whole float32 models compute in float32,
and each shortcut taken for speed gives what the plain computation gives.

- every array a float32 GPT or BERT training step produces, forward and backward, is float32
  (tests/test_tensor.py checks single ops; a hidden float64 upcast in a model doubles its cost);
- the float32 normal CDF behind BERT's exact GELU stays within 1e-7 of math.erf's, saturates
  to exactly 0 and 1 without warnings, and float64 input still gets erf.py's float64 accuracy;
- (..., n, k) @ (k, m), computed as one flattened GEMM, has the batched product's gradients;
- hidden[rows, cols] scatters its gradient like np.add.at, with and without repeated positions;
"""

import math
import warnings

import numpy as np
import pytest
from float32_check import instrument_float32

from numpretrain import Tensor, gradcheck
from numpretrain import functional as F
from numpretrain.models.bert import BertConfig, BertForPreTraining
from numpretrain.models.gpt import GPT, GPTConfig


def _gpt_loss(rng):
    model = GPT(GPTConfig(vocab_size=37, block_size=8, n_layer=2, n_head=2, n_embd=16))
    ids = rng.integers(0, 37, (3, 8))
    return model, model(ids, rng.integers(0, 37, (3, 8)))[1]


def _bert_loss(rng):
    model = BertForPreTraining(BertConfig(vocab_size=37, max_position=8, n_layer=2, n_head=2, n_embd=16,
                                          intermediate_size=32, dropout=0.1))
    ids = rng.integers(0, 37, (3, 8))
    mask = np.ones((3, 8), dtype=bool)
    mask[0, 6:] = False                                               # some padding
    labels = np.full((3, 8), -100)
    labels[:, 2] = rng.integers(0, 37, 3)
    labels[1, 5] = 7
    out = model(ids, np.zeros_like(ids), mask, labels, np.array([0, 1, 0]))
    return model, out["loss"]


@pytest.mark.parametrize("build", [_gpt_loss, _bert_loss], ids=["gpt", "bert"])
def test_a_float32_model_step_makes_only_float32_arrays(build):
    model, loss = build(np.random.default_rng(0))
    problems = instrument_float32(loss)
    loss.backward()
    params = list(model.parameters())
    assert all(p.data.dtype == np.float32 and p.grad is not None and p.grad.dtype == np.float32 for p in params)
    assert not problems, "; ".join(problems)


def test_float32_normal_cdf_is_within_1e_7_of_math_erf():
    x = np.linspace(-10, 10, 100001)
    expected = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    got = F.normal_cdf(x.astype(np.float32))
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-7


def test_float32_normal_cdf_saturates_to_0_and_1_without_warnings():
    x = np.array([-np.inf, -3e38, -1e10, -1e4, -30, 30, 1e4, 1e10, 3e38, np.inf], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # an overflow warning would fail here
        got = F.normal_cdf(x)
    np.testing.assert_array_equal(got, (x > 0).astype(np.float32))



def test_float32_normal_cdf_takes_scalars_and_views():
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    want = F.normal_cdf(x)
    assert F.normal_cdf(x[5]) == want[5]                   # a 0-d array
    np.testing.assert_array_equal(F.normal_cdf(x[::2]), want[::2])

@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_exact_gelu_keeps_the_accuracy_of_its_dtype(dtype, tolerance):
    x = np.linspace(-6, 6, 2401)
    expected = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    slope = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)
                      for v in x])
    xt = Tensor(x.astype(dtype), requires_grad=True)
    y = F.gelu(xt, "none")
    y.backward(np.ones_like(x))
    assert y.dtype == dtype and xt.grad.dtype == dtype
    np.testing.assert_allclose(y.data, expected, rtol=0, atol=tolerance)
    np.testing.assert_allclose(xt.grad, slope, rtol=0, atol=10 * tolerance)


def test_tanh_gelu_in_float32_matches_its_float64_value():
    x = np.linspace(-6, 6, 2401)
    y32 = F.gelu(Tensor(x.astype(np.float32)), "tanh").data
    y64 = F.gelu(Tensor(x), "tanh").data
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=0, atol=1e-6)


def test_a_stack_times_a_matrix_has_the_gradients_of_the_batched_product():
    rng = np.random.default_rng(1)
    a = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    b = Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    assert gradcheck(lambda a, b: a @ b, [a, b])
    a.grad = b.grad = None
    g = rng.standard_normal((2, 3, 5))
    (a @ b).backward(g)
    np.testing.assert_allclose(a.grad, g @ b.data.T, atol=1e-12)
    np.testing.assert_allclose(b.grad, np.einsum("bnk,bnm->km", a.data, g), atol=1e-12)


@pytest.mark.parametrize("index", [
    (np.array([0, 1, 3]), np.array([1, 1, 4])),          # distinct positions, as BERT's masked rows
    (np.array([0, 2, 0]), np.array([1, 3, 1])),          # a position twice: gradients add up
    (np.array([-1, 3]), np.array([0, 0])),               # -1 and 3 are the same row
    np.array([[0, 1], [2, 0]]),                           # one array, a repeat
    (np.array([1, 2]), slice(None)),                      # arrays and slices mixed
], ids=["distinct", "repeated", "negative", "one-array", "mixed"])
def test_integer_array_indexing_scatters_like_np_add_at(index):
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((4, 5, 3)), requires_grad=True)
    y = x[index]
    g = rng.standard_normal(y.shape)
    y.backward(g)
    expected = np.zeros_like(x.data)
    np.add.at(expected, index, g)
    np.testing.assert_array_equal(x.grad, expected)
