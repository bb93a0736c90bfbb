"""Where a training step's time goes, op by op: numpretrain's graph ops beside PyTorch's profiler.

    python benchmarks/op_profile.py [--model gpt|bert] [--size tiny|recipe|small|medium] [--threads N]
                                    [--steps N] [--no-torch] [--peer sdpa|twin] [--rounds N]

The workloads are bench.py's (benchmarks/workloads.py). For numpretrain, this script (not the
library) wraps Tensor.from_op while it runs, so that every op's backward runs under a timer; an
op's forward time is the time since the op before it was made, so the module code between two
ops counts toward the later one. AdamW's step is timed whole. For PyTorch, the table is
torch.profiler's self CPU time per aten op over as many steps (the profiler's own overhead makes
its steps a little slower than bench.py's). All times are milliseconds per step, every call of
an op summed. The PyTorch model is the SDPA peer (benchmarks/torch_sdpa_models.py) unless
--peer twin. On a loaded machine, --rounds N profiles both sides N times, in turns, and keeps
each figure's minimum over the rounds.

Last, both sides side by side by kind of work (CATEGORIES): the matrix products of the Linear
layers and the LM head, attention, LayerNorm, GELU, cross-entropy, embedding, AdamW, and the
rest (for numpretrain: the other ops and the Python between ops; for PyTorch: every other aten
op, autograd's bookkeeping and the profiler's own cost), so that where numpretrain loses is one
column against the other, and the products' ratio (the BLAS's share) is printed beside the rest.
"""

import argparse
import collections
import os
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["gpt", "bert"], default="bert")
    parser.add_argument("--size", choices=["tiny", "recipe", "small", "medium"], default="small")
    parser.add_argument("--peer", choices=["sdpa", "twin"], default="sdpa", help="the PyTorch model (default sdpa)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=20, help="steps timed, after 3 of warm-up (default 20)")
    parser.add_argument("--no-torch", action="store_true", help="profile numpretrain alone")
    parser.add_argument("--rows", type=int, default=15, help="PyTorch ops shown (default 15)")
    parser.add_argument("--rounds", type=int, default=1, help="profile both sides N times in turns, keep minimums")
    return parser.parse_args(argv)


ARGS = parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)   # before NumPy (and torch) start their thread pools

import numpretrain  # noqa: E402, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
from numpretrain.autograd.tensor import Tensor  # noqa: E402
from workloads import build_numpretrain, build_torch, make_batch, numpretrain_loss, torch_batch, torch_step  # noqa: E402


class OpTimer:
    """Inside `with OpTimer() as timer:`, every op made adds to timer.forward[op] the time since
    `timer.mark()` or the previous op, and its backward's time to timer.backward[op]."""

    def __init__(self):
        self.forward, self.backward = collections.Counter(), collections.Counter()
        self.last = time.perf_counter()

    def mark(self):
        self.last = time.perf_counter()

    def __enter__(self):
        self.original = Tensor.from_op
        timer = self

        def from_op(data, parents, backward, op):
            now = time.perf_counter()
            timer.forward[op] += now - timer.last
            timer.last = now

            def timed_backward(grad):
                start = time.perf_counter()
                grads = backward(grad)
                timer.backward[op] += time.perf_counter() - start
                return grads
            return timer.original(data, parents, timed_backward, op)

        Tensor.from_op = staticmethod(from_op)
        return self

    def __exit__(self, *exc):
        Tensor.from_op = staticmethod(self.original)


def profile_numpretrain(model, size, steps):
    net, opt = build_numpretrain(model, size)
    batch = make_batch(model, size)
    phases = collections.Counter()
    with OpTimer() as timer:
        for step in range(3 + steps):
            if step == 3:                                 # warm-up done: start counting
                timer.forward.clear(), timer.backward.clear(), phases.clear()
            opt.zero_grad()
            start = time.perf_counter()
            timer.mark()
            loss = numpretrain_loss(model, net, batch)
            forward_end = time.perf_counter()
            loss.backward()
            backward_end = time.perf_counter()
            opt.step()
            end = time.perf_counter()
            phases["forward"] += forward_end - start
            phases["backward"] += backward_end - forward_end
            phases["AdamW"] += end - backward_end
    per_step = {name: 1e3 * seconds / steps for name, seconds in phases.items()}
    rows = [(op, 1e3 * timer.forward[op] / steps, 1e3 * timer.backward[op] / steps)
            for op in set(timer.forward) | set(timer.backward)]
    return per_step, sorted(rows, key=lambda row: -(row[1] + row[2]))


