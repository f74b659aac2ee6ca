"""Shuffled copies written by background threads while the worker trains."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from distributed import Client, LocalCluster
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
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
    partition = filling_partition(X, rows, targets, weights, None)
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


def test_a_failed_fit_leaves_no_copy_running():
    # The unstable data of scikit-learn's own overflow test: the model
    # diverges during training, after the rows were placed.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(4000, 10))
    X[:, :2] *= 1e300
    y = (X[:, 2] > 0.0).astype(np.int32)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        model = ASGDClassifier(max_iter=2, tol=None, random_state=0).fit(X[:, 2:], y)
        assert not copy_threads()
        diverging = ASGDClassifier(alpha=0.1, loss="squared_hinge", max_iter=50)
        with pytest.raises(ValueError, match="Floating-point under-/overflow"):
            diverging.fit(X, y)
        assert not copy_threads()
        assert model.coef_.shape == (1, 8)
