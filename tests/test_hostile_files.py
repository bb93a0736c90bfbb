"""Hostile and broken checkpoint directories: one clear error, no code run, no memory a file merely claims.

A checkpoint directory (config.json, tokenizer.json, model.safetensors; training_state.safetensors
for --resume) may come from a stranger. Loading it through `runs.load_pretrained`, `Trainer.resume`
or the CLI either works or raises CheckpointError naming the file and the problem: each hand-made
breakage below, then hypothesis's truncations, byte flips and edited fields, show nothing else ever
escapes. The safetensors reader alone is fuzzed in test_checkpoint.py.
"""

import ast
import contextlib
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hostile_folders import edit_somewhere
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numpretrain
from numpretrain.app import cli
from numpretrain.errors import CheckpointError
from numpretrain.models.bert import BertConfig, BertForPreTraining
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.models.heads import ClassifierConfig, GPTClassifier
from numpretrain.storage.runs import load_pretrained, parameter_lower_bound, save_pretrained
from numpretrain.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer
from numpretrain.training.trainer import TrainConfig, Trainer

TEXT = "今天天气很好。我们去公园散步。\n\n明天下雨，我们在家看书。"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----- tiny checkpoint directories -----

@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """{"gpt", "bert", "clf", "bpe": a checkpoint directory, "state": a run directory with a training state}."""
    base = tmp_path_factory.mktemp("checkpoints")
    rng = np.random.default_rng(0)
    char = CharTokenizer.train(TEXT)
    gpt_config = GPTConfig(vocab_size=char.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8)
    save_pretrained(base / "gpt", GPT(gpt_config, rng=rng), char)
    bert_config = BertConfig(vocab_size=char.vocab_size, max_position=8, n_layer=1, n_head=2, n_embd=8,
                             intermediate_size=16)
    save_pretrained(base / "bert", BertForPreTraining(bert_config, rng=rng), char)
    clf_config = ClassifierConfig(body=gpt_config.to_dict(), n_labels=2, labels=["negative", "positive"])
    save_pretrained(base / "clf", GPTClassifier(clf_config, rng=rng), char)
    bpe = BPETokenizer.train(TEXT * 3, vocab_size=270)
    save_pretrained(base / "bpe", GPT(GPTConfig(vocab_size=270, block_size=8, n_layer=1, n_head=2, n_embd=8),
                                      rng=rng), bpe)
    trainer = tiny_trainer(base / "state")
    trainer.train_step()
    trainer.step = 1
    trainer.save()
    return {name: base / name for name in ("gpt", "bert", "clf", "bpe", "state")}


def tiny_trainer(run_dir):
    os.makedirs(run_dir, exist_ok=True)
    model = GPT(GPTConfig(vocab_size=20, block_size=4, n_layer=1, n_head=2, n_embd=8), rng=np.random.default_rng(0))
    batch = (np.ones((2, 4), dtype=np.int64), np.ones((2, 4), dtype=np.int64))
    return Trainer(model, TrainConfig(max_iters=2, warmup_iters=0), get_batch=lambda rng: batch,
                   loss_fn=lambda m, b: (m(*b)[1], {}), run_dir=str(run_dir), log=lambda *a: None)


@contextlib.contextmanager
def copy_of(directory):
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / directory.name
        shutil.copytree(directory, target)
        yield target


def read_header(path):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_with_header(path, header, body):
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + body)


def edit_header(path, edit):
    header, body = read_header(path)
    edit(header)
    write_with_header(path, header, body)


def edit_json(path, edit):
    obj = json.loads(path.read_text(encoding="utf-8"))
    edit(obj)
    path.write_text(json.dumps(obj), encoding="utf-8")


def first_tensor(header):
    return header[sorted(k for k in header if k != "__metadata__")[0]]


def second_by_offset(header):
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    return header[names[0]], header[names[1]]


def overlap(header):
    a, b = second_by_offset(header)
    b["data_offsets"] = [b["data_offsets"][0] - 4, b["data_offsets"][1] - 4]


# ----- each breakage, one clear error -----

W, C, T = "model.safetensors", "config.json", "tokenizer.json"
PICKLE_MARKER = os.path.join(tempfile.gettempdir(), "numpretrain_pickle_ran")


