"""How the kernels receive their rows: one argument list for dense and CSR."""

from __future__ import annotations

from typing import Any

import numpy as np


def kernel_rows(
    X: Any, dtype: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Split ``X`` into the arrays a jitted kernel takes.

    numba compiles one kernel for both layouts; the layout not in use gets
    empty placeholder arrays of the right types.

    Parameters
    ----------
    X : ndarray or scipy.sparse.csr_matrix
    dtype : numpy dtype
        The model's dtype (for the placeholders).

    Returns
    -------
    dense, data, indices, indptr : ndarray
    is_sparse : bool
    """
    if hasattr(X, "indptr"):
        dense = np.empty((0, 0), dtype=dtype)
        return dense, X.data, X.indices, X.indptr, True
    empty_index = np.empty(0, dtype=np.int32)
    return X, np.empty(0, dtype=dtype), empty_index, empty_index, False
