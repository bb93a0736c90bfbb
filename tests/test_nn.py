"""numpretrain.nn: the Module system (names, paths, state dicts, modes, rng, dtype, repr),
the basic layers (each gradchecked in float64) and the initialisation."""

import copy
import math
import pickle

import numpy as np
import pytest

from numpretrain import Tensor, capture, gradcheck
from numpretrain import functional as F
from numpretrain.errors import ConfigError
from numpretrain.nn import (
    GELU,
    MLP,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    Parameter,
    SelfAttention,
    StateDictError,
    TransformerBlock,
    init_weights,
)

F64 = np.float64


def tensor(rng, *shape, dtype=F64, requires_grad=True):
    return Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


class TinyLM(Module):
    """Embedding -> a ModuleList of blocks -> LayerNorm -> head: the shape GPT has."""

    def __init__(self, n_layer=2, C=8, nh=2, V=11, dropout=0.0):
        self.wte = Embedding(V, C)
        self.h = ModuleList([TransformerBlock(C, nh, dropout=dropout) for _ in range(n_layer)])
        self.ln_f = LayerNorm(C)
        self.head = Linear(C, V, bias=False)

    def forward(self, ids):
        x = self.wte(ids)                    # (B, T, C)
        for block in self.h:
            x = block(x)                     # (B, T, C)
        return self.head(self.ln_f(x))       # (B, T, V)


# ----- Parameter -----

def test_parameter_dtype_and_grad_flag():
    assert Parameter(np.zeros(3)).dtype == F64                       # float64 data stays float64
    assert Parameter(np.zeros(3, dtype=np.float32)).dtype == np.float32
    assert Parameter([1, 2, 3]).dtype == np.float32                  # anything else becomes float32
    assert Parameter(np.arange(3)).dtype == np.float32
    p = Parameter(np.ones(2), name="scale")
    assert p.requires_grad and p.name == "scale" and p.is_leaf


def test_parameter_name_is_its_path_in_the_model():
    model = TinyLM()
    assert model.h[1].attn.c_attn.weight.name == "h.1.attn.c_attn.weight"
    assert model.wte.weight.name == "wte.weight"
    assert Linear(2, 3).weight.name == "weight"                      # a root layer: just the attribute


# ----- names, paths, children -----

