"""A debugger sees every op whole (numpretrain/speed/threads.py).

pdb, VS Code and PyCharm trace only the thread they stopped in. While a trace function is set
(`sys.settrace`, which all of them use), every op must do all of its rows on the calling
thread, so that stepping into LayerNorm, GELU, attention or the fused softmax shows the whole
op; and NUMPRETRAIN_NUM_THREADS=1 must do the same for a whole run. The thresholds are lowered
so that the tiny test shapes would be split over threads without the rule.
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


def _ops_forward_and_backward():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 3, 8)), requires_grad=True)
    w, b = Tensor(np.ones(8), requires_grad=True), Tensor(np.zeros(8), requires_grad=True)
    qkv = Tensor(rng.standard_normal((4, 3, 24)), requires_grad=True)
    y, _ = self_attention(qkv, 2, causal=True)
    loss = (F.layer_norm(x, w, b) * F.gelu(x, "tanh") * F.gelu(x, "none")).sum() + (y * y).sum()
    loss.backward()


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
