"""Classification data: labelled files, label vocabularies, and encoded batches.

Files (read by `load_labelled_file`, written by `save_labelled_file`):
  TSV    one example per line, `text<TAB>label`, or `text<TAB>text_b<TAB>label`
         for text pairs; an optional first line `text<TAB>label` (or
         `text<TAB>text_b<TAB>label`) is a header.
  JSONL  one JSON object per line, {"text": ..., "label": ...}, with an
         optional "text_b" for pairs.
Blank lines are skipped. Every malformed row (missing label, empty text, bad
JSON, a label outside the given label set ...) is reported in one DataError,
with the file name and the row's line number.

An example is a `LabelledExample(text, label)`, where `text` is a string or,
for a pair, a tuple (text_a, text_b); labels are strings until a
`LabelVocabulary` (sorted label strings <-> ints) turns them into ids.

Encoding (as run_classifier.py in google-research/bert and the GPT paper):
  BERT  `[CLS] text [SEP]` or `[CLS] a [SEP] b [SEP]`, segment ids 0 / 1;
        the classifier reads the pooled [CLS] position.
  GPT   `text` or `a [SEP] b` with no [CLS]; the classifier reads the last real
        token, so the batch carries its index per row.
  cloze `[CLS] template [SEP]`, the text in the template's {text} and the
        template's [MASK]s kept: a too long text is cut, never the [MASK]s.
Sequences longer than max_length are cut from the end (for pairs, from the
longer side, as run_classifier.py's _truncate_seq_pair), then padded on the
right with [PAD] to a fixed (N, max_length) shape.
"""

import json
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np

from numpretrain.data.nsp import PretrainingExample, pad_examples
from numpretrain.data.text_files import read_text_file
from numpretrain.errors import CheckpointError, DataError
from numpretrain.storage.json_files import brief, parse_json

TSV_HEADERS = (("text", "label"), ("text", "text_b", "label"))
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TSV_SUFFIXES = (".tsv", ".txt")
MAX_REPORTED_ROWS = 20  # a file with thousands of bad rows is reported by its first few


class LabelledExample(NamedTuple):
    """A text (or a (text_a, text_b) pair) and its label string; unpacks as `text, label`."""

    text: Union[str, tuple]
    label: str


class LabelVocabulary:
    """Label strings <-> ids 0..n-1, in sorted order so the mapping depends only on the set of labels."""

    def __init__(self, labels):
        labels = sorted(set(labels))
        if not labels:
            raise DataError("a label vocabulary needs at least one label")
        self.labels = labels
        self._id = {label: i for i, label in enumerate(labels)}

    @classmethod
    def from_examples(cls, examples):
        return cls(label for _, label in examples)

    def __len__(self):
        return len(self.labels)

    def __contains__(self, label):
        return label in self._id

    def encode(self, labels):
        """Label strings -> (N,) int64 ids; DataError for a label outside the vocabulary."""
        try:
            return np.array([self._id[label] for label in labels], dtype=np.int64)
        except KeyError as err:
            raise DataError(f"unknown label {err.args[0]!r} (known: {', '.join(self.labels)})") from None

    def decode(self, ids):
        return [self.labels[int(i)] for i in ids]

    def to_list(self):
        return list(self.labels)

    @classmethod
    def from_list(cls, labels, source="<labels>"):
        """Rebuild from `to_list()` (e.g. read from a checkpoint); CheckpointError if malformed."""
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise CheckpointError(f"{source}: labels must be a non-empty list of strings, found {labels!r}")
        if labels != sorted(set(labels)):
            raise CheckpointError(f"{source}: labels must be sorted and distinct, found {labels!r}")
        return cls(labels)

    def __repr__(self):
        return f"LabelVocabulary({self.labels})"


# ---- files ------------------------------------------------------------------------


def file_format(path, text=None):
    """'jsonl' or 'tsv', from the file's suffix, else from its first non-blank character."""
    suffix = Path(path).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in TSV_SUFFIXES or text is None:
        return "tsv"
    return "jsonl" if text.lstrip().startswith("{") else "tsv"


