"""Sparse label matrices end to end, bounded fit memory, and pruned (sparse) coefficients."""

import pickle
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn import config_context
from sklearn.datasets import make_multilabel_classification
from sklearn.preprocessing import StandardScaler

from skbce import (
    MultiLabelLogistic,
    MultiLabelLogisticCV,
    MultiLabelThresholdCV,
    bce_gradient,
    bce_loss_and_gradient,
    bce_scorer,
    binary_cross_entropy,
)
from skbce import metrics as metrics_module
from skbce.model_selection import MultiLabelStratifiedKFold

FORMATS = ["csr", "csc", "coo"]
CONTAINERS = {
    ("csr", "matrix"): sparse.csr_matrix, ("csc", "matrix"): sparse.csc_matrix,
    ("coo", "matrix"): sparse.coo_matrix, ("csr", "array"): sparse.csr_array,
    ("csc", "array"): sparse.csc_array, ("coo", "array"): sparse.coo_array,
}


@pytest.fixture(scope="module")
def multilabel():
    X, Y = make_multilabel_classification(n_samples=200, n_features=10, n_classes=6,
                                          random_state=0)
    return StandardScaler().fit_transform(X), Y


def _sparse(Y, fmt, kind, dtype):
    return CONTAINERS[fmt, kind](np.asarray(Y).astype(dtype))


# ---------------------------------------------------------------------------
# Fitting on sparse targets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["matrix", "array"])
@pytest.mark.parametrize("dtype", [np.int8, np.int64, bool, np.float64])
def test_sparse_targets_give_the_dense_model(multilabel, fmt, kind, dtype):
    X, Y = multilabel
    dense = MultiLabelLogistic(C=3.0).fit(X, Y.astype(dtype))
    model = MultiLabelLogistic(C=3.0).fit(X, _sparse(Y, fmt, kind, dtype))
    assert_allclose(model.coef_, dense.coef_, rtol=1e-12, atol=1e-14)
    assert_allclose(model.intercept_, dense.intercept_, rtol=1e-12, atol=1e-14)
    assert_array_equal(model.classes_, dense.classes_)
    predicted = model.predict(X)
    container = sparse.csr_array if kind == "array" else sparse.csr_matrix
    assert type(predicted) is container
    assert predicted.dtype == dense.predict(X).dtype
    assert_array_equal(predicted.toarray(), dense.predict(X))


@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs", "gd", "newton-cholesky", "sgd"])
def test_every_solver_takes_sparse_targets(multilabel, solver):
    X, Y = multilabel
    params = dict(solver=solver, max_iter=50, random_state=0, tol=1e-3)
    dense = MultiLabelLogistic(**params).fit(X, Y)
    model = MultiLabelLogistic(**params).fit(X, sparse.csc_matrix(Y))
    assert_allclose(model.coef_, dense.coef_, rtol=1e-10, atol=1e-12)


def test_sparse_soft_targets_and_weights(multilabel):
    X, Y = multilabel
    rng = np.random.default_rng(0)
    soft = Y * rng.uniform(0.2, 1.0, size=Y.shape)
    weights = rng.uniform(0.5, 2.0, size=len(X))
    params = dict(C=2.0, pos_weight="balanced", label_smoothing=0.1)
    dense = MultiLabelLogistic(**params).fit(X.astype(np.float32), soft, sample_weight=weights)
    model = MultiLabelLogistic(**params).fit(X.astype(np.float32), sparse.coo_array(soft),
                                             sample_weight=weights)
    assert model.coef_.dtype == np.float32
    assert_allclose(model.coef_, dense.coef_, rtol=1e-6, atol=1e-7)
    assert_allclose(model.pos_weight_, dense.pos_weight_)
    assert sparse.issparse(model.predict(X))


