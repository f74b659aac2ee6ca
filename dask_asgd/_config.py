"""Infrastructure settings under the ``asgd`` namespace of :mod:`dask.config`.

Hyperparameters are estimator parameters, never config: only knobs of the
machinery (embedded cluster, exchange buffers, timeouts) live here.
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "asgd.yaml")

with open(_CONFIG_FILE) as _file:
    _defaults = yaml.safe_load(_file)

dask.config.update_defaults(_defaults)


def _packaged_default(key: str, fallback: Any) -> Any:
    value: Any = _defaults["asgd"]
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return fallback
        value = value[part]
    return value


def get(key: str, default: Any = None) -> Any:
    """Return ``asgd.<key>`` from the Dask configuration.

    Falls back to the value shipped in ``asgd.yaml`` (then to ``default``)
    when the configuration was reset after import, as the fixtures of
    ``distributed.utils_test`` do.
    """
    return dask.config.get(f"asgd.{key}", default=_packaged_default(key, default))
