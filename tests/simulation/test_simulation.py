"""The simulator runs the real code: without communication it is the real fit."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_classification

from dask_asgd import ASGDClassifier, ASGDKMeans
from dask_asgd.simulation import LinkModel, simulate


@pytest.fixture(scope="module")
def data():
    return make_classification(20_000, 20, n_informative=5, random_state=0)


def classifier(**params):
    defaults = dict(
        loss="log_loss",
        learning_rate="invscaling",
        eta0=0.1,
        max_iter=3,
        tol=None,
        random_state=0,
        min_rows_per_worker=1000,
    )
    return ASGDClassifier(**{**defaults, **params})


def test_without_communication_the_simulation_is_the_real_fit(data):
    # Same blocks, same seeds, same kernels and averaging: the simulated
    # two-worker fit and the real one on the embedded cluster agree exactly.
    X, y = data
    real = classifier(communication="off", n_workers=2).fit(X, y)
    simulated, fit = simulate(classifier(communication="off"), X, y, n_workers=2)
    assert real.history_["worker"].nunique() == 2
    np.testing.assert_array_equal(simulated.coef_, real.coef_)
    np.testing.assert_array_equal(simulated.intercept_, real.intercept_)
    assert simulated.n_iter_ == real.n_iter_ == 3
    # Simulated time: three epochs of 10,000 rows a worker at the model's
    # rate, and a round trip to the barrier after each.
    model = LinkModel()
    expected = 3 * (10_000 / model.rate(0) + 2 * model.latency)
    assert fit.seconds == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("communication", ["fixed", "adaptive"])
def test_a_simulation_is_deterministic(data, communication):
    X, y = data
    estimator = classifier(communication=communication, send_interval=512)
    first, first_fit = simulate(estimator, X, y, n_workers=8, seed=3)
    second, second_fit = simulate(estimator, X, y, n_workers=8, seed=3)
    np.testing.assert_array_equal(first.coef_, second.coef_)
    assert first_fit.seconds == second_fit.seconds
    history = first.history_
    last = history[history["epoch"] == history["epoch"].max()]
    # Workers exchanged through the real state exchange and mailbox.
    assert (last["messages_sent"] > 0).all()
    assert (last["messages_received"] > 0).all()


def test_the_mixing_weight_reaches_the_workers_merge(data):
    # Same seeds, same messages in the same simulated order: only the merge's
    # weights differ, and so do the models; each is reproducible.
    X, y = data
    params = dict(communication="fixed", send_interval=256, parzen_window=False)
    mean, _ = simulate(classifier(**params), X, y, n_workers=8, seed=3)
    mixed, _ = simulate(
        classifier(**params, mixing_weight=0.25), X, y, n_workers=8, seed=3
    )
    again, _ = simulate(
        classifier(**params, mixing_weight=0.25), X, y, n_workers=8, seed=3
    )
    np.testing.assert_array_equal(mixed.coef_, again.coef_)
    assert not np.allclose(mixed.coef_, mean.coef_, rtol=1e-6, atol=0)
    assert (mixed.history_.groupby("worker")["merges"].max() > 0).all()


def test_a_slow_link_queues_messages_and_the_balancer_backs_off(data):
    X, y = data
    slow = LinkModel(bandwidth=2e4, latency=0.001, samples_per_second=2e5)
    estimator = classifier(
        communication="adaptive", send_interval=256, max_iter=4, eta0=0.01
    )
    model, fit = simulate(estimator, X, y, n_workers=4, network=slow)
    history = model.history_
    last = history[history["epoch"] == history["epoch"].max()]
    assert (last["messages_dropped"] > 0).any()
    # The balancer answered reports and lengthened every worker's interval.
    assert fit.decisions
    assert (last["send_interval"] > 256).all()


def test_a_worker_of_few_rows_starts_short_enough_to_hear_from_the_balancer(data):
    # 20,000 rows on 4 workers: 5,000 rows a worker per epoch. From the
    # default 4,096 the first report (after 8 exchanges) would come in the
    # seventh epoch; cut to 5,000 / 32, clipped to the 256 floor, it comes
    # in the first.
    X, y = data
    model, fit = simulate(
        classifier(communication="adaptive", max_iter=2), X, y, n_workers=4
    )
    control = model.communication_history_
    initial = control[control["reason"] == "initial"]
    assert (initial["send_interval"] == 256).all()
    assert fit.decisions
    assert min(d["time"] for d in fit.decisions) < fit.epochs[0]["time"]
    # Fixed intervals are the user's, whatever the rows.
    fixed, _ = simulate(classifier(communication="fixed"), X, y, n_workers=4)
    assert (fixed.history_["send_interval"] == 4096).all()


def test_kmeans_runs_on_many_simulated_workers():
    X, _ = make_blobs(30_000, 5, centers=4, random_state=0)
    estimator = ASGDKMeans(
        4,
        batch_size=64,
        max_iter=2,
        max_no_improvement=None,
        random_state=0,
        communication="fixed",
        send_interval=512,
        min_rows_per_worker=100,
    )
    model, fit = simulate(estimator, X, n_workers=64)
    assert model.history_["worker"].nunique() == 64
    assert model.cluster_centers_.shape == (4, 5)
    assert len(fit.epochs) == 2


@pytest.mark.parametrize("n_workers", [100, pytest.param(1000, marks=pytest.mark.slow)])
def test_at_many_workers_the_interval_settles_and_stays_bounded(n_workers):
    # Rows from one distribution: exchange buys nothing, so every worker's
    # interval grows toward no exchange, stops at the largest allowed and
    # holds. A small model and 400 rows a worker keep the fit short; reports
    # after every 2 exchanges let the law act within it.
    X, y = make_classification(400 * n_workers, 5, n_informative=3, random_state=0)
    low, high = 16, 4096
    settings = {
        "asgd.balancing.min-send-interval": low,
        "asgd.balancing.max-send-interval": high,
        "asgd.balancing.report-exchanges": 2,
    }
    with dask.config.set(settings):
        model, fit = simulate(
            classifier(
                communication="adaptive", send_interval=32, max_iter=16,
                min_rows_per_worker=1,
            ),
            X, y, n_workers=n_workers,
        )  # fmt: skip
    intervals = model.history_.pivot(
        index="epoch", columns="worker", values="send_interval"
    )
    assert intervals.shape == (16, n_workers)
    assert ((intervals >= low) & (intervals <= high)).all().all()
    assert len(fit.decisions) >= n_workers  # every worker was steered
    # Settled: over the last four epochs nine workers in ten keep their
    # interval from one epoch to the next, and most sit at the largest (or
    # within the law's 20 % deadband below it).
    late = intervals.iloc[-5:]
    unchanged = (late.diff().iloc[1:] == 0).mean(axis=1)
    assert (unchanged >= 0.9).all(), unchanged
    assert (intervals.iloc[-1] >= 0.8 * high).mean() >= 0.9
    assert intervals.iloc[0].median() < high


def test_the_experiments_score_the_averaged_model_when_averaging():
    # With average=True the estimator publishes the running averages as
    # coef_: the label-skewed experiment must score those, not the iterates.
    import argparse

    from dask_asgd.learners.linear import LinearState
    from dask_asgd.simulation._experiments import add_arguments, workload

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    arguments = parser.parse_args(["--rows", "20000", "--features", "10"])
    skewed = parser.parse_args(["--rows", "20000", "--features", "10", "--skew", "0.9"])
    state = LinearState.zeros(1, 10, np.float64)
    state.weights[0] = 10.0  # a poor iterate
    averaged_only = LinearState.zeros(1, 10, np.float64)
    # The skewed (averaging) workload scores the averages: all zeros here.
    assert workload(skewed).evaluate(state)["objective"] == pytest.approx(np.log(2.0))
    # Without averaging the iterates are the model.
    assert workload(arguments).evaluate(state)["objective"] > np.log(2.0) + 1.0
    assert workload(arguments).evaluate(averaged_only)["objective"] == pytest.approx(
        np.log(2.0)
    )


def test_a_fixed_cost_per_message_lengthens_the_simulated_fit(data):
    # Each published message costs the sender message_seconds of its clock.
    X, y = data
    estimator = classifier(communication="fixed", send_interval=512)
    _, cheap_fit = simulate(estimator, X, y, n_workers=2)
    costly, costly_fit = simulate(
        estimator, X, y, n_workers=2, network=LinkModel(message_seconds=1e-3)
    )
    last = costly.history_.groupby("worker").tail(1)
    published = int(last["messages_published"].min())
    assert published > 10
    assert costly_fit.seconds - cheap_fit.seconds >= published * 1e-3
