"""Time to a target test accuracy: dask-asgd against what users would run instead.

The target of each data set is scikit-learn's ``LogisticRegression`` (lbfgs,
default ``C``, run to convergence) test accuracy minus half a point, on the
same split. Every system then trains the same training rows, and the table
gives the time of the first epoch (pass) whose model reaches the target, or
the best accuracy a system reached and when. ``--plot`` draws accuracy
against time. How each system is run and timed: ``_peer_systems.py``.

Data sets (one table each, all in one run on one machine):

* ``dense``: ``--rows`` x 100 Gaussian rows whose 100 latent factors have
  scales from 1 down to ``10**-spread``, mixed by a random rotation (so no
  per-feature scaling undoes it) and each column standardised; the label is
  logistic in the latent factors, each factor weighing the same. The small
  factors make the problem ill-conditioned, so SGD needs several epochs.
* ``sparse``: ``--sparse-rows`` x ``--sparse-features`` rows with
  ``--nnz`` non-zeros each (row norm 1), feature frequency falling as a power
  law as words in text do; the label is logistic in a Gaussian weight vector.
* ``w8a``: LIBSVM's w8a (``--w8a``), 25 % held out, as the tests split it.

Every SGD system (dask-asgd, ``SGDClassifier``, ``Incremental``) shares one
schedule per data set, picked by a grid of ``SGDClassifier`` fits on the data
(see ``docs/benchmarks.rst``): ``TUNED``. dask-asgd runs with communication
off, fixed and adaptive, embedded (its default threads cluster) and on a
``LocalCluster`` of ``--n-workers`` processes with the NumPy/SciPy rows; the
dask-ml systems get the rows as Dask arrays persisted on that cluster
(persisting not timed).

Usage::

    PYTHONPATH=. python benchmarks/bench_peers.py [--rows 2000000]
        [--sparse-rows 1000000] [--only dense] [--max-epochs 5] [--plot peers.png]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _peer_systems import (
    Problem,
    Race,
    Trace,
    dask_asgd,
    dask_ml_incremental,
    dask_ml_logistic,
    run_system,
    scratch_dir,
    sklearn_lbfgs,
    sklearn_sgd,
    snapml_logistic,
    vowpal_wabbit,
    warm_up_dask_asgd,
)
from bench_fit import TEST_ROWS
from distributed import Client, LocalCluster
from scipy.special import expit
from scipy.stats import ortho_group
from sklearn.datasets import load_svmlight_file
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_W8A = REPO_ROOT / ".." / "shared" / "data" / "w8a.svmlight"
#: Points below the reference accuracy that still count as reaching it.
TARGET_GAP = 0.005
#: The schedule every SGD system uses, per data set (see the module docstring).
TUNED = {
    "dense": dict(
        loss="log_loss",
        alpha=1e-6,
        learning_rate="constant",
        eta0=0.1,
        average=True,
        tol=None,
    ),
    "sparse": dict(
        loss="log_loss",
        alpha=1e-6,
        learning_rate="optimal",
        tol=None,
    ),
    "w8a": dict(
        loss="log_loss",
        alpha=1e-6,
        learning_rate="constant",
        eta0=1.0,
        average=True,
        tol=None,
    ),
}


def dense_problem(rows: int, spread: float) -> Problem:
    """Ill-conditioned dense rows: see ``dense`` in the module docstring."""
    rng = np.random.default_rng(0)
    features = 100
    factors = rng.standard_normal((rows + TEST_ROWS, features))
    weights = rng.standard_normal(features) * 3 / np.sqrt(features)
    margin = factors @ weights
    y = (margin + rng.logistic(size=margin.shape) > 0).astype(np.int64)
    factors *= np.logspace(0, -spread, features)
    X = factors @ ortho_group.rvs(features, random_state=0).T
    del factors
    X /= X.std(axis=0)
    return Problem("dense", X[:rows], y[:rows], X[rows:], y[rows:], TUNED["dense"])


def sparse_problem(rows: int, features: int, nnz: int) -> Problem:
    """Text-like sparse rows: see ``sparse`` in the module docstring."""
    rng = np.random.default_rng(1)
    total = rows + TEST_ROWS
    frequency = 1.0 / np.arange(1, features + 1) ** 0.6
    columns = rng.choice(features, size=total * nnz, p=frequency / frequency.sum())
    X = sp.csr_matrix(
        (
            np.full(total * nnz, 1 / np.sqrt(nnz)),
            columns.astype(np.int32),
            np.arange(0, total * nnz + 1, nnz),
        ),
        shape=(total, features),
    )
    X.sum_duplicates()  # a word twice in a row counts twice
    margin = X @ (rng.standard_normal(features) * 3)
    y = (rng.random(total) < expit(margin)).astype(np.int64)
    return Problem("sparse", X[:rows], y[:rows], X[rows:], y[rows:], TUNED["sparse"])


def w8a_problem(path: Path) -> Problem:
    X, y = load_svmlight_file(str(path))
    y = (y > 0).astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    return Problem("w8a", X_train, y_train, X_test, y_test, TUNED["w8a"])


def systems(n_workers: int) -> dict[str, Callable[[Race], Trace]]:
    """Every system of the race, by the name its row gets."""
    ours = {
        f"dask-asgd {mode}, {where}": dask_asgd(mode, on_cluster)
        for on_cluster, where in ((False, "embedded"), (True, f"{n_workers} procs"))
        for mode in ("off", "fixed", "adaptive")
    }
    return {
        **ours,
        "sklearn SGDClassifier": sklearn_sgd,
        "dask-ml Incremental(SGD)": dask_ml_incremental,
        "dask-ml LogisticRegr. lbfgs": dask_ml_logistic("lbfgs"),
        "dask-ml LogisticRegr. admm": dask_ml_logistic("admm"),
        "snapml LogisticRegression": snapml_logistic,
        "Vowpal Wabbit": vowpal_wabbit,
    }


def reached(trace: Trace, target: float) -> tuple[float, float, int] | None:
    return next((point for point in trace.points if point[1] >= target), None)


def print_table(problem: Problem, traces: dict[str, Trace], target: float) -> None:
    """One row per system: time to target (or best accuracy), against ours."""
    shape = "x".join(f"{n:,}" for n in problem.X_train.shape)
    print(
        f"\n{problem.name}: train {shape}, test {problem.X_test.shape[0]:,} rows; "
        f"target {target:.4f} (lbfgs {target + TARGET_GAP:.4f} - 0.5 point); "
        f"SGD schedule {problem.schedule}"
    )
    ours = [reached(t, target) for name, t in traces.items() if "dask-asgd" in name]
    fastest = min((p[0] for p in ours if p), default=None)
    header = f"{'system':<30} {'to target s':>11} {'epochs':>6} {'/ ours':>7}"
    print(f"{header} {'best acc.':>9} {'at s':>7}  note")
    print("-" * (len(header) + 30))
    for name, trace in traces.items():
        if trace.error:
            status = "not run" if trace.error.startswith("not run") else "failed"
            print(f"{name:<30} {status:>11}  {trace.error}")
            continue
        hit = reached(trace, target)
        best = max(trace.points, key=lambda point: point[1])
        cells = (
            f"{hit[0]:>11.2f} {hit[2]:>6}" if hit else f"{'not reached':>11} {'':>6}"
        )
        ratio = f"{hit[0] / fastest:>7.2f}" if hit and fastest else f"{'':>7}"
        print(
            f"{name:<30} {cells} {ratio} {best[1]:>9.4f} {best[0]:>7.2f}  {trace.note}"
        )
    print("accuracy against time (s, accuracy, epochs) per system:")
    for name, trace in traces.items():
        if trace.points:
            cells = " ".join(f"({s:.2f}, {a:.4f}, {e})" for s, a, e in trace.points)
            print(f"  {name}: {cells}")


def race_problem(
    problem: Problem, client: Client, args: argparse.Namespace
) -> tuple[dict[str, Trace], float]:
    """Every system on one data set, the reference first."""
    with scratch_dir() as workdir:
        race = Race(
            problem,
            client,
            args.n_workers,
            args.max_epochs,
            args.time_limit,
            Path(workdir),
            args.vw_max_values,
        )
        traces = {"sklearn LogisticRegr. lbfgs": run_system(sklearn_lbfgs, race)}
        reference = traces["sklearn LogisticRegr. lbfgs"]
        if reference.error:
            raise RuntimeError(f"the reference fit failed: {reference.error}")
        target = reference.points[0][1] - TARGET_GAP
        warm_up_dask_asgd(race)
        for name, runner in systems(args.n_workers).items():
            if args.systems and not any(part in name for part in args.systems):
                continue
            started = time.perf_counter()
            traces[name] = run_system(runner, race)
            print(
                f"  [{problem.name}] {name}: {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        race.release()
    print_table(problem, traces, target)
    return traces, target


def plot(results: dict[str, tuple[dict[str, Trace], float]], path: Path) -> None:
    """Accuracy against time, one panel per data set, the target dashed."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5))
    for ax, (name, (traces, target)) in zip(
        np.atleast_1d(axes), results.items(), strict=True
    ):
        for system, trace in traces.items():
            if trace.points:
                seconds, scores, _ = zip(*trace.points, strict=True)
                style = "-o" if "dask-asgd" in system else "--s"
                ax.plot(seconds, scores, style, markersize=3, label=system)
        ax.axhline(target, color="black", linestyle=":", label="target")
        ax.set(
            xscale="log",
            xlabel="seconds (log)",
            ylabel="test accuracy",
            title=name,
            ylim=(target - 0.05, target + 0.015),
        )
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}")


