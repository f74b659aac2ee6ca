"""The coordinator of fits, on the scheduler: membership, epoch barrier,
progress, abort and the balancer's requests; and its callers."""

from ._client import EpochAnswer, FitRegistry, WorkerControlPlane
from ._scheduler_plugin import EVENT_TOPIC, PLUGIN_NAME, ASGDSchedulerPlugin

__all__ = [
    "EVENT_TOPIC",
    "PLUGIN_NAME",
    "ASGDSchedulerPlugin",
    "EpochAnswer",
    "FitRegistry",
    "WorkerControlPlane",
]
