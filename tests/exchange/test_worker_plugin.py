"""ExchangeWorkerPlugin on in-process workers (``gen_cluster``, one event loop)."""

from __future__ import annotations

from inspect import iscoroutinefunction

import numpy as np
import pytest
from distributed import Worker
from distributed.utils_test import async_poll_for, gen_cluster

from dask_asgd.exchange import (
    PEERS_HANDLER,
    PLUGIN_NAME,
    RECEIVE_HANDLER,
    ExchangeWorkerPlugin,
    PluginNotInstalledError,
    get_exchange_plugin,
    join_topic,
    new_run_id,
    peers_message,
)

NTHREADS = [("127.0.0.1", 1), ("127.0.0.1", 1)]


def asgd_handlers(server) -> list[str]:
    names = [*server.handlers, *getattr(server, "stream_handlers", {})]
    return [name for name in names if name.startswith("asgd")]


async def install(c) -> None:
    await c.register_plugin(ExchangeWorkerPlugin(), name=PLUGIN_NAME)


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_handlers_installed_and_removed_on_unregister(c, s, a, b):
    await install(c)
    for w in (a, b):
        plugin = w.plugins[PLUGIN_NAME]
        assert isinstance(plugin, ExchangeWorkerPlugin)
        assert w.handlers[RECEIVE_HANDLER] == plugin.asgd_exchange_receive
        assert w.stream_handlers[PEERS_HANDLER] == plugin.asgd_exchange_peers
        # Pinned: a plain function, the server then makes no coroutine per message.
        assert not iscoroutinefunction(plugin.asgd_exchange_receive)
        assert get_exchange_plugin(w) is plugin

    endpoint = join_topic("t", new_run_id(), [a.address, b.address], worker=a)
    await c.unregister_worker_plugin(PLUGIN_NAME)
    for server in (s, a, b):
        assert asgd_handlers(server) == []
    assert endpoint.closed
    with pytest.raises(PluginNotInstalledError, match="register_plugin"):
        join_topic("t", "r", [], worker=a)


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_registration_is_idempotent(c, s, a, b):
    await install(c)
    plugin = a.plugins[PLUGIN_NAME]
    endpoint = join_topic("t", "r", [b.address], worker=a)
    await install(c)
    # Registering again leaves the running plugin and its subscriptions alone.
    assert a.plugins[PLUGIN_NAME] is plugin
    assert not endpoint.closed
    await c.unregister_worker_plugin(PLUGIN_NAME)
    assert asgd_handlers(a) == asgd_handlers(b) == []


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_message_reaches_the_peer_mailbox(c, s, a, b):
    await install(c)
    run_id = new_run_id()
    peers = [a.address, b.address]
    ea = join_topic("t", run_id, peers, worker=a, seed=0)
    eb = join_topic("t", run_id, peers, worker=b, seed=0)

    state = np.arange(1000, dtype=np.float32)
    assert ea.publish(state, {"step": 1})
    state[:] = 0  # the snapshot was taken at publish
    await async_poll_for(lambda: eb.stats()["received"] == 1, timeout=5)
    (message,) = eb.receive()
    np.testing.assert_array_equal(message.payload, np.arange(1000, dtype=np.float32))
    assert message.payload.dtype == np.float32
    assert message.payload.flags.writeable
    assert (message.sender, message.topic, message.run_id) == (a.address, "t", run_id)
    assert message.metadata == {"step": 1}
    assert message.received_at >= message.sent_at

    # And back, through the loop-side API.
    assert await eb.publish_async(np.ones(3))
    assert [m.sender for m in ea.receive()] == [b.address]
    await async_poll_for(lambda: ea.stats()["in_flight"] == 0, timeout=5)
    stats = ea.stats()
    assert (stats["sent"], stats["received"], stats["failed"]) == (1, 1, 0)
    assert stats["bytes_sent"] == 4000 and stats["bytes_received"] == 24
    assert stats["send_latency"] > 0

    await c.unregister_worker_plugin(PLUGIN_NAME)
    assert asgd_handlers(a) == asgd_handlers(b) == []


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_stale_run_is_refused_and_counted(c, s, a, b):
    await install(c)
    peers = [a.address, b.address]
    stale = join_topic("t", "old-run", peers, worker=a)
    current = join_topic("t", "new-run", peers, worker=b)
    assert await stale.publish_async(np.zeros(4)) is False
    assert stale.stats()["refused_by_peer"] == 1
    assert current.stats()["refused"] == 1
    assert current.receive() == []
    assert b.plugins[PLUGIN_NAME].stats()["refused_by_reason"] == {"stale-run": 1}

    current.close()
    closed_run = join_topic("t", "new-run", peers, worker=a)
    assert await closed_run.publish_async(np.zeros(4)) is False
    assert current.stats()["refused"] == 2
    await c.unregister_worker_plugin(PLUGIN_NAME)
    assert asgd_handlers(a) == asgd_handlers(b) == []


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_scheduler_side_membership_update(c, s, a, b):
    await install(c)
    endpoint = join_topic("t", "r", [a.address], worker=a)
    assert endpoint.publish(np.zeros(1)) is False  # no peer but itself
    # What a scheduler plugin does when a worker joins or leaves.
    s.stream_comms[a.address].send(peers_message("t", [a.address, b.address], "r"))
    await async_poll_for(lambda: endpoint.peers == (a.address, b.address), timeout=5)
    join_topic("t", "r", [a.address], worker=b)
    assert await endpoint.publish_async(np.zeros(1))
    await c.unregister_worker_plugin(PLUGIN_NAME)


