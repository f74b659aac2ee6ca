"""What a fit records and shows: history tables, live progress, plots, events."""

from __future__ import annotations

import logging

import matplotlib
import numpy as np
import pytest
from distributed import Client, LocalCluster
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from dask_asgd.plotting import plot_history

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def data():
    return make_classification(20_000, 20, n_informative=10, random_state=0)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_verbose_logs_every_epoch_while_fitting(data):
    # A handler of our own: starting the embedded cluster reconfigures
    # logging in ways that detach pytest's caplog handler.
    X, y = data
    logger = logging.getLogger("dask_asgd")
    collect, level = _Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        ASGDClassifier(verbose=1, max_iter=4, tol=None, random_state=0).fit(X, y)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    epochs = [m for m in collect.messages if "-- Epoch" in m]
    assert [line.split(":")[0] for line in epochs] == [
        f"-- Epoch {e}" for e in range(1, 5)
    ]


def test_history_and_events(data):
    X, y = data
    scheduler_log = logging.getLogger("distributed.scheduler")
    collect, level = _Collect(), scheduler_log.level
    scheduler_log.addHandler(collect)
    scheduler_log.setLevel(logging.INFO)
    try:
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=False,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            model = ASGDClassifier(max_iter=3, tol=None, random_state=0).fit(X, y)
            events = [event for _, event in client.get_events("asgd")]
            prefixes = client.run_on_scheduler(
                lambda dask_scheduler: sorted(dask_scheduler.task_prefixes)
            )
    finally:
        scheduler_log.removeHandler(collect)
        scheduler_log.setLevel(level)
    history = model.history_
    assert sorted(history["epoch"].unique()) == [0, 1, 2]
    assert history["worker"].nunique() == 2
    for column in (
        "loss",
        "local_loss",
        "seconds",
        "barrier_wait",
        "elapsed",
        "messages_sent",
        "rows_accepted",
    ):
        assert column in history
    assert (history["barrier_wait"] >= 0).all()
    for _, rows in history.groupby("worker"):
        assert rows["elapsed"].is_monotonic_increasing
    control = model.communication_history_
    assert set(control["worker"]) == set(history["worker"])
    assert {"time", "send_interval", "message_size", "reason"} <= set(control)
    actions = [event["action"] for event in events]
    assert actions[0] == "fit-start" and actions[-1] == "fit-end"
    assert {event["fit_id"] for event in events} == {model.fit_id_}
    assert set(history["fit_id"]) == {model.fit_id_}
    epochs = [event for event in events if event["action"] == "epoch"]
    assert [event["epoch"] for event in epochs] == [0, 1, 2]
    # The events carry means: the loss per sample that history_ records.
    per_epoch = history.groupby("epoch")["loss"].first()
    assert [e["loss"] for e in epochs] == pytest.approx(list(per_epoch))
    assert all(e["samples"] == len(y) for e in epochs)
    # Readable task names, grouped by Dask under one prefix per estimator.
    assert model.fit_id_.startswith("ASGDClassifier-")
    assert "ASGDClassifier-train" in prefixes
    # A fit that succeeded cancels nothing.
    assert not [m for m in collect.messages if "cancels key" in m]


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        return ASGDClassifier(
            max_iter=7, tol=None, random_state=0, communication="fixed"
        ).fit(X, y)


def test_plot_history_draws_the_loss_per_epoch_and_over_time(fitted):
    epoch_axes, time_axes, _ = plot_history(fitted)
    history = fitted.history_
    losses = history.groupby("epoch")["loss"].first().to_numpy()
    [line] = epoch_axes.lines
    assert list(line.get_xdata()) == list(range(1, 8))
    np.testing.assert_allclose(line.get_ydata(), losses)
    epoch_axes.figure.canvas.draw()
    ticks = [t for t in epoch_axes.get_xticks() if 1 <= t <= 7]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert epoch_axes.get_ylabel() == "mean training loss (hinge), all workers"
    [over_time] = time_axes.lines
    np.testing.assert_allclose(
        over_time.get_xdata(), history.groupby("epoch")["elapsed"].max()
    )
    np.testing.assert_allclose(over_time.get_ydata(), losses)
    assert time_axes.get_xlabel() == "seconds since the fit started"


def test_the_communication_panel_runs_to_the_end_of_each_workers_training(fitted):
    _, _, control_axes = plot_history(fitted)
    ends = fitted.history_.groupby("worker")["elapsed"].max()
    assert len(control_axes.lines) == 2  # one send-interval line per worker
    for line in control_axes.lines:
        assert line.get_xdata()[-1] == pytest.approx(ends[line.get_label()])
    figure = control_axes.figure
    figure.canvas.draw()
    legend = control_axes.get_legend()
    box = legend.get_window_extent()
    # The legend lies outside every panel: it covers no line.
    for axes in figure.axes:
        assert not box.overlaps(axes.get_window_extent())
    assert {t.get_text() for t in legend.get_texts()} == set(ends.index)


