"""
K-Means on a Dask cluster: ASGDKMeans beside MiniBatchKMeans
============================================================

Cluster a Dask array with :class:`dask_asgd.ASGDKMeans` on a
:class:`distributed.LocalCluster` of worker processes (the same code runs on
any cluster: pass its scheduler address with ``--scheduler``), then compare
the inertia with scikit-learn's single-machine
:class:`sklearn.cluster.MiniBatchKMeans` on the same rows, and with
``communication="off"`` (every worker alone, centers averaged at the end).

Run ``python examples/kmeans_on_a_cluster.py`` (400,000 rows; ``--rows`` for
another size: the documentation builds it with 20,000). With matplotlib
installed it plots the inertia per epoch of both fits.
"""

# %%
# Overlapping blobs in a Dask array of row chunks, each chunk generated on a
# worker (as data loaded with Dask would be): during the fit every chunk stays
# on the worker that holds it.
import argparse
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs

from dask_asgd import ASGDKMeans

parser = argparse.ArgumentParser(
    description="ASGDKMeans on a Dask cluster beside MiniBatchKMeans"
)
parser.add_argument("--scheduler", help="address of a running Dask scheduler")
parser.add_argument("--rows", type=int, default=400_000)
parser.add_argument("--clusters", type=int, default=50)
args, _ = parser.parse_known_args()

n_features, n_chunks = 20, 8
centers = np.random.default_rng(1).uniform(-10, 10, (args.clusters, n_features))


def blob_rows(seed: int, n_rows: int) -> np.ndarray:
    rows, _ = make_blobs(n_rows, centers=centers, cluster_std=4.0, random_state=seed)
    return rows


chunk_rows = args.rows // n_chunks
X_dask = da.concatenate(
    [
        da.from_delayed(
            dask.delayed(blob_rows)(seed, chunk_rows),
            shape=(chunk_rows, n_features),
            dtype=np.float64,
        )
        for seed in range(n_chunks)
    ]
)

# %%
# Fit on the cluster, with and without exchanging centers, and beside
# scikit-learn on one core.
if __name__ == "__main__":
    cluster = (
        None
        if args.scheduler
        else LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    )
    models = {}
    with Client(args.scheduler or cluster) as client:
        X_dask = X_dask.persist()  # generate once, on the workers
        for communication in ("adaptive", "off"):
            started = time.perf_counter()
            model = ASGDKMeans(
                args.clusters, communication=communication, random_state=0
            ).fit(X_dask)
            seconds = time.perf_counter() - started
            models[communication] = model
            print(
                f"ASGDKMeans, communication={communication!r}: inertia per row "
                f"{model.inertia_ / X_dask.shape[0]:.2f} after {model.n_iter_} epochs, "
                f"{seconds:.1f} s"
            )
        labels = model.predict(X_dask)  # lazy: a Dask array
        print("rows per cluster:", da.bincount(labels).compute()[:10], "...")
        X = X_dask.compute()  # the same rows in memory, for scikit-learn
    if cluster is not None:
        cluster.close()
    started = time.perf_counter()
    reference = MiniBatchKMeans(args.clusters, n_init=1, random_state=0).fit(X)
    print(
        f"MiniBatchKMeans: inertia per row {reference.inertia_ / X.shape[0]:.2f}, "
        f"{time.perf_counter() - started:.1f} s"
    )

# %%
# The inertia per row after each epoch, summed over the workers at the epoch
# barrier (``history_``), with and without exchange, and scikit-learn's final
# inertia for reference.
if __name__ == "__main__":
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        print("pip install matplotlib to plot the inertia per epoch")
    if plt is not None:
        _, axes = plt.subplots(figsize=(6, 4), constrained_layout=True)
        for communication, fitted in models.items():
            per_epoch = fitted.history_.groupby("epoch")["loss"].first()
            axes.plot(
                per_epoch.index + 1,
                per_epoch.to_numpy(),
                marker="o",
                label=f"ASGDKMeans, communication={communication!r}",
            )
        axes.axhline(
            reference.inertia_ / X.shape[0],
            color="grey",
            linestyle="--",
            label="MiniBatchKMeans (final)",
        )
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_xlabel("epoch")
        axes.set_ylabel("inertia per row")
        axes.legend()
