"""SelfAttention and TransformerBlock: gradients (float64 gradcheck), the fused and composite
attention paths, causality and padding as properties, the KV cache against full recompute,
and float32 staying float32."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpretrain import Tensor, capture, gradcheck, no_grad
from numpretrain.nn import (
    Embedding,
    KVCache,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    SelfAttention,
    TransformerBlock,
    init_weights,
)

F64 = np.float64
C, NH = 8, 2


def randomize(module, seed, scale=0.5):
    """Weights far from their init (LayerNorm gains and biases too), so every term of every
    gradient is exercised."""
    rng = np.random.default_rng(seed)
    for name, p in module.named_parameters():
        p.data[...] = (1 if name.endswith("weight") and "ln" in name else 0) + scale * rng.standard_normal(p.shape)
    return module


def padding_mask(lengths, T):
    """(B, T) bool, True at the first lengths[b] positions (right padding)."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


class TinyGPT(Module):
    """Token and position embeddings -> causal blocks -> LayerNorm -> head, for cache tests."""

    def __init__(self, V=13, block_size=24, n_layer=2, norm_first=True):
        self.wte = Embedding(V, C)
        self.wpe = Embedding(block_size, C)
        self.h = ModuleList([TransformerBlock(C, NH, norm_first=norm_first, causal=True) for _ in range(n_layer)])
        self.ln_f = LayerNorm(C)
        self.head = Linear(C, V, bias=False)

    def forward(self, ids, key_padding_mask=None, caches=None):
        past = 0 if caches is None else len(caches[0])
        x = self.wte(ids) + self.wpe(np.arange(past, past + ids.shape[1]))     # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, key_padding_mask, None if caches is None else caches[i])  # (B, T, C)
        return self.head(self.ln_f(x))                                         # (B, T, V)


# ----- the math, against plain NumPy written out in the test -----

def reference_attention(x, attn, mask):
    """Multi-head attention one batch row and one head at a time (loops are fine in a test)."""
    qkv = x @ attn.c_attn.weight.data + attn.c_attn.bias.data               # (B, T, 3C)
    q, k, v = np.split(qkv, 3, axis=-1)                                      # q | k | v column blocks
    B, T, _ = x.shape
    hs = C // NH
    y = np.zeros_like(x)
    for b in range(B):
        allowed = np.ones((T, T), bool)
        if attn.causal:
            allowed &= np.tril(np.ones((T, T), bool))
        if mask is not None:
            allowed &= mask[b][None, :]
        for h in range(NH):
            cols = slice(h * hs, (h + 1) * hs)                               # head h's columns
            scores = np.where(allowed, q[b, :, cols] @ k[b, :, cols].T / np.sqrt(hs), -np.inf)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            y[b, :, cols] = weights / weights.sum(-1, keepdims=True) @ v[b, :, cols]
    return y @ attn.c_proj.weight.data + attn.c_proj.bias.data


def reference_block(x, block, mask):
    def ln(x, layer):
        centered = x - x.mean(-1, keepdims=True)
        xhat = centered / np.sqrt((centered ** 2).mean(-1, keepdims=True) + layer.eps)
        return xhat * layer.weight.data + layer.bias.data

    def mlp(x):
        h = x @ block.mlp.c_fc.weight.data + block.mlp.c_fc.bias.data
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))   # GPT-2's gelu_new
        return h @ block.mlp.c_proj.weight.data + block.mlp.c_proj.bias.data

    if block.norm_first:
        x = x + reference_attention(ln(x, block.ln_1), block.attn, mask)
        return x + mlp(ln(x, block.ln_2))
    x = ln(x + reference_attention(x, block.attn, mask), block.ln_1)
    return ln(x + mlp(x), block.ln_2)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("causal, lengths", [(True, None), (False, [5, 2]), (True, [3, 5])])
@pytest.mark.parametrize("composite", [False, True])
def test_block_matches_the_formulas(norm_first, causal, lengths, composite):
    block = randomize(TransformerBlock(C, NH, norm_first=norm_first, causal=causal).to(F64), 20)
    block.attn.keep_probs_tensor = composite
    mask = None if lengths is None else padding_mask(lengths, 5)
    x = np.random.default_rng(21).standard_normal((2, 5, C))
    np.testing.assert_allclose(block(Tensor(x), key_padding_mask=mask).data, reference_block(x, block, mask),
                               rtol=1e-12, atol=1e-12)


