"""What the command line says when something is wrong, and what it warns about (issue 21).

Errors speak in the command's options, not the library's field names, after the command's own
usage line; options are never abbreviated; characters the model does not know are named once,
on stderr; every argument explains itself in --help.
"""

import numpy as np
import pytest

from numpretrain.app import cli, probing
from numpretrain.data.builtin.probes import probes
from numpretrain.errors import CheckpointError, ConfigError, DataError
from numpretrain.models.gpt import GPTConfig, sample_next
from numpretrain.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer
from numpretrain.training.trainer import TrainConfig

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "24",
        "--batch-size", "4", "--max-iters", "2", "--warmup-iters", "1", "--eval-interval", "2",
        "--eval-iters", "1", "--log-interval", "1"]
ENGLISH = ("The cat sat on the mat. The dog ran in the park.\n\n"
           "A bird sang in the tree. The sun was warm and the sky was blue.\n\n") * 20


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gpt") / "run")
    assert cli.main(["pretrain-gpt", "--out", out, *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bert") / "run")
    assert cli.main(["pretrain-bert", "--out", out, *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def english_gpt_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("english")
    (folder / "english.txt").write_text(ENGLISH, encoding="utf-8")
    out = str(folder / "run")
    assert cli.main(["pretrain-gpt", "--out", out, "--corpus", str(folder / "english.txt"), *TINY,
                     "--block-size", "8"]) == 0
    return out


def error_of(argv, capsys):
    """(usage line, error line) of a command that ends with status 2 after parsing."""
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.rstrip().split("\n")
    return lines[0], lines[-1]


def parse_error_of(argv, capsys):
    """(usage line, error line) of a command line argparse refuses."""
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    lines = capsys.readouterr().err.rstrip().split("\n")
    return lines[0], lines[-1]


# ----- errors in options: the library names fields, the command line names options -----

def test_a_model_config_error_names_the_options(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"^GPTConfig: n_embd=128 is not divisible by n_head=3 \(each head"):
        GPTConfig(n_embd=128, n_head=3)                        # a program hears about the fields it passed
    _, error = error_of(["pretrain-gpt", "--out", str(tmp_path / "run"), *TINY, "--n-embd", "128", "--n-head", "3"],
                        capsys)
    assert error == ("numpretrain pretrain-gpt: error: --n-embd 128 is not divisible by --n-head 3 "
                     "(each head gets n_embd / n_head channels)")
    _, error = error_of(["pretrain-bert", "--out", str(tmp_path / "run"), *TINY, "--n-layer", "0"], capsys)
    assert error == "numpretrain pretrain-bert: error: --n-layer must be a positive integer, got 0"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["pretrain-gpt", "finetune"])
def test_a_train_config_error_names_the_options(command, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"^TrainConfig\.max_iters must be positive, got 0$"):
        TrainConfig(max_iters=0)
    argv = {"finetune": ["--ckpt", str(tmp_path / "unused"), "--task", "reviews"]}.get(command, TINY)
    _, error = error_of([command, "--out", str(tmp_path / "run"), *argv, "--max-iters", "0"], capsys)
    assert error == f"numpretrain {command}: error: --max-iters must be positive, got 0"


def test_pretrain_berts_block_size_is_named_as_its_option(tmp_path, capsys):
    # the batcher calls it max_seq_length; the user typed --block-size
    _, error = error_of(["pretrain-bert", "--out", str(tmp_path / "run"), *TINY, "--block-size", "3"], capsys)
    assert error == "numpretrain pretrain-bert: error: --block-size must be at least 5, got 3"


@pytest.mark.parametrize("option, value, message", [
    ("--temperature", "-1", "--temperature must be a finite number >= 0, got -1.0"),
    ("--top-k", "0", "--top-k must be at least 1, got 0"),
    ("--top-p", "2", "--top-p must be in (0, 1], got 2.0"),
    ("--num-samples", "0", "--num-samples must be at least 1, got 0"),
    ("--max-new-tokens", "0", "--max-new-tokens must be at least 1, got 0"),
])
def test_generate_options_are_named_as_options(option, value, message, gpt_run, capsys):
    _, error = error_of(["generate", "--ckpt", gpt_run, "--prompt", "今天", option, value], capsys)
    assert error == f"numpretrain generate: error: {message}"


def test_the_sampler_names_its_argument():
    with pytest.raises(ValueError, match=r"^temperature must be a finite number >= 0, got -1$"):
        sample_next(np.zeros((1, 3)), np.random.default_rng(0), temperature=-1)


def test_a_negative_seed_is_refused_by_its_option(gpt_run, capsys):
    # NumPy's own message, "expected non-negative integer", named no option
    _, error = parse_error_of(["generate", "--ckpt", gpt_run, "--prompt", "今天", "--seed", "-1"], capsys)
    assert error == "numpretrain generate: error: argument --seed: a seed must be a non-negative integer, got -1"
    _, error = parse_error_of(["pretrain-gpt", "--corpus-seed", "-3"], capsys)
    assert error.endswith("argument --corpus-seed: a seed must be a non-negative integer, got -3")


def test_in_options_rewords_the_three_forms_and_nothing_else():
    names = cli.option_names(cli.build_parser().commands["pretrain-gpt"], "pretrain-gpt")
    assert names["max_iters"] == "--max-iters" and names["n_embd"] == "--n-embd"
    cases = {
        "TrainConfig.warmup_iters=10 is more than TrainConfig.max_iters=5: the warm-up must fit in the run":
            "--warmup-iters 10 is more than --max-iters 5: the warm-up must fit in the run",
        "GPTConfig.dropout must be in [0, 1), got 1.0": "--dropout must be in [0, 1), got 1.0",
        "mask_prob must be in (0, 1], got 2": "mask_prob must be in (0, 1], got 2",     # not pretrain-gpt's
        "block_size must be at least 1, got 0": "--block-size must be at least 1, got 0",
        "the model's block_size is 64": "the model's block_size is 64",                # prose: as written
        "corpus.txt: not valid UTF-8 at byte 3": "corpus.txt: not valid UTF-8 at byte 3",   # a file, not --corpus
        "sequence of 70 tokens is longer than max_position=64": "sequence of 70 tokens is longer than max_position=64",
    }
    for message, expected in cases.items():
        assert cli.in_options(message, names) == expected


@pytest.mark.parametrize("error", [CheckpointError, DataError])
def test_a_files_contents_are_not_reworded_as_options(error, capsys):
    # a run folder's n_head=3 is not an option the user typed
    parser = cli.build_parser().commands["pretrain-gpt"]
    assert cli.usage_error(parser, "pretrain-gpt", error("runs/gpt/config.json: n_embd=16 is not divisible "
                                                          "by n_head=3")) == 2
    assert capsys.readouterr().err.rstrip().endswith("error: runs/gpt/config.json: n_embd=16 is not divisible "
                                                      "by n_head=3")


# ----- the command's own usage line -----

def test_an_error_after_parsing_prints_the_commands_usage(tmp_path, capsys):
    usage, _ = error_of(["pretrain-gpt", "--out", str(tmp_path / "run"), *TINY, "--max-iters", "0"], capsys)
    assert usage == "usage: numpretrain pretrain-gpt [-h] [--corpus FILE]"
    usage, _ = error_of(["fill-mask", "--ckpt", str(tmp_path / "nowhere"), "[MASK]"], capsys)
    assert usage == "usage: numpretrain fill-mask [-h] --ckpt DIR [--top-k TOP_K] text"


def test_a_parse_error_prints_the_commands_usage(capsys):
    usage, error = parse_error_of(["pretrain-gpt", "--no-such-option"], capsys)
    assert usage == "usage: numpretrain pretrain-gpt [-h] [--corpus FILE]"
    assert error == "numpretrain pretrain-gpt: error: unrecognized arguments: --no-such-option"
    usage, error = parse_error_of(["generate", "--ckpt", "somewhere"], capsys)
    assert usage.startswith("usage: numpretrain generate [-h] --ckpt DIR --prompt TEXT")
    assert error == "numpretrain generate: error: the following arguments are required: --prompt"


# ----- no abbreviations -----

def test_an_abbreviated_option_is_refused_with_a_hint(capsys):
    _, error = parse_error_of(["pretrain-gpt", "--max-iter", "5"], capsys)
    assert error == ("numpretrain pretrain-gpt: error: unrecognized arguments: --max-iter 5 "
                     "(did you mean --max-iters? options must be typed in full)")
    _, error = parse_error_of(["generate", "--ckpt", "x", "--prompt", "a", "--top", "5"], capsys)
    assert error.endswith("(did you mean --top-k or --top-p? options must be typed in full)")


def test_no_parser_accepts_abbreviations_and_typed_options_are_still_noted():
    parser = cli.build_parser()
    assert not parser.allow_abbrev and not any(p.allow_abbrev for p in parser.commands.values())
    options = parser.parse_args(["pretrain-gpt", "--warmup-iters=3", "--max-iters", "9"])
    assert options.given == {"warmup_iters", "max_iters"}


# ----- characters the model does not know -----

def test_unknown_characters_are_named_once_with_a_count():
    tokenizer = CharTokenizer.train("今天天气很好")
    warnings = []
    unknown = probing.warn_unknown_characters(tokenizer, "Hi今天[MASK]😀 Hi", "the prompt", warn=warnings.append)
    assert unknown == ["H", "i", "😀", " "]                  # each once, in order; [MASK] is a token
    assert warnings == [("warning: 4 characters of the prompt are unknown to the model and read as [UNK]: "
                         "'H' 'i' '😀' ' '; the model knows only the 5 characters of its training text")]
    warnings.clear()
    probing.warn_unknown_characters(tokenizer, "abcdefghijk", "the text", warn=warnings.append)
    assert warnings[0].startswith("warning: 11 characters of the text are unknown to the model and read as "
                                  "[UNK]: 'a' 'b' 'c' 'd' 'e' 'f' 'g' 'h' and 3 more; ")
    assert probing.warn_unknown_characters(tokenizer, "今天", "the text", warn=warnings.append) == []
    assert probing.warn_unknown_characters(BPETokenizer.train("abc", 261), "今天😀", "x", warn=warnings.append) == []
    assert len(warnings) == 1                                # nothing said when every character is known


def test_fill_mask_and_nsp_warn_once_naming_the_characters(bert_run, capsys):
    known = load_tokenizer(f"{bert_run}/tokenizer.json").vocab_size - 5
    assert cli.main(["fill-mask", "--ckpt", bert_run, "Hi[MASK]😀今天"]) == 0
    err = capsys.readouterr().err
    assert err == ("warning: 3 characters of the text are unknown to the model and read as [UNK]: 'H' 'i' '😀'; "
                   f"the model knows only the {known} characters of its training text\n")
    assert cli.main(["nsp", "--ckpt", bert_run, "Hello", "今天Hi"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "5 characters of the sentences" in err and "'H' 'e' 'l' 'o' 'i';" in err
    assert cli.main(["nsp", "--ckpt", bert_run, "今天天气很好。", "我去了公园。"]) == 0
    assert capsys.readouterr().err == ""


def test_probes_that_do_not_fit_the_model_are_warned_about():
    warnings = []
    tokenizer = CharTokenizer.train(ENGLISH)                 # a GPT trained on an English --corpus
    unknown = probing.warn_unknown_in_probes(tokenizer, probes(), warn=warnings.append)
    assert "医" in unknown and len(warnings) == 1
    assert warnings[0].startswith(f"warning: {len(unknown)} characters of the probe questions are unknown")
    assert warnings[0].endswith(f"the model knows only the {tokenizer.vocab_size - 5} characters of its "
                                f"training text, so its probe scores say little")


COMMANDS_CALL = "app/commands.py must call probing's warning where it encodes (see the report of issue 21)"


def test_generate_warns_about_an_english_prompt_to_the_chinese_model(gpt_run, capsys):
    assert cli.main(["generate", "--ckpt", gpt_run, "--prompt", "Hi今天", "--max-new-tokens", "1"]) == 0
    assert "warning: 2 characters of the prompt are unknown to the model" in capsys.readouterr().err


def test_probe_warns_when_its_questions_do_not_fit_the_model(english_gpt_run, capsys):
    assert cli.main(["probe", "--ckpt", english_gpt_run]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "characters of the probe questions are unknown" in err


# ----- help texts -----

def test_every_argument_of_every_command_has_help():
    for name, parser in cli.build_parser().commands.items():
        for action in parser._actions:
            assert action.help, (name, action.dest)


def help_of(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_the_help_texts_say_what_each_argument_is(capsys):
    shown = help_of("nsp", capsys)
    assert "usage: numpretrain nsp [-h] --ckpt DIR A B" in shown
    assert "A the first sentence, e.g. 今天天气很好。 B the sentence that may follow it, e.g. 我去了公园。" in shown
    shown = help_of("generate", capsys)
    assert "--prompt TEXT the text to continue, e.g. 今天天气很 (required)" in shown
    assert "empty is not allowed" not in shown
    shown = help_of("finetune", capsys)
    assert "--dropout DROPOUT dropout probability on the vector the classifier layer reads (default 0.1)" in shown
    assert "--out DIR where to save the fine-tuned model (default: not saved)" in shown
    shown = help_of("pretrain-gpt", capsys)
    model, training = shown.index("model:"), shown.index("training:")
    assert model < shown.index("--post-ln GPT-1's") < training       # with the other model options


def test_generate_still_refuses_an_empty_prompt(gpt_run, capsys):
    _, error = error_of(["generate", "--ckpt", gpt_run, "--prompt", ""], capsys)
    assert error.startswith("numpretrain generate: error: --prompt is empty")


@pytest.mark.parametrize("argv, message", [
    (["pretrain-gpt", "--beta2", "1.5"], "--beta2 must be in [0, 1), got 1.5"),
    (["pretrain-gpt", "--grad-clip", "-1"], "--grad-clip must not be negative, got -1.0"),
    (["pretrain-bert", "--weight-decay", "-0.1"], "--weight-decay must not be negative, got -0.1"),
])
def test_optimizer_settings_that_cannot_work_are_refused_by_their_options(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    _, error = error_of([*argv, "--out", str(out), *TINY], capsys)
    assert error.endswith(f"error: {message}")
    assert not out.exists()


def test_a_classifier_dropout_that_cannot_work_is_refused_by_its_option(gpt_run, capsys):
    _, error = error_of(["finetune", "--ckpt", gpt_run, "--task", "reviews", "--dropout", "2"], capsys)
    assert error == "numpretrain finetune: error: --dropout must be in [0, 1), got 2.0"
