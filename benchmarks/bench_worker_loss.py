"""What losing a worker costs a fit: time and accuracy against a fault-free fit.

On a LocalCluster of three worker processes (one thread each), each round
runs the same fit twice, alternating: once fault-free, once with one worker
SIGKILLed after ``--kill-after`` completed epochs. The faulted fit goes on
with the two survivors: the lost worker's rows are scattered again to them
and trained on by replacement tasks (see "Faults" in the user guide). The
table gives each round's wall times, their ratio, the accuracy of both fits
on the training data, and the seconds from the driver learning of the loss
to the replacements' start that ``history_`` records. Every round starts a
cluster of its own (not timed) and warms its workers up with a short fit.

Usage::

    python benchmarks/bench_worker_loss.py                      # 5 rounds
    python benchmarks/bench_worker_loss.py --rows 600000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time

from distributed import Client, LocalCluster
from distributed.utils_test import poll_for
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from dask_asgd.runtime._driver import parse_task_key


def epochs_done(client, fit_id):
    events = [event for _, event in client.get_events("asgd")]
    return sum(
        1 for e in events if e.get("action") == "epoch" and e["fit_id"] == fit_id
    )


def running_fit(client):
    keys = client.run_on_scheduler(
        lambda dask_scheduler: [
            str(k) for k in dask_scheduler.tasks if "-train-" in str(k)
        ]
    )
    return parse_task_key(keys[0])[0] if len(keys) == 3 else None


def faulted_fit(client, model, X, y, kill_after):
    """Fit ``model`` and SIGKILL one of its workers after ``kill_after`` epochs."""
    outcome = {}

    def fit():
        started = time.perf_counter()
        with client.as_current():
            model.fit(X, y)
        outcome["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=fit)
    thread.start()
    poll_for(lambda: running_fit(client) is not None, timeout=120, period=0.01)
    fit_id = running_fit(client)
    poll_for(
        lambda: epochs_done(client, fit_id) >= kill_after, timeout=120, period=0.01
    )
    victim = sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    thread.join()
    return outcome["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--kill-after", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    X, y = make_classification(
        args.rows, args.features, n_informative=10, class_sep=2.0, random_state=0
    )
    params = dict(max_iter=args.epochs, tol=None, random_state=0)
    print(
        f"{args.rows:,} x {args.features} rows, {args.epochs} epochs, 3 process "
        f"workers, one killed after epoch {args.kill_after}"
    )
    print("round  clean s  faulted s  ratio  clean acc  faulted acc  replaced after s")
    ratios = []
    for round_ in range(args.rounds):
        # A cluster per round: a nanny does not always bring a killed worker
        # back in time, and every round must start with three workers.
        with (
            LocalCluster(
                n_workers=3,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            with client.as_current():
                ASGDClassifier(max_iter=2, tol=None).fit(X, y)  # warm the workers up
            clean = ASGDClassifier(**params)
            started = time.perf_counter()
            with client.as_current():
                clean.fit(X, y)
            clean_seconds = time.perf_counter() - started
            faulted = ASGDClassifier(**params)
            faulted_seconds = faulted_fit(client, faulted, X, y, args.kill_after)
        history = faulted.history_
        replaced = history.loc[history["event"] == "rows-replaced", "seconds"]
        ratio = faulted_seconds / clean_seconds
        ratios.append(ratio)
        print(
            f"{round_:5d}  {clean_seconds:7.2f}  {faulted_seconds:9.2f}  "
            f"{ratio:5.2f}  {clean.score(X, y):9.4f}  {faulted.score(X, y):11.4f}"
            f"  {replaced.max():16.2f}"
        )
    print(f"median ratio faulted / clean: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
