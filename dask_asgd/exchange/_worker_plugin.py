"""The worker half of the exchange: handlers, subscriptions and endpoints.

:class:`ExchangeWorkerPlugin` installs the ``asgd_exchange_receive`` handler
(peers push messages to it over distributed's rpc) and the
``asgd_exchange_peers`` stream handler (a scheduler-side component pushes
membership changes to it), and keeps this worker's subscriptions by topic.

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
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.protocol.serialize import Serialize

from ._comms import LinkShaper, Publisher
from ._core import (
    PEERS_HANDLER,
    PLUGIN_NAME,
    RECEIVE_HANDLER,
    Message,
    TopicSpec,
    config_value,
    get_exchange_plugin,
    parse_rate,
    parse_timeout,
)
from ._mailbox import Mailbox

if TYPE_CHECKING:
    # Only for annotations: importing Worker at run time is not needed.
    from distributed import Worker

logger = logging.getLogger(__name__)
#: Per-message tracing; very verbose, off unless enabled explicitly.
message_logger = logging.getLogger(__name__ + ".messages")

#: Closed subscriptions remembered per worker, so that late messages of a
#: closed run are refused *and* counted on its endpoint. Runs end rarely (once
#: per fit), so a short memory covers every late message in practice.
_RETIRED_LIMIT = 64


class Endpoint:
    """One worker's handle on a topic: publish to peers, read the mailbox.

    Made by :func:`join_topic`; every method is safe to call from the training
    task's thread and returns without waiting for the network.

    Parameters
    ----------
    spec : TopicSpec
        Topic, run and buffer sizes.
    plugin : ExchangeWorkerPlugin
        The plugin that routes this worker's incoming messages.
    publisher : Publisher
        The sending side.
    """

    def __init__(
        self, spec: TopicSpec, plugin: ExchangeWorkerPlugin, publisher: Publisher
    ) -> None:
        #: Topic, run and buffer sizes.
        self.spec: TopicSpec = spec
        self._plugin = plugin
        self._publisher = publisher
        self._mailbox: Mailbox[Message] = Mailbox(spec.mailbox_slots)
        self._lock = threading.Lock()
        self._closed: bool = False
        self._bytes_received: int = 0
        self._refused: Counter[str] = Counter()

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

    def set_peers(self, peers: Sequence[str]) -> None:
        """Replace the peers (e.g. after a peer died or a worker joined).

        Parameters
        ----------
        peers : sequence of str
            Live peer addresses; this worker's own address may be included
            and is never drawn as a random target.
        """
        self._publisher.set_peers(peers)

    def stats(self) -> dict[str, int | float]:
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
            ``read``, ``unread``, ``bytes_received`` and ``refused`` (messages
            of another run of this topic, or that came after :meth:`close`).
        """
        out = self._publisher.stats()
        box = self._mailbox.counters()
        out["received"] = box["delivered"]
        out["lost"] = box["lost"]
        out["read"] = box["read"]
        out["unread"] = box["unread"]
        with self._lock:
            out["bytes_received"] = self._bytes_received
            out["refused"] = sum(self._refused.values())
        return out

    def close(self) -> None:
        """Unsubscribe: later messages for this topic and run are refused.

        Sends already in flight finish (each within ``send_timeout``); new
        publishes are dropped. Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        self._publisher.close()
        self._plugin._unsubscribe(self)

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------
    # Methods for the event loop
    # ----------------------------------------------------------------------

    async def publish_async(
        self,
        payload: np.ndarray,
        metadata: dict[str, Any] | None = None,
        peer: str | None = None,
        *,
        copy: bool = True,
    ) -> bool:
        """Publish from code on the event loop and wait for the peer's answer.

        Parameters
        ----------
        payload : numpy.ndarray
            The array.
        metadata : dict, optional
            Small dict of msgpack-native values.
        peer : str, optional
            Target address; by default a random peer.
        copy : bool, default=True
            Snapshot ``payload`` first.

        Returns
        -------
        bool
            True if the peer accepted the message into its mailbox.
        """
        return await self._publisher.publish_async(payload, metadata, peer, copy=copy)

    def _deliver(self, message: Message) -> None:
        if self._mailbox.put(message):
            message_logger.debug("%s: overwrote an unread message", self.spec)
        with self._lock:
            self._bytes_received += message.nbytes

    def _count_refused(self, reason: str) -> None:
        with self._lock:
            self._refused[reason] += 1

    async def _aclose(self) -> None:
        self._closed = True
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
        Simulated outgoing bandwidth of each worker in bytes/s (``"10MB"``
        works); default ``asgd.exchange.simulate.bandwidth`` (null: off).
    latency : float or str, optional
        Simulated one-way latency added to each send, in seconds (``"5ms"``
        works); default ``asgd.exchange.simulate.latency`` (0).

    Notes
    -----
    Handler: ``asgd_exchange_receive(topic, run_id, sender, payload, metadata,
    sent_at)`` answers ``{"status": "OK"}`` or ``{"status": "refused",
    "reason": ...}``. Stream handler: ``asgd_exchange_peers(topic, peers,
    run_id=None)``; build its message with :func:`peers_message`.
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
        self.bandwidth = bandwidth
        self.latency = latency

    # ----------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------

    def setup(self, worker: Worker) -> None:
        """Install the handlers on ``worker`` and read the link simulator config.

        Parameters
        ----------
        worker : distributed.Worker
            The worker the plugin is attached to.
        """
        self.worker: Worker = worker
        self._lock = threading.Lock()
        self._active: dict[str, Endpoint] = {}
        self._retired: OrderedDict[tuple[str, str], Endpoint] = OrderedDict()
        self._refused: Counter[str] = Counter()
        self._received: int = 0
        self.shaper: LinkShaper | None = self._make_shaper()
        worker.handlers[RECEIVE_HANDLER] = self.asgd_exchange_receive
        worker.stream_handlers[PEERS_HANDLER] = self.asgd_exchange_peers
        if self.shaper is not None:
            logger.info(
                "Simulating the outgoing link of %s: %r", worker.address, self.shaper
            )

    def _make_shaper(self) -> LinkShaper | None:
        if self.bandwidth is None and self.latency is None:
            return LinkShaper.from_config()
        bandwidth = parse_rate(self.bandwidth, "bandwidth")
        latency = parse_timeout(self.latency, "latency") or 0.0
        if bandwidth is None and not latency:
            return None
        return LinkShaper(bandwidth, latency)

    async def teardown(self, worker: Worker) -> None:
        """Remove the handlers, close every endpoint and cancel pending sends.

        Parameters
        ----------
        worker : distributed.Worker
            The worker the plugin is attached to.
        """
        # Remove only our own entries: a newer plugin instance may own them.
        if worker.handlers.get(RECEIVE_HANDLER) == self.asgd_exchange_receive:
            del worker.handlers[RECEIVE_HANDLER]
        if worker.stream_handlers.get(PEERS_HANDLER) == self.asgd_exchange_peers:
            del worker.stream_handlers[PEERS_HANDLER]
        with self._lock:
            endpoints = [*self._active.values(), *self._retired.values()]
            for endpoint in self._active.values():
                self._retire(endpoint)
            self._active.clear()
        for endpoint in endpoints:
            await endpoint._aclose()

    # ----------------------------------------------------------------------
    # Methods for worker thread
    # ----------------------------------------------------------------------

    def join(self, spec: TopicSpec, peers: Sequence[str]) -> Endpoint:
        """Subscribe this worker to ``spec.topic`` for ``spec.run_id``.

        A previous subscription to the topic (an older run, or the same run
        joined again by a restarted task) is closed and replaced.

        Parameters
        ----------
        spec : TopicSpec
            Topic, run and buffer sizes.
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
            rpc=self.worker.rpc,
            # tornado's IOLoop wraps the asyncio loop; its stubs lack the attribute.
            loop=self.worker.loop.asyncio_loop,  # type: ignore[attr-defined]
            peers=peers,
            shaper=self.shaper,
        )
        endpoint = Endpoint(spec, self, publisher)
        with self._lock:
            old = self._active.get(spec.topic)
            self._active[spec.topic] = endpoint
            self._retired.pop((spec.topic, spec.run_id), None)
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
        # An active endpoint of the same topic and run (a restarted task that
        # joined again) takes precedence over this record in the handler.
        key = (endpoint.spec.topic, endpoint.spec.run_id)
        self._retired[key] = endpoint
        self._retired.move_to_end(key)
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
            ``refused_by_reason``, ``topics`` (open topics and their run ids)
            and ``shaper`` (the link simulator's counters, or None).
        """
        with self._lock:
            return {
                "received": self._received,
                "refused": sum(self._refused.values()),
                "refused_by_reason": dict(self._refused),
                "topics": {t: e.spec.run_id for t, e in self._active.items()},
                "shaper": None if self.shaper is None else self.shaper.counters(),
            }

    # ----------------------------------------------------------------------
    # Handlers (event loop)
    # ----------------------------------------------------------------------

    def asgd_exchange_receive(
        self,
        topic: str,
        run_id: str,
        sender: str,
        payload: Any,
        metadata: dict[str, Any] | None = None,
        sent_at: float = 0.0,
    ) -> dict[str, str]:
        """Handler: put a peer's message into the topic's mailbox.

        A plain function rather than a coroutine: it only takes locks and
        appends, and the server then skips creating a coroutine per message.

        Parameters
        ----------
        topic : str
            The topic.
        run_id : str
            The sender's run; must match this worker's subscription.
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
            for an unknown topic, another (stale or newer) run, or a closed
            subscription.
        """
        # In-process transports (tests) hand over the Serialize wrapper.
        if isinstance(payload, Serialize):
            payload = payload.data
        message = Message(
            topic=topic,
            run_id=run_id,
            sender=sender,
            payload=payload,
            metadata=metadata or {},
            sent_at=sent_at,
            received_at=time.time(),
        )
        with self._lock:
            endpoint = self._active.get(topic)
            if endpoint is not None and endpoint.spec.run_id == run_id:
                # Delivered under the lock so that a concurrent close() cannot
                # slip between the check and the put.
                endpoint._deliver(message)
                self._received += 1
                return {"status": "OK"}
            retired = self._retired.get((topic, run_id))
            if retired is not None:
                reason, owner = "closed", retired
            elif endpoint is not None:
                reason, owner = "stale-run", endpoint
            else:
                reason, owner = "unknown-topic", None
            self._refused[reason] += 1
        if owner is not None:
            owner._count_refused(reason)
        message_logger.debug(
            "Refused %r on %s: %s", message, self.worker.address, reason
        )
        return {"status": "refused", "reason": reason}

    def asgd_exchange_peers(
        self,
        topic: str,
        peers: Sequence[str],
        run_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Stream handler: replace the peers of this worker's ``topic``.

        Parameters
        ----------
        topic : str
            The topic.
        peers : sequence of str
            The live peers (full list).
        run_id : str, optional
            Ignore the update unless the subscription is of this run.
        **kwargs
            Ignored; room for future fields.
        """
        endpoint = self.endpoint(topic)
        if endpoint is None or (run_id is not None and endpoint.spec.run_id != run_id):
            logger.debug(
                "Ignored peers of %s[%s] on %s: no such subscription",
                topic,
                run_id,
                self.worker.address,
            )
            return
        endpoint.set_peers(peers)
        logger.debug(
            "%s on %s: peers are now %s", endpoint.spec, self.worker.address, peers
        )

    def __repr__(self) -> str:
        return (
            f"<ExchangeWorkerPlugin bandwidth={self.bandwidth} latency={self.latency}>"
        )


def join_topic(
    topic: str,
    run_id: str,
    peers: Sequence[str],
    *,
    mailbox_slots: int | None = None,
    max_in_flight: int | None = None,
    send_timeout: float | str | None = None,
    min_bandwidth: float | str | None = None,
    seed: int | None = None,
    worker: Worker | None = None,
) -> Endpoint:
    """Subscribe the current worker to ``topic`` and return its endpoint.

    Call it from the training task (a Dask task on a worker with
    :class:`ExchangeWorkerPlugin` installed). It returns at once.

    Parameters
    ----------
    topic : str
        Topic name, e.g. one per fit.
    run_id : str
        Identifier of this run; messages of other runs are refused.
    peers : sequence of str
        Worker addresses to publish to (this worker's own is skipped).
    mailbox_slots : int, optional
        Unread messages kept; default ``asgd.exchange.mailbox-slots`` (4).
    max_in_flight : int, optional
        Sends pending before new messages are dropped; default
        ``asgd.exchange.max-in-flight`` (2).
    send_timeout : float or str, optional
        Limit of one send, in seconds or as ``"2s"``; default
        ``asgd.exchange.send-timeout`` (2 s).
    min_bandwidth : float or str, optional
        Slowest link a message is given time for, in bytes per second or as
        ``"1MB"``: a send of ``n`` bytes may take
        ``send_timeout + n / min_bandwidth``; default
        ``asgd.exchange.min-bandwidth`` (1 MB/s).
    seed : int, optional
        Seed of the random peer choice.
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
    >>> def train(run_id, peers):  # doctest: +SKIP
    ...     with join_topic("fit-1", run_id, peers) as endpoint:
    ...         endpoint.publish(weights, {"step": 1})
    ...         for message in endpoint.receive():
    ...             merge(message.payload)
    """
    plugin = get_exchange_plugin(worker)
    if mailbox_slots is None:
        mailbox_slots = int(config_value("mailbox-slots"))
    if max_in_flight is None:
        max_in_flight = int(config_value("max-in-flight"))
    timeout = parse_timeout(
        config_value("send-timeout") if send_timeout is None else send_timeout,
        "send_timeout",
    )
    bandwidth_floor = parse_rate(
        config_value("min-bandwidth") if min_bandwidth is None else min_bandwidth,
        "min_bandwidth",
    )
    spec = TopicSpec(
        topic=topic,
        run_id=run_id,
        mailbox_slots=mailbox_slots,
        max_in_flight=max_in_flight,
        send_timeout=timeout,
        min_bandwidth=bandwidth_floor,
        seed=seed,
    )
    return plugin.join(spec, peers)
