"""The minibatch K-Means kernel against scikit-learn on the same data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from dask_asgd.kernels import (
    BATCH_INERTIA,
    BATCH_SHIFT,
    BATCH_WEIGHT,
    Reassignment,
    kmeans_pass,
    n_minibatches,
)


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


def sklearn_step():
    kmeans_module = pytest.importorskip("sklearn.cluster._kmeans")
    step = getattr(kmeans_module, "_mini_batch_step", None)
    if step is None:
        pytest.skip("this scikit-learn has no _mini_batch_step to compare with")
    return step


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_reassignment_moves_the_centers_sklearn_moves(blobs, kind):
    # Two centers far from every row receive nothing: scikit-learn's step
    # reassigns them to rows of the minibatch and resets their counts. Which
    # centers move and the counts do not depend on the random draws, so they
    # must agree exactly; the rows drawn must be rows of the minibatch.
    step = sklearn_step()
    X = as_input(blobs, kind, np.float64)
    far = np.full((2, blobs.shape[1]), 1e3)
    start = np.vstack([blobs[:3], far])
    rows = np.arange(200, dtype=np.int64)
    weights = np.ones(blobs.shape[0])

    centers, counts = start.copy(), np.zeros(5)
    stats = np.empty((1, 3))
    kmeans_pass(
        centers,
        counts,
        X,
        weights,
        rows,
        200,
        reassignment=Reassignment.seeded(0.01, 7),
        batch_stats=stats,
    )

    expected, expected_counts = start.copy(), np.zeros(5)
    new = expected.copy()
    step(
        X[rows],
        weights[rows],
        expected,
        new,
        expected_counts,
        np.random.RandomState(0),
        random_reassign=True,
        reassignment_ratio=0.01,
    )
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_allclose(centers[:3], new[:3], rtol=1e-12)
    batch = blobs[rows]
    for center in centers[3:]:
        assert np.any(np.all(batch == center, axis=1))
    assert not np.array_equal(centers[3], centers[4])
    np.testing.assert_allclose(
        stats[0, BATCH_SHIFT], ((centers - start) ** 2).sum(), rtol=1e-9
    )


def test_reassignment_draws_are_fixed_by_the_seed(blobs):
    far = np.full((3, blobs.shape[1]), 1e3)
    results = []
    for seed in (1, 1, 2):
        centers, counts = np.vstack([blobs[:2], far]), np.zeros(5)
        kmeans_pass(
            centers,
            counts,
            blobs,
            np.ones(3000),
            np.arange(300, dtype=np.int64),
            100,
            reassignment=Reassignment.seeded(0.01, seed),
        )
        results.append(centers)
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], results[2])


def test_reassignment_is_tried_as_often_as_sklearn_tries(blobs):
    # With every count non-zero, scikit-learn tries again only once
    # 10 * n_clusters rows were visited since the last try.
    state = Reassignment.seeded(0.5, 0)
    centers, counts = blobs[:3].copy(), np.array([1.0, 1.0, 1e6])
    kmeans_pass(
        centers, counts, blobs, np.ones(3000), np.arange(10), 10, reassignment=state
    )
    # 10 rows < 30: no try, the small counts stay small.
    assert state.rows_since[0] == 10 and counts[0] < 0.5 * counts[2]
    kmeans_pass(
        centers, counts, blobs, np.ones(3000), np.arange(10, 30), 20, reassignment=state
    )
    assert state.rows_since[0] == 0
    # After a try, every count is at least the ratio times the largest.
    assert counts.min() >= 0.5 * counts.max()


def test_batch_stats_add_up_to_the_pass(blobs):
    order = np.random.default_rng(4).permutation(3000).astype(np.int64)
    weights = np.random.default_rng(5).uniform(0.5, 2, 3000)
    centers, counts = blobs[:4].copy(), np.zeros(4)
    stats = np.empty((n_minibatches(3000, 256), 3))
    before = centers.copy()
    inertia = kmeans_pass(
        centers, counts, blobs, weights, order, 256, batch_stats=stats
    )
    np.testing.assert_allclose(stats[:, BATCH_INERTIA].sum(), inertia, rtol=1e-12)
    np.testing.assert_allclose(stats[:, BATCH_WEIGHT].sum(), weights.sum())
    assert stats[0, BATCH_SHIFT] > 0
    # The first minibatch's shift is the distance the centers moved in it.
    first, first_counts = before.copy(), np.zeros(4)
    kmeans_pass(first, first_counts, blobs, weights, order[:256], 256)
    np.testing.assert_allclose(
        stats[0, BATCH_SHIFT], ((first - before) ** 2).sum(), rtol=1e-9
    )
    with pytest.raises(ValueError, match="batch_stats"):
        kmeans_pass(
            centers, counts, blobs, weights, order, 256, batch_stats=np.empty((2, 3))
        )
