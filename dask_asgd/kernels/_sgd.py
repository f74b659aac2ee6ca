"""Minibatch SGD passes over dense or CSR rows, for linear models.

The model state is a matrix of shape ``(n_outputs, n_features)`` plus one
intercept per output. ``n_outputs`` is 1 for regression and binary
classification, and the number of classes for one-vs-rest multiclass: all
classes are trained in one pass so that every row of ``X`` is read once.

A minibatch of ``b`` samples is processed the way scikit-learn's plain SGD
processes ``b`` consecutive samples, except that all ``b`` predictions are
computed with the weights as they stood at the start of the minibatch
(delayed gradients). With ``b == 1`` the update sequence is exactly
scikit-learn's: per-sample learning rate, L2 decay through a lazy scale
factor, L1 by cumulative-penalty truncation (Tsuruoka et al. 2009), class and
sample weights, intercept decay for sparse input and running averages.

One deliberate difference: with ``average`` and an L1 penalty, the average is
the true running mean of the truncated iterates. scikit-learn's lazy average
applies each later truncation to the whole average as well, so the two
differ there (``tests/kernels/test_sgd.py`` pins it).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from ._losses import LOG_LOSS, loss_derivative, loss_value
from ._options import JIT_OPTIONS
from ._rows import kernel_rows

PENALTY_NONE = 0
PENALTY_L2 = 1
PENALTY_L1 = 2
PENALTY_ELASTICNET = 3

PENALTY_CODES = {
    None: PENALTY_NONE,
    "l2": PENALTY_L2,
    "l1": PENALTY_L1,
    "elasticnet": PENALTY_ELASTICNET,
}

SCHEDULE_CONSTANT = 0
SCHEDULE_OPTIMAL = 1
SCHEDULE_INVSCALING = 2
SCHEDULE_ADAPTIVE = 3

SCHEDULE_CODES = {
    "constant": SCHEDULE_CONSTANT,
    "optimal": SCHEDULE_OPTIMAL,
    "invscaling": SCHEDULE_INVSCALING,
    "adaptive": SCHEDULE_ADAPTIVE,
}

# scikit-learn folds the lazy scale into the weights below this value, to keep
# the weights away from denormal numbers.
_MIN_SCALE = 1e-9


class StepSettings(NamedTuple):
    """Hyperparameters of one pass, as plain scalars the kernel can read.

    Attributes
    ----------
    loss : int
        Loss code from :mod:`dask_asgd.kernels._losses`.
    loss_parameter : float
        Threshold or epsilon of the loss.
    penalty : int
        One of the ``PENALTY_*`` codes.
    alpha : float
        Regularisation strength.
    l1_ratio : float
        Elastic-net mixing (1 for pure L1, 0 for pure L2).
    schedule : int
        One of the ``SCHEDULE_*`` codes.
    eta0 : float
        Initial (or current, for ``adaptive``) learning rate.
    power_t : float
        Exponent of the ``invscaling`` schedule.
    optimal_init : float
        Offset ``t0`` of the ``optimal`` schedule, see :func:`optimal_init`.
    fit_intercept : bool
        Whether to update the intercepts.
    intercept_decay : float
        Factor on intercept updates (scikit-learn uses 0.01 for sparse data).
    average_start : int
        Sample count from which weights are averaged; 0 disables averaging.
    batch_size : int
        Minibatch size ``b``.
    """

    loss: int
    loss_parameter: float
    penalty: int
    alpha: float
    l1_ratio: float
    schedule: int
    eta0: float
    power_t: float
    optimal_init: float
    fit_intercept: bool
    intercept_decay: float
    average_start: int
    batch_size: int


def optimal_init(loss: int, loss_parameter: float, alpha: float) -> float:
    """Offset ``t0`` of the ``optimal`` schedule ``eta = 1 / (alpha (t0 + t - 1))``.

    Uses Léon Bottou's heuristic, as scikit-learn does: the first learning
    rate is chosen so that the typical weight norm is reached quickly.

    Parameters
    ----------
    loss : int
        Loss code.
    loss_parameter : float
        Threshold or epsilon of the loss.
    alpha : float
        Regularisation strength, > 0.

    Returns
    -------
    float
    """
    typical_weight = np.sqrt(1.0 / np.sqrt(alpha))
    derivative = loss_derivative(loss, -typical_weight, 1.0, loss_parameter)
    initial_eta0 = typical_weight / max(1.0, derivative)
    return 1.0 / (initial_eta0 * alpha)


@njit(**JIT_OPTIONS)
def learning_rate(settings, t):
    """Learning rate of sample number ``t`` (1-based)."""
    if settings.schedule == SCHEDULE_OPTIMAL:
        return 1.0 / (settings.alpha * (settings.optimal_init + t - 1.0))
    if settings.schedule == SCHEDULE_INVSCALING:
        return settings.eta0 / t**settings.power_t
    return settings.eta0


@njit(**JIT_OPTIONS)
def _log_loss_and_derivative(p, y):
    # One exp for both: the derivative is scikit-learn's formula to the bit,
    # the loss log1p(exp(-z)) is computed as log1p(1 / exp(z)) (the last bit
    # may differ; it only feeds the stopping rule's sums).
    z = p * y
    if z > 18.0:
        small = math.exp(-z)
        return small, -y * small
    if z < -18.0:
        return -z, -y
    grown = math.exp(z)
    return math.log1p(1.0 / grown), -y / (grown + 1.0)


@njit(**JIT_OPTIONS)
def _target(targets, i, k, one_output):
    # One-vs-rest: with several outputs the target holds the class index.
    if one_output:
        return targets[i]
    return 1.0 if int(targets[i]) == k else -1.0


@njit(**JIT_OPTIONS)
def _row_dot(w, X, data, indices, indptr, is_sparse, i):
    # Accumulates in the model's dtype: float32 rows are read and multiplied
    # as float32, twice the lanes of float64.
    total = w.dtype.type(0)
    if is_sparse:
        for position in range(indptr[i], indptr[i + 1]):
            total += w[indices[position]] * data[position]
    else:
        x = X[i]
        for j in range(x.shape[0]):
            total += w[j] * x[j]
    return total


@njit(**JIT_OPTIONS)
def _row_add(w, X, data, indices, indptr, is_sparse, i, factor):
    step = w.dtype.type(factor)
    if is_sparse:
        for position in range(indptr[i], indptr[i + 1]):
            w[indices[position]] += step * data[position]
    else:
        x = X[i]
        for j in range(x.shape[0]):
            w[j] += step * x[j]


@njit(**JIT_OPTIONS)
def _square(value):
    # Norms are summed in float64 whatever the model's dtype: they are kept up
    # to date by differences over a whole fit, which float32 would let drift.
    wide = np.float64(value)
    return wide * wide


@njit(**JIT_OPTIONS)
def _row_add_tracked(w, X, data, indices, indptr, is_sparse, i, factor):
    """:func:`_row_add` that returns the change of the squared norm of ``w``."""
    step = w.dtype.type(factor)
    change = 0.0
    if is_sparse:
        for position in range(indptr[i], indptr[i + 1]):
            j = indices[position]
            old = w[j]
            w[j] = old + step * data[position]
            change += _square(w[j]) - _square(old)
    else:
        x = X[i]
        for j in range(x.shape[0]):
            old = w[j]
            w[j] = old + step * x[j]
            change += _square(w[j]) - _square(old)
    return change


@njit(**JIT_OPTIONS)
def _row_norms(w, X, indices, indptr, is_sparse, i):
    """Squared and absolute sums of the weights ``w`` that row ``i`` touches."""
    squares = absolutes = 0.0
    if is_sparse:
        for position in range(indptr[i], indptr[i + 1]):
            value = w[indices[position]]
            squares += _square(value)
            absolutes += abs(np.float64(value))
    else:
        for j in range(X.shape[1]):
            squares += _square(w[j])
            absolutes += abs(np.float64(w[j]))
    return squares, absolutes


@njit(**JIT_OPTIONS)
def _norms(weights, n_outputs, track_penalty):
    """Squared and absolute sums of each output's weights (zeros if untracked)."""
    squares = np.zeros(n_outputs)
    absolutes = np.zeros(n_outputs)
    if track_penalty:
        for k in range(n_outputs):
            for j in range(weights.shape[1]):
                squares[k] += _square(weights[k, j])
                absolutes[k] += abs(np.float64(weights[k, j]))
    return squares, absolutes


