"""One source for every option: the training commands' options are the config dataclasses' fields.

Each option's default is its field's (or the command's entry in cli.COMMAND_DEFAULTS), its help
is the field's comment, and a default warm-up longer than a short run is shortened to fit it,
while a warm-up the user typed is checked and refused, before anything is written.
"""

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest

from numpretrain.app import cli
from numpretrain.app.pretrain import CorpusConfig, MaskingConfig, config_from_options, train_config
from numpretrain.errors import ConfigError
from numpretrain.models.bert import BertConfig
from numpretrain.models.gpt import GPTConfig
from numpretrain.training.trainer import TrainConfig

TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
REQUIRED = {"pretrain-gpt": [], "pretrain-bert": [], "finetune": ["--ckpt", "somewhere"]}
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--n-documents", "200", "--eval-interval", "5", "--eval-iters", "1"]


def parse(command, *argv):
    return cli.build_parser().parse_args([command, *REQUIRED[command], *argv])


def help_text(command, capsys):
    """The command's --help, with argparse's line wrapping undone."""
    with pytest.raises(SystemExit) as exit:
        parse(command, "--help")
    assert exit.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def train_fields_of(command):
    return [name for name in TRAIN_FIELDS if command != "finetune" or name not in cli.FINETUNE_WITHOUT]


# ----- defaults: the dataclass's, or the command's documented override -----

def test_the_overrides_are_the_documented_ones():
    # the defaults each command had before the options came from the dataclasses (issue 17), and
    # pretrain-bert's schedule that carries the textbook objective past its plateau, and its corpus
    # mix that gives it more masked adjectives to learn polarity from (issue 23)
    assert cli.COMMAND_DEFAULTS == {
        "pretrain-gpt": {"out": "runs/gpt"},
        "pretrain-bert": {"out": "runs/bert", "dropout": 0.1, "max_iters": 3000, "lr": 2e-3, "min_lr": 2e-4,
                          "review_share": 0.75},
        "finetune": {"lr": 3e-4, "min_lr": 3e-5, "warmup_iters": 20, "weight_decay": 0.01, "batch_size": 16,
                     "max_iters": 200, "log_interval": 20}}
    assert BertConfig.dropout == 0.1 and GPTConfig.dropout == 0.0   # so pretrain-bert's override is BERT's own
    for command, overrides in cli.COMMAND_DEFAULTS.items():           # each names a real option: no typo is ignored
        options = vars(parse(command))
        assert {name: options.get(name) for name in overrides} == overrides, command


@pytest.mark.parametrize("command", ["pretrain-gpt", "pretrain-bert", "finetune"])
def test_every_train_config_field_is_an_option_with_its_default(command):
    options = vars(parse(command))
    for name in train_fields_of(command):
        expected = cli.COMMAND_DEFAULTS[command].get(name, getattr(TrainConfig, name))
        assert name in options, f"{command} has no --{name.replace('_', '-')}"
        assert options[name] == expected and type(options[name]) is type(expected), (command, name)
    assert set(cli.FINETUNE_WITHOUT) < set(TRAIN_FIELDS)       # leaving out a field names a real one


@pytest.mark.parametrize("command", ["pretrain-gpt", "pretrain-bert"])
def test_data_and_model_options_have_their_dataclass_defaults(command):
    options = vars(parse(command))
    for config_class in (CorpusConfig, GPTConfig, *([MaskingConfig] if command == "pretrain-bert" else [])):
        for f in dataclasses.fields(config_class):
            if config_class is GPTConfig and f.name not in cli.MODEL_OPTIONS:
                continue
            expected = cli.COMMAND_DEFAULTS[command].get(f.name, f.default)
            assert options[f.name] == expected, (command, f.name)
    assert options["out"] == cli.COMMAND_DEFAULTS[command]["out"]


def test_config_from_options_reads_every_field_by_name():
    options = parse("pretrain-gpt", "--lr", "0.02", "--grad-accum", "4", "--skip-nonfinite")
    config = config_from_options(TrainConfig, options)
    assert config == TrainConfig(**{name: getattr(options, name) for name in TRAIN_FIELDS})
    assert (config.lr, config.grad_accum, config.skip_nonfinite) == (0.02, 4, True)
    assert config_from_options(TrainConfig, options, seed=7).seed == 7             # the caller's values win
    assert config_from_options(TrainConfig, argparse.Namespace(lr=0.5)) == TrainConfig(lr=0.5)


# ----- help: the fields' comments -----

@dataclass
class Example:
    # a comment above the fields is not help
    steps: int = 3           # how many steps
    rate: float = 0.5        # a long explanation
                             # continued on an aligned line
    name: Optional[str] = None  # a name; default: none
    # a comment between fields is not help either
    quiet: bool = False      # say less, with 100% certainty

    def check(self):
        steps = 1            # a method's comment is not help
        return steps


def test_field_help_is_the_comment_beside_each_field():
    assert cli.field_help(Example) == {"steps": "how many steps", "rate": "a long explanation continued on an aligned line",
                                       "name": "a name; default: none", "quiet": "say less, with 100% certainty"}


def test_options_from_a_dataclass(capsys):
    parser = argparse.ArgumentParser(prog="example")
    cli.add_config_options(parser, Example, defaults={"rate": 0.25})
    options = parser.parse_args([])
    assert (options.steps, options.rate, options.name, options.quiet, options.given) == (3, 0.25, None, False, frozenset())
    options = parser.parse_args(["--steps", "4", "--name", "x", "--quiet"])
    assert (options.steps, options.name, options.quiet) == (4, "x", True)
    assert options.given == {"steps", "name", "quiet"}
    parser.print_help()
    shown = " ".join(capsys.readouterr().out.split())
    assert "--rate RATE a long explanation continued on an aligned line (default 0.25)" in shown
    assert "--name NAME a name; default: none" in shown and "(default None)" not in shown
    assert "--quiet say less, with 100% certainty" in shown