def test_named_parameters_of_a_block_follow_gpt2_names():
    block = TransformerBlock(8, 2)
    assert [name for name, _ in block.named_parameters()] == [
        "ln_1.weight", "ln_1.bias",
        "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
        "ln_2.weight", "ln_2.bias",
        "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
    shapes = {name: p.shape for name, p in block.named_parameters()}
    assert shapes["attn.c_attn.weight"] == (8, 24)                   # (in, out): x @ W
    assert shapes["mlp.c_fc.weight"] == (8, 32)


def test_named_parameters_through_a_module_list():
    names = [name for name, _ in TinyLM(n_layer=2).named_parameters()]
    assert names[0] == "wte.weight"
    assert "h.0.attn.c_attn.weight" in names and "h.1.mlp.c_proj.bias" in names
    assert names[-3:] == ["ln_f.weight", "ln_f.bias", "head.weight"]
    assert len(names) == 1 + 2 * 12 + 2 + 1


def test_paths_and_named_outputs():
    model = TinyLM()
    assert model.path == "" and model.h.path == "h"
    assert model.h[0].attn.path == "h.0.attn" and model.h[1].mlp.c_fc.path == "h.1.mlp.c_fc"
    assert [name for name, _ in model.named_modules()][:4] == ["", "wte", "h", "h.0"]
    with capture("h.1.mlp.fc", "h.0.attn.probs", "h.0", "ln_f") as seen:
        model(np.array([[1, 2, 3]]))
    assert set(seen) == {"h.1.mlp.fc", "h.0.attn.probs", "h.0", "ln_f"}
    assert seen["h.1.mlp.fc"].shape == (1, 3, 32)                    # the hidden activation, 4C wide
    assert seen["h.0.attn.probs"].shape == (1, 2, 3, 3)


def test_paths_follow_module_list_changes_and_copies():
    model = TinyLM(n_layer=3)
    third = model.h[2]
    del model.h[0]
    assert third.path == "h.1" and third.attn.c_attn.weight.name == "h.1.attn.c_attn.weight"
    model.h.insert(0, TransformerBlock(8, 2))
    assert third.path == "h.2"
    clone = copy.deepcopy(model)
    assert clone.h[2].attn.path == "h.2.attn" and clone.h[2].ln_1.weight.name == "h.2.ln_1.weight"
    assert clone.h[2].ln_1.weight is not model.h[2].ln_1.weight
    unpickled = pickle.loads(pickle.dumps(model))
    assert unpickled.h[1].mlp.c_proj.bias.name == "h.1.mlp.c_proj.bias"


def test_a_replaced_child_forgets_its_old_parent():
    block = TransformerBlock(8, 2)
    old = block.mlp
    block.mlp = MLP(8)
    assert old.path == "" and block.mlp.path == "mlp"


def test_plain_list_of_modules_is_refused():
    class Bad(Module):
        def __init__(self):
            self.layers = [Linear(2, 2), Linear(2, 2)]
    with pytest.raises(TypeError, match="ModuleList"):
        Bad()


def test_module_list_is_not_callable_and_slices_to_plain_lists():
    layers = ModuleList([Linear(2, 2), Linear(2, 2), Linear(2, 2)])
    assert len(layers) == 3 and isinstance(layers[1:], list)
    assert layers[1].path == "1"                                     # slicing did not re-parent
    with pytest.raises(TypeError, match="not callable"):
        layers(np.zeros((1, 2), np.float32))


def test_tied_weights_are_one_parameter():
    model = TinyLM(C=8, V=11)
    model.tied = Linear(11, 8, bias=False)
    model.tied.weight = model.wte.weight                           # share the (V, C) table
    names = [name for name, _ in model.named_parameters()]
    assert "tied.weight" not in names                                # listed once, under its first name
    assert model.wte.weight.name == "wte.weight"
    assert model.num_parameters() == sum(p.size for p in model.parameters())
    state = model.state_dict()
    assert "tied.weight" in state and "wte.weight" in state          # state dicts name it both ways
    del state["tied.weight"]
    model.load_state_dict(state)                                     # one name of a tied pair suffices


# ----- state dicts -----

def test_state_dict_round_trip_copies_values():
    a, b = TinyLM(), TinyLM()
    init_weights(a, rng=np.random.default_rng(1))
    init_weights(b, rng=np.random.default_rng(2))
    ids = np.array([[1, 4, 2, 7]])
    assert not np.allclose(a(ids).data, b(ids).data)
    state = a.state_dict()
    state["ln_f.bias"] += 1                                          # a copy: writing to it leaves `a` alone
    assert np.all(a.ln_f.bias.data == 0)
    state["ln_f.bias"] -= 1
    result = b.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(ids).data, b(ids).data)


def test_load_state_dict_converts_dtype_in_place():
    layer = Linear(3, 2)
    weight = layer.weight
    layer.load_state_dict({"weight": np.ones((3, 2), dtype=F64), "bias": [5, 6]})
    assert layer.weight is weight and weight.dtype == np.float32
    np.testing.assert_array_equal(layer.bias.data, [5, 6])


def test_load_state_dict_lists_every_problem_at_once():
    block = TransformerBlock(8, 2)
    state = block.state_dict()
    del state["ln_1.bias"], state["mlp.c_fc.weight"]
    state["attn.c_attn.weight"] = np.zeros((24, 8))                  # transposed: (out, in)
    state["attn.bias"] = np.zeros(3)                                 # not ours
    with pytest.raises(StateDictError) as info:
        block.load_state_dict(state)
    message = str(info.value)
    for fragment in ["missing keys (2)", "ln_1.bias", "mlp.c_fc.weight",
                     "unexpected keys (1)", "attn.bias",
                     "shape mismatches (1)", "attn.c_attn.weight: checkpoint (24, 8), model (8, 24)"]:
        assert fragment in message
    assert isinstance(info.value, ValueError)


