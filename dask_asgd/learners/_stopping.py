"""scikit-learn's stopping rules, applied to numbers summed over workers.

Every worker runs this same deterministic rule on the same global numbers
(returned by the scheduler's epoch barrier), so all take the same decision in
the same epoch without another round trip.
"""

from __future__ import annotations

import math
from enum import Enum


class Decision(Enum):
    """What to do after an epoch."""

    CONTINUE = "continue"
    REDUCE_LEARNING_RATE = "reduce-learning-rate"
    STOP = "stop"


class StoppingRule:
    """Track improvement of the training loss or validation score.

    Parameters
    ----------
    tol : float or None
        Required improvement; ``None`` disables the rule.
    n_iter_no_change : int
        Epochs without improvement before acting.
    early_stopping : bool
        Watch the validation score (higher is better) instead of the loss.
    adaptive : bool
        With the ``adaptive`` schedule, divide the learning rate by 5 instead
        of stopping, until it falls below 1e-6.
    """

    def __init__(
        self,
        tol: float | None,
        n_iter_no_change: int,
        early_stopping: bool,
        adaptive: bool,
    ) -> None:
        self.tol = -math.inf if tol is None else float(tol)
        self.n_iter_no_change = int(n_iter_no_change)
        self.early_stopping = early_stopping
        self.adaptive = adaptive
        self.best_loss = math.inf
        self.best_score = -math.inf
        self.no_improvement_count = 0

    def update(self, value: float, n_train: float, eta: float) -> Decision:
        """Record one epoch's global loss sum (or validation score).

        Parameters
        ----------
        value : float
            Validation score if ``early_stopping`` else the summed training
            objective (loss plus penalty) of the epoch.
        n_train : float
            Number of training samples times outputs the loss was summed over.
        eta : float
            Current learning rate (for the ``adaptive`` schedule).

        Returns
        -------
        Decision
        """
        if self.early_stopping:
            if self.tol > -math.inf and value < self.best_score + self.tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            self.best_score = max(self.best_score, value)
        else:
            # scikit-learn compares the mean objective per training sample.
            mean = value / max(n_train, 1.0)
            if self.tol > -math.inf and mean > self.best_loss - self.tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            self.best_loss = min(self.best_loss, mean)
        if self.no_improvement_count >= self.n_iter_no_change:
            if self.adaptive and eta > 1e-6:
                self.no_improvement_count = 0
                return Decision.REDUCE_LEARNING_RATE
            return Decision.STOP
        return Decision.CONTINUE


class SmoothedInertiaRule:
    """scikit-learn's ``MiniBatchKMeans`` stopping rule, over one worker's
    minibatches.

    The first minibatch is ignored (its inertia is the initialisation's). Then
    the rule fires when the centers moved by at most ``tol`` (squared
    distance) in one minibatch, or when the exponentially weighted average of
    the minibatch inertia (per unit of weight, smoothed over about half of the
    worker's rows) has not reached a new minimum for ``max_no_improvement``
    minibatches in a row.

    Parameters
    ----------
    tol : float
        Absolute tolerance on the squared distance the centers move in one
        minibatch (scikit-learn scales its ``tol`` by the data's variance
        first); 0 disables this test.
    max_no_improvement : int or None
        Minibatches without a new minimum before firing; None disables.
    batch_size : int
        Rows per minibatch.
    n_samples : int
        Rows of the worker: sets the smoothing, as scikit-learn's does.
    """

    def __init__(
        self,
        tol: float,
        max_no_improvement: int | None,
        batch_size: int,
        n_samples: int,
    ) -> None:
        self.tol = float(tol)
        self.max_no_improvement = max_no_improvement
        self.smoothing = min(min(batch_size, n_samples) * 2.0 / (n_samples + 1), 1.0)
        self.steps = 0
        self.average: float | None = None
        self.best: float | None = None
        self.no_improvement = 0
        self.fired = False

    @property
    def enabled(self) -> bool:
        """Whether either test can fire."""
        return self.tol > 0.0 or self.max_no_improvement is not None

    def update(self, inertia: float, weight: float, shift: float) -> bool:
        """Record one minibatch; return whether the rule has fired (ever)."""
        self.steps += 1
        if self.fired or self.steps == 1:
            return self.fired
        mean_inertia = inertia / max(weight, 1e-300)
        if self.average is None:
            self.average = mean_inertia
        else:
            self.average += (mean_inertia - self.average) * self.smoothing
        if self.tol > 0.0 and shift <= self.tol:
            self.fired = True
            return True
        if self.best is None or self.average < self.best:
            self.no_improvement = 0
            self.best = self.average
        else:
            self.no_improvement += 1
        if (
            self.max_no_improvement is not None
            and self.no_improvement >= self.max_no_improvement
        ):
            self.fired = True
        return self.fired
