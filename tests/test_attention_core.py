"""The fused attention op (numpretrain/autograd/attention.py): gradients, equivalence, causality, masks.

- gradcheck in float64: plain, causal, with a key padding mask (including a query
  row whose keys are ALL masked, which must give zeros, not NaN), with dropout;
- equality, forward and backward, with the same computation composed from primitive
  ops (matmul, masked_fill, softmax, ...);
- causality under hypothesis: changing inputs after position t leaves outputs up to t
  unchanged, and their gradients do not reach later positions.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpretrain import Tensor, gradcheck, self_attention
from numpretrain import functional as F
from numpretrain.autograd.attention import allowed_keys, merge_heads, split_qkv


def make_qkv(seed, B, T, n_head, hs, dtype=np.float64):
    data = np.random.default_rng(seed).normal(size=(B, T, 3 * n_head * hs)).astype(dtype)
    return Tensor(data, requires_grad=True, name="qkv")


def padding_mask(B, T, lengths):
    """(B, T) bool, True at the first `lengths[b]` positions (real tokens), False after (padding)."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def composed_attention(qkv, n_head, causal=False, key_padding_mask=None, keep=None):
    """The same attention, built from primitive and fused ops one step at a time."""
    B, T, three_C = qkv.shape
    C = three_C // 3
    hs = C // n_head
    heads = qkv.reshape(B, T, 3, n_head, hs).permute(2, 0, 3, 1, 4)   # (3, B, nh, T, hs)
    q, k, v = heads[0], heads[1], heads[2]                              # (B, nh, T, hs)
    scores = (q @ k.permute(0, 1, 3, 2)) * (1 / math.sqrt(hs))          # (B, nh, T, T)
    allowed = np.ones((B, 1, T, T), dtype=bool)
    if causal:
        allowed &= np.tril(np.ones((T, T), dtype=bool))
    if key_padding_mask is not None:
        allowed &= key_padding_mask[:, None, None, :]
    probs = F.softmax(F.masked_fill(scores, ~allowed, -np.inf), axis=-1)
    dropped = probs if keep is None else probs * keep
    y = dropped @ v                                                     # (B, nh, T, hs)
    return y.permute(0, 2, 1, 3).reshape(B, T, C), probs


# ----- gradcheck -----

@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck(causal):
    qkv = make_qkv(0, B=2, T=3, n_head=2, hs=2)
    assert gradcheck(lambda x: self_attention(x, 2, causal=causal)[0], [qkv])


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_with_key_padding(causal):
    qkv = make_qkv(1, B=2, T=4, n_head=1, hs=2)
    mask = padding_mask(2, 4, [4, 2])
    assert gradcheck(lambda x: self_attention(x, 1, causal=causal, key_padding_mask=mask)[0], [qkv])


def test_rows_with_every_key_masked_give_zeros_not_nan():
    """Batch 1 is all padding: every row masked. With causal attention and key 0 padded in
    batch 0, query 0 there has no key either."""
    qkv = make_qkv(2, B=2, T=3, n_head=2, hs=2)
    mask = np.array([[False, True, True], [False, False, False]])
    y, probs = self_attention(qkv, 2, causal=True, key_padding_mask=mask)
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(probs))
    np.testing.assert_array_equal(y.data[1], 0)
    np.testing.assert_array_equal(probs[1], 0)
    np.testing.assert_array_equal(y.data[0, 0], 0)
    np.testing.assert_array_equal(probs[0, :, 0], 0)
    np.testing.assert_allclose(probs[0, :, 1:].sum(-1), 1, rtol=1e-12)
    y.backward(np.ones(y.shape))
    assert np.all(np.isfinite(qkv.grad))
    assert gradcheck(lambda x: self_attention(x, 2, causal=True, key_padding_mask=mask)[0], [qkv])


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_with_dropout(causal):
    qkv = make_qkv(3, B=2, T=3, n_head=2, hs=2)

    def attend(x):
        # a fresh generator per call: every evaluation inside gradcheck draws the same mask
        rng = np.random.default_rng(11)
        return self_attention(x, 2, causal=causal, dropout=0.4, rng=rng, training=True)[0]

    y = attend(qkv)
    assert not np.allclose(y.data, self_attention(qkv, 2, causal=causal)[0].data)  # dropout did act
    assert gradcheck(attend, [qkv])


def test_dropout_is_off_when_not_training():
    qkv = make_qkv(4, B=1, T=4, n_head=2, hs=2)
    plain = self_attention(qkv, 2)[0].data
    evaluated = self_attention(qkv, 2, dropout=0.5, rng=np.random.default_rng(0), training=False)[0].data
    np.testing.assert_array_equal(plain, evaluated)


# ----- the fused op equals its composition from primitives -----

@pytest.mark.parametrize("causal, lengths", [(False, None), (True, None), (False, [5, 3]), (True, [5, 2]),
                                             (True, [0, 4])])
def test_equals_the_composition_of_primitive_ops(causal, lengths):
    B, T, n_head, hs = 2, 5, 2, 3
    mask = None if lengths is None else padding_mask(B, T, lengths)
    fused_in, composed_in = make_qkv(5, B, T, n_head, hs), make_qkv(5, B, T, n_head, hs)
    y, probs = self_attention(fused_in, n_head, causal=causal, key_padding_mask=mask)
    y_ref, probs_ref = composed_attention(composed_in, n_head, causal, mask)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(probs, probs_ref.data, rtol=1e-12, atol=1e-14)
    g = np.random.default_rng(6).normal(size=y.shape)
    y.backward(g)
    y_ref.backward(g)
    np.testing.assert_allclose(fused_in.grad, composed_in.grad, rtol=1e-10, atol=1e-12)


