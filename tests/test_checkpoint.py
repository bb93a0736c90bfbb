"""Tests for numpretrain.storage.formats: safetensors round trips and interop with
the reference library, atomic saves under injected faults, hostile and
fuzzed files (only CheckpointError may escape), JSON loading, RNG state."""

import atexit
import errno
import json
import os
import shutil
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpretrain.errors import CheckpointError
from numpretrain.storage import atomic
from numpretrain.storage import formats as checkpoint
from numpretrain.storage.atomic import write_bytes, write_text
from numpretrain.storage.formats import (
    load_json,
    load_safetensors,
    load_safetensors_metadata,
    rng_from_json,
    rng_state_to_json,
    save_json,
    save_safetensors,
)

NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32,
                np.int16, np.int8, np.uint64, np.uint32, np.uint16, np.uint8,
                np.bool_]


def sample_tensors():
    """One tensor of every savable dtype, plus 0-d and empty shapes."""
    rng = np.random.default_rng(0)
    tensors = {}
    for i, dtype in enumerate(NUMPY_DTYPES):
        shape = [(3, 4), (), (0,), (2, 0, 3), (5,)][i % 5]
        if dtype is np.bool_:
            values = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        else:
            values = rng.standard_normal(shape).astype(dtype)
        tensors[f"t{i}.{np.dtype(dtype).name}"] = np.asarray(values, dtype=dtype)  # 0-d draws are scalars
    tensors["special.f32"] = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], np.float32)
    return tensors


def assert_bit_identical(loaded, expected):
    assert set(loaded) == set(expected)
    for name, want in expected.items():
        got = loaded[name]
        assert got.dtype == want.dtype.newbyteorder("="), name
        assert got.shape == want.shape, name
        assert got.tobytes() == np.ascontiguousarray(want).astype(got.dtype).tobytes(), name


