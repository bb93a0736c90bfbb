"""OpenBLAS's threads: how long they spin when idle, and how many a block of ours may use.

NumPy's matrix products run on OpenBLAS's own threads. Two settings keep them from fighting
numpretrain's row-block threads (threads.py) for the same cores:

- Spin. After every product OpenBLAS's idle threads spin for about 0.1 s before they sleep,
  and on the cores our threads want that makes the blocks slower than one thread. Importing
  numpretrain sets OPENBLAS_THREAD_TIMEOUT=17 (2^17 cycles, about 50 microseconds: still enough
  to catch back-to-back products), which OpenBLAS reads only when NumPy loads it. That is the
  one thing numpretrain does at import time, and why the demos import numpretrain before NumPy.
  When NumPy came first, `SPIN_IS_SHORT` is False and threads.py defaults to one thread.
- Count. While a row block runs on our threads, `blas_threads(1)` holds OpenBLAS to one
  thread, so a product inside a block (attention's per-sequence products) stays on its core.
  Under `mpiexec -n N` (N > 1) each rank is one process per core: importing numpretrain there
  sets OPENBLAS_NUM_THREADS=1 unless it is set already, which threads.py reads as its own count
  too, so every rank runs the plain single-threaded code (launcher.py says how a rank knows).
"""

import contextlib
import ctypes
import os
import sys

from numpretrain.speed.launcher import launched_size

# The spin is short if the user chose it, or if NumPy (hence OpenBLAS) is not loaded yet, so
# that the setting below still reaches it.
SPIN_IS_SHORT = "OPENBLAS_THREAD_TIMEOUT" in os.environ or "numpy" not in sys.modules
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "17")
if launched_size() > 1:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")     # one core per rank (too late if NumPy came first)


def _openblas_functions(*names):
    """The named functions (e.g. "set_num_threads") of the OpenBLAS that NumPy loaded, or None
    (not Linux, or another BLAS: then blocks that call BLAS may compete with its threads)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line and ".so" in line}
    except OSError:
        return None
    prefixes = ("scipy_openblas_", "openblas_")           # NumPy 2's bundled build, then others
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in prefixes:
            for suffix in ("64_", ""):
                try:
                    return tuple(getattr(library, f"{prefix}{name}{suffix}") for name in names)
                except AttributeError:
                    continue
    return None


def _find_openblas():
    """(set_num_threads, get_num_threads) of NumPy's OpenBLAS, or None."""
    return _openblas_functions("set_num_threads", "get_num_threads")


def describe():
    """NumPy's BLAS and the kernel it chose for this CPU, e.g. "OpenBLAS 0.3.31 (kernel SkylakeX)":
    the same code ranks differently against PyTorch's MKL on different kernels."""
    functions = _openblas_functions("get_config", "get_corename")
    if functions is None:
        return "not an OpenBLAS this process can see"
    for function in functions:
        function.restype = ctypes.c_char_p
    config, kernel = (function().decode() for function in functions)
    return f"{' '.join(config.split()[:2])} (kernel {kernel})"


_openblas = None          # found on first use: NumPy must have loaded OpenBLAS by then


@contextlib.contextmanager
def blas_threads(n):
    """with blas_threads(1): ... runs the body with OpenBLAS on n threads, then restores the count."""
    global _openblas
    if _openblas is None:
        _openblas = _find_openblas() or ()
    if not _openblas:
        yield
        return
    set_threads, get_threads = _openblas
    previous = get_threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(previous)
