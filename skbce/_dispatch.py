"""Whether inputs are dask collections, without importing dask.

skbce's dask support is optional: the estimator and the metrics ask this
module before they import :mod:`skbce._dask`. If dask was never imported, no
object can be a dask collection, so numpy users pay one dictionary lookup.
"""

import sys


def is_dask_collection(*objects):
    """True if any of ``objects`` is a dask collection (e.g. a dask array)."""
    dask = sys.modules.get("dask")
    if dask is None:
        return False
    return any(dask.is_dask_collection(obj) for obj in objects if obj is not None)
