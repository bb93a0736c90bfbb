"""WordPiece: BERT's tokenizer, read from a Hugging Face `vocab.txt`, reproducing its ids exactly.

    text --normalise--> "a cafe in zurich ..."          clean, split CJK, strip accents, lower-case
         --pre-split--> ["a", "cafe", "in", ...]         on whitespace; each punctuation mark alone
         --wordpiece--> ["a", "cafe", "in", "zur", "##ich"]   greedy longest match first
         --vocab------> [1037, 7668, 1999, ...]

The steps are those of Google's `tokenization.py` (BasicTokenizer + WordpieceTokenizer) and
of Hugging Face's `BertNormalizer` + `BertPreTokenizer` + `WordPiece` (the Rust `tokenizers`
library that `transformers` and sentence-transformers use). The two differ in two corners,
and this file follows the Rust one, which made the reference ids in tests/fixtures/: a
capital sigma at the end of a word lower-cases to σ (Python's str.lower() gives ς), and the
ideographs U+2B820..U+2B91F are not split out. (Checked against both on the fixture
sentences: the same ids.)

1. clean: drop NUL, U+FFFD and every "other" character (categories Cc, Cf, Cn, Co, Cs) except
   tab, newline and carriage return; turn every whitespace character into a space.
2. CJK: put spaces around each CJK ideograph, so each becomes a word of its own.
3. strip accents (uncased models): NFD, then drop the non-spacing marks (category Mn):
   "café" -> "cafe".
4. lower-case, character by character (so a final capital sigma becomes σ, not ς).
5. split on whitespace, and cut each punctuation character out as a word of its own
   (ASCII 33-47, 58-64, 91-96, 123-126, and every Unicode P* category).
6. WordPiece per word: a word of more than 100 characters is [UNK]; otherwise take the
   longest prefix in the vocabulary, then the longest `##`-continuation of the rest, and so
   on; if some rest has no piece at all, the whole word is [UNK].

Special-token literals ("[MASK]", "[SEP]" ...) in the text are recognised before any of
this, as Hugging Face's tokenizer does with its added tokens. The special tokens are spelled
as in every numpretrain tokenizer (tokenizers/special_tokens.py), but their ids come from the
vocabulary: 0, 100, 101, 102, 103 for [PAD] [UNK] [CLS] [SEP] [MASK] in BERT's English ones.

`encode(text)` adds nothing; `encode_with_specials(text)` gives `[CLS] ... [SEP]`, as a
BERT model expects a single sentence.
"""

import json
import unicodedata
from pathlib import Path

from numpretrain.errors import CheckpointError, DataError, check_ids_in_range
from numpretrain.storage.json_files import load_json
from numpretrain.tokenizers.special_tokens import CLS, MASK, PAD, SEP, SPECIAL_TOKEN_PATTERN, SPECIAL_TOKENS, UNK

VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# the options we read from it (json_files.check_fields: "key?" may be absent); the rest is not ours
TOKENIZER_CONFIG_FIELDS = {"do_lower_case?": bool, "strip_accents?": (bool, type(None)),
                           "tokenize_chinese_chars?": bool}
CONTINUATION_PREFIX = "##"        # marks a piece that continues a word
MAX_CHARS_PER_WORD = 100          # longer words become [UNK] (Google's max_input_chars_per_word)
MAX_VOCAB_FILE_BYTES = 64 * 1024 * 1024

# ASCII symbols that Unicode files under S* (e.g. "$", "+", "^", "`") but BERT counts as punctuation.
ASCII_PUNCTUATION = set(range(33, 48)) | set(range(58, 65)) | set(range(91, 97)) | set(range(123, 127))

# CJK ideograph blocks, as the Rust tokenizer lists them. (Google's _is_chinese_char starts the
# sixth at 0x2B820; the 256 rare ideographs U+2B820..U+2B91F are left inside words here, as there.)
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

