"""The exchange's transport over real TCP connections (no cluster)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from distributed.comm import connect, listen
from distributed.core import ConnectionPool, Server
from distributed.utils_test import gen_test

from dask_asgd.exchange._transport import DiscardingRPC, discard_unsent_on_close
from dask_asgd.exchange._types import RECEIVE_HANDLER


class _Peer:
    """A server with the exchange's handler; it may hold calls until released."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.hold = False
        self.server = Server({RECEIVE_HANDLER: self.receive})

    async def receive(self, **message):
        self.received.append(message)
        self.entered.set()
        if self.hold:
            await self.release.wait()
        return {"status": "OK"}


@gen_test()
async def test_a_call_delivers_the_message_and_reuses_the_connection():
    peer = _Peer()
    await peer.server.listen("tcp://127.0.0.1:0")
    pool = await ConnectionPool(limit=10)
    try:
        rpc = DiscardingRPC(pool)
        for value in (1, 2):
            reply = await rpc(peer.server.address).asgd_exchange_receive(value=value)
            assert reply == {"status": "OK"}
        assert [m["value"] for m in peer.received] == [1, 2]
        assert pool.open == 1
    finally:
        await pool.close()
        peer.server.stop()


@gen_test()
async def test_a_cancelled_call_closes_its_connection():
    peer = _Peer()
    peer.hold = True
    await peer.server.listen("tcp://127.0.0.1:0")
    pool = await ConnectionPool(limit=10)
    try:
        call = asyncio.ensure_future(
            DiscardingRPC(pool)(peer.server.address).asgd_exchange_receive(value=1)
        )
        await asyncio.wait_for(peer.entered.wait(), 10)
        assert pool.open == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # The connection is not given back for reuse: it was reset.
        assert pool.open == 0
    finally:
        peer.release.set()
        await pool.close()
        peer.server.stop()


@gen_test()
async def test_a_tcp_comm_is_set_to_reset_on_close():
    async def ignore(comm):
        await comm.read()

    listener = listen("tcp://127.0.0.1:0", ignore)
    await listener.start()
    comm = await connect(listener.contact_address)
    try:
        assert discard_unsent_on_close(comm)
        linger = comm.stream.socket.getsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.calcsize("ii")
        )
        assert struct.unpack("ii", linger) == (1, 0)
    finally:
        comm.abort()
        listener.stop()


def test_a_comm_without_a_socket_is_left_alone():
    class InProcess:
        pass

    assert not discard_unsent_on_close(InProcess())