def problems(args: argparse.Namespace) -> Iterator[Problem]:
    """The data sets asked for, built one at a time (each is large)."""
    if args.only in (None, "dense"):
        yield dense_problem(args.rows, args.spread)
    if args.only in (None, "sparse"):
        yield sparse_problem(args.sparse_rows, args.sparse_features, args.nnz)
    if args.only in (None, "w8a"):
        if args.w8a.is_file():
            yield w8a_problem(args.w8a)
        else:
            print(
                f"\nw8a: not found at {args.w8a}; download the training part "
                "of LIBSVM's w8a and give its path with --w8a"
            )


@contextmanager
def process_cluster(n_workers: int) -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="dense")
    parser.add_argument(
        "--spread",
        type=float,
        default=2.0,
        help="dense: decades between the largest and smallest latent factor",
    )
    parser.add_argument("--sparse-rows", type=int, default=1_000_000)
    parser.add_argument("--sparse-features", type=int, default=100_000)
    parser.add_argument("--nnz", type=int, default=50, help="non-zeros a sparse row")
    parser.add_argument("--w8a", type=Path, default=DEFAULT_W8A)
    parser.add_argument("--only", choices=("dense", "sparse", "w8a"))
    parser.add_argument(
        "--systems",
        nargs="*",
        help="run only systems whose name "
        "contains one of these (the reference always runs)",
    )
    parser.add_argument("--n-workers", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=120.0,
        help="no further epoch once a system's fit took this long (s)",
    )
    parser.add_argument("--plot", type=Path, help="write accuracy against time here")
    parser.add_argument(
        "--vw-max-values",
        type=float,
        default=1e8,
        help="skip Vowpal Wabbit on a data set with more stored "
        "training values (writing its text input is slow)",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="BLAS/OpenMP threads of this process (default: the "
        "libraries' own; Dask's worker processes use 1)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    results = {}
    with (
        threadpool_limits(limits=args.blas_threads),
        process_cluster(args.n_workers) as client,
    ):
        for problem in problems(args):
            results[problem.name] = race_problem(problem, client, args)
            del problem
    if args.plot and results:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
