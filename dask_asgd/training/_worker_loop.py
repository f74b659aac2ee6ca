"""The long-running training task that runs on each worker.

This is the only module where kernels meet the distributed machinery: it runs
the SGD kernel over the worker's partitions, reports each epoch to the
scheduler's barrier and applies the shared stopping rule.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from distributed import secede

from ..balancing import report_epoch
from ..kernels import StepSettings, sgd_pass
from ._communication import Communicator, open_communicator
from ._model_state import KMeansState, ModelState
from ._shuffle import epoch_order
from ._stopping import Decision, StoppingRule

logger = logging.getLogger(__name__)


@dataclass
class Partition:
    """Rows held by one worker, ready for the kernel."""

    #: Features, dense C-contiguous or CSR, in the model's dtype.
    X: Any
    #: +1/-1 (binary), class index (multiclass) or real target; None for
    #: K-Means.
    targets: np.ndarray | None
    #: Weight of each row.
    sample_weight: np.ndarray
    #: True for rows held out for early stopping; None when nothing is held out.
    validation: np.ndarray | None = None


@dataclass(kw_only=True)
class TaskCommon:
    """What every training task needs, whatever the model: identity, epochs,
    stopping and exchange settings. Subclasses add the model's own fields."""

    fit_id: str
    seed: int
    max_iter: int
    tol: float | None
    n_iter_no_change: int
    shuffle: bool
    #: Seconds to wait at an epoch barrier before giving the fit up.
    epoch_timeout: float
    #: Samples the kernel processes per call.
    chunk_samples: int = 8192
    #: Whether to synchronise epochs with the other workers; a single-epoch
    #: pass (``partial_fit``) has nothing to decide and skips it.
    synchronise: bool = True
    #: "off" (SimuParallelSGD), "fixed" or "adaptive": exchange states with
    #: peers, the latter with settings from the scheduler's balancer.
    communication: str = "off"
    #: Seconds between two balancing reports (adaptive only).
    report_period: float = 0.5
    #: Samples between two sends (and merges) of this worker.
    send_interval: int = 4096
    #: Fraction of the state one message carries.
    message_size: float = 1.0
    #: Apply the Parzen-window test to received states.
    parzen_window: bool = True
    #: Addresses of every worker of the fit (the topic's members).
    peers: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class WorkerTask(TaskCommon):
    """Everything one worker needs to train a linear model, apart from its data."""

    settings: StepSettings
    state: ModelState
    #: Sample number (1-based) this worker's learning-rate schedule starts at.
    t_start: float
    early_stopping: bool
    adaptive: bool
    #: "accuracy" or "r2": how the validation score is computed.
    score: str
    positive_weight: np.ndarray
    negative_weight: np.ndarray


@dataclass
class WorkerResult:
    """What a worker sends back to the driver."""

    state: ModelState | KMeansState
    n_samples_trained: int
    n_iter: int
    t_end: float
    #: One dict per epoch: the local and global numbers of that epoch.
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Why training ended early, if it did ("nonfinite" or an abort reason).
    failure: str | None = None
    #: Send interval and message size over time (one row per change).
    control: list[dict[str, Any]] = field(default_factory=list)


def _validation_values(
    state: ModelState, partitions: list[Partition], score: str
) -> dict[str, float]:
    # Sufficient statistics of the validation score, so that the driver-free
    # barrier can add them up over workers.
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


def epoch_chunks(
    partitions: list[Partition],
    rows: list[np.ndarray],
    rng: np.random.Generator | None,
    chunk_rows: Callable[[], int],
) -> Iterator[tuple[Partition, np.ndarray]]:
    """One epoch's rows: partition by partition, in chunks for the kernel.

    Partitions are visited in a random order when ``rng`` is given (and their
    rows as :func:`epoch_order` shuffles them), else in storage order.
    ``chunk_rows()`` is asked before every chunk, after the previous one was
    trained on, so that a chunk can end where an exchange is due.

    Yields
    ------
    partition : Partition
    chunk : ndarray of int64
        Row numbers of ``partition`` to train on next.
    """
    visit = (
        rng.permutation(len(partitions)) if rng is not None else range(len(partitions))
    )
    for index in visit:
        order = epoch_order(rows[index], rng)
        position = 0
        while position < order.shape[0]:
            stop = min(position + chunk_rows(), order.shape[0])
            yield partitions[index], order[position:stop]
            position = stop


def _chunk_rows(task: TaskCommon, communicator: Communicator | None) -> int:
    rows = task.chunk_samples
    if communicator is not None:
        rows = min(rows, communicator.samples_until_send())
    return rows


def epoch_totals(
    task: TaskCommon,
    communicator: Communicator | None,
    epoch: int,
    values: dict[str, Any],
    record: dict[str, Any],
) -> tuple[dict[str, Any] | None, str | None]:
    """Close an epoch: record the exchange counters, then sum over workers.

    Adds the worker's send interval and exchange counters to ``record`` and,
    when the task synchronises, waits at the scheduler's epoch barrier for
    ``values`` summed over every worker of the fit.

    Returns
    -------
    totals : dict or None
        The sums (this worker's own ``values`` without synchronisation);
        None if the fit was given up.
    failure : str or None
        Why the fit was given up.
    """
    if communicator is not None:
        record["send_interval"] = communicator.send_interval
        record.update(communicator.exchange.stats())
    if not task.synchronise:
        return values, None
    answer = report_epoch(task.fit_id, epoch, values, task.epoch_timeout)
    if answer["status"] != "ok":
        return None, answer["reason"]
    return answer["totals"], None


