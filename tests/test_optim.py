"""Tests for numpretrain.training.optimizers: AdamW against its formula written out
here independently, parameter groups and skipped gradients, exact resume through
state_dict (via safetensors + JSON), clear errors on a mismatched state, the
learning-rate schedules, and gradient clipping."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpretrain import Tensor
from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.storage.formats import load_safetensors, save_safetensors
from numpretrain.training.optimizers import AdamW, clip_grad_norm, param_groups_for_decay
from numpretrain.training.schedules import warmup_cosine_lr

SHAPES = {"wte": (7, 3), "h.0.attn.c_attn.weight": (3, 9), "h.0.attn.c_attn.bias": (9,),
          "ln_f.weight": (3,), "scale": ()}


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {name: Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True, name=name)
            for name, shape in SHAPES.items()}


def fake_grad(p, step):
    """A gradient that depends on the parameter and the step, like a real one."""
    return (np.sin(3.0 * p.data + step) + 0.1 * p.data).astype(p.data.dtype)


# --------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------

def reference_adamw(p, g, m, v, t, lr, beta1, beta2, eps, wd):
    """One AdamW update of one parameter, textbook form. Returns new (p, m, v)."""
    p = p * (1 - lr * wd)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p, m, v


def test_adamw_matches_formula_with_groups_and_changing_lr():
    params = make_params()
    groups = param_groups_for_decay([(n, p) for n, p in params.items()], weight_decay=0.3)
    betas, eps = (0.8, 0.95), 1e-3   # large eps and small betas make every term matter
    opt = AdamW(groups, lr=0.1, betas=betas, eps=eps)
    decayed = {"wte", "h.0.attn.c_attn.weight"}
    ref = {n: (p.data.copy(), np.zeros_like(p.data), np.zeros_like(p.data)) for n, p in params.items()}
    arrays = {n: p.data for n, p in params.items()}
    for t in range(1, 6):
        opt.lr = 0.1 / t                       # as a schedule would
        opt.param_groups[1]["lr"] = 0.05 * t   # a group can have its own
        for name, p in params.items():
            p.grad = fake_grad(p, t)
            lr = 0.1 / t if name in decayed else 0.05 * t
            wd = 0.3 if name in decayed else 0.0
            ref[name] = reference_adamw(*ref[name][:1], p.grad, *ref[name][1:], t, lr, *betas, eps, wd)
        opt.step()
        for name, p in params.items():
            np.testing.assert_allclose(p.data, ref[name][0], rtol=0, atol=1e-12, err_msg=f"{name}, step {t}")
            assert p.data is arrays[name], "parameters must be updated in place"
    state = opt.state_dict()
    index = opt.state_dict()["param_names"].index("wte")
    np.testing.assert_allclose(state["buffers"][f"exp_avg[{index}]"], ref["wte"][1], atol=1e-12)
    np.testing.assert_allclose(state["buffers"][f"exp_avg_sq[{index}]"], ref["wte"][2], atol=1e-12)


def test_adamw_decays_only_the_decay_group():
    params = make_params()
    before = {n: p.data.copy() for n, p in params.items()}
    opt = AdamW(param_groups_for_decay(params, weight_decay=0.5), lr=0.1)
    for p in params.values():
        p.grad = np.zeros_like(p.data)   # the Adam step is exactly 0: only decay acts
    opt.step()
    for name, p in params.items():
        factor = 1 - 0.1 * 0.5 if p.data.ndim >= 2 else 1.0
        np.testing.assert_array_equal(p.data, before[name] * factor, err_msg=name)


def test_adamw_skips_params_without_grad_and_counts_their_own_steps():
    params = make_params()
    names = list(params)
    skipped = "h.0.attn.c_attn.bias"   # in the middle: the flat buffer splits into runs
    opt = AdamW(list(params.values()), lr=0.1, weight_decay=0.2)
    ref = {n: (p.data.copy(), np.zeros_like(p.data), np.zeros_like(p.data)) for n, p in params.items()}
    steps = dict.fromkeys(names, 0)
    for t in range(1, 4):
        for name, p in params.items():
            p.grad = None if (name == skipped and t < 3) else fake_grad(p, t)
            if p.grad is not None:
                steps[name] += 1
                ref[name] = reference_adamw(ref[name][0], p.grad, *ref[name][1:], steps[name],
                                            0.1, 0.9, 0.999, 1e-8, 0.2)
        opt.step()
        for name, p in params.items():
            np.testing.assert_allclose(p.data, ref[name][0], rtol=0, atol=1e-12, err_msg=f"{name}, step {t}")
        if t < 3:   # untouched: no decay, no moment update
            np.testing.assert_array_equal(params[skipped].data, ref[skipped][0])
    state = opt.state_dict()
    assert state["param_steps"] == [steps[n] for n in names] == [3, 3, 1, 3, 3]
    assert state["step_count"] == 3


def test_step_reads_but_never_writes_gradients():
    params = make_params()
    for p in params.values():
        p.grad = fake_grad(p, 0)
    grads = {n: p.grad.copy() for n, p in params.items()}
    for opt in (AdamW(params.values(), weight_decay=0.1), AdamW(params.values(), weight_decay=0.0)):
        opt.step()
        opt.step()
        for name, p in params.items():
            np.testing.assert_array_equal(p.grad, grads[name], err_msg=f"{type(opt).__name__} wrote {name}.grad")


# --------------------------------------------------------------------------
# dtypes, zero_grad, lr, construction errors
# --------------------------------------------------------------------------

def test_float32_parameters_stay_float32():
    params = make_params(np.float32)
    opt = AdamW(list(params.values()), lr=np.float64(1e-2))
    for t in range(3):
        opt.lr = np.float64(0.01) / (t + 1)   # schedules may hand back NumPy scalars
        for p in params.values():
            p.grad = fake_grad(p, t)
        clip_grad_norm(params.values(), 0.5)
        opt.step()
    for name, p in params.items():
        assert p.data.dtype == np.float32, name
        assert p.grad.dtype == np.float32, name
    assert all(b.dtype == np.float32 for b in opt.state_dict()["buffers"].values())


def test_a_group_may_mix_dtypes():
    p64 = Tensor(np.array([1.0, -2.0]), requires_grad=True, name="a")
    p32 = Tensor(np.array([[0.5, 3.0]], dtype=np.float32), requires_grad=True, name="b")
    opt = AdamW([p64, p32], lr=0.1, weight_decay=0.0)
    p64.grad, p32.grad = np.array([0.3, -0.1]), np.array([[2.0, -1.0]], dtype=np.float32)
    opt.step()   # the first Adam step moves every coordinate by about lr * sign(g)
    np.testing.assert_allclose(p64.data, [0.9, -1.9], atol=1e-6)
    np.testing.assert_allclose(p32.data, [[0.4, 3.1]], atol=1e-6)
    assert p64.data.dtype == np.float64 and p32.data.dtype == np.float32


def test_zero_grad_and_lr():
    params = make_params()
    opt = AdamW(param_groups_for_decay(params, 0.1), lr=0.5)
    for p in params.values():
        p.grad = np.ones_like(p.data)
    opt.zero_grad()
    assert all(p.grad is None for p in params.values())
    opt.step()   # nothing to do
    assert opt.lr == 0.5
    opt.lr = 0.25
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]


def test_bad_configurations_fail_clearly():
    params = make_params()
    w = params["wte"]
    with pytest.raises(ConfigError, match="more than once"):
        AdamW([w, w])
    with pytest.raises(ConfigError, match="shares its data"):
        AdamW([w, Tensor(w.data, requires_grad=True)])
    with pytest.raises(ConfigError, match="weight_deacy"):
        AdamW([{"params": [w], "weight_deacy": 0.0}])
    with pytest.raises(ConfigError, match="betas"):
        AdamW([w], betas=(0.9, 1.0))
    with pytest.raises(ConfigError, match="no parameters"):
        AdamW([])
    with pytest.raises(TypeError, match="Tensors"):
        AdamW([w.data], lr=0.1)
    opt = AdamW([w], lr=0.1)
    w.grad = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"'wte'.*\(7, 3\).*\(2, 2\)"):
        opt.step()


def test_param_groups_for_decay():
    params = make_params()
    decay, no_decay = param_groups_for_decay(params, 0.1)
    assert decay["param_names"] == ["wte", "h.0.attn.c_attn.weight"]
    assert no_decay["param_names"] == ["h.0.attn.c_attn.bias", "ln_f.weight", "scale"]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert decay["params"] == [params["wte"], params["h.0.attn.c_attn.weight"]]
    decay, no_decay = param_groups_for_decay(params.items(), 0.1, no_decay=lambda name, p: name == "wte")
    assert decay["param_names"] == ["h.0.attn.c_attn.weight"]
    assert "wte" in no_decay["param_names"]


# --------------------------------------------------------------------------
# state_dict: exact resume, clear errors
# --------------------------------------------------------------------------

def save_and_load(state, tmp_path):
    """Through the files a checkpoint uses: buffers to safetensors, the rest to JSON."""
    save_safetensors(tmp_path / "optimizer.safetensors", state["buffers"])
    (tmp_path / "optimizer.json").write_text(json.dumps({k: v for k, v in state.items() if k != "buffers"}))
    loaded = json.loads((tmp_path / "optimizer.json").read_text())
    loaded["buffers"] = load_safetensors(tmp_path / "optimizer.safetensors")
    return loaded


def train(opt, params, steps, start):
    for t in range(start, start + steps):
        opt.lr = 0.05 / (1 + t)
        for name, p in params.items():
            p.grad = None if (name == "scale" and t % 2) else fake_grad(p, t)
        opt.step()


def test_state_dict_round_trip_resumes_bit_identically(tmp_path):
    params = make_params(np.float32)
    opt = AdamW(param_groups_for_decay(params, 0.1), betas=(0.8, 0.9))
    train(opt, params, 3, start=0)
    snapshot = opt.state_dict()
    frozen = {key: array.copy() for key, array in snapshot["buffers"].items()}
    state = save_and_load(snapshot, tmp_path)
    resumed_params = {n: Tensor(p.data.copy(), requires_grad=True, name=n) for n, p in params.items()}
    resumed = AdamW(param_groups_for_decay(resumed_params, 0.1), betas=(0.8, 0.9))
    resumed.load_state_dict(state)
    train(opt, params, 4, start=3)
    train(resumed, resumed_params, 4, start=3)
    for name in params:
        np.testing.assert_array_equal(resumed_params[name].data, params[name].data, err_msg=name)
    for key, array in snapshot["buffers"].items():   # a snapshot, not a view of live state
        np.testing.assert_array_equal(array, frozen[key], err_msg=key)
    a, b = opt.state_dict(), resumed.state_dict()
    assert {k: v for k, v in a.items() if k != "buffers"} == {k: v for k, v in b.items() if k != "buffers"}
    for key in a["buffers"]:
        np.testing.assert_array_equal(a["buffers"][key], b["buffers"][key], err_msg=key)


def test_load_state_dict_restores_hyperparameters():
    params = make_params()
    opt = AdamW(params.values(), lr=0.3, betas=(0.5, 0.6), eps=0.1, weight_decay=0.2)
    other = AdamW(params.values())
    other.load_state_dict(json.loads(json.dumps({k: v for k, v in opt.state_dict().items() if k != "buffers"}))
                          | {"buffers": opt.state_dict()["buffers"]})
    assert other.param_groups[0]["betas"] == (0.5, 0.6)
    assert (other.lr, other.param_groups[0]["eps"], other.param_groups[0]["weight_decay"]) == (0.3, 0.1, 0.2)


def test_load_state_dict_with_wrong_shapes_fails_clearly_and_changes_nothing():
    params = make_params()
    opt = AdamW(params.values())
    for p in params.values():
        p.grad = fake_grad(p, 0)
    opt.step()
    state = opt.state_dict()

    other_params = make_params()
    other_params["wte"] = Tensor(np.zeros((8, 3)), requires_grad=True, name="wte")
    other = AdamW(other_params.values())
    with pytest.raises(CheckpointError, match=r"parameter 0 \('wte'\): shape \(7, 3\) in the state, \(8, 3\) here"):
        other.load_state_dict(state)
    assert other.step_count == 0 and not any(b.any() for b in other.state_dict()["buffers"].values())

    bad = dict(state, buffers=dict(state["buffers"], **{"exp_avg_sq[1]": np.zeros((9, 3))}))
    with pytest.raises(CheckpointError, match=r"buffer 'exp_avg_sq\[1\]': shape \(9, 3\) in the state, \(3, 9\) here"):
        AdamW(make_params().values()).load_state_dict(bad)
    missing = dict(state, buffers={k: v for k, v in state["buffers"].items() if k != "exp_avg[4]"})
    with pytest.raises(CheckpointError, match=r"missing buffers \['exp_avg\[4\]'\]"):
        AdamW(make_params().values()).load_state_dict(missing)
    with pytest.raises(CheckpointError, match="has 5 parameters, this optimizer has 4"):
        AdamW(list(make_params().values())[:4]).load_state_dict(state)
    with pytest.raises(CheckpointError, match="from SGD, not AdamW"):
        AdamW(make_params().values()).load_state_dict(dict(state, optimizer="SGD"))
    renamed = make_params()
    renamed["wte"].name = "wpe"
    with pytest.raises(CheckpointError, match="named 'wte' in the state, 'wpe' here"):
        AdamW(renamed.values()).load_state_dict(state)


# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------

MAX, MIN, WARMUP, TOTAL = 1.0, 0.1, 10, 110


@pytest.mark.parametrize("step, cosine", [
    (0, 1 / 11),                            # warmup starts above zero: (step + 1) / (warmup + 1)
    (4, 5 / 11),
    (9, 10 / 11),                           # last warmup step
    (10, 1.0),                              # peak
    (35, 0.1 + 0.45 * (1 + math.cos(math.pi / 4))),
    (60, 0.55),                             # half way
    (109, 0.1 + 0.45 * (1 + math.cos(math.pi * 99 / 100))),
    (110, 0.1),                             # floor at total_steps
    (10_000, 0.1),                          # and after
])
def test_schedules_match_formulas(step, cosine):
    assert warmup_cosine_lr(step, MAX, MIN, WARMUP, TOTAL) == pytest.approx(cosine, abs=1e-15)


def test_schedule_without_warmup_starts_at_peak():
    assert warmup_cosine_lr(0, 2.0, 0.0, 0, 100) == 2.0


def test_bad_schedules_fail_clearly():
    with pytest.raises(ConfigError, match="warmup_steps <= total_steps"):
        warmup_cosine_lr(0, 1e-3, 0.0, 20, 10)
    with pytest.raises(ConfigError, match="min_lr <= max_lr"):
        warmup_cosine_lr(0, 0.1, 0.2, 0, 10)


@settings(max_examples=50, deadline=None)
@given(warmup=st.integers(0, 50), decay=st.integers(1, 200),
       max_lr=st.floats(1e-6, 1.0), floor=st.floats(0.0, 1.0))
def test_schedule_shape(warmup, decay, max_lr, floor):
    rates = [warmup_cosine_lr(s, max_lr, max_lr * floor, warmup, warmup + decay) for s in range(warmup + decay + 5)]
    assert all(0 <= r <= max_lr * (1 + 1e-12) for r in rates)
    assert rates[0] > 0
    assert all(a < b for a, b in zip(rates[:warmup + 1], rates[1:warmup + 1]))          # rises
    assert all(a >= b - 1e-15 for a, b in zip(rates[warmup:], rates[warmup + 1:]))     # then falls
    assert rates[warmup] == pytest.approx(max_lr) and rates[-1] == pytest.approx(max_lr * floor)


# --------------------------------------------------------------------------
# Gradient clipping
# --------------------------------------------------------------------------

def test_clip_grad_norm_scales_by_the_formula_without_touching_old_arrays():
    params = make_params(np.float32)
    for t, p in enumerate(params.values()):
        p.grad = fake_grad(p, t) * 10
    params["ln_f.weight"].grad = None
    old = {n: p.grad for n, p in params.items()}
    copies = {n: None if g is None else g.copy() for n, g in old.items()}
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in copies.values() if g is not None))

    norm = clip_grad_norm(params.values(), max_norm=1.5)

    assert norm == pytest.approx(expected, rel=1e-12)
    for name, p in params.items():
        if copies[name] is None:
            assert p.grad is None
            continue
        np.testing.assert_array_equal(old[name], copies[name], err_msg=f"{name}: old grad was modified")
        assert p.grad is not old[name] and p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad, copies[name] * (1.5 / (expected + 1e-6)), rtol=1e-6)
    assert clip_grad_norm(params.values(), 1.5) == pytest.approx(1.5, rel=1e-5)


def test_clip_grad_norm_leaves_small_and_non_finite_norms_alone():
    p = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    grad = p.grad = np.array([3.0, 4.0])
    assert clip_grad_norm([p], max_norm=5.0) == 5.0
    assert p.grad is grad
    for bad in (np.inf, np.nan):
        q = Tensor(np.zeros(2), requires_grad=True)
        grad = q.grad = np.array([1.0, bad])
        norm = clip_grad_norm([p, q], max_norm=1.0)
        assert not math.isfinite(norm)
        assert q.grad is grad and p.grad is not None
