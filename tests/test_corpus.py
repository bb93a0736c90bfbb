"""Tests of the built-in corpus: determinism, size, probes, reviews, and the labelled split."""

import re
import time

import numpy as np
import pytest

from numpretrain.data.baselines import BagOfCharacters
from numpretrain.data.builtin.corpus import corpus_text, generate_documents
from numpretrain.data.builtin.probes import MASK, Probe, fill_mask_probes, probes
from numpretrain.data.builtin.reviews import review_dataset, split_adjectives
from numpretrain.data.builtin.world import (
    LABEL_NAMES,
    NEGATIVE_CLOSINGS,
    POSITIVE_CLOSINGS,
    SENTIMENT_CHARACTERS,
    SENTIMENT_WORDS,
)

ALL_ADJECTIVES = SENTIMENT_WORDS["positive"] + SENTIMENT_WORDS["negative"]
ALL_CLOSINGS = POSITIVE_CLOSINGS + NEGATIVE_CLOSINGS


@pytest.fixture(scope="module")
def documents():
    return generate_documents(40_000, seed=0)


@pytest.fixture(scope="module")
def text(documents):
    return corpus_text(documents)


def is_review(document):
    return document[-1].rstrip("。") in ALL_CLOSINGS


# ----------------------------------------------------------------------------
# determinism, size, format

def test_same_seed_same_documents_and_different_seed_different_documents():
    assert generate_documents(500, seed=3) == generate_documents(500, seed=3)
    assert generate_documents(500, seed=3) != generate_documents(500, seed=4)


def test_size_grows_linearly_with_the_number_of_documents():
    small = len(corpus_text(generate_documents(2_000, seed=1)))
    large = len(corpus_text(generate_documents(8_000, seed=1)))
    assert 3.6 < large / small < 4.4


def test_forty_thousand_documents_size_vocabulary_and_speed(text):
    start = time.perf_counter()
    generate_documents(40_000, seed=5)
    assert time.perf_counter() - start < 10.0  # a couple of seconds on a laptop
    assert 1_000_000 <= len(text) <= 3_000_000
    assert 300 <= len(set(text)) <= 420


def test_documents_are_lists_of_punctuated_single_line_sentences(documents):
    for document in documents[:5_000]:
        assert 1 <= len(document) <= 8
        for sentence in document:
            assert sentence[-1] in "。！？" and "\n" not in sentence and len(sentence) >= 3


def test_corpus_text_is_one_sentence_per_line_and_a_blank_line_between_documents(documents):
    some = documents[:300]
    text = corpus_text(some)
    assert text.endswith("\n") and not text.endswith("\n\n")
    parsed = [block.split("\n") for block in text.rstrip("\n").split("\n\n")]
    assert parsed == some


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="review_share"):
        generate_documents(10, review_share=1.5)
    with pytest.raises(ValueError, match="n_documents"):
        generate_documents(-1)


# ----------------------------------------------------------------------------
# probes

def test_probes_cover_every_phenomenon():
    kinds = {probe.kind for probe in probes()}
    assert kinds == {"grammar", "semantics", "common sense", "context"}
    assert {probe.kind for probe in fill_mask_probes()} == {"fill mask"}
    prompts = {probe.prompt for probe in probes()}
    for prompt in ("今天天气很", "我昨天去了", "医生拿起了", "雨下得很大，所以我带了", "太阳很大，所以我带了",
                   "我吃了一个苹果，很", "苹果公司发布了新手机，价格很"):
        assert prompt in prompts
    doctor = next(p for p in probes() if p.prompt == "医生拿起了")
    assert set(doctor.expected) == {"听诊器", "手术刀"} and {"吉他", "画笔"} <= set(doctor.contrasting)


@pytest.mark.parametrize("probe", probes(), ids=lambda p: p.prompt)
def test_probe_expected_continuations_occur_and_contrasting_ones_never(probe, text):
    for answer in probe.expected:
        assert probe.filled(answer) in text, f"{probe.prompt} + {answer} never occurs"
    for answer in probe.contrasting:
        assert probe.filled(answer) not in text, f"{probe.prompt} + {answer} occurs"


@pytest.mark.parametrize("probe", fill_mask_probes(), ids=lambda p: p.prompt)
def test_fill_mask_targets_occur_in_their_context_and_contrasting_fillers_never(probe, text):
    n_masks = probe.prompt.count(MASK)
    assert n_masks >= 1
    for answer in probe.expected + probe.contrasting:
        assert len(answer) == n_masks
    for answer in probe.expected:
        assert probe.filled(answer) in text, f"{probe.filled(answer)} never occurs"
    for answer in probe.contrasting:
        assert probe.filled(answer) not in text, f"{probe.filled(answer)} occurs"


def test_beijing_is_the_most_frequent_university_of_the_bare_fill_mask_sentence(text):
    bare = fill_mask_probes()[0]
    counts = {answer: text.count(bare.filled(answer)) for answer in bare.expected}
    assert max(counts, key=counts.get) == "北京"
    assert bare.expected[0] == "北京"


