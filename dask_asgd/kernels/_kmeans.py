"""Minibatch K-Means: the SGD step for cluster centers (Sculley 2010).

Each minibatch assigns its rows to their nearest center (with the centers as
they were before the minibatch), then moves every center that received rows
to the weighted mean of its previous position, counted ``counts[k]`` times,
and of the rows assigned to it: each center has its own learning rate, one
over the weight of the rows it has absorbed. Then, as in scikit-learn's
``MiniBatchKMeans``, centers that have absorbed almost nothing may jump to
random rows of the minibatch (random reassignment), with the random state
passed in, so that every worker applies it to its own counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ._options import JIT_OPTIONS
from ._rows import kernel_rows

#: Columns of the per-minibatch statistics: weighted inertia before the
#: update, weight of the rows, squared distance the centers moved.
BATCH_INERTIA, BATCH_WEIGHT, BATCH_SHIFT = 0, 1, 2


@dataclass
class Reassignment:
    """Random reassignment of nearly empty centers, and its running state.

    A center whose count is below ``ratio`` times the largest count jumps to
    a row of the current minibatch, drawn uniformly, and its count is set to
    the smallest count of the other centers. This is tried after a minibatch
    when any center has count 0 or when ``10 * n_clusters`` rows have been
    visited since the last try, as scikit-learn does.

    Parameters
    ----------
    ratio : float
        scikit-learn's ``reassignment_ratio``; 0 disables reassignment.
    rng_state : ndarray of uint64, shape (1,)
        State of the kernel's random generator (splitmix64), updated in place.
    rows_since : ndarray of int64, shape (1,)
        Rows visited since the last try, updated in place.
    """

    ratio: float
    rng_state: np.ndarray
    rows_since: np.ndarray

    @classmethod
    def seeded(cls, ratio: float, seed: int) -> Reassignment:
        """A fresh reassignment state whose draws ``seed`` fixes."""
        return cls(
            float(ratio),
            np.array([seed], dtype=np.uint64),
            np.zeros(1, dtype=np.int64),
        )


@njit(**JIT_OPTIONS)
def _next_random(state):
    # splitmix64: a tiny generator whose whole state is one integer, so the
    # caller can keep it between kernel calls.
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


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
def _set_center_to_row(centers, center, dense, data, indices, indptr, is_sparse, row):
    """Move ``center`` onto ``row``; return the squared distance it moved."""
    n_features = centers.shape[1]
    moved = 0.0
    if is_sparse:
        previous = centers[center].copy()
        centers[center, :] = 0.0
        for p in range(indptr[row], indptr[row + 1]):
            centers[center, indices[p]] = data[p]
        for j in range(n_features):
            moved += (centers[center, j] - previous[j]) ** 2
    else:
        for j in range(n_features):
            moved += (dense[row, j] - centers[center, j]) ** 2
            centers[center, j] = dense[row, j]
    return moved


@njit(**JIT_OPTIONS)
def _reassign(
    centers,
    counts,
    dense,
    data,
    indices,
    indptr,
    is_sparse,
    batch_rows,
    ratio,
    rng_state,
    positions,
):
    """scikit-learn's random reassignment after one minibatch; the squared
    distance the reassigned centers moved."""
    n_clusters = counts.shape[0]
    n_rows = batch_rows.shape[0]
    to_reassign = counts < ratio * counts.max()
    # At most half the minibatch's rows become centers: those with the
    # smallest counts.
    limit = int(0.5 * n_rows)
    if to_reassign.sum() > limit:
        for k in np.argsort(counts)[limit:]:
            to_reassign[k] = False
    n_reassign = int(to_reassign.sum())
    if n_reassign == 0:
        return 0.0
    # Distinct rows of the minibatch, uniformly: a partial Fisher-Yates shuffle.
    for p in range(n_rows):
        positions[p] = p
    moved = 0.0
    smallest_kept = np.inf
    for k in range(n_clusters):
        if not to_reassign[k]:
            smallest_kept = min(smallest_kept, counts[k])
    drawn = 0
    for k in range(n_clusters):
        if not to_reassign[k]:
            continue
        pick = drawn + int(_next_random(rng_state) % np.uint64(n_rows - drawn))
        positions[drawn], positions[pick] = positions[pick], positions[drawn]
        row = batch_rows[positions[drawn]]
        drawn += 1
        moved += _set_center_to_row(
            centers, k, dense, data, indices, indptr, is_sparse, row
        )
        # Not too small, or the center would be reassigned again at once.
        counts[k] = smallest_kept
    return moved


@njit(**JIT_OPTIONS)
def _assign_batch(
    centers,
    dense,
    data,
    indices,
    indptr,
    is_sparse,
    sample_weight,
    batch_rows,
    labels,
    first_position,
    sums,
    batch_weight,
    center_norms,
):
    """Assign the minibatch's rows and sum them per center; return the
    weighted inertia and the weight of the rows."""
    n_clusters, n_features = centers.shape
    if is_sparse:
        for k in range(n_clusters):
            norm = 0.0
            for j in range(n_features):
                norm += centers[k, j] * centers[k, j]
            center_norms[k] = norm
    inertia = 0.0
    total_weight = 0.0
    for offset in range(batch_rows.shape[0]):
        row = batch_rows[offset]
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
        labels[first_position + offset] = best
        inertia += weight * best_distance
        total_weight += weight
        batch_weight[best] += weight
        if is_sparse:
            for p in range(start, stop):
                sums[best, indices[p]] += weight * data[p]
        else:
            for j in range(n_features):
                sums[best, j] += weight * dense[row, j]
    return inertia, total_weight


@njit(**JIT_OPTIONS)
def _move_centers(centers, counts, sums, batch_weight):
    """Move every center that received rows; return the squared distance moved."""
    moved = 0.0
    for k in range(centers.shape[0]):
        if batch_weight[k] <= 0.0:
            continue
        previous_weight = counts[k]
        new_weight = previous_weight + batch_weight[k]
        for j in range(centers.shape[1]):
            updated = (centers[k, j] * previous_weight + sums[k, j]) / new_weight
            moved += (updated - centers[k, j]) ** 2
            centers[k, j] = updated
            sums[k, j] = 0.0
        counts[k] = new_weight
        batch_weight[k] = 0.0
    return moved


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
    ratio,
    rng_state,
    rows_since,
    batch_stats,
):
    n_clusters, n_features = centers.shape
    sums = np.zeros((n_clusters, n_features), dtype=np.float64)
    batch_weight = np.zeros(n_clusters, dtype=np.float64)
    center_norms = np.zeros(n_clusters, dtype=np.float64)
    positions = np.empty(batch_size, dtype=np.int64)
    inertia = 0.0
    n_rows = order.shape[0]
    for batch, batch_start in enumerate(range(0, n_rows, batch_size)):
        batch_stop = min(batch_start + batch_size, n_rows)
        batch_rows = order[batch_start:batch_stop]
        # Decided before the update, on the counts as they were, as in
        # scikit-learn's MiniBatchKMeans.
        rows_since[0] += batch_stop - batch_start
        reassign = ratio > 0.0 and (
            (counts == 0.0).any() or rows_since[0] >= 10 * n_clusters
        )
        if reassign:
            rows_since[0] = 0
        batch_inertia, weight = _assign_batch(
            centers,
            dense,
            data,
            indices,
            indptr,
            is_sparse,
            sample_weight,
            batch_rows,
            labels,
            batch_start,
            sums,
            batch_weight,
            center_norms,
        )
        moved = _move_centers(centers, counts, sums, batch_weight)
        if reassign:
            moved += _reassign(
                centers,
                counts,
                dense,
                data,
                indices,
                indptr,
                is_sparse,
                batch_rows,
                ratio,
                rng_state,
                positions,
            )
        inertia += batch_inertia
        if batch_stats.shape[0] > 0:
            batch_stats[batch, 0] = batch_inertia
            batch_stats[batch, 1] = weight
            batch_stats[batch, 2] = moved
    return inertia


def n_minibatches(n_rows: int, batch_size: int) -> int:
    """Number of minibatches :func:`kmeans_pass` cuts ``n_rows`` rows into."""
    return -(-int(n_rows) // int(batch_size))


def kmeans_pass(
    centers: np.ndarray,
    counts: np.ndarray,
    X: Any,
    sample_weight: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    labels: np.ndarray | None = None,
    *,
    reassignment: Reassignment | None = None,
    batch_stats: np.ndarray | None = None,
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
    reassignment : Reassignment, optional
        Random reassignment of nearly empty centers, and its state (updated
        in place); None never reassigns.
    batch_stats : ndarray of float64, shape (n_minibatches, 3), optional
        If given, receives per minibatch (see :func:`n_minibatches`) its
        weighted inertia, the weight of its rows and the squared distance
        the centers moved (columns ``BATCH_INERTIA``, ``BATCH_WEIGHT``,
        ``BATCH_SHIFT``).

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
    n_batches = n_minibatches(order.shape[0], batch_size)
    if batch_stats is None:
        batch_stats = np.empty((0, 3))
    elif batch_stats.shape != (n_batches, 3):
        raise ValueError(
            f"batch_stats has shape {batch_stats.shape}, expected ({n_batches}, 3)"
        )
    if labels is None:
        labels = np.empty(order.shape[0], dtype=np.int64)
    if reassignment is None:
        reassignment = Reassignment.seeded(0.0, 0)
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
        float(reassignment.ratio),
        reassignment.rng_state,
        reassignment.rows_since,
        batch_stats,
    )
    return float(inertia)
