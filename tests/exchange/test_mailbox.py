"""The mailbox alone: slot semantics, counters, order and thread safety."""

from __future__ import annotations

import threading

import pytest

from dask_asgd.exchange._mailbox import Mailbox


def test_put_then_drain_returns_messages_in_arrival_order():
    box: Mailbox[int] = Mailbox(4)
    for i in range(3):
        assert box.put(i) is False
    assert len(box) == 3
    assert box.drain() == [0, 1, 2]
    assert box.drain() == []
    assert box.counters() == {
        "delivered": 3,
        "lost": 0,
        "read": 3,
        "unread": 0,
        "discarded": 0,
    }


def test_full_mailbox_overwrites_oldest_unread_and_counts_it_lost():
    box: Mailbox[str] = Mailbox(2)
    assert [box.put(x) for x in "abcde"] == [False, False, True, True, True]
    assert box.lost == 3
    # The newest messages survive, still oldest first.
    assert box.drain() == ["d", "e"]
    assert box.counters() == {
        "delivered": 5,
        "lost": 3,
        "read": 2,
        "unread": 0,
        "discarded": 0,
    }


def test_read_slots_are_free_again():
    box: Mailbox[int] = Mailbox(2)
    box.put(1)
    box.put(2)
    assert box.drain() == [1, 2]
    # After a read, the two slots take new messages without any loss.
    assert box.put(3) is False
    assert box.put(4) is False
    assert box.lost == 0
    assert box.drain() == [3, 4]


def test_one_slot_keeps_only_the_newest():
    box: Mailbox[int] = Mailbox(1)
    for i in range(10):
        box.put(i)
    assert box.drain() == [9]
    assert box.lost == 9


@pytest.mark.parametrize("slots", [0, -1])
def test_slots_must_be_positive(slots):
    with pytest.raises(ValueError, match="at least 1 slot"):
        Mailbox(slots)


def test_concurrent_writers_and_reader_keep_counters_consistent():
    """Smoke test: writer threads (the event loop) and a reader (training)."""
    n_writers, per_writer = 4, 5_000
    box: Mailbox[tuple[int, int]] = Mailbox(8)
    seen: list[tuple[int, int]] = []
    writers_done = threading.Event()
    start = threading.Barrier(n_writers + 1)

    def write(w: int) -> None:
        start.wait()
        for i in range(per_writer):
            box.put((w, i))

    def read() -> None:
        start.wait()
        while not writers_done.is_set():
            seen.extend(box.drain())
        seen.extend(box.drain())

    writers = [threading.Thread(target=write, args=(w,)) for w in range(n_writers)]
    reader = threading.Thread(target=read)
    for t in [*writers, reader]:
        t.start()
    for t in writers:
        t.join()
    writers_done.set()
    reader.join()

    counters = box.counters()
    assert counters["delivered"] == n_writers * per_writer
    assert counters["unread"] == 0
    assert counters["read"] == len(seen)
    assert counters["delivered"] == counters["lost"] + counters["read"]
    # No duplicates, and each writer's messages come out in the order written.
    assert len(set(seen)) == len(seen)
    for w in range(n_writers):
        mine = [i for (writer, i) in seen if writer == w]
        assert mine == sorted(mine)


def test_discard_drops_unread_messages_and_counts_them():
    box: Mailbox[bytes] = Mailbox(3)
    for item in (b"a", b"b", b"c", b"d"):
        box.put(item)
    assert box.drain() == [b"b", b"c", b"d"]
    box.put(b"e")
    box.put(b"f")
    assert box.discard() == 2
    assert len(box) == 0 and box.drain() == []
    assert box.counters() == {
        "delivered": 6,
        "lost": 1,
        "read": 3,
        "unread": 0,
        "discarded": 2,
    }
