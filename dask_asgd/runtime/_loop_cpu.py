"""CPU time of a worker's event loop: the part of an exchange's cost that the
training thread does not see.

Sending a state and receiving one are serialised, written and read by the
worker's event loop, in another thread than the training. On a machine with
few cores that work takes CPU from training as surely as the merge does, so
the balancer counts it. On a 2-core machine, sending an 8 MB state every
chunk of 10,000 rows (about 1.2 ms of training) cut two workers' training
from 8.1 to 4.0 M samples/s, mainly through CPU contention between the
training threads, the event loops and the scheduler. In a two-process
adaptive fit with a 3.2 MB state the loop's CPU came to about 0.8 times the
exchange time of the training thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from distributed import Scheduler, Worker

logger = logging.getLogger(__name__)


def event_loop_cpu_clock(worker: Worker) -> Callable[[], float] | None:
    """A function giving this worker's share of its event loop's CPU seconds.

    Parameters
    ----------
    worker : distributed.Worker
        The worker whose loop to watch.

    Returns
    -------
    callable or None
        Returns the CPU seconds the loop thread has used so far, divided by
        the number of workers of this process that share the loop (workers
        started in one process, as ``Worker(...)`` objects on one loop, do).
        None where the platform has no per-thread CPU
        clock, the loop's thread is unknown, or a scheduler runs on the same
        loop (its CPU cannot be told from the exchanges').
    """
    asyncio_loop = getattr(worker.loop, "asyncio_loop", None)
    # CPython's event loops record the thread that runs them; there is no
    # public accessor.
    thread_id = getattr(asyncio_loop, "_thread_id", None)
    if thread_id is None:
        return None
    if _loop_runs_a_scheduler(asyncio_loop):
        # A threads cluster (``LocalCluster(processes=False)``): the loop also
        # runs the scheduler and, usually, the client. Their CPU is no
        # exchange's: counted in, it made one exchange of a 101-float state
        # cost 1-19 ms, most of it the scheduler's, and the fewer the
        # exchanges the larger the share each one was charged. The training
        # thread's time for an exchange still includes its waits for the
        # interpreter lock that the loop holds while it sends and receives.
        return None
    try:
        clock = time.pthread_getcpuclockid(thread_id)
        time.clock_gettime(clock)
    except (AttributeError, OSError):
        logger.debug("No CPU clock for the event loop thread", exc_info=True)
        return None
    sharing = sum(
        1
        for other in list(Worker._instances)
        if getattr(other.loop, "asyncio_loop", None) is asyncio_loop
    )
    share = 1.0 / max(sharing, 1)

    def loop_cpu_seconds() -> float:
        try:
            return time.clock_gettime(clock) * share
        except OSError:  # pragma: no cover - the loop thread has exited
            return 0.0

    return loop_cpu_seconds


def _loop_runs_a_scheduler(asyncio_loop: object) -> bool:
    """Whether a scheduler of this process runs on ``asyncio_loop``."""
    return any(
        getattr(scheduler.loop, "asyncio_loop", None) is asyncio_loop
        for scheduler in list(Scheduler._instances)
    )
