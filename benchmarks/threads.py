"""What a second thread buys NumPy's elementwise work on this machine, and why
numpretrain/speed/threads.py keeps arrays below 2 * MIN_ELEMENTS on one thread.

    python benchmarks/threads.py [--calls N]

Prints (1) what handing an empty block to numpretrain's worker thread and back costs
(threads.for_each_row_block), and (2) for arrays of several sizes, a run of N NumPy calls (a
product written into a buffer, the kind of call a GELU or LayerNorm block makes) on one thread,
beside the same calls with each array split in two halves, one per thread. NumPy releases
Python's GIL inside every call, but each call has to take it back when it ends; when both threads
do so all the time, they wait for each other, and short calls gain little or nothing.
"""

import argparse
import statistics
import time

import numpretrain  # noqa: F401  (before NumPy, as the library wants it: see numpretrain/speed/threads.py)
import numpy as np
from numpretrain.speed import threads

SIZES = (8_192, 32_768, 131_072, 524_288)   # elements of float32; the small BERT's LayerNorm has 131,072


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="NumPy calls per timing (default 400)")
    return parser.parse_args(argv)


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    args = parse_args()
    threads.set_num_threads(2)
    everything = 1 << 40                      # n_elements large enough that every call is split
    handoff = median_seconds(lambda: threads.for_each_row_block(lambda rows: None, 2, everything), 2000)
    print(f"handing an empty block to the worker thread and back: {handoff * 1e6:.0f} microseconds (median)")

    print(f"\n{args.calls} calls of np.multiply(x, y, out=z) on float32 arrays, microseconds per call")
    print("elements  | one thread | two threads, half each | speed-up")
    rng = np.random.default_rng(0)
    for n in SIZES:
        x, y = rng.standard_normal((2, n), dtype=np.float32)
        z = np.empty_like(x)

        def calls(rows):
            for _ in range(args.calls):
                np.multiply(x[rows], y[rows], out=z[rows])

        one = median_seconds(lambda: calls(slice(0, n)), 5) / args.calls
        two = median_seconds(lambda: threads.for_each_row_block(calls, n, everything), 5) / args.calls
        print(f"{n:9,} | {one * 1e6:10.1f} | {two * 1e6:22.1f} | {one / two:7.2f}x")


if __name__ == "__main__":
    main()
