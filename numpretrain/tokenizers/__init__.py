"""Tokenizers: character level (Chinese BERT style) and byte-level BPE (GPT-2 style).

    special_tokens.py  the five BERT special tokens, their ids, the tokenizer-file reader
    char.py            CharTokenizer: one character, one token
    bpe.py             BPETokenizer: GPT-2's byte-level BPE, trained on the corpus
    wordpiece.py       WordPieceTokenizer: a Hugging Face BERT's vocab.txt, read as it is
    word_list.py       WordList: where words start in character ids, for whole-word masking

The two we train share the five BERT special tokens at ids 0..4 ([PAD] [UNK] [CLS] [SEP]
[MASK]), the same interface (`encode`, `decode`, `vocab_size`, `pad_id` ...
`mask_id`, `first_non_special_id`, `save`, `load`), and a JSON file format
whose "type" field `load_tokenizer` dispatches on.

Imports: errors and storage's json_files.py (JSON files).
"""

from numpretrain.errors import CheckpointError
from numpretrain.tokenizers.bpe import BPETokenizer
from numpretrain.tokenizers.char import CharTokenizer
from numpretrain.tokenizers.special_tokens import (
    CLS,
    CLS_ID,
    FIRST_NON_SPECIAL_ID,
    MASK,
    MASK_ID,
    PAD,
    PAD_ID,
    SEP,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK,
    UNK_ID,
    read_tokenizer_json,
)

# The "type" field of a tokenizer file -> the class that reads it.
TOKENIZER_TYPES = {"char": CharTokenizer, "bpe": BPETokenizer}


def load_tokenizer(path):
    """Load a tokenizer file saved by any tokenizer's `save`, choosing the class by its "type"."""
    obj = read_tokenizer_json(path)
    cls = TOKENIZER_TYPES.get(obj["type"])
    if cls is None:
        raise CheckpointError(f"{path}: unknown tokenizer type {obj['type']!r} (known: {', '.join(TOKENIZER_TYPES)})")
    return cls.from_dict(obj, source=str(path))


__all__ = [
    "PAD",
    "UNK",
    "CLS",
    "SEP",
    "MASK",
    "SPECIAL_TOKENS",
    "PAD_ID",
    "UNK_ID",
    "CLS_ID",
    "SEP_ID",
    "MASK_ID",
    "FIRST_NON_SPECIAL_ID",
    "CharTokenizer",
    "BPETokenizer",
    "TOKENIZER_TYPES",
    "load_tokenizer",
]
