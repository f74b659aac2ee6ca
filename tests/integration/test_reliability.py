"""What a fit does when a worker dies under it, falls silent, or another
client meddles with it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import dask
import pytest
from distributed import Client
from distributed.utils import open_port
from distributed.utils_test import poll_for, popen
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from dask_asgd._exceptions import FitAbortedError
from dask_asgd.runtime._driver import parse_task_key
from tests._cluster_checks import assert_fit_left_nothing, three_process_workers

#: Epochs of a fit long enough to lose a worker in the middle of it.
# Averaged SGD: the final model of a fit varies far less with when a worker
# was killed than the last iterate of plain SGD does.
# Long enough that the driver, which looks at the fit every half second, sees
# the loss and places the rows again before the survivors finish.
#: A fit long enough to outlast a lost worker's replacement: the survivors
#: must still be training when the replaced rows start. Measured on a 2-core
#: machine: an epoch of a worker's 40,000 rows takes about 3 ms, and a worker
#: killed after epoch 3 had its rows trained again from epoch 107-154 on
#: (noticing the loss takes most of that; placing the rows 0.03-0.05 s). At
#: 200 epochs one CI run saw the fit end first.
LONG = dict(max_iter=1000, tol=None, random_state=0, average=True)


@pytest.fixture(scope="module")
def data():
    return make_classification(
        120_000, 20, n_informative=10, class_sep=2.0, random_state=0
    )


@pytest.fixture(scope="module")
def three_processes():
    """A cluster whose workers no test kills."""
    with three_process_workers() as client:
        yield client


@pytest.fixture
def doomed_three_processes():
    """A cluster of its own for a test that kills one of its workers."""
    with three_process_workers() as client:
        yield client


def training_tasks(client):
    return client.run_on_scheduler(
        lambda dask_scheduler: [
            str(key) for key in dask_scheduler.tasks if "-train-" in str(key)
        ]
    )


def epochs_done(client):
    """Epochs the running fit has completed (the coordinator's events)."""
    events = [event for _, event in client.get_events("asgd")]
    starts = [e["fit_id"] for e in events if e.get("action") == "fit-start"]
    return sum(
        1
        for e in events
        if e.get("action") == "epoch" and starts and e["fit_id"] == starts[-1]
    )


class FitInThread:
    """A fit running in a thread of the test, as a notebook user's would."""

    def __init__(self, client, model, X, y):
        self.outcome: dict = {}

        def fit():
            try:
                with client.as_current():
                    model.fit(X, y)
            except BaseException as error:
                self.outcome["error"] = error

        self.thread = threading.Thread(target=fit)
        self.thread.start()

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        if "error" in self.outcome:
            raise self.outcome["error"]


def open_topics(dask_worker):
    plugin = dask_worker.plugins.get("asgd-exchange")
    return plugin.stats()["topics"] if plugin is not None else []


def worker_pid(client, address):
    return client.run(os.getpid, workers=[address])[address]


def kill_one_mid_fit(client, model, X, y, after_epochs=3):
    """Fit ``model``, SIGKILL one of its workers after some epochs; return it."""
    fit = FitInThread(client, model, X, y)
    poll_for(lambda: len(training_tasks(client)) == 3, timeout=60)
    poll_for(lambda: epochs_done(client) >= after_epochs, timeout=60)
    victim = sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])[0]
    os.kill(worker_pid(client, victim), signal.SIGKILL)
    fit.join()
    return victim


def assert_replaced(model, victim, reference_score, score):
    history = model.history_
    events = history[history["event"].notna()]
    lost = events[events["event"] == "worker-lost"]
    assert list(lost["worker"]) == [victim]
    replaced = events[events["event"] == "rows-replaced"]
    assert set(replaced["replaces"]) == {victim}
    assert victim not in set(replaced["worker"])
    # The survivors trained on the lost rows until the end.
    last_epoch = LONG["max_iter"] - 1
    assert history.loc[history["replaces"] == victim, "epoch"].max() == last_epoch
    assert abs(score - reference_score) <= 0.01, (score, reference_score)


