"""The driver, with its workers run as threads of the test process."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import numpy as np
import pytest

from dask_asgd import _config
from dask_asgd._exceptions import FitAbortedError, WorkerLostError
from dask_asgd.learners import LinearState, Partition
from dask_asgd.runtime import WorkerResult, policy_limits, run_fit
from dask_asgd.runtime._driver import combine, parse_task_key, task_key
from dask_asgd.runtime._supervisor import FitSupervisor, Member

from ._fakes import FakePlacement, ListReplacer, ThreadedCluster, task_for
from .test_worker_loop import linear_learner

LIMITS = policy_limits(_config.load().balancing)


@pytest.fixture(scope="module")
def placement_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.where(X @ rng.normal(size=5) > 0, 1.0, -1.0)
    ones = np.ones(300)
    return {
        "worker-a": [Partition(X[:200], y[:200], ones[:200])],
        "worker-b": [Partition(X[200:], y[200:], ones[200:])],
    }


def placement_of(partitions):
    return FakePlacement(
        partitions=partitions,
        n_train={
            a: sum(p.X.shape[0] for p in parts) for a, parts in partitions.items()
        },
    )


def test_two_workers_train_and_their_states_are_averaged(placement_rows):
    cluster = ThreadedCluster()
    placement = placement_of(placement_rows)
    progress = []
    learner = linear_learner(batch_size=1, t_start=101.0)
    outcome = run_fit(
        placement,
        task_for(learner, max_iter=3),
        cluster,
        cluster,
        np.random.default_rng(0),
        LIMITS,
        progress=progress.append,
        poll_period=0.01,
    )
    [(fit_id, members, limits)] = cluster.started
    assert members == {"worker-a": "worker-a", "worker-b": "worker-b"}
    assert limits is LIMITS
    # Ended once, everything released.
    assert cluster.ended == [fit_id]
    assert placement.released and len(cluster.released) == 2
    assert outcome.n_iter == 3
    assert outcome.n_samples_trained == 3 * 300
    assert sorted(outcome.history["worker"].unique()) == sorted(members)
    # Every epoch's sums reached the driver while the fit ran.
    assert [summary["epoch"] for summary in progress] == [0, 1, 2]
    assert progress[0]["totals"]["n_train"] == 300
    assert outcome.fit_id == fit_id and fit_id.startswith("asgd-")
    assert {"barrier_wait", "elapsed"} <= set(outcome.history)


def test_every_epoch_is_published_with_the_fit_id_and_its_means(placement_rows):
    cluster = ThreadedCluster()
    progress = []
    outcome = run_fit(
        placement_of(placement_rows),
        task_for(linear_learner(batch_size=1), max_iter=3),
        cluster,
        cluster,
        np.random.default_rng(0),
        LIMITS,
        progress=progress.append,
        poll_period=0.01,
        label="ASGDRegressor",
        epoch_means=lambda totals: {"loss": totals["loss"] / totals["n_train"]},
    )
    assert outcome.fit_id.startswith("ASGDRegressor-")
    epochs = [event for event in cluster.events if event["action"] == "epoch"]
    assert [event["epoch"] for event in epochs] == [0, 1, 2]
    for event, seen in zip(epochs, progress, strict=True):
        assert event["fit_id"] == outcome.fit_id
        assert event["samples"] == 300
        # The mean, not the sum, of the loss over the epoch's samples.
        assert event["loss"] == seen["totals"]["loss"] / 300
        assert event["loss"] == seen["loss"]
    assert [e["elapsed"] for e in epochs] == sorted(e["elapsed"] for e in epochs)


def test_task_keys_name_the_estimator_and_group_on_the_dashboard():
    from dask.utils import key_split

    key = task_key("ASGDClassifier-3f2a9c1b7d4e", "tcp://127.0.0.1:4321")
    assert key == "ASGDClassifier-train-3f2a9c1b7d4e-tcp://127.0.0.1:4321"
    assert key_split(key) == "ASGDClassifier-train"
    fit_id, member = parse_task_key(key)
    assert (fit_id, member) == ("ASGDClassifier-3f2a9c1b7d4e", "tcp://127.0.0.1:4321")


def test_workers_get_their_share_of_the_schedule_and_own_seeds(placement_rows):
    from dask_asgd.runtime._driver import worker_tasks

    placement = placement_of(placement_rows)
    template = task_for(linear_learner(batch_size=1, t_start=301.0))
    tasks = worker_tasks(template, placement, "fit-x", np.random.default_rng(0))
    assert list(tasks) == ["worker-a", "worker-b"]
    assert tasks["worker-a"].learner.t_start == pytest.approx(201.0)
    assert tasks["worker-b"].learner.t_start == pytest.approx(101.0)
    assert tasks["worker-a"].seed != tasks["worker-b"].seed
    assert all(t.peers == ("worker-a", "worker-b") for t in tasks.values())
    assert all(t.fit_id == "fit-x" for t in tasks.values())
    assert [t.member for t in tasks.values()] == ["worker-a", "worker-b"]


def test_a_worker_without_training_rows_does_not_train(placement_rows):
    from dask_asgd.runtime._driver import worker_tasks

    placement = placement_of(placement_rows)
    placement.n_train["worker-b"] = 0
    tasks = worker_tasks(
        task_for(linear_learner(batch_size=1)), placement, "f", np.random.default_rng(0)
    )
    assert list(tasks) == ["worker-a"]


def result(state, failure=None, n_samples=10):
    return WorkerResult(
        state=state,
        n_samples_trained=n_samples,
        n_iter=1,
        failure=failure,
        history=[{"epoch": 2}],
    )


def members(*workers):
    return [Member(worker, worker, None, 10) for worker in workers]


def test_a_diverged_worker_fails_the_fit_naming_it_and_the_cause():
    state = LinearState.zeros(1, 2, np.float64)
    learner = linear_learner(batch_size=1)
    # Its own rows: scikit-learn's words, and which worker.
    with pytest.raises(ValueError, match=r"epoch #3 \(on worker b, in its own steps"):
        combine(
            "f", members("a", "b"), [result(state), result(state, "nonfinite")], learner
        )
    # A peer's state: never blamed on the input.
    with pytest.raises(
        FitAbortedError, match="worker b became non-finite when it merged"
    ) as raised:
        combine(
            "f",
            members("a", "b"),
            [result(state), result(state, "nonfinite-from-peer")],
            learner,
        )
    assert "Scaling input" not in str(raised.value)
    lost = {"kind": "worker-lost", "reason": "left", "worker": "tcp://gone:1"}
    with pytest.raises(WorkerLostError, match="tcp://gone:1"):
        combine("f", members("a"), [result(state, "the fit ended")], learner, lost)
    with pytest.raises(FitAbortedError, match="epoch 3"):
        combine("f", members("a"), [result(state, "epoch 3: timeout")], learner)


class FailingCluster(ThreadedCluster):
    """Its tasks fail as those of a worker that left the cluster."""

    def gather(self, handles):
        raise RuntimeError("the task's worker died")


def test_a_lost_worker_ends_the_fit_once_and_releases_everything(placement_rows):
    cluster = FailingCluster(end_reason="worker-lost:worker-b")
    placement = placement_of(placement_rows)
    with pytest.raises(WorkerLostError, match="worker b") as raised:
        run_fit(
            placement,
            task_for(linear_learner(batch_size=1)),
            cluster,
            cluster,
            np.random.default_rng(0),
            LIMITS,
        )
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert len(cluster.ended) == 1
    # The driver waited for the members still training before returning.
    assert cluster.waited >= 1
    assert placement.released and len(cluster.released) == 2


@pytest.fixture(scope="module")
def three_blocks():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 5))
    y = np.where(X @ rng.normal(size=5) > 0, 1.0, -1.0)
    ones = np.ones(600)
    return {
        f"worker-{name}": [Partition(X[i : i + 200], y[i : i + 200], ones[i : i + 200])]
        for name, i in zip("abc", (0, 200, 400), strict=True)
    }


def fit_losing(cluster, blocks, lose, at_epoch, replacer, max_iter=12, **task):
    """run_fit, losing worker ``lose`` when it reports ``at_epoch``."""
    for worker in [lose] if isinstance(lose, str) else lose:
        cluster.on_report[worker, at_epoch] = lambda w=worker: cluster.lose(w)
    if replacer is not None and lose == "worker-c":
        # A survivor waits for the replacement before its epoch 4: its epochs
        # take microseconds here, the driver's look a hundredth of a second.
        cluster.on_report["worker-a", 4] = lambda: cluster.joined_any.wait(10)
    return run_fit(
        placement_of(blocks),
        task_for(linear_learner(batch_size=1), max_iter=max_iter, **task),
        cluster,
        cluster,
        np.random.default_rng(0),
        LIMITS,
        poll_period=0.01,
        replacer=replacer,
    )


def test_a_lost_worker_is_replaced_and_the_fit_finishes(three_blocks):
    cluster = ThreadedCluster()
    replacer = ListReplacer(three_blocks)
    outcome = fit_losing(cluster, three_blocks, "worker-c", 1, replacer)
    # The coordinator was told the survivors may go on without the lost one.
    assert replacer.calls == [("worker-c", ["worker-c"], ["worker-a", "worker-b"])]
    [(_, host, first)] = cluster.joined
    assert host == "worker-a" and first >= 1
    history = outcome.history
    events = history[history["event"].notna()].set_index("event")
    assert events.loc["worker-lost", "worker"] == "worker-c"
    assert events.loc["worker-lost", "samples"] == 200
    assert events.loc["rows-replaced", "replaces"] == "worker-c"
    assert events.loc["rows-replaced", "epoch"] == first
    assert events.loc["rows-replaced", "seconds"] >= 0
    # The replacement trained from its first epoch to the end...
    replacement = history[(history["replaces"] == "worker-c") & history["event"].isna()]
    assert list(replacement["epoch"]) == list(range(first, 12))
    assert outcome.n_iter == 12
    # ... and every barrier summed the rows of the members it waited for:
    # without the lost worker's rows until the replacement joined.
    rows_per_epoch = [c["totals"]["n_train"] for c in cluster.completed]
    assert rows_per_epoch[:1] == [600]
    assert set(rows_per_epoch[1:first]) <= {400}
    assert rows_per_epoch[first:] == [600] * (12 - first)
    assert outcome.n_samples_trained == 12 * 400 + (12 - first) * 200
    assert np.isfinite(outcome.state.weights).all()


def test_losing_every_worker_fails_the_fit_naming_the_last(three_blocks):
    cluster = ThreadedCluster()
    blocks = {k: three_blocks[k] for k in ("worker-a", "worker-b")}
    with pytest.raises(WorkerLostError, match="worker-"):
        fit_losing(cluster, blocks, ["worker-a", "worker-b"], 1, ListReplacer(blocks))
    assert len(cluster.ended) == 1


def test_without_replacement_a_lost_worker_fails_the_fit(three_blocks):
    cluster = ThreadedCluster(replace_lost=False)
    with pytest.raises(WorkerLostError, match="worker worker-c left"):
        fit_losing(cluster, three_blocks, "worker-c", 1, None)
    assert len(cluster.ended) == 1


def test_rows_that_cannot_be_rebuilt_are_recorded_or_fail_the_fit(three_blocks):
    outcome = fit_losing(
        ThreadedCluster(), three_blocks, "worker-c", 1, ListReplacer(three_blocks, 50)
    )
    lost = outcome.history[outcome.history["event"] == "rows-lost"]
    assert list(lost["samples"]) == [50] and list(lost["worker"]) == ["worker-c"]
    config = _config.load()
    strict = dataclasses.replace(
        config,
        recovery=dataclasses.replace(config.recovery, require_all_rows=True),
    )
    cluster = ThreadedCluster()
    with pytest.raises(WorkerLostError, match=r"worker-c .*50 of its training rows"):
        fit_losing(
            cluster, three_blocks, "worker-c", 1, ListReplacer(three_blocks, 50),
            config=strict,
        )  # fmt: skip
    assert len(cluster.ended) == 1


@pytest.mark.parametrize("seen_by_the_driver", [True, False])
def test_a_worker_lost_after_the_last_epoch_is_not_replaced(
    three_blocks, seen_by_the_driver
):
    cluster = ThreadedCluster()
    replacer = ListReplacer(three_blocks)
    supervisor = FitSupervisor(
        "f", "token", task_for(linear_learner(batch_size=1), max_iter=3),
        cluster, cluster, np.random.default_rng(0), replacer, None, 600,
    )  # fmt: skip
    cluster.start("f", {name: name for name in three_blocks}, LIMITS)
    # Every epoch is complete; the survivors are still ending their tasks.
    running = concurrent.futures.Future()
    for name in three_blocks:
        supervisor.members[name] = Member(name, name, running, 200)
    cluster.completed.extend({"epoch": e, "totals": {"n_train": 600}} for e in range(3))
    cluster.lose("worker-c")
    if seen_by_the_driver:
        supervisor.look()
    else:
        # The departure handled before the driver read the last epochs.
        supervisor.replace(cluster.departures[0])
    events = [event["event"] for event in supervisor.events]
    assert events == ["worker-lost"]
    # Neither a task that would train nothing nor rows placed for it (when
    # the driver had seen the last epoch; otherwise the coordinator's answer
    # tells, after the rows were built).
    assert sorted(supervisor.members) == ["worker-a", "worker-b"]
    assert (replacer.calls == []) is seen_by_the_driver
    running.set_result(None)
