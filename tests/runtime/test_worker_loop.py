"""The one worker loop, run in the test process with a fake control plane."""

from __future__ import annotations

import numpy as np
import pytest

from dask_asgd.kernels import kmeans_pass, sgd_pass
from dask_asgd.learners import (
    KMeansLearner,
    KMeansState,
    LinearLearner,
    LinearState,
    Partition,
)
from dask_asgd.runtime import run_worker
from dask_asgd.runtime._worker_loop import (
    epoch_chunks,
    rows_per_epoch,
    whole_minibatches,
)
from tests import _reference as ref

from ._fakes import AloneControlPlane, task_for


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(203, 5))
    y = np.where(X @ rng.normal(size=5) > 0, 1.0, -1.0)
    return Partition(X=X, targets=y, sample_weight=np.ones(203))


def linear_learner(batch_size, **fields):
    settings = ref.settings_like_sklearn(
        "hinge", "l2", learning_rate="constant", eta0=0.05, batch_size=batch_size
    )
    defaults = dict(
        settings=settings,
        state=LinearState.zeros(1, 5, np.float64),
        t_start=1.0,
        tol=None,
        n_iter_no_change=5,
        early_stopping=False,
        adaptive=False,
        score="accuracy",
        positive_weight=np.ones(1),
        negative_weight=np.ones(1),
    )
    return LinearLearner(**{**defaults, **fields})


def one_kernel_call(learner, partition):
    """The whole pass as a single kernel call: the minibatches nobody cut."""
    state = learner.state.copy()
    sgd_pass(
        state.weights,
        state.intercepts,
        state.average_weights,
        state.average_intercepts,
        np.zeros_like(state.weights),
        partition.X,
        partition.targets,
        partition.sample_weight,
        learner.positive_weight,
        learner.negative_weight,
        np.arange(partition.X.shape[0], dtype=np.int64),
        learner.settings,
        1.0,
        0.0,
    )
    return state


@pytest.mark.parametrize("chunk_samples", [10, 13, 4096])
def test_chunk_boundaries_never_cut_a_linear_minibatch(rows, chunk_samples):
    # Chunks of 10 or 13 rows are not whole minibatches of 4: a loop that
    # passed them to the kernel as they are would train on minibatches of 2
    # or 1 rows at every chunk boundary, and end elsewhere.
    learner = linear_learner(batch_size=4)
    result = run_worker(
        task_for(learner, chunk_samples=chunk_samples), [rows], AloneControlPlane()
    )
    expected = one_kernel_call(learner, rows)
    np.testing.assert_allclose(result.state.weights, expected.weights, rtol=1e-12)
    np.testing.assert_allclose(result.state.intercepts, expected.intercepts)
    assert result.n_samples_trained == rows.X.shape[0]


def test_chunk_boundaries_never_cut_a_kmeans_minibatch(rows):
    start = KMeansState(rows.X[:3].copy(), np.zeros(3))
    learner = KMeansLearner(state=start, batch_size=8)
    result = run_worker(
        task_for(learner, chunk_samples=20), [rows], AloneControlPlane()
    )
    centers, counts = start.centers.copy(), start.counts.copy()
    order = np.arange(rows.X.shape[0], dtype=np.int64)
    kmeans_pass(centers, counts, rows.X, rows.sample_weight, order, 8)
    np.testing.assert_allclose(result.state.centers, centers, rtol=1e-12)
    np.testing.assert_allclose(result.state.counts, counts)


def test_whole_minibatches_rounds_down_but_keeps_one():
    task = task_for(linear_learner(batch_size=4), chunk_samples=10)
    assert whole_minibatches(task, None, 4) == 8
    assert whole_minibatches(task, None, 16) == 16


@pytest.mark.parametrize("shuffle", [False, True])
def test_an_epoch_visits_every_row_once(rows, shuffle):
    parts = [Partition(rows.X, None, rows.sample_weight) for _ in range(2)]
    row_numbers = [np.arange(100), np.arange(50, 203)]
    rng = np.random.default_rng(1) if shuffle else None
    seen = {0: [], 1: []}
    for partition, chunk in epoch_chunks(parts, row_numbers, rng, lambda: 7):
        assert 0 < chunk.shape[0] <= 7
        seen[next(i for i, p in enumerate(parts) if p is partition)].extend(
            chunk.tolist()
        )
    assert sorted(seen[0]) == list(range(100))
    assert sorted(seen[1]) == list(range(50, 203))
    # Without shuffling, storage order; with it, another order.
    assert (seen[0] == list(range(100))) is not shuffle


def test_a_first_epoch_walks_randomly_ordered_copies_as_stored(rows):
    copied = Partition(rows.X, None, rows.sample_weight, rows_in_random_order=True)
    original = Partition(rows.X, None, rows.sample_weight)
    row_numbers = [np.arange(203), np.arange(203)]
    seen = {id(copied): [], id(original): []}
    rng = np.random.default_rng(1)
    chunks = epoch_chunks([copied, original], row_numbers, rng, lambda: 7, True)
    for partition, chunk in chunks:
        seen[id(partition)].extend(chunk.tolist())
    assert seen[id(copied)] == list(range(203))
    assert sorted(seen[id(original)]) == list(range(203))
    assert seen[id(original)] != list(range(203))
    # Later epochs shuffle the copy like any other rows.
    later = [c for p, c in epoch_chunks([copied], row_numbers[:1], rng, lambda: 7)]
    assert np.concatenate(later).tolist() != list(range(203))


