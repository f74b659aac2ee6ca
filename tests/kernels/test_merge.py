"""The Parzen-window merge kernel against hand-made cases and the reference."""

from __future__ import annotations

import numpy as np
import pytest

from dask_asgd.kernels import average_merge, parzen_merge
from tests import _reference as ref


def merge(previous, proposal, received, column_start=0):
    """Run the kernel on copies; return ``(merged, accepted)`` like the reference."""
    merged = np.array(proposal, copy=True)
    accepted = parzen_merge(
        np.asarray(previous), merged, np.asarray(received), column_start
    )
    return merged, accepted


# --------------------------------------------------------------------------- #
# Hand-made cases                                                             #
# --------------------------------------------------------------------------- #


def test_accepts_state_closer_to_proposal():
    previous = np.array([[0.0, 0.0]])
    proposal = np.array([[1.0, 0.0]])
    received = np.array([[[0.8, 0.2]]])  # 0.08 from the proposal, 0.68 from w
    merged, accepted = merge(previous, proposal, received)
    np.testing.assert_array_equal(accepted, [[True]])
    np.testing.assert_allclose(merged, [[0.9, 0.1]], rtol=1e-15)


def test_rejects_state_closer_to_previous():
    previous = np.array([[0.0, 0.0]])
    proposal = np.array([[1.0, 0.0]])
    received = np.array([[[0.2, 0.1]]])
    merged, accepted = merge(previous, proposal, received)
    np.testing.assert_array_equal(accepted, [[False]])
    np.testing.assert_array_equal(merged, proposal)


def test_tie_is_rejected():
    # The test is strict: halfway between w and w' is not "closer to w'".
    previous = np.array([[0.0, 0.0]])
    proposal = np.array([[2.0, 0.0]])
    received = np.array([[[1.0, 5.0]]])
    merged, accepted = merge(previous, proposal, received)
    np.testing.assert_array_equal(accepted, [[False]])
    np.testing.assert_array_equal(merged, proposal)


def test_no_local_progress_rejects_everything():
    # w' == w: no received state can be strictly closer to w' than to w.
    state = np.array([[1.0, -2.0, 3.0]])
    received = np.array([[[1.0, -2.0, 3.0]], [[0.0, 0.0, 0.0]]])
    merged, accepted = merge(state, state, received)
    assert not accepted.any()
    np.testing.assert_array_equal(merged, state)


def test_merged_state_is_mean_of_proposal_and_accepted():
    previous = np.zeros((1, 3))
    proposal = np.array([[3.0, 3.0, 3.0]])
    received = np.array(
        [
            [[4.0, 2.0, 3.0]],  # accepted
            [[-1.0, 0.0, 0.5]],  # rejected: closer to the old state
            [[2.0, 4.0, 6.0]],  # accepted
            [[3.0, 3.0, 3.0]],  # accepted: equal to the proposal
        ]
    )
    merged, accepted = merge(previous, proposal, received)
    np.testing.assert_array_equal(accepted[:, 0], [True, False, True, True])
    expected = (proposal[0] + received[0, 0] + received[2, 0] + received[3, 0]) / 4
    np.testing.assert_allclose(merged[0], expected, rtol=1e-15)


def test_decisions_are_per_row():
    # One message, three rows (one-vs-rest classes): each row is judged alone.
    previous = np.zeros((3, 2))
    proposal = np.array([[1.0, 1.0], [1.0, 1.0], [-1.0, 2.0]])
    received = np.array([[[1.2, 0.8], [-0.5, -0.5], [-1.0, 2.0]]])
    merged, accepted = merge(previous, proposal, received)
    np.testing.assert_array_equal(accepted, [[True, False, True]])
    np.testing.assert_allclose(merged[0], [1.1, 0.9], rtol=1e-15)
    np.testing.assert_array_equal(merged[1], proposal[1])
    np.testing.assert_array_equal(merged[2], proposal[2])


