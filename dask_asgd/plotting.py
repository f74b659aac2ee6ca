"""Plot what a fit recorded: the loss per epoch and over time, and each
worker's send interval and message size.

Needs matplotlib (``pip install "dask-asgd[plot]"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def plot_history(model: Any, axes: Any = None) -> Any:
    """Plot a fitted ASGD estimator's ``history_`` and ``communication_history_``.

    Three panels:

    1. the loss over all workers per epoch (``history_["loss"]``: for a
       linear model the mean training loss per sample, for K-Means the
       inertia per unit of sample weight), at whole-number epochs;
    2. the same loss against the seconds since the fit started
       (``history_["elapsed"]``), to compare fits that differ in speed;
    3. when workers exchanged states, each worker's send interval (in
       samples, log scale, solid) and message size (dashed, right axis) from
       its start to the end of its training.

    After several ``partial_fit`` calls the loss panels run over all of
    them (epochs and training seconds counted on from call to call) and the
    communication panel shows the last call.

    Parameters
    ----------
    model : ASGDClassifier, ASGDRegressor or ASGDKMeans
        A fitted estimator.
    axes : sequence of three matplotlib Axes, optional
        Where to draw; a new figure with three panels by default.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        The three panels.

    Examples
    --------
    >>> from dask_asgd.plotting import plot_history  # doctest: +SKIP
    >>> plot_history(ASGDClassifier().fit(X, y))      # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    axes = np.asarray(axes).ravel()
    epoch_axes, time_axes, control_axes = axes[0], axes[1], axes[2]

    per_epoch = _epoch_losses(model.history_)
    label = _loss_label(model)
    epoch_axes.plot(per_epoch["epoch"], per_epoch["loss"], marker="o")
    epoch_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    epoch_axes.set_xlabel("epoch")
    epoch_axes.set_ylabel(label)
    epoch_axes.set_title("loss per epoch")
    time_axes.plot(per_epoch["elapsed"], per_epoch["loss"], marker="o")
    time_axes.set_xlabel("seconds since the fit started")
    time_axes.set_ylabel(label)
    time_axes.set_title("loss over time")

    control = _last_call(getattr(model, "communication_history_", None))
    if control is None or len(control) == 0:
        control_axes.text(0.5, 0.5, "no exchange between workers", ha="center")
        control_axes.set_axis_off()
        return axes
    _plot_communication(control_axes, control, _last_call(model.history_))
    return axes


def _loss_label(model: Any) -> str:
    """The loss panels' axis label, in the model's words."""
    if hasattr(model, "cluster_centers_"):
        return "inertia per sample (mean squared distance)"
    return f"mean training loss ({model.loss}), all workers"


def _epoch_losses(history: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch of every call: ``epoch`` (from 1), ``loss`` and
    ``elapsed`` (seconds of training since the first call started)."""
    history = history[history["loss"].notna()]
    if "call" not in history:
        history = history.assign(call=0)
    if "elapsed" not in history:
        history = history.assign(elapsed=np.nan)
    rows = (
        history.groupby(["call", "epoch"], sort=True)
        .agg(loss=("loss", "first"), elapsed=("elapsed", "max"))
        .reset_index()
    )
    # A call's clock starts at 0: count on from where the calls before ended.
    ends = rows.groupby("call")["elapsed"].max().fillna(0.0)
    offsets = ends.cumsum().shift(fill_value=0.0)
    rows["elapsed"] = rows["elapsed"] + rows["call"].map(offsets)
    rows["epoch"] = np.arange(1, len(rows) + 1)
    return rows[["epoch", "loss", "elapsed"]]


def _last_call(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The rows of the last ``partial_fit`` call (all rows after ``fit``)."""
    if frame is None or "call" not in frame or len(frame) == 0:
        return frame
    return frame[frame["call"] == frame["call"].max()]


def _plot_communication(
    control_axes: Any, control: pd.DataFrame, history: pd.DataFrame
) -> None:
    """Each worker's settings as steps, held until its training ended."""
    size_axes = control_axes.twinx()
    ends = (
        history.groupby("worker")["elapsed"].max()
        if "elapsed" in history
        else pd.Series(dtype=float)
    )
    for worker, rows in control.groupby("worker"):
        times = rows["time"].to_numpy(dtype=float)
        intervals = rows["send_interval"].to_numpy(dtype=float)
        sizes = rows["message_size"].to_numpy(dtype=float)
        end = ends.get(worker, np.nan)
        # The last change holds until the worker stopped training.
        if np.isfinite(end) and end > times[-1]:
            times = np.append(times, end)
            intervals = np.append(intervals, intervals[-1])
            sizes = np.append(sizes, sizes[-1])
        line = control_axes.step(times, intervals, where="post", label=str(worker))
        size_axes.step(
            times, sizes, where="post", linestyle="--", color=line[0].get_color()
        )
    control_axes.set_yscale("log")
    control_axes.set_xlabel("seconds since the worker started")
    control_axes.set_ylabel("send interval (samples, solid)")
    size_axes.set_ylabel("message size (fraction of the state, dashed)")
    size_axes.set_ylim(0, 1.05)
    control_axes.set_title("communication settings per worker")
    # Below the panel, outside it: a legend inside would hide the lines.
    control_axes.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        ncols=min(3, control["worker"].nunique()),
        fontsize="small",
        frameon=False,
    )
