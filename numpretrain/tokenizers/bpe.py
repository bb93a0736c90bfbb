"""Byte-level byte-pair encoding (BPE), trained from a text, as in GPT-2.

Every string is a sequence of UTF-8 bytes, and every byte has a token, so any
text encodes and decodes back exactly and no [UNK] is ever needed. Training
starts from the 256 byte tokens and repeatedly merges the most frequent
adjacent pair of tokens into a new token, until the vocabulary reaches the
requested size (or no pair occurs twice).

Vocabulary layout (ids):
    0 .. 4                       the special tokens [PAD] [UNK] [CLS] [SEP] [MASK]
    5 .. 260                     the 256 single bytes: id = BYTE_OFFSET + byte value
    261 .. vocab_size - 1        merges, in the order they were learned
The special tokens come first, as in the character tokenizer, so [PAD] is 0
and every id from FIRST_NON_SPECIAL_ID up is an ordinary token for both.

Like GPT-2, the text is first split into chunks (a word with its leading
space, a run of digits, a run of punctuation, a run of whitespace) and merges
never cross a chunk boundary. This keeps tokens word-like, and it makes
training fast: pairs are counted once per *distinct* chunk, weighted by how
often the chunk occurs, and after each merge only the chunks that contain the
merged pair are recounted.
"""

import heapq
import re
from collections import Counter

import numpy as np

from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.tokenizers.special_tokens import (
    FIRST_NON_SPECIAL_ID,
    SPECIAL_TOKEN_PATTERN,
    SPECIAL_TOKENS,
    SpecialTokenIds,
    check_special_tokens,
    vocabulary_entries,
)

BYTE_OFFSET = FIRST_NON_SPECIAL_ID  # id of byte value 0
FIRST_MERGE_ID = BYTE_OFFSET + 256  # 261: the first learned token

# GPT-2's pre-tokenizer, rewritten for Python's `re` (which lacks \p{L}):
# English contractions, letters with an optional leading space, digits with an
# optional leading space, other symbols with an optional leading space,
# whitespace not followed by a non-space (so " word" keeps its space), other
# whitespace. Every character falls in one alternative, so the chunks
# concatenate back to the text. Chinese characters count as letters, so a run
# of Chinese up to a punctuation mark is one chunk.
PRETOKENIZER_NAME = "gpt2-like-v1"
PRETOKENIZE_PATTERN = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")

# A pair seen only once is not worth a token (the same rule as minbpe's and
# Hugging Face's default min_frequency of 2).
MIN_PAIR_COUNT = 2

# Encoding caches the tokens of each distinct chunk; past this many entries the
# cache is cleared so that a huge file cannot grow it without bound.
MAX_CACHE_ENTRIES = 200_000

# The tokens the merges build may hold this many bytes in all. Each merge's token is as long as
# its two parts together, so 30 merges that each double a token would claim a gigabyte from a file
# of a few hundred bytes; the lengths are added up before any token is built. A real vocabulary
# is far below the limit (GPT-2's 50,000 tokens average a few bytes each).
MAX_TOKEN_BYTES = 16 * 2**20

BPE_TOKENIZER_TYPE = "bpe"
FORMAT_VERSION = 1


def merge_pair(ids, pair, new_id):
    """Replace every non-overlapping occurrence of `pair` in `ids`, left to right, by `new_id`."""
    out = []
    i, n = 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(text, vocab_size):
    """Learn BPE merges from `text` until the vocabulary has `vocab_size` tokens.

    Returns the list of merged pairs (a, b); merge k creates token FIRST_MERGE_ID + k.
    Ties between equally frequent pairs go to the smaller (a, b), so the result
    depends on nothing but the text.
    """
    chunk_counts = Counter(PRETOKENIZE_PATTERN.findall(text))
    words = [[BYTE_OFFSET + b for b in chunk.encode("utf-8")] for chunk in chunk_counts]
    counts = list(chunk_counts.values())

    pair_counts = Counter()  # pair -> occurrences in the text
    where = {}  # pair -> indices of the words that (may) contain it
    for w, (ids, count) in enumerate(zip(words, counts)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += count
            where.setdefault(pair, set()).add(w)

    # A max-heap of (-count, pair). Counts change after every merge; instead of
    # updating entries we push a fresh one and skip stale ones when popping.
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    for new_id in range(FIRST_MERGE_ID, vocab_size):
        best = None
        while heap:
            neg_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) == -neg_count:
                best = pair
                break
        if best is None or pair_counts[best] < MIN_PAIR_COUNT:
            break
        merges.append(best)

        touched = set()
        for w in where.pop(best):
            ids, count = words[w], counts[w]
            # Recount this word: take its old pairs out, merge, put its new pairs in.
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] -= count
                touched.add(pair)
            ids = merge_pair(ids, best, new_id)
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += count
                touched.add(pair)
                where.setdefault(pair, set()).add(w)
            words[w] = ids
        for pair in touched:
            c = pair_counts[pair]
            if c > 0:
                heapq.heappush(heap, (-c, pair))
            else:
                del pair_counts[pair]
    return merges


