"""Shuffled copies written by background threads while the worker trains."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from distributed import Client, LocalCluster
from sklearn.datasets import make_classification

from dask_asgd.learners import Partition
from dask_asgd.runtime._background_copy import (
    BackgroundGather,
    CopyCancelled,
    FillingPartition,
    filling_partition,
)
from dask_asgd.runtime._placement import scatter_in_memory


def copy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "asgd-background-copy"]


@pytest.fixture
def source():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 7))
    return X, rng.permutation(1000)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_copy_holds_the_rows_in_the_given_order(source, threads):
    X, rows = source
    target = np.empty_like(X)
    copy = BackgroundGather(X, rows, target, threads, step_rows=64).start()
    copy.wait_rows(130)
    # Whatever the writers did since, the rows waited for are in place.
    np.testing.assert_array_equal(target[:130], X[rows[:130]])
    copy.wait_rows(1000)
    assert copy.complete
    np.testing.assert_array_equal(target, X[rows])


def test_a_cancelled_copy_stops_and_fails_its_waiters(source):
    X, rows = source
    target = np.empty_like(X)
    copy = BackgroundGather(X, rows, target, threads=2, step_rows=1)
    # Cancelled before its thread runs: it writes nothing.
    copy.cancel()
    copy.start()
    with pytest.raises(CopyCancelled):
        copy.wait_rows(1)
    copy.cancel()
    assert not copy_threads()


def test_an_error_in_the_copy_reaches_the_waiter(source):
    X, rows = source
    # A target with the wrong number of features: NumPy refuses the gather.
    copy = BackgroundGather(X, rows, np.empty((1000, 3)), 2, step_rows=64).start()
    with pytest.raises(ValueError):
        copy.wait_rows(64)


def test_a_filling_partition_serialises_as_a_plain_complete_one(source):
    X, rows = source
    targets = np.where(np.arange(1000) % 2, 1.0, -1.0)
    weights = np.linspace(0.5, 1.5, 1000)
    per_row = {"targets": targets[rows], "sample_weight": weights[rows]}
    partition = filling_partition(X, rows, {**per_row, "validation": None})
    assert isinstance(partition, FillingPartition)
    restored = pickle.loads(pickle.dumps(partition))
    assert type(restored) is Partition
    assert restored.rows_in_random_order
    np.testing.assert_array_equal(restored.X, X[rows])
    np.testing.assert_array_equal(restored.targets, targets[rows])
    np.testing.assert_array_equal(restored.sample_weight, weights[rows])
    # The rows' bytes count as before, for Dask's memory accounting.
    assert partition.__sizeof__() >= X.nbytes


def test_in_process_workers_get_filling_copies_that_the_placement_releases():
    X, y = make_classification(5000, 8, random_state=0)
    targets = np.where(y == 1, 1.0, -1.0)
    with (
        LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        workers = sorted(client.scheduler_info()["workers"])
        placement = scatter_in_memory(
            client, workers, X, targets, np.ones(5000), None, np.random.default_rng(0)
        )
        partitions = [futures[0].result() for futures in placement.partitions.values()]
        assert all(isinstance(p, FillingPartition) for p in partitions)
        for partition, block in zip(
            partitions, placement.origins.values(), strict=True
        ):
            partition.wait_rows(partition.X.shape[0])
            np.testing.assert_array_equal(partition.X, X[block])
        placement.release()
        assert placement.copies == []
        assert not copy_threads()
        # Without shuffling the rows are not copied in a random order.
        unshuffled = scatter_in_memory(
            client, workers, X, targets, np.ones(5000), None, None
        )
        partitions = [f[0].result() for f in unshuffled.partitions.values()]
        assert not any(isinstance(p, FillingPartition) for p in partitions)
        assert not any(p.rows_in_random_order for p in partitions)
        unshuffled.release()


def test_releasing_a_placement_mid_copy_stops_its_writers():
    # 400,000 x 50 rows: the copy takes tens of milliseconds here, longer
    # than placing and releasing.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400_000, 50))
    targets = np.where(rng.random(400_000) < 0.5, 1.0, -1.0)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        workers = sorted(client.scheduler_info()["workers"])
        placement = scatter_in_memory(
            client, workers, X, targets, np.ones(400_000), None, rng
        )
        [copy] = placement.copies
        placement.release()
        # Released means no writer is left running, finished or not.
        assert not copy_threads()
        if not copy.complete:
            with pytest.raises(CopyCancelled):
                copy.wait_rows(400_000)
