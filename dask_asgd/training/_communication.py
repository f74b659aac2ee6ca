"""When a worker exchanges its state, and how the balancer retunes that.

:class:`Communicator` sits between the kernel calls of the worker loop. It
counts samples, runs an exchange (merge what arrived, send the next block)
every ``send_interval`` samples, and with ``communication="adaptive"`` sends
the worker's measured signals to the scheduler's balancer at a steady period
and applies the settings it answers. Nothing here waits on the network: the
report is sent from the event loop and its answer is picked up at a later
exchange.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import _config
from ..balancing import request_settings
from ..exchange import TopicSpec, join_topic
from ._loop_cpu import event_loop_cpu_clock
from ._state_exchange import State, StateExchange

logger = logging.getLogger(__name__)

#: The first balancing report goes out after this many exchanges (a tenth of
#: the report period, and one completed send) instead of a whole period: the
#: user's starting interval may be far from what the link and the state size
#: allow, and a whole period at a wrong rate costs more than the rest of a
#: short fit.
FIRST_REPORT_EXCHANGES = 4


class Communicator:
    """Drive one worker's exchanges and, if adaptive, its balancing reports.

    Parameters
    ----------
    exchange : StateExchange
        The worker's exchange of states.
    fit_id : str
        The fit, for the balancer.
    send_interval : int
        Samples between two exchanges at the start.
    adaptive : bool
        Ask the balancer for new settings every ``report_period`` seconds.
    report_period : float
        Seconds between two balancing reports.
    loop_cpu : callable, optional
        Returns this worker's share of its event loop's CPU seconds so far;
        the loop's CPU over a report period is counted into the cost of the
        period's exchanges (it serialises what is sent and received).
    """

    def __init__(
        self,
        exchange: StateExchange,
        fit_id: str,
        send_interval: int,
        adaptive: bool,
        report_period: float,
        loop_cpu: Callable[[], float] | None = None,
    ) -> None:
        self.exchange = exchange
        self.fit_id = fit_id
        self.send_interval = int(send_interval)
        self.adaptive = adaptive
        self.report_period = report_period
        self.started = time.perf_counter()
        self._previous: np.ndarray | None = None
        self._since_send = 0
        self._pending: concurrent.futures.Future | None = None
        self._pending_sent_at = 0.0
        self._period_start = self.started
        self._period_samples = 0
        self._period_loss = 0.0
        self._period_exchange_seconds = 0.0
        self._period_exchanges = 0
        self._loop_cpu = loop_cpu
        self._period_loop_start = loop_cpu() if loop_cpu is not None else 0.0
        #: Cost of one exchange last measured, for periods without one.
        self._exchange_cost = 0.0
        self._last_loss_rate: float | None = None
        self._latency = 0.0
        self._signals: dict[str, Any] = {}
        self._last_counters = self._counters()
        self._reports = 0
        #: One row per settings change (and the start), for the history.
        self.control: list[dict[str, Any]] = [self._control_row("initial", {})]

    def samples_until_send(self) -> int:
        """Samples to train before the next exchange is due."""
        return max(1, self.send_interval - self._since_send)

    def start(self, state: State) -> None:
        """Remember the state training starts from (the Parzen ``w``)."""
        if self.exchange.parzen_window:
            self._previous = state.exchanged()

    def after_samples(self, n_samples: int, loss: float, state: State) -> None:
        """Account for ``n_samples`` just trained; exchange or report if due.

        Parameters
        ----------
        n_samples : int
            Samples the kernel just trained on.
        loss : float
            Sum of their losses (before each update).
        state : ModelState or KMeansState
            The worker's model, merged into in place.
        """
        self._since_send += n_samples
        self._period_samples += n_samples
        self._period_loss += loss
        if self._since_send >= self.send_interval:
            began = time.perf_counter()
            self.exchange.merge(state, self._previous)
            # The exchanged matrix just sent is also the next Parzen ``w``: one
            # copy of the state per exchange instead of two.
            sent_from = self.exchange.publish(state)
            if self.exchange.parzen_window:
                self._previous = sent_from
            self._period_exchange_seconds += time.perf_counter() - began
            self._period_exchanges += 1
            self._since_send = 0
        if self.adaptive:
            self._balance(state)

    # ------------------------------------------------------------- balancing

    def _counters(self) -> dict[str, float]:
        stats = self.exchange.endpoint.stats()
        return {
            key: float(stats.get(key, 0))
            for key in (
                "published",
                "sent",
                "dropped",
                "failed",
                "received",
                "lost",
                "send_latency_total",
                "in_flight",
            )
        }

    def _balance(self, state: State) -> None:
        if self._pending is not None and self._pending.done():
            self._apply(self._pending)
            self._pending = None
        now = time.perf_counter()
        elapsed = now - self._period_start
        first_due = (
            self._reports == 0
            and self._period_exchanges >= FIRST_REPORT_EXCHANGES
            and elapsed >= self.report_period / 10
            # Early only on a measurement: before any send has completed,
            # the only latency known is the age of the sends in flight, and
            # at start-up that is mostly the peers starting (a process's
            # first kernel call loads the compiled kernel, ~0.2 s, shutting
            # its other threads out for up to ~0.1 s at a time), not the
            # link. The regular report then judges a full period.
            and self.exchange.endpoint.stats().get("sent", 0) > 0
        )
        if self._pending is not None or (
            elapsed < self.report_period and not first_due
        ):
            return
        self._reports += 1
        counters = self._counters()
        delta = {k: counters[k] - self._last_counters.get(k, 0.0) for k in counters}
        if delta["sent"] > 0:
            self._latency = delta["send_latency_total"] / delta["sent"]
        elif counters["in_flight"] > 0:
            # Nothing arrived this period although messages are on the way:
            # they have taken at least the whole period so far.
            self._latency = max(self._latency, elapsed)
        self._last_counters = counters
        loss_rate = self._period_loss / max(self._period_samples, 1)
        progress = 0.0
        if self._last_loss_rate is not None and self._last_loss_rate > 0:
            progress = max(
                0.0, (self._last_loss_rate - loss_rate) / self._last_loss_rate
            )
            progress /= elapsed
        self._last_loss_rate = loss_rate
        loop_seconds = 0.0
        if self._loop_cpu is not None:
            loop_now = self._loop_cpu()
            loop_seconds = loop_now - self._period_loop_start
            self._period_loop_start = loop_now
        if self._period_exchanges:
            self._exchange_cost = (
                self._period_exchange_seconds + loop_seconds
            ) / self._period_exchanges
        signals = {
            "samples_per_second": self._period_samples / elapsed,
            "exchange_seconds": self._exchange_cost,
            "loop_seconds": loop_seconds,
            "send_latency": self._latency,
            "published": int(delta["published"]),
            "dropped": int(delta["dropped"]),
            "failed": int(delta["failed"]),
            "received": int(delta["received"]),
            "lost": int(delta["lost"]),
            "progress": progress,
            "state_bytes": state.exchanged_nbytes,
        }
        self._signals = signals
        self._period_start = now
        self._period_samples = 0
        self._period_loss = 0.0
        self._period_exchange_seconds = 0.0
        self._period_exchanges = 0
        try:
            self._pending = request_settings(
                self.fit_id,
                signals,
                {
                    "send_interval": self.send_interval,
                    "message_size": self.exchange.message_size,
                },
            )
        except RuntimeError:  # pragma: no cover - the worker is shutting down
            logger.debug("Could not reach the balancer", exc_info=True)

    def _apply(self, future: concurrent.futures.Future) -> None:
        try:
            answer = future.result()
        except (OSError, asyncio.TimeoutError, RuntimeError):
            logger.debug("Balancing report failed", exc_info=True)
            return
        if not answer or answer.get("status") != "ok":
            return
        interval = int(answer["send_interval"])
        message_size = float(answer["message_size"])
        if (
            interval == self.send_interval
            and message_size == self.exchange.message_size
        ):
            return
        self.send_interval = interval
        if message_size != self.exchange.message_size:
            self.exchange.set_message_size(message_size)
        self.control.append(self._control_row(answer.get("reason", ""), self._signals))

    def _control_row(self, reason: str, signals: dict[str, Any]) -> dict[str, Any]:
        return {
            "time": time.perf_counter() - self.started,
            "send_interval": self.send_interval,
            "message_size": self.exchange.message_size,
            "reason": reason,
            **{f"signal_{k}": v for k, v in signals.items()},
        }


@contextmanager
def open_communicator(task: Any) -> Iterator[Communicator | None]:
    """Join the fit's topic for the duration of training, with a communicator.

    Runs on the worker, inside the training task; leaving the block closes
    the subscription (the topic's mailbox and handler go with it).

    Parameters
    ----------
    task : WorkerTask or KMeansTask
        Its ``communication``, ``peers``, ``fit_id``, ``seed``, ``state``,
        ``send_interval``, ``message_size``, ``parzen_window`` and
        ``report_period`` are used.

    Yields
    ------
    Communicator or None
        None when the worker does not communicate (``"off"``, or alone).
    """
    from distributed import get_worker

    if task.communication == "off" or len(task.peers) <= 1:
        yield None
        return
    config = _config.load().exchange
    spec = TopicSpec(
        topic=task.fit_id,
        mailbox_slots=config.mailbox_slots,
        max_in_flight=config.max_in_flight,
        send_timeout=config.send_timeout,
        min_bandwidth=config.min_bandwidth,
        seed=task.seed,
    )
    endpoint = join_topic(spec, task.peers)
    try:
        exchange = StateExchange(
            endpoint,
            task.state.exchanged_shape[1],
            task.message_size,
            task.parzen_window,
            type(task.state).parzen_per_row,
        )
        yield Communicator(
            exchange,
            task.fit_id,
            task.send_interval,
            adaptive=task.communication == "adaptive",
            report_period=task.report_period,
            loop_cpu=event_loop_cpu_clock(get_worker()),
        )
    finally:
        endpoint.close()
