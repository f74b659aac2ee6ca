"""The systems ``bench_peers.py`` races, each run as its users would run it.

Every runner takes a :class:`Race` (the data set and the shared cluster) and
returns a :class:`Trace`: (seconds, test accuracy, epochs) after each epoch or
pass, or the error that stopped it. How each one is timed:

* **fresh fits**: dask-asgd, snapml and Vowpal Wabbit are fitted afresh with
  1, 2, ... epochs (passes); each point is one whole fit, timed from the call
  to its return (for dask-asgd: validation, placing the rows, training, the
  final average). None of them exposes a model after each epoch of one fit,
  and a fit of ``E`` epochs is what a user would run.
* **partial_fit**: scikit-learn's ``SGDClassifier`` and dask-ml's
  ``Incremental`` are advanced one epoch (pass) per ``partial_fit`` call, the
  same loop their ``fit`` runs, and the times add up.
* **one fit**: the batch solvers (scikit-learn's and dask-ml's
  ``LogisticRegression``) run to their own stopping rule; one point.

Scoring the test set is never timed.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse as sp
from bench_fit import fit_on
from distributed import Client
from sklearn.datasets import dump_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier

from dask_asgd import ASGDClassifier

#: Rows per block when writing Vowpal Wabbit's text format.
_VW_WRITE_ROWS = 50_000


@dataclass
class Problem:
    """A train/test split and the SGD schedule tuned for it."""

    name: str
    X_train: Any
    y_train: np.ndarray
    X_test: Any
    y_test: np.ndarray
    #: SGDClassifier keywords (loss, alpha, schedule) every SGD system shares.
    schedule: dict[str, Any]


@dataclass
class Trace:
    """What one system reached: (seconds, accuracy, epochs) points, or an error."""

    points: list[tuple[float, float, int]] = field(default_factory=list)
    error: str | None = None
    note: str = ""


@dataclass
class Race:
    """One data set, the process cluster and the limits every system obeys."""

    problem: Problem
    client: Client
    n_workers: int
    max_epochs: int
    #: No further epoch is started once a system's fit (or its sum) took this long.
    time_limit: float
    workdir: Path
    #: Vowpal Wabbit is skipped above this many stored training values.
    vw_max_values: float = np.inf
    _dask_data: tuple[Any, Any] | None = None

    def dask_data(self) -> tuple[Any, Any]:
        """The training rows as Dask arrays on the cluster's workers (not timed).

        The chunks are scattered (two per worker), as rows loaded by the
        workers would lie, rather than shipped inside a graph.
        """
        if self._dask_data is None:
            X, y = self.problem.X_train, self.problem.y_train
            step = -(-X.shape[0] // (2 * self.n_workers))
            starts = range(0, X.shape[0], step)
            X_parts = self.client.scatter([X[i : i + step] for i in starts])
            y_parts = self.client.scatter([y[i : i + step] for i in starts])
            self._dask_data = (
                da.concatenate(
                    [
                        da.from_delayed(
                            part,
                            (min(step, X.shape[0] - i), X.shape[1]),
                            dtype=X.dtype,
                            meta=X[:0],
                        )
                        for part, i in zip(X_parts, starts, strict=True)
                    ]
                ),
                da.concatenate(
                    [
                        da.from_delayed(
                            part,
                            (min(step, y.shape[0] - i),),
                            dtype=y.dtype,
                            meta=y[:0],
                        )
                        for part, i in zip(y_parts, starts, strict=True)
                    ]
                ),
            )
        return self._dask_data

    def release(self) -> None:
        self._dask_data = None


def accuracy(model: Any, problem: Problem) -> float:
    """Test accuracy of a fitted scikit-learn-like classifier."""
    return float(np.mean(model.predict(problem.X_test) == problem.y_test))


def linear_accuracy(coef: Any, intercept: Any, problem: Problem) -> float:
    """Test accuracy of the linear rule ``X @ coef + intercept > 0`` (classes 0, 1)."""
    margin = problem.X_test @ np.ravel(coef) + float(np.ravel(intercept)[0])
    return float(np.mean((margin > 0) == (problem.y_test == 1)))


def failed(exc: BaseException) -> Trace:
    """A trace that names the error (its type, message and where it came from)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = (
        f" (in {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    )
    message = " ".join(str(exc).split())[:160]
    return Trace(error=f"{type(exc).__name__}: {message}{where}")


def fresh_fits(race: Race, fit: Callable[[int], float]) -> Trace:
    """Points of fits with 1, 2, ... epochs; ``fit(E)`` fits, times and scores."""
    trace = Trace()
    for epochs in range(1, race.max_epochs + 1):
        seconds, score = fit(epochs)
        trace.points.append((seconds, score, epochs))
        if seconds > race.time_limit:
            break
    return trace


def epoch_by_epoch(
    race: Race, step: Callable[[], None], score: Callable[[], float]
) -> Trace:
    """Points after each ``step()`` (one epoch), the step times added up."""
    trace = Trace()
    elapsed = 0.0
    for epochs in range(1, race.max_epochs + 1):
        started = time.perf_counter()
        step()
        elapsed += time.perf_counter() - started
        trace.points.append((elapsed, score(), epochs))
        if elapsed > race.time_limit:
            break
    return trace


def timed(fit: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fit()
    return time.perf_counter() - started, model


def sklearn_lbfgs(race: Race) -> Trace:
    """scikit-learn's LogisticRegression, lbfgs, default C, run to convergence."""
    problem = race.problem
    model = LogisticRegression(max_iter=1000)
    seconds, model = timed(lambda: model.fit(problem.X_train, problem.y_train))
    trace = Trace([(seconds, accuracy(model, problem), int(model.n_iter_[0]))])
    trace.note = f"{int(model.n_iter_[0])} iterations (max_iter=1000)"
    return trace


def sklearn_sgd(race: Race) -> Trace:
    problem = race.problem
    model = SGDClassifier(**problem.schedule, random_state=0)
    return epoch_by_epoch(
        race,
        lambda: model.partial_fit(problem.X_train, problem.y_train, classes=[0, 1]),
        lambda: accuracy(model, problem),
    )


def dask_asgd(communication: str, on_cluster: bool) -> Callable[[Race], Trace]:
    """dask-asgd with ``communication``, on the process cluster or embedded."""

    def run(race: Race) -> Trace:
        problem = race.problem
        client = race.client if on_cluster else None

        def fit(epochs: int) -> tuple[float, float]:
            model = ASGDClassifier(
                **{**problem.schedule, "max_iter": epochs},
                communication=communication,
                random_state=0,
            )
            seconds, _ = timed(
                lambda: fit_on(client, model, problem.X_train, problem.y_train)
            )
            return seconds, accuracy(model, problem)

        return fresh_fits(race, fit)

    return run


def warm_up_dask_asgd(race: Race) -> None:
    """Compile the kernels for this layout on both backends (cached on disk)."""
    problem = race.problem
    small = slice(0, 5000)
    for client in (None, race.client):
        fit_on(
            client,
            ASGDClassifier(**{**problem.schedule, "max_iter": 1}),
            problem.X_train[small],
            problem.y_train[small],
        )


def dask_ml_incremental(race: Race) -> Trace:
    """dask-ml's Incremental around SGDClassifier: one pass per partial_fit."""
    from dask_ml.wrappers import Incremental

    problem = race.problem
    X, y = race.dask_data()
    model = Incremental(
        SGDClassifier(**problem.schedule, random_state=0), random_state=0
    )

    def one_pass() -> None:
        with race.client.as_current():
            model.partial_fit(X, y, classes=[0, 1])

    return epoch_by_epoch(race, one_pass, lambda: accuracy(model.estimator_, problem))


def dask_ml_logistic(solver: str) -> Callable[[Race], Trace]:
    """dask-ml's LogisticRegression with ``solver``, its defaults but ``max_iter``.

    Fresh fits with ``max_iter`` growing to the default (100), until one
    converged before it (the same weights as the fit before) or the next would
    pass the time limit.
    """

    def run(race: Race) -> Trace:
        from dask_ml.linear_model import LogisticRegression as DaskLogisticRegression

        problem = race.problem
        X, y = race.dask_data()
        trace, previous = Trace(note="fresh fits, epochs = max_iter"), None
        steps = (1, 2, 5, 10, 20, 50, 100)
        for max_iter, following in zip(steps, (*steps[1:], None), strict=True):
            model = DaskLogisticRegression(solver=solver, max_iter=max_iter)
            with race.client.as_current():
                seconds, model = timed(lambda m=model: m.fit(X, y))
            score = linear_accuracy(model.coef_, model.intercept_, problem)
            trace.points.append((seconds, score, max_iter))
            if previous is not None and np.array_equal(previous, model.coef_):
                trace.note += f"; converged before max_iter={max_iter}"
                break
            if following and seconds * following / max_iter > race.time_limit:
                break
            previous = model.coef_
        return trace

    return run


def snapml_logistic(race: Race) -> Trace:
    """snapml's LogisticRegression (its dual coordinate descent), n_jobs threads."""
    from snapml import LogisticRegression as SnapLogisticRegression

    problem = race.problem

    def fit(epochs: int) -> tuple[float, float]:
        model = SnapLogisticRegression(
            max_iter=epochs, n_jobs=race.n_workers, fit_intercept=True, tol=0.0
        )
        seconds, _ = timed(lambda: model.fit(problem.X_train, problem.y_train))
        return seconds, accuracy(model, problem)

    return fresh_fits(race, fit)


def write_vw(path: Path, X: Any, y: np.ndarray) -> None:
    """Write rows in Vowpal Wabbit's text format (labels -1/1, one namespace)."""
    with open(path, "wb") as out:
        for start in range(0, X.shape[0], _VW_WRITE_ROWS):
            block = slice(start, start + _VW_WRITE_ROWS)
            rows = X[block] if sp.issparse(X) else sp.csr_matrix(X[block])
            out.write(_svmlight_bytes(rows, np.where(y[block] == 1, 1, -1)))


def _svmlight_bytes(rows: Any, labels: np.ndarray) -> bytes:
    """svmlight's "label i:v ..." lines turned into VW's "label | i:v ..."."""
    text = io.BytesIO()
    dump_svmlight_file(rows, labels, text, zero_based=True)
    lines = text.getvalue().splitlines()
    return b"".join(line.replace(b" ", b" | ", 1) + b"\n" for line in lines)


@contextmanager
def vw_files(race: Race) -> Iterator[tuple[Path, Path, float]]:
    """The training and test rows as VW text files, and the seconds to write them."""
    problem = race.problem
    train = race.workdir / f"{problem.name}-train.vw"
    test = race.workdir / f"{problem.name}-test.vw"
    started = time.perf_counter()
    write_vw(train, problem.X_train, problem.y_train)
    write_vw(test, problem.X_test, problem.y_test)
    try:
        yield train, test, time.perf_counter() - started
    finally:
        train.unlink(missing_ok=True)
        test.unlink(missing_ok=True)


def _vw(*arguments: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vowpalwabbit", "--quiet", *arguments],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"vw exited with {done.returncode}: {done.stderr[-300:]}")


def vowpal_wabbit(race: Race) -> Trace:
    """VW's command line with its defaults, logistic loss, ``--passes E``."""
    import vowpalwabbit  # noqa: F401  (fails here, named, when it is missing)

    problem = race.problem
    values = (
        problem.X_train.nnz if sp.issparse(problem.X_train) else problem.X_train.size
    )
    if values > race.vw_max_values:
        return Trace(
            error=f"not run: writing {values / 1e6:.0f} M values as text "
            f"takes minutes here (--vw-max-values {race.vw_max_values:.0e})"
        )
    with vw_files(race) as (train, test, write_seconds):
        model = race.workdir / "vw.model"
        predictions = race.workdir / "vw.predictions"
        cache = race.workdir / "vw.cache"

        def fit(epochs: int) -> tuple[float, float]:
            started = time.perf_counter()
            # -k -c: every run parses the text and builds its cache afresh.
            _vw(
                "-d",
                str(train),
                "--loss_function",
                "logistic",
                "--passes",
                str(epochs),
                "-k",
                "-c",
                "--cache_file",
                str(cache),
                "--holdout_off",
                "-f",
                str(model),
            )
            seconds = time.perf_counter() - started
            _vw("-t", "-i", str(model), "-d", str(test), "-p", str(predictions))
            margin = np.loadtxt(predictions)
            return seconds, float(np.mean((margin > 0) == (problem.y_test == 1)))

        trace = fresh_fits(race, fit)
        trace.note = f"text files written in {write_seconds:.0f} s (not timed)"
    return trace


def run_system(runner: Callable[[Race], Trace], race: Race) -> Trace:
    """Run one system; any failure (import, fit) becomes its named error."""
    try:
        return runner(race)
    except Exception as exc:
        traceback.print_exc()  # the whole story on stderr, one line in the table
        return failed(exc)


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(
        prefix="bench-peers-", dir=os.environ.get("TMPDIR")
    )