@njit(**JIT_OPTIONS)
def _truncate_l1(weights, cumulative, k, j, scale, u):
    # Cumulative-penalty truncation: clip towards zero by what the penalty
    # owes, and remember what was actually applied.
    before = weights[k, j] * scale
    if before > 0.0:
        weights[k, j] = max(0.0, weights[k, j] - (u + cumulative[k, j]) / scale)
    elif before < 0.0:
        weights[k, j] = min(0.0, weights[k, j] + (u - cumulative[k, j]) / scale)
    cumulative[k, j] += weights[k, j] * scale - before


@njit(**JIT_OPTIONS)
def _row_l1(weights, cumulative, k, X, indices, indptr, is_sparse, i, scale, u):
    if is_sparse:
        for position in range(indptr[i], indptr[i + 1]):
            _truncate_l1(weights, cumulative, k, indices[position], scale, u)
    else:
        for j in range(X.shape[1]):
            _truncate_l1(weights, cumulative, k, j, scale, u)


@njit(**JIT_OPTIONS)
def _average_into(
    weights, intercepts, average_weights, average_intercepts, active, scale, fraction
):
    for k in range(weights.shape[0]):
        if not active[k]:
            continue
        for j in range(weights.shape[1]):
            average_weights[k, j] += (
                weights[k, j] * scale - average_weights[k, j]
            ) * fraction
        average_intercepts[k] += (intercepts[k] - average_intercepts[k]) * fraction


