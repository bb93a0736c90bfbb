"""A debugger sees every op whole, as its formula (numpretrain/speed/threads.py).

pdb, VS Code and PyCharm trace only the thread they stopped in. While a trace function is set
(`sys.settrace`, which all of them use), every op must do all of its rows on the calling
thread, so that stepping into LayerNorm, GELU or attention shows the whole op, and must run its
plain forward / backward functions (the formula, where a breakpoint can stop) rather than the
in-place kernels, with the same numbers bit for bit. NUMPRETRAIN_NUM_THREADS=1 must keep a
whole run on one thread. The thresholds are lowered so that the tiny test shapes would be split
over threads without the rule.
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from numpretrain import Tensor, self_attention
from numpretrain import functional as F
from numpretrain.speed import threads

BLOCK_FUNCTIONS = {"forward_rows", "backward_rows", "forward_block", "backward_block"}


@pytest.fixture
def two_threads_on_tiny_arrays(monkeypatch):
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 1)
    previous = threads.get_num_threads()
    threads.set_num_threads(2)
    yield
    threads.set_num_threads(previous)


def traced(fn):
    """Run fn() under a trace function, as a debugger would; return the row slices that the
    traced thread saw each block function called with."""
    seen = []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name in BLOCK_FUNCTIONS:
            rows = next(iter(frame.f_locals.values()))          # the block's one argument: a slice
            seen.append((frame.f_code.co_name, rows))
        return None

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return seen


def test_under_a_trace_function_every_block_runs_on_the_calling_thread(two_threads_on_tiny_arrays):
    untraced = threads.for_each_row_block(lambda rows: (threading.get_ident(), rows), 6, 6)
    assert len({ident for ident, _ in untraced}) == 2              # without a debugger: two threads
    results = []
    sys.settrace(lambda *args: None)
    try:
        results = threads.for_each_row_block(lambda rows: (threading.get_ident(), rows), 6, 6)
    finally:
        sys.settrace(None)
    assert results == [(threading.get_ident(), slice(0, 6))]      # one block, all rows, this thread


def _ops_forward_and_backward(dtype=np.float64):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 3, 8)).astype(dtype), requires_grad=True)
    w = Tensor(rng.standard_normal(8).astype(dtype), requires_grad=True)
    b = Tensor(rng.standard_normal(8).astype(dtype), requires_grad=True)
    qkv = Tensor(rng.standard_normal((4, 3, 24)).astype(dtype), requires_grad=True)
    y, _ = self_attention(qkv, 2, causal=True, dropout=0.2, rng=np.random.default_rng(1), training=True)
    loss = (F.layer_norm(x, w, b) * F.gelu(x, "tanh") * F.gelu(x, "none")).sum() + (y * y).sum()
    loss.backward()
    return [loss.data] + [t.grad for t in (x, w, b, qkv)]


def test_a_debugger_stepping_into_an_op_sees_all_of_its_rows(two_threads_on_tiny_arrays):
    seen = traced(_ops_forward_and_backward)
    # LayerNorm (12 rows), both GELUs (96 values) and attention (4 sequences), forward and backward:
    # each block function was entered once, on the traced thread, with every row
    assert sorted(name for name, _ in seen) == sorted(["forward_rows", "backward_rows"] * 2
                                                      + ["forward_block", "backward_block"] * 2)
    for name, rows in seen:
        assert rows.start == 0 and rows.stop in (12, 96, 4), (name, rows)


def test_without_a_debugger_the_same_ops_are_split(two_threads_on_tiny_arrays):
    # the test above can fail: untraced, the calling thread does only the first block of each op
    calls = []
    original = threads.for_each_row_block

    def counting(fn, n_rows, n_elements):
        results = original(fn, n_rows, n_elements)
        calls.append(len(results))
        return results

    threads.for_each_row_block, saved = counting, threads.for_each_row_block
    try:
        _ops_forward_and_backward()
    finally:
        threads.for_each_row_block = saved
    assert calls and all(n == 2 for n in calls)


def test_numpretrain_num_threads_1_turns_the_threads_off():
    env = dict(os.environ, NUMPRETRAIN_NUM_THREADS="1")
    code = "import numpretrain.speed.threads as t; print(t.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


PLAIN_FORMS = {"layer_norm_forward", "layer_norm_backward", "gelu_tanh_forward", "gelu_tanh_backward",
               "gelu_erf_forward", "gelu_erf_backward", "attention_forward", "attention_backward"}


def functions_called(fn):
    """The names of the functions in autograd/ and training/ that fn() called, traced as a debugger would."""
    called = set()

    def tracer(frame, event, arg):
        if event == "call" and ("autograd" in frame.f_code.co_filename or "training" in frame.f_code.co_filename):
            called.add(frame.f_code.co_name)
        return None

    sys.settrace(tracer)
    try:
        result = fn()
    finally:
        sys.settrace(None)
    return called, result


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_debugger_steps_through_the_plain_formulas_and_gets_the_same_bits(dtype):
    called, traced = functions_called(lambda: _ops_forward_and_backward(dtype))
    assert PLAIN_FORMS <= called                       # a breakpoint in any of them stops
    untraced = _ops_forward_and_backward(dtype)        # the in-place kernels (speed/kernels.py)
    for got, want in zip(traced, untraced):
        np.testing.assert_array_equal(got, want)


def test_a_debugger_steps_through_adamw_update_and_gets_the_same_bits():
    from numpretrain.training.optimizers import AdamW

    def two_steps():
        rng = np.random.default_rng(2)
        params = [Tensor(rng.standard_normal(s), requires_grad=True) for s in [(3, 4), (4,), (2, 2)]]
        opt = AdamW(params, lr=0.1, weight_decay=0.1)
        for _ in range(2):
            for p in params:
                p.grad = rng.standard_normal(p.shape)
            opt.step()
        return [p.data for p in params]

    called, traced = functions_called(two_steps)
    assert "adamw_update" in called
    for got, want in zip(traced, two_steps()):             # untraced: speed/kernels.py's flat update
        np.testing.assert_array_equal(got, want)
