"""In-process fakes of distributed's rpc pool and worker, and test helpers.

Modelled on ``distributed/shuffle/tests/utils.py``: the pool maps an address
to a receiving callable, so sends run on one event loop, deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from distributed.protocol.serialize import Serialize

from dask_asgd.exchange import RECEIVE_HANDLER, TopicSpec

Handler = Callable[..., Any]


class FakeRPC:
    """``rpc(address)`` -> proxy whose ``asgd_exchange_receive`` calls a handler.

    Unknown addresses raise ``OSError`` like a refused connection. Like the
    wire, the receiver gets a copy of the payload; ``copy=False`` hands over
    the sender's array itself, as distributed's in-process transport does.
    """

    def __init__(
        self, handlers: dict[str, Handler] | None = None, *, copy: bool = True
    ) -> None:
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.copy = copy
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, address: str) -> Any:
        async def receive(**message: Any) -> Any:
            self.calls.append((address, message))
            payload = message["payload"]
            if isinstance(payload, Serialize):
                payload = payload.data
            message = {**message, "payload": payload.copy() if self.copy else payload}
            try:
                handler = self.handlers[address]
            except KeyError:
                raise OSError(f"Timed out trying to connect to {address}") from None
            result = handler(**message)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return SimpleNamespace(**{RECEIVE_HANDLER: receive})


class Recorder:
    """A receiving handler that records payloads and answers a fixed reply.

    ``gate`` (if set) makes every call wait until it is set, to hold sends in
    flight; ``error`` is raised instead of answering.
    """

    def __init__(
        self,
        reply: Any = None,
        *,
        gate: asyncio.Event | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.reply = {"status": "OK"} if reply is None else reply
        self.gate = gate
        self.error = error
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, **message: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.messages.append(message)
        return self.reply


def fake_worker(address: str, rpc: FakeRPC) -> Any:
    """Just enough of a Worker for ExchangeWorkerPlugin.setup/join/teardown."""
    return SimpleNamespace(
        address=address,
        handlers={},
        rpc=rpc,
        loop=SimpleNamespace(asyncio_loop=asyncio.get_running_loop()),
    )


async def settle(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def topic_spec(topic: str = "t", **settings: Any) -> TopicSpec:
    """A TopicSpec with small test settings; ``settings`` override them."""
    return TopicSpec(
        topic=topic,
        **{
            "mailbox_slots": 4,
            "max_in_flight": 2,
            "send_timeout": 5.0,
            "min_bandwidth": None,
            **settings,
        },
    )


async def publish_and_wait(sender: Any, *args: Any, **kwargs: Any) -> bool:
    """Publish with ``sender.publish`` and wait until no send is in flight.

    ``sender`` is a Publisher or an Endpoint with nothing else in flight.
    Returns True if the peer accepted the message into its mailbox (its
    ``sent`` counter went up), False if it was dropped, refused or failed.
    """
    sent = sender.stats()["sent"]
    if not sender.publish(*args, **kwargs):
        return False
    await settle(lambda: sender.in_flight == 0)
    return sender.stats()["sent"] == sent + 1


def run(coro: Awaitable[Any]) -> Any:
    """Run a test coroutine on a fresh loop."""
    return asyncio.run(coro)  # type: ignore[arg-type]