def test_filling_a_probe_with_the_wrong_number_of_characters_is_refused():
    probe = Probe("fill mask", f"今天天气很{MASK}。", ("好",), ("甜",))
    assert probe.filled("热") == "今天天气很热。"
    with pytest.raises(ValueError, match="masks"):
        probe.filled("凉快")


# ----------------------------------------------------------------------------
# sentiment words and unlabelled reviews

def test_sentiment_words_are_twenty_per_polarity_with_eighty_distinct_characters():
    assert len(SENTIMENT_WORDS["positive"]) == 20 and len(SENTIMENT_WORDS["negative"]) == 20
    assert all(len(word) == 2 for word in ALL_ADJECTIVES)
    assert len(SENTIMENT_CHARACTERS) == 80
    assert not SENTIMENT_CHARACTERS & set("好人有不很的了是我在")


def test_sentiment_characters_occur_only_inside_sentiment_words(text):
    stripped = re.sub("|".join(ALL_ADJECTIVES), "", text)
    assert not set(stripped) & SENTIMENT_CHARACTERS


def test_every_adjective_occurs_hundreds_of_times_in_forty_thousand_documents(text):
    counts = {word: text.count(word) for word in ALL_ADJECTIVES}
    assert min(counts.values()) >= 300, counts


def test_each_review_has_one_polarity_revealed_by_its_closing(documents):
    reviews = [document for document in documents if is_review(document)]
    assert 0.45 < len(reviews) / len(documents) < 0.55
    for review in reviews[:5_000]:
        polarity = "positive" if review[-1].rstrip("。") in POSITIVE_CLOSINGS else "negative"
        other = "negative" if polarity == "positive" else "positive"
        body = "".join(review[:-1])
        assert any(word in body for word in SENTIMENT_WORDS[polarity])
        assert not any(word in body for word in SENTIMENT_WORDS[other])


def test_review_share_one_gives_reviews_only_and_zero_none():
    assert all(is_review(document) for document in generate_documents(2_000, seed=2, review_share=1.0))
    assert not any(is_review(document) for document in generate_documents(2_000, seed=2, review_share=0.0))


# ----------------------------------------------------------------------------
# the labelled split

def test_adjective_split_is_a_function_of_the_seed_into_disjoint_halves():
    assert split_adjectives(7) == split_adjectives(7)
    assert len({str(split_adjectives(seed)) for seed in range(5)}) > 1
    train, heldout = split_adjectives(7)
    for polarity in ("positive", "negative"):
        assert len(train[polarity]) == len(heldout[polarity]) == 10
        assert set(train[polarity]) | set(heldout[polarity]) == set(SENTIMENT_WORDS[polarity])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heldout_reviews_share_no_sentiment_word_or_character_with_the_labelled_ones(seed):
    data = review_dataset(seed)
    train_characters = set("".join(data.train_adjectives["positive"] + data.train_adjectives["negative"]))
    heldout_characters = set("".join(data.heldout_adjectives["positive"] + data.heldout_adjectives["negative"]))
    assert not train_characters & heldout_characters
    for text, _ in data.test:
        assert not set(text) & train_characters
    for text, _ in data.train + data.control:
        assert not set(text) & heldout_characters
    assert not {text for text, _ in data.control} & {text for text, _ in data.train}


@pytest.mark.parametrize("seed", [0, 1])
def test_labelled_texts_carry_their_label_in_adjectives_only(seed):
    data = review_dataset(seed)
    for split, adjectives in ((data.train, data.train_adjectives), (data.test, data.heldout_adjectives),
                              (data.control, data.train_adjectives)):
        for text, label in split:
            assert not any(closing in text for closing in ALL_CLOSINGS)
            assert any(word in text for word in adjectives[LABEL_NAMES[label]])
            assert not any(word in text for word in adjectives[LABEL_NAMES[1 - label]])


def test_labels_are_balanced_and_sizes_as_asked():
    data = review_dataset(0, n_train=16, n_test=100, n_control=50)
    assert (len(data.train), len(data.test), len(data.control)) == (16, 100, 50)
    for split in (data.train, data.test, data.control):
        labels = [label for _, label in split]
        assert labels.count(1) == labels.count(0)
    assert review_dataset(0, n_train=16) == review_dataset(0, n_train=16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bag_of_characters_is_at_chance_on_heldout_and_high_on_control(seed):
    data = review_dataset(seed)
    baseline = BagOfCharacters().fit(*zip(*data.train))
    assert 0.35 <= baseline.accuracy(*zip(*data.test)) <= 0.65
    assert baseline.accuracy(*zip(*data.control)) >= 0.9


def test_bag_of_characters_learns_a_separable_toy_and_ignores_unseen_characters():
    baseline = BagOfCharacters().fit(["aab", "abb", "xxy", "xyy"], [1, 1, 0, 0])
    assert baseline.predict(["ab", "xy", "ba"]).tolist() == [1, 0, 1]
    # unseen characters only: the (equal) priors decide, and argmax takes the first class
    assert baseline.predict(["zzz"]).tolist() == [0]
    assert np.isclose(baseline.accuracy(["ab", "yx"], [1, 0]), 1.0)
