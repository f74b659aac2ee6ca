"""The balancer reacts to links shaped by the exchange's link simulator."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster

from dask_asgd import ASGDClassifier


@pytest.fixture(scope="module")
def wide_sparse():
    """200,000 rows of 50,000 sparse features: a 400 KB state, fast epochs."""
    rng = np.random.default_rng(0)
    n_rows, n_features, per_row = 200_000, 50_000, 20
    indices = rng.integers(0, n_features, size=n_rows * per_row)
    X = sp.csr_matrix(
        (
            rng.random(n_rows * per_row),
            indices,
            np.arange(0, n_rows * per_row + 1, per_row),
        ),
        shape=(n_rows, n_features),
    )
    X.sum_duplicates()
    y = (X @ rng.normal(size=n_features) > 0).astype(int)
    return X, y


def adaptive_fit(X, y, bandwidth, send_interval, **params):
    settings = {
        "asgd.exchange.simulate.bandwidth": bandwidth,
        "asgd.balancing.report-period": "0.1s",
    }
    with (
        dask.config.set(settings),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        return ASGDClassifier(
            communication="adaptive",
            send_interval=send_interval,
            max_iter=40,
            tol=None,
            random_state=0,
            **params,
        ).fit(X, y)


def final_intervals(model):
    control = model.communication_history_
    return control.groupby("worker").last()


def test_send_interval_rises_on_a_slow_link(wide_sparse):
    X, y = wide_sparse
    # 1 MB/s: a whole 400 KB state takes 0.4 s to send.
    model = adaptive_fit(X, y, "1MB", send_interval=20_000)
    final = final_intervals(model)
    assert len(final) == 2
    slow_enough = (final["send_interval"] > 5 * 20_000) | (final["message_size"] < 0.5)
    assert slow_enough.all(), final
    # Training went on meanwhile (how far depends on the machine's load).
    assert model.score(X, y) > 0.7


def test_send_interval_falls_on_a_fast_link_when_exchange_pays(wide_sparse):
    # Each worker holds one class (rows sorted by label, not shuffled) and
    # merges average: a merge moves the state further than the worker's own
    # training, exchange pays, and on a fast link the interval falls from its
    # long start to what the CPU and link afford.
    X, y = wide_sparse
    order = np.argsort(y, kind="stable")
    model = adaptive_fit(
        X[order], y[order], None, send_interval=200_000,
        shuffle=False, average=True, parzen_window=False,
    )  # fmt: skip
    control = model.communication_history_
    paid = control[control["reason"].str.contains("exchange pays")]
    assert len(paid) > 0, control[["worker", "send_interval", "reason"]]
    # Each time the law saw exchange pay, it cut the interval at least in half
    # (each worker's costs, and so where its interval goes otherwise, depend
    # on the machine's load).
    assert (paid["send_interval"] < 200_000 / 2).all(), paid
    assert len(final_intervals(model)) == 2
