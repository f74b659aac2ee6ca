"""ASGDClassifier / ASGDRegressor against scikit-learn, on real Dask clusters."""

from __future__ import annotations

import pickle

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster
from distributed.utils_test import poll_for
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.model_selection import train_test_split
from sklearn.utils import compute_class_weight

from dask_asgd import ASGDClassifier, ASGDRegressor
from dask_asgd.estimators._input import TrainingData
from dask_asgd.estimators._targets import (
    BinaryTargets,
    ClassIndexTargets,
    class_weights,
)


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(
        20_000, 30, n_informative=10, class_sep=2.0, random_state=0
    )
    return train_test_split(X, y, random_state=0)


@pytest.fixture(scope="module")
def process_client(local_cluster):
    with Client(local_cluster, set_as_default=False) as client:
        yield client


def _scheduler_tasks(client):
    return client.run_on_scheduler(
        lambda dask_scheduler: sorted(map(str, dask_scheduler.tasks))
    )


def _assert_cluster_clean(client):
    """No registered fit, and every task and datum of the fit released.

    Releasing is asynchronous (the client tells the scheduler after ``fit``
    returned), so wait for it, within a bound.
    """
    assert _scheduler_fits(client) == []
    poll_for(lambda: _scheduler_tasks(client) == [], timeout=10)


def _scheduler_fits(client):
    return client.run_on_scheduler(
        lambda dask_scheduler: sorted(dask_scheduler.plugins["asgd"].fits)
    )


@pytest.mark.parametrize("loss", ["hinge", "log_loss"])
def test_w8a_accuracy_matches_sklearn(w8a, loss):
    X, y = w8a
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    ours = ASGDClassifier(loss=loss, random_state=0).fit(X_train, y_train)
    theirs = SGDClassifier(loss=loss, random_state=0).fit(X_train, y_train)
    assert ours.history_["worker"].nunique() == 2
    assert ours.score(X_test, y_test) >= theirs.score(X_test, y_test) - 0.01


def test_regression_r2_matches_sklearn():
    X, y = make_regression(40_000, 20, noise=10.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    ours = ASGDRegressor(random_state=0).fit(X_train, y_train)
    theirs = SGDRegressor(random_state=0).fit(X_train, y_train)
    assert ours.score(X_test, y_test) >= theirs.score(X_test, y_test) - 0.01


def test_fit_on_process_cluster(process_client, classification):
    X_train, X_test, y_train, y_test = classification
    with process_client.as_current():
        model = ASGDClassifier(loss="log_loss", random_state=0).fit(X_train, y_train)
    workers = set(
        process_client.sync(process_client.scheduler.identity, n_workers=-1)["workers"]
    )
    assert set(model.history_["worker"]) == workers
    assert model.score(X_test, y_test) > 0.8
    _assert_cluster_clean(process_client)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X_test), model.predict(X_test))
    assert clone(model).get_params() == model.get_params()


def test_same_seed_same_model_without_communication(classification):
    # With communication the arrival order of messages varies between runs;
    # without it, the seed fixes everything.
    X_train, _, y_train, _ = classification
    params = dict(random_state=3, max_iter=5, tol=None, communication="off")
    first = ASGDClassifier(**params).fit(X_train, y_train)
    second = ASGDClassifier(**params).fit(X_train, y_train)
    np.testing.assert_array_equal(first.coef_, second.coef_)


def test_multiclass_one_state_row_per_class():
    X, y = make_classification(
        20_000, 20, n_informative=8, n_classes=4, class_sep=2.0, random_state=1
    )
    model = ASGDClassifier(loss="log_loss", random_state=0).fit(X, y)
    assert model.coef_.shape == (4, 20)
    probabilities = model.predict_proba(X)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    reference = SGDClassifier(loss="log_loss", random_state=0).fit(X, y)
    assert model.score(X, y) >= reference.score(X, y) - 0.02


def test_float32_stays_float32(classification):
    X_train, _, y_train, _ = classification
    model = ASGDClassifier(random_state=0, max_iter=3, tol=None).fit(
        X_train.astype(np.float32), y_train
    )
    assert model.coef_.dtype == np.float32
    assert model.intercept_.dtype == np.float32


def test_read_only_and_int64_sparse_input(classification):
    X_train, X_test, y_train, y_test = classification
    X_train = X_train.copy()
    X_train.setflags(write=False)
    dense = ASGDClassifier(random_state=0, max_iter=3, tol=None).fit(X_train, y_train)
    sparse = sp.csr_matrix(X_train)
    sparse.indices = sparse.indices.astype(np.int64)
    sparse.indptr = sparse.indptr.astype(np.int64)
    model = ASGDClassifier(random_state=0, max_iter=3, tol=None).fit(sparse, y_train)
    assert model.score(X_test, y_test) > 0.8
    assert dense.score(X_test, y_test) > 0.8


