"""The one input path of every fit: checked data, then training rows.

:meth:`TrainingData.check` takes what ``fit`` and ``partial_fit`` receive
(NumPy, SciPy sparse, lists, or Dask arrays, DataFrames and Series) and checks
it as scikit-learn does; :meth:`TrainingData.rows` turns it, with a target
encoder, into the rows the training machinery places on the workers. Dask
input is checked lazily: shapes, dtypes and feature names on the driver, values
on the workers when the partitions are built, so nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.utils.validation import _check_sample_weight, validate_data

from ..runtime import DaskRows, InMemoryRows
from ._dask_input import is_dask_collection, validate_dask_data

#: How every estimator checks in-memory ``X``: CSR or C-ordered dense rows of
#: float32 or float64, as the kernels take them.
X_CHECKS: dict[str, Any] = {
    "accept_sparse": "csr",
    "dtype": [np.float64, np.float32],
    "order": "C",
    "accept_large_sparse": True,
}

#: What ``y`` holds: class labels, real values, or nothing (clustering).
TargetKind = Literal["classes", "real"] | None


@dataclass(frozen=True)
class Holdout:
    """Rows held out for early stopping: a share of them, chosen at random.

    In memory the rows are chosen as scikit-learn chooses them (stratified
    for classifiers); in Dask, each chunk holds out its share on its worker.
    """

    fraction: float
    random_state: Any
    stratify: bool

    def split(self, y: np.ndarray, sample_weight: np.ndarray) -> np.ndarray:
        """Mask of the held-out rows of in-memory ``y``."""
        from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

        splitter = StratifiedShuffleSplit if self.stratify else ShuffleSplit
        cv = splitter(test_size=self.fraction, random_state=self.random_state)
        idx_train, idx_val = next(cv.split(np.zeros((y.shape[0], 1)), y))
        if not np.any(sample_weight[idx_val] > 0):
            raise ValueError(
                "The sample weights for validation set are all zero, consider using a"
                " different random state."
            )
        if idx_train.shape[0] == 0 or idx_val.shape[0] == 0:
            raise ValueError(
                f"Splitting {y.shape[0]} samples into a train set and a validation "
                f"set with validation_fraction={self.fraction!r} led to an empty "
                f"set ({idx_train.shape[0]} and {idx_val.shape[0]} samples). Please "
                "either change validation_fraction, increase number of samples, or "
                "disable early_stopping."
            )
        validation = np.zeros(y.shape[0], dtype=bool)
        validation[idx_val] = True
        return validation


@dataclass
class TrainingData:
    """Checked ``X``, ``y`` and ``sample_weight`` of one fit.

    NumPy arrays and a CSR matrix for in-memory input; Dask arrays, chunked
    alike along the rows, for Dask input (``is_dask``). ``y`` is None for
    clustering; ``sample_weight`` is None only for Dask input without weights.
    """

    X: Any
    y: Any
    sample_weight: Any
    is_dask: bool
    _labels: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def check(
        cls,
        estimator: Any,
        X: Any,
        y: Any,
        sample_weight: Any,
        *,
        reset: bool,
        target: TargetKind,
        allow_all_zero_weights: bool = False,
    ) -> TrainingData:
        """Check the input of ``fit`` or ``partial_fit`` as scikit-learn does.

        Parameters
        ----------
        estimator : estimator
            Gets ``n_features_in_`` and ``feature_names_in_`` when ``reset``,
            else they are checked.
        X : {array-like, sparse matrix, dask array or DataFrame}
        y : {array-like, dask array or Series} or None
            Ignored when ``target`` is None.
        sample_weight : array-like or None
        reset : bool
            Whether this is the first look at the data (not a ``partial_fit``
            after the first).
        target : {"classes", "real", None}
            What ``y`` holds.
        allow_all_zero_weights : bool, default=False
            Accept in-memory weights that are all zero (a later check says
            more about them).

        Returns
        -------
        TrainingData
        """
        if is_dask_collection(X) or is_dask_collection(y):
            X, y, sample_weight = validate_dask_data(
                estimator, X, y, sample_weight, reset=reset, requires_y=bool(target)
            )
            return cls(X, y, sample_weight, is_dask=True)
        if target is None:
            X, y = validate_data(estimator, X, reset=reset, **X_CHECKS), None
        else:
            X, y = validate_data(
                estimator, X, y, reset=reset, y_numeric=target == "real", **X_CHECKS
            )
        sample_weight = _check_sample_weight(
            sample_weight,
            X,
            dtype=X.dtype,
            allow_all_zero_weights=allow_all_zero_weights,
        )
        return cls(X, y, sample_weight, is_dask=False)

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features."""
        return int(self.X.shape[1])

    @property
    def dtype(self) -> Any:
        """Dtype of the features, and so of the model."""
        return self.X.dtype

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct values of ``y`` and their numbers of rows.

        Found by ``np.unique`` in memory and ``dask.array.unique`` on the
        cluster, once per fit.
        """
        if self._labels is None:
            if self.is_dask:
                import dask
                import dask.array as da

                self._labels = dask.compute(*da.unique(self.y, return_counts=True))
            else:
                self._labels = np.unique(self.y, return_counts=True)
        return self._labels

    def rows(
        self,
        encoder: Callable[[np.ndarray], np.ndarray] | None,
        holdout: Holdout | None,
    ) -> InMemoryRows | DaskRows:
        """The rows to train on.

        Parameters
        ----------
        encoder : callable or None
            Turns labels into the kernel's targets: applied here to in-memory
            ``y``, on the workers to Dask ``y``; None without ``y``.
        holdout : Holdout or None
            Rows to hold out for early stopping.

        Returns
        -------
        InMemoryRows or DaskRows
        """
        if self.is_dask:
            fraction = holdout.fraction if holdout is not None else None
            return DaskRows(self.X, self.y, self.sample_weight, encoder, fraction)
        targets = encoder(self.y) if encoder is not None else None
        validation = (
            holdout.split(self.y, self.sample_weight) if holdout is not None else None
        )
        return InMemoryRows(self.X, targets, self.sample_weight, validation)