class RunsCode:
    """Unpickling this would create PICKLE_MARKER: proof, were it ever loaded, that code ran."""
    def __reduce__(self):
        return (open, (PICKLE_MARKER, "w"))


# name: (directory, file to break, how, fragment of the message)
BREAKAGES = {
    "truncated weights": ("gpt", W, lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]), "out of range"),
    "weights cut inside the header": ("gpt", W, lambda p: p.write_bytes(p.read_bytes()[:40]), "larger than the"),
    "empty weights": ("gpt", W, lambda p: p.write_bytes(b""), "too short"),
    "header length beyond the file": ("gpt", W, lambda p: p.write_bytes(
        (p.stat().st_size).to_bytes(8, "little") + p.read_bytes()[8:]), "larger than the"),
    "header length of 2**63": ("gpt", W, lambda p: p.write_bytes((2**63).to_bytes(8, "little") + p.read_bytes()[8:]),
                               "exceeds the"),
    "overlapping offsets": ("gpt", W, lambda p: edit_header(p, overlap), "overlaps"),
    "offsets past the end": ("gpt", W, lambda p: edit_header(
        p, lambda h: first_tensor(h).update(data_offsets=[0, 10**12])), "out of range"),
    "dtype not matching the bytes": ("gpt", W, lambda p: edit_header(
        p, lambda h: first_tensor(h).update(dtype="F64")), "bytes, but data_offsets give"),
    "shape not matching the bytes": ("gpt", W, lambda p: edit_header(
        p, lambda h: first_tensor(h).update(shape=[10**9, 10**9])), "bytes, but data_offsets give"),
    "unknown dtype": ("gpt", W, lambda p: edit_header(p, lambda h: first_tensor(h).update(dtype="O")),
                      "unsupported dtype"),
    "a pickle instead of weights": ("gpt", W, lambda p: p.write_bytes(pickle.dumps(RunsCode())), "safetensors"),
    "weights of another shape": ("gpt", C, lambda p: edit_json(p, lambda c: c["model"].update(n_layer=2)),
                                 "model.safetensors: does not fit the model in config.json"),
    "BERT config over GPT weights": ("gpt", C, lambda p: edit_json(p, lambda c: c.update(model=BertConfig(
        vocab_size=c["model"]["vocab_size"], max_position=8, n_layer=1, n_head=2, n_embd=8,
        intermediate_size=16).to_dict())), "model.safetensors: does not fit"),
    "malformed config JSON": ("gpt", C, lambda p: p.write_bytes(p.read_bytes()[:-5]), "malformed JSON at line"),
    "config not UTF-8": ("gpt", C, lambda p: p.write_bytes(b'{"model": "\xff"}'), "not valid UTF-8 at byte"),
    "config is a list": ("gpt", C, lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
    "NaN in the config": ("gpt", C, lambda p: p.write_text(p.read_text().replace('"dropout": 0.0', '"dropout": NaN')),
                          "NaN is not allowed"),
    "duplicate keys in the config": ("gpt", C, lambda p: p.write_text(
        p.read_text().replace('"n_layer": 1', '"n_layer": 1, "n_layer": 5')), "duplicate key"),
    "unknown model type": ("gpt", C, lambda p: edit_json(p, lambda c: c["model"].update(model_type="llama")),
                           "unknown model_type 'llama'"),
    "unknown config field": ("gpt", C, lambda p: edit_json(p, lambda c: c["model"].update(exec="rm -rf /")),
                             "unknown GPTConfig fields: ['exec']"),
    "width not divisible by heads": ("gpt", C, lambda p: edit_json(p, lambda c: c["model"].update(n_head=3)),
                                     "not divisible"),
    "vocab_size 10**12": ("gpt", C, lambda p: edit_json(p, lambda c: c["model"].update(vocab_size=10**12)),
                          "describes a model of at least 8,000,000,000,"),
    "n_embd 2**40": ("gpt", C, lambda p: edit_json(p, lambda c: c["model"].update(n_embd=2**40, n_head=1)),
                     "describes a model of at least"),
    "block_size 10**15": ("bert", C, lambda p: edit_json(p, lambda c: c["model"].update(max_position=10**15)),
                          "describes a model of at least"),
    "n_labels 10**12": ("clf", C, lambda p: edit_json(p, lambda c: c["model"].update(n_labels=10**12, labels=[])),
                        "describes a model of at least"),
    "labels not fitting n_labels": ("clf", C, lambda p: edit_json(p, lambda c: c["model"].update(labels=["a"])),
                                    "do not fit together"),
    "classifier body not an object": ("clf", C, lambda p: edit_json(p, lambda c: c["model"].update(body=[1])),
                                      "config.json"),
    "missing config": ("gpt", C, lambda p: p.unlink(), "no such file"),
    "missing weights": ("gpt", W, lambda p: p.unlink(), "no such file"),
    "missing tokenizer": ("gpt", T, lambda p: p.unlink(), "no such"),
    "malformed tokenizer JSON": ("gpt", T, lambda p: p.write_text("{"), "malformed JSON"),
    "unknown tokenizer type": ("gpt", T, lambda p: edit_json(p, lambda t: t.update(type="sentencepiece")),
                               "sentencepiece"),
    "tokenizer larger than the model": ("gpt", T, lambda p: CharTokenizer.train(TEXT + "春夏秋冬").save(p),
                                        "tokens but the model only"),
    "BPE merges out of range": ("bpe", T, lambda p: edit_json(p, lambda t: t.update(merges=[[0, 10**6]])),
                                "tokenizer.json"),
}


