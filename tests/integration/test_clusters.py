"""Multi-worker ASGD fits on real clusters: exchange, Dask input, CLI cluster."""

from __future__ import annotations

import sys

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from distributed.utils import open_port
from distributed.utils_test import popen
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from dask_asgd import ASGDClassifier, ASGDKMeans, ASGDRegressor
from tests._cluster_checks import (
    assert_fit_left_nothing,
    last_epoch_per_worker,
    three_process_workers,
)

EXCHANGE_COLUMNS = ["messages_sent", "messages_received", "rows_accepted"]


@pytest.fixture(scope="module")
def three_workers():
    with three_process_workers() as client:
        yield client


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        30_000, 20, n_informative=10, class_sep=2.0, random_state=0
    )
    return X, y


def test_fixed_exchange_on_two_process_workers_w8a(local_cluster, w8a):
    X, y = w8a
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    with Client(local_cluster, set_as_default=False) as client, client.as_current():
        model = ASGDClassifier(
            loss="log_loss", communication="fixed", send_interval=512, random_state=0
        ).fit(X_train, y_train)
        reference = SGDClassifier(loss="log_loss", random_state=0).fit(X_train, y_train)
        assert model.score(X_test, y_test) >= reference.score(X_test, y_test) - 0.01
        last = last_epoch_per_worker(model)
        assert len(last) == 2
        for column in EXCHANGE_COLUMNS:
            assert (last[column] > 0).all(), (column, last[column])
        assert_fit_left_nothing(client)


def test_three_workers_dask_array_uneven_chunks(three_workers, data):
    X, y = data
    X_dask = da.from_array(X, chunks=((4000, 13000, 9000, 4000), (20,)))
    y_dask = da.from_array(y, chunks=((4000, 13000, 9000, 4000),))
    with three_workers.as_current():
        model = ASGDClassifier(loss="log_loss", send_interval=1024, random_state=0).fit(
            X_dask, y_dask
        )
        predictions = model.predict(X_dask)
        assert isinstance(predictions, da.Array)
        np.testing.assert_array_equal(predictions.compute(), model.predict(X))
    reference = SGDClassifier(loss="log_loss", random_state=0).fit(X, y)
    assert model.score(X, y) >= reference.score(X, y) - 0.02
    assert model.history_["worker"].nunique() == 3
    assert_fit_left_nothing(three_workers)


def test_more_workers_than_partitions(three_workers, data):
    X, y = data
    X_dask = da.from_array(X, chunks=(15_000, 20))
    y_dask = da.from_array(y, chunks=15_000)
    with three_workers.as_current():
        model = ASGDClassifier(random_state=0, max_iter=5, tol=None).fit(X_dask, y_dask)
    # Chunks stay where they were computed: at most two workers hold data.
    assert 1 <= model.history_["worker"].nunique() <= 2
    assert model.score(X, y) > 0.8
    assert_fit_left_nothing(three_workers)


def test_dask_dataframe_keeps_feature_names(three_workers):
    X, y = make_regression(20_000, 5, noise=1.0, random_state=0)
    frame = pd.DataFrame(X, columns=[f"feature_{i}" for i in range(5)])
    X_frame = dd.from_pandas(frame, npartitions=4)
    y_series = dd.from_pandas(pd.Series(y), npartitions=4)
    with three_workers.as_current():
        model = ASGDRegressor(random_state=0).fit(X_frame, y_series)
        assert list(model.feature_names_in_) == list(frame.columns)
        assert model.score(frame, y) > 0.99
        # Missing columns: the error pandas input gets, in scikit-learn's words.
        with pytest.raises(ValueError, match="feature names should match"):
            model.predict(X_frame[["feature_0", "feature_1"]])
    assert_fit_left_nothing(three_workers)


def test_bad_values_in_a_dask_chunk_fail_cleanly(three_workers, data):
    X, y = data
    X = X.copy()
    X[20_000, 3] = np.nan
    with three_workers.as_current():
        with pytest.raises(ValueError, match="NaN"):
            ASGDClassifier(random_state=0).fit(
                da.from_array(X, chunks=(5000, 20)), da.from_array(y, chunks=5000)
            )
    assert_fit_left_nothing(three_workers)


def test_workers_joining_before_fit_take_part(data):
    X, y = data
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        cluster.scale(2)
        client.wait_for_workers(2)
        with client.as_current():
            model = ASGDClassifier(random_state=0, max_iter=3, tol=None).fit(X, y)
        assert model.history_["worker"].nunique() == 2


@pytest.mark.timeout(180)
def test_fit_on_cli_started_cluster(data):
    """The same fit on ``dask scheduler`` and two ``dask worker`` processes."""
    X, y = data
    port = open_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler_command = [
        sys.executable,
        "-m",
        "dask",
        "scheduler",
        "--no-dashboard",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    worker_command = [
        sys.executable,
        "-m",
        "dask",
        "worker",
        address,
        "--nthreads",
        "1",
        "--no-dashboard",
        "--host",
        "127.0.0.1",
    ]
    with popen(scheduler_command), popen(worker_command), popen(worker_command):
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            model = ASGDClassifier(
                loss="log_loss", send_interval=1024, random_state=0
            ).fit(X, y)
            assert model.score(X, y) > 0.85
            last = last_epoch_per_worker(model)
            assert len(last) == 2
            assert (last["messages_received"] > 0).all()
            assert_fit_left_nothing(client)
            # K-Means runs on the same machinery, unchanged.
            kmeans = ASGDKMeans(2, random_state=0).fit(X)
            assert kmeans.history_["worker"].nunique() == 2
            np.testing.assert_array_equal(kmeans.predict(X), kmeans.labels_)
            assert_fit_left_nothing(client)


def test_remove_plugins_leaves_no_handler(three_workers, data):
    from dask_asgd.backends import remove_plugins

    X, y = data
    with three_workers.as_current():
        ASGDClassifier(random_state=0, max_iter=2, tol=None).fit(X, y)
    remove_plugins(three_workers)

    def asgd_handlers(dask_worker=None, dask_scheduler=None):
        server = dask_worker or dask_scheduler
        names = list(server.handlers) + list(server.stream_handlers)
        return [name for name in names if name.startswith("asgd")]

    assert three_workers.run_on_scheduler(asgd_handlers) == []
    assert all(names == [] for names in three_workers.run(asgd_handlers).values())
    # The next fit installs them again.
    with three_workers.as_current():
        model = ASGDClassifier(random_state=0, max_iter=2, tol=None).fit(X, y)
    assert model.history_["worker"].nunique() == 3
