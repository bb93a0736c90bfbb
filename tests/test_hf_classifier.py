"""Fine-tuned classifiers as Hugging Face sequence classifiers, both ways (storage/hf_classifier.py).

Without torch: export then from_pretrained gives the same logits; the layout is transformers' (an
nn.Linear head, (n_labels, C)); a head transformers lacks is refused naming the option, and nothing
is written; training-only differences are exported with a note. With torch and transformers:
BertForSequenceClassification, GPT2ForSequenceClassification and OpenAIGPTForSequenceClassification
load our exports with no missing or unexpected keys and give our logits on a right-padded batch to
1e-12 in float64, and we load what they save with the same logits. Through the command line: a
finetune run goes out with export-hf and back with import-hf, classifying as before, and
transformers' text-classification pipeline gives our label and probability.
"""

import json

import numpy as np
import pytest
from hf_reference import BERT, GPT2, import_transformers, pretrain_tiny, silent

from numpretrain.app import cli
from numpretrain.app.finetune import as_gpt_text, classify_texts
from numpretrain.autograd.tensor import no_grad
from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.models.bert import BertConfig
from numpretrain.models.gpt import GPTConfig
from numpretrain.models.heads import BertClassifier, ClassifierConfig, GPTClassifier
from numpretrain.storage.formats import load_safetensors, save_safetensors
from numpretrain.storage.hf import from_pretrained, save_hf
from numpretrain.storage.hf_classifier import save_hf_classifier

LABELS = ["晴", "雨", "雪"]


def classifier(kind, seed=1, **overrides):
    """A float64 classifier with every parameter moved off its initial value."""
    if kind == "bert":
        body, cls, head = BertConfig(**BERT).to_dict(), BertClassifier, {"pooling": "cls"}
    else:
        body = GPTConfig(**GPT2, norm_first=kind == "gpt2").to_dict()
        cls, head = GPTClassifier, {"pooling": "last", "classifier_bias": False}
    config = ClassifierConfig(body=body, n_labels=3, labels=LABELS, **{**head, **overrides})
    model = cls(config).to(np.float64)
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data[...] += rng.normal(0, 0.1, p.shape)
    return model.eval()


def padded_batch(seed=0, B=3, T=10, V=50):
    """Right-padded with [PAD] = 0 as data/classify.py pads, real tokens never 0."""
    rng = np.random.default_rng(seed)
    lengths = np.array([T, 6, 3])[:B]
    mask = np.arange(T)[None] < lengths[:, None]                          # (B, T)
    ids = np.where(mask, rng.integers(5, V, (B, T)), 0)
    return {"input_ids": ids, "attention_mask": mask, "last_index": lengths - 1,
            "token_type_ids": np.zeros_like(ids)}


def logits(model, batch):
    with no_grad():
        return model(batch)["logits"].data


KINDS = ["bert", "gpt2", "openai-gpt"]
ARCHITECTURES = {"bert": "BertForSequenceClassification", "gpt2": "GPT2ForSequenceClassification",
                 "openai-gpt": "OpenAIGPTForSequenceClassification"}


# ---- without torch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_classifier_exports_in_transformers_layout_and_loads_back_with_its_logits(tmp_path, kind):
    model = classifier(kind)
    save_hf(tmp_path, model)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [ARCHITECTURES[kind]]
    assert config["id2label"] == {"0": "晴", "1": "雨", "2": "雪"} and config["label2id"]["雪"] == 2
    tensors = load_safetensors(tmp_path / "model.safetensors")
    head = "classifier.weight" if kind == "bert" else "score.weight"
    assert np.array_equal(tensors[head], model.classifier.weight.data.T)              # nn.Linear: (n_labels, C)
    assert ("classifier.bias" in tensors) == (kind == "bert") and "lm_head.weight" not in tensors
    if kind != "bert":
        assert config["pad_token_id"] == 0                                            # our [PAD]
    messages = []
    again = from_pretrained(tmp_path, log=messages.append)
    assert type(again) is type(model) and again.config.labels == LABELS
    np.testing.assert_array_equal(logits(again, padded_batch()), logits(model, padded_batch()))


@pytest.mark.parametrize("kind,overrides,option", [
    ("bert", {"pooling": "mean"}, "--pooling mean"),
    ("gpt2", {"classifier_bias": True}, "--no-classifier-bias"),
    ("openai-gpt", {"classifier_bias": True}, "--no-classifier-bias")])
def test_a_head_transformers_lacks_is_refused_naming_the_option(tmp_path, kind, overrides, option):
    with pytest.raises(ConfigError, match=option):
        save_hf(tmp_path / "out", classifier(kind, **overrides))
    assert not (tmp_path / "out").exists()


def test_what_changes_training_only_is_exported_with_a_note(tmp_path):
    model = classifier("gpt2", lm_weight=0.5, dropout=0.1)
    messages = []
    save_hf_classifier(tmp_path, model, log=messages.append)
    assert any("--lm-weight 0.5" in m for m in messages) and any("--dropout 0.1" in m for m in messages)
    quiet = []
    save_hf_classifier(tmp_path / "b", classifier("bert", dropout=0.1), log=quiet.append)
    assert not quiet                                         # BERT's classifier_dropout is transformers' own


