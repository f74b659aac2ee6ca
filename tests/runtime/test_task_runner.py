"""The driver's Dask seam: waiting for training tasks without moving their results."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from distributed import Client, LocalCluster

from dask_asgd.runtime._driver import DaskTaskRunner


@pytest.fixture(scope="module")
def cluster_and_client():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield cluster, client


#: The cluster's workers are threads of this process: a plain event reaches
#: them. (A ``distributed.Event`` would start a worker client, which makes
#: itself the process's default scheduler and outlives this module.)
_RELEASE = threading.Event()


def _wait_for_event(name: str) -> np.ndarray:
    assert _RELEASE.wait(60), name
    return np.ones(100_000)


def test_waiting_does_not_download_results(cluster_and_client):
    # A worker's state can be megabytes on a slow link: waiting must leave
    # the one download to gather.
    cluster, client = cluster_and_client
    worker = next(iter(cluster.workers.values()))
    runner = DaskTaskRunner(client, train=_wait_for_event)
    future = client.submit(np.ones, 100_000, pure=False)
    sent_before = worker.transfer_outgoing_count_total
    assert runner.wait([future], timeout=30)
    assert worker.transfer_outgoing_count_total == sent_before
    (result,) = runner.gather([future])
    assert result.shape == (100_000,)
    assert worker.transfer_outgoing_count_total == sent_before + 1


def test_waiting_times_out_on_a_running_task_then_sees_it_end(cluster_and_client):
    _, client = cluster_and_client
    runner = DaskTaskRunner(client, train=_wait_for_event)
    _RELEASE.clear()
    future = client.submit(_wait_for_event, "test-task-runner-release", pure=False)
    assert not runner.wait([future], timeout=0.2)
    assert runner.state(future) == "running"
    _RELEASE.set()
    assert runner.wait([future], timeout=30)
    assert runner.state(future) == "done"
