"""The event loop's CPU clock that the balancer counts into an exchange's cost."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster, get_worker

from dask_asgd.runtime._loop_cpu import event_loop_cpu_clock


def _share_and_growth() -> tuple[float, float, float]:
    """On a worker: its share of the loop's CPU, and the clock around busy work."""
    worker = get_worker()
    clock = event_loop_cpu_clock(worker)
    assert clock is not None
    raw_clock = time.pthread_getcpuclockid(worker.loop.asyncio_loop._thread_id)
    share = clock() / time.clock_gettime(raw_clock)
    before = clock()

    def spin() -> None:
        # CPU work on the loop thread, as serialising a large state would be.
        rng = np.random.default_rng(0)
        for _ in range(200):
            rng.random(50_000).sum()

    done = threading.Event()
    worker.loop.add_callback(spin)
    # Callbacks run in order: this one runs once the busy one has finished.
    worker.loop.add_callback(done.set)
    assert done.wait(30)
    return share, before, clock()


@pytest.mark.parametrize("n_workers", [1, 2])
def test_clock_counts_the_loop_threads_cpu_and_splits_a_shared_loop(n_workers):
    # Thread workers of one process share one event loop: each gets its share.
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        share, before, after = client.submit(_share_and_growth, pure=False).result()
        assert share == pytest.approx(1.0 / n_workers, rel=0.05)
        assert after > before >= 0.0
