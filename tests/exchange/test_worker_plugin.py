"""ExchangeWorkerPlugin on in-process workers (``gen_cluster``, one event loop)."""

from __future__ import annotations

import pickle
from inspect import iscoroutinefunction

import numpy as np
import pytest
from distributed import Worker
from distributed.utils_test import async_poll_for, gen_cluster

from dask_asgd.exchange import (
    PLUGIN_NAME,
    RECEIVE_HANDLER,
    ExchangeError,
    ExchangeWorkerPlugin,
    PluginNotInstalledError,
    TopicSpec,
    get_exchange_plugin,
    join_topic,
)

from ._fakes import publish_and_wait, topic_spec

NTHREADS = [("127.0.0.1", 1), ("127.0.0.1", 1)]


def asgd_handlers(server) -> list[str]:
    names = [*server.handlers, *getattr(server, "stream_handlers", {})]
    return [name for name in names if name.startswith("asgd")]


async def install(c, **settings) -> None:
    await c.register_plugin(ExchangeWorkerPlugin(**settings), name=PLUGIN_NAME)


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_handlers_installed_and_removed_on_unregister(c, s, a, b):
    await install(c)
    for w in (a, b):
        plugin = w.plugins[PLUGIN_NAME]
        assert isinstance(plugin, ExchangeWorkerPlugin)
        assert w.handlers[RECEIVE_HANDLER] == plugin.asgd_exchange_receive
        # Pinned: a plain function, the server then makes no coroutine per message.
        assert not iscoroutinefunction(plugin.asgd_exchange_receive)
        assert get_exchange_plugin(w) is plugin

    endpoint = join_topic(topic_spec(), [a.address, b.address], worker=a)
    await c.unregister_worker_plugin(PLUGIN_NAME)
    for server in (s, a, b):
        assert asgd_handlers(server) == []
    assert endpoint.closed
    with pytest.raises(PluginNotInstalledError, match="register_plugin"):
        join_topic(topic_spec(), [], worker=a)


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_registration_is_idempotent(c, s, a, b):
    await install(c)
    plugin = a.plugins[PLUGIN_NAME]
    endpoint = join_topic(topic_spec(), [b.address], worker=a)
    await install(c)
    # Registering again leaves the running plugin and its subscriptions alone.
    assert a.plugins[PLUGIN_NAME] is plugin
    assert not endpoint.closed
    await c.unregister_worker_plugin(PLUGIN_NAME)
    assert asgd_handlers(a) == asgd_handlers(b) == []


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_message_reaches_the_peer_mailbox(c, s, a, b):
    await install(c)
    peers = [a.address, b.address]
    ea = join_topic(topic_spec(seed=0), peers, worker=a)
    eb = join_topic(topic_spec(seed=0), peers, worker=b)

    state = np.arange(1000, dtype=np.float32)
    assert ea.publish(state, {"step": 1})
    state[:] = 0  # the snapshot was taken at publish
    await async_poll_for(lambda: eb.stats()["received"] == 1, timeout=5)
    (message,) = eb.receive()
    np.testing.assert_array_equal(message.payload, np.arange(1000, dtype=np.float32))
    assert message.payload.dtype == np.float32
    assert message.payload.flags.writeable
    assert (message.sender, message.topic) == (a.address, "t")
    assert message.metadata == {"step": 1}
    assert message.received_at >= message.sent_at

    # And back; the reply came after the put, so the mailbox holds it.
    assert await publish_and_wait(eb, np.ones(3))
    assert [m.sender for m in ea.receive()] == [b.address]
    await async_poll_for(lambda: ea.stats()["in_flight"] == 0, timeout=5)
    stats = ea.stats()
    assert (stats["sent"], stats["received"], stats["failed"]) == (1, 1, 0)
    assert stats["bytes_sent"] == 4000 and stats["bytes_received"] == 24
    assert stats["send_latency"] > 0

    await c.unregister_worker_plugin(PLUGIN_NAME)
    assert asgd_handlers(a) == asgd_handlers(b) == []


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_unknown_and_closed_topics_are_refused_and_counted(c, s, a, b):
    await install(c)
    peers = [a.address, b.address]
    sender = join_topic(topic_spec(), peers, worker=a)
    # b has not joined "t" (yet, or ever): refused as an unknown topic.
    assert await publish_and_wait(sender, np.zeros(4)) is False
    assert sender.stats()["refused_by_peer"] == 1
    assert b.plugins[PLUGIN_NAME].stats()["refused_by_reason"] == {"unknown-topic": 1}

    receiver = join_topic(topic_spec(), peers, worker=b)
    receiver.close()
    assert await publish_and_wait(sender, np.zeros(4)) is False
    assert sender.stats()["refused_by_peer"] == 2
    assert receiver.stats()["refused"] == 1
    assert receiver.receive() == []
    assert b.plugins[PLUGIN_NAME].stats()["refused_by_reason"] == {
        "unknown-topic": 1,
        "closed": 1,
    }
    await c.unregister_worker_plugin(PLUGIN_NAME)
    assert asgd_handlers(a) == asgd_handlers(b) == []


