"""The balancing control law, on its own (no Dask)."""

from __future__ import annotations

import dataclasses
import itertools

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


#: Merge signals of the two regimes: merges that move the state less than the
#: worker's own training (rows from one distribution), and further.
USELESS = dict(merges=10, merge_shift=10 * 0.4, local_move=10 * 1.0)
PAYS = dict(merges=10, merge_shift=10 * 3.0, local_move=10 * 1.0)


def test_benefit_is_merge_shift_against_own_movement():
    assert signals(**USELESS).benefit == pytest.approx(0.4)
    assert signals(**PAYS).benefit == pytest.approx(3.0)
    # Nothing merged: unknown, not zero.
    assert signals().benefit is None
    assert signals(merges=3, merge_shift=0.0, local_move=0.0).benefit is None


def test_useless_exchange_grows_geometrically_toward_no_exchange():
    policy = BalancingPolicy(limits())
    history = run(policy, Settings(256, 1.0), lambda s: signals(**USELESS), 40)
    intervals = [s.send_interval for s in history]
    # The first report jumps to the cost bound (16,000 samples: 0.2 ms per
    # exchange at 5 % CPU), then every report doubles the interval, until the
    # largest interval allowed (within the deadband).
    largest = policy.limits.max_send_interval
    assert intervals[1] == 8000  # half way there, messages halved
    settled = intervals.index(intervals[-1])
    growing = [b / a for a, b in itertools.pairwise(intervals[1:settled])]
    assert len(growing) > 5
    assert all(r == pytest.approx(2.0, rel=0.01) for r in growing), growing
    assert largest * (1 - policy.limits.deadband) <= intervals[-1] <= largest
    # Messages shrink to the smallest block meanwhile.
    assert history[-1].message_size == policy.limits.min_message_size
    assert "buys little" in history[-1].reason


def test_useful_exchange_falls_to_the_cost_bound():
    policy = BalancingPolicy(limits())
    # 20 us per exchange: at 5 % CPU, one every 0.4 ms = 1,600 samples.
    cost = dict(exchange_seconds=0.00002, send_latency=0.0001)
    # Fast progress would stretch the interval 4x; when exchange pays it does not.
    paying = signals(progress=5.0, **cost, **PAYS)
    history = run(policy, Settings(1_000_000, 0.125), lambda s: paying, 30)
    assert history[-1].send_interval == pytest.approx(0.00002 / 0.05 * RATE, rel=0.25)
    assert history[-1].message_size == 1.0
    assert "pays" in history[-1].reason
    # Without a measured benefit the same cost holds a long interval.
    unknown = signals(progress=5.0, **cost)
    assert policy.decide(Settings(1_000_000, 1.0), unknown).send_interval >= 1_000_000


def test_probes_notice_when_exchange_starts_to_pay():
    policy = BalancingPolicy(limits())
    useless = run(policy, Settings(4096, 1.0), lambda s: signals(**USELESS), 25)
    far = useless[-1]
    # The rare sends at the long interval now move the state far: back down.
    paying = run(policy, far, lambda s: signals(**PAYS), 25)
    assert paying[-1].send_interval < far.send_interval / 100
    # Merges halfway between the two regimes hold the interval still.
    unclear = dict(merges=10, merge_shift=9.2, local_move=10.0)
    assert policy.decide(paying[-1], signals(**unclear)) is paying[-1]


def test_a_far_longer_target_is_taken_at_once():
    policy = BalancingPolicy(limits())
    # An exchange costs 5 ms of training: at 5 % CPU the worker can afford
    # one every 0.1 s = 400,000 samples, 100x the starting interval.
    costly = signals(exchange_seconds=0.005)
    first = policy.decide(Settings(4096, 1.0), costly)
    assert first.send_interval == pytest.approx(0.005 / 0.05 * RATE, rel=0.01)
    # Cheap again, with no merge to judge: the interval holds.
    cheap = signals(exchange_seconds=0.00005)
    assert policy.decide(first, cheap) is first
    # Cheap exchanges that pay: down to the cost bound at once, and held.
    history = run(
        policy,
        first,
        lambda settings: signals(exchange_seconds=0.00005, **PAYS),
        reports=5,
    )
    intervals = [s.send_interval for s in history]
    # The bound: 1 ms latency on the whole link (exchange pays), and 1 ms of
    # training for 50 us of exchange at 5 % CPU.
    assert intervals[1] == pytest.approx(0.001 * RATE, rel=0.01)
    assert len(set(intervals[1:])) == 1


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


def test_a_worker_of_few_rows_starts_short_enough_to_report_early():
    policy = BalancingPolicy(limits(min_send_interval=256))
    # 8 exchanges per report: they fit in the first quarter of an epoch.
    assert policy.first_send_interval(4096, 6_250, report_exchanges=8) == 256
    assert policy.first_send_interval(4096, 100_000, report_exchanges=8) == 3125
    # Many rows, or no report by exchanges: the user's interval.
    assert policy.first_send_interval(4096, 750_000, report_exchanges=8) == 4096
    assert policy.first_send_interval(4096, 6_250, report_exchanges=None) == 4096


def test_unclear_benefit_holds_the_interval_against_progress_and_drops():
    policy = BalancingPolicy(limits())
    cheap = dict(exchange_seconds=0.00002, send_latency=0.0001)
    at_bound = run(policy, Settings(4096, 1.0), lambda s: signals(**cheap, **PAYS))[-1]
    unclear = dict(merges=10, merge_shift=8.0, local_move=10.0)
    busy = signals(progress=5.0, dropped=30, lost=30, **cheap, **unclear)
    assert policy.decide(at_bound, busy) is at_bound
    # With no merge to judge, the cost law stretches the same signals far.
    blind = signals(progress=5.0, dropped=30, lost=30, **cheap)
    assert policy.decide(at_bound, blind).send_interval > 4 * at_bound.send_interval
    # Failed sends still lengthen it.
    failing = signals(progress=5.0, failed=50, **cheap, **unclear)
    assert policy.decide(at_bound, failing).send_interval > at_bound.send_interval


def test_states_rejected_whole_are_neither_benefit_nor_cost():
    policy = BalancingPolicy(limits())
    cheap = dict(exchange_seconds=0.00002, send_latency=0.0001, progress=5.0)
    at_bound = run(policy, Settings(4096, 1.0), lambda s: signals(**cheap, **PAYS))[-1]
    rejected = signals(merges=0, rejected_merges=8, **cheap)
    assert rejected.benefit is None
    assert policy.decide(at_bound, rejected) is at_bound
    # Accepted merges that pay, between rejected ones: still the cost bound.
    mixed = signals(rejected_merges=30, **cheap, **PAYS)
    assert policy.decide(at_bound, mixed) is at_bound


def test_when_exchange_pays_sends_overlap_on_the_link():
    policy = BalancingPolicy(limits())
    paying = signals(exchange_seconds=0.0, send_latency=0.001, **PAYS)
    seconds, reason = policy.target_send_time(paying, paying=True)
    assert reason == "link"
    assert seconds == pytest.approx(0.001 / policy.limits.paying_link_share)
    idle, _ = policy.target_send_time(paying)
    assert idle == pytest.approx(0.001 / policy.limits.link_share)
