"""Rows for worker processes on the driver's host, through shared memory.

Scattering a NumPy block to a worker process pickles it, sends it over a
socket and unpickles it: on the project's 2-core machine about 3 s for
800 MB, more than scikit-learn spends on the whole fit. Instead the driver
writes each worker's rows once, already in their shuffled order, into a file
in ``/dev/shm`` (RAM, not disk), and the worker maps that file read-only: no
serialisation, no socket, no second copy. joblib hands large arrays to its
worker processes the same way.

A segment lives on as long as a mapping of it does, so the worker unlinks the
file right after mapping it: the name disappears from ``/dev/shm`` at once,
and the memory goes back when the worker drops the partition at the end of
the fit. Until then the driver owns the name: a fit that fails or is
interrupted before the worker mapped it unlinks it on release, and if the
driver process dies (even by SIGKILL) a small reaper process unlinks every
name the driver still owned.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..learners import Partition

#: Where segments live: a RAM-backed filesystem on Linux.
SEGMENT_DIRECTORY = "/dev/shm"
#: Every segment name starts with this, so that leftovers are easy to find.
SEGMENT_PREFIX = "dask-asgd-"
# Arrays start on cache-line boundaries, so that the kernels' vector loads of
# a row never straddle two lines more than they must.
_ALIGNMENT = 64


@dataclass(frozen=True)
class ArraySpec:
    """Where one array lies in a segment."""

    offset: int
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SharedPartition:
    """What a worker needs to map its rows: a segment and its arrays' places.

    Small and picklable: this, not the rows, travels to the worker.
    """

    path: str
    #: ``X`` (dense) or ``data``, ``indices``, ``indptr`` (CSR), then
    #: ``targets``, ``sample_weight`` and ``validation`` when present.
    arrays: dict[str, ArraySpec]
    n_features: int
    sparse: bool
    #: Whether the rows were written in a random order (``shuffle=True``).
    rows_in_random_order: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes of the segment's arrays."""
        return sum(
            int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
            for spec in self.arrays.values()
        )


def available() -> bool:
    """Whether this machine has a RAM-backed directory for segments."""
    return sys.platform.startswith("linux") and os.path.isdir(SEGMENT_DIRECTORY)


def new_segment_path() -> str:
    """A fresh segment name of this driver process."""
    name = f"{SEGMENT_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    return os.path.join(SEGMENT_DIRECTORY, name)


def _block_arrays(
    X: Any,
    targets: np.ndarray | None,
    sample_weight: np.ndarray,
    validation: np.ndarray | None,
    rows: np.ndarray,
) -> dict[str, tuple[Any, np.dtype, tuple[int, ...]]]:
    # name -> (source, dtype, shape); a source is what to gather ``rows`` of,
    # or an array already in order (the CSR parts of the block).
    arrays: dict[str, tuple[Any, np.dtype, tuple[int, ...]]] = {}
    if hasattr(X, "indptr"):
        block = X[rows]
        block.sort_indices()
        for name in ("data", "indices", "indptr"):
            part = getattr(block, name)
            arrays[name] = (part, part.dtype, part.shape)
    else:
        arrays["X"] = (X, X.dtype, (rows.shape[0], X.shape[1]))
    for name, array in (
        ("targets", targets),
        ("sample_weight", sample_weight),
        ("validation", validation),
    ):
        if array is not None:
            arrays[name] = (array, array.dtype, (rows.shape[0],))
    return arrays


