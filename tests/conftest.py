"""Shared fixtures: real Dask clusters and the shared data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# distributed's fixtures (``client``, ``loop``, ``cluster_fixture``, ...) for
# tests that want them.
from distributed.utils_test import (  # noqa: F401
    cleanup,
    client,
    cluster_fixture,
    loop,
    loop_in_thread,
)

SHARED_DATA = Path(
    os.environ.get(
        "DASK_ASGD_SHARED_DATA",
        Path(__file__).resolve().parent.parent.parent / "shared" / "data",
    )
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", default=False, help="run slow tests"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def w8a():
    """The LIBSVM w8a data set from ../shared/data, or a skip if it is absent."""
    path = SHARED_DATA / "w8a.svmlight"
    if not path.exists():
        pytest.skip(
            f"w8a data set not found at {path}: download the training part of "
            "LIBSVM's 'w8a' (https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/"
            "datasets/binary.html#w8a) and point DASK_ASGD_SHARED_DATA at the "
            "folder that holds it as w8a.svmlight"
        )
    from sklearn.datasets import load_svmlight_file

    X, y = load_svmlight_file(str(path))
    return X.tocsr(), y


@pytest.fixture(scope="module")
def local_cluster():
    """A LocalCluster of two worker processes, one thread each."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session", autouse=True)
def _shutdown_embedded_cluster():
    yield
    from dask_asgd.backends import shutdown_embedded

    shutdown_embedded()
