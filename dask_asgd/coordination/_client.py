"""The coordinator's callers: a worker's and the driver's line to the plugin.

Both are thin: they turn typed requests into calls of the scheduler plugin's
handlers and the plugin's answers back into typed values. The training loop
and the driver receive them as arguments, so their tests pass fakes instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..balancing import PolicyLimits, Settings, WorkerSignals
from ._scheduler_plugin import EVENT_TOPIC

if TYPE_CHECKING:
    from distributed import Client, Worker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochAnswer:
    """The coordinator's answer to an epoch report."""

    #: Every member's values summed; None if the fit was given up.
    totals: dict[str, float] | None
    #: Why the fit was given up, if it was.
    reason: str | None = None


@dataclass(frozen=True)
class Joined:
    """Where a member that joins a running fit starts."""

    #: The first epoch it reports.
    first_epoch: int
    #: The sums of every epoch before ``first_epoch``, in order.
    replay: tuple[dict[str, float], ...] = ()


@dataclass(frozen=True)
class Progress:
    """What the driver learns from one look at its fit."""

    #: Completed epochs: ``{"epoch", "totals", "members"}``.
    epochs: list[dict[str, Any]]
    #: Every worker that left so far: ``{"worker", "members", "epoch", "time"}``.
    departures: list[dict[str, Any]]
    #: Why the fit was given up (``kind``, ``reason``, ``worker``), if it was.
    abort: dict[str, Any] | None = None


class WorkerControlPlane:
    """A training task's line to the coordinator, for one fit.

    Parameters
    ----------
    fit_id : str
        The fit.
    token : str
        The fit's token, which the coordinator asks of every call.
    member : str
        This training task's name in the fit.
    epoch_timeout : float
        Seconds to wait at an epoch barrier for the other members.
    liveness_timeout : float or None
        The coordinator's limit of silence; :meth:`heartbeats` beats five
        times per limit. None sends no heartbeat.
    worker : distributed.Worker, optional
        The worker running the task; by default the current one.
    """

    def __init__(
        self,
        fit_id: str,
        token: str,
        member: str,
        epoch_timeout: float,
        liveness_timeout: float | None = None,
        worker: Worker | None = None,
    ) -> None:
        if worker is None:
            from distributed import get_worker

            worker = get_worker()
        self.fit_id = fit_id
        self.token = token
        self.member = member
        self.epoch_timeout = epoch_timeout
        self.liveness_timeout = liveness_timeout
        self.worker = worker

    def report_epoch(self, epoch: int, values: dict[str, float]) -> EpochAnswer:
        """Send this worker's epoch values; wait for the sums over all members.

        Called from the training thread; the call runs on the worker's event
        loop, so the worker keeps serving peers and heartbeats while it waits.
        """
        from distributed.utils import sync

        answer = sync(
            self.worker.loop,
            self.worker.scheduler.asgd_epoch_report,
            fit_id=self.fit_id,
            token=self.token,
            member=self.member,
            epoch=epoch,
            values={key: float(value) for key, value in values.items()},
            timeout=self.epoch_timeout,
        )
        if answer["status"] != "ok":
            return EpochAnswer(None, answer["reason"])
        return EpochAnswer(answer["totals"])

    @contextmanager
    def heartbeats(self) -> Iterator[None]:
        """Tell the coordinator this member is alive while the block runs.

        The beats come from the worker's event loop, not the training thread:
        a long kernel call is no silence, a frozen or dead process is.
        """
        if not self.liveness_timeout:
            yield
            return
        period = self.liveness_timeout / 5
        stop = asyncio.Event()

        async def beat() -> None:
            while not stop.is_set():
                try:
                    await self.worker.scheduler.asgd_heartbeat(
                        fit_id=self.fit_id, token=self.token, member=self.member
                    )
                except (OSError, RuntimeError):  # pragma: no cover - shutting down
                    logger.debug("Heartbeat failed", exc_info=True)
                try:
                    await asyncio.wait_for(stop.wait(), period)
                except asyncio.TimeoutError:
                    pass

        loop = self.worker.loop.asyncio_loop
        beating = asyncio.run_coroutine_threadsafe(beat(), loop)
        try:
            yield
        finally:
            loop.call_soon_threadsafe(stop.set)
            beating.cancel()

    def request_settings(
        self, signals: WorkerSignals, current: Settings
    ) -> concurrent.futures.Future:
        """Send this worker's signals to the balancer; return at once.

        Returns
        -------
        concurrent.futures.Future
            Resolves to the new :class:`Settings`, or None when the fit is no
            longer running.
        """
        call = self.worker.scheduler.asgd_balance(
            fit_id=self.fit_id,
            token=self.token,
            member=self.member,
            signals=dataclasses.asdict(signals),
            settings=dataclasses.asdict(current),
        )
        raw = asyncio.run_coroutine_threadsafe(call, self.worker.loop.asyncio_loop)
        decided: concurrent.futures.Future = concurrent.futures.Future()

        def settle(done: concurrent.futures.Future) -> None:
            if done.cancelled():
                decided.cancel()
            elif done.exception() is not None:
                decided.set_exception(done.exception())
            else:
                answer = done.result()
                decided.set_result(
                    Settings(**answer["settings"]) if answer.get("settings") else None
                )

        raw.add_done_callback(settle)
        return decided


