"""When a worker exchanges its state, and how the balancer retunes that.

:class:`Communicator` sits between the kernel calls of the worker loop. It
counts samples, runs an exchange (merge what arrived, send the next block)
every ``send_interval`` samples, and with ``communication="adaptive"`` sends
the worker's measured signals to the balancer at a steady period and applies
the settings it answers. Nothing here waits on the network: the report goes
out through the control plane, and its answer is picked up at a later
exchange.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from .. import _config
from ..balancing import BalancingPolicy, PolicyLimits, Settings, WorkerSignals
from ..learners import ExchangedState
from ._state_exchange import StateExchange
from ._task import NONFINITE_OWN, NONFINITE_PEER

logger = logging.getLogger(__name__)

#: The first balancing report goes out after this many exchanges (a tenth of
#: the report period, and one completed send) instead of a whole period: the
#: user's starting interval may be far from what the link and the state size
#: allow, and a whole period at a wrong rate costs more than the rest of a
#: short fit.
FIRST_REPORT_EXCHANGES = 4

#: Exchange counters of what merges bought, compared from one report to the
#: next (see :class:`~dask_asgd.balancing.WorkerSignals`).
_BENEFIT = ("merges", "merge_shift", "local_move", "rejected_merges")

#: Endpoint counters a report compares from one period to the next.
_COUNTERS = (
    "published",
    "sent",
    "dropped",
    "failed",
    "received",
    "lost",
    "send_latency_total",
    "in_flight",
)


def policy_limits(balancing: _config.BalancingConfig) -> PolicyLimits:
    """The balancer's bounds from the ``asgd.balancing`` settings."""
    return PolicyLimits(
        min_send_interval=balancing.min_send_interval,
        max_send_interval=balancing.max_send_interval,
        min_message_size=balancing.min_message_size,
        cpu_budget=balancing.cpu_budget,
        max_send_time=balancing.max_send_time,
    )


def first_message_size(
    balancing: _config.BalancingConfig, state_bytes: int, requested: float
) -> float:
    """The message size an adaptive worker starts with.

    Before the balancer has measured anything, a worker sends the smallest
    message the law would choose for its state (see
    :meth:`BalancingPolicy.first_message_size`), never more than the user's
    ``message_size``: start-up spends no more of the link than the law would
    budget on the slowest link.
    """
    policy = BalancingPolicy(policy_limits(balancing))
    return policy.first_message_size(state_bytes, requested)


def first_send_interval(
    balancing: _config.BalancingConfig, requested: int, rows_per_epoch: int
) -> int:
    """The send interval an adaptive worker starts with.

    The user's ``send_interval``, shortened for a worker whose rows would
    not give the balancer a report early in the first epoch (see
    :meth:`BalancingPolicy.first_send_interval`).
    """
    policy = BalancingPolicy(policy_limits(balancing))
    return policy.first_send_interval(
        requested, rows_per_epoch, balancing.report_exchanges
    )


class SettingsSource(Protocol):
    """Where a worker asks for new exchange settings (the balancer)."""

    def request_settings(
        self, signals: WorkerSignals, current: Settings
    ) -> concurrent.futures.Future:
        """Send the signals; the future resolves to new Settings or None."""


