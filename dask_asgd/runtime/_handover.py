"""The state a task that replaces a lost worker's task starts from.

Each training task of a fit that can lose workers leaves a copy of its state
here at every epoch barrier, in its worker's process. A replacement started
on the same worker takes a copy of it: training goes on from where the
survivors are rather than from the fit's start. The copy is made by the
training thread between kernel calls, so it is a whole state, never one a
kernel is halfway through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..learners import ExchangedState

_lock = threading.Lock()
#: (fit id, member) -> that member's state at its last epoch barrier.
_states: dict[tuple[str, str], Any] = {}


@contextmanager
def leaving_states(
    fit_id: str, member: str, enabled: bool
) -> Iterator[Callable[[int, ExchangedState], None] | None]:
    """Keep a member's latest barrier state in this process while it trains.

    Yields
    ------
    callable or None
        ``leave(epoch, state)``, to call after each epoch barrier; None when
        not ``enabled`` (a fit that cannot replace workers keeps nothing).
    """
    if not enabled:
        yield None
        return
    key = (fit_id, member)

    def leave(epoch: int, state: ExchangedState) -> None:
        copy = state.copy()
        with _lock:
            _states[key] = copy

    try:
        yield leave
    finally:
        with _lock:
            _states.pop(key, None)


def taken_state(fit_id: str, member: str) -> Any | None:
    """A copy of ``member``'s last barrier state, or None if it left none here."""
    with _lock:
        state = _states.get((fit_id, member))
    return None if state is None else state.copy()


def held_states() -> int:
    """How many states this process keeps (for tests: none after a fit)."""
    with _lock:
        return len(_states)
