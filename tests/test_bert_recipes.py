"""The BERT recipes demo's lesson counter (demos/bert_recipes.py), checked against a plain loop.

A lesson is a sentiment adjective whose characters are all chosen for prediction, in a sequence
where another word of its polarity is visible; a clash, the same with a word of the other polarity.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from numpretrain.app import cli
from numpretrain.app.pretrain import load_corpus, pretraining_batcher, tokenizer_for_run
from numpretrain.data import IGNORE_INDEX, NEGATIVE_CLOSINGS, POSITIVE_CLOSINGS, SENTIMENT_WORDS

# a small corpus and a short run, so that one batcher pass takes well under a second
SMALL = ["--n-documents", "2000", "--max-iters", "10", "--batch-size", "8", "--block-size", "64"]


@pytest.fixture(scope="module")
def demo():
    path = Path(__file__).parents[1] / "demos" / "bert_recipes.py"
    spec = importlib.util.spec_from_file_location("bert_recipes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_occurrences_count_a_word_wholly_hidden_or_wholly_visible_not_half(demo):
    ids = np.array([[9, 5, 6, 1, 5, 6, 2, 5, 6]])
    hidden = np.zeros(ids.shape, dtype=bool)
    hidden[0, [1, 2, 8]] = True                     # the first 5 6 hidden whole, the second visible, the third half
    whole, visible = demo.occurrences(ids, [5, 6], hidden)
    assert (whole.tolist(), visible.tolist()) == ([1], [1])


def lessons_by_hand(row_options, seed, n_sequences):
    """The same count as polarity_lessons, as a loop over the characters of each sequence."""
    options = cli.build_parser().parse_args(["pretrain-bert", *row_options])
    text, source = load_corpus(options)
    tokenizer = tokenizer_for_run(options, text)
    batcher = pretraining_batcher(options, text, tokenizer, source)
    closings = {"negative": NEGATIVE_CLOSINGS, "positive": POSITIVE_CLOSINGS}
    rng = np.random.default_rng(seed)
    lessons = clashes = 0
    for _ in range(n_sequences // options.batch_size):
        batch = batcher.get_batch(rng, options.batch_size)
        for ids, labels in zip(batch["input_ids"], batch["mlm_labels"]):
            chars = [tokenizer.decode([int(label if label != IGNORE_INDEX else i)]) for i, label in zip(ids, labels)]
            hidden = [label != IGNORE_INDEX for label in labels]

            def spans(word):
                return [k for k in range(len(chars) - len(word) + 1) if "".join(chars[k:k + len(word)]) == word]

            visible = {p: any(not any(hidden[k:k + len(w)]) for w in SENTIMENT_WORDS[p] + closings[p] for k in spans(w))
                       for p in closings}
            for p, other in (("negative", "positive"), ("positive", "negative")):
                for word in SENTIMENT_WORDS[p]:
                    for k in spans(word):
                        if all(hidden[k:k + len(word)]):
                            lessons += visible[p]
                            clashes += visible[other]
    n_batches = n_sequences // options.batch_size
    return lessons * options.max_iters / n_batches, clashes * options.max_iters / n_batches


# NSP pairs of two reviews make clashes; with reviews only, 800 sequences hold several
@pytest.mark.parametrize("extra, n_sequences", [(["--review-share", "1.0"], 800),
                                                (["--no-nsp", "--mask-prob", "0.3", "--max-predictions", "32"], 160)])
def test_polarity_lessons_equal_a_plain_count_of_the_same_batches(demo, monkeypatch, extra, n_sequences):
    options = [*SMALL, "--review-share", "0.75", *extra]
    monkeypatch.setitem(demo.ROWS, "small", options)
    counted = demo.polarity_lessons("small", seed=3, n_sequences=n_sequences)
    assert counted == lessons_by_hand(options, seed=3, n_sequences=n_sequences)
    assert counted[0] > 0                           # the batches held lessons to count
    if "--no-nsp" in extra:
        assert counted[1] == 0                      # a single segment holds one document: nothing clashes
    else:
        assert counted[1] > 0                       # and the pairs, clashes
