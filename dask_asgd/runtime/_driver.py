"""The fit driver: one long-running training task per worker, then the average.

:func:`run_fit` registers the fit with the coordinator, starts one training
task pinned to each worker that holds rows, waits for all of them, and has the
learner average their states weighted by the samples each trained on
(SimuParallelSGD when workers do not communicate). Whatever happens, the fit
is unregistered and its tasks and rows are released before it returns. The
coordinator and the task runner are passed in: :func:`fit_on_cluster` gives
it Dask's, the tests give it fakes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .._exceptions import FitAbortedError, WorkerLostError
from ..balancing import PolicyLimits
from ..learners import ExchangedState, Learner
from ._task import FitTask, WorkerResult

logger = logging.getLogger(__name__)

#: Prefix of the coordinator's abort reason when a member left the cluster.
WORKER_LOST = "worker-lost:"


@dataclass
class FitOutcome:
    """The averaged model and what happened during the fit."""

    state: ExchangedState
    n_iter: int
    n_samples_trained: int
    #: One row per worker and epoch.
    history: pd.DataFrame
    #: Send interval and message size per worker over time.
    control: pd.DataFrame


class Coordinator(Protocol):
    """The driver's line to the coordinator (see ``coordination.FitRegistry``)."""

    def start(self, fit_id: str, members: list[str], limits: PolicyLimits) -> None:
        """Register a fit."""

    def end(self, fit_id: str) -> str | None:
        """Forget a fit; return why it was given up, if it was."""

    def progress(self, fit_id: str, since: int) -> list[dict[str, Any]]:
        """Completed epochs from number ``since`` on."""


