"""Character-level tokenizer, and what every numpretrain tokenizer shares.

Chinese BERT tokenizes one character per token, and so does this tokenizer:
the vocabulary is the five BERT special tokens followed by every character
seen in the training text, sorted by code point so the same text always gives
the same ids. Characters outside the vocabulary become `[UNK]`.

The literal text of a special token in the input ("[MASK]") encodes to that
special token, so a fill-mask prompt can be typed as plain text:

    >>> tok = CharTokenizer.train("我昨天去了北京大学参观")
    >>> tok.decode(tok.encode("我昨天去了[MASK][MASK]大学参观"))
    '我昨天去了[MASK][MASK]大学参观'

Shared with the byte-level BPE tokenizer (bpe.py) and used by both:
`SPECIAL_TOKENS` at ids 0..4 (so `[PAD]` is 0 for every tokenizer, and
`FIRST_NON_SPECIAL_ID` is the first id a masked-LM may choose or draw), the
regex that finds special tokens in text, and `read_tokenizer_json`, the one
careful reader of tokenizer files (JSON only: never eval, never pickle).
"""

import json
import re
from pathlib import Path

from numpretrain.errors import CheckpointError, DataError

# The BERT special tokens, spelled as in Google's and Hugging Face's BERT
# vocabularies. Their order fixes their ids: [PAD] = 0 matches the zero padding
# of the data builders, [MASK] = 4 is the id masked-LM inputs use.
PAD = "[PAD]"
UNK = "[UNK]"
CLS = "[CLS]"
SEP = "[SEP]"
MASK = "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
FIRST_NON_SPECIAL_ID = len(SPECIAL_TOKENS)  # 5: ids below this are special

# Finds special-token literals in text; the capturing group makes re.split
# keep them, so encoding can turn each into its id.
SPECIAL_TOKEN_PATTERN = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")

# A tokenizer file larger than this is refused before it is parsed: a real
# vocabulary is kilobytes, and a hostile file should not exhaust memory.
MAX_TOKENIZER_FILE_BYTES = 64 * 1024 * 1024

CHAR_TOKENIZER_TYPE = "char"
FORMAT_VERSION = 1


def read_tokenizer_json(path, expected_type=None):
    """Read a tokenizer file and return its JSON object (a dict).

    Raises CheckpointError naming the file for a missing or oversized file,
    bytes that are not UTF-8, text that is not JSON, JSON that is not an
    object, or a "type" field that is missing or (when `expected_type` is
    given) different from `expected_type`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such tokenizer file")
    size = path.stat().st_size
    if size > MAX_TOKENIZER_FILE_BYTES:
        raise CheckpointError(
            f"{path}: tokenizer file is {size} bytes, more than the limit of {MAX_TOKENIZER_FILE_BYTES}"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not valid UTF-8 at byte {err.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: malformed JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    file_type = obj.get("type")
    if not isinstance(file_type, str):
        raise CheckpointError(f"{path}: missing the \"type\" field that names the tokenizer kind")
    if expected_type is not None and file_type != expected_type:
        raise CheckpointError(f"{path}: tokenizer type is {file_type!r}, expected {expected_type!r}")
    return obj


def check_special_tokens(special_tokens, source):
    """Raise CheckpointError unless `special_tokens` is exactly SPECIAL_TOKENS."""
    if not isinstance(special_tokens, list) or tuple(special_tokens) != SPECIAL_TOKENS:
        raise CheckpointError(
            f"{source}: special tokens must be {list(SPECIAL_TOKENS)} at ids 0..{FIRST_NON_SPECIAL_ID - 1}, "
            f"found {special_tokens!r}"
        )


def write_json_atomically(path, obj):
    """Write `obj` as UTF-8 JSON, via a temporary file so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


