"""Our tokenizers in the Hugging Face `tokenizers` format, both ways: tokenizer.json,
tokenizer_config.json and special_tokens_map.json, which `AutoTokenizer.from_pretrained`
reads with no code of ours, giving our ids.

    write_hf_tokenizer(folder, tokenizer, hf_config)   next to an exported model (hf.py: save_hf)
    read_hf_tokenizer(folder)                          a CharTokenizer or BPETokenizer back

The files are plain JSON, written here without the `tokenizers` library (numpy stays the only
dependency); tests/test_hf_tokenizers.py checks the ids against transformers' tokenizer.

Character tokenizer -> a WordLevel model (one vocabulary entry per character, unknown ones
[UNK]) after a pre-tokenizer that cuts the text into single characters ("[\\s\\S]", isolated):
one character, one token, the same ids. No normaliser, so nothing is lower-cased or cleaned;
the Fuse decoder joins the characters with nothing between them.

Byte-level BPE -> a BPE model over GPT-2's byte-to-unicode alphabet (ByteLevel), with our merges
in our order: byte b is the vocabulary entry BYTE_CHARS[b] at id 5 + b, merge k the entry that
joins its two halves' entries, at id 261 + k. Before it, a Split pre-tokenizer with our own
chunk pattern (tokenizers/bpe.py's PRETOKENIZE_PATTERN, written for Oniguruma in ONIG_PATTERN),
not GPT-2's: Python's \\w and \\s are not Oniguruma's, so the classes are spelled out.
    Python's [^\\W\\d_] (letters)   = \\p{L} \\p{Nl} \\p{No}   (checked over every code point)
    Python's \\d                    = \\p{Nd}
    Python's \\s                    = the 29 characters of PY_WHITESPACE (Unicode's White_Space
                                      and the four separators \\x1c-\\x1f, which Python counts too)
The one gap: code points that Python's Unicode tables (14.0 for Python 3.11) leave unassigned
but Oniguruma's newer tables call letters or digits are chunked differently (docs/weights.md).
Two merges that spell the same bytes cannot both be a Hugging Face vocabulary entry: such a
BPE has no exact equivalent and is refused.

Either way the five special tokens are "added tokens", matched in the raw text before anything
else, as our encoders match their literals. A BERT's tokenizer adds [CLS] ... [SEP] (and
[CLS] a [SEP] b [SEP], segment ids 0 / 1) as our fill-mask and classifiers do; a GPT's adds nothing.
"""

from pathlib import Path

from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.storage.json_files import load_json, save_json
from numpretrain.tokenizers import CLS, MASK, PAD, SEP, SPECIAL_TOKENS, UNK, BPETokenizer, CharTokenizer
from numpretrain.tokenizers.bpe import BYTE_OFFSET, FIRST_MERGE_ID

HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_TOKENS_FILE = "special_tokens_map.json"

ONE_CHARACTER = r"[\s\S]"            # every character alone, newlines too
PY_WHITESPACE = ("\\t\\n\\x{0B}\\f\\r\\x{1C}-\\x{1F} \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
                 "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}")
_WS, _LETTER = f"[{PY_WHITESPACE}]", r"[\p{L}\p{Nl}\p{No}]"
ONIG_PATTERN = (r"'(?:[sdmt]|ll|ve|re)"            # contractions
                f"| ?{_LETTER}+"                   # letters with an optional leading space
                r"| ?\p{Nd}+"                      # digits
                f"| ?(?:[^{PY_WHITESPACE}\\p{{L}}\\p{{N}}]|_)+"   # other symbols
                f"|{_WS}+(?![^{PY_WHITESPACE}])"   # whitespace not followed by a non-space
                f"|{_WS}+")


def _byte_chars():
    """GPT-2's bytes_to_unicode: byte b -> a printable character standing for it."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


BYTE_CHARS = _byte_chars()


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------

def _added_tokens():
    return [{"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for i, token in enumerate(SPECIAL_TOKENS)]


def _split(pattern):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def _bert_template():
    """[CLS] A [SEP], and [CLS] A [SEP] B [SEP] with segment ids 0 / 1: what our BERT reads."""
    special = lambda token, type_id: {"SpecialToken": {"id": token, "type_id": type_id}}
    sequence = lambda name, type_id: {"Sequence": {"id": name, "type_id": type_id}}
    return {"type": "TemplateProcessing",
            "single": [special(CLS, 0), sequence("A", 0), special(SEP, 0)],
            "pair": [special(CLS, 0), sequence("A", 0), special(SEP, 0), sequence("B", 1), special(SEP, 1)],
            "special_tokens": {t: {"id": t, "ids": [SPECIAL_TOKENS.index(t)], "tokens": [t]} for t in (CLS, SEP)}}


def bpe_vocabulary(tokenizer):
    """{entry: id} of a BPETokenizer in ByteLevel spelling; a ConfigError if two ids spell the same bytes."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for i in range(BYTE_OFFSET, tokenizer.vocab_size):
        entry = "".join(BYTE_CHARS[b] for b in tokenizer.token_bytes(i))
        if entry in vocab:
            raise ConfigError(f"tokens {vocab[entry]} and {i} of this BPE are the same bytes "
                              f"{tokenizer.token_bytes(i)!r}: a Hugging Face BPE vocabulary holds each once")
        vocab[entry] = i
    return vocab


