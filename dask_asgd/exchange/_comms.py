"""The sending side: bounded, fire-and-forget pushes to a peer's mailbox.

A :class:`Publisher` belongs to one topic subscription on one worker. The
training thread calls :meth:`Publisher.publish`, which snapshots the array,
reserves one of ``max_in_flight`` send slots and hands the send to the worker's
event loop; it never waits for the network. Past the bound a message is
dropped and counted, never queued: a queue would only deliver states that are
older by the time they arrive, and dropping while busy keeps memory bounded.

Errors of a send (dead peer, timeout, a peer without the plugin) are counted
and logged, never raised into the training thread. The transport is injected
(``rpc``: ``address -> object with an async asgd_exchange_receive(**msg)``),
which is ``worker.rpc`` in production and a fake in the tests.

:class:`LinkShaper` is the optional link simulator: a token bucket that makes
a worker's outgoing traffic look like a link of a given bandwidth and latency.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed.protocol import to_serialize

from ._types import RECEIVE_HANDLER, TopicSpec

logger = logging.getLogger(__name__)
#: Per-message tracing; very verbose, off unless enabled explicitly.
message_logger = logging.getLogger(__name__ + ".messages")

#: Injected transport: ``rpc(address)`` returns an object whose
#: ``asgd_exchange_receive(**message)`` coroutine delivers the message.
RPC = Callable[[str], Any]

# Outcomes of one send, as counted in Publisher.stats().
_SENT = "sent"
_REFUSED = "refused_by_peer"
_FAILED = "failed"
_TIMED_OUT = "timed_out"
_CANCELLED = "cancelled"


class LinkShaper:
    """Token bucket that delays sends as a link of given bandwidth and latency.

    Every send reserves ``nbytes`` tokens; tokens refill at ``bandwidth``
    bytes/s up to ``burst``. The bucket may go into debt, so a message larger
    than the burst still passes, after the time the link needs to carry it,
    and sends that reserve after it queue behind it (a serial link). Each send
    then waits the one-way ``latency`` on top; latencies of consecutive sends
    overlap, as on a real pipe. Waiting is ``await``-ed on the event loop, so
    the sends stay in flight (and count against ``max_in_flight``) meanwhile.

    Parameters
    ----------
    bandwidth : float or None
        Bytes per second; None means unlimited (only latency is added).
    latency : float, default=0
        Seconds added to every send.
    burst : float, optional
        Bucket capacity in bytes; default 64 KiB, a few TCP segments' worth,
        so that small control-size messages are not delayed by the rate.
    clock : callable, default=time.monotonic
        Returns the time in seconds; injectable for tests.
    sleep : callable, default=asyncio.sleep
        Coroutine function that waits a number of seconds; injectable for tests.
    """

    def __init__(
        self,
        bandwidth: float | None,
        latency: float = 0.0,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0 bytes/s, got {bandwidth}")
        if latency < 0:
            raise ValueError(f"latency must be >= 0 s, got {latency}")
        self.bandwidth: float | None = bandwidth
        self.latency: float = float(latency)
        self.burst: float = float(64 * 2**10 if burst is None else burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens: float = self.burst
        self._last: float = clock()
        #: Messages that went through the shaper.
        self.messages: int = 0
        #: Tokens (bytes) consumed.
        self.tokens_consumed: int = 0
        #: Messages that had to wait.
        self.delayed: int = 0
        #: Total seconds of waiting (rate and latency) over all messages.
        self.wait_total: float = 0.0

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` tokens and return how long the send must wait.

        Parameters
        ----------
        nbytes : int
            Size of the message.

        Returns
        -------
        float
            Seconds until the link has carried the message, plus the latency.
        """
        now = self._clock()
        delay = self.latency
        if self.bandwidth is not None:
            self._tokens = min(
                self.burst, self._tokens + (now - self._last) * self.bandwidth
            )
            self._tokens -= nbytes
            if self._tokens < 0:
                delay += -self._tokens / self.bandwidth
        self._last = now
        self.messages += 1
        self.tokens_consumed += int(nbytes)
        if delay > 0:
            self.delayed += 1
            self.wait_total += delay
        return delay

    async def wait(self, nbytes: int) -> float:
        """Reserve tokens for ``nbytes`` and wait until the link carried them.

        Parameters
        ----------
        nbytes : int
            Size of the message.

        Returns
        -------
        float
            Seconds waited.
        """
        delay = self.reserve(nbytes)
        if delay > 0:
            await self._sleep(delay)
        return delay

    def counters(self) -> dict[str, float]:
        """Return the shaper's counters.

        Returns
        -------
        dict
            ``messages``, ``tokens_consumed``, ``delayed`` and ``wait_total``.
        """
        return {
            "messages": self.messages,
            "tokens_consumed": self.tokens_consumed,
            "delayed": self.delayed,
            "wait_total": self.wait_total,
        }

    def __repr__(self) -> str:
        return f"<LinkShaper bandwidth={self.bandwidth} B/s latency={self.latency} s>"


