"""BERT's cloze classifier (finetune --pooling cloze): the pretraining MLM head scoring a word per label.

Its defining property: before any fine-tuning, a label's score is exactly the pretrained
BertForPreTraining's log-probability of that label's word at the [MASK]s. Then its gradient,
its encoding (a long text is cut, never the [MASK]s), the command end to end, and its errors.
"""

import numpy as np
import pytest

from numpretrain import gradcheck
from numpretrain.app import cli
from numpretrain.app.finetune import build_classifier, encode_examples, predict
from numpretrain.autograd.softmax import stable_softmax
from numpretrain.data import encode_cloze
from numpretrain.data.builtin.reviews import LABEL_NAMES, REVIEW_CLOZE, REVIEW_VERBALIZERS, review_dataset
from numpretrain.errors import ConfigError, DataError
from numpretrain.models.bert import BertConfig, BertForPreTraining
from numpretrain.models.heads import BertClassifier, ClassifierConfig, load_body
from numpretrain.storage.runs import load_pretrained
from numpretrain.tokenizers import CharTokenizer

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "64",
        "--batch-size", "8", "--max-iters", "20", "--warmup-iters", "5", "--eval-interval", "20",
        "--eval-iters", "1", "--log-interval", "20"]
CLOZE_FINETUNE = ["--task", "reviews", "--labels", "16", "--pooling", "cloze", "--max-iters", "4",
                  "--warmup-iters", "1", "--log-interval", "4"]


def tiny_cloze(rng, V=13, words=((5, 6), (7, 8)), mask_id=4, dropout=0.0):
    """A 1-layer BertForPreTraining in float64 and a cloze classifier holding the same weights."""
    body = BertConfig(vocab_size=V, max_position=10, n_layer=1, n_head=2, n_embd=8, intermediate_size=16,
                      dropout=dropout)
    pretrained = BertForPreTraining(body, rng=rng)
    pretrained.mlm_bias.data[:] = rng.standard_normal(V)            # a head whose every part matters
    config = ClassifierConfig(body=body.to_dict(), pooling="cloze", cloze="{text}[MASK][MASK]",
                              verbalizers=["x", "y"], verbalizer_ids=[list(w) for w in words], mask_id=mask_id)
    classifier = BertClassifier(config, rng=np.random.default_rng(99))
    load_body(classifier, pretrained.state_dict(), "pretrained")
    return pretrained.to(np.float64), classifier.to(np.float64)


def cloze_batch(rng, mask_id=4, V=13):
    """Three right-padded rows, each a text then two [MASK]s: lengths 5, 3 and 7 (of T = 7)."""
    lengths = np.array([5, 3, 7])
    ids = rng.integers(5, V, (3, 7))
    ids[np.arange(3), lengths - 1] = mask_id
    ids[np.arange(3), lengths - 2] = mask_id
    mask = np.arange(7)[None, :] < lengths[:, None]
    return {"input_ids": np.where(mask, ids, 0), "attention_mask": mask, "token_type_ids": np.zeros((3, 7), int),
            "labels": np.array([0, 1, 1])}


def test_cloze_scores_are_the_pretrained_mlm_heads_log_probabilities():
    pretrained, classifier = tiny_cloze(np.random.default_rng(0))
    pretrained.eval(), classifier.eval()
    batch = cloze_batch(np.random.default_rng(1))
    logits = pretrained(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])["mlm_logits"].data
    logprobs = logits - stable_softmax(logits)[1]                            # (B, T, V)
    expected = np.zeros((3, 2))
    for row in range(3):
        first, second = np.flatnonzero(batch["input_ids"][row] == 4)
        for label, (a, b) in enumerate(((5, 6), (7, 8))):
            expected[row, label] = logprobs[row, first, a] + logprobs[row, second, b]
    assert np.allclose(classifier(batch)["logits"].data, expected, rtol=1e-12, atol=1e-12)


def test_cloze_gradcheck_with_padding():
    _, classifier = tiny_cloze(np.random.default_rng(2))
    batch = cloze_batch(np.random.default_rng(3))
    params = list(classifier.parameters())
    assert gradcheck(lambda *_: classifier(batch)["loss"], params, atol=1e-8, rtol=1e-5)


