"""Run one fit of N simulated workers with the project's real code.

Each worker is a thread running the real worker loop
(:func:`dask_asgd.runtime.run_worker`) on its block of rows, with the real
learner (kernels, stopping rule), the real ``Communicator`` and
``StateExchange`` (when to exchange, the Parzen merge, partial messages),
the real balancing law answering its reports, and the driver's real
``combine`` averaging the results. What is simulated: time (each kernel call
costs ``rows / samples_per_second`` of the worker's clock, each message the
model of :class:`LinkModel`) and the coordinator's barrier, which meets in
simulated time.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from .._config import Config
from ..balancing import BalancingPolicy, Settings, WorkerSignals
from ..coordination import EpochAnswer
from ..learners import Learner, LearnerRun, Partition
from ..runtime import Communicator, ExchangeOptions, FitOutcome, FitTask, run_worker
from ..runtime._driver import combine
from ..runtime._fit import policy_limits
from ..runtime._state_exchange import StateExchange
from ..runtime._supervisor import Member
from ..runtime._worker_loop import (
    adaptive_cpu_budget,
    rows_per_epoch,
    start_message_size,
    start_send_interval,
)
from ._network import LinkModel, SimulatedNetwork
from ._virtual_time import VirtualTime


class _TimedRun:
    """A learner's run whose kernel calls cost simulated time."""

    def __init__(self, run: LearnerRun, time: VirtualTime, worker: int, rate: float):
        self._run = run
        self._time = time
        self._worker = worker
        self._rate = rate
        self.state = run.state
        self.training_rows = run.training_rows

    def train(self, partition: Partition, rows: np.ndarray) -> float:
        loss = self._run.train(partition, rows)
        self._time.advance(self._worker, rows.shape[0] / self._rate)
        return loss

    def epoch_values(self) -> tuple[dict[str, float], dict[str, Any]]:
        return self._run.epoch_values()

    def after_epoch(self, totals: dict[str, float]) -> tuple[dict[str, Any], bool]:
        return self._run.after_epoch(totals)

    def result(self) -> tuple[Any, int]:
        return self._run.result()


@dataclasses.dataclass
class _TimedLearner:
    """Wraps a learner so that each worker's run costs simulated time."""

    learner: Learner
    time: VirtualTime
    worker: int
    rate: float
    #: Every worker's run, by worker (shared by the workers' learners).
    runs: dict[int, _TimedRun]

    @property
    def batch_size(self) -> int:
        return self.learner.batch_size

    @property
    def state(self) -> Any:
        return self.learner.state

    def for_worker(self, share: float) -> _TimedLearner:
        return dataclasses.replace(self, learner=self.learner.for_worker(share))

    def start(self, partitions: list[Partition]) -> _TimedRun:
        run = _TimedRun(
            self.learner.start(partitions), self.time, self.worker, self.rate
        )
        self.runs[self.worker] = run
        return run

    def average(self, states: Any, shares: np.ndarray) -> Any:
        return self.learner.average(states, shares)


class _Barrier:
    """The coordinator's epoch barrier and balancer, in simulated time."""

    def __init__(
        self,
        time: VirtualTime,
        members: int,
        policy: BalancingPolicy,
        latency: float,
        evaluate: Callable[[int], dict[str, float]] | None = None,
    ) -> None:
        self.time = time
        self.evaluate = evaluate
        self.members = members
        self.policy = policy
        self.latency = latency
        self.reports: dict[int, dict[int, dict[str, float]]] = defaultdict(dict)
        self.totals: dict[int, dict[str, float]] = {}
        self.completed: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def control_plane(self, worker: int) -> _MemberControl:
        return _MemberControl(self, worker)

    def report(self, worker: int, epoch: int, values: dict[str, float]) -> EpochAnswer:
        with self._lock:
            reports = self.reports[epoch]
            reports[worker] = dict(values)
            if len(reports) == self.members:
                totals: dict[str, float] = defaultdict(float)
                for member_values in reports.values():
                    for key, value in member_values.items():
                        totals[key] += value
                self.totals[epoch] = dict(totals)
                at = max(self.time.now(w) for w in reports) + 2 * self.latency
                summary = {"epoch": epoch, "time": at, "totals": dict(totals)}
                if self.evaluate is not None:
                    summary.update(self.evaluate(epoch))
                self.completed.append(summary)
                self.time.release(list(reports), at)
        self.time.wait(worker, lambda: epoch in self.totals)
        return EpochAnswer(dict(self.totals[epoch]))

    def decide(
        self, worker: int, signals: WorkerSignals, current: Settings
    ) -> Settings:
        decided = self.policy.decide(current, signals)
        if decided is not current:
            self.decisions.append(
                {
                    "worker": worker,
                    "time": self.time.now(worker),
                    "send_interval": decided.send_interval,
                    "message_size": decided.message_size,
                    "reason": decided.reason,
                }
            )
        return decided


