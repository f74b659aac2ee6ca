"""Training loss per epoch: ASGD with state exchange against SimuParallelSGD.

Every mode trains the same data on the same cluster with the same seed; the
only difference is ``communication``: ``"fixed"`` (workers push their state to
a random peer every ``send_interval`` samples and merge what passes the
Parzen-window test), ``"adaptive"`` (the same, tuned by the balancer) or
``"off"`` (workers train alone, the driver averages at the end). For each
number of epochs ``e`` a fresh fit with ``max_iter=e`` (``tol=None``) is made,
and the training objective of the *final* (averaged) model is measured.

``--model logistic`` (default): ``ASGDClassifier(loss="log_loss")`` on
``make_classification``; the objective is the mean log loss plus the L2
penalty. ``--model kmeans``: ``ASGDKMeans`` on ``make_blobs`` with
overlapping clusters (``--clusters``, ``--cluster-std``); the objective is the
inertia per row (mean squared distance to the closest center), printed beside
scikit-learn's sequential ``MiniBatchKMeans`` (same batch size, epochs and
k-means++ seeding) and Lloyd's ``KMeans``.

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
    python benchmarks/bench_convergence.py --model kmeans --epochs 4  # K-Means
    python benchmarks/bench_convergence.py --simulate --message-seconds 0.0015

``--simulate`` fits the same modes on the same data in
``dask_asgd.simulation`` (the real training loop, exchange and balancing law
on simulated workers and links), so the real and the simulated tables can be
set side by side; ``--message-seconds`` gives every message the fixed cost a
real send has in the training thread.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, LocalCluster
from scipy.special import log_expit
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.datasets import make_blobs, make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier

from dask_asgd import ASGDClassifier, ASGDKMeans
from dask_asgd.simulation import LinkModel, simulate


def log_loss_objective(model: Any, X: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Mean log loss of a fitted linear ``model`` on ``(X, y)`` plus ``alpha``'s L2."""
    margin = X @ model.coef_[0] + model.intercept_[0]
    signed = np.where(y == model.classes_[1], 1.0, -1.0)
    data_term = -log_expit(signed * margin).mean()
    return float(data_term + 0.5 * alpha * np.dot(model.coef_[0], model.coef_[0]))


def inertia_per_row(model: Any, X: np.ndarray) -> float:
    """Mean squared distance of the rows of ``X`` to their closest center."""
    return -float(model.score(X)) / X.shape[0]


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


@dataclass
class Problem:
    """Data, the estimator to train and how to score it."""

    X: np.ndarray
    y: np.ndarray | None
    #: Builds the estimator from a random_state and mode-specific arguments.
    estimator: Callable[..., Any]
    #: Training objective of a fitted model (lower is better).
    objective: Callable[[Any], float]
    #: Objective of the sequential scikit-learn counterpart after each number
    #: of epochs, for a random_state.
    sequential: Callable[[int], list[float]]
    #: What the sequential counterpart is, for the printout.
    sequential_name: str


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["logistic", "kmeans"], default="logistic")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--send-interval", type=int, default=4096)
    parser.add_argument(
        "--intervals",
        help="comma-separated send intervals: one 'fixed-N' mode each (default: "
        "--send-interval only, named 'fixed')",
    )
    parser.add_argument(
        "--parzen",
        choices=["both", "on", "off"],
        default="both",
        help="the exchanging modes with the Parzen test, without it, or both",
    )
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
    parser.add_argument("--clusters", type=int, default=50, help="K-Means only")
    parser.add_argument(
        "--cluster-std",
        type=float,
        default=4.0,
        help="K-Means only: spread of each blob (centers lie in [-10, 10]^d)",
    )
    parser.add_argument("--batch-size", type=int, default=1024, help="K-Means only")
    parser.add_argument("--seed", type=int, default=0, help="data set seed")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train every mode with random_state 0, 1, ... (seeds the start, "
        "the rows' assignment to workers and the shuffling)",
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="process workers (the rows are copied into each) instead of threads",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="fit every mode in dask_asgd.simulation instead of on a cluster "
        "(same data, estimators and scoring; seconds are simulated)",
    )
    parser.add_argument(
        "--message-seconds",
        type=float,
        default=0.0,
        help="with --simulate: training-thread seconds each message costs "
        "(about 0.0015 on thread workers of this project's 2-core machine)",
    )
    return parser.parse_args()