def test_a_classifier_folder_that_does_not_fit_is_refused_by_name(tmp_path):
    save_hf(tmp_path, classifier("gpt2"))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "pad_token_id": 7}))
    with pytest.raises(CheckpointError, match="pad_token_id 7"):
        from_pretrained(tmp_path, log=silent([]))
    (tmp_path / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    with pytest.raises(CheckpointError, match="problem_type 'multi_label_classification'"):
        from_pretrained(tmp_path, log=silent([]))          # sigmoid per label: not our softmax over labels
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = load_safetensors(tmp_path / "model.safetensors")
    save_safetensors(tmp_path / "model.safetensors", {**tensors, "score.bias": np.zeros(3)}, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"unknown \(1\): score.bias"):
        from_pretrained(tmp_path, log=silent([]))


# ---- against transformers --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_transformers_loads_our_classifier_and_computes_our_logits(tmp_path, kind):
    torch, transformers = import_transformers()
    model = classifier(kind)
    save_hf(tmp_path, model)
    theirs, info = getattr(transformers, ARCHITECTURES[kind]).from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float64, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    batch = padded_batch(1)
    with torch.no_grad():
        expected = theirs.eval()(input_ids=torch.tensor(batch["input_ids"]),
                                 attention_mask=torch.tensor(batch["attention_mask"].astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(logits(model, batch), expected, atol=1e-12)
    assert theirs.config.id2label == dict(enumerate(LABELS))


@pytest.mark.parametrize("kind", KINDS)
def test_we_load_the_classifiers_transformers_saves(tmp_path, kind):
    torch, transformers = import_transformers()
    torch.manual_seed(0)
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
    if kind == "bert":
        config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=48, max_position_embeddings=16, **labels)
    else:
        make = transformers.GPT2Config if kind == "gpt2" else transformers.OpenAIGPTConfig
        config = make(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4, pad_token_id=0, **labels)
    theirs = getattr(transformers, ARCHITECTURES[kind])(config)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    theirs = theirs.double().eval()
    theirs.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path, log=silent([]))
    assert model.config.labels == LABELS and model.config.lm_weight == 0
    batch = padded_batch(2)
    with torch.no_grad():
        expected = theirs(input_ids=torch.tensor(batch["input_ids"]),
                          attention_mask=torch.tensor(batch["attention_mask"].astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(logits(model, batch), expected, atol=1e-12)


# ---- through the command line --------------------------------------------------------------------

FINETUNE = ["--task", "reviews", "--labels", "64", "--max-iters", "10", "--batch-size", "8", "--warmup-iters", "2",
            "--log-interval", "10"]
TEXTS = ["今天天气很好，我还会再来。", "医生很凶，再也不来了。"]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    base = tmp_path_factory.mktemp("hf_classifier")
    pretrain_tiny(base / "gpt")
    assert cli.main(["finetune", "--ckpt", str(base / "gpt"), *FINETUNE, "--out", str(base / "biased")]) == 0
    assert cli.main(["finetune", "--ckpt", str(base / "gpt"), *FINETUNE, "--no-classifier-bias",
                     "--out", str(base / "cls")]) == 0
    return base


def test_export_hf_and_import_hf_carry_a_finetuned_classifier_there_and_back(finetuned, tmp_path, capsys):
    assert cli.main(["export-hf", "--ckpt", str(finetuned / "cls"), "--out", str(tmp_path / "hf")]) == 0
    assert "GPT2ForSequenceClassification" in capsys.readouterr().out
    assert cli.main(["import-hf", "--model", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    before, after = classify_texts(str(finetuned / "cls"), TEXTS), classify_texts(str(tmp_path / "back"), TEXTS)
    assert [label for _, label, _ in after] == [label for _, label, _ in before]
    for (_, _, p), (_, _, q) in zip(before, after):
        assert p.keys() == q.keys() and all(abs(p[k] - q[k]) < 1e-6 for k in p)
    # nothing is overwritten
    assert cli.main(["export-hf", "--ckpt", str(finetuned / "cls"), "--out", str(tmp_path / "hf")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_export_hf_of_a_classifier_with_a_bias_names_the_option(finetuned, tmp_path, capsys):
    assert cli.main(["export-hf", "--ckpt", str(finetuned / "biased"), "--out", str(tmp_path / "hf")]) == 2
    assert "--no-classifier-bias" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


def test_the_text_classification_pipeline_gives_our_label_and_probability(finetuned, tmp_path):
    _, transformers = import_transformers()
    assert cli.main(["export-hf", "--ckpt", str(finetuned / "cls"), "--out", str(tmp_path / "hf")]) == 0
    classify = transformers.pipeline("text-classification", model=str(tmp_path / "hf"), device="cpu")
    for text, label, probabilities in classify_texts(str(finetuned / "cls"), TEXTS):
        theirs = classify(as_gpt_text(text))[0]     # our GPT classifiers read one sentence per line
        assert theirs["label"] == label and abs(theirs["score"] - probabilities[label]) < 1e-5
