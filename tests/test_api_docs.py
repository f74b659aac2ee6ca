"""Every public name of the package has an entry in the API reference."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import dask_asgd
from dask_asgd import backends, plotting, simulation

API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.rst"


def public_functions(module) -> list[str]:
    """Functions defined in ``module`` itself whose names do not start with _."""
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and inspect.isfunction(value)
        and value.__module__ == module.__name__
    ]


def documented_names() -> set[str]:
    """The names listed in api.rst's autosummary blocks."""
    names = set()
    for line in API_PAGE.read_text().splitlines():
        if line.startswith("   ") and not line.strip().startswith(":"):
            names.add(line.strip())
    return names


@pytest.mark.parametrize(
    "name",
    [name for name in dask_asgd.__all__ if name != "__version__"]
    + [f"simulation.{name}" for name in simulation.__all__]
    + [f"plotting.{name}" for name in public_functions(plotting)]
    + [f"backends.{name}" for name in public_functions(backends)],
)
def test_public_name_is_in_the_api_reference(name):
    assert name in documented_names(), f"{name} is missing from docs/api.rst"


def test_version_is_mentioned_in_the_api_reference():
    assert "dask_asgd.__version__" in API_PAGE.read_text()