def test_equals_the_composition_with_dropout():
    """The fused op draws its keep-mask as rng.random(probs.shape, float32) >= p; the composition
    draws the same one from the same seed and applies it by hand."""
    B, T, n_head, hs, p = 2, 4, 2, 2, 0.3
    fused_in, composed_in = make_qkv(7, B, T, n_head, hs), make_qkv(7, B, T, n_head, hs)
    y, _ = self_attention(fused_in, n_head, causal=True, dropout=p, rng=np.random.default_rng(9), training=True)
    keep = (np.random.default_rng(9).random((B, n_head, T, T), dtype=np.float32) >= p) / (1 - p)
    y_ref, _ = composed_attention(composed_in, n_head, causal=True, keep=keep)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=1e-6, atol=1e-12)  # keep is float32-scaled
    g = np.random.default_rng(8).normal(size=y.shape)
    y.backward(g)
    y_ref.backward(g)
    np.testing.assert_allclose(fused_in.grad, composed_in.grad, rtol=1e-6, atol=1e-12)


# ----- causality -----

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2), st.integers(2, 6), st.integers(1, 2), st.integers(1, 3), st.data(),
       st.integers(0, 2**32 - 1))
def test_causal_outputs_do_not_depend_on_later_positions(B, T, n_head, hs, data, seed):
    t = data.draw(st.integers(0, T - 2))
    qkv = make_qkv(seed, B, T, n_head, hs)
    changed = qkv.data.copy()
    changed[:, t + 1:] = np.random.default_rng(seed + 1).normal(size=changed[:, t + 1:].shape) * 10
    y = self_attention(qkv, n_head, causal=True)[0]
    y_changed = self_attention(Tensor(changed), n_head, causal=True)[0]
    np.testing.assert_array_equal(y.data[:, :t + 1], y_changed.data[:, :t + 1])
    assert not np.array_equal(y.data[:, t + 1:], y_changed.data[:, t + 1:])
    # and backwards: the outputs up to t send no gradient to later positions
    g = np.zeros(y.shape)
    g[:, :t + 1] = 1
    y.backward(g)
    np.testing.assert_array_equal(qkv.grad[:, t + 1:], 0)


def test_without_the_causal_mask_early_outputs_do_see_later_positions():
    """The contrapositive, so the causality test cannot pass for a broken reason."""
    qkv = make_qkv(9, 1, 4, 1, 2)
    changed = qkv.data.copy()
    changed[:, 3] += 1
    assert not np.allclose(self_attention(qkv, 1)[0].data[:, 0], self_attention(Tensor(changed), 1)[0].data[:, 0])


# ----- shapes, dtypes, helpers, bad input -----

def test_probabilities_sum_to_one_and_are_zero_on_masked_keys():
    qkv = make_qkv(10, B=2, T=5, n_head=2, hs=2)
    mask = padding_mask(2, 5, [5, 3])
    y, probs = self_attention(qkv, 2, causal=True, key_padding_mask=mask)
    assert y.shape == (2, 5, 4) and probs.shape == (2, 2, 5, 5)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-12)
    assert np.all(np.triu(probs, k=1) == 0)
    np.testing.assert_array_equal(probs[1, :, :, 3:], 0)


def test_float32_in_float32_out_and_float32_gradient():
    qkv = make_qkv(11, B=2, T=4, n_head=2, hs=3, dtype=np.float32)
    y, probs = self_attention(qkv, 2, causal=True, dropout=0.2, rng=np.random.default_rng(0), training=True)
    assert y.dtype == np.float32 and probs.dtype == np.float32
    y.backward(np.ones(y.shape, dtype=np.float32))
    assert qkv.grad.dtype == np.float32


def test_split_qkv_and_merge_heads_round_trip():
    x = np.arange(2 * 3 * 12, dtype=np.float64).reshape(2, 3, 12)
    q, k, v = split_qkv(x, n_head=2)
    assert q.shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(merge_heads(q), x[..., :4])
    np.testing.assert_array_equal(merge_heads(k), x[..., 4:8])
    np.testing.assert_array_equal(merge_heads(v), x[..., 8:])


def test_allowed_keys_with_fewer_queries_than_keys():
    """The last Tq of Tk positions (as with a KV cache): query i sees keys up to i + Tk - Tq."""
    allowed = allowed_keys(2, 4, causal=True, key_padding_mask=None)
    np.testing.assert_array_equal(allowed[0, 0], [[1, 1, 1, 0], [1, 1, 1, 1]])
    assert allowed_keys(3, 3, causal=False, key_padding_mask=None) is None


def test_bad_input_raises_clear_errors():
    qkv = make_qkv(12, B=2, T=3, n_head=2, hs=2)
    with pytest.raises(ValueError, match="n_head=5"):
        self_attention(qkv, 5)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        self_attention(qkv, 2, key_padding_mask=np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="rng"):
        self_attention(qkv, 2, dropout=0.1, training=True)

