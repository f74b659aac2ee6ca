"""Errors of the distributed machinery (user errors use scikit-learn's types)."""

from __future__ import annotations


class ASGDError(RuntimeError):
    """Base class of the errors raised by dask-asgd's distributed machinery."""


class ExchangeError(ASGDError):
    """Base class of the errors raised by the exchange layer."""


class PluginNotInstalledError(ExchangeError):
    """The exchange plugin is missing on the worker, or there is no worker.

    Parameters
    ----------
    detail : str
        What was found instead of the plugin.
    plugin_name : str
        The name the plugin is registered under.
    """

    def __init__(self, detail: str, plugin_name: str) -> None:
        self.detail = detail
        self.plugin_name = plugin_name
        super().__init__(
            f"dask-asgd exchange calls must run in a task on a distributed Worker "
            f"with the {plugin_name!r} worker plugin installed ({detail}). Install "
            f"it with client.register_plugin(ExchangeWorkerPlugin(), "
            f"name={plugin_name!r}) before starting training tasks."
        )

    def __reduce__(self) -> tuple[type[PluginNotInstalledError], tuple[str, str]]:
        # Raised in a task on a worker, it travels to the client pickled; the
        # default reduce would call the class with the formatted message only.
        return type(self), (self.detail, self.plugin_name)


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
    """A worker taking part in a fit left the cluster, and the fit could not
    go on without it.

    A fit replaces a lost worker by default (``asgd.recovery.*``); this error
    means that no worker was left, that the lost rows could not be built
    again and all rows were required, or that replacing is switched off.

    Parameters
    ----------
    fit_id : str
        The fit's identifier.
    worker : str
        Address of the worker that left.
    detail : str, optional
        What was lost with it, and why the fit could not go on.
    """

    def __init__(self, fit_id: str, worker: str, detail: str | None = None) -> None:
        self.worker = worker
        self.detail = detail
        super().__init__(
            fit_id,
            f"worker {worker} left the cluster during the fit"
            + (f": {detail}" if detail else "")
            + ". The model of the fit is lost; call fit again to train on the "
            "workers that are left.",
        )

    def __reduce__(self) -> tuple[type[WorkerLostError], tuple[str, str, str | None]]:
        return type(self), (self.fit_id, self.worker, self.detail)
