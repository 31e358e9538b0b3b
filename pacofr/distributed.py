"""Data-parallel runs on MPI (``mpirun -np N pacofr pretrain ...``): which rank this process
is, and the few collective operations training needs, on mpi4py (``pip install
'pacofr[mpi]'``). A process that MPI did not launch is one rank of one, and every operation
is then the identity: nothing changes for a plain ``python`` run.

``world()`` returns the process's ``World``, made once. A launcher is recognised by the
environment it sets (Open MPI, MPICH / Intel MPI / PMI, PMIx, a Slurm job step); a multi-rank
launch without mpi4py is an ImportError naming the extra, never a silent run of N copies."""
import hashlib
import json
import os
import sys
import traceback

import numpy as np

MISSING = "launched under MPI with {n} ranks, but mpi4py is not installed: pip install 'pacofr[mpi]'"
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS")
_WORLD = None


def launched_size():
    """The rank count an MPI launcher announced in this process's environment (1 if none)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


class World:
    """This process's place in the job: ``rank``, ``size``, and collectives over numpy arrays
    (identities for a single process)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @property
    def is_root(self):
        return self.rank == 0

    def allreduce_mean_(self, array):
        """array (C-contiguous float32/float64) <- its mean over the ranks, in place."""
        if self.size > 1:
            from mpi4py import MPI
            if not array.flags.c_contiguous:
                raise ValueError("allreduce needs a C-contiguous array")
            self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
            array /= self.size
        return array

    def allreduce_sum(self, array):
        """A new array: the elementwise sum over the ranks."""
        array = np.ascontiguousarray(array)
        if self.size == 1:
            return array.copy()
        out = np.empty_like(array)
        from mpi4py import MPI
        self.comm.Allreduce(array, out, op=MPI.SUM)
        return out

    def mean(self, value):
        """A float's mean over the ranks."""
        return float(self.allreduce_sum(np.array([float(value)]))[0] / self.size) if self.size > 1 else float(value)

    def allgather(self, array):
        """Every rank's array (same shape after the first axis on all ranks), concatenated in
        rank order along the first axis."""
        array = np.ascontiguousarray(array)
        if self.size == 1:
            return array
        counts = self.comm.allgather(array.shape[0])
        out = np.empty((sum(counts),) + array.shape[1:], array.dtype)
        row = int(np.prod(array.shape[1:], dtype=np.int64))
        self.comm.Allgatherv(array, [out, [c * row for c in counts]])
        return out

    def bcast(self, obj):
        """Rank 0's picklable object, on every rank."""
        return self.comm.bcast(obj, root=0) if self.size > 1 else obj

    def barrier(self):
        if self.size > 1:
            self.comm.Barrier()

    def agree(self, what, value):
        """Check that every rank holds the same JSON-able value (a config, a version): a
        ValueError on every rank, naming the ranks that differ, otherwise."""
        if self.size == 1:
            return
        digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
        digests = self.comm.allgather(digest)
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise ValueError(f"ranks {odd} were started with another {what} than rank 0 ({digests[0]} vs "
                             f"{[digests[r] for r in odd]}): every rank must run the same code and config")

    def abort(self, exc):
        """Stop the whole job now (MPI_Abort) after printing this rank's error: a rank that
        raised must not leave the others waiting in a collective."""
        print(f"pacofr: rank {self.rank} of {self.size} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        self.comm.Abort(1)


def world():
    """This process's World (a rank of one unless MPI launched several)."""
    global _WORLD
    if _WORLD is None:
        n = launched_size()
        if n == 1:
            _WORLD = World()
        else:
            try:
                from mpi4py import MPI
            except ImportError:
                raise ImportError(MISSING.format(n=n)) from None
            _WORLD = World(MPI.COMM_WORLD)
    return _WORLD
