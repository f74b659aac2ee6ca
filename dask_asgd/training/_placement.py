"""Put training rows on the workers, and find where they are.

In-memory input (NumPy, SciPy sparse) is cut into one block of rows per worker
and scattered, each block straight to its worker. Rows are assigned to workers
at random (with ``shuffle=True``): a worker that received only one class of a
sorted data set would learn nothing useful on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from distributed import Client, Future

from ._worker_loop import Partition

logger = logging.getLogger(__name__)


@dataclass
class Placement:
    """Where a fit's rows live: worker address -> futures of Partitions."""

    partitions: dict[str, list[Future]]
    #: Number of training rows per worker (validation rows excluded).
    n_train: dict[str, int]
    #: Futures created for this fit, released when the fit ends.
    owned: list[Future] = field(default_factory=list)

    def release(self) -> None:
        """Drop the data this placement scattered."""
        for future in self.owned:
            future.release()
        self.owned.clear()


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
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if not workers:
        raise RuntimeError(
            "The Dask cluster has no workers. Start some workers or wait for them "
            "(client.wait_for_workers(n)) before calling fit."
        )
    if n_workers is not None:
        workers = workers[:n_workers]
    return workers


def _take_rows(array: Any, rows: np.ndarray) -> Any:
    taken = array[rows]
    if hasattr(taken, "indptr"):
        taken.sort_indices()
    return taken


def scatter_in_memory(
    client: Client,
    workers: list[str],
    X: Any,
    targets: np.ndarray,
    sample_weight: np.ndarray,
    validation: np.ndarray | None,
    rng: np.random.Generator | None,
    min_rows_per_worker: int = 1,
) -> Placement:
    """Cut in-memory rows into one balanced block per worker and scatter them.

    Parameters
    ----------
    client : distributed.Client
    workers : list of str
        Candidate workers; a worker whose block would be empty gets nothing.
    X : ndarray or scipy.sparse.csr_matrix
    targets, sample_weight : ndarray of shape (n_samples,)
    validation : ndarray of bool or None
        Rows held out for early stopping.
    rng : numpy.random.Generator or None
        Shuffles the assignment of rows to workers; None keeps row order.
    min_rows_per_worker : int, default=1
        Use fewer workers rather than give one fewer rows than this: a model
        trained on a handful of rows adds noise to the average, and a small
        data set trains faster on one worker than it can be shipped to many.

    Returns
    -------
    Placement
    """
    n_samples = targets.shape[0]
    rows = rng.permutation(n_samples) if rng is not None else np.arange(n_samples)
    n_blocks = min(len(workers), max(1, n_samples // max(1, min_rows_per_worker)))
    blocks = [b for b in np.array_split(rows, n_blocks) if b.size]
    partitions: dict[str, list[Future]] = {}
    n_train: dict[str, int] = {}
    owned: list[Future] = []
    for address, block in zip(workers, blocks):
        if rng is not None:
            # Keep storage order inside the block: sequential reads are what
            # makes an epoch fast (see _shuffle.py).
            block = np.sort(block)
        held_out = validation[block] if validation is not None else None
        partition = Partition(
            X=_take_rows(X, block),
            targets=targets[block],
            sample_weight=sample_weight[block],
            validation=held_out,
        )
        [future] = client.scatter([partition], workers=[address], hash=False)
        partitions[address] = [future]
        owned.append(future)
        n_train[address] = int(block.size - (held_out.sum() if held_out is not None else 0))
    return Placement(partitions=partitions, n_train=n_train, owned=owned)
