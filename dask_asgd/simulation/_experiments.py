"""The simulator's experiments: workloads, modes and the tables they print."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from ._estimator import simulate
from ._network import LinkModel

#: Communication modes compared, as estimator parameters.
#: With many workers each holds few rows, so the short interval (256) is the
#: one that still exchanges several times per epoch.
MODES: dict[str, dict[str, Any]] = {
    "off": {"communication": "off"},
    "fixed-256": {"communication": "fixed", "send_interval": 256},
    "fixed-1024": {"communication": "fixed", "send_interval": 1024},
    "fixed-4096": {"communication": "fixed", "send_interval": 4096},
    "fixed-16384": {"communication": "fixed", "send_interval": 16384},
    "adaptive": {"communication": "adaptive"},
    "adaptive-256": {"communication": "adaptive", "send_interval": 256},
    "no-parzen-256": {"communication": "fixed", "send_interval": 256,
                      "parzen_window": False},
    "parzen-256": {"communication": "fixed", "send_interval": 256,
                   "parzen_window": True},
    # Gossip with a mixing weight, and elastic averaging's small moving rate.
    "mix-0.25-256": {"communication": "fixed", "send_interval": 256,
                     "parzen_window": False, "mixing_weight": 0.25},
    "mix-0.75-256": {"communication": "fixed", "send_interval": 256,
                     "parzen_window": False, "mixing_weight": 0.75},
    "mix-0.1-256": {"communication": "fixed", "send_interval": 256,
                    "parzen_window": False, "mixing_weight": 0.1},
    "parzen-mix-0.25-256": {"communication": "fixed", "send_interval": 256,
                            "parzen_window": True, "mixing_weight": 0.25},
    # Whether gentler merges make rare exchanges harmless.
    "mix-0.25-4096": {"communication": "fixed", "send_interval": 4096,
                      "parzen_window": False, "mixing_weight": 0.25},
    "mix-0.1-4096": {"communication": "fixed", "send_interval": 4096,
                     "parzen_window": False, "mixing_weight": 0.1},
}  # fmt: skip

#: Link speeds of the speed-up experiment, in bytes per second.
LINKS = {"10 Gbit/s": 1.25e9, "1 Gbit/s": 1.25e8}


@dataclass
class Workload:
    """Data, a factory of the estimator, and the objective of a state."""

    name: str
    X: Any
    y: Any
    estimator: Callable[..., Any]
    evaluate: Callable[[Any], dict[str, float]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every experiment shares."""
    parser.add_argument("--model", choices=["logistic", "kmeans"], default="logistic")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--workers",
        default="1,4,16,64,256,1024",
        help="comma-separated numbers of workers",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, of {', '.join(MODES)}",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="target: N=1 'off' objective after --epochs, plus this relative margin",
    )
    parser.add_argument(
        "--samples-per-second",
        type=float,
        default=3.1e6,
        help="training speed of a worker (default: measured on "
        "this project's 2-core machine, one process worker)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--message-seconds",
        type=float,
        default=0.0,
        help="training-thread seconds every message costs on top of its copy "
        "(0 by default; a real exchange on this project's 2-core machine cost "
        "about 0.0015 s on thread workers)",
    )
    parser.add_argument(
        "--skew",
        type=float,
        default=None,
        help="logistic: label-skewed workers; each row goes to a worker of its "
        "class with this probability (rows in that order, shuffle=False), "
        "averaged merges (average=True, parzen_window=False unless a mode "
        "says otherwise)",
    )
    parser.add_argument("--plot", default=None, help="save a figure here")
    parser.add_argument(
        "--report-period",
        type=float,
        default=None,
        help="balancing experiment: seconds between a worker's "
        "reports (asgd.balancing.report-period; 0.5 s by default "
        "is longer than a short simulated fit)",
    )
    parser.add_argument(
        "--send-interval",
        type=int,
        default=256,
        help="balancing experiment: the adaptive start interval",
    )


