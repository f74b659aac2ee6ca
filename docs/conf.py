"""Sphinx configuration of the dask-asgd documentation.

Build from the repository root, with the output outside the source tree::

    python -m sphinx -b html docs /tmp/dask-asgd-html

The build needs the package's runtime dependencies (autodoc imports
``dask_asgd``) and the ``docs`` extra (``pip install ".[docs]"``). It works
offline: intersphinx inventories that cannot be fetched only cost their links
to the other projects' docs, not the build (see ``_IntersphinxOffline``).
"""

from __future__ import annotations

import logging
import os
import sys

# The package is documented from this checkout, installed or not; the
# gallery's settings (``_gallery.py``) are imported by name from here.
sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))

from sphinx.util.nodes import get_node_source

import dask_asgd

# -- Project ---------------------------------------------------------------

project = "dask-asgd"
author = "dask-asgd developers"
copyright = "dask-asgd developers"
release = dask_asgd.__version__
version = ".".join(release.split(".")[:2])

# -- General ---------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc ---------------------------------------

autosummary_generate = True
autodoc_typehints = "none"  # types live in the numpydoc docstrings
autodoc_member_order = "groupwise"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- intersphinx -------------------------------------------------------------

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "dask": ("https://docs.dask.org/en/stable/", None),
    "distributed": ("https://distributed.dask.org/en/stable/", None),
    "numba": ("https://numba.readthedocs.io/en/stable/", None),
}
# Offline build machines fail fast instead of waiting on every inventory.
intersphinx_timeout = 5


class _IntersphinxOffline(logging.Filter):
    """Turn "failed to reach any of the inventories" into an info message.

    Sphinx logs that failure as an untyped warning, which ``suppress_warnings``
    cannot name and ``-W`` turns into an error. Without the inventories the
    cross-project links render as plain text; every other warning, ours
    included, still fails a ``-W`` build.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "inventor" in str(record.msg):
            record.levelno = logging.INFO
            record.levelname = "INFO"
        return True


class _InheritedScikitLearnRefs(logging.Filter):
    """Make unresolved references in scikit-learn's own docstrings info messages.

    The API pages show the methods the estimators inherit from scikit-learn
    (``score``, ``get_params``, ``set_*_request``, ...). Their docstrings
    refer to labels and glossary terms of scikit-learn's documentation, which
    only the scikit-learn inventory resolves: offline they would be warnings
    about text that is not ours. References in dask-asgd's own docstrings and
    pages still warn.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and getattr(record, "type", None) == "ref":
            try:
                source = get_node_source(record.location)
            except (AttributeError, TypeError, ValueError):
                source = str(getattr(record, "location", ""))
            if "docstring of sklearn." in source:
                record.levelno = logging.INFO
                record.levelname = "INFO"
        return True


# Sphinx's loggers live under the "sphinx." namespace; a Sphinx module's logger
# is named "sphinx." + its module name, hence the doubled prefix.
logging.getLogger("sphinx.sphinx.ext.intersphinx").addFilter(_IntersphinxOffline())
# Missing :term: references warn from the first, missing :ref: labels from the
# second.
for _name in ("sphinx.transforms.post_transforms", "sphinx.domains.std"):
    logging.getLogger("sphinx." + _name).addFilter(_InheritedScikitLearnRefs())

# -- sphinx-gallery ----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Every example runs in the docs build, on small data (``_gallery.py``
    # passes ``--rows``), and its matplotlib figures go into its page.
    "filename_pattern": r"\.py$",
    "reset_argv": "_gallery.small_data_argv",
    "doc_module": ("dask_asgd",),
    "backreferences_dir": "generated/backreferences",
    "remove_config_comments": True,
    # The report would be written into docs/ itself (sg_execution_times.rst),
    # outside .gitignore; the build's log says how long each example took.
    "write_computation_times": False,
}

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"dask-asgd {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_show_sourcelink = False
html_static_path = ["_static"]
