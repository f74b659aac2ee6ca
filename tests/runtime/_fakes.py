"""Fakes of the control plane, the coordinator and the task runner.

They let the worker loop and the driver run in threads of the test process,
with no cluster: the barrier sums the members' epoch values as the
coordinator does.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections import defaultdict
from typing import Any

from dask_asgd import _config
from dask_asgd.coordination import EpochAnswer, Joined, Progress
from dask_asgd.runtime import ExchangeOptions, FitTask, run_worker
from dask_asgd.runtime._handover import leaving_states
from dask_asgd.runtime._recovery import Replaced, ReplacementBlock
from dask_asgd.runtime._worker_loop import with_start_state

OFF = ExchangeOptions(
    communication="off", send_interval=4096, message_size=1.0, parzen_window=True
)


def task_for(learner, *, chunk_samples=None, **fields) -> FitTask:
    """A FitTask with the packaged config, ``chunk_samples`` overridden."""
    config = _config.load()
    if chunk_samples is not None:
        config = dataclasses.replace(
            config,
            training=dataclasses.replace(config.training, chunk_samples=chunk_samples),
        )
    defaults = dict(
        fit_id="fit",
        member="worker",
        seed=0,
        learner=learner,
        max_iter=1,
        shuffle=False,
        synchronise=True,
        exchange=OFF,
        config=config,
    )
    return FitTask(**{**defaults, **fields})


class AloneControlPlane:
    """A coordinator with one member: the sums are the worker's own values."""

    def __init__(self, abort_at_epoch=None):
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.abort_at_epoch = abort_at_epoch

    def report_epoch(self, epoch, values):
        self.reports.append((epoch, dict(values)))
        if epoch == self.abort_at_epoch:
            return EpochAnswer(None, "the fit ended")
        return EpochAnswer(dict(values))

    def request_settings(self, signals, current):  # pragma: no cover - unused
        future = concurrent.futures.Future()
        future.set_result(current)
        return future


class WorkerDied(RuntimeError):
    """What a member's task raises when the fake loses its worker."""


