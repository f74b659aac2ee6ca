"""The learners' weighted average of the workers' final states."""

from __future__ import annotations

import numpy as np

from dask_asgd.learners import KMeansState
from dask_asgd.learners import LinearState as ModelState


def average(states_and_samples, start):
    """Average as the driver does: shares are the samples each worker trained."""
    states = [state for state, _ in states_and_samples]
    shares = np.array([n for _, n in states_and_samples], dtype=np.float64)
    return type(start).average(states, shares / shares.sum(), start)


def test_average_weights_states_by_samples_trained():
    first, second = (
        ModelState.zeros(2, 3, np.float64),
        ModelState.zeros(2, 3, np.float64),
    )
    first.weights[:] = 1.0
    second.weights[:] = 4.0
    first.average_weights[:] = 2.0
    averaged = average(
        [(first, 300), (second, 100)], ModelState.zeros(2, 3, np.float64)
    )
    np.testing.assert_allclose(averaged.weights, 1.75)
    np.testing.assert_allclose(averaged.average_weights, 1.5)


def test_workers_without_averaging_send_no_average_arrays():
    start = ModelState.zeros(1, 4, np.float64)
    start.average_weights[:] = 7.0  # e.g. from an earlier partial_fit
    first, second = start.copy(), start.copy()
    first.weights[:] = 2.0
    second.weights[:] = 6.0
    stripped = [first.without_averages(), second.without_averages()]
    assert all(s.average_weights.size == 0 for s in stripped)
    # Nothing of the full averages travels or stays referenced.
    assert all(s.average_weights.base is None for s in stripped)
    assert not stripped[0].has_averages()
    averaged = average([(s, 10) for s in stripped], start)
    np.testing.assert_allclose(averaged.weights, 4.0)
    np.testing.assert_array_equal(averaged.average_weights, start.average_weights)
    assert averaged.average_weights is not start.average_weights
    assert averaged.average_intercepts.shape == start.intercepts.shape


def test_kmeans_average_adds_up_what_each_worker_counted():
    start = KMeansState(np.zeros((2, 3)), np.array([10.0, 20.0]))
    first, second = start.copy(), start.copy()
    first.centers[:] = 1.0
    second.centers[:] = 4.0
    first.counts += [5.0, 0.0]
    second.counts += [1.0, 7.0]
    averaged = average([(first, 300), (second, 100)], start)
    np.testing.assert_allclose(averaged.centers, 1.75)
    np.testing.assert_allclose(averaged.counts, [16.0, 27.0])
    assert averaged.exchanged_shape == (2, 3)
    assert not KMeansState.parzen_per_row and ModelState.parzen_per_row
