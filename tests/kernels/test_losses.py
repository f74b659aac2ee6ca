"""Loss values and derivatives: case tables, finite differences, references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dask_asgd.kernels import LOSS_CODES, loss_derivative, loss_value
from tests import _reference as ref

ALL_LOSSES = list(LOSS_CODES)
CLASSIFICATION_LOSSES = [name for name, (_, is_clf) in LOSS_CODES.items() if is_clf]
REGRESSION_LOSSES = [name for name, (_, is_clf) in LOSS_CODES.items() if not is_clf]


def code(loss):
    return LOSS_CODES[loss][0]


E = math.e
# (loss, parameter, p, y, expected loss, expected dloss/dp), computed by hand.
CASES = [
    # hinge, threshold 1: zero past the margin, the margin itself still counts.
    ("hinge", 1.0, 2.0, 1.0, 0.0, 0.0),
    ("hinge", 1.0, 1.0, 1.0, 0.0, -1.0),
    ("hinge", 1.0, 0.5, 1.0, 0.5, -1.0),
    ("hinge", 1.0, -0.5, -1.0, 0.5, 1.0),
    ("hinge", 1.0, 0.5, -1.0, 1.5, 1.0),
    ("hinge", 0.5, 0.75, 1.0, 0.0, 0.0),
    ("hinge", 0.5, 0.25, 1.0, 0.25, -1.0),
    # perceptron: threshold 0 whatever the parameter says.
    ("perceptron", 0.0, 1.0, 1.0, 0.0, 0.0),
    ("perceptron", 0.0, 0.0, 1.0, 0.0, -1.0),
    ("perceptron", 0.0, -1.0, 1.0, 1.0, -1.0),
    ("perceptron", 0.0, 0.5, -1.0, 0.5, 1.0),
    ("perceptron", 1.0, 0.5, 1.0, 0.0, 0.0),
    # log loss
    ("log_loss", 0.0, 0.0, 1.0, math.log(2.0), -0.5),
    ("log_loss", 0.0, 0.0, -1.0, math.log(2.0), 0.5),
    ("log_loss", 0.0, 2.0, 1.0, math.log1p(E**-2), -1.0 / (E**2 + 1.0)),
    ("log_loss", 0.0, 2.0, -1.0, math.log1p(E**2), 1.0 / (E**-2 + 1.0)),
    ("log_loss", 0.0, -3.0, 1.0, math.log1p(E**3), -1.0 / (E**-3 + 1.0)),
    ("log_loss", 0.0, 30.0, 1.0, math.log1p(E**-30), -1.0 / (E**30 + 1.0)),
    ("log_loss", 0.0, -30.0, 1.0, 30.0 + math.log1p(E**-30), -1.0 / (E**-30 + 1.0)),
    ("log_loss", 0.0, 800.0, -1.0, 800.0, 1.0),
    # modified Huber: quadratic on [-1, 1), linear below.
    ("modified_huber", 0.0, 1.0, 1.0, 0.0, 0.0),
    ("modified_huber", 0.0, 3.0, 1.0, 0.0, 0.0),
    ("modified_huber", 0.0, 0.5, 1.0, 0.25, -1.0),
    ("modified_huber", 0.0, -1.0, 1.0, 4.0, -4.0),
    ("modified_huber", 0.0, -2.0, 1.0, 8.0, -4.0),
    ("modified_huber", 0.0, 0.5, -1.0, 2.25, 3.0),
    ("modified_huber", 0.0, 3.0, -1.0, 12.0, 4.0),
    # squared hinge, threshold 1
    ("squared_hinge", 1.0, 0.5, 1.0, 0.25, -1.0),
    ("squared_hinge", 1.0, 2.0, 1.0, 0.0, 0.0),
    ("squared_hinge", 1.0, -1.0, -1.0, 0.0, 0.0),
    ("squared_hinge", 1.0, 1.0, -1.0, 4.0, 4.0),
    ("squared_hinge", 2.0, 1.0, 1.0, 1.0, -2.0),
    # squared error (half the square, as sklearn)
    ("squared_error", 0.0, 3.0, 1.0, 2.0, 2.0),
    ("squared_error", 0.0, -1.0, 2.0, 4.5, -3.0),
    ("squared_error", 0.0, 0.25, 0.25, 0.0, 0.0),
    # Huber with epsilon 1 and 0.1
    ("huber", 1.0, 0.5, 0.0, 0.125, 0.5),
    ("huber", 1.0, 1.0, 0.0, 0.5, 1.0),
    ("huber", 1.0, 3.0, 0.0, 2.5, 1.0),
    ("huber", 1.0, -3.0, 0.0, 2.5, -1.0),
    ("huber", 0.1, 2.0, 1.0, 0.095, 0.1),
    ("huber", 0.1, 1.05, 1.0, 0.00125, 0.05),
    # epsilon-insensitive with epsilon 0.5
    ("epsilon_insensitive", 0.5, 0.2, 0.0, 0.0, 0.0),
    ("epsilon_insensitive", 0.5, 0.5, 0.0, 0.0, 0.0),
    ("epsilon_insensitive", 0.5, 2.0, 0.0, 1.5, 1.0),
    ("epsilon_insensitive", 0.5, -2.0, 0.0, 1.5, -1.0),
    ("epsilon_insensitive", 0.5, 1.0, 3.0, 1.5, -1.0),
    # squared epsilon-insensitive with epsilon 0.5
    ("squared_epsilon_insensitive", 0.5, 0.3, 0.0, 0.0, 0.0),
    ("squared_epsilon_insensitive", 0.5, 2.0, 0.0, 2.25, 3.0),
    ("squared_epsilon_insensitive", 0.5, -2.0, 0.0, 2.25, -3.0),
    ("squared_epsilon_insensitive", 0.5, 1.0, 3.0, 2.25, -3.0),
    # Derivatives are clipped to +-1e12, like sklearn's MAX_DLOSS; values are not.
    ("squared_error", 0.0, 1e13, 0.0, 5e25, 1e12),
    ("squared_error", 0.0, -1e13, 0.0, 5e25, -1e12),
    ("squared_hinge", 1.0, -1e13, 1.0, (1.0 + 1e13) ** 2, -1e12),
    ("squared_epsilon_insensitive", 0.1, 1e13, 0.0, (1e13 - 0.1) ** 2, 1e12),
]


CASE_FIELDS = ("loss", "parameter", "p", "y", "expected", "dexpected")


def test_case_table_covers_every_loss():
    assert {case[0] for case in CASES} == set(LOSS_CODES)


@pytest.mark.parametrize(CASE_FIELDS, CASES)
def test_loss_case_table(loss, parameter, p, y, expected, dexpected):
    assert loss_value(code(loss), p, y, parameter) == pytest.approx(
        expected, rel=1e-12, abs=1e-300
    )
    assert loss_derivative(code(loss), p, y, parameter) == pytest.approx(
        dexpected, rel=1e-12, abs=1e-300
    )


@pytest.mark.parametrize(CASE_FIELDS, CASES)
def test_reference_matches_case_table(loss, parameter, p, y, expected, dexpected):
    # The reference used by the SGD tests must agree with the hand-made table too.
    value, derivative = ref.loss_and_derivative(loss, p, y, parameter)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert derivative == pytest.approx(dexpected, rel=1e-12, abs=1e-300)


def test_loss_codes_are_distinct_and_typed():
    codes = [c for c, _ in LOSS_CODES.values()]
    assert len(set(codes)) == len(codes)
    assert set(CLASSIFICATION_LOSSES) == {
        "hinge",
        "log_loss",
        "modified_huber",
        "squared_hinge",
        "perceptron",
    }
    assert set(REGRESSION_LOSSES) == {
        "squared_error",
        "huber",
        "epsilon_insensitive",
        "squared_epsilon_insensitive",
    }


def _kinks(loss, parameter, y):
    """Predictions where the loss (or its kernel formula) is not differentiable."""
    if loss == "hinge":
        return [parameter / y]
    if loss == "perceptron":
        return [0.0]
    if loss == "log_loss":  # switches between exact and asymptotic formulas
        return [18.0 / y, -18.0 / y]
    if loss == "epsilon_insensitive":
        return [y - parameter, y + parameter]
    return []


def _grid(loss):
    rng = np.random.default_rng(7)
    if loss in CLASSIFICATION_LOSSES:
        ys = rng.choice([-1.0, 1.0], size=200)
        ps = rng.uniform(-25.0, 25.0, size=200)
        ps[:100] = rng.uniform(-3.0, 3.0, size=100)
    else:
        ys = rng.normal(scale=2.0, size=200)
        ps = ys + rng.normal(scale=1.0, size=200)
    return ps, ys


@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("parameter", [0.1, 1.0])
def test_derivative_matches_finite_difference(loss, parameter):
    h = 1e-6
    ps, ys = _grid(loss)
    checked = 0
    for p, y in zip(ps, ys, strict=True):
        if any(abs(p - kink) < 1e-3 for kink in _kinks(loss, parameter, y)):
            continue
        numeric = (
            loss_value(code(loss), p + h, y, parameter)
            - loss_value(code(loss), p - h, y, parameter)
        ) / (2.0 * h)
        analytic = loss_derivative(code(loss), p, y, parameter)
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-6), (p, y)
        checked += 1
    assert checked > 150


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_kernel_matches_reference_on_grid(loss):
    parameter = ref.loss_parameter(loss, epsilon=0.3)
    ps, ys = _grid(loss)
    for p, y in zip(ps, ys, strict=True):
        value, derivative = ref.loss_and_derivative(loss, p, y, parameter)
        assert loss_value(code(loss), p, y, parameter) == pytest.approx(
            value, rel=1e-7, abs=1e-12
        )
        assert loss_derivative(code(loss), p, y, parameter) == pytest.approx(
            derivative, rel=1e-7, abs=1e-12
        )


def _sklearn_loss(loss, parameter):
    """Vectorised ``(p, y) -> (loss, dloss)`` from scikit-learn's own loss
    objects (private API; skipped if it moved)."""
    sgd_fast = pytest.importorskip("sklearn.linear_model._sgd_fast")
    sk_loss = pytest.importorskip("sklearn._loss._loss")
    sgd_classes = {
        "hinge": lambda: sgd_fast.Hinge(parameter),
        "perceptron": lambda: sgd_fast.Hinge(0.0),
        "squared_hinge": lambda: sgd_fast.SquaredHinge(parameter),
        "modified_huber": lambda: sgd_fast.ModifiedHuber(),
        "epsilon_insensitive": lambda: sgd_fast.EpsilonInsensitive(parameter),
        "squared_epsilon_insensitive": lambda: sgd_fast.SquaredEpsilonInsensitive(
            parameter
        ),
    }
    # The losses SGD takes from sklearn._loss; the binomial one wants y in {0, 1}.
    array_classes = {
        "log_loss": (lambda: sk_loss.CyHalfBinomialLoss(), lambda y: (y + 1.0) / 2.0),
        "squared_error": (lambda: sk_loss.CyHalfSquaredError(), lambda y: y),
        "huber": (lambda: sk_loss.CyHuberLoss(parameter), lambda y: y),
    }
    try:
        if loss in sgd_classes:
            instance = sgd_classes[loss]()

            def evaluate(ps, ys):
                pairs = list(zip(ps, ys, strict=True))
                return (
                    np.array([instance.py_loss(p, y) for p, y in pairs]),
                    np.array([instance.py_dloss(p, y) for p, y in pairs]),
                )

        else:
            make, encode = array_classes[loss]
            instance = make()

            def evaluate(ps, ys):
                ps = np.ascontiguousarray(ps, dtype=np.float64)
                ys = np.ascontiguousarray(encode(ys), dtype=np.float64)
                values, derivatives = np.empty_like(ps), np.empty_like(ps)
                instance.loss(ys, ps, None, values, 1)
                instance.gradient(ys, ps, None, derivatives, 1)
                return values, derivatives

        evaluate(np.zeros(1), np.ones(1))
    except (AttributeError, TypeError) as e:  # pragma: no cover - private API moved
        pytest.skip(f"sklearn's private loss API changed: {e}")
    return evaluate


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_kernel_matches_sklearn_loss_objects(loss):
    parameter = ref.loss_parameter(loss, epsilon=0.3)
    evaluate = _sklearn_loss(loss, parameter)
    ps, ys = _grid(loss)
    values, derivatives = evaluate(ps, ys)
    # For the log loss the kernel keeps the asymptotes of older sklearn for
    # |z| > 18 (relative error below exp(-18) ~ 1.5e-8), and sklearn's
    # binomial gradient expit(p) - y cancels for large margins.
    atol = 1e-12 if loss == "log_loss" else 1e-300
    rtol = 1e-7 if loss == "log_loss" else 1e-12
    for p, y, value, derivative in zip(ps, ys, values, derivatives, strict=True):
        assert loss_value(code(loss), p, y, parameter) == pytest.approx(
            value, rel=rtol, abs=atol
        ), (p, y)
        assert loss_derivative(code(loss), p, y, parameter) == pytest.approx(
            derivative, rel=rtol, abs=atol
        ), (p, y)
