"""Settings of the executed gallery that sphinx-gallery imports by name."""

from __future__ import annotations

from typing import Any

#: Rows the examples generate when the documentation is built: enough for every
#: plot to show what the full-size run shows, small enough for a docs build
#: on two cores to run every example in seconds.
DOCS_ROWS = 20_000


def small_data_argv(gallery_conf: dict[str, Any], script_vars: dict[str, Any]) -> list:
    """Command-line arguments of every example when sphinx-gallery runs it."""
    return ["--rows", str(DOCS_ROWS)]
