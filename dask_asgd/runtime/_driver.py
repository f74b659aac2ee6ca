"""The fit driver: one long-running training task per worker, then the average.

:func:`run_fit` registers the fit with the coordinator, starts one training
task pinned to each worker that holds rows, follows them (a
:class:`FitSupervisor` reports progress and replaces the tasks of workers
that leave), and has the learner average their states weighted by the
samples each trained on (SimuParallelSGD when workers do not communicate).
Whatever happens, the fit is unregistered and its tasks and rows are
released before it returns. The coordinator, the task runner and the
re-placement of lost rows are passed in: :func:`fit_on_cluster` gives it
Dask's, the tests give it fakes.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .._exceptions import ASGDError
from ..balancing import PolicyLimits
from ..coordination import Joined, Progress
from ..learners import ExchangedState, Learner
from ._errors import abort_error, raise_for_failures
from ._recovery import Replacer
from ._supervisor import FitSupervisor, Member
from ._task import FitTask, WorkerResult

logger = logging.getLogger(__name__)


@dataclass
class FitOutcome:
    """The averaged model and what happened during the fit."""

    state: ExchangedState
    n_iter: int
    #: The fit's identifier, as in its events, task keys and topic.
    fit_id: str
    n_samples_trained: int
    #: One row per worker and epoch, and one per event (a lost worker, rows
    #: placed again).
    history: pd.DataFrame
    #: Send interval and message size per worker over time.
    control: pd.DataFrame


class Coordinator(Protocol):
    """The driver's line to the coordinator (see ``coordination.FitRegistry``)."""

    def start(
        self,
        fit_id: str,
        members: dict[str, str],
        limits: PolicyLimits,
        liveness_timeout: float | None = None,
        replace_lost: bool = False,
    ) -> str:
        """Register a fit (members: name -> worker); return its token."""

    def join(self, fit_id: str, member: str, worker: str) -> Joined:
        """Add a member from the first epoch not yet complete on."""

    def end(self, fit_id: str) -> dict[str, Any] | None:
        """Forget a fit; return why it was given up, if it was."""

    def progress(self, fit_id: str, since: int) -> Progress:
        """Completed epochs from number ``since`` on, and departed workers."""

    def log_event(self, event: dict[str, Any]) -> None:
        """Publish ``event`` on the cluster's ``"asgd"`` event topic."""


