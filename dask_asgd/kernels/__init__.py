"""Numba kernels: pure functions on arrays, with no Dask and no scikit-learn."""

from ._kmeans import kmeans_pass
from ._losses import LOSS_CODES, loss_derivative, loss_value
from ._merge import parzen_merge
from ._sgd import (
    PENALTY_CODES,
    SCHEDULE_ADAPTIVE,
    SCHEDULE_CODES,
    StepSettings,
    learning_rate,
    optimal_init,
    sgd_pass,
)

__all__ = [
    "LOSS_CODES",
    "PENALTY_CODES",
    "SCHEDULE_ADAPTIVE",
    "SCHEDULE_CODES",
    "StepSettings",
    "kmeans_pass",
    "learning_rate",
    "loss_derivative",
    "loss_value",
    "optimal_init",
    "parzen_merge",
    "sgd_pass",
]
