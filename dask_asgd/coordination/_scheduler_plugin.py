"""The coordinator: fit membership, epoch barrier, progress, abort, balancing.

One :class:`ASGDSchedulerPlugin` serves every fit on a cluster. A driver
registers a fit with its member workers; at the end of each epoch every member
reports a few scalars (``asgd_epoch_report``) and waits until all members have
reported, then receives their sums. Every member therefore sees the same global
numbers and takes the same stop decision, so all workers stop together.

The plugin moves plain dicts of numbers: it knows nothing about losses or
models. Notable events go to ``scheduler.log_event("asgd", ...)``, so a client
can follow them with ``client.subscribe_topic("asgd", handler)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin

from ..balancing import BalancingPolicy, PolicyLimits, Settings, WorkerSignals

if TYPE_CHECKING:
    # Only for annotations: importing Scheduler at run time is not needed.
    from distributed import Scheduler

logger = logging.getLogger(__name__)

#: Name under which the plugin is registered on the scheduler.
PLUGIN_NAME = "asgd"
#: Topic of the events the plugin logs.
EVENT_TOPIC = "asgd"


@dataclass
class FitState:
    """What the scheduler knows about one running fit."""

    #: Identifier chosen by the driver.
    fit_id: str
    #: Addresses of the workers that train in this fit.
    members: set[str]
    #: The control law of this fit, with the limits its driver sent.
    policy: BalancingPolicy
    #: epoch -> member -> reported values.
    reports: dict[int, dict[str, dict[str, float]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    #: epoch -> event set once every member has reported.
    complete: dict[int, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    #: Set when the fit is given up; read by every waiting member.
    aborted: str | None = None
    #: Sums over members of every completed epoch, in order.
    completed: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"ASGDFit<{self.fit_id}, {len(self.members)} workers>"


class ASGDSchedulerPlugin(SchedulerPlugin):
    """Scheduler plugin that keeps fit membership and runs the epoch barrier.

    Install it once per cluster; the training driver does so on first use::

        client.register_plugin(ASGDSchedulerPlugin(), name="asgd")

    Handlers (callable through ``scheduler.<name>`` rpc by workers and clients):

    * ``asgd_fit_start(fit_id, members, limits)``
    * ``asgd_epoch_report(fit_id, member, epoch, values, timeout)``
    * ``asgd_balance(fit_id, member, signals, settings)``
    * ``asgd_progress(fit_id, since)``
    * ``asgd_fit_end(fit_id)``

    The callers are :class:`~dask_asgd.coordination.WorkerControlPlane` and
    :class:`~dask_asgd.coordination.FitRegistry`.
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.scheduler: Scheduler | None = None
        self.fits: dict[str, FitState] = {}

    def _handlers(self) -> dict[str, Any]:
        return {
            "asgd_fit_start": self.fit_start,
            "asgd_fit_end": self.fit_end,
            "asgd_epoch_report": self.epoch_report,
            "asgd_balance": self.balance,
            "asgd_progress": self.progress,
        }

    async def start(self, scheduler: Scheduler) -> None:
        """Install the handlers on ``scheduler``."""
        self.scheduler = scheduler
        scheduler.handlers.update(self._handlers())

    async def close(self) -> None:
        """Remove the handlers and release every waiting member."""
        for fit in list(self.fits.values()):
            self._abort(fit, "the ASGD scheduler plugin was closed")
        self.fits.clear()
        if self.scheduler is not None:
            for handler_name in self._handlers():
                self.scheduler.handlers.pop(handler_name, None)

    def _log(self, **event: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.log_event(EVENT_TOPIC, event)

    # Handlers -------------------------------------------------------------

    def fit_start(
        self, fit_id: str, members: list[str], limits: dict[str, Any]
    ) -> None:
        """Handler: register a fit, its member workers and balancing limits.

        ``limits`` are the fields of a :class:`~dask_asgd.balancing.PolicyLimits`.
        """
        if fit_id in self.fits:
            raise ValueError(f"fit {fit_id!r} is already registered")
        missing = [
            m for m in members if self.scheduler and m not in self.scheduler.workers
        ]
        if missing:
            raise ValueError(f"fit {fit_id!r} names unknown workers {missing}")
        self.fits[fit_id] = FitState(
            fit_id=fit_id,
            members=set(members),
            policy=BalancingPolicy(PolicyLimits(**limits)),
        )
        self._log(action="fit-start", fit_id=fit_id, members=list(members))

    def fit_end(self, fit_id: str) -> str | None:
        """Handler: forget a fit (idempotent); releases members still waiting.

        Returns
        -------
        str or None
            Why the fit was aborted before it ended, if it was.
        """
        fit = self.fits.pop(fit_id, None)
        if fit is None:
            return None
        reason = fit.aborted
        self._abort(fit, "the fit ended")
        self._log(action="fit-end", fit_id=fit_id)
        return reason

    async def epoch_report(
        self,
        fit_id: str,
        member: str,
        epoch: int,
        values: dict[str, float],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Handler: record a member's epoch values; return the sums over members.

        Returns
        -------
        dict
            ``{"status": "ok", "totals": {...}}`` once every member reported,
            or ``{"status": "aborted", "reason": ...}``.
        """
        fit = self.fits.get(fit_id)
        if fit is None:
            return {"status": "aborted", "reason": f"fit {fit_id} is not running"}
        if fit.aborted is not None:
            return {"status": "aborted", "reason": fit.aborted}
        if member not in fit.members:
            return {"status": "aborted", "reason": f"{member} is not in {fit}"}
        reports = fit.reports[epoch]
        reports[member] = dict(values)
        done = fit.complete[epoch]
        if len(reports) == len(fit.members):
            summary = {"epoch": epoch, "totals": _sums(reports)}
            fit.completed.append(summary)
            self._log(action="epoch", fit_id=fit_id, **summary)
            done.set()
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            missing = sorted(fit.members - set(reports))
            self._abort(
                fit,
                f"epoch {epoch}: workers {missing} did not report within "
                f"{timeout} s{self._paused_note(missing)}",
            )
        if fit.aborted is not None:
            return {"status": "aborted", "reason": fit.aborted}
        totals = _sums(reports)
        # Older epochs are complete for everybody once this one is.
        for old in [e for e in fit.reports if e < epoch]:
            fit.reports.pop(old, None)
            fit.complete.pop(old, None)
        return {"status": "ok", "totals": totals}

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

    def progress(self, fit_id: str, since: int = 0) -> list[dict[str, Any]]:
        """Handler: the completed epochs of a fit from number ``since`` on."""
        fit = self.fits.get(fit_id)
        return [] if fit is None else fit.completed[since:]

    def balance(
        self,
        fit_id: str,
        member: str,
        signals: dict[str, Any],
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        """Handler: new send interval and message size for one worker.

        ``signals`` and ``settings`` are the fields of a
        :class:`~dask_asgd.balancing.WorkerSignals` and a
        :class:`~dask_asgd.balancing.Settings`.

        Returns
        -------
        dict
            ``{"status": "ok", "settings": <Settings fields>}``, or
            ``{"status": "aborted"}`` for a fit that is not running.
        """
        fit = self.fits.get(fit_id)
        if fit is None or fit.aborted is not None or member not in fit.members:
            return {"status": "aborted"}
        current = Settings(**settings)
        decided = fit.policy.decide(current, WorkerSignals(**signals))
        if decided is not current:
            self._log(
                action="settings",
                fit_id=fit_id,
                worker=member,
                send_interval=decided.send_interval,
                message_size=decided.message_size,
                reason=decided.reason,
            )
        return {"status": "ok", "settings": dataclasses.asdict(decided)}

    # Scheduler hooks ----------------------------------------------------------

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        """Abort every fit that loses a member, so no member waits forever."""
        for fit in list(self.fits.values()):
            if worker in fit.members:
                logger.warning("Worker %s left during %s", worker, fit)
                self._log(action="worker-lost", fit_id=fit.fit_id, worker=worker)
                self._abort(fit, f"worker-lost:{worker}")

    def _abort(self, fit: FitState, reason: str) -> None:
        if fit.aborted is None:
            fit.aborted = reason
        for event in fit.complete.values():
            event.set()


def _sums(reports: dict[str, dict[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for member_values in reports.values():
        for key, value in member_values.items():
            totals[key] += value
    return dict(totals)
