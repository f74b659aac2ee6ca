"""dask-asgd: asynchronous parallel SGD as scikit-learn estimators on Dask."""

from . import _config  # noqa: F401  (registers the asgd.* config defaults)
from ._exceptions import (
    ASGDError,
    ExchangeError,
    FitAbortedError,
    PluginNotInstalledError,
    WorkerLostError,
)
from ._version import __version__
from .estimators import ASGDClassifier, ASGDKMeans, ASGDRegressor

__all__ = [
    "ASGDClassifier",
    "ASGDError",
    "ASGDKMeans",
    "ASGDRegressor",
    "ExchangeError",
    "FitAbortedError",
    "PluginNotInstalledError",
    "WorkerLostError",
    "__version__",
]
