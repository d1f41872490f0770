#!/usr/bin/env bash
# Build the HTML documentation into docs/_build/html, warnings as errors.
#
# Needs skbce and its docs extra installed in the Python environment whose
# sphinx-build is first on PATH:  pip install ".[docs]"  then  docs/build.sh
#
# It runs Sphinx from docs/, so Sphinx imports the installed skbce, never the
# source tree at the repository root (which has no compiled kernels).
set -euo pipefail
cd "$(dirname "$0")"
export MPLBACKEND=Agg
sphinx-build -W --keep-going -b html . _build/html
