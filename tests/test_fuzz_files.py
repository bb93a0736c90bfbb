"""Every file numpretrain reads, fuzzed with hypothesis: our config.json, tokenizer.json (character and
BPE), the trainer state in training_state.safetensors, metrics.jsonl, a JSONL label file, and a
Hugging Face folder's config.json, tokenizer_config.json, vocab.txt and model.safetensors.index.json.

Mutations: truncations, byte flips, inserted bytes, hostile text spliced in anywhere (deep nesting,
integers too large for a float, 1e400, NaN, a BOM), and edits of one JSON value (wrong types, absurd
sizes, nesting, path tricks). The only outcomes allowed: the file loads (and a resumed run takes a
step), or our own error naming the file; a failing load allocates a few MB at most (tracemalloc, as
test_hostile_files.py measures it); --resume never loses a good metrics record. The safetensors
bytes themselves are fuzzed in test_checkpoint.py and test_hostile_files.py.

Each test runs QUICK examples per file kind; `pytest -m slow` runs LARGE.
"""

import json
import os

import pytest
from hostile_folders import READERS, copy_of, edit_somewhere, make_folders, outcome, state_header, write_state_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpretrain.errors import MAX_MESSAGE_CHARS

QUICK, LARGE = 25, 500
SIZES = [pytest.param(QUICK, id="quick"), pytest.param(LARGE, id="large", marks=pytest.mark.slow)]
MB = 2**20
FAILING_LOAD_LIMIT = 8 * MB          # the tiny models here take well under 1 MB
STATE = "training state"
JSON_KINDS = [kind for kind in READERS if kind != "vocab.txt"]
LINE_KINDS = ("metrics.jsonl", "label file (JSONL)")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_folders(tmp_path_factory.mktemp("fuzz"))


def fuzz(examples):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ----- hostile text and values -----

def nested(n):
    return "[" * n + "]" * n


HOSTILE_TEXT = st.sampled_from(["1" + "0" * 400, "-" + "9" * 5000, "1e400", "-1e400", "NaN", "Infinity", "1e308",
                                "\ufeff", '"\udcff"', "\x00", '{"a": 1, "a": 2}', "true", "null", '"../../x"'])
HOSTILE_TEXT = HOSTILE_TEXT | st.integers(30, 3000).map(nested)
# one JSON value: each placeholder string becomes its raw hostile text once the JSON is written
PLACEHOLDERS = {f"@hostile{k}@": text for k, text in enumerate(
    ["1" + "0" * 400, "1e400", "-1e400", "NaN", nested(40), nested(2000), "2" * 39, "-" + "9" * 41])}
JSON_VALUES = (st.none() | st.booleans() | st.sampled_from([0, -1, 1, 2, 3, 10**8, 10**12, 2**53 + 1, 2**63, 2**128])
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
               | st.sampled_from(list(PLACEHOLDERS))
               | st.sampled_from(["../model.safetensors", "/etc/passwd", "..", "", "a/b", "outside-link"]))
JSON_VALUES = st.recursive(JSON_VALUES, lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=5)


def to_text(obj):
    text = json.dumps(obj, ensure_ascii=False)
    for placeholder, hostile in PLACEHOLDERS.items():
        text = text.replace(f'"{placeholder}"', hostile)
    return text


def mutate_bytes(data, raw):
    raw = bytearray(raw)
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "splice"]))
    if how == "truncate":
        return bytes(raw[:data.draw(st.integers(0, max(len(raw) - 1, 0)))])
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        return bytes(raw)
    at = data.draw(st.integers(0, len(raw)))
    inserted = data.draw(st.binary(min_size=1, max_size=16)) if how == "insert" else \
        data.draw(HOSTILE_TEXT).encode("utf-8", "surrogateescape")
    return bytes(raw[:at]) + inserted + bytes(raw[at:])


def mutate_json(data, kind, raw):
    """One JSON value edited; for a JSON-lines file, in one of its lines."""
    if kind in LINE_KINDS:
        lines = raw.split(b"\n")
        k = data.draw(st.integers(0, len(lines) - 2))       # the last element is the empty tail
        lines[k] = mutate_json(data, None, lines[k])
        return b"\n".join(lines)
    obj = json.loads(raw)
    if data.draw(st.integers(0, 9)) == 0:          # now and then, a whole new value
        obj = data.draw(JSON_VALUES)
    else:
        edit_somewhere(data, obj, JSON_VALUES)
    return to_text(obj).encode("utf-8")


# ----- reading the mutated file -----

def read_bytes_of(kind, path):
    if kind == STATE:
        return state_header(path)[0]["__metadata__"]["trainer_state"].encode("utf-8")
    return path.read_bytes()


def write_bytes_of(kind, path, raw):
    if kind == STATE:
        write_state_json(path, raw.decode("utf-8", "surrogateescape"))
    else:
        path.write_bytes(raw)


def check_outcome(folders, kind, mutate, tmp_path_factory):
    folder_kind, name, read = READERS[kind]
    with copy_of(folders[folder_kind]) as folder:
        os.symlink(tmp_path_factory.getbasetemp(), folder / "outside-link")   # a path trick may name it
        path = folder / name
        raw = mutate(read_bytes_of(kind, path))
        write_bytes_of(kind, path, raw)
        error, peak = outcome(read, folder)
        if kind == "metrics.jsonl":
            assert error is None, error
            check_no_good_record_lost(raw, folder)
        elif error is not None:
            message = str(error)
            assert name in message or str(folder) in message, message
            assert len(message) < MAX_MESSAGE_CHARS + 100, message[:300]
            assert peak < FAILING_LOAD_LIMIT, f"{peak} bytes to fail on {kind}: {message[:200]}"


def check_no_good_record_lost(written, folder):
    """Each line is in metrics.jsonl, set aside in metrics.jsonl.damaged, or a record of a step after
    the checkpoint (step 4), dropped to be logged again."""
    kept = (folder / "metrics.jsonl").read_bytes().split(b"\n")
    damaged = folder / "metrics.jsonl.damaged"
    aside = damaged.read_bytes().split(b"\n") if damaged.exists() else []
    for line in written.split(b"\n"):
        if line.strip() and line not in kept and line not in aside:
            record = json.loads(line.decode("utf-8-sig"))
            assert record["step"] > 4, line


# ----- the tests -----

@pytest.mark.parametrize("examples", SIZES)
@pytest.mark.parametrize("kind", READERS)
def test_fuzzed_bytes_load_or_raise_our_error_naming_the_file(folders, kind, examples, tmp_path_factory):
    @fuzz(examples)
    @given(data=st.data())
    def run(data):
        check_outcome(folders, kind, lambda raw: mutate_bytes(data, raw), tmp_path_factory)
    run()


@pytest.mark.parametrize("examples", SIZES)
@pytest.mark.parametrize("kind", JSON_KINDS)
def test_fuzzed_json_values_load_or_raise_our_error_naming_the_file(folders, kind, examples, tmp_path_factory):
    @fuzz(examples)
    @given(data=st.data())
    def run(data):
        check_outcome(folders, kind, lambda raw: mutate_json(data, kind, raw), tmp_path_factory)
    run()
