"""The command line: every command end to end on tiny runs, and bad input answered with status 2."""

import subprocess
import sys

import pytest

from numpretrain.app import cli

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "24",
        "--batch-size", "4", "--max-iters", "3", "--warmup-iters", "1", "--eval-interval", "3",
        "--eval-iters", "1", "--log-interval", "1"]


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


def test_generate(gpt_run, capsys):
    assert cli.main(["generate", "--ckpt", gpt_run, "--prompt", "今天天气很", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("今天天气很")


def test_probe(gpt_run, capsys):
    assert cli.main(["probe", "--ckpt", gpt_run]) == 0
    assert "probes answered correctly" in capsys.readouterr().out


def test_fill_mask_and_nsp(bert_run, capsys):
    assert cli.main(["fill-mask", "--ckpt", bert_run, "我昨天去了[MASK][MASK]大学参观"]) == 0
    out = capsys.readouterr().out
    assert "[MASK] #2" in out and "filled: 我昨天去了" in out and "大学参观" in out
    assert cli.main(["nsp", "--ckpt", bert_run, "今天天气很好。", "我去了公园。"]) == 0
    assert "P(B follows A)" in capsys.readouterr().out


def test_finetune_and_classify(gpt_run, tmp_path, capsys):
    out = str(tmp_path / "clf")
    assert cli.main(["finetune", "--ckpt", gpt_run, "--task", "reviews", "--labels", "16",
                     "--max-iters", "3", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "confusion matrix" in printed
    assert cli.main(["classify", "--ckpt", out, "这家餐厅的菜很好吃"]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("negative", "positive")


def expect_usage_error(argv, capsys, *fragments):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:")
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_bad_input_gets_status_2_and_a_message(gpt_run, bert_run, tmp_path, capsys):
    missing = str(tmp_path / "nope.txt")
    expect_usage_error(["pretrain-gpt", "--out", str(tmp_path / "r1"), "--corpus", missing, *TINY], capsys, "nope.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    expect_usage_error(["pretrain-gpt", "--out", str(tmp_path / "r2"), "--corpus", str(binary), *TINY],
                       capsys, "UTF-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    expect_usage_error(["pretrain-gpt", "--out", str(tmp_path / "r3"), "--corpus", str(empty), *TINY],
                       capsys, "empty")
    expect_usage_error(["pretrain-gpt", "--out", str(tmp_path / "r4"), *TINY[:-8], "--n-embd", "10",
                        "--n-head", "4"], capsys, "divisible")
    expect_usage_error(["generate", "--ckpt", gpt_run, "--prompt", "今" * 40], capsys, "longer than")
    expect_usage_error(["generate", "--ckpt", bert_run, "--prompt", "今天"], capsys, "bert checkpoint")
    expect_usage_error(["fill-mask", "--ckpt", bert_run, "没有面具"], capsys, "[MASK]")
    expect_usage_error(["fill-mask", "--ckpt", gpt_run, "[MASK]"], capsys, "gpt checkpoint")
    expect_usage_error(["generate", "--ckpt", str(tmp_path / "nowhere"), "--prompt", "a"], capsys, "nowhere")


def test_argparse_misuse_exits_2_with_usage():
    result = subprocess.run([sys.executable, "-m", "numpretrain", "pretrain-gpt", "--no-such-option"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "--no-such-option" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_explains_its_options():
    for command in ("pretrain-gpt", "pretrain-bert", "generate", "probe", "fill-mask", "nsp", "finetune", "classify",
                    "embed"):
        result = subprocess.run([sys.executable, "-m", "numpretrain", command, "--help"],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "usage:" in result.stdout, command