def test_partial_fit_continues_the_schedule(classification):
    X_train, X_test, y_train, y_test = classification
    model = ASGDClassifier(random_state=0)
    for start in range(0, X_train.shape[0], 5000):
        model.partial_fit(
            X_train[start : start + 5000],
            y_train[start : start + 5000],
            classes=np.unique(y_train),
        )
    assert model.t_ == pytest.approx(1 + X_train.shape[0])
    assert model.score(X_test, y_test) > 0.8
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X_train[:10, :5], y_train[:10])


def test_failed_fit_keeps_previous_model():
    # The unstable data of scikit-learn's own overflow test.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(4000, 10))
    X[:, :2] *= 1e300
    X_scaled = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    y = (X_scaled @ rng.normal(size=10) > 0.0).astype(np.int32)
    model = ASGDClassifier(alpha=0.1, loss="squared_hinge", max_iter=500)
    model.fit(X_scaled, y)
    coef = model.coef_.copy()
    with pytest.raises(ValueError, match="Floating-point under-/overflow"):
        model.fit(X, y)
    np.testing.assert_array_equal(model.coef_, coef)
    assert model.n_features_in_ == X.shape[1]
    assert model.predict(X_scaled).shape == y.shape


def test_not_fitted_and_unfinished_features():
    with pytest.raises(NotFittedError):
        ASGDClassifier().predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="bounds"):
        ASGDClassifier(communication="adaptive", send_interval=10).fit(
            np.zeros((4, 2)), [0, 1, 0, 1]
        )
    with pytest.raises(AttributeError, match="predict_proba"):
        ASGDClassifier(loss="hinge").predict_proba  # noqa: B018


def test_grid_search_on_joblib_dask_backend(process_client, classification):
    """fit inside Dask tasks (nested use) must not deadlock."""
    import joblib
    from sklearn.model_selection import GridSearchCV

    X_train, _, y_train, _ = classification
    search = GridSearchCV(
        ASGDClassifier(max_iter=5, tol=None, random_state=0),
        {"alpha": [1e-4, 1e-3]},
        cv=2,
    )
    with process_client.as_current(), joblib.parallel_backend("dask"):
        search.fit(X_train[:4000], y_train[:4000])
    assert search.best_score_ > 0.7
    _assert_cluster_clean(process_client)


def test_embedded_thread_workers_have_no_memory_limit():
    """Thread workers share the process: a per-worker limit would pause them all."""
    from dask_asgd.backends import embedded_client, shutdown_embedded

    shutdown_embedded()
    with dask.config.set(
        {"asgd.embedded.processes": False, "asgd.embedded.n-workers": 2}
    ):
        client = embedded_client()
        limits = client.run(lambda dask_worker: dask_worker.memory_manager.memory_limit)
    shutdown_embedded()
    assert len(limits) == 2
    assert all(not limit for limit in limits.values())


@pytest.mark.parametrize(("min_rows_per_worker", "n_trained"), [(1000, 2), (5000, 1)])
def test_min_rows_per_worker_sets_the_workers_used(min_rows_per_worker, n_trained):
    X, y = make_classification(3000, 10, random_state=0)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        model = ASGDClassifier(
            n_workers=None,
            min_rows_per_worker=min_rows_per_worker,
            max_iter=2,
            tol=None,
            random_state=0,
        ).fit(X, y)
    assert model.history_["worker"].nunique() == n_trained


def _numpy_and_dask(X, y, chunk):
    """The same data in memory and as Dask arrays of ``chunk`` rows."""
    return (X, y), (
        da.from_array(X, chunks=(chunk, X.shape[1])),
        da.from_array(y, chunks=chunk),
    )


