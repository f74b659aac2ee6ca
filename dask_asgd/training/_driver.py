"""The fit driver: one long-running training task per worker, then the average.

The driver registers the fit with the scheduler plugin, starts one
:func:`train_worker` task pinned to each worker that holds data, waits for all
of them, and averages their states weighted by the samples each trained on
(SimuParallelSGD when workers do not communicate). Whatever happens, the fit is
unregistered and its tasks and data are released before the driver returns.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client, Future
from distributed.protocol.pickle import dumps

from .. import _config
from .._exceptions import FitAbortedError, WorkerLostError
from ..balancing import PLUGIN_NAME, ASGDSchedulerPlugin
from ..exchange import PLUGIN_NAME as EXCHANGE_PLUGIN_NAME
from ..exchange import ExchangeWorkerPlugin
from ._model_state import KMeansState, ModelState
from ._placement import Placement
from ._worker_loop import WorkerResult, train_worker

logger = logging.getLogger(__name__)


@dataclass
class FitOutcome:
    """The averaged model and what happened during the fit."""

    state: ModelState | KMeansState
    n_iter: int
    n_samples_trained: int
    history: pd.DataFrame
    #: Send interval and message size per worker over time.
    control: pd.DataFrame


def ensure_plugins(client: Client, exchange: bool) -> None:
    """Install dask-asgd's plugins on the client's cluster, once (idempotent).

    Parameters
    ----------
    client : distributed.Client
    exchange : bool
        Also install the worker plugin of the state exchange, with the link
        simulator of ``asgd.exchange.simulate.*`` as configured here (an
        installed plugin is kept, with the settings it was installed with).
    """
    client.sync(
        client.scheduler.register_scheduler_plugin,
        plugin=dumps(ASGDSchedulerPlugin()),
        name=PLUGIN_NAME,
        idempotent=True,
    )
    if exchange:
        config = _config.load()
        plugin = ExchangeWorkerPlugin(
            bandwidth=config.exchange.simulate_bandwidth,
            latency=config.exchange.simulate_latency,
        )
        client.sync(
            client.scheduler.register_worker_plugin,
            plugin=dumps(plugin),
            name=EXCHANGE_PLUGIN_NAME,
            idempotent=True,
        )


def _wait_all(futures: list[Future], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for every future; True if all are done.

    Errors are left for ``gather`` to raise. (``distributed.wait`` would need
    the client to be the default one, which the embedded client never is.)
    """
    deadline = time.monotonic() + timeout
    for future in futures:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return all(f.done() for f in futures)
        try:
            future.result(timeout=remaining)
        except TimeoutError:
            return False
        except Exception:
            continue
    return True


def _follow(
    client: Client,
    fit_id: str,
    futures: list[Future],
    progress: Callable[[dict[str, Any]], None],
    period: float = 1.0,
) -> None:
    """Report completed epochs while the training tasks run."""
    seen = 0
    while True:
        finished = _wait_all(futures, timeout=period)
        for summary in client.sync(
            client.scheduler.asgd_progress, fit_id=fit_id, since=seen
        ):
            progress(summary)
            seen += 1
        if finished:
            return


def remove_plugins(client: Client) -> None:
    """Uninstall dask-asgd's plugins and handlers from the client's cluster.

    Fits install them on first use and leave them for the next fit; call this
    to leave no trace of dask-asgd on a long-lived cluster. Running fits are
    aborted.
    """

    async def remove_scheduler_plugin(dask_scheduler: Any) -> None:
        plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
        if plugin is not None:
            await plugin.close()
            dask_scheduler.remove_plugin(name=PLUGIN_NAME)

    client.run_on_scheduler(remove_scheduler_plugin)
    registered = client.run_on_scheduler(
        lambda dask_scheduler: EXCHANGE_PLUGIN_NAME in dask_scheduler.worker_plugins
    )
    if registered:
        client.unregister_worker_plugin(EXCHANGE_PLUGIN_NAME)


def _average(results: list[WorkerResult], start: Any) -> Any:
    """The workers' states averaged, weighted by the samples each trained on."""
    shares = np.array([r.n_samples_trained for r in results], dtype=np.float64)
    if shares.sum() <= 0:
        shares = np.ones_like(shares)
    shares /= shares.sum()
    return type(start).average([r.state for r in results], shares, start)


def _history_table(addresses: list[str], results: list[WorkerResult]) -> pd.DataFrame:
    rows = [
        {"worker": address, **record}
        for address, result in zip(addresses, results, strict=True)
        for record in result.history
    ]
    return pd.DataFrame(rows)


