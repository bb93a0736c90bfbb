"""How fast numpretrain trains and generates, beside PyTorch's eager mode on the same machine.

    python benchmarks/bench.py [--only train|generate] [--model gpt|bert] [--size tiny|small|medium]
                               [--no-torch] [--threads N] [--no-memory] [--repeat N] [--no-bias]
                               [--steps-memory N [--memory-size tiny|small|medium]]

Training rows (GPT: causal LM; BERT: MLM + NSP), vocabulary 256, dropout 0, AdamW:
    tiny    2 layers, 2 heads, width  64, context  32, batch  8
    recipe  4 layers, 4 heads, width 128, context  64, batch 12, GPT without Linear biases (nanoGPT's
            CPU character recipe, benchmarks/charlm_parity.py, at vocabulary 256)
    small   4 layers, 4 heads, width 128, context  64, batch 16
    medium  6 layers, 8 heads, width 256, context 128, batch 16
--no-bias: GPT without the Linear layers' biases (nanoGPT's bias=False; LayerNorm keeps its shift,
as numpretrain's does). Each prints the median milliseconds of a full step (zero_grad, forward, backward, AdamW) after
warm-up, tokens per second, achieved GFLOP/s (matrix-multiply FLOPs only, counted below) and that
as a fraction of this run's NumPy float32 matmul peak, and the peak resident memory of a step.

How it measures, and why:
- The peers. PyTorch's main column is the model a speed-minded user writes
  (benchmarks/torch_sdpa_models.py: F.scaled_dot_product_attention, AdamW(foreach=True)); the
  hand-spelled twin (benchmarks/torch_models.py: attention by matmul and softmax, AdamW's default
  loop) is the second column, "twin".
- Timing. numpretrain and both PyTorch peers run in this one process, INTERLEAVED: short blocks
  of steps alternate between them, so a burst of load from another program on the machine hits both
  alike. Medians of the per-step times are reported (minimums beside them); the load average is
  printed with every row. Ratios (PyTorch's time / ours: above 1 means numpretrain is faster)
  are the figures to trust on a shared machine.
- Threads. OPENBLAS_NUM_THREADS (and OMP/MKL) are set to --threads before NumPy is imported and
  torch.set_num_threads(--threads) is called, so both use the same number of cores; numpretrain's
  own threads for elementwise work (numpretrain/speed/threads.py) follow OPENBLAS_NUM_THREADS.
  numpretrain is imported before NumPy, as in the demos, so OpenBLAS's idle threads sleep after
  about 50 microseconds: with OpenBLAS's default (about 0.1 s of spinning) they also slowed down
  the PyTorch steps that followed ours (its KV-cache generation took 1.5x as long).
- The matmul peak is the best GFLOP/s of a (1024, 1024) @ (1024, 1024) float32 np.matmul,
  measured before every row; the highest seen is the peak.
- Memory. Peaks from two frameworks in one process would mix, so each (framework, model, size)
  runs a few steps in a child process of its own (this script with --memory-child), which reports
  its resident memory after importing NumPy and the framework and its peak resident memory
  (VmHWM in /proc/self/status; getrusage's ru_maxrss would include the parent's peak, as it
  survives exec). "peak MB" is the peak less that import baseline: model, optimizer state,
  activations and gradients. --steps-memory N runs N numpretrain steps in a child and prints its
  current RSS after 100 and after N steps (the growth check).
- Equivalence. The PyTorch peers receive numpretrain's weights by name, and the first loss of
  each is printed: they must agree to float32 rounding. Generation prints whether the tokens agree.
- Generation: the small GPT with block_size 128, batch 1, a 28-token prompt continued greedily
  by 100 tokens (so the text fills the 128-token context), with and without the KV cache; each
  peer's own cache (a list of tensors grown by torch.cat). Its peak memory is a child's too.
- Repeats. --repeat N times every row N times over (after a fresh warm-up each time); the ms
  columns are then medians over all N runs' steps, and "speed" is the range of the N runs'
  ratios: on a shared machine one run can be off by 20%, and the range says how far.

Without torch (or with --no-torch) the same rows print numpretrain's figures alone.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SIZE_NAMES = ["tiny", "recipe", "small", "medium"]   # workloads.SIZES (imported below, after numpretrain)
GEN_PROMPT, GEN_NEW, GEN_CONTEXT = 28, 100, 128
# (warm-up steps, alternating blocks, steps per block): about 10-20 s of timing per row
SCHEDULE = {"tiny": (10, 20, 10), "recipe": (4, 12, 3), "small": (4, 12, 3), "medium": (2, 8, 1)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["train", "generate"])
    parser.add_argument("--model", choices=["gpt", "bert"])
    parser.add_argument("--size", choices=SIZE_NAMES)
    parser.add_argument("--no-torch", action="store_true", help="time numpretrain alone")
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    parser.add_argument("--steps-memory", type=int, default=0, metavar="N",
                        help="also run N numpretrain steps and print RSS after 100 and after N")
    parser.add_argument("--memory-size", choices=SIZE_NAMES, default="small",
                        help="size of the --steps-memory run (default small)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time every row N times and print the range of the speed ratios (default 1)")
    parser.add_argument("--no-bias", action="store_true", help="GPT without Linear biases (nanoGPT's bias=False)")
    parser.add_argument("--memory-child", nargs=3, metavar=("FRAMEWORK", "MODEL", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--child-steps", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


ARGS = parse_args()
SPEED_WIDTH = (10 if ARGS.repeat > 1 else 5) * (1 if ARGS.threads > 1 else 2) + 5 * (ARGS.threads == 1)
# "1.02x", or the range of --repeat's runs, "0.93-1.02x"; on one thread "1.02x cpu 1.05x"
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)   # before NumPy (and torch) start their thread pools

import numpretrain  # noqa: E402, F401, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
import numpy as np  # noqa: E402

from machine import describe, load, peak_rss_mb, rss_mb  # noqa: E402
from workloads import (  # noqa: E402
    PEERS, SIZES, VOCAB, build_numpretrain, build_torch, make_batch, numpretrain_step, torch_batch, torch_step)
BIAS = not ARGS.no_bias


# ----- what a step costs: FLOPs and the machine's matmul peak -----

def train_flops(model, size, batch):
    """Matrix-multiply FLOPs of one training step: 2 m k n per product in the forward pass, and
    twice that in the backward pass (one product for the input's gradient, one for the weight's).
    Elementwise work is not counted, as is usual for model FLOPs."""
    s = SIZES[size]
    B, T, C, L = s["B"], s["T"], s["n_embd"], s["n_layer"]
    N = B * T
    per_layer = 2 * N * C * (3 * C + C + 4 * C + 4 * C)          # c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
    per_layer += 2 * 2 * B * T * T * C                            # q k^T and probs v, all heads
    forward = L * per_layer
    if model == "gpt":
        forward += 2 * N * C * VOCAB                              # the tied LM head
    else:
        M = int((batch["mlm_labels"] != -100).sum())
        forward += 2 * M * C * C + 2 * M * C * VOCAB              # MLM dense and decoder, labelled rows only
        forward += 2 * B * C * C + 2 * B * C * 2                  # pooler and NSP
    return 3 * forward


def matmul_peak_gflops(n=1024, repeats=5):
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b, out = a.copy(), np.empty_like(a)
    np.matmul(a, b, out=out)
    best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _timed_cpu(fn):
    """(wall, CPU) seconds of fn(): CPU time leaves out the time spent waiting for a core."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