@dataclasses.dataclass
class _MemberControl:
    """One worker's control plane: the barrier and the balancer."""

    barrier: _Barrier
    worker: int

    def report_epoch(self, epoch: int, values: dict[str, float]) -> EpochAnswer:
        return self.barrier.report(self.worker, epoch, values)

    def request_settings(
        self, signals: WorkerSignals, current: Settings
    ) -> concurrent.futures.Future:
        answer: concurrent.futures.Future = concurrent.futures.Future()
        answer.set_result(self.barrier.decide(self.worker, signals, current))
        return answer


@dataclasses.dataclass
class SimulatedFit:
    """A simulated fit's outcome and what the simulation measured."""

    outcome: FitOutcome
    #: Simulated seconds from the start to the end of the last epoch.
    seconds: float
    #: Completed epochs: ``{"epoch", "time", "totals"}``.
    epochs: list[dict[str, Any]]
    #: The balancer's changes: worker, time, send interval, message size.
    decisions: list[dict[str, Any]]


def simulate_fit(
    partitions: list[list[Partition]],
    learner: Learner,
    *,
    max_iter: int,
    shuffle: bool,
    exchange: ExchangeOptions,
    config: Config,
    network: LinkModel,
    rng: np.random.Generator,
    seed: int = 0,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
) -> SimulatedFit:
    """Train ``learner`` on simulated workers, one per entry of ``partitions``.

    Parameters
    ----------
    partitions : list of list of Partition
        The rows of each worker.
    learner : Learner
        The model, as an estimator builds it.
    max_iter : int
        Epochs at most (the learner's stopping rule may end earlier).
    shuffle : bool
        Visit each worker's rows in a new random order every epoch.
    exchange : ExchangeOptions
        ``communication``, ``send_interval``, ``message_size``,
        ``parzen_window``.
    config : Config
        The ``asgd.*`` settings (mailbox slots, sends in flight, chunk size,
        report period, the balancer's bounds).
    network : LinkModel
        Links and training speeds.
    rng : numpy.random.Generator
        Draws every worker's seed, in worker order, as the real driver does:
        with the same generator state, a fit without communication is the
        real one, bit for bit.
    seed : int, default=0
        Seeds the choice of peers: a run is deterministic.
    evaluate : callable, optional
        Called at the end of every epoch with the workers' states averaged
        as the driver would average them then (the model one would get by
        stopping there); returns numbers recorded with the epoch, e.g. the
        objective on held-out rows.

    Returns
    -------
    SimulatedFit
    """
    n_workers = len(partitions)
    time = VirtualTime(n_workers)
    links = SimulatedNetwork(
        n_workers,
        network,
        time,
        config.exchange.mailbox_slots,
        config.exchange.max_in_flight,
        seed,
    )
    runs: dict[int, _TimedRun] = {}
    n_train = np.array([sum(p.X.shape[0] for p in parts) for parts in partitions])
    shares = n_train / n_train.sum()

    def evaluate_average(epoch: int) -> dict[str, float]:
        states = [runs[w].state for w in range(n_workers)]
        averaged = learner.average(states, shares)
        numbers = {"spread": state_spread(states, averaged)}
        if evaluate is not None:
            numbers.update(evaluate(averaged))
        return numbers

    barrier = _Barrier(
        time,
        n_workers,
        BalancingPolicy(policy_limits(config.balancing)),
        network.latency,
        evaluate_average,
    )
    tasks = _worker_tasks(
        partitions,
        learner,
        time,
        network,
        rng,
        max_iter,
        shuffle,
        exchange,
        config,
        runs,
    )
    results = _run_threads(tasks, partitions, links, barrier, time)
    members = [
        Member(name=str(w), worker=str(w), handle=None, n_train=int(n))
        for w, n in enumerate(n_train)
    ]
    outcome = combine("simulated", members, results, learner)
    return SimulatedFit(
        outcome=outcome,
        seconds=barrier.completed[-1]["time"] if barrier.completed else 0.0,
        epochs=barrier.completed,
        decisions=barrier.decisions,
    )


