"""Run one fit on the cluster: the entry point the estimators call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _config
from ..backends import connect, install_plugins
from ..coordination import FitRegistry
from ..learners import Learner
from ._communicator import policy_limits
from ._driver import DaskTaskRunner, FitOutcome, run_fit
from ._placement import DaskRows, InMemoryRows, cluster_workers
from ._recovery import ClusterReplacer
from ._task import ExchangeOptions, FitTask
from ._worker_loop import train_worker


def fit_on_cluster(
    rows: InMemoryRows | DaskRows,
    learner: Learner,
    *,
    max_iter: int,
    shuffle: bool,
    synchronise: bool,
    exchange: ExchangeOptions,
    n_workers: int | None,
    min_rows_per_worker: int,
    rng: np.random.Generator,
    config: _config.Config,
    progress: Callable[[dict[str, Any]], None] | None = None,
    label: str = "asgd",
    epoch_means: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> FitOutcome:
    """Place ``rows`` on the cluster's workers and train ``learner`` there.

    Uses the current client or the embedded cluster, and ships ``config``
    to the workers inside the task.

    Parameters
    ----------
    rows : InMemoryRows or DaskRows
        The training rows, as the estimator validated them.
    learner : Learner
        The model and where it starts.
    max_iter : int
        Epochs at most.
    shuffle : bool
        Assign in-memory rows to workers at random and visit rows in a new
        random order each epoch.
    synchronise : bool
        Meet at the coordinator's barrier after each epoch (False for a
        single pass, which has nothing to decide).
    exchange : ExchangeOptions
        How workers exchange states.
    n_workers : int or None
        Train on at most this many workers.
    min_rows_per_worker : int
        Use fewer workers rather than give one fewer in-memory rows.
    rng : numpy.random.Generator
        Draws the placement's shuffling and every worker's seed.
    config : Config
        The ``asgd.*`` settings, read once when the fit started.
    progress : callable, optional
        Called with every completed epoch while the fit runs (see
        :func:`run_fit`).
    label : str, default="asgd"
        What trains: the start of the fit's identifier and its task keys.
    epoch_means : callable, optional
        An epoch's means from its sums, for its event and ``progress``.

    Returns
    -------
    FitOutcome
    """
    with connect() as client:
        install_plugins(client, config.exchange, exchange.communication != "off")
        workers = cluster_workers(client, n_workers)
        placement = rows.place(client, workers, rng, shuffle, min_rows_per_worker)
        try:
            template = FitTask(
                fit_id="",
                seed=0,
                learner=learner,
                max_iter=int(max_iter),
                shuffle=bool(shuffle),
                synchronise=synchronise,
                exchange=exchange,
                config=config,
            )
            registry = FitRegistry(client)
            runner = DaskTaskRunner(client, train_worker)
        except BaseException:
            # run_fit releases the rows from its start on; before, this does.
            placement.release()
            raise
        return run_fit(
            placement,
            template,
            registry,
            runner,
            rng,
            policy_limits(config.balancing),
            progress,
            replacer=(
                ClusterReplacer(client, rows, placement)
                if config.recovery.replace_lost_workers
                else None
            ),
            label=label,
            epoch_means=epoch_means,
        )