def _tsv_row(line):
    """One TSV line -> (text, label) or a problem string."""
    fields = line.split("\t")
    if len(fields) == 1:
        return "missing label (expected text<TAB>label)"
    if len(fields) > 3:
        return f"{len(fields)} tab-separated fields, expected 2 (text, label) or 3 (text, text_b, label)"
    *texts, label = fields
    return texts, label


def _jsonl_row(line):
    """One JSONL line -> (texts, label) or a problem string."""
    try:
        obj = parse_json(line, "", error=DataError)
    except DataError as err:
        return f"bad JSON ({str(err).removeprefix(': ')})"
    if not isinstance(obj, dict):
        return f"expected a JSON object, found {type(obj).__name__}"
    if "label" not in obj or obj["label"] is None:
        return "missing label"
    label = obj["label"]
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        return f"label must be a string or an integer, found {brief(label)}"
    texts = []
    for key in ("text", "text_b"):
        if key not in obj:
            if key == "text":
                return "missing \"text\""
            continue
        if not isinstance(obj[key], str):
            return f"\"{key}\" must be a string, found {type(obj[key]).__name__}"
        texts.append(obj[key])
    return texts, str(label)


def load_labelled_file(path, labels=None):
    """Read a TSV or JSONL labelled file -> list of LabelledExample.

    labels: optional collection of allowed label strings; a row with another
    label is malformed. Labels are stripped of surrounding whitespace; texts
    are kept exactly. Raises DataError naming the file and every malformed
    row's line number (and, via read_text_file, a missing, non-UTF-8 or empty file).
    """
    text = read_text_file(path)
    kind = file_format(path, text)
    allowed = None if labels is None else set(labels)
    examples, problems = [], []
    first_data_line = True
    n_texts = None  # 1 for single texts, 2 for pairs: fixed by the first row
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if kind == "tsv" and first_data_line and tuple(line.split("\t")) in TSV_HEADERS:
            first_data_line = False
            continue
        first_data_line = False
        row = _tsv_row(line) if kind == "tsv" else _jsonl_row(line)
        if isinstance(row, str):
            problems.append((line_number, row))
            continue
        texts, label = row
        label = label.strip()
        if not label:
            problems.append((line_number, "missing label"))
        elif any(not t.strip() for t in texts):
            problems.append((line_number, "empty text"))
        elif allowed is not None and label not in allowed:
            problems.append((line_number, f"unknown label {label!r} (expected one of: {', '.join(sorted(allowed))})"))
        elif n_texts is not None and len(texts) != n_texts:
            problems.append((line_number, f"{len(texts)} text(s), but earlier rows have {n_texts}"))
        else:
            n_texts = len(texts)
            examples.append(LabelledExample(texts[0] if len(texts) == 1 else tuple(texts), label))
    if problems:
        shown = "\n".join(f"  line {n}: {problem}" for n, problem in problems[:MAX_REPORTED_ROWS])
        more = f"\n  ... and {len(problems) - MAX_REPORTED_ROWS} more" if len(problems) > MAX_REPORTED_ROWS else ""
        raise DataError(f"{path}: {len(problems)} malformed row(s) ({kind.upper()}):\n{shown}{more}")
    if not examples:
        raise DataError(f"{path}: no examples (only a header or blank lines)")
    return examples


def save_labelled_file(path, examples):
    """Write examples as TSV (with a header) or JSONL, chosen by the path's suffix (.jsonl/.json: JSONL).

    TSV cannot hold a tab or a line break inside a text; such an example raises
    DataError (write JSONL instead).
    """
    examples = [LabelledExample(*e) for e in examples]
    kind = file_format(path)
    pairs = {isinstance(e.text, tuple) for e in examples}
    if len(pairs) > 1:
        raise DataError(f"{path}: cannot mix single texts and text pairs in one file")
    lines = []
    if kind == "tsv":
        lines.append("\t".join(TSV_HEADERS[1] if pairs == {True} else TSV_HEADERS[0]))
    for n, (text, label) in enumerate(examples):
        texts = list(text) if isinstance(text, tuple) else [text]
        if kind == "jsonl":
            obj = {"text": texts[0], **({"text_b": texts[1]} if len(texts) == 2 else {}), "label": label}
            lines.append(json.dumps(obj, ensure_ascii=False))
            continue
        for field in texts + [label]:
            if any(c in field for c in "\t\n\r"):
                raise DataError(f"{path}: example {n} contains a tab or line break, which TSV cannot hold; use .jsonl")
        lines.append("\t".join(texts + [label]))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---- encoding -----------------------------------------------------------------------


