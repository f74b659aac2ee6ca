"""Checks that several cluster tests make after a fit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from distributed import Client, LocalCluster
from distributed.utils_test import poll_for


@contextlib.contextmanager
def three_process_workers() -> Iterator[Client]:
    """A LocalCluster of three worker processes, one thread each, and a client."""
    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def assert_fit_left_nothing(client):
    """No fit registered, no open topic, no task or datum left behind."""
    fits = client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.plugins["asgd"].fits)
    )
    assert fits == []

    def open_topics(dask_worker):
        plugin = dask_worker.plugins.get("asgd-exchange")
        return plugin.stats()["topics"] if plugin is not None else []

    assert all(topics == [] for topics in client.run(open_topics).values())
    poll_for(
        lambda: (
            client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            == 0
        ),
        timeout=10,
    )


def last_epoch_per_worker(model):
    history = model.history_
    return history[history["epoch"] == history["epoch"].max()].set_index("worker")
