"""Fine-tuning: the heads' gradients, freezing, that a short fine-tune learns, the CLI's files and errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from numpretrain import gradcheck
from numpretrain.app import cli
from numpretrain.app.finetune import body_features, build_classifier, predict, trim
from numpretrain.data import encode_for_bert, encode_for_gpt, save_labelled_file
from numpretrain.errors import CheckpointError
from numpretrain.models.bert import BertConfig
from numpretrain.models.gpt import GPTConfig
from numpretrain.models.heads import BertClassifier, ClassifierConfig, GPTClassifier, load_body
from numpretrain.storage.runs import CONFIG_FILE, load_pretrained
from numpretrain.tokenizers import CharTokenizer

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
        "--batch-size", "8", "--max-iters", "30", "--lr", "3e-3", "--warmup-iters", "5", "--eval-interval", "30",
        "--eval-iters", "1", "--log-interval", "30"]
FINETUNE = ["--max-iters", "60", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-iters", "5", "--batch-size", "8",
            "--log-interval", "60"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny GPT and a tiny BERT pretrained for a few steps, and labelled files of a trivially separable task."""
    base = tmp_path_factory.mktemp("finetune")
    assert cli.main(["pretrain-gpt", "--out", str(base / "gpt"), *TINY]) == 0
    assert cli.main(["pretrain-bert", "--out", str(base / "bert"), *TINY, "--no-nsp"]) == 0
    # weather against doctors: every text of one label shares characters no text of the other has
    rng = np.random.default_rng(0)
    weather = ["今天天气很好。", "今天天气很热。", "今天天气很冷。", "天气很好，我们去公园。"]
    doctors = ["医生拿起了听诊器。", "王医生在医院工作。", "李医生让我多喝水。", "医生给我检查身体。"]
    examples = [(pick, label) for _ in range(24) for pick, label in
                ((weather[rng.integers(4)], "天气"), (doctors[rng.integers(4)], "医生"))]
    save_labelled_file(base / "train.tsv", examples[:32])
    save_labelled_file(base / "test.jsonl", examples[32:])
    return base


