"""Tokenizers: exact round trips (property-tested, Chinese and emoji included),
[UNK] for unknown characters, special-token literals, save/load, and refusal of
corrupt or hostile tokenizer files with a CheckpointError naming the file."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpretrain.errors import CheckpointError, ConfigError, DataError
from numpretrain.tokenizers import (
    FIRST_NON_SPECIAL_ID,
    SPECIAL_TOKENS,
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
)
from numpretrain.tokenizers.bpe import FIRST_MERGE_ID, PRETOKENIZE_PATTERN

CHINESE = "我昨天去了北京大学参观。今天天气很好，医生拿起了听诊器！苹果公司发布了新产品？"
EMOJI = "😀🎉👍🏽🇨🇳❤️"
ENGLISH = "The quick brown fox jumps over the lazy dog. It's 3.14, isn't it? Yes_indeed!\n\tend"
TRAINING_TEXT = (CHINESE + ENGLISH + EMOJI) * 20

# Hypothesis strings: anything Unicode (surrogates excluded, as UTF-8 cannot hold
# them), plus strings drawn from Chinese, emoji, ASCII and the special literals,
# so the interesting cases are not left to chance.
MIXED_PIECES = st.sampled_from(list(CHINESE + EMOJI + ENGLISH) + list(SPECIAL_TOKENS) + [" ", "  ", "\n\n", "'s"])
ANY_TEXT = st.one_of(st.text(), st.lists(MIXED_PIECES).map("".join))


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer.train(TRAINING_TEXT)


@pytest.fixture(scope="module")
def bpe_tok():
    return BPETokenizer.train(TRAINING_TEXT, vocab_size=FIRST_MERGE_ID + 60)


# ---- character tokenizer ------------------------------------------------------------


def test_char_special_tokens_come_first(char_tok):
    assert [char_tok.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert (char_tok.pad_id, char_tok.unk_id, char_tok.cls_id, char_tok.sep_id, char_tok.mask_id) == (0, 1, 2, 3, 4)
    assert char_tok.first_non_special_id == FIRST_NON_SPECIAL_ID == 5
    assert char_tok.vocab_size == 5 + len(set(TRAINING_TEXT))


def test_char_vocabulary_is_deterministic_and_sorted():
    a = CharTokenizer.train("乙甲cba")
    b = CharTokenizer.train("abc甲乙")
    assert a.to_dict() == b.to_dict()
    assert [a.id_to_token(i) for i in range(5, a.vocab_size)] == sorted("abc甲乙")


def test_char_unknown_characters_become_unk(char_tok):
    ids = char_tok.encode("我Ω去")
    assert ids[1] == char_tok.unk_id
    assert ids[0] != char_tok.unk_id and ids[2] != char_tok.unk_id
    assert char_tok.decode(ids) == "我[UNK]去"


def test_char_mask_literal_encodes_to_the_mask_token(char_tok):
    ids = char_tok.encode("我昨天去了[MASK][MASK]大学参观")
    assert ids[5:7] == [char_tok.mask_id, char_tok.mask_id]
    assert len(ids) == 11
    assert char_tok.decode(ids) == "我昨天去了[MASK][MASK]大学参观"
    assert char_tok.decode(ids, skip_special=True) == "我昨天去了大学参观"
    # Literals of special tokens are not characters of the vocabulary.
    assert char_tok.token_to_id("[") == char_tok.unk_id


@given(st.lists(st.sampled_from(sorted(set(TRAINING_TEXT)) + list(SPECIAL_TOKENS))).map("".join))
def test_char_round_trip_over_its_vocabulary(text):
    tok = CharTokenizer.train(TRAINING_TEXT)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert ids.count(tok.unk_id) == text.count("[UNK]")  # only the literal, never an unknown character


@given(st.text(min_size=1))
def test_char_encodes_every_character_to_itself_or_unk(text):
    tok = CharTokenizer.train(TRAINING_TEXT)
    ids = tok.encode(text)
    # One id per character, apart from special literals which take one id for several characters.
    no_literals = all(lit not in text for lit in SPECIAL_TOKENS)
    if no_literals:
        assert len(ids) == len(text)
        for ch, i in zip(text, ids):
            assert tok.id_to_token(i) == ch if ch in TRAINING_TEXT else i == tok.unk_id


def test_char_decode_rejects_out_of_range_ids(char_tok):
    with pytest.raises(DataError, match="out of range"):
        char_tok.decode([5, char_tok.vocab_size])


def test_char_save_load_round_trip(char_tok, tmp_path):
    path = tmp_path / "tok.json"
    char_tok.save(path)
    loaded = CharTokenizer.load(path)
    assert loaded.to_dict() == char_tok.to_dict()
    assert isinstance(load_tokenizer(path), CharTokenizer)
    assert loaded.encode(CHINESE + "Ω") == char_tok.encode(CHINESE + "Ω")


# ---- byte-level BPE -----------------------------------------------------------------


def test_bpe_reaches_the_requested_vocabulary(bpe_tok):
    assert bpe_tok.vocab_size == FIRST_MERGE_ID + 60
    assert len(bpe_tok.merges) == 60
    assert [bpe_tok.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert bpe_tok.token_bytes(5 + ord("a")) == b"a"


def test_bpe_first_merge_is_the_most_frequent_pair():
    tok = BPETokenizer.train("ab ab ab ab cd cd xy", vocab_size=FIRST_MERGE_ID + 1)
    # (a, b) occurs 4 times; the runner-up (" ", a) 3 times.
    assert tok.token_bytes(FIRST_MERGE_ID) == b"ab"


def test_bpe_training_stops_when_no_pair_repeats():
    tok = BPETokenizer.train("abcdef", vocab_size=FIRST_MERGE_ID + 50)
    assert tok.merges == []
    assert tok.encode("abcdef") == [5 + b for b in b"abcdef"]


def test_bpe_merges_shorten_the_encoding(bpe_tok):
    ids = bpe_tok.encode(CHINESE + ENGLISH)
    assert len(ids) < len((CHINESE + ENGLISH).encode("utf-8"))
    assert max(ids) >= FIRST_MERGE_ID


def test_bpe_training_is_deterministic():
    a = BPETokenizer.train(TRAINING_TEXT, vocab_size=FIRST_MERGE_ID + 40)
    b = BPETokenizer.train(TRAINING_TEXT, vocab_size=FIRST_MERGE_ID + 40)
    assert a.merges == b.merges


def test_bpe_vocab_size_below_bytes_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 261"):
        BPETokenizer.train("abc", vocab_size=100)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ANY_TEXT)
def test_bpe_round_trips_any_text(bpe_tok, text):
    ids = bpe_tok.encode(text)
    assert bpe_tok.decode(ids) == text
    assert ids.count(bpe_tok.unk_id) == text.count("[UNK]")  # every byte has a token: no [UNK] but the literal
    plain = bpe_tok.encode(text, allow_special=False)
    assert all(i >= FIRST_NON_SPECIAL_ID for i in plain)
    assert bpe_tok.decode(plain) == text


@given(ANY_TEXT)
def test_pretokenizer_chunks_cover_the_text(text):
    assert "".join(PRETOKENIZE_PATTERN.findall(text)) == text


def test_bpe_special_literals(bpe_tok):
    ids = bpe_tok.encode("我去了[MASK]大学")
    assert bpe_tok.mask_id in ids
    assert bpe_tok.decode(ids, skip_special=True) == "我去了大学"
    assert bpe_tok.token_to_id("[SEP]") == bpe_tok.sep_id


def test_bpe_word_starts(bpe_tok):
    text = "the lazy dog 我去"
    ids = bpe_tok.encode(text)
    starts = bpe_tok.word_starts(np.array([ids]))[0]
    words = []
    for i, start in zip(ids, starts):
        if start:
            words.append(b"")
        words[-1] += bpe_tok.token_bytes(i)
    assert [w.decode("utf-8") for w in words] == ["the", " lazy", " dog", " ", "我", "去"]


def test_bpe_save_load_round_trip(bpe_tok, tmp_path):
    path = tmp_path / "bpe.json"
    bpe_tok.save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, BPETokenizer)
    assert loaded.merges == bpe_tok.merges
    assert loaded.encode(TRAINING_TEXT) == bpe_tok.encode(TRAINING_TEXT)


def test_bpe_decode_rejects_out_of_range_ids(bpe_tok):
    with pytest.raises(DataError, match="out of range"):
        bpe_tok.decode([-1])


# ---- corrupt and hostile files ----------------------------------------------------------


def _write(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


GOOD_CHAR = {"type": "char", "version": 1, "special_tokens": list(SPECIAL_TOKENS), "tokens": ["a", "b"]}
GOOD_BPE = {"type": "bpe", "version": 1, "pretokenizer": "gpt2-like-v1", "special_tokens": list(SPECIAL_TOKENS), "merges": [[102, 103]]}


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "malformed JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 at byte 0"),
        ("[1, 2]", "expected a JSON object"),
        ({"version": 1}, "missing the \"type\" field"),
        ({**GOOD_CHAR, "type": "pickle"}, "unknown tokenizer type 'pickle'"),
        ({**GOOD_CHAR, "tokens": ["a", "b", "a"]}, "duplicate token 'a'"),
        ({**GOOD_CHAR, "tokens": ["a", "[MASK]"]}, "expected a single character"),
        ({**GOOD_CHAR, "tokens": ["a", 7]}, "expected a single character"),
        ({**GOOD_CHAR, "tokens": "ab"}, "must be a list"),
        ({**GOOD_CHAR, "special_tokens": ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]}, "special tokens must be"),
        ({k: v for k, v in GOOD_CHAR.items() if k != "special_tokens"}, "special tokens must be"),
        ({**GOOD_CHAR, "version": 99}, "unsupported char tokenizer version"),
        ({**GOOD_BPE, "merges": [[102, 261]]}, "not yet defined"),
        ({**GOOD_BPE, "merges": [[2, 103]]}, "special or not yet defined"),
        ({**GOOD_BPE, "merges": [[102, 103], [102, 103]]}, "duplicate merge"),
        ({**GOOD_BPE, "merges": [[102, "x"]]}, "expected a pair of token ids"),
        ({**GOOD_BPE, "merges": [[102, True]]}, "expected a pair of token ids"),
        ({**GOOD_BPE, "merges": [[102, 103, 104]]}, "expected a pair of token ids"),
        ({**GOOD_BPE, "merges": {"a": 1}}, "must be a list"),
        ({**GOOD_BPE, "pretokenizer": "(a+)+$"}, "pretokenizer"),
        ({**GOOD_BPE, "special_tokens": ["[MASK]"] * 5}, "special tokens must be"),
    ],
)
def test_corrupt_tokenizer_files_raise_checkpoint_error(tmp_path, content, problem):
    path = _write(tmp_path, content)
    with pytest.raises(CheckpointError) as err:
        load_tokenizer(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)


def test_good_fixture_files_load(tmp_path):
    assert load_tokenizer(_write(tmp_path, GOOD_CHAR)).vocab_size == 7
    assert load_tokenizer(_write(tmp_path, GOOD_BPE)).token_bytes(FIRST_MERGE_ID) == b"ab"


def test_loading_the_wrong_class_or_a_missing_file(tmp_path):
    path = _write(tmp_path, GOOD_BPE)
    with pytest.raises(CheckpointError, match="expected 'char'"):
        CharTokenizer.load(path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_tokenizer(tmp_path / "missing.json")
