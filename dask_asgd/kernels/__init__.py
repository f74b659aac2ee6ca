"""Numba kernels: pure functions on arrays, with no Dask and no scikit-learn."""

from ._kmeans import (
    BATCH_INERTIA,
    BATCH_SHIFT,
    BATCH_WEIGHT,
    Reassignment,
    kmeans_pass,
    n_minibatches,
)
from ._losses import LOSS_CODES, loss_derivative, loss_value
from ._merge import average_merge, parzen_merge
from ._sgd import (
    PENALTY_CODES,
    SCHEDULE_ADAPTIVE,
    SCHEDULE_CODES,
    StepSettings,
    learning_rate,
    optimal_init,
    sgd_pass,
)
from ._sklearn_order import sklearn_shuffle

__all__ = [
    "BATCH_INERTIA",
    "BATCH_SHIFT",
    "BATCH_WEIGHT",
    "LOSS_CODES",
    "PENALTY_CODES",
    "SCHEDULE_ADAPTIVE",
    "SCHEDULE_CODES",
    "Reassignment",
    "StepSettings",
    "average_merge",
    "kmeans_pass",
    "learning_rate",
    "loss_derivative",
    "loss_value",
    "n_minibatches",
    "optimal_init",
    "parzen_merge",
    "sgd_pass",
    "sklearn_shuffle",
]
