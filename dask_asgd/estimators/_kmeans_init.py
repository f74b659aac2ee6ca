"""ASGDKMeans' starting centers, chosen on the driver as MiniBatchKMeans does.

``n_init`` seedings, each from ``init_size`` rows drawn at random (with
replacement, as scikit-learn draws them), the best kept by its inertia on
another ``init_size`` rows drawn first. With in-memory input and the same
``random_state``, the draws are scikit-learn's, so the starting centers are
the ones ``MiniBatchKMeans`` starts from. The checks and warnings are
scikit-learn's, word for word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import kmeans_plusplus
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.utils.validation import check_array

from ._dask_input import is_dask_collection
from ._warnings import warn_at_caller

#: Seedings of ``n_init="auto"`` for the ``'random'`` and callable inits, as
#: in MiniBatchKMeans.
AUTO_N_INIT = 3


@dataclass(frozen=True)
class InitPlan:
    """How many seedings, on how many rows, as scikit-learn resolves them."""

    n_init: int
    init_size: int
    batch_size: int


def is_given_centers(init: Any) -> bool:
    """Whether ``init`` is an array of centers rather than a method."""
    return not isinstance(init, str) and not callable(init)


def plan(estimator: Any, n_samples: int) -> InitPlan:
    """Check the parameters against the data; warn and resolve as
    ``MiniBatchKMeans._check_params_vs_input`` does."""
    n_clusters = estimator.n_clusters
    if n_samples < n_clusters:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
    init = estimator.init
    n_init = estimator.n_init
    if n_init == "auto":
        n_init = 1 if is_given_centers(init) or init == "k-means++" else AUTO_N_INIT
    if is_given_centers(init) and n_init != 1:
        warn_at_caller(
            "Explicit initial center position passed: performing only one init "
            f"in {type(estimator).__name__} instead of n_init={n_init}.",
            RuntimeWarning,
        )
        n_init = 1
    batch_size = min(estimator.batch_size, n_samples)
    init_size = estimator.init_size
    if init_size is None:
        init_size = 3 * batch_size
        if init_size < n_clusters:
            init_size = 3 * n_clusters
    elif init_size < n_clusters:
        warn_at_caller(
            f"init_size={init_size} should be larger than n_clusters={n_clusters}. "
            "Setting it to min(3*n_clusters, n_samples)",
            RuntimeWarning,
        )
        init_size = 3 * n_clusters
    return InitPlan(int(n_init), int(min(init_size, n_samples)), int(batch_size))


def tolerance(X: Any, tol: float) -> float:
    """scikit-learn's tolerance: ``tol`` times the mean variance of the features."""
    if tol == 0:
        return 0.0
    if is_dask_collection(X):
        variances = X.var(axis=0).compute()
    elif sp.issparse(X):
        from sklearn.utils.sparsefuncs import mean_variance_axis

        variances = mean_variance_axis(X, axis=0)[1]
    else:
        variances = np.var(X, axis=0)
    return float(np.mean(variances) * tol)


def given_centers(
    init: Any, n_clusters: int, dtype: Any, n_features: int
) -> np.ndarray:
    """``init`` given as centers: a copy in the data's dtype, shape checked."""
    centers = check_array(init, dtype=dtype, copy=True, order="C")
    check_center_shape(centers, n_clusters, n_features)
    return centers


def check_center_shape(centers: Any, n_clusters: int, n_features: int) -> None:
    """Raise scikit-learn's error for starting centers of the wrong shape."""
    if centers.shape[0] != n_clusters:
        raise ValueError(
            f"The shape of the initial centers {centers.shape} does not "
            f"match the number of clusters {n_clusters}."
        )
    if centers.shape[1] != n_features:
        raise ValueError(
            f"The shape of the initial centers {centers.shape} does not "
            f"match the number of features of the data {n_features}."
        )


def take_rows(X: Any, sample_weight: Any, rows: np.ndarray) -> tuple[Any, np.ndarray]:
    """Rows ``rows`` (repeats allowed) of ``X`` and their weights, in memory."""
    if not is_dask_collection(X):
        weights = np.asarray(sample_weight[rows], dtype=np.float64)
        return X[rows], weights
    import dask

    # Each distinct row is read once from the cluster, then repeated here.
    unique, inverse = np.unique(rows, return_inverse=True)
    weights = sample_weight[unique] if sample_weight is not None else None
    sample, weights = dask.compute(X[unique], weights)
    if sp.issparse(sample):
        sample = sp.csr_matrix(sample)
    weights = np.ones(unique.shape[0]) if weights is None else np.asarray(weights)
    return sample[inverse], weights[inverse].astype(np.float64)


def seed_centers(
    estimator: Any,
    X: Any,
    sample_weight: Any,
    init_size: int,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """One seeding, as ``_BaseKMeans._init_centroids``: from ``init_size`` rows
    drawn with replacement (all rows if there are no more)."""
    n_samples, n_features = X.shape
    n_clusters = estimator.n_clusters
    init = estimator.init
    if init_size < n_samples:
        rows = random_state.randint(0, n_samples, init_size)
    else:
        rows = np.arange(n_samples)
    sample, weights = take_rows(X, sample_weight, rows)
    if isinstance(init, str) and init == "k-means++":
        centers, _ = kmeans_plusplus(
            sample, n_clusters, sample_weight=weights, random_state=random_state
        )
    elif isinstance(init, str):
        chosen = random_state.choice(
            sample.shape[0], size=n_clusters, replace=False, p=weights / weights.sum()
        )
        centers = sample[chosen]
    else:
        centers = init(sample, n_clusters, random_state=random_state)
        centers = check_array(
            centers, accept_sparse="csr", dtype=X.dtype, copy=False, order="C"
        )
        check_center_shape(centers, n_clusters, n_features)
    if sp.issparse(centers):
        centers = centers.toarray()
    return np.ascontiguousarray(centers, dtype=X.dtype)


def best_of_seedings(
    estimator: Any,
    X: Any,
    sample_weight: Any,
    init_plan: InitPlan,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """The seeding with the lowest inertia on rows drawn before all of them."""
    if is_given_centers(estimator.init):
        return given_centers(estimator.init, estimator.n_clusters, X.dtype, X.shape[1])
    n_samples = X.shape[0]
    held = random_state.randint(0, n_samples, init_plan.init_size)
    X_valid, weights_valid = take_rows(X, sample_weight, held)
    best, best_inertia = None, np.inf
    for _ in range(init_plan.n_init):
        centers = seed_centers(
            estimator, X, sample_weight, init_plan.init_size, random_state
        )
        _, distances = pairwise_distances_argmin_min(X_valid, centers)
        inertia = float((weights_valid * distances.astype(np.float64) ** 2).sum())
        if best is None or inertia < best_inertia:
            best, best_inertia = centers, inertia
    return best
