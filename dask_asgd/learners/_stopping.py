"""scikit-learn's stopping rule for SGD, applied to numbers summed over workers.

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
    relative : bool, default=False
        Require the loss to fall by ``tol`` times the best loss so far
        instead of ``tol`` per sample: for losses without a natural scale,
        such as K-Means' inertia.
    """

    def __init__(
        self,
        tol: float | None,
        n_iter_no_change: int,
        early_stopping: bool,
        adaptive: bool,
        relative: bool = False,
    ) -> None:
        self.tol = -math.inf if tol is None else float(tol)
        self.n_iter_no_change = int(n_iter_no_change)
        self.early_stopping = early_stopping
        self.adaptive = adaptive
        self.relative = relative
        self.best_loss = math.inf
        self.best_score = -math.inf
        self.no_improvement_count = 0

    def update(self, value: float, n_train: float, eta: float) -> Decision:
        """Record one epoch's global loss sum (or validation score).

        Parameters
        ----------
        value : float
            Validation score if ``early_stopping`` else the summed training
            loss of the epoch.
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
            required = self.tol * (self.best_loss if self.relative else n_train)
            if self.tol > -math.inf and value > self.best_loss - required:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            self.best_loss = min(self.best_loss, value)
        if self.no_improvement_count >= self.n_iter_no_change:
            if self.adaptive and eta > 1e-6:
                self.no_improvement_count = 0
                return Decision.REDUCE_LEARNING_RATE
            return Decision.STOP
        return Decision.CONTINUE
