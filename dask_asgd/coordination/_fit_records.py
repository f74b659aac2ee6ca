"""What the dashboard page shows: a small, bounded record of recent fits.

The scheduler plugin feeds :class:`FitRecords` from what it receives anyway
(epoch reports, balancing requests, the start and end of each fit); the
``/asgd`` dashboard page reads it. Memory stays bounded however long a fit
runs: every series keeps at most ``capacity`` points (when full, it keeps every
other point and records only every second new one, so it always spans the
whole fit at a coarser step), and only the last ``keep_finished`` finished fits
are kept.

Everything here runs on the scheduler's event loop (the handlers and the Bokeh
document's callbacks alike), so nothing is locked.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Points a series keeps before it halves its resolution.
SERIES_CAPACITY = 2048
#: Finished fits kept for the page.
KEEP_FINISHED = 10

RUNNING = "running"
FINISHED = "finished"
ABORTED = "aborted"


class Series:
    """Rows of named numbers over time, at most ``capacity`` of them.

    Parameters
    ----------
    columns : tuple of str
        The names of the numbers of every row.
    capacity : int
        Rows kept; when full, every other row is dropped and from then on
        only every second new row is kept, so the series still spans all
        that was appended.
    """

    def __init__(self, columns: tuple[str, ...], capacity: int = SERIES_CAPACITY):
        self.columns = columns
        # Even: halving a full series then keeps its rows evenly spaced.
        self.capacity = max(2, int(capacity) + int(capacity) % 2)
        self.data: dict[str, list[float]] = {name: [] for name in columns}
        #: Rows appended per row kept.
        self.stride = 1
        self._since_kept = 0

    def __len__(self) -> int:
        return len(self.data[self.columns[0]])

    def append(self, **row: float) -> None:
        """Append one row (one value per column)."""
        self._since_kept += 1
        if self._since_kept < self.stride:
            return
        self._since_kept = 0
        for name in self.columns:
            self.data[name].append(float(row[name]))
        if len(self) >= self.capacity:
            for name in self.columns:
                self.data[name] = self.data[name][::2]
            # The last row appended was dropped: the next row kept is one
            # old stride closer.
            self._since_kept = self.stride
            self.stride *= 2


def _loss_series() -> Series:
    return Series(("time", "epoch", "loss"))


def _exchange_series() -> Series:
    return Series(("time", "send_interval", "message_size", "sent", "lost", "accepted"))


@dataclass
class WorkerRecord:
    """One worker's numbers in one fit."""

    #: Mean loss of the worker's epochs: ``time``, ``epoch``, ``loss``.
    loss: Series = field(default_factory=_loss_series)
    #: Its balancing reports: settings after the balancer's answer and the
    #: messages sent, lost and accepted per second over the report's period.
    exchange: Series = field(default_factory=_exchange_series)
    #: Seconds into the fit of the last balancing report.
    last_report: float = 0.0


@dataclass
class FitRecord:
    """What the page shows of one fit."""

    fit_id: str
    #: Wall-clock time (``time.time()``) the fit started.
    started: float
    #: ``time.monotonic()`` at the start: the page's time axis starts there.
    origin: float
    #: Wall-clock time the fit ended; None while it runs.
    ended: float | None = None
    #: ``running``, ``finished`` or ``aborted``.
    outcome: str = RUNNING
    #: Why the fit was given up, if it was.
    reason: str | None = None
    #: The mean loss over all workers of each completed epoch.
    loss: Series = field(default_factory=_loss_series)
    #: Worker address -> its numbers.
    workers: dict[str, WorkerRecord] = field(default_factory=dict)
    #: Grows with every change: the page redraws only when it moved.
    version: int = 0

    def seconds(self) -> float:
        """Seconds since the fit started."""
        return time.monotonic() - self.origin

    def worker(self, address: str) -> WorkerRecord:
        """The record of ``address``, made on first use."""
        if address not in self.workers:
            self.workers[address] = WorkerRecord()
        return self.workers[address]


