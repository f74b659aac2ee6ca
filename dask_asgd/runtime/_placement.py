"""Put training rows on the workers, and find where they are.

In-memory input (NumPy, SciPy sparse) is cut into one block of rows per worker.
Rows are assigned to workers at random (with ``shuffle=True``): a worker that
received only one class of a sorted data set would learn nothing useful on its
own. Each block goes the cheapest way (see ``_shared_memory.py``): workers in
this process get the arrays themselves, worker processes on this host map a
shared-memory copy, and the others receive the block over the network.

Whatever interrupts a placement (an error, a lost worker, Ctrl-C), the blocks
already placed are released before the error goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from distributed import Client, Future

from ..learners import Partition
from . import _shared_memory
from ._background_copy import BackgroundGather, FillingPartition, filling_partition

logger = logging.getLogger(__name__)


@dataclass
class Placement:
    """Where a fit's rows live: worker address -> futures of Partitions."""

    partitions: dict[str, list[Future]]
    #: Number of training rows per worker (validation rows excluded).
    n_train: dict[str, int]
    #: Futures created for this fit, released when the fit ends.
    owned: list[Future] = field(default_factory=list)
    #: What each worker's rows were built from, to build them again elsewhere
    #: if the worker is lost (see ``_recovery.py``): the row numbers of
    #: in-memory input, or the chunks of Dask input.
    origins: dict[str, Any] = field(default_factory=dict)
    #: Shared-memory segments written for this fit that a worker may not have
    #: mapped (and unlinked) yet.
    segments: list[str] = field(default_factory=list)
    #: Copies still being written for workers in this process.
    copies: list[BackgroundGather] = field(default_factory=list)

    def release(self) -> None:
        """Drop the data this placement put on the workers."""
        for copy in self.copies:
            copy.cancel()
        self.copies.clear()
        for future in self.owned:
            future.release()
        self.owned.clear()
        for path in self.segments:
            _shared_memory.reaper().release(path)
        self.segments.clear()


def cluster_workers(client: Client, n_workers: int | None) -> list[str]:
    """Addresses of the workers a fit may use, in a stable order.

    Parameters
    ----------
    client : distributed.Client
    n_workers : int or None
        At most this many workers; ``None`` for all of them.

    Returns
    -------
    list of str
    """
    # Asked of the scheduler directly: Client.scheduler_info() returns a cache
    # that the client's periodic refresh may have just emptied of workers.
    identity = client.sync(client.scheduler.identity, n_workers=-1)
    workers = sorted(identity["workers"])
    if not workers:
        raise RuntimeError(
            "The Dask cluster has no workers. Start some workers or wait for them "
            "(client.wait_for_workers(n)) before calling fit."
        )
    if n_workers is not None:
        workers = workers[:n_workers]
    return workers


def _take_rows(array: Any, rows: np.ndarray) -> Any:
    if not hasattr(array, "indptr"):
        # np.take: half the time of ``array[rows]`` for 500,000 x 100 float64
        # rows (0.34 s against 0.71 s here), as fast as touching new memory.
        return np.take(array, rows, axis=0)
    taken = array[rows]
    taken.sort_indices()
    return taken


@dataclass
class _InMemoryArrays:
    """The driver's rows, and how to hand a block of them to one worker."""

    X: Any
    targets: np.ndarray | None
    sample_weight: np.ndarray
    validation: np.ndarray | None

    def partition(
        self, block: np.ndarray, in_storage_order: bool, random_order: bool
    ) -> Partition:
        """The rows ``block`` as a Partition of their own (a copy).

        ``random_order``: ``block`` is a random order of the rows (with
        shuffling), so the copy is the one-time permutation that lets each
        epoch read consecutive rows (see _shuffle.py).
        """
        if in_storage_order:
            return Partition(self.X, self.targets, self.sample_weight, self.validation)
        return Partition(
            X=_take_rows(self.X, block),
            **self._per_row(block),
            rows_in_random_order=random_order,
        )

    def filling_partition(self, block: np.ndarray, threads: int) -> FillingPartition:
        """The rows ``block`` (a random order), copied while the worker trains."""
        return filling_partition(self.X, block, self._per_row(block), threads)

    def _per_row(self, block: np.ndarray) -> dict[str, np.ndarray | None]:
        """The per-row arrays but ``X``, for the rows ``block``."""
        return {
            "targets": self.targets[block] if self.targets is not None else None,
            "sample_weight": self.sample_weight[block],
            "validation": (
                self.validation[block] if self.validation is not None else None
            ),
        }

    def write_segments(
        self, blocks: dict[str, np.ndarray], placement: Placement, random_order: bool
    ) -> dict[str, _shared_memory.SharedPartition]:
        """Write each block into a shared-memory segment of its own, in parallel.

        The gathers release the GIL and each thread faults in its own pages,
        so the blocks of several local workers take the time of one on as
        many cores.
        """
        paths = {}
        for address in blocks:
            paths[address] = _shared_memory.new_segment_path()
            # Owned before it exists: a driver killed while writing leaves
            # nothing behind.
            _shared_memory.reaper().register(paths[address])
            placement.segments.append(paths[address])
        threads = max(1, min(len(blocks), os.cpu_count() or 1))
        # Leaving the block waits for every writer, also on an interrupt: a
        # segment must not be created after the cleanup unlinked its name.
        with ThreadPoolExecutor(threads, thread_name_prefix="asgd-place") as pool:
            pending = {
                address: pool.submit(
                    _shared_memory.write_partition,
                    paths[address],
                    self.X,
                    self.targets,
                    self.sample_weight,
                    self.validation,
                    block,
                    random_order,
                )
                for address, block in blocks.items()
            }
            return {address: job.result() for address, job in pending.items()}