def _plain_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    # Metadata travels msgpack-encoded; a NumPy scalar would make distributed
    # fall back to pickle and log an INFO line for every message.
    if not metadata:
        return {}
    return {
        str(key): value.item() if isinstance(value, np.generic) else value
        for key, value in metadata.items()
    }


@dataclass
class _Outgoing:
    """One message on its way: what _send needs, made by publish()."""

    target: str
    message: dict[str, Any]
    nbytes: int
    #: time.perf_counter() at publish, for the send latency.
    t0: float
    #: The snapshot, if it may be reused once the send finished.
    buffer: np.ndarray | None


class Publisher:
    """Sends one topic's messages from one worker to its peers.

    Thread-safe: :meth:`publish` may be called from any thread (the training
    task's, typically); sends always run on ``loop``.

    Parameters
    ----------
    spec : TopicSpec
        Topic, in-flight bound, send timeout and seed.
    sender : str
        This worker's address; never chosen as a random target.
    rpc : callable
        ``rpc(address)`` returns an object with an ``asgd_exchange_receive``
        coroutine method (``worker.rpc``, or a fake in tests).
    loop : asyncio.AbstractEventLoop
        The event loop that runs the sends (the worker's).
    peers : sequence of str, default=()
        Addresses to choose random targets from, fixed for the publisher's
        life; this worker's own address is skipped.
    shaper : LinkShaper, optional
        Link simulator shared by the worker's publishers.
    """

    def __init__(
        self,
        spec: TopicSpec,
        *,
        sender: str,
        rpc: RPC,
        loop: asyncio.AbstractEventLoop,
        peers: Sequence[str] = (),
        shaper: LinkShaper | None = None,
    ) -> None:
        self.spec: TopicSpec = spec
        self.sender: str = sender
        self._rpc = rpc
        self._loop = loop
        self._shaper = shaper
        self._lock = threading.Lock()
        self._rng = random.Random(spec.seed)
        if isinstance(peers, str):
            raise TypeError("peers must be a sequence of addresses, not one str")
        self._peers: tuple[str, ...] = tuple(dict.fromkeys(peers))
        self._targets: tuple[str, ...] = tuple(p for p in self._peers if p != sender)
        # Only touched on the loop thread: keeps the send tasks alive (the
        # loop holds tasks weakly) and lets aclose() cancel them.
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned: set[str] = set()
        # Snapshot buffers of finished sends, reused by later snapshots.
        self._spare: list[np.ndarray] = []
        self._closed: bool = False
        self._cancelling: bool = False
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "published",
                _SENT,
                _REFUSED,
                _FAILED,
                _TIMED_OUT,
                _CANCELLED,
                "dropped",
                "no_peer",
                "bytes_sent",
            ),
            0,
        )
        self._in_flight: int = 0
        self._latency_total: float = 0.0
        self._latency_count: int = 0

    # ------------------------------------------------------------- sending

    @property
    def peers(self) -> tuple[str, ...]:
        """The peers, without duplicates (may include this worker)."""
        return self._peers

    @property
    def in_flight(self) -> int:
        """Messages published whose send has not finished yet."""
        return self._in_flight

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _reserve(self, peer: str | None) -> str | None:
        """Take a send slot and pick the target, or count a drop."""
        with self._lock:
            if self._closed or self._in_flight >= self.spec.max_in_flight:
                self._counts["dropped"] += 1
                return None
            if peer is None:
                if not self._targets:
                    self._counts["dropped"] += 1
                    self._counts["no_peer"] += 1
                    return None
                peer = self._rng.choice(self._targets)
            self._in_flight += 1
            self._counts["published"] += 1
            return peer

    def _release(self, outcome: str, nbytes: int, latency: float | None) -> None:
        with self._lock:
            self._in_flight -= 1
            self._counts[outcome] += 1
            if outcome == _TIMED_OUT:
                # A timeout is a failure too; the extra key says which kind.
                self._counts[_FAILED] += 1
            elif outcome == _SENT:
                self._counts["bytes_sent"] += nbytes
            if latency is not None:
                self._latency_total += latency
                self._latency_count += 1

    def _snapshot(self, payload: np.ndarray, reusable: bool) -> np.ndarray:
        # The send is zero-copy: the frames share memory with the array until
        # the write finished, so the caller's array must not change meanwhile.
        # Copy it into a spare buffer of an earlier send when there is one:
        # distributed's nanny sets MALLOC_TRIM_THRESHOLD_, so in a worker every
        # large fresh array is a new mmap whose page faults cost 1.6 ms per
        # 8 MB against 0.2 ms for a copy into warm memory
        # (benchmarks/bench_exchange.py).
        source = np.asarray(payload)
        buffer = None
        if reusable:
            with self._lock:
                for i, spare in enumerate(self._spare):
                    if spare.shape == source.shape and spare.dtype == source.dtype:
                        buffer = self._spare.pop(i)
                        break
        if buffer is None:
            return source.copy()
        np.copyto(buffer, source)
        return buffer

    def _recycle(self, buffer: np.ndarray) -> None:
        with self._lock:
            if self._closed:
                return
            self._spare.append(buffer)
            # Keep no more than can be in flight; a shape change (new message
            # size) thus evicts the old buffers after a few sends.
            del self._spare[: -self.spec.max_in_flight]

    def _prepare(
        self,
        target: str,
        payload: np.ndarray,
        metadata: dict[str, Any] | None,
        copy: bool,
        t0: float,
    ) -> _Outgoing:
        sent_at = time.time()  # before the copy: the time of the publish call
        # The in-process transport hands the very object to the receiver, so
        # a buffer sent there must never be reused.
        reusable = copy and not target.startswith("inproc://")
        array = self._snapshot(payload, reusable) if copy else np.asarray(payload)
        message = {
            "topic": self.spec.topic,
            "sender": self.sender,
            "payload": to_serialize(array),
            "metadata": _plain_metadata(metadata),
            "sent_at": sent_at,
        }
        return _Outgoing(
            target, message, int(array.nbytes), t0, array if reusable else None
        )

    def publish(
        self,
        payload: np.ndarray,
        metadata: dict[str, Any] | None = None,
        peer: str | None = None,
        *,
        copy: bool = True,
    ) -> bool:
        """Send a snapshot of ``payload`` to a peer; return at once.

        Parameters
        ----------
        payload : numpy.ndarray
            The array to send.
        metadata : dict, optional
            Small dict of msgpack-native values sent along.
        peer : str, optional
            Target address; by default a random peer other than this worker.
        copy : bool, default=True
            Snapshot ``payload``. Pass False only for an array that nobody
            writes to any more (e.g. a fresh slice copy made for this send).

        Returns
        -------
        bool
            True if the send was started; False if the message was dropped
            (``max_in_flight`` sends pending, no peer, or closed).
        """
        target = self._reserve(peer)
        if target is None:
            return False
        try:
            outgoing = self._prepare(
                target, payload, metadata, copy, time.perf_counter()
            )
        except BaseException:
            # A bad payload is the caller's bug: give the slot back and raise.
            self._release(_CANCELLED, 0, None)
            raise
        try:
            self._loop.call_soon_threadsafe(self._start, outgoing)
        except RuntimeError:
            # The worker's loop is closed: the worker is shutting down.
            self._release(_FAILED, outgoing.nbytes, None)
            return False
        return True

    def _start(self, outgoing: _Outgoing) -> None:
        """Start the send task; runs on the loop thread."""
        if self._cancelling:
            # aclose() ran between publish() and this callback.
            self._release(_CANCELLED, outgoing.nbytes, None)
            return
        task = self._loop.create_task(self._send(outgoing))
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            # A task cancelled before its first step never enters _send's
            # body, so cancellation is accounted for here, in one place.
            if task.cancelled():
                self._release(_CANCELLED, outgoing.nbytes, None)

        task.add_done_callback(done)

    async def _send(self, outgoing: _Outgoing) -> None:
        target, nbytes = outgoing.target, outgoing.nbytes
        timeout = self.spec.timeout_for(nbytes)
        latency: float | None = None
        try:
            if self._shaper is not None:
                await self._shaper.wait(nbytes)
            call = getattr(self._rpc(target), RECEIVE_HANDLER)(**outgoing.message)
            reply = await self._with_timeout(call, timeout)
            latency = time.perf_counter() - outgoing.t0
        except (asyncio.TimeoutError, TimeoutError):
            outcome = _TIMED_OUT
            self._note_failure(target, f"no reply within {timeout:.3g} s")
        except Exception as e:
            # OSError, CommClosedError, an error raised by the peer's handler:
            # counted, never raised into the training thread.
            outcome = _FAILED
            self._note_failure(target, f"{type(e).__name__}: {e}")
        else:
            # The peer answered, so the write finished and the buffer is free.
            # After an error or timeout the comm may still hold it: let it go.
            if outgoing.buffer is not None:
                self._recycle(outgoing.buffer)
            status = reply.get("status") if isinstance(reply, dict) else None
            if status == "OK":
                outcome = _SENT
            elif status == "refused":
                outcome = _REFUSED
                message_logger.debug(
                    "%s refused by %s: %s", self.spec, target, reply.get("reason")
                )
            else:
                # A worker without the plugin answers None (no such handler).
                outcome = _FAILED
                self._note_failure(target, f"unexpected reply {reply!r}")
        message_logger.debug(
            "%s -> %s: %d bytes, %s", self.spec, target, nbytes, outcome
        )
        self._release(outcome, nbytes, latency)

    async def _with_timeout(self, call: Awaitable[Any], timeout: float | None) -> Any:
        if timeout is None:
            return await call
        if sys.version_info >= (3, 11):
            # Unlike wait_for, asyncio.timeout runs the call in this task
            # instead of wrapping it in another one: one task less per send.
            async with asyncio.timeout(timeout):
                return await call
        return await asyncio.wait_for(call, timeout)  # pragma: no cover

    def _note_failure(self, target: str, reason: str) -> None:
        # Warn once per peer: a dead peer stays among the peers for the rest
        # of the run and would otherwise log every send; the counters carry
        # the rest.
        if target not in self._warned:
            self._warned.add(target)
            logger.warning("%s: send to %s failed: %s", self.spec, target, reason)
        else:
            logger.debug("%s: send to %s failed: %s", self.spec, target, reason)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Refuse new publishes; sends in flight finish (thread-safe)."""
        with self._lock:
            self._closed = True
            self._spare.clear()

    def cancel_in_flight(self) -> None:
        """Close and cancel the sends in flight, without waiting (thread-safe).

        What a closed topic still has on the wire is of no use to anyone:
        at the end of a fit the peers have stopped merging, and a multi-MB
        send on a slow link would hold the link while the driver gathers the
        states. Cancelled sends are counted in ``cancelled``.
        """
        self.close()
        try:
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop)
        except RuntimeError:  # the loop is closed: no send runs on it
            logger.debug("%s: loop closed, no send to cancel", self.spec)

    async def aclose(self) -> None:
        """Close, cancel the sends in flight and wait for them (loop thread)."""
        self.close()
        self._cancelling = True
        # One loop iteration runs the _start callbacks that publish() queued
        # before the close; they see _cancelling and give their slot back.
        await asyncio.sleep(0)
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ----------------------------------------------------------------- stats

    def stats(self) -> dict[str, int | float]:
        """Return a consistent snapshot of the sending counters.

        Returns
        -------
        dict
            ``published`` (send started), ``sent`` (accepted by the peer),
            ``refused_by_peer``, ``failed`` (errors, including ``timed_out``),
            ``timed_out``, ``cancelled``, ``dropped`` (in-flight bound, no
            peer, closed), ``no_peer``, ``bytes_sent``, ``in_flight``,
            ``send_latency`` (mean seconds from publish to the peer's answer)
            and ``send_latency_total`` (their sum, for windowed means). Always
            ``published == sent + refused_by_peer + failed + cancelled +
            in_flight``.
        """
        with self._lock:
            out: dict[str, int | float] = dict(self._counts)
            out["in_flight"] = self._in_flight
            out["send_latency_total"] = self._latency_total
            out["send_latency"] = (
                self._latency_total / self._latency_count
                if self._latency_count
                else 0.0
            )
        return out

    def __repr__(self) -> str:
        return f"<Publisher {self.spec} from {self.sender} in_flight={self._in_flight}>"