def split_file(data):
    """(header dict, data section bytes) of a valid safetensors file."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def build_file(header, body, header_text=None):
    """Assemble safetensors bytes from a header (dict or raw text) and data."""
    text = json.dumps(header) if header_text is None else header_text
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw + body


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


# --------------------------------------------------------------------------
# Round trips and layout
# --------------------------------------------------------------------------

def test_round_trip_every_dtype_and_shape_with_metadata(tmp_path):
    tensors = sample_tensors()
    metadata = {"format": "np", "note": "今天天气很好", "empty": ""}
    path = tmp_path / "model.safetensors"
    save_safetensors(path, tensors, metadata)
    loaded = load_safetensors(path)
    assert_bit_identical(loaded, tensors)
    assert load_safetensors_metadata(path) == metadata
    for array in loaded.values():  # fresh, private, writable memory
        assert array.flags.writeable and array.flags.c_contiguous
        assert array.base is None


def test_metadata_is_empty_when_absent(tmp_path):
    path = tmp_path / "m.safetensors"
    save_safetensors(path, {"x": np.zeros(2, np.float32)})
    header, _ = split_file(path.read_bytes())
    assert "__metadata__" not in header
    assert load_safetensors_metadata(path) == {}


def test_empty_tensor_dict_round_trips(tmp_path):
    path = tmp_path / "empty.safetensors"
    save_safetensors(path, {})
    assert load_safetensors(path) == {}


def test_header_is_padded_and_tensors_tile_the_data(tmp_path):
    path = tmp_path / "m.safetensors"
    save_safetensors(path, sample_tensors(), {"a": "b"})
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header_text = data[8:8 + n]
    assert n % 8 == 0
    assert header_text.rstrip(b" ").endswith(b"}") and n - len(header_text.rstrip(b" ")) < 8
    header, body = split_file(data)
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    position = 0
    for begin, end in spans:
        assert begin == position
        position = end
    assert position == len(body)


def test_non_contiguous_and_big_endian_arrays_are_converted(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    tensors = {"transposed": base.T, "strided": base[:, ::2],
               "big_endian": base.astype(">f4"), "big_int": np.arange(5, dtype=">i8")}
    path = tmp_path / "m.safetensors"
    save_safetensors(path, tensors)
    loaded = load_safetensors(path)
    for name, want in tensors.items():
        np.testing.assert_array_equal(loaded[name], want)
        assert loaded[name].dtype.isnative
    header, body = split_file(path.read_bytes())
    begin, end = header["big_endian"]["data_offsets"]
    assert body[begin:end] == base.astype("<f4").tobytes()  # stored little-endian


def test_bf16_loads_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, np.inf], np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")  # these are exact in bf16
    header = {"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}
    path = write(tmp_path / "bf16.safetensors", build_file(header, bits.tobytes()))
    loaded = load_safetensors(path)["w"]
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, values)


def test_bool_bytes_other_than_one_read_as_true(tmp_path):
    header = {"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}}
    path = write(tmp_path / "b.safetensors", build_file(header, bytes([0, 1, 7])))
    loaded = load_safetensors(path)["m"]
    assert loaded.tolist() == [False, True, True]
    assert loaded.view(np.uint8).tolist() == [0, 1, 1]


def test_save_rejects_what_safetensors_cannot_hold(tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(TypeError, match="complex"):
        save_safetensors(path, {"c": np.zeros(2, np.complex64)})
    with pytest.raises(TypeError):
        save_safetensors(path, {"x": [1.0, 2.0]})
    with pytest.raises(ValueError):
        save_safetensors(path, {"__metadata__": np.zeros(1)})
    with pytest.raises(TypeError):
        save_safetensors(path, {"x": np.zeros(1)}, {"k": 1})
    assert os.listdir(tmp_path) == []  # refused before any file was created


# --------------------------------------------------------------------------
# Interop with the reference library
# --------------------------------------------------------------------------

def test_files_we_write_load_in_the_safetensors_library(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    safe_open = pytest.importorskip("safetensors").safe_open
    tensors = sample_tensors()
    path = tmp_path / "ours.safetensors"
    save_safetensors(path, tensors, {"format": "np"})
    assert_bit_identical(st_numpy.load_file(str(path)), tensors)
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"format": "np"}


def test_files_the_safetensors_library_writes_load_here(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors()
    path = tmp_path / "theirs.safetensors"
    st_numpy.save_file(tensors, str(path), metadata={"format": "np"})
    assert_bit_identical(load_safetensors(path), tensors)
    assert load_safetensors_metadata(path) == {"format": "np"}


# --------------------------------------------------------------------------
# Atomic saves under injected faults
# --------------------------------------------------------------------------

def disk_full_after(limit):
    """A stand-in for atomic._write_chunk that writes `limit` bytes in
    total, then fails as a full disk does."""
    written = [0]

    def write_chunk(file, chunk):
        chunk = memoryview(chunk).cast("B")
        room = limit - written[0]
        if len(chunk) > room:
            file.write(chunk[:max(room, 0)])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        file.write(chunk)
        written[0] += len(chunk)
    return write_chunk


@pytest.mark.parametrize("limit", [0, 5, 100, 400])
def test_disk_full_mid_save_keeps_the_previous_file(tmp_path, monkeypatch, limit):
    path = tmp_path / "model.safetensors"
    old = {"w": np.arange(6, dtype=np.float32)}
    save_safetensors(path, old)
    before = path.read_bytes()
    monkeypatch.setattr(atomic, "_write_chunk", disk_full_after(limit))
    with pytest.raises(CheckpointError) as info:
        save_safetensors(path, {"w": np.ones(100, np.float32), "b": np.zeros(7)})
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message
    assert isinstance(info.value.__cause__, OSError)
    assert path.read_bytes() == before
    assert_bit_identical(load_safetensors(path), old)
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no temp file left


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_write_chunk", disk_full_after(3))
    path = tmp_path / "config.json"
    with pytest.raises(CheckpointError, match="config.json"):
        save_json(path, {"n_layer": 2})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("target", ["fsync", "replace"])
def test_fsync_or_rename_failure_keeps_the_previous_file(tmp_path, monkeypatch, target):
    path = tmp_path / "state.json"
    save_json(path, {"step": 1})

    def fail(*args):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(os, target, fail)
    with pytest.raises(CheckpointError, match="Permission denied") as info:
        save_json(path, {"step": 2})
    monkeypatch.undo()
    assert str(path) in str(info.value)
    assert load_json(path) == {"step": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_an_exception_mid_save_propagates_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_safetensors(path, {"x": np.zeros(3)})
    before = path.read_bytes()

    def interrupted(file, chunk):
        file.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic, "_write_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_safetensors(path, {"x": np.ones(3)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    write_bytes(tmp_path / "f.bin", b"abc")
    assert events[:2] == ["fsync", "replace"]
    assert (tmp_path / "f.bin").read_bytes() == b"abc"


def test_new_files_get_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "t.txt"
    write_text(path, "héllo\n")
    assert path.read_text("utf-8") == "héllo\n"
    if os.name == "posix":
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------
# Hostile files: each a CheckpointError naming the file
# --------------------------------------------------------------------------

GOOD_HEADER = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}
GOOD_BODY = bytes(range(16))


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


HOSTILE_FILES = {
    "empty file": (b"", "too short"),
    "truncated length": (b"\x10\x00\x00", "too short"),
    "header longer than file": (struct.pack("<Q", 1000) + b"{}", "larger than"),
    "header length 2**60": (struct.pack("<Q", 2**60) + b"{}", "exceeds"),
    "truncated data": (build_file(GOOD_HEADER, GOOD_BODY[:-3]), "out of range"),
    "trailing garbage": (build_file(GOOD_HEADER, GOOD_BODY + b"xx"), "cover"),
    "not JSON": (build_file(None, GOOD_BODY, "this is not json"), "malformed JSON"),
    "not UTF-8": (struct.pack("<Q", 4) + b"{\xff}\x00", "UTF-8"),
    "not an object": (build_file([1, 2], b""), "not a JSON object"),
    "entry not an object": (build_file({"a": [0, 8]}, GOOD_BODY[:8]), "not a JSON object"),
    "missing key": (build_file({"a": {"dtype": "F32", "shape": [2]}}, GOOD_BODY[:8]), "lacks"),
    "unknown dtype": (build_file({"a": entry(dtype="F128")}, GOOD_BODY[:8]), "dtype"),
    "float8 unsupported": (build_file({"a": entry(dtype="F8_E4M3", offsets=(0, 2))}, b"ab"), "dtype"),
    "negative shape": (build_file({"a": entry(shape=(-2,))}, GOOD_BODY[:8]), "shape"),
    "float shape": (build_file({"a": entry(shape=(2.0,))}, GOOD_BODY[:8]), "shape"),
    "bool shape": (build_file({"a": entry(shape=(True, 2))}, GOOD_BODY[:8]), "shape"),
    "65 dimensions": (build_file({"a": entry(shape=[1] * 65, offsets=(0, 4))}, b"abcd"), "dimensions"),
    "huge empty shape": (build_file({"a": entry(shape=(0, 2**62, 8), offsets=(0, 0))}, b""), "too large"),
    "offsets not a pair": (build_file({"a": entry(offsets=(0, 4, 8))}, GOOD_BODY[:8]), "pair"),
    "offsets begin > end": (build_file({"a": entry(offsets=(8, 0))}, GOOD_BODY[:8]), "out of range"),
    "negative offset": (build_file({"a": entry(offsets=(-8, 0))}, GOOD_BODY[:8]), "out of range"),
    "offset past the end": (build_file({"a": entry(offsets=(8, 16))}, GOOD_BODY[:8]), "out of range"),
    "shape/bytes mismatch": (build_file({"a": entry(shape=(3,))}, GOOD_BODY[:8]), "needs 12 bytes"),
    "overlap": (build_file({"a": entry(offsets=(0, 8)), "b": entry(offsets=(4, 12))},
                           GOOD_BODY[:12]), "overlaps"),
    "gap": (build_file({"a": entry(offsets=(0, 8)), "b": entry(offsets=(12, 20))},
                       GOOD_BODY + b"xxxx"), "gap"),
    "duplicate names": (build_file(None, GOOD_BODY[:8], '{"a": %s, "a": %s}' % (
        json.dumps(entry()), json.dumps(entry()))), "duplicate key"),
    "metadata not strings": (build_file({"__metadata__": {"k": 1}}, b""), "__metadata__"),
    "NaN in header": (build_file(None, b"", '{"__metadata__": {"k": NaN}}'), "NaN"),
    "deep nesting": (build_file(None, b"", "[" * 100000 + "]" * 100000), "nested too deeply"),
    "huge integer": (build_file(None, b"", '{"a": {"dtype": "F32", "shape": [%s], '
                                '"data_offsets": [0, 0]}}' % ("9" * 5000)), "invalid JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_file_raises_checkpoint_error_naming_it(tmp_path, case):
    data, problem = HOSTILE_FILES[case]
    path = write(tmp_path / "hostile.safetensors", data)
    for load in (load_safetensors, load_safetensors_metadata):
        with pytest.raises(CheckpointError) as info:
            load(path)
        assert str(path) in str(info.value)
        assert problem in str(info.value), str(info.value)


def test_error_messages_stay_short_whatever_the_header_holds(tmp_path):
    long_name, long_dtype = "n" * 10**6, "X" * 10**6
    for header in ({long_name: entry(dtype=long_dtype)}, {"a": entry(shape=[-1] * 10**5)},
                   {long_name: entry(offsets=(0, 4)), "b": entry(offsets=(0, 8))}):
        path = write(tmp_path / "long.safetensors", build_file(header, GOOD_BODY[:8]))
        with pytest.raises(CheckpointError) as info:
            load_safetensors(path)
        assert str(path) in str(info.value) and len(str(info.value)) < 400 + len(str(path))


def test_good_header_used_by_the_hostile_cases_is_valid(tmp_path):
    path = write(tmp_path / "good.safetensors", build_file(GOOD_HEADER, GOOD_BODY))
    loaded = load_safetensors(path)
    assert loaded["a"].tobytes() == GOOD_BODY[:8] and loaded["b"].tobytes() == GOOD_BODY[8:]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_safetensors(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="directory"):
        load_safetensors(tmp_path)


# --------------------------------------------------------------------------
# Fuzzing: only CheckpointError may escape
# --------------------------------------------------------------------------

# Hypothesis cannot share pytest's per-test tmp_path across examples, so the
# fuzz tests write into one private directory, removed when Python exits.
FUZZ_DIR = tempfile.mkdtemp(prefix="numpretrain-fuzz-")
atexit.register(shutil.rmtree, FUZZ_DIR, ignore_errors=True)
FUZZ_SETTINGS = settings(max_examples=150, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


def valid_file_bytes():
    path = os.path.join(FUZZ_DIR, "valid.safetensors")
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float16),
               "i": np.array(7, np.int64), "m": np.array([True, False]),
               "e": np.zeros((0, 4), np.uint8)}
    save_safetensors(path, tensors, {"k": "v"})
    with open(path, "rb") as f:
        return f.read()


VALID = valid_file_bytes()
VALID_HEADER, VALID_BODY = split_file(VALID)


def load_only_checkpoint_errors(data):
    """Load `data` as a file: it must raise CheckpointError naming the file, or
    return arrays whose sizes account for the file's data section exactly."""
    path = write(os.path.join(FUZZ_DIR, "fuzz.safetensors"), data)
    try:
        tensors = load_safetensors(path)
    except CheckpointError as error:
        assert path in str(error)
        return None
    header, body = split_file(data)
    header.pop("__metadata__", None)
    assert set(tensors) == set(header)
    for name, array in tensors.items():
        stored_itemsize = checkpoint.SAFETENSORS_DTYPES[header[name]["dtype"]].itemsize
        begin, end = header[name]["data_offsets"]
        assert list(array.shape) == header[name]["shape"]
        assert array.size * stored_itemsize == end - begin
        assert array.dtype.isnative and array.flags.writeable and array.base is None
    assert sum(e - b for b, e in (h["data_offsets"] for h in header.values())) == len(body)
    return tensors


