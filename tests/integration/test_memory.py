"""Many fits in a row on the same workers: their memory comes back.

A fit's exchange leaves nothing behind on a worker but a few counters: the
unread messages of a closed topic are freed when it closes. Sixty fits with a
3.8 MB state on two worker processes leave each worker's resident memory
where it was after the first fit.
"""

from __future__ import annotations

import gc

import numpy as np
import psutil
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster

from dask_asgd import ASGDClassifier

N_FITS = 60
#: [weights | intercept] of one binary output: 480,001 float64 = 3.84 MB.
N_FEATURES = 480_000
MB = 2**20


def sparse_rows(n_rows: int, per_row: int, seed: int = 0):
    """A CSR matrix whose rows touch the whole width of the state."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, N_FEATURES, size=(n_rows, per_row))
    indices.sort(axis=1)
    X = sp.csr_matrix(
        (
            rng.standard_normal(n_rows * per_row),
            indices.ravel(),
            np.arange(0, n_rows * per_row + 1, per_row),
        ),
        shape=(n_rows, N_FEATURES),
    )
    X.sum_duplicates()
    y = (np.asarray(X.sum(axis=1)).ravel() > 0).astype(int)
    return X, y


def rss_after_gc(dask_worker=None) -> int:
    # Garbage a collection would free is not memory a fit holds on to.
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_worker_memory_after_many_fits_returns_to_its_level_after_the_first():
    X, y = sparse_rows(4096, 20)
    params = dict(
        communication="fixed",
        send_interval=64,  # many exchanges of the 3.8 MB state per fit
        max_iter=2,
        tol=None,
        random_state=0,
    )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        rss: list[dict[str, int]] = []
        received = 0
        for i in range(N_FITS):
            model = ASGDClassifier(**params).fit(X, y)
            received += int(model.history_["messages_received"].sum())
            if i in (0, N_FITS - 1):
                rss.append(client.run(rss_after_gc))
        first, last = rss
        print(
            f"worker RSS after the first and the last of {N_FITS} fits (MiB):",
            {w: (first[w] / MB, last[w] / MB) for w in first},
        )
        # The exchange did run (every fit sent states both ways).
        assert received > 0
        for worker in first:
            assert last[worker] - first[worker] <= 100 * MB, (worker, first, last)
