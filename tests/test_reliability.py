"""Crash safety, exact resume, divergence, bad input and flat memory, each shown by injecting the fault.

Subprocess tests run `python -m numpretrain` on tiny models and kill it with SIGKILL: from outside at
a random step, and from inside halfway through writing a checkpoint file (NUMPRETRAIN_FAULT, the
fault hook in numpretrain/storage/atomic.py). In-process tests make a save fail (disk full, permission denied,
Ctrl-C) and feed every entry point bad input. Hostile files are in test_hostile_files.py.
"""

import errno
import glob
import importlib.util
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
from run_files import assert_same_run, final_state, metrics

from numpretrain.app import cli
from numpretrain.storage import atomic
from numpretrain.storage.formats import load_safetensors
from numpretrain.storage.runs import load_pretrained

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--max-iters", "24", "--warmup-iters", "2", "--eval-interval", "3",
        "--eval-iters", "1", "--log-interval", "1", "--seed", "5"]
# BERT logs every 2nd step: which steps reach metrics.jsonl must not depend on where a run resumed.
COMMANDS = {"gpt": ["pretrain-gpt", *TINY], "bert": ["pretrain-bert", *TINY, "--dropout", "0.1", "--log-interval", "2"]}
SIGKILLED = -signal.SIGKILL if hasattr(signal, "SIGKILL") else None

# The step the outside kill aims at; random so repeated runs try other moments (printed on failure).
KILL_SEED = int(os.environ.get("NUMPRETRAIN_TEST_SEED", random.randrange(10**6)))

pytestmark = pytest.mark.skipif(SIGKILLED is None, reason="needs SIGKILL (POSIX)")


# ----- helpers -----

def environment(fault=None):
    env = {k: v for k, v in os.environ.items() if k != atomic.FAULT_ENV}
    env["PYTHONUNBUFFERED"] = "1"        # progress lines arrive as they are printed
    if fault:
        env[atomic.FAULT_ENV] = fault
    return env


def run(argv, out, fault=None, resume=False):
    """`python -m numpretrain ARGV --out OUT` in a subprocess -> CompletedProcess."""
    argv = [sys.executable, "-m", "numpretrain", *argv, "--out", out, *(["--resume"] if resume else [])]
    return subprocess.run(argv, capture_output=True, text=True, env=environment(fault), timeout=120)


def run_and_kill_at_step(argv, out, step):
    """Start a run, SIGKILL it from outside once it prints a step >= `step`; its return code."""
    argv = [sys.executable, "-m", "numpretrain", *argv, "--out", out]
    # niced, so that on a busy machine the reader gets the CPU and the kill lands mid-run
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=environment(), preexec_fn=lambda: os.nice(10))
    for line in process.stdout:                  # progress lines: "step    12/24 | loss ..."
        if line.startswith("step ") and "/" in line[:16] and int(line[5:line.index("/")]) >= step:
            process.send_signal(signal.SIGKILL)
            break
    process.stdout.close()
    return process.wait(timeout=120)


