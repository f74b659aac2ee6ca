"""Simulated time for worker threads: one runs at a time, the earliest first.

Every simulated worker is a real thread running the real worker loop. A
worker holds the *token* while it computes; when its simulated clock moves
forward (after a kernel call, a publish, at a barrier) it hands the token to
the worker whose clock is earliest (ties by worker number). So the threads
run one at a time, in the order of simulated time, and a run is
deterministic for a seed whatever the operating system's thread scheduling.
A message sent at time ``t`` therefore reaches a peer that has not yet
passed ``t``: the simulation is causal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Worker states.
_READY, _WAITING, _DONE = "ready", "waiting", "done"


class VirtualTime:
    """The clocks of ``n_workers`` simulated workers and who may run now.

    Parameters
    ----------
    n_workers : int
        Number of worker threads that take part.
    """

    def __init__(self, n_workers: int) -> None:
        self._lock = threading.Lock()
        # One condition per worker on the one lock: passing the token wakes
        # only the worker that gets it (waking all would cost O(N) per step).
        self._conditions = [threading.Condition(self._lock) for _ in range(n_workers)]
        self._times = [0.0] * n_workers
        self._states = [_READY] * n_workers
        self._current: int | None = 0 if n_workers else None
        #: Set by a failing worker: every other thread stops waiting.
        self.failed: BaseException | None = None

    def now(self, worker: int) -> float:
        """Simulated seconds of ``worker``'s clock."""
        return self._times[worker]

    def clock(self, worker: int) -> Callable[[], float]:
        """A clock function for one worker (what the loop's ``clock`` reads)."""
        return lambda: self._times[worker]

    def start(self, worker: int) -> None:
        """Block the calling thread until ``worker`` holds the token."""
        with self._lock:
            self._wait_for_token(worker)

    def advance(self, worker: int, seconds: float) -> None:
        """Move ``worker``'s clock forward and let earlier workers run first."""
        with self._lock:
            self._times[worker] += max(0.0, seconds)
            self._pass_token()
            self._wait_for_token(worker)

    def wait(self, worker: int, released: Callable[[], bool]) -> None:
        """Park ``worker`` until another worker calls :meth:`release` on it.

        ``released`` is checked under the lock, so the release cannot be
        missed.
        """
        with self._lock:
            if released():
                return
            self._states[worker] = _WAITING
            self._pass_token()
            self._wait_for_token(worker)

    def release(self, workers: list[int], at: float) -> None:
        """Wake parked ``workers`` with their clocks set to ``at`` (caller
        holds the token and keeps it)."""
        with self._lock:
            for worker in workers:
                self._times[worker] = max(self._times[worker], at)
                self._states[worker] = _READY

    def finish(self, worker: int, error: BaseException | None = None) -> None:
        """``worker``'s thread ends; the token goes to the next worker."""
        with self._lock:
            self._states[worker] = _DONE
            if error is not None and self.failed is None:
                self.failed = error
            self._pass_token()

    def _pass_token(self) -> None:
        ready = [
            (time, worker)
            for worker, (time, state) in enumerate(
                zip(self._times, self._states, strict=True)
            )
            if state == _READY
        ]
        self._current = min(ready)[1] if ready else None
        if self.failed is not None:
            for condition in self._conditions:
                condition.notify_all()
        elif self._current is not None:
            self._conditions[self._current].notify()

    def _wait_for_token(self, worker: int) -> None:
        self._conditions[worker].wait_for(
            lambda: self._current == worker or self.failed is not None
        )
        if self.failed is not None and self._current != worker:
            raise RuntimeError("another simulated worker failed") from self.failed
