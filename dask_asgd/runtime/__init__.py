"""Runs a fit and knows no model: placement, the driver, the one worker loop,
the communicator and the control plane interface."""

from ._communicator import Communicator
from ._driver import FitOutcome, run_fit
from ._fit import fit_on_cluster, policy_limits
from ._placement import (
    DaskRows,
    InMemoryRows,
    Placement,
    cluster_workers,
    place_dask,
    scatter_in_memory,
)
from ._task import ExchangeOptions, FitTask, WorkerResult
from ._worker_loop import run_worker, train_worker

__all__ = [
    "Communicator",
    "DaskRows",
    "ExchangeOptions",
    "FitOutcome",
    "FitTask",
    "InMemoryRows",
    "Placement",
    "WorkerResult",
    "cluster_workers",
    "fit_on_cluster",
    "place_dask",
    "policy_limits",
    "run_fit",
    "run_worker",
    "scatter_in_memory",
    "train_worker",
]
