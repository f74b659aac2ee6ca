"""Whole ``fit`` on one Dask worker against scikit-learn's SGD, same epochs.

Both fit ``make_classification(rows, 100, n_informative=20)`` for the same
number of epochs (``tol=None``), shuffling on, hinge loss and default
schedule; ours runs on a one-worker LocalCluster (threads), so its time
includes placing the data, the training task and the driver. Test accuracy on a
20 % hold-out is printed beside the time.

Usage::

    python benchmarks/bench_fit.py [--rows 1000000] [--epochs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

from distributed import Client, LocalCluster
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from dask_asgd import ASGDClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, y = make_classification(args.rows, 100, n_informative=20, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0
    )
    common = dict(max_iter=args.epochs, tol=None, random_state=0)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        ASGDClassifier(**common).fit(X_train[:1000], y_train[:1000])  # JIT warm-up
        timings: dict[str, list[float]] = {"sklearn": [], "dask-asgd": []}
        scores: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, model in (
                ("sklearn", SGDClassifier(**common)),
                ("dask-asgd", ASGDClassifier(**common)),
            ):
                started = time.perf_counter()
                model.fit(X_train, y_train)
                timings[name].append(time.perf_counter() - started)
                scores[name] = model.score(X_test, y_test)
    best = {name: min(values) for name, values in timings.items()}
    print(
        f"make_classification({args.rows}, 100), {args.epochs} epochs, one worker, "
        f"best of {args.repeats}"
    )
    print(f"{'model':<10} {'fit s':>7} {'samples/s':>12} {'accuracy':>9}")
    for name in timings:
        rate = X_train.shape[0] * args.epochs / best[name]
        print(f"{name:<10} {best[name]:>7.2f} {rate:>12,.0f} {scores[name]:>9.4f}")
    print(f"time ratio dask-asgd / sklearn: {best['dask-asgd'] / best['sklearn']:.2f}")


if __name__ == "__main__":
    main()
