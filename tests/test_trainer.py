"""The training loop: exact resume, divergence, metrics and checkpoints (through the CLI, in-process)."""

import errno
import json
import os

import numpy as np
import pytest

from numpretrain.app import cli
from numpretrain.storage import atomic
from numpretrain.storage.formats import load_safetensors
from numpretrain.training.trainer import Trainer

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--max-iters", "8", "--warmup-iters", "2", "--eval-interval", "4",
        "--eval-iters", "2", "--log-interval", "1", "--seed", "3"]


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f) if "loss" in r]


@pytest.mark.parametrize("command, extra", [("pretrain-gpt", []), ("pretrain-bert", ["--dropout", "0.1"])])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch, command, extra):
    whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
    assert cli.main([command, "--out", whole, *TINY, *extra]) == 0

    original_step = Trainer.train_step
    def crash_after_step_5(self):
        if self.step == 5:
            raise KeyboardInterrupt  # the run dies after the checkpoint at step 4
        return original_step(self)
    monkeypatch.setattr(Trainer, "train_step", crash_after_step_5)
    assert cli.main([command, "--out", broken, *TINY, *extra]) == 130
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert cli.main([command, "--out", broken, *TINY, *extra, "--resume"]) == 0

    assert losses(whole) == losses(broken)                      # bit for bit, every step
    a = load_safetensors(os.path.join(whole, "model.safetensors"))
    b = load_safetensors(os.path.join(broken, "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])



def test_a_failed_rewrite_of_the_metrics_log_on_resume_keeps_the_whole_log(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    original_step = Trainer.train_step
    def crash_after_step_5(self):
        if self.step == 5:
            raise KeyboardInterrupt  # the log holds step 5, the checkpoint is step 4's: resume cuts the log
        return original_step(self)
    monkeypatch.setattr(Trainer, "train_step", crash_after_step_5)
    assert cli.main(["pretrain-gpt", "--out", out, *TINY]) == 130
    monkeypatch.setattr(Trainer, "train_step", original_step)
    log_path = os.path.join(out, "metrics.jsonl")
    with open(log_path, "rb") as f:
        log_before = f.read()

    def disk_full(file, chunk):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic, "_write_chunk", disk_full)
    assert cli.main(["pretrain-gpt", "--out", out, *TINY, "--resume"]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
    with open(log_path, "rb") as f:
        assert f.read() == log_before

def test_same_seed_same_losses_different_seed_different(tmp_path):
    runs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = str(tmp_path / name)
        assert cli.main(["pretrain-gpt", "--out", out, *TINY[:-1], seed]) == 0
        runs.append(losses(out))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_divergence_stops_with_the_step_and_parameter_named(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    original_step = Trainer.train_step
    def poison_at_step_6(self):
        if self.step == 6:
            self.model.wte.weight.data[0, 0] = np.nan   # a NaN appears in the weights
        return original_step(self)
    monkeypatch.setattr(Trainer, "train_step", poison_at_step_6)
    assert cli.main(["pretrain-gpt", "--out", out, *TINY]) == 3
    message = capsys.readouterr().err
    assert "step 6" in message and "wte.weight" in message
    saved = load_safetensors(os.path.join(out, "model.safetensors"))   # the step-4 checkpoint survives
    assert np.isfinite(saved["wte.weight"]).all()


def test_metrics_log_and_progress_lines(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["pretrain-gpt", "--out", out, *TINY]) == 0
    printed = capsys.readouterr().out
    assert "tok/s" in printed and "eta" in printed and "val_loss" in printed
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8]
    assert sorted({"config.json", "tokenizer.json", "model.safetensors", "training_state.safetensors",
                   "metrics.jsonl"}) == sorted(n for n in os.listdir(out) if not n.startswith("."))
