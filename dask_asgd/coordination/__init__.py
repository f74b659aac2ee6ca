"""The coordinator of fits, on the scheduler: membership, epoch barrier,
progress, abort and the balancer's requests; and its callers."""

from ._client import EpochAnswer, FitRegistry, Joined, Progress, WorkerControlPlane
from ._scheduler_plugin import (
    ABORT_NONFINITE_OWN,
    ABORT_NONFINITE_PEER,
    ABORT_WORKER_LOST,
    EVENT_TOPIC,
    PLUGIN_NAME,
    ASGDSchedulerPlugin,
)

__all__ = [
    "ABORT_NONFINITE_OWN",
    "ABORT_NONFINITE_PEER",
    "ABORT_WORKER_LOST",
    "EVENT_TOPIC",
    "PLUGIN_NAME",
    "ASGDSchedulerPlugin",
    "EpochAnswer",
    "FitRegistry",
    "Joined",
    "Progress",
    "WorkerControlPlane",
]