def mean_loss(values: Mapping[str, float]) -> float | None:
    """``loss / loss_weight`` of epoch values (sums), or None without them.

    Learners report their epoch's loss as a sum and the weight it is a sum
    over (``loss_weight``), so that both add up over workers; the plugin
    knows nothing else about losses.
    """
    loss, weight = values.get("loss"), values.get("loss_weight")
    if loss is None or weight is None or weight <= 0:
        return None
    return float(loss) / float(weight)


class FitRecords:
    """The running fits and the last ``keep_finished`` finished ones.

    Parameters
    ----------
    keep_finished : int
        Finished fits kept; older ones are forgotten.
    """

    def __init__(self, keep_finished: int = KEEP_FINISHED) -> None:
        self.running: dict[str, FitRecord] = {}
        self.finished: deque[FitRecord] = deque(maxlen=keep_finished)
        #: Set when the plugin closes: the page's documents stop updating.
        self.closed = False

    def fits(self) -> list[FitRecord]:
        """Every fit kept, running ones first, newest first."""
        running = sorted(self.running.values(), key=lambda r: -r.started)
        return running + list(reversed(self.finished))

    def get(self, fit_id: str) -> FitRecord | None:
        """The record of ``fit_id``, if it is kept."""
        if fit_id in self.running:
            return self.running[fit_id]
        return next((r for r in self.finished if r.fit_id == fit_id), None)

    def fit_started(self, fit_id: str) -> None:
        """A fit was registered."""
        self.running[fit_id] = FitRecord(fit_id, time.time(), time.monotonic())

    def fit_ended(self, fit_id: str, reason: str | None = None) -> None:
        """A fit ended (``reason``: why it was given up, if it was)."""
        record = self.running.pop(fit_id, None)
        if record is None:
            return
        record.ended = time.time()
        record.outcome = FINISHED if reason is None else ABORTED
        record.reason = reason
        record.version += 1
        self.finished.append(record)

    def epoch_reported(
        self, fit_id: str, worker: str, epoch: int, values: Mapping[str, float]
    ) -> None:
        """A worker's epoch values (sums over its rows) arrived."""
        record = self.running.get(fit_id)
        loss = mean_loss(values)
        if record is None or loss is None:
            return
        record.worker(worker).loss.append(time=record.seconds(), epoch=epoch, loss=loss)
        record.version += 1

    def epoch_completed(
        self, fit_id: str, epoch: int, totals: Mapping[str, float]
    ) -> None:
        """Every worker reported ``epoch``; ``totals`` are the sums."""
        record = self.running.get(fit_id)
        loss = mean_loss(totals)
        if record is None or loss is None:
            return
        record.loss.append(time=record.seconds(), epoch=epoch, loss=loss)
        record.version += 1

    def balanced(
        self,
        fit_id: str,
        worker: str,
        signals: Mapping[str, Any],
        decided: Mapping[str, Any],
    ) -> None:
        """A worker's balancing report (``WorkerSignals`` fields) and the
        settings it was answered (``Settings`` fields)."""
        record = self.running.get(fit_id)
        if record is None:
            return
        member = record.worker(worker)
        now = record.seconds()
        # The counters cover the worker's report period, as the worker measured
        # it; the time between two arrivals here is a stand-in for a worker
        # that does not say (it jitters with the network and the event loop).
        period = signals.get("period") or max(now - member.last_report, 1e-3)
        member.last_report = now
        lost = signals["dropped"] + signals["failed"] + signals["lost"]
        member.exchange.append(
            time=now,
            send_interval=decided["send_interval"],
            message_size=decided["message_size"],
            sent=signals["published"] / period,
            lost=lost / period,
            # Received and not overwritten unread: taken into a merge.
            accepted=max(signals["received"] - signals["lost"], 0) / period,
        )
        record.version += 1

    def close(self) -> None:
        """End every running fit and tell the page to stop updating."""
        for fit_id in list(self.running):
            self.fit_ended(fit_id, "the ASGD scheduler plugin was closed")
        self.closed = True
