"""What a ``verbose`` fit shows while it runs: epoch lines and a progress bar.

Everything here runs on the driver, from the epochs the coordinator reports
(nothing is printed from the worker threads). With ``verbose >= 1`` each
epoch prints scikit-learn's line on stdout, and a fit of more than one epoch
also shows a live bar (``tqdm.auto``: a widget in Jupyter, text in a
terminal) with the epoch, the mean loss and the messages per second the
workers send. ``TQDM_DISABLE=1`` in the environment turns the bar off and
keeps the lines.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)


class EpochProgress:
    """Reports a fit's epochs on the driver; a context manager.

    Parameters
    ----------
    label : str
        What trains (the estimator's name), the bar's description.
    max_iter : int
        Epochs at most: the bar's total.
    loss_name, rows_name : str
        Words of the epoch line: what the mean loss and the rows are.
    bar : bool
        Show the bar (the lines are always printed).
    """

    def __init__(
        self, label: str, max_iter: int, loss_name: str, rows_name: str, bar: bool
    ) -> None:
        self.label = label
        self.max_iter = max_iter
        self.loss_name = loss_name
        self.rows_name = rows_name
        self.show_bar = bar
        self.bar: Any = None
        self._last: tuple[float, float] | None = None

    def __enter__(self) -> EpochProgress:
        if self.show_bar:
            tqdm = _auto_tqdm()

            # tqdm reads TQDM_DISABLE once, when it is imported; a user who
            # sets it later in the session expects it to hold too.
            off = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
            self.bar = tqdm(
                total=self.max_iter, desc=self.label, unit="epoch", disable=off
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Also on an error or KeyboardInterrupt: a bar left open would be
        # redrawn over whatever the user's session prints next.
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, epoch: dict[str, Any]) -> None:
        """Report one completed epoch (see ``FitSupervisor.report_epoch``)."""
        line = (
            f"-- Epoch {epoch['epoch'] + 1}: {self.loss_name} "
            f"{epoch['loss']:.6f} over {epoch['samples']} {self.rows_name}"
        )
        logger.info(line)
        if self.bar is None or self.bar.disable:
            print(line, flush=True)
            return
        # tqdm's write clears the bar, prints the line and draws the bar again.
        self.bar.write(line, file=sys.stdout)
        postfix = {"loss": f"{epoch['loss']:.4g}"}
        rate = self._message_rate(epoch)
        if rate is not None:
            postfix["msg/s"] = f"{rate:.3g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(epoch["epoch"] + 1 - self.bar.n)

    def _message_rate(self, epoch: dict[str, Any]) -> float | None:
        """Messages per second all workers sent since the last epoch."""
        sent = epoch["totals"].get("messages_sent")
        if sent is None:
            return None
        last, self._last = self._last, (float(sent), float(epoch["elapsed"]))
        if last is None:
            return sent / epoch["elapsed"] if epoch["elapsed"] > 0 else None
        seconds = epoch["elapsed"] - last[1]
        # A lost worker takes its count with it: never a negative rate.
        return max(sent - last[0], 0.0) / seconds if seconds > 0 else None


def _auto_tqdm() -> Any:
    """``tqdm.auto``'s bar class: the widget in Jupyter, text elsewhere.

    Without ipywidgets, ``tqdm.auto`` falls back to the text bar (which a
    notebook shows well) with a warning on import; the user guide says how
    to get the widget, so the warning would be noise on a user's first fit.
    """
    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    return tqdm
