"""The arrays of a linear model that workers train, exchange and average."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ModelState:
    """The arrays a linear model trains and the workers average."""

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
