"""Loss functions and their derivatives, selected by an integer code.

The definitions and names follow scikit-learn's SGD losses. Classification
targets are always ``+1`` or ``-1``; regression targets are real numbers.
Each function takes the prediction ``p`` (the raw margin ``w.x + b``), the
target ``y`` and one loss parameter (the hinge threshold, Huber's or the
epsilon-insensitive losses' epsilon).
"""

from __future__ import annotations

import math

from numba import njit

from ._options import JIT_OPTIONS

HINGE = 0
LOG_LOSS = 1
MODIFIED_HUBER = 2
SQUARED_HINGE = 3
PERCEPTRON = 4
SQUARED_ERROR = 5
HUBER = 6
EPSILON_INSENSITIVE = 7
SQUARED_EPSILON_INSENSITIVE = 8

#: Loss name -> (code, whether it is a classification loss).
LOSS_CODES = {
    "hinge": (HINGE, True),
    "log_loss": (LOG_LOSS, True),
    "modified_huber": (MODIFIED_HUBER, True),
    "squared_hinge": (SQUARED_HINGE, True),
    "perceptron": (PERCEPTRON, True),
    "squared_error": (SQUARED_ERROR, False),
    "huber": (HUBER, False),
    "epsilon_insensitive": (EPSILON_INSENSITIVE, False),
    "squared_epsilon_insensitive": (SQUARED_EPSILON_INSENSITIVE, False),
}

# Same bound as scikit-learn's MAX_DLOSS: keeps one outlier from blowing up w.
MAX_DLOSS = 1e12


@njit(**JIT_OPTIONS)
def loss_value(code, p, y, parameter):
    """Loss of prediction ``p`` for target ``y``.

    Parameters
    ----------
    code : int
        One of the loss codes of this module.
    p : float
        Prediction (margin).
    y : float
        Target: +1/-1 for classification losses.
    parameter : float
        Hinge threshold for ``HINGE``/``SQUARED_HINGE``, epsilon for
        ``HUBER`` and the epsilon-insensitive losses; ignored otherwise.

    Returns
    -------
    float
    """
    if code == HINGE or code == PERCEPTRON:
        threshold = 0.0 if code == PERCEPTRON else parameter
        z = p * y
        return threshold - z if z <= threshold else 0.0
    if code == LOG_LOSS:
        z = p * y
        if z > 18.0:
            return math.exp(-z)
        if z < -18.0:
            return -z
        return math.log1p(math.exp(-z))
    if code == MODIFIED_HUBER:
        z = p * y
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return (1.0 - z) * (1.0 - z)
        return -4.0 * z
    if code == SQUARED_HINGE:
        z = parameter - p * y
        return z * z if z > 0.0 else 0.0
    if code == SQUARED_ERROR:
        return 0.5 * (p - y) * (p - y)
    if code == HUBER:
        r = p - y
        abs_r = abs(r)
        if abs_r <= parameter:
            return 0.5 * r * r
        return parameter * (abs_r - 0.5 * parameter)
    if code == EPSILON_INSENSITIVE:
        r = abs(y - p) - parameter
        return r if r > 0.0 else 0.0
    # SQUARED_EPSILON_INSENSITIVE
    r = abs(y - p) - parameter
    return r * r if r > 0.0 else 0.0


@njit(**JIT_OPTIONS)
def loss_derivative(code, p, y, parameter):
    """Derivative of :func:`loss_value` with respect to ``p``, clipped.

    Parameters and codes are those of :func:`loss_value`. The result is
    clipped to ``[-MAX_DLOSS, MAX_DLOSS]`` as scikit-learn does.

    Returns
    -------
    float
    """
    if code == HINGE or code == PERCEPTRON:
        threshold = 0.0 if code == PERCEPTRON else parameter
        d = -y if p * y <= threshold else 0.0
    elif code == LOG_LOSS:
        z = p * y
        if z > 18.0:
            d = -y * math.exp(-z)
        elif z < -18.0:
            d = -y
        else:
            d = -y / (math.exp(z) + 1.0)
    elif code == MODIFIED_HUBER:
        z = p * y
        if z >= 1.0:
            d = 0.0
        elif z >= -1.0:
            d = -2.0 * (1.0 - z) * y
        else:
            d = -4.0 * y
    elif code == SQUARED_HINGE:
        z = parameter - p * y
        d = -2.0 * y * z if z > 0.0 else 0.0
    elif code == SQUARED_ERROR:
        d = p - y
    elif code == HUBER:
        r = p - y
        if abs(r) <= parameter:
            d = r
        elif r > 0.0:
            d = parameter
        else:
            d = -parameter
    elif code == EPSILON_INSENSITIVE:
        if y - p > parameter:
            d = -1.0
        elif p - y > parameter:
            d = 1.0
        else:
            d = 0.0
    else:  # SQUARED_EPSILON_INSENSITIVE
        z = y - p
        if z > parameter:
            d = -2.0 * (z - parameter)
        elif z < -parameter:
            d = 2.0 * (-z - parameter)
        else:
            d = 0.0
    if d > MAX_DLOSS:
        return MAX_DLOSS
    if d < -MAX_DLOSS:
        return -MAX_DLOSS
    return d
