"""ASGDKMeans on real clusters: quality against scikit-learn, input kinds, errors."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from distributed import Client
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dask_asgd import ASGDKMeans
from tests._cluster_checks import assert_fit_left_nothing, last_epoch_per_worker


@pytest.fixture(scope="module")
def client(local_cluster):
    with Client(local_cluster, set_as_default=False) as client, client.as_current():
        yield client


@pytest.fixture(scope="module")
def blobs():
    X, labels = make_blobs(40_000, 10, centers=6, cluster_std=1.0, random_state=0)
    return X, labels


@pytest.fixture(scope="module")
def reference(blobs):
    X, _ = blobs
    return KMeans(6, n_init=5, random_state=0).fit(X)


def test_two_process_workers_match_sklearn(client, blobs, reference):
    X, labels = blobs
    # Four whole epochs: an epoch of these rows takes milliseconds, and with
    # the exchange's CPU kept under its budget a worker that stopped after
    # one or two epochs may not have sent anything yet.
    model = ASGDKMeans(
        6,
        communication="fixed",
        send_interval=2048,
        max_iter=4,
        tol=0.0,
        max_no_improvement=None,
        random_state=0,
    ).fit(X)
    assert model.cluster_centers_.shape == (6, 10)
    assert model.inertia_ <= 1.01 * reference.inertia_
    assert adjusted_rand_score(reference.labels_, model.labels_) > 0.99
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99
    np.testing.assert_array_equal(model.labels_, model.predict(X))
    assert model.labels_.dtype == np.int32
    np.testing.assert_allclose(-model.score(X), model.inertia_, rtol=1e-9)
    np.testing.assert_allclose(model.counts_.sum(), X.shape[0] * model.n_iter_)
    last = last_epoch_per_worker(model)
    assert len(last) == 2
    for column in ("messages_sent", "messages_received"):
        assert (last[column] > 0).all(), (column, last[column])
    assert {"rows_accepted", "rows_rejected"} <= set(last.columns)
    assert_fit_left_nothing(client)


def test_sparse_real_data_w8a(client, w8a):
    X, _ = w8a
    # scikit-learn's KMeans takes 32-bit CSR indices only.
    X32 = sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr), X.shape)
    reference = KMeans(8, n_init=1, random_state=0).fit(X32)
    model = ASGDKMeans(8, communication="fixed", random_state=0).fit(X)
    # Measured: 416,886 against Lloyd's 416,313 (MiniBatchKMeans 417,932).
    assert model.inertia_ <= 1.02 * reference.inertia_
    last = last_epoch_per_worker(model)
    assert len(last) == 2
    assert (last["messages_received"] > 0).all()
    assert_fit_left_nothing(client)


def test_stopping_rules_fire_per_worker(client, blobs):
    X, _ = blobs
    # Without either rule the fit runs max_iter epochs.
    never = ASGDKMeans(6, max_no_improvement=None, max_iter=4, random_state=0).fit(X)
    assert never.n_iter_ == 4
    # Every worker makes ceil(rows / batch_size) minibatches per epoch.
    per_epoch = never.history_.groupby("epoch")["steps"].sum()
    assert (per_epoch == 2 * int(np.ceil(20_000 / 1024))).all()
    assert never.n_steps_ == per_epoch.sum()
    # scikit-learn's default rule (10 minibatches without improvement of the
    # smoothed inertia) ends the fit long before max_iter.
    default = ASGDKMeans(6, random_state=0).fit(X)
    assert default.n_iter_ < 20
    assert default.n_steps_ == default.history_["steps"].sum()
    # A tolerance no minibatch can miss fires at every worker's second
    # minibatch: the fit ends after its first epoch.
    moved = ASGDKMeans(6, tol=1e3, max_no_improvement=None, random_state=0).fit(X)
    assert moved.n_iter_ == 1


def test_transform_and_pipeline(client, blobs):
    X, _ = blobs
    pipeline = make_pipeline(StandardScaler(), ASGDKMeans(6, random_state=0))
    distances = pipeline.fit_transform(X)
    assert distances.shape == (X.shape[0], 6)
    kmeans = pipeline[-1]
    scaled = pipeline[0].transform(X)
    np.testing.assert_array_equal(distances.argmin(axis=1), kmeans.predict(scaled))
    names = pipeline.get_feature_names_out()
    assert list(names) == [f"asgdkmeans{i}" for i in range(6)]


def test_dask_array_input_stays_lazy(client, blobs):
    X, _ = blobs
    X_dask = da.from_array(X, chunks=(7000, 10))
    model = ASGDKMeans(6, random_state=0).fit(X_dask)
    assert isinstance(model.labels_, da.Array)
    np.testing.assert_array_equal(model.labels_.compute(), model.predict(X))
    predictions = model.predict(X_dask)
    assert isinstance(predictions, da.Array)
    np.testing.assert_array_equal(predictions.compute(), model.predict(X))
    distances = model.transform(X_dask)
    assert isinstance(distances, da.Array)
    np.testing.assert_allclose(distances.compute(), model.transform(X))
    np.testing.assert_allclose(model.score(X_dask), model.score(X), rtol=1e-9)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0])
    np.testing.assert_allclose(
        model.score(X_dask, sample_weight=weights),
        model.score(X, sample_weight=weights),
        rtol=1e-9,
    )
    assert model.score(X, sample_weight=weights) != pytest.approx(model.score(X))
    reference_inertia = -model.score(X)
    np.testing.assert_allclose(model.inertia_, reference_inertia, rtol=1e-9)
    assert model.history_["worker"].nunique() == 2
    assert_fit_left_nothing(client)


def test_dask_dataframe_keeps_feature_names(client, blobs):
    X, _ = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    frame_dask = dd.from_pandas(frame, npartitions=4)
    model = ASGDKMeans(6, random_state=0).fit(frame_dask)
    assert list(model.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(
        model.predict(frame_dask).compute(), model.predict(frame)
    )


def test_sparse_input(client):
    X, _ = make_blobs(20_000, 8, centers=4, cluster_std=0.5, random_state=1)
    X[X < 0] = 0.0  # some zeros to store sparsely
    X_sparse = sp.csr_matrix(X)
    model = ASGDKMeans(4, random_state=0).fit(X_sparse)
    dense_model = ASGDKMeans(4, random_state=0).fit(X)
    np.testing.assert_allclose(model.inertia_, dense_model.inertia_, rtol=0.02)
    np.testing.assert_array_equal(model.predict(X_sparse), model.predict(X))


def test_sample_weight_pulls_centers(client):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (5000, 2)), rng.normal(4, 1, (5000, 2))])
    heavy = np.r_[np.ones(5000), np.full(5000, 10.0)]
    # One cluster for two groups of rows: its center is the weighted mean.
    model = ASGDKMeans(1, random_state=0).fit(X, sample_weight=heavy)
    expected = np.average(X, axis=0, weights=heavy)
    np.testing.assert_allclose(model.cluster_centers_[0], expected, atol=0.05)


def test_partial_fit_continues_from_the_last_centers(client, blobs):
    X, _ = blobs
    model = ASGDKMeans(6, random_state=0)
    model.partial_fit(X[:20_000])
    first_centers = model.cluster_centers_.copy()
    np.testing.assert_allclose(model.counts_.sum(), 20_000)
    model.partial_fit(X[20_000:])
    np.testing.assert_allclose(model.counts_.sum(), 40_000)
    assert model.n_iter_ == 1
    # Each center is now the mean of rows from both halves, so it moved
    # little; a fresh start would have picked new centers far apart.
    order = np.argmin(
        ((first_centers[:, None] - model.cluster_centers_[None]) ** 2).sum(2), axis=1
    )
    assert sorted(order) == list(range(6))
    assert np.abs(first_centers - model.cluster_centers_[order]).max() < 0.5


def test_init_array_and_callable(client, blobs, reference):
    X, _ = blobs
    from_array = ASGDKMeans(6, init=reference.cluster_centers_, random_state=0).fit(X)
    assert from_array.inertia_ <= 1.001 * reference.inertia_

    calls = []

    def first_rows(sample, n_clusters, random_state):
        calls.append(sample.shape)
        return sample[:n_clusters]

    ASGDKMeans(6, init=first_rows, init_size=500, max_iter=2).fit(X)
    # n_init="auto" seeds a callable 3 times, as MiniBatchKMeans does.
    assert calls == [(500, 10)] * 3


def test_errors_in_sklearn_words(client, blobs):
    X, _ = blobs
    with pytest.raises(NotFittedError):
        ASGDKMeans(3).predict(X)
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=8"):
        ASGDKMeans(8).fit(X[:5])
    with pytest.raises(ValueError, match="number of clusters 3"):
        ASGDKMeans(3, init=X[:4]).fit(X)
    with pytest.raises(ValueError, match="number of features"):
        ASGDKMeans(3, init=X[:3, :5]).fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        ASGDKMeans(0).fit(X)
    model = ASGDKMeans(3, max_iter=2).fit(X)
    with pytest.raises(ValueError, match="X has 4 features"):
        model.predict(X[:, :4])


def test_failed_fit_keeps_the_previous_model(client, blobs):
    X, _ = blobs
    model = ASGDKMeans(6, random_state=0, max_iter=2).fit(X)
    centers = model.cluster_centers_.copy()
    bad = da.from_array(X, chunks=(10_000, 10)).map_blocks(
        lambda block: np.where(block > 5, np.nan, block)
    )
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad)
    np.testing.assert_array_equal(model.cluster_centers_, centers)
    assert_fit_left_nothing(client)
