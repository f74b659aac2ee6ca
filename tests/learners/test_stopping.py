"""The stopping rules: SGD's on the objective, MiniBatchKMeans' on minibatches."""

from __future__ import annotations

from dask_asgd.learners import Decision, SmoothedInertiaRule, StoppingRule


def decisions(rule, losses, n_train=100.0):
    return [rule.update(loss, n_train, 0.01) for loss in losses]


def test_absolute_rule_counts_epochs_without_tol_per_sample():
    rule = StoppingRule(0.01, 2, early_stopping=False, adaptive=False)
    # Improvements of 0.5 on 100 samples are below tol * n_train = 1.
    assert decisions(rule, [50.0, 49.5, 49.0]) == [
        Decision.CONTINUE,
        Decision.CONTINUE,
        Decision.STOP,
    ]


def test_no_tol_never_stops():
    rule = StoppingRule(None, 1, early_stopping=False, adaptive=False)
    assert set(decisions(rule, [5.0] * 10)) == {Decision.CONTINUE}


def test_smoothed_inertia_rule_waits_for_max_no_improvement():
    # The first minibatch is ignored; then the average must reach a new
    # minimum at least every `max_no_improvement` minibatches.
    rule = SmoothedInertiaRule(0.0, 2, batch_size=10, n_samples=19)
    assert rule.smoothing == 1.0  # 2 * 10 / 20: the average is the last batch
    fired = [rule.update(inertia, 10.0, 1.0) for inertia in (99, 50, 40, 45, 41)]
    assert fired == [False, False, False, False, True]
    assert rule.update(1.0, 10.0, 1.0)  # once fired, it stays fired


def test_smoothed_inertia_rule_fires_on_small_moves():
    rule = SmoothedInertiaRule(0.5, None, batch_size=10, n_samples=100)
    assert [rule.update(10.0, 10.0, shift) for shift in (0.1, 0.6, 0.5)] == [
        False,  # the first minibatch is the initialisation's
        False,
        True,
    ]
    assert not SmoothedInertiaRule(0.0, None, 10, 100).enabled
