"""What a fit does when a worker dies under it."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from distributed import Client, LocalCluster
from distributed.utils_test import poll_for
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from dask_asgd._exceptions import FitAbortedError


def training_tasks(client):
    return client.run_on_scheduler(
        lambda dask_scheduler: [
            str(key) for key in dask_scheduler.tasks if "-train-" in str(key)
        ]
    )


@pytest.mark.timeout(120)
def test_killed_worker_fails_the_fit_cleanly():
    X, y = make_classification(100_000, 20, random_state=0)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        model = ASGDClassifier(random_state=0).fit(X[:5000], y[:5000])
        coef = model.coef_.copy()
        outcome: dict = {}

        def long_fit():
            try:
                with client.as_current():
                    model.set_params(max_iter=100_000, tol=None).fit(X, y)
            except BaseException as error:
                outcome["error"] = error

        thread = threading.Thread(target=long_fit)
        thread.start()
        poll_for(lambda: len(training_tasks(client)) == 2, timeout=30)
        victim = sorted(
            client.sync(client.scheduler.identity, n_workers=-1)["workers"]
        )[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=60)
        assert not thread.is_alive()
        error = outcome["error"]
        assert isinstance(error, FitAbortedError)
        assert victim in str(error)
        # The previous model is intact and the cluster holds nothing of the fit.
        assert (model.coef_ == coef).all()
        assert (
            client.run_on_scheduler(
                lambda dask_scheduler: list(dask_scheduler.plugins["asgd"].fits)
            )
            == []
        )
        poll_for(lambda: training_tasks(client) == [], timeout=30)