class BPETokenizer(SpecialTokenIds):
    """Byte-level BPE: special tokens, 256 bytes, then learned merges (see the module docstring)."""

    file_type = BPE_TOKENIZER_TYPE

    def __init__(self, merges):
        """`merges`: list of (a, b) pairs; merge k makes token FIRST_MERGE_ID + k from tokens a and b."""
        problem = _merges_problem(merges)
        if problem is not None:
            raise ValueError(problem)
        self.merges = [tuple(pair) for pair in merges]
        self._rank = {pair: k for k, pair in enumerate(self.merges)}
        self._bytes = [name.encode("utf-8") for name in SPECIAL_TOKENS] + [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            self._bytes.append(self._bytes[a] + self._bytes[b])
        self._bytes_to_id = {tok: i for i, tok in enumerate(self._bytes) if i >= FIRST_NON_SPECIAL_ID}
        self._cache = {}

    # ---- building -----------------------------------------------------------------

    @classmethod
    def train(cls, text, vocab_size):
        """Learn merges from `text` until there are `vocab_size` tokens (specials and bytes included)."""
        if vocab_size < FIRST_MERGE_ID:
            raise ConfigError(
                f"BPE vocab_size must be at least {FIRST_MERGE_ID} "
                f"({len(SPECIAL_TOKENS)} special tokens + 256 bytes), got {vocab_size}"
            )
        return cls(learn_merges(text, vocab_size))

    # ---- the vocabulary -----------------------------------------------------------

    @property
    def vocab_size(self):
        return len(self._bytes)

    def token_bytes(self, token_id):
        """The bytes a token stands for (a special token's are its literal text)."""
        return self._bytes[token_id]

    def id_to_token(self, token_id):
        """A readable form of the token: its bytes as UTF-8, with any partial character escaped."""
        return self._bytes[token_id].decode("utf-8", errors="backslashreplace")

    def token_to_id(self, token):
        """The id of a special token's name or of the token whose bytes are `token` in UTF-8."""
        if token in SPECIAL_TOKENS:
            return SPECIAL_TOKENS.index(token)
        return self._bytes_to_id[token.encode("utf-8")]

    # ---- text <-> ids -------------------------------------------------------------

    def encode(self, text, allow_special=True):
        """Text -> list of ids. With `allow_special`, special-token literals ("[MASK]") become their ids."""
        pieces = SPECIAL_TOKEN_PATTERN.split(text) if allow_special else [text]
        ids = []
        for piece in pieces:
            if allow_special and piece in SPECIAL_TOKENS:
                ids.append(SPECIAL_TOKENS.index(piece))
                continue
            for chunk in PRETOKENIZE_PATTERN.findall(piece):
                ids.extend(self._encode_chunk(chunk))
        return ids

    def _encode_chunk(self, chunk):
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = [BYTE_OFFSET + b for b in chunk.encode("utf-8")]
        rank = self._rank
        # Apply merges in the order they were learned: always the lowest-ranked
        # pair present next, exactly as training created them.
        while len(ids) >= 2:
            best = min(zip(ids, ids[1:]), key=lambda pair: rank.get(pair, len(rank)))
            if best not in rank:
                break
            ids = merge_pair(ids, best, FIRST_MERGE_ID + rank[best])
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

    def decode_bytes(self, ids, skip_special=False):
        return b"".join(vocabulary_entries(self._bytes, ids, skip_special))

    def decode(self, ids, skip_special=False):
        """List of ids -> text. Ids from `encode` give the text back exactly; an arbitrary
        sequence (a model's sample) may cut a character in half, shown as U+FFFD."""
        return self.decode_bytes(ids, skip_special).decode("utf-8", errors="replace")

    def word_starts(self, ids):
        """Boolean array shaped like `ids`: True where a token begins a word (for whole-word masking).

        A token continues the previous token's word when it starts inside a
        UTF-8 character, or when it starts with an ASCII letter or digit right
        after a token that ended with one. Each Chinese character (and each
        special token) therefore starts its own word.
        """
        tables = self._word_tables()
        ids = np.asarray(ids)
        starts_mid_char = tables["starts_mid_char"][ids]
        continues = starts_mid_char.copy()
        continues[..., 1:] |= tables["starts_alnum"][ids[..., 1:]] & tables["ends_alnum"][ids[..., :-1]]
        return ~continues

    def _word_tables(self):
        if not hasattr(self, "_tables"):
            alnum = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            ordinary = [tok if i >= FIRST_NON_SPECIAL_ID else b"" for i, tok in enumerate(self._bytes)]
            self._tables = {
                "starts_mid_char": np.array([bool(t) and 0x80 <= t[0] < 0xC0 for t in ordinary]),
                "starts_alnum": np.array([bool(t) and t[0] in alnum for t in ordinary]),
                "ends_alnum": np.array([bool(t) and t[-1] in alnum for t in ordinary]),
            }
        return self._tables

    # ---- files --------------------------------------------------------------------

    def to_dict(self):
        return {
            "type": BPE_TOKENIZER_TYPE,
            "version": FORMAT_VERSION,
            "pretokenizer": PRETOKENIZER_NAME,
            "special_tokens": list(SPECIAL_TOKENS),
            "merges": [list(pair) for pair in self.merges],
        }

    @classmethod
    def from_dict(cls, obj, source="<dict>"):
        """Rebuild from `to_dict()` output; CheckpointError (naming `source`) if it is malformed."""
        if obj.get("type") != BPE_TOKENIZER_TYPE:
            raise CheckpointError(f"{source}: tokenizer type is {obj.get('type')!r}, expected 'bpe'")
        if obj.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{source}: unsupported BPE tokenizer version {obj.get('version')!r}")
        if obj.get("pretokenizer") != PRETOKENIZER_NAME:
            raise CheckpointError(
                f"{source}: pretokenizer {obj.get('pretokenizer')!r} is not the supported {PRETOKENIZER_NAME!r}"
            )
        check_special_tokens(obj.get("special_tokens"), source)
        merges = obj.get("merges")
        problem = _merges_problem(merges)
        if problem is not None:
            raise CheckpointError(f"{source}: {problem}")
        return cls(merges)

    def __repr__(self):
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"


def _merges_problem(merges):
    """Describe what is wrong with a merge list (None when nothing is)."""
    if not isinstance(merges, list):
        return "\"merges\" must be a list of [a, b] token-id pairs"
    seen = set()
    lengths = [0] * BYTE_OFFSET + [1] * 256     # bytes of each token (the specials' are never merged)
    total = 0
    for k, pair in enumerate(merges):
        new_id = FIRST_MERGE_ID + k
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(type(t) is int for t in pair)  # bool is an int subclass; refuse it too
        ):
            return f"merge {k} is {str(pair)[:40]}, expected a pair of token ids"
        # A merge may only combine ordinary tokens that already exist.
        if not all(FIRST_NON_SPECIAL_ID <= t < new_id for t in pair):
            return f"merge {k} {list(pair)} refers to a token that is special or not yet defined (ids {FIRST_NON_SPECIAL_ID}..{new_id - 1})"
        if tuple(pair) in seen:
            return f"duplicate merge {list(pair)} at position {k}"
        seen.add(tuple(pair))
        a, b = pair
        lengths.append(lengths[a] + lengths[b])
        total += lengths[-1]
        if total > MAX_TOKEN_BYTES:
            return (f"the first {k + 1} merges build tokens of {total:,} bytes in all, more than the "
                    f"{MAX_TOKEN_BYTES:,} a vocabulary may hold (merge {k} makes a {lengths[-1]:,}-byte token)")
    return None
