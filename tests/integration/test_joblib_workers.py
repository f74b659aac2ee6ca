"""Fits in joblib's worker processes: ``GridSearchCV(n_jobs=2)`` without a client.

Every loky worker process starts an embedded cluster of its own; it must have
one worker (joblib already runs a process per core), see the settings of the
process that started the search, and leave no traceback when it exits.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier, _config
from dask_asgd.backends import (
    embedded_client,
    embedded_workers,
    inside_joblib_worker_process,
)

REPOSITORY = Path(__file__).resolve().parents[2]


def fit_and_report(estimator: ASGDClassifier) -> dict:
    """Run in a joblib worker: fit, and say what the process saw."""
    X, y = make_classification(600, 8, random_state=0)
    estimator.fit(X, y)
    return {
        "pid": os.getpid(),
        "joblib_worker": inside_joblib_worker_process(),
        "embedded_workers": len(embedded_client().scheduler_info()["workers"]),
        "mailbox_slots": _config.load().exchange.mailbox_slots,
    }


#: A small search, run with ``n_jobs`` from the command line; prints its best
#: parameters and mean test scores as JSON.
SEARCH_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from sklearn.datasets import make_classification
    from sklearn.model_selection import GridSearchCV

    from dask_asgd import ASGDClassifier

    X, y = make_classification(1500, 10, random_state=0)
    search = GridSearchCV(
        ASGDClassifier(random_state=0, max_iter=20),
        {"alpha": [1e-4, 1e-2], "loss": ["hinge", "log_loss"]},
        cv=3,
        n_jobs=int(sys.argv[1]),
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"].tolist()
    print(json.dumps({"best": search.best_params_, "scores": scores}))
    """
)


def run_search(n_jobs: int) -> subprocess.CompletedProcess:
    """Run :data:`SEARCH_SCRIPT` in a new interpreter, as a user's script runs."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run(
        [sys.executable, "-c", SEARCH_SCRIPT, str(n_jobs)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )


def test_a_search_in_joblib_processes_finds_what_one_process_finds_and_exits_clean():
    in_processes = run_search(n_jobs=2)
    assert in_processes.returncode == 0, in_processes.stderr
    # A loky worker process that closes its embedded cluster badly prints
    # distributed's tracebacks (CommClosedError) on its way out.
    assert "Traceback" not in in_processes.stderr, in_processes.stderr
    assert "Error" not in in_processes.stderr, in_processes.stderr
    in_one_process = run_search(n_jobs=1)
    assert in_one_process.returncode == 0, in_one_process.stderr
    found = json.loads(in_processes.stdout.strip().splitlines()[-1])
    expected = json.loads(in_one_process.stdout.strip().splitlines()[-1])
    assert found["best"] == expected["best"]
    np.testing.assert_allclose(found["scores"], expected["scores"])


def test_joblib_workers_train_on_one_worker_with_the_parents_settings():
    assert _config.load().exchange.mailbox_slots != 7
    with dask.config.set({"asgd.exchange.mailbox-slots": 7}):
        reports = Parallel(n_jobs=2, backend="loky")(
            delayed(fit_and_report)(ASGDClassifier(max_iter=2, tol=None))
            for _ in range(4)
        )
    assert all(report["pid"] != os.getpid() for report in reports)
    assert [report["joblib_worker"] for report in reports] == [True] * 4
    assert [report["embedded_workers"] for report in reports] == [1] * 4
    assert [report["mailbox_slots"] for report in reports] == [7] * 4


def test_this_process_keeps_its_settings_when_it_unpickles_an_estimator():
    with dask.config.set({"asgd.exchange.mailbox-slots": 7}):
        pickled = pickle.dumps(ASGDClassifier(alpha=0.5))
    restored = pickle.loads(pickled)
    assert not inside_joblib_worker_process()
    assert _config.load().exchange.mailbox_slots != 7
    assert restored.get_params() == ASGDClassifier(alpha=0.5).get_params()
    assert not hasattr(restored, "_asgd_driver_settings")


@pytest.mark.parametrize(
    ("configured", "in_joblib_worker", "expected"),
    [(None, True, 1), (3, True, 3), (3, False, 3), (None, False, os.cpu_count())],
)
def test_embedded_cluster_size(monkeypatch, configured, in_joblib_worker, expected):
    monkeypatch.setattr(
        "dask_asgd.backends.inside_joblib_worker_process", lambda: in_joblib_worker
    )
    settings = _config.EmbeddedConfig(
        n_workers=configured, threads_per_worker=1, processes=False
    )
    assert embedded_workers(settings) == expected


def settings_seen_on_a_dask_worker(estimator: ASGDClassifier) -> tuple[bool, int]:
    """Run in a task on a Dask worker process, with an estimator for argument."""
    return inside_joblib_worker_process(), _config.load().exchange.mailbox_slots


def test_a_dask_worker_process_keeps_its_settings(local_cluster):
    from distributed import Client

    with Client(local_cluster) as client:
        with dask.config.set({"asgd.exchange.mailbox-slots": 7}):
            future = client.submit(
                settings_seen_on_a_dask_worker, ASGDClassifier(), pure=False
            )
        joblib_worker, mailbox_slots = future.result()
    assert not joblib_worker
    assert mailbox_slots != 7


def test_an_estimator_pickles_when_the_configuration_has_no_asgd_section(
    monkeypatch,
):
    # As after distributed.utils_test's fixtures reset the configuration.
    monkeypatch.delitem(dask.config.config, "asgd", raising=False)
    restored = pickle.loads(pickle.dumps(ASGDClassifier(alpha=0.5)))
    assert restored.alpha == 0.5
