"""The driver's ``asgd.*`` settings, carried by a pickled estimator into joblib's
worker processes.

``GridSearchCV(n_jobs=-1)`` without a client fits in loky's worker
processes, which read Dask's configuration from files and environment
variables when they start: a ``dask.config.set`` made in the parent never
reaches them. scikit-learn meets the same problem for its own settings by
wrapping every task with the parent's ``get_config()``; joblib offers no such
hook to other libraries, so the estimator itself carries the settings: it
pickles the parent's ``asgd`` section with its state, and unpickled in a
joblib worker process it makes them that process's settings. Anywhere else (a
model loaded from disk, a Dask worker) the pickled settings are dropped, and
the process keeps its own.
"""

from __future__ import annotations

import copy
from typing import Any

import dask

from ..backends import inside_joblib_worker_process

#: Key of the settings in the pickled state; never an attribute.
_STATE_KEY = "_asgd_driver_settings"


class DriverSettingsMixin:
    """Pickle the ``asgd`` configuration with the estimator, and apply it when
    unpickled in a joblib worker process.

    Applied to the whole worker process (``dask.config.set`` without a
    ``with``), not to one fit, so that estimators cloned in the worker (inside
    a ``OneVsRestClassifier``, say) and the embedded cluster it starts see
    them too. A joblib worker process runs only its parent's tasks, and every
    task brings the settings the parent had when it dispatched the task.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # type: ignore[misc]
        # No section: the configuration was reset after import (as the
        # fixtures of ``distributed.utils_test`` do), so the packaged
        # defaults apply here, and apply in the worker process anyway.
        settings = dask.config.get("asgd", default=None)
        if settings is not None:
            state[_STATE_KEY] = copy.deepcopy(settings)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        settings = state.pop(_STATE_KEY, None)
        super().__setstate__(state)  # type: ignore[misc]
        if settings is not None and inside_joblib_worker_process():
            dask.config.set({"asgd": settings})
