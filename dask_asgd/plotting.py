"""Plot what a fit recorded: loss per epoch, send interval and message size.

Needs matplotlib (``pip install "dask-asgd[plot]"``).
"""

from __future__ import annotations

from typing import Any


def plot_history(model: Any, axes: Any = None) -> Any:
    """Plot a fitted ASGD estimator's ``history_`` and ``communication_history_``.

    Left: the loss summed over all workers per epoch (``history_["loss"]``).
    Right, when workers exchanged states: each worker's send interval (in
    samples, log scale) over time, and its message size on a second axis.

    Parameters
    ----------
    model : ASGDClassifier or ASGDRegressor
        A fitted estimator.
    axes : sequence of two matplotlib Axes, optional
        Where to draw; a new figure with two panels by default.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        The two panels.

    Examples
    --------
    >>> from dask_asgd.plotting import plot_history  # doctest: +SKIP
    >>> plot_history(ASGDClassifier().fit(X, y))      # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    axes = np.asarray(axes).ravel()
    loss_axes, control_axes = axes[0], axes[1]

    per_epoch = model.history_.groupby("epoch")["loss"].first()
    loss_axes.plot(per_epoch.index + 1, per_epoch.to_numpy(), marker="o")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("mean training loss, all workers")
    loss_axes.set_title("loss per epoch")

    control = getattr(model, "communication_history_", None)
    if control is None or len(control) == 0:
        control_axes.text(0.5, 0.5, "no exchange between workers", ha="center")
        control_axes.set_axis_off()
        return axes
    size_axes = control_axes.twinx()
    for worker, rows in control.groupby("worker"):
        line = control_axes.step(
            rows["time"], rows["send_interval"], where="post", label=str(worker)
        )[0]
        size_axes.step(
            rows["time"],
            rows["message_size"],
            where="post",
            linestyle="--",
            color=line.get_color(),
        )
    control_axes.set_yscale("log")
    control_axes.set_xlabel("seconds since the worker started")
    control_axes.set_ylabel("send interval (samples, solid)")
    size_axes.set_ylabel("message size (fraction of the state, dashed)")
    size_axes.set_ylim(0, 1.05)
    control_axes.set_title("communication settings per worker")
    control_axes.legend(fontsize="small")
    return axes