def train_worker(task: WorkerTask, partitions: list[Partition]) -> WorkerResult:
    """Train on this worker's partitions until the shared stopping rule says so.

    Runs as one Dask task per worker. It secedes from the worker's thread pool
    at once: it is long-running, and other tasks (another fit's, or data
    tasks) must still be able to start on this worker meanwhile.

    Parameters
    ----------
    task : WorkerTask
        Hyperparameters, initial state and fit identity.
    partitions : list of Partition
        The rows this worker holds.

    Returns
    -------
    WorkerResult
    """
    secede()
    with open_communicator(task) as communicator:
        return _train(task, partitions, communicator)


def _train(
    task: WorkerTask, partitions: list[Partition], communicator: Communicator | None
) -> WorkerResult:
    rng = np.random.default_rng(task.seed) if task.shuffle else None
    state = task.state.copy()
    if communicator is not None:
        communicator.start(state)
    settings = task.settings
    n_outputs = state.weights.shape[0]
    cumulative_l1 = np.zeros_like(state.weights)
    l1_total = 0.0
    t = float(task.t_start)
    training_rows = [
        np.flatnonzero(~p.validation)
        if p.validation is not None
        else np.arange(p.targets.shape[0], dtype=np.int64)
        for p in partitions
    ]
    n_train_local = int(sum(rows.shape[0] for rows in training_rows))
    # scikit-learn stops each one-vs-rest problem on its own loss; the
    # validation score and the adaptive schedule's shared learning rate are
    # about the whole model, so those use one rule for all outputs.
    per_output = not task.early_stopping and not task.adaptive and n_outputs > 1
    rules = [
        StoppingRule(
            task.tol, task.n_iter_no_change, task.early_stopping, task.adaptive
        )
        for _ in range(n_outputs if per_output else 1)
    ]
    active = np.ones(n_outputs, dtype=np.bool_)
    history: list[dict[str, Any]] = []
    failure: str | None = None
    n_iter = 0
    for epoch in range(task.max_iter):
        started = time.perf_counter()
        output_losses = np.zeros(n_outputs)
        for part, chunk in epoch_chunks(
            partitions, training_rows, rng, lambda: _chunk_rows(task, communicator)
        ):
            t, chunk_loss, l1_total = sgd_pass(
                state.weights,
                state.intercepts,
                state.average_weights,
                state.average_intercepts,
                cumulative_l1,
                part.X,
                part.targets,
                part.sample_weight,
                task.positive_weight,
                task.negative_weight,
                chunk,
                settings,
                t,
                l1_total,
                active,
                output_losses,
            )
            if communicator is not None:
                communicator.after_samples(chunk.shape[0], chunk_loss, state)
        sumloss = float(output_losses.sum())
        n_iter = epoch + 1
        finite = state.is_finite()
        values = {"loss": sumloss, "n_train": n_train_local, "nonfinite": not finite}
        values.update({f"loss_{k}": output_losses[k] for k in range(n_outputs)})
        if task.early_stopping:
            values.update(_validation_values(state, partitions, task.score))
        record: dict[str, Any] = {
            "epoch": epoch,
            "local_loss": sumloss / max(n_train_local * n_outputs, 1),
            "samples": n_train_local,
            "seconds": time.perf_counter() - started,
            "eta": settings.eta0,
        }
        totals, failure = epoch_totals(task, communicator, epoch, values, record)
        if totals is None:
            history.append(record)
            break
        n_active = int(active.sum())
        record["loss"] = totals["loss"] / max(totals["n_train"] * n_active, 1)
        if task.early_stopping:
            record["validation_score"] = validation_score(totals, task.score)
        history.append(record)
        if totals["nonfinite"] > 0:
            failure = "nonfinite"
            break
        if per_output:
            for k in np.flatnonzero(active):
                decision = rules[k].update(
                    totals[f"loss_{k}"], totals["n_train"], settings.eta0
                )
                if decision is Decision.STOP:
                    active[k] = False
            if not active.any():
                break
            continue
        monitored = (
            record["validation_score"] if task.early_stopping else totals["loss"]
        )
        decision = rules[0].update(
            monitored, totals["n_train"] * n_outputs, settings.eta0
        )
        if decision is Decision.REDUCE_LEARNING_RATE:
            settings = settings._replace(eta0=settings.eta0 / 5.0)
        elif decision is Decision.STOP:
            break
    if task.settings.average_start <= 0:
        state = state.without_averages()
    return WorkerResult(
        state=state,
        n_samples_trained=round(t - task.t_start),
        n_iter=n_iter,
        t_end=t,
        history=history,
        failure=failure,
        control=communicator.control if communicator is not None else [],
    )
