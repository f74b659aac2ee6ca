"""What a worker reports to the balancer (balancer and clock are fakes)."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from dask_asgd.balancing import Settings
from dask_asgd.exchange import Message
from dask_asgd.learners import LinearState
from dask_asgd.runtime import Communicator
from dask_asgd.runtime._state_exchange import StateExchange


class QuietEndpoint:
    """An endpoint with no peers: publishing succeeds, nothing arrives."""

    def __init__(self):
        #: Cumulative counters the test sets.
        self.counters = {}

    def receive(self):
        return []

    def publish(self, payload, metadata=None, peer=None, *, copy=True):
        return True

    def limit_magnitude(self, max_abs):
        pass

    def stats(self):
        return dict(self.counters)


class RecordingBalancer:
    """Records every report and answers with the settings it was sent."""

    def __init__(self, answer=None):
        self.reports = []
        self.answer = answer

    def request_settings(self, signals, current):
        self.reports.append(signals)
        future = concurrent.futures.Future()
        future.set_result(self.answer or current)
        return future


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def communicator(balancer, endpoint, report_period=1.0, clock=None, loop_cpu=None):
    state = LinearState.zeros(1, 10, np.float64)
    made = Communicator(
        StateExchange(endpoint, 11, 1.0, parzen_window=True),
        send_interval=100,
        balancer=balancer,
        report_period=report_period,
        loop_cpu=loop_cpu,
        clock=clock or FakeClock(),
    )
    made.start(state)
    return made, state


def test_exchange_cost_counts_the_event_loop_and_outlives_idle_periods():
    loop_clock = iter(np.arange(0.0, 10.0, 0.25))
    clock = FakeClock()
    balancer = RecordingBalancer()

    def ticking():
        clock.now += 0.01
        return clock.now

    made, state = communicator(
        balancer,
        QuietEndpoint(),
        report_period=0.0,
        clock=ticking,
        loop_cpu=lambda: float(next(loop_clock)),
    )
    # With a report period of 0 every call reports: one exchange, then a
    # report covering it, during which the loop used 0.25 s of CPU.
    made.after_samples(100, 0.0, state)
    assert len(balancer.reports) == 1
    first = balancer.reports[0]
    assert first.loop_seconds == pytest.approx(0.25)
    # The exchange itself took one tick of the clock (0.01 s) on top.
    assert first.exchange_seconds == pytest.approx(0.26)
    # A period without any exchange keeps the last known cost, instead of
    # reporting a free exchange (which would pull the interval down).
    made.after_samples(10, 0.0, state)
    assert len(balancer.reports) == 2
    assert balancer.reports[1].exchange_seconds == first.exchange_seconds


def test_first_report_waits_for_a_completed_send():
    clock = FakeClock()
    endpoint = QuietEndpoint()
    balancer = RecordingBalancer()
    made, state = communicator(balancer, endpoint, clock=clock)

    def exchanges(n):
        for _ in range(n):
            clock.now += 0.05
            made.after_samples(100, 0.0, state)

    # Four exchanges and more than a tenth of the period, but no send has
    # come back: at start-up that is the peers starting, so no early report.
    endpoint.counters = {"published": 4, "in_flight": 2, "dropped": 2}
    exchanges(4)
    assert balancer.reports == []
    # A full period without a completed send is reported, with the age of
    # the sends in flight as their latency.
    exchanges(16)
    assert len(balancer.reports) == 1
    assert balancer.reports[0].send_latency == pytest.approx(1.0)
    assert balancer.reports[0].dropped == 2


def test_first_report_comes_early_once_a_send_completed():
    clock = FakeClock()
    endpoint = QuietEndpoint()
    balancer = RecordingBalancer()
    made, state = communicator(balancer, endpoint, clock=clock)
    endpoint.counters = {"published": 4, "sent": 1, "send_latency_total": 0.002}
    for _ in range(4):
        clock.now += 0.05
        made.after_samples(100, 0.0, state)
    assert len(balancer.reports) == 1
    assert balancer.reports[0].send_latency == pytest.approx(0.002)
    # The report says how long it covers: four exchanges 0.05 s apart.
    assert balancer.reports[0].period == pytest.approx(0.2)


def test_the_balancers_answer_is_applied_at_the_next_call_and_recorded():
    clock = FakeClock()
    balancer = RecordingBalancer(Settings(400, 0.5, reason="link"))
    made, state = communicator(
        balancer, QuietEndpoint(), report_period=0.0, clock=clock
    )
    clock.now = 1.0
    made.after_samples(100, 0.0, state)
    assert made.send_interval == 100  # the answer is picked up later
    clock.now = 2.0
    made.after_samples(10, 0.0, state)
    assert made.send_interval == 400
    assert made.exchange.message_size == 0.5
    assert [row["reason"] for row in made.control] == ["initial", "link"]
    assert made.control[1]["time"] == pytest.approx(2.0)
    # Ten samples were trained since the last exchange.
    assert made.samples_until_send() == 390


def test_without_a_balancer_nothing_is_reported():
    made, state = communicator(None, QuietEndpoint(), report_period=0.0)
    made.after_samples(1000, 0.0, state)
    assert made.control == [made.control[0]] and made.send_interval == 100


class SpoilingEndpoint(QuietEndpoint):
    """Peers' messages whose mean overflows: the merged state is non-finite."""

    def __init__(self):
        super().__init__()
        self.published = 0

    def receive(self):
        from dask_asgd.exchange import Message

        huge = np.full((1, 11), 1.5e308)
        return [Message("fit", "peer", huge.copy(), {"column_start": 0})] * 2

    def publish(self, payload, metadata=None, peer=None, *, copy=True):
        self.published += 1
        return True


