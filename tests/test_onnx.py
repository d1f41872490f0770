"""ONNX export (skbce.onnx): onnxruntime gives what the estimators give.

Skipped unless the ``onnx`` extra (skl2onnx, onnx, onnxruntime) is installed.
The reference is always the estimator itself on the same input dtype: its
``predict`` exactly, its ``predict_proba`` to the rounding of that dtype
(onnxruntime's matrix product and sigmoid round differently from BLAS and
scipy's ``expit``).
"""

import doctest
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
skbce_onnx = pytest.importorskip("skbce.onnx")

from skbce import MultiLabelLogistic, MultiLabelLogisticCV, MultiLabelThresholdCV

DATA = Path(os.environ.get("SKBCE_BENCH_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
# predict_proba of float32 graphs: a few units of float32 rounding of values
# up to 1 (the scores' rounding, amplified at most 1/4 by the sigmoid).
TOLERANCE = {np.float32: 2e-6, np.float64: 1e-13}


def _session(model, X):
    graph = skl2onnx.to_onnx(model, X[:1])
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(model, X):
    session = _session(model, X)
    assert [output.name for output in session.get_outputs()] == ["label", "probabilities"]
    label, proba = session.run(None, {session.get_inputs()[0].name: X})
    return label, proba


def _check(model, X, atol=None):
    """The graph's label and probabilities against predict and predict_proba."""
    label, proba = _run(model, X)
    expected = model.predict(X)
    assert label.shape == expected.shape
    np.testing.assert_array_equal(label, expected)
    expected_proba = model.predict_proba(X)
    if isinstance(expected_proba, list):  # a multi-output forest
        expected_proba = np.stack(expected_proba)
    assert proba.dtype == X.dtype
    assert proba.shape == expected_proba.shape
    atol = TOLERANCE[X.dtype.type] if atol is None else atol
    np.testing.assert_allclose(proba, expected_proba, rtol=0, atol=atol)
    return label, proba


def _synthetic(n_samples=300, n_features=6, n_labels=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 20, n_features) + 3
    W = rng.normal(size=(n_features, n_labels))
    logits = (X - 3) @ W / 10 + rng.normal(size=(n_samples, n_labels))
    return X, (logits > 0).astype(np.int64)


@pytest.fixture(scope="module")
def data():
    return _synthetic()


TARGETS = {
    "multi-label": lambda Y: Y,
    "binary": lambda Y: Y[:, 0],
    "one-column": lambda Y: Y[:, :1],
    "strings": lambda Y: np.where(Y[:, 0] == 1, "yes", "no"),
    "bool multi-label": lambda Y: Y.astype(bool),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", list(TARGETS))
def test_pipeline_matches_estimator(data, target, dtype):
    X, Y = data
    model = make_pipeline(StandardScaler(), MultiLabelLogistic()).fit(X, TARGETS[target](Y))
    label, proba = _check(model, X.astype(dtype))
    if target in ("binary", "one-column", "strings"):
        assert proba.shape == (len(X), 2) and label.shape == (len(X),)
    else:
        assert proba.shape == Y.shape and label.shape == Y.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_dtype_and_graph_dtype_differ(data, dtype):
    # A model fitted in float64 served on float32 inputs (and the converse):
    # skbce casts coef_ to the dtype of X; so does the graph.
    X, Y = data
    other = np.float64 if dtype == np.float32 else np.float32
    model = make_pipeline(StandardScaler(), MultiLabelLogistic()).fit(X.astype(other), Y)
    _check(model, X.astype(dtype))


def test_per_label_threshold(data):
    X, Y = data
    model = make_pipeline(StandardScaler(), MultiLabelLogistic(threshold=[0.2, 0.4, 0.6, 0.8]))
    label, proba = _check(model.fit(X, Y), X.astype(np.float32))
    # The graph applies the thresholds, not 0.5.
    np.testing.assert_array_equal(label, proba >= np.array([0.2, 0.4, 0.6, 0.8]))


def test_soft_targets_and_float_classes(data):
    X, Y = data
    Xs = StandardScaler().fit_transform(X)
    soft = MultiLabelLogistic().fit(Xs, np.clip(Y[:, 0] * 0.8 + 0.1, 0, 1))
    assert soft.classes_.tolist() == [0, 1]
    _check(soft, Xs)
    float_labels = MultiLabelLogistic().fit(Xs, Y[:, 0].astype(np.float64))
    label, _ = _check(float_labels, Xs)
    assert label.dtype == np.float64


def test_multilabel_logistic_cv(data):
    X, Y = data
    model = make_pipeline(StandardScaler(), MultiLabelLogisticCV(Cs=3, cv=3)).fit(X, Y)
    _check(model, X.astype(np.float32))
    _check(model, X)


def test_sparse_coefficients_are_read_dense(data):
    # coef_ may be a scipy.sparse matrix (a pruned model): the graph holds its
    # dense values, and gives what the dense coef_ gives.
    X, Y = data
    Xs = StandardScaler().fit_transform(X).astype(np.float32)
    model = MultiLabelLogistic(C=0.05).fit(Xs, Y)
    dense_label, dense_proba = _run(model, Xs)
    pruned = clone(model)
    pruned.__dict__.update(model.__dict__)
    pruned.coef_ = sparse.csr_matrix(model.coef_)
    label, proba = _run(pruned, Xs)
    np.testing.assert_array_equal(label, dense_label)
    np.testing.assert_array_equal(proba, dense_proba)


THRESHOLD_CASES = {
    "skbce multi-label": (lambda: make_pipeline(StandardScaler(), MultiLabelLogistic()), "Y"),
    "skbce strings": (lambda: make_pipeline(StandardScaler(), MultiLabelLogistic()), "strings"),
    "LogisticRegression": (lambda: make_pipeline(StandardScaler(), LogisticRegression()), "y"),
    "OneVsRest": (lambda: make_pipeline(StandardScaler(),
                                        OneVsRestClassifier(LogisticRegression())), "Y"),
    "forest binary": (lambda: RandomForestClassifier(n_estimators=5, random_state=0), "y"),
    "forest multi-label": (lambda: RandomForestClassifier(n_estimators=5, random_state=0), "Y"),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(THRESHOLD_CASES))
def test_threshold_tuner_applies_thresholds(data, case, dtype):
    X, Y = data
    make_estimator, kind = THRESHOLD_CASES[case]
    y = {"Y": Y, "y": Y[:, 1], "strings": np.where(Y[:, 1] == 1, "b", "a")}[kind]
    tuner = MultiLabelThresholdCV(make_estimator(), cv=3).fit(X, y)
    Xd = X.astype(dtype)
    # skl2onnx's forests compute in float32 whatever the input's dtype.
    label, _ = _check(tuner, Xd, atol=TOLERANCE[np.float32] if "forest" in case else None)
    # The tuned thresholds, not the estimator's own 0.5, decide the labels.
    assert not np.array_equal(label, tuner.estimator_.predict(Xd))


def test_threshold_tuner_labels_are_thresholded_probabilities(data):
    # Independent of the tuner's predict: the label is p >= thresholds_.
    X, Y = data
    tuner = MultiLabelThresholdCV(make_pipeline(StandardScaler(), MultiLabelLogistic()),
                                  cv=3).fit(X, Y)
    label, proba = _run(tuner, X)
    np.testing.assert_array_equal(label, (proba >= tuner.thresholds_).astype(np.int64))


def test_one_class_estimator_is_refused(data):
    X, Y = data
    tuner = MultiLabelThresholdCV(LogisticRegression(), cv=3).fit(X, Y[:, 0])
    tuner.estimator_ = LogisticRegression().fit(X[:20], np.r_[np.zeros(19), 1])
    tuner.estimator_.classes_ = tuner.estimator_.classes_[:1]
    with pytest.raises(NotImplementedError, match="fitted on 1 class"):
        skl2onnx.to_onnx(tuner, X[:1])


def test_register_converters_doctest():
    result = doctest.testmod(skbce_onnx, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("name", ["emotions", "yeast", "scene"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_data_parity(name, dtype):
    """Pipeline(StandardScaler(), MultiLabelLogistic()) on the Mulan sets."""
    path = DATA / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data sets are not beside the repository)")
    with np.load(path, allow_pickle=False) as archive:
        X, Y = archive["X"].astype(dtype), archive["Y"]
    model = make_pipeline(StandardScaler(), MultiLabelLogistic()).fit(X, Y)
    _check(model, X)
    tuner = MultiLabelThresholdCV(make_pipeline(StandardScaler(), MultiLabelLogistic()),
                                  cv=3).fit(X, Y)
    _check(tuner, X)
