"""Sphinx configuration of sklstm's documentation site.

Build the site, examples shown but not run (seconds; what CI checks)::

    python -m sphinx -W --keep-going -b html doc doc/_build/html

Build it with the examples gallery executed (trains models; minutes)::

    python -m sphinx -W --keep-going -D plot_gallery=1 -b html doc doc/_build/html
"""

from __future__ import annotations

import sklstm

project = "sklstm"
author = "The sklstm developers"
copyright = "2026, The sklstm developers"
# Single source: the package's own version string.
release = sklstm.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "sg_execution_times.rst"]
templates_path = ["_templates"]

# Every cross-reference must resolve: a broken one is a warning, and the
# build runs with -W, so it fails.
nitpicky = True
# References into other projects cannot be resolved without intersphinx,
# which needs their sites (CI reaches none), so they alone are let through;
# they come from the docstrings sklstm inherits from scikit-learn.
nitpick_ignore_regex = [
    (r"py:.*", r"(sklearn|numpy|pandas|torch|skorch|matplotlib)\..*")
]
# The numpydoc sections carry the types; signatures stay short and readable.
autodoc_typehints = "none"
autodoc_default_options = {"member-order": "groupwise"}
autosummary_generate = True
autosummary_imported_members = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# sphinx-gallery: examples/plot_*.py become the gallery. They are shown but
# not run unless plot_gallery is set (-D plot_gallery=1), so the ordinary
# build stays fast; a run that fails is an error.
plot_gallery = "False"
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "abort_on_example_error": True,
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("sklstm",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

myst_heading_anchors = 3

html_theme = "furo"
html_title = f"sklstm {release}"
html_static_path = ["_static"]
html_theme_options = {
    "source_repository": "https://github.com/sklstm/sklstm/",
    "source_branch": "main",
    "source_directory": "doc/",
}