class CharTokenizer:
    """One token per character; special tokens at ids 0..4, characters after them."""

    def __init__(self, tokens):
        """`tokens` is the whole vocabulary in id order: SPECIAL_TOKENS, then single characters."""
        problem = _vocabulary_problem(tokens)
        if problem is not None:
            raise ValueError(problem)
        self._id_to_token = list(tokens)
        self._token_to_id = {token: i for i, token in enumerate(tokens)}

    # ---- building -----------------------------------------------------------------

    @classmethod
    def train(cls, text, min_count=1):
        """Vocabulary = special tokens + every character occurring at least `min_count` times.

        Special-token literals in `text` ("[MASK]") count as those tokens, not as
        the characters '[', 'M', ...; characters are sorted by code point.
        """
        counts = {}
        for piece in SPECIAL_TOKEN_PATTERN.split(text):
            if piece in SPECIAL_TOKENS:
                continue
            for ch in piece:
                counts[ch] = counts.get(ch, 0) + 1
        chars = sorted(ch for ch, n in counts.items() if n >= min_count)
        return cls(list(SPECIAL_TOKENS) + chars)

    from_text = train

    # ---- the vocabulary -----------------------------------------------------------

    @property
    def vocab_size(self):
        return len(self._id_to_token)

    pad_id = property(lambda self: PAD_ID, doc="id of [PAD]")
    unk_id = property(lambda self: UNK_ID, doc="id of [UNK]")
    cls_id = property(lambda self: CLS_ID, doc="id of [CLS]")
    sep_id = property(lambda self: SEP_ID, doc="id of [SEP]")
    mask_id = property(lambda self: MASK_ID, doc="id of [MASK]")
    first_non_special_id = property(lambda self: FIRST_NON_SPECIAL_ID, doc="smallest id of an ordinary token")

    def id_to_token(self, token_id):
        return self._id_to_token[token_id]

    def token_to_id(self, token):
        """The id of `token` (a special token or one character); [UNK]'s id when unknown."""
        return self._token_to_id.get(token, self.unk_id)

    # ---- text <-> ids -------------------------------------------------------------

    def encode(self, text):
        """Text -> list of ids; special-token literals become their ids, unknown characters [UNK]."""
        ids = []
        lookup, unk = self._token_to_id, self.unk_id
        for piece in SPECIAL_TOKEN_PATTERN.split(text):
            if piece in SPECIAL_TOKENS:
                ids.append(lookup[piece])
            else:
                ids.extend(lookup.get(ch, unk) for ch in piece)
        return ids

    def decode(self, ids, skip_special=False):
        """List of ids -> text; special tokens print as their literal ("[MASK]") unless skipped."""
        vocab = self._id_to_token
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(vocab):
                raise DataError(f"token id {i} is out of range for a vocabulary of {len(vocab)} tokens")
            if skip_special and i < FIRST_NON_SPECIAL_ID:
                continue
            out.append(vocab[i])
        return "".join(out)

    # ---- files --------------------------------------------------------------------

    def to_dict(self):
        return {
            "type": CHAR_TOKENIZER_TYPE,
            "version": FORMAT_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "tokens": self._id_to_token[FIRST_NON_SPECIAL_ID:],
        }

    @classmethod
    def from_dict(cls, obj, source="<dict>"):
        """Rebuild from `to_dict()` output; CheckpointError (naming `source`) if it is malformed."""
        if obj.get("type") != CHAR_TOKENIZER_TYPE:
            raise CheckpointError(f"{source}: tokenizer type is {obj.get('type')!r}, expected 'char'")
        if obj.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{source}: unsupported char tokenizer version {obj.get('version')!r}")
        check_special_tokens(obj.get("special_tokens"), source)
        chars = obj.get("tokens")
        if not isinstance(chars, list):
            raise CheckpointError(f"{source}: \"tokens\" must be a list of characters")
        tokens = list(SPECIAL_TOKENS) + chars
        problem = _vocabulary_problem(tokens)
        if problem is not None:
            raise CheckpointError(f"{source}: {problem}")
        return cls(tokens)

    def save(self, path):
        write_json_atomically(path, self.to_dict())

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_tokenizer_json(path, CHAR_TOKENIZER_TYPE), source=str(path))

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _vocabulary_problem(tokens):
    """Describe what is wrong with a char vocabulary (None when nothing is)."""
    if tuple(tokens[:FIRST_NON_SPECIAL_ID]) != SPECIAL_TOKENS:
        return f"vocabulary must start with the special tokens {list(SPECIAL_TOKENS)}"
    seen = set(SPECIAL_TOKENS)
    for i, token in enumerate(tokens[FIRST_NON_SPECIAL_ID:], start=FIRST_NON_SPECIAL_ID):
        if not isinstance(token, str) or len(token) != 1:
            return f"token {i} is {token!r}, expected a single character"
        if token in seen:
            return f"duplicate token {token!r} at id {i}"
        seen.add(token)
    return None
