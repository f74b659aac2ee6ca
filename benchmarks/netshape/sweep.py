"""The measurements: time to a target loss per link and mode, and the
bandwidth change in the middle of an adaptive fit.

Time to target
--------------
The target is a value of the *full training objective of the fitted model*
(mean one-vs-rest log loss over all rows + ``0.5 * alpha * ||w||^2``, see
:func:`workload.objective`): the value that ``communication="off"`` reaches
after ``target_epochs`` epochs on the first link (unshaped), relaxed by
``slack`` (relative). For a mode and link, fits with ``max_iter = 1, 2, ...``
(``tol=None``, same seed) are run until the returned model's objective is at
or below the target; the time to target is that fit's wall time, from the
call of ``fit`` to its return: placing the data, training, gathering and
averaging the worker states, as a user would wait for it.

Why not ``history_``? Its ``loss`` is the running loss of each worker's own
model during the epoch (each sample scored before its update), without the
penalty, summed over the workers' models. With ``"off"`` the workers' models
never mix and the returned model is their average, which scores differently
from any of them; so ``history_`` does not measure the model a user gets and
would compare modes unfairly. Its per-epoch seconds are reported as
"training seconds" beside the wall time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import workload

from dask_asgd import ASGDClassifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Link:
    """One link setting: tc rate (None: unshaped) and simulated latency."""

    name: str
    rate: str | None
    latency: float

    @property
    def bytes_per_second(self) -> float | None:
        if self.rate is None:
            return None
        import netns

        return netns.parse_rate(self.rate) / 8


#: Simulated one-way latency per link speed (seconds), since netem is absent:
#: a campus-WAN-like 5 ms for 10 Mbit/s, 1 ms for 100 Mbit/s, 0.2 ms for a
#: 1 Gbit/s LAN; the unshaped link gets none (veth, about 20 Gbit/s here).
DEFAULT_LATENCY = {"10mbit": 0.005, "100mbit": 0.001, "1gbit": 0.0002}


def make_link(name: str, latency: float | None = None) -> Link:
    """A :class:`Link` from ``"10mbit"``, ``"1gbit"``, ... or ``"unshaped"``."""
    if name == "unshaped":
        return Link(name, None, 0.0)
    import netns

    netns.parse_rate(name)  # validates
    return Link(
        name, name, DEFAULT_LATENCY.get(name, 0.001) if latency is None else latency
    )


@dataclass(frozen=True)
class Mode:
    """A communication setting to compare."""

    label: str
    params: dict[str, Any]


def make_modes(intervals: list[int]) -> list[Mode]:
    """``off``, ``fixed`` at each send interval, and ``adaptive``."""
    modes = [Mode("off", {"communication": "off"})]
    modes += [
        Mode(f"fixed-{i}", {"communication": "fixed", "send_interval": i})
        for i in intervals
    ]
    modes.append(Mode("adaptive", {"communication": "adaptive"}))
    return modes


@dataclass
class FitResult:
    """One fit: its settings, the model's objective and what it cost."""

    link: str
    mode: str
    max_iter: int
    objective: float = math.nan
    wall: float = math.nan
    train_seconds: float = math.nan
    failures: int = 0
    error: str = ""
    counters: dict[str, float] = field(default_factory=dict)
    final_settings: str = ""
    #: Wall time of every repeat (``wall`` is their median).
    walls: list[float] = field(default_factory=list)
    #: Median seconds from the call of ``fit`` to the first training task's
    #: start (placing the rows, submitting), and from the last training task's
    #: end to the return of ``fit`` (gathering the states, averaging).
    before_training: float = math.nan
    after_training: float = math.nan
    #: The last fit's seconds of every epoch on every worker, epoch by epoch
    #: (``history_["seconds"]``), to see where training time went.
    epoch_seconds: list[list[float]] = field(default_factory=list)


@dataclass
class TargetResult:
    """Time to target of one mode on one link."""

    link: str
    mode: str
    reached: bool
    epochs: int
    wall: float
    train_seconds: float
    objective: float
    fits: list[FitResult]


def _counters(model: ASGDClassifier) -> dict[str, float]:
    history = model.history_
    if "messages_published" not in history.columns:
        return {}
    last = history.sort_values("epoch").groupby("worker").tail(1)
    keys = [
        "messages_published",
        "messages_sent",
        "messages_failed",
        "messages_dropped",
        "messages_lost",
        "rows_accepted",
        "rows_rejected",
        "bytes_sent",
    ]
    return {k: float(last[k].sum()) for k in keys if k in last.columns}


def _training_window(
    tasks: list[dict[str, Any]], started_at: float, wall: float
) -> tuple[float, float]:
    """Seconds from ``started_at`` to the first training task's start, and
    from the last one's end to ``started_at + wall``."""
    spans = [
        (part["start"], part["stop"])
        for task in tasks
        if "-train-" in str(task.get("key", ""))
        for part in task.get("startstops", ())
        if part.get("action") == "compute"
    ]
    if not spans:
        return math.nan, math.nan
    first = min(start for start, _ in spans)
    last = max(stop for _, stop in spans)
    return first - started_at, started_at + wall - last


