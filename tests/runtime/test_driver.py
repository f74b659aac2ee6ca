"""The driver, with its workers run as threads of the test process."""

from __future__ import annotations

import numpy as np
import pytest

from dask_asgd import _config
from dask_asgd._exceptions import FitAbortedError, WorkerLostError
from dask_asgd.learners import LinearState, Partition
from dask_asgd.runtime import WorkerResult, policy_limits, run_fit
from dask_asgd.runtime._driver import combine

from ._fakes import FakePlacement, ThreadedCluster, task_for
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
    assert members == ["worker-a", "worker-b"] and limits is LIMITS
    # Ended once, everything released.
    assert cluster.ended == [fit_id]
    assert placement.released and len(cluster.released) == 2
    assert outcome.n_iter == 3
    assert outcome.n_samples_trained == 3 * 300
    assert sorted(outcome.history["worker"].unique()) == members
    # Every epoch's sums reached the driver while the fit ran.
    assert [summary["epoch"] for summary in progress] == [0, 1, 2]
    assert progress[0]["totals"]["n_train"] == 300


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
        state=state, n_samples_trained=n_samples, n_iter=1, failure=failure
    )


def test_a_diverged_worker_fails_the_fit_in_scikit_learns_words():
    state = LinearState.zeros(1, 2, np.float64)
    learner = linear_learner(batch_size=1)
    with pytest.raises(ValueError, match="Floating-point under-/overflow"):
        combine("f", ["a", "b"], [result(state), result(state, "nonfinite")], learner)
    with pytest.raises(WorkerLostError, match="tcp://gone:1"):
        combine("f", ["a"], [result(state, "worker-lost:tcp://gone:1")], learner)
    with pytest.raises(FitAbortedError, match="epoch 3"):
        combine("f", ["a"], [result(state, "epoch 3: timeout")], learner)


class FailingCluster(ThreadedCluster):
    """Its tasks fail as those of a worker that left the cluster."""

    def gather(self, handles):
        raise RuntimeError("the task's worker died")


def test_a_lost_worker_ends_the_fit_once_and_releases_everything(placement_rows):
    cluster = FailingCluster(end_reason="worker-lost:worker-b")
    placement = placement_of(placement_rows)
    with pytest.raises(WorkerLostError, match="worker-b") as raised:
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
    assert cluster.waited == 1
    assert placement.released and len(cluster.released) == 2
