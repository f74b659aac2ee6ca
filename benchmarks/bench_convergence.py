"""Training loss per epoch: ASGD with state exchange against SimuParallelSGD.

Both modes train the same data on the same cluster with the same seed; the
only difference is ``communication``: ``"fixed"`` (workers push their state to
a random peer every ``send_interval`` samples and merge what passes the
Parzen-window test) or ``"off"`` (workers train alone, the driver averages at
the end). For each number of epochs ``e`` a fresh fit with ``max_iter=e``
(``tol=None``) is made, and the full training objective of the *final*
(averaged) model is measured: mean log loss plus the L2 penalty.

Every mode uses the same tuned learning-rate schedule (``invscaling`` with
``eta0=0.1, power_t=0.5`` by default): scikit-learn's default ``optimal``
schedule spends several epochs shrinking the weights its first huge steps
made, so the loss per epoch would measure that transient and not the
exchange. The schedule was picked by a small grid of scikit-learn's own
SGDClassifier on this data (see the user guide); ``--learning-rate optimal``
gives the default back. Sequential scikit-learn SGD with the same schedule is
printed beside, for scale, and so is the optimum of the objective.

``--skew`` makes the partitions non-identically distributed, as data split by
source often is: rows are ordered so that each worker's share holds mostly one
class (the given fraction), and every mode runs with ``shuffle=False`` so the
rows stay with that worker.

Usage::

    python benchmarks/bench_convergence.py                 # 2,000,000 x 100
    python benchmarks/bench_convergence.py --rows 200000 --epochs 4   # quick
    python benchmarks/bench_convergence.py --skew 0.8                 # non-IID
    python benchmarks/bench_convergence.py --skew 1.0 --average       # averaged SGD
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from distributed import Client, LocalCluster
from scipy.special import log_expit
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier

from dask_asgd import ASGDClassifier


def objective(model: Any, X: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Mean log loss of a fitted linear ``model`` on ``(X, y)`` plus ``alpha``'s L2."""
    margin = X @ model.coef_[0] + model.intercept_[0]
    signed = np.where(y == model.classes_[1], 1.0, -1.0)
    data_term = -log_expit(signed * margin).mean()
    return float(data_term + 0.5 * alpha * np.dot(model.coef_[0], model.coef_[0]))


