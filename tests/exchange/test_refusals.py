"""The handler refuses what a subscription cannot merge, before its mailbox.

Against the plugin on fake workers: every malformed message is answered with
a refusal and its reason, counted on the worker and on the endpoint, and
never stored; a well-formed one still goes through afterwards.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from dask_asgd.exchange import ExchangeWorkerPlugin

from ._fakes import FakeRPC, fake_worker, run, topic_spec

A, B = "tcp://a:1", "tcp://b:1"
#: The subscribed state: 3 rows (one-vs-rest outputs), 10 columns.
SHAPE = (3, 10)


def good(width: int = 10, dtype: str = "float32") -> np.ndarray:
    return np.ones((SHAPE[0], width), dtype=dtype)


MALFORMED = [
    pytest.param({"payload": None}, "not-an-array", id="payload-None"),
    pytest.param({"payload": [[1.0] * 10] * 3}, "not-an-array", id="list"),
    pytest.param({"payload": np.full(SHAPE, "x")}, "dtype", id="string-array"),
    pytest.param(
        {"payload": np.full(SHAPE, 1.0, dtype=object)}, "dtype", id="object-array"
    ),
    pytest.param({"payload": good().astype(np.complex64)}, "dtype", id="complex"),
    pytest.param({"payload": np.ones(SHAPE, dtype=np.int32)}, "dtype", id="integers"),
    pytest.param({"payload": np.ones(SHAPE, dtype=bool)}, "dtype", id="booleans"),
    pytest.param({"payload": np.ones((3, 11), np.float32)}, "too-large", id="wider"),
    pytest.param({"payload": np.ones((40,), np.float32)}, "too-large", id="more"),
    pytest.param({"payload": np.ones((2, 10), np.float32)}, "shape", id="fewer-rows"),
    pytest.param({"payload": np.ones(30, np.float32)}, "shape", id="flat"),
    pytest.param({"payload": np.ones((3, 0), np.float32)}, "shape", id="empty"),
    pytest.param({"metadata": "column_start"}, "metadata", id="metadata-str"),
    pytest.param({"metadata": {"column_start": "x"}}, "metadata", id="start-str"),
    pytest.param({"metadata": {"column_start": 1.5}}, "metadata", id="start-float"),
    pytest.param({"metadata": {"column_start": True}}, "metadata", id="start-bool"),
    pytest.param({"metadata": {1: 2}}, "metadata", id="int-key"),
    pytest.param({"metadata": {"a": object()}}, "metadata", id="object-value"),
    pytest.param({"metadata": {"a": list(range(100))}}, "metadata", id="huge"),
    pytest.param({"metadata": {"a": [[[[[1]]]]]}}, "metadata", id="deep"),
    pytest.param({"sender": None}, "metadata", id="sender-None"),
    pytest.param({"sent_at": "now"}, "metadata", id="sent-at-str"),
    pytest.param({"metadata": {"column_start": -10}}, "column-range", id="start<0"),
    pytest.param(
        {"payload": good(4), "metadata": {"column_start": 7}},
        "column-range",
        id="block-past-the-end",
    ),
    pytest.param(
        {"payload": np.where(np.eye(3, 10) > 0, np.nan, 1.0).astype(np.float32)},
        "non-finite",
        id="nan",
    ),
    pytest.param(
        {"payload": np.full(SHAPE, -np.inf, np.float32)}, "non-finite", id="-inf"
    ),
    pytest.param(
        # Finite in float64, infinite once cast to the fit's float32.
        {"payload": np.full(SHAPE, 1e300)},
        "non-finite",
        id="overflows-the-cast",
    ),
    pytest.param({"payload": np.full(SHAPE, 1e30, np.float32)}, "magnitude", id="1e30"),
]


def make_receiver(**spec):
    rpc = FakeRPC()
    worker = fake_worker(B, rpc)
    plugin = ExchangeWorkerPlugin()
    plugin.setup(worker)
    settings = {
        "payload_shape": SHAPE,
        "payload_dtype": "float32",
        "max_abs": 1e6,
        **spec,
    }
    endpoint = plugin.join(topic_spec("fit", **settings), [A, B])
    # Bounded from the moment it joined.
    assert endpoint.max_abs == settings["max_abs"]
    return plugin, worker, endpoint


def send(plugin, **message):
    message = {
        "topic": "fit",
        "sender": A,
        "payload": good(),
        "metadata": {"column_start": 0},
        "sent_at": 1.0,
        **message,
    }
    return plugin.asgd_exchange_receive(**message)


@pytest.mark.parametrize("message, reason", MALFORMED)
def test_malformed_message_is_refused_counted_and_never_stored(message, reason):
    async def main():
        plugin, worker, endpoint = make_receiver()
        assert send(plugin, **message) == {"status": "refused", "reason": reason}
        assert endpoint.receive() == []
        stats = endpoint.stats()
        assert stats["received"] == 0 and stats["bytes_received"] == 0
        assert stats["refused"] == 1 and stats["refused_by_reason"] == {reason: 1}
        assert plugin.stats()["refused_by_reason"] == {reason: 1}
        assert plugin.stats()["received"] == 0
        # The subscription goes on: a well-formed message is delivered.
        assert send(plugin) == {"status": "OK"}
        (delivered,) = endpoint.receive()
        np.testing.assert_array_equal(delivered.payload, good())
        await plugin.teardown(worker)

    run(main())


def test_blocks_of_the_state_are_accepted():
    async def main():
        plugin, worker, endpoint = make_receiver()
        assert send(plugin, payload=good(4), metadata={"column_start": 6}) == {
            "status": "OK"
        }
        # No metadata: the block starts at column 0.
        assert send(plugin, payload=good(10), metadata=None) == {"status": "OK"}
        assert [m.metadata for m in endpoint.receive()] == [{"column_start": 6}, {}]
        assert endpoint.stats()["refused"] == 0
        await plugin.teardown(worker)

    run(main())


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_other_floating_dtypes_are_cast_to_the_topics(dtype):
    async def main():
        plugin, worker, endpoint = make_receiver()
        payload = np.full(SHAPE, 0.5, dtype=dtype)
        assert send(plugin, payload=payload) == {"status": "OK"}
        (message,) = endpoint.receive()
        assert message.payload.dtype == np.float32
        np.testing.assert_array_equal(message.payload, 0.5)
        assert message.nbytes == 4 * payload.size
        await plugin.teardown(worker)

    run(main())


def test_the_magnitude_bound_follows_the_subscriber():
    async def main():
        plugin, worker, endpoint = make_receiver()
        big = np.full(SHAPE, 5e6, np.float32)
        assert send(plugin, payload=big)["reason"] == "magnitude"
        endpoint.limit_magnitude(1e7)
        assert send(plugin, payload=big) == {"status": "OK"}
        endpoint.limit_magnitude(None)
        assert send(plugin, payload=np.full(SHAPE, 1e30, np.float32))["status"] == "OK"
        with pytest.raises(ValueError, match="max_abs"):
            endpoint.limit_magnitude(float("nan"))
        await plugin.teardown(worker)

    run(main())


def test_without_a_declared_state_any_real_array_is_accepted():
    # The exchange alone is model-free: a topic that declares nothing takes
    # any real numeric array, but still refuses non-arrays and NaN.
    async def main():
        plugin, worker, endpoint = make_receiver(payload_shape=None, payload_dtype=None)
        endpoint.limit_magnitude(None)
        for payload in (np.arange(7), np.zeros((2, 3, 4)), np.full(99, 1e30)):
            assert send(plugin, payload=payload) == {"status": "OK"}
        assert send(plugin, payload=None)["reason"] == "not-an-array"
        assert send(plugin, payload=np.array([np.nan]))["reason"] == "non-finite"
        assert send(plugin, payload=np.array(["x"]))["reason"] == "dtype"
        assert len(endpoint.receive()) == 3
        await plugin.teardown(worker)

    run(main())


def test_a_failing_check_is_a_refusal_not_an_error():
    class Hostile(np.ndarray):
        def max(self, *args, **kwargs):
            raise RuntimeError("boom")

    async def main():
        plugin, worker, endpoint = make_receiver()
        payload = good().view(Hostile)
        assert send(plugin, payload=payload) == {
            "status": "refused",
            "reason": "malformed",
        }
        assert endpoint.stats()["refused_by_reason"] == {"malformed": 1}
        await plugin.teardown(worker)

    run(main())


def test_unhashable_topic_is_unknown():
    async def main():
        plugin, worker, _ = make_receiver()
        assert send(plugin, topic=["fit"])["reason"] == "unknown-topic"
        await plugin.teardown(worker)

    run(main())


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"payload_shape": (3,)}, "payload_shape"),
        ({"payload_shape": (0, 4)}, "payload_shape"),
        ({"payload_shape": (2.0, 4)}, "payload_shape"),
        ({"payload_dtype": "int64"}, "payload_dtype"),
        ({"max_abs": 0.0}, "max_abs"),
    ],
)
def test_declared_state_is_validated(spec, match):
    with pytest.raises(ValueError, match=match):
        topic_spec(**spec)


def test_declared_state_is_normalised():
    spec = topic_spec(payload_shape=(np.int64(3), 4), payload_dtype=np.float32)
    assert spec.payload_shape == (3, 4) and type(spec.payload_shape[0]) is int
    assert spec.payload_dtype == "float32"


def test_closing_frees_unread_payloads_at_once_and_keeps_counting():
    async def main():
        plugin, worker, endpoint = make_receiver(mailbox_slots=4)
        payloads = [good() for _ in range(3)]
        alive = [weakref.ref(p) for p in payloads]
        for payload in payloads:
            assert send(plugin, payload=payload) == {"status": "OK"}
        del payloads, payload
        endpoint.close()
        gc.collect()
        # No reference is left to the unread payloads: freed at close.
        assert all(ref() is None for ref in alive)
        stats = endpoint.stats()
        assert (stats["received"], stats["unread"], stats["discarded"]) == (3, 0, 3)
        # What the plugin remembers of the closed topic holds no payload and
        # no mailbox, but late messages are still refused and counted.
        late = good()
        late_ref = weakref.ref(late)
        assert send(plugin, payload=late) == {"status": "refused", "reason": "closed"}
        del late
        gc.collect()
        assert late_ref() is None
        assert endpoint.stats()["refused_by_reason"] == {"closed": 1}
        assert not any(
            isinstance(value, np.ndarray) or hasattr(value, "_mailbox")
            for closed in plugin._retired.values()
            for value in vars(closed).values()
        )
        await plugin.teardown(worker)

    run(main())