# ----- gradients -----

@pytest.mark.parametrize("causal, lengths", [(True, None), (False, [4, 2]), (True, [3, 4])])
@pytest.mark.parametrize("composite", [False, True])
def test_self_attention_gradcheck(causal, lengths, composite):
    rng = np.random.default_rng(0)
    attn = randomize(SelfAttention(C, NH, dropout=0.3, causal=causal).to(F64), 1)
    attn.keep_probs_tensor = composite
    mask = None if lengths is None else padding_mask(lengths, 4)
    x = Tensor(rng.standard_normal((2, 4, C)), requires_grad=True)

    def f(x, *params):
        attn.set_rng(np.random.default_rng(2))      # the same dropout masks at every evaluation
        return attn(x, key_padding_mask=mask)
    gradcheck(f, [x, *attn.parameters()])


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("causal, lengths", [(True, None), (False, [4, 2]), (True, [2, 4])],
                         ids=["causal", "padding", "causal+padding"])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_block_gradcheck(norm_first, causal, lengths, dropout):
    rng = np.random.default_rng(3)
    block = randomize(TransformerBlock(C, NH, dropout=dropout, norm_first=norm_first, causal=causal,
                                       mlp_hidden=12).to(F64), 4)
    mask = None if lengths is None else padding_mask(lengths, 4)
    x = Tensor(rng.standard_normal((2, 4, C)), requires_grad=True)

    def f(x, *params):
        block.set_rng(np.random.default_rng(5))
        return block(x, key_padding_mask=mask)
    if dropout:
        block.train()
        assert not np.array_equal(f(x).data, block.eval()(x, key_padding_mask=mask).data)
        block.train()
    gradcheck(f, [x, *block.parameters()])


# ----- fused and composite attention -----

@pytest.mark.parametrize("causal, lengths", [(True, None), (False, [5, 3, 1]), (True, [2, 5, 4])])
@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_fused_and_composite_paths_agree(causal, lengths, dropout):
    rng = np.random.default_rng(6)
    block = randomize(TransformerBlock(C, NH, dropout=dropout, causal=causal).to(F64), 7)
    mask = None if lengths is None else padding_mask(lengths, 5)
    x_data = rng.standard_normal((3, 5, C))
    g = rng.standard_normal((3, 5, C))
    results = []
    for composite in (False, True):
        block.attn.keep_probs_tensor = composite
        block.attn.keep_probs = True
        block.set_rng(np.random.default_rng(8))
        block.zero_grad()
        x = Tensor(x_data.copy(), requires_grad=True)
        out = block(x, key_padding_mask=mask)
        out.backward(g)
        results.append((out.data, x.grad, {n: p.grad for n, p in block.named_parameters()},
                        block.attn.last_probs.copy()))
    (out_f, gx_f, grads_f, probs_f), (out_c, gx_c, grads_c, probs_c) = results
    np.testing.assert_allclose(out_c, out_f, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx_c, gx_f, rtol=1e-10, atol=1e-12)
    for name in grads_f:
        np.testing.assert_allclose(grads_c[name], grads_f[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(probs_c, probs_f, rtol=1e-12, atol=1e-15)


def test_captured_probs_have_a_gradient():
    model = TinyGPT()
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    with capture("h.*.attn.probs") as seen:
        logits = model(ids)
        logits.sum().backward()
    assert sorted(seen) == ["h.0.attn.probs", "h.1.attn.probs"]
    probs = seen["h.1.attn.probs"]
    assert probs.shape == (2, NH, 4, 4) and probs.grad.shape == (2, NH, 4, 4)
    assert np.abs(probs.grad).sum() > 0
    np.testing.assert_allclose(probs.data.sum(-1), 1, rtol=1e-6)
    assert np.all(np.triu(probs.data, k=1) == 0)                             # causal: nothing from the future


def test_keep_probs_for_plotting():
    attn = SelfAttention(C, NH, causal=True)
    attn.keep_probs = True
    attn(np.random.default_rng(0).standard_normal((2, 3, C)).astype(np.float32))
    assert attn.last_probs.shape == (2, NH, 3, 3) and attn.last_probs.dtype == np.float32
    attn.keep_probs_tensor = True
    attn(np.random.default_rng(0).standard_normal((2, 3, C)).astype(np.float32))
    assert attn.last_probs_tensor.name == "probs" and attn.last_probs_tensor.requires_grad


@pytest.mark.parametrize("composite", [False, True])
def test_a_sequence_of_only_padding_gives_zeros_not_nan(composite):
    attn = randomize(SelfAttention(C, NH, causal=False).to(F64), 9)
    attn.keep_probs, attn.keep_probs_tensor = True, composite
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, C)), requires_grad=True)
    mask = padding_mask([0, 2], 3)
    out = attn(x, key_padding_mask=mask)
    out.sum().backward()
    assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(x.grad))
    assert np.all(attn.last_probs[0] == 0)                                   # no key: zero weights
    np.testing.assert_allclose(attn.last_probs[1].sum(-1), 1)
    assert np.all(attn.last_probs[1][..., 2] == 0)                           # the padded key gets nothing


