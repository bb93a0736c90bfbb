"""Whole-word masking for the character tokenizer: the word list, forward maximum matching, --words."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpretrain.app import cli
from numpretrain.app.pretrain import word_starts_for_run
from numpretrain.autograd.functional import IGNORE_INDEX
from numpretrain.data import PretrainingBatcher, split_documents
from numpretrain.data.builtin.corpus import corpus_text, generate_documents
from numpretrain.data.builtin.probes import fill_mask_probes
from numpretrain.data.builtin.reviews import REVIEW_VERBALIZERS
from numpretrain.data.builtin.world import SENTIMENT_WORDS
from numpretrain.data.builtin.words import builtin_words, entity_words
from numpretrain.errors import ConfigError
from numpretrain.tokenizers import CharTokenizer
from numpretrain.tokenizers.word_list import WordList


def segments(words, tokenizer, text):
    """The text cut into words, as strings."""
    ids = tokenizer.encode(text)
    starts = words.word_starts(np.array([ids]))[0]
    cuts = [t for t in range(len(ids)) if starts[t]] + [len(ids)]
    return [tokenizer.decode(ids[a:b]) for a, b in zip(cuts, cuts[1:])]


@pytest.fixture(scope="module")
def corpus():
    text = corpus_text(generate_documents(3000, seed=0))
    return text, CharTokenizer.train(text)


# ----- forward maximum matching -----

def test_the_longest_word_wins_and_other_characters_stand_alone():
    tok = CharTokenizer.train("太阳镜太阳很大我带了")
    words = WordList(["太阳", "太阳镜", "很大"], tok)
    assert segments(words, tok, "太阳很大我带了太阳镜") == ["太阳", "很大", "我", "带", "了", "太阳镜"]


def test_a_word_never_spans_a_special_token():
    tok = CharTokenizer.train("北京大学")
    words = WordList(["北京"], tok)
    ids = np.array([[tok.cls_id, *tok.encode("北"), tok.sep_id, *tok.encode("京北京"), tok.pad_id]])
    assert words.word_starts(ids).tolist() == [[True, True, True, True, True, False, True]]


def test_words_the_tokenizer_cannot_spell_are_left_out_and_none_left_is_an_error():
    tok = CharTokenizer.train("北京大学")
    assert len(WordList(["北京", "上海", "大", "大学"], tok)) == 2      # 上海 has unknown characters, 大 is one
    with pytest.raises(ConfigError, match="^mine.txt has no word of two or more characters the tokenizer knows$"):
        WordList(["上海", "大"], tok, "mine.txt")


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="abcd", min_size=1, max_size=30),
       listed=st.lists(st.text(alphabet="abcd", min_size=2, max_size=4), min_size=1, max_size=8))
def test_forward_maximum_matching_by_its_definition(text, listed):
    # Each piece is a listed word or one character, and none could have been longer: no listed
    # word starting where a piece starts is longer than the piece and still inside the text.
    tok = CharTokenizer.train("abcd")
    words = WordList(listed, tok)
    pieces = segments(words, tok, text)
    assert "".join(pieces) == text
    at = 0
    for piece in pieces:
        assert len(piece) == 1 or piece in listed
        assert not any(len(w) > len(piece) and text.startswith(w, at) for w in listed)
        at += len(piece)


# ----- the built-in corpus's words -----

def test_every_builtin_word_occurs_in_the_corpus_and_the_probes_answers_are_words(corpus):
    text, _ = corpus
    words = builtin_words()
    assert len(words) == len(set(words)) and all(len(w) >= 2 for w in words)
    assert [w for w in words if w not in text] == []
    answers = {a for probe in fill_mask_probes() if len(probe.prompt.split("[MASK]")) > 2 for a in probe.expected}
    assert answers <= set(words)                          # every answer of two or more [MASK]s
    assert set(REVIEW_VERBALIZERS) | set(SENTIMENT_WORDS["positive"] + SENTIMENT_WORDS["negative"]) <= set(words)


def test_entity_masking_cuts_the_worlds_names_only(corpus):
    _, tok = corpus
    names = entity_words()
    assert len(names) == len(set(names)) and set(names) <= set(builtin_words())     # so each occurs in the corpus
    assert not set(names) & set(SENTIMENT_WORDS["positive"] + SENTIMENT_WORDS["negative"])
    words = WordList(names, tok)
    assert segments(words, tok, "我在上海旅行，昨天去了复旦大学参观。") == [
        "我", "在", "上海", "旅", "行", "，", "昨", "天", "去", "了", "复旦", "大", "学", "参", "观", "。"]
    assert segments(words, tok, "医生拿起了听诊器，这家餐厅的米饭非常美味。")[:5] == ["医生", "拿", "起", "了", "听诊器"]
    assert "美味" not in segments(words, tok, "这家餐厅的米饭非常美味。")    # an adjective stays two characters


def test_the_source_materials_example_is_masked_as_a_word(corpus):
    _, tok = corpus
    words = WordList(builtin_words(), tok)
    assert segments(words, tok, "我昨天去了北京大学参观。") == ["我", "昨天", "去", "了", "北京", "大学", "参观", "。"]


def test_batches_mask_whole_words_of_the_builtin_list(corpus):
    text, tok = corpus
    words = WordList(builtin_words(), tok)
    batcher = PretrainingBatcher.from_tokenizer(split_documents(text), tok, max_seq_length=64,
                                                word_starts=words.word_starts)
    batch = batcher.get_batch(np.random.default_rng(0), 64)
    chosen = batch["mlm_labels"] != IGNORE_INDEX                          # (B, T)
    original = np.where(chosen, batch["mlm_labels"], batch["input_ids"])  # the text before masking
    starts = words.word_starts(original)
    continues = ~starts[:, 1:]
    # a character that continues a word is chosen exactly when the one before it is
    assert np.array_equal(chosen[:, 1:][continues], chosen[:, :-1][continues])
    assert (chosen[:, 1:] & continues).sum() > 40         # and many words of two or more were chosen


# ----- --words -----

def options(*argv):
    return cli.build_parser().parse_args(["pretrain-bert", *argv])


def test_words_option_chooses_the_word_list(tmp_path, corpus):
    _, tok = corpus
    assert word_starts_for_run(options("--words", "none"), tok) is None
    builtin = word_starts_for_run(options("--words", "builtin"), tok)
    ids = np.array([tok.encode("北京大学")])
    assert builtin(ids).tolist() == [[True, False, True, False]]
    listed = tmp_path / "words.txt"
    listed.write_text("北京大学\n参观\n", encoding="utf-8")
    entities = word_starts_for_run(options("--words", "entities"), tok)
    assert entities(np.array([tok.encode("北京大学参观")])).tolist() == [[True, False, True, True, True, True]]
    from_file = word_starts_for_run(options("--words", str(listed)), tok)
    assert from_file(ids).tolist() == [[True, False, False, False]]


def test_a_word_list_with_bpe_is_refused(capsys, tmp_path):
    argv = ["pretrain-bert", "--out", str(tmp_path / "run"), "--tokenizer", "bpe", "--words", "builtin",
            "--n-documents", "200", "--max-iters", "1"]
    assert cli.main(argv) == 2
    assert ("--words builtin: a word list cuts characters into words, and --tokenizer bpe does not make "
            "characters; use --words none") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()



def test_words_reach_the_batches_of_a_run(tmp_path):
    # the same seed and settings, masked by characters or by whole words: other masks, other losses
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32", "--batch-size", "8",
            "--n-documents", "300", "--max-iters", "2", "--eval-interval", "2", "--eval-iters", "1"]
    losses = {}
    for words in ("none", "builtin", "entities"):
        out = tmp_path / words
        assert cli.main(["pretrain-bert", "--out", str(out), *tiny, "--words", words]) == 0
        records = map(json.loads, (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines())
        losses[words] = [record["loss"] for record in records if "loss" in record]
    assert len(losses["none"]) == 2 and losses["none"] != losses["builtin"] and losses["none"] != losses["entities"]
