"""What a model gives the training loop: the learner protocol.

The worker loop, the driver and the exchange know no model. They hold a
:class:`Learner` (the model's recipe, shipped to every worker inside the
training task) and, on each worker, the :class:`LearnerRun` it starts (that
worker's training of the model). The exchange sees only an
:class:`ExchangedState`: a matrix to send and to merge into.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np


@dataclass
class Partition:
    """Rows held by one worker, ready for the kernels."""

    #: Features, dense C-contiguous or CSR, in the model's dtype.
    X: Any
    #: What the model learns from each row (+1/-1, class index or real
    #: target); None for models without a target (K-Means).
    targets: np.ndarray | None
    #: Weight of each row.
    sample_weight: np.ndarray
    #: True for rows held out for early stopping; None when nothing is held out.
    validation: np.ndarray | None = None
    #: Whether storage order is itself a uniformly random order of the input
    #: (a shuffled copy): an epoch may then walk the rows as they are stored.
    rows_in_random_order: bool = False

    def __sizeof__(self) -> int:
        """Bytes of the rows: what ``dask.sizeof`` reports for a partition.

        ``dask.sizeof`` falls back to ``sys.getsizeof`` for types it does not
        know, which asks this method; without it a placed partition of many
        megabytes would count as a few dozen bytes in the scheduler's memory
        accounting (spilling, rebalancing). Defined here rather than
        registered with ``dask.sizeof`` so that learners need no Dask.
        """
        arrays = (self.targets, self.sample_weight, self.validation)
        return (
            object.__sizeof__(self)
            + _array_bytes(self.X)
            + sum(_array_bytes(array) for array in arrays if array is not None)
        )


def _array_bytes(array: Any) -> int:
    """Bytes of a dense array, or of a sparse matrix's data and indices."""
    if isinstance(array, np.ndarray):
        return int(array.nbytes)
    parts = [getattr(array, name, None) for name in ("data", "indices", "indptr")]
    if all(isinstance(part, np.ndarray) for part in parts):
        # CSR (or CSC): the three arrays hold all of its memory.
        return sum(int(part.nbytes) for part in parts)
    nbytes = getattr(array, "nbytes", None)
    return (
        int(nbytes) if isinstance(nbytes, (int, np.integer)) else sys.getsizeof(array)
    )


class ExchangedState(Protocol):
    """The arrays a worker trains, sends to peers and merges into.

    The exchange sees one matrix (``exchanged()``); whether the Parzen-window
    test looks at its rows one by one (independent one-vs-rest problems) or
    at the matrix as a whole (centers that compete for rows) is the model's
    call.
    """

    #: Apply the Parzen-window test to each row of the exchanged matrix.
    parzen_per_row: ClassVar[bool]

    def copy(self) -> Any:
        """A deep copy."""

    def is_finite(self) -> bool:
        """Whether every trained number is finite."""

    def exchanged(self) -> np.ndarray:
        """The matrix workers exchange (a fresh array)."""

    def set_exchanged(self, matrix: np.ndarray) -> None:
        """Write a merged matrix back into the state."""

    @property
    def exchanged_shape(self) -> tuple[int, int]:
        """Shape of :meth:`exchanged`."""

    @property
    def exchanged_nbytes(self) -> int:
        """Bytes of :meth:`exchanged`."""


class LearnerRun(Protocol):
    """One worker's training of a model, driven by the worker loop.

    Per epoch the loop calls :meth:`train` on chunks of whole minibatches,
    then :meth:`epoch_values` (numbers the coordinator sums over every
    worker), then :meth:`after_epoch` with those sums, which says whether to
    stop. Every worker takes the same decision from the same sums.
    """

    #: The model as trained so far; the exchange merges into it in place.
    state: ExchangedState
    #: Row numbers to train on, one array per partition.
    training_rows: list[np.ndarray]

    def train(self, partition: Partition, rows: np.ndarray) -> float:
        """Train on ``rows`` of ``partition`` (whole minibatches); return their loss."""

    def epoch_values(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Close an epoch: numbers to sum over workers, and this worker's record.

        ``loss`` (a sum) and ``loss_weight`` (what it sums over) among the
        numbers give the dashboard page its loss curves.
        """

    def after_epoch(self, totals: dict[str, float]) -> tuple[dict[str, Any], bool]:
        """The epoch's record from the sums over workers, and whether to stop."""

    def result(self) -> tuple[ExchangedState, int]:
        """The final state to send back, and the samples this worker trained on."""


class Learner(Protocol):
    """A model's recipe: everything a worker needs to train it, but the rows.

    Adding a model means one learner module (its state, its kernel calls,
    its epoch values and stopping decision) and one estimator module.
    """

    #: Where training starts.
    state: Any

    @property
    def batch_size(self) -> int:
        """Rows per kernel minibatch; the loop never cuts a minibatch."""

    def for_worker(self, share: float) -> Learner:
        """This learner for a worker that holds ``share`` of the training rows."""

    def start(self, partitions: list[Partition]) -> LearnerRun:
        """Begin training on one worker's partitions (from a copy of ``state``)."""

    def average(self, states: Sequence[Any], shares: np.ndarray) -> Any:
        """The workers' final states combined into one, weighted by ``shares``."""


def weighted_sum(arrays: Sequence[np.ndarray], shares: np.ndarray) -> np.ndarray:
    """``sum(share * array)`` over the pairs, in the arrays' dtype."""
    total = np.zeros_like(arrays[0])
    for share, array in zip(shares, arrays, strict=True):
        total += share * array
    return total