def test_balanced_class_weights_same_for_numpy_and_dask():
    rng = np.random.default_rng(0)
    y = rng.choice(np.array([3, 7, 11]), size=1000, p=[0.6, 0.3, 0.1])
    X = rng.normal(size=(1000, 4))
    classes = np.unique(y)
    expected = compute_class_weight("balanced", classes=classes, y=y)
    for X_in, y_in in _numpy_and_dask(X, y, chunk=300):
        data = TrainingData.check(
            ASGDClassifier(), X_in, y_in, None, reset=True, target="classes"
        )
        np.testing.assert_allclose(
            class_weights("balanced", classes, data), expected, rtol=1e-15
        )
        # A class absent from y weighs 1; the others keep their weights.
        with_absent = class_weights("balanced", np.array([3, 5, 7, 11]), data)
        np.testing.assert_allclose(with_absent, [expected[0], 1.0, *expected[1:]])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_numpy_and_dask_input_give_the_same_targets(n_classes):
    X, y = make_classification(
        2000, 8, n_informative=4, n_classes=n_classes, random_state=0
    )
    labels = np.array(["ant", "bee", "cat"])[y]
    params = dict(class_weight="balanced", max_iter=2, tol=None, random_state=0)
    found = []
    for X_in, y_in in _numpy_and_dask(X, labels, chunk=500):
        model = ASGDClassifier(**params)
        data = TrainingData.check(model, X_in, y_in, None, reset=True, target="classes")
        targets = model._targets(data, None, partial=False)
        rows = data.rows(targets.encoder, None)
        encoded = rows.encode(labels) if data.is_dask else rows.targets
        found.append((model.classes_, targets, encoded))
        fitted = ASGDClassifier(**params).fit(X_in, y_in)
        np.testing.assert_array_equal(fitted.classes_, model.classes_)
    (classes, targets, encoded), (dask_classes, dask_targets, dask_encoded) = found
    np.testing.assert_array_equal(classes, np.unique(labels))
    np.testing.assert_array_equal(dask_classes, classes)
    np.testing.assert_array_equal(dask_encoded, encoded)
    assert set(np.unique(encoded)) == (
        {-1.0, 1.0} if n_classes == 2 else {0.0, 1.0, 2.0}
    )
    np.testing.assert_array_equal(dask_targets.positive_weight, targets.positive_weight)
    np.testing.assert_array_equal(dask_targets.negative_weight, targets.negative_weight)


def test_label_encoders_reject_unknown_labels():
    for encoder in (
        BinaryTargets(np.array([0, 1])),
        ClassIndexTargets(np.array([0, 1, 2])),
    ):
        with pytest.raises(ValueError, match=r"y contains labels \[5\]"):
            encoder(np.array([0, 1, 5]))


def test_dask_dataframe_columns_are_checked_as_pandas_columns_are():
    import dask.dataframe as dd
    import pandas as pd
    from sklearn.datasets import make_classification

    from dask_asgd import ASGDClassifier

    X, y = make_classification(2000, 4, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = ASGDClassifier(max_iter=5, random_state=0).fit(frame, y)
    reordered = frame[["b", "a", "c", "d"]]
    renamed = frame.rename(columns={"a": "z"})
    for changed in (reordered, renamed):
        # pandas input raises scikit-learn's error; Dask input the same one.
        with pytest.raises(ValueError, match="feature names should match") as pandas:
            model.predict(changed)
        with pytest.raises(ValueError, match="feature names should match") as lazy:
            model.predict(dd.from_pandas(changed, npartitions=2))
        assert str(lazy.value) == str(pandas.value)
    same = model.predict(dd.from_pandas(frame, npartitions=2)).compute()
    np.testing.assert_array_equal(same, model.predict(frame))


@pytest.mark.parametrize("mixing_weight", [0.0, 1.0, 1.5, "half"])
def test_bad_mixing_weight_is_refused(classification, mixing_weight):
    X_train, _, y_train, _ = classification
    model = ASGDClassifier(mixing_weight=mixing_weight)
    with pytest.raises(
        ValueError,
        match=r"'mixing_weight' parameter of ASGDClassifier must be a float in the "
        r"range \(0(\.0)?, 1(\.0)?\) or None",
    ):
        model.fit(X_train, y_train)
    assert not hasattr(model, "coef_")


def test_mixing_weight_fit_on_process_cluster(process_client, classification):
    # Gossip with a mixing weight, shipped in the fit task to worker processes.
    X_train, X_test, y_train, y_test = classification
    with process_client.as_current():
        model = ASGDClassifier(
            loss="log_loss", communication="fixed", send_interval=256,
            parzen_window=False, mixing_weight=0.25, max_iter=3, tol=None,
            random_state=0,
        ).fit(X_train, y_train)  # fmt: skip
    assert model.history_["worker"].nunique() == 2
    last = model.history_.groupby("worker").last()
    assert (last["merges"] > 0).all() and (last["rows_accepted"] > 0).all()
    assert (last["rows_rejected"] == 0).all()
    assert model.score(X_test, y_test) > 0.8
    assert model.get_params()["mixing_weight"] == 0.25
    _assert_cluster_clean(process_client)
