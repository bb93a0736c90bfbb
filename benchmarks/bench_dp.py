"""Two cores, five ways, in turns: numpretrain's threads, over MPI and on one thread; PyTorch DDP and eager.

    python benchmarks/bench_dp.py [--model gpt|bert] [--size tiny|small|medium] [--rounds N] [--steps N]

The same global batch (workloads.py: small 4 layers x 128 wide, context 64; medium 6 x 256,
context 128; batch 16 for both), the same training step (zero_grad, forward, backward, AdamW;
no clipping, as bench.py), in five rows:
    1. numpretrain, one process, its threads on both cores (today's default command);
    2. numpretrain, `mpiexec -n 2`, one thread per rank, 8 rows each, gradients summed in
       rank order by training/data_parallel.py (the code `mpiexec -n 2 python -m numpretrain`
       runs); its "sum" column is the share of the step spent there, copies included, and
       its "wait" column the share spent waiting for the slower rank before it (a Barrier
       timed just before the sum keeps the two apart; it costs some microseconds);
    3. PyTorch DistributedDataParallel, gloo backend, 2 processes of one thread each (the
       benchmarks/ SDPA model, torch_sdpa_models.py), 8 rows each;
    4. PyTorch eager, one process, 2 threads;
    5. numpretrain, one process, one thread: the yardstick of what two cores buy. Two cores can
       at best halve its time, so row 1's and row 2's speed-ups over it (printed after the
       rows, at most 2.00x) say how far each is from perfect.

In turns. This project's 2-core VMs run in phases: the same single-threaded step takes 57 ms
for some seconds and 100 ms for the next. Rows timed one after another would each catch a
different phase, so every row's processes start once and then sleep, each rank blocked reading
its own named pipe, while the others run. Round after round, each row in turn runs one untimed
step and then --steps timed ones (the order alternates between rounds, and a pause before
every turn lets the last row's spinning threads go to sleep). A row's time is the median of
all its timed steps; a ratio between two rows is the median, over rounds, of the ratio of their
medians in that round, so both sides of a ratio are measured within seconds of each other. The
first round warms up and is not timed. The last line says how much CPU the sleeping rows used
while another row ran. (`mpiexec -bind-to core` was tried as a sixth row: 1.00x row 2.)

It also times the sum alone (Alltoall + Allgather of the flat gradient, and the in-order adds)
on 2 ranks at a small and a large buffer, the figures docs/distributed.md's projection uses.
"""