@FUZZ_SETTINGS
@given(st.integers(0, len(VALID) - 1))
def test_fuzz_truncation(cut):
    assert load_only_checkpoint_errors(VALID[:cut]) is None  # every cut breaks the tiling


@FUZZ_SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_byte_flips(flips):
    data = bytearray(VALID)
    for index, value in flips:
        data[index] = value
    load_only_checkpoint_errors(bytes(data))


@FUZZ_SETTINGS
@given(st.binary(max_size=64), st.integers(0, 2**64 - 1))
def test_fuzz_random_bytes_and_header_lengths(tail, length):
    load_only_checkpoint_errors(tail)
    load_only_checkpoint_errors(struct.pack("<Q", length) + tail)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=8)


@FUZZ_SETTINGS
@given(st.data())
def test_fuzz_edited_headers(data):
    header = json.loads(json.dumps(VALID_HEADER))
    names = sorted(header)
    numbers = st.integers(-3, 40) | st.integers(-2**64, 2**64)
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(names))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "whole", "drop"]))
        if name == "__metadata__" or field == "whole" or not header[name] or not isinstance(header[name], dict):
            header[name] = data.draw(JSON_VALUES)
        elif field == "drop":
            header[name].pop(data.draw(st.sampled_from(sorted(header[name]))), None)
        elif field == "dtype":
            header[name]["dtype"] = data.draw(st.sampled_from(
                sorted(checkpoint.SAFETENSORS_DTYPES) + ["F8_E5M2", "f32", "", "C64"]) | JSON_VALUES)
        else:  # shape or data_offsets: mostly small lists of plausible numbers
            header[name][field] = data.draw(st.lists(numbers, max_size=4) | JSON_VALUES)
    text = json.dumps(header, allow_nan=True)
    if data.draw(st.booleans()):  # also cut or pad the body
        body = VALID_BODY[:data.draw(st.integers(0, len(VALID_BODY)))] + b"\0" * data.draw(st.integers(0, 16))
    else:
        body = VALID_BODY
    load_only_checkpoint_errors(build_file(None, body, text))


