"""ASGDKMeans: minibatch K-Means trained by ASGD on Dask."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.cluster import kmeans_plusplus
from sklearn.metrics import euclidean_distances, pairwise_distances_argmin_min
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from .. import _config
from ..learners import KMeansLearner, KMeansState
from ..runtime import FitOutcome
from ._base import COMMUNICATION_PARAMETERS_DOC, BaseASGD
from ._dask_input import (
    align_sample_weight,
    is_dask_collection,
    map_rows,
    validate_dask_data,
)
from ._input import X_CHECKS, TrainingData


class ASGDKMeans(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseASGD
):
    __doc__ = (
        """K-Means clustering trained by asynchronous parallel SGD on Dask.

    The scikit-learn counterpart is :class:`~sklearn.cluster.MiniBatchKMeans`:
    the same minibatch update (each center moves to the weighted mean of its
    previous position and the rows assigned to it, with a learning rate of
    one over the weight it has absorbed), run by every Dask worker on the
    rows it holds. With communication, workers push their centers to random
    peers and merge received centers that pass the Parzen-window test; the
    final centers are the average of the workers' centers. All workers start
    from the same centers, chosen on the driver from a sample of the rows.
    Without an active :class:`distributed.Client`, ``fit`` runs on an
    embedded local cluster.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'random'}, callable or array of shape \
            (n_clusters, n_features), default='k-means++'
        How the starting centers are chosen, from ``init_size`` rows drawn at
        random: scikit-learn's k-means++ seeding, ``n_clusters`` rows at
        random (with probability proportional to their weight), a callable
        ``init(X_sample, n_clusters, random_state)`` returning the centers, or
        the centers themselves.
    max_iter : int, default=100
        Maximum number of epochs: passes over the whole data set, every
        worker passing once over the rows it holds.
    batch_size : int, default=1024
        Rows per minibatch of each worker.
    tol : float or None, default=1e-4
        Training stops when the epoch's inertia, summed over all workers,
        has not fallen by more than ``tol`` times the best so far for
        ``n_iter_no_change`` epochs. None disables the rule.
    n_iter_no_change : int, default=3
        Epochs without such an improvement before stopping.
    init_size : int or None, default=None
        Rows drawn for the initialisation; None means ``3 * batch_size``
        (at least ``3 * n_clusters``), as in scikit-learn.
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` on the training rows (of the
        last ``partial_fit``) with the final centers (one more pass over the
        data; with Dask input ``labels_`` is a lazy Dask array).
    shuffle : bool, default=True
        Assign rows to workers at random and visit them in a new random order
        each epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the assignment of rows to workers and every
        worker's shuffling.
    verbose : int, default=0
        Log one line per epoch at INFO level (``logging``).
"""
        + COMMUNICATION_PARAMETERS_DOC
        + """
    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Cluster centers.
    labels_ : ndarray of shape (n_samples,) or dask array
        Cluster of each training row (with ``compute_labels``).
    inertia_ : float
        Weighted sum of squared distances of the training rows to their
        closest center (with ``compute_labels``).
    n_iter_ : int
        Number of epochs run.
    counts_ : ndarray of shape (n_clusters,)
        Weight of the rows each center has absorbed over all workers; sets
        the learning rates of a later ``partial_fit``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.
    history_ : pandas.DataFrame
        One row per worker and epoch: the worker's mean squared distance
        (``local_loss``), the mean over all workers (``loss``), rows,
        seconds, and with communication the send interval, message size and
        cumulative exchange counters, as for the linear estimators.
    communication_history_ : pandas.DataFrame
        One row per worker and change of its send interval or message size.

    See Also
    --------
    ASGDClassifier : Linear classification with the same machinery.
    sklearn.cluster.MiniBatchKMeans : Single-machine minibatch K-Means.

    Notes
    -----
    Differences from scikit-learn's ``MiniBatchKMeans``: there is one start
    (no ``n_init``; scikit-learn also uses one with k-means++), centers that
    absorb almost no rows are not moved to random rows (no
    ``reassignment_ratio``), and training stops on the inertia of whole epochs
    (``tol``, ``n_iter_no_change``) rather than on a smoothed minibatch
    inertia (``max_no_improvement``).

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from dask_asgd import ASGDKMeans
    >>> X, _ = make_blobs(10_000, 5, centers=4, random_state=0)
    >>> km = ASGDKMeans(4, random_state=0).fit(X)  # doctest: +SKIP
    >>> km.cluster_centers_.shape  # doctest: +SKIP
    (4, 5)
    """
    )

    _parameter_constraints: ClassVar[dict] = {
        **BaseASGD._parameter_constraints,
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), callable, "array-like"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
        "compute_labels": ["boolean"],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _epoch_loss_name = "mean squared distance"
    _epoch_rows_name = "rows"

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means++",
        max_iter: int = 100,
        batch_size: int = 1024,
        tol: float | None = 1e-4,
        n_iter_no_change: int = 3,
        init_size: int | None = None,
        compute_labels: bool = True,
        shuffle: bool = True,
        random_state: Any = None,
        verbose: int = 0,
        n_workers: int | None = None,
        min_rows_per_worker: int = 1024,
        communication: str = "adaptive",
        send_interval: int = 4096,
        message_size: float = 1.0,
        parzen_window: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.init_size = init_size
        self.compute_labels = compute_labels
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.n_workers = n_workers
        self.min_rows_per_worker = min_rows_per_worker
        self.communication = communication
        self.send_interval = send_interval
        self.message_size = message_size
        self.parzen_window = parzen_window

    # ----------------------------------------------------------------- fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> ASGDKMeans:
        """Compute the clustering with asynchronous parallel minibatch K-Means.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame} of shape \
                (n_samples, n_features)
            Training rows. Dask input stays on the workers that hold it.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row.

        Returns
        -------
        self : ASGDKMeans
        """
        return self._fit_transactionally(False, X, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self, X: Any, y: Any = None, sample_weight: Any = None
    ) -> ASGDKMeans:
        """Update the centers with one pass over ``X``.

        The first call chooses the starting centers from ``X``; later calls
        continue from the current centers and their counts.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame} of shape \
                (n_samples, n_features)
            Rows of this pass.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row.

        Returns
        -------
        self : ASGDKMeans
        """
        return self._fit_transactionally(True, X, sample_weight)

    def _fit(
        self, config: _config.Config, partial: bool, X: Any, sample_weight: Any
    ) -> ASGDKMeans:
        """One ``fit`` (``max_iter`` epochs) or ``partial_fit`` (one epoch)."""
        max_iter = 1 if partial else int(self.max_iter)
        # partial_fit after a fit or partial_fit continues from its centers.
        continuing = partial and hasattr(self, "cluster_centers_")
        data = TrainingData.check(
            self, X, None, sample_weight, reset=not continuing, target=None
        )
        if data.n_samples < self.n_clusters:
            raise ValueError(
                f"n_samples={data.n_samples} should be >= n_clusters={self.n_clusters}."
            )
        random_state = check_random_state(self.random_state)
        if continuing:
            state = KMeansState(
                self.cluster_centers_.astype(data.dtype), self.counts_.copy()
            )
        else:
            centers = self._initial_centers(data.X, data.sample_weight, random_state)
            state = KMeansState(centers, np.zeros(self.n_clusters))
        # Drawn after the starting centers, from the same random state, so
        # that one seed fixes both.
        rng = self._driver_rng(random_state)
        learner = KMeansLearner(
            state=state,
            batch_size=int(self.batch_size),
            tol=self.tol if max_iter > 1 else None,
            n_iter_no_change=int(self.n_iter_no_change),
        )
        outcome = self._train_on_cluster(
            data.rows(None, None), learner, max_iter, rng, config
        )
        self._set_fitted(outcome, data)
        return self

    def _set_fitted(self, outcome: FitOutcome, data: TrainingData) -> None:
        """Set the fitted attributes, and the labels of ``data`` if asked."""
        self._store_outcome(outcome)
        self.cluster_centers_ = outcome.state.centers
        self.counts_ = outcome.state.counts
        for name in ("labels_", "inertia_"):
            self.__dict__.pop(name, None)
        if self.compute_labels:
            self.labels_, distances = self._labels_and_distances(data.X)
            self.inertia_ = _weighted_inertia(distances, data.sample_weight)

    def _initial_centers(
        self, X: Any, sample_weight: Any, random_state: np.random.RandomState
    ) -> np.ndarray:
        """Starting centers, chosen on the driver from a sample of the rows."""
        n_features = X.shape[1]
        if not isinstance(self.init, str) and not callable(self.init):
            return self._given_centers(X.dtype, n_features)
        sample, weights = self._init_sample(X, sample_weight, random_state)
        if isinstance(self.init, str) and self.init == "k-means++":
            centers, _ = kmeans_plusplus(
                sample,
                self.n_clusters,
                sample_weight=weights,
                random_state=random_state,
            )
        elif isinstance(self.init, str):
            chosen = random_state.choice(
                sample.shape[0],
                self.n_clusters,
                replace=False,
                p=weights / weights.sum(),
            )
            centers = sample[chosen]
        else:
            centers = self.init(sample, self.n_clusters, random_state=random_state)
        if sp.issparse(centers):
            centers = centers.toarray()
        centers = np.ascontiguousarray(centers, dtype=X.dtype)
        if centers.shape != (self.n_clusters, n_features):
            raise ValueError(
                f"The init callable returned centers of shape {centers.shape}, "
                f"expected {(self.n_clusters, n_features)}."
            )
        return centers

    def _given_centers(self, dtype: Any, n_features: int) -> np.ndarray:
        """``init`` given as an array, checked against the data."""
        centers = check_array(self.init, dtype=dtype, copy=True, order="C")
        if centers.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not "
                f"match the number of clusters {self.n_clusters}."
            )
        if centers.shape[1] != n_features:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not "
                f"match the number of features of the data {n_features}."
            )
        return centers

    def _init_sample(
        self, X: Any, sample_weight: Any, random_state: np.random.RandomState
    ) -> tuple[Any, np.ndarray]:
        """The ``init_size`` rows the starting centers are chosen from, in
        memory, and their weights."""
        n_samples = X.shape[0]
        init_size = self.init_size or 3 * self.batch_size
        init_size = min(max(init_size, 3 * self.n_clusters), n_samples)
        rows = np.sort(random_state.choice(n_samples, init_size, replace=False))
        sample = X[rows]
        weights = sample_weight[rows] if sample_weight is not None else None
        if is_dask_collection(sample):
            import dask

            sample, weights = dask.compute(sample, weights)
        if sp.issparse(sample):
            sample = sp.csr_matrix(sample)
        weights = (
            np.ones(sample.shape[0])
            if weights is None
            else np.asarray(weights, dtype=np.float64)
        )
        return sample, weights

    def _epoch_mean_loss(self, totals: dict[str, float]) -> float:
        # Rows carry weights: the mean is over the weight they add up to.
        return totals["loss"] / max(totals["weight"], 1e-300)

    # -------------------------------------------------------------- prediction

    def _labels_and_distances(self, X: Any) -> tuple[Any, Any]:
        """Nearest center and squared distance to it, of every row of ``X``."""
        if is_dask_collection(X):
            both = map_rows(self._nearest_block, X, 2, np.float64)
            return both[:, 0].astype(np.int32), both[:, 1]
        return self._nearest(X)

    def _nearest(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        labels, distances = pairwise_distances_argmin_min(X, self.cluster_centers_)
        return labels.astype(np.int32), distances.astype(np.float64) ** 2

    def _nearest_block(self, block: Any) -> np.ndarray:
        labels, squared = self._nearest(block)
        return np.column_stack([labels.astype(np.float64), squared])

    def _predict_block(self, block: Any) -> np.ndarray:
        return self._nearest(block)[0]

    def _transform_block(self, block: Any) -> np.ndarray:
        return euclidean_distances(block, self.cluster_centers_)

    def _check_X(self, X: Any) -> Any:
        check_is_fitted(self)
        if is_dask_collection(X):
            X, _, _ = validate_dask_data(
                self, X, None, None, reset=False, requires_y=False
            )
            return X
        return validate_data(self, X, reset=False, **X_CHECKS)

    def predict(self, X: Any) -> Any:
        """Index of the closest center of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame}
            Rows to assign; Dask input gives a lazy Dask array.

        Returns
        -------
        ndarray of shape (n_samples,), int32
        """
        X = self._check_X(X)
        if is_dask_collection(X):
            return map_rows(self._predict_block, X, None, np.int32)
        return self._predict_block(X)

    def transform(self, X: Any) -> Any:
        """Distance of each row to every center.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame}
            Rows to transform; Dask input gives a lazy Dask array.

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
        """
        X = self._check_X(X)
        if is_dask_collection(X):
            return map_rows(
                self._transform_block, X, self.n_clusters, self.cluster_centers_.dtype
            )
        return self._transform_block(X)

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit, then return the cluster of each training row.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame}
            Training rows.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row.

        Returns
        -------
        ndarray of shape (n_samples,) or dask array
        """
        self.fit(X, sample_weight=sample_weight)
        return self.labels_ if hasattr(self, "labels_") else self.predict(X)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Opposite of the inertia of ``X`` with the fitted centers.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame}
            Rows to score.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row.

        Returns
        -------
        float
            Minus the weighted sum of squared distances to the closest center.
        """
        X = self._check_X(X)
        if is_dask_collection(X):
            sample_weight = align_sample_weight(sample_weight, X)
        else:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        _, distances = self._labels_and_distances(X)
        return -_weighted_inertia(distances, sample_weight)

    @property
    def _n_features_out(self) -> int:
        # Names of transform's columns (get_feature_names_out): one per center.
        return self.cluster_centers_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _weighted_inertia(squared_distances: Any, sample_weight: Any) -> float:
    """Weighted sum of squared distances, computed if they are Dask arrays."""
    weighted = (
        squared_distances
        if sample_weight is None
        else squared_distances * sample_weight
    )
    total = weighted.sum()
    return float(total.compute() if is_dask_collection(total) else total)
