"""scikit-learn's order of visiting rows in plain SGD, reproduced.

scikit-learn's SGD shuffles its index array in place at the start of every
epoch, by a Fisher-Yates pass drawing from its own 32-bit xorshift generator
(``our_rand_r``), started again from the same seed each epoch: epoch ``e``
visits the rows in the composition of ``e`` such permutations. Used when a
linear model trains on one worker, so that it takes the same path as
scikit-learn on the same rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._options import JIT_OPTIONS

_MASK32 = np.uint64(0xFFFFFFFF)
#: scikit-learn's RAND_R_MAX + 1.
_RAND_R_RANGE = np.uint64(2147483648)


@njit(**JIT_OPTIONS)
def _our_rand_r(state):
    # Arithmetic on 32 bits, as scikit-learn's C code does it.
    if state[0] == 0:
        state[0] = np.uint64(1)
    seed = state[0]
    seed ^= (seed << np.uint64(13)) & _MASK32
    seed ^= seed >> np.uint64(17)
    seed ^= (seed << np.uint64(5)) & _MASK32
    state[0] = seed
    return seed % _RAND_R_RANGE


@njit(**JIT_OPTIONS)
def _shuffle(index, seed):
    state = np.empty(1, dtype=np.uint64)
    state[0] = seed
    n = index.shape[0]
    for i in range(n - 1):
        j = i + int(_our_rand_r(state) % np.uint64(n - i))
        index[i], index[j] = index[j], index[i]


def sklearn_shuffle(index: np.ndarray, seed: int) -> None:
    """Permute ``index`` in place as one epoch of scikit-learn's SGD does.

    Parameters
    ----------
    index : ndarray of int64
        The order of the previous epoch (``arange(n)`` before the first).
    seed : int
        The seed scikit-learn's ``_plain_sgd`` receives, in [0, 2**31 - 1).
    """
    _shuffle(index, np.uint64(int(seed) & 0xFFFFFFFF))
