"""A run is what its folder says: `--resume` takes every setting back from config.json.

Resumed with no options, an interrupted run ends bit for bit where the uninterrupted one ends
(GPT, BERT, fine-tuning); an option typed again with another value is refused, naming both
values, and leaves the folder as it was, except the few that may change (--max-iters extends a
finished run); `--resume` where there is no run says what it found and creates nothing.
All in-process, on tiny models (a few seconds in all).
"""

import json
import os
import shutil

import numpy as np
import pytest
import run_files
from run_files import final_state, metrics

import numpretrain
from numpretrain.app import cli
from numpretrain.app.settings import NOT_SETTINGS, TRAIN_FIELDS
from numpretrain.training.trainer import Trainer

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--n-documents", "200", "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "1",
        "--log-interval", "1"]                      # the warm-up is left at its default: shortened to 6
COMMANDS = {"gpt": ["pretrain-gpt", *TINY], "bert": ["pretrain-bert", *TINY, "--dropout", "0.1"]}
# fine-tuning checkpoints where it logs: every 2 steps here
FINETUNE = ["--task", "reviews", "--labels", "16", "--batch-size", "4", "--max-iters", "6", "--log-interval", "2",
            "--lr", "3e-3", "--dropout", "0.1"]


# ----- helpers -----

def folder_bytes(path):
    """{file name: its bytes} of a folder (None if there is no folder), to show that nothing changed."""
    if not os.path.isdir(path):
        return None
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


def config(run_dir):
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def assert_same_run(expected_dir, actual_dir):
    run_files.assert_same_run(expected_dir, actual_dir)
    assert config(expected_dir) == config(actual_dir)