def test_fuzz_harness_sees_valid_files():
    """Guard for the fuzz tests above: the unmutated file loads."""
    tensors = load_only_checkpoint_errors(VALID)
    assert tensors is not None and set(tensors) == {"w", "b", "i", "m", "e"}


# --------------------------------------------------------------------------
# JSON files
# --------------------------------------------------------------------------

def test_json_round_trip_is_readable_utf8(tmp_path):
    obj = {"prompt": "今天天气很", "n": 2**100, "x": [1.5, None, True]}
    path = tmp_path / "c.json"
    save_json(path, obj)
    text = path.read_text("utf-8")
    assert "今天天气很" in text and '\n  "n"' in text and text.endswith("\n")
    assert load_json(path) == obj


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe{}", "not valid UTF-8 at byte 0"),
    (b'{\n  "a": 1,\n  "b": }', "line 3 column"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b'{"loss": NaN}', "NaN"),
    (b'{"loss": -Infinity}', "Infinity"),
    (b"[1, 2]", "expected a JSON object at the top level, got array"),
    (b"", "malformed JSON"),
    (b"[" * 50000, "nested too deeply"),
])
def test_load_json_rejects_bad_files_naming_them(tmp_path, content, problem):
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(CheckpointError) as info:
        load_json(path)
    assert str(path) in str(info.value) and problem in str(info.value), str(info.value)


