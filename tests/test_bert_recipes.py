"""The BERT recipes demo's lesson counters (demos/bert_recipes.py), checked against plain loops.

A polarity lesson is a sentiment adjective whose characters are all chosen for prediction, in a
sequence where another word of its polarity is visible; a clash, the same with a word of the other
polarity. A city lesson is a university's name all chosen, with its city visible and no other
mention of the name (for 北京 and 南京, whose city is that mention: with the city visible).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from numpretrain.app import cli
from numpretrain.app.pretrain import load_corpus, pretraining_batcher, tokenizer_for_run
from numpretrain.data import IGNORE_INDEX, NEGATIVE_CLOSINGS, POSITIVE_CLOSINGS, SENTIMENT_WORDS
from numpretrain.data.builtin.world import CITIES

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


def sequences_by_hand(row_options, seed, n_sequences):
    """(characters before masking, hidden flags) of each sequence of the batches a run of these options draws."""
    options = cli.build_parser().parse_args(["pretrain-bert", *row_options])
    text, source = load_corpus(options)
    tokenizer = tokenizer_for_run(options, text)
    batcher = pretraining_batcher(options, text, tokenizer, source)
    rng = np.random.default_rng(seed)
    for _ in range(n_sequences // options.batch_size):
        batch = batcher.get_batch(rng, options.batch_size)
        for ids, labels in zip(batch["input_ids"], batch["mlm_labels"]):
            chars = [tokenizer.decode([int(label if label != IGNORE_INDEX else i)]) for i, label in zip(ids, labels)]
            yield chars, [label != IGNORE_INDEX for label in labels]


def spans(chars, word):
    return [k for k in range(len(chars) - len(word) + 1) if "".join(chars[k:k + len(word)]) == word]


def lessons_by_hand(row_options, seed, n_sequences):
    """The same count as polarity_lessons, as a loop over the characters of each sequence."""
    options = cli.build_parser().parse_args(["pretrain-bert", *row_options])
    closings = {"negative": NEGATIVE_CLOSINGS, "positive": POSITIVE_CLOSINGS}
    lessons = clashes = 0
    for chars, hidden in sequences_by_hand(row_options, seed, n_sequences):
        visible = {p: any(not any(hidden[k:k + len(w)]) for w in SENTIMENT_WORDS[p] + closings[p] for k in spans(chars, w))
                   for p in closings}
        for p, other in (("negative", "positive"), ("positive", "negative")):
            for word in SENTIMENT_WORDS[p]:
                for k in spans(chars, word):
                    if all(hidden[k:k + len(word)]):
                        lessons += visible[p]
                        clashes += visible[other]
    n_batches = n_sequences // options.batch_size
    return lessons * options.max_iters / n_batches, clashes * options.max_iters / n_batches


def city_lessons_by_hand(row_options, seed, n_sequences):
    """The same count as city_lessons, as a loop over the characters of each sequence."""
    lessons = {university: 0 for info in CITIES.values() for university, _ in info.universities}
    for chars, hidden in sequences_by_hand(row_options, seed, n_sequences):
        seen = lambda word: any(not any(hidden[k:k + len(word)]) for k in spans(chars, word))
        for city, info in CITIES.items():
            for university, _ in info.universities:
                told = seen(city) if university == city else seen(city) and not seen(university)
                lessons[university] += told * sum(all(hidden[k:k + len(university)]) for k in spans(chars, university))
    return lessons


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


def test_city_lessons_equal_a_plain_count_of_every_batch_of_the_run(demo, monkeypatch):
    # stories only and many characters chosen, so that 40 steps of 8 hold lessons of every kind
    options = [*SMALL, "--review-share", "0.0", "--mask-prob", "0.5", "--max-predictions", "32", "--max-iters", "40"]
    monkeypatch.setitem(demo.ROWS, "small", options)
    counted = demo.city_lessons("small", seed=3)                  # every batch of the run: 40 x 8 sequences
    assert counted == city_lessons_by_hand(options, seed=3, n_sequences=40 * 8)
    assert counted["北京"] > 0                                     # a copy lesson: the city is the name
    assert sum(counted[u] for u in ("清华", "复旦", "浙江")) > 0    # and the city telling another name


class CodePoints:
    """A tokenizer whose ids are the characters' code points, enough for the counters' encode."""

    @staticmethod
    def encode(text):
        return [ord(ch) for ch in text]


@pytest.mark.parametrize("text, hidden_at, expected", [
    ("我在上海旅行复旦大学", [6, 7], {"复旦": 1}),                 # the city tells the hidden name
    ("我在上海旅行复旦大学", [6], {}),                             # half a name is no lesson
    ("我在上海旅行复旦大学复旦", [6, 7], {}),                       # the name again, in view, gives it away
    ("我在上海旅行复旦大学复旦", [6, 7, 10, 11], {"复旦": 2}),       # both hidden: each is a lesson
    ("我在上海旅行复旦大学", [2, 6, 7], {}),                        # the city half hidden is not in view
    ("我在北京旅行北京大学", [6, 7], {"北京": 1}),                  # the city's own name: a copy
    ("我在杭州旅行复旦大学", [6, 7], {}),                           # another city tells nothing of 复旦
])
def test_city_lessons_count_a_hidden_name_told_only_by_its_city(demo, monkeypatch, text, hidden_at, expected):
    ids = np.array([CodePoints.encode(text)])
    hidden = np.zeros(ids.shape, dtype=bool)
    hidden[0, hidden_at] = True
    monkeypatch.setattr(demo, "batches_like", lambda row, seed, n_sequences: (CodePoints, lambda n: n,
                                                                              iter([(ids, hidden)])))
    counted = demo.city_lessons("any", seed=0)
    assert counted == {university: expected.get(university, 0) for university in counted}


def test_the_city_link_corpus_names_each_trip_s_city_and_its_university_once(demo):
    rng = np.random.default_rng(0)
    for _ in range(200):
        text = "".join(demo.trip_named_once(rng))
        (city,) = [city for city in CITIES if city in text.replace("北京大学", "")]
        (university,) = [u for u, _ in CITIES[city].universities if f"{u}大学" in text]
        assert text.count(f"{university}大学") == 1                  # the second mention says 这所大学
        assert "这所大学的校园很大" in text
