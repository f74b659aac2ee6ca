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

    def is_finite(self) -> bool:
        """Whether every number of the state is finite."""
        return bool(
            np.isfinite(self.weights).all() and np.isfinite(self.intercepts).all()
        )
