"""Hostile arguments (issue 24): each ends in status 2 and one message naming the option, before
anything is allocated or written, and no command replaces a run it was not told to replace.

- a float option of "nan", "inf" or "-inf" is refused as it is parsed;
- sizes that cannot fit in this machine's memory are refused with the estimate (app/footprint.py),
  and the estimate is within a factor of two of a measured peak;
- embed --save writes exactly the file it names;
- --out over a run (of any kind, or the --ckpt being read) is refused unless --overwrite is given,
  and --overwrite leaves no stale training state or metrics beside the new run.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from numpretrain.app import cli, footprint
from numpretrain.app.pretrain import train_config
from numpretrain.errors import ConfigError
from numpretrain.models.bert import BertConfig, BertModel
from numpretrain.models.gpt import sample_next
from numpretrain.storage.formats import load_safetensors_metadata
from numpretrain.storage.hf import save_hf
from numpretrain.tokenizers.wordpiece import WordPieceTokenizer

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "24",
        "--batch-size", "4", "--max-iters", "2", "--warmup-iters", "1", "--eval-interval", "2",
        "--eval-iters", "1", "--log-interval", "1"]
FINETUNE = ["--task", "reviews", "--labels", "8", "--max-iters", "2", "--log-interval", "1"]
HUGE = "1000000000"


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gpt") / "run")
    assert cli.main(["pretrain-gpt", "--out", out, *TINY]) == 0
    return out


def status_and_error(argv, capsys):
    """(exit status, last line of stderr), whether argparse or the command refused it."""
    try:
        status = cli.main(argv)
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err.rstrip().split("\n")[-1]


# ----- non-finite floats -----

def float_options():
    """(command, option) for every option of every command whose value is a float."""
    parser = cli.build_parser()
    return [(command, action.option_strings[-1])
            for command, sub in parser.commands.items() for action in sub._actions
            if action.option_strings and (action.type in (float, cli.finite_float) or
                                          (isinstance(action.default, float) and action.nargs != 0))]


def test_the_float_options_are_all_found():
    found = set(float_options())
    for expected in [("generate", "--temperature"), ("generate", "--top-p"), ("pretrain-gpt", "--lr"),
                     ("pretrain-gpt", "--dropout"), ("pretrain-gpt", "--review-share"),
                     ("pretrain-bert", "--mask-prob"), ("finetune", "--lm-weight"), ("finetune", "--grad-clip"),
                     ("finetune", "--weight-decay")]:
        assert expected in found


@pytest.mark.parametrize("command, option", float_options())
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_float_option_is_refused_naming_it(command, option, value, tmp_path, capsys):
    required = {"generate": ["--ckpt", "x", "--prompt", "a"], "finetune": ["--ckpt", "x"]}.get(command, [])
    status, error = status_and_error([command, *required, f"{option}={value}", "--out", str(tmp_path / "o")]
                                     if command.startswith(("pretrain", "finetune")) else
                                     [command, *required, f"{option}={value}"], capsys)
    assert status == 2
    assert error == f"numpretrain {command}: error: argument {option}: must be a finite number, got {value}"
    assert not os.path.exists(tmp_path / "o")


def test_generate_with_a_nan_temperature_prints_nothing(gpt_run, capsys):
    # it used to exit 0 printing [PAD][PAD][PAD]
    status, _ = status_and_error(["generate", "--ckpt", gpt_run, "--prompt", "今天", "--temperature", "nan"], capsys)
    assert status == 2
    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            sample_next(np.zeros((1, 3)), np.random.default_rng(0), temperature=bad)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        sample_next(np.zeros((1, 3)), np.random.default_rng(0), top_p=float("nan"))


def test_impossible_values_are_refused(gpt_run, tmp_path, capsys):
    status, error = status_and_error(["finetune", "--ckpt", gpt_run, *FINETUNE, "--lm-weight", "-1"], capsys)
    assert (status, error) == (2, "numpretrain finetune: error: --lm-weight must be a finite number >= 0, got -1.0")
    out = tmp_path / "bert"        # --mask-prob is checked before anything is written, not at the first batch
    status, error = status_and_error(["pretrain-bert", "--out", str(out), *TINY, "--mask-prob", "0"], capsys)
    assert (status, error) == (2, "numpretrain pretrain-bert: error: --mask-prob must be in (0, 1], got 0.0")
    assert not out.exists()


# ----- sizes that cannot fit -----

SIZE_CASES = [   # (command line, the options the message must name)
    (["pretrain-gpt", "--n-embd", HUGE], ["--n-embd 1000000000", "--n-layer 4"]),
    (["pretrain-gpt", "--n-layer", HUGE], ["--n-layer 1000000000"]),
    (["pretrain-gpt", "--batch-size", HUGE], ["--batch-size 1000000000"]),
    (["pretrain-gpt", "--block-size", HUGE], ["--block-size 1000000000"]),
    (["pretrain-gpt", "--tokenizer", "bpe", "--vocab-size", HUGE], ["--vocab-size 1000000000"]),
    (["pretrain-gpt", "--n-documents", HUGE], ["--n-documents 1000000000"]),
    (["pretrain-gpt", "--eval-iters", HUGE], ["--eval-iters 1000000000"]),
    (["pretrain-bert", "--n-embd", HUGE], ["--n-embd 1000000000"]),
    (["pretrain-bert", "--batch-size", HUGE], ["--batch-size 1000000000"]),
    (["pretrain-bert", "--block-size", HUGE], ["--block-size 1000000000"]),
    (["finetune", "--ckpt", "unread", "--task", "reviews", "--labels", HUGE], ["--labels 1000000000"]),
    (["generate", "--ckpt", "unread", "--prompt", "a", "--max-new-tokens", HUGE], ["--max-new-tokens 1000000000"]),
]


@pytest.mark.parametrize("argv, named", SIZE_CASES, ids=[" ".join(argv[-2:]) for argv, _ in SIZE_CASES])
def test_a_size_that_cannot_fit_is_refused_with_the_estimate(argv, named, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ["--out", str(out)] if argv[0] != "generate" else []
    status, error = status_and_error([*argv, *extra], capsys)
    assert status == 2
    assert f"numpretrain {argv[0]}: error: " in error and "this machine has" in error and " of memory" in error
    for words in named:
        assert words in error, (words, error)
    assert not out.exists()


def test_heads_that_cannot_divide_the_width_are_said_as_such(tmp_path, capsys):
    status, error = status_and_error(["pretrain-gpt", "--out", str(tmp_path / "o"), "--n-head", HUGE], capsys)
    assert status == 2
    assert error == ("numpretrain pretrain-gpt: error: --n-embd 128 is not divisible by --n-head 1000000000 "
                     "(each head gets n_embd / n_head channels)")


def test_the_ceiling_is_the_machines_memory(monkeypatch):
    options = cli.build_parser().parse_args(["pretrain-gpt"])
    needs = footprint.pretrain_needs(options, train_config(options))
    total = sum(need.nbytes for need in needs)
    footprint.check_fits(needs, available=total)              # exactly enough: tried
    with pytest.raises(ConfigError, match=r"about .* in all\); this machine has .* of memory$"):
        footprint.check_fits(needs, available=total - 1)
    assert footprint.machine_memory() > 100e6                 # read from this machine, whatever it is
    assert footprint.human(48_000_000_000_000) == "48 TB" and footprint.human(2.5e9) == "2.5 GB"


def peak_rss(argv=None):
    """The peak resident memory (bytes) of a fresh interpreter running `numpretrain argv` (None: only
    importing the command line, NumPy with it)."""
    code = ("import resource, sys; from numpretrain.app import cli, pretrain; "
            "status = cli.main(sys.argv[1:]) if len(sys.argv) > 1 else 0; "
            "print(status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code, *(argv or [])], capture_output=True, text=True, check=True)
    status, kilobytes = result.stdout.split()[-2:]
    assert status == "0", result.stderr
    return int(kilobytes) * 1024


def test_the_estimate_is_within_a_factor_of_two_of_the_measured_peak(tmp_path):
    # a run whose activations dominate (about 0.5 GB estimated); the interpreter's own memory is taken off
    argv = ["pretrain-gpt", "--out", str(tmp_path / "run"), "--n-documents", "300", "--batch-size", "32",
            "--block-size", "96", "--max-iters", "1", "--warmup-iters", "1", "--eval-iters", "1"]
    options = cli.build_parser().parse_args(argv)
    estimate = sum(need.nbytes for need in footprint.pretrain_needs(options, train_config(options)))
    measured = peak_rss(argv) - peak_rss()
    assert 0.5 < measured / estimate < 2, (measured, estimate)


# ----- embed --save -----

def tiny_embedding_folder(folder):
    """A Hugging Face BERT folder of a 1-layer, 32-wide BERT and a 9-word WordPiece vocabulary."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "the", "movie"]
    config = BertConfig(vocab_size=len(words), max_position=16, n_layer=1, n_head=2, n_embd=32, intermediate_size=64)
    save_hf(folder, BertModel(config, rng=np.random.default_rng(0)), WordPieceTokenizer(words))
    return folder


