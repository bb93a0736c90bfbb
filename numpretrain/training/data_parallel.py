"""Data-parallel training over MPI: every rank runs its share of each step's batch, and the
ranks' gradients are added in one fixed order, so N ranks train the model one process trains.

    mpiexec -n 2 python -m numpretrain pretrain-gpt --batch-size 16 ...

One optimizer step (trainer.py's train_step), on every rank alike:
1. Draw the step's whole batch (--batch-size rows). The data generator is seeded alike on every
   rank, so every rank holds the same batch.
2. Cut it into M = ranks x --grad-accum micro-batches of contiguous rows, k = 0 ... M-1 in row
   order; rank r runs k = r*G ... r*G + G-1 (G = --grad-accum): forward, then backward of
   loss_k / M, each micro-batch's gradient into its own row of one flat buffer.
3. Add them up: every rank sends chunk j of its rows to rank j (one Alltoall); rank j adds the M
   rows of its chunk in the order k = 0, 1, ..., M-1; every rank gathers the summed chunks back
   (one Allgather). Each parameter's .grad becomes its stretch of that one summed buffer.
4. The non-finite check, clipping and AdamW then see the same numbers on every rank, so the
   weights stay equal without ever being sent.

Why the order is fixed. Floating-point addition is not associative, and MPI's Allreduce adds in
whatever order its algorithm picks (a tree or a ring, depending on the sizes and the rank count).
Adding in micro-batch order is what one process does with --grad-accum M: the autograd adds
each micro-batch's gradient into .grad as it comes (tensor.py), so N ranks end bit for bit where
one process with --grad-accum N ends. The Alltoall + Allgather moves what a ring all-reduce
moves, 2 (N-1)/N of the gradient per rank (docs/distributed.md).

mpi4py is imported only when an MPI launcher started more than one rank (speed/launcher.py);
otherwise `world()` is one process and `micro_batches` the plain --grad-accum loop: today's run.
"""

import math
import os
import socket
import time

import numpy as np

from numpretrain.errors import ConfigError
from numpretrain.speed.launcher import launched_size


class World:
    """The ranks of this job: this process's rank, their number, and MPI's communicator (None
    for a single process)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @property
    def writes_files(self):
        """Rank 0 alone prints, logs and checkpoints; the others hold the same state and stay quiet."""
        return self.rank == 0


_world = None


def world():
    """This job's World: MPI's when a launcher started more than one rank, else one process."""
    global _world
    if _world is None:
        size = launched_size()
        if size == 1:
            _world = World()
        else:
            try:
                from mpi4py import MPI  # initialises MPI: only in a job of several ranks
            except ImportError:
                raise ConfigError(f"started as one of {size} ranks by an MPI launcher, but mpi4py is not "
                                  f"installed: pip install -e \".[mpi]\" (or run without mpiexec)") from None
            _world = World(MPI.COMM_WORLD)
    return _world


def check_batch_split(batch_size, grad_accum, ranks=None):
    """A ConfigError unless a step's batch cuts into ranks x grad_accum equal micro-batches."""
    ranks = launched_size() if ranks is None else ranks
    if batch_size % (ranks * grad_accum):
        split = f"{ranks} ranks x grad_accum={grad_accum}" if ranks > 1 else f"grad_accum={grad_accum}"
        raise ConfigError(f"a step's batch of {batch_size} (--batch-size) does not split over {split} equal "
                          f"micro-batches: choose a multiple of {ranks * grad_accum}")


def micro_batches(grad_accum, named_parameters):
    """The micro-batches of a step and where they run: all of them here (one process), or this
    rank's share with the gradients summed over the ranks (MPI)."""
    job = world()
    if job.size == 1:
        return MicroBatches(grad_accum)
    return DataParallel(job, grad_accum, named_parameters)


def take_rows(batch, rows):
    """The rows `rows` (a slice) of a batch: a tuple of arrays (x, y) or a dict of arrays."""
    if isinstance(batch, dict):
        return {key: value[rows] for key, value in batch.items()}
    return type(batch)(value[rows] for value in batch)


def batch_rows(batch):
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(first)


class MicroBatches:
    """One process runs every micro-batch of a step; the autograd adds their gradients into .grad."""

    def __init__(self, count, mine=None):
        self.count = count                                    # micro-batches per optimizer step, all ranks'
        self.mine = range(count) if mine is None else mine    # the ones run here

    def rows(self, batch, k):
        """Micro-batch k of a step's batch: its k-th stretch of rows (the whole batch when M = 1)."""
        if self.count == 1:
            return batch
        n = batch_rows(batch)
        if n % self.count:
            raise ConfigError(f"a batch of {n} rows does not cut into {self.count} equal micro-batches "
                              f"(--grad-accum x ranks)")
        size = n // self.count
        return take_rows(batch, slice(k * size, (k + 1) * size))

    def keep_gradients(self, k):
        """Micro-batch k's backward has run. One process: nothing to do, .grad holds the running sum."""

    def sum_gradients(self):
        """Every micro-batch's backward has run: .grad must hold their sum. One process: it does."""

    def __str__(self):
        return f"one process, {self.count} micro-batch{'es' if self.count > 1 else ''} per step"

    def eval_share(self, count):
        """The validation batches (of `count`) this process evaluates: all of them."""
        return range(count)

    def gather(self, results, count):
        """[results[i] for i in range(count)]: every item's {name: float}, in order."""
        return [results[i] for i in range(count)]