class Communicator:
    """Drive one worker's exchanges and, if adaptive, its balancing reports.

    Parameters
    ----------
    exchange : StateExchange
        The worker's exchange of states.
    send_interval : int
        Samples between two exchanges at the start.
    balancer : SettingsSource or None
        Where to ask for new settings; None keeps the settings fixed.
    report_period : float
        Longest time between two balancing reports, in seconds.
    report_exchanges : int, optional
        A report goes out after this many exchanges, however short the time
        they took; None reports by time only.
    cpu_budget : float, optional
        Share of the worker's time one exchange may take: after an exchange
        that took ``t`` seconds, the next waits for at least ``t /
        cpu_budget`` seconds of training, whatever the send interval. None
        (fixed intervals) sends at the send interval.
    loop_cpu : callable, optional
        Returns this worker's share of its event loop's CPU seconds so far;
        the loop's CPU over a report period is counted into the cost of the
        period's exchanges (it serialises what is sent and received).
    clock : callable, default=time.perf_counter
        Seconds, for periods and costs.
    """

    def __init__(
        self,
        exchange: StateExchange,
        send_interval: int,
        balancer: SettingsSource | None,
        report_period: float,
        loop_cpu: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        report_exchanges: int | None = None,
        cpu_budget: float | None = None,
    ) -> None:
        self.exchange = exchange
        self.cpu_budget = cpu_budget
        self._cpu_floor = 0
        self._last_exchange_end = clock()
        self.send_interval = int(send_interval)
        self.balancer = balancer
        self.report_period = report_period
        self.report_exchanges = report_exchanges
        self._clock = clock
        self.started = clock()
        self._previous: Any = None
        self._since_send = 0
        self._pending: concurrent.futures.Future | None = None
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
        self._signals: WorkerSignals | None = None
        self._last_counters = self._counters()
        self._last_benefit = self._benefit_counters()
        self._reports = 0
        #: NONFINITE_OWN or NONFINITE_PEER once the state was found non-finite
        #: at an exchange.
        self.nonfinite_cause: str | None = None
        #: One row per settings change (and the start), for the history.
        self.control: list[dict[str, Any]] = [self._control_row("initial")]

    def samples_until_send(self) -> int:
        """Samples to train before the next exchange is due."""
        return max(1, self._due() - self._since_send)

    def _due(self) -> int:
        return max(self.send_interval, self._cpu_floor)

    def start(self, state: ExchangedState) -> None:
        """Remember the state training starts from (the Parzen ``w``)."""
        self._previous = state.exchanged()
        self._last_exchange_end = self._clock()

    def after_samples(self, n_samples: int, loss: float, state: ExchangedState) -> None:
        """Account for ``n_samples`` just trained; exchange or report if due.

        Parameters
        ----------
        n_samples : int
            Samples the kernel just trained on.
        loss : float
            Sum of their losses (before each update).
        state : ExchangedState
            The worker's model, merged into in place.
        """
        self._since_send += n_samples
        self._period_samples += n_samples
        self._period_loss += loss
        if self._since_send >= self._due():
            began = self._clock()
            self._merge(state)
            # A non-finite state is never sent: it would spoil every peer.
            if self.nonfinite_cause is None:
                # The exchanged matrix just sent is also the next Parzen
                # ``w``: one copy of the state per exchange instead of two.
                self._previous = self.exchange.publish(state)
            ended = self._clock()
            self._period_exchange_seconds += ended - began
            self._period_exchanges += 1
            self._hold_to_cpu_budget(ended - began, began - self._last_exchange_end)
            self._last_exchange_end = ended
            self._since_send = 0
        if self.balancer is not None:
            self._balance(state)

    def _hold_to_cpu_budget(self, spent: float, trained: float) -> None:
        """Train at least ``spent / cpu_budget`` seconds before the next exchange.

        The balancer's CPU bound, applied on the worker from the exchange just
        made: until the balancer's first answer, and between its answers, an
        exchange never takes more than ``cpu_budget`` of the worker's time.
        """
        if self.cpu_budget is None or trained <= 0:
            return
        rate = self._since_send / trained
        self._cpu_floor = round(spent / self.cpu_budget * rate)

    def _merge(self, state: ExchangedState) -> None:
        """Merge what peers sent; note whose fault a non-finite state is.

        The state is checked before and after the merge, so that a state a
        peer's message spoiled is never blamed on this worker's rows.
        """
        if self.nonfinite_cause is None and not state.is_finite():
            self.nonfinite_cause = NONFINITE_OWN
        self.exchange.merge(state, self._previous)
        if self.nonfinite_cause is None and not state.is_finite():
            self.nonfinite_cause = NONFINITE_PEER

    # ------------------------------------------------------------- balancing

    def _counters(self) -> dict[str, float]:
        stats = self.exchange.endpoint.stats()
        return {key: float(stats.get(key, 0)) for key in _COUNTERS}

    def _benefit_counters(self) -> dict[str, float]:
        return {key: float(getattr(self.exchange, key)) for key in _BENEFIT}

    def _report_due(self, elapsed: float) -> bool:
        if self._pending is not None:
            return False
        if elapsed >= self.report_period:
            return True
        if (
            self.report_exchanges is not None
            and self._period_exchanges >= self.report_exchanges
        ):
            return True
        # Early only on a measurement: before any send has completed, the
        # only latency known is the age of the sends in flight, and at
        # start-up that is mostly the peers starting (a process's first
        # kernel call loads the compiled kernel, ~0.2 s, shutting its other
        # threads out for up to ~0.1 s at a time), not the link. The regular
        # report then judges a full period.
        return (
            self._reports == 0
            and self._period_exchanges >= FIRST_REPORT_EXCHANGES
            and elapsed >= self.report_period / 10
            and self.exchange.endpoint.stats().get("sent", 0) > 0
        )

    def _balance(self, state: ExchangedState) -> None:
        if self._pending is not None and self._pending.done():
            self._apply(self._pending)
            self._pending = None
        now = self._clock()
        elapsed = now - self._period_start
        if not self._report_due(elapsed):
            return
        self._reports += 1
        self._signals = self._measure(state, elapsed)
        self._period_start = now
        self._period_samples = 0
        self._period_loss = 0.0
        self._period_exchange_seconds = 0.0
        self._period_exchanges = 0
        assert self.balancer is not None
        try:
            self._pending = self.balancer.request_settings(
                self._signals,
                Settings(self.send_interval, self.exchange.message_size),
            )
        except RuntimeError:  # pragma: no cover - the worker is shutting down
            logger.debug("Could not reach the balancer", exc_info=True)

    def _measure(self, state: ExchangedState, elapsed: float) -> WorkerSignals:
        """This period's signals; moves the counters' baselines forward."""
        counters = self._counters()
        delta = {k: counters[k] - self._last_counters.get(k, 0.0) for k in counters}
        self._last_counters = counters
        if delta["sent"] > 0:
            self._latency = delta["send_latency_total"] / delta["sent"]
        elif counters["in_flight"] > 0:
            # Nothing arrived this period although messages are on the way:
            # they have taken at least the whole period so far.
            self._latency = max(self._latency, elapsed)
        loss_rate = self._period_loss / max(self._period_samples, 1)
        progress = 0.0
        if self._last_loss_rate is not None and self._last_loss_rate > 0:
            progress = max(
                0.0, (self._last_loss_rate - loss_rate) / self._last_loss_rate
            )
            progress /= max(elapsed, 1e-12)
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
        benefit = self._benefit_counters()
        merged = {k: benefit[k] - self._last_benefit[k] for k in _BENEFIT}
        self._last_benefit = benefit
        return WorkerSignals(
            samples_per_second=self._period_samples / max(elapsed, 1e-12),
            exchange_seconds=self._exchange_cost,
            send_latency=self._latency,
            published=int(delta["published"]),
            dropped=int(delta["dropped"]),
            failed=int(delta["failed"]),
            received=int(delta["received"]),
            lost=int(delta["lost"]),
            progress=progress,
            state_bytes=state.exchanged_nbytes,
            loop_seconds=loop_seconds,
            period=elapsed,
            merges=int(merged["merges"]),
            merge_shift=merged["merge_shift"],
            local_move=merged["local_move"],
            rejected_merges=int(merged["rejected_merges"]),
        )

    def _apply(self, future: concurrent.futures.Future) -> None:
        try:
            decided = future.result()
        except (OSError, asyncio.TimeoutError, RuntimeError):
            logger.debug("Balancing report failed", exc_info=True)
            return
        if decided is None:  # the fit is no longer running
            return
        if (
            decided.send_interval == self.send_interval
            and decided.message_size == self.exchange.message_size
        ):
            return
        self.send_interval = int(decided.send_interval)
        if decided.message_size != self.exchange.message_size:
            self.exchange.set_message_size(decided.message_size)
        self.control.append(self._control_row(decided.reason))

    def _control_row(self, reason: str) -> dict[str, Any]:
        signals = vars(self._signals) if self._signals is not None else {}
        return {
            "time": self._clock() - self.started,
            "send_interval": self.send_interval,
            "message_size": self.exchange.message_size,
            "reason": reason,
            **{f"signal_{k}": v for k, v in signals.items()},
        }
