"""The benchmark script runs and prints its rows (a smoke test: tests never judge the times)."""

import os
import re
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "bench.py")


def test_bench_prints_a_training_row_and_the_matmul_peak():
    out = subprocess.run([sys.executable, BENCH, "--no-torch", "--only", "train", "--model", "gpt",
                          "--size", "tiny", "--no-memory", "--threads", "1"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    row = next(line for line in out.splitlines() if line.startswith("gpt   tiny"))
    ms, min_ms, tokens_per_s = re.split(r"\s*\|\s*|\s+", row)[2:5]
    assert float(ms) >= float(min_ms) > 0 and float(tokens_per_s) > 0
    assert re.search(r"NumPy float32 matmul peak this run: \d+ GFLOP/s", out)
