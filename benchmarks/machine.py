"""What a benchmark's figures were measured on, and how much memory a process holds.

A speed ratio against PyTorch depends on the CPU (its vector extensions) and on the BLAS each
side calls (NumPy's OpenBLAS kernel, PyTorch's MKL), so every script prints `describe()` with
its figures. The memory figures come from /proc/self/status (Linux).
"""

import os
import platform
import resource


def cpu_model():
    """The CPU's name and its vector extensions, from /proc/cpuinfo (Linux), else the platform's."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            fields = dict((key.strip(), value.strip()) for key, value in
                          (line.split(":", 1) for line in cpuinfo if ":" in line))
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    vectors = [name for name in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
               if name in flags]
    return f"{fields.get('model name', '?')} ({', '.join(vectors) or 'no AVX2'})"


def describe(torch=None):
    """One line: the CPU, NumPy's BLAS and its kernel, and PyTorch's BLAS and CPU capability."""
    import numpretrain.speed.blas
    line = f"CPU: {cpu_model()}; NumPy's BLAS: {numpretrain.speed.blas.describe()}"
    if torch is not None:
        line += (f"; PyTorch's: {torch.backends.mkl.is_available() and 'MKL' or 'no MKL'}, "
                 f"{torch.backends.cpu.get_cpu_capability()}")
    return line


def load():
    return os.getloadavg()[0]


def _status_mb(field):
    """A memory figure of this process from /proc/self/status (Linux), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb():
    return _status_mb("VmRSS")


def peak_rss_mb():
    # VmHWM, the peak RSS of this process's own memory. Not getrusage's ru_maxrss: that one survives
    # exec, so a child started by this (torch-laden) parent would report the parent's peak.
    peak = _status_mb("VmHWM")
    return peak if peak == peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
