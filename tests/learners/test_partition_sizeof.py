"""The scheduler sees a placed partition's bytes (``dask.sizeof``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from dask.sizeof import sizeof
from distributed.utils_test import gen_cluster

from dask_asgd.learners import Partition

MB = 10**6


def dense_partition(n_rows: int = 1000, n_features: int = 1310) -> Partition:
    # float64: 1000 x 1310 x 8 bytes = 10.5 MB of features.
    return Partition(
        np.zeros((n_rows, n_features)),
        np.ones(n_rows),
        np.ones(n_rows),
        np.zeros(n_rows, dtype=bool),
    )


def test_sizeof_counts_every_array_of_a_dense_partition():
    partition = dense_partition()
    arrays = [partition.X, partition.targets, partition.sample_weight]
    expected = sum(a.nbytes for a in arrays) + partition.validation.nbytes
    assert partition.X.nbytes >= 10 * MB
    assert expected <= sizeof(partition) <= expected + 1024


def test_sizeof_counts_the_three_arrays_of_a_csr_partition():
    n_rows, per_row, n_features = 2000, 500, 400_000
    indices = np.tile(np.arange(0, n_features, n_features // per_row), n_rows)
    indptr = np.arange(0, n_rows * per_row + 1, per_row)
    X = sp.csr_matrix(
        (np.ones(indices.size), indices, indptr), shape=(n_rows, n_features)
    )
    partition = Partition(X, None, np.ones(2000))
    expected = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + 2000 * 8
    assert expected >= 10 * MB
    assert expected <= sizeof(partition) <= expected + 1024


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_the_scheduler_accounts_a_scattered_partition(c, s, a):
    partition = dense_partition()
    [future] = await c.scatter([partition], hash=False)
    assert s.tasks[future.key].nbytes >= partition.X.nbytes
    assert a.data[future.key].X.shape == partition.X.shape
