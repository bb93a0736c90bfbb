"""Hugging Face GPT-2 and OpenAI GPT (GPT-1) folders: our export computes the reference forward,
configs we cannot compute are refused, and (with torch and transformers) transformers computes our
logits, also at the real positions of left-padded rows.
"""

import json

import numpy as np
import pytest
from hf_reference import GPT2, gpt, hf_gpt2_forward, hf_openai_gpt_forward, import_transformers, inputs, silent

from numpretrain.autograd.tensor import no_grad
from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.storage.formats import load_safetensors
from numpretrain.storage.hf import from_pretrained, save_hf


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


@pytest.mark.parametrize("norm_first,architecture", [(True, "GPT2LMHeadModel"), (False, "OpenAIGPTLMHeadModel")],
                         ids=["gpt2", "openai-gpt"])
def test_transformers_loads_our_gpt_and_computes_our_logits(tmp_path, norm_first, architecture):
    torch, transformers = import_transformers()
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


def test_left_padding_real_positions_agree_with_transformers(tmp_path):
    # With left padding a padded query may see no key at all: ours gives it zeros, transformers spreads
    # it over every key (docs/weights.md). Either way no real position attends to it: they agree.
    torch, transformers = import_transformers()
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