def interrupt_at(monkeypatch, step):
    """Ctrl-C as the Trainer starts step `step` (that many steps done); returns the undo."""
    original = Trainer.train_step

    def interrupted(self):
        if self.step == step:
            raise KeyboardInterrupt
        return original(self)
    monkeypatch.setattr(Trainer, "train_step", interrupted)
    return lambda: monkeypatch.setattr(Trainer, "train_step", original)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Finished 6-step runs, made once: {"gpt": dir, "bert": dir, "body": a GPT to fine-tune,
    "finetune": its fine-tuning, "probe": its linear probe (--freeze)}."""
    base = tmp_path_factory.mktemp("finished")
    runs = {kind: str(base / kind) for kind in ("gpt", "bert", "finetune", "probe")}
    for kind in ("gpt", "bert"):
        assert cli.main([*COMMANDS[kind], "--out", runs[kind]]) == 0
    runs["body"] = runs["gpt"]
    assert cli.main(["finetune", "--ckpt", runs["body"], *FINETUNE, "--out", runs["finetune"]]) == 0
    assert cli.main(["finetune", "--ckpt", runs["body"], *FINETUNE, "--freeze", "--out", runs["probe"]]) == 0
    return runs


def fresh_copy(run_dir, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(run_dir, copy)
    return copy


# ----- resumed with no options, the uninterrupted run -----

@pytest.mark.parametrize("kind", ["gpt", "bert", "finetune", "probe"])
def test_resume_with_no_options_ends_bit_for_bit_as_the_uninterrupted_run(kind, finished, tmp_path,
                                                                          monkeypatch, capsys):
    out = str(tmp_path / "run")
    finetuning = ["finetune", "--ckpt", finished["body"]]       # finetune cannot be called without --ckpt
    start = COMMANDS.get(kind) or [*finetuning, *FINETUNE, *(["--freeze"] if kind == "probe" else [])]
    resume = [start[0]] if kind in COMMANDS else finetuning
    checkpoint = 3 if kind in COMMANDS else 4
    undo = interrupt_at(monkeypatch, 5)
    assert cli.main([*start, "--out", out]) == 130
    assert (f"interrupted at step 5; the last checkpoint is step {checkpoint} ({out}); "
            f"--resume continues from there") in capsys.readouterr().err
    undo()
    assert cli.main([*resume, "--out", out, "--resume"]) == 0
    assert capsys.readouterr().out.startswith(f"resuming {out} at step {checkpoint} of 6\n")
    assert_same_run(finished[kind], out)


def test_killed_before_the_first_checkpoint_resumes_from_step_0(finished, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    undo = interrupt_at(monkeypatch, 2)
    assert cli.main([*COMMANDS["gpt"], "--out", out]) == 130
    assert f"interrupted at step 2, before the first checkpoint of {out}; --resume starts it again from step 0" \
        in capsys.readouterr().err
    undo()
    assert cli.main(["pretrain-gpt", "--out", out, "--resume"]) == 0
    assert capsys.readouterr().out.startswith(f"resuming {out} from step 0 (it stopped before its first checkpoint)\n")
    assert_same_run(finished["gpt"], out)


def test_options_typed_again_with_their_values_are_fine(finished, tmp_path, capsys):
    out = fresh_copy(finished["gpt"], tmp_path)
    before = folder_bytes(out)
    # the warm-up was shortened from the default 100 to 6 at the start: 6 is the run's value now
    assert cli.main([*COMMANDS["gpt"], "--warmup-iters", "6", "--lr", "1e-3", "--out", out, "--resume"]) == 0
    assert capsys.readouterr().out.startswith(f"resuming {out} at step 6 of 6: the run is finished")
    assert folder_bytes(out) == before


# ----- a typed change is refused, and changes nothing -----

REFUSED = {   # what is typed on resume -> (the option, the typed value, the run's value) in the message
    "a model size": (["--n-layer", "2"], "--n-layer 2", "1"),
    "a data option": (["--n-documents", "40000"], "--n-documents 40000", "200"),
    "the tokenizer": (["--tokenizer", "bpe"], "--tokenizer bpe", "char"),
    "the learning rate": (["--lr", "0.01"], "--lr 0.01", "0.001"),
    "the seed": (["--seed", "7"], "--seed 7", "1337"),
    "a default warm-up shortened at the start": (["--warmup-iters", "100"], "--warmup-iters 100", "6"),
    "the number of validation batches": (["--eval-iters", "2"], "--eval-iters 2", "1"),
    "a flag": (["--post-ln"], "--post-ln on", "off"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_changed_setting_is_refused_naming_both_values_and_changes_nothing(case, finished, capsys):
    typed, option, recorded = REFUSED[case]
    out = finished["gpt"]
    before = folder_bytes(out)
    assert cli.main(["pretrain-gpt", "--out", out, "--resume", *typed]) == 2
    err = capsys.readouterr().err
    assert (f"{option} differs from this run's {recorded} ({os.path.join(out, 'config.json')}); "
            f"a resumed run keeps its settings") in err, err
    assert folder_bytes(out) == before


@pytest.mark.parametrize("typed, option, recorded", [(["--labels", "8"], "--labels 8", "16"),
                                                     (["--freeze"], "--freeze on", "off"),
                                                     (["--lm-weight", "0"], "--lm-weight 0.0", "0.5")])
def test_a_changed_finetune_setting_is_refused(typed, option, recorded, finished, capsys):
    out = finished["finetune"]
    before = folder_bytes(out)
    assert cli.main(["finetune", "--ckpt", finished["body"], "--out", out, "--resume", *typed]) == 2
    assert f"{option} differs from this run's {recorded}" in capsys.readouterr().err
    assert folder_bytes(out) == before


def test_a_setting_typed_with_its_default_value_is_still_compared(finished, tmp_path, capsys):
    # a run made with --data-seed 3, resumed with --data-seed 0 typed: 0 is the parser's default,
    # but it was typed, so it is a change to refuse, not an option left out
    out = fresh_copy(finished["finetune"], tmp_path)
    content = config(out)
    content["options"]["data_seed"] = 3
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(content, f)
    assert cli.main(["finetune", "--ckpt", finished["body"], "--out", out, "--resume", "--data-seed", "0"]) == 2
    assert "--data-seed 0 differs from this run's 3" in capsys.readouterr().err


# ----- what may change: the end of the run, and how often it evaluates and logs -----

def test_a_finished_run_extended_with_max_iters_continues_from_its_last_step(finished, tmp_path, capsys):
    out = fresh_copy(finished["gpt"], tmp_path)
    assert cli.main(["pretrain-gpt", "--out", out, "--resume", "--max-iters", "9"]) == 0
    first_line = capsys.readouterr().out.split("\n")[0]
    assert first_line.startswith(f"resuming {out} at step 6 of 9: --max-iters 6 -> 9 (the cosine decay now ends "
                                 f"at step 9; the learning rate at step 6 goes from 1.00e-04 to 1.00e-03)")
    assert config(out)["train"]["max_iters"] == 9
    assert final_state(out)[1]["step"] == 9
    steps = [record["step"] for record in metrics(out) if "loss" in record]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert metrics(out)[:len(metrics(finished["gpt"]))] == metrics(finished["gpt"])   # the first 6 steps stay


def test_max_iters_cannot_end_a_run_before_the_steps_it_has_run(finished, capsys):
    before = folder_bytes(finished["gpt"])
    assert cli.main(["pretrain-gpt", "--out", finished["gpt"], "--resume", "--max-iters", "4"]) == 2
    assert "--max-iters 4 is before step 6, the last checkpoint of" in capsys.readouterr().err
    assert folder_bytes(finished["gpt"]) == before


def test_eval_and_log_intervals_may_change_and_are_recorded(finished, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    undo = interrupt_at(monkeypatch, 4)
    assert cli.main([*COMMANDS["gpt"], "--out", out]) == 130
    undo()
    capsys.readouterr()
    assert cli.main(["pretrain-gpt", "--out", out, "--resume", "--eval-interval", "2", "--log-interval", "2"]) == 0
    assert capsys.readouterr().out.startswith(
        f"resuming {out} at step 3 of 6: --eval-interval 3 -> 2; --log-interval 1 -> 2\n")
    assert (config(out)["train"]["eval_interval"], config(out)["train"]["log_interval"]) == (2, 2)
    # neither touches the weights: they end as the uninterrupted run's
    a, b = final_state(finished["gpt"])[0], final_state(out)[0]
    assert all(np.array_equal(a[key], b[key]) for key in a)


# ----- --resume where there is no run -----

def make_foreign(base):
    """A folder of each kind that holds no GPT run: {case: (path, what the message must say)}."""
    os.makedirs(base / "empty")
    os.makedirs(base / "other_files")
    (base / "other_files" / "notes.txt").write_text("not a run", encoding="utf-8")
    (base / "a_file").write_text("not a folder", encoding="utf-8")
    return {"no such folder": (base / "missing", "missing: no such folder"),
            "an empty folder": (base / "empty", "empty: an empty folder"),
            "other files, no config.json": (base / "other_files",
                                            "config.json: no such file (" + str(base / "other_files") +
                                            " holds notes.txt)"),
            "a file": (base / "a_file", "a_file: a file, not a run folder")}


@pytest.mark.parametrize("case", ["no such folder", "an empty folder", "other files, no config.json", "a file"])
def test_resume_where_there_is_no_run_says_what_it_found_and_creates_nothing(case, tmp_path, capsys):
    path, said = make_foreign(tmp_path)[case]
    before = sorted(os.listdir(tmp_path)), folder_bytes(path)
    assert cli.main([*COMMANDS["gpt"], "--out", str(path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert (sorted(os.listdir(tmp_path)), folder_bytes(path)) == before


def test_resume_of_another_kind_of_run_is_refused(finished, capsys):
    assert cli.main(["pretrain-bert", "--out", finished["gpt"], "--resume"]) == 2
    assert "holds a gpt run, not a bert run" in capsys.readouterr().err
    assert cli.main(["finetune", "--ckpt", finished["body"], "--out", finished["gpt"], "--resume"]) == 2
    assert "holds a gpt run, not a fine-tuning run" in capsys.readouterr().err


# ----- what the folder records -----

def test_config_json_records_every_option_and_the_version(finished):
    parser = cli.build_parser().commands
    for kind, command in (("gpt", "pretrain-gpt"), ("bert", "pretrain-bert"), ("finetune", "finetune")):
        options = {action.dest for action in parser[command]._actions if action.option_strings} - {"help"}
        recorded = config(finished[kind])
        assert recorded["numpretrain_version"] == numpretrain.__version__
        assert set(recorded["options"]) | set(recorded["train"]) >= options - set(NOT_SETTINGS), kind
        assert not set(recorded["options"]) & set(TRAIN_FIELDS)       # each setting in one place


def test_a_folder_made_before_options_were_recorded_still_resumes(finished, tmp_path, capsys):
    out = fresh_copy(finished["gpt"], tmp_path)
    content = config(out)
    del content["options"], content["numpretrain_version"]
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(content, f)
    # the model and training settings are still known from "model" and "train"
    assert cli.main(["pretrain-gpt", "--out", out, "--resume", "--n-head", "4"]) == 2
    assert "--n-head 4 differs from this run's 2" in capsys.readouterr().err
    # the data options are not: taken from the command line, said so, and recorded from then on
    assert cli.main(["pretrain-gpt", "--out", out, "--resume", "--n-documents", "200"]) == 0
    printed = capsys.readouterr().out.split("\n")
    assert printed[1].startswith(f"note: {os.path.join(out, 'config.json')} does not record --corpus, "
                                 f"--n-documents")
    assert config(out)["options"]["n_documents"] == 200


@pytest.mark.parametrize("kind, command", [("gpt", "pretrain-gpt"), ("bert", "pretrain-bert")])
def test_a_bad_value_edited_into_config_json_is_refused_naming_the_file(kind, command, finished, tmp_path, capsys):
    # nobody typed it: the error must say where it came from, and the run is left as it was
    out = fresh_copy(finished[kind], tmp_path)
    content = config(out)
    content["options"]["n_documents"] = -3
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(content, f)
    before = folder_bytes(out)
    assert cli.main([command, "--out", out, "--resume"]) == 2
    error = capsys.readouterr().err
    assert "-3" in error and os.path.join(out, "config.json") in error
    assert folder_bytes(out) == before


# ----- the messages around a run folder -----

def test_ctrl_c_outside_a_run_folder_says_nothing_was_saved(finished, monkeypatch, capsys):
    interrupt_at(monkeypatch, 1)
    assert cli.main(["finetune", "--ckpt", finished["body"], *FINETUNE]) == 130
    assert "interrupted at step 1; this run has no folder, so nothing was saved" in capsys.readouterr().err


def test_finetune_without_out_says_on_its_last_line_that_nothing_was_saved(finished, capsys):
    assert cli.main(["finetune", "--ckpt", finished["body"], *FINETUNE[:-4], "--max-iters", "1"]) == 0
    assert capsys.readouterr().out.rstrip().split("\n")[-1].startswith("nothing saved: give --out DIR")


@pytest.mark.parametrize("case, said", [("a file", "a_file: a file, not a folder"),
                                        ("an empty folder", "empty: an empty folder"),
                                        ("other files, no config.json", "config.json: no such file")])
def test_ckpt_that_is_no_run_folder_says_what_it_holds_and_what_one_needs(case, said, tmp_path, capsys):
    path, _ = make_foreign(tmp_path)[case]
    assert cli.main(["generate", "--ckpt", str(path), "--prompt", "今天"]) == 2
    err = capsys.readouterr().err
    assert said in err and "holds config.json, model.safetensors and tokenizer.json" in err, err
