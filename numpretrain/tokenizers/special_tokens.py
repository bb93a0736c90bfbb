"""What every numpretrain tokenizer shares: the BERT special tokens, their ids, and the file reader.

`SPECIAL_TOKENS` sit at ids 0..4 in every tokenizer (so `[PAD]` is 0 everywhere, and
`FIRST_NON_SPECIAL_ID` is the first id a masked LM may choose or draw). `SpecialTokenIds`
gives a tokenizer class the `pad_id` ... `mask_id` properties; `read_tokenizer_json` is the
one careful reader of tokenizer files (JSON only: never eval, never pickle).
"""

import re

from numpretrain.errors import CheckpointError, DataError, check_ids_in_range
from numpretrain.storage.json_files import load_json, save_json

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


class SpecialTokenIds:
    """The ids of the special tokens (the same in every tokenizer), and saving and loading.

    A subclass sets `file_type` (the "type" field of its JSON file) and defines `to_dict` and
    `from_dict(obj, source)`.
    """

    file_type = None

    pad_id = property(lambda self: PAD_ID, doc="id of [PAD]")
    unk_id = property(lambda self: UNK_ID, doc="id of [UNK]")
    cls_id = property(lambda self: CLS_ID, doc="id of [CLS]")
    sep_id = property(lambda self: SEP_ID, doc="id of [SEP]")
    mask_id = property(lambda self: MASK_ID, doc="id of [MASK]")
    first_non_special_id = property(lambda self: FIRST_NON_SPECIAL_ID, doc="smallest id of an ordinary token")

    def save(self, path):
        """Write the tokenizer as JSON, atomically."""
        save_json(path, self.to_dict())

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_tokenizer_json(path, cls.file_type), source=str(path))


def vocabulary_entries(vocab, ids, skip_special=False):
    """The entries of `vocab` (a list indexed by id) for `ids`, in order, for decoding; special
    tokens left out with `skip_special`; DataError for an id outside the vocabulary."""
    ids = [int(i) for i in ids]
    check_ids_in_range(ids, len(vocab), where="decode", error=DataError)
    return [vocab[i] for i in ids if not (skip_special and i < FIRST_NON_SPECIAL_ID)]


def read_tokenizer_json(path, expected_type=None):
    """Read a tokenizer file and return its JSON object (a dict).

    Raises CheckpointError naming the file for a missing file, bytes that are not UTF-8,
    text that is not JSON, JSON that is not an object (all from storage/json_files.py's load_json), or
    a "type" field that is missing or (when `expected_type` is given) different from it.
    """
    obj = load_json(path, expected_type=dict)
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
            f"found {repr(special_tokens)[:80]}"
        )