@pytest.mark.parametrize("case", BREAKAGES)
def test_each_breakage_is_one_clear_error_naming_the_file(case, dirs):
    kind, name, how, fragment = BREAKAGES[case]
    with copy_of(dirs[kind]) as directory:
        how(directory / name)
        tracemalloc.start()
        try:
            with pytest.raises(CheckpointError) as error:
                load_pretrained(directory)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    message = str(error.value)
    assert fragment in message, message
    blamed = name if fragment != "model.safetensors: does not fit" else W
    assert blamed in message or str(directory) in message, message
    assert peak < 4 * 2**20, f"{peak} bytes allocated for a {case}"   # nothing a header merely claims
    assert not os.path.exists(PICKLE_MARKER)


@pytest.mark.parametrize("case", ["truncated weights", "header length of 2**63", "malformed config JSON",
                                  "vocab_size 10**12", "weights of another shape", "tokenizer larger than the model"])
def test_the_cli_reports_a_broken_checkpoint_with_status_2(case, dirs, capsys):
    kind, name, how, fragment = BREAKAGES[case]
    with copy_of(dirs[kind]) as directory:
        how(directory / name)
        assert cli.main(["generate", "--ckpt", str(directory), "--prompt", "今天"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: numpretrain") and fragment in err, err


def test_absurd_sizes_fail_before_allocating_even_under_a_memory_limit(dirs, tmp_path):
    """vocab_size 10**8 x width 16 would be 6.4 GB of float32: the config is refused in a process
    that could not allocate it (without the check: a MemoryError traceback)."""
    directory = tmp_path / "ckpt"
    shutil.copytree(dirs["gpt"], directory)
    edit_json(directory / C, lambda c: c["model"].update(vocab_size=10**8, n_embd=16))
    limit = 3 * 2**30

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result = subprocess.run([sys.executable, "-m", "numpretrain", "generate", "--ckpt", str(directory),
                             "--prompt", "今天"], capture_output=True, text=True, preexec_fn=limit_memory,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "config.json: describes a model of at least 1,600,00" in result.stderr


def test_the_size_bound_never_refuses_a_real_model():
    for config, model_class in [(GPTConfig(), GPT), (GPTConfig(vocab_size=7, block_size=3, n_layer=2, n_head=1,
                                                               n_embd=4, tie_weights=False), GPT),
                                (BertConfig(), BertForPreTraining),
                                (BertConfig(vocab_size=7, max_position=5, n_layer=3, n_head=2, n_embd=4,
                                            intermediate_size=2), BertForPreTraining)]:
        assert parameter_lower_bound(config) <= model_class(config).num_parameters()
        assert parameter_lower_bound(config) >= model_class(config).num_parameters() // 2


# ----- nothing runs code -----

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib",
                     "torch", "yaml"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def test_no_pickle_eval_or_exec_anywhere_in_the_package():
    problems = []
    for path in sorted(Path(numpretrain.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                problems += [f"{where} imports {a.name}" for a in node.names
                             if a.name.split(".")[0] in FORBIDDEN_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                problems.append(f"{where} imports from {node.module}")
            elif isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
                    problems.append(f"{where} calls {node.func.id}")
                for keyword in node.keywords:   # np.load(..., allow_pickle=True)
                    if keyword.arg == "allow_pickle" and not (isinstance(keyword.value, ast.Constant)
                                                              and keyword.value.value is False):
                        problems.append(f"{where} passes allow_pickle={ast.unparse(keyword.value)}")
    assert problems == []


# ----- fuzzing: only CheckpointError escapes -----

def load_or_checkpoint_error(directory):
    try:
        load_pretrained(directory)
    except CheckpointError:
        pass


@FUZZ
@given(kind=st.sampled_from(["gpt", "bert", "clf", "bpe"]), name=st.sampled_from([W, C, T]), data=st.data())
def test_fuzzed_bytes_of_a_checkpoint_only_raise_checkpoint_error(dirs, kind, name, data):
    with copy_of(dirs[kind]) as directory:
        path = directory / name
        raw = bytearray(path.read_bytes())
        how = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
        if how == "truncate":
            raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
        elif how == "flip":
            for _ in range(data.draw(st.integers(1, 8))):
                raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        else:
            at = data.draw(st.integers(0, len(raw)))
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        path.write_bytes(bytes(raw))
        load_or_checkpoint_error(directory)


# JSON values a hostile file might hold: absurd and negative sizes, wrong types, nesting.
JSON_LEAVES = (st.none() | st.booleans() | st.sampled_from([0, 1, 2, -1, 3, 8, 10**12, 2**64, -(10**30)])
               | st.integers(-5, 300) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=6)


@FUZZ
@given(kind=st.sampled_from(["gpt", "bert", "clf", "bpe"]), name=st.sampled_from([C, T]), data=st.data())
def test_fuzzed_config_and_tokenizer_fields_only_raise_checkpoint_error(dirs, kind, name, data):
    with copy_of(dirs[kind]) as directory:
        edit_json(directory / name, lambda obj: edit_somewhere(data, obj, JSON_VALUES))
        load_or_checkpoint_error(directory)
        if name == T:
            try:
                load_tokenizer(directory / T)
            except CheckpointError:
                pass


@FUZZ
@given(kind=st.sampled_from(["gpt", "bert"]), data=st.data())
def test_fuzzed_weight_headers_only_raise_checkpoint_error(dirs, kind, data):
    with copy_of(dirs[kind]) as directory:
        def edit(header):
            entry = header[data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))]
            field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "name"]))
            if field == "dtype":
                entry["dtype"] = data.draw(st.sampled_from(["F16", "F64", "I8", "U8", "BOOL", "BF16", "I64", "X"]))
            elif field == "shape":
                entry["shape"] = data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 8, 16, 2**31, 2**62]), max_size=4))
            elif field == "data_offsets":
                entry["data_offsets"] = data.draw(st.lists(st.integers(-10, 10**5) | st.just(2**64), max_size=3))
            else:
                header[data.draw(st.text(max_size=10))] = header.pop(
                    data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__"))))
        edit_header(directory / W, edit)
        load_or_checkpoint_error(directory)


@FUZZ
@given(data=st.data())
def test_fuzzed_training_state_only_raises_checkpoint_error_on_resume(dirs, data):
    with copy_of(dirs["state"]) as directory:
        path = directory / "training_state.safetensors"
        if data.draw(st.booleans()):
            header, body = read_header(path)
            state = json.loads(header["__metadata__"]["trainer_state"])
            edit_somewhere(data, state, JSON_VALUES)
            header["__metadata__"]["trainer_state"] = json.dumps(state)
            write_with_header(path, header, body)
        else:
            raw = bytearray(path.read_bytes())
            for _ in range(data.draw(st.integers(1, 4))):
                raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
            path.write_bytes(bytes(raw))
        try:
            tiny_trainer(directory).resume()
        except CheckpointError:
            pass