class TaskRunner(Protocol):
    """Runs the training tasks on the workers (see ``DaskTaskRunner``)."""

    def submit(self, task: FitTask, partitions: Any, worker: str) -> Any:
        """Start ``task`` on ``worker``; return a handle."""

    def wait(self, handles: list[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every task; True if all ended."""

    def gather(self, handles: list[Any]) -> list[WorkerResult]:
        """The tasks' results, in order; raises a task's error."""

    def release(self, handles: list[Any]) -> None:
        """Cancel what still runs and forget the handles."""


class Placement(Protocol):
    """Where a fit's rows are (see ``runtime.Placement``)."""

    partitions: dict[str, Any]
    n_train: dict[str, int]

    def release(self) -> None:
        """Drop the rows placed for this fit."""


def run_fit(
    placement: Placement,
    template: FitTask,
    coordinator: Coordinator,
    runner: TaskRunner,
    rng: np.random.Generator,
    limits: PolicyLimits,
    progress: Callable[[dict[str, Any]], None] | None = None,
    poll_period: float = 1.0,
) -> FitOutcome:
    """Train on ``placement`` with one task per worker and average the results.

    Parameters
    ----------
    placement : Placement
        Where the rows are; workers with no training rows do not train.
    template : FitTask
        The task of every worker; ``fit_id``, ``seed``, ``peers`` and the
        learner's share are filled in here.
    coordinator : Coordinator
    runner : TaskRunner
    rng : numpy.random.Generator
        Draws every worker's seed, on the driver, so fits are reproducible.
    limits : PolicyLimits
        The balancer's bounds for this fit.
    progress : callable, optional
        Called with ``{"epoch", "totals"}`` for every epoch the workers
        complete, while the fit runs.
    poll_period : float, default=1.0
        Seconds between two looks at the progress.

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
    fit_id = f"asgd-{uuid.uuid4().hex[:12]}"
    tasks = worker_tasks(template, placement, fit_id, rng)
    members = list(tasks)
    coordinator.start(fit_id, members, limits)
    handles: list[Any] = []
    ended = False
    try:
        for address, task in tasks.items():
            handles.append(runner.submit(task, placement.partitions[address], address))
        if progress is not None:
            _follow(coordinator, runner, fit_id, handles, progress, poll_period)
        results = runner.gather(handles)
    except BaseException as error:
        # Release the members still training (they leave at their next epoch
        # barrier) and wait for them, so that no task, topic or row of this
        # fit outlives the error.
        reason = coordinator.end(fit_id)
        ended = True
        runner.wait(handles, template.config.training.epoch_timeout)
        if reason and reason.startswith(WORKER_LOST):
            # Losing a worker cancels its tasks and data; say what happened.
            raise WorkerLostError(fit_id, reason[len(WORKER_LOST) :]) from error
        raise
    finally:
        if not ended:
            coordinator.end(fit_id)
        runner.release(handles)
        placement.release()
    return combine(fit_id, members, results, template.learner)


def worker_tasks(
    template: FitTask, placement: Placement, fit_id: str, rng: np.random.Generator
) -> dict[str, FitTask]:
    """The task of each member: the workers holding training rows.

    A placement without training rows (everything held out) still trains on
    its first worker, so that the fit ends with a model.
    """
    members = [a for a in placement.partitions if placement.n_train.get(a, 0) > 0]
    if not members:
        members = list(placement.partitions)[:1]
    total = sum(placement.n_train.get(a, 0) for a in members) or 1
    return {
        address: dataclasses.replace(
            template,
            fit_id=fit_id,
            seed=int(rng.integers(np.iinfo(np.int32).max)),
            learner=template.learner.for_worker(
                placement.n_train.get(address, 0) / total
            ),
            peers=tuple(members),
        )
        for address in members
    }


def combine(
    fit_id: str, members: list[str], results: list[WorkerResult], learner: Learner
) -> FitOutcome:
    """The workers' results as one outcome, or the error that ended the fit."""
    history = pd.DataFrame(
        [
            {"worker": address, **record}
            for address, result in zip(members, results, strict=True)
            for record in result.history
        ]
    )
    failures = [r.failure for r in results if r.failure is not None]
    if "nonfinite" in failures:
        epoch = int(history["epoch"].max()) + 1 if len(history) else 1
        raise ValueError(
            f"Floating-point under-/overflow occurred at epoch #{epoch}. Scaling "
            "input data with StandardScaler or MinMaxScaler might help."
        )
    for failure in failures:
        if failure.startswith(WORKER_LOST):
            raise WorkerLostError(fit_id, failure[len(WORKER_LOST) :])
        raise FitAbortedError(fit_id, failure)
    shares = np.array([r.n_samples_trained for r in results], dtype=np.float64)
    if shares.sum() <= 0:
        shares = np.ones_like(shares)
    return FitOutcome(
        state=learner.average([r.state for r in results], shares / shares.sum()),
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


def _follow(
    coordinator: Coordinator,
    runner: TaskRunner,
    fit_id: str,
    handles: list[Any],
    progress: Callable[[dict[str, Any]], None],
    period: float,
) -> None:
    """Report completed epochs while the training tasks run."""
    seen = 0
    while True:
        finished = runner.wait(handles, timeout=period)
        for summary in coordinator.progress(fit_id, seen):
            progress(summary)
            seen += 1
        if finished:
            return


class DaskTaskRunner:
    """Runs training tasks as Dask tasks pinned to their workers.

    Parameters
    ----------
    client : distributed.Client
    train : callable
        The task function, given a :class:`FitTask` and its partitions.
    """

    def __init__(self, client: Any, train: Callable[..., WorkerResult]) -> None:
        self.client = client
        self.train = train

    def submit(self, task: FitTask, partitions: Any, worker: str) -> Any:
        """Start ``task`` on ``worker`` only; return its future."""
        return self.client.submit(
            self.train,
            task,
            partitions,
            workers=[worker],
            allow_other_workers=False,
            pure=False,
            key=f"{task.fit_id}-train-{worker}",
        )

    def wait(self, handles: list[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every future; True if all are done.

        Errors are left for :meth:`gather` to raise. (``distributed.wait``
        would need the client to be the default one, which the embedded
        client never is.)
        """
        deadline = time.monotonic() + timeout
        for future in handles:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return all(f.done() for f in handles)
            try:
                future.result(timeout=remaining)
            except TimeoutError:
                return False
            except Exception:
                continue
        return True

    def gather(self, handles: list[Any]) -> list[WorkerResult]:
        """The results, in order."""
        return self.client.gather(handles)

    def release(self, handles: list[Any]) -> None:
        """Cancel and release every future."""
        for future in handles:
            future.cancel()
            future.release()