def test_load_state_dict_non_strict_reports_but_shapes_still_fail():
    block = TransformerBlock(8, 2)
    state = {"ln_1.weight": np.full(8, 2.0), "extra": np.zeros(1)}
    result = block.load_state_dict(state, strict=False)
    assert "ln_1.bias" in result.missing_keys and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(block.ln_1.weight.data, 2.0)
    with pytest.raises(StateDictError, match="shape mismatches"):
        block.load_state_dict({"ln_1.weight": np.zeros(9)}, strict=False)


# ----- modes, gradients, rng, dtype, repr -----

def test_train_and_eval_propagate():
    model = TinyLM()
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    model.h[0].train()
    assert model.h[0].mlp.dropout.training and not model.h[1].mlp.dropout.training
    model.train()
    assert all(m.training for m in model.modules())


def test_dropout_is_identity_in_eval_and_scales_in_training():
    drop = Dropout(0.25)
    x = Tensor(np.ones((200, 100), dtype=np.float32))
    drop.eval()
    assert drop(x) is x
    drop.train()
    y = drop(x).data
    assert y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02                        # 20,000 draws: sd ~0.003


def test_same_rng_seed_gives_same_outputs():
    model = TinyLM(dropout=0.3)
    ids = np.array([[1, 2, 3, 4, 5]])
    model.set_rng(np.random.default_rng(5))
    first = model(ids).data
    model.set_rng(np.random.default_rng(5))
    again = model(ids).data
    model.set_rng(6)                                                 # an int seeds a fresh generator
    other = model(ids).data
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    model.eval()
    np.testing.assert_array_equal(model(ids).data, model(ids).data)


def test_default_rng_is_shared_and_seeded():
    a, b = TinyLM(dropout=0.3), TinyLM(dropout=0.3)
    b.load_state_dict(a.state_dict())
    ids = np.array([[3, 1, 4, 1, 5]])
    np.testing.assert_array_equal(a(ids).data, b(ids).data)         # both start from seed 0
    assert a.h[0].mlp.dropout.rng is a.h[1].attn.attn_dropout.rng is a.rng
    generator = np.random.default_rng(9)
    a.set_rng(generator)
    assert all(m.rng is generator for m in a.modules())
    a.extra = Dropout(0.5)                                           # added later: inherits its parent's
    assert a.extra.rng is generator


def test_zero_grad_and_requires_grad():
    layer = Linear(3, 2)
    layer(np.ones((4, 3), np.float32)).sum().backward()
    assert layer.weight.grad is not None
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None
    layer.requires_grad_(False)
    assert not layer(np.ones((4, 3), np.float32)).requires_grad


def test_to_float64_converts_in_place():
    model = TinyLM()
    params = list(model.parameters())
    assert model.to(F64) is model
    assert all(p.dtype == F64 for p in model.parameters())
    assert all(a is b for a, b in zip(params, model.parameters()))  # an optimizer keeps its references
    assert model(np.array([[1, 2]])).dtype == F64
    model.to(np.float32)
    assert all(p.dtype == np.float32 for p in model.parameters())
    with pytest.raises(TypeError):
        model.to(np.float16)


def test_num_parameters_and_repr():
    block = TransformerBlock(8, 2)
    expected = 2 * (8 + 8) + (8 * 24 + 24) + (8 * 8 + 8) + (8 * 32 + 32) + (32 * 8 + 8)
    assert block.num_parameters() == expected
    text = repr(TinyLM(n_layer=3))
    assert f"{expected:,} parameters" in text
    assert "(0-2): 3 x TransformerBlock(pre-LN)" in text             # identical blocks print once
    assert "(c_attn): Linear(8 -> 24, bias=True)  # weight (8, 24), bias (24,)" in text
    assert "(ln_1): LayerNorm(8, eps=1e-05)" in text


