"""The errors a fit ends with, from what its workers and coordinator say."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._exceptions import FitAbortedError, WorkerLostError
from ..coordination import ABORT_NONFINITE_OWN, ABORT_NONFINITE_PEER, ABORT_WORKER_LOST
from ._task import NONFINITE_OWN, NONFINITE_PEER, WorkerResult

if TYPE_CHECKING:
    from ._supervisor import Member


def raise_for_failures(
    fit_id: str,
    members: list[Member],
    results: list[WorkerResult],
    abort: dict[str, Any] | None,
) -> None:
    """Raise the error that ended the fit early, if one did.

    A worker that found its own state non-finite comes first: the other
    members only learnt from the coordinator that the fit was given up.
    """
    for cause in (NONFINITE_OWN, NONFINITE_PEER):
        for member, result in zip(members, results, strict=True):
            if result.failure == cause:
                epoch = result.history[-1]["epoch"] + 1 if result.history else 1
                raise nonfinite_error(fit_id, member.worker, epoch, cause)
    if abort is not None and abort["kind"] != "ended":
        raise abort_error(fit_id, abort)
    for result in results:
        if result.failure is not None:
            raise FitAbortedError(fit_id, result.failure)


def nonfinite_error(fit_id: str, worker: str, epoch: int, cause: str) -> Exception:
    """The error for a worker whose state became non-finite.

    Divergence on a worker's own rows is the user's to fix, in scikit-learn's
    words; a state spoilt by a peer's message is not blamed on the input.
    """
    if cause == NONFINITE_OWN:
        return ValueError(
            f"Floating-point under-/overflow occurred at epoch #{epoch} (on worker "
            f"{worker}, in its own steps on its rows). Scaling input data with "
            "StandardScaler or MinMaxScaler might help."
        )
    return FitAbortedError(
        fit_id,
        f"at epoch #{epoch} the model of worker {worker} became non-finite when it "
        "merged a state received from a peer, not through its own rows",
    )


def abort_error(fit_id: str, abort: dict[str, Any]) -> Exception:
    """The error for the coordinator's record of why it gave the fit up."""
    worker = abort.get("worker") or "?"
    epoch = int(abort.get("epoch", 0)) + 1
    if abort["kind"] == ABORT_WORKER_LOST:
        return WorkerLostError(fit_id, worker, abort["reason"])
    if abort["kind"] == ABORT_NONFINITE_OWN:
        return nonfinite_error(fit_id, worker, epoch, NONFINITE_OWN)
    if abort["kind"] == ABORT_NONFINITE_PEER:
        return nonfinite_error(fit_id, worker, epoch, NONFINITE_PEER)
    return FitAbortedError(fit_id, abort["reason"])