@gen_cluster(
    client=True,
    nthreads=NTHREADS,
    config={"distributed.comm.timeouts.connect": "5s"},
)
async def test_dead_peer_costs_one_send_timeout(c, s, a, b):
    await install(c)
    async with Worker(s.address) as gone:
        dead = gone.address
    endpoint = join_topic("t", "r", [dead], worker=a, send_timeout=0.2)
    assert endpoint.publish(np.zeros(10))
    await async_poll_for(lambda: endpoint.in_flight == 0, timeout=5)
    stats = endpoint.stats()
    assert stats["failed"] == 1 and stats["sent"] == 0
    await c.unregister_worker_plugin(PLUGIN_NAME)


@gen_cluster(
    client=True,
    nthreads=NTHREADS,
    config={"asgd.exchange.simulate.latency": "50ms"},
)
async def test_simulated_latency_from_config(c, s, a, b):
    await install(c)
    ea = join_topic("t", "r", [b.address], worker=a)
    join_topic("t", "r", [a.address], worker=b)
    assert await ea.publish_async(np.zeros(10))
    shaper = a.plugins[PLUGIN_NAME].stats()["shaper"]
    assert shaper["messages"] == 1 and shaper["tokens_consumed"] == 80
    assert ea.stats()["send_latency"] >= 0.05
    await c.unregister_worker_plugin(PLUGIN_NAME)


def _train_in_task(topic: str, run_id: str, peers: list[str]) -> dict:
    """A task on a worker thread, as the training loop uses the API."""
    endpoint = join_topic(topic, run_id, peers, max_in_flight=1)
    endpoint.close()
    return {"address": endpoint.address, "closed": endpoint.closed}


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_join_topic_from_a_task(c, s, a, b):
    with pytest.raises(PluginNotInstalledError, match="no worker"):
        join_topic("t", "r", [])
    fut = c.submit(
        _train_in_task, "t", "r", [a.address, b.address], workers=[a.address]
    )
    with pytest.raises(PluginNotInstalledError, match="has no such plugin"):
        await fut
    await install(c)
    fut = c.submit(
        _train_in_task,
        "t",
        "r",
        [a.address, b.address],
        workers=[a.address],
        pure=False,
    )
    assert await fut == {"address": a.address, "closed": True}
    await c.unregister_worker_plugin(PLUGIN_NAME)


@gen_cluster(client=True, nthreads=[])
async def test_plugin_reaches_new_workers_and_teardown_removes_handlers(c, s):
    await install(c)
    async with Worker(s.address, nthreads=1) as w:
        plugin = w.plugins[PLUGIN_NAME]
        assert w.handlers[RECEIVE_HANDLER] == plugin.asgd_exchange_receive
        endpoint = join_topic("t", "r", [], worker=w)
    # Worker.close() tore the plugin down.
    assert asgd_handlers(w) == []
    assert endpoint.closed
    await c.unregister_worker_plugin(PLUGIN_NAME)


@gen_cluster(
    client=True,
    nthreads=NTHREADS[:1],
    config={
        "asgd.exchange.mailbox-slots": 7,
        "asgd.exchange.max-in-flight": 3,
        "asgd.exchange.send-timeout": "250ms",
        "asgd.exchange.min-bandwidth": "10MB",
    },
)
async def test_join_topic_defaults_come_from_config(c, s, a):
    await install(c)
    spec = join_topic("t", "r", [], worker=a).spec
    assert (spec.mailbox_slots, spec.max_in_flight) == (7, 3)
    assert spec.send_timeout == pytest.approx(0.25)
    assert spec.min_bandwidth == pytest.approx(10e6)
    assert spec.timeout_for(5_000_000) == pytest.approx(0.75)
    spec = join_topic("t", "r", [], worker=a, mailbox_slots=1, send_timeout=1).spec
    assert (spec.mailbox_slots, spec.max_in_flight, spec.send_timeout) == (1, 3, 1)
    await c.unregister_worker_plugin(PLUGIN_NAME)
