"""Checks and conversions of Dask arrays and DataFrames, to fit and to predict.

Dask input is validated lazily: shapes, dtypes and feature names here, values
(NaN, infinity) on the workers when the partitions are built, so that nothing
is computed on the driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import _check_feature_names, _check_n_features


def is_dask_collection(X: Any) -> bool:
    """Whether ``X`` is a Dask array, DataFrame or Series."""
    import dask

    return dask.is_dask_collection(X)


def _as_dask_array(data: Any, row_chunks: tuple[int, ...] | None) -> Any:
    import dask.array as da
    import dask.dataframe as dd

    if isinstance(data, (dd.DataFrame, dd.Series)):
        return with_numpy_dtypes(data).to_dask_array(lengths=True)
    if isinstance(data, da.Array):
        return data
    array = np.asarray(data)
    return da.from_array(array, chunks=(row_chunks, *array.shape[1:]))


def with_numpy_dtypes(data: Any) -> Any:
    """A Dask DataFrame or Series with NumPy dtypes instead of pandas' own.

    Dask turns pandas extension dtypes (``string``, ``category``,
    ``Int64``...) into arrays through ``object``, with a UserWarning on every
    call. The conversion is done here, lazily and on purpose: numeric ones
    to their NumPy dtype (``Float64`` with missing values becomes ``float64``
    with NaN, which validation then refuses), the others (labels) to
    ``object``.
    """
    import pandas as pd

    def numpy_dtype(dtype: Any) -> Any:
        if not isinstance(dtype, pd.api.extensions.ExtensionDtype):
            return dtype
        if pd.api.types.is_float_dtype(dtype):
            return np.float64
        if pd.api.types.is_numeric_dtype(dtype) and hasattr(dtype, "numpy_dtype"):
            return dtype.numpy_dtype
        return object

    dtypes = data._meta.dtypes if data.ndim == 2 else {None: data._meta.dtype}
    wanted = {name: numpy_dtype(dtype) for name, dtype in dict(dtypes).items()}
    if all(wanted[name] is dtype for name, dtype in dict(dtypes).items()):
        return data
    return data.astype(wanted if data.ndim == 2 else wanted[None])


def check_numeric_columns(estimator: Any, X: Any) -> None:
    """Refuse a Dask DataFrame with a non-numeric column, on the driver.

    The DataFrame's meta says it before any task runs; converting the
    column on the workers would fail there, once per partition.
    """
    import pandas as pd

    for name, dtype in X._meta.dtypes.items():
        if not (
            pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        ):
            raise ValueError(
                f"Column {name!r} of the Dask DataFrame has dtype {dtype}, which "
                f"is not numeric: {type(estimator).__name__} takes numeric "
                "features only. Encode it first (one-hot columns, for example) "
                "or drop it."
            )


def validate_dask_data(
    estimator: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    reset: bool,
    requires_y: bool = True,
) -> tuple[Any, Any, Any]:
    """Check and align Dask ``X``, ``y`` and ``sample_weight``.

    Sets ``n_features_in_`` and ``feature_names_in_`` on ``estimator`` when
    ``reset``, else checks them, in scikit-learn's words. With
    ``requires_y=False`` (clustering) ``y`` is ignored.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features), float32 or float64
        Row chunks of known size, one chunk along the columns.
    y : dask.array.Array of shape (n_samples,) or None
        Chunked like ``X``'s rows; None unless ``requires_y``.
    sample_weight : dask.array.Array of shape (n_samples,) or None
    """
    import dask.dataframe as dd

    # A Dask DataFrame's empty pandas "meta" carries its column names and
    # dtypes.
    _check_feature_names(
        estimator, X._meta if isinstance(X, dd.DataFrame) else X, reset=reset
    )
    if isinstance(X, dd.DataFrame):
        check_numeric_columns(estimator, X)
    X = _as_dask_array(X, None)
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data "
            "either using array.reshape(-1, 1) if your data has a single feature "
            "or array.reshape(1, -1) if it contains a single sample."
        )
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    _check_n_features(estimator, X, reset=reset)
    if X.shape[1] == 0:
        raise ValueError(
            f"0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    X = X.rechunk({1: -1})
    if not requires_y:
        return X, None, align_sample_weight(sample_weight, X)
    if y is None:
        raise ValueError(
            f"{type(estimator).__name__} requires y to be passed, but the target y "
            "is None."
        )
    y = _as_dask_array(y, X.chunks[0])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y should be a 1d array, got an array of shape {y.shape}.")
    if any(np.isnan(c) for c in y.chunks[0]):
        y = y.compute_chunk_sizes()
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{X.shape[0]}, {y.shape[0]}]"
        )
    y = y.rechunk((X.chunks[0],))
    return X, y, align_sample_weight(sample_weight, X)


def align_sample_weight(sample_weight: Any, X: Any) -> Any:
    """``sample_weight`` as a Dask array chunked like the rows of Dask ``X``.

    None stays None; a length other than ``X``'s rows is a ValueError.
    """
    if sample_weight is None:
        return None
    sample_weight = _as_dask_array(sample_weight, X.chunks[0])
    if sample_weight.shape != (X.shape[0],):
        raise ValueError(
            f"sample_weight.shape == {sample_weight.shape}, expected {(X.shape[0],)}!"
        )
    return sample_weight.rechunk((X.chunks[0],))


def map_rows(function: Any, X: Any, n_columns: int | None, dtype: Any) -> Any:
    """Apply ``function`` to each row chunk of Dask ``X`` (lazily).

    Parameters
    ----------
    function : callable
        Takes a block of rows (NumPy or DataFrame chunk as an array).
    X : dask array or DataFrame
    n_columns : int or None
        Columns of the result; None for a 1-D result.
    dtype : numpy dtype
        Dtype of the result.

    Returns
    -------
    dask.array.Array
    """
    X = _as_dask_array(X, None).rechunk({1: -1})
    if n_columns is None:
        return X.map_blocks(function, drop_axis=1, dtype=dtype)
    return X.map_blocks(function, chunks=(X.chunks[0], (n_columns,)), dtype=dtype)
