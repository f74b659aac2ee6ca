"""The worker half of the exchange: the handler, subscriptions and endpoints.

:class:`ExchangeWorkerPlugin` installs the ``asgd_exchange_receive`` handler
(peers push messages to it over distributed's rpc) and keeps this worker's
subscriptions by topic.

A training task calls :func:`join_topic` and gets an :class:`Endpoint`. The
endpoint's methods run in the task's thread and return at once: they touch
only locked in-memory state and hand sends to the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.protocol.serialize import Serialize

from dask_asgd._config import parse_rate, parse_seconds
from dask_asgd._exceptions import PluginNotInstalledError

from ._admission import Refused, admit
from ._comms import LinkShaper, Publisher
from ._mailbox import Mailbox
from ._transport import peer_transport
from ._types import PLUGIN_NAME, RECEIVE_HANDLER, Message, TopicSpec

if TYPE_CHECKING:
    # Only for annotations: importing Worker at run time is not needed.
    from distributed import Worker

logger = logging.getLogger(__name__)
#: Per-message tracing; very verbose, off unless enabled explicitly.
message_logger = logging.getLogger(__name__ + ".messages")

#: Closed subscriptions remembered per worker, so that late messages of a
#: closed topic are refused *and* counted on its endpoint. Topics end rarely
#: (once per fit), so a short memory covers every late message in practice;
#: it holds counters and the publisher (for teardown), never payloads.
_RETIRED_LIMIT = 64


class _ReceiveCounters:
    """What a subscription counts of its incoming messages besides its mailbox.

    Kept apart from the endpoint so that a closed subscription's memory holds
    these few numbers only, never its mailbox.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes_received: int = 0
        self.refused: Counter[str] = Counter()

    def add_received(self, nbytes: int) -> None:
        with self.lock:
            self.bytes_received += nbytes

    def add_refused(self, reason: str) -> None:
        with self.lock:
            self.refused[reason] += 1


@dataclass(frozen=True)
class _Retired:
    """A closed subscription as the plugin remembers it: no payloads."""

    counters: _ReceiveCounters
    publisher: Publisher


