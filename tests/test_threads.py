"""Threads change the speed, never the numbers (numpretrain/speed/threads.py).

The ops that split their rows over threads (GELU, LayerNorm, self-attention, AdamW) must give
bit for bit what one thread gives, whatever the split; their gradients must still pass
gradcheck when the blocks are uneven; and the block runner must cover every row exactly once,
pass errors back, and leave BLAS's thread count as it found it. Importing numpretrain before
NumPy gives the threads; NumPy first gives one. MIN_ELEMENTS is lowered so that the tiny test shapes are split too.
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpretrain import Tensor, gradcheck, self_attention
from numpretrain import functional as F
from numpretrain.models.bert import BertConfig, BertForPreTraining
from numpretrain.models.gpt import GPT, GPTConfig
from numpretrain.nn import init
from numpretrain.speed import blas
from numpretrain.speed import threads as parallel  # (the module's name before the layout of folders)
from numpretrain.training.optimizers import AdamW


@pytest.fixture
def threads(monkeypatch):
    """Call threads(n) to run with n threads, splitting even the smallest arrays."""
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 1)
    previous = parallel.get_num_threads()
    yield parallel.set_num_threads
    parallel.set_num_threads(previous)


@given(n_rows=st.integers(0, 50), n_elements=st.integers(0, 10 ** 6), n_threads=st.integers(1, 9))
def test_row_blocks_cover_every_row_once_in_order(n_rows, n_elements, n_threads):
    previous = parallel.get_num_threads()
    parallel.set_num_threads(n_threads)
    try:
        blocks = parallel.row_blocks(n_rows, n_elements)
    finally:
        parallel.set_num_threads(previous)
    covered = [i for block in blocks for i in range(n_rows)[block]]
    assert covered == list(range(n_rows))
    assert 1 <= len(blocks) <= max(1, min(n_threads, n_rows))
    assert len(blocks) == 1 or n_elements // len(blocks) >= parallel.MIN_ELEMENTS


def test_blocks_run_on_several_threads_and_results_come_back_in_order(threads):
    threads(3)
    seen = []

    def block(rows):
        seen.append(threading.get_ident())
        return rows.start, rows.stop

    assert parallel.for_each_row_block(block, 10, 10) == [(0, 3), (3, 6), (6, 10)]
    assert len(set(seen)) == 3


@pytest.mark.parametrize("failing_block", [0, 2])   # the calling thread's block, a worker's block
def test_an_error_in_any_block_reaches_the_caller_and_the_threads_recover(threads, failing_block):
    threads(3)

    def block(rows):
        if rows.start == [0, 3, 6][failing_block]:
            raise ValueError(f"block at {rows.start}")
        return rows.start

    with pytest.raises(ValueError, match=f"block at {[0, 3, 6][failing_block]}"):
        parallel.for_each_row_block(block, 9, 9)
    assert parallel.for_each_row_block(lambda rows: rows.start, 9, 9) == [0, 3, 6]   # no stale results


def test_an_interrupt_while_waiting_leaves_no_stale_result_behind(threads, monkeypatch):
    threads(2)
    parallel.for_each_row_block(lambda rows: rows.start, 2, 2)          # the worker exists now
    worker = parallel._workers[0]
    original_wait, calls = worker.wait, []

    def wait_interrupted_once():
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original_wait()

    monkeypatch.setattr(worker, "wait", wait_interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        parallel.for_each_row_block(lambda rows: ("first call", rows.start), 2, 2)
    # the old worker's answer to the interrupted call is still in its queue; a new worker answers now
    assert parallel.for_each_row_block(lambda rows: ("second call", rows.start), 2, 2) == [
        ("second call", 0), ("second call", 1)]


def test_a_call_from_inside_a_block_runs_on_its_own_thread(threads):
    threads(2)

    def outer(rows):
        return parallel.for_each_row_block(lambda inner: (rows.start, inner.start), 4, 4)

    assert parallel.for_each_row_block(outer, 2, 2) == [[(0, 0), (0, 2)], [(1, 0), (1, 2)]]


def test_blas_thread_count_is_restored(threads):
    threads(2)
    openblas = blas._find_openblas()
    if openblas is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS this process can see")
    _, get_blas_threads = openblas
    before = get_blas_threads()
    inside = parallel.for_each_row_block(lambda rows: get_blas_threads(), 2, 2)
    assert inside == [1, 1]
    assert get_blas_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_what_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match="positive integer"):
        parallel.set_num_threads(bad)


# ----- the threaded ops: same bits as one thread, and still correct gradients -----

def _op_cases(rng):
    x = rng.standard_normal((5, 3, 7))
    weight, bias = rng.standard_normal(7), rng.standard_normal(7)
    qkv = rng.standard_normal((5, 4, 12))
    padding = np.ones((5, 4), dtype=bool)
    padding[1, 2:] = False
    return {
        "gelu_tanh": ((x,), lambda x: F.gelu(x)),
        "gelu_erf": ((x,), lambda x: F.gelu(x, approximate="none")),
        "layer_norm": ((x, weight, bias), F.layer_norm),
        "causal_attention": ((qkv,), lambda qkv: self_attention(qkv, 2, causal=True)[0]),
        "padded_attention": ((qkv,), lambda qkv: self_attention(qkv, 2, key_padding_mask=padding)[0]),
    }


@pytest.mark.parametrize("name", list(_op_cases(np.random.default_rng(0))))
@pytest.mark.parametrize("n_threads", [2, 3])
def test_threaded_op_matches_one_thread_bit_for_bit_and_passes_gradcheck(threads, name, n_threads):
    arrays, op = _op_cases(np.random.default_rng(0))[name]

    def forward_backward():
        inputs = [Tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
        out = op(*inputs)
        (out * Tensor(np.linspace(-1, 1, out.data.size, dtype=np.float32).reshape(out.shape))).sum().backward()
        return [out.data] + [t.grad for t in inputs]

    threads(n_threads)                      # first, so that no buffer of the reference can be reused
    got = forward_backward()
    threads(1)
    for got_array, want in zip(got, forward_backward()):
        np.testing.assert_array_equal(got_array, want)
    inputs = [Tensor(a, requires_grad=True) for a in arrays]            # float64, uneven blocks
    assert gradcheck(op, inputs, atol=1e-8, rtol=1e-5)


def _training_losses(make_model, batch, steps=3):
    init.seed(0)
    model = make_model()
    optimizer = AdamW(list(model.parameters()), lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = batch(model)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.data))
    return losses, [p.data.copy() for p in model.parameters()]


def _gpt():
    return GPT(GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1))


def _gpt_batch(model):
    rng = np.random.default_rng(1)
    return model(rng.integers(0, 23, (4, 8)), rng.integers(0, 23, (4, 8)))[1]


def _bert():
    return BertForPreTraining(BertConfig(vocab_size=23, max_position=8, n_layer=2, n_head=2, n_embd=16,
                                         intermediate_size=32, dropout=0.1))


def _bert_batch(model):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 23, (4, 8))
    mask = np.ones((4, 8), dtype=bool)
    mask[2, 5:] = False
    labels = np.where(rng.random((4, 8)) < 0.3, rng.integers(0, 23, (4, 8)), -100)
    labels[:, 1] = 3
    return model(ids, np.zeros_like(ids), mask, labels, np.array([0, 1, 1, 0]))["loss"]


@pytest.mark.parametrize("make_model, batch", [(_gpt, _gpt_batch), (_bert, _bert_batch)], ids=["gpt", "bert"])
def test_training_with_threads_reproduces_one_thread_bit_for_bit(threads, make_model, batch):
    threads(1)
    losses_1, weights_1 = _training_losses(make_model, batch)
    threads(3)
    losses_3, weights_3 = _training_losses(make_model, batch)
    assert losses_3 == losses_1
    assert losses_1[-1] < losses_1[0]                                   # it did train
    for got, want in zip(weights_3, weights_1):
        np.testing.assert_array_equal(got, want)


# ----- the import order decides the default (see numpretrain/speed/threads.py's docstring) -----

def _default_threads_in_a_new_process(code, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("NUMPRETRAIN_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                "OPENBLAS_THREAD_TIMEOUT")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", code + "; print(numpretrain.speed.threads.get_num_threads(), "
                          "os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                         capture_output=True, text=True, env=environment, check=True)
    threads, timeout = out.stdout.split()
    return int(threads), timeout


def test_numpretrain_first_shortens_the_blas_spin_and_uses_the_cores():
    threads, timeout = _default_threads_in_a_new_process("import os, numpretrain, numpy",
                                                         NUMPRETRAIN_NUM_THREADS="3")
    assert (threads, timeout) == (3, "17")
    threads, _ = _default_threads_in_a_new_process("import os, numpretrain, numpy", OPENBLAS_NUM_THREADS="2")
    assert threads == 2


def test_numpy_first_means_one_thread_unless_asked():
    assert _default_threads_in_a_new_process("import os, numpy, numpretrain", OPENBLAS_NUM_THREADS="2")[0] == 1
    assert _default_threads_in_a_new_process("import os, numpy, numpretrain",
                                             NUMPRETRAIN_NUM_THREADS="2")[0] == 2