def test_column_block_only_touches_its_columns():
    # A partial message carries columns [2, 4) only; the test is computed on
    # those columns, and the others keep the proposal's values.
    previous = np.zeros((2, 6))
    proposal = np.array(
        [[9.0, 9.0, 1.0, 1.0, 9.0, 9.0], [-9.0, -9.0, 2.0, 0.0, -9.0, -9.0]]
    )
    received = np.array([[[1.0, 0.6], [0.1, 0.1]]])
    merged, accepted = merge(previous, proposal, received, column_start=2)
    np.testing.assert_array_equal(accepted, [[True, False]])
    np.testing.assert_allclose(merged[0], [9.0, 9.0, 1.0, 0.8, 9.0, 9.0], rtol=1e-15)
    np.testing.assert_array_equal(merged[1], proposal[1])


def test_column_block_ignores_columns_outside_it():
    # Judged on columns [2, 4) the message equals the proposal: accepted. A
    # kernel that compared it with columns [0, 2) instead would find a tie
    # (distance 2 from both states) and reject it.
    previous = np.array([[0.0, 0.0, 0.0, 0.0]])
    proposal = np.array([[0.0, 0.0, 1.0, 1.0]])
    received = np.array([[[1.0, 1.0]]])
    merged, accepted = merge(previous, proposal, received, column_start=2)
    np.testing.assert_array_equal(accepted, [[True]])
    np.testing.assert_array_equal(merged, proposal)  # mean of equal blocks


def test_works_in_place_and_leaves_inputs_alone():
    rng = np.random.default_rng(0)
    previous = rng.normal(size=(2, 5))
    proposal = previous + rng.normal(scale=0.1, size=(2, 5))
    received = proposal + rng.normal(scale=0.05, size=(3, 2, 5))
    previous_before, received_before = previous.copy(), received.copy()
    target = proposal.copy()
    accepted = parzen_merge(previous, target, received)
    assert accepted.dtype == np.bool_ and accepted.shape == (3, 2)
    assert accepted.any()
    assert not np.array_equal(target, proposal)
    np.testing.assert_array_equal(previous, previous_before)
    np.testing.assert_array_equal(received, received_before)


def test_no_messages():
    previous = np.zeros((2, 3))
    proposal = np.ones((2, 3))
    merged, accepted = merge(previous, proposal, np.empty((0, 2, 3)))
    assert accepted.shape == (0, 2)
    np.testing.assert_array_equal(merged, proposal)


# --------------------------------------------------------------------------- #
# Against the reference                                                       #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("n_messages", "n_rows", "n_columns", "column_start", "width"),
    [(1, 1, 10, 0, 10), (4, 3, 50, 0, 50), (6, 3, 50, 10, 25), (5, 1, 40, 39, 1)],
)
def test_matches_reference(dtype, n_messages, n_rows, n_columns, column_start, width):
    rng = np.random.default_rng(n_messages * 100 + column_start)
    previous = rng.normal(size=(n_rows, n_columns)).astype(dtype)
    proposal = (previous + rng.normal(scale=0.3, size=previous.shape)).astype(dtype)
    # Peers scattered around both states, so that some pass and some fail.
    centres = np.where(rng.random((n_messages, n_rows, 1)) < 0.5, previous, proposal)
    received = (
        centres[:, :, column_start : column_start + width]
        + rng.normal(scale=0.3, size=(n_messages, n_rows, width))
    ).astype(dtype)
    merged, accepted = merge(previous, proposal, received, column_start)
    want_merged, want_accepted = ref.parzen_merge(
        previous, proposal, received, column_start
    )
    np.testing.assert_array_equal(accepted, want_accepted)
    assert merged.dtype == dtype
    np.testing.assert_allclose(
        merged, want_merged, rtol=1e-5 if dtype == np.float32 else 1e-12
    )
    if n_messages * n_rows >= 4:
        assert want_accepted.any() and not want_accepted.all()


