"""Character-level tokenizer (Chinese BERT style): one character, one token.

Chinese BERT tokenizes one character per token, and so does this tokenizer:
the vocabulary is the five BERT special tokens followed by every character
seen in the training text, sorted by code point so the same text always gives
the same ids. Characters outside the vocabulary become `[UNK]`.

The literal text of a special token in the input ("[MASK]") encodes to that
special token, so a fill-mask prompt can be typed as plain text:

    >>> tok = CharTokenizer.train("我昨天去了北京大学参观")
    >>> tok.decode(tok.encode("我昨天去了[MASK][MASK]大学参观"))
    '我昨天去了[MASK][MASK]大学参观'

What every tokenizer shares (the special tokens and their ids, the file reader)
is in special_tokens.py.
"""

from numpretrain.errors import CheckpointError
from numpretrain.tokenizers.special_tokens import (
    FIRST_NON_SPECIAL_ID,
    SPECIAL_TOKEN_PATTERN,
    SPECIAL_TOKENS,
    SpecialTokenIds,
    check_special_tokens,
    vocabulary_entries,
)

CHAR_TOKENIZER_TYPE = "char"
FORMAT_VERSION = 1


class CharTokenizer(SpecialTokenIds):
    """One token per character; special tokens at ids 0..4, characters after them."""

    file_type = CHAR_TOKENIZER_TYPE

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

    # ---- the vocabulary -----------------------------------------------------------

    @property
    def vocab_size(self):
        return len(self._id_to_token)

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
        return "".join(vocabulary_entries(self._id_to_token, ids, skip_special))

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

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _vocabulary_problem(tokens):
    """Describe what is wrong with a char vocabulary (None when nothing is)."""
    if tuple(tokens[:FIRST_NON_SPECIAL_ID]) != SPECIAL_TOKENS:
        return f"vocabulary must start with the special tokens {list(SPECIAL_TOKENS)}"
    seen = set(SPECIAL_TOKENS)
    for i, token in enumerate(tokens[FIRST_NON_SPECIAL_ID:], start=FIRST_NON_SPECIAL_ID):
        if not isinstance(token, str) or len(token) != 1:
            return f"token {i} is {repr(token)[:40]}, expected a single character"
        if token in seen:
            return f"duplicate token {token!r} at id {i}"
        seen.add(token)
    return None
