"""Shared machinery of the ASGD estimators.

What every estimator shares (the exchange parameters, their documentation and
constraints, the checks of ``X``, training on the cluster, transactional fits)
and :class:`BaseASGD`, the base of the linear ones. Follows scikit-learn's
``BaseSGD``: ``__init__`` only stores its arguments,
parameters are declared in ``_parameter_constraints`` and checked by
``_fit_context``, data is checked by ``validate_data``. The training itself is
delegated to :mod:`dask_asgd.training`, which runs it on a Dask cluster.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._base import SparseCoefMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, validate_data

from .. import _config
from ..backends import connect
from ..kernels import (
    LOSS_CODES,
    PENALTY_CODES,
    SCHEDULE_ADAPTIVE,
    SCHEDULE_CODES,
    StepSettings,
    optimal_init,
)
from ..training import (
    DaskRows,
    FitOutcome,
    InMemoryRows,
    ModelState,
    WorkerTask,
    cluster_workers,
    run_fit,
    train_worker,
)

logger = logging.getLogger(__name__)

#: numpydoc of the parameters every ASGD estimator shares: where it trains and
#: how its workers exchange states.
COMMUNICATION_PARAMETERS_DOC = """    n_workers : int or None, default=None
        Train on at most this many Dask workers; None uses every worker.
    min_rows_per_worker : int, default=1024
        A fit uses fewer workers rather than give any worker fewer than this
        many rows of in-memory input: small data sets train on one worker,
        where results match scikit-learn's, instead of averaging models fitted
        on a handful of rows each. Dask input stays where its chunks are.
    communication : {'adaptive', 'fixed', 'off'}, default='adaptive'
        How workers exchange states during training. ``'fixed'``: every
        ``send_interval`` samples a worker merges the states that peers sent
        it and pushes its own (``message_size`` of it) to a random peer,
        without waiting. ``'adaptive'``: the same, but the scheduler's
        balancer retunes each worker's send interval and message size from
        its measured signals every ``asgd.balancing.report-period``.
        ``'off'`` is SimuParallelSGD: every worker trains alone and the
        driver averages the states at the end.
    send_interval : int, default=4096
        Samples a worker trains on between two exchanges (the start value
        with ``'adaptive'``).
    message_size : float in (0, 1], default=1.0
        Fraction of the state a worker sends per message (with communication);
        a smaller message carries a block of columns, and the blocks are sent
        in turn.
    parzen_window : bool, default=True
        Merge a received state only if it passes the Parzen-window test
        (with communication), as in the paper. The test rejects states that
        the worker's own steps lead away from. See "When exchange helps" in
        the user guide for when to switch it off.
