"""ASGDKMeans: minibatch K-Means trained by ASGD on Dask."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import (
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.metrics import euclidean_distances, pairwise_distances_argmin_min
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from .. import _config
from ..learners import KMeansLearner, KMeansState
from ..runtime import FitOutcome
from . import _kmeans_init as kmeans_init
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

    The scikit-learn counterpart is :class:`~sklearn.cluster.MiniBatchKMeans`,
    with its parameters, attributes, errors and warnings: the same minibatch
    update (each center moves to the weighted mean of its previous position
    and the rows assigned to it, with a learning rate of one over the weight
    it has absorbed) and the same random reassignment of nearly empty
    centers, run by every Dask worker on the rows it holds. With
    communication, workers push their centers to random peers and merge
    received centers that pass the Parzen-window test; the final centers are
    the average of the workers' centers. All workers start from the same
    centers, chosen on the driver as scikit-learn chooses them. Without an
    active :class:`distributed.Client`, ``fit`` runs on an embedded local
    cluster.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'random'}, callable or array-like of shape \
            (n_clusters, n_features), default='k-means++'
        How the starting centers are chosen, from ``init_size`` rows drawn at
        random: scikit-learn's greedy k-means++ seeding, ``n_clusters`` rows
        at random (with probability proportional to their weight), a
        callable ``init(X_sample, n_clusters, random_state)`` returning the
        centers, or the centers themselves (never modified).
    max_iter : int, default=100
        Maximum number of epochs: passes over the whole data set, every
        worker passing once over the rows it holds.
    batch_size : int, default=1024
        Rows per minibatch of each worker.
    verbose : int, default=0
        With ``verbose >= 1``, print one line per epoch on stdout (the mean
        loss over all workers), as scikit-learn does, while the fit runs
        (also logged at INFO level), and for a fit of more than one epoch
        show a live progress bar (``tqdm``; a widget in Jupyter) with the
        epoch, the mean loss and the messages per second between workers.
        ``TQDM_DISABLE=1`` in the environment hides the bar.
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` on the training rows (of the
        last ``partial_fit``) with the final centers (one more pass over the
        data; with Dask input ``labels_`` is a lazy Dask array).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the assignment of rows to workers, every
        worker's shuffling and the random reassignments.
    tol : float, default=0.0
        A worker's stopping rule fires when its centers move, in one
        minibatch, by a squared distance of at most ``tol`` times the mean
        variance of the features (scikit-learn's rule). 0 disables it.
    max_no_improvement : int or None, default=10
        A worker's stopping rule also fires after this many consecutive
        minibatches without improvement of its smoothed minibatch inertia
        (scikit-learn's rule, on the worker's own minibatches). None
        disables it.
    init_size : int or None, default=None
        Rows drawn (with replacement) for each seeding, and for the rows the
        seedings are compared on; None means ``3 * batch_size`` (at least
        ``3 * n_clusters``), as in scikit-learn.
    n_init : 'auto' or int, default='auto'
        Number of seedings; the one with the lowest inertia on ``init_size``
        rows drawn at random is kept. ``'auto'``: 1 for k-means++ and given
        centers, 3 for ``'random'`` and a callable, as in scikit-learn.
    reassignment_ratio : float, default=0.01
        After a minibatch, centers that have absorbed less than this share
        of the largest count jump to random rows of the minibatch (tried
        whenever a center is empty and every ``10 * n_clusters`` rows, as in
        scikit-learn). Each worker applies it to its own counts; the
        exchange carries the moved centers to its peers. 0 disables it.
    shuffle : bool, default=True
        Assign rows to workers at random and visit them in a new random order
        each epoch.
"""
        + COMMUNICATION_PARAMETERS_DOC
        + """
    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Cluster centers, in the dtype of the training data.
    labels_ : ndarray of shape (n_samples,) or dask array
        Cluster of each training row (with ``compute_labels``).
    inertia_ : float
        Weighted sum of squared distances of the training rows to their
        closest center with ``compute_labels``; without, the inertia of the
        last epoch's minibatches, each measured before its update (as
        scikit-learn approximates it from its minibatches).
    n_iter_ : int
        Number of epochs run.
    fit_id_ : str
        Identifier of the last fit (``"<estimator>-<12 hex digits>"``): the
        ``fit_id`` of its events on the ``"asgd"`` topic, the start of its
        tasks' keys, and the ``fit_id`` column of its rows in ``history_``.
    n_steps_ : int
        Number of minibatches processed, summed over the workers.
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
        minibatches (``steps``), seconds, ``elapsed`` and ``barrier_wait``,
        and with communication the send interval, message size and
        cumulative exchange counters, as for the linear estimators. ``call``
        and ``fit_id`` columns number and name the calls: ``fit`` starts the
        table afresh, every ``partial_fit`` appends its rows.
    communication_history_ : pandas.DataFrame
        One row per worker and change of its send interval or message size.

    See Also
    --------
    ASGDClassifier : Linear classification with the same machinery.
    sklearn.cluster.MiniBatchKMeans : Single-machine minibatch K-Means.

    Notes
    -----
    Where the meaning differs from scikit-learn's ``MiniBatchKMeans``, because
    every worker passes over the rows it holds instead of drawing minibatches
    from the whole data set:

    * Minibatches are consecutive rows of each worker's shuffled epoch, not
      drawn with replacement; ``max_iter`` counts epochs.
    * ``tol`` and ``max_no_improvement`` are scikit-learn's rules applied by
      every worker to its own minibatches; training stops at the end of the
      first epoch after which every worker's rule has fired, not at the
      minibatch where it fired.
    * ``partial_fit`` makes one pass over ``X`` in minibatches of
      ``batch_size`` rows (scikit-learn takes ``X`` as one minibatch), and
      ``n_steps_`` grows by the number of those minibatches.

    With in-memory input the starting centers are scikit-learn's for the
    same ``random_state``.

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
        "verbose": ["verbose"],
        "compute_labels": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_no_improvement": [Interval(Integral, 0, None, closed="left"), None],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "reassignment_ratio": [Interval(Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
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
        verbose: int = 0,
        compute_labels: bool = True,
        random_state: Any = None,
        tol: float = 0.0,
        max_no_improvement: int | None = 10,
        init_size: int | None = None,
        n_init: str | int = "auto",
        reassignment_ratio: float = 0.01,
        shuffle: bool = True,
        n_workers: int | None = None,
        min_rows_per_worker: int = 1024,
        communication: str = "adaptive",
        send_interval: int = 4096,
        message_size: float = 1.0,
        parzen_window: bool = True,
        mixing_weight: float | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.shuffle = shuffle
        self.n_workers = n_workers
        self.min_rows_per_worker = min_rows_per_worker
        self.communication = communication
        self.send_interval = send_interval
        self.message_size = message_size
        self.parzen_window = parzen_window
        self.mixing_weight = mixing_weight

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
        # partial_fit after a fit or partial_fit continues from its centers.
        continuing = partial and hasattr(self, "cluster_centers_")
        data = TrainingData.check(
            self, X, None, sample_weight, reset=not continuing, target=None
        )
        if continuing:
            random_state = getattr(self, "_random_state", None)
            if random_state is None:
                random_state = check_random_state(self.random_state)
            state = KMeansState(
                self.cluster_centers_.astype(data.dtype), self.counts_.copy()
            )
            tol = 0.0
        else:
            init_plan = kmeans_init.plan(self, data.n_samples)
            random_state = check_random_state(self.random_state)
            state = KMeansState(
                self._starting_centers(data, init_plan, partial, random_state),
                np.zeros(self.n_clusters),
            )
            tol = kmeans_init.tolerance(data.X, self.tol)
        # Drawn after the starting centers, from the same random state, so
        # that one seed fixes both.
        rng = self._driver_rng(random_state)
        learner = KMeansLearner(
            state=state,
            batch_size=int(self.batch_size),
            tol=0.0 if partial else tol,
            max_no_improvement=None if partial else self.max_no_improvement,
            reassignment_ratio=float(self.reassignment_ratio),
            seed=int(rng.integers(np.iinfo(np.int32).max)),
        )
        max_iter = 1 if partial else int(self.max_iter)
        outcome = self._train_on_cluster(
            data.rows(None, None), learner, max_iter, rng, config
        )
        self._set_fitted(outcome, data, partial)
        # partial_fit keeps drawing from one random state, as scikit-learn's.
        self._random_state = random_state
        return self

    def _starting_centers(
        self,
        data: TrainingData,
        init_plan: kmeans_init.InitPlan,
        partial: bool,
        random_state: np.random.RandomState,
    ) -> np.ndarray:
        """The centers a fit starts from: the best of ``n_init`` seedings, or
        one seeding for the first ``partial_fit``, as in scikit-learn."""
        if not partial:
            return kmeans_init.best_of_seedings(
                self, data.X, data.sample_weight, init_plan, random_state
            )
        if kmeans_init.is_given_centers(self.init):
            return kmeans_init.given_centers(
                self.init, self.n_clusters, data.dtype, data.n_features
            )
        return kmeans_init.seed_centers(
            self, data.X, data.sample_weight, init_plan.init_size, random_state
        )

    def _set_fitted(
        self, outcome: FitOutcome, data: TrainingData, partial: bool
    ) -> None:
        """Set the fitted attributes, and the labels of ``data`` if asked."""
        self._store_outcome(outcome, partial)
        self.cluster_centers_ = outcome.state.centers
        self.counts_ = outcome.state.counts
        steps = int(outcome.history["steps"].sum()) if len(outcome.history) else 0
        self.n_steps_ = steps + (getattr(self, "n_steps_", 0) if partial else 0)
        self.__dict__.pop("labels_", None)
        if self.compute_labels:
            self.labels_, distances = self._labels_and_distances(data.X)
            self.inertia_ = _weighted_inertia(distances, data.sample_weight)
        else:
            self.inertia_ = self._last_epoch_inertia(outcome, data)

    def _last_epoch_inertia(self, outcome: FitOutcome, data: TrainingData) -> float:
        """The minibatch inertia of the last epoch, per unit of weight, times
        the weight of the data (scikit-learn's estimate without labels)."""
        history = outcome.history
        last = history[history["epoch"] == history["epoch"].max()]
        weights = data.sample_weight
        if weights is None:
            total_weight = float(data.n_samples)
        else:
            total = weights.sum()
            total_weight = float(
                total.compute() if is_dask_collection(total) else total
            )
        return float(last["loss"].mean()) * total_weight

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
