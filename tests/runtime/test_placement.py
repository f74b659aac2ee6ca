"""Placement of Dask input: where each chunk trains, balanced and deterministic."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster, futures_of
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from dask_asgd.runtime._placement import assign_chunks


def rows_per_worker(rows, assignment):
    load: dict[str, int] = {}
    for size, address in zip(rows, assignment, strict=True):
        load[address] = load.get(address, 0) + size
    return load


def test_chunks_stay_with_their_only_holder():
    rows = [100, 100, 100, 50]
    holders = [["b"], ["b"], ["b"], ["a"]]
    assert assign_chunks(rows, holders, ["a", "b"]) == ["b", "b", "b", "a"]


def test_replicated_chunks_balance_the_rows():
    # Every chunk on both workers, as after a fit that copied them around:
    # taking the first holder put 250,000 rows on one worker and 150,000 on
    # the other.
    rows = [50_000] * 8
    holders = [["a", "b"]] * 8
    load = rows_per_worker(rows, assign_chunks(rows, holders, ["a", "b"]))
    assert load == {"a": 200_000, "b": 200_000}


def test_replicas_fill_around_the_fixed_chunks():
    rows = [300, 100, 100, 100, 100]
    holders = [["a"], ["a", "b"], ["a", "b"], ["a", "b"], ["b", "a"]]
    assignment = assign_chunks(rows, holders, ["a", "b"])
    assert assignment[0] == "a"
    # 300 + 100 on one worker, 300 on the other (the tie goes by address).
    assert rows_per_worker(rows, assignment) == {"a": 400, "b": 300}


def test_unheld_chunks_go_to_the_least_loaded_worker_of_the_fit():
    rows = [10, 30, 10]
    # "c" is not one of the fit's workers.
    holders = [["c"], ["a"], []]
    assert assign_chunks(rows, holders, ["a", "b"]) == ["b", "a", "b"]


def test_the_order_dask_lists_holders_in_does_not_matter():
    rng = np.random.default_rng(0)
    rows = [int(r) for r in rng.integers(1, 1000, size=40)]
    workers = ["tcp://w1", "tcp://w2", "tcp://w3"]
    holders = [
        list(rng.choice(workers, size=rng.integers(1, 4), replace=False)) for _ in rows
    ]
    reference = assign_chunks(rows, holders, workers)
    for _ in range(10):
        shuffled = [list(rng.permutation(h)) for h in holders]
        assert (
            assign_chunks(rows, shuffled, list(rng.permutation(workers))) == reference
        )
    load = rows_per_worker(rows, reference)
    # Greedy on the replicated chunks: within one chunk of the mean.
    assert max(load.values()) - min(load.values()) <= 2 * max(rows)


@pytest.mark.timeout(180)
def test_three_fits_of_replicated_dask_input_give_one_model():
    X, y = make_classification(40_000, 20, n_informative=10, random_state=0)
    # The scheduler's active memory manager would drop the replicas made
    # below at a moment of its choosing; the test wants them to stay.
    with (
        dask.config.set({"distributed.scheduler.active-memory-manager.start": False}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        dX = da.from_array(X, chunks=(5_000, 20)).persist()
        dy = da.from_array(y, chunks=5_000).persist()
        # Every chunk on both workers: the case where placement must choose.
        client.replicate(futures_of(dX) + futures_of(dy), n=2)
        holders = client.who_has(futures_of(dX))
        assert all(len(h) == 2 for h in holders.values())
        params = dict(random_state=0, communication="off", max_iter=20, tol=1e-3)
        models = [ASGDClassifier(**params).fit(dX, dy) for _ in range(3)]
    for model in models[1:]:
        np.testing.assert_array_equal(model.coef_, models[0].coef_)
        np.testing.assert_array_equal(model.intercept_, models[0].intercept_)
        assert model.n_iter_ == models[0].n_iter_
    last = models[0].history_.groupby("worker")["samples"].last()
    assert sorted(last) == [20_000, 20_000]
