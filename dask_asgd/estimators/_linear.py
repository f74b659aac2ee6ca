"""ASGDClassifier and ASGDRegressor: linear models trained by ASGD on Dask."""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit
from sklearn.base import RegressorMixin, _fit_context
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _config
from ..kernels import LOSS_CODES
from ._dask_input import is_dask_collection, map_rows
from ._input import TrainingData
from ._linear_base import LINEAR_PARAMETERS_DOC, BaseSGDLinear
from ._targets import LinearTargets, class_weights, find_classes

_CLASSIFICATION_LOSSES = {name for name, (_, is_clf) in LOSS_CODES.items() if is_clf}
_REGRESSION_LOSSES = {name for name, (_, is_clf) in LOSS_CODES.items() if not is_clf}


def _check_proba(self: ASGDClassifier) -> bool:
    if self.loss not in ("log_loss", "modified_huber"):
        raise AttributeError(
            f"probability estimates are not available for loss={self.loss!r}"
        )
    return True


class ASGDClassifier(LinearClassifierMixin, BaseSGDLinear):
    __doc__ = f"""Linear classifier trained by asynchronous parallel SGD on Dask.

    The scikit-learn counterpart is :class:`~sklearn.linear_model.SGDClassifier`:
    same losses, penalties, learning-rate schedules and parameter names. Each
    Dask worker trains on the rows it holds; the final model is the average of
    the workers' models. Without an active :class:`distributed.Client`, ``fit``
    runs on an embedded local cluster. Multiclass problems are one-vs-rest, all
    classes trained in the same pass over the data.

    Parameters
    ----------
    loss : {{'hinge', 'log_loss', 'modified_huber', 'squared_hinge', \
            'perceptron'}}, default='hinge'
        Loss function.
{LINEAR_PARAMETERS_DOC}
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, as in scikit-learn.
    n_jobs : int or None, default=None
        Accepted so that code written for :class:`~sklearn.linear_model.SGDClassifier`
        runs unchanged, and has no effect. In scikit-learn it spreads the
        one-vs-rest problems of a multiclass fit over threads, which changes
        speed, never results. Here every worker trains all classes in one pass
        over its rows, and a fit's parallelism is the Dask workers' (see
        ``n_workers``): mapping ``n_jobs`` onto workers would change the model,
        which ``n_jobs`` never does in scikit-learn.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Weights.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_iter_ : int
        Number of epochs run.
    fit_id_ : str
        Identifier of the last fit (``"<estimator>-<12 hex digits>"``): the
        ``fit_id`` of its events on the ``"asgd"`` topic, the start of its
        tasks' keys, and the ``fit_id`` column of its rows in ``history_``.
    t_ : float
        Number of weight updates performed over all workers, plus one.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.
    history_ : pandas.DataFrame
        One row per worker and epoch: the worker's mean loss, the mean loss
        over all workers, samples, seconds, learning rate (and validation
        score with ``early_stopping``); with communication, the send interval,
        message size and cumulative exchange counters (messages published,
        sent, received, lost, dropped, failed, refused, rows accepted and
        rejected by the Parzen window, bytes sent and received); the
        seconds since the fit started at the end of the epoch (``elapsed``)
        and the seconds the worker waited at the epoch barrier
        (``barrier_wait``). A ``call`` column numbers the calls and a
        ``fit_id`` column names them: ``fit`` starts the table afresh (call
        0), every ``partial_fit`` appends its rows to it.
    communication_history_ : pandas.DataFrame
        One row per worker and change of its send interval or message size
        (and its start): seconds since the worker started, the new settings,
        the balancer's reason and the signals it decided on.

    See Also
    --------
    ASGDRegressor : The regression counterpart.
    sklearn.linear_model.SGDClassifier : Single-machine SGD.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from dask_asgd import ASGDClassifier
    >>> X, y = make_classification(1000, 10, random_state=0)
    >>> clf = ASGDClassifier(random_state=0).fit(X, y)  # doctest: +SKIP
    >>> clf.score(X, y) > 0.8  # doctest: +SKIP
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseSGDLinear._parameter_constraints,
        "loss": [StrOptions(_CLASSIFICATION_LOSSES)],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "n_jobs": [Integral, None],
    }
    _target_kind = "classes"
    _score_kind = "accuracy"

    def __init__(
        self,
        loss: str = "hinge",
        *,
        penalty: str | None = "l2",
        alpha: float = 0.0001,
        l1_ratio: float | None = 0.15,
        fit_intercept: bool = True,
        max_iter: int = 1000,
        tol: float | None = 1e-3,
        shuffle: bool = True,
        verbose: int = 0,
        epsilon: float = 0.1,
        n_jobs: int | None = None,
        random_state: Any = None,
        learning_rate: str = "optimal",
        eta0: float = 0.01,
        power_t: float = 0.5,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        class_weight: Any = None,
        warm_start: bool = False,
        average: bool | int = False,
        batch_size: int = 1,
        n_workers: int | None = None,
        min_rows_per_worker: int = 1024,
        communication: str = "adaptive",
        send_interval: int = 4096,
        message_size: float = 1.0,
        parzen_window: bool = True,
        mixing_weight: float | None = None,
    ) -> None:
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.epsilon = epsilon
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.average = average
        self.batch_size = batch_size
        self.n_workers = n_workers
        self.min_rows_per_worker = min_rows_per_worker
        self.communication = communication
        self.send_interval = send_interval
        self.message_size = message_size
        self.parzen_window = parzen_window
        self.mixing_weight = mixing_weight

    def _check_fit_parameters(self, config: _config.Config, partial: bool) -> None:
        super()._check_fit_parameters(config, partial)
        if partial and self.class_weight == "balanced":
            raise ValueError(
                f"class_weight '{self.class_weight}' is not supported for "
                "partial_fit. In order to use 'balanced' weights, use "
                "compute_class_weight('balanced', classes=classes, "
                "y=y). In place of y you can use a large enough sample of the full "
                "training set target to properly estimate the class frequency "
                "distributions. Pass the resulting weights as the class_weight "
                "parameter."
            )

    def _targets(
        self, data: TrainingData, classes: Any, partial: bool
    ) -> LinearTargets:
        """Set ``classes_``; the encoder and class weights of this fit."""
        if not partial:
            # A new fit may see other classes than the last one.
            self.__dict__.pop("classes_", None)
        first_call = not hasattr(self, "classes_")
        # fit finds the classes in y; partial_fit takes them from `classes`
        # as scikit-learn does, except that Dask labels can be counted where
        # they are.
        discover = first_call and (not partial or data.is_dask)
        classes = find_classes(data, classes, discover)
        _check_partial_fit_first_call(self, classes)
        n_classes = self.classes_.shape[0]
        if n_classes < 2:
            raise ValueError(
                "The number of classes has to be greater than one; got "
                f"{n_classes} class"
            )
        weights = class_weights(self.class_weight, self.classes_, data)
        return LinearTargets.classification(self.classes_, weights)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> ASGDClassifier:
        """Perform one epoch of ASGD on the given samples.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame} of shape \
                (n_samples, n_features)
            Training rows.
        y : {array-like, dask array or Series} of shape (n_samples,)
            Target labels.
        classes : ndarray of shape (n_classes,), default=None
            Every class that can appear; required on the first call with
            in-memory input (Dask labels are searched on the cluster).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples.

        Returns
        -------
        self : ASGDClassifier
        """
        return self._fit_transactionally(True, X, y, sample_weight, classes=classes)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: Any,
        y: Any,
        coef_init: Any = None,
        intercept_init: Any = None,
        sample_weight: Any = None,
    ) -> ASGDClassifier:
        """Fit the linear model with asynchronous parallel SGD on Dask.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame} of shape \
                (n_samples, n_features)
            Training rows. Dask input stays on the workers that hold it.
        y : {array-like, dask array or Series} of shape (n_samples,)
            Target labels.
        coef_init : ndarray of shape (n_classes, n_features), default=None
            Initial weights.
        intercept_init : ndarray of shape (n_classes,), default=None
            Initial intercepts.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples.

        Returns
        -------
        self : ASGDClassifier
        """
        return self._fit_transactionally(
            False,
            X,
            y,
            sample_weight,
            coef_init=coef_init,
            intercept_init=intercept_init,
        )

    @available_if(_check_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability estimates (``log_loss`` and ``modified_huber`` only).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_``.
        """
        check_is_fitted(self)
        if is_dask_collection(X):
            self._check_dask_features(X)
            return map_rows(self._proba_block, X, self.classes_.shape[0], np.float64)
        return self._probabilities(self.decision_function(X))

    def _proba_block(self, block: Any) -> np.ndarray:
        return self._probabilities(self._scores(block))

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        binary = self.classes_.shape[0] == 2
        if self.loss == "log_loss":
            if binary:
                positive = expit(scores)
                return np.column_stack([1.0 - positive, positive])
            probability = expit(scores)
            return probability / probability.sum(axis=1)[:, np.newaxis]
        if binary:
            positive = (np.clip(scores, -1, 1) + 1.0) / 2.0
            return np.column_stack([1.0 - positive, positive])
        probability = (np.clip(scores, -1, 1) + 1.0) / 2.0
        total = probability.sum(axis=1)
        all_zero = total == 0
        # Every class scored -1 or below: no evidence either way.
        probability[all_zero, :] = 1.0
        total[all_zero] = self.classes_.shape[0]
        return probability / total[:, np.newaxis]

    @available_if(_check_proba)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        probabilities = self.predict_proba(X)
        if is_dask_collection(probabilities):
            import dask.array as da

            return da.log(probabilities)
        return np.log(probabilities)

    def _scores(self, block: Any) -> np.ndarray:
        scores = np.asarray(block @ self.coef_.T) + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def _predict_block(self, block: Any) -> np.ndarray:
        scores = self._scores(block)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.intp)]
        return self.classes_[scores.argmax(axis=1)]

    def decision_function(self, X: Any) -> Any:
        """Signed distance of each row to the hyperplane of each class.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame}
            Rows to score; Dask input gives a lazy Dask array.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        if is_dask_collection(X):
            check_is_fitted(self)
            self._check_dask_features(X)
            n_columns = None if self.coef_.shape[0] == 1 else self.coef_.shape[0]
            return map_rows(self._scores, X, n_columns, self.coef_.dtype)
        return super().decision_function(X)

    def predict(self, X: Any) -> Any:
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame}
            Rows to classify; Dask input gives a lazy Dask array.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        if is_dask_collection(X):
            check_is_fitted(self)
            self._check_dask_features(X)
            return map_rows(self._predict_block, X, None, self.classes_.dtype)
        return super().predict(X)


class ASGDRegressor(RegressorMixin, BaseSGDLinear):
    __doc__ = f"""Linear regressor trained by asynchronous parallel SGD on Dask.

    The scikit-learn counterpart is :class:`~sklearn.linear_model.SGDRegressor`,
    with the same losses, penalties, schedules and parameter names. Each Dask
    worker trains on the rows it holds; the final model is the average of the
    workers' models.

    Parameters
    ----------
    loss : {{'squared_error', 'huber', 'epsilon_insensitive', \
            'squared_epsilon_insensitive'}}, default='squared_error'
        Loss function.
{LINEAR_PARAMETERS_DOC}

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Weights.
    intercept_ : ndarray of shape (1,)
        Intercept.
    n_iter_ : int
        Number of epochs run.
    fit_id_ : str
        Identifier of the last fit (``"<estimator>-<12 hex digits>"``): the
        ``fit_id`` of its events on the ``"asgd"`` topic, the start of its
        tasks' keys, and the ``fit_id`` column of its rows in ``history_``.
    t_ : float
        Number of weight updates performed over all workers, plus one.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.
    history_ : pandas.DataFrame
        One row per worker and epoch (see :class:`ASGDClassifier`).
    communication_history_ : pandas.DataFrame
        Send interval and message size per worker over time (see
        :class:`ASGDClassifier`).

    See Also
    --------
    ASGDClassifier : The classification counterpart.
    sklearn.linear_model.SGDRegressor : Single-machine SGD.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from dask_asgd import ASGDRegressor
    >>> X, y = make_regression(1000, 10, random_state=0)
    >>> reg = ASGDRegressor(random_state=0).fit(X, y)  # doctest: +SKIP
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseSGDLinear._parameter_constraints,
        "loss": [StrOptions(_REGRESSION_LOSSES)],
    }
    _target_kind = "real"
    _score_kind = "r2"

    def __init__(
        self,
        loss: str = "squared_error",
        *,
        penalty: str | None = "l2",
        alpha: float = 0.0001,
        l1_ratio: float | None = 0.15,
        fit_intercept: bool = True,
        max_iter: int = 1000,
        tol: float | None = 1e-3,
        shuffle: bool = True,
        verbose: int = 0,
        epsilon: float = 0.1,
        random_state: Any = None,
        learning_rate: str = "invscaling",
        eta0: float = 0.01,
        power_t: float = 0.25,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        warm_start: bool = False,
        average: bool | int = False,
        batch_size: int = 1,
        n_workers: int | None = None,
        min_rows_per_worker: int = 1024,
        communication: str = "adaptive",
        send_interval: int = 4096,
        message_size: float = 1.0,
        parzen_window: bool = True,
        mixing_weight: float | None = None,
    ) -> None:
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.average = average
        self.batch_size = batch_size
        self.n_workers = n_workers
        self.min_rows_per_worker = min_rows_per_worker
        self.communication = communication
        self.send_interval = send_interval
        self.message_size = message_size
        self.parzen_window = parzen_window
        self.mixing_weight = mixing_weight

    def _targets(
        self, data: TrainingData, classes: Any, partial: bool
    ) -> LinearTargets:
        return LinearTargets.regression()

    def _publish_coefficients(self) -> None:
        super()._publish_coefficients()
        self.coef_ = self.coef_.reshape(-1)
        self.intercept_ = np.atleast_1d(self.intercept_.reshape(-1))

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> ASGDRegressor:
        """Perform one epoch of ASGD on the given samples.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame} of shape \
                (n_samples, n_features)
            Training rows.
        y : {array-like, dask array or Series} of shape (n_samples,)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples.

        Returns
        -------
        self : ASGDRegressor
        """
        return self._fit_transactionally(True, X, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: Any,
        y: Any,
        coef_init: Any = None,
        intercept_init: Any = None,
        sample_weight: Any = None,
    ) -> ASGDRegressor:
        """Fit the linear model with asynchronous parallel SGD on Dask.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array or DataFrame} of shape \
                (n_samples, n_features)
            Training rows. Dask input stays on the workers that hold it.
        y : {array-like, dask array or Series} of shape (n_samples,)
            Target values.
        coef_init : ndarray of shape (n_features,), default=None
            Initial weights.
        intercept_init : ndarray of shape (1,), default=None
            Initial intercept.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples.

        Returns
        -------
        self : ASGDRegressor
        """
        return self._fit_transactionally(
            False,
            X,
            y,
            sample_weight,
            coef_init=coef_init,
            intercept_init=intercept_init,
        )

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the linear model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to predict.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if is_dask_collection(X):
            self._check_dask_features(X)
            return map_rows(self._predict_block, X, None, self.coef_.dtype)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        return self._predict_block(X)

    def _predict_block(self, block: Any) -> np.ndarray:
        return np.asarray(block @ self.coef_).reshape(-1) + self.intercept_[0]
