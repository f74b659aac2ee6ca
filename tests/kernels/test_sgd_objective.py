"""The penalty term of scikit-learn's objective, as the SGD kernel sums it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dask_asgd.kernels import (
    LOSS_CODES,
    PENALTY_CODES,
    SCHEDULE_CODES,
    StepSettings,
    sgd_pass,
)


def settings(penalty: str, l1_ratio: float) -> StepSettings:
    return StepSettings(
        loss=LOSS_CODES["hinge"][0],
        loss_parameter=1.0,
        penalty=PENALTY_CODES[penalty],
        alpha=0.01,
        l1_ratio=l1_ratio,
        schedule=SCHEDULE_CODES["constant"],
        eta0=0.05,
        power_t=0.5,
        optimal_init=0.0,
        fit_intercept=True,
        intercept_decay=1.0,
        average_start=0,
        batch_size=1,
    )


def fresh_state(n_outputs: int, n_features: int) -> list[np.ndarray]:
    return [
        np.zeros((n_outputs, n_features)),
        np.zeros(n_outputs),
        np.zeros((n_outputs, n_features)),
        np.zeros(n_outputs),
        np.zeros((n_outputs, n_features)),
    ]


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize(
    ("penalty", "l1_ratio"), [("l2", 0.0), ("elasticnet", 0.3), ("l1", 1.0)]
)
def test_penalties_are_the_objective_at_each_prediction(kind, penalty, l1_ratio):
    # One kernel call over all rows against one call per row, with the
    # penalty computed from the weights before each row: the same sum.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)) * (rng.random((200, 6)) < 0.5)
    X = sp.csr_matrix(X) if kind == "csr" else X
    y = np.where(rng.random(200) > 0.5, 1.0, -1.0)
    step = settings(penalty, l1_ratio)
    common = (y, np.ones(200), np.ones(1), np.ones(1))

    state = fresh_state(1, 6)
    penalties = np.zeros(1)
    sgd_pass(
        *state, X, *common, np.arange(200), step, 1.0, 0.0,
        output_penalties=penalties,
    )  # fmt: skip

    state = fresh_state(1, 6)
    t, u, expected = 1.0, 0.0, 0.0
    for row in range(200):
        w = state[0][0]
        expected += step.alpha * (
            (1 - l1_ratio) * 0.5 * (w @ w) + l1_ratio * np.abs(w).sum()
        )
        t, _, u = sgd_pass(*state, X, *common, np.array([row]), step, t, u)
    np.testing.assert_allclose(penalties[0], expected, rtol=1e-10)
    assert expected > 0


def test_no_penalty_adds_nothing():
    X = np.random.default_rng(1).normal(size=(50, 3))
    y = np.ones(50)
    penalties = np.zeros(1)
    sgd_pass(
        *fresh_state(1, 3), X, y, np.ones(50), np.ones(1), np.ones(1),
        np.arange(50), settings("l2", 0.0)._replace(penalty=PENALTY_CODES[None]),
        1.0, 0.0, output_penalties=penalties,
    )  # fmt: skip
    assert penalties[0] == 0.0