def test_read_only_previous_and_received():
    rng = np.random.default_rng(1)
    previous = rng.normal(size=(3, 8))
    proposal = previous + 0.5
    received = proposal + rng.normal(scale=0.4, size=(4, 3, 8))
    want_merged, want_accepted = ref.parzen_merge(previous, proposal, received)
    previous.setflags(write=False)
    received.setflags(write=False)
    merged, accepted = merge(previous, proposal, received)
    np.testing.assert_array_equal(accepted, want_accepted)
    np.testing.assert_allclose(merged, want_merged, rtol=1e-12)


# --------------------------------------------------------------------------- #
# Bad shapes                                                                  #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("received_shape", "column_start"),
    [
        ((3, 4), 0),  # not 3-d
        ((1, 1, 3, 4), 0),  # 4-d
        ((1, 2, 4), 0),  # wrong number of rows
        ((1, 3, 5), 0),  # wider than the state
        ((1, 3, 2), 3),  # block runs past the last column
        ((1, 3, 2), -1),  # negative start
    ],
)
def test_bad_shapes_raise(received_shape, column_start):
    previous = np.zeros((3, 4))
    proposal = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"received|column"):
        parzen_merge(previous, proposal, np.zeros(received_shape), column_start)
    np.testing.assert_array_equal(proposal, 1.0)


@pytest.mark.parametrize("previous_shape", [(3, 2), (1, 4)])
def test_previous_with_other_shape_raises(previous_shape):
    with pytest.raises(ValueError):
        parzen_merge(np.zeros(previous_shape), np.ones((3, 4)), np.full((1, 3, 4), 0.9))


def test_whole_state_test_accepts_or_rejects_all_rows_together():
    previous = np.array([[0.0, 0.0], [0.0, 0.0]])
    proposal = np.array([[1.0, 0.0], [1.0, 0.0]])
    # Row 0 lies near the proposal, row 1 a little nearer the old state:
    # per row, only row 0 passes; summed over rows, the message passes.
    received = np.array([[[1.0, 0.0], [0.4, 0.0]]])
    merged = proposal.copy()
    accepted = parzen_merge(previous, merged, received, per_row=False)
    np.testing.assert_array_equal(accepted, [[True, True]])
    np.testing.assert_allclose(merged, [[1.0, 0.0], [0.7, 0.0]])

    per_row = proposal.copy()
    accepted = parzen_merge(previous, per_row, received)
    np.testing.assert_array_equal(accepted, [[True, False]])
    np.testing.assert_allclose(per_row, [[1.0, 0.0], [1.0, 0.0]])

    # Far nearer the old state in row 1: the whole message is rejected.
    received = np.array([[[1.0, 0.0], [-3.0, 0.0]]])
    merged = proposal.copy()
    accepted = parzen_merge(previous, merged, received, per_row=False)
    np.testing.assert_array_equal(accepted, [[False, False]])
    np.testing.assert_array_equal(merged, proposal)


def test_whole_state_test_on_a_column_block():
    previous = np.zeros((2, 4))
    proposal = np.zeros((2, 4))
    proposal[:, 2:] = 1.0
    received = np.full((1, 2, 2), 0.9)  # the block of columns 2-3
    merged = proposal.copy()
    accepted = parzen_merge(previous, merged, received, column_start=2, per_row=False)
    assert accepted.all()
    np.testing.assert_allclose(merged[:, 2:], 0.95)
    np.testing.assert_array_equal(merged[:, :2], 0.0)


# --------------------------------------------------------------------------- #
# Mixing weights (gossip, elastic averaging)                                  #
# --------------------------------------------------------------------------- #


def test_mixing_weight_moves_a_fraction_of_the_way_to_one_peer():
    proposal = np.array([[1.0, 0.0, 4.0]])
    received = np.array([[[3.0, 2.0, 0.0]]])
    merged = proposal.copy()
    average_merge(merged, received, mixing_weight=0.25)
    np.testing.assert_allclose(merged, [[1.5, 0.5, 3.0]], rtol=1e-15)


