"""The one way numpretrain reads JSON: whole files, one line of a JSON-lines file, a header's text.

Every JSON file we read passes through here: our config.json, tokenizer.json, the trainer state in
training_state.safetensors, metrics.jsonl (line by line), JSONL label files, and a Hugging Face
folder's config.json, tokenizer_config.json and model.safetensors.index.json. Whatever the bytes,
the result is the parsed value or one error (CheckpointError, or DataError for data files) naming
the file, and the line for JSON-lines files:

* size: a file larger than its limit is refused before a byte is read; a longer line than
  MAX_LINE_BYTES is a damaged line;
* text: bytes that are not UTF-8 say where (a leading BOM, which some editors write, is allowed);
* syntax: malformed JSON says line and column; duplicate keys, NaN and Infinity are refused;
* nesting: deeper than MAX_DEPTH is refused (Python's parser would raise RecursionError);
* numbers: an integer longer than MAX_INT_DIGITS digits, or a number that overflows a float
  ("1e400"), is refused, so no later float() or arithmetic overflows;
* shape: `check_fields` compares an object with a small schema, {key: the types it may hold};
* file names a file gives (a shard of a Hugging Face index) stay in their folder: `file_in_folder`.

Nothing else: which values make sense (a positive size, a known model type) is for the reader
of each file to say, next to the code that uses them.
"""

import json
import math
import os

from numpretrain.errors import CheckpointError
from numpretrain.storage import atomic

# Our JSON files are kilobytes (configs) to a few megabytes (a 50,000-merge tokenizer); a Hugging
# Face tokenizer_config.json or shard index is well under this too.
MAX_JSON_BYTES = 64 * 2**20
MAX_LINE_BYTES = 2**20          # one line of metrics.jsonl or of a label file
# Our files nest four levels at most, Hugging Face's configs about as deep; Python's parser gives
# up (RecursionError) near a thousand.
MAX_DEPTH = 32
# The largest integers we write are 128-bit RNG states (39 digits); a size or a count is far
# smaller. Longer integers are refused before Python converts them (which is quadratic).
MAX_INT_DIGITS = 40
MAX_NAME_CHARS = 255            # the longest file name most file systems allow
NUMBER = (int, float)           # for check_fields: JSON's number is either
_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}


def brief(value, limit=60):
    """repr() of a value from a file, cut short: a hostile file must not become a huge message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def type_name(value_or_type):
    t = value_or_type if isinstance(value_or_type, type) else type(value_or_type)
    return _TYPE_NAMES.get(t, t.__name__)


# --------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------

def _reject_duplicate_keys(pairs):
    """json's object_pairs_hook: a repeated key would silently keep the last value."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {brief(key)}")
        obj[key] = value
    return obj


def _reject_constant(name):
    """json's parse_constant: NaN and Infinity are Python extensions, not JSON."""
    raise ValueError(f"{name} is not allowed")


def _parse_int(digits):
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits.lstrip('-'))} digits (at most {MAX_INT_DIGITS} allowed)")
    return int(digits)


def _parse_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {brief(text, 20)} is too large for a float")
    return value


def _depth_problem(value):
    """The problem with `value`'s nesting, or None; iterative, so any depth is safe to measure."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return f"JSON nested too deeply (more than {MAX_DEPTH} levels)"
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return None


def parse_json(text, source, allow_nan=False, error=CheckpointError):
    """json.loads for text from a file, under every rule of the module docstring; `error` (naming
    `source`) for anything else."""
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_int=_parse_int,
                           parse_float=float if allow_nan else _parse_float,
                           parse_constant=None if allow_nan else _reject_constant)
    except json.JSONDecodeError as problem:
        raise error(f"{source}: malformed JSON at line {problem.lineno} column {problem.colno}: "
                    f"{problem.msg}") from None
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply (more than {MAX_DEPTH} levels)") from None
    except ValueError as problem:   # a duplicate key, NaN or Infinity, an overlong or overflowing number
        raise error(f"{source}: invalid JSON: {problem}") from None
    problem = _depth_problem(value)
    if problem:
        raise error(f"{source}: {problem}")
    return value


def decode_utf8(data, source, error=CheckpointError):
    """Bytes -> str; a leading BOM is dropped, other bytes that are not UTF-8 are `error`."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        raise error(f"{source}: not valid UTF-8 at byte {problem.start}") from None


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------

def open_for_reading(path, error=CheckpointError):
    """open(path, "rb"), with a missing file, a folder or a refused open as `error` naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a file") from None
    except OSError as problem:
        raise error(f"{path}: could not open: {problem.strerror or problem}") from None


def read_file(path, max_bytes, error=CheckpointError):
    """A whole file's bytes, refusing one larger than `max_bytes` before reading."""
    with open_for_reading(path, error) as file:
        try:
            size = os.fstat(file.fileno()).st_size
            if size > max_bytes:
                raise error(f"{path}: file is {size} bytes, larger than the {max_bytes}-byte limit "
                            f"for this kind of file")
            # Read what fstat saw (+1 byte to notice growth): read(max_bytes) would allocate max_bytes first.
            data = file.read(size + 1)
            if len(data) > max_bytes:
                raise error(f"{path}: grew past the {max_bytes}-byte limit while being read")
            return data
        except OSError as problem:
            raise error(f"{path}: could not read: {problem.strerror or problem}") from None


