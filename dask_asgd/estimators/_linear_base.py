"""What the linear estimators share: :class:`BaseSGDLinear`.

Penalties, learning-rate schedules and losses as the kernel takes them, the
starting point of a fit (warm start, ``partial_fit``, ``coef_init``), early
stopping's held-out rows, and the one method that trains a linear model on the
cluster. Follows scikit-learn's ``BaseSGD``.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._base import SparseCoefMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names

from ..kernels import (
    LOSS_CODES,
    PENALTY_CODES,
    SCHEDULE_ADAPTIVE,
    SCHEDULE_CODES,
    StepSettings,
    optimal_init,
)
from ..learners import LinearLearner
from ..learners import LinearState as ModelState
from ._base import COMMUNICATION_PARAMETERS_DOC, BaseASGD
from ._input import Holdout, TargetKind, TrainingData
from ._warnings import warn_at_caller

if TYPE_CHECKING:
    from .. import _config
    from ..runtime import DaskRows, FitOutcome, InMemoryRows
    from ._targets import LinearTargets

# scikit-learn damps intercept updates on sparse data, whose rows touch few
# weights but always the intercept.
SPARSE_INTERCEPT_DECAY = 0.01

#: numpydoc of the parameters of both linear estimators, after ``loss``.
LINEAR_PARAMETERS_DOC = (
    """
    penalty : {'l2', 'l1', 'elasticnet', None}, default='l2'
        Regularisation term, as in scikit-learn's SGD estimators.
    alpha : float, default=0.0001
        Regularisation strength; also sets the ``'optimal'`` learning rate.
    l1_ratio : float in [0, 1], default=0.15
        Elastic-net mixing parameter; used only with ``penalty='elasticnet'``.
    fit_intercept : bool, default=True
        Whether to fit an intercept.
    max_iter : int, default=1000
        Maximum number of epochs: passes over the whole data set, every worker
        passing once over the rows it holds.
    tol : float or None, default=1e-3
        Training stops when the objective (loss plus penalty) per training
        sample, summed over all workers, has not improved by ``tol`` for
        ``n_iter_no_change`` epochs (or the validation score by ``tol``, with
        ``early_stopping``), as in scikit-learn. None disables.
    shuffle : bool, default=True
        Assign rows to workers at random and visit them in a new random order
        each epoch (random order of blocks of consecutive rows).
    verbose : int, default=0
        With ``verbose >= 1``, print one line per epoch on stdout (the mean
        loss over all workers), as scikit-learn does, while the fit runs
        (also logged at INFO level), and for a fit of more than one epoch
        show a live progress bar (``tqdm``; a widget in Jupyter) with the
        epoch, the mean loss and the messages per second between workers.
        ``TQDM_DISABLE=1`` in the environment hides the bar.
    epsilon : float, default=0.1
        Epsilon of the ``huber`` and epsilon-insensitive losses.
    random_state : int, RandomState instance or None, default=None
        Seeds the assignment of rows to workers and every worker's shuffling.
    learning_rate : {'constant', 'optimal', 'invscaling', 'adaptive'}
        Learning-rate schedule, with scikit-learn's meanings. Each worker's
        schedule counts the samples that worker has trained on.
    eta0 : float, default=0.01
        Initial learning rate of the ``constant``, ``invscaling`` and
        ``adaptive`` schedules.
    power_t : float
        Exponent of the ``invscaling`` schedule. Negative values are
        deprecated, as in scikit-learn (a ``FutureWarning``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and stop when the
        validation score stops improving. Each worker scores its own model on
        the held-out rows it holds; the scores are summed over workers.
    validation_fraction : float in (0, 1), default=0.1
        Share of rows held out with ``early_stopping``.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping (or, with the ``adaptive``
        schedule, before dividing the learning rate by 5).
    warm_start : bool, default=False
        Start ``fit`` from the previous solution.
    average : bool or int, default=False
        Average the weights over samples (averaged SGD); an int starts the
        average after that many samples.
    batch_size : int, default=1
        Minibatch size ``b``: predictions of ``b`` consecutive samples are
        computed with the same weights, then the ``b`` per-sample updates are
        applied in order. ``b=1`` is scikit-learn's plain SGD. It stays small
        because delayed gradients lose accuracy beyond a few dozen samples;
        how often workers exchange states is set apart, by ``send_interval``.
"""
    + COMMUNICATION_PARAMETERS_DOC
)


class BaseSGDLinear(SparseCoefMixin, BaseASGD):
    """Base class of :class:`ASGDClassifier` and :class:`ASGDRegressor`.

    Subclasses set ``_target_kind`` and ``_score_kind`` and implement
    ``_targets``, which turns the checked data into the model's targets.
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseASGD._parameter_constraints,
        "penalty": [StrOptions({"l2", "l1", "elasticnet"}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both"), None],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
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
    }

    #: What ``y`` holds, for :meth:`TrainingData.check`.
    _target_kind: ClassVar[TargetKind] = "classes"
    #: How the workers score held-out rows: "accuracy" or "r2".
    _score_kind: ClassVar[str] = "accuracy"

    def _targets(
        self, data: TrainingData, classes: Any, partial: bool
    ) -> LinearTargets:
        raise NotImplementedError

    def _check_fit_parameters(self, config: _config.Config, partial: bool) -> None:
        if self.early_stopping and partial:
            raise ValueError("early_stopping should be False with partial_fit")
        if self.learning_rate == "optimal" and self.alpha == 0:
            raise ValueError(
                "alpha must be > 0 since learning_rate is 'optimal'. alpha is used "
                "to compute the optimal learning rate."
            )
        if self.penalty == "elasticnet" and self.l1_ratio is None:
            raise ValueError("l1_ratio must be set when penalty is 'elasticnet'")
        super()._check_fit_parameters(config, partial)

    # ----------------------------------------------------------------- fitting

    def _fit(
        self,
        config: _config.Config,
        partial: bool,
        X: Any,
        y: Any,
        sample_weight: Any,
        *,
        classes: Any = None,
        coef_init: Any = None,
        intercept_init: Any = None,
    ) -> BaseSGDLinear:
        """One ``fit`` (``max_iter`` epochs) or ``partial_fit`` (one epoch)."""
        max_iter = 1 if partial else int(self.max_iter)
        # partial_fit after a fit or partial_fit continues that model.
        continuing = partial and hasattr(self, "_standard")
        if not partial:
            coef_init, intercept_init = self._warm_start_init(coef_init, intercept_init)
        data = TrainingData.check(
            self,
            X,
            y,
            sample_weight,
            reset=not continuing,
            target=self._target_kind,
            # Early stopping says more about zero weights than the generic
            # check would (see Holdout.split), as in scikit-learn.
            allow_all_zero_weights=bool(self.early_stopping)
            and self._target_kind == "classes",
        )
        targets = self._targets(data, classes, partial)
        state, t_start = self._starting_point(
            targets.n_outputs, data, coef_init, intercept_init, continuing
        )
        rows = data.rows(targets.encoder, self._holdout(partial))
        random_state = check_random_state(self.random_state)
        order_seed = self._sklearn_order_seed(data, targets.n_outputs, random_state)
        rng = self._driver_rng(random_state)
        learner = self._learner(rows, state, t_start, targets, max_iter)
        learner.order_seed = order_seed
        outcome = self._train_on_cluster(rows, learner, max_iter, rng, config)
        self._set_fitted(outcome, t_start, partial)
        return self

    def _sklearn_order_seed(
        self, data: TrainingData, n_outputs: int, random_state: np.random.RandomState
    ) -> int | None:
        """The seed of scikit-learn's shuffling when this fit can follow it.

        A fit on one worker (in-memory rows, and ``n_workers=1`` or fewer than
        ``2 * min_rows_per_worker`` rows) with one output visits the rows in
        scikit-learn's order, drawn from ``random_state`` as scikit-learn
        draws it; so it takes scikit-learn's path on the same rows. Several
        outputs cannot: scikit-learn shuffles each one-vs-rest problem with
        its own seed, where every output here trains in one pass.
        """
        one_worker = self.n_workers == 1 or data.n_samples < 2 * int(
            self.min_rows_per_worker
        )
        if not (self.shuffle and one_worker and not data.is_dask and n_outputs == 1):
            return None
        max_int = np.iinfo(np.int32).max
        if self._target_kind == "classes":
            # make_dataset's seed first, then _plain_sgd's.
            random_state.randint(1, max_int)
            return int(random_state.randint(max_int))
        # SGDRegressor draws _plain_sgd's seed first.
        seed = int(random_state.randint(0, max_int))
        random_state.randint(1, max_int)
        return seed

    def _learner(
        self,
        rows: InMemoryRows | DaskRows,
        state: ModelState,
        t_start: float,
        targets: LinearTargets,
        max_iter: int,
    ) -> LinearLearner:
        """The learner of this fit: SGD from ``state`` with these parameters."""
        return LinearLearner(
            settings=self._step_settings(rows.sparse),
            state=state,
            t_start=t_start,
            tol=self.tol if max_iter > 1 else None,
            n_iter_no_change=int(self.n_iter_no_change),
            early_stopping=bool(self.early_stopping and max_iter > 1),
            adaptive=SCHEDULE_CODES[self.learning_rate] == SCHEDULE_ADAPTIVE,
            score=self._score_kind,
            positive_weight=targets.positive_weight.astype(rows.dtype),
            negative_weight=targets.negative_weight.astype(rows.dtype),
        )

    def _set_fitted(self, outcome: FitOutcome, t_start: float, partial: bool) -> None:
        """Set the fitted attributes; after ``fit``, warn as scikit-learn does."""
        self._store_outcome(outcome, partial)
        self._standard = outcome.state
        self.t_ = t_start + outcome.n_samples_trained
        self._publish_coefficients()
        if partial:
            return
        if self.tol is not None and self.n_iter_ == self.max_iter:
            warn_at_caller(
                "Maximum number of iteration reached before convergence. Consider "
                "increasing max_iter to improve the fit.",
                ConvergenceWarning,
            )
        if self.power_t < 0:
            warn_at_caller(
                "Negative values for `power_t` are deprecated in version 1.8 and "
                "will raise an error in 1.10. Use values in the range [0.0, inf) "
                "instead.",
                FutureWarning,
            )

    def _publish_coefficients(self) -> None:
        use_average = self.average and self.average <= self.t_ - 1
        state = self._standard
        coef = state.average_weights if use_average else state.weights
        intercept = state.average_intercepts if use_average else state.intercepts
        self.coef_ = coef.copy()
        self.intercept_ = intercept.copy()

    # ----------------------------------------------------- what a fit starts on

    def _warm_start_init(self, coef_init: Any, intercept_init: Any) -> tuple[Any, Any]:
        """``fit``'s starting weights: given ones, else the previous solution
        with ``warm_start``."""
        warm = self.warm_start and hasattr(self, "_standard")
        if warm and coef_init is None and intercept_init is None:
            return self._standard.weights, self._standard.intercepts
        return coef_init, intercept_init

    def _holdout(self, partial: bool) -> Holdout | None:
        """Rows to hold out for early stopping (``fit`` only, even for one
        epoch, as scikit-learn)."""
        if not self.early_stopping or partial:
            return None
        return Holdout(
            self.validation_fraction,
            self.random_state,
            stratify=self._target_kind == "classes",
        )

    def _starting_point(
        self,
        n_outputs: int,
        data: TrainingData,
        coef_init: Any,
        intercept_init: Any,
        continuing: bool,
    ) -> tuple[ModelState, float]:
        """The state and sample count (``t_``) a fit or partial_fit starts from."""
        previous = getattr(self, "_standard", None) if continuing else None
        state = self._initial_state(
            n_outputs, data.n_features, data.dtype, coef_init, intercept_init, previous
        )
        t_start = self.t_ if continuing and hasattr(self, "t_") else 1.0
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

    # ------------------------------------------------------- kernel settings

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
        """The hyperparameters of one kernel pass."""
        loss_code = LOSS_CODES[self.loss][0]
        loss_parameter = self._loss_parameter()
        return StepSettings(
            loss=loss_code,
            loss_parameter=loss_parameter,
            penalty=PENALTY_CODES[self.penalty],
            alpha=float(self.alpha),
            l1_ratio=self._l1_ratio(),
            schedule=SCHEDULE_CODES[self.learning_rate],
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

    # ---------------------------------------------------------------- predicting

    def _check_dask_features(self, X: Any) -> None:
        """Check Dask ``X``'s columns as scikit-learn checks a pandas frame's.

        A Dask DataFrame's empty pandas ``_meta`` carries its column names:
        reordered or renamed columns raise, and names missing on one side
        warn, in scikit-learn's words.
        """
        import dask.dataframe as dd

        if isinstance(X, dd.DataFrame):
            _check_feature_names(self, X._meta, reset=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
