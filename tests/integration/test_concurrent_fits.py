"""Fits running at the same time on one cluster keep to their own states."""

from __future__ import annotations

import threading
import time

import pytest
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from tests._cluster_checks import assert_fit_left_nothing, three_process_workers

#: Every received state is merged (no Parzen test), so a state of another
#: fit that reached this one would show in its accuracy.
EXCHANGING = dict(
    max_iter=10,
    tol=None,
    communication="fixed",
    send_interval=256,
    parzen_window=False,
    average=True,
)


@pytest.mark.timeout(300)
def test_eight_concurrent_fits_merge_no_state_of_another():
    X, y = make_classification(
        30_000, 20, n_informative=10, class_sep=2.0, random_state=0
    )
    # Half the fits learn the opposite labels: a state of one half merged
    # into the other pulls its weights the wrong way.
    labels = [y if index % 2 == 0 else 1 - y for index in range(8)]
    with three_process_workers() as client:
        with client.as_current():
            alone = [
                ASGDClassifier(random_state=0, **EXCHANGING).fit(X, labels[i])
                for i in (0, 1)
            ]
        models = [
            ASGDClassifier(random_state=index, **EXCHANGING) for index in range(8)
        ]
        errors: list[BaseException] = []
        spans: dict[int, tuple[float, float]] = {}

        def fit(index):
            try:
                started = time.monotonic()
                with client.as_current():
                    models[index].fit(X, labels[index])
                spans[index] = (started, time.monotonic())
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=fit, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)
        assert not any(thread.is_alive() for thread in threads)
        if errors:
            raise errors[0]
        assert_fit_left_nothing(client)

    # All eight were running at one moment, and each exchanged states.
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())
    assert all(m.history_["messages_received"].max() > 0 for m in models)
    for index, model in enumerate(models):
        reference = alone[index % 2].score(X, labels[index])
        # A merged state of the other half would cost tens of points.
        assert abs(model.score(X, labels[index]) - reference) <= 0.02