# Whitespace as Rust's char::is_whitespace (the Unicode White_Space property).
WHITESPACE = set("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def is_whitespace(ch):
    return ch in WHITESPACE


def is_control(ch):
    """A character clean-up drops: Unicode "other" (C*), but not tab, newline or carriage return."""
    return ch not in "\t\n\r" and unicodedata.category(ch)[0] == "C"


def is_punctuation(ch):
    return ord(ch) in ASCII_PUNCTUATION or unicodedata.category(ch)[0] == "P"


def is_cjk(ch):
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def normalize(text, lowercase=True, strip_accents=None, split_cjk=True):
    """Steps 1-4 of the file's docstring. strip_accents=None means "as lowercase" (BERT's default)."""
    chars = []
    for ch in text:                                          # 1. clean
        if ch == "\0" or ch == "\ufffd" or is_control(ch):
            continue
        chars.append(" " if is_whitespace(ch) else ch)
    if split_cjk:                                            # 2. CJK ideographs become words
        chars = [f" {ch} " if is_cjk(ch) else ch for ch in chars]
    text = "".join(chars)
    if lowercase if strip_accents is None else strip_accents:   # 3. accents: NFD, drop Mn marks
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
    if lowercase:                                            # 4. lower-case each character alone
        text = "".join(ch.lower() for ch in text)
    return text


def pre_split(text):
    """Step 5: whitespace-separated words, with each punctuation character a word of its own."""
    words = []
    for chunk in text.split(" "):
        word = []
        for ch in chunk:
            if is_whitespace(ch):            # e.g. U+2028 when the text was not cleaned
                if word:
                    words.append("".join(word))
                    word = []
            elif is_punctuation(ch):
                if word:
                    words.append("".join(word))
                    word = []
                words.append(ch)
            else:
                word.append(ch)
        if word:
            words.append("".join(word))
    return words


def wordpiece(word, vocab, unk=UNK, max_chars=MAX_CHARS_PER_WORD):
    """Step 6: one word -> its pieces, greedy longest-match-first; [unk] if it cannot be covered."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else CONTINUATION_PREFIX + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:                    # no piece fits what is left: the word is unknown
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


class WordPieceTokenizer:
    """BERT's tokenizer over a vocab.txt vocabulary (one token per line, id = line number)."""

    def __init__(self, tokens, lowercase=True, strip_accents=None, split_cjk=True, source="<tokens>"):
        self._id_to_token = list(tokens)
        self._token_to_id = {}
        for i, token in enumerate(self._id_to_token):
            self._token_to_id.setdefault(token, i)     # a duplicate line keeps its first id
        missing = [t for t in (UNK, CLS, SEP, PAD) if t not in self._token_to_id]
        if missing:
            raise CheckpointError(f"{source}: the vocabulary lacks the special tokens {missing}")
        self.lowercase, self.strip_accents, self.split_cjk = lowercase, strip_accents, split_cjk
        self.source = source
        self._specials = [t for t in SPECIAL_TOKENS if t in self._token_to_id]

    # ---- building -----------------------------------------------------------------

    @classmethod
    def from_vocab_file(cls, path, lowercase=True, strip_accents=None, split_cjk=True):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such vocabulary file")
        if path.stat().st_size > MAX_VOCAB_FILE_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes is too large for a vocabulary")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise CheckpointError(f"{path}: not valid UTF-8 at byte {err.start}") from None
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()                                 # the newline after the last token
        tokens = [t.rstrip("\r") for t in tokens]
        return cls(tokens, lowercase, strip_accents, split_cjk, source=str(path))

    @classmethod
    def from_pretrained(cls, directory):
        """From a Hugging Face folder: vocab.txt, with do_lower_case / strip_accents /
        tokenize_chinese_chars from tokenizer_config.json when it is there."""
        directory = Path(directory)
        options = {}
        config_path = directory / TOKENIZER_CONFIG_FILE
        if config_path.is_file():
            options = load_json(config_path, fields=TOKENIZER_CONFIG_FIELDS)
        return cls.from_vocab_file(directory / VOCAB_FILE, lowercase=bool(options.get("do_lower_case", True)),
                                   strip_accents=options.get("strip_accents"),
                                   split_cjk=bool(options.get("tokenize_chinese_chars", True)))

    def save_vocab(self, directory):
        """Write vocab.txt and a tokenizer_config.json that Hugging Face's BertTokenizer reads."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCAB_FILE).write_text("".join(t + "\n" for t in self._id_to_token), encoding="utf-8")
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase,
                  "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.split_cjk,
                  "unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS, "mask_token": MASK}
        (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")

    # ---- the vocabulary -----------------------------------------------------------

    @property
    def vocab_size(self):
        return len(self._id_to_token)

    pad_id = property(lambda self: self._token_to_id[PAD], doc="id of [PAD] (0 in BERT's vocabularies)")
    unk_id = property(lambda self: self._token_to_id[UNK], doc="id of [UNK] (100 in BERT's English ones)")
    cls_id = property(lambda self: self._token_to_id[CLS], doc="id of [CLS]")
    sep_id = property(lambda self: self._token_to_id[SEP], doc="id of [SEP]")
    mask_id = property(lambda self: self._token_to_id.get(MASK, self.unk_id), doc="id of [MASK]")

    @property
    def special_ids(self):
        return {self._token_to_id[t] for t in self._specials}

    def id_to_token(self, token_id):
        return self._id_to_token[token_id]

    def token_to_id(self, token):
        return self._token_to_id.get(token, self.unk_id)

    # ---- text <-> ids -------------------------------------------------------------

    def tokenize(self, text):
        """Text -> word pieces (strings), special-token literals kept whole."""
        pieces = []
        for part in SPECIAL_TOKEN_PATTERN.split(text):
            if part in self._specials:
                pieces.append(part)
                continue
            normalized = normalize(part, self.lowercase, self.strip_accents, self.split_cjk)
            for word in pre_split(normalized):
                pieces.extend(wordpiece(word, self._token_to_id))
        return pieces

    def encode(self, text):
        """Text -> list of ids, with no [CLS] or [SEP] added."""
        lookup = self._token_to_id
        return [lookup[piece] for piece in self.tokenize(text)]

    def encode_with_specials(self, text, max_length=None):
        """Text -> [CLS] ids [SEP], the middle cut so that the whole is at most max_length ids."""
        ids = self.encode(text)
        if max_length is not None:
            if max_length < 2:
                raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
            ids = ids[:max_length - 2]
        return [self.cls_id] + ids + [self.sep_id]

    def decode(self, ids, skip_special=True):
        """Ids -> text: pieces joined by spaces, `##` continuations glued to the piece before,
        spaces before punctuation removed as Hugging Face's clean-up does. Lower-casing and
        accent stripping cannot be undone."""
        ids = [int(i) for i in ids]
        check_ids_in_range(ids, self.vocab_size, where="decode", error=DataError)
        words = []
        specials = self.special_ids
        for i in ids:
            if skip_special and i in specials:
                continue
            token = self._id_to_token[i]
            if token.startswith(CONTINUATION_PREFIX) and words:
                words[-1] += token[len(CONTINUATION_PREFIX):]
            else:
                words.append(token)
        text = " ".join(words)
        for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                              (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(before, after)
        return text

    def __repr__(self):
        return (f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
                f"source={self.source!r})")