def _open_on(
    client: Client,
    address: str,
    handle: _shared_memory.SharedPartition,
    owned: list[Future],
) -> Future:
    """Have ``address`` map its segment; the future holds the partition there."""
    future = client.submit(
        _shared_memory.open_partition,
        handle,
        address,
        workers=[address],
        # Not pinned: after a worker loss Dask reruns the task elsewhere, where
        # it fails at once (see open_partition) instead of waiting forever.
        allow_other_workers=True,
        pure=False,
    )
    owned.append(future)
    return future


def _scatter_to(
    client: Client, partition: Partition, address: str, owned: list[Future]
) -> Future:
    """Scatter one partition to ``address``, adding its future to ``owned``.

    An interrupted ``client.scatter`` goes on in the client's event loop and
    lands on the worker after the caller is gone, where nothing would release
    it. So the scatter runs to its end even when the wait is interrupted, and
    what it placed joins ``owned`` before the interruption goes on.
    """
    scatter = client.scatter(
        [partition], workers=[address], hash=False, asynchronous=True
    )
    pending = asyncio.run_coroutine_threadsafe(scatter, client.loop.asyncio_loop)
    try:
        [future] = pending.result()
    except BaseException:
        with contextlib.suppress(BaseException):
            owned.extend(pending.result(timeout=60))
        raise
    owned.append(future)
    return future


