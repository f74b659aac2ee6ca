"""What a worker reports to the balancer (control plane replaced by a recorder)."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from dask_asgd.training import _communication
from dask_asgd.training._communication import Communicator
from dask_asgd.training._model_state import ModelState
from dask_asgd.training._state_exchange import StateExchange


class QuietEndpoint:
    """An endpoint with no peers: publishing succeeds, nothing arrives."""

    def receive(self):
        return []

    def publish(self, payload, metadata=None, peer=None, *, copy=True):
        return True

    def stats(self):
        return {}


@pytest.fixture
def reports(monkeypatch):
    sent = []

    def request_settings(fit_id, signals, settings):
        sent.append(dict(signals))
        answer = concurrent.futures.Future()
        answer.set_result({"status": "ok", **settings, "reason": "unchanged"})
        return answer

    monkeypatch.setattr(_communication, "request_settings", request_settings)
    return sent


def test_exchange_cost_counts_the_event_loop_and_outlives_idle_periods(reports):
    loop_clock = iter(np.arange(0.0, 10.0, 0.25))
    state = ModelState.zeros(1, 10, np.float64)
    communicator = Communicator(
        StateExchange(QuietEndpoint(), 11, 1.0, parzen_window=True),
        "fit",
        send_interval=100,
        adaptive=True,
        report_period=0.0,
        loop_cpu=lambda: float(next(loop_clock)),
    )
    communicator.start(state)
    # With a report period of 0 every call reports: one exchange, then a
    # report covering it, during which the loop used 0.25 s of CPU.
    communicator.after_samples(100, 0.0, state)
    assert len(reports) == 1
    first = reports[0]
    assert first["loop_seconds"] == pytest.approx(0.25)
    assert 0.25 <= first["exchange_seconds"] < 0.35
    # A period without any exchange keeps the last known cost, instead of
    # reporting a free exchange (which would pull the interval down).
    communicator.after_samples(10, 0.0, state)
    assert len(reports) == 2
    assert reports[1]["exchange_seconds"] == first["exchange_seconds"]


class CountingEndpoint(QuietEndpoint):
    """An endpoint whose cumulative counters the test sets."""

    def __init__(self):
        self.counters = {}

    def stats(self):
        return dict(self.counters)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def adaptive_communicator(endpoint, state):
    communicator = Communicator(
        StateExchange(endpoint, 11, 1.0, parzen_window=True),
        "fit",
        send_interval=100,
        adaptive=True,
        report_period=1.0,
    )
    communicator.start(state)
    return communicator


def test_first_report_waits_for_a_completed_send(reports, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_communication, "time", clock)
    endpoint = CountingEndpoint()
    state = ModelState.zeros(1, 10, np.float64)
    communicator = adaptive_communicator(endpoint, state)

    def exchanges(n):
        for _ in range(n):
            clock.now += 0.05
            communicator.after_samples(100, 0.0, state)

    # Four exchanges and more than a tenth of the period, but no send has
    # come back: at start-up that is the peers starting, so no early report.
    endpoint.counters = {"published": 4, "in_flight": 2, "dropped": 2}
    exchanges(4)
    assert reports == []
    # A full period without a completed send is reported, with the age of
    # the sends in flight as their latency.
    exchanges(16)
    assert len(reports) == 1
    assert reports[0]["send_latency"] == pytest.approx(1.0)
    assert reports[0]["dropped"] == 2


def test_first_report_comes_early_once_a_send_completed(reports, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_communication, "time", clock)
    endpoint = CountingEndpoint()
    state = ModelState.zeros(1, 10, np.float64)
    communicator = adaptive_communicator(endpoint, state)
    endpoint.counters = {"published": 4, "sent": 1, "send_latency_total": 0.002}
    for _ in range(4):
        clock.now += 0.05
        communicator.after_samples(100, 0.0, state)
    assert len(reports) == 1
    assert reports[0]["send_latency"] == pytest.approx(0.002)
