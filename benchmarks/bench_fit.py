"""Whole ``fit`` end to end: scikit-learn against dask-asgd, side by side.

Two tables, each timed in one run with rounds interleaved (the fastest of
``--repeats`` kept) and test accuracy on a hold-out printed beside the time:

1. A tuned SGD user's settings (``loss="log_loss", alpha=1e-6,
   learning_rate="invscaling", eta0=0.01``, 3 epochs, ``tol=None``) on
   ``make_classification(rows, 100, n_informative=20)``: scikit-learn's
   ``SGDClassifier`` in this process; dask-asgd embedded (no client: the
   default threads cluster); dask-asgd on a ``LocalCluster`` of
   ``--n-workers`` worker processes with the NumPy arrays (placement
   included); and the same cluster with the data already persisted as a Dask
   array (persisting not timed).
2. One worker, ``--epochs`` epochs on half the rows, shuffling on for both,
   scikit-learn's default schedule, for the hinge and the log loss:
   scikit-learn against dask-asgd on a one-worker threads cluster, whose
   time includes placing the rows, the training task and the driver.

Every configuration fits once on a small sample first, so that compiling
the kernels (cached on disk) is not timed.

Usage::

    PYTHONPATH=. python benchmarks/bench_fit.py [--rows 1000000] [--n-workers 2]
        [--epochs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier

from dask_asgd import ASGDClassifier

TUNED = dict(
    loss="log_loss",
    alpha=1e-6,
    learning_rate="invscaling",
    eta0=0.01,
    max_iter=3,
    tol=None,
    random_state=0,
)
#: Rows of the held-out test set, generated with the training rows.
TEST_ROWS = 200_000


def timed_rounds(
    runs: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run every configuration once per round, rotating who goes first.

    Returns the fastest time of each and its last fitted model.
    """
    best = dict.fromkeys(runs, np.inf)
    models: dict[str, Any] = {}
    names = list(runs)
    for round_number in range(repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            models[name] = runs[name]()
            best[name] = min(best[name], time.perf_counter() - started)
    return best, models


def print_table(
    title: str,
    best: dict[str, float],
    models: dict[str, Any],
    X_test: np.ndarray,
    y_test: np.ndarray,
    samples: int,
) -> None:
    print(title)
    header = f"{'configuration':<34} {'fit s':>7} {'/ sklearn':>9} {'samples/s':>12}"
    print(f"{header} {'accuracy':>9}")
    print("-" * (len(header) + 10))
    baseline = best["sklearn"]
    for name, seconds in best.items():
        score = models[name].score(X_test, y_test)
        print(
            f"{name:<34} {seconds:>7.2f} {seconds / baseline:>9.2f} "
            f"{samples / seconds:>12,.0f} {score:>9.4f}"
        )
    print()


def fit_on(client: Client | None, model: Any, X: Any, y: Any) -> Any:
    """Fit ``model`` on the client's cluster (or embedded when None)."""
    with ExitStack() as stack:
        if client is not None:
            stack.enter_context(client.as_current())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(X, y)


def tuned_table(args: argparse.Namespace) -> None:
    """Table 1: the tuned settings on every way of running a fit."""
    X, y = make_classification(
        args.rows + TEST_ROWS, 100, n_informative=20, random_state=0
    )
    X_train, y_train = X[: args.rows], y[: args.rows]
    X_test, y_test = X[args.rows :], y[args.rows :]
    with (
        LocalCluster(
            n_workers=args.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        chunk_rows = -(-args.rows // (4 * args.n_workers))
        dX, dy = client.persist(
            [
                da.from_array(X_train, chunks=(chunk_rows, 100)),
                da.from_array(y_train, chunks=chunk_rows),
            ]
        )
        with client.as_current():
            wait([dX, dy])
        small = slice(0, 5000)
        for target in (None, client):  # compile before timing
            fit_on(target, ASGDClassifier(**TUNED), X_train[small], y_train[small])
        fit_on(client, ASGDClassifier(**TUNED), dX[:5000], dy[:5000])
        runs = {
            "sklearn": lambda: fit_on(None, SGDClassifier(**TUNED), X_train, y_train),
            "dask-asgd embedded (threads)": lambda: fit_on(
                None, ASGDClassifier(**TUNED), X_train, y_train
            ),
            f"{args.n_workers} processes, NumPy input": lambda: fit_on(
                client, ASGDClassifier(**TUNED), X_train, y_train
            ),
            f"{args.n_workers} processes, persisted Dask": lambda: fit_on(
                client, ASGDClassifier(**TUNED), dX, dy
            ),
        }
        best, models = timed_rounds(runs, args.repeats)
    print_table(
        f"make_classification({args.rows:,}, 100), log_loss, alpha=1e-6, "
        f"invscaling eta0=0.01, 3 epochs, tol=None; LocalCluster of "
        f"{args.n_workers} worker processes; best of {args.repeats}",
        best,
        models,
        X_test,
        y_test,
        args.rows * 3,
    )


def one_worker_table(args: argparse.Namespace) -> None:
    """Table 2: one worker against scikit-learn, hinge and log loss."""
    rows = args.rows // 2
    X, y = make_classification(rows + TEST_ROWS, 100, n_informative=20, random_state=1)
    X_train, y_train = X[:rows], y[:rows]
    X_test, y_test = X[rows:], y[rows:]
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        runs: dict[str, Callable[[], Any]] = {}
        for loss in ("hinge", "log_loss"):
            common = dict(loss=loss, max_iter=args.epochs, tol=None, random_state=0)
            fit_on(client, ASGDClassifier(**common), X_train[:5000], y_train[:5000])
            runs[f"sklearn {loss}"] = lambda c=common: fit_on(
                None, SGDClassifier(**c), X_train, y_train
            )
            runs[f"dask-asgd {loss}"] = lambda c=common: fit_on(
                client, ASGDClassifier(**c), X_train, y_train
            )
        best, models = timed_rounds(runs, args.repeats)
    for loss in ("hinge", "log_loss"):
        names = [f"sklearn {loss}", f"dask-asgd {loss}"]
        print_table(
            f"one worker (threads), {loss}, {rows:,} x 100, {args.epochs} epochs, "
            f"shuffle on, tol=None; best of {args.repeats}",
            {"sklearn": best[names[0]], names[1]: best[names[1]]},
            {"sklearn": models[names[0]], names[1]: models[names[1]]},
            X_test,
            y_test,
            rows * args.epochs,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--n-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="of the one-worker table")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", choices=("tuned", "one-worker"), help="print one table only"
    )
    args = parser.parse_args()
    # The embedded cluster's start and stop would fill the tables with logs.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.only != "one-worker":
        tuned_table(args)
    if args.only != "tuned":
        one_worker_table(args)


if __name__ == "__main__":
    main()
