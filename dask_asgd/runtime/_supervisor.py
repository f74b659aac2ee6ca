"""Follow a running fit from the driver: progress, failed tasks, lost workers.

:class:`FitSupervisor` holds the fit's members (one training task each),
reports completed epochs, fails the fit when a task fails, and when the
coordinator reports that a worker left, has that worker's rows built again on
the survivors and starts a task for each piece. A replacement joins the
coordinator's barrier at the first epoch not yet complete, after taking the
stopping decisions of the epochs before it, and starts from the state its
host worker's member had at its last epoch barrier (see ``_handover.py``). It
does not exchange states: each worker subscribes to a fit's topic once, and
its host's member already has.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._exceptions import WorkerLostError
from ._errors import abort_error
from ._recovery import Replaced, Replacer
from ._task import FitTask, WorkerResult


@dataclass
class Member:
    """One training task of a fit."""

    name: str
    #: The worker it runs on.
    worker: str
    handle: Any
    #: Training rows.
    n_train: int
    #: The worker whose rows it trains on instead, for a replacement.
    replaces: str | None = None


class FitSupervisor:
    """Follows one running fit; see the module docstring.

    Parameters
    ----------
    fit_id, token : str
        The fit and its token.
    template : FitTask
        The task every member's task was made from.
    coordinator : Coordinator
    runner : TaskRunner
    rng : numpy.random.Generator
        Draws the replacements' seeds.
    replacer : Replacer or None
        Builds a lost worker's rows again; None if the fit cannot.
    progress : callable or None
        Called with every completed epoch.
    total_train : int
        Training rows of the whole fit, for a replacement's share.
    epoch_means : callable or None
        The means of an epoch's sums, for its event and ``progress``.
    clock : callable, default=time.perf_counter
        Seconds; the fit's elapsed time counts from the supervisor's start.
    """

    def __init__(
        self,
        fit_id: str,
        token: str,
        template: FitTask,
        coordinator: Any,
        runner: Any,
        rng: np.random.Generator,
        replacer: Replacer | None,
        progress: Callable[[dict[str, Any]], None] | None,
        total_train: int,
        epoch_means: Callable[[dict[str, float]], dict[str, float]] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.fit_id = fit_id
        self.token = token
        self.template = template
        self.coordinator = coordinator
        self.runner = runner
        self.rng = rng
        self.replacer = replacer
        self.progress = progress
        self.total_train = max(total_train, 1)
        self.epoch_means = epoch_means
        self.clock = clock
        self.started = clock()
        self.members: dict[str, Member] = {}
        #: Handles of members lost with their workers.
        self.lost: list[Any] = []
        #: Rows for ``history_``: ``{"worker", "epoch", "event", ...}``.
        self.events: list[dict[str, Any]] = []
        self._epochs_seen = 0
        self._departures_seen = 0

    def submit(
        self,
        task: FitTask,
        partitions: Any,
        worker: str,
        n_train: int,
        replaces: str | None = None,
    ) -> None:
        """Start a member's task on ``worker``."""
        handle = self.runner.submit(task, partitions, worker)
        self.members[task.member] = Member(
            task.member, worker, handle, n_train, replaces
        )

    def handles(self, except_on: str | None = None) -> list[Any]:
        """The handles of the fit's members, in order, but those on
        ``except_on``."""
        return [m.handle for m in self.members.values() if m.worker != except_on]

    def supervise(self, period: float) -> list[WorkerResult]:
        """Look after the fit until every member's task ended; gather them.

        Returns
        -------
        list of WorkerResult
            One per member of :attr:`members`, in order.

        Raises
        ------
        Exception
            The error of a member's task that failed, or WorkerLostError.
        """
        while True:
            self.runner.wait(self.handles(), timeout=period)
            self.look()
            if self._failed():
                # The coordinator hears of a lost worker before the task's
                # future fails: one more look tells a loss from a failure.
                self.look()
                failed = self._failed()
                if failed:
                    self.runner.gather([failed[0].handle])
            states = [self.runner.state(handle) for handle in self.handles()]
            if all(state == "done" for state in states):
                return self._gather()

    def _failed(self) -> list[Member]:
        return [
            m for m in self.members.values() if self.runner.state(m.handle) == "failed"
        ]

    def _gather(self) -> list[WorkerResult]:
        """The members' results.

        A worker that leaves after its task ended takes the result with it:
        Dask runs the task again, which fails (its rows went too). The
        coordinator has seen the departure by then; the member is dropped
        and the others' results are gathered.
        """
        try:
            return self.runner.gather(self.handles())
        except Exception:
            members = len(self.members)
            self.look()
            if len(self.members) == members:
                raise
            return self.runner.gather(self.handles())

    def look(self) -> None:
        """Report new epochs; replace the members of workers that left.

        Raises
        ------
        Exception
            The error for the coordinator's abort, if it gave the fit up.
        """
        seen = self.coordinator.progress(self.fit_id, self._epochs_seen)
        for summary in seen.epochs:
            self._epochs_seen += 1
            self.report_epoch(summary)
        if seen.abort is not None:
            # A silent member's task may never end: do not wait for it.
            raise abort_error(self.fit_id, seen.abort)
        for departure in seen.departures[self._departures_seen :]:
            self._departures_seen += 1
            self.replace(departure)

    def elapsed(self) -> float:
        """Seconds since the fit started."""
        return self.clock() - self.started

    def report_epoch(self, summary: dict[str, Any]) -> None:
        """Publish a completed epoch as an ``"epoch"`` event, and report it.

        The event carries the fit's identifier and the epoch's means (the
        coordinator only sums), with the samples trained on and the seconds
        since the fit started as the driver saw it end.
        """
        totals = summary["totals"]
        means = self.epoch_means(totals) if self.epoch_means is not None else {}
        report = {
            "fit_id": self.fit_id,
            "epoch": summary["epoch"],
            "members": summary.get("members", len(self.members)),
            "samples": int(totals.get("n_train", 0)),
            "elapsed": self.elapsed(),
            **means,
        }
        self.coordinator.log_event({"action": "epoch", **report})
        if self.progress is not None:
            self.progress({**report, "totals": totals})

    def replace(self, departure: dict[str, Any]) -> None:
        """Build a departed worker's rows again and start tasks on them."""
        started = time.perf_counter()
        worker = departure["worker"]
        gone = [self.members.pop(n) for n in departure["members"] if n in self.members]
        if not gone:
            return
        self.lost.extend(member.handle for member in gone)
        self.runner.release([member.handle for member in gone])
        n_lost = sum(member.n_train for member in gone)
        self._event(worker, departure["epoch"], "worker-lost", samples=n_lost)
        if not self.members:
            raise WorkerLostError(self.fit_id, worker, "no worker is left to train on")
        if self.replacer is None:
            return
        if self._epochs_seen >= self.template.max_iter or all(
            self.runner.state(m.handle) == "done" for m in self.members.values()
        ):
            # Every epoch is complete (the survivors are only ending their
            # tasks) or every survivor has finished: nothing is left to train;
            # the lost members' models are left out of the average.
            return
        survivors = sorted({member.worker for member in self.members.values()})
        replaced = self.replacer.replace(worker, [m.name for m in gone], survivors)
        self._account_lost_rows(worker, departure["epoch"], replaced)
        for block in replaced.blocks:
            joined = self.coordinator.join(self.fit_id, block.name, block.worker)
            if joined.first_epoch >= self.template.max_iter:
                # The last epoch completed while the rows were built again.
                continue
            task = self.replacement_task(block.name, block.worker, block.n_train)
            task = dataclasses.replace(
                task, first_epoch=joined.first_epoch, replay=joined.replay
            )
            self.submit(task, block.partitions, block.worker, block.n_train, worker)
            self._event(
                block.worker,
                joined.first_epoch,
                "rows-replaced",
                replaces=worker,
                samples=block.n_train,
                seconds=time.perf_counter() - started,
            )

    def _account_lost_rows(self, worker: str, epoch: int, replaced: Replaced) -> None:
        if not replaced.rows_lost:
            return
        self._event(worker, epoch, "rows-lost", samples=replaced.rows_lost)
        if self.template.config.recovery.require_all_rows:
            raise WorkerLostError(
                self.fit_id,
                worker,
                f"{replaced.rows_lost} of its training rows could not be built "
                f"again ({replaced.detail})",
            )

    def replacement_task(self, name: str, worker: str, n_train: int) -> FitTask:
        """The task of a member that trains on a lost worker's rows."""
        template = self.template
        hosts = [m.name for m in self.members.values() if m.worker == worker]
        return dataclasses.replace(
            template,
            fit_id=self.fit_id,
            token=self.token,
            member=name,
            seed=int(self.rng.integers(np.iinfo(np.int32).max)),
            learner=template.learner.for_worker(n_train / self.total_train),
            peers=(),
            exchange=dataclasses.replace(template.exchange, communication="off"),
            start_from=hosts[0] if hosts else None,
            # Its history's elapsed times count from the fit's start too.
            started_after=self.elapsed(),
        )

    def _event(self, worker: str, epoch: int, event: str, **fields: Any) -> None:
        self.events.append(
            {
                "worker": worker,
                "epoch": epoch,
                "event": event,
                "elapsed": self.elapsed(),
                **fields,
            }
        )
