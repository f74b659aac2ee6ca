"""The balancing control law, on its own (no Dask)."""

from __future__ import annotations

import dataclasses

import pytest

from dask_asgd import _config
from dask_asgd.balancing import BalancingPolicy, PolicyLimits, Settings, WorkerSignals
from dask_asgd.runtime import policy_limits


def limits(**overrides) -> PolicyLimits:
    """The limits of the packaged ``asgd.balancing`` settings, some overridden."""
    return dataclasses.replace(policy_limits(_config.load().balancing), **overrides)


RATE = 4_000_000.0  # samples per second of a busy worker
STATE = 8 * 1024 * 1024  # an 8 MB state


def signals(**overrides):
    base = dict(
        samples_per_second=RATE,
        exchange_seconds=0.0002,
        send_latency=0.001,
        published=100,
        received=100,
        state_bytes=STATE,
    )
    base.update(overrides)
    return WorkerSignals(**base)


def run(policy, settings, make_signals, reports=20):
    history = [settings]
    for _ in range(reports):
        settings = policy.decide(settings, make_signals(settings))
        history.append(settings)
    return history


def link(bandwidth, fixed_latency=0.0005):
    """Signals of a link of ``bandwidth`` bytes/s for the current settings."""

    def make(settings):
        latency = fixed_latency + STATE * settings.message_size / bandwidth
        return signals(send_latency=latency)

    return make


def test_slow_link_sends_less_often_than_fast_link():
    policy = BalancingPolicy(limits())
    start = Settings(4096, 1.0)
    fast = run(policy, start, link(1.5e9))[-1]
    slow = run(policy, start, link(1.25e6))[-1]
    seconds_fast = fast.send_interval / RATE
    seconds_slow = slow.send_interval / RATE
    # A 10 Mbit/s link cannot carry an 8 MB state twice a second: the law
    # shrinks messages to the floor and then sends them less often.
    assert slow.message_size < fast.message_size
    assert seconds_slow > seconds_fast


def test_settles_and_holds_still_on_a_steady_link():
    policy = BalancingPolicy(limits())
    history = run(policy, Settings(4096, 1.0), link(1.25e8), reports=30)
    settled = history[10:]
    assert all(s == settled[0] for s in settled), settled


@pytest.mark.parametrize("bandwidth", [1.25e6, 1.25e7, 1.25e8, 1.5e9])
def test_settles_within_a_few_reports_after_a_change(bandwidth):
    policy = BalancingPolicy(limits())
    before = run(policy, Settings(4096, 1.0), link(1.5e9))[-1]
    history = run(policy, before, link(bandwidth), reports=12)
    changes_after = [i for i in range(1, len(history)) if history[i] != history[i - 1]]
    assert not changes_after or max(changes_after) <= 8


def test_a_far_longer_target_is_taken_at_once_a_shorter_one_smoothly():
    policy = BalancingPolicy(limits())
    # An exchange costs 5 ms of training: at 5 % CPU the worker can afford
    # one every 0.1 s = 400,000 samples, 100x the starting interval.
    costly = signals(exchange_seconds=0.005)
    first = policy.decide(Settings(4096, 1.0), costly)
    assert first.send_interval == pytest.approx(0.005 / 0.05 * RATE, rel=0.01)
    # Back on cheap exchanges, the interval comes down in smoothed steps.
    cheap = signals(exchange_seconds=0.00005)
    history = run(policy, first, lambda settings: cheap, reports=10)
    intervals = [s.send_interval for s in history]
    # Down in several steps, none overshooting where it settles.
    assert intervals == sorted(intervals, reverse=True)
    assert intervals[1] > intervals[-1] and intervals[2] > intervals[-1]
    assert intervals[-1] < intervals[0] / 10


def test_bounds_are_respected():
    policy = BalancingPolicy(
        limits(min_send_interval=1000, max_send_interval=50_000, min_message_size=0.25)
    )
    for bandwidth in (1e3, 1e12):
        for settings in run(policy, Settings(4096, 1.0), link(bandwidth)):
            assert 1000 <= settings.send_interval <= 50_000
            assert 0.25 <= settings.message_size <= 1.0


def test_drops_stretch_the_interval():
    policy = BalancingPolicy(limits())
    calm, _ = policy.target_send_time(signals())
    congested, reason = policy.target_send_time(signals(dropped=50))
    assert congested > calm
    assert reason.startswith("congestion")


def test_cpu_cost_bounds_the_interval_on_a_fast_link():
    policy = BalancingPolicy(limits(cpu_budget=0.1))
    seconds, reason = policy.target_send_time(
        signals(exchange_seconds=0.001, send_latency=0.0001)
    )
    assert reason == "cpu"
    assert seconds == pytest.approx(0.01)


def test_fast_progress_stretches_and_flat_loss_does_not():
    policy = BalancingPolicy(limits())
    flat, _ = policy.target_send_time(signals(progress=0.0))
    falling, reason = policy.target_send_time(signals(progress=5.0))
    assert falling == pytest.approx(flat * policy.limits.max_progress_stretch)
    assert "progress" in reason


def test_small_states_are_never_split():
    policy = BalancingPolicy(limits())
    small = run(
        policy,
        Settings(4096, 1.0),
        lambda s: signals(send_latency=2.0, state_bytes=808),
    )[-1]
    assert small.message_size == 1.0
    assert small.send_interval > 4096


def test_idle_worker_keeps_its_settings():
    policy = BalancingPolicy(limits())
    current = Settings(4096, 1.0)
    assert policy.decide(current, signals(samples_per_second=0.0)) is current