class TaskRunner(Protocol):
    """Runs the training tasks on the workers (see ``DaskTaskRunner``)."""

    def submit(self, task: FitTask, partitions: Any, worker: str) -> Any:
        """Start ``task`` on ``worker``; return a handle."""

    def wait(self, handles: list[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every task; True if all ended."""

    def state(self, handle: Any) -> str:
        """``"running"``, ``"done"`` or ``"failed"``."""

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
    poll_period: float = 0.5,
    replacer: Replacer | None = None,
    label: str = "asgd",
    epoch_means: Callable[[dict[str, float]], dict[str, float]] | None = None,
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
        Called with ``{"fit_id", "epoch", "totals", "elapsed", ...}`` and the
        epoch's means for every epoch the workers complete, while the fit
        runs (see :meth:`FitSupervisor.look`).
    poll_period : float, default=0.5
        Seconds between two looks at the fit's progress and membership.
    replacer : Replacer, optional
        Builds a lost worker's rows again on the survivors; without it, a
        lost worker fails the fit.
    label : str, default="asgd"
        What trains (the estimator's name): the fit's identifier is
        ``<label>-<12 hex digits>`` and its tasks' keys
        ``<label>-train-<hex digits>-<member>``, which Dask's dashboard
        groups as ``<label>-train``.
    epoch_means : callable, optional
        Turns an epoch's sums over workers into the means its ``"epoch"``
        event and ``progress`` carry (``{"loss": ...}``); the model knows
        what to divide by, the runtime does not.

    Returns
    -------
    FitOutcome

    Raises
    ------
    ValueError
        If the model diverged on a worker's own rows, in scikit-learn's words.
    WorkerLostError
        If a worker left and the fit could not go on without it.
    FitAbortedError
        If the fit was given up for another reason.
    """
    fit_id = f"{label}-{uuid.uuid4().hex[:12]}"
    tasks = worker_tasks(template, placement, fit_id, rng)
    token = coordinator.start(
        fit_id,
        {name: name for name in tasks},
        limits,
        template.config.training.liveness_timeout,
        replacer is not None,
    )
    supervisor = FitSupervisor(
        fit_id,
        token,
        template,
        coordinator,
        runner,
        rng,
        replacer,
        progress,
        sum(placement.n_train.get(name, 0) for name in tasks),
        epoch_means,
    )
    abort: dict[str, Any] | None = None
    ended = False
    try:
        for address, task in tasks.items():
            task = dataclasses.replace(task, token=token)
            n_train = placement.n_train.get(address, 0)
            supervisor.submit(task, placement.partitions[address], address, n_train)
        # A worker lost between placement and registration is known now:
        # its rows are placed again before the survivors get far.
        supervisor.look()
        results = supervisor.supervise(poll_period)
    except BaseException as error:
        # Release the members still training (they leave at their next epoch
        # barrier) and wait for them, so that no task, topic or row of this
        # fit outlives the error.
        abort = coordinator.end(fit_id)
        ended = True
        # Not for a member on the worker the fit was given up for: a silent
        # one may never end.
        silent = abort.get("worker") if abort is not None else None
        runner.wait(
            supervisor.handles(except_on=silent),
            template.config.training.epoch_timeout,
        )
        if abort is not None and not isinstance(error, (ASGDError, ValueError)):
            raise abort_error(fit_id, abort) from error
        raise
    finally:
        if not ended:
            abort = coordinator.end(fit_id)
        runner.release(supervisor.handles())
        placement.release()
    members = list(supervisor.members.values())
    return combine(fit_id, members, results, template.learner, abort, supervisor.events)


def worker_tasks(
    template: FitTask, placement: Placement, fit_id: str, rng: np.random.Generator
) -> dict[str, FitTask]:
    """The task of each member: the workers holding training rows.

    A placement without training rows (everything held out) still trains on
    its first worker, so that the fit ends with a model. Each member is
    named after its worker.
    """
    members = [a for a in placement.partitions if placement.n_train.get(a, 0) > 0]
    if not members:
        members = list(placement.partitions)[:1]
    total = sum(placement.n_train.get(a, 0) for a in members) or 1
    return {
        address: dataclasses.replace(
            template,
            fit_id=fit_id,
            member=address,
            seed=int(rng.integers(np.iinfo(np.int32).max)),
            learner=template.learner.for_worker(
                placement.n_train.get(address, 0) / total
            ),
            peers=tuple(members),
        )
        for address in members
    }


def combine(
    fit_id: str,
    members: list[Member],
    results: list[WorkerResult],
    learner: Learner,
    abort: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> FitOutcome:
    """The workers' results as one outcome, or the error that ended the fit."""
    history = pd.DataFrame(
        [
            {"worker": member.worker, **_replaces(member), **record}
            for member, result in zip(members, results, strict=True)
            for record in result.history
        ]
        + list(events or [])
    )
    raise_for_failures(fit_id, members, results, abort)
    shares = np.array([r.n_samples_trained for r in results], dtype=np.float64)
    if shares.sum() <= 0:
        shares = np.ones_like(shares)
    return FitOutcome(
        fit_id=fit_id,
        state=learner.average([r.state for r in results], shares / shares.sum()),
        n_iter=max(r.n_iter for r in results),
        n_samples_trained=sum(r.n_samples_trained for r in results),
        history=history,
        control=pd.DataFrame(
            [
                {"worker": member.worker, **row}
                for member, result in zip(members, results, strict=True)
                for row in result.control
            ]
        ),
    )


def _replaces(member: Member) -> dict[str, str]:
    return {} if member.replaces is None else {"replaces": member.replaces}


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
            key=task_key(task.fit_id, task.member or worker),
        )

    def wait(self, handles: list[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every future; True if all are done.

        Only the futures' states are awaited, not their results: waiting with
        ``Future.result`` downloaded every worker's state, one worker after
        the other, and :meth:`gather` downloaded them again (two 3.2 MB
        states over 10 Mbit/s links took 5.4 s to come back instead of 2.7).
        Errors are left for :meth:`gather` to raise. ``distributed.wait``
        finds its client as the current one, which the embedded client is
        made here.
        """
        from distributed import wait

        with self.client.as_current():
            try:
                wait(handles, timeout=timeout)
            except TimeoutError:
                return False
            except Exception:
                # Cancelled futures are done too; gather raises their error.
                pass
        return all(future.done() for future in handles)

    def state(self, handle: Any) -> str:
        """``"running"``, ``"done"`` or ``"failed"`` (erred, cancelled, lost)."""
        status = handle.status
        if status == "finished":
            return "done"
        return "running" if status == "pending" else "failed"

    def gather(self, handles: list[Any]) -> list[WorkerResult]:
        """The results, in order."""
        return self.client.gather(handles)

    def release(self, handles: list[Any]) -> None:
        """Cancel the futures still running; release every future.

        A finished task is only released: cancelling it too would make the
        scheduler log "Scheduler cancels key" after every successful fit.
        """
        for future in handles:
            if not future.done():
                future.cancel()
            future.release()


def task_key(fit_id: str, member: str) -> str:
    """The Dask key of a member's training task.

    ``<label>-train-<hex>-<member>`` for the fit ``<label>-<hex>``: Dask's
    dashboard groups keys by their prefix (``dask.utils.key_split``), which
    stops at the hex digits, so every training task of an estimator's fits
    shows as one ``<label>-train`` group.
    """
    label, _, digits = fit_id.rpartition("-")
    return f"{label or fit_id}-train-{digits}-{member}"


def parse_task_key(key: str) -> tuple[str, str]:
    """The fit and the member of a training task's key: the inverse of
    :func:`task_key`."""
    label, _, rest = key.partition("-train-")
    digits, _, member = rest.partition("-")
    return f"{label}-{digits}", member