def test_sparse_x_and_sparse_targets_with_small_label_blocks(multilabel):
    X, Y = multilabel
    Xs = sparse.csr_matrix(np.where(np.abs(X) > 0.8, X, 0))
    dense = MultiLabelLogistic(tol=1e-10).fit(Xs, Y)
    # A tiny working_memory: newton-cg's pool holds a few labels at a time
    # (and preconditions by the diagonal): the same optimum, to tol.
    with config_context(working_memory=0.01):
        model = MultiLabelLogistic(tol=1e-10).fit(Xs, sparse.csr_matrix(Y))
    assert_allclose(model.coef_, dense.coef_, rtol=1e-7, atol=1e-8)


def test_sparse_target_errors(multilabel):
    X, Y = multilabel
    bad = sparse.csr_matrix(Y * 2)
    with pytest.raises(ValueError, match="0/1 labels or probabilities"):
        MultiLabelLogistic().fit(X, bad)
    model = MultiLabelLogistic().fit(X, sparse.csr_matrix(Y))
    with pytest.raises(ValueError, match="fitted on 6 labels"):
        model.partial_fit(X, sparse.csr_matrix(Y[:, :3]))


def test_partial_fit_takes_sparse_targets(multilabel):
    X, Y = multilabel
    dense, model = MultiLabelLogistic(random_state=0), MultiLabelLogistic(random_state=0)
    for start in range(0, len(X), 50):
        rows = slice(start, start + 50)
        dense.partial_fit(X[rows], Y[rows], n_samples_per_pass=len(X))
        model.partial_fit(X[rows], sparse.csr_array(Y[rows]), n_samples_per_pass=len(X))
    assert_allclose(model.coef_, dense.coef_, rtol=1e-10, atol=1e-12)
    assert type(model.predict(X)) is sparse.csr_array


def test_predict_type_follows_the_fitted_targets(multilabel):
    X, Y = multilabel
    assert isinstance(MultiLabelLogistic().fit(X, Y).predict(X), np.ndarray)
    model = MultiLabelLogistic().fit(X, sparse.csr_matrix(Y))
    assert type(model.predict(X)) is sparse.csr_matrix
    assert type(model.predict(sparse.csr_matrix(X))) is sparse.csr_matrix
    # Row blocks: a working_memory of a few rows gives the same matrix.
    with config_context(working_memory=1e-4):
        blocked = model.predict(X)
    assert_array_equal(blocked.toarray(), model.predict(X).toarray())
    # A one-column sparse target is a 1-D target, as for dense ones.
    one = MultiLabelLogistic().fit(X, sparse.csr_matrix(Y[:, :1]))
    assert_array_equal(one.classes_, [0, 1])
    assert one.predict(X).shape == (len(X),)
    assert model.score(X, sparse.csr_matrix(Y)) == pytest.approx(
        MultiLabelLogistic().fit(X, Y).score(X, Y))


def test_cv_estimators_take_sparse_targets(multilabel):
    X, Y = multilabel
    Ys = sparse.csr_matrix(Y)
    dense = MultiLabelLogisticCV(Cs=3, cv=3).fit(X, Y)
    model = MultiLabelLogisticCV(Cs=3, cv=3).fit(X, Ys)
    assert_allclose(model.C_, dense.C_)
    assert_allclose(model.coef_, dense.coef_, rtol=1e-8, atol=1e-10)
    assert sparse.issparse(model.predict(X))
    assert model.score(X, Ys) == pytest.approx(dense.score(X, Y), rel=1e-10)
    tuned_dense = MultiLabelThresholdCV(MultiLabelLogistic(), cv=3).fit(X, Y)
    tuned = MultiLabelThresholdCV(MultiLabelLogistic(), cv=3).fit(X, Ys)
    assert_allclose(tuned.thresholds_, tuned_dense.thresholds_)


def _split_entries(Y, parts):
    """A CSR whose every stored entry of ``Y`` is stored twice, as ``parts``' values."""
    Y = sparse.csr_matrix(Y, dtype=np.float64)
    indptr = 2 * Y.indptr
    indices = np.repeat(Y.indices, 2)
    data = np.tile(parts, Y.nnz)
    return sparse.csr_matrix((data, indices, indptr), shape=Y.shape)