def profile_torch(model, size, steps):
    import torch_models
    from torch.profiler import profile
    net, _ = build_numpretrain(model, size)
    tnet, topt = build_torch(model, size, peer=ARGS.peer)
    torch_models.copy_weights(net, tnet)
    batch = torch_batch(model, make_batch(model, size))
    for _ in range(3):
        torch_step(model, tnet, topt, batch)
    start = time.perf_counter()
    with profile() as prof:
        for _ in range(steps):
            torch_step(model, tnet, topt, batch)
    step_ms = 1e3 * (time.perf_counter() - start) / steps
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return step_ms, [(e.key, e.self_cpu_time_total / 1e3 / steps, e.count // steps) for e in events]


# kind of work: (numpretrain's op names, PyTorch profiler keys containing one of these), first match wins
CATEGORIES = {
    "matrix products": (("linear", "matmul"), ("aten::mm", "aten::addmm")),
    "cross-entropy": (("cross_entropy",), ("log_softmax", "nll_loss", "cross_entropy")),   # before softmax
    "attention": (("self_attention",), ("scaled_dot_product", "aten::bmm", "softmax", "masked_fill")),
    "LayerNorm": (("layer_norm",), ("layer_norm",)),
    "GELU": (("gelu_tanh", "gelu_erf", "gelu"), ("gelu",)),
    "embedding": (("embedding",), ("embedding",)),
    "AdamW": (("AdamW",), ("Optimizer", "_foreach", "lerp", "addcdiv", "addcmul", "aten::sqrt")),
}


def category(name, side):
    """The kind of work of numpretrain's op (side 0) or of a PyTorch profiler key (side 1)."""
    for kind, names in CATEGORIES.items():
        if (name in names[0]) if side == 0 else any(part in name for part in names[1]):
            return kind
    return "the rest"


def print_categories(per_step, rows, torch_step_ms, events):
    ours, theirs = collections.Counter(), collections.Counter()
    for op, forward_ms, backward_ms in rows:
        ours[category(op, 0)] += forward_ms + backward_ms
    ours["AdamW"] += per_step["AdamW"]
    ours["the rest"] += sum(per_step.values()) - sum(ours.values())     # Python between the timed ops
    for name, ms, _ in events:
        theirs[category(name, 1)] += ms
    theirs["the rest"] += torch_step_ms - sum(theirs.values())          # not in any op's self time
    print("\nBy kind of work, ms a step (speed = PyTorch / numpretrain, above 1: numpretrain is faster)")
    print(f"{'':16} {'numpretrain':>11} {'PyTorch':>8} {'speed':>6}")
    for kind in list(CATEGORIES) + ["the rest"]:
        print(f"{kind:16} {ours[kind]:11.2f} {theirs[kind]:8.2f} {theirs[kind] / max(ours[kind], 1e-9):5.2f}x")
    products = "matrix products"
    rest_ours, rest_theirs = sum(ours.values()) - ours[products], sum(theirs.values()) - theirs[products]
    print(f"{'all but products':16} {rest_ours:11.2f} {rest_theirs:8.2f} {rest_theirs / rest_ours:5.2f}x")
    print(f"{'whole step':16} {sum(ours.values()):11.2f} {sum(theirs.values()):8.2f} "
          f"{sum(theirs.values()) / sum(ours.values()):5.2f}x   (PyTorch's under its profiler)")


def _minimum_of_rounds(results, timed_columns):
    """results: each round's (a figure or a dict of them, rows (key, *columns)) -> the same with
    each figure's minimum over the rounds, rows sorted by the sum of their first timed_columns."""
    first = [result[0] for result in results]
    first = {k: min(f[k] for f in first) for k in first[0]} if isinstance(first[0], dict) else min(first)
    rows = collections.defaultdict(list)
    for _, result_rows in results:
        for key, *columns in result_rows:
            rows[key].append(columns)
    rows = [(key, *map(min, zip(*columns))) for key, columns in rows.items()]
    return first, sorted(rows, key=lambda row: -sum(row[1:1 + timed_columns]))


def main():
    where = f"{ARGS.model} {ARGS.size}, {ARGS.threads} thread(s) (numpretrain: {numpretrain.speed.threads.get_num_threads()})"
    torch = None
    if not ARGS.no_torch:
        try:
            import torch
            torch.set_num_threads(ARGS.threads)
        except ImportError:
            print("PyTorch is not installed (pip install torch==2.13.0 for its side of the comparison)\n")
    ours, theirs = [], []
    for _ in range(ARGS.rounds):                          # in turns: a burst of load hits both sides
        ours.append(profile_numpretrain(ARGS.model, ARGS.size, ARGS.steps))
        if torch is not None:
            theirs.append(profile_torch(ARGS.model, ARGS.size, ARGS.steps))
    per_step, rows = _minimum_of_rounds(ours, timed_columns=2)     # forward, backward
    total = sum(per_step.values())
    print(f"numpretrain, {where}: {total:.1f} ms a step (forward {per_step['forward']:.1f}, backward "
          f"{per_step['backward']:.1f}, AdamW {per_step['AdamW']:.1f}), mean of {ARGS.steps} steps"
          + (f", the least of {ARGS.rounds} rounds" if ARGS.rounds > 1 else ""))
    print(f"{'op':16} {'forward ms':>10} {'backward ms':>11} {'total':>7}")
    for op, forward_ms, backward_ms in rows:
        print(f"{op:16} {forward_ms:10.2f} {backward_ms:11.2f} {forward_ms + backward_ms:7.2f}")
    if torch is None:
        return
    step_ms, events = _minimum_of_rounds(theirs, timed_columns=1)  # ms (then calls)
    print(f"\nPyTorch {torch.__version__}, the same model: {step_ms:.1f} ms a step under the profiler; "
          f"self CPU time of its {ARGS.rows} costliest ops")
    print(f"{'op':48} {'ms':>7} {'calls':>5}")
    for name, ms, calls in events[:ARGS.rows]:
        print(f"{name[:48]:48} {ms:7.2f} {calls:5d}")
    print_categories(per_step, rows, step_ms, events)


if __name__ == "__main__":
    sys.exit(main())
