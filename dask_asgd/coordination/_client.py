"""The coordinator's callers: a worker's and the driver's line to the plugin.

Both are thin: they turn typed requests into calls of the scheduler plugin's
handlers and the plugin's answers back into typed values. The training loop
and the driver receive them as arguments, so their tests pass fakes instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..balancing import PolicyLimits, Settings, WorkerSignals

if TYPE_CHECKING:
    from distributed import Client, Worker


@dataclass(frozen=True)
class EpochAnswer:
    """The coordinator's answer to an epoch report."""

    #: Every member's values summed; None if the fit was given up.
    totals: dict[str, float] | None
    #: Why the fit was given up, if it was.
    reason: str | None = None


class WorkerControlPlane:
    """A training task's line to the coordinator, for one fit.

    Parameters
    ----------
    fit_id : str
        The fit.
    epoch_timeout : float
        Seconds to wait at an epoch barrier for the other members.
    worker : distributed.Worker, optional
        The worker running the task; by default the current one.
    """

    def __init__(
        self, fit_id: str, epoch_timeout: float, worker: Worker | None = None
    ) -> None:
        if worker is None:
            from distributed import get_worker

            worker = get_worker()
        self.fit_id = fit_id
        self.epoch_timeout = epoch_timeout
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
            member=self.worker.address,
            epoch=epoch,
            values={key: float(value) for key, value in values.items()},
            timeout=self.epoch_timeout,
        )
        if answer["status"] != "ok":
            return EpochAnswer(None, answer["reason"])
        return EpochAnswer(answer["totals"])

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
            member=self.worker.address,
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

    Parameters
    ----------
    client : distributed.Client
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def start(self, fit_id: str, members: list[str], limits: PolicyLimits) -> None:
        """Register a fit, its members and its balancer's limits."""
        self.client.sync(
            self.client.scheduler.asgd_fit_start,
            fit_id=fit_id,
            members=members,
            limits=dataclasses.asdict(limits),
        )

    def end(self, fit_id: str) -> str | None:
        """Forget a fit; return why it was given up, if it was."""
        return self.client.sync(self.client.scheduler.asgd_fit_end, fit_id=fit_id)

    def progress(self, fit_id: str, since: int) -> list[dict[str, Any]]:
        """The epochs of the fit completed from number ``since`` on."""
        return self.client.sync(
            self.client.scheduler.asgd_progress, fit_id=fit_id, since=since
        )
