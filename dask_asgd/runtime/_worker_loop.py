"""The one training loop that runs on each worker, whatever the model.

:func:`train_worker` is the Dask task; :func:`run_worker` is the loop itself,
with its control plane, communicator and clock passed in, so it runs in tests
without a cluster. The loop visits the worker's rows epoch by epoch in chunks
of whole minibatches, lets the communicator exchange states between chunks,
reports each epoch to the coordinator's barrier and stops when the learner
says so, on numbers summed over every worker.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from ..coordination import EpochAnswer, WorkerControlPlane
from ..exchange import TopicSpec, join_topic
from ..learners import ExchangedState, LearnerRun, Partition
from ._background_copy import FillingPartition
from ._communicator import (
    Communicator,
    SettingsSource,
    first_message_size,
    first_send_interval,
)
from ._handover import leaving_states, taken_state
from ._loop_cpu import event_loop_cpu_clock
from ._shuffle import epoch_order
from ._state_exchange import StateExchange, magnitude_bound
from ._task import NONFINITE_OWN, NONFINITE_PEER, FitTask, WorkerResult

logger = logging.getLogger(__name__)


class ControlPlane(SettingsSource, Protocol):
    """A worker's line to the coordinator (see :class:`WorkerControlPlane`)."""

    def report_epoch(self, epoch: int, values: dict[str, float]) -> EpochAnswer:
        """Report the epoch's values; wait for their sums over all workers."""


def train_worker(task: FitTask, partitions: list[Partition]) -> WorkerResult:
    """Train on this worker's partitions until the shared stopping rule says so.

    Runs as one Dask task per worker. It secedes from the worker's thread pool
    at once: it is long-running, and other tasks (another fit's, or data
    tasks) must still be able to start on this worker meanwhile. While it
    trains, the worker's event loop sends the coordinator heartbeats.

    Parameters
    ----------
    task : FitTask
        The model, its settings and the fit's identity.
    partitions : list of Partition
        The rows this worker holds.

    Returns
    -------
    WorkerResult
    """
    from distributed import get_worker, secede

    secede()
    worker = get_worker()
    member = task.member or worker.address
    task = with_start_state(task)
    training = task.config.training
    control = WorkerControlPlane(
        task.fit_id,
        task.token,
        member,
        training.epoch_timeout,
        training.liveness_timeout,
        worker,
    )
    may_be_replaced = task.config.recovery.replace_lost_workers and len(task.peers) > 1
    with (
        control.heartbeats(),
        leaving_states(task.fit_id, member, may_be_replaced) as on_epoch,
        open_communicator(task, control, rows_per_epoch(partitions)) as communicator,
    ):
        return run_worker(task, partitions, control, communicator, on_epoch=on_epoch)


def with_start_state(task: FitTask) -> FitTask:
    """``task`` starting from the state ``task.start_from`` left on this worker.

    A replacement starts from its host member's last barrier state; if the
    host left none (it has not finished an epoch yet), from the learner's.
    Learners are dataclasses whose ``state`` field is where training starts.
    """
    if task.start_from is None:
        return task
    state = taken_state(task.fit_id, task.start_from)
    if state is None:
        return task
    return dataclasses.replace(
        task, learner=dataclasses.replace(task.learner, state=state)
    )