def test_load_json_options(tmp_path):
    path = write(tmp_path / "x.json", b'\xef\xbb\xbf[1, NaN]')  # with a BOM
    assert load_json(path, expected_type=list, allow_nan=True)[0] == 1
    assert load_json(write(tmp_path / "t.json", b"true"), expected_type=None) is True
    with pytest.raises(CheckpointError, match="got boolean"):
        load_json(write(tmp_path / "b.json", b"true"), expected_type=int)
    with pytest.raises(CheckpointError, match="no such file"):
        load_json(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        save_json(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()


@FUZZ_SETTINGS
@given(st.binary(max_size=200))
def test_fuzz_load_json_random_bytes(data):
    path = write(os.path.join(FUZZ_DIR, "fuzz.json"), data)
    try:
        assert isinstance(load_json(path), dict)
    except CheckpointError as error:
        assert path in str(error)


@FUZZ_SETTINGS
@given(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4),
       st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
           ['"', "{", "}", ",", ":", "[", "]", "\\", "NaN", "1e999", "\ud800", ""])), max_size=4),
       st.integers(0, 10**6))
def test_fuzz_load_json_mutated_json(obj, edits, cut):
    text = json.dumps(obj, allow_nan=True)
    for position, insert in edits:
        position %= len(text) + 1
        text = text[:position] + insert + text[position:]
    raw = text.encode("utf-8", "surrogatepass")
    path = write(os.path.join(FUZZ_DIR, "fuzz.json"), raw[:cut % (len(raw) + 1)])
    try:
        assert isinstance(load_json(path), dict)
    except CheckpointError as error:
        assert path in str(error)


