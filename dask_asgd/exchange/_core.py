"""Identifiers, message and spec types, config lookup and plugin lookup.

Nothing here touches the network: these are the plain types that the mailbox,
the sending side (:mod:`._comms`) and the worker plugin share.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.utils import parse_bytes, parse_timedelta

from dask_asgd import _config
from dask_asgd._exceptions import ASGDError

if TYPE_CHECKING:
    # Only for annotations: a runtime import of the worker module is not needed
    # and keeps this module importable in processes that never start a worker.
    from distributed import Worker

    from ._worker_plugin import ExchangeWorkerPlugin

logger = logging.getLogger(__name__)

#: Name under which :class:`ExchangeWorkerPlugin` is registered on workers.
PLUGIN_NAME = "asgd-exchange"
#: Worker handler (rpc) that receives a published message.
RECEIVE_HANDLER = "asgd_exchange_receive"
#: Worker stream handler that updates a topic's peers (membership changes).
PEERS_HANDLER = "asgd_exchange_peers"

#: Defaults of the ``asgd.exchange.*`` config keys, used when a key is unset.
#: ``mailbox-slots`` and ``max-in-flight`` follow the paper's small buffers and
#: the gossip prototype (NOTES.md Q8: "at most one in flight, drop if busy"
#: bounded memory and worked; 2 lets a send overlap the next snapshot).
#: ``send-timeout`` bounds what a dead peer costs: without it a connect to a
#: dead address retries for ``distributed.comm.timeouts.connect`` = 30 s
#: (NOTES.md Q5); 2 s is still 300x the 8 MB transfer time measured there.
#: ``min-bandwidth`` adds time for the bytes on top, so that a large state on
#: a slow but live link (3.2 MB at 10 Mbit/s takes 2.6 s) is not cut off and
#: counted as failed while it still occupies the link.
CONFIG_DEFAULTS: dict[str, Any] = {
    "mailbox-slots": 4,
    "max-in-flight": 2,
    "send-timeout": "2s",
    "min-bandwidth": "1MB",
    "simulate.bandwidth": None,
    "simulate.latency": 0,
}


class ExchangeError(ASGDError):
    """Base class of the errors raised by the exchange layer."""


class PluginNotInstalledError(ExchangeError):
    """The exchange plugin is missing on the worker, or there is no worker.

    Parameters
    ----------
    detail : str
        What was found instead of the plugin.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"dask-asgd exchange calls must run in a task on a distributed Worker "
            f"with the {PLUGIN_NAME!r} worker plugin installed ({detail}). Install "
            f"it with client.register_plugin(ExchangeWorkerPlugin(), "
            f"name={PLUGIN_NAME!r}) before starting training tasks."
        )


def new_run_id() -> str:
    """Return a fresh, unique run identifier.

    Returns
    -------
    str
        32 hexadecimal characters (a random UUID).
    """
    return uuid.uuid4().hex


def config_value(key: str) -> Any:
    """Return ``asgd.exchange.<key>`` from the Dask config, or its default.

    Parameters
    ----------
    key : str
        Key below ``asgd.exchange``, e.g. ``"send-timeout"``.

    Returns
    -------
    object
        The configured value, or the entry of :data:`CONFIG_DEFAULTS`.
    """
    return _config.get(f"exchange.{key}", CONFIG_DEFAULTS[key])


def parse_timeout(value: Any, name: str) -> float | None:
    """Parse a duration (``"2s"``, ``0.5``) to seconds; ``None`` stays ``None``.

    Parameters
    ----------
    value : str, float or None
        The duration.
    name : str
        The setting's name, for the error message.

    Returns
    -------
    float or None
        Seconds, or None for "no limit".
    """
    if value is None:
        return None
    seconds = parse_timedelta(value, default="seconds")
    if seconds is None or seconds < 0:
        raise ValueError(f"{name} must be a non-negative duration, got {value!r}")
    return float(seconds)


def parse_rate(value: Any, name: str) -> float | None:
    """Parse a byte rate (``"10MB"``, ``1e6``) in bytes per second.

    Parameters
    ----------
    value : str, float or None
        The rate; a string may use units, as in ``"12.5 MB"``.
    name : str
        The setting's name, for the error message.

    Returns
    -------
    float or None
        Bytes per second, or None when shaping is off.
    """
    if value is None:
        return None
    rate = float(parse_bytes(value)) if isinstance(value, str) else float(value)
    if not rate > 0:
        raise ValueError(f"{name} must be a positive number of bytes/s, got {value!r}")
    return rate


