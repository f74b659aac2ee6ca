"""The fit driver and the per-worker training loop."""

from ._driver import FitOutcome, ensure_plugins, remove_plugins, run_fit
from ._kmeans_loop import KMeansTask, train_kmeans_worker
from ._model_state import KMeansState, ModelState
from ._placement import (
    DaskRows,
    InMemoryRows,
    Placement,
    cluster_workers,
    place_dask,
    scatter_in_memory,
)
from ._worker_loop import Partition, WorkerTask, train_worker

__all__ = [
    "DaskRows",
    "FitOutcome",
    "InMemoryRows",
    "KMeansState",
    "KMeansTask",
    "ModelState",
    "Partition",
    "Placement",
    "WorkerTask",
    "cluster_workers",
    "ensure_plugins",
    "place_dask",
    "remove_plugins",
    "run_fit",
    "scatter_in_memory",
    "train_kmeans_worker",
    "train_worker",
]
