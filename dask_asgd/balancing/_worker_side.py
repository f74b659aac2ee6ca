"""What a training task calls to talk to the scheduler plugin."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from distributed import get_worker
from distributed.utils import sync


def report_epoch(
    fit_id: str, epoch: int, values: dict[str, float], timeout: float
) -> dict[str, Any]:
    """Send this worker's epoch values and wait for the sums over all members.

    Called from the training thread; the call runs on the worker's event loop,
    so the worker keeps serving peers and heartbeats while it waits.

    Parameters
    ----------
    fit_id : str
        The fit's identifier.
    epoch : int
        Epoch number, from 0.
    values : dict of str to float
        Numbers to add up over the members.
    timeout : float
        Seconds to wait for the other members before the fit is aborted.

    Returns
    -------
    dict
        The plugin's answer (see ``ASGDSchedulerPlugin.epoch_report``).
    """
    worker = get_worker()
    return sync(
        worker.loop,
        worker.scheduler.asgd_epoch_report,
        fit_id=fit_id,
        member=worker.address,
        epoch=epoch,
        values={key: float(value) for key, value in values.items()},
        timeout=timeout,
    )


def request_settings(
    fit_id: str,
    signals: dict[str, float],
    settings: dict[str, float],
) -> concurrent.futures.Future:
    """Send this worker's signals to the balancer; return at once.

    Parameters
    ----------
    fit_id : str
        The fit's identifier.
    signals : dict
        ``WorkerSignals`` fields measured over the last period.
    settings : dict
        The worker's current ``send_interval`` and ``message_size``.

    Returns
    -------
    concurrent.futures.Future
        Resolves to the plugin's answer: ``{"status": "ok", "send_interval":
        ..., "message_size": ..., "reason": ...}``.
    """
    worker = get_worker()
    call = worker.scheduler.asgd_balance(
        fit_id=fit_id,
        member=worker.address,
        signals=signals,
        settings=settings,
    )
    return asyncio.run_coroutine_threadsafe(call, worker.loop.asyncio_loop)
