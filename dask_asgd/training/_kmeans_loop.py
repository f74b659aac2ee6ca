"""The long-running K-Means training task that runs on each worker.

The K-Means twin of :mod:`._worker_loop`: minibatch K-Means over the worker's
partitions, with the same exchange of states between minibatches, the same
epoch barrier at the scheduler and the same global stopping rule, applied to
the inertia summed over all workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import secede

from ..kernels import kmeans_pass
from ._communication import Communicator, open_communicator
from ._model_state import KMeansState
from ._stopping import Decision, StoppingRule
from ._worker_loop import (
    Partition,
    TaskCommon,
    WorkerResult,
    epoch_chunks,
    epoch_totals,
)


@dataclass(kw_only=True)
class KMeansTask(TaskCommon):
    """Everything one worker needs to train K-Means, apart from its data.

    ``tol`` is the relative decrease of the epoch's inertia required to count
    as progress; ``message_size`` a fraction of the centers' columns.
    """

    state: KMeansState
    batch_size: int


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
    with open_communicator(task) as communicator:
        return _train(task, partitions, communicator)


def _whole_minibatch_rows(task: KMeansTask, communicator: Communicator | None) -> int:
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
        for part, chunk in epoch_chunks(
            partitions, rows, rng, lambda: _whole_minibatch_rows(task, communicator)
        ):
            chunk_inertia = kmeans_pass(
                state.centers,
                state.counts,
                part.X,
                part.sample_weight,
                chunk,
                task.batch_size,
            )
            inertia += chunk_inertia
            if communicator is not None:
                communicator.after_samples(chunk.shape[0], chunk_inertia, state)
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
        totals, failure = epoch_totals(task, communicator, epoch, values, record)
        if totals is None:
            history.append(record)
            break
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
