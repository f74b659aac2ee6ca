"""In-memory rows reach local worker processes through shared memory, and leave
nothing behind: not after a fit, a failed or interrupted placement, nor a
SIGKILLed driver."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster
from distributed.utils_test import poll_for
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from dask_asgd.runtime import _shared_memory
from dask_asgd.runtime._placement import cluster_workers, scatter_in_memory

pytestmark = pytest.mark.skipif(
    not _shared_memory.available(), reason="no /dev/shm on this platform"
)


def segments_of(pid: int) -> list[str]:
    pattern = f"{_shared_memory.SEGMENT_PREFIX}{pid}-*"
    return glob.glob(os.path.join(_shared_memory.SEGMENT_DIRECTORY, pattern))


def scheduler_tasks(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


def assert_nothing_left(client) -> None:
    poll_for(lambda: scheduler_tasks(client) == 0, timeout=10)
    poll_for(
        lambda: all(
            n == 0
            for n in client.run(lambda dask_worker: len(dask_worker.data)).values()
        ),
        timeout=10,
    )
    assert segments_of(os.getpid()) == []


@pytest.fixture(scope="module")
def process_client(local_cluster):
    with Client(local_cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 7))
    X[X < 0.3] = 0.0
    targets = np.where(rng.random(3000) > 0.5, 1.0, -1.0)
    weights = rng.random(3000)
    validation = rng.random(3000) < 0.1
    return X, targets, weights, validation


def worker_partition(dask_worker):
    # The one partition a worker holds, as the kernels see it.
    [partition] = dask_worker.data.values()
    X = partition.X
    dense = X.toarray() if hasattr(X, "indptr") else np.array(X)
    arrays = [X.data, X.indices, X.indptr] if hasattr(X, "indptr") else [X]
    mapped = all(not a.flags.writeable for a in arrays)
    return (
        dense,
        partition.targets,
        partition.sample_weight,
        partition.validation,
        mapped,
    )


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_process_workers_map_their_shuffled_rows(process_client, data, layout):
    X, targets, weights, validation = data
    X_in = sp.csr_matrix(X) if layout == "csr" else X
    workers = cluster_workers(process_client, None)
    assert set(_shared_memory.worker_channels(process_client, workers).values()) == {
        "shared"
    }
    placement = scatter_in_memory(
        process_client,
        workers,
        X_in,
        targets,
        weights,
        validation,
        np.random.default_rng(3),
    )
    try:
        # The worker already unlinked the segment it mapped.
        poll_for(lambda: segments_of(os.getpid()) == [], timeout=10)
        held = process_client.run(worker_partition, workers=workers)
        blocks = np.array_split(np.random.default_rng(3).permutation(3000), 2)
        for address, block in zip(workers, blocks, strict=True):
            dense, got_targets, got_weights, got_validation, mapped = held[address]
            assert mapped, "the worker should read the driver's copy, not its own"
            np.testing.assert_array_equal(dense, X[block])
            np.testing.assert_array_equal(got_targets, targets[block])
            np.testing.assert_array_equal(got_weights, weights[block])
            np.testing.assert_array_equal(got_validation, validation[block])
            assert placement.n_train[address] == block.size - validation[block].sum()
    finally:
        placement.release()
    assert_nothing_left(process_client)


def test_thread_workers_get_the_arrays_themselves():
    with (
        LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        workers = cluster_workers(client, None)
        channels = _shared_memory.worker_channels(client, workers)
        assert set(channels.values()) == {"in-process"}


class Interrupt(KeyboardInterrupt):
    pass


def interrupt_after(n_blocks):
    placed = []

    def on_block_placed(address):
        placed.append(address)
        if len(placed) == n_blocks:
            raise Interrupt

    return on_block_placed, placed


@pytest.mark.parametrize("processes", [True, False])
def test_interrupted_placement_releases_every_placed_block(
    process_client, data, processes
):
    X, targets, weights, _ = data
    with contextlib.ExitStack() as stack:
        client = process_client
        if not processes:
            cluster = stack.enter_context(
                LocalCluster(n_workers=2, processes=False, dashboard_address=None)
            )
            client = stack.enter_context(Client(cluster, set_as_default=False))
        workers = cluster_workers(client, None)
        on_block_placed, placed = interrupt_after(1)
        with pytest.raises(Interrupt):
            scatter_in_memory(
                client,
                workers,
                X,
                targets,
                weights,
                None,
                np.random.default_rng(0),
                on_block_placed=on_block_placed,
            )
        assert len(placed) == 1
        assert_nothing_left(client)


def test_fit_on_process_workers_matches_thread_workers_and_cleans_up(
    process_client,
):
    X, y = make_classification(4000, 10, random_state=0)
    params = dict(max_iter=3, tol=None, random_state=0, communication="off")
    with process_client.as_current():
        on_processes = ASGDClassifier(**params).fit(X, y)
    with (
        LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as threads,
        threads.as_current(),
    ):
        on_threads = ASGDClassifier(**params).fit(X, y)
    np.testing.assert_allclose(on_processes.coef_, on_threads.coef_, rtol=1e-12)
    assert_nothing_left(process_client)


def test_failed_placement_unlinks_the_segments(process_client, data):
    X, targets, weights, _ = data
    workers = cluster_workers(process_client, None)
    # Object arrays cannot go into a segment: the write fails after the
    # segment's name was created and registered.
    bad_targets = targets.astype(object)
    with pytest.raises((TypeError, ValueError)):
        scatter_in_memory(
            process_client,
            workers,
            X,
            bad_targets,
            weights,
            None,
            np.random.default_rng(0),
        )
    assert_nothing_left(process_client)


DRIVER = textwrap.dedent(
    """
    import sys, numpy as np
    from dask_asgd.runtime import _shared_memory as shm
    X = np.ones((1000, 10))
    for _ in range(3):
        path = shm.new_segment_path()
        shm.reaper().register(path)
        shm.write_partition(path, X, None, np.ones(1000), None, np.arange(1000))
        print(path, flush=True)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_segments_go_when_the_driver_is_killed():
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        lines = [driver.stdout.readline().strip() for _ in range(4)]
        assert lines[-1] == "ready"
        paths = lines[:3]
        assert all(os.path.exists(path) for path in paths)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        poll_for(lambda: not any(os.path.exists(p) for p in paths), timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
