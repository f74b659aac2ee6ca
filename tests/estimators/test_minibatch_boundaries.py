"""How the worker loop cuts its rows into chunks never changes a fit."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_regression

from dask_asgd import ASGDKMeans, ASGDRegressor


def fit_with_chunks(estimator, X, y, chunk_samples):
    with dask.config.set({"asgd.training.chunk-samples": chunk_samples}):
        return estimator.fit(X, y)


@pytest.mark.parametrize("chunk_samples", [10, 13])
def test_linear_minibatches_are_whole_whatever_the_chunks(chunk_samples):
    # Chunks of 10 or 13 rows are not whole minibatches of 4 rows. Cutting a
    # minibatch at a chunk's end trains on minibatches of other sizes, which
    # ends at another model than one kernel call over all rows.
    X, y = make_regression(2000, 5, noise=1.0, random_state=0)
    params = dict(
        batch_size=4,
        communication="off",
        shuffle=False,
        n_workers=1,
        max_iter=1,
        tol=None,
        random_state=0,
    )
    whole = fit_with_chunks(ASGDRegressor(**params), X, y, 8192)
    chunked = fit_with_chunks(ASGDRegressor(**params), X, y, chunk_samples)
    np.testing.assert_allclose(chunked.coef_, whole.coef_, rtol=1e-10)
    np.testing.assert_allclose(chunked.intercept_, whole.intercept_, rtol=1e-10)


def test_kmeans_minibatches_are_whole_whatever_the_chunks():
    X, _ = make_blobs(3000, 4, centers=5, random_state=0)
    params = dict(
        n_clusters=5,
        batch_size=64,
        communication="off",
        shuffle=False,
        n_workers=1,
        max_iter=2,
        max_no_improvement=None,
        random_state=0,
    )
    whole = fit_with_chunks(ASGDKMeans(**params), X, None, 8192)
    chunked = fit_with_chunks(ASGDKMeans(**params), X, None, 100)
    np.testing.assert_allclose(
        chunked.cluster_centers_, whole.cluster_centers_, rtol=1e-10
    )