def logistic_problem(args: argparse.Namespace) -> Problem:
    """Log loss on make_classification, with its optimum and sequential SGD."""
    X, y = make_classification(
        args.rows,
        args.features,
        n_informative=args.features // 5,
        random_state=args.seed,
    )
    shuffle = True
    if args.skew is not None:
        X, y = skewed_order(X, y, args.workers, args.skew)
        shuffle = False
    print(
        f"data: make_classification({args.rows}, {args.features}), "
        f"{args.workers} workers ({'processes' if args.processes else 'threads'}), "
        "log_loss, "
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
    }
    optimum = LogisticRegression(
        C=1.0 / (args.alpha * X.shape[0]), tol=1e-8, max_iter=1000
    ).fit(X, y)
    print(
        f"optimum of the objective (LogisticRegression): "
        f"{log_loss_objective(optimum, X, y, args.alpha):.5f}"
    )

    def sequential(random_state: int) -> list[float]:
        losses = []
        for epochs in range(1, args.epochs + 1):
            model = SGDClassifier(
                max_iter=epochs, shuffle=shuffle, random_state=random_state, **schedule
            )
            model.fit(X, y)
            losses.append(log_loss_objective(model, X, y, args.alpha))
        return losses

    return Problem(
        X,
        y,
        lambda random_state, **extra: ASGDClassifier(
            shuffle=shuffle, random_state=random_state, **schedule, **extra
        ),
        lambda model: log_loss_objective(model, X, y, args.alpha),
        sequential,
        "scikit-learn SGDClassifier, same schedule",
    )


def kmeans_problem(args: argparse.Namespace) -> Problem:
    """Inertia on overlapping blobs, beside MiniBatchKMeans and Lloyd's KMeans."""
    X, _ = make_blobs(
        args.rows,
        args.features,
        centers=args.clusters,
        cluster_std=args.cluster_std,
        random_state=args.seed,
    )
    print(
        f"data: make_blobs({args.rows}, {args.features}, centers={args.clusters}, "
        f"cluster_std={args.cluster_std}), {args.workers} workers "
        f"({'processes' if args.processes else 'threads'}), "
        f"K-Means with n_clusters={args.clusters}, "
        f"batch_size={args.batch_size}, k-means++ on 3 * batch_size rows, "
        f"send_interval={args.send_interval}"
    )
    lloyd = KMeans(args.clusters, n_init=1, random_state=0).fit(X)
    print(
        f"Lloyd's KMeans (n_init=1, random_state=0, {lloyd.n_iter_} iterations): "
        f"{lloyd.inertia_ / X.shape[0]:.3f}"
    )

    def sequential(random_state: int) -> list[float]:
        losses = []
        for epochs in range(1, args.epochs + 1):
            model = MiniBatchKMeans(
                args.clusters,
                batch_size=args.batch_size,
                max_iter=epochs,
                n_init=1,
                tol=0.0,
                max_no_improvement=None,
                random_state=random_state,
            ).fit(X)
            losses.append(inertia_per_row(model, X))
        return losses

    return Problem(
        X,
        None,
        lambda random_state, **extra: ASGDKMeans(
            args.clusters,
            batch_size=args.batch_size,
            max_no_improvement=None,
            random_state=random_state,
            **extra,
        ),
        lambda model: inertia_per_row(model, X),
        sequential,
        "scikit-learn MiniBatchKMeans",
    )


#: Fits an estimator on the problem's data; returns the fitted model and the
#: seconds the fit took.
Fitter = Callable[[Any, Problem], tuple[Any, float]]


def fit_timed_on_cluster(model: Any, problem: Problem) -> tuple[Any, float]:
    """Fit on the current client's cluster, timed."""
    started = time.perf_counter()
    if problem.y is None:
        model.fit(problem.X)
    else:
        model.fit(problem.X, problem.y)
    return model, time.perf_counter() - started


def simulated_fitter(n_workers: int, message_seconds: float) -> Fitter:
    """Fit in the simulator instead: the real loop, learners, exchange and
    law on simulated workers, with simulated seconds."""
    network = LinkModel(message_seconds=message_seconds)

    def fit(model: Any, problem: Problem) -> tuple[Any, float]:
        fitted, simulated = simulate(
            model, problem.X, problem.y, n_workers=n_workers, network=network
        )
        return fitted, simulated.seconds

    return fit


def run_modes(
    problem: Problem,
    modes: dict[str, dict[str, Any]],
    epochs: int,
    random_state: int,
    fit: Fitter = fit_timed_on_cluster,
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, tuple[int, int]]]:
    """(objective, seconds) of a fresh fit per mode and number of epochs."""
    table: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    accepted: dict[str, tuple[int, int]] = {}
    for max_iter in range(1, epochs + 1):
        for mode, extra in modes.items():
            model = problem.estimator(random_state, max_iter=max_iter, **extra)
            model, seconds = fit(model, problem)
            table[mode].append((problem.objective(model), seconds))
            history = model.history_
            if max_iter == epochs and "rows_accepted" in history:
                # Counters are cumulative: the last row of each worker.
                last = history.groupby("worker").tail(1)
                accepted[mode] = (
                    int(last["rows_accepted"].sum()),
                    int(last["rows_rejected"].sum()),
                )
    return table, accepted


