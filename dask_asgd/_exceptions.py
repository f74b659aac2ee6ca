"""Errors of the distributed machinery (user errors use scikit-learn's types)."""

from __future__ import annotations


class ASGDError(RuntimeError):
    """Base class of the errors raised by dask-asgd's distributed machinery."""


class FitAbortedError(ASGDError):
    """A fit was given up before it finished.

    Parameters
    ----------
    fit_id : str
        The fit's identifier.
    reason : str
        Why it was given up.
    """

    def __init__(self, fit_id: str, reason: str) -> None:
        self.fit_id = fit_id
        self.reason = reason
        super().__init__(f"ASGD fit {fit_id} was aborted: {reason}")


class WorkerLostError(FitAbortedError):
    """A worker taking part in a fit left the cluster during the fit.

    Parameters
    ----------
    fit_id : str
        The fit's identifier.
    worker : str
        Address of the worker that left.
    """

    def __init__(self, fit_id: str, worker: str) -> None:
        self.worker = worker
        super().__init__(
            fit_id,
            f"worker {worker} left the cluster during the fit. Its data partitions "
            "are gone with it; call fit again to train on the remaining workers.",
        )
