"""Minibatch K-Means: the SGD step for cluster centers (Sculley 2010).

Each minibatch assigns its rows to their nearest center (with the centers as
they were before the minibatch), then moves every center that received rows
to the weighted mean of its previous position, counted ``counts[k]`` times,
and of the rows assigned to it. That is scikit-learn's ``MiniBatchKMeans``
update without its random reassignment of nearly empty centers: each center
has its own learning rate, one over the weight of the rows it has absorbed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ._options import JIT_OPTIONS
from ._rows import kernel_rows


@njit(**JIT_OPTIONS)
def _squared_distance_dense(X, row, centers, center):
    total = 0.0
    for j in range(X.shape[1]):
        difference = X[row, j] - centers[center, j]
        total += difference * difference
    return total


@njit(**JIT_OPTIONS)
def _squared_distance_sparse(
    data, indices, start, stop, row_norm, centers, center_norms, center
):
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2: only the row's nonzeros are read.
    dot = 0.0
    for position in range(start, stop):
        dot += data[position] * centers[center, indices[position]]
    return max(row_norm - 2.0 * dot + center_norms[center], 0.0)


@njit(**JIT_OPTIONS)
def _kmeans_pass(
    centers,
    counts,
    dense,
    data,
    indices,
    indptr,
    is_sparse,
    sample_weight,
    order,
    batch_size,
    labels,
):
    n_clusters, n_features = centers.shape
    sums = np.zeros((n_clusters, n_features), dtype=np.float64)
    batch_weight = np.zeros(n_clusters, dtype=np.float64)
    center_norms = np.zeros(n_clusters, dtype=np.float64)
    inertia = 0.0
    n_rows = order.shape[0]
    for batch_start in range(0, n_rows, batch_size):
        batch_stop = min(batch_start + batch_size, n_rows)
        if is_sparse:
            for k in range(n_clusters):
                norm = 0.0
                for j in range(n_features):
                    norm += centers[k, j] * centers[k, j]
                center_norms[k] = norm
        for position in range(batch_start, batch_stop):
            row = order[position]
            weight = sample_weight[row]
            row_norm = 0.0
            start = stop = 0
            if is_sparse:
                start, stop = indptr[row], indptr[row + 1]
                for p in range(start, stop):
                    row_norm += data[p] * data[p]
            best = 0
            best_distance = np.inf
            for k in range(n_clusters):
                if is_sparse:
                    distance = _squared_distance_sparse(
                        data, indices, start, stop, row_norm, centers, center_norms, k
                    )
                else:
                    distance = _squared_distance_dense(dense, row, centers, k)
                if distance < best_distance:
                    best_distance = distance
                    best = k
            labels[position] = best
            inertia += weight * best_distance
            batch_weight[best] += weight
            if is_sparse:
                for p in range(start, stop):
                    sums[best, indices[p]] += weight * data[p]
            else:
                for j in range(n_features):
                    sums[best, j] += weight * dense[row, j]
        for k in range(n_clusters):
            if batch_weight[k] <= 0.0:
                continue
            previous_weight = counts[k]
            new_weight = previous_weight + batch_weight[k]
            for j in range(n_features):
                centers[k, j] = (
                    centers[k, j] * previous_weight + sums[k, j]
                ) / new_weight
                sums[k, j] = 0.0
            counts[k] = new_weight
            batch_weight[k] = 0.0
    return inertia


def kmeans_pass(
    centers: np.ndarray,
    counts: np.ndarray,
    X: Any,
    sample_weight: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    labels: np.ndarray | None = None,
) -> float:
    """Run minibatch K-Means over the rows ``order`` of ``X``, in place.

    Parameters
    ----------
    centers : ndarray of shape (n_clusters, n_features)
        Cluster centers, updated in place. float32 or float64, like ``X``.
    counts : ndarray of float64, shape (n_clusters,)
        Weight of the rows each center has absorbed so far, updated in place.
        A center with count 0 jumps to the mean of the first rows it gets.
    X : ndarray of shape (n_samples, n_features) or scipy.sparse.csr_matrix
        Rows, C-contiguous if dense. CSR indices may be int32 or int64.
    sample_weight : ndarray of shape (n_samples,)
        Weight of each row.
    order : ndarray of int64
        Row numbers to visit, in order (shuffled by the caller); cut into
        consecutive minibatches of ``batch_size`` rows.
    batch_size : int
        Rows per minibatch.
    labels : ndarray of int64, shape (len(order),), optional
        If given, receives the center each visited row was assigned to.

    Returns
    -------
    float
        Weighted sum over the visited rows of the squared distance to the
        nearest center, each measured before that row's minibatch moved the
        centers (the minibatch inertia scikit-learn reports).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if counts.shape != (centers.shape[0],):
        raise ValueError(
            f"counts has shape {counts.shape}, expected ({centers.shape[0]},)"
        )
    if labels is None:
        labels = np.empty(order.shape[0], dtype=np.int64)
    dense, data, indices, indptr, is_sparse = kernel_rows(X, centers.dtype)
    inertia = _kmeans_pass(
        centers,
        counts,
        dense,
        data,
        indices,
        indptr,
        is_sparse,
        sample_weight,
        order,
        int(batch_size),
        labels,
    )
    return float(inertia)