def test_embed_saves_exactly_the_file_it_names(tmp_path, capsys):
    folder = tiny_embedding_folder(tmp_path / "model")
    target = tmp_path / "vectors"                      # no .npy: NumPy's np.save would write vectors.npy
    assert cli.main(["embed", "--model", str(folder), "a man", "the movie", "--save", str(target)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"to {target}")
    assert sorted(os.listdir(tmp_path)) == ["model", "vectors"]
    assert np.load(target).shape == (2, 32)
    status, error = status_and_error(["embed", "--model", str(folder), "a man", "--save", str(tmp_path / "model")],
                                     capsys)
    assert status == 2 and f"--save {tmp_path / 'model'}: is a folder" in error
    status, error = status_and_error(["embed", "--model", str(folder), "a", "--save", str(tmp_path / "no/v.npy")],
                                     capsys)
    assert status == 2 and "does not exist" in error


# ----- --out over a run -----

def digest(folder):
    """{file name: sha256} of every file in a folder."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def test_out_over_a_run_is_refused_and_leaves_it_byte_for_byte(gpt_run, tmp_path, capsys):
    run = tmp_path / "pretrained"
    shutil.copytree(gpt_run, run)
    before = digest(run)
    status, error = status_and_error(["finetune", "--ckpt", str(run), "--out", str(run), *FINETUNE], capsys)
    assert status == 2 and f"--out {run} is --ckpt" in error and "--overwrite" in error
    status, error = status_and_error(["pretrain-bert", "--out", str(run), *TINY], capsys)
    assert status == 2 and f"{run}: already holds a gpt run" in error and "--overwrite" in error
    status, error = status_and_error(["pretrain-gpt", "--out", str(run), *TINY, "--resume", "--overwrite"], capsys)
    assert status == 2 and "give one of them" in error
    assert digest(run) == before


def test_overwrite_replaces_the_run_and_leaves_no_stale_state(gpt_run, tmp_path, capsys):
    run = tmp_path / "pretrained"
    shutil.copytree(gpt_run, run)
    (run / "notes.txt").write_text("mine")
    # the pretrained run ran 2 steps of batch 4; the fine-tuning runs 1 step of batch 3 (a stale state would say 2)
    assert cli.main(["finetune", "--ckpt", str(run), "--out", str(run), *FINETUNE, "--max-iters", "1",
                     "--batch-size", "3", "--overwrite"]) == 0
    assert json.loads((run / "config.json").read_text())["model"]["model_type"] == "gpt_classifier"
    state = json.loads(load_safetensors_metadata(str(run / "training_state.safetensors"))["trainer_state"])
    assert state["step"] == 1 and state["train_config"]["batch_size"] == 3
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(run)) == ["config.json", "metrics.jsonl", "model.safetensors", "notes.txt",
                                       "tokenizer.json", "training_state.safetensors"]
