"""Safe persistence of skbce's estimators with skops: the types to trust.

:func:`skops.io.load` rebuilds only the types it trusts: numpy's,
scipy's and most of scikit-learn's by default, and any other type the caller
names in ``trusted=``. skops 0.16 has no registry through which a third-party
package could declare its own types safe, so skbce publishes the list:
``skops.io.load(file, trusted=skbce.skops.TRUSTED_TYPES)`` loads every fitted
skbce estimator, the user naming no private module path.

The list holds the estimators and the private objects they keep between
calls (the pass and SGD state of :meth:`~skbce.MultiLabelLogistic.partial_fit`,
so that a loaded model goes on learning where it stopped), and ``numpy.dtype``,
which skops does not trust by default and the estimators keep (the dtype of
the targets, for :meth:`~skbce.MultiLabelLogistic.predict`). Each is rebuilt
by skops from its attributes, never by unpickling: none runs code of its own
when loaded. Types of other packages inside a skbce model -- the estimator a
:class:`~skbce.MultiLabelThresholdCV` tunes, say a forest whose trees skops
0.16 does not trust by default -- are the caller's to review with
:func:`skops.io.get_untrusted_types`, as for that estimator alone.

This module imports neither skops nor anything skbce does not already import;
the ``skops`` extra installs skops.

Examples
--------
>>> import numpy as np
>>> import skops.io as sio
>>> from skbce import MultiLabelLogistic
>>> from skbce.skops import TRUSTED_TYPES
>>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
>>> Y = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
>>> model = MultiLabelLogistic(C=10.0).fit(X, Y)
>>> data = sio.dumps(model)
>>> [name for name in sio.get_untrusted_types(data=data) if name not in TRUSTED_TYPES]
[]
>>> loaded = sio.loads(data, trusted=TRUSTED_TYPES)
>>> bool((loaded.predict_proba(X) == model.predict_proba(X)).all())
True
"""

from skbce.linear_model import MultiLabelLogistic, MultiLabelLogisticCV
from skbce.linear_model._newton_passes import NewtonPasses, SampledNewtonPasses
from skbce.linear_model._partial_fit import _Pass
from skbce.linear_model._sgd import SGDState
from skbce.model_selection import MultiLabelThresholdCV

__all__ = ["TRUSTED_TYPES"]


def _type_name(cls):
    # The name skops gives a type (skops.io.get_untrusted_types lists these).
    return f"{cls.__module__}.{cls.__qualname__}"


_SKBCE_TYPES = (
    MultiLabelLogistic,
    MultiLabelLogisticCV,
    MultiLabelThresholdCV,
    # What partial_fit keeps between calls.
    _Pass,
    SGDState,
    NewtonPasses,
    SampledNewtonPasses,
)

#: Names of the types in a fitted skbce estimator that skops does not trust
#: by default; pass them as ``trusted=`` to :func:`skops.io.load` or
#: :func:`skops.io.loads`. A list of ``str``, sorted.
TRUSTED_TYPES = sorted([_type_name(cls) for cls in _SKBCE_TYPES] + ["numpy.dtype"])