def _final_settings(model: ASGDClassifier) -> str:
    control = getattr(model, "communication_history_", None)
    if control is None or len(control) == 0 or "send_interval" not in control:
        return ""
    last = control.groupby("worker").tail(1)
    return ", ".join(
        f"{int(r.send_interval)}/{r.message_size:.3g}" for r in last.itertuples()
    )


class Runner:
    """Fits the data and measures; keeps every fit for the report.

    Parameters
    ----------
    X, y : training data
    log : callable
        Prints a line (to stdout and the log file).
    retries : int
        Extra attempts when a fit raises (see the report: one known failure
        of ``communication="adaptive"``).
    """

    def __init__(
        self,
        X: Any,
        y: np.ndarray,
        log: Callable[[str], None],
        retries: int = 4,
        repeats: int = 1,
    ) -> None:
        self.X = X
        self.y = y
        self.log = log
        self.retries = retries
        self.repeats = repeats
        self.fits: list[FitResult] = []

    def fit(
        self, link: Link, mode: Mode, max_iter: int, retries: int | None = None
    ) -> tuple[FitResult, ASGDClassifier | None]:
        """Fit ``mode`` with ``max_iter`` epochs ``repeats`` times; the
        result holds the median wall time and the last model's objective."""
        result = FitResult(link.name, mode.label, max_iter)
        model = None
        before, after = [], []
        for _ in range(self.repeats):
            model, timeline = self._fit_once(result, max_iter, mode, retries)
            if model is None:
                break
            before.append(timeline[0])
            after.append(timeline[1])
        if result.walls:
            result.wall = float(np.median(result.walls))
            result.before_training = float(np.median(before))
            result.after_training = float(np.median(after))
        if model is not None:
            result.objective = workload.objective(
                model.coef_, model.intercept_, self.X, self.y, model.classes_
            )
            result.train_seconds = float(
                model.history_.groupby("epoch")["seconds"].max().sum()
            )
            per_worker = model.history_.pivot_table(
                index="epoch", columns="worker", values="seconds"
            )
            result.epoch_seconds = per_worker.round(4).values.tolist()
            result.counters = _counters(model)
            result.final_settings = _final_settings(model)
        self.fits.append(result)
        return result, model

    def _fit_once(
        self, result: FitResult, max_iter: int, mode: Mode, retries: int | None
    ) -> tuple[ASGDClassifier | None, tuple[float, float]]:
        """One fit, retried if it raises; its wall time goes to ``result``.

        Returns the model (None if every attempt failed) and the seconds
        before its first training task started and after its last one ended,
        from Dask's task stream.
        """
        from distributed import get_task_stream

        for attempt in range(1 + (self.retries if retries is None else retries)):
            model = ASGDClassifier(
                max_iter=max_iter, **workload.estimator_params(), **mode.params
            )
            started_at = time.time()
            started = time.perf_counter()
            try:
                with get_task_stream() as stream:
                    model.fit(self.X, self.y)
            except Exception as e:
                result.failures += 1
                result.error = f"{type(e).__name__}: {e}"
                self.log(f"    fit failed (attempt {attempt + 1}): {result.error}")
                logger.debug("fit failed", exc_info=True)
                continue
            wall = time.perf_counter() - started
            result.walls.append(wall)
            return model, _training_window(stream.data, started_at, wall)
        return None, (math.nan, math.nan)

    def time_to_target(
        self, link: Link, mode: Mode, target: float, max_epochs: int, cap: float
    ) -> TargetResult:
        """Fit with 1, 2, ... epochs until the objective reaches ``target``.

        Stops without reaching it after ``max_epochs`` epochs, or once a fit
        took longer than ``cap`` seconds (its wall time is then a lower bound
        of the time to target).
        """
        fits: list[FitResult] = []
        for epochs in range(1, max_epochs + 1):
            result, _ = self.fit(link, mode, epochs)
            fits.append(result)
            extra = ""
            if result.counters:
                c = result.counters
                extra = (
                    f" msgs sent {c.get('messages_sent', 0):.0f}"
                    f"/{c.get('messages_published', 0):.0f}"
                    f" failed {c.get('messages_failed', 0):.0f}"
                    f" MB {c.get('bytes_sent', 0) / 1e6:.0f}"
                )
            if result.final_settings:
                extra += f" settings {result.final_settings}"
            if len(result.walls) > 1:
                extra += " walls " + "/".join(f"{w:.2f}" for w in result.walls)
            extra += (
                f" before/after training {result.before_training:.2f}"
                f"/{result.after_training:.2f}s"
            )
            self.log(
                f"  {link.name:>9} {mode.label:>13} epochs={epochs} "
                f"objective={result.objective:.5f} wall={result.wall:.2f}s "
                f"train={result.train_seconds:.2f}s{extra}"
            )
            if result.objective <= target:
                return TargetResult(
                    link.name,
                    mode.label,
                    True,
                    epochs,
                    result.wall,
                    result.train_seconds,
                    result.objective,
                    fits,
                )
            if not result.wall <= cap:  # also stops on NaN (every attempt failed)
                break
        last = fits[-1]
        return TargetResult(
            link.name,
            mode.label,
            False,
            len(fits),
            last.wall,
            last.train_seconds,
            last.objective,
            fits,
        )