class DataParallel(MicroBatches):
    """This rank's micro-batches of every step, and the sum of every rank's gradients in a fixed
    order, through one flat buffer (module docstring). `seconds` adds up the time spent summing."""

    def __init__(self, job, grad_accum, named_parameters):
        super().__init__(job.size * grad_accum, mine=range(job.rank * grad_accum, (job.rank + 1) * grad_accum))
        from mpi4py import MPI
        self.in_place = MPI.IN_PLACE
        self.comm, self.rank, self.size = job.comm, job.rank, job.size
        self.params = [p for _, p in named_parameters]
        dtypes = {p.data.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ConfigError(f"data-parallel training needs parameters of one dtype, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        sizes = [p.data.size for p in self.params]
        self.offsets = np.cumsum([0] + sizes)        # parameter i is flat[offsets[i]:offsets[i + 1]]
        self.chunk = math.ceil(self.offsets[-1] / self.size)   # each rank sums one chunk of the buffer
        G = grad_accum
        self.local = np.zeros((G, self.size * self.chunk), dtype)       # (G, N * chunk) this rank's gradients
        self.received = np.empty((self.size, G, self.chunk), dtype)     # (N, G, chunk) every rank's, my chunk
        self.summed = np.empty(self.size * self.chunk, dtype)           # (N * chunk,) the sum, on every rank
        self.reached = np.zeros(len(self.params), bool)   # which parameters the loss reached this step
        self.logical_or = MPI.LOR
        self.seconds = 0.0
        self.places = self._places()

    def _places(self):
        """["rank 0: pid 4242 on node1", ...]: the launcher names a rank that dies by its pid and host."""
        pids = np.empty(self.size, np.int64)
        self.comm.Allgather(np.array([os.getpid()], np.int64), pids)
        host = np.frombuffer(socket.gethostname().encode()[:64].ljust(64, b"\0"), np.uint8)
        hosts = np.empty((self.size, 64), np.uint8)
        self.comm.Allgather(host, hosts)
        names = [bytes(name).rstrip(b"\0").decode(errors="replace") for name in hosts]
        return [f"rank {r}: pid {pid} on {name}" for r, (pid, name) in enumerate(zip(pids, names))]

    def __str__(self):
        return (f"data parallel over {self.size} ranks, {len(self.mine)} of each step's {self.count} micro-batches "
                f"on each ({'; '.join(self.places)})")

    def keep_gradients(self, k):
        """Copy micro-batch k's gradients into its row of the flat buffer, and clear .grad for the next."""
        started = time.perf_counter()
        row = self.local[k - self.mine.start]
        for i, p in enumerate(self.params):
            stretch = row[self.offsets[i]:self.offsets[i + 1]]
            if p.grad is None:
                stretch[...] = 0
            else:
                stretch[...] = p.grad.reshape(-1)
                self.reached[i] = True
            p.grad = None
        self.seconds += time.perf_counter() - started

    def sum_gradients(self):
        """.grad of every parameter = the sum of all M micro-batches' gradients, added in order k = 0 ... M-1."""
        started = time.perf_counter()
        G, N = len(self.mine), self.size
        # (N, G, chunk): chunk j of each of my rows, bound for rank j (contiguous already when G = 1)
        outgoing = self.local if G == 1 else self.local.reshape(G, N, self.chunk).transpose(1, 0, 2).copy()
        self.comm.Alltoall(outgoing, self.received)
        rows = self.received.reshape(N * G, self.chunk)   # (M, chunk) in micro-batch order: rank r's are r*G ...
        mine = self.summed.reshape(N, self.chunk)[self.rank]
        np.add(rows[0], rows[1], out=mine)               # (M >= 2) as tensor.py adds micro-batch 1 to 0 ...
        for row in rows[2:]:
            mine += row                                  # ... and each later one into .grad
        self.comm.Allgather(self.in_place, self.summed)
        # A parameter no micro-batch reached keeps .grad None (AdamW skips it), as in one process;
        # one reached anywhere gets its sum on every rank, so the ranks' weights stay alike.
        self.comm.Allreduce(self.in_place, self.reached, op=self.logical_or)
        for i, p in enumerate(self.params):
            if self.reached[i]:
                p.grad = self.summed[self.offsets[i]:self.offsets[i + 1]].reshape(p.data.shape)
        self.reached[:] = False
        self.seconds += time.perf_counter() - started

    def eval_share(self, count):
        return range(*self._share(count, self.rank))

    def _share(self, count, rank):
        """(first, end) of rank's items among `count`: contiguous and balanced, rank 0's first."""
        return rank * count // self.size, (rank + 1) * count // self.size

    def gather(self, results, count):
        """Every rank's {name: float} results for items 0 ... count-1, each item computed by the
        rank whose share holds it, in order, on every rank. One Allgather."""
        names = self._names(results, count)
        per_rank = math.ceil(count / self.size)
        first, _ = self._share(count, self.rank)
        local = np.zeros((per_rank, len(names)), np.float64)     # (items per rank, names)
        for i, result in results.items():
            local[i - first] = [result[name] for name in names]
        every = np.empty((self.size, per_rank, len(names)), np.float64)
        self.comm.Allgather(local, every)
        rows = []
        for rank in range(self.size):
            first, end = self._share(count, rank)
            rows.extend(every[rank][:end - first])
        return [dict(zip(names, map(float, row))) for row in rows]

    def _names(self, results, count):
        """The names in each result. Every rank has results of its own unless there are fewer
        items than ranks; then they come from rank 0, which always has item 0."""
        if count >= self.size:
            return list(next(iter(results.values())))
        text = "\n".join(next(iter(results.values()))).encode() if self.rank == 0 else b""
        length = np.array([len(text)], np.int64)
        self.comm.Bcast(length, root=0)
        buffer = np.frombuffer(text, np.uint8).copy() if self.rank == 0 else np.empty(int(length[0]), np.uint8)
        self.comm.Bcast(buffer, root=0)
        return buffer.tobytes().decode().split("\n") if len(buffer) else []
