"""
Quickstart: ASGDClassifier beside scikit-learn's SGDClassifier
==============================================================

Train :class:`dask_asgd.ASGDClassifier` with no cluster of your own (``fit``
starts an embedded local Dask cluster) and compare test accuracy and fit time
with :class:`sklearn.linear_model.SGDClassifier` on the same data.

Run ``python examples/quickstart.py`` for a generated data set (400,000 rows;
``--rows`` for another size: the documentation builds it with 20,000), or
``python examples/quickstart.py --svmlight path/to/w8a.svmlight`` for a LIBSVM
file. With matplotlib installed it also plots the ASGD fit's loss per epoch
and how its workers exchanged states.
"""

# %%
# Load or generate the data, and hold out a quarter for testing.
import argparse
import time

from sklearn.datasets import load_svmlight_file, make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from dask_asgd import ASGDClassifier

parser = argparse.ArgumentParser(
    description="ASGDClassifier beside scikit-learn's SGDClassifier"
)
parser.add_argument("--svmlight", help="LIBSVM file to train on instead")
parser.add_argument("--rows", type=int, default=400_000, help="generated rows")
parser.add_argument("--loss", default="hinge")
args, _ = parser.parse_known_args()

if args.svmlight:
    X, y = load_svmlight_file(args.svmlight)
    name = args.svmlight
else:
    X, y = make_classification(
        n_samples=args.rows, n_features=100, n_informative=20, random_state=0
    )
    name = f"make_classification({args.rows}, 100)"
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
print(f"data: {name}, {X_train.shape[0]} training rows, {X.shape[1]} features")

# %%
# The first fit starts the embedded cluster and compiles the kernels; time it
# apart from the comparison.
started = time.perf_counter()
ASGDClassifier(max_iter=1, tol=None).fit(X_train[:2000], y_train[:2000])
print(f"embedded cluster start and JIT warm-up: {time.perf_counter() - started:.2f} s")

# %%
# Fit both models with their default settings on the same rows.
print(f"{'model':<16} {'accuracy':>9} {'fit time':>9} {'epochs':>7}")
asgd = ASGDClassifier(loss=args.loss, random_state=0)
for model in (SGDClassifier(loss=args.loss, random_state=0), asgd):
    started = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    accuracy = model.score(X_test, y_test)
    print(
        f"{type(model).__name__:<16} {accuracy:>9.4f} {seconds:>8.2f}s "
        f"{model.n_iter_:>7d}"
    )

# %%
# What the ASGD fit recorded (:func:`dask_asgd.plotting.plot_history`): the
# loss over all workers per epoch and, when workers exchanged states, each
# worker's send interval and message size as the balancer set them.
try:
    from dask_asgd.plotting import plot_history

    plot_history(asgd)
except ImportError:
    print("pip install matplotlib to plot the fit's history")