@pytest.mark.parametrize("command", ["pretrain-gpt", "pretrain-bert", "finetune"])
def test_help_comes_from_the_dataclasses(command, capsys):
    shown = help_text(command, capsys)
    helps = cli.field_help(TrainConfig)
    for name in train_fields_of(command):
        flag = "--" + name.replace("_", "-")
        assert helps[name], f"TrainConfig.{name} has no comment to show as its help"
        assert helps[name] in shown, (command, flag)
    if command != "finetune":
        for config_class, names in ((CorpusConfig, None), (GPTConfig, cli.MODEL_OPTIONS)):
            helps = cli.field_help(config_class)
            for name in names or helps:
                assert helps[name] and helps[name] in shown, (command, config_class.__name__, name)
    if command == "pretrain-bert":
        assert all(text in shown for text in cli.field_help(MaskingConfig).values())


def test_help_shows_each_commands_defaults(capsys):
    assert "--dropout DROPOUT " + cli.field_help(GPTConfig)["dropout"] + " (default 0.1)" in help_text("pretrain-bert", capsys)
    assert "--dropout DROPOUT " + cli.field_help(GPTConfig)["dropout"] + " (default 0.0)" in help_text("pretrain-gpt", capsys)
    assert "--lr LR " + cli.field_help(TrainConfig)["lr"] + " (default 0.0003)" in help_text("finetune", capsys)


# ----- the warm-up and a short run -----

def test_a_default_warmup_is_shortened_to_fit_the_run():
    notes = []
    config = train_config(parse("pretrain-gpt", "--max-iters", "80"), log=notes.append)
    assert config.warmup_iters == 80 and config.max_iters == 80
    assert notes == ["note: --warmup-iters shortened from the default 100 to 80 to fit --max-iters 80"]
    notes.clear()
    config = train_config(parse("finetune", "--max-iters", "5"), log=notes.append)
    assert config.warmup_iters == 5
    assert notes == ["note: --warmup-iters shortened from the default 20 to 5 to fit --max-iters 5"]
    notes.clear()
    assert train_config(parse("pretrain-bert", "--max-iters", "100"), log=notes.append).warmup_iters == 100
    assert notes == []                                        # it fits: nothing to say


@pytest.mark.parametrize("typed", [["--warmup-iters", "100"], ["--warmup-iters=100"]])
def test_a_typed_warmup_is_never_shortened_even_when_it_equals_the_default(typed):
    # the user typed it, so it is theirs; telling "typed" from "default" by value would miss this
    with pytest.raises(ConfigError, match="^--warmup-iters 100 is more than --max-iters 80$"):
        train_config(parse("pretrain-gpt", "--max-iters", "80", *typed), log=print)


def test_a_default_min_lr_above_the_typed_lr_is_lowered_and_a_typed_one_refused():
    notes = []
    config = train_config(parse("finetune", "--lr", "1e-5"), log=notes.append)
    assert config.lr == 1e-5 and np.isclose(config.min_lr, 1e-6)
    assert notes == ["note: --min-lr lowered from the default 3e-05 to 1e-06, a tenth of --lr 1e-05"]
    with pytest.raises(ConfigError, match=r"^--min-lr 3e-05 is above --lr 1e-05: the cosine decay would rise$"):
        train_config(parse("finetune", "--lr", "1e-5", "--min-lr", "3e-5"), log=print)
    with pytest.raises(ConfigError, match="min_lr 0.002 is above lr 0.001"):
        TrainConfig(lr=1e-3, min_lr=2e-3)


def test_an_abbreviated_option_is_refused(capsys):
    # argparse would read --warm as --warmup-iters, and NoteGiven note it as typed: options are never abbreviated
    with pytest.raises(SystemExit) as exit:
        parse("pretrain-gpt", "--max-iters", "80", "--warm", "100")
    assert exit.value.code == 2
    assert "unrecognized arguments: --warm 100" in capsys.readouterr().err


def test_train_config_names_its_fields():
    with pytest.raises(ConfigError, match=r"TrainConfig\.warmup_iters=10 is more than TrainConfig\.max_iters=5"):
        TrainConfig(max_iters=5, warmup_iters=10)


def test_max_iters_alone_runs_with_a_note(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["pretrain-gpt", "--out", str(out), "--max-iters", "5", *TINY]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "note: --warmup-iters shortened from the default 100 to 5 to fit --max-iters 5"
    with open(out / "config.json", encoding="utf-8") as f:
        assert json.load(f)["train"]["warmup_iters"] == 5


@pytest.mark.parametrize("command", ["pretrain-gpt", "pretrain-bert", "finetune"])
def test_a_typed_warmup_longer_than_the_run_is_status_2_and_leaves_no_folder(command, tmp_path, capsys):
    out = tmp_path / "run"
    argv = {"finetune": ["--ckpt", str(tmp_path / "no-model"), "--task", "reviews"]}.get(command, TINY)
    assert cli.main([command, "--out", str(out), *argv, "--warmup-iters", "10", "--max-iters", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and err.rstrip().endswith(
        f"numpretrain {command}: error: --warmup-iters 10 is more than --max-iters 5")
    assert not out.exists() and os.listdir(tmp_path) == []


def test_a_model_that_cannot_be_built_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["pretrain-gpt", "--out", str(out), "--max-iters", "5", *TINY, "--n-embd", "10", "--n-head", "4"]
    assert cli.main(argv) == 2
    assert "divisible" in capsys.readouterr().err
    assert not out.exists()                                   # once: a stray tokenizer.json stayed behind