# ----- layers: math and gradients -----

def test_linear_is_x_at_w_plus_b_for_any_leading_shape():
    rng = np.random.default_rng(0)
    layer = Linear(4, 3).to(F64)
    for shape in [(4,), (5, 4), (2, 5, 4), (2, 1, 3, 4)]:
        x = rng.standard_normal(shape)
        out = layer(Tensor(x))
        assert out.shape == shape[:-1] + (3,)
        np.testing.assert_allclose(out.data, x @ layer.weight.data + layer.bias.data, rtol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)])
def test_linear_gradcheck(shape, bias):
    rng = np.random.default_rng(1)
    layer = Linear(4, 5, bias=bias).to(F64)
    x = tensor(rng, *shape)
    gradcheck(lambda x, *params: layer(x), [x, *layer.parameters()])


def test_linear_op_without_input_gradient():
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((2, 3, 4)))                       # data, no gradient wanted
    w, b = tensor(rng, 4, 5), tensor(rng, 5)
    gradcheck(lambda w, b: F.linear(x, w, b), [w, b])


def test_linear_checks_its_input():
    layer = Linear(4, 2)
    with pytest.raises(ValueError, match="last axis is 4"):
        layer(np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="float64 but the parameters are float32"):
        layer(np.zeros((3, 4)))


def test_embedding_lookup_gradcheck_and_repeated_ids():
    emb = Embedding(6, 3).to(F64)
    ids = np.array([[0, 5, 5], [2, 0, 5]])
    np.testing.assert_array_equal(emb(ids).data, emb.weight.data[ids])
    gradcheck(lambda w: emb(ids), [emb.weight])
    emb.zero_grad()
    out = emb(ids)
    out.backward(np.ones(out.shape))
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [2, 0, 1, 0, 0, 3])  # counts of each id


def test_embedding_out_of_range_ids_fail_clearly():
    model = TinyLM(V=11)
    with pytest.raises(IndexError, match=r"Embedding 'wte': id 11 is out of range; ids must be in \[0, 11\)"):
        model(np.array([[1, 11]]))
    with pytest.raises(IndexError, match="id -1"):
        model.wte(np.array([-1]))
    with pytest.raises(TypeError):
        model.wte(np.array([1.0]))


def test_embedding_padding_row_is_zero_and_gets_no_gradient():
    emb = Embedding(5, 3, padding_idx=0)
    assert np.all(emb.weight.data[0] == 0)
    emb.weight.data[0] = 1
    out = emb(np.array([0, 0, 2]))
    out.backward(np.ones(out.shape, np.float32))
    assert np.all(emb.weight.grad[0] == 0) and np.all(emb.weight.grad[2] == 1)
    init_weights(emb, rng=np.random.default_rng(0))
    assert np.all(emb.weight.data[0] == 0)


@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_layer_norm_gradcheck_and_statistics(eps):
    rng = np.random.default_rng(4)
    ln = LayerNorm(6, eps=eps).to(F64)
    x = tensor(rng, 2, 3, 6)
    y = ln(x).data
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1, rtol=1e-4)
    ln.weight.data[...] = rng.standard_normal(6)
    ln.bias.data[...] = rng.standard_normal(6)
    gradcheck(lambda x, w, b: ln(x), [x, ln.weight, ln.bias])


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_gradcheck_and_forms(approximate):
    rng = np.random.default_rng(5)
    x = tensor(rng, 3, 7)
    gradcheck(lambda x: GELU(approximate)(x), [x])
    erf_form = 0.5 * x.data * (1 + np.vectorize(math.erf)(x.data / math.sqrt(2)))
    tolerance = 1e-12 if approximate == "none" else 1e-3                # tanh form: within ~1e-3 of exact
    np.testing.assert_allclose(GELU(approximate)(x).data, erf_form, atol=tolerance)