def run_fit(
    client: Client,
    placement: Placement,
    task: Any,
    t_start: float,
    rng: np.random.Generator,
    balancing_limits: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    train: Callable[[Any, list[Any]], WorkerResult] = train_worker,
) -> FitOutcome:
    """Train on ``placement`` with one task per worker and average the results.

    Parameters
    ----------
    client : distributed.Client
    placement : Placement
        Where the rows are; workers with no training rows do not train.
    task : WorkerTask or KMeansTask
        Template of the per-worker task; ``fit_id``, ``seed`` and (for linear
        models) ``t_start`` are filled in here.
    t_start : float
        The model's sample count before this fit (scikit-learn's ``t_``);
        each worker's schedule starts at its share of it.
    rng : numpy.random.Generator
        Draws every worker's seed, on the driver, so fits are reproducible.
    balancing_limits : dict, optional
        ``PolicyLimits`` fields for the balancer of this fit.
    progress : callable, optional
        Called on the driver with ``{"epoch", "totals"}`` for every epoch the
        workers complete, while the fit runs.
    train : callable, default=train_worker
        The training task run on each worker, given its task and partitions:
        :func:`train_worker` or :func:`train_kmeans_worker`.

    Returns
    -------
    FitOutcome

    Raises
    ------
    ValueError
        If the model diverged (non-finite weights), in scikit-learn's words.
    FitAbortedError
        If the fit was given up, e.g. because a worker left.
    """
    ensure_plugins(client, exchange=task.communication != "off")
    members = [a for a in placement.partitions if placement.n_train.get(a, 0) > 0]
    if not members:
        members = list(placement.partitions)[:1]
    task = dataclasses.replace(task, peers=members)
    total_train = sum(placement.n_train[a] for a in members) or 1
    fit_id = f"asgd-{uuid.uuid4().hex[:12]}"
    client.sync(
        client.scheduler.asgd_fit_start,
        fit_id=fit_id,
        members=members,
        limits=balancing_limits or {},
    )
    futures: list[Future] = []
    try:
        for address in members:
            share = placement.n_train[address] / total_train
            identity: dict[str, Any] = {
                "fit_id": fit_id,
                "seed": int(rng.integers(np.iinfo(np.int32).max)),
            }
            if hasattr(task, "t_start"):
                identity["t_start"] = 1.0 + (t_start - 1.0) * share
            worker_task = dataclasses.replace(task, **identity)
            futures.append(
                client.submit(
                    train,
                    worker_task,
                    placement.partitions[address],
                    workers=[address],
                    allow_other_workers=False,
                    pure=False,
                    key=f"{fit_id}-train-{address}",
                )
            )
        if progress is not None:
            _follow(client, fit_id, futures, progress)
        results: list[WorkerResult] = client.gather(futures)
    except BaseException as error:
        # Release the members still training (they leave at their next epoch
        # barrier) and wait for them, so that no task, topic or datum of this
        # fit outlives the error.
        reason = client.sync(client.scheduler.asgd_fit_end, fit_id=fit_id)
        _wait_all(futures, timeout=task.epoch_timeout)
        if reason and reason.startswith("worker-lost:"):
            # Losing a worker cancels its tasks and data; say what happened.
            raise WorkerLostError(fit_id, reason.split(":", 1)[1]) from error
        raise
    finally:
        client.sync(client.scheduler.asgd_fit_end, fit_id=fit_id)
        for future in futures:
            future.cancel()
            future.release()
        placement.release()
    history = _history_table(members, results)
    for result in results:
        if result.failure == "nonfinite":
            epoch = int(history["epoch"].max()) + 1 if len(history) else 1
            raise ValueError(
                f"Floating-point under-/overflow occurred at epoch #{epoch}. Scaling "
                "input data with StandardScaler or MinMaxScaler might help."
            )
    for result in results:
        if result.failure is not None:
            if result.failure.startswith("worker-lost:"):
                raise WorkerLostError(fit_id, result.failure.split(":", 1)[1])
            raise FitAbortedError(fit_id, result.failure)
    return FitOutcome(
        state=_average(results, task.state),
        n_iter=max(r.n_iter for r in results),
        n_samples_trained=sum(r.n_samples_trained for r in results),
        history=history,
        control=pd.DataFrame(
            [
                {"worker": address, **row}
                for address, result in zip(members, results, strict=True)
                for row in result.control
            ]
        ),
    )