def truncate_pair_from_back(tokens_a, tokens_b, max_num_tokens):
    """run_classifier.py's _truncate_seq_pair: pop from the end of the longer list until both fit."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def _finish(examples, tokenizer, max_length, label_ids):
    batch = pad_examples(examples, max_length, tokenizer.pad_id)
    batch["last_index"] = batch["attention_mask"].sum(axis=1) - 1  # (N,) index of the last real token
    if label_ids is not None:
        label_ids = np.asarray(label_ids, dtype=np.int64)
        if label_ids.shape != (len(examples),):
            raise DataError(f"{len(examples)} texts but label ids of shape {label_ids.shape}")
        batch["labels"] = label_ids  # (N,)
    return batch


def encode_for_bert(texts, tokenizer, max_length, label_ids=None):
    """Texts (strings or (a, b) pairs) -> dict of arrays for a BERT classifier.

    input_ids (N, T) int64, token_type_ids (N, T) int64, attention_mask (N, T)
    bool (True at real tokens), last_index (N,) int64, and labels (N,) int64
    when `label_ids` is given. T = max_length.
    """
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    examples = []
    for text in texts:
        if isinstance(text, tuple):
            a, b = tokenizer.encode(text[0]), tokenizer.encode(text[1])
            truncate_pair_from_back(a, b, max_length - 3)  # room for [CLS] [SEP] [SEP]
            ids = [cls_id] + a + [sep_id] + b + [sep_id]
            segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        else:
            a = tokenizer.encode(text)[: max_length - 2]  # room for [CLS] [SEP]
            ids = [cls_id] + a + [sep_id]
            segments = [0] * len(ids)
        examples.append(PretrainingExample(ids, segments))
    return _finish(examples, tokenizer, max_length, label_ids)


def encode_cloze(texts, template, tokenizer, max_length, label_ids=None):
    """Texts -> the arrays of encode_for_bert, each text written into `template` at "{text}".

    A text is cut from its end to leave room for the template, whose [MASK]s the classifier reads.
    """
    before, after = (tokenizer.encode(part) for part in template.split("{text}"))
    room = max_length - 2 - len(before) - len(after)            # [CLS] before text after [SEP]
    if room < 1:
        raise DataError(f"the cloze {template!r} leaves no room for a text in {max_length} tokens")
    examples = []
    for text in texts:
        if isinstance(text, tuple):
            raise DataError("a cloze reads single texts, not (text, text_b) pairs")
        ids = [tokenizer.cls_id] + before + tokenizer.encode(text)[:room] + after + [tokenizer.sep_id]
        examples.append(PretrainingExample(ids, [0] * len(ids)))
    return _finish(examples, tokenizer, max_length, label_ids)


def encode_for_gpt(texts, tokenizer, max_length, label_ids=None):
    """Texts (strings or (a, b) pairs) -> dict of arrays for a GPT classifier.

    As encode_for_bert but with no [CLS]: `text`, or `a [SEP] b` with [SEP] as
    the GPT paper's delimiter token. The classifier reads position last_index.
    """
    sep_id = tokenizer.sep_id
    examples = []
    for n, text in enumerate(texts):
        if isinstance(text, tuple):
            a, b = tokenizer.encode(text[0]), tokenizer.encode(text[1])
            truncate_pair_from_back(a, b, max_length - 1)  # room for the delimiter
            ids = a + [sep_id] + b
            segments = [0] * (len(a) + 1) + [1] * len(b)
        else:
            ids = tokenizer.encode(text)[:max_length]
            segments = [0] * len(ids)
        if not ids:
            raise DataError(f"text {n} encodes to no tokens, so it has no last token to classify")
        examples.append(PretrainingExample(ids, segments))
    return _finish(examples, tokenizer, max_length, label_ids)

