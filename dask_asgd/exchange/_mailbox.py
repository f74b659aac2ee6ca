"""A mailbox with a fixed number of slots: newest messages win.

Pure Python on purpose (no Dask, no NumPy), so that its semantics can be tested
alone. The worker's event loop writes into it while the training thread reads
from it, so every operation holds a lock; each one is O(1) or O(slots).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Fixed-size buffer of unread messages; overwriting one counts it as lost.

    The slots form a ring. A message that arrives while every slot holds an
    unread message overwrites the oldest unread one, which is then counted in
    :attr:`lost`: the reader always finds the newest ``slots`` messages, which
    is what a gossip merge wants (a stale state is worth less than a fresh one).

    Parameters
    ----------
    slots : int
        Number of slots, at least 1.

    Examples
    --------
    >>> box = Mailbox(2)
    >>> for item in "abc":
    ...     _ = box.put(item)
    >>> box.drain(), box.lost
    (['b', 'c'], 1)
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a mailbox needs at least 1 slot, got {slots}")
        self._slots: int = int(slots)
        # deque(maxlen=...) is the ring: append on a full deque drops the
        # oldest entry, which is exactly "overwrite the oldest unread slot".
        self._unread: deque[T] = deque(maxlen=self._slots)
        self._lock: threading.Lock = threading.Lock()
        #: Messages put into the mailbox.
        self.delivered: int = 0
        #: Unread messages overwritten by newer ones.
        self.lost: int = 0
        #: Messages handed to the reader.
        self.read: int = 0
        #: Unread messages dropped by :meth:`discard`.
        self.discarded: int = 0

    @property
    def slots(self) -> int:
        """Number of slots."""
        return self._slots

    def put(self, message: T) -> bool:
        """Store ``message`` in the next slot.

        Parameters
        ----------
        message : object
            The message.

        Returns
        -------
        bool
            True if an unread message was overwritten (and counted as lost).
        """
        with self._lock:
            overwrote = len(self._unread) == self._slots
            self._unread.append(message)
            self.delivered += 1
            if overwrote:
                self.lost += 1
        return overwrote

    def drain(self) -> list[T]:
        """Return every unread message, oldest first, and mark them read.

        Returns
        -------
        list
            The unread messages in arrival order; empty if there are none.
        """
        with self._lock:
            if not self._unread:
                return []
            messages = list(self._unread)
            self._unread.clear()
            self.read += len(messages)
        return messages

    def discard(self) -> int:
        """Drop every unread message at once, counting them as discarded.

        The owner calls it when it stops reading (a closed subscription), so
        that the messages' memory is freed now rather than when the mailbox
        itself goes.

        Returns
        -------
        int
            Messages dropped.
        """
        with self._lock:
            dropped = len(self._unread)
            self._unread.clear()
            self.discarded += dropped
        return dropped

    def __len__(self) -> int:
        """Number of unread messages."""
        with self._lock:
            return len(self._unread)

    def counters(self) -> dict[str, int]:
        """Return a consistent snapshot of the counters.

        Returns
        -------
        dict
            ``delivered``, ``lost``, ``read``, ``unread`` and ``discarded``;
            always ``delivered == lost + read + unread + discarded``.
        """
        with self._lock:
            return {
                "delivered": self.delivered,
                "lost": self.lost,
                "read": self.read,
                "unread": len(self._unread),
                "discarded": self.discarded,
            }

    def __repr__(self) -> str:
        return f"<Mailbox slots={self._slots} unread={len(self)} lost={self.lost}>"
