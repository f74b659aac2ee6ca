"""The event loop's CPU clock that the balancer counts into an exchange's cost."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster, Worker, get_worker
from distributed.utils import open_port
from distributed.utils_test import popen

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


def _has_clock() -> bool:
    return event_loop_cpu_clock(get_worker()) is not None


def test_clock_counts_a_process_workers_loop():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        share, before, after = client.submit(_share_and_growth, pure=False).result()
        assert share == pytest.approx(1.0)
        assert after > before >= 0.0


@pytest.mark.timeout(120)
def test_workers_sharing_a_loop_split_its_clock():
    # Two workers started in one process run on its one event loop; with the
    # scheduler in another process, each gets half of the loop's CPU.
    port = open_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [sys.executable, "-m", "dask", "scheduler", "--no-dashboard"]
    scheduler += ["--host", "127.0.0.1", "--port", str(port)]

    async def on_two_workers_of_this_process():
        async with (
            Worker(address, nthreads=1) as first,
            Worker(address, nthreads=1),
            Client(address, asynchronous=True, timeout=60) as client,
        ):
            future = client.submit(
                _share_and_growth, pure=False, workers=[first.address]
            )
            return await future

    with popen(scheduler):
        share, before, after = asyncio.run(on_two_workers_of_this_process())
    assert share == pytest.approx(0.5, rel=0.05)
    assert after > before >= 0.0


def test_no_clock_where_the_scheduler_shares_the_loop():
    # In a threads cluster the loop also runs the scheduler: its CPU is not
    # the exchanges' to count.
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(_has_clock, pure=False).result() is False
