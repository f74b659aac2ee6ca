"""The minibatch K-Means kernel against scikit-learn on the same data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from dask_asgd.kernels import kmeans_pass


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(3000, 6, centers=5, cluster_std=1.5, random_state=0)
    return X


def as_input(X, kind, dtype):
    X = X.astype(dtype)
    return sp.csr_matrix(X) if kind == "csr" else np.ascontiguousarray(X)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_full_batch_from_zero_counts_is_one_lloyd_iteration(
    blobs, kind, dtype, weighted
):
    # With empty counts and one minibatch holding every row, each center moves
    # to the weighted mean of its rows: exactly one iteration of Lloyd's
    # algorithm, which scikit-learn's KMeans(max_iter=1) runs.
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.5, 2.0, blobs.shape[0]) if weighted else np.ones(3000)
    start = blobs[rng.choice(blobs.shape[0], 5, replace=False)]
    X = as_input(blobs, kind, dtype)
    centers = start.astype(dtype)
    counts = np.zeros(5)
    inertia = kmeans_pass(
        centers,
        counts,
        X,
        weights.astype(dtype),
        np.arange(blobs.shape[0], dtype=np.int64),
        blobs.shape[0],
    )
    reference = KMeans(5, init=start, n_init=1, max_iter=1, algorithm="lloyd").fit(
        blobs, sample_weight=weights
    )
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(
        centers, reference.cluster_centers_, rtol=tolerance, atol=tolerance
    )
    # Inertia of the starting centers, i.e. before the update.
    assigned = ((blobs[:, None, :] - start[None]) ** 2).sum(axis=2).min(axis=1)
    np.testing.assert_allclose(inertia, (weights * assigned).sum(), rtol=tolerance)
    np.testing.assert_allclose(counts.sum(), weights.sum(), rtol=1e-6)


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_minibatches_match_sklearn_minibatch_step(blobs, kind):
    # scikit-learn's MiniBatchKMeans applies this private step to each batch;
    # the kernel must take the same path over the same batches.
    kmeans_module = pytest.importorskip("sklearn.cluster._kmeans")
    step = getattr(kmeans_module, "_mini_batch_step", None)
    if step is None:
        pytest.skip("this scikit-learn has no _mini_batch_step to compare with")
    rng = np.random.default_rng(2)
    X = as_input(blobs, kind, np.float64)
    weights = rng.uniform(0.5, 2.0, blobs.shape[0])
    start = blobs[:5].copy()
    order = rng.permutation(blobs.shape[0]).astype(np.int64)
    batch = 256

    centers, counts = start.copy(), np.zeros(5)
    inertia = kmeans_pass(centers, counts, X, weights, order, batch)

    expected, expected_counts = start.copy(), np.zeros(5)
    expected_inertia = 0.0
    state = np.random.RandomState(0)
    for first in range(0, order.shape[0], batch):
        rows = order[first : first + batch]
        new = expected.copy()
        expected_inertia += step(
            X[rows], weights[rows], expected, new, expected_counts, state
        )
        expected = new
    np.testing.assert_allclose(centers, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(counts, expected_counts, rtol=1e-12)
    np.testing.assert_allclose(inertia, expected_inertia, rtol=1e-8)


def test_dense_and_sparse_take_the_same_path(blobs):
    order = np.random.default_rng(3).permutation(blobs.shape[0]).astype(np.int64)
    results = []
    for X in (blobs, sp.csr_matrix(blobs)):
        centers, counts = blobs[10:15].copy(), np.zeros(5)
        labels = np.empty(order.shape[0], dtype=np.int64)
        kmeans_pass(centers, counts, X, np.ones(3000), order, 100, labels)
        results.append((centers, counts, labels))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-9)
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_only_visited_rows_count(blobs):
    centers, counts = blobs[:3].copy(), np.zeros(3)
    order = np.arange(10, 60, dtype=np.int64)
    kmeans_pass(centers, counts, blobs, np.ones(3000), order, 7)
    assert counts.sum() == 50


def test_center_without_rows_stays(blobs):
    far = np.full((1, blobs.shape[1]), 1e6)
    centers = np.vstack([blobs[:2], far])
    counts = np.zeros(3)
    kmeans_pass(centers, counts, blobs, np.ones(3000), np.arange(3000), 500)
    np.testing.assert_array_equal(centers[2], far[0])
    assert counts[2] == 0


def test_bad_arguments_are_refused(blobs):
    centers = blobs[:3].copy()
    with pytest.raises(ValueError, match="batch_size"):
        kmeans_pass(centers, np.zeros(3), blobs, np.ones(3000), np.arange(5), 0)
    with pytest.raises(ValueError, match="counts"):
        kmeans_pass(centers, np.zeros(4), blobs, np.ones(3000), np.arange(5), 2)
