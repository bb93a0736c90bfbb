"""A command run as one rank of an MPI job: one voice, and a failure anywhere ends the whole job.

Under `mpiexec -n N python -m numpretrain ...` (N > 1) every rank runs the whole command; the
training loop shares out the work (training/data_parallel.py). Around it, cli.main runs `run`:

- Rank 0 alone speaks. The other ranks' printed output is dropped and their error output held
  back, to be shown only if they fail on their own.
- No failure hangs the job. A rank that stops while the others wait for it in a collective
  operation would leave them waiting forever, so a failing rank ends the job with MPI_Abort,
  which takes every rank down. Rank 0 says why at once, as a single process would: an option or a
  file that is wrong is wrong for every rank, and is reported once. Another rank first leaves rank
  0 a few seconds to report the same failure and end the job; if it is still alive after that, the
  failure was its own, and it reports it with its rank.
- A rank killed outright (SIGKILL, a lost machine) can say nothing: the launcher ends the job and
  names the dead process's pid and host, which rank 0's first line of training maps to its rank.

A plain `python -m numpretrain ...`, or `mpiexec -n 1`, runs the command as it is.
"""

import io
import os
import sys
import time
import traceback

from numpretrain.errors import NumpretrainError
from numpretrain.speed.launcher import launched_rank, launched_size
from numpretrain.training import data_parallel

GRACE_SECONDS = 3.0   # how long another rank leaves rank 0 to report a failure they share
FORWARD_SECONDS = 1.0  # how long a failing rank leaves the launcher to pass its message on before the
                       # abort tears down the pipes (under load, messages were lost without it)


def run(command):
    """command() -> exit status, run as this process's part of the job; returns the status."""
    if launched_size() == 1:
        return command()
    rank = launched_rank()
    held = io.StringIO()
    if rank > 0:
        sys.stdout, sys.stderr = open(os.devnull, "w"), held
    try:
        job = data_parallel.world()        # starts MPI: from here a rank that stops must stop them all
    except NumpretrainError as error:      # no mpi4py: every rank fails alike, before MPI exists
        print(f"numpretrain: error: {error}", file=sys.stderr)
        return 2
    try:
        status = command()
    except SystemExit as exit_:            # argparse's --help (0) and its usage errors (2)
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:                  # a bug: its traceback, then the job ends like any failure
        traceback.print_exc()
        status = 1
    if status:
        abort(job, status, held)
    return status


def abort(job, status, held):
    """End every rank of the job with `status`, after saying why (module docstring)."""
    if job.rank > 0:
        time.sleep(GRACE_SECONDS)         # a failure rank 0 shares ends the job during this sleep
        print(f"numpretrain: rank {job.rank} of {job.size} failed, and the job is stopped:\n"
              f"{held.getvalue().rstrip()}", file=sys.__stderr__)
    sys.stdout.flush()
    sys.__stderr__.flush()
    time.sleep(FORWARD_SECONDS)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)   # MPI's own "application called MPI_Abort" line adds nothing
    job.comm.Abort(status)