@gen_cluster(
    client=True,
    nthreads=NTHREADS,
    config={"distributed.comm.timeouts.connect": "5s"},
)
async def test_dead_peer_costs_one_send_timeout(c, s, a, b):
    await install(c)
    async with Worker(s.address) as gone:
        dead = gone.address
    endpoint = join_topic(topic_spec(send_timeout=0.2), [dead], worker=a)
    assert endpoint.publish(np.zeros(10))
    await async_poll_for(lambda: endpoint.in_flight == 0, timeout=5)
    stats = endpoint.stats()
    assert stats["failed"] == 1 and stats["sent"] == 0
    await c.unregister_worker_plugin(PLUGIN_NAME)


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_simulated_latency(c, s, a, b):
    await install(c, latency="50ms")
    ea = join_topic(topic_spec(), [b.address], worker=a)
    join_topic(topic_spec(), [a.address], worker=b)
    assert await publish_and_wait(ea, np.zeros(10))
    shaper = a.plugins[PLUGIN_NAME].stats()["shaper"]
    assert shaper["messages"] == 1 and shaper["tokens_consumed"] == 80
    assert ea.stats()["send_latency"] >= 0.05
    await c.unregister_worker_plugin(PLUGIN_NAME)


def _train_in_task(spec: TopicSpec, peers: list[str]) -> dict:
    """A task on a worker thread, as the training loop uses the API."""
    endpoint = join_topic(spec, peers)
    endpoint.close()
    return {"address": endpoint.address, "closed": endpoint.closed}


@gen_cluster(client=True, nthreads=NTHREADS)
async def test_join_topic_from_a_task(c, s, a, b):
    with pytest.raises(PluginNotInstalledError, match="no worker"):
        join_topic(topic_spec(), [])
    spec = topic_spec(max_in_flight=1)
    fut = c.submit(_train_in_task, spec, [a.address, b.address], workers=[a.address])
    with pytest.raises(PluginNotInstalledError, match="has no such plugin"):
        await fut
    await install(c)
    fut = c.submit(
        _train_in_task,
        spec,
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
        endpoint = join_topic(topic_spec(), [], worker=w)
    # Worker.close() tore the plugin down.
    assert asgd_handlers(w) == []
    assert endpoint.closed
    await c.unregister_worker_plugin(PLUGIN_NAME)


@gen_cluster(client=True, nthreads=NTHREADS[:1])
async def test_join_topic_uses_the_spec_as_given(c, s, a):
    await install(c)
    spec = topic_spec(
        mailbox_slots=7, max_in_flight=3, send_timeout=0.25, min_bandwidth=10e6
    )
    endpoint = join_topic(spec, [], worker=a)
    assert endpoint.spec is spec
    assert endpoint._mailbox.slots == 7
    assert endpoint.spec.timeout_for(5_000_000) == pytest.approx(0.75)
    await c.unregister_worker_plugin(PLUGIN_NAME)


def test_plugin_not_installed_error_survives_pickling():
    # Raised in a task on a worker, it reaches the client pickled.
    error = PluginNotInstalledError("no worker runs the current task", PLUGIN_NAME)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is PluginNotInstalledError and isinstance(copy, ExchangeError)
    assert str(copy) == str(error)
    assert (copy.detail, copy.plugin_name) == (error.detail, PLUGIN_NAME)