def test_dropout_gradcheck_with_a_reseeded_generator():
    rng = np.random.default_rng(6)
    drop = Dropout(0.5)
    x = tensor(rng, 4, 5)

    def f(x):
        drop.set_rng(np.random.default_rng(0))                        # the same mask at every evaluation
        return drop(x)
    out = f(x).data
    assert 0 < (out == 0).sum() < out.size
    gradcheck(f, [x])


def test_mlp_gradcheck_and_hidden_width():
    rng = np.random.default_rng(7)
    mlp = MLP(4, hidden=6, dropout=0.2).to(F64)
    for name, p in mlp.named_parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    x = tensor(rng, 2, 3, 4)

    def f(x, *params):
        mlp.set_rng(np.random.default_rng(1))
        return mlp(x)
    gradcheck(f, [x, *mlp.parameters()])
    assert mlp.c_fc.weight.shape == (4, 6) and MLP(4).c_fc.weight.shape == (4, 16)


# ----- bad configurations -----

@pytest.mark.parametrize("build, fragment", [
    (lambda: Linear(0, 3), "in_features must be a positive integer"),
    (lambda: Linear(3, 2.5), "out_features must be a positive integer"),
    (lambda: Embedding(-1, 3), "num_embeddings must be a positive integer"),
    (lambda: Embedding(4, 3, padding_idx=4), "padding_idx 4"),
    (lambda: LayerNorm(4, eps=0), "eps must be a positive number"),
    (lambda: Dropout(-0.1), r"p must be a probability in \[0, 1\)"),
    (lambda: Dropout(1.0), r"p must be a probability in \[0, 1\)"),
    (lambda: GELU("erf"), "approximate must be 'tanh' or 'none'"),
    (lambda: SelfAttention(10, 3), "n_embd=10 is not divisible by n_head=3"),
    (lambda: SelfAttention(8, 0), "n_head must be a positive integer"),
    (lambda: SelfAttention(8, 2, dropout=-0.5), "dropout must be a probability"),
    (lambda: MLP(8, hidden=0), "hidden must be a positive integer"),
    (lambda: TransformerBlock(12, 5), "n_embd=12 is not divisible by n_head=5"),
    (lambda: TransformerBlock(8, 2, dropout=1.5), "dropout must be a probability"),
    (lambda: TransformerBlock(8, 2, layer_norm_eps=-1), "eps must be a positive number"),
    (lambda: TransformerBlock(8, 2, approximate="fast"), "approximate must be"),
])
def test_bad_configurations_fail_at_construction(build, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build()


# ----- initialisation -----

def test_init_weights_statistics():
    model = TinyLM(n_layer=2, C=64, nh=4, V=500)
    for p in model.parameters():
        p.data[...] = 7.0
    init_weights(model, rng=np.random.default_rng(0))
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert np.all(p.data == 0), name
        elif "ln_" in name:
            assert np.all(p.data == 1), name
        else:
            assert abs(p.data.mean()) < 0.003 and abs(p.data.std() / 0.02 - 1) < 0.05, name
            assert p.dtype == np.float32


def test_init_weights_scales_residual_projections():
    n_layer = 8
    model = TinyLM(n_layer=n_layer, C=64, nh=4, V=50)
    init_weights(model, rng=np.random.default_rng(0), residual_layers=n_layer)
    scaled = 0.02 / math.sqrt(2 * n_layer)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert abs(p.data.std() / scaled - 1) < 0.1, name
        elif name.endswith("c_attn.weight") or name.endswith("c_fc.weight"):
            assert abs(p.data.std() / 0.02 - 1) < 0.1, name
    assert sum(name.endswith("c_proj.weight") for name, _ in model.named_parameters()) == 2 * n_layer


def test_init_weights_is_deterministic_and_dtype_independent():
    a, b = TinyLM(), TinyLM().to(F64)
    init_weights(a, rng=np.random.default_rng(3))
    init_weights(b, rng=np.random.default_rng(3))
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data.astype(np.float32), err_msg=name)
    with pytest.raises(ValueError, match="residual_layers"):
        init_weights(a, residual_layers=0)
