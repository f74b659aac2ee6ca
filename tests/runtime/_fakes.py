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
from dask_asgd.coordination import EpochAnswer
from dask_asgd.runtime import ExchangeOptions, FitTask, run_worker

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


class ThreadedCluster:
    """Coordinator, control plane and task runner of members run as threads."""

    def __init__(self, end_reason=None):
        self.started: list[tuple[str, list[str], Any]] = []
        self.ended: list[str] = []
        self.released: list[Any] = []
        self.waited = 0
        self.end_reason = end_reason
        self.completed: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._reports: dict[int, dict[str, dict[str, float]]] = defaultdict(dict)
        self._members: list[str] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(4)

    # Coordinator ------------------------------------------------------------

    def start(self, fit_id, members, limits):
        self.started.append((fit_id, list(members), limits))
        self._members = list(members)

    def end(self, fit_id):
        self.ended.append(fit_id)
        return self.end_reason

    def progress(self, fit_id, since):
        with self._lock:
            return self.completed[since:]

    # Control plane of one member ---------------------------------------------

    def control_plane(self, member):
        cluster = self

        class Member:
            def report_epoch(self, epoch, values):
                return cluster._barrier(member, epoch, values)

            def request_settings(self, signals, current):  # pragma: no cover
                raise AssertionError("no balancing without communication")

        return Member()

    def _barrier(self, member, epoch, values):
        with self._condition:
            reports = self._reports[epoch]
            reports[member] = dict(values)
            if len(reports) == len(self._members):
                totals = defaultdict(float)
                for member_values in reports.values():
                    for key, value in member_values.items():
                        totals[key] += value
                self.completed.append({"epoch": epoch, "totals": dict(totals)})
                self._condition.notify_all()
            if not self._condition.wait_for(
                lambda: len(self._reports[epoch]) == len(self._members), timeout=30
            ):
                return EpochAnswer(None, f"epoch {epoch}: a member did not report")
            return EpochAnswer(dict(self.completed[epoch]["totals"]))

    # Task runner ----------------------------------------------------------------

    def submit(self, task, partitions, worker):
        return self._executor.submit(
            run_worker, task, partitions, self.control_plane(worker)
        )

    def wait(self, handles, timeout):
        self.waited += 1
        done, _ = concurrent.futures.wait(handles, timeout=timeout)
        return len(done) == len(handles)

    def gather(self, handles):
        return [handle.result() for handle in handles]

    def release(self, handles):
        self.released.extend(handles)


@dataclasses.dataclass
class FakePlacement:
    """Partitions by worker, as a placement holds them after scattering."""

    partitions: dict[str, Any]
    n_train: dict[str, int]
    released: bool = False

    def release(self):
        self.released = True