def run_cli(*argv):
    """python -m numpretrain ... in a child process: (status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "numpretrain", *argv], capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, timeout=120)
    return done.returncode, done.stdout, done.stderr


# ---- the heads' gradients -------------------------------------------------------------------------

def name_parameters(model):
    named = list(model.named_parameters())
    for name, p in named:
        p.name = name
    return [p for _, p in named]


def padded_batch(rng, V, B=3, T=6):
    """Token ids right-padded with 0 ([PAD]): row 0 has 4 real tokens, row 1 has 2, row 2 is full."""
    lengths = np.array([4, 2, T])
    mask = np.arange(T)[None, :] < lengths[:, None]                         # (B, T)
    ids = np.where(mask, rng.integers(5, V, (B, T)), 0)                       # (B, T)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
            "last_index": lengths - 1, "labels": np.array([0, 1, 1])}


def test_gpt_head_gradcheck_with_the_auxiliary_lm_loss():
    body = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8).to_dict()
    model = GPTClassifier(ClassifierConfig(body=body, pooling="last", lm_weight=0.5, dropout=0.0),
                          rng=np.random.default_rng(0))
    model.to(np.float64)
    batch = padded_batch(np.random.default_rng(1), V=11)
    out = model(batch)
    # the loss is the classification loss plus half the LM loss over the real tokens
    assert np.isclose(float(out["loss"].data), float(out["cls_loss"].data) + 0.5 * float(out["lm_loss"].data))
    params = name_parameters(model)
    assert any(p.name == "classifier.weight" for p in params) and any(p.name == "gpt.wte.weight" for p in params)
    assert gradcheck(lambda *_: model(batch)["loss"], params, atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_bert_head_gradcheck_with_padding(pooling):
    body = BertConfig(vocab_size=11, max_position=8, n_layer=1, n_head=2, n_embd=8, intermediate_size=16,
                      dropout=0.0).to_dict()
    model = BertClassifier(ClassifierConfig(body=body, pooling=pooling, lm_weight=0.0, dropout=0.0),
                           rng=np.random.default_rng(0))
    model.to(np.float64)
    batch = padded_batch(np.random.default_rng(2), V=11)
    params = name_parameters(model)
    assert gradcheck(lambda *_: model(batch)["loss"], params, atol=1e-8, rtol=1e-5)


def test_mean_pooling_ignores_padding_and_trimming_changes_no_prediction():
    body = BertConfig(vocab_size=11, max_position=8, n_layer=1, n_head=2, n_embd=8, intermediate_size=16).to_dict()
    model = BertClassifier(ClassifierConfig(body=body, pooling="mean"), rng=np.random.default_rng(0))
    model.eval()
    batch = padded_batch(np.random.default_rng(3), V=11)
    batch["last_index"][2] = 3                      # make the last row short too, so trim has columns to cut
    batch["attention_mask"][2, 4:] = False
    logits = model(batch)["logits"].data
    other = dict(batch, input_ids=np.where(batch["attention_mask"], batch["input_ids"], 7))   # other padding ids
    assert np.allclose(model(other)["logits"].data, logits, atol=1e-6)
    trimmed = trim(batch)
    assert trimmed["input_ids"].shape == (3, 4)
    assert np.allclose(model(trimmed)["logits"].data, logits, atol=1e-6)


# ---- freezing, and the features path ----------------------------------------------------------------

def test_frozen_body_stays_bit_for_bit_and_the_head_learns(runs, tmp_path):
    before = {k: v.copy() for k, v in load_pretrained(str(runs / "gpt"))[0].state_dict().items()}
    out = tmp_path / "probe"
    assert cli.main(["finetune", "--ckpt", str(runs / "gpt"), "--train", str(runs / "train.tsv"), "--test",
                     str(runs / "test.jsonl"), "--freeze", "--out", str(out), *FINETUNE]) == 0
    after, _, config = load_pretrained(str(out))
    state = after.state_dict()
    for name, value in before.items():
        assert np.array_equal(state[f"gpt.{name}"], value), name
    untrained = GPTClassifier(config, rng=np.random.default_rng(1337))     # the head as finetune initialised it
    assert not np.array_equal(state["classifier.weight"], untrained.state_dict()["classifier.weight"])


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_precomputed_features_give_the_same_logits_as_the_body(runs, kind):
    model, tokenizer = build_classifier(str(runs / kind), 2, ["a", "b"], pooling="mean" if kind == "bert" else None)
    encode = encode_for_gpt if kind == "gpt" else encode_for_bert
    data = encode(["今天天气很好。", "医生拿起了听诊器。", "好"], tokenizer, 32, np.array([0, 1, 0]))
    features = body_features(model, data)
    assert features["features"].shape == (3, 16)
    assert np.array_equal(predict(model, features), predict(model, data))
    model.eval()
    assert np.allclose(model(features)["logits"].data, model(trim(data))["logits"].data, atol=1e-6)


# ---- a short fine-tune learns; the CLI's files round trip ------------------------------------------

@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_short_finetune_from_files_beats_chance(runs, tmp_path, kind, capsys):
    out = tmp_path / "clf"
    argv = ["finetune", "--ckpt", str(runs / kind), "--train", str(runs / "train.tsv"),
            "--test", str(runs / "test.jsonl"), "--out", str(out), *FINETUNE]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("test split:\naccuracy ")[1].split()[0])
    assert accuracy >= 0.9, printed
    # the label names from the files travel with the model into `classify`
    assert cli.main(["classify", "--ckpt", str(out), "今天天气很好。", "李医生拿起了听诊器。"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert [line.split("\t")[0] for line in lines] == ["天气", "医生"]


def test_tsv_and_jsonl_give_the_same_examples_through_the_cli(runs, tmp_path):
    rows = [line.split("\t") for line in (runs / "train.tsv").read_text(encoding="utf-8").split("\n")[1:] if line]
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as f:
        for text, label in rows:
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    (tmp_path / "test.tsv").write_text("text\tlabel\n" + "".join(
        f"{json.loads(line)['text']}\t{json.loads(line)['label']}\n"
        for line in (runs / "test.jsonl").read_text(encoding="utf-8").split("\n") if line), encoding="utf-8")
    common = ["--ckpt", str(runs / "gpt"), "--max-iters", "5", "--log-interval", "5", "--warmup-iters", "1"]
    a = run_cli("finetune", "--train", str(runs / "train.tsv"), "--test", str(runs / "test.jsonl"), *common)
    b = run_cli("finetune", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.tsv"), *common)
    assert a[0] == b[0] == 0, (a[2], b[2])
    report = lambda stdout: stdout[stdout.index("test split:"):]
    assert report(a[1]) == report(b[1])          # same examples, same seed: the same report


# ---- bad input ------------------------------------------------------------------------------------

def test_malformed_rows_are_reported_by_line_with_status_2(runs, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\n今天天气很好。\t天气\n医生拿起了听诊器。\n\t医生\n医生很忙。\t医生\n", encoding="utf-8")
    status, _, err = run_cli("finetune", "--ckpt", str(runs / "gpt"), "--train", str(bad),
                             "--test", str(runs / "test.jsonl"))
    assert status == 2 and err.startswith("usage:")
    assert "bad.tsv" in err and "line 3: missing label" in err and "line 4: empty text" in err
    assert "line 2" not in err and "line 5" not in err
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"text": "今天天气很好。", "label": "天气"}\n{"text": "我在超市", "label": "商店"}\n',
                       encoding="utf-8")
    status, _, err = run_cli("finetune", "--ckpt", str(runs / "gpt"), "--train", str(runs / "train.tsv"),
                             "--test", str(unknown))
    assert status == 2 and "unknown.jsonl" in err and "line 2: unknown label '商店'" in err


def test_weights_that_do_not_fit_fail_with_a_clear_message(runs):
    model, _, config = load_pretrained(str(runs / "gpt"))
    weights = model.state_dict()
    weights["wte.weight"] = weights["wte.weight"][:-3]              # a vocabulary of another size
    classifier = GPTClassifier(ClassifierConfig(body=config.to_dict()))
    with pytest.raises(CheckpointError, match=r"(?s)elsewhere/model.safetensors: .*wte.weight: checkpoint \(389, 16\), model \(392, 16\)"):
        load_body(classifier.body, weights, "elsewhere/model.safetensors")
    del weights["wte.weight"]
    with pytest.raises(CheckpointError, match="lack.*wte.weight"):
        load_body(classifier.body, weights, "elsewhere/model.safetensors")


def test_a_checkpoint_whose_tokenizer_or_shapes_do_not_fit_is_refused(runs, tmp_path):
    bigger = tmp_path / "bigger_vocab"
    shutil.copytree(runs / "gpt", bigger)
    CharTokenizer.train("今天天气很好" + "".join(chr(0x4E00 + i) for i in range(600))).save(str(bigger / "tokenizer.json"))
    status, _, err = run_cli("finetune", "--ckpt", str(bigger), "--task", "reviews", "--labels", "4")
    assert status == 2 and "tokenizer has" in err and "bigger_vocab" in err
    wider = tmp_path / "wider"
    shutil.copytree(runs / "gpt", wider)
    config = json.loads((wider / CONFIG_FILE).read_text())
    config["model"]["n_layer"] = 2                                   # weights of one layer, a config of two
    (wider / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        build_classifier(str(wider), 2, ["a", "b"])