def hf_tokenizer_json(tokenizer, model_type):
    """The tokenizer.json object for our CharTokenizer or BPETokenizer, for a "bert" or a GPT model_type."""
    if isinstance(tokenizer, CharTokenizer):
        vocab = {tokenizer.id_to_token(i): i for i in range(tokenizer.vocab_size)}
        model = {"type": "WordLevel", "vocab": vocab, "unk_token": UNK}
        pre_tokenizer, decoder = _split(ONE_CHARACTER), {"type": "Fuse"}
    elif isinstance(tokenizer, BPETokenizer):
        vocab = bpe_vocabulary(tokenizer)
        spelled = {i: entry for entry, i in vocab.items()}
        model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": [[spelled[a], spelled[b]] for a, b in tokenizer.merges]}
        byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": False}
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [_split(ONIG_PATTERN), {"type": "ByteLevel", **byte_level}]}
        decoder = {"type": "ByteLevel", **byte_level}
    else:
        raise ConfigError(f"{type(tokenizer).__name__} has no Hugging Face tokenizer.json here "
                          f"(numpretrain writes one for its char and byte-level BPE tokenizers)")
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": _added_tokens(),
            "normalizer": None, "pre_tokenizer": pre_tokenizer,
            "post_processor": _bert_template() if model_type == "bert" else None,
            "decoder": decoder, "model": model}


def write_hf_tokenizer(directory, tokenizer, hf_config):
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json for the model of `hf_config`."""
    directory = Path(directory)
    model_type = hf_config["model_type"]
    save_json(directory / HF_TOKENIZER_FILE, hf_tokenizer_json(tokenizer, model_type))
    special = {"pad_token": PAD, "unk_token": UNK, "cls_token": CLS, "sep_token": SEP, "mask_token": MASK}
    # a GPT reads no segment ids (GPT-2 would look them up in its token table), a BERT does
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if model_type == "bert" else ["input_ids", "attention_mask"]
    context = hf_config.get("max_position_embeddings", hf_config.get("n_positions"))
    save_json(directory / HF_TOKENIZER_CONFIG_FILE,
              {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context, "padding_side": "right",
               "truncation_side": "right", "clean_up_tokenization_spaces": False, "model_input_names": inputs,
               **special})
    save_json(directory / HF_SPECIAL_TOKENS_FILE, special)


# --------------------------------------------------------------------------
# reading back
# --------------------------------------------------------------------------

def read_hf_tokenizer(directory):
    """The CharTokenizer or BPETokenizer a tokenizer.json written by write_hf_tokenizer describes.

    Anything else (GPT-2's own BPE, a WordPiece, another pre-tokenizer) is a CheckpointError:
    its ids or its chunks would not be ours.
    """
    path = Path(directory) / HF_TOKENIZER_FILE
    obj = load_json(path)
    model, pre = obj.get("model"), obj.get("pre_tokenizer")
    kind = model.get("type") if isinstance(model, dict) else None
    added_tokens = obj.get("added_tokens") if isinstance(obj.get("added_tokens"), list) else []
    added = {t.get("content"): t.get("id") for t in added_tokens if isinstance(t, dict)}
    if any(added.get(token) != i for i, token in enumerate(SPECIAL_TOKENS)) or obj.get("normalizer") is not None:
        raise CheckpointError(f"{path}: not a numpretrain tokenizer (it needs {list(SPECIAL_TOKENS)} as added "
                              f"tokens 0..{len(SPECIAL_TOKENS) - 1} and no normalizer)")
    vocab = model.get("vocab") if kind in ("WordLevel", "BPE") else None
    if not isinstance(vocab, dict) or sorted(i for i in vocab.values() if type(i) is int) != list(range(len(vocab))):
        raise CheckpointError(f"{path}: model type {kind!r} with this vocabulary is not one numpretrain reads "
                              f"(a WordLevel or BPE vocabulary with ids 0..n-1, as `numpretrain export-hf` writes)")
    tokens = sorted(vocab, key=vocab.get)
    if kind == "WordLevel":
        if pre != _split(ONE_CHARACTER):
            raise CheckpointError(f"{path}: a WordLevel tokenizer that does not cut the text into characters")
        try:
            return CharTokenizer(tokens)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
    if pre != {"type": "Sequence", "pretokenizers": [_split(ONIG_PATTERN), {
            "type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}:
        raise CheckpointError(f"{path}: a BPE whose pre-tokenizer is not numpretrain's chunk pattern "
                              f"(GPT-2's own tokenizer, say, numbers its bytes otherwise)")
    if tokens[BYTE_OFFSET:FIRST_MERGE_ID] != BYTE_CHARS:
        raise CheckpointError(f"{path}: ids {BYTE_OFFSET}..{FIRST_MERGE_ID - 1} must be the 256 bytes in order")
    if not isinstance(model.get("merges"), list):
        raise CheckpointError(f"{path}: the BPE's \"merges\" must be a list")
    merges = []
    for k, merge in enumerate(model["merges"]):
        pair = merge.split(" ", 1) if isinstance(merge, str) else merge
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise CheckpointError(f"{path}: merge {k} is {merge!r}, not a pair of tokens")
        a, b = pair
        if vocab.get(a + b) != FIRST_MERGE_ID + k:
            raise CheckpointError(f"{path}: merge {k} ({a!r}, {b!r}) does not make token {FIRST_MERGE_ID + k}")
        merges.append((vocab[a], vocab[b]))
    if len(merges) != len(vocab) - FIRST_MERGE_ID:
        raise CheckpointError(f"{path}: {len(vocab)} tokens but {len(merges)} merges")
    try:
        return BPETokenizer(merges)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