class ThreadedCluster:
    """Coordinator, control plane and task runner of members run as threads.

    The barrier waits for the members expected at an epoch, as the
    coordinator does; :meth:`lose` removes a worker's members as the
    coordinator's ``remove_worker`` hook does, and their tasks die at their
    next report.
    """

    def __init__(self, end_reason=None, replace_lost=True):
        self.started: list[tuple[str, dict[str, str], Any]] = []
        self.joined: list[tuple[str, str, int]] = []
        #: Set when a member joined.
        self.joined_any = threading.Event()
        self.ended: list[str] = []
        self.released: list[Any] = []
        self.waited = 0
        self.end_reason = end_reason
        self.replace_lost = replace_lost
        self.completed: list[dict[str, Any]] = []
        self.departures: list[dict[str, Any]] = []
        self.abort: dict[str, Any] | None = None
        #: What the driver published on the "asgd" topic.
        self.events: list[dict[str, Any]] = []
        #: (member, epoch) -> called when that member reports that epoch.
        self.on_report: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._reports: dict[int, dict[str, dict[str, float]]] = defaultdict(dict)
        self._members: dict[str, str] = {}
        self._first_epoch: dict[str, int] = {}
        self._dead: set[str] = set()
        self._executor = concurrent.futures.ThreadPoolExecutor(8)

    # Coordinator ------------------------------------------------------------

    def start(self, fit_id, members, limits, liveness_timeout=None, replace_lost=False):
        self.started.append((fit_id, dict(members), limits))
        self._members = dict(members)
        self._first_epoch = {member: 0 for member in members}
        return "token"

    def join(self, fit_id, member, worker):
        with self._condition:
            first = len(self.completed)
            self._members[member] = worker
            self._first_epoch[member] = first
            self.joined.append((member, worker, first))
            self.joined_any.set()
            return Joined(first, tuple(c["totals"] for c in self.completed))

    def end(self, fit_id):
        self.ended.append(fit_id)
        with self._condition:
            if self.abort is None:
                self.abort = {"kind": "ended", "reason": "the fit ended"}
            self._condition.notify_all()
        if self.end_reason is not None:
            return {"kind": "worker-lost", "reason": self.end_reason, "worker": "b"}
        return None if self.abort["kind"] == "ended" else self.abort

    def progress(self, fit_id, since):
        with self._lock:
            abort = self.abort if self.abort and self.abort["kind"] != "ended" else None
            return Progress(self.completed[since:], list(self.departures), abort)

    def log_event(self, event):
        self.events.append(dict(event))

    def lose(self, worker):
        """The worker leaves: its members are gone, the barrier goes on."""
        with self._condition:
            gone = sorted(m for m, w in self._members.items() if w == worker)
            self._dead.update(gone)
            if not self.replace_lost:
                self.abort = {"kind": "worker-lost", "reason": "left", "worker": worker}
            else:
                for member in gone:
                    del self._members[member]
                self.departures.append(
                    {"worker": worker, "members": gone, "epoch": len(self.completed)}
                )
                if not self._members:
                    self.abort = {
                        "kind": "worker-lost",
                        "reason": "the last",
                        "worker": worker,
                    }
                self._complete_ready()
            self._condition.notify_all()

    # Control plane of one member ---------------------------------------------

    def control_plane(self, member):
        cluster = self

        class Member:
            def report_epoch(self, epoch, values):
                return cluster._barrier(member, epoch, values)

            def request_settings(self, signals, current):  # pragma: no cover
                raise AssertionError("no balancing without communication")

        return Member()

    def _expected(self, epoch):
        return {m for m in self._members if self._first_epoch[m] <= epoch}

    def _complete_ready(self):
        for epoch, reports in sorted(self._reports.items()):
            if any(c["epoch"] == epoch for c in self.completed):
                continue
            expected = self._expected(epoch)
            if expected <= set(reports):
                totals = defaultdict(float)
                for member in expected:
                    for key, value in reports[member].items():
                        totals[key] += value
                self.completed.append({"epoch": epoch, "totals": dict(totals)})

    def _barrier(self, member, epoch, values):
        hook = self.on_report.pop((member, epoch), None)
        if hook is not None:
            hook()
        with self._condition:
            if member in self._dead:
                raise WorkerDied(member)
            self._reports[epoch][member] = dict(values)
            self._complete_ready()
            self._condition.notify_all()

            def settled():
                return self.abort is not None or any(
                    c["epoch"] == epoch for c in self.completed
                )

            if not self._condition.wait_for(settled, timeout=30):
                return EpochAnswer(None, f"epoch {epoch}: a member did not report")
            if member in self._dead:
                raise WorkerDied(member)
            for summary in self.completed:
                if summary["epoch"] == epoch:
                    return EpochAnswer(dict(summary["totals"]))
            return EpochAnswer(None, self.abort["reason"])

    # Task runner ----------------------------------------------------------------

    def submit(self, task, partitions, worker):
        return self._executor.submit(
            train_in_thread, task, partitions, self.control_plane(task.member)
        )

    def wait(self, handles, timeout):
        self.waited += 1
        done, _ = concurrent.futures.wait(handles, timeout=timeout)
        return len(done) == len(handles)

    def state(self, handle):
        if not handle.done():
            return "running"
        return "failed" if handle.exception() is not None else "done"

    def gather(self, handles):
        return [handle.result() for handle in handles]

    def release(self, handles):
        self.released.extend(handles)


def train_in_thread(task, partitions, control):
    """What ``train_worker`` does, without Dask: start state and handover."""
    task = with_start_state(task)
    with leaving_states(task.fit_id, task.member, len(task.peers) > 1) as on_epoch:
        return run_worker(task, partitions, control, on_epoch=on_epoch)


class ListReplacer:
    """Builds a lost worker's rows again from in-memory partitions."""

    def __init__(self, partitions, lose_rows=0):
        #: Member -> its partitions.
        self.partitions = dict(partitions)
        self.lose_rows = lose_rows
        self.calls: list[tuple[str, list[str], list[str]]] = []

    def replace(self, worker, members, survivors):
        self.calls.append((worker, list(members), list(survivors)))
        blocks = []
        for member in members:
            for index, part in enumerate(self.partitions.pop(member, [])):
                survivor = survivors[index % len(survivors)]
                name = f"{survivor}/replacing/{worker}#{index}"
                self.partitions[name] = [part]
                blocks.append(ReplacementBlock(name, survivor, [part], part.X.shape[0]))
        return Replaced(blocks, self.lose_rows, "a chunk could not be recomputed")


@dataclasses.dataclass
class FakePlacement:
    """Partitions by worker, as a placement holds them after scattering."""

    partitions: dict[str, Any]
    n_train: dict[str, int]
    released: bool = False

    def release(self):
        self.released = True
