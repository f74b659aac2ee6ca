"""The data set, the estimator settings and the training objective.

The same generated data is fitted in every run of the sweep. It is built to
make links matter: a sparse, text-like multiclass problem (one-vs-rest), so
the exchanged state is ``n_classes x (n_features + 1)`` float64 numbers
(3.2 MB by default) while a worker's kernel runs at about a million rows/s.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import log_expit

#: Default shape of the data: rows, features, classes, nonzeros per row.
DEFAULT_ROWS = 400_000
QUICK_ROWS = 120_000
DEFAULT_FEATURES = 100_000
DEFAULT_CLASSES = 4
DEFAULT_NNZ = 32
#: Regularisation strength of the fits (and of the objective).
ALPHA = 1e-6


def make_data(
    n_rows: int = DEFAULT_ROWS,
    n_features: int = DEFAULT_FEATURES,
    n_classes: int = DEFAULT_CLASSES,
    nnz: int = DEFAULT_NNZ,
    seed: int = 0,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sparse, text-like rows and multiclass labels from a noisy linear model.

    Feature popularity follows a power law (a few common "words", a long tail
    of rare ones), values are positive and every row has unit L2 norm. Labels
    are the argmax of a random linear model's scores plus Gumbel noise, so the
    problem is learnable but not separable and SGD needs several epochs.

    Parameters
    ----------
    n_rows, n_features, n_classes, nnz : int
        Shape of the data and nonzeros per row (before merging duplicates).
    seed : int
        Seed of everything.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_rows, n_features), float64
    y : ndarray of shape (n_rows,), int64 in [0, n_classes)
    """
    rng = np.random.default_rng(seed)
    popularity = np.arange(1, n_features + 1, dtype=np.float64) ** -0.9
    popularity /= popularity.sum()
    # Common features are spread over the index range, as hashed words are.
    cdf = np.cumsum(popularity)
    ranks = np.searchsorted(cdf, rng.random(n_rows * nnz) * cdf[-1])
    ranks = np.minimum(ranks, n_features - 1)
    columns = rng.permutation(n_features)[ranks].astype(np.int32)
    values = rng.exponential(1.0, n_rows * nnz)
    indptr = np.arange(0, n_rows * nnz + 1, nnz, dtype=np.int64)
    X = sp.csr_matrix((values, columns, indptr), shape=(n_rows, n_features))
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    X = X.tocsr()
    true_weights = rng.normal(0.0, 1.0, (n_classes, n_features)) * 6.0
    scores = np.asarray(X @ true_weights.T) + rng.gumbel(0.0, 1.0, (n_rows, n_classes))
    y = scores.argmax(axis=1).astype(np.int64)
    return X, y


def objective(
    coef: np.ndarray,
    intercept: np.ndarray,
    X: sp.csr_matrix,
    y: np.ndarray,
    classes: np.ndarray,
    alpha: float = ALPHA,
) -> float:
    """Full training objective of a one-vs-rest log-loss model.

    Mean over classes of (mean log loss of the binary problem "class k against
    the rest" + ``0.5 * alpha * ||w_k||^2``). This is what scikit-learn's SGD
    minimises per class, and its data term is the quantity that the fit's
    ``history_["loss"]`` averages over classes.

    Parameters
    ----------
    coef : ndarray of shape (n_outputs, n_features)
    intercept : ndarray of shape (n_outputs,)
    X : sparse matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    classes : ndarray
        The model's ``classes_``.
    alpha : float
        L2 regularisation strength.

    Returns
    -------
    float
    """
    scores = np.asarray(X @ coef.T) + intercept
    if coef.shape[0] == 1:
        signed = np.where(y == classes[1], 1.0, -1.0)[:, np.newaxis]
    else:
        signed = np.where(y[:, np.newaxis] == classes[np.newaxis, :], 1.0, -1.0)
    data_term = float(-log_expit(signed * scores).mean())
    penalty = float(0.5 * alpha * (coef * coef).sum(axis=1).mean())
    return data_term + penalty


def estimator_params(alpha: float = ALPHA) -> dict:
    """Hyperparameters shared by every fit of the sweep (all but communication)."""
    return {
        "loss": "log_loss",
        "alpha": alpha,
        "tol": None,
        "random_state": 0,
    }