def run_worker(
    task: FitTask,
    partitions: list[Partition],
    control: ControlPlane,
    communicator: Communicator | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_epoch: Callable[[int, ExchangedState], None] | None = None,
) -> WorkerResult:
    """The training loop of one worker (see the module docstring).

    Parameters
    ----------
    task : FitTask
    partitions : list of Partition
    control : ControlPlane
        Where epochs are reported (the coordinator, or a fake).
    communicator : Communicator, optional
        Exchanges states with peers between chunks; None trains alone.
    clock : callable, default=time.perf_counter
        Seconds, for the epochs' durations, the waits at the barrier
        (``barrier_wait``) and the time since the fit started (``elapsed``).
    on_epoch : callable, optional
        Called with the epoch and the state after each epoch's barrier.

    Returns
    -------
    WorkerResult
    """
    rng = np.random.default_rng(task.seed) if task.shuffle else None
    run = task.learner.start(partitions)
    if communicator is not None:
        communicator.start(run.state)
    history: list[dict[str, Any]] = []
    failure: str | None = None
    n_iter = task.first_epoch
    # A task that joins a running fit first takes the decisions the others
    # took; if they already stopped, it has nothing to train.
    stopped = any([run.after_epoch(totals)[1] for totals in task.replay])
    loop_started = clock()
    for epoch in range(task.first_epoch, task.max_iter if not stopped else 0):
        started = clock()
        first = epoch == task.first_epoch
        train_epoch(task, partitions, run, rng, communicator, first)
        n_iter = epoch + 1
        values, record, cause = close_epoch(run, communicator, epoch, clock() - started)
        answer, record["barrier_wait"] = timed_report(
            control, task.synchronise, epoch, values, clock
        )
        record["elapsed"] = task.started_after + clock() - loop_started
        if cause is not None or answer.totals is None:
            history.append(record)
            failure = cause or answer.reason
            break
        shared, stop = run.after_epoch(answer.totals)
        history.append({**record, **shared})
        if on_epoch is not None:
            on_epoch(epoch, run.state)
        if stop:
            break
    state, n_samples_trained = run.result()
    return WorkerResult(
        state=state,
        n_samples_trained=n_samples_trained,
        n_iter=n_iter,
        history=history,
        failure=failure,
        control=communicator.control if communicator is not None else [],
    )


def timed_report(
    control: ControlPlane,
    synchronise: bool,
    epoch: int,
    values: dict[str, float],
    clock: Callable[[], float],
) -> tuple[EpochAnswer, float]:
    """Report the epoch at the barrier; the answer and the seconds waited.

    The wait is the time this worker spent at the barrier for the slowest
    member (and the round trip to the coordinator): a large one on a fast
    worker shows an imbalance ``seconds`` alone does not.
    """
    if not synchronise:
        return EpochAnswer(values), 0.0
    waiting = clock()
    answer = control.report_epoch(epoch, values)
    return answer, clock() - waiting


def train_epoch(
    task: FitTask,
    partitions: list[Partition],
    run: LearnerRun,
    rng: np.random.Generator | None,
    communicator: Communicator | None,
    first: bool = False,
) -> None:
    """One pass over the worker's rows, exchanging states between chunks.

    ``first``: the task's first epoch, which walks shuffled copies as they
    are stored, behind the threads that may still be writing them (see
    ``_background_copy.py``).
    """
    batch_size = task.learner.batch_size
    for partition, rows in epoch_chunks(
        partitions,
        run.training_rows,
        rng,
        lambda: whole_minibatches(task, communicator, batch_size),
        as_stored=first,
    ):
        if isinstance(partition, FillingPartition):
            partition.wait_for(rows)
        loss = run.train(partition, rows)
        if communicator is not None:
            communicator.after_samples(rows.shape[0], loss, run.state)
    for partition in partitions:
        # Rows held out for validation are read after the epoch.
        if isinstance(partition, FillingPartition):
            partition.wait_rows(partition.X.shape[0])


def close_epoch(
    run: LearnerRun, communicator: Communicator | None, epoch: int, seconds: float
) -> tuple[dict[str, float], dict[str, Any], str | None]:
    """The epoch's values to report, its record, and why the state is
    non-finite if it is (``NONFINITE_OWN`` or ``NONFINITE_PEER``)."""
    values, local = run.epoch_values()
    cause = None
    if not run.state.is_finite():
        noted = communicator.nonfinite_cause if communicator is not None else None
        cause = noted or NONFINITE_OWN
    values["nonfinite"] = float(cause is not None)
    values["nonfinite_peer"] = float(cause == NONFINITE_PEER)
    record = {"epoch": epoch, **local, "seconds": seconds}
    if communicator is not None:
        record["send_interval"] = communicator.send_interval
        record.update(communicator.exchange.stats())
        # Summed at the barrier, for the driver's messages per second.
        values["messages_sent"] = float(record["messages_sent"])
    return values, record, cause


