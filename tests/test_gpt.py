"""GPT: the loss's gradient, the KV cache, generation, and clear errors."""

import numpy as np
import pytest

from numpretrain import gradcheck
from numpretrain.errors import ConfigError
from numpretrain.models.gpt import GPT, GPTConfig, sample_next
from numpretrain.nn import KVCache


def tiny_gpt(norm_first=True, dtype=np.float64, **overrides):
    config = GPTConfig(**{"vocab_size": 11, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 8,
                          "norm_first": norm_first, **overrides})
    model = GPT(config, rng=np.random.default_rng(0))
    if dtype == np.float64:
        model.to(np.float64)
    return model


@pytest.mark.parametrize("norm_first", [True, False])
def test_loss_gradcheck_every_parameter(norm_first):
    model = tiny_gpt(norm_first)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 11, (2, 5)), rng.integers(0, 11, (2, 5))
    named = list(model.named_parameters())
    params = [p for _, p in named]
    for name, p in named:
        p.name = name

    def loss(*_):
        return model(ids, targets)[1]
    assert gradcheck(loss, params, atol=1e-8, rtol=1e-5)


def test_untied_head_and_loss_matches_cross_entropy_of_logits():
    model = tiny_gpt(tie_weights=False)
    ids = np.random.default_rng(2).integers(0, 11, (2, 6))
    logits, loss = model(ids[:, :-1], ids[:, 1:])
    assert "lm_head.weight" in dict(model.named_parameters())
    # the loss is the mean -log softmax at the targets, computed independently here
    z = logits.data - logits.data.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -np.take_along_axis(logp, ids[:, 1:, None], -1).mean()
    assert np.isclose(loss.item(), expected, rtol=1e-12)


@pytest.mark.parametrize("norm_first", [True, False])
def test_kv_cache_gives_the_same_logits_at_every_step(norm_first):
    model = tiny_gpt(norm_first)
    ids = np.random.default_rng(3).integers(0, 11, (2, 8))
    caches = KVCache.for_layers(len(model.h))
    cached = [model.next_token_logits(ids[:, :3], caches)]
    for t in range(3, 8):
        cached.append(model.next_token_logits(ids[:, t:t + 1], caches))
    for step, logits in enumerate(cached):
        full = model.next_token_logits(ids[:, :3 + step])
        np.testing.assert_allclose(logits, full, rtol=1e-12, atol=1e-12)


def test_cached_and_uncached_generation_agree_past_block_size():
    model = tiny_gpt()
    prompt = np.array([[1, 2, 3]])
    for kwargs in ({"greedy": True}, {"temperature": 0.9, "top_k": 5, "seed": 4}, {"top_p": 0.8, "seed": 5}):
        with_cache = model.generate(prompt, 12, use_cache=True, **kwargs)
        without = model.generate(prompt, 12, use_cache=False, **kwargs)
        assert with_cache.shape == (1, 15)      # 3 + 12 > block_size 8: the context was cropped
        np.testing.assert_array_equal(with_cache, without)


def test_generation_is_seeded():
    model = tiny_gpt()
    a = model.generate(np.array([[1]]), 6, seed=7)
    b = model.generate(np.array([[1]]), 6, seed=7)
    np.testing.assert_array_equal(a, b)


def test_sampling_filters():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    draws = np.concatenate([sample_next(logits, rng, top_k=2) for _ in range(300)])
    assert set(draws.ravel()) == {0, 1}
    draws = np.concatenate([sample_next(logits, rng, top_p=0.7) for _ in range(300)])
    assert set(draws.ravel()) == {0, 1}          # 0.5 < 0.7, 0.5 + 0.3 reaches it
    draws = np.concatenate([sample_next(logits, rng) for _ in range(2000)])
    assert abs((draws == 0).mean() - 0.5) < 0.05
    assert sample_next(logits, rng, greedy=True)[0, 0] == 0


def test_bad_input_is_named():
    model = tiny_gpt(dtype=np.float32)
    with pytest.raises(ValueError, match="out of range"):
        model(np.array([[1, 11]]))
    with pytest.raises(ValueError, match="longer than block_size"):
        model(np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(np.zeros(4, dtype=np.int64))
    with pytest.raises(ConfigError, match="not divisible"):
        GPTConfig(n_embd=10, n_head=4)
    with pytest.raises(ConfigError, match="positive"):
        GPTConfig(n_layer=0)


def test_float32_model_stays_float32():
    model = tiny_gpt(dtype=np.float32)
    ids = np.random.default_rng(0).integers(0, 11, (2, 8))
    logits, loss = model(ids, ids)
    loss.backward()
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_residual_projections_are_scaled():
    model = tiny_gpt(dtype=np.float32, n_embd=64, n_head=2, n_layer=8)
    std_fc = model.h[0].mlp.c_fc.weight.data.std()
    std_proj = model.h[0].mlp.c_proj.weight.data.std()
    assert abs(std_fc - 0.02) < 0.002
    assert abs(std_proj - 0.02 / np.sqrt(2 * 8)) < 0.001