def test_each_epoch_is_reported_and_the_rule_stops_the_loop(rows):
    learner = linear_learner(batch_size=1, tol=10.0, n_iter_no_change=2)
    control = AloneControlPlane()
    result = run_worker(task_for(learner, max_iter=50), [rows], control)
    # tol=10 per sample is never met: the rule stops after 1 + 2 epochs.
    assert result.n_iter == 3
    assert [epoch for epoch, _ in control.reports] == [0, 1, 2]
    assert control.reports[0][1]["n_train"] == 203
    assert [record["epoch"] for record in result.history] == [0, 1, 2]
    assert result.failure is None


class StepClock:
    """A clock that moves only when told: each reading is the set time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class WaitingControlPlane(AloneControlPlane):
    """A barrier at which every report waits ``wait`` seconds of ``clock``."""

    def __init__(self, clock: StepClock, wait: float) -> None:
        super().__init__()
        self.clock, self.wait = clock, wait

    def report_epoch(self, epoch, values):
        self.clock.now += self.wait
        return super().report_epoch(epoch, values)


def test_the_history_records_the_barrier_wait_and_the_elapsed_time(rows):
    clock = StepClock()
    control = WaitingControlPlane(clock, wait=2.5)
    task = task_for(linear_learner(batch_size=1), max_iter=3, started_after=10.0)
    result = run_worker(task, [rows], control, clock=clock)
    assert [r["barrier_wait"] for r in result.history] == [2.5, 2.5, 2.5]
    # Counted from the fit's start: the task started 10 s into it.
    assert [r["elapsed"] for r in result.history] == [12.5, 15.0, 17.5]


def test_a_pass_without_barrier_waits_for_nothing(rows):
    clock = StepClock()
    control = WaitingControlPlane(clock, wait=2.5)
    task = task_for(linear_learner(batch_size=1), max_iter=1, synchronise=False)
    result = run_worker(task, [rows], control, clock=clock)
    assert control.reports == []
    assert [r["barrier_wait"] for r in result.history] == [0.0]


def test_a_given_up_fit_ends_the_loop_with_the_reason(rows):
    control = AloneControlPlane(abort_at_epoch=1)
    result = run_worker(
        task_for(linear_learner(batch_size=1), max_iter=10), [rows], control
    )
    assert result.failure == "the fit ended"
    assert result.n_iter == 2
    assert len(result.history) == 2 and "loss" not in result.history[-1]


def test_a_diverged_model_ends_the_loop(rows):
    # What divergence leaves behind: a weight that is no longer finite.
    diverged = LinearState.zeros(1, 5, np.float64)
    diverged.weights[0, 0] = np.inf
    with np.errstate(all="ignore"):
        result = run_worker(
            task_for(linear_learner(batch_size=1, state=diverged), max_iter=10),
            [rows],
            AloneControlPlane(),
        )
    assert result.failure == "nonfinite"
    assert result.n_iter == 1


def test_a_single_pass_does_not_meet_the_barrier(rows):
    control = AloneControlPlane()
    result = run_worker(
        task_for(linear_learner(batch_size=1), synchronise=False), [rows], control
    )
    assert control.reports == []
    assert result.history[0]["loss"] > 0


def test_a_replacement_takes_the_decisions_it_missed(rows):
    # tol=10 per sample is never met: the rule stops 2 epochs after the first.
    learner = linear_learner(batch_size=1, tol=10.0, n_iter_no_change=2)
    totals = {
        "loss": 50.0,
        "objective": 50.0,
        "n_train": 203.0,
        "loss_0": 50.0,
        "objective_0": 50.0,
    }
    control = AloneControlPlane()
    joined = task_for(learner, max_iter=50, first_epoch=1, replay=(totals,))
    result = run_worker(joined, [rows], control)
    # It reports from epoch 1 on and stops with the others, after epoch 2.
    assert [epoch for epoch, _ in control.reports] == [1, 2]
    assert result.n_iter == 3
    # Had the others already stopped, it trains nothing.
    late = task_for(learner, max_iter=50, first_epoch=3, replay=(totals,) * 3)
    result = run_worker(late, [rows], control)
    assert result.n_samples_trained == 0 and result.history == []
    assert result.n_iter == 3


def test_a_replacement_starts_from_its_hosts_last_barrier_state(rows):
    from dask_asgd.runtime._handover import held_states, leaving_states
    from dask_asgd.runtime._worker_loop import with_start_state

    host = task_for(linear_learner(batch_size=1), max_iter=2, member="host")
    with leaving_states("fit", "host", True) as leave:
        hosted = run_worker(host, [rows], AloneControlPlane(), on_epoch=leave)
        replacement = with_start_state(
            task_for(linear_learner(batch_size=1), member="new", start_from="host")
        )
    assert held_states() == 0
    np.testing.assert_array_equal(
        replacement.learner.state.weights, hosted.state.weights
    )
    assert replacement.learner.state.weights is not hosted.state.weights
    # Without a state left by its host, it starts from the learner's.
    alone = task_for(linear_learner(batch_size=1), start_from="gone")
    assert with_start_state(alone) is alone


def test_rows_per_epoch_leave_out_the_held_out_rows():
    held_out = np.zeros(10, dtype=bool)
    held_out[:3] = True
    parts = [
        Partition(np.ones((10, 2)), None, np.ones(10), validation=held_out),
        Partition(np.ones((5, 2)), None, np.ones(5)),
    ]
    assert rows_per_epoch(parts) == 7 + 5
