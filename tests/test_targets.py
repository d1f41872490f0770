"""MultiLabelLogistic on targets of every type: what fit keeps, what predict returns.

The expected dtypes are those a scikit-learn user meets elsewhere: 1-D labels
come back as they went in (as from ``LogisticRegression`` and
``OneVsRestClassifier``), a 2-D indicator matrix of integers or bools keeps its
dtype, and one of floats becomes ``int64``, as ``OneVsRestClassifier``
returns.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from skbce import MultiLabelLogistic

pd = pytest.importorskip("pandas")


def labels(seed=0, n_samples=80):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 3))
    Y = (X[:, :2] + rng.normal(size=(n_samples, 2)) > 0).astype(np.int64)
    return X, Y


def as_target(Y, kind):
    """Y (0/1 int64) in the container and dtype named by ``kind``."""
    frame = pd.DataFrame(Y, columns=[f"label{j}" for j in range(Y.shape[1])])
    return {
        "int64": lambda: Y,
        "int8": lambda: Y.astype(np.int8),
        "uint8": lambda: Y.astype(np.uint8),
        "bool": lambda: Y.astype(bool),
        "float64": lambda: Y.astype(np.float64),
        "float32": lambda: Y.astype(np.float32),
        "pandas int64": lambda: frame,
        "pandas Int64": lambda: frame.astype("Int64"),
        "pandas Int8": lambda: frame.astype("Int8"),
        "pandas boolean": lambda: frame.astype(bool).astype("boolean"),
        "pandas Float64": lambda: frame.astype("Float64"),
        "pandas float64": lambda: frame.astype(np.float64),
    }[kind]()


# 2-D indicator matrices: integers and bools keep their type, floats give int64.
MULTILABEL_PREDICT_DTYPE = {
    "int64": np.int64,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
    "float64": np.int64,
    "float32": np.int64,
    "pandas int64": np.int64,
    "pandas Int64": np.int64,
    "pandas Int8": np.int8,
    "pandas boolean": np.bool_,
    "pandas Float64": np.int64,
    "pandas float64": np.int64,
}


@pytest.mark.parametrize("kind", MULTILABEL_PREDICT_DTYPE)
def test_multilabel_predict_dtype(kind):
    X, Y = labels()
    model = MultiLabelLogistic().fit(X, as_target(Y, kind))
    predicted = model.predict(X)
    assert predicted.dtype == MULTILABEL_PREDICT_DTYPE[kind]
    expected = (model.predict_proba(X) >= 0.5).astype(np.int64)
    assert_array_equal(predicted.astype(np.int64), expected)


def test_multilabel_predict_of_soft_targets_is_an_int64_indicator():
    X, Y = labels()
    soft = np.clip(Y * 0.8 + 0.1, 0, 1)
    predicted = MultiLabelLogistic().fit(X, soft).predict(X)
    assert predicted.dtype == np.int64
    assert set(np.unique(predicted)) <= {0, 1}


@pytest.mark.parametrize(
    "kind, dtype",
    [
        ("int64", np.int64),
        ("int8", np.int8),
        ("bool", np.bool_),
        ("float64", np.float64),
        ("pandas Int64", np.int64),
        ("pandas Int8", np.int8),
        ("pandas boolean", np.bool_),
        ("pandas Float64", np.float64),
    ],
)
def test_binary_predict_dtype_is_that_of_the_labels(kind, dtype):
    X, Y = labels()
    target = as_target(Y[:, :1], kind)
    y = target.iloc[:, 0] if hasattr(target, "iloc") else target[:, 0]
    model = MultiLabelLogistic().fit(X, y)
    assert model.classes_.dtype == dtype
    assert model.predict(X).dtype == dtype
    # What OneVsRestClassifier, which keeps the labels as given, returns.
    ovr = OneVsRestClassifier(LogisticRegression()).fit(X, y)
    assert model.predict(X).dtype == ovr.predict(X).dtype
    assert_array_equal(model.predict(X), ovr.predict(X))


@pytest.mark.parametrize("kind", ["int64", "pandas Int64", "pandas boolean", "float64"])
def test_one_column_target_is_a_binary_target(kind):
    X, Y = labels()
    column = as_target(Y[:, :1], kind)
    flat = column.iloc[:, 0] if hasattr(column, "iloc") else column[:, 0]
    model = MultiLabelLogistic().fit(X, column)
    reference = MultiLabelLogistic().fit(X, flat)
    assert_array_equal(model.classes_, reference.classes_)
    assert model.predict_proba(X).shape == (len(X), 2)
    assert_array_equal(model.predict_proba(X), reference.predict_proba(X))
    assert model.predict(X).shape == (len(X),)
    assert model.predict(X).dtype == reference.predict(X).dtype
    assert model.score(X, column) == reference.score(X, flat)
