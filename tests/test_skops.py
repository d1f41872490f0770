"""Safe persistence with skops (skbce.skops.TRUSTED_TYPES).

Skipped unless skops is installed (the ``skops`` extra). Every fitted skbce
estimator must load with ``trusted=TRUSTED_TYPES`` and nothing else of
skbce's: a private type that a new attribute brings in fails here, not in a
user's hands.
"""

import copy
import doctest

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

sio = pytest.importorskip("skops.io")

import skbce.skops
from skbce import MultiLabelLogistic, MultiLabelLogisticCV, MultiLabelThresholdCV
from skbce.skops import TRUSTED_TYPES


def _data(n_samples=240, n_features=5, n_labels=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    W = rng.normal(size=(n_features, n_labels))
    Y = (X @ W + rng.normal(size=(n_samples, n_labels)) > 0).astype(np.int64)
    return X, Y


X, Y = _data()
HALF = len(X) // 2

ESTIMATORS = {
    "fit multi-label": lambda: MultiLabelLogistic().fit(X, Y),
    "fit binary strings": lambda: MultiLabelLogistic().fit(X, np.where(Y[:, 0], "b", "a")),
    "fit float32 sgd": lambda: MultiLabelLogistic(solver="sgd", random_state=0).fit(
        X.astype(np.float32), Y),
    "partial_fit stream": lambda: MultiLabelLogistic(random_state=0).partial_fit(
        X[:HALF], Y[:HALF]).partial_fit(X[HALF:], Y[HALF:]),
    "partial_fit passes": lambda: MultiLabelLogistic(random_state=0).partial_fit(
        X[:HALF], Y[:HALF], n_samples_per_pass=len(X)).partial_fit(X[HALF:], Y[HALF:]),
    "cv": lambda: MultiLabelLogisticCV(Cs=3, cv=3).fit(X, Y),
    "thresholds around skbce": lambda: MultiLabelThresholdCV(MultiLabelLogistic(), cv=3).fit(
        X, Y),
    "thresholds around a forest": lambda: MultiLabelThresholdCV(
        RandomForestClassifier(n_estimators=5, random_state=0), cv=3).fit(X, Y),
}


def _others(data):
    """The untrusted types of a dump that are not skbce's to vouch for."""
    untrusted = sio.get_untrusted_types(data=data)
    ours = [name for name in untrusted if name.startswith("skbce.")]
    assert set(ours) <= set(TRUSTED_TYPES), f"skbce types missing from TRUSTED_TYPES: {ours}"
    return [name for name in untrusted if name not in TRUSTED_TYPES]


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_round_trip(name):
    model = ESTIMATORS[name]()
    data = sio.dumps(model)
    others = _others(data)
    if "forest" in name:
        # skops' own verdict on scikit-learn's trees, as for the forest alone.
        assert others == sio.get_untrusted_types(data=sio.dumps(model.estimator_))
    else:
        assert others == []
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.loads(data)  # nothing trusted: refused
    loaded = sio.loads(data, trusted=TRUSTED_TYPES + others)
    assert type(loaded) is type(model)
    X_test = X[:50].astype(np.float32) if "float32" in name else X[:50]
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    np.testing.assert_array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))


@pytest.mark.parametrize("name", ["partial_fit stream", "partial_fit passes"])
def test_loaded_model_goes_on_learning(name):
    # The partial_fit state survives: the loaded model's next call gives what
    # the original's next call gives.
    model = ESTIMATORS[name]()
    loaded = sio.loads(sio.dumps(model), trusted=TRUSTED_TYPES)
    original = copy.deepcopy(model)
    for estimator in (loaded, original):
        estimator.partial_fit(X[:HALF], Y[:HALF]).partial_fit(X[HALF:], Y[HALF:])
    assert loaded.solver_ == original.solver_
    np.testing.assert_array_equal(loaded.coef_, original.coef_)
    np.testing.assert_array_equal(loaded.intercept_, original.intercept_)


def test_trusted_types_are_importable_names():
    # Every name resolves to a type: a renamed class would leave a stale entry.
    import importlib

    for name in TRUSTED_TYPES:
        module, _, attribute = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attribute), type), name


def test_module_doctest():
    result = doctest.testmod(skbce.skops, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
