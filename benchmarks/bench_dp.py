"""Two cores, four ways: numpretrain's threads, numpretrain over MPI, PyTorch DDP, PyTorch eager.

    python benchmarks/bench_dp.py [--model gpt|bert] [--size small|medium] [--steps N]

The same global batch (workloads.py: small 4 layers x 128 wide, context 64; medium 6 x 256,
context 128; batch 16 for both), the same training step (zero_grad, forward, backward, AdamW;
no clipping, as bench.py), timed as the median of --steps steps after a warm-up:
    1. numpretrain, one process, its threads on both cores (today's default command);
    2. numpretrain, `mpiexec -n 2`, one thread per rank, 8 rows each, gradients summed in
       rank order by training/data_parallel.py (the code `mpiexec -n 2 python -m numpretrain`
       runs); its "sum" column is the share of the step spent there, copies included, and
       its "wait" column the share spent waiting for the slower rank before it (a Barrier
       timed just before the sum keeps the two apart; it costs some microseconds);
    3. PyTorch DistributedDataParallel, gloo backend, 2 processes of one thread each (the
       benchmarks/ SDPA model, torch_sdpa_models.py), 8 rows each;
    4. PyTorch eager, one process, 2 threads.
Each row runs in processes of its own (threads are set before NumPy or torch load), one row
after another: on a machine shared with other work, a burst of load hits whichever row is
running, so the load average is printed beside each row and the ratios carry that noise.

It also times the sum alone (Alltoall + Allgather of the flat gradient, and the in-order adds)
on 2 ranks at a small and a large buffer, the figures docs/distributed.md's projection uses.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
GLOBAL_BATCH = 16
RANKS = 2
WARMUP = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["gpt", "bert"])
    parser.add_argument("--size", choices=["small", "medium"])
    parser.add_argument("--steps", type=int, default=0, help="timed steps per row (default: 20 small, 8 medium)")
    parser.add_argument("--worker", choices=["numpretrain", "mpi", "ddp", "torch", "sum"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----- the workers: each prints one JSON line -----

def half_rows(batch, rank, ranks):
    rows = len(next(iter(batch.values()))) // ranks
    return {key: value[rank * rows:(rank + 1) * rows] for key, value in batch.items()}


def numpretrain_worker(args, data_parallel):
    import numpretrain  # noqa: F401  (first: before NumPy, speed/blas.py)
    import numpy as np
    from workloads import build_numpretrain, make_batch, numpretrain_loss

    from numpretrain.training import data_parallel as dp
    net, opt = build_numpretrain(args.model, args.size)
    batch = make_batch(args.model, args.size)
    named = list(net.named_parameters())
    split = dp.micro_batches(1, named) if data_parallel else None
    if data_parallel:
        batch = half_rows(batch, split.rank, split.size)
    scale = 1.0 / (split.size if data_parallel else 1)

    waited = []

    def step():
        opt.zero_grad()
        (numpretrain_loss(args.model, net, batch) * scale).backward()
        if data_parallel:
            started = time.perf_counter()
            split.comm.Barrier()                 # the faster rank waits here, not inside the sum
            waited.append(time.perf_counter() - started)
            split.keep_gradients(split.mine.start)
            split.sum_gradients()
        opt.step()

    for _ in range(WARMUP):
        step()
    times, summing = [], []
    waited.clear()
    for _ in range(args.steps):
        before, started = split.seconds if data_parallel else 0.0, time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
        summing.append((split.seconds if data_parallel else 0.0) - before)
    if data_parallel:                            # a step's wait: that of whichever rank was faster
        waits = np.max(split.comm.allgather(waited), axis=0)
    if not data_parallel or split.rank == 0:
        from numpretrain.speed import blas, threads
        print(json.dumps(dict(ms=1e3 * float(np.median(times)), sum_ms=1e3 * float(np.median(summing)),
                              wait_ms=1e3 * float(np.median(waits)) if data_parallel else 0.0,
                              params=int(sum(p.data.size for _, p in named)), threads=threads.get_num_threads(),
                              blas=blas.describe())))


def median_ms(step, steps):
    """The median wall time of `steps` calls of step(), in ms, after WARMUP untimed ones."""
    for _ in range(WARMUP):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def torch_worker(args):
    import numpretrain  # noqa: F401
    import torch
    from workloads import build_torch, make_batch, torch_batch, torch_step
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    net, opt = build_torch(args.model, args.size)
    batch = torch_batch(args.model, make_batch(args.model, args.size))
    ms = median_ms(lambda: torch_step(args.model, net, opt, batch), args.steps)
    print(json.dumps(dict(ms=ms, threads=torch.get_num_threads())))


def ddp_rank(rank, args, port, results):
    import numpretrain  # noqa: F401
    import torch
    import torch.distributed as dist
    from workloads import build_torch, make_batch, torch_batch, torch_step
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=RANKS)
    torch.manual_seed(0)
    net, _ = build_torch(args.model, args.size)
    model = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    batch = torch_batch(args.model, half_rows(make_batch(args.model, args.size), rank, RANKS))
    ms = median_ms(lambda: torch_step(args.model, model, opt, batch), args.steps)
    if rank == 0:
        results.put(ms)
    dist.destroy_process_group()


def ddp_worker(args):
    import torch.multiprocessing as mp
    with socket.socket() as s:                   # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(ddp_rank, args=(args, port, results), nprocs=RANKS, start_method="spawn")
    print(json.dumps(dict(ms=results.get(), threads=1)))


def sum_worker(args):
    """The sum alone, at a small and a large flat buffer: what the ring model needs (docs/distributed.md)."""
    import numpretrain  # noqa: F401
    import numpy as np

    from numpretrain.autograd.tensor import Tensor
    from numpretrain.training import data_parallel as dp
    results = {}
    for size in (1_000, 4_000_000):
        params = [("w", Tensor(np.zeros(size, np.float32), requires_grad=True))]
        split = dp.micro_batches(1, params)
        times = []
        for _ in range(30):
            params[0][1].grad = np.ones(size, np.float32)
            split.seconds = 0.0
            split.keep_gradients(split.mine.start)
            split.sum_gradients()
            times.append(split.seconds)
        results[size] = 1e3 * float(np.median(times))
    if split.rank == 0:
        print(json.dumps({"sum_ms": results}))


# ----- the parent: runs the rows, prints the table -----

def run_worker(kind, args, threads):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join([REPO, HERE, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--steps", str(args.steps)]
    if kind != "sum":
        command += ["--model", args.model, "--size", args.size]
    if kind in ("mpi", "sum"):
        env.pop("OPENBLAS_NUM_THREADS")          # each rank's one thread is numpretrain's own default
        env.pop("OMP_NUM_THREADS")
        command = ["mpiexec", "-n", str(RANKS), *command]
    load = os.getloadavg()[0]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if out.returncode:
        return dict(error=(out.stderr.strip().splitlines() or ["failed"])[-1], load=load)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}


def cpu_line():
    sys.path.insert(0, REPO)
    import numpretrain  # noqa: F401
    from numpretrain.speed import blas
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numpy
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return (f"CPU: {model}, {os.cpu_count()} cores | NumPy {numpy.__version__}, BLAS {blas.describe()} | "
            f"PyTorch {torch_version}")


ROWS = [("1 numpretrain, 1 process x 2 threads", "numpretrain", 2),
        ("2 numpretrain, mpiexec -n 2 x 1 thread", "mpi", 1),
        ("3 PyTorch DDP gloo, 2 processes x 1 thread", "ddp", 1),
        ("4 PyTorch eager, 1 process x 2 threads", "torch", 2)]


def main():
    args = parse_args()
    if args.worker:
        args.steps = args.steps or 20
        {"numpretrain": lambda: numpretrain_worker(args, False), "mpi": lambda: numpretrain_worker(args, True),
         "ddp": lambda: ddp_worker(args), "torch": lambda: torch_worker(args), "sum": lambda: sum_worker(args)}[args.worker]()
        return
    print(cpu_line())
    print(f"global batch {GLOBAL_BATCH} per step; median ms of a step; ratios: (row 3 or 4's time) / (this row's), "
          f"above 1 = faster than it")
    print(f"{'model':<6}{'size':<8}{'row':<44}{'ms':>8}{'tok/s':>9}{'vs 3':>7}{'vs 4':>7}{'sum':>7}{'wait':>7}{'load':>6}")
    for model in [args.model] if args.model else ["gpt", "bert"]:
        for size in [args.size] if args.size else ["small", "medium"]:
            row_args = argparse.Namespace(model=model, size=size, steps=args.steps or (20 if size == "small" else 8))
            results = {kind: run_worker(kind, row_args, threads) for _, kind, threads in ROWS}
            tokens = GLOBAL_BATCH * (64 if size == "small" else 128)
            for name, kind, _ in ROWS:
                r = results[kind]
                if "error" in r:
                    print(f"{model:<6}{size:<8}{name:<44}  failed: {r['error']}")
                    continue
                ratios = [f"{results[ref]['ms'] / r['ms']:.2f}x" if "ms" in results[ref] else "-"
                          for ref in ("ddp", "torch")]
                share = f"{100 * r['sum_ms'] / r['ms']:.1f}%" if kind == "mpi" else ""
                wait = f"{100 * r['wait_ms'] / r['ms']:.1f}%" if kind == "mpi" else ""
                print(f"{model:<6}{size:<8}{name:<44}{r['ms']:>8.1f}{tokens / r['ms'] * 1e3:>9,.0f}"
                      f"{ratios[0]:>7}{ratios[1]:>7}{share:>7}{wait:>7}{r['load']:>6.1f}")
            if "ms" in results["mpi"] and "ms" in results["numpretrain"]:
                print(f"{'':<14}mpiexec -n 2 against one process's threads: "
                      f"{results['numpretrain']['ms'] / results['mpi']['ms']:.2f}x the throughput; "
                      f"{results['mpi']['params']:,} parameters summed in {results['mpi']['sum_ms']:.2f} ms")
    sums = run_worker("sum", argparse.Namespace(steps=0), 1)
    if "sum_ms" in sums:
        small, large = sums["sum_ms"]["1000"], sums["sum_ms"]["4000000"]
        print(f"the sum alone on 2 ranks (Alltoall + in-order adds + Allgather, copies included): "
              f"1,000 floats {small:.3f} ms, 4,000,000 floats {large:.2f} ms "
              f"({4e6 * 4 / ((large - small) / 1e3) / 1e6:,.0f} MB/s of float32 gradient summed)")


if __name__ == "__main__":
    main()
