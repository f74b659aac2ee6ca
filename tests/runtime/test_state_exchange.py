"""Merging received states into a worker's model (no cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from dask_asgd.exchange import Message
from dask_asgd.learners import KMeansState
from dask_asgd.learners import LinearState as ModelState
from dask_asgd.runtime._state_exchange import (
    MAGNITUDE_HEADROOM,
    StateExchange,
    magnitude_bound,
)


class FakeEndpoint:
    def __init__(self, messages):
        self.messages = list(messages)
        self.published = []
        self.max_abs = None

    def receive(self):
        messages, self.messages = self.messages, []
        return messages

    def publish(self, payload, metadata=None, peer=None, *, copy=True):
        self.published.append((payload.copy(), dict(metadata or {})))
        return True

    def limit_magnitude(self, max_abs):
        self.max_abs = max_abs


def message(payload, start):
    return Message(
        topic="t",
        sender="w",
        payload=payload,
        metadata={"column_start": start},
    )


def state(value, n_outputs=2, n_features=5):
    model = ModelState.zeros(n_outputs, n_features, np.float64)
    model.weights[...] = value
    model.intercepts[...] = value
    return model


def test_blocks_of_different_widths_from_the_same_column_merge():
    # A peer changed its message size: two blocks start at column 0.
    wide = np.full((2, 6), 2.0)
    narrow = np.full((2, 3), 4.0)
    endpoint = FakeEndpoint([message(wide, 0), message(narrow, 0)])
    exchange = StateExchange(
        endpoint, n_columns=6, message_size=1.0, parzen_window=False
    )
    model = state(0.0)
    exchange.merge(model, previous=None)
    merged = model.exchanged()
    # Columns 0-2: mean(0, 2) then mean(that, 4); columns 3-5: mean(0, 2).
    np.testing.assert_allclose(merged[:, :3], (1.0 + 4.0) / 2)
    np.testing.assert_allclose(merged[:, 3:], 1.0)


@pytest.mark.parametrize("parzen_window", [False, True])
def test_mixing_weight_moves_the_state_part_of_the_way(parzen_window):
    # One peer state in front of the step (it passes the Parzen test too):
    # the worker keeps three quarters of its own.
    endpoint = FakeEndpoint([message(np.full((2, 6), 4.0), 0)])
    exchange = StateExchange(
        endpoint,
        n_columns=6,
        message_size=1.0,
        parzen_window=parzen_window,
        mixing_weight=0.25,
    )
    model = state(2.0)
    exchange.merge(model, previous=state(0.0).exchanged())
    np.testing.assert_allclose(model.exchanged(), 0.75 * 2.0 + 0.25 * 4.0)
    assert (exchange.accepted, exchange.rejected) == (2, 0)
    assert exchange.merges == 1
    assert exchange.merge_shift == pytest.approx(np.sqrt(12) * 0.25 * 2.0)


def test_parzen_rejects_states_behind_the_step():
    endpoint = FakeEndpoint([message(np.full((2, 6), -1.0), 0)])
    exchange = StateExchange(
        endpoint, n_columns=6, message_size=1.0, parzen_window=True
    )
    previous = state(0.0).exchanged()
    model = state(1.0)  # the local step moved away from the received state
    exchange.merge(model, previous)
    np.testing.assert_allclose(model.exchanged(), 1.0)
    assert (exchange.accepted, exchange.rejected) == (0, 2)


@pytest.mark.parametrize(
    "message_size, widths", [(1.0, [6]), (0.5, [3, 3]), (0.4, [3, 3])]
)
def test_publish_rotates_column_blocks(message_size, widths):
    endpoint = FakeEndpoint([])
    exchange = StateExchange(
        endpoint, n_columns=6, message_size=message_size, parzen_window=True
    )
    model = state(3.0)
    for _ in widths:
        exchange.publish(model)
    assert [p.shape[1] for p, _ in endpoint.published] == widths
    starts = [meta["column_start"] for _, meta in endpoint.published]
    assert starts == [sum(widths[:i]) for i in range(len(widths))]


def test_kmeans_centers_are_tested_as_a_whole():
    # Center 0 of the peer is ahead of the local step, center 1 behind it;
    # summed over both the peer is nearer the proposal: all or nothing.
    previous = np.zeros((2, 2))
    centers = KMeansState(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([5.0, 5.0]))
    peer = np.array([[1.0, 0.0], [0.4, 0.0]])
    exchange = StateExchange(
        FakeEndpoint([message(peer, 0)]),
        n_columns=2,
        message_size=1.0,
        parzen_window=True,
        parzen_per_row=KMeansState.parzen_per_row,
    )
    exchange.merge(centers, previous)
    np.testing.assert_allclose(centers.centers, [[1.0, 0.0], [0.7, 0.0]])
    np.testing.assert_array_equal(centers.counts, [5.0, 5.0])  # never exchanged
    assert (exchange.accepted, exchange.rejected) == (2, 0)
    sent = exchange.publish(centers)
    np.testing.assert_array_equal(sent, centers.centers)
    assert sent is not centers.centers


def test_a_whole_state_rejected_is_left_out_of_the_benefit():
    # K-Means: the peer's centers lie behind the local step, rejected whole.
    previous = np.zeros((2, 2))
    centers = KMeansState(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([5.0, 5.0]))
    exchange = StateExchange(
        FakeEndpoint([message(np.full((2, 2), -1.0), 0)]),
        n_columns=2,
        message_size=1.0,
        parzen_window=True,
        parzen_per_row=KMeansState.parzen_per_row,
    )
    exchange.merge(centers, previous)
    assert exchange.rejected_merges == 1
    assert (exchange.merges, exchange.merge_shift, exchange.local_move) == (0, 0, 0)
    # Accepted: a merge that counts, with how far it moved the centers.
    exchange.endpoint.messages = [message(np.full((2, 2), 3.0), 0)]
    exchange.merge(centers, previous)
    assert (exchange.merges, exchange.rejected_merges) == (1, 1)
    assert exchange.merge_shift > 0 and exchange.local_move > 0


def test_a_row_rejected_is_a_merge_that_moved_nothing():
    # Linear models: a rejection is evidence that exchange buys little.
    exchange = StateExchange(
        FakeEndpoint([message(np.full((2, 6), -1.0), 0)]),
        n_columns=6,
        message_size=1.0,
        parzen_window=True,
    )
    exchange.merge(state(1.0), state(0.0).exchanged())
    assert (exchange.merges, exchange.rejected_merges) == (1, 0)
    assert exchange.merge_shift == 0 and exchange.local_move > 0


def test_merge_skips_blocks_outside_the_state_as_a_second_line():
    # The handler refuses these first; merge must not slice them in anyway
    # (a negative start would wrap around to the last columns).
    endpoint = FakeEndpoint(
        [message(np.full((2, 3), 9.0), -1), message(np.full((2, 3), 9.0), 5)]
    )
    exchange = StateExchange(
        endpoint, n_columns=6, message_size=1.0, parzen_window=False
    )
    model = state(1.0)
    exchange.merge(model, previous=None)
    np.testing.assert_array_equal(model.exchanged(), 1.0)
    assert (exchange.accepted, exchange.rejected) == (0, 2)


@pytest.mark.parametrize(
    "value, bound",
    [
        (0.0, MAGNITUDE_HEADROOM),
        (0.5, MAGNITUDE_HEADROOM),
        (-3.0, 3 * MAGNITUDE_HEADROOM),
    ],
)
def test_publishing_bounds_what_peers_may_send_by_the_own_state(value, bound):
    endpoint = FakeEndpoint([])
    exchange = StateExchange(
        endpoint, n_columns=6, message_size=1.0, parzen_window=False
    )
    exchange.publish(state(value))
    assert endpoint.max_abs == pytest.approx(bound)


def test_a_non_finite_own_state_keeps_the_previous_bound():
    endpoint = FakeEndpoint([])
    exchange = StateExchange(
        endpoint, n_columns=6, message_size=1.0, parzen_window=False
    )
    exchange.limit_magnitude(state(2.0).exchanged())
    exchange.publish(state(np.nan))
    assert endpoint.max_abs == pytest.approx(2 * MAGNITUDE_HEADROOM)
    assert magnitude_bound(np.array([[1.0, np.inf]])) is None
    assert magnitude_bound(np.empty((2, 0))) == MAGNITUDE_HEADROOM


@pytest.mark.parametrize(
    ("trained_back", "fraction"), [(1.0, 1.0), (0.5, 0.5), (0.0, 0.0)]
)
def test_the_share_of_a_merge_that_training_took_back_is_counted(
    trained_back, fraction
):
    endpoint = FakeEndpoint([message(np.full((2, 6), 4.0), 0)])
    exchange = StateExchange(
        endpoint, n_columns=6, message_size=1.0, parzen_window=False
    )
    model = state(0.0)
    exchange.merge(model, previous=state(0.0).exchanged())
    # The mean of 0 and 4 moved every number by 2; training then moves it
    # back by ``trained_back`` of that before the next merge.
    np.testing.assert_allclose(model.exchanged(), 2.0)
    model.set_exchanged(model.exchanged() - 2.0 * trained_back)
    assert exchange.merge_shift_squares == 0  # nothing to compare yet
    endpoint.messages = [message(np.full((2, 6), 4.0), 0)]
    exchange.merge(model, previous=state(0.0).exchanged())
    assert exchange.merge_shift_squares == pytest.approx(12 * 2.0**2)
    assert exchange.merge_undone / exchange.merge_shift_squares == pytest.approx(
        fraction
    )
