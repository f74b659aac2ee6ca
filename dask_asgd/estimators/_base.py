"""What every ASGD estimator shares: :class:`BaseASGD`.

The exchange parameters, their documentation and constraints, where a fit
trains (``n_workers``, ``min_rows_per_worker``), transactional fits that read
the ``asgd.*`` settings once, the driver's random generator, the fitted
attributes every fit records, and what a verbose fit shows. Follows
scikit-learn's conventions: ``__init__`` only stores its arguments, parameters
are declared in ``_parameter_constraints`` and checked by ``_fit_context``,
data is checked by ``validate_data`` (see :mod:`._input`).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .. import _config
from ..runtime import ExchangeOptions, fit_on_cluster
from ._driver_settings import DriverSettingsMixin
from ._progress import EpochProgress

if TYPE_CHECKING:
    from ..learners import Learner
    from ..runtime import DaskRows, FitOutcome, InMemoryRows


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
    mixing_weight : float in (0, 1) or None, default=None
        The weight a merged state gets against the worker's own (with
        communication). None is the paper's rule: the mean of the worker's
        state and the states it merges. A float ``m`` keeps ``1 - m`` of the
        worker's state for one merged state, ``(1 - m) ** k`` for ``k``: the
        gossip step of decentralized SGD with mixing weights, or, for a small
        ``m``, the worker's side of elastic averaging (EASGD's moving rate).
        Combines with ``parzen_window``: the test decides which states are
        merged, the weight how far. See "Choosing the merge rule" in the
        user guide.
"""

#: Parameter constraints matching :data:`COMMUNICATION_PARAMETERS_DOC`.
COMMUNICATION_CONSTRAINTS: dict[str, list[Any]] = {
    "n_workers": [Interval(Integral, 1, None, closed="left"), None],
    "min_rows_per_worker": [Interval(Integral, 1, None, closed="left")],
    "communication": [StrOptions({"adaptive", "fixed", "off"})],
    "send_interval": [Interval(Integral, 1, None, closed="left")],
    "message_size": [Interval(Real, 0, 1, closed="right")],
    "parzen_window": ["boolean"],
    "mixing_weight": [Interval(Real, 0, 1, closed="neither"), None],
}


