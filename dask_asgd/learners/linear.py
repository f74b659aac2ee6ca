"""Linear models (SGD classifiers and regressors): their state and learner.

The exchanged matrix is ``[weights | intercepts]``, one row per output; rows
are separate one-vs-rest problems, so the Parzen test takes each row on its
own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..kernels import StepSettings, sgd_pass, sklearn_shuffle
from ._protocol import Partition, weighted_sum
from ._stopping import Decision, StoppingRule


@dataclass
class LinearState:
    """The arrays a linear model trains and the workers average."""

    #: Apply the Parzen-window test to each row of the exchanged matrix.
    parzen_per_row: ClassVar[bool] = True

    weights: np.ndarray
    intercepts: np.ndarray
    average_weights: np.ndarray
    average_intercepts: np.ndarray

    @classmethod
    def zeros(cls, n_outputs: int, n_features: int, dtype: Any) -> LinearState:
        """A state of zeros."""
        return cls(
            np.zeros((n_outputs, n_features), dtype=dtype),
            np.zeros(n_outputs, dtype=dtype),
            np.zeros((n_outputs, n_features), dtype=dtype),
            np.zeros(n_outputs, dtype=dtype),
        )

    def copy(self) -> LinearState:
        """A deep copy."""
        return LinearState(
            self.weights.copy(),
            self.intercepts.copy(),
            self.average_weights.copy(),
            self.average_intercepts.copy(),
        )

    def without_averages(self) -> LinearState:
        """This state with empty running-average arrays, to send back cheaply.

        Without averaging the running averages never change from the start
        state, so a worker need not return them (they are as big as the model).
        """
        dtype = self.average_weights.dtype
        # Fresh empty arrays, not views: a view would keep the full averages
        # alive for as long as the result is.
        return LinearState(
            self.weights,
            self.intercepts,
            np.empty((self.weights.shape[0], 0), dtype=dtype),
            np.empty(0, dtype=dtype),
        )

    def has_averages(self) -> bool:
        """Whether the running-average arrays are present (not stripped)."""
        return self.average_weights.shape == self.weights.shape

    def is_finite(self) -> bool:
        """Whether every number of the state is finite."""
        return bool(
            np.isfinite(self.weights).all() and np.isfinite(self.intercepts).all()
        )

    def exchanged(self) -> np.ndarray:
        """The matrix ``[weights | intercepts]`` that workers exchange (a copy)."""
        return np.concatenate([self.weights, self.intercepts[:, np.newaxis]], axis=1)

    def set_exchanged(self, matrix: np.ndarray) -> None:
        """Write an exchanged matrix back into the weights and intercepts."""
        self.weights[...] = matrix[:, :-1]
        self.intercepts[...] = matrix[:, -1]

    @property
    def exchanged_shape(self) -> tuple[int, int]:
        """Shape of :meth:`exchanged`."""
        return self.weights.shape[0], self.weights.shape[1] + 1

    @property
    def exchanged_nbytes(self) -> int:
        """Bytes of :meth:`exchanged`."""
        return int(self.weights.nbytes + self.intercepts.nbytes)

    @classmethod
    def average(
        cls, states: Sequence[LinearState], shares: np.ndarray, start: LinearState
    ) -> LinearState:
        """The weighted mean of the workers' final states.

        Parameters
        ----------
        states : sequence of LinearState
            One per worker.
        shares : ndarray of shape (len(states),)
            Weights summing to 1.
        start : LinearState
            The state the fit started from: workers that did not average
            return no running averages, which then stay as in ``start``.
        """
        if not all(state.has_averages() for state in states):
            return cls(
                weighted_sum([s.weights for s in states], shares),
                weighted_sum([s.intercepts for s in states], shares),
                start.average_weights.copy(),
                start.average_intercepts.copy(),
            )
        return cls(
            *(
                weighted_sum([getattr(s, f.name) for s in states], shares)
                for f in dataclasses.fields(cls)
            )
        )


@dataclass(kw_only=True)
class LinearLearner:
    """SGD for a linear model: what a worker needs to train it.

    Parameters
    ----------
    settings : StepSettings
        The kernel's hyperparameters.
    state : LinearState
        Where training starts.
    t_start : float
        Sample number (1-based) the learning-rate schedule starts at; each
        worker's share of it after :meth:`for_worker`.
    tol : float or None
        Stopping tolerance (scikit-learn's); None disables the rule.
    n_iter_no_change : int
        Epochs without improvement before acting.
    early_stopping : bool
        Watch the validation score of the held-out rows instead of the loss.
    adaptive : bool
        The ``adaptive`` schedule: divide the learning rate by 5 instead of
        stopping.
    score : {"accuracy", "r2"}
        The validation score.
    positive_weight, negative_weight : ndarray of shape (n_outputs,)
        Class weights of positive and negative targets.
    order_seed : int or None, default=None
        Visit the rows in scikit-learn's order (see
        :func:`~dask_asgd.kernels.sklearn_shuffle`) with this seed, on one
        worker that holds them in their original order; the runtime must not
        shuffle them (see :attr:`orders_rows`). None leaves the order to the
        runtime.
    """

    settings: StepSettings
    state: LinearState
    t_start: float
    tol: float | None
    n_iter_no_change: int
    early_stopping: bool
    adaptive: bool
    score: str
    positive_weight: np.ndarray
    negative_weight: np.ndarray
    order_seed: int | None = None

    @property
    def orders_rows(self) -> bool:
        """Whether the learner visits the rows in its own (scikit-learn's) order."""
        return self.order_seed is not None

    @property
    def batch_size(self) -> int:
        """Rows per minibatch of the kernel."""
        return int(self.settings.batch_size)

    def for_worker(self, share: float) -> LinearLearner:
        """Start this worker's schedule at its share of the samples seen so far."""
        return dataclasses.replace(self, t_start=1.0 + (self.t_start - 1.0) * share)

    def start(self, partitions: list[Partition]) -> LinearRun:
        """Begin training on one worker's partitions."""
        return LinearRun(self, partitions)

    def average(self, states: Sequence[LinearState], shares: np.ndarray) -> LinearState:
        """The workers' states averaged (see :meth:`LinearState.average`)."""
        return LinearState.average(states, shares, self.state)


class LinearRun:
    """One worker's SGD on its partitions (see :class:`LinearLearner`)."""

    def __init__(self, learner: LinearLearner, partitions: list[Partition]) -> None:
        self.learner = learner
        self.partitions = partitions
        self.state = learner.state.copy()
        self.settings = learner.settings
        n_outputs = self.state.weights.shape[0]
        self.cumulative_l1 = np.zeros_like(self.state.weights)
        self.l1_total = 0.0
        self.t = float(learner.t_start)
        self.training_rows = [
            np.flatnonzero(~p.validation)
            if p.validation is not None
            else np.arange(p.X.shape[0], dtype=np.int64)
            for p in partitions
        ]
        self.n_train = int(sum(rows.shape[0] for rows in self.training_rows))
        # scikit-learn shuffles all rows, held-out ones included, and skips
        # those: the training rows keep the order they have in the shuffle.
        self.indexes = [np.arange(p.X.shape[0], dtype=np.int64) for p in partitions]
        self._next_order()
        # scikit-learn stops each one-vs-rest problem on its own loss; the
        # validation score and the adaptive schedule's shared learning rate are
        # about the whole model, so those use one rule for all outputs.
        self.per_output = (
            not learner.early_stopping and not learner.adaptive and n_outputs > 1
        )
        self.rules = [
            StoppingRule(
                learner.tol,
                learner.n_iter_no_change,
                learner.early_stopping,
                learner.adaptive,
            )
            for _ in range(n_outputs if self.per_output else 1)
        ]
        self.active = np.ones(n_outputs, dtype=np.bool_)
        self.output_losses = np.zeros(n_outputs)
        # scikit-learn stops on the objective: the loss plus the penalty.
        self.output_penalties = np.zeros(n_outputs)
        # Tracking the penalty adds work to every update (a tenth of a log-loss
        # pass on 100 dense features); only the rule on the training
        # objective reads it, which needs a ``tol``.
        self.tracks_penalty = learner.tol is not None and not learner.early_stopping

    def _next_order(self) -> None:
        """Shuffle the rows for the next epoch as scikit-learn would."""
        if self.learner.order_seed is None:
            return
        for position, (index, partition) in enumerate(
            zip(self.indexes, self.partitions, strict=True)
        ):
            sklearn_shuffle(index, self.learner.order_seed)
            held_out = partition.validation
            self.training_rows[position] = (
                index.copy() if held_out is None else index[~held_out[index]]
            )

    def train(self, partition: Partition, rows: np.ndarray) -> float:
        """Run the SGD kernel over ``rows``; return the sum of their losses."""
        state = self.state
        self.t, loss, self.l1_total = sgd_pass(
            state.weights,
            state.intercepts,
            state.average_weights,
            state.average_intercepts,
            self.cumulative_l1,
            partition.X,
            partition.targets,
            partition.sample_weight,
            self.learner.positive_weight,
            self.learner.negative_weight,
            rows,
            self.settings,
            self.t,
            self.l1_total,
            self.active,
            self.output_losses,
            self.output_penalties if self.tracks_penalty else None,
        )
        return loss

    def epoch_values(self) -> tuple[dict[str, float], dict[str, Any]]:
        """The epoch's losses (per output) and validation statistics."""
        losses = self.output_losses
        objectives = losses + self.output_penalties
        n_outputs = losses.shape[0]
        values = {
            "loss": float(losses.sum()),
            "objective": float(objectives.sum()),
            "n_train": float(self.n_train),
            # What ``loss`` sums over: its mean is the history's loss.
            "loss_weight": float(self.n_train * int(self.active.sum())),
        }
        values.update(
            {f"objective_{k}": float(objectives[k]) for k in range(n_outputs)}
        )
        if self.learner.early_stopping:
            values.update(
                validation_values(self.state, self.partitions, self.learner.score)
            )
        record = {
            "local_loss": values["loss"] / max(self.n_train * n_outputs, 1),
            "samples": self.n_train,
            "eta": self.settings.eta0,
        }
        self.output_losses = np.zeros(n_outputs)
        self.output_penalties = np.zeros(n_outputs)
        return values, record

    def after_epoch(self, totals: dict[str, float]) -> tuple[dict[str, Any], bool]:
        """Mean loss over all workers; apply the shared stopping rule."""
        n_active = int(self.active.sum())
        record: dict[str, Any] = {
            "loss": totals["loss"] / max(totals["n_train"] * n_active, 1)
        }
        if self.learner.early_stopping:
            record["validation_score"] = validation_score(totals, self.learner.score)
        if self.per_output:
            for k in np.flatnonzero(self.active):
                decision = self.rules[k].update(
                    totals[f"objective_{k}"], totals["n_train"], self.settings.eta0
                )
                if decision is Decision.STOP:
                    self.active[k] = False
            self._next_order()
            return record, not self.active.any()
        monitored = (
            record["validation_score"]
            if self.learner.early_stopping
            else totals["objective"]
        )
        decision = self.rules[0].update(
            monitored, totals["n_train"], self.settings.eta0
        )
        if decision is Decision.REDUCE_LEARNING_RATE:
            self.settings = self.settings._replace(eta0=self.settings.eta0 / 5.0)
        self._next_order()
        return record, decision is Decision.STOP

    def result(self) -> tuple[LinearState, int]:
        """The trained state (without unused averages) and samples trained."""
        state = self.state
        if self.settings.average_start <= 0:
            state = state.without_averages()
        return state, round(self.t - self.learner.t_start)


def validation_values(
    state: LinearState, partitions: list[Partition], score: str
) -> dict[str, float]:
    """Sufficient statistics of the validation score of the held-out rows.

    Sums, so that the coordinator can add them up over workers without
    seeing any row.
    """
    correct = weight = wy = wyy = sse = 0.0
    for part in partitions:
        if part.validation is None or not part.validation.any():
            continue
        X = part.X[part.validation]
        y = part.targets[part.validation]
        w = part.sample_weight[part.validation].astype(np.float64)
        decision = np.asarray(X @ state.weights.T) + state.intercepts
        weight += w.sum()
        if score == "accuracy":
            if decision.shape[1] == 1:
                hit = (decision[:, 0] > 0) == (y > 0)
            else:
                hit = decision.argmax(axis=1) == y.astype(np.int64)
            correct += w[hit].sum()
        else:
            prediction = decision[:, 0]
            wy += (w * y).sum()
            wyy += (w * y * y).sum()
            sse += (w * (y - prediction) ** 2).sum()
    if score == "accuracy":
        return {"val_weight": weight, "val_correct": correct}
    return {"val_weight": weight, "val_wy": wy, "val_wyy": wyy, "val_sse": sse}


def validation_score(totals: dict[str, float], score: str) -> float:
    """Accuracy or R^2 from summed sufficient statistics."""
    weight = totals.get("val_weight", 0.0)
    if weight <= 0:
        return -math.inf
    if score == "accuracy":
        return totals["val_correct"] / weight
    total_sum_of_squares = totals["val_wyy"] - totals["val_wy"] ** 2 / weight
    if total_sum_of_squares <= 0:
        return 0.0 if totals["val_sse"] > 0 else 1.0
    return 1.0 - totals["val_sse"] / total_sum_of_squares
