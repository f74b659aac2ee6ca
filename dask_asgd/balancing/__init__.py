"""The control law of the balancer: signals in, send interval and message size out.

Pure Python, no Dask: the coordinator feeds it, and it is tested alone.
"""

from ._policy import BalancingPolicy, PolicyLimits, Settings, WorkerSignals

__all__ = ["BalancingPolicy", "PolicyLimits", "Settings", "WorkerSignals"]
