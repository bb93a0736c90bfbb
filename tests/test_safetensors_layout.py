"""The bytes our safetensors writer lays down (issue 24: a writer with misaligned tensors went unnoticed).

The format: 8 bytes of header length (little-endian), the JSON header padded with spaces so the
data starts 8-byte aligned, then the tensors back to back. The reference library orders tensors
by falling item size (then name), so every tensor starts at a multiple of its item size and can be
memory-mapped as an array; ours must lay them out the same way, byte for byte.
"""

import itertools
import json

import numpy as np
import pytest

from numpretrain.storage.formats import save_safetensors


def mixed_tensors():
    """Odd element counts of every item size, named so that alphabetical order would misalign them."""
    rng = np.random.default_rng(0)
    return {"a_mask": rng.random(3) > 0.5, "b_bytes": rng.integers(0, 255, 3, dtype=np.uint8),
            "c_half": rng.standard_normal(7).astype(np.float16), "d_short": rng.integers(-9, 9, 3, dtype=np.int16),
            "e_float": rng.standard_normal((3, 3)).astype(np.float32), "f_index": np.arange(5, dtype=np.int64),
            "g_double": rng.standard_normal(3), "h_scalar": np.float32(2.5), "i_empty": np.zeros((0, 4), np.float32)}


def read_layout(data):
    """(data start, header) of a safetensors file's bytes, parsed here from the format, not by our reader."""
    header_length = int.from_bytes(data[:8], "little")
    return 8 + header_length, json.loads(data[8:8 + header_length])


def test_every_tensor_starts_aligned_to_its_item_size(tmp_path):
    tensors = mixed_tensors()
    path = tmp_path / "mixed.safetensors"
    save_safetensors(path, tensors, {"format": "np"})
    data = path.read_bytes()
    start, header = read_layout(data)
    assert start % 8 == 0                                   # the header is padded: the data starts aligned
    assert header.pop("__metadata__") == {"format": "np"}
    spans = sorted((entry["data_offsets"], name) for name, entry in header.items())
    assert spans[0][0][0] == 0 and spans[-1][0][1] == len(data) - start       # the data, all of it
    for (before, _), (after, _) in itertools.pairwise(spans):
        assert before[1] == after[0]                        # back to back
    for name, entry in header.items():
        array = np.asarray(tensors[name])
        begin, end = entry["data_offsets"]
        assert begin % array.itemsize == 0, (name, begin, array.itemsize)
        assert data[start + begin:start + end] == array.astype(array.dtype.newbyteorder("<")).tobytes()
        assert entry["shape"] == list(array.shape)


# One metadata entry at most, as our checkpoints write: the library keeps metadata in a Rust HashMap,
# whose order changes from one process to the next.
@pytest.mark.parametrize("metadata", [None, {"step": "3"}])
def test_bytes_equal_the_safetensors_librarys(tmp_path, metadata):
    st_numpy = pytest.importorskip("safetensors.numpy")
    for tensors in (mixed_tensors(), {"only": np.ones(3, np.float32)},
                    {"big": np.arange(6, dtype=">f4"), "small": np.arange(3, dtype=np.uint8)}):
        path = tmp_path / "ours.safetensors"
        save_safetensors(path, tensors, metadata)
        little_endian = {name: np.asarray(a).astype(np.asarray(a).dtype.newbyteorder("<")) for name, a in tensors.items()}
        theirs = st_numpy.save(little_endian, metadata=metadata)
        assert path.read_bytes() == theirs
