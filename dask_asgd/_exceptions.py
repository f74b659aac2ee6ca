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
