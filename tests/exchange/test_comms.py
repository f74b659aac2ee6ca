"""The sending side and the receive handler with a fake transport (no cluster)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np
import pytest

from dask_asgd.exchange import (
    RECEIVE_HANDLER,
    ExchangeWorkerPlugin,
    LinkShaper,
    Publisher,
    TopicSpec,
)

from ._fakes import (
    FakeRPC,
    Recorder,
    fake_worker,
    publish_and_wait,
    run,
    settle,
    topic_spec,
)

A, B, C = "tcp://a:1", "tcp://b:1", "tcp://c:1"


def make_publisher(rpc, *, peers=(B,), shaper=None, **spec):
    return Publisher(
        topic_spec(**spec),
        sender=A,
        rpc=rpc,
        loop=asyncio.get_running_loop(),
        peers=peers,
        shaper=shaper,
    )


def assert_balanced(stats):
    """Every published message is accounted for exactly once."""
    assert stats["published"] == (
        stats["sent"]
        + stats["refused_by_peer"]
        + stats["failed"]
        + stats["cancelled"]
        + stats["in_flight"]
    )


def test_publish_delivers_a_snapshot_with_metadata():
    async def main():
        recorder = Recorder()
        pub = make_publisher(FakeRPC({B: recorder}))
        state = np.arange(5.0)
        assert pub.publish(state, {"step": np.int64(3), "loss": np.float32(0.5)})
        # The training thread goes on changing its state at once.
        state[:] = -1
        await settle(lambda: pub.in_flight == 0)
        (msg,) = recorder.messages
        np.testing.assert_array_equal(msg["payload"], np.arange(5.0))
        assert msg["metadata"] == {"step": 3, "loss": 0.5}
        assert type(msg["metadata"]["step"]) is int  # msgpack-native
        assert (msg["topic"], msg["sender"]) == ("t", A)
        assert msg["sent_at"] <= time.time()
        stats = pub.stats()
        assert stats["sent"] == 1
        assert stats["bytes_sent"] == state.nbytes
        assert stats["send_latency"] > 0
        assert_balanced(stats)

    run(main())


def test_in_flight_bound_drops_and_counts_never_queues():
    async def main():
        gate = asyncio.Event()
        recorder = Recorder(gate=gate)
        pub = make_publisher(FakeRPC({B: recorder}), max_in_flight=2)
        results = [pub.publish(np.ones(3)) for _ in range(5)]
        assert results == [True, True, False, False, False]
        stats = pub.stats()
        assert (stats["in_flight"], stats["dropped"], stats["sent"]) == (2, 3, 0)
        gate.set()
        await settle(lambda: pub.in_flight == 0)
        stats = pub.stats()
        assert (stats["sent"], stats["dropped"], len(recorder.messages)) == (2, 3, 2)
        # With the slots free again, publishing works again.
        assert pub.publish(np.ones(3))
        await settle(lambda: pub.in_flight == 0)
        assert pub.stats()["sent"] == 3
        assert_balanced(pub.stats())

    run(main())


def test_random_target_excludes_self():
    async def main():
        recorders = {addr: Recorder() for addr in (A, B, C)}
        pub = make_publisher(FakeRPC(recorders), peers=[A, B, C, B], max_in_flight=100)
        assert pub.peers == (A, B, C)
        for _ in range(40):
            assert pub.publish(np.zeros(1))
        await settle(lambda: pub.in_flight == 0)
        assert not recorders[A].messages
        assert recorders[B].messages and recorders[C].messages
        assert len(recorders[B].messages) + len(recorders[C].messages) == 40
        # An explicit peer is honoured, even this worker itself.
        assert pub.publish(np.zeros(1), peer=A)
        await settle(lambda: pub.in_flight == 0)
        assert len(recorders[A].messages) == 1

        with pytest.raises(TypeError, match="sequence of addresses"):
            make_publisher(FakeRPC(recorders), peers=B)

    run(main())


@pytest.mark.parametrize("peer, reused", [(B, True), ("inproc://10.0.0.1/1/1", False)])
def test_snapshot_buffers_are_reused_except_in_process(peer, reused):
    async def main():
        recorder = Recorder()
        # No copy on the way, so the receiver sees the sender's snapshot itself.
        pub = make_publisher(FakeRPC({peer: recorder}, copy=False), peers=[peer])
        state = np.zeros(4)
        for step in range(3):
            state[:] = step
            assert await publish_and_wait(pub, state)
        payloads = [m["payload"] for m in recorder.messages]
        assert all(p is not state for p in payloads)
        if reused:
            # Each send after the first copies into the previous snapshot.
            assert payloads[0] is payloads[1] is payloads[2]
        else:
            # inproc:// hands the object to the receiver: never reuse it.
            assert [p[0] for p in payloads] == [0, 1, 2]
        # Another shape gets a fresh buffer.
        assert await publish_and_wait(pub, np.ones(2))
        assert recorder.messages[-1]["payload"] is not payloads[0]

    run(main())


def test_same_seed_same_targets():
    async def main():
        targets = []
        for _ in range(2):
            rpc = FakeRPC({B: Recorder(), C: Recorder()})
            pub = make_publisher(rpc, peers=[B, C], seed=7, max_in_flight=100)
            for _ in range(20):
                pub.publish(np.zeros(1))
            await settle(lambda pub=pub: pub.in_flight == 0)
            targets.append([addr for addr, _ in rpc.calls])
        assert targets[0] == targets[1]

    run(main())


def test_no_peer_is_a_counted_drop():
    async def main():
        pub = make_publisher(FakeRPC(), peers=[A])  # only itself
        assert pub.publish(np.zeros(1)) is False
        stats = pub.stats()
        assert (stats["dropped"], stats["no_peer"], stats["published"]) == (1, 1, 0)

    run(main())


@pytest.mark.parametrize(
    "rpc_handlers, expected",
    [
        ({}, "failed"),  # connection refused (OSError)
        ({B: Recorder(error=RuntimeError("boom in handler"))}, "failed"),
        ({B: Recorder(reply="no handler")}, "failed"),  # peer without the plugin
        ({B: lambda **msg: None}, "failed"),
        (
            {B: Recorder({"status": "refused", "reason": "unknown-topic"})},
            "refused_by_peer",
        ),
    ],
    ids=["oserror", "handler-error", "odd-reply", "none-reply", "refused"],
)
def test_send_errors_are_counted_not_raised(rpc_handlers, expected, caplog):
    async def main():
        pub = make_publisher(FakeRPC(rpc_handlers))
        with caplog.at_level(logging.WARNING, logger="dask_asgd.exchange._comms"):
            assert pub.publish(np.zeros(2)) is True
            assert pub.publish(np.zeros(2)) is True
            await settle(lambda: pub.in_flight == 0)
        stats = pub.stats()
        assert stats[expected] == 2
        assert stats["sent"] == 0
        assert stats["bytes_sent"] == 0
        assert_balanced(stats)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        # One warning per dead peer, not one per message.
        assert len(warnings) == (1 if expected == "failed" else 0)

    run(main())


def test_send_timeout_frees_the_slot():
    async def main():
        never = asyncio.Event()
        pub = make_publisher(FakeRPC({B: Recorder(gate=never)}), send_timeout=0.05)
        assert pub.publish(np.zeros(1))
        assert pub.publish(np.zeros(1))
        assert pub.publish(np.zeros(1)) is False
        await settle(lambda: pub.in_flight == 0)
        stats = pub.stats()
        assert (stats["timed_out"], stats["failed"], stats["dropped"]) == (2, 2, 1)
        assert_balanced(stats)

    run(main())


def test_send_timeout_gives_big_messages_time_for_their_bytes():
    """A large state on a slow live link is not cut off at the base timeout."""

    async def main():
        gate = asyncio.Event()
        recorder = Recorder(gate=gate)
        # 8,000 bytes at a floor of 4,000 bytes/s: 2 s on top of the 0.05 s.
        pub = make_publisher(
            FakeRPC({B: recorder}), send_timeout=0.05, min_bandwidth=4000.0
        )
        assert pub.spec.timeout_for(8000) == pytest.approx(2.05)
        assert pub.publish(np.zeros(1000))
        # The peer answers after 0.3 s, as a slow link would: longer than the
        # base timeout, well within the allowance for the bytes.
        asyncio.get_running_loop().call_later(0.3, gate.set)
        await settle(lambda: pub.in_flight == 0)
        stats = pub.stats()
        assert (stats["sent"], stats["timed_out"]) == (1, 0)
        assert len(recorder.messages) == 1
        # Without the allowance the same wait times out.
        gate.clear()
        strict = make_publisher(
            FakeRPC({B: Recorder(gate=gate)}), send_timeout=0.05, min_bandwidth=None
        )
        assert strict.publish(np.zeros(1000))
        await settle(lambda: strict.in_flight == 0)
        assert strict.stats()["timed_out"] == 1
        gate.set()

    run(main())


def test_close_drops_new_messages_and_aclose_cancels_pending():
    async def main():
        never = asyncio.Event()
        pub = make_publisher(FakeRPC({B: Recorder(gate=never)}))
        assert pub.publish(np.zeros(1))
        await asyncio.sleep(0)  # one loop iteration: the first send's task exists
        assert pub.publish(np.zeros(1))  # this one's task does not exist yet
        pub.close()
        assert pub.publish(np.zeros(1)) is False
        await pub.aclose()
        stats = pub.stats()
        assert (stats["in_flight"], stats["cancelled"], stats["dropped"]) == (0, 2, 1)
        assert_balanced(stats)

    run(main())


def test_cancel_in_flight_from_another_thread_ends_pending_sends():
    # What a topic's close does at the end of a fit: the training thread
    # closes it, and the sends still on the wire are cancelled, not awaited.
    async def main():
        never = asyncio.Event()
        recorder = Recorder(gate=never)
        pub = make_publisher(FakeRPC({B: recorder}), send_timeout=60.0)
        assert pub.publish(np.zeros(1000))
        await settle(lambda: len(recorder.messages) == 0 and pub.in_flight == 1)
        closer = threading.Thread(target=pub.cancel_in_flight)
        closer.start()
        await settle(lambda: pub.in_flight == 0)
        closer.join()
        stats = pub.stats()
        assert (stats["cancelled"], stats["sent"]) == (1, 0)
        assert pub.publish(np.zeros(1)) is False
        assert_balanced(stats)

    run(main())


def test_publish_on_a_closed_loop_is_a_counted_failure():
    async def main():
        dead_loop = asyncio.new_event_loop()
        dead_loop.close()
        pub = Publisher(
            topic_spec(), sender=A, rpc=FakeRPC(), loop=dead_loop, peers=[B]
        )
        assert pub.publish(np.zeros(1)) is False
        stats = pub.stats()
        assert (stats["failed"], stats["in_flight"]) == (1, 0)

    run(main())


def test_bad_payload_raises_and_returns_the_slot():
    async def main():
        pub = make_publisher(FakeRPC({B: Recorder()}), max_in_flight=1)
        with pytest.raises(ValueError):
            pub.publish([[1.0], [1.0, 2.0]])  # ragged: not an array
        assert pub.in_flight == 0
        assert pub.publish(np.zeros(1))

    run(main())


def test_publish_from_another_thread_returns_at_once():
    async def main():
        gate = asyncio.Event()
        recorder = Recorder(gate=gate)
        pub = make_publisher(FakeRPC({B: recorder}))
        results: list[bool] = []
        durations: list[float] = []

        def training_thread():
            for i in range(3):
                t0 = time.perf_counter()
                results.append(pub.publish(np.full(4, i)))
                durations.append(time.perf_counter() - t0)

        thread = threading.Thread(target=training_thread)
        thread.start()
        # The sends cannot finish (gated), yet the thread is not blocked by them.
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        assert results == [True, True, False]
        gate.set()
        await settle(lambda: pub.in_flight == 0)
        assert sorted(m["payload"][0] for m in recorder.messages) == [0, 1]

    run(main())


# ------------------------------------------------------------- link simulator


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_arithmetic_with_fake_clock():
    clock = FakeClock()
    shaper = LinkShaper(1000.0, 0.5, burst=0, clock=clock, sleep=clock.sleep)
    assert shaper.reserve(500) == pytest.approx(0.5 + 0.5)
    # Sent at the same instant, the next message queues behind the first one.
    assert shaper.reserve(1000) == pytest.approx(1.5 + 0.5)
    clock.now += 10  # an idle link refills, but never above the burst (0)
    assert shaper.reserve(100) == pytest.approx(0.1 + 0.5)
    assert shaper.counters() == {
        "messages": 3,
        "tokens_consumed": 1600,
        "delayed": 3,
        "wait_total": pytest.approx(1.0 + 2.0 + 0.6),
    }


def test_token_bucket_burst_passes_small_messages_without_rate_delay():
    clock = FakeClock()
    shaper = LinkShaper(1000.0, burst=1000, clock=clock, sleep=clock.sleep)
    assert shaper.reserve(600) == 0
    assert shaper.reserve(400) == 0
    assert shaper.reserve(500) == pytest.approx(0.5)
    assert shaper.delayed == 1
    run(shaper.wait(1000))
    assert clock.sleeps == [pytest.approx(1.5)]


def test_latency_only_shaper():
    clock = FakeClock()
    shaper = LinkShaper(None, 0.02, clock=clock, sleep=clock.sleep)
    assert [shaper.reserve(10**9) for _ in range(3)] == [0.02] * 3


@pytest.mark.parametrize(
    "kwargs",
    [{"bandwidth": 0}, {"bandwidth": -1.0}, {"bandwidth": None, "latency": -1}],
)
def test_shaper_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        LinkShaper(**kwargs)


def test_slow_link_keeps_sends_in_flight_and_drops_the_rest():
    async def main():
        link_free = asyncio.Event()

        async def slow_link(seconds):
            await link_free.wait()

        shaper = LinkShaper(1e3, burst=0, sleep=slow_link)
        recorder = Recorder()
        pub = make_publisher(FakeRPC({B: recorder}), shaper=shaper)
        for _ in range(4):
            pub.publish(np.zeros(100))
        await settle(lambda: shaper.messages == 2)
        # Both sends wait for the link: in flight, nothing delivered, rest dropped.
        stats = pub.stats()
        assert (stats["in_flight"], stats["dropped"], stats["sent"]) == (2, 2, 0)
        assert not recorder.messages
        assert shaper.tokens_consumed == 2 * 800
        link_free.set()
        await settle(lambda: pub.in_flight == 0)
        assert pub.stats()["sent"] == 2

    run(main())


def test_simulated_bandwidth_slows_real_sends_down():
    async def main():
        nbytes, n = 100_000, 4
        recorder = Recorder()
        fast = make_publisher(FakeRPC({B: recorder}))
        shaper = LinkShaper(2e6, burst=0)  # 2 MB/s: 50 ms per message
        slow = make_publisher(FakeRPC({B: recorder}), shaper=shaper)
        payload = np.zeros(nbytes, dtype=np.uint8)

        t0 = time.perf_counter()
        for _ in range(n):
            assert await publish_and_wait(fast, payload)
        fast_elapsed = time.perf_counter() - t0

        t0 = time.perf_counter()
        for _ in range(n):
            assert await publish_and_wait(slow, payload)
        slow_elapsed = time.perf_counter() - t0

        assert shaper.tokens_consumed == n * nbytes
        assert shaper.delayed == n
        assert shaper.wait_total == pytest.approx(n * nbytes / 2e6, rel=0.05)
        # Lower bounds only: a loaded machine may be slower, never faster.
        assert slow_elapsed >= 0.9 * n * nbytes / 2e6
        assert slow_elapsed > fast_elapsed
        assert slow.stats()["send_latency"] >= 0.9 * nbytes / 2e6

    run(main())


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, None),
        ({"bandwidth": None, "latency": 0}, None),
        ({"bandwidth": "10 MB", "latency": "5ms"}, (10e6, 0.005)),
        ({"bandwidth": "1 MB", "latency": "10ms"}, (1e6, 0.01)),
        ({"latency": 0.25}, (None, 0.25)),
        ({"bandwidth": 2e6}, (2e6, 0.0)),
    ],
)
def test_link_simulator_settings_of_the_plugin(settings, expected):
    async def main():
        wb = fake_worker(B, FakeRPC())
        plugin = ExchangeWorkerPlugin(**settings)
        plugin.setup(wb)
        if expected is None:
            assert plugin.shaper is None
        else:
            assert plugin.shaper is not None
            bandwidth, latency = expected
            assert plugin.shaper.bandwidth == bandwidth
            assert plugin.shaper.latency == pytest.approx(latency)
        await plugin.teardown(wb)

    run(main())


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"bandwidth": 0}, "bytes/s"),
        # dask's parse_timedelta refuses it, with a message of its own.
        ({"latency": -1}, None),
    ],
)
def test_plugin_refuses_bad_link_simulator_settings_where_it_is_made(settings, match):
    # Parsed in the constructor: on the driver, before the plugin travels.
    with pytest.raises(ValueError, match=match):
        ExchangeWorkerPlugin(**settings)


# ------------------------------------- receive handler and plugin on fake workers


def test_plugin_routes_refuses_and_counts_on_fake_workers():
    async def main():
        rpc = FakeRPC()
        wa, wb = fake_worker(A, rpc), fake_worker(B, rpc)
        pa, pb = ExchangeWorkerPlugin(), ExchangeWorkerPlugin()
        pa.setup(wa)
        pb.setup(wb)
        assert wb.handlers[RECEIVE_HANDLER] == pb.asgd_exchange_receive
        rpc.handlers.update(
            {A: wa.handlers[RECEIVE_HANDLER], B: wb.handlers[RECEIVE_HANDLER]}
        )

        ea = pa.join(topic_spec(send_timeout=1.0), [A, B])
        eb = pb.join(topic_spec(mailbox_slots=2, send_timeout=1.0), [A, B])
        unknown = pa.join(topic_spec("nobody-listens", send_timeout=1.0), [B])
        assert pb.stats()["topics"] == ["t"]

        # Delivered: three messages into two slots, one counted lost.
        for i in range(3):
            assert await publish_and_wait(ea, np.full(3, i), {"i": i})
        # Unknown topic: refused, counted on both sides.
        assert await publish_and_wait(unknown, np.zeros(3)) is False

        messages = eb.receive()
        assert [m.metadata["i"] for m in messages] == [1, 2]
        assert all(m.sender == A and m.topic == "t" for m in messages)
        assert all(m.received_at >= m.sent_at > 0 for m in messages)
        stats_b = eb.stats()
        assert (stats_b["received"], stats_b["lost"], stats_b["read"]) == (3, 1, 2)
        assert stats_b["bytes_received"] == 3 * 24
        assert stats_b["refused"] == 0
        assert unknown.stats()["refused_by_peer"] == 1
        assert pb.stats()["refused_by_reason"] == {"unknown-topic": 1}

        # After close, messages of that topic are refused and counted on it.
        eb.close()
        eb.close()  # idempotent
        assert eb.closed and pb.endpoint("t") is None
        assert pb.stats()["topics"] == []
        assert await publish_and_wait(ea, np.zeros(3)) is False
        assert ea.stats()["refused_by_peer"] == 1
        assert eb.stats()["refused"] == 1
        assert pb.stats()["refused_by_reason"] == {"unknown-topic": 1, "closed": 1}
        assert eb.publish(np.zeros(3)) is False  # closed: dropped, not raised
        assert eb.receive() == []

        await pa.teardown(wa)
        await pb.teardown(wb)
        assert not [h for h in wa.handlers if h.startswith("asgd")]
        assert not [h for h in wb.handlers if h.startswith("asgd")]
        assert ea.closed and ea.publish(np.zeros(1)) is False

    run(main())


def test_rejoining_a_topic_replaces_the_old_subscription():
    async def main():
        rpc = FakeRPC()
        wb = fake_worker(B, rpc)
        plugin = ExchangeWorkerPlugin()
        plugin.setup(wb)
        first = plugin.join(topic_spec(), [A])
        second = plugin.join(topic_spec(), [A])
        assert first.closed and not second.closed
        assert plugin.endpoint("t") is second
        # The topic's messages now go to the new subscription.
        reply = plugin.asgd_exchange_receive(topic="t", sender=A, payload=np.zeros(1))
        assert reply == {"status": "OK"}
        assert second.stats()["received"] == 1
        assert first.stats()["received"] == first.stats()["refused"] == 0
        # Closed for good: refused, and counted on the last subscription.
        second.close()
        reply = plugin.asgd_exchange_receive(topic="t", sender=A, payload=np.zeros(1))
        assert reply == {"status": "refused", "reason": "closed"}
        assert second.stats()["refused"] == 1 and first.stats()["refused"] == 0
        # Joined again later (a restarted task): delivered again.
        third = plugin.join(topic_spec(), [A])
        reply = plugin.asgd_exchange_receive(topic="t", sender=A, payload=np.zeros(1))
        assert reply == {"status": "OK"}
        assert third.stats()["received"] == 1
        await plugin.teardown(wb)

    run(main())


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"topic": ""}, "topic"),
        ({"mailbox_slots": 0}, "mailbox_slots"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"send_timeout": 0}, "send_timeout"),
        ({"min_bandwidth": 0}, "min_bandwidth"),
    ],
)
def test_topic_spec_validation(settings, match):
    with pytest.raises(ValueError, match=match):
        topic_spec(**settings)


def test_topic_spec_settings_are_required():
    # Defaults live in asgd.yaml only; the caller passes every setting.
    with pytest.raises(TypeError, match="required"):
        TopicSpec("t")  # type: ignore[call-arg]
    spec = TopicSpec("t", 1, 1, None, None)
    assert spec.seed is None and spec.timeout_for(10**9) is None
