"""Dask pub-sub: topic-based, peer-to-peer exchange of model states.

Workers push opaque NumPy arrays (plus a small metadata dict) straight into a
peer worker's mailbox over distributed's rpc; nothing goes through the
scheduler. This layer knows nothing about losses or models.

Install :class:`ExchangeWorkerPlugin` once per cluster, then call
:func:`join_topic` from each training task to get an :class:`Endpoint`.
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
