"""What a fit records and shows: history tables, live progress, plots, events."""

from __future__ import annotations

import logging

import matplotlib
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
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        model = ASGDClassifier(max_iter=3, tol=None, random_state=0).fit(X, y)
        events = [event for _, event in client.get_events("asgd")]
    history = model.history_
    assert sorted(history["epoch"].unique()) == [0, 1, 2]
    assert history["worker"].nunique() == 2
    for column in ("loss", "local_loss", "seconds", "messages_sent", "rows_accepted"):
        assert column in history
    control = model.communication_history_
    assert set(control["worker"]) == set(history["worker"])
    assert {"time", "send_interval", "message_size", "reason"} <= set(control)
    actions = [event["action"] for event in events]
    assert actions[0] == "fit-start" and actions[-1] == "fit-end"
    assert actions.count("epoch") == 3


def test_plot_history(data):
    X, y = data
    model = ASGDClassifier(max_iter=3, tol=None, random_state=0).fit(X, y)
    loss_axes, control_axes = plot_history(model)
    assert len(loss_axes.lines) == 1
    assert list(loss_axes.lines[0].get_xdata()) == [1, 2, 3]
    assert len(control_axes.lines) == 2  # one send-interval line per worker
    off = ASGDClassifier(max_iter=2, tol=None, communication="off").fit(X, y)
    _, empty = plot_history(off)
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