import argparse
import errno
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
GLOBAL_BATCH = 16
RANKS = 2
PAUSE = 0.1        # seconds before each turn: OpenMP's and OpenBLAS's idle threads stop spinning well within it


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["gpt", "bert"])
    parser.add_argument("--size", choices=["tiny", "small", "medium"])
    parser.add_argument("--rounds", type=at_least_one, help="timed rounds (default: 20 small, 8 medium)")
    parser.add_argument("--steps", type=at_least_one, help="timed steps per row per round (default: 3 small, 1 medium)")
    parser.add_argument("--worker", choices=["numpretrain", "mpi", "ddp", "torch", "serial", "sum"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--pipes", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def at_least_one(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


# ----- the workers: each rank sleeps on its named pipe until told how many steps to run -----

def serve(args, rank, step, report):
    """Run `step()` the number of times each line of this rank's pipe says, after one untimed step
    (the first step after a sleep runs on cold caches and sleeping threads: 15-20% slower for row 1);
    after each turn rank 0 prints report(seconds of each timed step) as one JSON line. The end of
    the pipe (the parent closed it) ends the worker."""
    with open(os.path.join(args.pipes, f"{args.worker}.{rank}")) as commands:
        for line in commands:
            step()
            times = []
            for _ in range(int(line)):
                started = time.perf_counter()
                step()
                times.append(time.perf_counter() - started)
            result = report(times)
            if rank == 0:
                print(json.dumps(result), flush=True)


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
    waited, summed = [], []

    def step():
        opt.zero_grad()
        (numpretrain_loss(args.model, net, batch) * scale).backward()
        if data_parallel:
            started = time.perf_counter()
            split.comm.Barrier()                 # the faster rank waits here, not inside the sum
            waited.append(time.perf_counter() - started)
            before = split.seconds
            split.keep_gradients(split.mine.start)
            split.sum_gradients()
            summed.append(split.seconds - before)
        opt.step()

    def report(times):
        result = dict(ms=[1e3 * t for t in times], params=int(sum(p.data.size for _, p in named)))
        if data_parallel:                        # a step's wait: that of whichever rank was faster
            result.update(sum_ms=[1e3 * t for t in summed],
                          wait_ms=[1e3 * t for t in np.max(split.comm.allgather(waited), axis=0)])
            waited.clear()
            summed.clear()
        return result

    serve(args, split.rank if data_parallel else 0, step, report)


def torch_worker(args):
    import numpretrain  # noqa: F401
    import torch
    from workloads import build_torch, make_batch, torch_batch, torch_step
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    net, opt = build_torch(args.model, args.size)
    batch = torch_batch(args.model, make_batch(args.model, args.size))
    serve(args, 0, lambda: torch_step(args.model, net, opt, batch), lambda times: dict(ms=[1e3 * t for t in times]))


def ddp_rank(rank, args, port):
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
    serve(args, rank, lambda: torch_step(args.model, model, opt, batch),
          lambda times: dict(ms=[1e3 * t for t in times]))
    dist.destroy_process_group()


def ddp_worker(args):
    import torch.multiprocessing as mp
    with socket.socket() as s:                   # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(ddp_rank, args=(args, port), nprocs=RANKS, start_method="spawn")


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


# ----- the parent: starts the rows, runs them in turns, prints the table -----

def worker_env(threads):
    """threads=None: set no count, as `mpiexec -n 2 python -m numpretrain` runs (each rank then
    keeps to one thread by numpretrain's own default)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, HERE, os.environ.get("PYTHONPATH", "")])}
    if threads is not None:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


class Row:
    """One row's processes, started once; `turn(n)` wakes every rank to run n steps and returns
    rank 0's report."""

    def __init__(self, kind, threads, ranks, args, pipes):
        self.kind = kind
        command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--pipes", pipes,
                   "--model", args.model, "--size", args.size]
        if kind == "mpi":
            command = ["mpiexec", "-n", str(ranks), *command]
        env = worker_env(threads)
        paths = [os.path.join(pipes, f"{kind}.{rank}") for rank in range(ranks)]
        for path in paths:
            os.mkfifo(path)
        self.errors = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.errors, text=True, env=env)
        self.commands = [self._open_for_writing(path) for path in paths]

    def _open_for_writing(self, path):
        """The pipe's writing end, once its rank has opened the reading end (it does after building
        its model); a row whose processes died first fails here instead of hanging."""
        while True:
            try:
                return os.fdopen(os.open(path, os.O_WRONLY | os.O_NONBLOCK), "w")
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
            if self.process.poll() is not None:
                raise RuntimeError(self.failure())
            time.sleep(0.05)

    def failure(self):
        self.errors.seek(0)
        return (self.errors.read().strip().splitlines() or [f"exited with {self.process.returncode}"])[-1]

    def turn(self, steps):
        for pipe in self.commands:
            pipe.write(f"{steps}\n")
            pipe.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(self.failure())
        return json.loads(line)

    def cpu_seconds(self):
        """User + system CPU time of this row's processes and all their descendants so far."""
        return sum(_cpu_seconds(pid) for pid in _descendants(self.process.pid))

    def close(self):
        for pipe in self.commands:
            pipe.close()                         # each rank reads the end of its pipe and exits
        self.process.wait(timeout=60)