# ----- properties -----

@settings(max_examples=25, deadline=None)
@given(T=st.integers(2, 7), t=st.integers(0, 6), seed=st.integers(0, 2**16), norm_first=st.booleans())
def test_changing_later_tokens_never_changes_earlier_outputs(T, t, seed, norm_first):
    t = t % (T - 1)                                                          # a position with a later one
    rng = np.random.default_rng(seed)
    model = randomize(TinyGPT(norm_first=norm_first).to(F64), seed)
    ids = rng.integers(0, 13, size=(2, T))
    changed = ids.copy()
    changed[:, t + 1:] = rng.integers(0, 13, size=(2, T - t - 1))
    changed[0, -1] = (ids[0, -1] + 1) % 13                                   # at least one real change
    before, after = model(ids).data, model(changed).data
    np.testing.assert_allclose(after[:, :t + 1], before[:, :t + 1], rtol=0, atol=1e-12)
    assert not np.allclose(after[0, -1], before[0, -1])                      # and the change is seen later


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 2**16),
       norm_first=st.booleans())
def test_outputs_at_real_positions_ignore_padding(lengths, seed, norm_first):
    T = 6
    rng = np.random.default_rng(seed)
    blocks = [randomize(TransformerBlock(C, NH, causal=False, norm_first=norm_first).to(F64), seed + i)
              for i in range(2)]
    mask = padding_mask(lengths, T)

    def run(x):
        for block in blocks:
            x = block(x, key_padding_mask=mask)
        return x.data
    x = rng.standard_normal((len(lengths), T, C))
    junk = np.where(mask[..., None], x, 100 * rng.standard_normal(x.shape))   # other values where padded
    real = mask[..., None] & np.ones(C, bool)
    np.testing.assert_allclose(run(Tensor(junk))[real], run(Tensor(x))[real], rtol=0, atol=1e-12)


# ----- KV cache -----

