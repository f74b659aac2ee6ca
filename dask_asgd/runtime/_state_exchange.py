"""One worker's side of ASGD's state exchange: merge what arrived, send its own.

What is exchanged is the state's ``exchanged()`` matrix (``[weights |
intercepts]`` for a linear model, the centers for K-Means). With
``message_size < 1`` a message carries a block of its columns; a worker sends
the blocks in turn, and the receiver tests and merges only the block it got.

What a peer sends is checked by the exchange's handler before it enters the
mailbox, against what this worker declared when it joined: the state's shape
and dtype (a block of it, finite) and a magnitude bound that follows the
worker's own state (:data:`MAGNITUDE_HEADROOM`). The shape checks of
:meth:`StateExchange.merge` are a second line behind the handler.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from ..exchange import Endpoint
from ..kernels import average_merge, parzen_merge
from ..learners import ExchangedState

#: A peer's state is refused if it holds a value more than this many times
#: larger than the largest of this worker's own state (or than 1, when that
#: is smaller). The states of one fit are estimates of the same model and
#: agree in scale; averaging in one a million times larger would all but
#: erase the receiver's own state (its share falls to the order of float32's
#: resolution) and, without the Parzen-window test, nothing else would stop
#: it. The bound follows the worker's state at every send, so a model whose
#: scale grows during training is not cut off.
MAGNITUDE_HEADROOM = 1e6


class StateExchange:
    """Merge received states into a worker's model and publish it to peers.

    Parameters
    ----------
    endpoint : Endpoint
        This worker's subscription to the fit's topic.
    n_columns : int
        Columns of the exchanged matrix (``state.exchanged_shape[1]``).
    message_size : float in (0, 1]
        Fraction of the columns one message carries.
    parzen_window : bool
        Apply the Parzen-window test; if False every received state is
        averaged in.
    parzen_per_row : bool, default=True
        Test each row of a received matrix on its own (one-vs-rest outputs)
        rather than the matrix as a whole (K-Means centers).
    mixing_weight : float in (0, 1) or None, default=None
        The weight a merged state gets against the worker's own (see
        :func:`~dask_asgd.kernels.parzen_merge`); None: equal weights.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        n_columns: int,
        message_size: float,
        parzen_window: bool,
        parzen_per_row: bool = True,
        mixing_weight: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.mixing_weight = mixing_weight
        self.parzen_window = parzen_window
        self.parzen_per_row = parzen_per_row
        self.n_columns = n_columns
        #: Per block (start, stop) merged: its last merge's shift, the shift's
        #: product with the block after that merge, and its squared norm.
        self._last_merges: dict[tuple[int, int], tuple[np.ndarray, float, float]] = {}
        self.set_message_size(message_size)
        self._next_block = 0
        self.accepted = 0
        self.rejected = 0
        #: Merges (blocks that received at least one message) and, summed over
        #: them, how far the merge moved the block's columns and how far the
        #: worker's own training had moved the same columns since its previous
        #: exchange (Euclidean norms): what an exchange buys (see
        #: :class:`~dask_asgd.balancing.WorkerSignals`).
        self.merges = 0
        self.merge_shift = 0.0
        self.local_move = 0.0
        #: Merges left out of those: the whole-state test rejected every state.
        self.rejected_merges = 0
        #: How much of each merge the worker's own training took back before
        #: the next merge of the same columns: minus the projection of that
        #: training's move on the merge's shift, and the squared shifts, summed
        #: (their ratio is the fraction undone: near 1 when merges do not
        #: last). In ``history_`` for study; the balancing law does not read
        #: it. Keeps each block's last shift (up to one state).
        self.merge_undone = 0.0
        self.merge_shift_squares = 0.0

    def set_message_size(self, message_size: float) -> None:
        """Change the fraction of the state each message carries."""
        self.message_size = float(message_size)
        width = max(1, math.ceil(self.n_columns * self.message_size))
        self.block_starts = list(range(0, self.n_columns, width))
        self.block_width = width
        self._next_block = 0
        # Blocks of another width are not merged again: let their copies go.
        self._last_merges.clear()

    def merge(self, state: ExchangedState, previous: np.ndarray | None) -> None:
        """Merge the messages that arrived into ``state``.

        Parameters
        ----------
        state : ExchangedState
            The proposal ``w'`` after the local step; updated in place.
        previous : ndarray or None
            Exchanged matrix before the local step (``w``); needed with the
            Parzen-window test.
        """
        messages = self.endpoint.receive()
        if not messages:
            return
        proposal = state.exchanged()
        if previous is not None and previous.shape != proposal.shape:
            previous = None
        # Keyed by start and width: peers whose message size changed send
        # blocks of other widths from the same column.
        by_block: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
        for message in messages:
            payload = message.payload
            start = int(message.metadata.get("column_start", 0))
            if (
                payload.ndim != 2
                or payload.shape[0] != proposal.shape[0]
                or start < 0
                or (start + payload.shape[1] > proposal.shape[1])
            ):
                self.rejected += 1
                continue
            by_block[start, payload.shape[1]].append(
                payload.astype(proposal.dtype, copy=False)
            )
        for (start, _), payloads in by_block.items():
            received = np.stack(payloads)
            stop = start + received.shape[2]
            before = proposal[:, start:stop].copy()
            merged = True
            if self.parzen_window and previous is not None:
                accepted = parzen_merge(
                    previous,
                    proposal,
                    received,
                    start,
                    self.parzen_per_row,
                    self.mixing_weight,
                )
                self.accepted += int(accepted.sum())
                self.rejected += int(accepted.size - accepted.sum())
                merged = bool(accepted.any())
            elif self.mixing_weight is not None:
                average_merge(proposal, received, start, self.mixing_weight)
                self.accepted += received.shape[0] * received.shape[1]
            else:
                proposal[:, start:stop] = (
                    proposal[:, start:stop] + received.sum(axis=0)
                ) / (received.shape[0] + 1)
                self.accepted += received.shape[0] * received.shape[1]
            if previous is not None and not merged and not self.parzen_per_row:
                # The whole-state test rejected every state: the peers' centers
                # lie in another arrangement. That says nothing of what merging
                # buys (see WorkerSignals.rejected_merges).
                self.rejected_merges += 1
            elif previous is not None:
                self._note_merge(
                    (start, stop),
                    before,
                    proposal[:, start:stop],
                    previous[:, start:stop],
                )
        state.set_exchanged(proposal)

    def _note_merge(
        self,
        block: tuple[int, int],
        before: np.ndarray,
        after: np.ndarray,
        previous: np.ndarray,
    ) -> None:
        """Add one block's merge to the counters: how far it moved the block,
        how far training had moved it since the previous exchange, and how
        much of the block's last merge training took back since then."""
        shift = after - before
        shift_norm = float(np.linalg.norm(shift))
        move = float(np.linalg.norm(before - previous))
        if not (math.isfinite(shift_norm) and math.isfinite(move)):
            return
        self.merges += 1
        self.merge_shift += shift_norm
        self.local_move += move
        last = self._last_merges.get(block)
        if last is not None:
            # -(before - last_after) . last_shift, with last_after . last_shift
            # computed at the last merge: one product per merge, one array kept.
            last_shift, last_reach, last_squares = last
            undone = last_reach - float(np.vdot(before, last_shift))
            if math.isfinite(undone):
                self.merge_undone += undone
                self.merge_shift_squares += last_squares
        self._last_merges[block] = (shift, float(np.vdot(after, shift)), shift_norm**2)

    def publish(self, state: ExchangedState) -> np.ndarray:
        """Send the next block of ``state`` to a random peer, without waiting.

        Returns
        -------
        ndarray
            The exchanged matrix that was sent from. Nobody may write to it: a
            whole-state message is sent from it without a copy. The caller may
            keep it as the Parzen test's ``w``.
        """
        start = self.block_starts[self._next_block]
        self._next_block = (self._next_block + 1) % len(self.block_starts)
        stop = min(start + self.block_width, self.n_columns)
        exchanged = state.exchanged()
        block = exchanged
        if start > 0 or stop < self.n_columns:
            block = np.ascontiguousarray(exchanged[:, start:stop])
        # exchanged() made a fresh array that nobody writes to: no second copy.
        self.endpoint.publish(block, {"column_start": start}, copy=False)
        self.limit_magnitude(exchanged)
        return exchanged

    def limit_magnitude(self, matrix: np.ndarray) -> None:
        """Bound what peers' states may hold by this worker's ``matrix``.

        Sets the endpoint's bound to :data:`MAGNITUDE_HEADROOM` times the
        largest magnitude in ``matrix`` (at least 1). A non-finite matrix
        leaves the bound as it was: the epoch's report flags that state.
        """
        bound = magnitude_bound(matrix)
        if bound is not None:
            self.endpoint.limit_magnitude(bound)

    def stats(self) -> dict[str, Any]:
        """Exchange counters so far (cumulative).

        ``messages_refused`` counts every message of this fit refused on this
        worker's handler: malformed ones (``refused_by_reason`` of
        :meth:`Endpoint.stats` says why) and late ones.
        """
        sent = self.endpoint.stats()
        return {
            "messages_published": sent.get("published", 0),
            "messages_sent": sent.get("sent", 0),
            "messages_received": sent.get("received", 0),
            "messages_lost": sent.get("lost", 0),
            "messages_dropped": sent.get("dropped", 0),
            "messages_failed": sent.get("failed", 0),
            "messages_refused": sent.get("refused", 0),
            "rows_accepted": self.accepted,
            "rows_rejected": self.rejected,
            "merges": self.merges,
            "merge_shift": self.merge_shift,
            "local_move": self.local_move,
            "rejected_merges": self.rejected_merges,
            "merge_undone": self.merge_undone,
            "merge_shift_squares": self.merge_shift_squares,
            "bytes_sent": sent.get("bytes_sent", 0),
            "bytes_received": sent.get("bytes_received", 0),
            "send_latency": sent.get("send_latency", 0.0),
            "message_size": self.message_size,
        }


def magnitude_bound(matrix: np.ndarray) -> float | None:
    """The magnitude a peer's state may reach next to ``matrix``, or None.

    ``MAGNITUDE_HEADROOM * max(1, max|matrix|)``; None if ``matrix`` holds a
    non-finite value.
    """
    if matrix.size == 0:
        return MAGNITUDE_HEADROOM
    # min and max need no temporary array, unlike abs(matrix).max().
    peak = max(-float(matrix.min()), float(matrix.max()))
    if not math.isfinite(peak):
        return None
    return MAGNITUDE_HEADROOM * max(1.0, peak)
