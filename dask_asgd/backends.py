"""Where a fit runs: the current distributed Client, or an embedded cluster.

Order of precedence:

1. Inside a Dask task (for example ``GridSearchCV`` on the joblib Dask backend):
   the worker's own client, through :func:`distributed.worker_client`, which
   secedes the calling task so that the fit's training tasks can run.
2. The current default :class:`distributed.Client` (the one a user created in
   a notebook, or ``with Client(...)``).
3. An embedded :class:`distributed.LocalCluster`, started on first use, reused
   by later fits in the process and shut down at interpreter exit. It is never
   made the default client, so it does not capture the user's other Dask work.
   In a joblib worker process (``GridSearchCV(n_jobs=-1)`` without a client)
   it has one worker by default: joblib already runs one process per core.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import distributed

from . import _config
from ._config import EmbeddedConfig, ExchangeConfig

logger = logging.getLogger(__name__)

_embedded_lock = threading.Lock()
_embedded: tuple[distributed.LocalCluster, distributed.Client] | None = None


def _inside_worker_task() -> bool:
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


#: Modules of loky's process executor, vendored in joblib or on its own. Each
#: records in ``_CURRENT_DEPTH`` how deeply its process is nested in loky
#: pools: 0 in a process that loky did not start.
_LOKY_EXECUTOR_MODULES = (
    "joblib.externals.loky.process_executor",
    "loky.process_executor",
)


def inside_joblib_worker_process() -> bool:
    """Whether this process is a worker of a joblib (or multiprocessing) pool.

    loky, joblib's default backend, marks its workers by their nesting depth
    (the same mark it uses to limit nested pools); joblib's
    ``"multiprocessing"`` backend runs a :class:`multiprocessing.pool.Pool`,
    whose workers are named ``...PoolWorker-<n>``. Dask's worker processes
    are neither.

    Returns
    -------
    bool
    """
    for name in _LOKY_EXECUTOR_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_CURRENT_DEPTH", 0) > 0:
            return True
    return "PoolWorker" in multiprocessing.current_process().name


def embedded_workers(settings: EmbeddedConfig) -> int:
    """Workers the embedded cluster starts with: ``asgd.embedded.n-workers``,
    else one in a joblib worker process and one per CPU core elsewhere.

    A search that runs one fit per core in joblib's processes would
    otherwise start cores x cores training threads, each fit slowed by the
    others and by starting a cluster of its size.

    Parameters
    ----------
    settings : EmbeddedConfig

    Returns
    -------
    int
    """
    if settings.n_workers:
        return int(settings.n_workers)
    if inside_joblib_worker_process():
        return 1
    return os.cpu_count() or 1


def embedded_client() -> distributed.Client:
    """Return the embedded cluster's client, starting the cluster if needed.

    Returns
    -------
    distributed.Client
        A client of a :class:`distributed.LocalCluster` private to this
        process, configured by the ``asgd.embedded.*`` keys (see
        :func:`embedded_workers` for its size).
    """
    global _embedded
    with _embedded_lock:
        if _embedded is not None and _embedded[1].status == "running":
            return _embedded[1]
        settings = _config.load().embedded
        n_workers = embedded_workers(settings)
        processes = settings.processes
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=settings.threads_per_worker,
            processes=processes,
            # Thread workers share this process: each worker's memory monitor
            # would compare the whole process's memory (the user's data
            # included) with its 1/n share of the machine and pause, and a
            # paused worker never starts its training task. Memory here is
            # the user's own, as with scikit-learn; only process workers get
            # distributed's per-worker limits.
            memory_limit="auto" if processes else 0,
            # A random port: a fixed one clashes with the user's own clusters.
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        client = distributed.Client(cluster, set_as_default=False)
        logger.info(
            "Started embedded cluster with %d workers (processes=%s)",
            n_workers,
            processes,
        )
        _embedded = (cluster, client)
        return client


def shutdown_embedded() -> None:
    """Close the embedded cluster, if one was started. Safe to call twice."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            return
        cluster, client = _embedded
        _embedded = None
    with contextlib.suppress(Exception):
        client.close()
    with contextlib.suppress(Exception):
        cluster.close()


def _shutdown_embedded_at_exit() -> None:
    """Close the embedded cluster as the interpreter exits, quietly.

    The cluster runs with distributed's logs silenced and gives the old level
    back when it closes; comms still closing after that log their
    ``CommClosedError`` with a traceback (seen in loky worker processes of
    a ``GridSearchCV(n_jobs=2)``). Nothing the user needs follows at exit, so
    distributed's logs stay at errors only.
    """
    quiet = logging.getLogger("distributed")
    quiet.setLevel(logging.ERROR)
    shutdown_embedded()
    # Closing the cluster gave back the level it found when it started.
    quiet.setLevel(logging.ERROR)


atexit.register(_shutdown_embedded_at_exit)


@contextlib.contextmanager
def connect() -> Iterator[distributed.Client]:
    """Yield the client a fit should use (see the module docstring).

    Yields
    ------
    distributed.Client
    """
    if _inside_worker_task():
        with distributed.worker_client(separate_thread=True) as client:
            yield client
        return
    try:
        client = distributed.default_client()
    except ValueError:
        client = embedded_client()
    yield client


def install_plugins(
    client: distributed.Client, exchange_config: ExchangeConfig, exchange: bool
) -> None:
    """Install dask-asgd's plugins on the client's cluster, once (idempotent).

    The coordinator goes on the scheduler; with ``exchange``, the state
    exchange's plugin goes on every worker (with the link simulator of
    ``exchange_config``, if one is set).

    Parameters
    ----------
    client : distributed.Client
    exchange_config : ExchangeConfig
        The ``asgd.exchange`` settings read on the driver.
    exchange : bool
        Also install the worker plugin of the state exchange.
    """
    from distributed.protocol.pickle import dumps

    from .coordination import PLUGIN_NAME, ASGDSchedulerPlugin
    from .exchange import PLUGIN_NAME as EXCHANGE_PLUGIN_NAME
    from .exchange import ExchangeWorkerPlugin

    client.sync(
        client.scheduler.register_scheduler_plugin,
        plugin=dumps(ASGDSchedulerPlugin()),
        name=PLUGIN_NAME,
        idempotent=True,
    )
    if exchange:
        client.sync(
            client.scheduler.register_worker_plugin,
            plugin=dumps(
                ExchangeWorkerPlugin(
                    bandwidth=exchange_config.simulate_bandwidth,
                    latency=exchange_config.simulate_latency,
                )
            ),
            name=EXCHANGE_PLUGIN_NAME,
            idempotent=True,
        )


def remove_plugins(client: distributed.Client) -> None:
    """Uninstall dask-asgd's scheduler and worker plugins from ``client``'s cluster.

    Fits install them once per cluster and keep them for later fits; call
    this on a long-lived cluster to leave no handler behind. Running fits are
    aborted.

    Parameters
    ----------
    client : distributed.Client
    """
    from .coordination import PLUGIN_NAME
    from .exchange import PLUGIN_NAME as EXCHANGE_PLUGIN_NAME

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