# --------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------

@pytest.mark.parametrize("make", [np.random.default_rng,
                                  lambda s: np.random.Generator(np.random.PCG64DXSM(s))])
def test_rng_state_round_trips_through_a_json_file(tmp_path, make):
    rng = make(1234)
    rng.random(17)
    rng.integers(0, 10, size=3, dtype=np.int32)  # leaves a buffered uint32 behind
    path = tmp_path / "state.json"
    save_json(path, {"rng": rng_state_to_json(rng)})
    restored = rng_from_json(load_json(path)["rng"], source=str(path))
    assert restored.bit_generator.state == rng.bit_generator.state
    np.testing.assert_array_equal(restored.integers(0, 10, size=5, dtype=np.int32),
                                  rng.integers(0, 10, size=5, dtype=np.int32))
    np.testing.assert_array_equal(restored.standard_normal(100), rng.standard_normal(100))


def test_rng_state_of_other_generators_is_refused():
    with pytest.raises(TypeError, match="MT19937"):
        rng_state_to_json(np.random.Generator(np.random.MT19937(0)))


@pytest.mark.parametrize("mutate, problem", [
    (lambda s: s.update(bit_generator="MT19937"), "unsupported bit generator"),
    (lambda s: s.pop("uinteger"), "keys"),
    (lambda s: s["state"].update(state=-1), "128-bit"),
    (lambda s: s["state"].update(inc=2**128), "128-bit"),
    (lambda s: s["state"].update(inc="7"), "128-bit"),
    (lambda s: s.update(has_uint32=True), "has_uint32"),
    (lambda s: s.update(uinteger=2**32), "uinteger"),
    (lambda s: s.update(state=[1, 2]), "'state'"),
])
def test_malformed_rng_state_is_a_checkpoint_error(mutate, problem):
    state = rng_state_to_json(np.random.default_rng(0))
    mutate(state)
    with pytest.raises(CheckpointError, match="trainer_state.json") as info:
        rng_from_json(state, source="trainer_state.json")
    assert problem in str(info.value)
    with pytest.raises(CheckpointError):
        rng_from_json([1, 2, 3])