@pytest.mark.parametrize("parts", [(0.5, 0.5), (0.25, 0.75)])
def test_repeated_entries_are_read_summed(multilabel, parts):
    # A hand-made CSR may store an entry twice; its value is the sum (a 1
    # here), everywhere: the default folds, the tuner's targets and score.
    X, Y = multilabel
    Yr = _split_entries(Y, parts)
    assert_array_equal(Yr.toarray(), Y)
    splitter = MultiLabelStratifiedKFold(3)
    dense_folds = [test for _, test in splitter.split(X, Y)]
    for got, want in zip((test for _, test in splitter.split(X, Yr)), dense_folds):
        assert_array_equal(got, want)
    model = MultiLabelLogistic().fit(X, Y)
    assert model.score(X, Yr) == pytest.approx(model.score(X, Y), rel=1e-12)
    tuned = MultiLabelThresholdCV(MultiLabelLogistic(), cv=3).fit(X, Yr)
    tuned_dense = MultiLabelThresholdCV(MultiLabelLogistic(), cv=3).fit(X, Y)
    assert_allclose(tuned.thresholds_, tuned_dense.thresholds_)
    assert_allclose(tuned.best_scores_, tuned_dense.best_scores_)


def test_sparse_one_column_target_scores_as_its_dense_form(multilabel):
    X, Y = multilabel
    y = Y[:, 0]
    model = MultiLabelLogistic().fit(X, y)
    assert model.score(X, sparse.csr_matrix(y[:, None])) == pytest.approx(
        model.score(X, y[:, None]), rel=1e-12)


