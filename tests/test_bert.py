"""BERT: the pretraining loss's gradient with padding, what the MLM loss counts, masks and segments."""

import numpy as np
import pytest

from numpretrain import gradcheck
from numpretrain.autograd.functional import IGNORE_INDEX
from numpretrain.errors import ConfigError
from numpretrain.models.bert import BertConfig, BertForPreTraining


def tiny_bert(dropout=0.0):
    config = BertConfig(vocab_size=13, max_position=10, n_layer=2, n_head=2, n_embd=8,
                        intermediate_size=16, dropout=dropout)
    model = BertForPreTraining(config, rng=np.random.default_rng(0))
    model.to(np.float64)
    return model


def batch(rng, B=2, T=7):
    ids = rng.integers(5, 13, (B, T))
    mask = np.ones((B, T), dtype=bool)
    mask[0, 5:] = False                                   # the first sequence is padded
    ids[~mask] = 0
    segments = np.zeros((B, T), dtype=np.int64)
    segments[:, 3:] = 1
    labels = np.full((B, T), IGNORE_INDEX)
    labels[0, 1], labels[0, 3], labels[1, 2], labels[1, 6] = 7, 8, 9, 10
    return ids, segments, mask, labels, np.array([0, 1])


def test_pretraining_loss_gradcheck_with_padding():
    model = tiny_bert()
    ids, segments, mask, labels, nsp = batch(np.random.default_rng(1))
    named = list(model.named_parameters())
    for name, p in named:
        p.name = name

    def loss(*_):
        return model(ids, segments, mask, labels, nsp)["loss"]
    assert gradcheck(loss, [p for _, p in named], atol=1e-8, rtol=1e-5)


def test_mlm_loss_counts_only_chosen_positions():
    model = tiny_bert()
    ids, segments, mask, labels, nsp = batch(np.random.default_rng(2))
    out = model(ids, segments, mask, labels, nsp)
    full = model(ids, segments, mask)["mlm_logits"].data            # (B, T, V) at every position
    chosen = labels != IGNORE_INDEX
    z = full[chosen] - full[chosen].max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -logp[np.arange(chosen.sum()), labels[chosen]].mean()
    assert np.isclose(out["mlm_loss"].item(), expected, rtol=1e-12)
    assert 0 <= out["mlm_accuracy"] <= 1 and 0 <= out["nsp_accuracy"] <= 1


def test_padding_never_influences_real_positions():
    model = tiny_bert()
    ids, segments, mask, _, _ = batch(np.random.default_rng(3))
    hidden, _ = model.bert(ids, segments, mask)
    other = ids.copy()
    other[0, 5:] = [11, 12]                                          # different junk in the padding
    hidden_other, _ = model.bert(other, segments, mask)
    np.testing.assert_allclose(hidden.data[0, :5], hidden_other.data[0, :5], rtol=0, atol=1e-13)


def test_segment_embedding_is_used():
    model = tiny_bert()
    ids, segments, mask, _, _ = batch(np.random.default_rng(4))
    a, _ = model.bert(ids, segments, mask)
    b, _ = model.bert(ids, np.zeros_like(segments), mask)
    assert not np.allclose(a.data[:, 3:], b.data[:, 3:])


def test_weight_names_follow_the_bert_checkpoint():
    names = dict(tiny_bert().named_parameters())
    for name in ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                 "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                 "bert.pooler.weight", "mlm_bias", "nsp.weight"]:
        assert name in names, name


def test_bad_input_is_named():
    model = tiny_bert()
    with pytest.raises(ValueError, match="longer than max_position"):
        model(np.zeros((1, 11), dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        model(np.array([[2, 13]]))
    with pytest.raises(ConfigError, match="not divisible"):
        BertConfig(n_embd=10, n_head=4)