@pytest.mark.timeout(300)
def test_killed_worker_the_fit_goes_on_with_the_survivors(doomed_three_processes, data):
    X, y = data
    client = doomed_three_processes
    workers = set(client.sync(client.scheduler.identity, n_workers=-1)["workers"])
    with client.as_current():
        reference = ASGDClassifier(**LONG).fit(X, y)
    model = ASGDClassifier(**LONG)
    victim = kill_one_mid_fit(client, model, X, y)
    assert_replaced(model, victim, reference.score(X, y), model.score(X, y))
    # The nanny restarts the killed worker under a new address: a worker
    # that joins during a fit is not used by it, and is no failure.
    assert set(model.history_["worker"]) <= workers
    assert_fit_left_nothing(client)


#: Epochs of a fit whose worker is killed at a moment the test chooses.
SHORT = dict(max_iter=20, tol=None, random_state=0, average=True)


def kill_at(monkeypatch, client, module, name, victim_of=None):
    """SIGKILL a worker of ``client`` when the fit first calls ``module.name``.

    The call goes on after the kill (and after Dask noticed it), so the fit
    meets a worker that is gone at exactly that point. ``victim_of`` picks
    the worker from the call's arguments; by default the first one.
    """
    original = getattr(module, name)
    killed: list[str] = []

    def killing_first(*args, **kwargs):
        if not killed:
            workers = sorted(client.scheduler_info()["workers"])
            victim = victim_of(*args, **kwargs) if victim_of is not None else workers[0]
            killed.append(victim)
            os.kill(worker_pid(client, victim), signal.SIGKILL)
            poll_for(lambda: victim not in client.scheduler_info()["workers"], 30)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, killing_first)
    return killed


def trained_on(model):
    rows = model.history_[model.history_["event"].isna()]
    return set(rows["worker"])


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "moment", ["before-placement", "before-training", "after-training"]
)
def test_a_worker_killed_at_any_moment_of_a_fit(
    doomed_three_processes, data, monkeypatch, moment
):
    """Mid-fit kills are the test above; these are the moments around it."""
    from dask_asgd.runtime import _driver, _placement

    X, y = data
    client = doomed_three_processes
    with client.as_current():
        reference = ASGDClassifier(**SHORT).fit(X, y)
    if moment == "before-placement":
        # The fit chose its workers; one dies before its rows are written.
        killed = kill_at(
            monkeypatch, client, _placement._InMemoryArrays, "write_segments"
        )
    elif moment == "before-training":
        # Rows placed everywhere; one worker dies before any task starts.
        killed = kill_at(monkeypatch, client, _driver, "worker_tasks")
    else:
        # A training task ended; its worker dies before the driver has its
        # result.
        killed = kill_at(
            monkeypatch,
            client,
            _driver.DaskTaskRunner,
            "gather",
            victim_of=lambda runner, handles: parse_task_key(str(handles[0].key))[1],
        )
    model = ASGDClassifier(**SHORT)
    with client.as_current():
        model.fit(X, y)
    [victim] = killed
    events = model.history_[model.history_["event"].notna()]
    assert list(events.loc[events["event"] == "worker-lost", "worker"]) == [victim]
    survivors = set(reference.history_["worker"]) - {victim}
    assert trained_on(model) == survivors
    if moment == "after-training":
        # Its model is lost with it; the average is the survivors'.
        assert "rows-replaced" not in set(events["event"])
    else:
        # Its rows were trained on by the survivors, from the first epoch not
        # complete when the driver saw the loss, to the end.
        replaced = events[events["event"] == "rows-replaced"]
        assert set(replaced["replaces"]) == {victim}
        assert replaced["epoch"].max() < SHORT["max_iter"] - 1
        assert model.history_.groupby("replaces")["epoch"].max()[victim] == (
            SHORT["max_iter"] - 1
        )
    assert model.n_iter_ == SHORT["max_iter"]
    assert abs(model.score(X, y) - reference.score(X, y)) <= 0.01
    assert_fit_left_nothing(client)