def test_cv_per_label_sklearn_scoring_on_sparse_targets(multilabel):
    X, Y = multilabel
    dense = MultiLabelLogisticCV(Cs=3, cv=3, scoring="roc_auc").fit(X, Y)
    model = MultiLabelLogisticCV(Cs=3, cv=3, scoring="roc_auc").fit(X, sparse.csc_array(Y))
    assert_allclose(model.C_, dense.C_)
    assert_allclose(model.coef_, dense.coef_, rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------------
# The metric on sparse y_true
# ---------------------------------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows, so that the sparse path combines many."""
    monkeypatch.setattr(metrics_module, "_SPARSE_BLOCK_ENTRIES", 13)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("from_logits", [False, True])
def test_metric_on_sparse_targets_equals_dense(small_blocks, axis, reduction, weighted,
                                                from_logits):
    rng = np.random.default_rng(1)
    Y = (rng.uniform(size=(40, 7)) < 0.2).astype(np.int64)
    P = rng.uniform(0.01, 0.99, size=Y.shape)
    if from_logits:
        P = np.log(P / (1 - P))
    options = dict(from_logits=from_logits, reduction=reduction, axis=axis)
    if weighted:
        sw = rng.uniform(0, 2, size=len(Y))
        sw[:10] = 0  # whole blocks of zero weight
        options.update(sample_weight=sw, label_weight=rng.uniform(0.1, 2, size=7),
                       pos_weight=rng.uniform(0.5, 3, size=7))
    expected = binary_cross_entropy(Y, P, **options)
    expected_grad = bce_gradient(Y, P, **options)
    for fmt in FORMATS:
        Ys = CONTAINERS[fmt, "matrix"](Y)
        assert_allclose(binary_cross_entropy(Ys, P, **options), expected, rtol=1e-12)
        assert_allclose(bce_gradient(Ys, P, **options), expected_grad, rtol=1e-12)


@pytest.mark.parametrize("dtype", [bool, np.int8, np.float32, np.float64])
def test_metric_sparse_reductions_and_dtypes(small_blocks, dtype):
    rng = np.random.default_rng(2)
    Y = rng.uniform(size=(30, 5)) < 0.3
    Y = Y.astype(dtype) if dtype is not np.float64 else Y * rng.uniform(0.5, 1, Y.shape)
    P = rng.uniform(0.01, 0.99, size=Y.shape).astype(np.float32)
    Ys = sparse.csr_array(Y)
    assert_allclose(binary_cross_entropy(Ys, P, reduction="none"),
                    binary_cross_entropy(Y, P, reduction="none"), rtol=1e-6)
    assert binary_cross_entropy(Ys, P, axis=0).dtype == binary_cross_entropy(Y, P, axis=0).dtype
    assert_allclose(binary_cross_entropy(Ys, P, label_smoothing=0.2, eps=1e-3),
                    binary_cross_entropy(Y, P, label_smoothing=0.2, eps=1e-3), rtol=1e-6)
    loss, grad = bce_loss_and_gradient(Ys, P, axis=1)
    loss_dense, grad_dense = bce_loss_and_gradient(Y, P, axis=1)
    assert_allclose(loss, loss_dense, rtol=1e-6)
    assert_allclose(grad, grad_dense, rtol=1e-6)
    # A list of (n, 2) predictions, as MultiOutputClassifier gives.
    listed = [np.column_stack([1 - P[:, j], P[:, j]]) for j in range(P.shape[1])]
    assert_allclose(binary_cross_entropy(Ys, listed), binary_cross_entropy(Y, listed),
                    rtol=1e-6)
    for got, want in zip(bce_gradient(Ys, listed), bce_gradient(Y, listed)):
        assert_allclose(got, want, rtol=1e-6)


def test_metric_sparse_errors_name_the_entry(small_blocks):
    Y = np.zeros((20, 3))
    Y[7, 2] = 2.0
    P = np.full(Y.shape, 0.5)
    with pytest.raises(ValueError, match=r"y_true must lie in \[0, 1\]; found 2.0 at index \(7, 2\)"):
        binary_cross_entropy(sparse.csr_matrix(Y), P)
    P[15, 1] = 1.5
    with pytest.raises(ValueError, match=r"found 1.5 at index \(15, 1\)"):
        binary_cross_entropy(sparse.csr_matrix(np.zeros((20, 3))), P)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        binary_cross_entropy(sparse.csr_matrix(np.zeros((20, 3))), P[:, :2])


def test_scorer_on_sparse_targets(multilabel):
    X, Y = multilabel
    model = MultiLabelLogistic().fit(X, Y)
    assert bce_scorer(model, X, sparse.csc_array(Y)) == pytest.approx(
        bce_scorer(model, X, Y), rel=1e-12)


# ---------------------------------------------------------------------------
# Memory: the fit's peak does not grow with n_samples * n_labels
# ---------------------------------------------------------------------------


def _label_data(n_samples, n_labels, seed=0):
    """Sparse X (float32) and a sparse Y with about 3 labels a row."""
    rng = np.random.default_rng(seed)
    X = sparse.random(n_samples, 200, density=0.03, format="csr", dtype=np.float32,
                      random_state=seed)
    X.data = rng.uniform(0.5, 1.5, size=X.nnz).astype(np.float32)
    rows = np.repeat(np.arange(n_samples), 3)
    cols = rng.integers(0, n_labels, size=len(rows))
    Y = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)),
                          shape=(n_samples, n_labels))
    Y.data[:] = 1
    return X, Y


