"""A fit says what is wrong once, in words that name the culprit, and
otherwise stays quiet: no warnings of dask's, no worker tracebacks."""

from __future__ import annotations

import logging
import warnings

import dask
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning

from dask_asgd import ASGDClassifier, ASGDKMeans

dd = pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, 3)), columns=["a", "b", "c"])
    labels = pd.Series(np.where(X["a"] > 0, "yes", "no"), dtype="string")
    return X, labels


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("dtype", ["string", "category", "object"])
def test_text_and_categorical_dask_labels_fit_without_warnings(client, frame, dtype):
    X, labels = frame
    dX = dd.from_pandas(X, npartitions=4)
    dy = dd.from_pandas(labels.astype(dtype), npartitions=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ASGDClassifier(max_iter=2, tol=None, random_state=0).fit(dX, dy)
        predicted = model.predict(dX).compute()
    assert [str(w.message) for w in caught] == []
    assert list(model.classes_) == ["no", "yes"]
    assert set(predicted) <= {"no", "yes"}


def test_nullable_numeric_columns_train_as_numbers(client, frame):
    X, labels = frame
    nullable = X.astype("Float64").assign(d=pd.array(np.arange(2000) % 3, "Int64"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ASGDClassifier(max_iter=2, tol=None, random_state=0).fit(
            dd.from_pandas(nullable, npartitions=4),
            dd.from_pandas(labels, npartitions=4),
        )
    assert [str(w.message) for w in caught] == []
    assert model.n_features_in_ == 4


@pytest.mark.parametrize("make", ["classifier", "kmeans"])
def test_a_text_column_is_one_error_naming_it_before_any_task_runs(client, frame, make):
    X, labels = frame
    dX = dd.from_pandas(X.assign(colour=np.where(X["b"] > 0, "red", "blue")), 4)
    worker_log = logging.getLogger("distributed.worker")
    collect = _Collect()
    worker_log.addHandler(collect)
    try:
        with pytest.raises(ValueError, match=r"Column 'colour' .* not numeric"):
            if make == "classifier":
                ASGDClassifier(max_iter=2).fit(dX, dd.from_pandas(labels, 4))
            else:
                ASGDKMeans(2, max_iter=2).fit(dX)
    finally:
        worker_log.removeHandler(collect)
    assert not [m for m in collect.messages if "Compute Failed" in m]
    erred = client.run_on_scheduler(
        lambda dask_scheduler: [
            key for key, ts in dask_scheduler.tasks.items() if ts.state == "erred"
        ]
    )
    assert erred == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("training.chunk-samples", "lots", "an integer"),
        ("exchange.mailbox-slots", 2.5, "an integer"),
        ("embedded.processes", "no", "true or false"),
        ("balancing.cpu-budget", "half", "a number"),
    ],
)
def test_a_setting_of_the_wrong_type_is_an_error_naming_it(key, value, expected):
    X = np.random.default_rng(0).normal(size=(100, 2))
    y = (X[:, 0] > 0).astype(int)
    with (
        dask.config.set({f"asgd.{key}": value}),
        pytest.raises(ValueError, match=rf"asgd\.{key} must be {expected}, got"),
    ):
        ASGDClassifier().fit(X, y)


def test_settings_given_as_text_are_read_as_their_type():
    from dask_asgd import _config

    with dask.config.set(
        {
            "asgd.training.chunk-samples": "4096",
            "asgd.recovery.replace-lost-workers": "false",
        }
    ):
        config = _config.load()
    assert config.training.chunk_samples == 4096
    assert config.recovery.replace_lost_workers is False


def test_the_convergence_warning_points_at_the_callers_line():
    X = np.random.default_rng(0).normal(size=(300, 2))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ASGDClassifier(max_iter=1, tol=1e-3, random_state=0).fit(X, y)
    [warning] = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert warning.filename == __file__


def test_the_kmeans_init_warning_points_at_the_callers_line():
    X = np.random.default_rng(0).normal(size=(300, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ASGDKMeans(2, init=X[:2], n_init=3, max_iter=2, random_state=0).fit(X)
    [warning] = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert warning.filename == __file__