def write_partition(
    path: str,
    X: Any,
    targets: np.ndarray | None,
    sample_weight: np.ndarray,
    validation: np.ndarray | None,
    rows: np.ndarray,
    rows_in_random_order: bool = False,
) -> SharedPartition:
    """Write rows ``rows`` of the arrays, in that order, into a new segment.

    The caller registers ``path`` with the :func:`reaper` first, so that the
    segment cannot outlive a driver killed while writing it.

    Parameters
    ----------
    path : str
        The new segment's file; it must not exist.
    X : ndarray or scipy.sparse.csr_matrix
    targets : ndarray or None
    sample_weight : ndarray
    validation : ndarray of bool or None
    rows : ndarray of int64
        Rows to write, in the order the worker will store them.
    rows_in_random_order : bool, default=False
        Whether ``rows`` is a random order (see
        :attr:`Partition.rows_in_random_order`).

    Returns
    -------
    SharedPartition
    """
    arrays = _block_arrays(X, targets, sample_weight, validation, rows)
    specs: dict[str, ArraySpec] = {}
    size = 0
    for name, (_, dtype, shape) in arrays.items():
        size = -(-size // _ALIGNMENT) * _ALIGNMENT
        specs[name] = ArraySpec(size, np.dtype(dtype).str, shape)
        size += int(np.prod(shape)) * np.dtype(dtype).itemsize
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(descriptor, max(size, 1))
        with mmap.mmap(descriptor, max(size, 1)) as mapped:
            for name, (source, _, _) in arrays.items():
                target = _view(mapped, specs[name])
                if name in ("data", "indices", "indptr"):
                    target[...] = source
                else:
                    # The one copy of the rows: gathered straight into the
                    # segment in their new order.
                    # (mode="clip": with the default mode NumPy gathers into a
                    # temporary first and copies it over.)
                    np.take(source, rows, axis=0, out=target, mode="clip")
                del target  # the mapping cannot close while a view exports it
    finally:
        os.close(descriptor)
    return SharedPartition(
        path=path,
        arrays=specs,
        n_features=int(X.shape[1]),
        sparse="indptr" in specs,
        rows_in_random_order=rows_in_random_order,
    )


def _view(buffer: Any, spec: ArraySpec) -> np.ndarray:
    count = int(np.prod(spec.shape))
    flat = np.frombuffer(buffer, dtype=spec.dtype, count=count, offset=spec.offset)
    return flat.reshape(spec.shape)


class PartitionLostError(RuntimeError):
    """A worker holding shared-memory rows left; they cannot be mapped again."""


def open_partition(handle: SharedPartition, worker: str | None = None) -> Partition:
    """Map a segment read-only as a :class:`Partition`, and unlink its name.

    Runs on the worker, as the Dask task whose result is the partition. The
    arrays are views of the mapping: the kernels read the driver's copy of
    the rows in place.

    Parameters
    ----------
    handle : SharedPartition
    worker : str, optional
        The worker the rows are for. When it leaves, Dask runs this task again
        elsewhere (the task may not be pinned to a worker that is gone: the
        fit would wait for it forever); it then fails here, and the fit with
        it, as it did when scattered rows were lost.
    """
    if worker is not None:
        from distributed import get_worker

        here = get_worker().address
        if here != worker:
            raise PartitionLostError(
                f"Rows placed on worker {worker}, which is gone (it left the "
                f"cluster or is paused), cannot be placed again on {here}"
            )
    descriptor = os.open(handle.path, os.O_RDONLY)
    try:
        size = os.fstat(descriptor).st_size
        mapped = mmap.mmap(descriptor, size, prot=mmap.PROT_READ)
    finally:
        os.close(descriptor)
    # The mapping stays valid after the name is gone; unlinking now leaves
    # nothing in /dev/shm whatever happens to the driver or to this worker.
    os.unlink(handle.path)
    arrays = {name: _view(mapped, spec) for name, spec in handle.arrays.items()}
    if handle.sparse:
        import scipy.sparse as sp

        n_rows = arrays["indptr"].shape[0] - 1
        X = sp.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]),
            shape=(n_rows, handle.n_features),
            copy=False,
        )
    else:
        X = arrays["X"]
    return Partition(
        X=X,
        targets=arrays.get("targets"),
        sample_weight=arrays["sample_weight"],
        validation=arrays.get("validation"),
        rows_in_random_order=handle.rows_in_random_order,
    )


def unlink_quietly(path: str) -> None:
    """Remove a segment name if it is still there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# The reaper reads "+path" and "-path" lines; at end of input (the driver
# exited, however) it unlinks what is still registered. It ignores SIGINT,
# which a terminal sends to the whole process group on Ctrl-C.
_REAPER_SOURCE = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
owned = set()
for line in sys.stdin.buffer:
    path = os.fsdecode(line[1:].rstrip(b"\\n"))
    if line[:1] == b"+":
        owned.add(path)
    else:
        owned.discard(path)
for path in owned:
    try:
        os.unlink(path)
    except OSError:
        pass
"""


class Reaper:
    """A child process that unlinks this process's segments once it is gone.

    The child holds the read end of a pipe whose only writer is this
    process: when this process exits, even by SIGKILL, the kernel closes
    the pipe, the child reads end of input and unlinks every segment still
    registered.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def _ensure_started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _REAPER_SOURCE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,
            )
        return self._process

    def _send(self, line: bytes) -> None:
        with self._lock:
            process = self._ensure_started()
            assert process.stdin is not None
            process.stdin.write(line)
            process.stdin.flush()

    def register(self, path: str) -> None:
        """Own ``path``: unlink it if this process dies before :meth:`release`."""
        self._send(b"+" + os.fsencode(path) + b"\n")

    def release(self, path: str) -> None:
        """Unlink ``path`` now (if it is still there) and forget it."""
        unlink_quietly(path)
        self._send(b"-" + os.fsencode(path) + b"\n")


_REAPER = Reaper()


def reaper() -> Reaper:
    """The reaper of this process (started on first use)."""
    return _REAPER


def _probe(path: str, token: bytes) -> tuple[int, bool]:
    # Runs on each worker: its process id, and whether it sees the driver's
    # segment directory (same host, same /dev/shm: not another container).
    try:
        with open(path, "rb") as probe:
            sees = probe.read() == token
    except OSError:
        sees = False
    return os.getpid(), sees


def worker_channels(client: Any, workers: list[str]) -> dict[str, str]:
    """How each worker gets in-memory rows from this process.

    Returns
    -------
    dict of str to str
        ``"in-process"`` for workers running in this process (they receive
        the arrays themselves, without copies), ``"shared"`` for worker
        processes that see this host's ``/dev/shm``, ``"network"`` for the
        others.
    """
    if not workers:
        return {}
    path = new_segment_path()
    token = os.urandom(16)
    sees_segments = available()
    if sees_segments:
        _REAPER.register(path)
        try:
            with open(path, "xb") as probe:
                probe.write(token)
        except OSError:
            sees_segments = False
    try:
        answers = client.run(_probe, path, token, workers=workers)
    finally:
        if sees_segments:
            _REAPER.release(path)
    channels = {}
    for address in workers:
        pid, sees = answers[address]
        if pid == os.getpid():
            channels[address] = "in-process"
        elif sees and sees_segments:
            channels[address] = "shared"
        else:
            channels[address] = "network"
    return channels