def temp_files(run_dir):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_dir, ".*.tmp")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, one per model, made on demand: {"gpt": run_dir, ...}."""
    runs = {}

    def get(model):
        if model not in runs:
            out = str(tmp_path_factory.mktemp(f"reference_{model}") / "run")
            result = run(COMMANDS[model], out)
            assert result.returncode == 0, result.stderr
            runs[model] = out
        return runs[model]
    return get


# ----- kill at any moment, resume exactly -----

@pytest.mark.parametrize("model", ["gpt", "bert"])
def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(model, reference, tmp_path):
    argv, out = COMMANDS[model], str(tmp_path / "run")
    kill_step = random.Random(f"{KILL_SEED}-{model}").randint(1, 10)
    context = f"(killed at step {kill_step}; NUMPRETRAIN_TEST_SEED={KILL_SEED})"

    # 1. killed from outside at a random step (before, at or between checkpoints)
    assert run_and_kill_at_step(argv, out, kill_step) == SIGKILLED, context
    # 2. resumed, and killed halfway through training_state.safetensors of its first save:
    #    model.safetensors is now newer than the training state
    result = run(argv, out, fault="kill-during-save:2", resume=True)
    assert result.returncode == SIGKILLED, result.stderr + context
    assert any(name.startswith(".training_state.safetensors.") for name in temp_files(out)), context
    # 3. resumed, and killed halfway through model.safetensors
    result = run(argv, out, fault="kill-during-save:1", resume=True)
    assert result.returncode == SIGKILLED, result.stderr + context
    assert [name for name in temp_files(out) if name.startswith(".model.safetensors.")], context
    # 4. resumed to the end: the half-written files are gone, and the run is the uninterrupted one
    result = run(argv, out, resume=True)
    assert result.returncode == 0, result.stderr + context
    assert "removed .model.safetensors." in result.stdout
    assert temp_files(out) == []
    assert_same_run(reference(model), out, context)
    # 5. resuming a finished run (killed after its last save) changes nothing
    assert run(argv, out, resume=True).returncode == 0
    assert_same_run(reference(model), out, context)


def test_killed_before_the_first_checkpoint_resumes_from_the_start(reference, tmp_path, monkeypatch):
    from numpretrain.training.trainer import Trainer
    out = str(tmp_path / "run")
    original_step = Trainer.train_step

    def interrupted_at_step_2(self):          # steps 0 and 1 are logged; no checkpoint exists yet
        if self.step == 2:
            raise KeyboardInterrupt
        return original_step(self)
    monkeypatch.setattr(Trainer, "train_step", interrupted_at_step_2)
    assert cli.main([*COMMANDS["gpt"], "--out", out]) == 130
    assert not os.path.exists(os.path.join(out, "training_state.safetensors"))
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert cli.main([*COMMANDS["gpt"], "--out", out, "--resume"]) == 0
    assert_same_run(reference("gpt"), out)     # the log does not hold steps 1 and 2 twice


# ----- the last good checkpoint survives a failed save -----

def fail_nth_safetensors_write(monkeypatch, n, error):
    """Make the n-th safetensors file saved raise `error` after its header is written."""
    original, calls = atomic.write_chunks, []

    def fails_midway(chunks):
        for i, chunk in enumerate(chunks):
            if i == 2:
                raise error
            yield chunk

    def write_chunks(path, chunks, **kwargs):
        if str(path).endswith(".safetensors"):
            calls.append(path)
            if len(calls) == n:
                chunks = fails_midway(chunks)
        return original(path, chunks, **kwargs)
    monkeypatch.setattr(atomic, "write_chunks", write_chunks)


def deny_nth_rename_of(monkeypatch, name, n):
    """os.replace onto a file called `name` fails with EACCES the n-th time."""
    original, calls = os.replace, []

    def replace(src, dst):
        if os.path.basename(dst) == name:
            calls.append(dst)
            if len(calls) == n:
                raise PermissionError(errno.EACCES, "Permission denied", dst)
        return original(src, dst)
    monkeypatch.setattr(atomic.os, "replace", replace)


# The 2nd checkpoint is at step 6: its model.safetensors is write 3, its training state write 4.
SAVE_FAILURES = {
    "disk full writing the weights": (
        lambda mp: fail_nth_safetensors_write(mp, 3, OSError(errno.ENOSPC, "No space left on device")),
        2, ["model.safetensors", "No space left on device", "step 6 was not saved", "kept (step 3"]),
    "permission denied renaming the training state": (
        lambda mp: deny_nth_rename_of(mp, "training_state.safetensors", 2),
        2, ["training_state.safetensors", "Permission denied", "rename", "kept (step 3"]),
    "Ctrl-C in the middle of the training state": (
        lambda mp: fail_nth_safetensors_write(mp, 4, KeyboardInterrupt()), 130, ["--resume"]),
}


@pytest.mark.parametrize("failure", SAVE_FAILURES)
def test_a_failed_save_keeps_the_last_checkpoint_and_says_what_failed(failure, reference, tmp_path,
                                                                       monkeypatch, capsys):
    inject, status, fragments = SAVE_FAILURES[failure]
    out = str(tmp_path / "run")
    with monkeypatch.context() as patch:
        inject(patch)
        assert cli.main([*COMMANDS["gpt"], "--out", out]) == status
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert temp_files(out) == []                               # the half-written file is removed
    _, state = final_state(out)
    assert state["step"] == 3                                  # the step-3 checkpoint is whole
    load_pretrained(out, expect="gpt")                         # and its weights load
    assert cli.main([*COMMANDS["gpt"], "--out", out, "--resume"]) == 0
    assert_same_run(reference("gpt"), out)


# ----- divergence -----

def test_divergence_exits_non_zero_naming_step_and_parameter(tmp_path):
    out = str(tmp_path / "run")
    result = run(COMMANDS["gpt"], out, fault="nan-grad:5")
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert "step 5" in result.stderr and "gradient of ln_f.bias is not finite" in result.stderr
    _, state = final_state(out)
    assert state["step"] == 3                                  # the last good checkpoint is kept
    weights = load_safetensors(os.path.join(out, "model.safetensors"))
    assert all(np.isfinite(w).all() for w in weights.values())


def test_skip_nonfinite_skips_and_counts_the_step(tmp_path):
    out = str(tmp_path / "run")
    result = run([*COMMANDS["bert"], "--skip-nonfinite"], out, fault="nan-grad:5")
    assert result.returncode == 0, result.stderr
    assert "step 5: the gradient of" in result.stdout and "step skipped (1 so far)" in result.stdout
    assert "1 step(s) skipped" in result.stdout
    tensors, state = final_state(out)
    assert state["skipped_steps"] == 1 and state["step"] == 24
    assert all(np.isfinite(t).all() for t in tensors.values())
    assert [r["step"] for r in metrics(out) if r.get("skipped")] == [6]    # logged after step index 5


# ----- bad input at every entry point -----

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny GPT and BERT run directories and a few labelled files, made in-process."""
    base = tmp_path_factory.mktemp("bad_input")
    small = [*TINY[:TINY.index("--max-iters")], "--max-iters", "3", "--warmup-iters", "1", "--eval-interval", "3",
             "--eval-iters", "1", "--log-interval", "1"]
    for model in ("gpt", "bert"):
        assert cli.main([f"pretrain-{model}", *small, "--out", str(base / model)]) == 0
    (base / "good.tsv").write_text("text\tlabel\n好评\tpositive\n差评\tnegative\n", encoding="utf-8")
    (base / "bad.tsv").write_text("text\tlabel\n好评\tpositive\nno tab here\n差评\t\n\n很好\tpositive\textra\n",
                                  encoding="utf-8")
    (base / "bad.jsonl").write_text('{"text": "好", "label": "positive"}\n{"text": 3}\nnot json\n', encoding="utf-8")
    (base / "latin1.tsv").write_bytes("caf\xe9\tpositive\n".encode("latin-1"))
    (base / "a_file").write_text("not a directory", encoding="utf-8")
    return base


