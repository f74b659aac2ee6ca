"""Warnings that point at the user's line, not into this package."""

from __future__ import annotations

import os
import sys
import warnings

import sklearn

#: Frames in these folders are ours or scikit-learn's wrappers of ``fit``
#: (``_fit_context``): a warning skips them to reach the caller's line.
_INTERNAL = tuple(
    os.path.dirname(module.__file__) + os.sep
    for module in (sys.modules[__name__.split(".")[0]], sklearn)
)


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """Warn with ``stacklevel`` at the first frame outside dask-asgd and
    scikit-learn: the user's ``fit`` call, wherever inside the fit the
    warning is raised (a fixed ``stacklevel`` breaks whenever the path to it
    changes)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level + 1)
