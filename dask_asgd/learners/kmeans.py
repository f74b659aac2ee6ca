"""Minibatch K-Means: its state and learner.

Only the centers are exchanged: a count is each worker's own learning rate.
Centers compete for the same rows, so a received set of centers is accepted
or rejected as a whole by the Parzen test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..kernels import Reassignment, kmeans_pass, n_minibatches
from ._protocol import Partition, weighted_sum
from ._stopping import SmoothedInertiaRule


@dataclass
class KMeansState:
    """Cluster centers and the weight of the rows each has absorbed."""

    #: Apply the Parzen-window test to each row of the exchanged matrix.
    parzen_per_row: ClassVar[bool] = False

    #: ndarray of shape (n_clusters, n_features).
    centers: np.ndarray
    #: float64 ndarray of shape (n_clusters,).
    counts: np.ndarray

    def copy(self) -> KMeansState:
        """A deep copy."""
        return KMeansState(self.centers.copy(), self.counts.copy())

    def is_finite(self) -> bool:
        """Whether every center is finite."""
        return bool(np.isfinite(self.centers).all())

    def exchanged(self) -> np.ndarray:
        """The centers (a copy)."""
        return self.centers.copy()

    def set_exchanged(self, matrix: np.ndarray) -> None:
        """Write merged centers back."""
        self.centers[...] = matrix

    @property
    def exchanged_shape(self) -> tuple[int, int]:
        """Shape of :meth:`exchanged`."""
        return self.centers.shape

    @property
    def exchanged_nbytes(self) -> int:
        """Bytes of :meth:`exchanged`."""
        return int(self.centers.nbytes)

    @classmethod
    def average(
        cls, states: Sequence[KMeansState], shares: np.ndarray, start: KMeansState
    ) -> KMeansState:
        """The weighted mean of the workers' centers.

        The counts of the result are those of ``start`` plus what every
        worker added, so that a later ``partial_fit`` continues with the
        learning rates of a model that has seen all the rows.
        """
        added = sum(state.counts - start.counts for state in states)
        return cls(
            weighted_sum([s.centers for s in states], shares),
            start.counts + added,
        )


@dataclass(kw_only=True)
class KMeansLearner:
    """Minibatch K-Means: what a worker needs to train it.

    Parameters
    ----------
    state : KMeansState
        Starting centers and counts.
    batch_size : int
        Rows per minibatch.
    tol : float, default=0.0
        Squared distance the centers may move in one minibatch for a worker's
        stopping rule to fire (absolute; 0 disables this test).
    max_no_improvement : int or None, default=None
        Minibatches without improvement of a worker's smoothed inertia before
        its rule fires; None disables this test.
    reassignment_ratio : float, default=0.0
        scikit-learn's random reassignment of centers that absorb fewer rows
        than this share of the largest count; 0 disables it.
    seed : int, default=0
        Seeds the reassignment's draws, drawn on the driver.

    Notes
    -----
    Each worker applies scikit-learn's ``MiniBatchKMeans`` stopping rule to
    its own minibatches; training stops at the end of the first epoch after
    which every worker's rule has fired.
    """

    state: KMeansState
    batch_size: int
    tol: float = 0.0
    max_no_improvement: int | None = None
    reassignment_ratio: float = 0.0
    seed: int = 0

    def for_worker(self, share: float) -> KMeansLearner:
        """The same learner: counts are the learning rates, whatever the share."""
        return self

    def start(self, partitions: list[Partition]) -> KMeansRun:
        """Begin training on one worker's partitions."""
        return KMeansRun(self, partitions)

    def average(self, states: Sequence[KMeansState], shares: np.ndarray) -> KMeansState:
        """The workers' centers averaged (see :meth:`KMeansState.average`)."""
        return KMeansState.average(states, shares, self.state)


class KMeansRun:
    """One worker's minibatch K-Means on its partitions."""

    def __init__(self, learner: KMeansLearner, partitions: list[Partition]) -> None:
        self.learner = learner
        self.state = learner.state.copy()
        self.training_rows = [
            np.arange(p.X.shape[0], dtype=np.int64) for p in partitions
        ]
        self.n_rows = int(sum(rows.shape[0] for rows in self.training_rows))
        self.weight = float(sum(p.sample_weight.sum() for p in partitions))
        # Every worker draws from the driver's seed: the draws pick positions
        # within each worker's own minibatches, which hold different rows.
        self.reassignment = Reassignment.seeded(
            learner.reassignment_ratio, learner.seed
        )
        self.rule = SmoothedInertiaRule(
            learner.tol, learner.max_no_improvement, learner.batch_size, self.n_rows
        )
        self.inertia = 0.0
        self.steps = 0
        self.n_visited = 0

    def train(self, partition: Partition, rows: np.ndarray) -> float:
        """Run minibatch K-Means over ``rows``; return their inertia."""
        stats = np.empty((n_minibatches(rows.shape[0], self.learner.batch_size), 3))
        inertia = kmeans_pass(
            self.state.centers,
            self.state.counts,
            partition.X,
            partition.sample_weight,
            rows,
            self.learner.batch_size,
            reassignment=self.reassignment,
            batch_stats=stats,
        )
        if self.rule.enabled:
            for batch_inertia, weight, shift in stats:
                self.rule.update(batch_inertia, weight, shift)
        self.steps += stats.shape[0]
        self.inertia += inertia
        return inertia

    def epoch_values(self) -> tuple[dict[str, float], dict[str, Any]]:
        """The epoch's inertia, its weight, and whether this worker's rule fired."""
        values = {
            "loss": self.inertia,
            "n_train": float(self.n_rows),
            "weight": self.weight,
            # What ``loss`` sums over: its mean is the history's loss.
            "loss_weight": self.weight,
            "converged": float(self.rule.fired),
            "workers": 1.0,
        }
        record = {
            "local_loss": self.inertia / max(self.weight, 1e-300),
            "samples": self.n_rows,
            "steps": self.steps,
        }
        self.n_visited += self.n_rows
        self.inertia = 0.0
        self.steps = 0
        return values, record

    def after_epoch(self, totals: dict[str, float]) -> tuple[dict[str, Any], bool]:
        """Mean squared distance per unit of weight over all workers; stop once
        every worker's rule has fired."""
        record = {"loss": totals["loss"] / max(totals["weight"], 1e-300)}
        stop = self.rule.enabled and totals["converged"] >= totals["workers"]
        return record, stop

    def result(self) -> tuple[KMeansState, int]:
        """The trained centers and the rows visited."""
        return self.state, self.n_visited
