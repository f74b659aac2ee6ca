"""Scheduler-side coordination of fits: membership, epoch barrier, events."""

from ._policy import BalancingPolicy, PolicyLimits, Settings, WorkerSignals
from ._scheduler_plugin import EVENT_TOPIC, PLUGIN_NAME, ASGDSchedulerPlugin
from ._worker_side import report_epoch, request_settings

__all__ = [
    "EVENT_TOPIC",
    "PLUGIN_NAME",
    "ASGDSchedulerPlugin",
    "BalancingPolicy",
    "PolicyLimits",
    "Settings",
    "WorkerSignals",
    "report_epoch",
    "request_settings",
]
