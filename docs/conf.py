"""Sphinx configuration of the skbce documentation.

The docs describe the *installed* skbce (``pip install ".[docs]"``): the
source tree has no compiled kernels, so this file never puts the repository
root on ``sys.path``; run ``docs/build.sh`` (or ``sphinx-build`` from any
directory other than the repository root).
"""

import os

# The gallery examples draw figures; no display is needed (or available in CI).
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import skbce
    from skbce import _bce  # noqa: F401  (the compiled kernels)
except ImportError as exc:
    raise RuntimeError(
        "The docs are built against an installed skbce: run "
        "`pip install \".[docs]\"` and build with docs/build.sh, not from the "
        f"repository root ({exc})."
    ) from exc

project = "skbce"
author = "The skbce developers"
copyright = "2026, The skbce developers"
release = skbce.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
# No intersphinx: the build must not need the network.

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
root_doc = "index"

autosummary_generate = True
autodoc_default_options = {"members": False}
# Methods are listed by the class template; numpydoc's own member tables
# would list them a second time (and warn about the missing stubs).
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "min_reported_time": 1,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skbce {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []
html_show_sourcelink = False