def test_mixing_weight_one_half_is_the_plain_mean_of_one_message():
    rng = np.random.default_rng(3)
    proposal = rng.normal(size=(2, 5))
    received = rng.normal(size=(1, 2, 5))
    mixed, mean = proposal.copy(), proposal.copy()
    average_merge(mixed, received, mixing_weight=0.5)
    average_merge(mean, received)
    np.testing.assert_allclose(mixed, mean, rtol=1e-14)


def test_mixing_weight_keeps_own_share_per_message():
    # Two messages at m = 0.1: 0.81 of the own state, 0.095 of each peer's.
    proposal = np.array([[10.0]])
    received = np.array([[[0.0]], [[20.0]]])
    merged = proposal.copy()
    average_merge(merged, received, mixing_weight=0.1)
    np.testing.assert_allclose(merged, [[0.81 * 10.0 + 0.095 * 20.0]], rtol=1e-14)


def test_parzen_test_then_mixing_weight_on_accepted_rows_only():
    previous = np.zeros((2, 2))
    proposal = np.array([[1.0, 0.0], [1.0, 0.0]])
    received = np.array([[[0.8, 0.4], [-1.0, 0.0]]])  # row 0 passes, row 1 not
    merged = proposal.copy()
    accepted = parzen_merge(previous, merged, received, mixing_weight=0.25)
    np.testing.assert_array_equal(accepted, [[True, False]])
    np.testing.assert_allclose(merged, [[0.95, 0.1], [1.0, 0.0]], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mixing_weight", [0.05, 0.25, 0.5, 0.9])
@pytest.mark.parametrize(
    ("n_messages", "column_start", "width"), [(1, 0, 12), (4, 3, 6)]
)
def test_mixing_weight_matches_reference(
    dtype, mixing_weight, n_messages, column_start, width
):
    rng = np.random.default_rng(n_messages + column_start)
    previous = rng.normal(size=(3, 12)).astype(dtype)
    proposal = (previous + rng.normal(scale=0.3, size=previous.shape)).astype(dtype)
    received = (
        proposal[np.newaxis, :, column_start : column_start + width]
        + rng.normal(scale=0.4, size=(n_messages, 3, width))
    ).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12

    merged = proposal.copy()
    average_merge(merged, received, column_start, mixing_weight)
    want = ref.average_merge(proposal, received, column_start, mixing_weight)
    assert merged.dtype == dtype
    np.testing.assert_allclose(merged, want, rtol=rtol)

    merged = proposal.copy()
    accepted = parzen_merge(
        previous, merged, received, column_start, mixing_weight=mixing_weight
    )
    want, want_accepted = ref.parzen_merge(
        previous, proposal, received, column_start, mixing_weight
    )
    np.testing.assert_array_equal(accepted, want_accepted)
    np.testing.assert_allclose(merged, want, rtol=rtol)


@pytest.mark.parametrize("mixing_weight", [0.0, 1.0, -0.5, 2.0])
def test_mixing_weight_outside_the_open_unit_interval_raises(mixing_weight):
    proposal = np.ones((1, 2))
    with pytest.raises(ValueError, match="mixing_weight"):
        average_merge(proposal, np.zeros((1, 1, 2)), mixing_weight=mixing_weight)
    with pytest.raises(ValueError, match="mixing_weight"):
        parzen_merge(
            np.zeros((1, 2)), proposal, np.zeros((1, 1, 2)), mixing_weight=mixing_weight
        )
    np.testing.assert_array_equal(proposal, 1.0)


def test_average_merge_checks_shapes():
    with pytest.raises(ValueError, match="received"):
        average_merge(np.ones((3, 4)), np.zeros((1, 2, 4)))
