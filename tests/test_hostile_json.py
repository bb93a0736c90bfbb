"""Hostile JSON, by hand: each breakage of issue 24, in every file numpretrain reads, is one error of
ours naming the file (and the line, for line-based files), in little memory; --resume keeps every
good metrics record. test_fuzz_files.py draws the same breakages at random.
"""

import json
import os
import time
import tracemalloc

import pytest
from hostile_folders import (
    READERS,
    copy_of,
    make_folders,
    outcome,
    resume_and_step,
    state_header,
    tiny_trainer,
    write_state_json,
)

from numpretrain.data.classify import load_labelled_file
from numpretrain.errors import CheckpointError, DataError
from numpretrain.storage.formats import load_safetensors, load_safetensors_metadata, save_safetensors
from numpretrain.storage.json_files import MAX_DEPTH, check_fields, file_in_folder, load_json, parse_json
from numpretrain.storage.runs import load_config
from numpretrain.tokenizers import load_tokenizer
from numpretrain.tokenizers.bpe import FIRST_MERGE_ID
from numpretrain.tokenizers.special_tokens import SPECIAL_TOKENS

MB = 2**20
HUGE_INT = "1" + "0" * 400
NESTED = "[" * 1000 + "]" * 1000


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_folders(tmp_path_factory.mktemp("folders"))


# ----- the reader itself -----

@pytest.mark.parametrize("text, problem", [
    (NESTED, "nested too deeply"), ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested too deeply"),
    (f'{{"a": {HUGE_INT}}}', "integer of 401 digits"), ('{"a": 1e400}', "too large for a float"),
    ('{"a": -1e400}', "too large for a float"), ('{"a": NaN}', "NaN is not allowed"),
    ('{"a": 1, "a": 2}', "duplicate key"), ('{"a": 1', "malformed JSON at line 1"),
])
def test_parse_json_refuses_with_our_error_naming_the_source(text, problem):
    with pytest.raises(CheckpointError, match=problem) as error:
        parse_json(text, "some.json")
    assert str(error.value).startswith("some.json: ")
    with pytest.raises(DataError):
        parse_json(text, "some.json", error=DataError)


def test_parse_json_keeps_what_our_files_hold():
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "x") is not None
    assert parse_json(str(2**128 - 1), "x") == 2**128 - 1          # an RNG state's largest integer
    assert parse_json("1e308", "x") == 1e308


