"""The SGD pass compiled per loss, row layout and output count.

Each specialisation must sum the objective's penalty as the one-row-at-a-time
definition does, and the log loss computed with one ``exp`` must be the loss
module's to the last bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dask_asgd.kernels import (
    LOSS_CODES,
    PENALTY_CODES,
    SCHEDULE_CODES,
    StepSettings,
    loss_derivative,
    loss_value,
    sgd_pass,
)
from dask_asgd.kernels._sgd import _log_loss_and_derivative

LOG_LOSS = LOSS_CODES["log_loss"][0]
N_ROWS, N_FEATURES = 120, 7


def test_log_loss_with_one_exp_matches_the_loss_module():
    margins = np.concatenate(
        [np.linspace(-40.0, 40.0, 2001), [-18.0, 18.0, -18.000001, 18.000001, 0.0]]
    )
    for p in margins:
        for y in (1.0, -1.0):
            value, derivative = _log_loss_and_derivative(p, y)
            # The derivative is the same formula; the loss may differ in the
            # last bits only (log1p(1 / exp(z)) for log1p(exp(-z))).
            assert derivative == loss_derivative(LOG_LOSS, p, y, 0.0), (p, y)
            assert value == pytest.approx(loss_value(LOG_LOSS, p, y, 0.0), rel=1e-14)


def _settings(loss, penalty, l1_ratio, batch_size, eta0, alpha):
    return StepSettings(
        loss=LOSS_CODES[loss][0],
        loss_parameter=1.0 if loss == "hinge" else 0.0,
        penalty=PENALTY_CODES[penalty],
        alpha=alpha,
        l1_ratio=l1_ratio,
        schedule=SCHEDULE_CODES["constant"],
        eta0=eta0,
        power_t=0.5,
        optimal_init=0.0,
        fit_intercept=True,
        intercept_decay=1.0,
        average_start=0,
        batch_size=batch_size,
    )


def _problem(kind, n_outputs, dtype):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N_ROWS, N_FEATURES)) * (rng.random((N_ROWS, N_FEATURES)) < 0.6)
    X = X.astype(dtype)
    if n_outputs == 1:
        y = np.where(rng.random(N_ROWS) > 0.5, 1.0, -1.0)
    else:
        y = rng.integers(n_outputs, size=N_ROWS).astype(np.float64)
    return (sp.csr_matrix(X) if kind == "csr" else X), y.astype(dtype)


def _state(n_outputs, dtype):
    shapes = [(n_outputs, N_FEATURES), n_outputs] * 2 + [(n_outputs, N_FEATURES)]
    return [np.zeros(shape, dtype=dtype) for shape in shapes]


def _penalty(weights, step):
    return step.alpha * (
        (1 - step.l1_ratio) * 0.5 * np.einsum("kj,kj->k", weights, weights)
        + step.l1_ratio * np.abs(weights).sum(axis=1)
    )


def _run(X, y, step, n_outputs, dtype, order, state=None, t=1.0, u=0.0, **kwargs):
    state = _state(n_outputs, dtype) if state is None else state
    ones = np.ones(n_outputs, dtype=dtype)
    sample_weight = np.ones(N_ROWS, dtype=dtype)
    args = (X, y, sample_weight, ones, ones, order, step)
    t, _, u = sgd_pass(*state, *args, t, u, **kwargs)
    return state, t, u


CASES = [
    # loss, penalty, l1_ratio, eta0, alpha: the last one decays the lazy scale
    # below its floor within the pass, so the tracked norms are rescaled too.
    ("hinge", "l2", 0.0, 0.05, 0.01),
    ("log_loss", "elasticnet", 0.3, 0.05, 0.01),
    ("hinge", "l1", 1.0, 0.05, 0.01),
    ("log_loss", "l2", 0.0, 0.5, 1.0),
]


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize(("loss", "penalty", "l1_ratio", "eta0", "alpha"), CASES)
def test_every_specialisation_sums_the_penalty_at_each_prediction(
    kind, n_outputs, batch_size, loss, penalty, l1_ratio, eta0, alpha
):
    # One call over all rows against one call per minibatch, with the penalty
    # computed from the weights every sample of that minibatch predicts with.
    X, y = _problem(kind, n_outputs, np.float64)
    step = _settings(loss, penalty, l1_ratio, batch_size, eta0, alpha)
    order = np.random.default_rng(4).permutation(N_ROWS).astype(np.int64)
    active = np.ones(n_outputs, dtype=bool)
    if n_outputs > 1:
        active[1] = False  # a stopped one-vs-rest problem adds no penalty
    got = np.zeros(n_outputs)
    whole, t_whole, u_whole = _run(
        X, y, step, n_outputs, np.float64, order, active=active, output_penalties=got
    )

    state, t, u = _state(n_outputs, np.float64), 1.0, 0.0
    want = np.zeros(n_outputs)
    for start in range(0, N_ROWS, batch_size):
        chunk = order[start : start + batch_size]
        want += np.where(active, chunk.shape[0] * _penalty(state[0], step), 0.0)
        state, t, u = _run(
            X, y, step, n_outputs, np.float64, chunk, state, t, u, active=active
        )
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert np.all(got[active] > 0) and np.all(got[~active] == 0)
    # Tracking the penalty leaves the training itself untouched.
    untracked, t_untracked, u_untracked = _run(
        X, y, step, n_outputs, np.float64, order, active=active
    )
    for tracked_array, plain_array in zip(whole, untracked, strict=True):
        np.testing.assert_array_equal(tracked_array, plain_array)
    assert t_whole == t_untracked == t
    assert u_whole == u_untracked == pytest.approx(u, rel=1e-12)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_float32_tracks_the_penalty_of_the_float64_pass(kind, n_outputs):
    step = _settings("log_loss", "elasticnet", 0.3, 4, 0.05, 0.01)
    order = np.arange(N_ROWS, dtype=np.int64)
    penalties = {}
    for dtype in (np.float32, np.float64):
        X, y = _problem(kind, n_outputs, np.float32)
        X = X.astype(dtype)
        penalties[dtype] = np.zeros(n_outputs)
        state, _, _ = _run(
            X, y.astype(dtype), step, n_outputs, dtype, order,
            output_penalties=penalties[dtype],
        )  # fmt: skip
        assert all(array.dtype == dtype for array in state)
    assert np.all(penalties[np.float64] > 0)
    np.testing.assert_allclose(penalties[np.float32], penalties[np.float64], rtol=1e-4)
