"""How a worker merges the states its peers sent: ASGD's Parzen-window merge
(Keuper & Pfreundt 2015), and the plain average it reduces to without the test.

A worker holding state ``w`` that has just proposed ``w'`` (after its local
step) accepts a state ``w_j`` received from a peer only if ``w_j`` lies closer
to the proposal than to the old state:
``||w' - w_j||^2 < ||w - w_j||^2``. The new state is the mean of ``w'`` and
every accepted ``w_j``. The test is applied to each row separately (one row per
class in one-vs-rest models, whose rows are independent problems) or to the
whole matrix at once (K-Means, whose centers compete for the same rows and
are only meaningful together), and, for partial messages, to the block of
columns the message carries.

The weights of the mean are the paper's (equal) by default. With a mixing
weight ``m`` the worker keeps ``(1 - m) ** k`` of its own state for ``k``
merged messages and gives the rest to them in equal parts: for one message,
``(1 - m) w' + m w_j``, the gossip step of decentralized SGD with mixing
weights (Lian et al. 2018, asynchronous decentralized parallel SGD, pairs at
``m = 1/2``), or the worker's side of elastic averaging (Zhang, Choromanska
& LeCun 2015, EASGD, at ``m = alpha``, the moving rate, with the peer in
place of the center). ``(1 - m) ** k`` keeps the merge a convex combination
for any number of messages, and equals sequential pulls of weight ``m``
toward the messages' mean.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._options import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def _parzen_test(previous, proposal, received, column_start, per_row, accepted):
    n_messages, n_rows, width = received.shape
    to_proposal = np.empty(n_rows)
    to_previous = np.empty(n_rows)
    for m in range(n_messages):
        for row in range(n_rows):
            near_proposal = 0.0
            near_previous = 0.0
            for c in range(width):
                external = received[m, row, c]
                a = proposal[row, column_start + c] - external
                b = previous[row, column_start + c] - external
                near_proposal += a * a
                near_previous += b * b
            to_proposal[row] = near_proposal
            to_previous[row] = near_previous
        whole = to_proposal.sum() < to_previous.sum()
        for row in range(n_rows):
            accepted[m, row] = to_proposal[row] < to_previous[row] if per_row else whole


@njit(**JIT_OPTIONS)
def _merge_accepted(proposal, received, column_start, accepted, mixing_weight):
    n_messages, n_rows, width = received.shape
    for row in range(n_rows):
        n_accepted = 0
        for m in range(n_messages):
            if accepted[m, row]:
                n_accepted += 1
        if n_accepted == 0:
            continue
        if mixing_weight <= 0.0:
            # The paper's mean, summed in the state's dtype as it always was.
            for c in range(width):
                total = proposal[row, column_start + c]
                for m in range(n_messages):
                    if accepted[m, row]:
                        total += received[m, row, c]
                proposal[row, column_start + c] = total / (n_accepted + 1)
            continue
        own = (1.0 - mixing_weight) ** n_accepted
        each = (1.0 - own) / n_accepted
        for c in range(width):
            total = 0.0
            for m in range(n_messages):
                if accepted[m, row]:
                    total += received[m, row, c]
            proposal[row, column_start + c] = (
                own * proposal[row, column_start + c] + each * total
            )


def parzen_merge(
    previous: np.ndarray,
    proposal: np.ndarray,
    received: np.ndarray,
    column_start: int = 0,
    per_row: bool = True,
    mixing_weight: float | None = None,
) -> np.ndarray:
    """Merge received states into ``proposal`` in place; return the accept mask.

    Parameters
    ----------
    previous : ndarray of shape (n_rows, n_columns)
        The state before the local step (``w``).
    proposal : ndarray of shape (n_rows, n_columns)
        The state after the local step (``w'``); receives the merged state.
    received : ndarray of shape (n_messages, n_rows, width)
        States (or column blocks of states) from peers.
    column_start : int, default=0
        First column of ``previous``/``proposal`` that ``received`` covers.
    per_row : bool, default=True
        Test and merge each row on its own; if False, a message is accepted
        or rejected as a whole, by the distance summed over all its rows.
    mixing_weight : float in (0, 1) or None, default=None
        None: the mean of ``proposal`` and the accepted states (the paper).
        A float ``m``: ``proposal`` keeps ``(1 - m) ** k`` of itself for
        ``k`` accepted states, which share the rest equally.

    Returns
    -------
    accepted : ndarray of bool, shape (n_messages, n_rows)
        Which rows of which messages passed the Parzen-window test.
    """
    if previous.shape != proposal.shape:
        raise ValueError(
            f"previous has shape {previous.shape} but proposal has {proposal.shape}"
        )
    weight = _check_merge(proposal, received, column_start, mixing_weight)
    accepted = np.zeros(received.shape[:2], dtype=np.bool_)
    _parzen_test(previous, proposal, received, column_start, per_row, accepted)
    _merge_accepted(proposal, received, column_start, accepted, weight)
    return accepted


def average_merge(
    proposal: np.ndarray,
    received: np.ndarray,
    column_start: int = 0,
    mixing_weight: float | None = None,
) -> None:
    """Merge every received state into ``proposal`` in place, without a test.

    Parameters
    ----------
    proposal : ndarray of shape (n_rows, n_columns)
        The worker's state; receives the merged state.
    received : ndarray of shape (n_messages, n_rows, width)
        States (or column blocks of states) from peers.
    column_start : int, default=0
        First column of ``proposal`` that ``received`` covers.
    mixing_weight : float in (0, 1) or None, default=None
        None: the mean of ``proposal`` and every received state. A float
        ``m``: ``proposal`` keeps ``(1 - m) ** n_messages`` of itself and the
        received states share the rest equally.
    """
    weight = _check_merge(proposal, received, column_start, mixing_weight)
    accepted = np.ones(received.shape[:2], dtype=np.bool_)
    _merge_accepted(proposal, received, column_start, accepted, weight)


def _check_merge(
    proposal: np.ndarray,
    received: np.ndarray,
    column_start: int,
    mixing_weight: float | None,
) -> float:
    """Raise ValueError for shapes or a weight that do not fit; return the
    kernel's weight (0 for equal weights)."""
    if mixing_weight is not None and not 0.0 < mixing_weight < 1.0:
        raise ValueError(f"mixing_weight must be in (0, 1), got {mixing_weight}")
    if received.ndim != 3 or received.shape[1] != proposal.shape[0]:
        raise ValueError(
            f"received must have shape (n_messages, {proposal.shape[0]}, width), "
            f"got {received.shape}"
        )
    if column_start < 0 or column_start + received.shape[2] > proposal.shape[1]:
        raise ValueError(
            f"column block [{column_start}, {column_start + received.shape[2]}) "
            f"does not fit a state with {proposal.shape[1]} columns"
        )
    return 0.0 if mixing_weight is None else float(mixing_weight)