# ----- memory, in child processes -----

def memory_child(framework, model, size, steps):
    """Runs in a fresh process: print JSON with RSS after imports, peak RSS, and RSS along the way.
    framework: numpretrain or a PyTorch peer (PEERS); model "generate": the generation row, cached."""
    if framework != "numpretrain":
        import torch
        torch.set_num_threads(ARGS.threads)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import torch_sdpa_models  # noqa: F401
    else:
        import numpretrain.models.bert  # noqa: F401
        import numpretrain.models.gpt  # noqa: F401
    baseline = rss_mb()
    if model == "generate":
        prompt = np.random.default_rng(1).integers(0, VOCAB, (1, GEN_PROMPT))
        if framework == "numpretrain":
            net, _ = build_numpretrain("gpt", "small", context=GEN_CONTEXT, bias=BIAS)
            net.eval()
            net.generate(prompt, GEN_NEW, greedy=True, use_cache=True)
        else:
            net, _ = build_torch("gpt", "small", context=GEN_CONTEXT, peer=framework, bias=BIAS)
            net.generate(torch.from_numpy(prompt), GEN_NEW, use_cache=True)
        print(json.dumps(dict(baseline=baseline, peak=peak_rss_mb(), rss_at={})))
        return
    batch = make_batch(model, size)
    if framework != "numpretrain":
        net, opt = build_torch(model, size, peer=framework, bias=BIAS)
        batch, step = torch_batch(model, batch), torch_step
    else:
        net, opt = build_numpretrain(model, size, bias=BIAS)
        step = numpretrain_step
    rss_at = {}
    for i in range(1, steps + 1):
        step(model, net, opt, batch)
        if i in (100, steps):
            rss_at[i] = rss_mb()
    print(json.dumps(dict(baseline=baseline, peak=peak_rss_mb(), rss_at=rss_at)))