def _run_threads(
    tasks: list[FitTask],
    partitions: list[list[Partition]],
    links: SimulatedNetwork,
    barrier: _Barrier,
    time: VirtualTime,
) -> list[Any]:
    """Run every worker's loop in a thread of its own; their results in order."""
    results: list[Any] = [None] * len(tasks)

    def work(worker: int) -> None:
        error = None
        try:
            time.start(worker)
            communicator = _communicator(
                tasks[worker],
                links,
                barrier,
                worker,
                time,
                rows_per_epoch(partitions[worker]),
            )
            results[worker] = run_worker(
                tasks[worker],
                partitions[worker],
                barrier.control_plane(worker),
                communicator,
                clock=time.clock(worker),
            )
        except BaseException as caught:  # raised in the caller's thread below
            error = caught
        finally:
            time.finish(worker, error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if time.failed is not None:
        raise time.failed
    return results


def state_spread(states: list[Any], averaged: Any) -> float:
    """How far the workers' states lie from their average, relative to it.

    The mean over workers of ``||w_i - w_avg||`` divided by ``||w_avg||``, on
    the exchanged matrices: 0 when every worker holds the same model.
    """
    center = averaged.exchanged()
    scale = float(np.linalg.norm(center)) or 1.0
    distances = [float(np.linalg.norm(s.exchanged() - center)) for s in states]
    return float(np.mean(distances)) / scale


def _worker_tasks(
    partitions: list[list[Partition]],
    learner: Learner,
    time: VirtualTime,
    network: LinkModel,
    rng: np.random.Generator,
    max_iter: int,
    shuffle: bool,
    exchange: ExchangeOptions,
    config: Config,
    runs: dict[int, _TimedRun],
) -> list[FitTask]:
    """Every worker's task, with its share of the schedule and its seed."""
    n_workers = len(partitions)
    n_train = [sum(p.X.shape[0] for p in parts) for parts in partitions]
    tasks = []
    for worker in range(n_workers):
        timed = _TimedLearner(learner, time, worker, network.rate(worker), runs)
        tasks.append(
            FitTask(
                fit_id="simulated",
                seed=int(rng.integers(np.iinfo(np.int32).max)),
                learner=timed.for_worker(n_train[worker] / sum(n_train)),
                max_iter=max_iter,
                shuffle=shuffle,
                synchronise=True,
                exchange=exchange,
                config=config,
                peers=tuple(str(w) for w in range(n_workers)),
            )
        )
    return tasks


def _communicator(
    task: FitTask,
    links: SimulatedNetwork,
    barrier: _Barrier,
    worker: int,
    time: VirtualTime,
    rows: int,
) -> Communicator | None:
    options = task.exchange
    if options.communication == "off" or len(task.peers) <= 1:
        return None
    state = task.learner.state
    exchange = StateExchange(
        links.endpoint(worker),
        state.exchanged_shape[1],
        start_message_size(task, state.exchanged_nbytes),
        options.parzen_window,
        type(state).parzen_per_row,
        options.mixing_weight,
    )
    return Communicator(
        exchange,
        start_send_interval(task, rows),
        barrier.control_plane(worker) if options.communication == "adaptive" else None,
        report_period=task.config.balancing.report_period,
        clock=time.clock(worker),
        report_exchanges=task.config.balancing.report_exchanges,
        cpu_budget=adaptive_cpu_budget(task),
    )