def load_json(path, expected_type=dict, allow_nan=False, fields=None, error=CheckpointError,
              max_bytes=MAX_JSON_BYTES):
    """Read a JSON file, check its top-level type (a type, a tuple of types, None for any) and,
    given `fields`, its keys (see check_fields). Every problem is `error` naming the file."""
    path = os.fspath(path)
    obj = parse_json(decode_utf8(read_file(path, max_bytes, error), path, error), path, allow_nan, error)
    expected = expected_type if isinstance(expected_type, tuple) else (expected_type,)
    if expected_type is not None and not _is_one_of(obj, expected):
        raise error(f"{path}: expected a JSON {' or '.join(map(type_name, expected))} at the top level, "
                    f"got {type_name(obj)}")
    if fields is not None:
        check_fields(obj, fields, path, error)
    return obj


class _Damaged(ValueError):
    """A damaged line of a JSON-lines file, caught by json_lines itself."""


def json_lines(path, error=CheckpointError, allow_nan=False, max_line_bytes=MAX_LINE_BYTES):
    """(line number, raw bytes, value, problem) for each non-blank line of a JSON-lines file: value
    None and a problem (str) for a damaged line, whose bytes are still given (so they can be kept).
    A file that cannot be opened is `error`. The caller decides what a damaged line means:
    metrics.jsonl sets it aside, a label file reports it."""
    with open_for_reading(path, error) as file:
        for number, raw in enumerate(file, start=1):
            if len(raw) > max_line_bytes:
                yield number, raw, None, f"longer than {max_line_bytes} bytes"
            elif raw.strip():
                yield number, raw, *_parse_line(raw, allow_nan)


def _parse_line(raw, allow_nan):
    """(value, None) for a good line, (None, what is wrong) for a damaged one."""
    try:
        text = decode_utf8(raw, "", _Damaged).rstrip("\r\n")
        return parse_json(text, "", allow_nan, _Damaged), None
    except _Damaged as problem:
        return None, str(problem).removeprefix(": ")


def save_json(path, obj, allow_nan=False):
    """Write `obj` as UTF-8 JSON (indent 2, non-ASCII kept) atomically.
    NaN and Infinity are not JSON; they are refused unless `allow_nan`."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=allow_nan)
    atomic.write_text(path, text + "\n")


# --------------------------------------------------------------------------
# schemas
# --------------------------------------------------------------------------

def check_type(value, types, what, error=CheckpointError):
    """`error` unless `value` is one of `types` (a type or tuple); bool is not an integer here, as in
    JSON; [t] means a list of t."""
    if isinstance(types, list):
        check_type(value, list, what, error)
        for k, item in enumerate(value):
            check_type(item, types[0], f"{what}[{k}]", error)
        return
    allowed = types if isinstance(types, tuple) else (types,)
    if not _is_one_of(value, allowed):
        wanted = " or ".join(type_name(t) for t in allowed)
        raise error(f"{what} must be a JSON {wanted}, found {type_name(value)} {brief(value, 40)}")


def _is_one_of(value, types):
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def check_fields(obj, fields, source, error=CheckpointError):
    """Check an object's keys against a schema {key: types}; a key written "key?" may be absent (null
    only where its types include type(None)). Keys the schema does not name are left alone (the
    reader may ignore or refuse them)."""
    check_type(obj, dict, f"{source}: the top level", error)
    for spec, types in fields.items():
        key = spec.rstrip("?")
        optional = spec.endswith("?")
        if key not in obj:
            if optional:
                continue
            raise error(f"{source}: lacks the field {key!r}")
        check_type(obj[key], types, f"{source}: {key!r}", error)


# --------------------------------------------------------------------------
# file names inside files
# --------------------------------------------------------------------------

def file_in_folder(directory, name, source, also_under=(), error=CheckpointError):
    """directory / name, for a file name read from a file (`source`): a plain name, without
    separators, "..", or a drive, whose real path (links followed) lies in `directory` or in one of
    `also_under` (the Hugging Face cache links a snapshot's files to its blobs folder)."""
    check_type(name, str, f"{source}: the file name", error)
    if not name or name in (".", "..") or len(name) > MAX_NAME_CHARS or any(c in name for c in "/\\:\0"):
        raise error(f"{source}: the file name {brief(name)} is not a plain file name in {directory}")
    path = os.path.join(directory, name)
    real = os.path.realpath(path)
    roots = [os.path.realpath(directory), *map(os.path.realpath, also_under)]
    if not any(os.path.commonpath([real, root]) == root for root in roots):
        raise error(f"{source}: {name} links outside {directory} (to {real})")
    return path
