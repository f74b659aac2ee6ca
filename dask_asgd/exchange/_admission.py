"""Whether a received message may enter a subscription's mailbox.

The receiving handler calls :func:`admit` before a message is stored: a
message that the subscriber could not merge, or that would corrupt its state,
is refused with a reason and answered to the sender; it never enters the
mailbox and never raises into the handler. The checks go cheapest first, so
that a message refused for its type or size costs no pass over its values.

Reasons, as answered to the sender and counted on the worker and endpoint:

``"not-an-array"``
    The payload is not a NumPy array (None, a list, ...).
``"dtype"``
    The payload's dtype is not of the subscription's family: not a real
    floating dtype for a floating topic, or not real numeric at all
    (strings, objects, booleans, complex numbers).
``"too-large"``
    The payload has more elements than the subscribed state.
``"shape"``
    The payload is not a block of rows and columns of the state.
``"metadata"``
    The metadata is not a small dict of msgpack-native values with str keys,
    its ``column_start`` is not an int, or the sender or send time is not of
    its type.
``"column-range"``
    ``column_start`` places the block outside the state.
``"non-finite"``
    The payload holds a NaN or an infinity (after the cast to the topic's
    dtype).
``"magnitude"``
    The payload holds a value beyond the subscriber's declared bound
    (:meth:`Endpoint.limit_magnitude`).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from ._types import TopicSpec

#: Every reason :func:`admit` may give, besides the handler's own
#: ``"unknown-topic"``, ``"closed"`` and ``"malformed"`` (a check that failed
#: unexpectedly).
REASONS = (
    "not-an-array",
    "dtype",
    "too-large",
    "shape",
    "metadata",
    "column-range",
    "non-finite",
    "magnitude",
)

#: Metadata is a handful of numbers (``{"column_start": 40}``); a cap on its
#: entries and nesting keeps a forged message from making the check expensive.
_METADATA_ITEMS = 64
_METADATA_DEPTH = 4

#: Dtype kinds a topic without a declared dtype accepts: real numbers.
_NUMERIC_KINDS = frozenset("iuf")


class Refused(Exception):
    """A message the subscription does not take; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def admit(
    spec: TopicSpec,
    payload: Any,
    metadata: Any,
    sender: Any,
    sent_at: Any,
    max_abs: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Check a received message against the subscription it is for.

    Parameters
    ----------
    spec : TopicSpec
        The subscription; its ``payload_shape`` and ``payload_dtype`` say
        what it accepts.
    payload, metadata, sender, sent_at
        The message as it arrived.
    max_abs : float, optional
        Largest magnitude of a value the subscriber accepts; None: no bound.

    Returns
    -------
    payload : numpy.ndarray
        The payload, cast to ``spec.payload_dtype`` if it had another one.
    metadata : dict
        The metadata (``{}`` for None).

    Raises
    ------
    Refused
        With the reason (see the module's docstring).
    """
    if not isinstance(payload, np.ndarray):
        raise Refused("not-an-array")
    _check_dtype(spec, payload.dtype)
    _check_size(spec, payload)
    metadata = _check_metadata(metadata, sender, sent_at)
    _check_block(spec, payload, metadata)
    if spec.payload_dtype is not None and payload.dtype != spec.payload_dtype:
        # A value beyond the topic's dtype becomes inf, refused just below.
        with np.errstate(over="ignore"):
            payload = payload.astype(spec.payload_dtype)
    _check_values(payload, max_abs)
    return payload, metadata


def _check_dtype(spec: TopicSpec, dtype: np.dtype) -> None:
    kinds = {"f"} if spec.payload_dtype is not None else _NUMERIC_KINDS
    if dtype.kind not in kinds or dtype.itemsize > 8:
        # itemsize: long double has no portable wire format.
        raise Refused("dtype")


def _check_size(spec: TopicSpec, payload: np.ndarray) -> None:
    if spec.payload_shape is None:
        return
    n_rows, n_columns = spec.payload_shape
    if payload.size > n_rows * n_columns:
        raise Refused("too-large")
    if (
        payload.ndim != 2
        or payload.shape[0] != n_rows
        or not 1 <= payload.shape[1] <= n_columns
    ):
        raise Refused("shape")


def _check_metadata(metadata: Any, sender: Any, sent_at: Any) -> dict[str, Any]:
    if not isinstance(sender, str) or not _is_real(sent_at):
        raise Refused("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not _is_small_and_plain(metadata):
        raise Refused("metadata")
    return metadata


def _check_block(spec: TopicSpec, payload: np.ndarray, metadata: dict) -> None:
    start = metadata.get("column_start", 0)
    if isinstance(start, bool) or not isinstance(start, int):
        raise Refused("metadata")
    if start < 0:
        raise Refused("column-range")
    if spec.payload_shape is not None:
        if start + payload.shape[1] > spec.payload_shape[1]:
            raise Refused("column-range")


def _check_values(payload: np.ndarray, max_abs: float | None) -> None:
    if payload.size == 0 or payload.dtype.kind != "f":
        # Integers are always finite, and only floating topics declare a bound.
        return
    # min and max propagate NaN and need no temporary array, unlike
    # isfinite(payload).all() or abs(payload).max().
    peak = max(-float(payload.min()), float(payload.max()))
    if not math.isfinite(peak):
        raise Refused("non-finite")
    if max_abs is not None and peak > max_abs:
        raise Refused("magnitude")


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_small_and_plain(metadata: dict) -> bool:
    """Whether ``metadata`` holds only msgpack-native values, and few of them.

    Counts a container's entries before visiting them, so that a huge forged
    structure is refused after at most ``_METADATA_ITEMS`` steps.
    """
    pending: list[tuple[Any, int]] = [(metadata, 0)]
    items = 0
    while pending:
        value, depth = pending.pop()
        if value is None or isinstance(value, (bool, int, float, str, bytes)):
            continue
        if depth == _METADATA_DEPTH or not isinstance(value, (list, tuple, dict)):
            return False
        items += len(value)
        if items > _METADATA_ITEMS:
            return False
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                return False
            value = value.values()
        pending.extend((item, depth + 1) for item in value)
    return True
