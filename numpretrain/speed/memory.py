"""Let a training loop reuse the arrays it freed, instead of returning them to the kernel.

A training step allocates and frees its activations and gradients, arrays of a few MB each,
about 100 MB for the benchmark's small GPT. With glibc's defaults an array above
M_MMAP_THRESHOLD gets fresh pages from the kernel, and freed memory at the top of the heap goes
back to the kernel once more than M_TRIM_THRESHOLD of it is free, so every step page-faults all
of it in again: 24,000 page faults per step, a third of the CPU time of that step (zeroing pages
in the kernel). Raising both thresholds keeps freed memory for the next step. The peak is
unchanged; the process just does not shrink between steps.

Done once, at the first backward() (so importing numpretrain changes nothing); Linux with glibc
only; NUMPRETRAIN_MALLOC_TUNING=0 keeps glibc's defaults.
"""

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # mallopt's parameter numbers, from <malloc.h>
MMAP_THRESHOLD_BYTES = 32 << 20                  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD_BYTES = 1 << 30                   # keep up to 1 GiB of freed memory for reuse
_tuned = False


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds, the first time it is called; then do nothing."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    if os.environ.get("NUMPRETRAIN_MALLOC_TUNING", "1") == "0":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    except (OSError, AttributeError):            # not glibc (macOS, musl, Windows): nothing to tune
        pass
