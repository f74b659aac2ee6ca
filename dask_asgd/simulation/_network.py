"""The simulated network: links with bandwidth and latency, and endpoints
with the exchange's real mailbox.

A :class:`SimulatedEndpoint` offers the three calls the runtime's
``StateExchange`` makes of a real :class:`~dask_asgd.exchange.Endpoint`
(``publish``, ``receive``, ``stats``), with the same bookkeeping: a bounded
number of sends in flight (past it a message is dropped), a mailbox with a
fixed number of slots that overwrites the oldest unread message (counted as
lost), and the same counters. Only the wire is a model: each worker's
outgoing link carries one message at a time at its bandwidth (messages queue
behind each other, as on a real link), then the latency; the answer takes the
latency back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exchange import Mailbox
from ._virtual_time import VirtualTime


@dataclass
class LinkModel:
    """The network and the machines, as the simulation sees them.

    Parameters
    ----------
    bandwidth : float
        Bytes per second of each worker's outgoing link.
    latency : float
        One-way seconds of every message (and of every answer).
    samples_per_second : float or sequence of float
        Training speed of each worker (one value for all, or one per
        worker; stragglers are slower ones).
    copy_bytes_per_second : float
        Speed of the training thread's own part of a send (snapshot and
        serialisation of the message); it counts as exchange time.
    message_seconds : float
        Training-thread seconds every published message costs on top of its
        copy: the fixed overhead of a real send (Python calls, handing the
        message to the event loop, waiting for the interpreter lock). 0 by
        default; on this project's 2-core machine an exchange of a 101-float
        state cost about 1.5 ms in the training thread of a thread worker.
    bandwidth_change : tuple of (float, float), optional
        ``(at_second, new_bandwidth)``: every link changes speed then.
    """

    bandwidth: float = 1.25e9
    latency: float = 0.0002
    samples_per_second: Any = 3.1e6
    copy_bytes_per_second: float = 2e9
    message_seconds: float = 0.0
    bandwidth_change: tuple[float, float] | None = None

    def rate(self, worker: int) -> float:
        """Samples per second of ``worker``."""
        rates = self.samples_per_second
        if np.ndim(rates) == 0:
            return float(rates)
        return float(rates[worker])

    def bandwidth_at(self, time: float) -> float:
        """Bytes per second of a link at simulated ``time``."""
        if self.bandwidth_change is not None and time >= self.bandwidth_change[0]:
            return self.bandwidth_change[1]
        return self.bandwidth


@dataclass
class _Message:
    payload: np.ndarray
    metadata: dict[str, Any]
    arrives: float


@dataclass
class _Link:
    """One worker's outgoing link: when it is free again, sends awaiting
    their answers."""

    free_at: float = 0.0
    #: (published at, answered at) of each send not yet counted as sent.
    pending: list[tuple[float, float]] = field(default_factory=list)


class SimulatedNetwork:
    """Every worker's link and mailbox, on the workers' simulated clocks.

    Parameters
    ----------
    n_workers : int
    model : LinkModel
    time : VirtualTime
    mailbox_slots : int
    max_in_flight : int
    seed : int
        Seeds the choice of random peers.
    """

    def __init__(
        self,
        n_workers: int,
        model: LinkModel,
        time: VirtualTime,
        mailbox_slots: int,
        max_in_flight: int,
        seed: int,
    ) -> None:
        self.model = model
        self.time = time
        self.max_in_flight = max_in_flight
        self.links = [_Link() for _ in range(n_workers)]
        self.inboxes: list[list[_Message]] = [[] for _ in range(n_workers)]
        self.mailboxes: list[Mailbox[_Message]] = [
            Mailbox(mailbox_slots) for _ in range(n_workers)
        ]
        self.rng = np.random.default_rng(seed)
        self.counters = [_counters() for _ in range(n_workers)]

    def endpoint(self, worker: int) -> SimulatedEndpoint:
        """The endpoint of ``worker``."""
        return SimulatedEndpoint(self, worker)


def _counters() -> dict[str, float]:
    return {
        "published": 0,
        "sent": 0,
        "dropped": 0,
        "failed": 0,
        "refused": 0,
        "bytes_sent": 0,
        "bytes_received": 0,
        "send_latency_total": 0.0,
    }


class SimulatedEndpoint:
    """One worker's subscription to the simulated fit's topic."""

    def __init__(self, network: SimulatedNetwork, worker: int) -> None:
        self.network = network
        self.worker = worker
        self.max_abs: float | None = None

    def limit_magnitude(self, max_abs: float | None) -> None:
        """Refuse, as a real worker's handler does, values beyond ``max_abs``."""
        self.max_abs = max_abs

    def publish(
        self,
        payload: np.ndarray,
        metadata: dict[str, Any] | None = None,
        peer: str | None = None,
        *,
        copy: bool = True,
    ) -> bool:
        """Send ``payload`` to a random peer; False if dropped."""
        network = self.network
        n_workers = len(network.links)
        counters = network.counters[self.worker]
        counters["published"] += 1
        # The training thread snapshots and serialises the message.
        network.time.advance(
            self.worker,
            payload.nbytes / network.model.copy_bytes_per_second
            + network.model.message_seconds,
        )
        now = network.time.now(self.worker)
        link = network.links[self.worker]
        self._settle(now)
        if n_workers < 2 or len(link.pending) >= network.max_in_flight:
            counters["dropped"] += 1
            return False
        target = int(network.rng.integers(n_workers - 1))
        target += target >= self.worker
        start = max(now, link.free_at)
        link.free_at = start + payload.nbytes / network.model.bandwidth_at(start)
        arrives = link.free_at + network.model.latency
        link.pending.append((now, arrives + network.model.latency))
        network.inboxes[target].append(
            _Message(payload.copy() if copy else payload, dict(metadata or {}), arrives)
        )
        counters["bytes_sent"] += payload.nbytes
        return True

    def receive(self) -> list[Any]:
        """The messages that reached this worker by now, oldest first."""
        network = self.network
        now = network.time.now(self.worker)
        inbox = network.inboxes[self.worker]
        arrived = sorted(
            (m for m in inbox if m.arrives <= now), key=lambda m: m.arrives
        )
        network.inboxes[self.worker] = [m for m in inbox if m.arrives > now]
        mailbox = network.mailboxes[self.worker]
        for message in arrived:
            if not self._admitted(message.payload):
                network.counters[self.worker]["refused"] += 1
                continue
            mailbox.put(message)
            network.counters[self.worker]["bytes_received"] += message.payload.nbytes
        return mailbox.drain()

    def _admitted(self, payload: np.ndarray) -> bool:
        if not np.isfinite(payload).all():
            return False
        return self.max_abs is None or float(np.abs(payload).max()) <= self.max_abs

    def stats(self) -> dict[str, float]:
        """The counters a real endpoint gives (see ``Endpoint.stats``)."""
        network = self.network
        self._settle(network.time.now(self.worker))
        counters = dict(network.counters[self.worker])
        box = network.mailboxes[self.worker].counters()
        counters.update(
            received=box["delivered"],
            lost=box["lost"],
            in_flight=len(network.links[self.worker].pending),
            send_latency=counters["send_latency_total"] / counters["sent"]
            if counters["sent"]
            else 0.0,
        )
        return counters

    def _settle(self, now: float) -> None:
        """Count the sends whose answer has come back by ``now``."""
        link = self.network.links[self.worker]
        counters = self.network.counters[self.worker]
        still = []
        for published, answered in link.pending:
            if answered <= now:
                counters["sent"] += 1
                counters["send_latency_total"] += answered - published
            else:
                still.append((published, answered))
        link.pending = still