def skewed_order(
    X: np.ndarray, y: np.ndarray, n_workers: int, majority: float
) -> tuple[np.ndarray, np.ndarray]:
    """Order rows so that worker ``i``'s contiguous share is mostly class ``i % 2``.

    Without shuffling, the estimator gives each worker one contiguous block,
    so each block here holds ``majority`` of one class and the rest of the
    other, like data partitioned by source.
    """
    rng = np.random.default_rng(0)
    pools = [list(rng.permutation(np.flatnonzero(y == c))) for c in (0, 1)]
    share = y.shape[0] // n_workers
    rows: list[int] = []
    for worker in range(n_workers):
        main, other = worker % 2, 1 - worker % 2
        n_main = min(int(share * majority), len(pools[main]))
        n_other = min(share - n_main, len(pools[other]))
        block = pools[main][:n_main] + pools[other][:n_other]
        del pools[main][:n_main], pools[other][:n_other]
        rows.extend(rng.permutation(block).tolist())
    rows.extend(pools[0] + pools[1])
    order = np.asarray(rows)
    return X[order], y[order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--send-interval", type=int, default=4096)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--learning-rate", default="invscaling")
    parser.add_argument("--eta0", type=float, default=0.1)
    parser.add_argument("--power-t", type=float, default=0.5)
    parser.add_argument(
        "--average",
        action="store_true",
        help="averaged SGD (average=True) in every mode, scikit-learn's included",
    )
    parser.add_argument(
        "--skew",
        type=float,
        default=None,
        help="share of each worker's rows from its majority class (e.g. 0.8)",
    )
    args = parser.parse_args()

    X, y = make_classification(
        args.rows, args.features, n_informative=args.features // 5, random_state=0
    )
    shuffle = True
    if args.skew is not None:
        X, y = skewed_order(X, y, args.workers, args.skew)
        shuffle = False
    print(
        f"data: make_classification({args.rows}, {args.features}), "
        f"{args.workers} workers (threads of one process), log_loss, "
        f"alpha={args.alpha}, learning_rate={args.learning_rate}, eta0={args.eta0}, "
        f"power_t={args.power_t}, average={args.average}, "
        f"send_interval={args.send_interval}, "
        f"partitions: {'skewed ' + str(args.skew) if args.skew else 'shuffled'}"
    )
    schedule = {
        "loss": "log_loss",
        "alpha": args.alpha,
        "learning_rate": args.learning_rate,
        "eta0": args.eta0,
        "power_t": args.power_t,
        "average": args.average,
        "tol": None,
        "random_state": 0,
    }
    optimum = LogisticRegression(
        C=1.0 / (args.alpha * X.shape[0]), tol=1e-8, max_iter=1000
    ).fit(X, y)
    print(
        f"optimum of the objective (LogisticRegression): "
        f"{objective(optimum, X, y, args.alpha):.5f}"
    )
    sequential = []
    for epochs in range(1, args.epochs + 1):
        model = SGDClassifier(max_iter=epochs, shuffle=shuffle, **schedule)
        model.fit(X, y)
        sequential.append(objective(model, X, y, args.alpha))
    print(
        "sequential scikit-learn SGD, same schedule, per epoch: "
        + " ".join(f"{loss:.5f}" for loss in sequential)
    )
    modes = {
        "off": {"communication": "off"},
        "fixed": {"communication": "fixed", "send_interval": args.send_interval},
        "fixed, no Parzen": {
            "communication": "fixed",
            "send_interval": args.send_interval,
            "parzen_window": False,
        },
        "adaptive": {"communication": "adaptive", "send_interval": args.send_interval},
        "adaptive, no Parzen": {
            "communication": "adaptive",
            "send_interval": args.send_interval,
            "parzen_window": False,
        },
    }
    table: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    accepted: dict[str, tuple[int, int]] = {}
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            # Thread workers share this process and its data: no per-worker
            # memory limit, or they pause (see the user guide, "Backends").
            memory_limit=0,
        ) as cluster,
        Client(cluster),
    ):
        for epochs in range(1, args.epochs + 1):
            for mode, extra in modes.items():
                model = ASGDClassifier(
                    max_iter=epochs, shuffle=shuffle, **schedule, **extra
                )
                started = time.perf_counter()
                model.fit(X, y)
                seconds = time.perf_counter() - started
                table[mode].append((objective(model, X, y, args.alpha), seconds))
                history = model.history_
                if epochs == args.epochs and "rows_accepted" in history:
                    # Counters are cumulative: the last row of each worker.
                    last = history.groupby("worker").tail(1)
                    accepted[mode] = (
                        int(last["rows_accepted"].sum()),
                        int(last["rows_rejected"].sum()),
                    )
    header = " | ".join(f"{mode:>19} (loss, s)" for mode in modes)
    print(f"{'epochs':>6} | {header}")
    for e in range(args.epochs):
        cells = " | ".join(
            f"{table[mode][e][0]:>19.5f} {table[mode][e][1]:>5.2f}s" for mode in modes
        )
        print(f"{e + 1:>6} | {cells}")
    for mode, (n_accepted, n_rejected) in accepted.items():
        print(
            f"{mode!r}, {args.epochs} epochs: {n_accepted} received rows merged, "
            f"{n_rejected} rejected by the Parzen window"
        )
    target = table["off"][-1][0]
    for mode in modes:
        reached = next(
            (e + 1 for e, (loss, _) in enumerate(table[mode]) if loss <= target), None
        )
        print(
            f"{mode!r} reaches 'off''s {args.epochs}-epoch loss {target:.5f} after "
            f"{reached if reached else 'more than ' + str(args.epochs)} epochs"
        )


if __name__ == "__main__":
    main()