class Endpoint:
    """One worker's handle on a topic: publish to peers, read the mailbox.

    Made by :func:`join_topic`; every method is safe to call from the training
    task's thread and returns without waiting for the network.

    Parameters
    ----------
    spec : TopicSpec
        Topic, buffer sizes and send limits.
    plugin : ExchangeWorkerPlugin
        The plugin that routes this worker's incoming messages.
    publisher : Publisher
        The sending side.
    """

    def __init__(
        self, spec: TopicSpec, plugin: ExchangeWorkerPlugin, publisher: Publisher
    ) -> None:
        #: Topic, buffer sizes and send limits.
        self.spec: TopicSpec = spec
        self._plugin = plugin
        self._publisher = publisher
        self._mailbox: Mailbox[Message] = Mailbox(spec.mailbox_slots)
        self._counters = _ReceiveCounters()
        self._closed: bool = False
        # Read by the handler on the event loop without a lock: replacing a
        # float is atomic, and a message checked against the previous bound
        # is as good as one that arrived a moment earlier.
        self._max_abs: float | None = spec.max_abs

    # ----------------------------------------------------------------------
    # Methods for worker thread
    # ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """This worker's address (the ``sender`` of what it publishes)."""
        return self._publisher.sender

    @property
    def peers(self) -> tuple[str, ...]:
        """The peers that random targets are drawn from."""
        return self._publisher.peers

    @property
    def in_flight(self) -> int:
        """Messages published whose send has not finished yet."""
        return self._publisher.in_flight

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the plugin was removed."""
        return self._closed

    def publish(
        self,
        payload: np.ndarray,
        metadata: dict[str, Any] | None = None,
        peer: str | None = None,
        *,
        copy: bool = True,
    ) -> bool:
        """Send a snapshot of ``payload`` to a peer's mailbox; return at once.

        Parameters
        ----------
        payload : numpy.ndarray
            The array; it is copied before this returns (unless ``copy=False``),
            so the caller may change it right away.
        metadata : dict, optional
            Small dict of msgpack-native values (str keys; numbers, str,
            lists) sent along, e.g. ``{"step": 12}``.
        peer : str, optional
            Target worker address; by default a random peer other than this
            worker, drawn from :attr:`peers`.
        copy : bool, default=True
            Snapshot ``payload``; pass False only for an array nobody writes
            to after this call (on an in-process cluster the receiver gets
            that very array).

        Returns
        -------
        bool
            True if the send started; False if the message was dropped
            because ``max_in_flight`` sends are pending, there is no peer, or
            the endpoint is closed. Send errors are counted, never raised.
        """
        return self._publisher.publish(payload, metadata, peer, copy=copy)

    def receive(self) -> list[Message]:
        """Return the messages that arrived since the last call, oldest first.

        Returns
        -------
        list of Message
            At most ``mailbox_slots`` messages; older unread ones were
            overwritten and counted as ``lost``.
        """
        return self._mailbox.drain()

    def limit_magnitude(self, max_abs: float | None) -> None:
        """Refuse, from now on, messages holding a value beyond ``max_abs``.

        The exchange knows no model: the subscriber says how large a value
        it can merge, and may change the bound as its state evolves. A
        message beyond it is refused with reason ``"magnitude"``.

        Parameters
        ----------
        max_abs : float or None
            Largest magnitude accepted; None removes the bound.
        """
        if max_abs is not None and not max_abs > 0:
            raise ValueError(f"max_abs must be > 0 or None, got {max_abs}")
        self._max_abs = None if max_abs is None else float(max_abs)

    @property
    def max_abs(self) -> float | None:
        """The magnitude bound of :meth:`limit_magnitude`, or None."""
        return self._max_abs

    def stats(self) -> dict[str, Any]:
        """Return the counters of this endpoint.

        Returns
        -------
        dict
            Sending side (see :meth:`Publisher.stats`): ``published``, ``sent``
            (accepted by a peer), ``dropped`` (in-flight bound, no peer or
            closed), ``failed`` (send errors, including ``timed_out``),
            ``refused_by_peer``, ``cancelled``, ``no_peer``, ``bytes_sent``,
            ``in_flight``, ``send_latency`` (mean seconds from publish to the
            peer's answer) and ``send_latency_total``. Receiving side:
            ``received`` (entered the mailbox), ``lost`` (overwritten unread),
            ``read``, ``unread``, ``discarded`` (unread at :meth:`close`),
            ``bytes_received``, ``refused`` (messages of this topic refused
            on this worker: malformed ones, and those that came after
            :meth:`close`) and ``refused_by_reason`` (the same, by reason).
        """
        out: dict[str, Any] = dict(self._publisher.stats())
        box = self._mailbox.counters()
        out["received"] = box["delivered"]
        out["lost"] = box["lost"]
        out["read"] = box["read"]
        out["unread"] = box["unread"]
        out["discarded"] = box["discarded"]
        counters = self._counters
        with counters.lock:
            out["bytes_received"] = counters.bytes_received
            out["refused"] = sum(counters.refused.values())
            out["refused_by_reason"] = dict(counters.refused)
        return out

    def close(self) -> None:
        """Unsubscribe: later messages for this topic are refused.

        Unread messages are discarded at once (their memory is freed now,
        counted in ``discarded``); only counters are kept for the refusals
        of late messages. Sends still in flight are cancelled (counted in
        ``cancelled``), so that the end of a fit never waits for them; new
        publishes are dropped. Calling it again does
        nothing. A task that joins the topic on this worker again (a
        restarted one) gets its messages.
        """
        if self._closed:
            return
        self._closed = True
        self._publisher.cancel_in_flight()
        self._plugin._unsubscribe(self)
        # After the unsubscription: the handler can no longer deliver here.
        self._mailbox.discard()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------
    # Methods for the event loop
    # ----------------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        if self._mailbox.put(message):
            message_logger.debug("%s: overwrote an unread message", self.spec)
        self._counters.add_received(message.nbytes)

    async def _aclose(self) -> None:
        self._closed = True
        self._mailbox.discard()
        await self._publisher.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Endpoint {self.spec} on {self.address} {state}>"


class ExchangeWorkerPlugin(WorkerPlugin):
    """Worker plugin that routes published messages into topic mailboxes.

    Install it once per cluster; registering it again is a no-op
    (``idempotent``), so running training tasks keep their subscriptions::

        client.register_plugin(ExchangeWorkerPlugin(), name="asgd-exchange")

    Parameters
    ----------
    bandwidth : float or str, optional
        Link simulator: outgoing bandwidth of each worker in bytes/s
        (``"10MB"`` works). None: no bandwidth limit.
    latency : float or str, optional
        Link simulator: one-way latency added to each send, in seconds
        (``"5ms"`` works). None or 0: none added.

    Notes
    -----
    With neither a bandwidth nor a latency no link simulator is made. The
    settings are parsed here, where the plugin is made (on the driver), so a
    bad value fails there instead of in each worker's ``setup``.

    Handler: ``asgd_exchange_receive(topic, sender, payload, metadata,
    sent_at)`` answers ``{"status": "OK"}`` or ``{"status": "refused",
    "reason": ...}``: a message for no open subscription, or one that does
    not fit its subscription's declared shape and dtype, is refused before it
    enters a mailbox (see :meth:`asgd_exchange_receive`).
    """

    #: Registering again must not tear down live subscriptions.
    idempotent: bool = True
    #: Default registration name.
    name: str = PLUGIN_NAME

    def __init__(
        self,
        *,
        bandwidth: float | str | None = None,
        latency: float | str | None = None,
    ) -> None:
        # Only plain values here: the plugin is pickled on the client; the
        # live state (locks, endpoints) is made on the worker in setup().
        #: Simulated outgoing bytes/s, or None.
        self.bandwidth: float | None = parse_rate(bandwidth, "bandwidth")
        #: Simulated seconds added to every send.
        self.latency: float = parse_seconds(latency, "latency") or 0.0

    # ----------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------

    def setup(self, worker: Worker) -> None:
        """Install the handler on ``worker`` and make its link simulator.

        Parameters
        ----------
        worker : distributed.Worker
            The worker the plugin is attached to.
        """
        self.worker: Worker = worker
        self._lock = threading.Lock()
        self._active: dict[str, Endpoint] = {}
        self._retired: OrderedDict[str, _Retired] = OrderedDict()
        self._refused: Counter[str] = Counter()
        self._received: int = 0
        self.shaper: LinkShaper | None = None
        if self.bandwidth is not None or self.latency:
            self.shaper = LinkShaper(self.bandwidth, self.latency)
            logger.info(
                "Simulating the outgoing link of %s: %r", worker.address, self.shaper
            )
        worker.handlers[RECEIVE_HANDLER] = self.asgd_exchange_receive

    async def teardown(self, worker: Worker) -> None:
        """Remove the handler, close every endpoint and cancel pending sends.

        Parameters
        ----------
        worker : distributed.Worker
            The worker the plugin is attached to.
        """
        # Remove only our own entry: a newer plugin instance may own it.
        if worker.handlers.get(RECEIVE_HANDLER) == self.asgd_exchange_receive:
            del worker.handlers[RECEIVE_HANDLER]
        with self._lock:
            endpoints = list(self._active.values())
            for endpoint in endpoints:
                self._retire(endpoint)
            self._active.clear()
            retired = [closed.publisher for closed in self._retired.values()]
        for endpoint in endpoints:
            await endpoint._aclose()
        # Closed subscriptions may still have sends in flight: cancel them.
        for publisher in retired:
            await publisher.aclose()

    # ----------------------------------------------------------------------
    # Methods for worker thread
    # ----------------------------------------------------------------------

    def join(self, spec: TopicSpec, peers: Sequence[str]) -> Endpoint:
        """Subscribe this worker to ``spec.topic``.

        A previous subscription to the topic (joined again by a restarted
        task) is closed and replaced.

        Parameters
        ----------
        spec : TopicSpec
            Topic, buffer sizes and send limits.
        peers : sequence of str
            Addresses to publish to.

        Returns
        -------
        Endpoint
            The new subscription.
        """
        publisher = Publisher(
            spec,
            sender=self.worker.address,
            rpc=peer_transport(self.worker.rpc),
            # tornado's IOLoop wraps the asyncio loop; its stubs lack the attribute.
            loop=self.worker.loop.asyncio_loop,  # type: ignore[attr-defined]
            peers=peers,
            shaper=self.shaper,
        )
        endpoint = Endpoint(spec, self, publisher)
        with self._lock:
            old = self._active.get(spec.topic)
            self._active[spec.topic] = endpoint
            self._retired.pop(spec.topic, None)
        if old is not None:
            logger.info("%s replaces %s on %s", spec, old.spec, self.worker.address)
            old.close()
        logger.debug("%s joined on %s with peers %s", spec, self.worker.address, peers)
        return endpoint

    def _unsubscribe(self, endpoint: Endpoint) -> None:
        with self._lock:
            if self._active.get(endpoint.spec.topic) is endpoint:
                del self._active[endpoint.spec.topic]
                self._retire(endpoint)

    def _retire(self, endpoint: Endpoint) -> None:
        # Caller holds self._lock.
        topic = endpoint.spec.topic
        self._retired[topic] = _Retired(endpoint._counters, endpoint._publisher)
        self._retired.move_to_end(topic)
        while len(self._retired) > _RETIRED_LIMIT:
            self._retired.popitem(last=False)

    def endpoint(self, topic: str) -> Endpoint | None:
        """Return the open endpoint of ``topic`` on this worker, if any.

        Parameters
        ----------
        topic : str
            The topic.

        Returns
        -------
        Endpoint or None
            The current subscription, or None.
        """
        with self._lock:
            return self._active.get(topic)

    def stats(self) -> dict[str, Any]:
        """Return worker-wide counters.

        Returns
        -------
        dict
            ``received`` (accepted messages), ``refused`` (all refusals),
            ``refused_by_reason``, ``topics`` (the open topics, sorted) and
            ``shaper`` (the link simulator's counters, or None).
        """
        with self._lock:
            return {
                "received": self._received,
                "refused": sum(self._refused.values()),
                "refused_by_reason": dict(self._refused),
                "topics": sorted(self._active),
                "shaper": None if self.shaper is None else self.shaper.counters(),
            }

    # ----------------------------------------------------------------------
    # Handlers (event loop)
    # ----------------------------------------------------------------------

    def asgd_exchange_receive(
        self,
        topic: Any,
        sender: Any,
        payload: Any,
        metadata: Any = None,
        sent_at: Any = 0.0,
    ) -> dict[str, str]:
        """Handler: put a peer's message into the topic's mailbox, or refuse it.

        A plain function rather than a coroutine: it only checks, takes
        locks and appends, and the server then skips creating a coroutine
        per message. It never raises on what it is sent: a message the
        subscription cannot take is refused, counted by reason on this
        worker and on the topic's endpoint, and never stored.

        Parameters
        ----------
        topic : str
            The topic.
        sender : str
            The sender's address.
        payload : numpy.ndarray
            The array (already deserialized into a fresh buffer).
        metadata : dict, optional
            The sender's metadata.
        sent_at : float, default=0.0
            ``time.time()`` on the sender at publish.

        Returns
        -------
        dict
            ``{"status": "OK"}``, or ``{"status": "refused", "reason": ...}``
            with reason ``"unknown-topic"`` for a topic this worker has no
            subscription to, ``"closed"`` for one closed on this worker, one
            of the reasons of the subscription's checks (``"not-an-array"``,
            ``"dtype"``, ``"too-large"``, ``"shape"``, ``"metadata"``,
            ``"column-range"``, ``"non-finite"``, ``"magnitude"``) or
            ``"malformed"`` if a check itself failed.
        """
        # In-process transports (tests) hand over the Serialize wrapper.
        if isinstance(payload, Serialize):
            payload = payload.data
        if not isinstance(topic, str):
            return self._refuse(topic, "unknown-topic", None)
        with self._lock:
            endpoint = self._active.get(topic)
            closed = None if endpoint is not None else self._retired.get(topic)
        if endpoint is None:
            reason = "unknown-topic" if closed is None else "closed"
            counters = None if closed is None else closed.counters
            return self._refuse(topic, reason, counters)
        try:
            payload, metadata = admit(
                endpoint.spec, payload, metadata, sender, sent_at, endpoint.max_abs
            )
        except Refused as refusal:
            return self._refuse(topic, refusal.reason, endpoint._counters)
        except Exception:
            # A check that fails in a way not foreseen is still a refusal:
            # the sender's message must never break this worker's handler.
            logger.warning("Could not check a message of %s", topic, exc_info=True)
            return self._refuse(topic, "malformed", endpoint._counters)
        message = Message(topic, sender, payload, metadata, float(sent_at), time.time())
        with self._lock:
            if self._active.get(topic) is endpoint:
                # Delivered under the lock so that a concurrent close() cannot
                # slip between the check and the put.
                endpoint._deliver(message)
                self._received += 1
                return {"status": "OK"}
        # Closed (or replaced) while the message was being checked.
        return self._refuse(topic, "closed", endpoint._counters)

    def _refuse(
        self, topic: Any, reason: str, counters: _ReceiveCounters | None
    ) -> dict[str, str]:
        with self._lock:
            self._refused[reason] += 1
        if counters is not None:
            counters.add_refused(reason)
        message_logger.debug(
            "Refused a message of %r on %s: %s", topic, self.worker.address, reason
        )
        return {"status": "refused", "reason": reason}

    def __repr__(self) -> str:
        return (
            f"<ExchangeWorkerPlugin bandwidth={self.bandwidth} latency={self.latency}>"
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
    if worker is None:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError as e:
            raise PluginNotInstalledError(
                "no worker runs the current task", PLUGIN_NAME
            ) from e
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise PluginNotInstalledError(
            f"worker {worker.address} has no such plugin", PLUGIN_NAME
        )
    if not isinstance(plugin, ExchangeWorkerPlugin):
        raise PluginNotInstalledError(
            f"the plugin named {PLUGIN_NAME!r} on {worker.address} is a "
            f"{type(plugin).__name__}",
            PLUGIN_NAME,
        )
    return plugin


def join_topic(
    spec: TopicSpec, peers: Sequence[str], *, worker: Worker | None = None
) -> Endpoint:
    """Subscribe the current worker to ``spec.topic`` and return its endpoint.

    Call it from the training task (a Dask task on a worker with
    :class:`ExchangeWorkerPlugin` installed). It returns at once.

    Parameters
    ----------
    spec : TopicSpec
        Topic, buffer sizes, send limits and seed, as the caller chose them.
    peers : sequence of str
        Worker addresses to publish to (this worker's own is skipped).
    worker : distributed.Worker, optional
        The worker; by default the one running the current task.

    Returns
    -------
    Endpoint
        The subscription; close it (or use it as a context manager) at the
        end of the run.

    Raises
    ------
    PluginNotInstalledError
        If not called on a worker that has the plugin.

    Examples
    --------
    >>> spec = TopicSpec(  # doctest: +SKIP
    ...     "fit-1", mailbox_slots=4, max_in_flight=2, send_timeout=2.0,
    ...     min_bandwidth=1e6,
    ... )
    >>> def train(spec, peers):  # doctest: +SKIP
    ...     with join_topic(spec, peers) as endpoint:
    ...         endpoint.publish(weights, {"step": 1})
    ...         for message in endpoint.receive():
    ...             merge(message.payload)
    """
    return get_exchange_plugin(worker).join(spec, peers)