@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("chunks", [[1] * 20, [5, 1, 1, 3, 10]], ids=["token-by-token", "prefill+chunks"])
def test_kv_cache_equals_full_recompute(norm_first, chunks):
    model = randomize(TinyGPT(norm_first=norm_first).to(F64), 10).eval()
    ids = np.random.default_rng(11).integers(0, 13, size=(2, sum(chunks)))   # 20 > the cache's first capacity
    with no_grad():
        full = model(ids).data                                               # (B, T, V)
        caches = KVCache.for_layers(len(model.h))
        start, steps = 0, []
        for n in chunks:
            steps.append(model(ids[:, start:start + n], caches=caches).data)
            start += n
    cached = np.concatenate(steps, axis=1)
    assert len(caches[0]) == ids.shape[1] and caches[1].k.shape == (2, NH, ids.shape[1], C // NH)
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_cached_block_in_plain_numpy_matches_the_module(norm_first, approximate):
    """nn/decode.py's block (generation's path) against the module's forward, for both GELUs."""
    block = randomize(TransformerBlock(C, NH, norm_first=norm_first, causal=True, approximate=approximate,
                                       bias=True).to(F64), 14).eval()
    x = np.random.default_rng(15).standard_normal((2, 7, C))
    with no_grad():
        full = block(Tensor(x)).data
        cache = KVCache()
        steps = [block(Tensor(x[:, :4]), kv_cache=cache).data] + [
            block(Tensor(x[:, t:t + 1]), kv_cache=cache).data for t in range(4, 7)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=0, atol=1e-12)


def test_kv_cache_with_left_padding_matches_full_recompute():
    model = randomize(TinyGPT().to(F64), 12).eval()
    ids = np.random.default_rng(13).integers(0, 13, size=(2, 6))
    mask = np.ones((2, 6), bool)
    mask[1, :2] = False                                                      # row 1: two pad tokens first
    with no_grad():
        full = model(ids, key_padding_mask=mask).data
        caches = KVCache.for_layers(2)
        prefill = model(ids[:, :3], key_padding_mask=mask[:, :3], caches=caches).data
        steps = [model(ids[:, i:i + 1], key_padding_mask=mask[:, i:i + 1], caches=caches).data
                 for i in range(3, 6)]
    np.testing.assert_allclose(np.concatenate([prefill, *steps], axis=1), full, rtol=0, atol=1e-12)
    assert caches[0].key_padding_mask.shape == (2, 6)


def test_kv_cache_keeps_probs_over_all_keys_and_resets():
    attn = SelfAttention(C, NH, causal=True)
    attn.keep_probs = True
    cache = KVCache()
    x = np.random.default_rng(0).standard_normal((1, 4, C)).astype(np.float32)
    with no_grad():
        attn(x[:, :3], kv_cache=cache)
        out = attn(x[:, 3:], kv_cache=cache)
    assert out.dtype == np.float32 and cache.k.dtype == np.float32
    assert attn.last_probs.shape == (1, NH, 1, 4)
    cache.reset()
    assert len(cache) == 0 and cache.k is None


def test_kv_cache_misuse_fails_clearly():
    x = np.zeros((1, 2, C), np.float32)
    block = TransformerBlock(C, NH, causal=True).eval()                 # the plain-NumPy path
    with pytest.raises(RuntimeError, match="no_grad"):
        block(x, kv_cache=KVCache())
    with no_grad(), pytest.raises(ValueError, match="key_padding_mask must have shape"):
        block(x, key_padding_mask=np.ones((1, 3), bool), kv_cache=KVCache())
    with no_grad(), pytest.raises(TypeError, match="must be boolean"):
        block(x, key_padding_mask=np.ones((1, 2)), kv_cache=KVCache())
    with no_grad(), pytest.raises(ValueError, match="expected x of shape"):
        block(np.zeros((1, 2, C + 1), np.float32), kv_cache=KVCache())
    with pytest.raises(RuntimeError, match="no_grad"):
        SelfAttention(C, NH, causal=True)(x, kv_cache=KVCache())
    with no_grad(), pytest.raises(ValueError, match="causal"):
        SelfAttention(C, NH, causal=False)(x, kv_cache=KVCache())


# ----- input checks and dtypes -----

def test_attention_input_checks():
    attn = SelfAttention(C, NH)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, 8\)"):
        attn(np.zeros((1, 3, C + 1), np.float32))
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        attn(np.zeros((2, 3, C), np.float32), key_padding_mask=np.ones((2, 4), bool))
    with pytest.raises(TypeError, match="must be boolean"):
        attn(np.zeros((2, 3, C), np.float32), key_padding_mask=np.ones((2, 3), int))


def _graph(tensor):
    seen, stack = {}, [tensor]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            stack.extend(node._parents)
    return list(seen.values())


@pytest.mark.parametrize("composite", [False, True])
def test_float32_stays_float32_through_forward_and_backward(composite):
    block = TransformerBlock(C, NH, dropout=0.1, causal=True)
    block.attn.keep_probs_tensor = composite
    x = Tensor(np.random.default_rng(0).standard_normal((2, 5, C)).astype(np.float32), requires_grad=True)
    out = block(x, key_padding_mask=padding_mask([5, 3], 5))
    out.backward(np.ones(out.shape, np.float32))
    nodes = _graph(out)
    assert len(nodes) > 10
    assert all(node.dtype == np.float32 for node in nodes if node.dtype.kind == "f")
    assert x.grad.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in block.parameters())


def test_block_output_is_named_by_its_path_and_init_is_deterministic():
    a, b = TinyGPT(), TinyGPT()
    init_weights(a, rng=np.random.default_rng(0), residual_layers=2)
    init_weights(b, rng=np.random.default_rng(0), residual_layers=2)
    ids = np.array([[1, 2, 3]])
    with capture("h.*") as seen:
        np.testing.assert_array_equal(a(ids).data, b(ids).data)
    assert {"h.0", "h.1", "h.0.attn.y", "h.1.mlp.fc"} <= set(seen)
