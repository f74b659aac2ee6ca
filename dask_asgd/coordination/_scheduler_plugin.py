"""The coordinator: fit membership, epoch barrier, progress, abort, balancing.

One :class:`ASGDSchedulerPlugin` serves every fit on a cluster. A driver
registers a fit with its member training tasks and receives the fit's token;
the driver and the members (which find the token in their task) send it with
every call, and a call without it is refused. At the end of each epoch every
member reports a few scalars (``asgd_epoch_report``) and waits until all
members expected at that epoch have reported, then receives their sums. Every
member therefore sees the same global numbers and takes the same stop
decision, so all workers stop together.

Members send a heartbeat every few seconds while they train; a member that
has been heard from and then falls silent ends the fit within
``liveness_timeout`` instead of the epoch timeout. A member whose worker
leaves the cluster is removed from the fit (its driver replaces it) or, if
the driver asked for it, aborts the fit. A report of a non-finite state
aborts the fit at once, naming the worker and the cause.

The plugin moves plain dicts of numbers: it knows nothing about losses or
models. Notable events go to ``scheduler.log_event("asgd", ...)``, so a client
can follow them with ``client.subscribe_topic("asgd", handler)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin

from ..balancing import BalancingPolicy, PolicyLimits, Settings, WorkerSignals
from ._dashboard import DashboardPage, add_page
from ._fit_records import FitRecords

if TYPE_CHECKING:
    # Only for annotations: importing Scheduler at run time is not needed.
    from distributed import Scheduler

logger = logging.getLogger(__name__)

#: Name under which the plugin is registered on the scheduler.
PLUGIN_NAME = "asgd"
#: Topic of the events the plugin logs.
EVENT_TOPIC = "asgd"

#: Kinds of abort (``FitState.abort["kind"]``) the driver turns into errors.
ABORT_WORKER_LOST = "worker-lost"
ABORT_NONFINITE_OWN = "nonfinite-own"
ABORT_NONFINITE_PEER = "nonfinite-peer"
ABORT_SILENT = "silent"
ABORT_TIMEOUT = "timeout"
ABORT_ENDED = "ended"


@dataclass
class FitState:
    """What the scheduler knows about one running fit."""

    #: Identifier chosen by the driver.
    fit_id: str
    #: The secret its driver and members send with every call.
    token: str
    #: Member (training task) -> address of the worker it runs on.
    members: dict[str, str]
    #: The control law of this fit, with the limits its driver sent.
    policy: BalancingPolicy
    #: Seconds a member that has sent a heartbeat may stay silent; None: no limit.
    liveness_timeout: float | None = None
    #: Whether a lost worker's members leave the fit (True) or abort it.
    replace_lost: bool = False
    #: Member -> the first epoch it reports (0, or later for a replacement).
    first_epoch: dict[str, int] = field(default_factory=dict)
    #: Member -> time.monotonic() of its last heartbeat or report.
    last_seen: dict[str, float] = field(default_factory=dict)
    #: epoch -> member -> reported values.
    reports: dict[int, dict[str, dict[str, float]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    #: epoch -> event set once every expected member has reported.
    complete: dict[int, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    #: Why the fit was given up: ``{"kind", "reason", "worker"}``; None if not.
    abort: dict[str, Any] | None = None
    #: Sums over members of every completed epoch, in order.
    completed: list[dict[str, Any]] = field(default_factory=list)
    #: Workers that left: ``{"worker", "members", "epoch", "time"}``, in order.
    departures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def aborted(self) -> str | None:
        """Why the fit was given up, in words; None while it runs."""
        return None if self.abort is None else self.abort["reason"]

    def expected(self, epoch: int) -> set[str]:
        """The members whose report epoch ``epoch`` waits for."""
        return {m for m in self.members if self.first_epoch.get(m, 0) <= epoch}

    def __str__(self) -> str:
        return f"ASGDFit<{self.fit_id}, {len(self.members)} members>"


def _refused(fit_id: str) -> dict[str, Any]:
    return {
        "status": "refused",
        "reason": f"fit {fit_id} is not running, or the caller is not one of its "
        "members or its driver",
    }


class ASGDSchedulerPlugin(SchedulerPlugin):
    """Scheduler plugin that keeps fit membership and runs the epoch barrier.

    Install it once per cluster; the training driver does so on first use::

        client.register_plugin(ASGDSchedulerPlugin(), name="asgd")

    Handlers (callable through ``scheduler.<name>`` rpc by workers and
    clients); every one but ``asgd_fit_start`` needs the fit's token:

    * ``asgd_fit_start(fit_id, members, limits, liveness_timeout,
      replace_lost)`` -> token
    * ``asgd_fit_join(fit_id, token, member, worker)``
    * ``asgd_epoch_report(fit_id, token, member, epoch, values, timeout)``
    * ``asgd_heartbeat(fit_id, token, member)``
    * ``asgd_balance(fit_id, token, member, signals, settings)``
    * ``asgd_progress(fit_id, token, since)``
    * ``asgd_fit_end(fit_id, token)``

    While it is installed on a scheduler with Dask's dashboard, the dashboard
    serves a page at ``/asgd`` with the running and recently finished fits
    (see :attr:`records`).

    The callers are :class:`~dask_asgd.coordination.WorkerControlPlane` and
    :class:`~dask_asgd.coordination.FitRegistry`.
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.scheduler: Scheduler | None = None
        self.fits: dict[str, FitState] = {}
        #: What the dashboard page shows: recent fits' losses and exchanges.
        self.records = FitRecords()
        self._page: DashboardPage | None = None

    def _handlers(self) -> dict[str, Any]:
        return {
            "asgd_fit_start": self.fit_start,
            "asgd_fit_join": self.fit_join,
            "asgd_fit_end": self.fit_end,
            "asgd_epoch_report": self.epoch_report,
            "asgd_heartbeat": self.heartbeat,
            "asgd_balance": self.balance,
            "asgd_progress": self.progress,
        }

    async def start(self, scheduler: Scheduler) -> None:
        """Install the handlers on ``scheduler``."""
        self.scheduler = scheduler
        scheduler.handlers.update(self._handlers())
        self._page = add_page(scheduler, self.records)

    async def close(self) -> None:
        """Remove the handlers and the dashboard page; release every waiting
        member."""
        for fit in list(self.fits.values()):
            self._abort(fit, ABORT_ENDED, "the ASGD scheduler plugin was closed")
        self.fits.clear()
        self.records.close()
        if self._page is not None:
            self._page.remove()
            self._page = None
        if self.scheduler is not None:
            for handler_name in self._handlers():
                self.scheduler.handlers.pop(handler_name, None)

    def _log(self, **event: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.log_event(EVENT_TOPIC, event)

    def _fit(self, fit_id: str, token: str | None) -> FitState | None:
        """The fit, if it runs and ``token`` is its token."""
        fit = self.fits.get(fit_id)
        if fit is None or not isinstance(token, str):
            return None
        # Constant time: the comparison must not tell a caller how close it is.
        return fit if secrets.compare_digest(fit.token, token) else None

    # Handlers of the driver ---------------------------------------------------

    def fit_start(
        self,
        fit_id: str,
        members: dict[str, str] | list[str],
        limits: dict[str, Any],
        liveness_timeout: float | None = None,
        replace_lost: bool = False,
    ) -> str:
        """Handler: register a fit, its members and balancing limits.

        ``members`` maps each member to its worker (a list of worker
        addresses names members after their workers); ``limits`` are the
        fields of a :class:`~dask_asgd.balancing.PolicyLimits`.

        Returns
        -------
        str
            The fit's token: every later call about the fit must carry it.
        """
        if fit_id in self.fits:
            raise ValueError(f"fit {fit_id!r} is already registered")
        hosts = dict(members) if isinstance(members, dict) else {m: m for m in members}
        token = secrets.token_urlsafe(24)
        self.fits[fit_id] = FitState(
            fit_id=fit_id,
            token=token,
            members=hosts,
            policy=BalancingPolicy(PolicyLimits(**limits)),
            liveness_timeout=liveness_timeout,
            replace_lost=bool(replace_lost),
            first_epoch={m: 0 for m in hosts},
        )
        self.records.fit_started(fit_id)
        self._log(action="fit-start", fit_id=fit_id, members=sorted(hosts))
        # A worker can leave between the placement of its rows and this
        # registration: it departs now, as it would have a moment later.
        known = self.scheduler.workers if self.scheduler is not None else None
        if known is not None:
            for worker in sorted(set(hosts.values()) - set(known)):
                self._depart(self.fits[fit_id], worker)
        return token

    def fit_join(
        self, fit_id: str, member: str, worker: str, token: str = ""
    ) -> dict[str, Any]:
        """Handler: add a member from the first epoch not yet complete on.

        Returns
        -------
        dict
            ``{"status": "ok", "first_epoch": e, "replay": [totals, ...]}``
            with the sums of every epoch before ``e``, which the newcomer
            feeds to its stopping rule to take the same decisions as the
            others; or ``{"status": "refused" | "aborted", "reason": ...}``.
        """
        fit = self._fit(fit_id, token)
        if fit is None:
            return _refused(fit_id)
        if fit.abort is not None:
            return {"status": "aborted", "reason": fit.aborted}
        if self.scheduler is not None and worker not in self.scheduler.workers:
            return {"status": "refused", "reason": f"{worker} is not a worker"}
        first = len(fit.completed)
        fit.members[member] = worker
        fit.first_epoch[member] = first
        self._log(
            action="member-joined", fit_id=fit_id, member=member, worker=worker,
            epoch=first,
        )  # fmt: skip
        replay = [summary["totals"] for summary in fit.completed]
        return {"status": "ok", "first_epoch": first, "replay": replay}

    def fit_end(self, fit_id: str, token: str = "") -> dict[str, Any]:
        """Handler: forget a fit (idempotent); releases members still waiting.

        Returns
        -------
        dict
            ``{"status": "ok", "abort": {"kind", "reason", "worker"} or None}``
            (why the fit was given up before it ended, if it was), or
            ``{"status": "refused", ...}`` for a caller without the token.
        """
        fit = self._fit(fit_id, token)
        if fit is None:
            return _refused(fit_id)
        del self.fits[fit_id]
        abort = fit.abort
        self.records.fit_ended(fit_id, None if abort is None else abort["reason"])
        self._abort(fit, ABORT_ENDED, "the fit ended")
        self._log(action="fit-end", fit_id=fit_id)
        return {"status": "ok", "abort": abort}

    def progress(self, fit_id: str, since: int = 0, token: str = "") -> dict[str, Any]:
        """Handler: completed epochs from number ``since`` on, the workers that
        left, and why the fit was given up if it was."""
        fit = self._fit(fit_id, token)
        if fit is None:
            return {"epochs": [], "departures": [], "abort": None}
        return {
            "epochs": fit.completed[since:],
            "departures": list(fit.departures),
            "abort": fit.abort,
        }

    # Handlers of the members --------------------------------------------------

    def heartbeat(self, fit_id: str, member: str, token: str = "") -> dict[str, Any]:
        """Handler: a member says it is alive."""
        fit = self._fit(fit_id, token)
        if fit is None or member not in fit.members:
            return _refused(fit_id)
        fit.last_seen[member] = time.monotonic()
        return {"status": "ok" if fit.abort is None else "aborted"}

    async def epoch_report(
        self,
        fit_id: str,
        member: str,
        epoch: int,
        values: dict[str, float],
        timeout: float | None = None,
        token: str = "",
    ) -> dict[str, Any]:
        """Handler: record a member's epoch values; return the sums over members.

        Returns
        -------
        dict
            ``{"status": "ok", "totals": {...}}`` once every expected member
            reported, ``{"status": "aborted", "reason": ...}``, or
            ``{"status": "refused", ...}`` for a caller that is not a member.
        """
        fit = self._fit(fit_id, token)
        if fit is None or member not in fit.members:
            return _refused(fit_id)
        if fit.abort is not None:
            return {"status": "aborted", "reason": fit.aborted}
        fit.last_seen[member] = time.monotonic()
        if values.get("nonfinite", 0) > 0:
            self._abort_nonfinite(fit, member, epoch, values)
            return {"status": "aborted", "reason": fit.aborted}
        fit.reports[epoch][member] = {k: float(v) for k, v in values.items()}
        self.records.epoch_reported(fit_id, fit.members[member], epoch, values)
        self._complete_ready(fit)
        await self._wait_for_epoch(fit, epoch, timeout)
        if fit.abort is not None:
            return {"status": "aborted", "reason": fit.aborted}
        totals = self._totals(fit, epoch)
        # Older epochs are complete for everybody once this one is.
        for old in [e for e in fit.reports if e < epoch]:
            fit.reports.pop(old, None)
            fit.complete.pop(old, None)
        return {"status": "ok", "totals": totals}

    def balance(
        self,
        fit_id: str,
        member: str,
        signals: dict[str, Any],
        settings: dict[str, Any],
        token: str = "",
    ) -> dict[str, Any]:
        """Handler: new send interval and message size for one worker.

        ``signals`` and ``settings`` are the fields of a
        :class:`~dask_asgd.balancing.WorkerSignals` and a
        :class:`~dask_asgd.balancing.Settings`.

        Returns
        -------
        dict
            ``{"status": "ok", "settings": <Settings fields>}``, or
            ``{"status": "aborted"}`` for a fit that is not running or a
            caller that is not a member.
        """
        fit = self._fit(fit_id, token)
        if fit is None or fit.abort is not None or member not in fit.members:
            return {"status": "aborted"}
        current = Settings(**settings)
        decided = fit.policy.decide(current, WorkerSignals(**signals))
        answer = dataclasses.asdict(decided)
        self.records.balanced(fit_id, fit.members[member], signals, answer)
        if decided is not current:
            self._log(
                action="settings",
                fit_id=fit_id,
                worker=fit.members[member],
                send_interval=decided.send_interval,
                message_size=decided.message_size,
                reason=decided.reason,
            )
        return {"status": "ok", "settings": answer}

    # The barrier ------------------------------------------------------------

    def _totals(self, fit: FitState, epoch: int) -> dict[str, float]:
        for summary in reversed(fit.completed):
            if summary["epoch"] == epoch:
                return dict(summary["totals"])
        raise KeyError(epoch)  # pragma: no cover - a completed epoch is recorded

    def _complete_ready(self, fit: FitState) -> None:
        """Complete every epoch whose expected members have all reported."""
        for epoch in sorted(fit.reports):
            done = fit.complete[epoch]
            reports = fit.reports[epoch]
            expected = fit.expected(epoch)
            if done.is_set() or not expected <= set(reports):
                continue
            # Only the members of the fit count: a report of a member that
            # left before the epoch completed is not part of its sums.
            summary = {
                "epoch": epoch,
                "totals": _sums([reports[m] for m in sorted(expected)]),
                "members": len(expected),
            }
            fit.completed.append(summary)
            # No event here: the sums mean nothing to a reader; the driver
            # publishes the epoch's means as the "epoch" event.
            self.records.epoch_completed(fit.fit_id, epoch, summary["totals"])
            done.set()

    async def _wait_for_epoch(
        self, fit: FitState, epoch: int, timeout: float | None
    ) -> None:
        """Wait for the epoch's barrier; abort on timeout or a silent member."""
        done = fit.complete[epoch]
        deadline = None if timeout is None else time.monotonic() + timeout
        look = fit.liveness_timeout / 4 if fit.liveness_timeout else None
        while not done.is_set() and fit.abort is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            step = min(x for x in (remaining, look, 3600.0) if x is not None)
            try:
                await asyncio.wait_for(done.wait(), max(step, 0.0))
            except asyncio.TimeoutError:
                pass
            if done.is_set() or fit.abort is not None:
                return
            missing = sorted(fit.expected(epoch) - set(fit.reports[epoch]))
            silent = self._silent(fit, missing)
            if silent:
                self._abort(
                    fit,
                    ABORT_SILENT,
                    f"epoch {epoch}: {silent} sent no heartbeat for more than "
                    f"{fit.liveness_timeout} s (the worker is unresponsive, or its "
                    "training task ended without reporting)",
                    fit.members[silent[0]],
                )
            elif deadline is not None and time.monotonic() >= deadline:
                self._abort(
                    fit,
                    ABORT_TIMEOUT,
                    f"epoch {epoch}: workers {[fit.members[m] for m in missing]} "
                    f"did not report within {timeout} s"
                    f"{self._paused_note([fit.members[m] for m in missing])}",
                )

    def _silent(self, fit: FitState, missing: list[str]) -> list[str]:
        """Members heard from before that have been silent too long."""
        if not fit.liveness_timeout:
            return []
        now = time.monotonic()
        return [
            member
            for member in missing
            if member in fit.last_seen
            and now - fit.last_seen[member] > fit.liveness_timeout
        ]

    def _paused_note(self, addresses: list[str]) -> str:
        """Why workers may be silent: those paused by their memory monitor."""
        if self.scheduler is None:
            return ""
        paused = [
            address
            for address in addresses
            if (state := self.scheduler.workers.get(address)) is not None
            and state.status == Status.paused
        ]
        if not paused:
            return ""
        return (
            f"; {paused} are paused by their memory monitor and cannot start "
            "or continue training (thread workers of one process: use "
            "memory_limit=0)"
        )

    def _abort_nonfinite(
        self, fit: FitState, member: str, epoch: int, values: dict[str, float]
    ) -> None:
        worker = fit.members[member]
        if values.get("nonfinite_peer", 0) > 0:
            kind = ABORT_NONFINITE_PEER
            cause = "merging a state received from a peer made its model non-finite"
        else:
            kind = ABORT_NONFINITE_OWN
            cause = "its own steps on its rows made its model non-finite"
        self._abort(fit, kind, f"epoch {epoch}: on worker {worker}, {cause}", worker)
        fit.abort["epoch"] = epoch  # type: ignore[index]

    # Scheduler hooks ----------------------------------------------------------

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        """A worker left: its members leave their fits, or abort them."""
        for fit in list(self.fits.values()):
            self._depart(fit, worker)

    def _depart(self, fit: FitState, worker: str) -> None:
        """The members of ``fit`` on ``worker`` leave it, or it is aborted."""
        gone = sorted(m for m, host in fit.members.items() if host == worker)
        if not gone:
            return
        logger.warning("Worker %s left during %s", worker, fit)
        self._log(action="worker-lost", fit_id=fit.fit_id, worker=worker)
        if not fit.replace_lost:
            self._abort(fit, ABORT_WORKER_LOST, f"worker {worker} left", worker)
            return
        for member in gone:
            del fit.members[member]
        fit.departures.append(
            {
                "worker": worker,
                "members": gone,
                "epoch": len(fit.completed),
                "time": time.time(),
            }
        )
        if not fit.members:
            self._abort(
                fit, ABORT_WORKER_LOST, f"worker {worker} left, the last", worker
            )
        else:
            self._complete_ready(fit)

    def _abort(
        self, fit: FitState, kind: str, reason: str, worker: str | None = None
    ) -> None:
        if fit.abort is None:
            fit.abort = {"kind": kind, "reason": reason, "worker": worker}
            if kind != ABORT_ENDED:
                self._log(
                    action="fit-aborted", fit_id=fit.fit_id, kind=kind, reason=reason
                )
        for event in fit.complete.values():
            event.set()


def _sums(reports: list[dict[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for member_values in reports:
        for key, value in member_values.items():
            totals[key] += value
    return dict(totals)
