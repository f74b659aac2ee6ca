"""Shuffled copies of in-memory rows that fill while the worker trains.

With ``shuffle=True`` a worker trains on a copy of its rows in a random order
(see ``_shuffle.py``). For a worker in the driver's process (the embedded
cluster, a threads ``LocalCluster``) that copy was the largest cost outside
training: measured on the project's 2-core machine, gathering 500,000 x 100
float64 rows took 0.13-0.14 s, against 0.06-0.07 s for one epoch over them.
So the copy is written by background threads, step by step from the front,
and the worker's first epoch walks the copy in storage order (already a
uniformly random order) right behind them: the copy and the first epoch take
the time of the longer of the two.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..learners import Partition

#: Rows gathered per step: 16,384 rows of 100 float64 features is 13 MB, as
#: fast per row as one gather of all rows and fine-grained enough that the
#: trainer rarely waits for more than one step.
STEP_ROWS = 16_384


class CopyCancelled(RuntimeError):
    """The copy was stopped (its fit ended) before the rows were written."""


class BackgroundGather:
    """Gather ``source[rows]`` into ``target`` on threads of their own.

    The writers take the steps of ``step_rows`` rows in turn, and the rows
    count as written up to the first step not yet done, so readers see a
    prefix that only grows.

    Parameters
    ----------
    source : ndarray of shape (n_samples, n_features)
        Dense rows to copy from.
    rows : ndarray of int64
        Row numbers of ``source``, in the order they take in ``target``.
    target : ndarray of shape (len(rows), n_features)
        Where the rows go.
    threads : int, default=1
        Writers. Writing new memory is mostly the kernel handing out pages,
        which several threads do faster than one: on the project's 2-core
        virtual machine, where memory freed for a few seconds goes back to
        the host, gathering 400 MB into such memory took 1.0-1.2 s on one
        thread and 0.55-0.59 s on two.
    step_rows : int, default=STEP_ROWS
    """

    def __init__(
        self,
        source: np.ndarray,
        rows: np.ndarray,
        target: np.ndarray,
        threads: int = 1,
        step_rows: int = STEP_ROWS,
    ) -> None:
        self._source = source
        self._rows = rows
        self._target = target
        self._step_rows = max(1, step_rows)
        n_steps = -(-rows.shape[0] // self._step_rows)
        self._step_done = np.zeros(n_steps, dtype=bool)
        self._next_step = 0
        self._written = 0
        self._error: BaseException | None = None
        self._cancelled = False
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(first, max(1, threads)),
                name="asgd-background-copy",
                daemon=True,
            )
            for first in range(min(max(1, threads), max(1, n_steps)))
        ]
        self._running = len(self._threads)

    def start(self) -> BackgroundGather:
        """Start writing; returns ``self``."""
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, first: int, stride: int) -> None:
        total = self._rows.shape[0]
        source, rows, target = self._source, self._rows, self._target
        try:
            for step in range(first, self._step_done.shape[0], stride):
                if self._cancelled:
                    return
                start = step * self._step_rows
                stop = min(start + self._step_rows, total)
                # mode="clip": with the default mode NumPy gathers into a
                # temporary first and copies it over. The rows were checked.
                np.take(
                    source,
                    rows[start:stop],
                    axis=0,
                    out=target[start:stop],
                    mode="clip",
                )
                with self._changed:
                    self._step_done[step] = True
                    while (
                        self._next_step < self._step_done.shape[0]
                        and self._step_done[self._next_step]
                    ):
                        self._next_step += 1
                    self._written = min(self._next_step * self._step_rows, total)
                    self._changed.notify_all()
        except BaseException as error:  # handed to the waiting trainer
            with self._changed:
                self._error = error
                self._changed.notify_all()
        finally:
            with self._changed:
                self._running -= 1
                if self._running == 0:
                    # The source may be large: once written, the copy needs
                    # none of it.
                    self._source = self._rows = None  # type: ignore[assignment]

    @property
    def complete(self) -> bool:
        """Whether every row has been written."""
        return self._written == self._target.shape[0]

    def wait_rows(self, stop: int) -> None:
        """Block until rows ``[0, stop)`` of the target are written.

        Raises
        ------
        CopyCancelled
            If the copy was cancelled before reaching ``stop``.
        Exception
            Whatever stopped a copying thread.
        """
        if self._written >= stop:
            return
        with self._changed:
            while self._written < stop:
                if self._error is not None:
                    raise self._error
                if self._cancelled:
                    raise CopyCancelled("The rows' copy was cancelled: the fit ended.")
                self._changed.wait()

    def cancel(self) -> None:
        """Stop writing, and wait for the threads to leave (one step at most)."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join()


@dataclasses.dataclass
class FillingPartition(Partition):
    """A :class:`Partition` whose features are still being written.

    Only ever handed to workers in the driver's process, which receive the
    object itself. Should it be serialised anyway (spilled, or sent to
    another process), it first waits for the copy and becomes a plain
    :class:`Partition`.
    """

    copy: BackgroundGather | None = None

    def wait_rows(self, stop: int) -> None:
        """Block until the first ``stop`` rows of ``X`` are written."""
        if self.copy is not None:
            self.copy.wait_rows(stop)

    def wait_for(self, rows: np.ndarray) -> None:
        """Block until the rows numbered ``rows`` are written."""
        if self.copy is not None and not self.copy.complete and rows.size:
            self.copy.wait_rows(int(rows.max()) + 1)

    def __reduce__(self) -> tuple[Any, ...]:
        self.wait_rows(self.X.shape[0])
        fields = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(Partition)
        }
        return (_plain_partition, (fields,))


def _plain_partition(fields: dict[str, Any]) -> Partition:
    return Partition(**fields)


def filling_partition(
    X: np.ndarray,
    rows: np.ndarray,
    per_row: Mapping[str, np.ndarray | None],
    threads: int = 1,
) -> FillingPartition:
    """The rows ``rows`` of in-memory input, their features copied in the background.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Dense, C-contiguous.
    rows : ndarray of int64
        The worker's rows, in random order.
    per_row : mapping
        ``targets``, ``sample_weight`` and ``validation`` of ``rows``,
        already gathered (they are small).
    threads : int, default=1
        Threads writing the copy (see :class:`BackgroundGather`).

    Returns
    -------
    FillingPartition
        With ``rows_in_random_order`` set and its copy started.
    """
    target = np.empty((rows.shape[0], X.shape[1]), dtype=X.dtype)
    return FillingPartition(
        X=target,
        **per_row,
        rows_in_random_order=True,
        copy=BackgroundGather(X, rows, target, threads).start(),
    )
