"""File formats for checkpoints: safetensors and RNG state (JSON files are json_files.py's; its
load_json and save_json are also importable from here).

Nothing here knows about models; it moves named arrays and JSON values to and
from disk safely. Three promises hold for every function:

* Writes are atomic (atomic.py): a crash or a full disk mid-save leaves the
  previous file exactly as it was.
* Loading never runs code: no pickle, no eval, `json.loads` only.
* Loading a broken or hostile file raises `CheckpointError` naming the file and
  the problem, and never allocates memory a header merely claims: every size
  is checked against the real file size before anything is read.

The safetensors layout (https://github.com/huggingface/safetensors):

    [8 bytes]  N, the header length, unsigned little-endian
    [N bytes]  UTF-8 JSON: {"__metadata__": {str: str},
                            name: {"dtype": "F32", "shape": [..],
                                   "data_offsets": [begin, end]}, ...}
               padded with spaces to a multiple of 8 bytes
    [rest]     raw little-endian C-order tensor bytes; offsets are relative to
               the start of this section, which they must cover exactly,
               with no gap and no overlap.

BF16 is read-only: NumPy has no bfloat16, so a BF16 tensor loads as float32
(exactly: bfloat16 is the top half of a float32) and would save back as F32.
"""

import json
import math
import os

import numpy as np

from numpretrain.errors import CheckpointError
from numpretrain.storage import atomic
from numpretrain.storage.json_files import brief as _brief
from numpretrain.storage.json_files import load_json, open_for_reading, parse_json, save_json  # noqa: F401

# The reference implementation refuses headers above 100 MB; so do we, before
# reading a single header byte.
MAX_HEADER_BYTES = 100_000_000
HEADER_LENGTH_BYTES = 8
HEADER_ALIGNMENT = 8  # the reference pads the header so tensor data starts 8-aligned
METADATA_KEY = "__metadata__"
NUMPY_MAX_DIMS = 64
_INTP_MAX = int(np.iinfo(np.intp).max)  # NumPy's largest extent or byte count

# safetensors dtype name -> little-endian NumPy dtype it is stored as.
SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; widened to float32 on load
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),  # one byte per value; normalised to 0/1 on load
}
# NumPy (kind, itemsize) -> safetensors dtype name, for saving.
_NUMPY_TO_SAFETENSORS = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16",
    ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8",
    ("u", 8): "U64", ("u", 4): "U32", ("u", 2): "U16", ("u", 1): "U8",
    ("b", 1): "BOOL",
}
# The reference writes tensors sorted by its Dtype enum, largest first, then by
# name, so every tensor starts aligned to its item size. We write the same
# order so our files lay out like theirs.
_REFERENCE_DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16",
                          "I32", "U32", "F32", "F64", "I64", "U64"]


# --------------------------------------------------------------------------
# safetensors: writing
# --------------------------------------------------------------------------

def _safetensors_dtype_of(name, array):
    key = (array.dtype.kind, array.dtype.itemsize)
    if key not in _NUMPY_TO_SAFETENSORS:
        raise TypeError(f"tensor {name!r}: dtype {array.dtype} cannot be saved "
                        f"as safetensors (supported: {sorted(_NUMPY_TO_SAFETENSORS.values())})")
    return _NUMPY_TO_SAFETENSORS[key]