@functools.cache
def _compiled_pass(loss: int, sparse: bool, one_output: bool) -> Any:
    """The SGD pass compiled for one loss, one row layout and one or many outputs.

    Profiled on 1,000,000 x 100 float64 rows: with the loss and the layout
    read at run time the pass ran at 6.7 M rows/s (hinge), with them as
    compile-time constants at 11.3 M rows/s. Constants let LLVM inline the
    loss, drop the other layout's loops and vectorise the row loops. The
    penalty, the schedule and whether the objective's penalty is tracked stay
    run-time values: their branches are the same for every row and cost
    nothing measurable, and each specialisation costs a compilation (cached on
    disk, see ``_options.py``).
    """

    @njit(**JIT_OPTIONS)
    def sgd_pass_specialised(
        weights,
        intercepts,
        average_weights,
        average_intercepts,
        cumulative_l1,
        X,
        data,
        indices,
        indptr,
        targets,
        sample_weight,
        positive_weight,
        negative_weight,
        order,
        settings,
        t,
        u,
        active,
        output_losses,
        output_penalties,
    ):
        n_outputs = 1 if one_output else weights.shape[0]
        batch_size = settings.batch_size
        parameter = settings.loss_parameter
        uses_l2 = (
            settings.penalty == PENALTY_L2 or settings.penalty == PENALTY_ELASTICNET
        )
        uses_l1 = (
            settings.penalty == PENALTY_L1 or settings.penalty == PENALTY_ELASTICNET
        )
        averaging = settings.average_start > 0
        derivatives = np.empty((batch_size, n_outputs))
        scale = 1.0
        n = order.shape[0]
        # The penalty term of scikit-learn's objective, at the weights each
        # sample is predicted with: squared and absolute sums of the unscaled
        # weights, kept up to date over the features each update touches.
        track_penalty = output_penalties.shape[0] > 0 and (uses_l1 or uses_l2)
        squares, absolutes = _norms(weights, n_outputs, track_penalty)
        # With L1, truncation moves the weights too: measure the row's norms
        # around both; without, the addition reports its change.
        norms_around = track_penalty and uses_l1
        add_tracked = track_penalty and not uses_l1
        old_squares = old_absolutes = 0.0
        for batch_start in range(0, n, batch_size):
            batch_stop = min(batch_start + batch_size, n)
            # Pass 1: predictions at the minibatch's starting weights.
            for offset in range(batch_stop - batch_start):
                i = order[batch_start + offset]
                for k in range(n_outputs):
                    if not active[k]:
                        continue
                    p = (
                        _row_dot(weights[k], X, data, indices, indptr, sparse, i)
                        * scale
                        + intercepts[k]
                    )
                    y = _target(targets, i, k, one_output)
                    if loss == LOG_LOSS:
                        value, derivative = _log_loss_and_derivative(p, y)
                    else:
                        value = loss_value(loss, p, y, parameter)
                        derivative = loss_derivative(loss, p, y, parameter)
                    output_losses[k] += value
                    derivatives[offset, k] = derivative
                    if track_penalty:
                        output_penalties[k] += settings.alpha * (
                            (1.0 - settings.l1_ratio) * 0.5 * scale * scale * squares[k]
                            + settings.l1_ratio * scale * absolutes[k]
                        )
            # Pass 2: the per-sample updates, in scikit-learn's order.
            for offset in range(batch_stop - batch_start):
                i = order[batch_start + offset]
                eta = learning_rate(settings, t)
                if uses_l2:
                    scale *= max(
                        0.0, 1.0 - (1.0 - settings.l1_ratio) * eta * settings.alpha
                    )
                    if scale < _MIN_SCALE:
                        _fold_scale(weights, active, scale)
                        squares *= scale * scale
                        absolutes *= scale
                        scale = 1.0
                if uses_l1:
                    u += settings.l1_ratio * eta * settings.alpha
                for k in range(n_outputs):
                    if not active[k]:
                        continue
                    y = _target(targets, i, k, one_output)
                    class_weight = positive_weight[k] if y > 0.0 else negative_weight[k]
                    update = (
                        -eta * derivatives[offset, k] * class_weight * sample_weight[i]
                    )
                    w = weights[k]
                    if norms_around:
                        old_squares, old_absolutes = _row_norms(
                            w, X, indices, indptr, sparse, i
                        )
                    if update != 0.0:
                        factor = update / scale
                        if add_tracked:
                            squares[k] += _row_add_tracked(
                                w, X, data, indices, indptr, sparse, i, factor
                            )
                        else:
                            _row_add(w, X, data, indices, indptr, sparse, i, factor)
                        if settings.fit_intercept:
                            intercepts[k] += update * settings.intercept_decay
                    if uses_l1:
                        _row_l1(
                            weights,
                            cumulative_l1,
                            k,
                            X,
                            indices,
                            indptr,
                            sparse,
                            i,
                            scale,
                            u,
                        )
                    if norms_around:
                        new_squares, new_absolutes = _row_norms(
                            w, X, indices, indptr, sparse, i
                        )
                        squares[k] += new_squares - old_squares
                        absolutes[k] += new_absolutes - old_absolutes
                t += 1.0
            if averaging and t - 1.0 >= settings.average_start:
                # Running mean over samples: this minibatch's samples past the
                # start each count once, with the weights they produced.
                n_averaged = t - settings.average_start
                n_new = min(float(batch_stop - batch_start), n_averaged)
                _average_into(
                    weights,
                    intercepts,
                    average_weights,
                    average_intercepts,
                    active,
                    scale,
                    n_new / n_averaged,
                )
        _fold_scale(weights, active, scale)
        return t, u

    return sgd_pass_specialised