def workload(args: argparse.Namespace) -> Workload:
    """The data set and estimator of ``--model``."""
    if args.model == "kmeans":
        return _kmeans(args)
    return _logistic(args)


def _logistic(args: argparse.Namespace) -> Workload:
    from sklearn.datasets import make_classification

    from .. import ASGDClassifier

    X, y = make_classification(
        args.rows, args.features, n_informative=max(1, args.features // 5),
        random_state=args.seed,
    )  # fmt: skip
    skewed: dict[str, Any] = {}
    if args.skew is not None:
        X, y = label_skewed(X, y, args.skew, args.seed)
        skewed = {"shuffle": False, "average": True, "parzen_window": False}
    alpha = 1e-4
    sample = np.random.default_rng(1).choice(X.shape[0], 20_000, replace=False)
    signs = np.where(y[sample] == 1, 1.0, -1.0)

    def objective(state: Any) -> dict[str, float]:
        # Score what the estimator would publish: with averaging, the running
        # averages (coef_ is the averaged weights), not the last iterates.
        averaged = skewed.get("average", False) and state.has_averages()
        weights = state.average_weights[0] if averaged else state.weights[0]
        intercept = state.average_intercepts[0] if averaged else state.intercepts[0]
        margin = signs * (X[sample] @ weights + intercept)
        log_loss = float(np.mean(np.logaddexp(0.0, -margin)))
        penalty = 0.5 * alpha * float(weights @ weights)
        return {"objective": log_loss + penalty}

    def estimator(**params: Any) -> Any:
        return ASGDClassifier(
            loss="log_loss", alpha=alpha, learning_rate="invscaling", eta0=0.1,
            power_t=0.5, tol=None, max_iter=args.epochs, random_state=0,
            min_rows_per_worker=1, **{**skewed, **params},
        )  # fmt: skip

    return Workload("logistic", X, y, estimator, objective)


def label_skewed(
    X: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered so that consecutive blocks (workers) hold mostly one class.

    Each row is given a home class, its own with probability ``fraction``
    and another at random otherwise; rows are sorted by home class, in a
    random order within one.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    other = rng.choice(classes, y.shape[0])
    home = np.where(rng.random(y.shape[0]) < fraction, y, other)
    order = np.lexsort((rng.random(y.shape[0]), home))
    return X[order], y[order]


def _kmeans(args: argparse.Namespace) -> Workload:
    from sklearn.datasets import make_blobs

    from .. import ASGDKMeans

    X, _ = make_blobs(
        args.rows, args.features, centers=50, cluster_std=4.0, random_state=args.seed
    )
    sample = X[np.random.default_rng(1).choice(X.shape[0], 20_000, replace=False)]

    def objective(state: Any) -> dict[str, float]:
        centers = state.centers
        distances = (
            (sample**2).sum(axis=1)[:, None]
            - 2 * sample @ centers.T
            + (centers**2).sum(axis=1)[None, :]
        )
        return {"objective": float(np.maximum(distances.min(axis=1), 0).mean())}

    def estimator(**params: Any) -> Any:
        return ASGDKMeans(
            50, batch_size=1024, max_no_improvement=None, max_iter=args.epochs,
            random_state=0,
            min_rows_per_worker=1, **params,
        )  # fmt: skip

    return Workload("kmeans", X, None, estimator, objective)


def run(work: Workload, n_workers: int, mode: str, network: LinkModel) -> Any:
    """One simulated fit; returns its :class:`SimulatedFit` and model."""
    model, fit = simulate(
        work.estimator(**MODES[mode]), work.X, work.y, n_workers=n_workers,
        network=network, evaluate=work.evaluate,
    )  # fmt: skip
    return model, fit


def to_target(fit: Any, target: float) -> tuple[int | None, float | None]:
    """Epochs and simulated seconds until the objective reached ``target``."""
    for summary in fit.epochs:
        if summary["objective"] <= target:
            return summary["epoch"] + 1, summary["time"]
    return None, None


def _target(work: Workload, args: argparse.Namespace, network: LinkModel) -> float:
    _, sequential = run(work, 1, "off", network)
    best = min(summary["objective"] for summary in sequential.epochs)
    target = best * (1.0 + args.tolerance)
    print(
        f"target: {target:.5f} (one worker, {args.epochs} epochs: {best:.5f}, "
        f"plus {args.tolerance:.1%})"
    )
    return target


def _list(text: str) -> list[Any]:
    return [int(x) if x.isdigit() else x for x in text.split(",")]


def efficiency(args: argparse.Namespace) -> None:
    """Epochs to the target per number of workers and mode."""
    work = workload(args)
    network = LinkModel(
        samples_per_second=args.samples_per_second,
        message_seconds=args.message_seconds,
    )
    target = _target(work, args, network)
    modes, counts = _list(args.modes), _list(args.workers)
    print(f"{'workers':>8} " + " ".join(f"{m:>14}" for m in modes))
    table = {}
    for n_workers in counts:
        cells = []
        for mode in modes:
            _, fit = run(work, n_workers, mode, network)
            epochs, _ = to_target(fit, target)
            final = fit.epochs[-1]["objective"]
            table[n_workers, mode] = final
            cells.append(f"{epochs or '>' + str(args.epochs):>5} ({final:.4f})")
        print(f"{n_workers:>8} " + " ".join(f"{c:>14}" for c in cells))
    _plot(args, table, counts, modes, f"objective after {args.epochs} epochs")


def speedup(args: argparse.Namespace) -> None:
    """Simulated seconds to the target against N, on two link speeds."""
    work = workload(args)
    modes, counts = _list(args.modes), _list(args.workers)
    base = LinkModel(
        samples_per_second=args.samples_per_second,
        message_seconds=args.message_seconds,
    )
    target = _target(work, args, base)
    table = {}
    for link, bandwidth in LINKS.items():
        network = dataclasses.replace(base, bandwidth=bandwidth)
        print(f"\n{link}: seconds to target (speed-up against one worker)")
        print(f"{'workers':>8} " + " ".join(f"{m:>18}" for m in modes))
        single = {}
        for n_workers in counts:
            cells = []
            for mode in modes:
                _, fit = run(work, n_workers, mode, network)
                _, seconds = to_target(fit, target)
                single.setdefault(mode, seconds)
                table[link, n_workers, mode] = seconds
                cells.append(_speed_cell(seconds, single.get(mode)))
            print(f"{n_workers:>8} " + " ".join(f"{c:>18}" for c in cells))


def _speed_cell(seconds: float | None, single: float | None) -> str:
    if seconds is None:
        return "not reached"
    if not single:
        return f"{seconds:.4f}"
    return f"{seconds:.4f} ({single / seconds:.1f}x)"


def balancing(args: argparse.Namespace) -> None:
    """The balancer at many workers, a bandwidth drop and 10 % stragglers."""
    work = workload(args)
    n_workers = _list(args.workers)[-1]
    rng = np.random.default_rng(args.seed)
    rates = np.full(n_workers, args.samples_per_second)
    rates[rng.choice(n_workers, max(1, n_workers // 10), replace=False)] /= 4
    per_epoch = work.X.shape[0] / n_workers / args.samples_per_second
    network = LinkModel(
        bandwidth=1.25e8, samples_per_second=rates,
        bandwidth_change=(per_epoch * args.epochs / 2, 1.25e6),
        message_seconds=args.message_seconds,
    )  # fmt: skip
    settings = {}
    if args.report_period is not None:
        settings["asgd.balancing.report-period"] = args.report_period
    with dask.config.set(settings):
        model, fit = simulate(
            work.estimator(communication="adaptive", send_interval=args.send_interval),
            work.X, work.y, n_workers=n_workers, network=network,
            evaluate=work.evaluate,
        )  # fmt: skip
    history = model.history_
    print(
        f"{n_workers} workers, adaptive, 1 Gbit/s links dropping to 10 Mbit/s at "
        f"{network.bandwidth_change[0]:.3f} s, {n_workers // 10} workers 4x slower, "
        f"state {work.X.shape[1] if args.model == 'logistic' else 50 * work.X.shape[1]}"
        f" values, {len(fit.decisions)} decisions of the balancer"
    )
    print(f"{'epoch':>5} {'time':>8} {'objective':>10} {'spread':>8} "
          f"{'lost/w':>7} {'dropped/w':>9} {'KB/s/w':>8} {'interval':>9}")  # fmt: skip
    previous = None
    for summary in fit.epochs:
        rows = history[history["epoch"] == summary["epoch"]]
        now = rows[["messages_lost", "messages_dropped", "bytes_sent"]].sum()
        delta = now if previous is None else now - previous
        seconds = summary["time"] - (fit.epochs[summary["epoch"] - 1]["time"]
                                     if summary["epoch"] else 0.0)  # fmt: skip
        print(
            f"{summary['epoch']:>5} {summary['time']:>8.3f} "
            f"{summary['objective']:>10.5f} {summary['spread']:>8.4f} "
            f"{delta['messages_lost'] / n_workers:>7.1f} "
            f"{delta['messages_dropped'] / n_workers:>9.1f} "
            f"{delta['bytes_sent'] / n_workers / seconds / 1e3:>8.1f} "
            f"{rows['send_interval'].median():>9.0f}"
        )
        previous = now


def validate(args: argparse.Namespace) -> None:
    """The real 2-worker fit against its simulation, loss per epoch."""
    from distributed import Client, LocalCluster

    work = workload(args)
    modes = [m for m in _list(args.modes) if m in ("off", "fixed-4096", "adaptive")]
    modes = modes or ["off", "fixed-4096", "adaptive"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      memory_limit=0, dashboard_address=":0") as cluster, \
            Client(cluster):  # fmt: skip
        for mode in modes:
            real = work.estimator(**MODES[mode], n_workers=2).fit(work.X, work.y)
            history = real.history_
            rate = float((history["samples"] / history["seconds"]).median())
            simulated, _ = simulate(
                work.estimator(**MODES[mode]), work.X, work.y, n_workers=2,
                network=LinkModel(
                    samples_per_second=rate, message_seconds=args.message_seconds
                ),
            )  # fmt: skip
            print(f"\n{mode}: training loss per epoch (real, simulated), "
                  f"real speed {rate / 1e6:.2f} M samples/s per worker")  # fmt: skip
            real_loss = history.groupby("epoch")["loss"].first()
            simulated_loss = simulated.history_.groupby("epoch")["loss"].first()
            for epoch in real_loss.index:
                difference = simulated_loss[epoch] / real_loss[epoch] - 1
                print(f"{epoch:>5} {real_loss[epoch]:.5f} "
                      f"{simulated_loss[epoch]:.5f} {difference:+.2%}")  # fmt: skip


def _plot(args: argparse.Namespace, table: dict, counts: list, modes: list,
          label: str) -> None:  # fmt: skip
    if not args.plot:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for mode in modes:
        values = [table[n, mode] for n in counts]
        axis.plot(counts, values, marker="o", label=mode)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("workers")
    axis.set_ylabel(label)
    axis.set_title(f"{args.model}: {label} (simulated)")
    axis.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(args.plot, dpi=100)
    print(f"figure: {args.plot}")


#: The experiments of the command line.
EXPERIMENTS: dict[str, Callable[[argparse.Namespace], None]] = {
    "balancing": balancing,
    "efficiency": efficiency,
    "speedup": speedup,
    "validate": validate,
}