def _fit_peak(X, Y, working_memory):
    tracemalloc.start()
    try:
        with config_context(working_memory=working_memory):
            model = MultiLabelLogistic(C=1.0, tol=1e-3, max_iter=20).fit(X, Y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, model


def test_fit_memory_does_not_scale_with_samples_times_labels():
    n_samples, working_memory = 10_000, 1.0  # MiB
    peaks = {}
    for n_labels in (64, 256):
        X, Y = _label_data(n_samples, n_labels)
        peak, model = _fit_peak(X, Y, working_memory)
        coef_bytes = model.coef_.nbytes + model.intercept_.nbytes
        peaks[n_labels] = peak, coef_bytes
        # Bound: the working set (working_memory), a few copies of the
        # coefficients (the solver's, its result's, coef_), of Y's and X's
        # non-zeros (Y's CSC copy; X's per-non-zero caches) and a constant --
        # not the (n_samples, n_labels) entries: one byte each would be
        # 2.4 MiB at 256 labels, float32 logits 9.8 MiB. (Measured, "auto"
        # taking dual-cd: a peak of 1.82 MiB at 64 labels, 2.62 at 256, 3.28
        # at 1024, its label order included; dual-cd's per-thread block state, allocated in C, is not
        # traced and grows with n_samples + n_features only.)
        y_bytes = Y.data.nbytes + Y.indices.nbytes + Y.indptr.nbytes
        x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
        bound = (working_memory * 2**20 + 4 * coef_bytes + 2 * y_bytes + 4 * x_bytes
                 + 2**20)
        assert peak <= bound, (n_labels, peak, bound)
    # Four times the labels: the peak grows by the coefficients, not by
    # n_samples * 3 * n_labels bytes (7.3 MiB even at one byte an entry).
    (small, small_coef), (large, large_coef) = peaks[64], peaks[256]
    assert large - small <= 4 * (large_coef - small_coef) + 2**20, peaks


# ---------------------------------------------------------------------------
# Pruning: a sparse coef_
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_labels():
    X, Y = make_multilabel_classification(n_samples=400, n_features=60, n_classes=40,
                                          n_labels=3, random_state=0)
    return StandardScaler().fit_transform(X), Y


def test_sparsify_prunes_and_predicts_consistently(many_labels):
    X, Y = many_labels
    model = MultiLabelLogistic(C=0.1).fit(X, sparse.csr_matrix(Y))
    dense_coef = model.coef_.copy()
    threshold = np.quantile(np.abs(dense_coef), 0.9)
    assert model.sparsify(threshold) is model
    assert sparse.issparse(model.coef_) and model.coef_.format == "csr"
    assert model.coef_.nnz <= 0.1 * dense_coef.size
    kept = np.abs(dense_coef) >= threshold
    assert_array_equal(model.coef_.toarray(), np.where(kept, dense_coef, 0))
    # Every prediction method reads the sparse coefficients as their dense form.
    pruned = np.where(kept, dense_coef, 0)
    scores = X @ pruned.T + model.intercept_
    assert_allclose(model.decision_function(X), scores, rtol=1e-10)
    assert_allclose(model.decision_function(sparse.csr_matrix(X)), scores, rtol=1e-10)
    assert_allclose(model.predict_proba(X), 1 / (1 + np.exp(-scores)), rtol=1e-10)
    assert_array_equal(model.predict(X).toarray(), (scores >= 0).astype(Y.dtype))
    assert np.isfinite(bce_scorer(model, X, Y))
    restored = pickle.loads(pickle.dumps(model))
    assert sparse.issparse(restored.coef_)
    assert_allclose(restored.predict_proba(X), model.predict_proba(X))
    # densify, and threshold 0 keeps every non-zero (scikit-learn's sparsify)
    assert isinstance(model.densify().coef_, np.ndarray)
    assert_array_equal(model.coef_, pruned)
    assert model.sparsify().coef_.nnz == np.count_nonzero(pruned)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sparsified_model_refits_and_continues(many_labels):
    X, Y = many_labels
    model = MultiLabelLogistic(warm_start=True, max_iter=5).fit(X, Y).sparsify(0.05)
    model.fit(X, Y)  # warm start from the pruned coefficients
    assert isinstance(model.coef_, np.ndarray)
    model.sparsify(0.05).partial_fit(X, Y)
    assert isinstance(model.coef_, np.ndarray)
    with pytest.raises(ValueError, match="threshold"):
        model.sparsify(-1.0)