def _descendants(pid):
    """pid and every process below it (Linux /proc; just pid elsewhere)."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as children:
                kids = [int(child) for child in children.read().split()]
        except OSError:
            kids = []
        found += kids
        frontier += kids
    return found


def _cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")     # utime + stime


ROWS = [("1 numpretrain, 1 process x 2 threads", "numpretrain", 2, 1),
        ("2 numpretrain, mpiexec -n 2 x 1 thread", "mpi", None, RANKS),
        ("3 PyTorch DDP gloo, 2 processes x 1 thread", "ddp", 1, RANKS),
        ("4 PyTorch eager, 1 process x 2 threads", "torch", 2, 1),
        ("5 numpretrain, 1 process x 1 thread", "serial", 1, 1)]


def run_in_turns(args):
    """{kind: [report of each timed round]} and the most CPU a sleeping row used in any turn, as
    a share of one core."""
    rounds = {kind: [] for _, kind, _, _ in ROWS}
    idle_share = 0.0
    with tempfile.TemporaryDirectory() as pipes:
        rows = []
        try:
            for _, kind, threads, ranks in ROWS:
                rows.append(Row(kind, threads, ranks, args, pipes))
            for number in range(args.rounds + 1):             # round 0 warms up
                for row in rows if number % 2 else rows[::-1]:
                    time.sleep(PAUSE)
                    others = [other for other in rows if other is not row]
                    before, started = [other.cpu_seconds() for other in others], time.perf_counter()
                    report = row.turn(args.steps if number else 2)
                    seconds = time.perf_counter() - started
                    used = max(other.cpu_seconds() - b for other, b in zip(others, before))
                    if number:
                        rounds[row.kind].append(report)
                        idle_share = max(idle_share, used / seconds)
        finally:
            for row in rows:
                if row.process.poll() is None:
                    row.close()
    return rounds, idle_share


def median_ratio(rounds, over, under):
    """The median over rounds, and the range, of median(over's steps) / median(under's steps)."""
    ratios = [statistics.median(a["ms"]) / statistics.median(b["ms"]) for a, b in zip(rounds[over], rounds[under])]
    return statistics.median(ratios), min(ratios), max(ratios)


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
        torch_version = f"{torch.__version__}, BLAS {'MKL' if torch.backends.mkl.is_available() else 'other'}"
    except ImportError:
        torch_version = "not installed"
    return (f"CPU: {model}, {os.cpu_count()} cores | NumPy {numpy.__version__}, BLAS {blas.describe()} | "
            f"PyTorch {torch_version}")


def print_rows(model, size, rounds):
    tokens = GLOBAL_BATCH * {"tiny": 32, "small": 64, "medium": 128}[size]
    for name, kind, _, _ in ROWS:
        steps = [ms for report in rounds[kind] for ms in report["ms"]]
        ms = statistics.median(steps)
        ratios = [f"{median_ratio(rounds, peer, kind)[0]:.2f}x" for peer in ("ddp", "torch")]
        share = wait = ""
        if kind == "mpi":
            share = f"{100 * statistics.median(t for r in rounds[kind] for t in r['sum_ms']) / ms:.1f}%"
            wait = f"{100 * statistics.median(t for r in rounds[kind] for t in r['wait_ms']) / ms:.1f}%"
        print(f"{model:<6}{size:<8}{name:<44}{ms:>8.1f}{tokens / ms * 1e3:>9,.0f}{ratios[0]:>7}{ratios[1]:>7}"
              f"{share:>7}{wait:>7}")
    for peer, label in (("numpretrain", "one process's threads (row 1)"), ("ddp", "PyTorch DDP (row 3)"),
                        ("torch", "PyTorch eager (row 4)")):
        middle, low, high = median_ratio(rounds, peer, "mpi")
        print(f"{'':<14}mpiexec -n 2 against {label}: {middle:.2f}x the throughput "
              f"(rounds {low:.2f}-{high:.2f}x)")
    for kind, label in (("numpretrain", "one process's threads (row 1)"), ("mpi", "mpiexec -n 2 (row 2)")):
        middle, low, high = median_ratio(rounds, "serial", kind)
        print(f"{'':<14}{label} against one thread (row 5): {middle:.2f}x the throughput of at most 2.00x "
              f"(rounds {low:.2f}-{high:.2f}x)")
    print(f"{'':<14}{rounds['mpi'][0]['params']:,} parameters summed in "
          f"{statistics.median(t for r in rounds['mpi'] for t in r['sum_ms']):.2f} ms; "
          f"{len(rounds['mpi'])} timed rounds of {len(rounds['mpi'][0]['ms'])} steps per row")


def main():
    args = parse_args()
    if args.worker:
        {"numpretrain": lambda: numpretrain_worker(args, False), "serial": lambda: numpretrain_worker(args, False),
         "mpi": lambda: numpretrain_worker(args, True),
         "ddp": lambda: ddp_worker(args), "torch": lambda: torch_worker(args),
         "sum": lambda: sum_worker(args)}[args.worker]()
        return
    print(cpu_line())
    print(f"global batch {GLOBAL_BATCH} per step; median ms of a step; ratios: (row 3 or 4's time) / (this row's), "
          f"above 1 = faster than it; load average {os.getloadavg()[0]:.1f} at the start")
    print(f"{'model':<6}{'size':<8}{'row':<44}{'ms':>8}{'tok/s':>9}{'vs 3':>7}{'vs 4':>7}{'sum':>7}{'wait':>7}")
    idle = 0.0
    for model in [args.model] if args.model else ["gpt", "bert"]:
        for size in [args.size] if args.size else ["small", "medium"]:
            small = size != "medium"
            row_args = argparse.Namespace(model=model, size=size, rounds=args.rounds or (20 if small else 8),
                                          steps=args.steps or (3 if small else 1))
            rounds, idle_share = run_in_turns(row_args)
            idle = max(idle, idle_share)
            print_rows(model, size, rounds)
    print(f"while one row ran, the sleeping rows used at most {100 * idle:.1f}% of a core; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    out = subprocess.run(["mpiexec", "-n", str(RANKS), sys.executable, os.path.abspath(__file__), "--worker", "sum"],
                         capture_output=True, text=True, env=worker_env(None), timeout=600, check=True)
    sums = json.loads(out.stdout.strip().splitlines()[-1])["sum_ms"]
    small, large = sums["1000"], sums["4000000"]
    print(f"the sum alone on 2 ranks (Alltoall + in-order adds + Allgather, copies included): "
          f"1,000 floats {small:.3f} ms, 4,000,000 floats {large:.2f} ms "
          f"({4e6 * 4 / ((large - small) / 1e3) / 1e6:,.0f} MB/s of float32 gradient summed)")


if __name__ == "__main__":
    main()
