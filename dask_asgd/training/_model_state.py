"""The arrays of a model that workers train, exchange and average.

Both kinds of state offer what the exchange and the driver need, and nothing
about how they are trained: the matrix a worker sends and merges
(``exchanged``/``set_exchanged``), whether the Parzen-window test looks at
its rows one by one, and how the driver averages the workers' final states.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


def _weighted_sum(arrays: Sequence[np.ndarray], shares: np.ndarray) -> np.ndarray:
    total = np.zeros_like(arrays[0])
    for share, array in zip(shares, arrays, strict=True):
        total += share * array
    return total


@dataclass
class ModelState:
    """The arrays a linear model trains and the workers average.

    The exchanged matrix is ``[weights | intercepts]``, one row per output;
    rows are separate one-vs-rest problems, so the Parzen test takes each
    row on its own.
    """

    #: Apply the Parzen-window test to each row of the exchanged matrix.
    parzen_per_row: ClassVar[bool] = True

    weights: np.ndarray
    intercepts: np.ndarray
    average_weights: np.ndarray
    average_intercepts: np.ndarray

    @classmethod
    def zeros(cls, n_outputs: int, n_features: int, dtype: Any) -> ModelState:
        """A state of zeros."""
        return cls(
            np.zeros((n_outputs, n_features), dtype=dtype),
            np.zeros(n_outputs, dtype=dtype),
            np.zeros((n_outputs, n_features), dtype=dtype),
            np.zeros(n_outputs, dtype=dtype),
        )

    def copy(self) -> ModelState:
        """A deep copy."""
        return ModelState(
            self.weights.copy(),
            self.intercepts.copy(),
            self.average_weights.copy(),
            self.average_intercepts.copy(),
        )

    def without_averages(self) -> ModelState:
        """This state with empty running-average arrays, to send back cheaply.

        Without averaging the running averages never change from the start
        state, so a worker need not return them (they are as big as the model).
        """
        dtype = self.average_weights.dtype
        # Fresh empty arrays, not views: a view would keep the full averages
        # alive for as long as the result is.
        return ModelState(
            self.weights,
            self.intercepts,
            np.empty((self.weights.shape[0], 0), dtype=dtype),
            np.empty(0, dtype=dtype),
        )

    def has_averages(self) -> bool:
        """Whether the running-average arrays are present (not stripped)."""
        return self.average_weights.shape == self.weights.shape

    def is_finite(self) -> bool:
        """Whether every number of the state is finite."""
        return bool(
            np.isfinite(self.weights).all() and np.isfinite(self.intercepts).all()
        )

    def exchanged(self) -> np.ndarray:
        """The matrix ``[weights | intercepts]`` that workers exchange (a copy)."""
        return np.concatenate([self.weights, self.intercepts[:, np.newaxis]], axis=1)

    def set_exchanged(self, matrix: np.ndarray) -> None:
        """Write an exchanged matrix back into the weights and intercepts."""
        self.weights[...] = matrix[:, :-1]
        self.intercepts[...] = matrix[:, -1]

    @property
    def exchanged_shape(self) -> tuple[int, int]:
        """Shape of :meth:`exchanged`."""
        return self.weights.shape[0], self.weights.shape[1] + 1

    @property
    def exchanged_nbytes(self) -> int:
        """Bytes of :meth:`exchanged`."""
        return int(self.weights.nbytes + self.intercepts.nbytes)

    @classmethod
    def average(
        cls, states: Sequence[ModelState], shares: np.ndarray, start: ModelState
    ) -> ModelState:
        """The weighted mean of the workers' final states.

        Parameters
        ----------
        states : sequence of ModelState
            One per worker.
        shares : ndarray of shape (len(states),)
            Weights summing to 1.
        start : ModelState
            The state the fit started from: workers that did not average
            return no running averages, which then stay as in ``start``.
        """
        if not all(state.has_averages() for state in states):
            return cls(
                _weighted_sum([s.weights for s in states], shares),
                _weighted_sum([s.intercepts for s in states], shares),
                start.average_weights.copy(),
                start.average_intercepts.copy(),
            )
        return cls(
            *(
                _weighted_sum([getattr(s, f.name) for s in states], shares)
                for f in dataclasses.fields(cls)
            )
        )


@dataclass
class KMeansState:
    """Cluster centers and the weight of the rows each has absorbed.

    Only the centers are exchanged: a count is each worker's own learning
    rate. Centers compete for the same rows, so a received set of centers is
    accepted or rejected as a whole by the Parzen test.
    """

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
            _weighted_sum([s.centers for s in states], shares),
            start.counts + added,
        )