def _little_endian_bytes(array):
    """The array's bytes in C order, little-endian, as a flat uint8 view."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).reshape(-1).view(np.uint8)


_safetensors_writes = 0  # safetensors files this process has started to save


def save_safetensors(path, tensors, metadata=None):
    """Save a dict of named arrays (and optional str -> str metadata) as a
    safetensors file, atomically. Big-endian or non-contiguous arrays are
    converted; tensors are laid out as the reference library lays them out."""
    metadata = {} if metadata is None else metadata
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map str to str")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise ValueError(f"invalid tensor name {name!r}")
        if not isinstance(value, (np.ndarray, np.generic)):
            raise TypeError(f"tensor {name!r}: expected a NumPy array, got {type(value).__name__}")
        arrays[name] = np.asarray(value)
    dtypes = {name: _safetensors_dtype_of(name, a) for name, a in arrays.items()}
    order = sorted(arrays, key=lambda n: (-_REFERENCE_DTYPE_ORDER.index(dtypes[n]), n))

    header = {METADATA_KEY: dict(metadata)} if metadata else {}
    offset = 0
    for name in order:
        nbytes = arrays[name].nbytes
        header[name] = {"dtype": dtypes[name], "shape": list(arrays[name].shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % HEADER_ALIGNMENT)

    def chunks():  # a generator, so one tensor at a time is converted
        yield len(header_bytes).to_bytes(HEADER_LENGTH_BYTES, "little")
        yield header_bytes
        for name in order:
            yield _little_endian_bytes(arrays[name])

    global _safetensors_writes                    # the crash tests' fault hook counts these (atomic.py)
    _safetensors_writes += 1
    atomic.write_chunks(path, chunks(), kill_midway=atomic.injected_fault("kill-during-save") == _safetensors_writes)


# --------------------------------------------------------------------------
# safetensors: reading
# --------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_tensor_entry(path, name, entry, data_length):
    """Validate one header entry; return (dtype name, shape, begin, end)."""
    where = f"{path}: tensor {_brief(name)}"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{where}: header entry is not a JSON object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise CheckpointError(f"{where}: header entry lacks {key!r}")
    dtype_name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype_name, str) or dtype_name not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{where}: unsupported dtype {_brief(dtype_name)}")
    if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= _INTP_MAX for d in shape):
        raise CheckpointError(
            f"{where}: shape {_brief(shape)} is not a list of integers in [0, {_INTP_MAX}]")
    if len(shape) > NUMPY_MAX_DIMS:
        raise CheckpointError(f"{where}: {len(shape)} dimensions, more than NumPy's {NUMPY_MAX_DIMS}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise CheckpointError(f"{where}: data_offsets {_brief(offsets)} is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_length:
        raise CheckpointError(
            f"{where}: data_offsets [{begin}, {end}] out of range for a "
            f"{data_length}-byte data section")
    itemsize = SAFETENSORS_DTYPES[dtype_name].itemsize
    # Exact Python ints, so a hostile shape cannot overflow the arithmetic.
    expected = math.prod(shape) * itemsize
    if expected != end - begin:
        raise CheckpointError(
            f"{where}: shape {_brief(shape)} of {dtype_name} needs {expected} bytes, "
            f"but data_offsets give {end - begin}")
    # NumPy refuses shapes whose nonzero extents overflow its index type, even
    # when another extent is zero.
    if math.prod(d for d in shape if d) * itemsize > _INTP_MAX:
        raise CheckpointError(f"{where}: shape {_brief(shape)} is too large for NumPy")
    return dtype_name, tuple(shape), begin, end


def _read_header(path, file):
    """Read and validate the header of an open safetensors file.

    Returns (entries, metadata, data_start) where entries maps each name to
    (dtype name, shape, begin, end), in header order.
    """
    file_size = os.fstat(file.fileno()).st_size
    if file_size < HEADER_LENGTH_BYTES:
        raise CheckpointError(
            f"{path}: {file_size} bytes is too short for a safetensors file "
            "(truncated, or not safetensors)")
    header_length = int.from_bytes(file.read(HEADER_LENGTH_BYTES), "little")
    if header_length > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path}: header length {header_length} exceeds the "
            f"{MAX_HEADER_BYTES}-byte limit (corrupt, or not safetensors)")
    if HEADER_LENGTH_BYTES + header_length > file_size:
        raise CheckpointError(
            f"{path}: header length {header_length} is larger than the "
            f"{file_size}-byte file (truncated, or not safetensors)")
    header_bytes = file.read(header_length)
    if len(header_bytes) != header_length:
        raise CheckpointError(f"{path}: file shrank while being read")
    try:
        header_text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: header is not valid UTF-8 at byte {error.start}") from None
    header = parse_json(header_text, f"{path}: header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")

    metadata = header.pop(METADATA_KEY, None)
    if metadata is None:
        metadata = {}
    if not (isinstance(metadata, dict)
            and all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{path}: {METADATA_KEY} is not an object of strings")

    data_start = HEADER_LENGTH_BYTES + header_length
    data_length = file_size - data_start
    entries = {name: _check_tensor_entry(path, name, entry, data_length)
               for name, entry in header.items()}
    # The tensors must tile the data section exactly: sorted by offset, each
    # begins where the previous ended, and the last ends at the end of file.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else "leaves a gap before it"
            raise CheckpointError(f"{path}: tensor {_brief(name)} at offset {begin} {problem}")
        position = end
    if position != data_length:
        raise CheckpointError(f"{path}: tensors cover {position} of the {data_length} data bytes "
                              "(truncated, or trailing garbage)")
    return entries, metadata, data_start


def _read_tensor(path, file, name, dtype_name, shape, begin, end, data_start):
    """Read one tensor's bytes straight into a fresh native-order array."""
    stored = SAFETENSORS_DTYPES[dtype_name]
    array = np.empty(shape, dtype=stored.newbyteorder("="))
    if end > begin:
        file.seek(data_start + begin)
        if file.readinto(array.reshape(-1).view(np.uint8)) != end - begin:
            raise CheckpointError(f"{path}: file shrank while reading tensor {_brief(name)}")
    if not stored.isnative:
        array.byteswap(inplace=True)  # only on big-endian machines
    if dtype_name == "BOOL":
        # Any nonzero byte is True, as in C. `out=` keeps a 0-d result an array.
        return np.not_equal(array, 0, out=np.empty(shape, dtype=np.bool_))
    if dtype_name == "BF16":
        # bfloat16 is the upper 16 bits of a float32; widen exactly.
        widened = np.empty(shape, dtype=np.float32)
        widened.view(np.uint32)[...] = array.astype(np.uint32) << 16
        return widened
    return array