def whole_minibatches(
    task: FitTask, communicator: Communicator | None, batch_size: int
) -> int:
    """Rows of the next chunk: up to the next exchange, in whole minibatches.

    An exchange between two halves of a minibatch would send (and test) a
    state the minibatch has only half moved, and a chunk boundary would cut
    the minibatch in two; so a chunk holds whole minibatches, at least one.
    """
    rows = task.config.training.chunk_samples
    if communicator is not None:
        rows = min(rows, communicator.samples_until_send())
    return max(batch_size, rows // batch_size * batch_size)


def epoch_chunks(
    partitions: list[Partition],
    rows: list[np.ndarray],
    rng: np.random.Generator | None,
    chunk_rows: Callable[[], int],
    as_stored: bool = False,
) -> Iterator[tuple[Partition, np.ndarray]]:
    """One epoch's rows: partition by partition, in chunks for the kernel.

    Partitions are visited in a random order when ``rng`` is given (and their
    rows as :func:`epoch_order` shuffles them), else in storage order. With
    ``as_stored``, a partition whose storage order is already random
    (``rows_in_random_order``) is visited as it is stored.
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
        if as_stored and partitions[index].rows_in_random_order:
            order = rows[index]
        else:
            order = epoch_order(rows[index], rng)
        position = 0
        while position < order.shape[0]:
            stop = min(position + chunk_rows(), order.shape[0])
            yield partitions[index], order[position:stop]
            position = stop


@contextmanager
def open_communicator(
    task: FitTask, balancer: SettingsSource, rows: int
) -> Iterator[Communicator | None]:
    """Join the fit's topic for the duration of training, with a communicator.

    Runs on the worker, inside the training task; leaving the block closes
    the subscription (the topic's mailbox and handler go with it). ``rows``:
    the worker's rows per epoch, which bound an adaptive start interval.

    Yields
    ------
    Communicator or None
        None when the worker does not communicate (``"off"``, or alone).
    """
    from distributed import get_worker

    options = task.exchange
    if options.communication == "off" or len(task.peers) <= 1:
        yield None
        return
    settings = task.config.exchange
    start = task.learner.state.exchanged()
    spec = TopicSpec(
        topic=task.fit_id,
        mailbox_slots=settings.mailbox_slots,
        max_in_flight=settings.max_in_flight,
        send_timeout=settings.send_timeout,
        min_bandwidth=settings.min_bandwidth,
        seed=task.seed,
        # What the handler lets into the mailbox: blocks of this state only.
        payload_shape=start.shape,
        payload_dtype=start.dtype.name,
        max_abs=magnitude_bound(start),
    )
    endpoint = join_topic(spec, task.peers)
    try:
        exchange = StateExchange(
            endpoint,
            start.shape[1],
            start_message_size(task, start.nbytes),
            options.parzen_window,
            type(task.learner.state).parzen_per_row,
            options.mixing_weight,
        )
        del start  # a copy of the state, not needed while training
        yield Communicator(
            exchange,
            start_send_interval(task, rows),
            balancer if options.communication == "adaptive" else None,
            report_period=task.config.balancing.report_period,
            loop_cpu=event_loop_cpu_clock(get_worker()),
            report_exchanges=task.config.balancing.report_exchanges,
            cpu_budget=adaptive_cpu_budget(task),
        )
    finally:
        endpoint.close()


def start_message_size(task: FitTask, state_bytes: int) -> float:
    """The task's message size, the balancer's smallest when adaptive."""
    options = task.exchange
    if options.communication != "adaptive":
        return options.message_size
    return first_message_size(task.config.balancing, state_bytes, options.message_size)


def start_send_interval(task: FitTask, rows_per_epoch: int) -> int:
    """The task's send interval, shortened for a worker of few rows when adaptive."""
    options = task.exchange
    if options.communication != "adaptive":
        return options.send_interval
    return first_send_interval(
        task.config.balancing, options.send_interval, rows_per_epoch
    )


def rows_per_epoch(partitions: list[Partition]) -> int:
    """Rows a worker trains on in one epoch (those not held out)."""
    return sum(
        p.X.shape[0]
        - (0 if p.validation is None else int(np.count_nonzero(p.validation)))
        for p in partitions
    )


def adaptive_cpu_budget(task: FitTask) -> float | None:
    """The CPU budget a worker holds its exchanges to, None unless adaptive."""
    if task.exchange.communication != "adaptive":
        return None
    return task.config.balancing.cpu_budget