class FitRegistry:
    """The driver's line to the coordinator: register, follow and end fits.

    It keeps the token of each fit it started and sends it with every call.

    Parameters
    ----------
    client : distributed.Client
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._tokens: dict[str, str] = {}

    def start(
        self,
        fit_id: str,
        members: dict[str, str],
        limits: PolicyLimits,
        liveness_timeout: float | None = None,
        replace_lost: bool = False,
    ) -> str:
        """Register a fit, its members (name -> worker) and its balancer's limits.

        Returns
        -------
        str
            The fit's token, for its members.
        """
        token = self.client.sync(
            self.client.scheduler.asgd_fit_start,
            fit_id=fit_id,
            members=dict(members),
            limits=dataclasses.asdict(limits),
            liveness_timeout=liveness_timeout,
            replace_lost=replace_lost,
        )
        self._tokens[fit_id] = token
        return token

    def join(self, fit_id: str, member: str, worker: str) -> Joined:
        """Add a member on ``worker`` from the first epoch not yet complete on.

        Raises
        ------
        RuntimeError
            If the coordinator refused it (the fit is over, or the worker gone).
        """
        answer = self.client.sync(
            self.client.scheduler.asgd_fit_join,
            fit_id=fit_id,
            token=self._tokens.get(fit_id, ""),
            member=member,
            worker=worker,
        )
        if answer["status"] != "ok":
            raise RuntimeError(f"{member} could not join fit {fit_id}: {answer}")
        return Joined(answer["first_epoch"], tuple(answer["replay"]))

    def end(self, fit_id: str) -> dict[str, Any] | None:
        """Forget a fit; return why it was given up (``kind``, ``reason``,
        ``worker``), if it was."""
        answer = self.client.sync(
            self.client.scheduler.asgd_fit_end,
            fit_id=fit_id,
            token=self._tokens.pop(fit_id, ""),
        )
        return answer.get("abort")

    def progress(self, fit_id: str, since: int) -> Progress:
        """The epochs of the fit completed from number ``since`` on, and the
        workers that left it."""
        answer = self.client.sync(
            self.client.scheduler.asgd_progress,
            fit_id=fit_id,
            token=self._tokens.get(fit_id, ""),
            since=since,
        )
        return Progress(answer["epochs"], answer["departures"], answer["abort"])

    def log_event(self, event: dict[str, Any]) -> None:
        """Publish ``event`` on the ``"asgd"`` topic of the cluster's events
        (``client.get_events("asgd")``, ``client.subscribe_topic``)."""
        self.client.log_event(EVENT_TOPIC, event)