def exchange_modes(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``off``, then each fixed interval and ``adaptive``, with and/or
    without the Parzen test (``--parzen``)."""
    intervals = [int(i) for i in args.intervals.split(",")] if args.intervals else None
    exchanging = {
        f"fixed-{i}": {"communication": "fixed", "send_interval": i}
        for i in (intervals or [])
    } or {"fixed": {"communication": "fixed", "send_interval": args.send_interval}}
    exchanging["adaptive"] = {
        "communication": "adaptive",
        "send_interval": args.send_interval,
    }
    modes: dict[str, dict[str, Any]] = {"off": {"communication": "off"}}
    for name, params in exchanging.items():
        if args.parzen in ("both", "on"):
            modes[name] = params
        if args.parzen in ("both", "off"):
            modes[f"{name}, no Parzen"] = {**params, "parzen_window": False}
    return modes


def print_table(
    table: dict[str, list[tuple[float, float]]],
    accepted: dict[str, tuple[int, int]],
    digits: int,
) -> None:
    """The per-epoch table, the Parzen counts, and when each mode reaches off."""
    modes = list(table)
    epochs = len(table["off"])
    header = " | ".join(f"{mode:>19} (loss, s)" for mode in modes)
    print(f"{'epochs':>6} | {header}")
    for e in range(epochs):
        cells = " | ".join(
            f"{table[mode][e][0]:>19.{digits}f} {table[mode][e][1]:>5.2f}s"
            for mode in modes
        )
        print(f"{e + 1:>6} | {cells}")
    for mode, (n_accepted, n_rejected) in accepted.items():
        print(
            f"{mode!r}, {epochs} epochs: {n_accepted} received rows merged, "
            f"{n_rejected} rejected by the Parzen window"
        )
    target = table["off"][-1][0]
    for mode in modes:
        reached = next(
            (e + 1 for e, (loss, _) in enumerate(table[mode]) if loss <= target), None
        )
        print(
            f"{mode!r} reaches 'off''s {epochs}-epoch loss {target:.{digits}f} "
            f"after {reached if reached else 'more than ' + str(epochs)} epochs"
        )


@contextlib.contextmanager
def real_cluster(args: argparse.Namespace) -> Iterator[None]:
    """A LocalCluster of ``--workers`` workers and a client, as the default."""
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=args.processes,
            dashboard_address=None,
            # Thread workers share this process and its data: no per-worker
            # memory limit, or they pause (see the user guide, "Backends").
            memory_limit="auto" if args.processes else 0,
        ) as cluster,
        Client(cluster),
    ):
        yield


def main() -> None:
    args = parse_arguments()
    problem = (kmeans_problem if args.model == "kmeans" else logistic_problem)(args)
    digits = 3 if args.model == "kmeans" else 5
    modes = exchange_modes(args)
    last_epoch: dict[str, list[float]] = {mode: [] for mode in modes}
    fit = fit_timed_on_cluster
    cluster_context: Any = contextlib.nullcontext()
    if args.simulate:
        fit = simulated_fitter(args.workers, args.message_seconds)
        print(f"simulated: {args.message_seconds} s per message")
    else:
        cluster_context = real_cluster(args)
    with cluster_context:
        for random_state in range(args.repeats):
            print(f"\nrandom_state={random_state}")
            print(
                f"sequential {problem.sequential_name}, per epoch: "
                + " ".join(
                    f"{loss:.{digits}f}" for loss in problem.sequential(random_state)
                )
            )
            table, accepted = run_modes(problem, modes, args.epochs, random_state, fit)
            print_table(table, accepted, digits)
            for mode in modes:
                last_epoch[mode].append(table[mode][-1][0])
    if args.repeats > 1:
        print(f"\nafter {args.epochs} epochs, ratio to 'off' over the random states:")
        off = np.array(last_epoch["off"])
        for mode in modes:
            ratio = np.array(last_epoch[mode]) / off
            print(
                f"{mode:>20}: "
                + " ".join(f"{r:.4f}" for r in ratio)
                + f"  (more than 0.1 % lower in {int((ratio < 0.999).sum())}, "
                f"higher in {int((ratio > 1.001).sum())} of {ratio.size})"
            )


if __name__ == "__main__":
    main()
