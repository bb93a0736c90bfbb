"""Elementwise work on every core: the rows of an array split into blocks, one thread per block.

NumPy's matrix products already use all cores (OpenBLAS has its own threads), but
everything else NumPy does (GELU, LayerNorm, softmax, the attention's small batched
products, AdamW) runs on the calling thread alone. On two cores that left half the
machine idle for about half of a training step. NumPy releases the GIL inside every
ufunc loop, so plain Python threads run those loops side by side.

    def gelu_rows(rows):                   # rows: a slice of the first axis
        out[rows] = ...x[rows]...
    for_each_row_block(gelu_rows, len(x), x.size)

Two thread pools must not fight over the same cores. While numpretrain's threads run,
OpenBLAS is told to use one thread (blas.py), so a matrix product inside a block
(attention's per-sequence products) stays on its block's core; outside, BLAS has them all.

A debugger sees every op whole. pdb, VS Code and PyCharm trace only the thread they stopped
in, so while a trace function is set (`sys.gettrace()`), every block runs on the calling
thread, in order: stepping into an op shows all of its rows. NUMPRETRAIN_NUM_THREADS=1 does
the same for a whole run.

Rules that keep this simple and exact:
- A block function only touches its own rows, so the blocks never race, and every
  number comes out bit for bit as it would on one thread (sums *across* rows, such as
  a bias gradient, stay outside, on the calling thread).
- Small arrays run on the calling thread in one block: handing work to another thread
  costs 40-90 microseconds on a 2-core VM, and each NumPy call a block makes must take the
  GIL back when it ends, which the two threads then wait on in turn; below ~100k elements
  per block that costs more than it saves (benchmarks/threads.py measures both).
- One caller at a time: a call made while the threads are busy (from another thread,
  or from inside a block) runs its blocks itself, in order.

The number of threads comes from NUMPRETRAIN_NUM_THREADS, else OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS (so `--threads`-style settings cover both), else the cores this process
may use, at most 8; `set_num_threads(n)` changes it. n = 1 turns the threads off.
Import numpretrain before NumPy (blas.py says why); when NumPy came first, the default is
one thread.
"""

import os
import queue
import sys
import threading

from numpretrain.speed import blas

MIN_ELEMENTS = 1 << 17   # below this many elements per block, one thread does it all


def _default_num_threads():
    explicit = os.environ.get("NUMPRETRAIN_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    if not blas.SPIN_IS_SHORT:
        return 1                                    # NumPy came first (see above)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


class _Worker:
    """A daemon thread that runs fn(arg) for whoever hands it work, and hands back the result."""

    def __init__(self, index):
        self.tasks, self.results = queue.SimpleQueue(), queue.SimpleQueue()
        threading.Thread(target=self._loop, name=f"numpretrain-worker-{index}", daemon=True).start()

    def _loop(self):
        while True:
            fn, arg = self.tasks.get()
            try:
                self.results.put((fn(arg), None))
            except BaseException as error:          # re-raised on the calling thread
                self.results.put((None, error))

    def start(self, fn, arg):
        self.tasks.put((fn, arg))

    def wait(self):
        """(result, error) of the work handed over last."""
        return self.results.get()


_num_threads = _default_num_threads()
_workers = []                   # started on first use: num_threads - 1 of them
_busy = threading.Lock()


def set_num_threads(n):
    """Use n threads (the calling one included) for row-blocked work; 1 turns threading off."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    _num_threads = n


def get_num_threads():
    return _num_threads


def debugger_attached():
    """True while a trace function is set, as pdb, VS Code and PyCharm set one: then every op
    runs on the calling thread, and runs its plain formula rather than the in-place kernel."""
    return sys.gettrace() is not None


def row_blocks(n_rows, n_elements):
    """Contiguous slices covering range(n_rows): one per thread, or a single one for small work."""
    n_blocks = max(1, min(_num_threads, n_rows, n_elements // MIN_ELEMENTS))
    bounds = [n_rows * i // n_blocks for i in range(n_blocks + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(n_blocks)]


def for_each_row_block(fn, n_rows, n_elements):
    """Call fn(rows) for row blocks that cover range(n_rows), the blocks on separate threads.

    n_elements (the size of the work) decides whether threads are worth it. Returns the
    results of fn in block order.
    """
    if _num_threads == 1 or n_elements < 2 * MIN_ELEMENTS or debugger_attached():
        return [fn(slice(0, n_rows))]               # small work, or a debugger watching: one thread
    blocks = row_blocks(n_rows, n_elements)
    if len(blocks) == 1 or not _busy.acquire(blocking=False):
        return [fn(rows) for rows in blocks]
    try:
        while len(_workers) < len(blocks) - 1:
            _workers.append(_Worker(len(_workers)))
        helpers = _workers[:len(blocks) - 1]
        with blas.blas_threads(1):
            for worker, rows in zip(helpers, blocks[1:]):
                worker.start(fn, rows)
            try:
                results = [fn(blocks[0])]            # the calling thread takes the first block
            finally:
                try:
                    outcomes = [worker.wait() for worker in helpers]   # every block ends, even after an error
                except BaseException:                # Ctrl-C while waiting: a worker may still owe a
                    _workers.clear()                 # result, so the next call starts new workers
                    raise
        for result, error in outcomes:
            if error is not None:
                raise error
            results.append(result)
        return results
    finally:
        _busy.release()


def _forget_workers():
    """A forked child has none of its parent's threads: start new ones when needed."""
    global _busy
    _workers.clear()
    _busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)