def run_memory_child(framework, model, size, steps=5):
    command = [sys.executable, os.path.abspath(__file__), "--threads", str(ARGS.threads)] + ["--no-bias"] * ARGS.no_bias + [
               "--child-steps", str(steps), "--memory-child", framework, model, size]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----- the rows -----

def time_repeated(runners, warmup, blocks, per_block):
    """time_interleaved, --repeat times: ({name: the per-step seconds of every run}, [each run's times])."""
    runs = [time_interleaved(runners, warmup, blocks, per_block) for _ in range(ARGS.repeat)]
    return {name: [t for run in runs for t in run[name]] for name in runs[0]}, runs


def speed_ratios(runs, torch_name, numpretrain_name="numpretrain"):
    """Each run's speed: PyTorch's median step time / numpretrain's."""
    return [float(np.median(run[torch_name]) / np.median(run[numpretrain_name])) for run in runs]


def time_interleaved(runners, warmup, blocks, per_block):
    """runners: {name: step function}. Warm each up, then alternate blocks of steps between them.
    Returns {name: list of per-step seconds}, and {("cpu", name): their CPU seconds}."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times = {key: [] for name in runners for key in (name, ("cpu", name))}
    for b in range(blocks):
        order = list(runners.items())
        if b % 2:
            order.reverse()                        # neither always goes first after the other
        for name, fn in order:
            for _ in range(per_block):
                wall, cpu = _timed_cpu(fn)
                times[name].append(wall)
                times[("cpu", name)].append(cpu)
    return times


def train_row(model, size, torch_ok, peak_holder):
    peak_holder[0] = max(peak_holder[0], matmul_peak_gflops())
    load_before = load()
    batch = make_batch(model, size)
    net, opt = build_numpretrain(model, size, bias=BIAS)
    runners = {"numpretrain": lambda: numpretrain_step(model, net, opt, batch)}
    first = {}
    if torch_ok:
        import torch_models
        tbatch = torch_batch(model, batch)
        for peer in PEERS:
            tnet, topt = build_torch(model, size, peer=peer, bias=BIAS)
            torch_models.copy_weights(net, tnet)
            runners[peer] = lambda tnet=tnet, topt=topt: torch_step(model, tnet, topt, tbatch)
    for name, fn in runners.items():
        first[name] = fn()                          # same weights, same batch: the same first loss
    times, runs = time_repeated(runners, *SCHEDULE[size])
    flops = train_flops(model, size, batch)
    tokens = SIZES[size]["B"] * SIZES[size]["T"]
    row = dict(model=model, size=size, load=(load_before, load()), first_loss=first, flops=flops,
               ratios={peer: speed_ratios(runs, peer) for peer in PEERS} if torch_ok else {},
               cpu_ratios={peer: speed_ratios(runs, ("cpu", peer), ("cpu", "numpretrain")) for peer in PEERS}
               if torch_ok else {})
    for name, ts in times.items():
        median = float(np.median(ts))
        row[name] = dict(ms=1e3 * median, min_ms=1e3 * min(ts), tok_s=tokens / median, gflops=flops / median / 1e9)
    return row


def generate_rows(torch_ok):
    from numpretrain.autograd.tensor import no_grad
    net, _ = build_numpretrain("gpt", "small", context=GEN_CONTEXT, bias=BIAS)
    net.eval()
    prompt = np.random.default_rng(1).integers(0, VOCAB, (1, GEN_PROMPT))
    runners, outputs = {}, {}
    for cache in (True, False):
        runners[("numpretrain", cache)] = (
            lambda cache=cache: outputs.__setitem__(("numpretrain", cache), net.generate(
                prompt, GEN_NEW, greedy=True, use_cache=cache)))
    if torch_ok:
        import torch
        import torch_models
        tprompt = torch.from_numpy(prompt)
        for peer in PEERS:
            tnet, _ = build_torch("gpt", "small", context=GEN_CONTEXT, peer=peer, bias=BIAS)
            torch_models.copy_weights(net, tnet)
            for cache in (True, False):
                runners[(peer, cache)] = (
                    lambda cache=cache, peer=peer, tnet=tnet: outputs.__setitem__((peer, cache), tnet.generate(
                        tprompt, GEN_NEW, use_cache=cache).numpy()))
    load_before = load()
    with no_grad():
        times, runs = time_repeated(runners, warmup=2, blocks=8, per_block=1)
    rows = []
    for cache in (True, False):
        row = dict(cache=cache, load=(load_before, load()))
        for framework in ("numpretrain",) + PEERS:
            if (framework, cache) in times:
                median = float(np.median(times[(framework, cache)]))
                row[framework] = dict(ms=1e3 * median, tok_s=GEN_NEW / median)
        if torch_ok:
            row["same_tokens"] = all(np.array_equal(outputs[("numpretrain", cache)], outputs[(peer, cache)])
                                     for peer in PEERS)
            row["ratios"] = {peer: speed_ratios(runs, (peer, cache), ("numpretrain", cache)) for peer in PEERS}
            row["cpu_ratios"] = {peer: speed_ratios(runs, ("cpu", (peer, cache)), ("cpu", ("numpretrain", cache)))
                                 for peer in PEERS}
        rows.append(row)
    return rows


# ----- printing -----

def print_train(rows, peak, memory):
    print(f"\nTraining step (median ms after warm-up; GFLOP/s counts matmul FLOPs; %pk = of the "
          f"{peak:.0f} GFLOP/s NumPy matmul peak; mem = peak RSS above the import, MB)"
          + ("; GPT without Linear biases" if ARGS.no_bias else ""))
    head = f"{'model':5} {'size':6} | {'ms':>7} {'(min)':>7} {'tok/s':>7} {'GF/s':>5} {'%pk':>4} {'mem':>5}"
    has_torch = any("sdpa" in r for r in rows)
    if has_torch:
        head += (f" | {'SDPA ms':>8} {'%pk':>4} {'mem':>5} | {'speed':>{SPEED_WIDTH}} {'mem':>5}"
                 f" | {'twin ms':>8} {'speed':>{SPEED_WIDTH}}")
    print(head + f" | {'load':>9} | first loss")
    for r in rows:
        n, key = r["numpretrain"], (r["model"], r["size"])
        mem = memory.get(("numpretrain",) + key)
        line = (f"{r['model']:5} {r['size']:6} | {n['ms']:7.1f} {n['min_ms']:7.1f} {n['tok_s']:7.0f} "
                f"{n['gflops']:5.1f} {100 * n['gflops'] / peak:3.0f}% {_mem(mem):>5}")
        if "sdpa" in r:
            t, tmem = r["sdpa"], memory.get(("sdpa",) + key)
            mem_ratio = f"{_above(mem) / _above(tmem):.2f}x" if mem and tmem else "-"
            line += (f" | {t['ms']:8.1f} {100 * t['gflops'] / peak:3.0f}% {_mem(tmem):>5} | "
                     f"{_speed(r, 'sdpa'):>{SPEED_WIDTH}} {mem_ratio:>5} | {r['twin']['ms']:8.1f} "
                     f"{_speed(r, 'twin'):>{SPEED_WIDTH}}")
        elif has_torch:
            line += " | (torch not run)"
        losses = " / ".join(f"{v:.5f}" for v in r["first_loss"].values())
        print(line + f" | {r['load'][0]:4.2f}-{r['load'][1]:4.2f} | {losses}")
    if has_torch:
        print("speed = PyTorch ms / numpretrain ms (above 1: numpretrain is faster"
              + (f"; the lowest and highest of {ARGS.repeat} runs" if ARGS.repeat > 1 else "")
              + "; cpu: the ratio of CPU times, leaving out waits for a core" * (ARGS.threads == 1) + "); "
              "SDPA: benchmarks/torch_sdpa_models.py, the main peer; twin: torch_models.py, attention by hand; "
              "mem = numpretrain peak / SDPA peak (below 1: numpretrain uses less)")


def _speed(row, peer):
    """The speed ratio against a peer, or the range of --repeat's; on one thread, with the ratio of
    CPU times beside it (which leaves out the waits for a core on a loaded machine)."""
    def text(ratios):
        return f"{min(ratios):.2f}-{max(ratios):.2f}x" if len(ratios) > 1 else f"{ratios[0]:4.2f}x"
    if ARGS.threads == 1:
        return f"{text(row['ratios'][peer])} cpu {text(row['cpu_ratios'][peer])}"
    return text(row["ratios"][peer])


def _above(mem):
    return mem["peak"] - mem["baseline"]


def _mem(mem):
    return "-" if not mem else f"{_above(mem):.0f}"


def print_generate(rows, memory):
    print(f"\nGeneration: small GPT, batch 1, {GEN_PROMPT}-token prompt + {GEN_NEW} new tokens "
          f"(greedy) in a {GEN_CONTEXT}-token context")
    head = f"{'KV cache':8} | {'ms':>7} {'tok/s':>7}"
    if "sdpa" in rows[0]:
        head += (f" | {'SDPA ms':>8} {'tok/s':>7} | {'speed':>{SPEED_WIDTH}} | {'twin ms':>8} "
                 f"{'speed':>{SPEED_WIDTH}} | same tokens")
    print(head + " | load")
    for r in rows:
        n = r["numpretrain"]
        line = f"{'yes' if r['cache'] else 'no':8} | {n['ms']:7.1f} {n['tok_s']:7.0f}"
        if "sdpa" in r:
            t = r["sdpa"]
            line += (f" | {t['ms']:8.1f} {t['tok_s']:7.0f} | {_speed(r, 'sdpa'):>{SPEED_WIDTH}} | "
                     f"{r['twin']['ms']:8.1f} {_speed(r, 'twin'):>{SPEED_WIDTH}} | {r['same_tokens']}")
        print(line + f" | {r['load'][0]:4.2f}-{r['load'][1]:4.2f}")
    if len(rows) == 2:
        print(f"the cache makes numpretrain {rows[1]['numpretrain']['ms'] / rows[0]['numpretrain']['ms']:.1f}x faster"
              + (f", the SDPA peer {rows[1]['sdpa']['ms'] / rows[0]['sdpa']['ms']:.1f}x" if "sdpa" in rows[0] else ""))
    if memory:
        print("peak memory of cached generation, MB above the import (model included): "
              + ", ".join(f"{name} {_mem(mem)}" for name, mem in memory.items()))


def main():
    if ARGS.memory_child:
        memory_child(*ARGS.memory_child, steps=ARGS.child_steps)
        return
    torch_ok = False
    if not ARGS.no_torch:
        try:
            import torch
            torch.set_num_threads(ARGS.threads)
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            torch_ok = True
        except ImportError:
            print("PyTorch is not installed: numpretrain's figures only "
                  "(pip install torch==2.13.0 for the side-by-side comparison)")
    print(f"numpretrain {numpretrain.__version__}, NumPy {np.__version__}"
          + (f", PyTorch {torch.__version__}" if torch_ok else "") +
          f"; {ARGS.threads} thread(s) (numpretrain: {numpretrain.speed.threads.get_num_threads()}); {os.cpu_count()} CPUs; load average {load():.2f}")
    print(describe(torch if torch_ok else None))
    models = [ARGS.model] if ARGS.model else ["gpt", "bert"]
    sizes = [ARGS.size] if ARGS.size else list(SIZES)
    peak = [0.0]
    if ARGS.only != "generate":
        pairs = [(m, s) for m in models for s in sizes if ARGS.size or (m, s) != ("bert", "recipe")]  # a GPT recipe
        rows = [train_row(m, s, torch_ok, peak) for m, s in pairs]
        memory = {}
        if not ARGS.no_memory:
            for m, s in pairs:
                for framework in ("numpretrain", "sdpa") if torch_ok else ("numpretrain",):
                    memory[(framework, m, s)] = run_memory_child(framework, m, s)
        print_train(rows, peak[0], memory)
    if ARGS.only != "train" and (ARGS.model in (None, "gpt")):
        rows = generate_rows(torch_ok)
        memory = {} if ARGS.no_memory else {
            framework: run_memory_child(framework, "generate", "small")
            for framework in (("numpretrain", "sdpa") if torch_ok else ("numpretrain",))}
        print_generate(rows, memory)
    if ARGS.steps_memory:
        print(f"\nMemory growth: numpretrain, {ARGS.steps_memory} steps at size {ARGS.memory_size}")
        for m in models:
            result = run_memory_child("numpretrain", m, ARGS.memory_size, steps=ARGS.steps_memory)
            at = result["rss_at"]
            after_100 = at.get("100", float("nan"))
            after_n = at[str(ARGS.steps_memory)]
            print(f"{m:5}: RSS after 100 steps {after_100:.1f} MB, after {ARGS.steps_memory} steps "
                  f"{after_n:.1f} MB (growth {after_n - after_100:+.1f} MB); peak {result['peak']:.1f} MB")
    if peak[0]:
        print(f"\nNumPy float32 matmul peak this run: {peak[0]:.0f} GFLOP/s; load average now {load():.2f}")


if __name__ == "__main__":
    main()
