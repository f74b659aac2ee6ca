"""Naive NumPy references for the numba kernels in :mod:`dask_asgd.kernels`.

Each function here follows the definition of its kernel as directly as
possible: one Python step per sample, true (unscaled) weights, float64
arithmetic throughout, and no lazy scale factor. They are slow on purpose and
exist only so that the tests can compare the kernels with an independent
implementation (stumpy's ``tests/naive.py`` plays the same role).

Semantics of :func:`sgd_pass` (the same as the kernel's):

* Rows are visited in ``order``, in minibatches of ``settings.batch_size``
  consecutive entries (the last one may be shorter).
* Every prediction of a minibatch is computed with the weights as they stood
  at the start of that minibatch (delayed gradients).
* Then, sample by sample and in order: the learning rate of sample ``t``; the
  L2 decay ``w *= max(0, 1 - (1 - l1_ratio) * eta * alpha)``; the gradient
  step ``w += -eta * dloss * class_weight * sample_weight * x`` (and the
  intercept step times ``intercept_decay``); the L1 cumulative-penalty
  truncation of the features the row touches (every feature for dense rows,
  the stored ones for CSR rows); ``t += 1``.
* After each minibatch, when averaging is on and the last sample's number is
  at least ``average_start``, the running mean of the weights over samples is
  updated: the weights at the end of the minibatch count once for every
  sample of the minibatch numbered ``average_start`` or later.
* Outputs marked inactive (one-vs-rest problems that already stopped) are
  skipped entirely; the shared counters ``t`` and ``u`` still advance.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from dask_asgd.kernels import LOSS_CODES, PENALTY_CODES, SCHEDULE_CODES

MAX_DLOSS = 1e12

#: Loss code -> name, so that the reference reads the kernels' settings.
LOSS_NAMES = {code: name for name, (code, _) in LOSS_CODES.items()}
PENALTY_NAMES = {code: name for name, code in PENALTY_CODES.items()}
SCHEDULE_NAMES = {code: name for name, code in SCHEDULE_CODES.items()}


def loss_parameter(loss: str, epsilon: float = 0.1) -> float:
    """The loss parameter scikit-learn uses for ``loss`` (threshold or epsilon)."""
    if loss in ("hinge", "squared_hinge"):
        return 1.0
    if loss in ("huber", "epsilon_insensitive", "squared_epsilon_insensitive"):
        return epsilon
    return 0.0


def loss_and_derivative(loss: str, p: float, y: float, parameter: float):
    """Return ``(loss, dloss/dp)`` of prediction ``p`` for target ``y``.

    ``dloss`` is clipped to ``[-MAX_DLOSS, MAX_DLOSS]``. The log loss uses the
    exact formulas ``log(1 + exp(-z))`` and ``-y / (1 + exp(z))``.
    """
    z = p * y
    if loss in ("hinge", "perceptron"):
        threshold = 0.0 if loss == "perceptron" else parameter
        value, d = (threshold - z, -y) if z <= threshold else (0.0, 0.0)
    elif loss == "log_loss":
        value = float(np.logaddexp(0.0, -z))
        d = -y * float(expit(-z))
    elif loss == "modified_huber":
        if z >= 1.0:
            value, d = 0.0, 0.0
        elif z >= -1.0:
            value, d = (1.0 - z) ** 2, -2.0 * (1.0 - z) * y
        else:
            value, d = -4.0 * z, -4.0 * y
    elif loss == "squared_hinge":
        margin = parameter - z
        value, d = (margin**2, -2.0 * y * margin) if margin > 0.0 else (0.0, 0.0)
    elif loss == "squared_error":
        value, d = 0.5 * (p - y) ** 2, p - y
    elif loss == "huber":
        r = p - y
        if abs(r) <= parameter:
            value, d = 0.5 * r * r, r
        else:
            value = parameter * (abs(r) - 0.5 * parameter)
            d = math.copysign(parameter, r)
    elif loss == "epsilon_insensitive":
        excess = abs(y - p) - parameter
        value = max(excess, 0.0)
        d = 0.0 if excess <= 0.0 else math.copysign(1.0, p - y)
    elif loss == "squared_epsilon_insensitive":
        excess = abs(y - p) - parameter
        value = excess**2 if excess > 0.0 else 0.0
        d = 0.0 if excess <= 0.0 else 2.0 * excess * math.copysign(1.0, p - y)
    else:  # pragma: no cover - a new loss must be added here first
        raise ValueError(f"unknown loss {loss!r}")
    return float(value), float(min(max(d, -MAX_DLOSS), MAX_DLOSS))


def optimal_init(loss: str, parameter: float, alpha: float) -> float:
    """Offset ``t0`` of the ``optimal`` schedule (Bottou's heuristic, as sklearn)."""
    typical_weight = math.sqrt(1.0 / math.sqrt(alpha))
    _, d = loss_and_derivative(loss, -typical_weight, 1.0, parameter)
    initial_eta = typical_weight / max(1.0, d)
    return 1.0 / (initial_eta * alpha)


def learning_rate(settings, t: float) -> float:
    """Learning rate of sample number ``t`` (1-based)."""
    schedule = SCHEDULE_NAMES[settings.schedule]
    if schedule == "optimal":
        return 1.0 / (settings.alpha * (settings.optimal_init + t - 1.0))
    if schedule == "invscaling":
        return settings.eta0 / t**settings.power_t
    return settings.eta0


def _row(X, i):
    """Column numbers and values of row ``i`` of a dense array or CSR matrix."""
    if hasattr(X, "indptr"):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        return np.asarray(X.indices[lo:hi]), np.asarray(X.data[lo:hi], dtype=np.float64)
    return np.arange(X.shape[1]), np.asarray(X[i], dtype=np.float64)


def _target(targets, i, k, n_outputs):
    if n_outputs == 1:
        return float(targets[i])
    return 1.0 if int(targets[i]) == k else -1.0


def _truncate_l1(w, q, columns, u):
    """Cumulative-penalty L1 truncation of ``w[columns]`` (Tsuruoka et al. 2009)."""
    for j in columns:
        before = w[j]
        if before > 0.0:
            w[j] = max(0.0, before - (u + q[j]))
        elif before < 0.0:
            w[j] = min(0.0, before + (u - q[j]))
        q[j] += w[j] - before


def sgd_pass(
    weights,
    intercepts,
    average_weights,
    average_intercepts,
    cumulative_l1,
    X,
    targets,
    sample_weight,
    positive_weight,
    negative_weight,
    order,
    settings,
    t,
    u,
    active=None,
    output_losses=None,
):
    """Naive version of :func:`dask_asgd.kernels.sgd_pass`, same arguments.

    Updates the state arrays in place and returns ``(t, sumloss, u)``. Rows
    of the state whose ``active`` entry is false are neither read nor written
    (no prediction, decay, update, truncation or averaging); ``t`` and ``u``
    advance all the same. ``output_losses``, if given, receives the loss of
    each output added to it; ``sumloss`` is their total for this pass.
    """
    loss = LOSS_NAMES[settings.loss]
    penalty = PENALTY_NAMES[settings.penalty]
    uses_l2 = penalty in ("l2", "elasticnet")
    uses_l1 = penalty in ("l1", "elasticnet")
    averaging = settings.average_start > 0
    n_outputs = weights.shape[0]
    active = np.ones(n_outputs, dtype=bool) if active is None else np.asarray(active)
    trained = [k for k in range(n_outputs) if active[k]]
    losses = np.zeros(n_outputs)

    w = weights.astype(np.float64)
    c = intercepts.astype(np.float64)
    aw = average_weights.astype(np.float64)
    ac = average_intercepts.astype(np.float64)
    q = cumulative_l1.astype(np.float64)
    t = float(t)
    u = float(u)

    order = np.asarray(order)
    for start in range(0, order.shape[0], settings.batch_size):
        batch = order[start : start + settings.batch_size]
        # All predictions of the minibatch at its starting weights.
        dloss = np.empty((batch.shape[0], n_outputs))
        for offset, i in enumerate(batch):
            columns, values = _row(X, i)
            for k in trained:
                p = float(values @ w[k, columns]) + c[k]
                value, dloss[offset, k] = loss_and_derivative(
                    loss, p, _target(targets, i, k, n_outputs), settings.loss_parameter
                )
                losses[k] += value
        # Then the per-sample updates, in order.
        for offset, i in enumerate(batch):
            columns, values = _row(X, i)
            eta = learning_rate(settings, t)
            if uses_l2:
                decay = max(0.0, 1.0 - (1.0 - settings.l1_ratio) * eta * settings.alpha)
                w[trained] *= decay
            if uses_l1:
                u += settings.l1_ratio * eta * settings.alpha
            for k in trained:
                y = _target(targets, i, k, n_outputs)
                class_weight = positive_weight[k] if y > 0.0 else negative_weight[k]
                update = -eta * dloss[offset, k] * class_weight * sample_weight[i]
                if update != 0.0:
                    np.add.at(w[k], columns, update * values)
                    if settings.fit_intercept:
                        c[k] += update * settings.intercept_decay
                if uses_l1:
                    _truncate_l1(w[k], q[k], columns, u)
            t += 1.0
        if averaging and t - 1.0 >= settings.average_start:
            n_averaged = t - settings.average_start
            fraction = min(float(batch.shape[0]), n_averaged) / n_averaged
            aw[trained] += (w[trained] - aw[trained]) * fraction
            ac[trained] += (c[trained] - ac[trained]) * fraction

    weights[...] = w
    intercepts[...] = c
    average_weights[...] = aw
    average_intercepts[...] = ac
    cumulative_l1[...] = q
    if output_losses is not None:
        output_losses += losses
    return t, float(losses.sum()), u


def parzen_merge(previous, proposal, received, column_start=0, mixing_weight=None):
    """Naive version of :func:`dask_asgd.kernels.parzen_merge`.

    Unlike the kernel it does not work in place: it returns
    ``(merged, accepted)`` and leaves ``proposal`` alone.
    """
    n_messages, n_rows, width = received.shape
    columns = slice(column_start, column_start + width)
    merged = np.array(proposal, dtype=np.float64)
    accepted = np.zeros((n_messages, n_rows), dtype=bool)
    for row in range(n_rows):
        mine = np.asarray(proposal[row, columns], dtype=np.float64)
        old = np.asarray(previous[row, columns], dtype=np.float64)
        for m in range(n_messages):
            theirs = np.asarray(received[m, row], dtype=np.float64)
            to_proposal = np.sum((mine - theirs) ** 2)
            to_previous = np.sum((old - theirs) ** 2)
            accepted[m, row] = to_proposal < to_previous
        kept = [received[m, row] for m in range(n_messages) if accepted[m, row]]
        if kept:
            merged[row, columns] = mix(mine, kept, mixing_weight)
    return merged, accepted


def average_merge(proposal, received, column_start=0, mixing_weight=None):
    """Naive version of :func:`dask_asgd.kernels.average_merge`: every
    received state is merged. Returns the merged state."""
    columns = slice(column_start, column_start + received.shape[2])
    merged = np.array(proposal, dtype=np.float64)
    for row in range(received.shape[1]):
        mine = np.asarray(proposal[row, columns], dtype=np.float64)
        merged[row, columns] = mix(mine, list(received[:, row]), mixing_weight)
    return merged


def mix(mine, kept, mixing_weight):
    """One row's merge: the mean of ``mine`` and ``kept``, or ``k`` pulls of
    weight ``m`` toward the mean of the ``k`` kept states."""
    kept = np.asarray(kept, dtype=np.float64)
    if mixing_weight is None:
        return np.mean(np.vstack([mine[np.newaxis], kept]), axis=0)
    merged = mine
    for _ in range(len(kept)):
        merged = (1 - mixing_weight) * merged + mixing_weight * kept.mean(axis=0)
    return merged


def settings_like_sklearn(
    loss: str,
    penalty: str | None = "l2",
    *,
    alpha: float = 1e-4,
    l1_ratio: float = 0.15,
    learning_rate: str = "optimal",
    eta0: float = 0.01,
    power_t: float = 0.5,
    epsilon: float = 0.1,
    fit_intercept: bool = True,
    sparse: bool = False,
    average: int = 0,
    batch_size: int = 1,
):
    """The :class:`~dask_asgd.kernels.StepSettings` of an ``SGDClassifier`` or
    ``SGDRegressor`` with these parameters (``average`` as an int: 0 is off,
    ``True`` is 1).

    Mirrors what scikit-learn's ``_plain_sgd`` does with them: ``l1_ratio`` is
    forced to 0 for ``"l2"`` and 1 for ``"l1"``, the intercept decays by 0.01
    on sparse input, and ``optimal`` starts from Bottou's heuristic.
    """
    from dask_asgd.kernels import StepSettings

    code = LOSS_CODES[loss][0]
    parameter = loss_parameter(loss, epsilon)
    if penalty == "l2":
        l1_ratio = 0.0
    elif penalty == "l1":
        l1_ratio = 1.0
    return StepSettings(
        loss=code,
        loss_parameter=parameter,
        penalty=PENALTY_CODES[penalty],
        alpha=alpha,
        l1_ratio=l1_ratio,
        schedule=SCHEDULE_CODES[learning_rate],
        eta0=eta0,
        power_t=power_t,
        optimal_init=(
            optimal_init(loss, parameter, alpha) if learning_rate == "optimal" else 0.0
        ),
        fit_intercept=fit_intercept,
        intercept_decay=0.01 if sparse else 1.0,
        average_start=int(average),
        batch_size=batch_size,
    )
