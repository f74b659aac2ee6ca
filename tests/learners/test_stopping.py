"""The shared stopping rule, absolute (SGD) and relative (K-Means)."""

from __future__ import annotations

from dask_asgd.learners import Decision, StoppingRule


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


def test_relative_rule_scales_with_the_best_loss():
    # The same losses times 1000: an absolute tol would never stop, the
    # relative one needs a 1 % fall of the best loss.
    rule = StoppingRule(0.01, 2, early_stopping=False, adaptive=False, relative=True)
    assert decisions(rule, [50_000.0, 49_000.0, 48_800.0, 48_700.0]) == [
        Decision.CONTINUE,
        Decision.CONTINUE,
        Decision.CONTINUE,
        Decision.STOP,
    ]


def test_no_tol_never_stops():
    rule = StoppingRule(None, 1, early_stopping=False, adaptive=False, relative=True)
    assert set(decisions(rule, [5.0] * 10)) == {Decision.CONTINUE}
