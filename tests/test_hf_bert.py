"""Hugging Face BERT folders: our forward equals the reference forward written from the Hugging
Face names, what a checkpoint may have or lack (heads, old names, buffers), configs we cannot compute,
and (with torch and transformers) transformers' own logits and the padding row's gradient.
"""

import json

import numpy as np
import pytest
from hf_reference import (
    HF_BERT_CONFIG,
    bert,
    hf_bert_forward,
    import_transformers,
    inputs,
    random_hf_bert,
    silent,
    write_hf_folder,
)

from numpretrain.autograd.tensor import no_grad
from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.models.bert import BertForPreTraining, BertModel
from numpretrain.storage.formats import load_safetensors
from numpretrain.storage.hf import from_pretrained, save_hf

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


def test_a_folder_without_safetensors_says_what_it_has(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(HF_BERT_CONFIG))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        from_pretrained(tmp_path, log=silent([]))


def test_transformers_loads_our_bert_and_computes_our_logits(tmp_path):
    torch, transformers = import_transformers()
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


def test_the_padding_row_gets_the_gradient_transformers_gives_it(tmp_path):
    # transformers builds BERT's word embeddings with padding_idx = pad_token_id: row 0 learns nothing,
    # even where [PAD] stands at a position whose output reaches the loss (here: every position)
    torch, transformers = import_transformers()
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