def F(base, name):
    return str(base / name)


# (argv built from the fixture's directory, fragments the message must contain)
BAD_INPUT = {
    "malformed TSV rows, by line": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--train", F(b, "bad.tsv"),
                                               "--test", F(b, "good.tsv")],
                                    ["bad.tsv", "3 malformed row(s)", "line 3:", "line 4: missing label", "line 6:"]),
    "malformed JSONL rows, by line": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--train", F(b, "good.tsv"),
                                                 "--test", F(b, "bad.jsonl")],
                                      ["bad.jsonl", "line 2: missing label", "line 3: bad JSON"]),
    "non-UTF-8 label file": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--train", F(b, "latin1.tsv"),
                                        "--test", F(b, "good.tsv")], ["latin1.tsv", "not valid UTF-8 at byte 3"]),
    "missing label file": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--train", F(b, "nope.tsv"),
                                      "--test", F(b, "good.tsv")], ["nope.tsv", "no such file"]),
    "--train without --test": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--train", F(b, "good.tsv")],
                               ["--test FILE"]),
    "--labels 0": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--task", "reviews", "--labels", "0"],
                   ["--labels must be at least 1, got 0"]),
    "--labels negative": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--task", "reviews", "--labels", "-3"],
                          ["--labels must be at least 1, got -3"]),
    "finetune --block-size 0": (lambda b: ["finetune", "--ckpt", F(b, "bert"), "--task", "reviews",
                                           "--block-size", "0"], ["--block-size must be at least 1"]),
    "finetune negative --max-iters": (lambda b: ["finetune", "--ckpt", F(b, "gpt"), "--task", "reviews",
                                                 "--labels", "4", "--max-iters", "-1"],
                                      ["--max-iters must be positive, got -1"]),
    "finetune a classifier-less checkpoint type": (lambda b: ["classify", "--ckpt", F(b, "gpt"), "好"],
                                                   ["gpt checkpoint", "gpt_classifier"]),
    "negative --max-iters": (lambda b: ["pretrain-gpt", *TINY, "--out", F(b, "r1"), "--max-iters", "-2"],
                             ["--max-iters must be positive, got -2"]),
    "--block-size 0": (lambda b: ["pretrain-gpt", *TINY, "--out", F(b, "r2"), "--block-size", "0"],
                       ["--block-size must be at least 1, got 0"]),
    "--batch-size 0": (lambda b: ["pretrain-bert", *TINY, "--out", F(b, "r3"), "--batch-size", "0"],
                       ["--batch-size must be positive, got 0"]),
    "BPE --vocab-size too small": (lambda b: ["pretrain-gpt", *TINY, "--out", F(b, "r4"), "--tokenizer", "bpe",
                                              "--vocab-size", "3"], ["vocab_size must be at least 261"]),
    "width not divisible by heads": (lambda b: ["pretrain-bert", *TINY, "--out", F(b, "r6"), "--n-head", "3"],
                                     ["--n-embd 16 is not divisible by --n-head 3"]),
    "BERT sequence too short": (lambda b: ["pretrain-bert", *TINY, "--out", F(b, "r7"), "--block-size", "3"],
                                ["at least 5, got 3"]),
    "--mask-prob 2": (lambda b: ["pretrain-bert", *TINY, "--out", F(b, "r8"), "--mask-prob", "2"], ["--mask-prob must be in (0, 1], got 2"]),
    "--out is a file": (lambda b: ["pretrain-gpt", *TINY, "--out", F(b, "a_file")], ["a_file", "not a directory"]),
    "--out holds a run": (lambda b: ["pretrain-gpt", *TINY, "--out", F(b, "gpt")], ["already holds a gpt run"]),
    "--resume a run of the other model": (lambda b: ["pretrain-gpt", *TINY, "--out", F(b, "bert"), "--resume"],
                                          ["holds a bert run, not a gpt run"]),
    "corpus is a directory": (lambda b: ["pretrain-gpt", *TINY, "--out", F(b, "r9"), "--corpus", str(b)],
                              ["is a directory"]),
    "--max-new-tokens 0": (lambda b: ["generate", "--ckpt", F(b, "gpt"), "--prompt", "今天", "--max-new-tokens", "0"],
                           ["--max-new-tokens must be at least 1, got 0"]),
    "--num-samples 0": (lambda b: ["generate", "--ckpt", F(b, "gpt"), "--prompt", "今天", "--num-samples", "0"],
                        ["--num-samples must be at least 1"]),
    "--top-k 0": (lambda b: ["generate", "--ckpt", F(b, "gpt"), "--prompt", "今天", "--top-k", "0"],
                  ["--top-k must be at least 1"]),
    "--top-p 2": (lambda b: ["generate", "--ckpt", F(b, "gpt"), "--prompt", "今天", "--top-p", "2"],
                  ["--top-p must be in (0, 1]"]),
    "--temperature negative": (lambda b: ["generate", "--ckpt", F(b, "gpt"), "--prompt", "今天",
                                          "--temperature", "-1"], ["temperature"]),
    "empty prompt": (lambda b: ["generate", "--ckpt", F(b, "gpt"), "--prompt", ""], ["--prompt is empty"]),
    "prompt longer than the context": (lambda b: ["generate", "--ckpt", F(b, "gpt"), "--prompt", "今" * 17],
                                       ["17 tokens", "context of 16"]),
    "fill-mask --top-k 0": (lambda b: ["fill-mask", "--ckpt", F(b, "bert"), "[MASK]", "--top-k", "0"],
                            ["--top-k must be at least 1"]),
    "fill-mask longer than the context": (lambda b: ["fill-mask", "--ckpt", F(b, "bert"), "[MASK]" * 20],
                                          ["longer than max_position=16"]),
    "nsp with an empty sentence": (lambda b: ["nsp", "--ckpt", F(b, "bert"), "今天", " "],
                                   ["both sentences must hold some text"]),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_status_2_with_usage_and_a_clear_message(case, runs, capsys):
    argv, fragments = BAD_INPUT[case]
    status = cli.main(argv(runs))                  # returns: no exception, so no traceback
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("usage: numpretrain"), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("argv, fragment", [
    (["pretrain-gpt", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
    (["generate", "--prompt", "a"], "the following arguments are required: --ckpt"),
    (["pretrain-gpt", "--max-iters", "many"], "argument --max-iters: invalid int value: 'many'"),
    (["pretrain-gpt", "--lr", "nan"], "argument --lr: must be a finite number, got nan"),
])
def test_cli_misuse_is_status_2_with_usage(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.startswith("usage: numpretrain") and fragment in err, err


def test_out_of_range_token_ids_are_refused_by_name(runs):
    for model_dir in ("gpt", "bert"):
        model, tokenizer, config = load_pretrained(F(runs, model_dir))
        with pytest.raises(ValueError, match=f"token id {config.vocab_size} is out of range"):
            model(np.array([[1, config.vocab_size]]))
        with pytest.raises(ValueError, match="token id -1 is out of range"):
            model(np.array([[-1, 1]]))


# ----- long runs stay flat -----

@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt", "bert"])
def test_resident_memory_after_1000_steps_equals_that_after_100(model):
    path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "memory_flat.py")
    spec = importlib.util.spec_from_file_location("memory_flat", path)
    memory_flat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory_flat)
    rss = memory_flat.measure(model, steps=(100, 1000))
    assert rss[1000] - rss[100] < 2**20, {step: f"{value / 2**20:.2f} MB" for step, value in rss.items()}