def scatter_in_memory(
    client: Client,
    workers: list[str],
    X: Any,
    targets: np.ndarray | None,
    sample_weight: np.ndarray,
    validation: np.ndarray | None,
    rng: np.random.Generator | None,
    min_rows_per_worker: int = 1,
    on_block_placed: Callable[[str], None] | None = None,
) -> Placement:
    """Cut in-memory rows into one balanced block per worker and place them.

    Parameters
    ----------
    client : distributed.Client
    workers : list of str
        Candidate workers; a worker whose block would be empty gets nothing.
    X : ndarray or scipy.sparse.csr_matrix
    targets : ndarray of shape (n_samples,) or None
        None for models without a target (K-Means).
    sample_weight : ndarray of shape (n_samples,)
    validation : ndarray of bool or None
        Rows held out for early stopping.
    rng : numpy.random.Generator or None
        Shuffles the assignment of rows to workers; None keeps row order.
    min_rows_per_worker : int, default=1
        Use fewer workers rather than give one fewer rows than this: a model
        trained on a handful of rows adds noise to the average, and a small
        data set trains faster on one worker than it can be shipped to many.
    on_block_placed : callable, optional
        Called with a worker's address once its block is placed (progress;
        the tests interrupt placement there).

    Returns
    -------
    Placement
    """
    n_samples = X.shape[0]
    rows = rng.permutation(n_samples) if rng is not None else np.arange(n_samples)
    n_blocks = min(len(workers), max(1, n_samples // max(1, min_rows_per_worker)))
    blocks = [b for b in np.array_split(rows, n_blocks) if b.size]
    # Fewer blocks than workers when rows are few: those workers get none.
    assigned = list(zip(workers, blocks, strict=False))
    in_storage_order = rng is None and len(blocks) == 1
    random_order = rng is not None
    # Workers in this process train on dense rows while they are copied.
    dense = not hasattr(X, "indptr")
    arrays = _InMemoryArrays(X, targets, sample_weight, validation)
    placement = Placement(partitions={}, n_train={})
    try:
        channels = _shared_memory.worker_channels(client, [a for a, _ in assigned])
        in_process = sum(channels[a] == "in-process" for a, _ in assigned)
        # The copies for workers in this process share the machine's cores.
        copy_threads = max(1, (os.cpu_count() or 1) // max(1, in_process))
        handles = arrays.write_segments(
            {a: b for a, b in assigned if channels[a] == "shared"},
            placement,
            random_order,
        )
        for address, block in assigned:
            if address in handles:
                future = _open_on(client, address, handles[address], placement.owned)
            else:
                if random_order and channels[address] == "in-process" and dense:
                    partition = arrays.filling_partition(block, copy_threads)
                    placement.copies.append(partition.copy)
                else:
                    partition = arrays.partition(block, in_storage_order, random_order)
                future = _scatter_to(client, partition, address, placement.owned)
            placement.partitions[address] = [future]
            placement.origins[address] = block
            held_out = int(validation[block].sum()) if validation is not None else 0
            placement.n_train[address] = int(block.size - held_out)
            if on_block_placed is not None:
                on_block_placed(address)
    except BaseException:
        placement.release()
        raise
    return placement


def _block_partition(
    X_block: Any,
    y_block: Any,
    weight_block: Any,
    encode: Callable[[np.ndarray], np.ndarray] | None,
    dtype: Any,
    validation_fraction: float | None,
    seed: int,
) -> Partition:
    # Runs on the worker that holds X_block: validation happens where the
    # data is, so a bad value anywhere fails the fit with scikit-learn's words.
    from sklearn.utils import check_array

    X_block = check_array(
        X_block, accept_sparse="csr", dtype=dtype, order="C", accept_large_sparse=True
    )
    targets = None
    if y_block is not None:
        y_block = np.asarray(y_block).reshape(-1)
        if y_block.shape[0] != X_block.shape[0]:
            raise ValueError(
                f"X and y have inconsistent numbers of rows in a chunk: "
                f"{X_block.shape[0]} and {y_block.shape[0]}"
            )
        targets = encode(y_block)
    weights = (
        np.ones(X_block.shape[0], dtype=dtype)
        if weight_block is None
        else np.asarray(weight_block, dtype=dtype).reshape(-1)
    )
    validation = None
    if validation_fraction:
        rng = np.random.default_rng(seed)
        validation = rng.random(X_block.shape[0]) < validation_fraction
    return Partition(
        X=X_block, targets=targets, sample_weight=weights, validation=validation
    )


def place_dask(
    client: Client,
    workers: list[str],
    X: Any,
    y: Any,
    sample_weight: Any,
    encode: Callable[[np.ndarray], np.ndarray] | None,
    dtype: Any,
    validation_fraction: float | None,
    rng: np.random.Generator,
) -> Placement:
    """Use row chunks of Dask arrays where they are, one partition per chunk.

    The collections are persisted; each chunk becomes a :class:`Partition` by
    a task pinned to the worker that holds the chunk of ``X``, so no training
    data moves between workers. Workers not in ``workers`` that hold chunks
    keep them and the partition is built on one of ``workers``.

    Parameters
    ----------
    client : distributed.Client
    workers : list of str
        Workers the fit may use.
    X : dask.array.Array of shape (n_samples, n_features)
        One chunk along the columns; row chunks of known size.
    y, sample_weight : dask.array.Array of shape (n_samples,) or None
        Chunked like ``X``'s rows; ``y`` is None for models without a
        target (K-Means).
    encode : callable or None
        Turns a block of labels into kernel targets (runs on the workers);
        None when ``y`` is None.
    dtype : numpy dtype
        Dtype of the model.
    validation_fraction : float or None
        Share of each chunk's rows held out at random for early stopping.
    rng : numpy.random.Generator
        Seeds the held-out rows.

    Returns
    -------
    Placement
    """
    from distributed import futures_of

    arrays = [X] + [a for a in (y, sample_weight) if a is not None]
    persisted = client.persist(arrays)
    persisted_y = persisted[1] if y is not None else None
    persisted_weight = persisted[-1] if sample_weight is not None else None

    def chunk_futures(array: Any) -> list[Future]:
        by_key = {future.key: future for future in futures_of(array)}
        return [by_key[key] for key in _flat_keys(array)]

    x_chunks = chunk_futures(persisted[0])
    y_chunks = (
        chunk_futures(persisted_y)
        if persisted_y is not None
        else [None] * len(x_chunks)
    )
    w_chunks = (
        chunk_futures(persisted_weight)
        if persisted_weight is not None
        else [None] * len(x_chunks)
    )
    placement = Placement(
        partitions={},
        n_train={},
        owned=[f for array in persisted for f in futures_of(array)],
    )
    try:
        who_has = client.who_has(x_chunks)
        rows_per_chunk = [int(rows) for rows in persisted[0].chunks[0]]
        addresses = assign_chunks(
            rows_per_chunk, [who_has.get(c.key, ()) for c in x_chunks], workers
        )
        for chunks, address, rows in zip(
            zip(x_chunks, y_chunks, w_chunks, strict=True),
            addresses,
            rows_per_chunk,
            strict=True,
        ):
            seed = int(rng.integers(np.iinfo(np.int32).max))
            future = client.submit(
                _block_partition,
                *chunks,
                encode,
                dtype,
                validation_fraction,
                seed,
                workers=[address],
                allow_other_workers=False,
                pure=False,
            )
            placement.partitions.setdefault(address, []).append(future)
            placement.owned.append(future)
            held_out = round(rows * validation_fraction) if validation_fraction else 0
            placement.n_train[address] = (
                placement.n_train.get(address, 0) + rows - held_out
            )
            placement.origins.setdefault(address, []).append(
                (*chunks, seed, rows - held_out)
            )
    except BaseException:
        placement.release()
        raise
    return placement


def assign_chunks(
    rows: Sequence[int], holders: Sequence[Collection[str]], workers: Sequence[str]
) -> list[str]:
    """The worker that builds each chunk's partition, balanced by rows.

    A chunk goes to a worker of the fit that holds it, so that no rows move;
    only a chunk that none of them holds moves, to the worker with the fewest
    rows. Chunks with several holders (replicas, e.g. left by an earlier
    fit) go to the holder with the fewest rows so far, the biggest chunks
    first and ties by address: the choice depends on where the chunks are,
    never on the order in which Dask lists their holders, so a given cluster
    state and random_state always give the same placement and model.

    Parameters
    ----------
    rows : sequence of int
        Rows of each chunk.
    holders : sequence of collections of str
        Workers holding each chunk.
    workers : sequence of str
        Workers the fit may use.

    Returns
    -------
    list of str
        One address per chunk.
    """
    allowed = sorted(workers)
    load = dict.fromkeys(allowed, 0)
    candidates = [sorted(set(held) & load.keys()) for held in holders]
    assignment: list[str] = [""] * len(rows)
    for index, options in enumerate(candidates):
        if len(options) == 1:
            assignment[index] = options[0]
            load[options[0]] += rows[index]
    free = [index for index, options in enumerate(candidates) if len(options) != 1]
    for index in sorted(free, key=lambda i: (-rows[i], i)):
        address = min(candidates[index] or allowed, key=lambda w: (load[w], w))
        assignment[index] = address
        load[address] += rows[index]
    return assignment


def _flat_keys(array: Any) -> list[Any]:
    keys = array.__dask_keys__()
    flat: list[Any] = []
    stack = [keys]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


@dataclass
class InMemoryRows:
    """Training rows held by the driver (NumPy or SciPy sparse)."""

    X: Any
    targets: np.ndarray
    sample_weight: np.ndarray
    validation: np.ndarray | None

    @property
    def dtype(self) -> Any:
        """Dtype of the features, and so of the model."""
        return self.X.dtype

    @property
    def sparse(self) -> bool:
        """Whether the rows are CSR."""
        return hasattr(self.X, "indptr")

    def place(
        self,
        client: Client,
        workers: list[str],
        rng: np.random.Generator,
        shuffle: bool,
        min_rows_per_worker: int,
    ) -> Placement:
        """Scatter the rows (see :func:`scatter_in_memory`)."""
        return scatter_in_memory(
            client,
            workers,
            self.X,
            self.targets,
            self.sample_weight,
            self.validation,
            rng if shuffle else None,
            min_rows_per_worker,
        )


@dataclass
class DaskRows:
    """Training rows in Dask arrays, left on the workers that hold them."""

    X: Any
    #: Labels; None for K-Means.
    y: Any
    sample_weight: Any
    #: Turns a block of labels into kernel targets; None without labels.
    encode: Callable[[np.ndarray], np.ndarray] | None
    validation_fraction: float | None
    #: Whether the chunks of X hold scipy.sparse matrices.
    sparse: bool = False

    @property
    def dtype(self) -> Any:
        """Dtype of the model."""
        return self.X.dtype

    def place(
        self,
        client: Client,
        workers: list[str],
        rng: np.random.Generator,
        shuffle: bool,
        min_rows_per_worker: int,
    ) -> Placement:
        """Build partitions where the chunks are (see :func:`place_dask`)."""
        return place_dask(
            client,
            workers,
            self.X,
            self.y,
            self.sample_weight,
            self.encode,
            self.dtype,
            self.validation_fraction,
            rng,
        )
