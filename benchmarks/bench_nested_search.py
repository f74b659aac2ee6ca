"""A grid search without a client: joblib's processes against one process.

``GridSearchCV(n_jobs=-1)`` with no ``distributed.Client`` runs its fits in
loky worker processes, each of which starts an embedded cluster of its own
(one worker, see "Where fit runs" in the user guide); ``n_jobs=1`` runs them
one after the other on the embedded cluster of the calling process (one
worker per core). Each case runs in a fresh interpreter, as a user's script
does, and fits the same search twice: the first search pays for starting
the processes and clusters, the second reuses them (loky keeps its workers).

Usage::

    python benchmarks/bench_nested_search.py                    # 3 rounds
    python benchmarks/bench_nested_search.py --rows 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

#: One case: the search, fitted twice, in a fresh interpreter. Prints JSON.
CASE = textwrap.dedent(
    """
    import json
    import sys
    import time

    from sklearn.datasets import make_classification
    from sklearn.model_selection import GridSearchCV

    from dask_asgd import ASGDClassifier

    n_jobs, rows = int(sys.argv[1]), int(sys.argv[2])
    X, y = make_classification(rows, 50, n_informative=10, random_state=0)
    search = GridSearchCV(
        ASGDClassifier(random_state=0),
        {"alpha": [1e-5, 1e-4, 1e-3, 1e-2], "loss": ["hinge", "log_loss"]},
        cv=3,
        n_jobs=n_jobs,
    )
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        search.fit(X, y)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({
        "seconds": seconds,
        "best": search.best_params_,
        "score": search.best_score_,
    }))
    """
)


def run_case(n_jobs: int, rows: int) -> dict:
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = {**os.environ, "PYTHONPATH": repository}
    done = subprocess.run(
        [sys.executable, "-c", CASE, str(n_jobs), str(rows)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["tracebacks"] = done.stderr.count("Traceback")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"GridSearchCV(ASGDClassifier(), 4 alphas x 2 losses, cv=3) on "
        f"make_classification({args.rows}, 50), {os.cpu_count()} cores"
    )
    print(
        f"{'round':>5} {'n_jobs':>6} {'1st s':>7} {'2nd s':>7} {'best params':<36} "
        f"{'score':>7} {'tracebacks':>10}"
    )
    ratios = {"first": [], "second": []}
    for round_ in range(args.rounds):
        results = {n_jobs: run_case(n_jobs, args.rows) for n_jobs in (1, -1)}
        for n_jobs, result in results.items():
            first, second = result["seconds"]
            best = json.dumps(result["best"], sort_keys=True)
            print(
                f"{round_:>5} {n_jobs:>6} {first:>7.2f} {second:>7.2f} {best:<36} "
                f"{result['score']:>7.4f} {result['tracebacks']:>10}"
            )
        for index, which in enumerate(("first", "second")):
            ratios[which].append(
                results[-1]["seconds"][index] / results[1]["seconds"][index]
            )
    for which, values in ratios.items():
        print(
            f"n_jobs=-1 / n_jobs=1, {which} search: median "
            f"{statistics.median(values):.2f} "
            f"(rounds: {', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