@pytest.mark.parametrize("diverged_before", [False, True])
def test_a_non_finite_state_is_blamed_on_its_cause_and_never_sent(diverged_before):
    endpoint = SpoilingEndpoint()
    made = Communicator(
        StateExchange(endpoint, 11, 1.0, parzen_window=False),
        send_interval=100,
        balancer=None,
        report_period=1.0,
        clock=FakeClock(),
    )
    state = LinearState.zeros(1, 10, np.float64)
    made.start(state)
    if diverged_before:
        state.weights[0, 0] = np.nan
    with np.errstate(over="ignore"):
        made.after_samples(100, 0.0, state)
    assert made.nonfinite_cause == (
        "nonfinite" if diverged_before else "nonfinite-from-peer"
    )
    assert endpoint.published == 0


class OnePeerEndpoint(QuietEndpoint):
    """Delivers ``payload`` from one peer at every receive."""

    def __init__(self, payload):
        super().__init__()
        self.payload = payload

    def receive(self):
        return [Message("t", "peer", self.payload.copy(), {"column_start": 0})]


def test_a_report_goes_out_after_report_exchanges_however_short_the_time():
    # A frozen clock: the time-based period never elapses (a short fit).
    balancer = RecordingBalancer()
    made, state = communicator(balancer, QuietEndpoint(), report_period=10.0)
    made.report_exchanges = 3
    for _ in range(5):
        made.after_samples(100, 0.0, state)
    assert len(balancer.reports) == 1
    made.after_samples(100, 0.0, state)
    assert len(balancer.reports) == 2


def test_merges_report_how_far_they_moved_the_state_against_own_training():
    peer = np.full((1, 11), 4.0)
    balancer = RecordingBalancer()
    state = LinearState.zeros(1, 10, np.float64)
    made = Communicator(
        StateExchange(OnePeerEndpoint(peer), 11, 1.0, parzen_window=False),
        send_interval=100, balancer=balancer, report_period=10.0,
        clock=FakeClock(), report_exchanges=1,
    )  # fmt: skip
    made.start(state)
    # Own training moves every value from 0 to 1; the merge averages in the
    # peer's 4, moving each value by 1.5.
    state.set_exchanged(np.ones((1, 11)))
    made.after_samples(100, 0.0, state)
    signals = balancer.reports[0]
    assert signals.merges == 1
    assert signals.local_move == pytest.approx(np.sqrt(11))
    assert signals.merge_shift == pytest.approx(1.5 * np.sqrt(11))
    assert signals.benefit == pytest.approx(1.5)
    np.testing.assert_allclose(state.exchanged(), 2.5)


def test_adaptive_exchanges_hold_to_the_cpu_budget_before_any_answer():
    clock = FakeClock()
    state = LinearState.zeros(1, 10, np.float64)
    made = Communicator(
        StateExchange(QuietEndpoint(), 11, 1.0, parzen_window=True),
        send_interval=100, balancer=None, report_period=10.0, clock=clock,
        cpu_budget=0.05,
    )  # fmt: skip
    made.start(state)

    class SlowExchange:
        # An exchange that takes 10 ms of the worker's clock.
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def publish(self, state):
            clock.now += 0.01
            return self.inner.publish(state)

    made.exchange = SlowExchange(made.exchange)
    # 100 samples trained in 1 ms (100,000 samples/s), then the exchange.
    clock.now += 0.001
    made.after_samples(100, 0.0, state)
    # 10 ms at 5 % CPU: 0.2 s of training = 20,000 samples before the next.
    assert made.samples_until_send() == 20_000
    # Without a budget (fixed intervals), the send interval alone.
    fixed, fixed_state = communicator(None, QuietEndpoint())
    fixed.after_samples(100, 0.0, fixed_state)
    assert fixed.samples_until_send() == 100