@njit(**JIT_OPTIONS)
def _fold_scale(weights, active, scale):
    # Outputs that stopped training were never scaled: leave them as they are.
    for k in range(weights.shape[0]):
        if active[k]:
            for j in range(weights.shape[1]):
                weights[k, j] *= scale


def sgd_pass(
    weights: np.ndarray,
    intercepts: np.ndarray,
    average_weights: np.ndarray,
    average_intercepts: np.ndarray,
    cumulative_l1: np.ndarray,
    X,
    targets: np.ndarray,
    sample_weight: np.ndarray,
    positive_weight: np.ndarray,
    negative_weight: np.ndarray,
    order: np.ndarray,
    settings: StepSettings,
    t: float,
    u: float,
    active: np.ndarray | None = None,
    output_losses: np.ndarray | None = None,
    output_penalties: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Run minibatch SGD over the rows ``order`` of ``X``, in place.

    Parameters
    ----------
    weights : ndarray of shape (n_outputs, n_features)
        Model weights, updated in place. float32 or float64, like ``X``.
    intercepts : ndarray of shape (n_outputs,)
        Intercepts, updated in place.
    average_weights, average_intercepts : ndarray
        Running averages (same shapes), updated in place when
        ``settings.average_start > 0``.
    cumulative_l1 : ndarray of shape (n_outputs, n_features)
        Penalty already applied per weight by L1 truncation; used only with
        the ``l1`` and ``elasticnet`` penalties.
    X : ndarray of shape (n_samples, n_features) or scipy.sparse.csr_matrix
        Training rows, C-contiguous if dense. CSR indices may be int32 or
        int64.
    targets : ndarray of shape (n_samples,)
        +1/-1 (binary), class index (several outputs) or the real target.
    sample_weight : ndarray of shape (n_samples,)
        Weight of each sample.
    positive_weight, negative_weight : ndarray of shape (n_outputs,)
        Class weights applied to samples whose target is +1 / not +1.
    order : ndarray of int64
        Row numbers to visit, in order (shuffled by the caller).
    settings : StepSettings
        Hyperparameters.
    t : float
        Number of the next sample (1-based), as scikit-learn's ``t_``.
    u : float
        Total L1 penalty a weight may have received so far.
    active : ndarray of bool, shape (n_outputs,), optional
        Outputs to train; the others are left untouched (one-vs-rest problems
        that already stopped). Default: all.
    output_losses : ndarray of float64, shape (n_outputs,), optional
        If given, the loss of each output is added to it.
    output_penalties : ndarray of float64, shape (n_outputs,), optional
        If given, the penalty term of scikit-learn's objective,
        ``alpha * ((1 - l1_ratio) / 2 * ||w||^2 + l1_ratio * ||w||_1)``, at
        the weights each sample is predicted with, summed over the samples,
        is added to it per output (nothing without a penalty).

    Returns
    -------
    t : float
        Number of the next sample after this pass.
    sumloss : float
        Sum over visited samples and active outputs of the loss before each
        update.
    u : float
        Updated total L1 penalty.
    """
    n_outputs = weights.shape[0]
    if active is None:
        active = np.ones(n_outputs, dtype=np.bool_)
    losses = np.zeros(n_outputs)
    penalties = np.zeros(n_outputs if output_penalties is not None else 0)
    dense, data, indices, indptr, is_sparse = kernel_rows(X, weights.dtype)
    kernel = _compiled_pass(int(settings.loss), bool(is_sparse), n_outputs == 1)
    t, u = kernel(
        weights,
        intercepts,
        average_weights,
        average_intercepts,
        cumulative_l1,
        dense,
        data,
        indices,
        indptr,
        targets,
        sample_weight,
        positive_weight,
        negative_weight,
        order,
        settings,
        float(t),
        float(u),
        active,
        losses,
        penalties,
    )
    # A diverging model yields infinite losses: the caller checks for it.
    with np.errstate(over="ignore", invalid="ignore"):
        if output_losses is not None:
            output_losses += losses
        if output_penalties is not None:
            output_penalties += penalties
        return t, float(losses.sum()), u
