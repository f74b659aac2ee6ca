"""Dask pub-sub: topic-based, peer-to-peer exchange of model states.

Workers push opaque NumPy arrays (plus a small metadata dict) straight into a
peer worker's mailbox over distributed's rpc; nothing goes through the
scheduler. This layer knows nothing about losses or models.

Install :class:`ExchangeWorkerPlugin` once per cluster, then call
:func:`join_topic` from each training task with a :class:`TopicSpec` to get an
:class:`Endpoint`. The spec may declare the array a subscriber can merge
(``payload_shape``, ``payload_dtype``) and the endpoint a magnitude bound
(:meth:`Endpoint.limit_magnitude`): the receiving handler then refuses,
before the mailbox, any message that does not fit, and counts it by reason.

This layer reads no configuration: every setting comes from the caller. The
training driver reads them once, from the ``asgd.exchange.*`` keys of its own
Dask configuration (defaults in ``dask_asgd/asgd.yaml``), into the
:class:`TopicSpec` fields (``mailbox-slots``, ``max-in-flight``,
``send-timeout``, ``min-bandwidth``) and into the plugin's link simulator
(``simulate.bandwidth``, ``simulate.latency``).
"""

from __future__ import annotations

from dask_asgd._exceptions import ExchangeError, PluginNotInstalledError

from ._comms import LinkShaper, Publisher
from ._mailbox import Mailbox
from ._types import PLUGIN_NAME, RECEIVE_HANDLER, Message, TopicSpec
from ._worker_plugin import (
    Endpoint,
    ExchangeWorkerPlugin,
    get_exchange_plugin,
    join_topic,
)

__all__ = [
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
]