def test_a_row_without_its_masks_is_refused_by_name():
    _, classifier = tiny_cloze(np.random.default_rng(4))
    batch = cloze_batch(np.random.default_rng(5))
    batch["input_ids"][1, 1] = 9                                              # one [MASK] of row 1 gone
    with pytest.raises(DataError, match=r"exactly 2 \[MASK\]s.*some have \[1\]"):
        classifier(batch)


def test_encode_cloze_cuts_a_long_text_never_the_masks():
    tokenizer = CharTokenizer.train("这家店很好满意失望非常。" * 3)
    data = encode_cloze(["很好" * 20, "很好"], "{text}非常[MASK][MASK]。", tokenizer, max_length=12)
    ids = data["input_ids"]                                                   # (2, 12)
    tail = [*tokenizer.encode("非常"), tokenizer.mask_id, tokenizer.mask_id, *tokenizer.encode("。"), tokenizer.sep_id]
    assert list(ids[0, -6:]) == tail and ids[0, 0] == tokenizer.cls_id        # cut text, whole question
    assert list(ids[1, 3:9]) == tail and data["attention_mask"][1].sum() == 9
    with pytest.raises(DataError, match="no room"):
        encode_cloze(["很好"], "{text}非常[MASK][MASK]。", tokenizer, max_length=7)
    with pytest.raises(DataError, match="pairs"):
        encode_cloze([("很好", "满意")], "{text}[MASK]", tokenizer, max_length=12)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    out = tmp_path_factory.mktemp("cloze") / "bert"
    assert cli.main(["pretrain-bert", "--out", str(out), *TINY]) == 0
    return str(out)


def test_the_cloze_starts_from_the_pretrained_body_and_mlm_head(bert):
    pretrained, _, _ = load_pretrained(bert, expect="bert")
    model, _ = build_classifier(bert, 2, list(LABEL_NAMES), pooling="cloze", cloze=REVIEW_CLOZE,
                                verbalizers=list(REVIEW_VERBALIZERS))
    weights = pretrained.state_dict()
    assert "mlm_dense.weight" in model.state_dict() and "nsp.weight" not in model.state_dict()
    for name, value in model.state_dict().items():
        assert np.array_equal(value, weights[name]), name


def test_the_command_saves_a_cloze_that_classify_reads_back(bert, tmp_path, capsys):
    out = str(tmp_path / "cloze")
    assert cli.main(["finetune", "--ckpt", bert, "--out", out, *CLOZE_FINETUNE]) == 0
    tuned, tokenizer, config = load_pretrained(out, expect="bert_classifier")
    assert config.verbalizer_ids == [tokenizer.encode(word) for word in REVIEW_VERBALIZERS]
    texts = [text for text, _ in review_dataset(0).test[:6]]
    expected = [LABEL_NAMES[i] for i in predict(tuned, encode_examples(tuned, tokenizer, [(t, 0) for t in texts], 64))]
    capsys.readouterr()
    assert cli.main(["classify", "--ckpt", out, *texts]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.strip().splitlines()] == expected
    assert cli.main(["export-hf", "--ckpt", out, "--out", str(tmp_path / "hf")]) == 2
    assert "--pooling cloze" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--verbalizers", "失望,很满意"], "each verbalizer must be 2 tokens"),
    (["--verbalizers", "失望"], "1 words for 2 labels"),
    (["--cloze", "非常[MASK][MASK]。"], "must hold {text} once"),
    (["--freeze"], "--freeze trains the classifier layer alone"),
])
def test_a_cloze_that_cannot_work_is_refused_with_its_option(bert, options, message, capsys):
    assert cli.main(["finetune", "--ckpt", bert, *CLOZE_FINETUNE, *options]) == 2
    assert message in capsys.readouterr().err


def test_cloze_options_without_the_cloze_pooling_are_refused(bert, capsys):
    assert cli.main(["finetune", "--ckpt", bert, "--task", "reviews", "--labels", "4", "--cloze", "{text}[MASK]"]) == 2
    assert "are for --pooling cloze" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs --cloze"):
        build_classifier(bert, 2, list(LABEL_NAMES), pooling="cloze")
