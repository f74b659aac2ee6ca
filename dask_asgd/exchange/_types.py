"""Names, and the plain types that the mailbox, the sender and the plugin share.

Nothing here touches the network or the configuration: a :class:`TopicSpec`
arrives with every setting already chosen by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Name under which :class:`ExchangeWorkerPlugin` is registered on workers.
PLUGIN_NAME = "asgd-exchange"
#: Worker handler (rpc) that receives a published message.
RECEIVE_HANDLER = "asgd_exchange_receive"


@dataclass(frozen=True)
class TopicSpec:
    """What a worker subscribes to and how it buffers and sends.

    Parameters
    ----------
    topic : str
        Topic name, unique per run (a fit's id): one subscription per topic
        and worker, and messages of a closed topic are refused.
    mailbox_slots : int
        Unread messages the mailbox keeps before overwriting the oldest.
    max_in_flight : int
        Messages a publisher may have on the wire before it drops new ones.
    send_timeout : float or None
        Seconds one send may take, beyond its bytes' time at
        ``min_bandwidth``, before it counts as failed. None: no limit.
    min_bandwidth : float or None
        The slowest link, in bytes per second, that a message is given time
        for: a send of ``n`` bytes times out after
        ``send_timeout + n / min_bandwidth`` seconds. None: no allowance.
    seed : int or None, default=None
        Seed of the random peer choice.
    payload_shape : tuple of (int, int), optional
        The subscribed state's shape ``(n_rows, n_columns)``. When given, a
        message is refused unless its payload is a ``(n_rows, width)``
        block of it, ``1 <= width <= n_columns``, whose metadata's
        ``column_start`` (0 if absent) places it inside the state; a payload
        with more elements than the state is refused as ``"too-large"``.
        None: any shape is accepted.
    payload_dtype : str, optional
        The subscribed state's floating dtype (``"float32"`` or
        ``"float64"``). When given, a payload of any real floating dtype is
        accepted and cast to it (a value the cast makes infinite is then
        refused as non-finite); integer, boolean, complex, string and object
        payloads are refused as ``"dtype"``. None: any real numeric dtype
        (integers included) is accepted as it is.
    max_abs : float, optional
        The endpoint's magnitude bound from the moment it joins (see
        ``Endpoint.limit_magnitude``); None: no bound.

    Notes
    -----
    The exchange knows no model: ``payload_shape`` and ``payload_dtype`` are
    how a subscriber declares what it can merge, so that the receiving
    handler refuses what it cannot before it enters the mailbox.
    """

    topic: str
    mailbox_slots: int
    max_in_flight: int
    send_timeout: float | None
    min_bandwidth: float | None
    seed: int | None = None
    payload_shape: tuple[int, int] | None = None
    payload_dtype: str | None = None
    max_abs: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise ValueError(f"topic must be a non-empty str, got {self.topic!r}")
        if self.mailbox_slots < 1:
            raise ValueError(f"mailbox_slots must be >= 1, got {self.mailbox_slots}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.send_timeout is not None and not self.send_timeout > 0:
            raise ValueError(f"send_timeout must be > 0, got {self.send_timeout}")
        if self.min_bandwidth is not None and not self.min_bandwidth > 0:
            raise ValueError(
                f"min_bandwidth must be > 0 bytes/s, got {self.min_bandwidth}"
            )
        if self.payload_shape is not None:
            shape = tuple(self.payload_shape)
            if len(shape) != 2 or not all(
                isinstance(n, (int, np.integer)) and n >= 1 for n in shape
            ):
                raise ValueError(
                    "payload_shape must be two ints >= 1 (n_rows, n_columns), "
                    f"got {self.payload_shape!r}"
                )
            # Plain ints: the spec travels pickled inside the training task.
            object.__setattr__(self, "payload_shape", (int(shape[0]), int(shape[1])))
        if self.payload_dtype is not None:
            dtype = np.dtype(self.payload_dtype)
            if dtype.kind != "f":
                raise ValueError(f"payload_dtype must be a floating dtype, got {dtype}")
            object.__setattr__(self, "payload_dtype", dtype.name)
        if self.max_abs is not None and not self.max_abs > 0:
            raise ValueError(f"max_abs must be > 0 or None, got {self.max_abs}")

    def timeout_for(self, nbytes: int) -> float | None:
        """Seconds a send of ``nbytes`` may take before it counts as failed.

        Parameters
        ----------
        nbytes : int
            Size of the message.

        Returns
        -------
        float or None
            ``send_timeout + nbytes / min_bandwidth``; None without a limit.
        """
        if self.send_timeout is None:
            return None
        if self.min_bandwidth is None:
            return self.send_timeout
        return self.send_timeout + nbytes / self.min_bandwidth

    def __str__(self) -> str:
        return f"Topic<{self.topic}>"


@dataclass(frozen=True, eq=False)
class Message:
    """One published state, as it lies in a receiver's mailbox.

    Parameters
    ----------
    topic : str
        Topic it was published on.
    sender : str
        Address of the publishing worker.
    payload : numpy.ndarray
        The array; the receiver owns it (a fresh buffer, never reused).
    metadata : dict
        Small dict of msgpack-native values given by the publisher.
    sent_at : float
        ``time.time()`` on the sender when it was published.
    received_at : float
        ``time.time()`` on the receiver when it entered the mailbox.
    """

    topic: str
    sender: str
    payload: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0
    received_at: float = 0.0

    @property
    def nbytes(self) -> int:
        """Size of the payload in bytes."""
        return int(self.payload.nbytes)

    def __repr__(self) -> str:
        return (
            f"Message<{self.topic} from {self.sender}: "
            f"{self.payload.dtype}{list(self.payload.shape)}>"
        )
