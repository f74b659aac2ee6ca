"""The one place that decides how kernels are compiled.

Every kernel is compiled with the same options so that their behaviour is
predictable:

* ``nogil=True``: training runs inside a Dask task while the worker's event
  loop must keep answering peers and the scheduler (a GIL-holding kernel was
  measured to stall a worker's handlers for the whole call).
* ``cache=True``: each worker process compiles once per machine, not once per
  fit. Set ``NUMBA_CACHE_DIR`` when the package is installed read-only.
* ``error_model="numpy"``: divisions follow IEEE rules instead of raising, which
  removes a branch per division from the inner loops.
* ``fastmath={"reassoc", "contract"}``: lets LLVM vectorise dot products and
  fuse multiply-adds. Results then differ from scikit-learn's in the last bits
  only. The flags that assume no NaN or infinity are left out on purpose:
  training must notice a diverging model.
"""

from __future__ import annotations

JIT_OPTIONS = {
    "nogil": True,
    "cache": True,
    "error_model": "numpy",
    "fastmath": {"reassoc", "contract"},
}
