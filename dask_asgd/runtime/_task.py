"""What the driver sends each worker, and what a worker sends back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._config import Config
from ..learners import ExchangedState, Learner


@dataclass(frozen=True)
class ExchangeOptions:
    """How workers exchange states: the estimator's exchange parameters."""

    #: "off" (SimuParallelSGD), "fixed" or "adaptive" (settings from the
    #: scheduler's balancer).
    communication: str
    #: Samples between two exchanges of a worker (the start value if adaptive).
    send_interval: int
    #: Fraction of the state one message carries.
    message_size: float
    #: Apply the Parzen-window test to received states.
    parzen_window: bool
    #: The weight a merged state gets against the worker's own; None: the
    #: paper's equal weights.
    mixing_weight: float | None = None


@dataclass(kw_only=True)
class FitTask:
    """Everything one worker needs to train, apart from its rows."""

    #: The fit's identifier: its topic, its entry at the coordinator.
    fit_id: str
    #: Seeds this worker's shuffling and peer choice; drawn on the driver.
    seed: int
    #: The model.
    learner: Learner
    max_iter: int
    shuffle: bool
    #: Whether to synchronise epochs with the other workers; a single-epoch
    #: pass (``partial_fit``) has nothing to decide and skips the barrier.
    synchronise: bool
    exchange: ExchangeOptions
    #: The ``asgd.*`` settings, read once on the driver.
    config: Config
    #: Addresses of every worker of the fit (the topic's members).
    peers: tuple[str, ...] = ()
    #: The fit's token, which the coordinator asks of its members.
    token: str = ""
    #: This task's name in the fit: its worker's address, or for a task that
    #: replaces a lost worker's, a name of its own.
    member: str = ""
    #: The first epoch this task trains (later than 0 for a replacement).
    first_epoch: int = 0
    #: The sums of the epochs before ``first_epoch``, for the stopping rule.
    replay: tuple[dict[str, float], ...] = ()
    #: Start from the state this member of the same worker had at its last
    #: epoch barrier, if it has one (a replacement); None: the learner's state.
    start_from: str | None = None
    #: Seconds into the fit at which this task was started (later than 0 for
    #: a replacement), so that its history's ``elapsed`` counts from the
    #: fit's start.
    started_after: float = 0.0


#: A worker's own steps on its rows made its state non-finite.
NONFINITE_OWN = "nonfinite"
#: Merging a state received from a peer made the worker's state non-finite.
NONFINITE_PEER = "nonfinite-from-peer"


@dataclass
class WorkerResult:
    """What a worker sends back to the driver."""

    state: ExchangedState
    n_samples_trained: int
    n_iter: int
    #: One dict per epoch: the local and global numbers of that epoch.
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Why training ended early, if it did: ``NONFINITE_OWN``,
    #: ``NONFINITE_PEER`` or the coordinator's abort reason.
    failure: str | None = None
    #: Send interval and message size over time (one row per change).
    control: list[dict[str, Any]] = field(default_factory=list)
