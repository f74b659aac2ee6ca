"""The Parzen-window merge of ASGD (Keuper & Pfreundt 2015).

A worker holding state ``w`` that has just proposed ``w'`` (after its local
step) accepts a state ``w_j`` received from a peer only if ``w_j`` lies closer
to the proposal than to the old state:
``||w' - w_j||^2 < ||w - w_j||^2``. The new state is the mean of ``w'`` and
every accepted ``w_j``. The test is applied to each row separately (one row per
class in one-vs-rest models, whose rows are independent problems) or to the
whole matrix at once (K-Means, whose centers compete for the same rows and
are only meaningful together), and, for partial messages, to the block of
columns the message carries.
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
def _merge_accepted(proposal, received, column_start, accepted):
    n_messages, n_rows, width = received.shape
    for row in range(n_rows):
        n_accepted = 0
        for m in range(n_messages):
            if accepted[m, row]:
                n_accepted += 1
        if n_accepted == 0:
            continue
        for c in range(width):
            total = proposal[row, column_start + c]
            for m in range(n_messages):
                if accepted[m, row]:
                    total += received[m, row, c]
            proposal[row, column_start + c] = total / (n_accepted + 1)


def parzen_merge(
    previous: np.ndarray,
    proposal: np.ndarray,
    received: np.ndarray,
    column_start: int = 0,
    per_row: bool = True,
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

    Returns
    -------
    accepted : ndarray of bool, shape (n_messages, n_rows)
        Which rows of which messages passed the Parzen-window test.
    """
    if previous.shape != proposal.shape:
        raise ValueError(
            f"previous has shape {previous.shape} but proposal has {proposal.shape}"
        )
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
    accepted = np.zeros(received.shape[:2], dtype=np.bool_)
    _parzen_test(previous, proposal, received, column_start, per_row, accepted)
    _merge_accepted(proposal, received, column_start, accepted)
    return accepted