@dataclass(frozen=True)
class TopicSpec:
    """What a worker subscribes to and how it buffers and sends.

    Parameters
    ----------
    topic : str
        Topic name; one subscription per topic and worker.
    run_id : str
        Identifier of the run (fit); messages of other runs are refused.
    mailbox_slots : int
        Unread messages the mailbox keeps before overwriting the oldest.
    max_in_flight : int
        Messages a publisher may have on the wire before it drops new ones.
    send_timeout : float or None
        Seconds one send may take, beyond its bytes' time at
        ``min_bandwidth``, before it counts as failed.
    min_bandwidth : float or None
        The slowest link, in bytes per second, that a message is given time
        for: a send of ``n`` bytes times out after
        ``send_timeout + n / min_bandwidth`` seconds. None: no allowance.
    seed : int or None
        Seed of the random peer choice.
    """

    topic: str
    run_id: str
    mailbox_slots: int = CONFIG_DEFAULTS["mailbox-slots"]
    max_in_flight: int = CONFIG_DEFAULTS["max-in-flight"]
    send_timeout: float | None = parse_timeout(
        CONFIG_DEFAULTS["send-timeout"], "send-timeout"
    )
    min_bandwidth: float | None = parse_rate(
        CONFIG_DEFAULTS["min-bandwidth"], "min-bandwidth"
    )
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise ValueError(f"topic must be a non-empty str, got {self.topic!r}")
        if not isinstance(self.run_id, str) or not self.run_id:
            raise ValueError(f"run_id must be a non-empty str, got {self.run_id!r}")
        if self.mailbox_slots < 1:
            raise ValueError(f"mailbox_slots must be >= 1, got {self.mailbox_slots}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.send_timeout is not None and not self.send_timeout > 0:
            raise ValueError(f"send_timeout must be > 0, got {self.send_timeout}")
        if self.min_bandwidth is not None and not self.min_bandwidth > 0:
            raise ValueError(
                f"min_bandwidth must be > 0 bytes/s, got {self.min_bandwidth}"
            )

    def timeout_for(self, nbytes: int) -> float | None:
        """Seconds a send of ``nbytes`` may take before it counts as failed."""
        if self.send_timeout is None:
            return None
        if self.min_bandwidth is None:
            return self.send_timeout
        return self.send_timeout + nbytes / self.min_bandwidth

    def __str__(self) -> str:
        return f"Topic<{self.topic}[{self.run_id}]>"


@dataclass(frozen=True, eq=False)
class Message:
    """One published state, as it lies in a receiver's mailbox.

    Parameters
    ----------
    topic : str
        Topic it was published on.
    run_id : str
        Run it belongs to.
    sender : str
        Address of the publishing worker.
    payload : numpy.ndarray
        The array; the receiver owns it (a fresh buffer, never reused).
    metadata : dict
        Small dict of msgpack-native values given by the publisher.
    sent_at : float
        ``time.time()`` on the sender when it was published.
    received_at : float
        ``time.time()`` on the receiver when it entered the mailbox.
    """

    topic: str
    run_id: str
    sender: str
    payload: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0
    received_at: float = 0.0

    @property
    def nbytes(self) -> int:
        """Size of the payload in bytes."""
        return int(self.payload.nbytes)

    def __repr__(self) -> str:
        return (
            f"Message<{self.topic}[{self.run_id}] from {self.sender}: "
            f"{self.payload.dtype}{list(self.payload.shape)}>"
        )


def get_exchange_plugin(worker: Worker | None = None) -> ExchangeWorkerPlugin:
    """Return the exchange plugin of ``worker`` (default: the current worker).

    Parameters
    ----------
    worker : distributed.Worker, optional
        The worker; by default the one running the current task.

    Returns
    -------
    ExchangeWorkerPlugin
        The plugin instance registered under :data:`PLUGIN_NAME`.

    Raises
    ------
    PluginNotInstalledError
        If not called on a worker, or the plugin is not installed there.
    """
    # Imported here: _worker_plugin imports this module.
    from ._worker_plugin import ExchangeWorkerPlugin

    if worker is None:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError as e:
            raise PluginNotInstalledError("no worker runs the current task") from e
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise PluginNotInstalledError(f"worker {worker.address} has no such plugin")
    if not isinstance(plugin, ExchangeWorkerPlugin):
        raise PluginNotInstalledError(
            f"the plugin named {PLUGIN_NAME!r} on {worker.address} is a "
            f"{type(plugin).__name__}"
        )
    return plugin


def peers_message(
    topic: str, peers: list[str], run_id: str | None = None
) -> dict[str, Any]:
    """Build the stream message that sets a topic's peers on a worker.

    A scheduler-side component sends it over the worker's batched stream:
    ``scheduler.stream_comms[address].send(peers_message(topic, peers))``.

    Parameters
    ----------
    topic : str
        The topic.
    peers : list of str
        The live peers' addresses (the full list, not a change).
    run_id : str, optional
        If given, the update is ignored by a worker subscribed to another run.

    Returns
    -------
    dict
        A msgpack-native message with ``op`` :data:`PEERS_HANDLER`.
    """
    return {"op": PEERS_HANDLER, "topic": topic, "peers": list(peers), "run_id": run_id}