@pytest.mark.timeout(180)
def test_another_client_cannot_end_or_spoil_a_fit(three_processes, data):
    X, y = data
    client = three_processes
    model = ASGDClassifier(**LONG)
    fit = FitInThread(client, model, X, y)
    poll_for(lambda: len(training_tasks(client)) == 3, timeout=60)
    [key, *_] = training_tasks(client)
    fit_id, member = parse_task_key(key)
    with Client(client.scheduler.address, set_as_default=False) as other:
        ended = other.sync(other.scheduler.asgd_fit_end, fit_id=fit_id)
        forged = other.sync(
            other.scheduler.asgd_epoch_report,
            fit_id=fit_id,
            member=member,
            epoch=epochs_done(client),
            values={"nonfinite": 1.0, "loss": 0.0, "n_train": 1.0},
            token="guessed",
        )
    assert ended["status"] == forged["status"] == "refused"
    fit.join()
    assert model.n_iter_ == LONG["max_iter"] and model.score(X, y) > 0.85
    assert_fit_left_nothing(client)


@pytest.mark.timeout(180)
def test_a_frozen_worker_ends_the_fit_within_seconds(three_processes, data):
    X, y = data
    client = three_processes
    with client.as_current():
        model = ASGDClassifier(max_iter=2, tol=None, random_state=0).fit(X, y)
    coef = model.coef_.copy()
    # Far more epochs than the test waits for: the fit is stopped long before.
    model.set_params(max_iter=100_000)
    with dask.config.set({"asgd.training.liveness-timeout": "2s"}):
        fit = FitInThread(client, model, X, y)
        poll_for(lambda: len(training_tasks(client)) == 3, timeout=60)
        poll_for(lambda: epochs_done(client) >= 2, timeout=60)
        victim = parse_task_key(sorted(training_tasks(client))[0])[1]
        pid = worker_pid(client, victim)
        os.kill(pid, signal.SIGSTOP)
        try:
            # The epoch timeout is 300 s; the fit ends on the missing heartbeats.
            with pytest.raises(FitAbortedError, match="sent no heartbeat") as raised:
                fit.join(timeout=60)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert victim in str(raised.value)
    assert (model.coef_ == coef).all()
    # The thawed worker's task finds the fit over at its next barrier and
    # leaves the fit's exchange topic then.
    poll_for(lambda: not any(client.run(open_topics).values()), timeout=60)
    assert_fit_left_nothing(client)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_worker_on_a_cli_started_cluster(data):
    """A ``dask scheduler`` and three ``dask worker`` processes without nanny."""
    X, y = data
    port = open_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [sys.executable, "-m", "dask", "scheduler", "--no-dashboard"]
    scheduler += ["--host", "127.0.0.1", "--port", str(port)]
    worker = [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1"]
    worker += ["--no-dashboard", "--host", "127.0.0.1", "--no-nanny"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(popen(scheduler))
        for _ in range(3):
            stack.enter_context(popen(worker))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(3, timeout=60)
            with client.as_current():
                reference = ASGDClassifier(**LONG).fit(X, y)
            model = ASGDClassifier(**LONG)
            victim = kill_one_mid_fit(client, model, X, y)
            assert_replaced(model, victim, reference.score(X, y), model.score(X, y))
            assert_fit_left_nothing(client)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_worker_with_dask_input_its_chunks_are_recomputed(
    doomed_three_processes, data
):
    import dask.array as da

    X, y = data
    client = doomed_three_processes
    X_dask = da.from_array(X, chunks=(10_000, 20))
    y_dask = da.from_array(y, chunks=10_000)
    with client.as_current():
        reference = ASGDClassifier(**LONG).fit(X_dask, y_dask)
    model = ASGDClassifier(**LONG)
    victim = kill_one_mid_fit(client, model, X_dask, y_dask)
    # ``da.from_array`` chunks can be recomputed: no row is lost.
    assert "rows-lost" not in set(model.history_["event"].dropna())
    assert_replaced(model, victim, reference.score(X, y), model.score(X, y))
    assert_fit_left_nothing(client)