"""

#: Parameter constraints matching :data:`COMMUNICATION_PARAMETERS_DOC`.
COMMUNICATION_CONSTRAINTS: dict[str, list[Any]] = {
    "n_workers": [Interval(Integral, 1, None, closed="left"), None],
    "min_rows_per_worker": [Interval(Integral, 1, None, closed="left")],
    "communication": [StrOptions({"adaptive", "fixed", "off"})],
    "send_interval": [Interval(Integral, 1, None, closed="left")],
    "message_size": [Interval(Real, 0, 1, closed="right")],
    "parzen_window": ["boolean"],
}

#: How every estimator checks in-memory ``X``: CSR or C-ordered dense rows of
#: float32 or float64, as the kernels take them.
X_CHECKS: dict[str, Any] = {
    "accept_sparse": "csr",
    "dtype": [np.float64, np.float32],
    "order": "C",
    "accept_large_sparse": True,
}

# scikit-learn damps intercept updates on sparse data, whose rows touch few
# weights but always the intercept.
SPARSE_INTERCEPT_DECAY = 0.01


class BaseASGD(SparseCoefMixin, BaseEstimator):
    """Base class of :class:`ASGDClassifier` and :class:`ASGDRegressor`."""

    _parameter_constraints: ClassVar[dict] = {
        "penalty": [StrOptions({"l2", "l1", "elasticnet"}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both"), None],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, None, None, closed="neither"), None],
        "shuffle": ["boolean"],
        "verbose": ["verbose"],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "learning_rate": [StrOptions(set(SCHEDULE_CODES))],
        "eta0": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, None, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "average": [Interval(Integral, 0, None, closed="neither"), "boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        **COMMUNICATION_CONSTRAINTS,
    }

    # Subclasses: how targets are encoded for the kernel and scored.
    _score_kind = "accuracy"

    def _more_validate_params(self, for_partial_fit: bool = False) -> None:
        if self.early_stopping and for_partial_fit:
            raise ValueError("early_stopping should be False with partial_fit")
        if self.learning_rate == "optimal" and self.alpha == 0:
            raise ValueError(
                "alpha must be > 0 since learning_rate is 'optimal'. alpha is used "
                "to compute the optimal learning rate."
            )
        if self.penalty == "elasticnet" and self.l1_ratio is None:
            raise ValueError("l1_ratio must be set when penalty is 'elasticnet'")
        check_send_interval(self.communication, self.send_interval)

    # ------------------------------------------------------------------ helpers

    def _l1_ratio(self) -> float:
        if self.penalty == "l1":
            return 1.0
        if self.penalty == "elasticnet":
            return float(self.l1_ratio)
        return 0.0

    def _loss_parameter(self) -> float:
        if self.loss in ("hinge", "squared_hinge"):
            return 1.0
        if self.loss == "perceptron":
            return 0.0
        return float(self.epsilon)

    def _step_settings(self, sparse: bool) -> StepSettings:
        loss_code = LOSS_CODES[self.loss][0]
        loss_parameter = self._loss_parameter()
        schedule = SCHEDULE_CODES[self.learning_rate]
        return StepSettings(
            loss=loss_code,
            loss_parameter=loss_parameter,
            penalty=PENALTY_CODES[self.penalty],
            alpha=float(self.alpha),
            l1_ratio=self._l1_ratio(),
            schedule=schedule,
            eta0=float(self.eta0),
            power_t=float(self.power_t),
            optimal_init=(
                optimal_init(loss_code, loss_parameter, float(self.alpha))
                if self.learning_rate == "optimal"
                else 0.0
            ),
            fit_intercept=bool(self.fit_intercept),
            intercept_decay=SPARSE_INTERCEPT_DECAY if sparse else 1.0,
            average_start=int(self.average),
            batch_size=int(self.batch_size),
        )

    def _validate_X_y(
        self, X: Any, y: Any, reset: bool, **options: Any
    ) -> tuple[Any, Any]:
        return validate_data(self, X, y, reset=reset, **X_CHECKS, **options)

    def _check_dask_features(self, X: Any) -> None:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )

    def _starting_point(
        self,
        n_outputs: int,
        n_features: int,
        dtype: Any,
        coef_init: Any,
        intercept_init: Any,
        continue_from_current: bool,
    ) -> tuple[ModelState, float]:
        """The state and sample count (``t_``) a fit or partial_fit starts from."""
        previous = getattr(self, "_standard", None) if continue_from_current else None
        state = self._initial_state(
            n_outputs, n_features, dtype, coef_init, intercept_init, previous
        )
        t_start = self.t_ if continue_from_current and hasattr(self, "t_") else 1.0
        return state, t_start

    def _initial_state(
        self,
        n_outputs: int,
        n_features: int,
        dtype: Any,
        coef_init: Any,
        intercept_init: Any,
        previous: ModelState | None,
    ) -> ModelState:
        """The state training starts from: previous one, given one, or zeros."""
        if previous is not None and coef_init is None and intercept_init is None:
            if previous.weights.shape != (n_outputs, n_features):
                raise ValueError(
                    f"Number of features {n_features} does not match previous "
                    f"data {previous.weights.shape[1]}."
                )
            return ModelState(
                *(
                    np.asarray(a, dtype=dtype)
                    for a in (
                        previous.weights,
                        previous.intercepts,
                        previous.average_weights,
                        previous.average_intercepts,
                    )
                )
            )
        state = ModelState.zeros(n_outputs, n_features, dtype)
        if coef_init is not None:
            coef_init = np.asarray(coef_init, dtype=dtype).reshape(n_outputs, -1)
            if coef_init.shape != (n_outputs, n_features):
                raise ValueError("Provided coef_init does not match dataset.")
            state.weights[...] = coef_init
        if intercept_init is not None:
            intercept_init = np.asarray(intercept_init, dtype=dtype).reshape(-1)
            if intercept_init.shape != (n_outputs,):
                raise ValueError("Provided intercept_init does not match dataset.")
            state.intercepts[...] = intercept_init
        return state

    def _make_validation_split(
        self, y: np.ndarray, sample_weight: np.ndarray, stratify: bool
    ) -> np.ndarray | None:
        """Rows held out for early stopping, chosen as scikit-learn chooses them."""
        if not self.early_stopping:
            return None
        from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

        splitter = StratifiedShuffleSplit if stratify else ShuffleSplit
        cv = splitter(
            test_size=self.validation_fraction, random_state=self.random_state
        )
        idx_train, idx_val = next(cv.split(np.zeros((y.shape[0], 1)), y))
        if not np.any(sample_weight[idx_val] > 0):
            raise ValueError(
                "The sample weights for validation set are all zero, consider using a"
                " different random state."
            )
        if idx_train.shape[0] == 0 or idx_val.shape[0] == 0:
            raise ValueError(
                f"Splitting {y.shape[0]} samples into a train set and a validation set "
                f"with validation_fraction={self.validation_fraction} led to an empty "
                "set. Either provide more data, or increase validation_fraction."
            )
        validation = np.zeros(y.shape[0], dtype=bool)
        validation[idx_val] = True
        return validation

    def _fit_transactionally(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        return fit_transactionally(self, method, *args, **kwargs)

    def _train(
        self,
        state: ModelState,
        t_start: float,
        rows: InMemoryRows | DaskRows,
        positive_weight: np.ndarray,
        negative_weight: np.ndarray,
        max_iter: int,
        synchronise: bool,
    ) -> None:
        """Train from ``state`` on the cluster; set the fitted attributes on success.

        Nothing on the estimator changes unless training succeeds, so a failed
        fit leaves a previously fitted model as it was.
        """
        rng = np.random.default_rng(
            check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        )
        early_stopping = bool(self.early_stopping and max_iter > 1)
        task = WorkerTask(
            fit_id="",
            seed=0,
            settings=self._step_settings(rows.sparse),
            state=state,
            t_start=t_start,
            max_iter=int(max_iter),
            tol=self.tol if max_iter > 1 else None,
            n_iter_no_change=int(self.n_iter_no_change),
            early_stopping=early_stopping,
            adaptive=SCHEDULE_CODES[self.learning_rate] == SCHEDULE_ADAPTIVE,
            shuffle=bool(self.shuffle),
            score=self._score_kind,
            positive_weight=positive_weight.astype(rows.dtype),
            negative_weight=negative_weight.astype(rows.dtype),
            synchronise=synchronise,
            **exchange_settings(self),
        )
        outcome = train_on_cluster(
            self, rows, task, t_start, rng, self._log_epoch, train_worker
        )
        self._standard = outcome.state
        self.n_iter_ = outcome.n_iter
        self.t_ = t_start + outcome.n_samples_trained
        self.history_ = outcome.history
        self.communication_history_ = outcome.control
        if self.tol is not None and max_iter > 1 and self.n_iter_ == max_iter:
            warnings.warn(
                "Maximum number of iteration reached before convergence. Consider "
                "increasing max_iter to improve the fit.",
                ConvergenceWarning,
                stacklevel=4,
            )
        self._publish_coefficients()

    def _log_epoch(self, summary: dict[str, Any]) -> None:
        totals = summary["totals"]
        logger.info(
            "-- Epoch %d: mean loss %.6f over %d samples",
            summary["epoch"] + 1,
            totals["loss"] / max(totals["n_train"], 1.0),
            totals["n_train"],
        )

    def _publish_coefficients(self) -> None:
        use_average = self.average and self.average <= self.t_ - 1
        state = self._standard
        coef = state.average_weights if use_average else state.weights
        intercept = state.average_intercepts if use_average else state.intercepts
        self.coef_ = coef.copy()
        self.intercept_ = intercept.copy()

    def _check_sample_weight(self, sample_weight: Any, X: Any) -> np.ndarray:
        return _check_sample_weight(sample_weight, X, dtype=X.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def check_send_interval(communication: str, send_interval: int) -> None:
    """Raise ValueError if the balancer could never keep ``send_interval``."""
    low, high = (
        int(_config.get("balancing.min-send-interval")),
        int(_config.get("balancing.max-send-interval")),
    )
    if communication == "adaptive" and not low <= send_interval <= high:
        raise ValueError(
            f"send_interval={send_interval} is outside the balancer's "
            f"bounds [{low}, {high}] (asgd.balancing.min-send-interval and "
            "max-send-interval); change one or the other."
        )


def fit_transactionally(
    estimator: BaseEstimator, method: Any, *args: Any, **kwargs: Any
) -> Any:
    """Run ``method``; on any error put ``estimator`` back as it was."""
    saved = dict(estimator.__dict__)
    try:
        return method(*args, **kwargs)
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(saved)
        raise


def exchange_settings(estimator: BaseEstimator) -> dict[str, Any]:
    """Task fields every estimator sets alike: its exchange parameters and the
    ``asgd.training`` / ``asgd.balancing`` configuration."""
    return {
        "epoch_timeout": parse_seconds(_config.get("training.epoch-timeout")),
        "chunk_samples": int(_config.get("training.chunk-samples")),
        "communication": estimator.communication,
        "send_interval": int(estimator.send_interval),
        "message_size": float(estimator.message_size),
        "parzen_window": bool(estimator.parzen_window),
        "report_period": parse_seconds(_config.get("balancing.report-period")),
    }


def train_on_cluster(
    estimator: BaseEstimator,
    rows: InMemoryRows | DaskRows,
    task: Any,
    t_start: float,
    rng: np.random.Generator,
    log_epoch: Callable[[dict[str, Any]], None],
    train: Callable[..., Any],
) -> FitOutcome:
    """Place ``rows`` on the cluster's workers and run ``task`` there.

    Uses the current client or the embedded cluster (:func:`connect`), the
    estimator's ``n_workers`` and ``shuffle``, and logs every epoch with
    ``log_epoch`` when the estimator is ``verbose``.
    """
    with connect() as client:
        workers = cluster_workers(client, estimator.n_workers)
        placement = rows.place(
            client,
            workers,
            rng,
            shuffle=bool(estimator.shuffle),
            min_rows_per_worker=int(estimator.min_rows_per_worker),
        )
        return run_fit(
            client,
            placement,
            task,
            t_start,
            rng,
            balancing_limits(),
            progress=log_epoch if estimator.verbose else None,
            train=train,
        )


def balancing_limits() -> dict[str, Any]:
    """The balancer's bounds and budgets from the ``asgd.balancing`` config."""
    return {
        "min_send_interval": int(_config.get("balancing.min-send-interval")),
        "max_send_interval": int(_config.get("balancing.max-send-interval")),
        "min_message_size": float(_config.get("balancing.min-message-size")),
        "cpu_budget": float(_config.get("balancing.cpu-budget")),
        "max_send_time": float(parse_seconds(_config.get("balancing.max-send-time"))),
    }


def parse_seconds(value: Any) -> float:
    from dask.utils import parse_timedelta

    return float(parse_timedelta(value, default="seconds"))