def test_plot_history_names_the_kmeans_loss_inertia(data):
    from dask_asgd import ASGDKMeans

    model = ASGDKMeans(3, max_iter=3, tol=0.0, random_state=0).fit(data[0])
    epoch_axes, time_axes, _ = plot_history(model)
    assert epoch_axes.get_ylabel().startswith("inertia")
    assert time_axes.get_ylabel().startswith("inertia")
    assert "training loss" not in epoch_axes.get_ylabel()


def test_plot_history_runs_over_partial_fit_calls_and_without_exchange(data):
    X, y = data
    model = ASGDClassifier(random_state=0, communication="off")
    for _ in range(3):
        model.partial_fit(X, y, classes=[0, 1])
    epoch_axes, time_axes, empty = plot_history(model)
    assert list(epoch_axes.lines[0].get_xdata()) == [1, 2, 3]
    assert np.all(np.diff(time_axes.lines[0].get_xdata()) > 0)
    assert not empty.axison


@pytest.mark.parametrize("kind", ["classifier", "kmeans"])
def test_partial_fit_calls_append_to_the_history(kind):
    from sklearn.datasets import make_classification

    from dask_asgd import ASGDClassifier, ASGDKMeans

    X, y = make_classification(3000, 5, random_state=0)
    if kind == "classifier":
        model = ASGDClassifier(random_state=0)
        calls = [lambda: model.partial_fit(X, y, classes=[0, 1])] * 3
    else:
        model = ASGDKMeans(3, random_state=0, batch_size=256)
        calls = [lambda: model.partial_fit(X)] * 3
    for call in calls:
        call()
    assert sorted(model.history_["call"].unique()) == [0, 1, 2]
    rows_per_call = model.history_.groupby("call").size()
    assert (rows_per_call == rows_per_call.iloc[0]).all()
    assert set(model.communication_history_["call"]) <= {0, 1, 2}
    # A fit starts afresh.
    if kind == "classifier":
        model.fit(X, y)
    else:
        model.fit(X)
    assert list(model.history_["call"].unique()) == [0]


def test_verbose_prints_every_epoch_on_stdout_as_scikit_learn_does(data, capsys):
    X, y = data
    ASGDClassifier(verbose=1, max_iter=3, tol=None, random_state=0).fit(X, y)
    printed = [line for line in capsys.readouterr().out.splitlines() if "Epoch" in line]
    assert [line.split(":")[0] for line in printed] == [
        f"-- Epoch {e}" for e in range(1, 4)
    ]


def _open_bars() -> int:
    from tqdm import tqdm

    return len(getattr(tqdm, "_instances", ()))


def test_verbose_shows_a_progress_bar_with_the_loss_and_message_rate(data, capsys):
    X, y = data
    model = ASGDClassifier(verbose=1, max_iter=3, tol=None, random_state=0)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        model.fit(X, y)
    captured = capsys.readouterr()
    # The bar (tqdm writes it on stderr), left complete, with the epoch, the
    # mean loss of the last epoch and the messages per second.
    final = captured.err.replace("\r", "\n").splitlines()[-1]
    assert final.startswith("ASGDClassifier: 100%")
    assert "3/3" in final
    last_loss = model.history_.groupby("epoch")["loss"].first().iloc[-1]
    assert f"loss={last_loss:.4g}" in final
    assert "msg/s=" in final
    # ... and the epoch lines on stdout, as without the bar.
    lines = [line for line in captured.out.splitlines() if "-- Epoch" in line]
    assert len(lines) == 3
    assert _open_bars() == 0


def test_the_bar_can_be_switched_off_and_a_single_pass_has_none(
    data, capsys, monkeypatch
):
    X, y = data
    monkeypatch.setenv("TQDM_DISABLE", "1")
    ASGDClassifier(verbose=1, max_iter=2, tol=None, random_state=0).fit(X, y)
    captured = capsys.readouterr()
    assert "ASGDClassifier" not in captured.err
    assert len([ln for ln in captured.out.splitlines() if "-- Epoch" in ln]) == 2
    monkeypatch.delenv("TQDM_DISABLE")
    ASGDClassifier(verbose=1, random_state=0).partial_fit(X, y, classes=[0, 1])
    assert "ASGDClassifier" not in capsys.readouterr().err


def test_the_bar_closes_when_the_fit_is_interrupted(data, capsys, monkeypatch):
    from dask_asgd.estimators._progress import EpochProgress

    report = EpochProgress.__call__

    def interrupted(self, epoch):
        report(self, epoch)
        if epoch["epoch"] == 1:
            raise KeyboardInterrupt  # as Ctrl-C in the driver would

    monkeypatch.setattr(EpochProgress, "__call__", interrupted)
    X, y = data
    model = ASGDClassifier(verbose=1, max_iter=50, tol=None, random_state=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    assert _open_bars() == 0
    assert not hasattr(model, "history_")
    final = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert final.startswith("ASGDClassifier:") and "/50" in final