def test_load_json_names_the_file_for_bad_bytes_a_bom_and_a_folder(tmp_path):
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert load_json(tmp_path / "bom.json") == {"a": 1}
    (tmp_path / "bad.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(CheckpointError, match="bad.json: not valid UTF-8 at byte 7"):
        load_json(tmp_path / "bad.json")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_json(tmp_path)


def test_check_fields_refuses_wrong_types_bools_for_ints_and_missing_keys():
    schema = {"n": int, "x?": (int, float), "names?": [str]}
    check_fields({"n": 3, "names": ["a"]}, schema, "f.json")
    for obj, problem in [({"n": True}, "'n' must be a JSON integer, found boolean"), ({}, "lacks the field 'n'"),
                         ({"n": 1, "x": "1"}, "'x' must be a JSON integer or number"),
                         ({"n": 1, "names": ["a", 2]}, r"'names'\[1\] must be a JSON string"),
                         ({"n": 1, "x": None}, "'x' must be")]:
        with pytest.raises(CheckpointError, match=problem):
            check_fields(obj, schema, "f.json")


def test_file_names_read_from_a_file_stay_in_their_folder(tmp_path):
    folder, outside = tmp_path / "folder", tmp_path / "outside"
    folder.mkdir(), outside.mkdir()
    (outside / "secret").write_text("x")
    os.symlink(outside / "secret", folder / "link")
    (folder / "real").write_text("x")
    os.symlink(folder / "real", folder / "inner_link")
    for name in ["../outside/secret", str(outside / "secret"), "..", "", "a/b", "link", 7]:
        with pytest.raises(CheckpointError, match="index.json: "):
            file_in_folder(folder, name, "index.json")
    assert file_in_folder(folder, "real", "index.json") == os.path.join(folder, "real")
    assert file_in_folder(folder, "inner_link", "index.json") == os.path.join(folder, "inner_link")
    assert file_in_folder(folder, "link", "index.json", also_under=[outside]) == os.path.join(folder, "link")


# ----- every file: the breakages the issue lists -----

def edit_text(path, edit):
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")


BREAKAGES = {
    "config.json: an integer too large for a float": (
        "config.json", lambda t: t.replace('"layer_norm_eps": 1e-05', f'"layer_norm_eps": {HUGE_INT}'), "401 digits"),
    "config.json: a field nested 1000 deep": (
        "config.json", lambda t: t.replace('"tie_weights": true', f'"tie_weights": {NESTED}'), "nested too deeply"),
    "config.json: 1e400": ("config.json", lambda t: t.replace("1e-05", "1e400"), "too large for a float"),
    "tokenizer.json (char): nested": ("tokenizer.json (char)", lambda t: NESTED, "nested too deeply"),
    "tokenizer.json (char): a token of 10**400": (
        "tokenizer.json (char)", lambda t: t.replace('"tokens": [', f'"tokens": [{HUGE_INT}, '), "401 digits"),
    "tokenizer.json (BPE): a merge of wrong type": (
        "tokenizer.json (BPE)", lambda t: t.replace('"merges": [', '"merges": [{"a": 1}, '), "expected a pair"),
    "Hugging Face config.json: nested": ("Hugging Face config.json", lambda t: NESTED, "nested too deeply"),
    "Hugging Face config.json: not an object": ("Hugging Face config.json", lambda t: "[1, 2]", "JSON object"),
    "Hugging Face config.json: 10**400": (
        "Hugging Face config.json", lambda t: t.replace('"vocab_size": 18', f'"vocab_size": {HUGE_INT}'), "401 digits"),
    "Hugging Face config.json: a string for a rate": (
        "Hugging Face config.json", lambda t: t.replace('"hidden_dropout_prob": 0.1', '"hidden_dropout_prob": "0.1"'),
        "'hidden_dropout_prob' must be a JSON integer or number"),
    "Hugging Face config.json: architectures of numbers": (
        "Hugging Face config.json", lambda t: t.replace('"architectures": [', '"architectures": [1, '),
        "architectures"),
    "tokenizer_config.json: nested": ("tokenizer_config.json", lambda t: NESTED, "nested too deeply"),
    "tokenizer_config.json: a string for a flag": (
        "tokenizer_config.json", lambda t: t.replace('"do_lower_case": true', '"do_lower_case": "no"'), "boolean"),
    "index: a shard outside the folder": (
        "model.safetensors.index.json", lambda t: t.replace('"model-0', '"../hf/model-0'), "not a plain file name"),
    "index: an absolute shard": (
        "model.safetensors.index.json", lambda t: t.replace('"model-0', '"/etc/model-0'), "not a plain file name"),
    "index: nested": ("model.safetensors.index.json", lambda t: NESTED, "nested too deeply"),
    "index: no weight_map": ("model.safetensors.index.json", lambda t: "{}", "lacks the field 'weight_map'"),
}


@pytest.mark.parametrize("case", BREAKAGES)
def test_each_breakage_is_our_error_naming_the_file(case, folders):
    kind, edit, fragment = BREAKAGES[case]
    folder_kind, name, read = READERS[kind]
    with copy_of(folders[folder_kind]) as folder:
        edit_text(folder / name, edit)
        error, peak = outcome(read, folder)
    assert error is not None and fragment in str(error), (case, error)
    assert name in str(error), error
    assert peak < 4 * MB, f"{peak} bytes for {case}"


def test_a_shard_linked_outside_the_folder_is_refused(folders, tmp_path):
    with copy_of(folders["sharded"]) as folder:
        shard = folder / "model-00001-of-00001.safetensors"
        os.rename(shard, tmp_path / "elsewhere.safetensors")
        os.symlink(tmp_path / "elsewhere.safetensors", shard)
        error, _ = outcome(READERS["model.safetensors.index.json"][2], folder)
    assert "links outside" in str(error) and "model.safetensors.index.json" in str(error), error


@pytest.mark.parametrize("field, value", [("vocab_size", 10**8), ("intermediate_size", 10**8),
                                          ("num_hidden_layers", 10**7), ("hidden_size", 10**6 * 2)])
def test_hugging_face_sizes_are_checked_against_the_weights_before_allocating(folders, field, value):
    with copy_of(folders["hf"]) as folder:
        config = json.loads((folder / "config.json").read_text())
        config[field] = value
        (folder / "config.json").write_text(json.dumps(config))
        start = time.perf_counter()
        error, peak = outcome(READERS["Hugging Face config.json"][2], folder)
    assert "describes a model of at least" in str(error) and "config.json" in str(error), error
    assert peak < 4 * MB and time.perf_counter() - start < 5


# ----- BPE merges that claim gigabytes -----

def bpe_file(path, merges):
    path.write_text(json.dumps({"type": "bpe", "version": 1, "pretokenizer": "gpt2-like-v1",
                                "special_tokens": list(SPECIAL_TOKENS), "merges": merges}, separators=(",", ":")))
    return path


@pytest.mark.parametrize("how", ["doubling", "chained"])
def test_bpe_merges_building_gigabytes_are_refused_at_once(tmp_path, how):
    if how == "doubling":   # merge k joins token k-1 with itself: 2**31 bytes after 31 merges, in ~500 bytes of file
        merges = [[5, 5]] + [[FIRST_MERGE_ID + k, FIRST_MERGE_ID + k] for k in range(40)]
    else:                   # each merge adds one byte: 50,000 merges build 1.25 GB
        merges = [[5, 5]] + [[FIRST_MERGE_ID + k, 5] for k in range(50_000)]
    path = bpe_file(tmp_path / "tokenizer.json", merges)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CheckpointError, match="tokenizer.json: the first .* merges build tokens of"):
            load_tokenizer(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB + 40 * len(merges) * 8 and time.perf_counter() - start < 5


def test_a_long_real_merge_chain_still_loads(tmp_path):
    merges = [[5, 5]] + [[FIRST_MERGE_ID + k, 5] for k in range(4000)]    # 8 MB of tokens: under the limit
    assert load_tokenizer(bpe_file(tmp_path / "tokenizer.json", merges)).vocab_size == FIRST_MERGE_ID + 4001


# ----- the training state: counters and hyper-parameters a step would crash on -----

@pytest.mark.parametrize("edit, fragment", [
    (lambda s: s.update(step=-1), "must be counts"),
    (lambda s: s.update(step=10**30), "must be counts"),
    (lambda s: s.update(step=3.0), "'step' must be a JSON integer"),
    (lambda s: s.update(skipped_steps=99), "must be counts"),
    (lambda s: s["optimizer"].update(step_count=-1), "step_count and param_steps"),
    (lambda s: s["optimizer"].update(step_count="INF"), "too large for a float"),
    (lambda s: s["optimizer"].update(param_steps=[-1] * len(s["optimizer"]["param_steps"])), "param_steps"),
    (lambda s: s["optimizer"].update(param_steps=[10**6] * len(s["optimizer"]["param_steps"])), "param_steps"),
    (lambda s: s["optimizer"]["param_groups"][0].update(eps="HUGE"), "401 digits"),
    (lambda s: s["optimizer"]["param_groups"][0].update(eps=1e300), "eps must be in [0, 1]"),
    (lambda s: s["optimizer"]["param_groups"][0].update(weight_decay=1e300), "weight_decay must be"),
    (lambda s: s["optimizer"]["param_groups"][0].update(betas=[1.5, 0.9]), "betas"),
    (lambda s: s["optimizer"]["param_groups"][0].update(lr="fast"), "['lr'] in the state are not numbers"),
])
def test_a_hostile_training_state_is_refused_before_the_first_step(folders, edit, fragment):
    with copy_of(folders["run"]) as folder:
        path = folder / "training_state.safetensors"
        state = json.loads(state_header(path)[0]["__metadata__"]["trainer_state"])
        edit(state)
        write_state_json(path, json.dumps(state).replace('"HUGE"', HUGE_INT).replace('"INF"', "1e400"))
        with pytest.raises(CheckpointError, match="training_state.safetensors") as error:
            resume_and_step(folder)
    assert fragment in str(error.value), str(error.value)


def test_non_finite_optimizer_moments_are_refused(folders):
    with copy_of(folders["run"]) as folder:
        path = folder / "training_state.safetensors"
        tensors, metadata = load_safetensors(path), load_safetensors_metadata(path)
        name = next(k for k in tensors if k.startswith("optimizer.buffers.exp_avg_sq"))
        tensors[name].flat[0] = -1.0
        save_safetensors(path, tensors, metadata)
        with pytest.raises(CheckpointError, match="negative second moment"):
            resume_and_step(folder)


# ----- metrics.jsonl on --resume: nothing good is lost -----

def lines_of(path):
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


@pytest.mark.parametrize("damage", ["bad UTF-8", "nested", "bad JSON", "not an object", "a cut last line",
                                    "an overlong line"])
def test_damaged_metrics_lines_are_set_aside_and_every_good_record_kept(folders, damage):
    bad = {"bad UTF-8": b'{"step": 1, "x": "\xff"}\n', "nested": NESTED.encode() + b"\n",
           "bad JSON": b'{"step": 2, "loss": 2.9\n', "not an object": b"[1, 2]\n",
           "a cut last line": b'{"step": 4, "lo', "an overlong line": b'{"step": 1, "x": "' + b"x" * 2**21 + b'"}\n'}
    with copy_of(folders["run"]) as folder:
        path = folder / "metrics.jsonl"
        good = lines_of(path)
        at = len(good) if damage == "a cut last line" else 2
        path.write_bytes(b"".join(good[:at]) + bad[damage] + b"".join(good[at:]))
        messages = []
        trainer = tiny_trainer(folder, max_iters=6)
        trainer.log = messages.append
        trainer.resume()    # at the checkpoint of step 4
        trainer.train()     # to step 6
        kept, aside = lines_of(path), lines_of(folder / "metrics.jsonl.damaged")
    assert kept[:len(good)] == good and len(kept) > len(good)       # the good records, then steps 5 and 6
    assert [json.loads(line)["step"] for line in kept[len(good):]] == [5, 6, 6]
    assert b"".join(aside).rstrip(b"\n") == bad[damage].rstrip(b"\n")
    assert any("metrics.jsonl: line" in m and "damaged" in m for m in messages), messages


def test_resuming_a_finished_run_changes_nothing_byte_for_byte_even_with_a_bom(folders):
    with copy_of(folders["run"]) as folder:
        path = folder / "metrics.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        trainer = tiny_trainer(folder)
        assert trainer.resume() and trainer.step == trainer.config.max_iters
        trainer.train()
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_metrics_jsonl_as_a_folder_is_a_clear_error(folders):
    with copy_of(folders["run"]) as folder:
        os.remove(folder / "metrics.jsonl")
        os.mkdir(folder / "metrics.jsonl")
        with pytest.raises(CheckpointError, match="metrics.jsonl: is a directory"):
            resume_and_step(folder)


def test_metrics_jsonl_as_a_folder_in_a_new_run_is_a_clear_error(tmp_path):
    os.mkdir(tmp_path / "metrics.jsonl")
    with pytest.raises(CheckpointError, match="metrics.jsonl: is a directory"):
        tiny_trainer(tmp_path).train()


# ----- label files: the line is named -----

@pytest.mark.parametrize("line, problem", [
    ('{"text": "a", "label": ' + NESTED + "}", "nested too deeply"),
    ('{"text": "a", "label": ' + "9" * 5000 + "}", "5000 digits"),
    ('{"text": "a", "label": 1e400}', "too large for a float"),
    ('{"text": "a", "label": [' + "1," * 1000 + "1]}", "label must be a string or an integer, found [1, 1,"),
])
def test_a_hostile_label_line_is_reported_with_its_file_and_line(tmp_path, line, problem):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "好", "label": "positive"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        load_labelled_file(path)
    message = str(error.value)
    assert str(path) in message and "line 2:" in message and problem in message, message
    assert len(message) < 400


def test_a_message_quoting_a_huge_value_is_cut_in_its_middle(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": {"model_type": "gpt", "x" * 10**6: 1}}))
    with pytest.raises(CheckpointError) as error:
        load_config(tmp_path)
    message = str(error.value)
    assert message.startswith(str(path)) and "characters cut" in message and len(message) < 4100
