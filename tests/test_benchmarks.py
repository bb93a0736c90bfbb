"""The benchmark scripts run and print their rows (smoke tests: tests never judge the times)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "bench.py")


def test_bench_prints_a_training_row_and_the_matmul_peak():
    out = subprocess.run([sys.executable, BENCH, "--no-torch", "--only", "train", "--model", "gpt",
                          "--size", "tiny", "--no-memory", "--threads", "1"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    row = next(line for line in out.splitlines() if line.startswith("gpt   tiny"))
    ms, min_ms, tokens_per_s = re.split(r"\s*\|\s*|\s+", row)[2:5]
    assert float(ms) >= float(min_ms) > 0 and float(tokens_per_s) > 0
    assert re.search(r"NumPy float32 matmul peak this run: \d+ GFLOP/s", out)


def test_bench_repeat_prints_the_range_of_the_speed_ratios():
    pytest.importorskip("torch")                # the ratio needs the PyTorch twin
    out = subprocess.run([sys.executable, BENCH, "--only", "train", "--model", "gpt", "--size", "tiny",
                          "--no-memory", "--threads", "1", "--repeat", "2"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    row = next(line for line in out.splitlines() if line.startswith("gpt   tiny"))
    low, high = map(float, re.search(r"\| +([\d.]+)-([\d.]+)x ", row).groups())
    assert 0 < low <= high
    assert "the lowest and highest of 2 runs" in out


def test_bench_refuses_a_repeat_below_one():
    result = subprocess.run([sys.executable, BENCH, "--no-torch", "--repeat", "0"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--repeat must be at least 1" in result.stderr


OP_PROFILE = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "op_profile.py")


def test_op_profile_times_every_op_of_a_step_forward_and_backward():
    out = subprocess.run([sys.executable, OP_PROFILE, "--no-torch", "--model", "gpt", "--size", "tiny",
                          "--steps", "2", "--threads", "1"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    lines = out.splitlines()
    step_ms = float(re.search(r"([\d.]+) ms a step", lines[0]).group(1))
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:]}
    for op in ("linear", "layer_norm", "self_attention", "gelu_tanh", "embedding", "cross_entropy"):
        forward_ms, backward_ms, total_ms = rows[op]
        assert forward_ms > 0 and backward_ms > 0 and total_ms == pytest.approx(forward_ms + backward_ms, abs=0.02)
    assert 0 < sum(row[2] for row in rows.values()) < step_ms


THREADS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "threads.py")


def test_threads_prints_the_handoff_and_a_row_per_size():
    out = subprocess.run([sys.executable, THREADS, "--calls", "5"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    handoff = float(re.search(r"and back: (\d+) microseconds", out).group(1))
    rows = [line.split("|") for line in out.splitlines() if re.match(r"\s*[\d,]+ \|", line)]
    assert handoff > 0 and [int(row[0].replace(",", "")) for row in rows] == [8192, 32768, 131072, 524288]
    for _, one, two, speedup in rows:
        assert float(one) > 0 and float(two) > 0
        assert float(speedup.rstrip("x ")) == pytest.approx(float(one) / float(two), rel=0.2)  # printed rounded


BENCHMARKS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


@pytest.mark.parametrize("model, bias", [("gpt", True), ("gpt", False), ("bert", True)])
def test_the_sdpa_peer_is_numpretrains_model(model, bias, monkeypatch):
    """bench.py's main PyTorch column must time the same model: from copied weights, the SDPA peer
    (causal flag for GPT, boolean padding mask for BERT) gives numpretrain's loss and gradients."""
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(BENCHMARKS)
    import torch_models
    from workloads import build_numpretrain, build_torch, make_batch, numpretrain_loss, torch_batch
    net, _ = build_numpretrain(model, "tiny", bias=bias)
    peer, _ = build_torch(model, "tiny", peer="sdpa", bias=bias)
    torch_models.copy_weights(net, peer)
    batch = make_batch(model, "tiny")
    loss = numpretrain_loss(model, net, batch)
    loss.backward()
    peer_loss = peer(**torch_batch(model, batch))
    peer_loss.backward()
    assert float(peer_loss.detach()) == pytest.approx(float(loss.data), rel=1e-5)
    grad = dict(peer.named_parameters())["h.0.attn.c_attn.weight" if model == "gpt" else "layer.0.attn.c_attn.weight"].grad
    ours = dict(net.named_parameters())["h.0.attn.c_attn.weight" if model == "gpt" else "bert.layer.0.attn.c_attn.weight"].grad
    np.testing.assert_allclose(grad.numpy().T, ours, rtol=1e-3, atol=1e-6)    # Linear: (out, in) there


def test_the_sdpa_peer_generates_numpretrains_tokens_with_its_cache(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(BENCHMARKS)
    import torch_models
    from workloads import VOCAB, build_numpretrain, build_torch
    net, _ = build_numpretrain("gpt", "tiny", context=40)
    peer, _ = build_torch("gpt", "tiny", context=40, peer="sdpa")
    torch_models.copy_weights(net, peer)
    prompt = np.random.default_rng(1).integers(0, VOCAB, (1, 8))
    ours = net.generate(prompt, 30, greedy=True, use_cache=True)
    for use_cache in (True, False):
        np.testing.assert_array_equal(peer.generate(torch.from_numpy(prompt), 30, use_cache=use_cache).numpy(), ours)


BENCH_DP = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "bench_dp.py")


def test_bench_dp_runs_its_five_rows_in_turns():
    pytest.importorskip("torch")                # rows 3 and 4
    pytest.importorskip("mpi4py")               # row 2 and the sum
    out = subprocess.run([sys.executable, BENCH_DP, "--model", "gpt", "--size", "tiny", "--rounds", "2",
                          "--steps", "1"], capture_output=True, text=True, check=True, timeout=600).stdout
    rows = [line for line in out.splitlines() if line.startswith("gpt   tiny")]
    assert [row.split()[2] for row in rows] == ["1", "2", "3", "4", "5"]
    for row in rows:                             # ms, tok/s, then the ratios against rows 3 and 4
        ms, tokens, *ratios = re.search(r"threads? +([\d.]+) +([\d,]+) +([\d.]+)x +([\d.]+)x", row).groups()
        assert float(ms) > 0 and int(tokens.replace(",", "")) > 0 and all(float(r) > 0 for r in ratios)
    for peer in ("one process's threads (row 1)", "PyTorch DDP (row 3)", "PyTorch eager (row 4)"):
        assert re.search(rf"mpiexec -n 2 against {re.escape(peer)}: [\d.]+x the throughput", out)
    for row in ("one process's threads (row 1)", "mpiexec -n 2 (row 2)"):
        assert re.search(rf"{re.escape(row)} against one thread \(row 5\): [\d.]+x the throughput of at most 2.00x",
                         out)
    assert re.search(r"parameters summed in [\d.]+ ms; 2 timed rounds of 1 steps per row", out)   # no warm-up
    assert re.search(r"while one row ran, the sleeping rows used at most [\d.]+% of a core", out)
    assert re.search(r"the sum alone on 2 ranks .* 4,000,000 floats [\d.]+ ms", out)


def test_bench_dp_refuses_zero_rounds():
    result = subprocess.run([sys.executable, BENCH_DP, "--rounds", "0"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "must be a whole number of at least 1, got '0'" in result.stderr
