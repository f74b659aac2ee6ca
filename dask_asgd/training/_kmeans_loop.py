"""The long-running K-Means training task that runs on each worker.

The K-Means twin of :mod:`._worker_loop`: minibatch K-Means over the worker's
partitions, with the same exchange of states between minibatches, the same
epoch barrier at the scheduler and the same global stopping rule, applied to
the inertia summed over all workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from distributed import secede

from ..balancing import report_epoch
from ..kernels import kmeans_pass
from ._communication import Communicator, open_communicator
from ._model_state import KMeansState
from ._shuffle import epoch_order
from ._stopping import Decision, StoppingRule
from ._worker_loop import Partition, WorkerResult


@dataclass
class KMeansTask:
    """Everything one worker needs to train K-Means, apart from its data."""

    fit_id: str
    seed: int
    state: KMeansState
    max_iter: int
    #: Relative decrease of the epoch's inertia required to count as
    #: progress; None never stops early.
    tol: float | None
    n_iter_no_change: int
    batch_size: int
    shuffle: bool
    #: Seconds to wait at an epoch barrier before giving the fit up.
    epoch_timeout: float
    #: Samples the kernel processes per call (rounded to whole minibatches).
    chunk_samples: int = 8192
    #: Whether to synchronise epochs with the other workers (not for
    #: ``partial_fit``'s single pass).
    synchronise: bool = True
    #: "off" (SimuParallelSGD), "fixed" or "adaptive".
    communication: str = "off"
    #: Seconds between two balancing reports (adaptive only).
    report_period: float = 0.5
    #: Samples between two sends (and merges) of this worker.
    send_interval: int = 4096
    #: Fraction of the centers' columns one message carries.
    message_size: float = 1.0
    #: Apply the Parzen-window test to received centers.
    parzen_window: bool = True
    #: Addresses of every worker of the fit.
    peers: list[str] = field(default_factory=list)


def train_kmeans_worker(task: KMeansTask, partitions: list[Partition]) -> WorkerResult:
    """Run minibatch K-Means on this worker's partitions until told to stop.

    Runs as one Dask task per worker, seceded from the worker's thread pool
    like :func:`~dask_asgd.training.train_worker`.

    Parameters
    ----------
    task : KMeansTask
    partitions : list of Partition
        The rows this worker holds (``targets`` unused).

    Returns
    -------
    WorkerResult
        ``n_samples_trained`` counts rows visited; ``t_end`` is unused (0).
    """
    secede()
    communicator = open_communicator(task)
    try:
        return _train(task, partitions, communicator)
    finally:
        if communicator is not None:
            communicator.exchange.endpoint.close()


def _chunk_rows(task: KMeansTask, communicator: Communicator | None) -> int:
    # Whole minibatches per kernel call: an exchange between two halves of a
    # minibatch would test a state the minibatch has only half moved.
    rows = task.chunk_samples
    if communicator is not None:
        rows = min(rows, communicator.samples_until_send())
    return max(task.batch_size, rows // task.batch_size * task.batch_size)


def _train(
    task: KMeansTask, partitions: list[Partition], communicator: Communicator | None
) -> WorkerResult:
    rng = np.random.default_rng(task.seed) if task.shuffle else None
    state = task.state.copy()
    if communicator is not None:
        communicator.start(state)
    rows = [np.arange(p.X.shape[0], dtype=np.int64) for p in partitions]
    n_local = int(sum(r.shape[0] for r in rows))
    weight_local = float(sum(p.sample_weight.sum() for p in partitions))
    rule = StoppingRule(
        task.tol,
        task.n_iter_no_change,
        early_stopping=False,
        adaptive=False,
        relative=True,
    )
    history: list[dict[str, Any]] = []
    failure: str | None = None
    n_iter = 0
    n_visited = 0
    for epoch in range(task.max_iter):
        started = time.perf_counter()
        inertia = 0.0
        visit = (
            rng.permutation(len(partitions))
            if rng is not None
            else range(len(partitions))
        )
        for index in visit:
            part = partitions[index]
            order = epoch_order(rows[index], rng)
            position = 0
            while position < order.shape[0]:
                stop = min(position + _chunk_rows(task, communicator), order.shape[0])
                chunk_inertia = kmeans_pass(
                    state.centers,
                    state.counts,
                    part.X,
                    part.sample_weight,
                    order[position:stop],
                    task.batch_size,
                )
                inertia += chunk_inertia
                if communicator is not None:
                    communicator.after_samples(stop - position, chunk_inertia, state)
                position = stop
        n_visited += n_local
        n_iter = epoch + 1
        values = {
            "loss": inertia,
            "n_train": n_local,
            "weight": weight_local,
            "nonfinite": not state.is_finite(),
        }
        record: dict[str, Any] = {
            "epoch": epoch,
            "local_loss": inertia / max(weight_local, 1e-300),
            "samples": n_local,
            "seconds": time.perf_counter() - started,
        }
        if communicator is not None:
            record["send_interval"] = communicator.send_interval
            record.update(communicator.exchange.stats())
        if task.synchronise:
            answer = report_epoch(task.fit_id, epoch, values, task.epoch_timeout)
            if answer["status"] != "ok":
                failure = answer["reason"]
                history.append(record)
                break
            totals = answer["totals"]
        else:
            totals = values
        # Mean squared distance per unit of sample weight, over all workers.
        record["loss"] = totals["loss"] / max(totals["weight"], 1e-300)
        history.append(record)
        if totals["nonfinite"] > 0:
            failure = "nonfinite"
            break
        if rule.update(totals["loss"], totals["n_train"], 0.0) is Decision.STOP:
            break
    return WorkerResult(
        state=state,
        n_samples_trained=n_visited,
        n_iter=n_iter,
        t_end=0.0,
        history=history,
        failure=failure,
        control=communicator.control if communicator is not None else [],
    )
