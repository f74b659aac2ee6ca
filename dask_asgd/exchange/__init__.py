"""Dask pub-sub: topic-based, peer-to-peer exchange of model states.

Workers push opaque NumPy arrays (plus a small metadata dict) straight into a
peer worker's mailbox over distributed's rpc; nothing goes through the
scheduler. This layer knows nothing about losses or models.

Install :class:`ExchangeWorkerPlugin` once per cluster, then call
:func:`join_topic` from each training task to get an :class:`Endpoint`.

Configuration (``dask.config``; read on the worker, defaults in code):

``asgd.exchange.mailbox-slots`` (4)
    Unread messages a subscription keeps; the oldest is overwritten (lost).
``asgd.exchange.max-in-flight`` (2)
    Sends a publisher may have pending; past it messages are dropped.
``asgd.exchange.send-timeout`` ("2s")
    Limit of one send beyond its bytes' time at ``min-bandwidth``.
``asgd.exchange.min-bandwidth`` ("1MB")
    Slowest link (bytes/s) a message is given time for: a send of ``n`` bytes
    fails after ``send-timeout + n / min-bandwidth`` seconds.
``asgd.exchange.simulate.bandwidth`` (null)
    Link simulator: a worker's outgoing bytes/s (token bucket); null is off.
``asgd.exchange.simulate.latency`` (0)
    Link simulator: seconds added to every send.
"""

from __future__ import annotations

from ._comms import LinkShaper, Publisher
from ._core import (
    PEERS_HANDLER,
    PLUGIN_NAME,
    RECEIVE_HANDLER,
    ExchangeError,
    Message,
    PluginNotInstalledError,
    TopicSpec,
    get_exchange_plugin,
    new_run_id,
    peers_message,
)
from ._mailbox import Mailbox
from ._worker_plugin import Endpoint, ExchangeWorkerPlugin, join_topic

__all__ = [
    "PEERS_HANDLER",
    "PLUGIN_NAME",
    "RECEIVE_HANDLER",
    "Endpoint",
    "ExchangeError",
    "ExchangeWorkerPlugin",
    "LinkShaper",
    "Mailbox",
    "Message",
    "PluginNotInstalledError",
    "Publisher",
    "TopicSpec",
    "get_exchange_plugin",
    "join_topic",
    "new_run_id",
    "peers_message",
]