def load_safetensors(path):
    """Load every tensor of a safetensors file as a fresh, writable,
    native-byte-order array. Returns {name: array} in header order."""
    path = os.fspath(path)
    with open_for_reading(path) as file:
        try:
            entries, _, data_start = _read_header(path, file)
            return {name: _read_tensor(path, file, name, *entry, data_start)
                    for name, entry in entries.items()}
        except OSError as error:
            raise CheckpointError(f"{path}: could not read: {error.strerror or error}") from None


def load_safetensors_metadata(path):
    """Return the str -> str `__metadata__` of a safetensors file ({} if none),
    after validating the whole header; tensor data is not read."""
    path = os.fspath(path)
    with open_for_reading(path) as file:
        try:
            _, metadata, _ = _read_header(path, file)
        except OSError as error:
            raise CheckpointError(f"{path}: could not read: {error.strerror or error}") from None
    return metadata


# --------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------

# Bit generators whose state is plain integers, so JSON holds it exactly.
_JSON_BIT_GENERATORS = ("PCG64", "PCG64DXSM")
_UINT128_END = 1 << 128
_UINT32_END = 1 << 32


def rng_state_to_json(rng):
    """The state of a PCG64 (or PCG64DXSM) Generator as a JSON-ready dict.
    Python ints keep the 128-bit state exact through json.dumps/loads."""
    state = rng.bit_generator.state
    if state.get("bit_generator") not in _JSON_BIT_GENERATORS:
        raise TypeError(f"cannot save a {state.get('bit_generator')} generator's state "
                        f"as JSON (supported: {', '.join(_JSON_BIT_GENERATORS)})")
    return {"bit_generator": state["bit_generator"],
            "state": {"state": int(state["state"]["state"]), "inc": int(state["state"]["inc"])},
            "has_uint32": int(state["has_uint32"]),
            "uinteger": int(state["uinteger"])}


def rng_from_json(state, source="RNG state"):
    """Rebuild the Generator saved by `rng_state_to_json`. `source` (e.g. the
    file it came from) is named in the CheckpointError a malformed state gets."""
    def fail(problem):
        raise CheckpointError(f"{source}: {problem}")

    if not isinstance(state, dict):
        fail("RNG state is not a JSON object")
    expected_keys = {"bit_generator", "state", "has_uint32", "uinteger"}
    if set(state) != expected_keys:
        fail(f"RNG state has keys {_brief(sorted(state))}, expected {sorted(expected_keys)}")
    kind = state["bit_generator"]
    if kind not in _JSON_BIT_GENERATORS:
        fail(f"unsupported bit generator {_brief(kind)}")
    inner = state["state"]
    if not isinstance(inner, dict) or set(inner) != {"state", "inc"}:
        fail("RNG state['state'] must be an object with 'state' and 'inc'")
    for key in ("state", "inc"):
        if not (_is_int(inner[key]) and 0 <= inner[key] < _UINT128_END):
            fail(f"RNG state['state'][{key!r}] is not a 128-bit unsigned integer")
    if not (_is_int(state["has_uint32"]) and state["has_uint32"] in (0, 1)):
        fail("RNG has_uint32 must be 0 or 1")
    if not (_is_int(state["uinteger"]) and 0 <= state["uinteger"] < _UINT32_END):
        fail("RNG uinteger is not a 32-bit unsigned integer")
    bit_generator = getattr(np.random, kind)()
    try:
        bit_generator.state = {"bit_generator": kind,
                               "state": {"state": inner["state"], "inc": inner["inc"]},
                               "has_uint32": state["has_uint32"],
                               "uinteger": state["uinteger"]}
    except (TypeError, ValueError) as error:
        fail(f"NumPy rejected the RNG state: {error}")
    return np.random.Generator(bit_generator)
