"""Which process of an MPI job this is, as the launcher (`mpiexec`) wrote it into the environment.

`mpiexec -n 4 python -m numpretrain ...` starts four copies of the command, and before any of
them loads an MPI library each can tell its rank and the job's size from its environment. That is
enough to settle two things early, without importing mpi4py:

- threads: under a launcher that started more than one rank, each rank keeps to one core (blas.py
  reads `launched_size()` before NumPy loads OpenBLAS), so N ranks share N cores instead of each
  spreading over all of them;
- who speaks: only rank 0 prints and writes (app/mpi_job.py), from the first line of a command.

A plain `python -m numpretrain ...` finds none of these variables: rank 0 of 1, today's run.
"""

import os

# (rank, size) variables of the launchers in use: MPICH's and Intel MPI's Hydra (and Slurm's PMI-2),
# Open MPI, MVAPICH. Slurm's own SLURM_PROCID/SLURM_NTASKS are left out on purpose: a batch script
# running one python under an allocation of several tasks would read as a job of several ranks.
LAUNCHER_VARIABLES = (
    ("PMI_RANK", "PMI_SIZE"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),
)


def _launched():
    for rank_name, size_name in LAUNCHER_VARIABLES:
        rank, size = os.environ.get(rank_name, "").strip(), os.environ.get(size_name, "").strip()
        if rank.isdigit() and size.isdigit() and int(rank) < int(size):
            return int(rank), int(size)
    return 0, 1


def launched_rank():
    """This process's rank in the job an MPI launcher started; 0 without a launcher."""
    return _launched()[0]


def launched_size():
    """How many ranks the MPI launcher started; 1 without a launcher (or under `mpiexec -n 1`)."""
    return _launched()[1]