# ---------------------------------------------------------------------------
# The bandwidth change in the middle of a fit


def _endpoint_open(dask_worker: Any) -> float | None:
    """On a worker: its perf_counter if a training task has joined a topic."""
    plugin = dask_worker.plugins.get("asgd-exchange")
    if plugin is None or not getattr(plugin, "_active", None):
        return None
    return time.perf_counter()


def _set_simulated_bandwidth(dask_worker: Any, bandwidth: float | None) -> bool:
    """On a worker: change the link simulator's rate of the running plugin.

    The simulator has no public knob to change at run time; its token bucket
    reads ``bandwidth`` at every send, so setting the attribute takes effect
    at once. Needs a simulator (start the workers with a bandwidth).
    """
    plugin = dask_worker.plugins.get("asgd-exchange")
    shaper = getattr(plugin, "shaper", None)
    if shaper is None:
        return False
    shaper.bandwidth = bandwidth
    return True


@dataclass
class ChangeRun:
    """What the bandwidth-change run measured."""

    control: pd.DataFrame
    history: pd.DataFrame
    #: Seconds after each worker's start (its communicator's clock) at
    #: which the link changed.
    change_at: dict[str, float]
    wall: float
    objective: float
    change_from: str
    change_to: str
    #: Errors of failed attempts before the fit that is shown.
    failures: list[str] = field(default_factory=list)


def run_change(
    client: Any,
    runner: Runner,
    link_to: Link,
    change_after: float,
    max_iter: int,
    apply_change: Callable[[], None],
    reset: Callable[[], None],
    log: Callable[[str], None],
    attempts: int = 3,
) -> ChangeRun:
    """Fit adaptively; ``change_after`` s into training call ``apply_change``.

    A background thread polls the workers (every 50 ms) until their training
    tasks have joined the exchange, which is when their communicators start
    their clocks (``communication_history_["time"]`` is measured from there),
    waits ``change_after`` seconds and applies the change. CLOCK_MONOTONIC
    (``time.perf_counter``) is system-wide, also across network namespaces,
    so the change's time on each worker's clock is exact up to the polling.
    If the fit fails, the link is ``reset`` to unshaped and the fit retried
    with a fresh change thread.
    """
    mode = Mode("adaptive", {"communication": "adaptive"})
    failures: list[str] = []
    for attempt in range(attempts):
        reset()
        started: dict[str, float] = {}
        change_at: dict[str, float] = {}
        stop = threading.Event()
        errors: list[str] = []

        def changer(
            stop: threading.Event,
            started: dict[str, float],
            change_at: dict[str, float],
            errors: list[str],
        ) -> None:
            try:
                while not stop.is_set():
                    seen = client.run(_endpoint_open)
                    for address, value in seen.items():
                        if value is not None:
                            started.setdefault(address, value)
                    if seen and len(started) == len(seen):
                        break
                    time.sleep(0.05)
                else:
                    return
                wake = min(started.values()) + change_after
                while not stop.is_set() and time.perf_counter() < wake:
                    time.sleep(0.01)
                if stop.is_set():
                    return
                moment = time.perf_counter()
                apply_change()
                log(
                    f"  bandwidth changed to {link_to.name} "
                    f"(took {time.perf_counter() - moment:.3f} s)"
                )
                for address, t0 in started.items():
                    change_at[address] = moment - t0
            except Exception:
                errors.append(traceback.format_exc())

        thread = threading.Thread(
            target=changer,
            args=(stop, started, change_at, errors),
            name="bandwidth-change",
            daemon=True,
        )
        thread.start()
        try:
            result, model = runner.fit(
                Link("change", None, 0.0), mode, max_iter, retries=0
            )
        finally:
            stop.set()
            thread.join(30)
        if errors:
            raise RuntimeError("the bandwidth change failed:\n" + errors[0])
        if model is not None:
            break
        failures.append(result.error)
        log(f"  change run attempt {attempt + 1} failed; retrying from unshaped")
    else:
        raise RuntimeError(f"the adaptive fit failed {attempts} times: {failures}")
    if not change_at:
        log("  warning: the fit ended before the bandwidth change")
    run = ChangeRun(
        model.communication_history_.copy(),
        model.history_.copy(),
        change_at,
        result.wall,
        result.objective,
        "unshaped",
        link_to.name,
    )
    run.failures = failures
    return run


def to_json(obj: Any) -> Any:
    """JSON-able form of the dataclasses above."""
    if dataclasses.is_dataclass(obj):
        return {k: to_json(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def dump(path: Any, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(to_json(obj), f, indent=1)
