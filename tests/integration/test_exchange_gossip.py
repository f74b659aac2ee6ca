"""End to end on a real LocalCluster: two worker processes gossip states."""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from typing import Any

import cloudpickle
import numpy as np
import pytest
from distributed import Client, Event, LocalCluster, get_worker, secede

from dask_asgd.exchange import PLUGIN_NAME, ExchangeWorkerPlugin, TopicSpec, join_topic

N_MESSAGES = 50
PAYLOAD_SIZE = 10_000
TIMEOUT = 30.0


def _barrier(name: str, index: int, n_members: int, timeout: float) -> None:
    """Set my event and wait for everybody's (a distributed barrier)."""
    Event(f"{name}-{index}").set()
    for other in range(n_members):
        if not Event(f"{name}-{other}").wait(timeout):
            raise TimeoutError(f"member {other} never reached {name}")


def _gossip(spec: TopicSpec, peers: list[str], index: int) -> dict[str, Any]:
    """A long-running task that publishes and receives, like a training loop."""
    # Long-running: the worker's slot is freed, so the peer's task and the
    # Events' client calls are never blocked behind this one (with one thread
    # per worker, a task that does not secede holds the slot until it ends).
    secede()
    endpoint = join_topic(dataclasses.replace(spec, seed=index), peers)
    # Everyone has subscribed before anyone publishes, so nothing is refused.
    _barrier(f"{spec.topic}-joined", index, len(peers), TIMEOUT)

    state = np.zeros(PAYLOAD_SIZE)
    received: list[tuple[str, int, bool]] = []
    deadline = time.monotonic() + TIMEOUT
    step = 0
    while True:
        stats = endpoint.stats()
        if stats["sent"] >= N_MESSAGES and stats["received"] >= N_MESSAGES:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"gossip stalled: {stats}")
        if stats["sent"] + stats["in_flight"] < N_MESSAGES:
            state[:] = index * 1_000_000 + step
            if endpoint.publish(state, {"step": step, "index": index}):
                step += 1
        for message in endpoint.receive():
            expected = message.metadata["index"] * 1_000_000 + message.metadata["step"]
            received.append(
                (
                    message.sender,
                    message.metadata["step"],
                    bool(np.all(message.payload == expected)),
                )
            )
        # Polling the counters; the event loop runs in another thread.
        time.sleep(0.001)

    # Don't close while a peer may still publish to us.
    _barrier(f"{spec.topic}-done", index, len(peers), TIMEOUT)
    endpoint.close()
    return {
        "address": get_worker().address,
        "stats": endpoint.stats(),
        "received": received,
    }


def _asgd_handlers(dask_worker: Any) -> list[str]:
    names = [*dask_worker.handlers, *dask_worker.stream_handlers]
    return [name for name in names if name.startswith("asgd")]


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=":0",
    ) as cluster:
        yield cluster


@pytest.fixture
def by_value():
    # The tasks live in this test module, which worker processes may not be
    # able to import (it depends on how pytest was started): ship them.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


@pytest.mark.timeout(120)
def test_two_process_workers_gossip_and_leave_no_handlers(cluster, by_value):
    with Client(cluster) as client:
        client.register_plugin(ExchangeWorkerPlugin(), name=PLUGIN_NAME)
        peers = sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])
        assert len(peers) == 2
        # Topics are unique per run, as a fit's id is.
        spec = TopicSpec(
            topic=f"gossip-{uuid.uuid4().hex}",
            mailbox_slots=4,
            max_in_flight=2,
            send_timeout=2.0,
            min_bandwidth=1e6,
        )
        futures = [
            client.submit(
                _gossip,
                spec,
                peers,
                i,
                workers=[addr],
                allow_other_workers=False,
                pure=False,
            )
            for i, addr in enumerate(peers)
        ]
        results = client.gather(futures)

        for me, result in zip(peers, results, strict=True):
            assert result["address"] == me
            stats = result["stats"]
            assert stats["sent"] >= N_MESSAGES
            assert stats["received"] >= N_MESSAGES
            assert stats["failed"] == 0 and stats["refused_by_peer"] == 0
            assert stats["bytes_sent"] == stats["sent"] * PAYLOAD_SIZE * 8
            # Closing discarded what was still unread.
            assert stats["unread"] == 0
            assert stats["received"] == (
                stats["read"] + stats["lost"] + stats["discarded"]
            )
            assert result["received"], "nothing was read"
            other = next(p for p in peers if p != me)
            assert {sender for sender, _, _ in result["received"]} == {other}
            assert all(ok for _, _, ok in result["received"])
            # Two sends in flight may overtake each other, never duplicate.
            steps = [step for _, step, _ in result["received"]]
            assert len(set(steps)) == len(steps)
        # What one side sent (accepted), the other received.
        assert results[0]["stats"]["sent"] == results[1]["stats"]["received"]
        assert results[1]["stats"]["sent"] == results[0]["stats"]["received"]

        assert all(client.run(_asgd_handlers).values())
        client.unregister_worker_plugin(PLUGIN_NAME)
        assert client.run(_asgd_handlers) == {addr: [] for addr in peers}
        assert not [h for h in client.run_on_scheduler(_scheduler_handlers)]


def _scheduler_handlers(dask_scheduler: Any) -> list[str]:
    names = [*dask_scheduler.handlers, *dask_scheduler.stream_handlers]
    return [name for name in names if name.startswith("asgd")]
