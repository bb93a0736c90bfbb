"""Hugging Face checkpoints, every architecture at once: each parameter has exactly one row in its
name table, the export follows Hugging Face's layouts, export then from_pretrained gives identical
weights, and (with torch and transformers installed) we load what transformers saves.
"""


import numpy as np
import pytest
from hf_reference import BERT, GPT2, bert, gpt, import_transformers, inputs, silent

from numpretrain.autograd.tensor import no_grad
from numpretrain.models.bert import BertConfig, BertForPreTraining, BertModel
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.storage.hf import expand, from_pretrained, hf_state_dict, save_hf
from numpretrain.storage.hf_names import BERT_TABLE, GPT2_TABLE, OPENAI_GPT_TABLE

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


@pytest.mark.parametrize("kind", ["gpt2", "bert", "openai-gpt", "openai-gpt-model"])
def test_we_load_what_transformers_saves(tmp_path, kind):
    torch, transformers = import_transformers()
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