class BaseASGD(DriverSettingsMixin, BaseEstimator):
    """Base class of every ASGD estimator.

    Subclasses implement ``_fit(config, partial, *args, **kwargs)``, which
    checks the data, trains on the cluster and sets the fitted attributes;
    ``fit`` and ``partial_fit`` call it through :meth:`_fit_transactionally`.
    """

    _parameter_constraints: ClassVar[dict] = {**COMMUNICATION_CONSTRAINTS}

    #: Words of the verbose epoch line: what the loss and the rows are.
    _epoch_loss_name: ClassVar[str] = "mean loss"
    _epoch_rows_name: ClassVar[str] = "samples"

    def _fit(
        self, config: _config.Config, partial: bool, *args: Any, **kwargs: Any
    ) -> BaseASGD:
        raise NotImplementedError

    def _fit_transactionally(self, partial: bool, *args: Any, **kwargs: Any) -> Any:
        """Run ``self._fit``; on any error put the estimator back as it was.

        The ``asgd.*`` settings are read here, once, so a fit sees one
        consistent configuration from its checks to its last epoch.
        """
        config = _config.load()
        self._check_fit_parameters(config, partial)
        saved = dict(self.__dict__)
        try:
            return self._fit(config, partial, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _check_fit_parameters(self, config: _config.Config, partial: bool) -> None:
        """Raise ValueError for parameters that conflict with each other or the
        settings (``_parameter_constraints`` checks them one by one)."""
        low = config.balancing.min_send_interval
        high = config.balancing.max_send_interval
        if self.communication == "adaptive" and not low <= self.send_interval <= high:
            raise ValueError(
                f"send_interval={self.send_interval} is outside the balancer's "
                f"bounds [{low}, {high}] (asgd.balancing.min-send-interval and "
                "max-send-interval); change one or the other."
            )

    def _driver_rng(
        self, random_state: np.random.RandomState | None = None
    ) -> np.random.Generator:
        """The generator of the fit's driver-side draws (placement, seeds).

        Drawn from ``random_state`` (by default a fresh one from the
        ``random_state`` parameter), after any draw the fit made before, so
        that a seed fixes the whole fit.
        """
        if random_state is None:
            random_state = check_random_state(self.random_state)
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))

    def _train_on_cluster(
        self,
        rows: InMemoryRows | DaskRows,
        learner: Learner,
        max_iter: int,
        rng: np.random.Generator,
        config: _config.Config,
    ) -> FitOutcome:
        """Train ``learner`` on ``rows``: the one call into the runtime.

        Uses the estimator's ``n_workers``, ``min_rows_per_worker``,
        ``shuffle`` and exchange parameters, and shows every epoch when the
        estimator is ``verbose`` (see :mod:`._progress`). A learner that
        visits the rows in its own order gets them unshuffled.
        """
        with self._progress(max_iter) as progress:
            return fit_on_cluster(
                rows,
                learner,
                max_iter=int(max_iter),
                shuffle=bool(self.shuffle)
                and not getattr(learner, "orders_rows", False),
                # One epoch (partial_fit) has no stopping decision to agree on.
                synchronise=max_iter > 1,
                exchange=self._exchange_options(),
                n_workers=self.n_workers,
                min_rows_per_worker=int(self.min_rows_per_worker),
                rng=rng,
                config=config,
                progress=progress if self.verbose else None,
                label=type(self).__name__,
                epoch_means=self._epoch_means,
            )

    def _exchange_options(self) -> ExchangeOptions:
        """The exchange parameters as the workers receive them."""
        mixing_weight = self.mixing_weight
        return ExchangeOptions(
            communication=self.communication,
            send_interval=int(self.send_interval),
            message_size=float(self.message_size),
            parzen_window=bool(self.parzen_window),
            mixing_weight=None if mixing_weight is None else float(mixing_weight),
        )

    def _progress(self, max_iter: int) -> EpochProgress:
        """What the fit shows while it runs: with ``verbose``, a line per
        epoch, and a progress bar for a fit of more than one epoch."""
        return EpochProgress(
            type(self).__name__,
            int(max_iter),
            self._epoch_loss_name,
            self._epoch_rows_name,
            bar=bool(self.verbose) and max_iter > 1,
        )

    def _store_outcome(self, outcome: FitOutcome, partial: bool = False) -> None:
        """Set the fitted attributes every estimator records of a fit.

        ``fit`` starts the histories afresh; every ``partial_fit`` appends its
        rows to them, numbered by a ``call`` column (0 for the first), so
        that a loss curve streamed over many calls stays whole.
        """
        self.n_iter_ = outcome.n_iter
        self.fit_id_ = outcome.fit_id
        history = outcome.history.assign(fit_id=outcome.fit_id)
        control = outcome.control
        previous = getattr(self, "history_", None) if partial else None
        call = 0
        if previous is not None and "call" in previous:
            call = int(previous["call"].max()) + 1 if len(previous) else 0
        history = history.assign(call=call)
        control = control.assign(call=call)
        if call:
            history = pd.concat([previous, history], ignore_index=True)
            control = pd.concat(
                [self.communication_history_, control], ignore_index=True
            )
        self.history_ = history
        self.communication_history_ = control

    def _epoch_mean_loss(self, totals: dict[str, float]) -> float:
        return totals["loss"] / max(totals["n_train"], 1.0)

    def _epoch_means(self, totals: dict[str, float]) -> dict[str, float]:
        """An epoch's means from its sums over workers: its event's numbers."""
        return {"loss": self._epoch_mean_loss(totals)}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
