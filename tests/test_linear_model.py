"""MultiLabelLogistic: equivalence to LogisticRegression, solvers, inputs, API."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from scipy.special import expit
from sklearn.base import clone
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.fixes import parse_version

from skbce import MultiLabelLogistic, bce_scorer, binary_cross_entropy
from skbce.linear_model import _problem


@pytest.fixture(scope="module")
def multilabel():
    X, Y = make_multilabel_classification(
        n_samples=300, n_features=12, n_classes=4, random_state=0
    )
    return StandardScaler().fit_transform(X), Y


def sklearn_objective(coef, intercept, X, Y, C, l1_ratio=0.0, sample_weight=None):
    """LogisticRegression's objective per label."""
    Z = np.asarray(X @ coef.T) + intercept
    loss = np.logaddexp(0, Z) - Y * Z
    sw = np.ones(len(Y)) if sample_weight is None else sample_weight
    penalty = (1 - l1_ratio) / 2 * (coef**2).sum(1) + l1_ratio * np.abs(coef).sum(1)
    return C * (sw @ loss) + penalty


def per_label_logistic(X, Y, **params):
    if "l1_ratio" in params and parse_version(sklearn.__version__) < parse_version("1.8"):
        # Before scikit-learn 1.8, l1_ratio counts only with this penalty.
        params["penalty"] = "elasticnet"
    coef, intercept = [], []
    for j in range(Y.shape[1]):
        lr = LogisticRegression(max_iter=10_000, **params).fit(X, Y[:, j])
        coef.append(lr.coef_[0])
        intercept.append(lr.intercept_[0])
    return np.array(coef), np.array(intercept)


# ---------------------------------------------------------------------------
# Equivalence with LogisticRegression
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("container", [np.asarray, sparse.csr_matrix, sparse.csc_matrix])
@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky", "lbfgs", "gd"])
@pytest.mark.parametrize("C", [0.1, 1.0])
def test_l2_matches_logistic_regression(multilabel, container, solver, C):
    X, Y = multilabel
    if solver == "newton-cholesky" and container is not np.asarray:
        with pytest.raises(ValueError, match="needs a dense X"):
            MultiLabelLogistic(solver=solver).fit(container(X), Y)
        return
    coef, intercept = per_label_logistic(X, Y, C=C, tol=1e-10)
    model = MultiLabelLogistic(C=C, solver=solver, tol=1e-8).fit(container(X), Y)
    assert model.coef_.shape == (4, 12)
    assert_allclose(model.coef_, coef, atol=2e-5)
    assert_allclose(model.intercept_, intercept, atol=2e-5)


@pytest.mark.parametrize("container", [np.asarray, sparse.csr_matrix])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_l1_and_elastic_net_match_saga(multilabel, container, l1_ratio):
    X, Y = multilabel
    coef, intercept = per_label_logistic(
        X, Y, C=0.05, l1_ratio=l1_ratio, solver="saga", tol=1e-10
    )
    model = MultiLabelLogistic(C=0.05, l1_ratio=l1_ratio, tol=1e-9, max_iter=20_000)
    model.fit(container(X), Y)
    assert model.solver_ == "gd"
    # Same sparsity pattern, same values.
    assert_array_equal(model.coef_ == 0, np.abs(coef) < 1e-8)
    assert np.any(model.coef_ == 0)
    assert_allclose(model.coef_, coef, atol=1e-5)
    assert_allclose(model.intercept_, intercept, atol=1e-5)


def test_no_penalty_and_no_intercept(multilabel):
    X, Y = multilabel
    coef, intercept = per_label_logistic(X, Y, C=np.inf, fit_intercept=False, tol=1e-10)
    model = MultiLabelLogistic(C=np.inf, fit_intercept=False, tol=1e-8).fit(X, Y)
    assert_allclose(model.coef_, coef, rtol=1e-4, atol=1e-5)
    assert_array_equal(model.intercept_, 0)


def test_one_d_binary_target_behaves_like_logistic_regression():
    X, y = make_classification(n_samples=200, n_features=6, random_state=1)
    labels = np.array(["no", "yes"])[y]
    lr = LogisticRegression(tol=1e-10).fit(X, labels)
    model = MultiLabelLogistic(tol=1e-8).fit(X, labels)
    assert_array_equal(model.classes_, ["no", "yes"])
    assert model.coef_.shape == (1, 6)
    assert model.intercept_.shape == (1,)
    assert_allclose(model.coef_, lr.coef_, atol=1e-6)
    assert_allclose(model.predict_proba(X), lr.predict_proba(X), atol=1e-6)
    assert_allclose(model.decision_function(X), lr.decision_function(X), atol=1e-5)
    assert_allclose(model.predict_log_proba(X), lr.predict_log_proba(X), atol=1e-5)
    assert_array_equal(model.predict(X), lr.predict(X))
    assert model.score(X, labels) == lr.score(X, labels)


# ---------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------


def test_all_solvers_reach_the_same_optimum(multilabel):
    X, Y = multilabel
    reference = per_label_logistic(X, Y, C=1.0, tol=1e-10)
    best = sklearn_objective(*reference, X, Y, 1.0).sum()
    for solver, tol, rtol in [("newton-cg", 1e-6, 1e-9), ("lbfgs", 1e-6, 1e-8),
                              ("gd", 1e-6, 1e-8), ("sgd", 1e-6, 5e-3)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MultiLabelLogistic(solver=solver, tol=tol, max_iter=500,
                                       random_state=0).fit(X, Y)
        objective = sklearn_objective(model.coef_, model.intercept_, X, Y, 1.0).sum()
        assert best <= objective <= best * (1 + rtol), solver
        # loss_curve_ is the scaled objective: its last value matches.
        assert_allclose(model.loss_curve_[-1], objective / len(X) / Y.shape[1], rtol=1e-6)
        assert model.n_iter_ == len(model.loss_curve_) >= 1


def test_auto_solver_choice(multilabel):
    X, Y = multilabel
    assert MultiLabelLogistic().fit(X, Y).solver_ == "newton-cg"
    assert MultiLabelLogistic(l1_ratio=0.5).fit(X, Y).solver_ == "gd"
    # One label, dense, few features: Newton with the exact Hessian.
    assert MultiLabelLogistic().fit(X, Y[:, 0]).solver_ == "newton-cholesky"
    assert MultiLabelLogistic().fit(sparse.csr_matrix(X), Y[:, 0]).solver_ == "newton-cg"
    assert MultiLabelLogistic().fit(np.hstack([X] * 5), Y[:, 0]).solver_ == "newton-cholesky"
    wide = np.hstack([X] * 6)  # 72 features: above _EXACT_NEWTON_MAX_FEATURES
    assert MultiLabelLogistic().fit(wide, Y[:, 0]).solver_ == "newton-cg"


def test_newton_cholesky_with_weights_matches_logistic_regression(multilabel):
    """Sample weights, class weights (pos_weight) and no intercept, in float32 too."""
    X, Y = multilabel
    y = Y[:, 1]
    sw = np.random.default_rng(1).uniform(0.2, 3.0, size=len(y))
    lr = LogisticRegression(C=0.5, class_weight={0: 1.0, 1: 2.5}, fit_intercept=False,
                            tol=1e-10).fit(X, y, sample_weight=sw)
    for dtype, tol, atol in [(np.float64, 1e-7, 1e-6), (np.float32, 1e-4, 1e-3)]:
        model = MultiLabelLogistic(C=0.5, pos_weight=2.5, fit_intercept=False, tol=tol,
                                   solver="newton-cholesky").fit(X.astype(dtype), y,
                                                                 sample_weight=sw)
        assert model.coef_.dtype == dtype
        assert_allclose(model.coef_, lr.coef_, atol=atol)
    # Many row blocks, and a collinear, unpenalised problem (a singular Hessian).
    rng = np.random.default_rng(2)
    tall = rng.normal(size=(30_000, 3))
    tall = np.hstack([tall, tall[:, :1]])
    y = (tall[:, 0] - tall[:, 1] + rng.logistic(size=len(tall)) > 0).astype(int)
    model = MultiLabelLogistic(C=np.inf, solver="newton-cholesky", tol=1e-8).fit(tall, y)
    lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(tall, y)
    assert_allclose(model.predict_proba(tall), lr.predict_proba(tall), atol=1e-6)


def test_newton_cholesky_reads_any_memory_layout(multilabel, monkeypatch):
    """Fortran-ordered and strided X (read in C-ordered copies of blocks) fit the same."""
    monkeypatch.setattr(_problem, "NEWTON_COPY_BYTES", 2**14)  # several blocks
    X, Y = multilabel
    rng = np.random.default_rng(4)
    tall = np.repeat(X, 60, axis=0) + 0.1 * rng.normal(size=(60 * len(X), X.shape[1]))
    y = np.repeat(Y[:, 2], 60)
    reference = MultiLabelLogistic(solver="newton-cholesky", tol=1e-8).fit(tall, y)
    wide = np.hstack([tall, tall])
    for layout in (np.asfortranarray(tall), wide[:, :tall.shape[1]]):
        model = MultiLabelLogistic(solver="newton-cholesky", tol=1e-8).fit(layout, y)
        assert_allclose(model.coef_, reference.coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
def test_smooth_solvers_reject_l1(multilabel, solver):
    X, Y = multilabel
    with pytest.raises(ValueError, match="supports only l1_ratio=0"):
        MultiLabelLogistic(solver=solver, l1_ratio=0.5).fit(X, Y)


def test_gd_loss_curve_decreases_and_converged_labels_stop(multilabel):
    X, Y = multilabel
    Y = Y.copy()
    Y[:, 0] = 0  # constant: converges at once
    model = MultiLabelLogistic(solver="gd", tol=1e-6).fit(X, Y)
    curve = np.asarray(model.loss_curve_)
    # Restarts keep the objective monotone.
    assert np.all(np.diff(curve) <= 1e-12)
    from skbce.linear_model import _gd, _problem

    problem = _problem.LinearBCE(X, Y.astype(float), None, None, 1 / 300, 0.0, True)
    b0 = np.log(np.clip(Y.mean(0), 1e-6, 1 - 1e-6) / (1 - np.clip(Y.mean(0), 1e-6, 1 - 1e-6)))
    result = _gd.gradient_descent(problem, np.zeros((4, 12)), b0, tol=1e-6)
    assert result.label_n_iter[0] <= 2 < result.label_n_iter[1:].min()
    assert result.converged.all()


class _DataHidden:
    """A problem whose data (X, its CSR arrays, targets, sample weights) cannot be read."""

    HIDDEN = {"X", "XT", "_csr", "Y", "Y_all", "sw"}

    def __init__(self, problem):
        self._problem = problem

    def __getattr__(self, name):
        if name in self.HIDDEN:
            raise AttributeError(f"a solver read problem.{name}: not the problem interface")
        return getattr(self._problem, name)


@pytest.mark.parametrize("solver", ["gd", "lbfgs", "newton-cg", "newton-cholesky", "sgd"])
@pytest.mark.parametrize("container", [np.asarray, sparse.csr_matrix])
def test_solvers_reach_the_data_only_through_the_problem(multilabel, solver, container):
    """Every solver runs on the problem's methods alone (in memory or dask behind them)."""
    from skbce.linear_model import _gd, _lbfgs, _newton_cg, _newton_cholesky, _sgd

    if solver == "newton-cholesky" and container is not np.asarray:
        pytest.skip("newton-cholesky needs a dense X")
    X, Y = multilabel
    sw = np.random.default_rng(0).uniform(0.5, 2, size=len(X))

    def run(problem):
        W0, b0 = np.zeros((4, 12)), np.zeros(4)
        if solver == "sgd":
            return _sgd.sgd(problem, W0, b0, max_iter=5, rng=np.random.default_rng(0))[0]
        fit = {"gd": _gd.gradient_descent, "lbfgs": _lbfgs.lbfgs,
               "newton-cg": _newton_cg.newton_cg,
               "newton-cholesky": _newton_cholesky.newton_cholesky}[solver]
        return fit(problem, W0, b0, max_iter=5)

    def problem():
        return _problem.LinearBCE(container(X), Y, sw, None, 1 / 300, 0.0, True)

    hidden, plain = run(_DataHidden(problem())), run(problem())
    assert_array_equal(hidden.coef, plain.coef)
    assert_array_equal(hidden.intercept, plain.intercept)


@pytest.mark.parametrize("container", [np.asarray, sparse.csr_matrix])
def test_nonzero_weights(container):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 7)) * (rng.uniform(size=(150, 7)) < 0.3)
    X[:, 4] = 0  # a feature never seen
    sw = rng.uniform(0.1, 2, size=150)
    problem = _problem.LinearBCE(container(X), np.zeros((150, 2)), sw, None, 0.0, 0.0, True)
    assert_allclose(problem.nonzero_weights(), (X != 0).T @ (sw / sw.sum()))


def test_newton_cg_diagonal_preconditioner_for_features_of_spread_scales(monkeypatch):
    """Sparse features of scales spread over 1e4: the whole Hessian diagonal as the
    preconditioner takes fewer conjugate gradient steps than the 1:99 mix with
    the identity, to the same solution."""
    from skbce.linear_model import _newton_cg

    rng = np.random.default_rng(7)
    X = sparse.random(600, 300, density=0.05, format="csr", random_state=7)
    X.data[:] = 1.0
    X = sparse.csr_matrix(X @ sparse.diags(10.0 ** rng.uniform(-2, 2, size=300)))
    Y = (rng.uniform(size=(600, 8)) < 0.3).astype(int)
    problem = _problem.LinearBCE(X, Y, None, None, 0.0, 0.0, True)
    assert not _newton_cg._feature_scales_alike(problem)
    binary = _problem.LinearBCE((X != 0).astype(float), Y, None, None, 0.0, 0.0, True)
    assert _newton_cg._feature_scales_alike(binary)
    products = []
    pcg = _newton_cg._pcg

    def counting(*args):
        PW, Pb, n = pcg(*args)
        products.append(n)
        return PW, Pb, n

    monkeypatch.setattr(_newton_cg, "_pcg", counting)
    # 300 features would take the Gram preconditioner: the diagonal one is tested.
    monkeypatch.setattr(_problem, "GRAM_MAX_FEATURES", 0)
    diagonal = MultiLabelLogistic(C=10.0, tol=1e-8, solver="newton-cg").fit(X, Y)
    with_diagonal = sum(products)
    products.clear()
    monkeypatch.setattr(_newton_cg, "FEATURE_SCALE_SPREAD", np.inf)
    mixed = MultiLabelLogistic(C=10.0, tol=1e-8, solver="newton-cg").fit(X, Y)
    assert with_diagonal < 0.8 * sum(products)
    assert_allclose(diagonal.predict_proba(X), mixed.predict_proba(X), atol=1e-6)


def rare_labels_problem(seed):
    """Sparse binary features (4000 x 800, ~40 a row) and four labels of 0.1-1.5 %
    positives: labels whose objective is so small that gradients below 1e-4
    still leave it far above its minimum (bibtex's case)."""
    rng = np.random.default_rng(seed)
    freq = np.minimum(0.5, 2.0 / np.arange(1, 801) ** 0.7)
    X = sparse.csr_matrix((rng.random((4000, 800)) < freq).astype(float))
    W = rng.normal(scale=0.3, size=(800, 4)) * (rng.random((800, 4)) < 0.1)
    logits = X @ W + np.log([0.01, 0.005, 0.003, 0.002])
    return X, (rng.random((4000, 4)) < expit(logits)).astype(int)


def test_newton_cg_stops_near_the_optimum_of_rare_labels(monkeypatch):
    """The gradient test alone stops a rare label more than 1e-3 (relative) above
    its minimum; with the predicted-decrease test every label ends within a few
    ``tol`` of it (the test bounds a prediction: 10 ``tol`` asserted)."""
    from skbce.linear_model import _newton_cg

    X, Y = rare_labels_problem(2)
    best = MultiLabelLogistic(tol=1e-10, max_iter=1000).fit(X, Y)
    optimum = sklearn_objective(best.coef_, best.intercept_, X, Y, C=1.0)
    model = MultiLabelLogistic().fit(X, Y)
    gap = sklearn_objective(model.coef_, model.intercept_, X, Y, C=1.0) / optimum - 1
    assert np.all(gap <= 10 * model.tol)
    monkeypatch.setattr(_newton_cg, "_decrease_small", lambda decrease, f, tol: True)
    gradient_only = MultiLabelLogistic().fit(X, Y)
    old_gap = sklearn_objective(gradient_only.coef_, gradient_only.intercept_, X, Y, 1.0)
    assert np.max(old_gap / optimum - 1) > 1e-3


def test_predicted_decrease_is_the_same_for_weights_and_repeated_rows():
    """The second stopping test reads quantities that integer sample weights and
    the repeated rows give alike, to rounding: the stopping decisions agree."""
    from skbce.linear_model._solver_base import _diagonal_decrease

    X, Y = rare_labels_problem(2)
    weights = np.random.default_rng(0).integers(0, 4, size=X.shape[0])
    rows = np.repeat(np.arange(X.shape[0]), weights)
    W = np.random.default_rng(1).normal(scale=0.1, size=(800, 4))
    b = np.log([0.01, 0.005, 0.003, 0.002])
    values = []
    for problem in (_problem.LinearBCE(X, Y, weights, None, 1 / weights.sum(), 0.0, True),
                    _problem.LinearBCE(X[rows], Y[rows], None, None, 1 / len(rows), 0.0, True)):
        loss, G, D = problem.loss_grad_logits(problem.linear(W, b), want_hess=True)
        gW, gb = problem.gradient(W, G)
        decrease = _diagonal_decrease(gW, gb, D.sum(axis=0), problem.squared_column_means(),
                                      problem.alpha)
        values.append((loss + problem.penalty(W), decrease))
    assert_allclose(values[0][0], values[1][0], rtol=1e-12)
    assert_allclose(values[0][1], values[1][1], rtol=1e-10)


@pytest.mark.parametrize("container", [np.asarray, sparse.csr_matrix])
def test_default_tol_weights_and_repeated_rows_stop_together(container):
    """At the default tol too, integer weights and the repeated rows take the same
    iterations to points as close as the conjugate gradient's rounding allows
    (it differs with the order of the sums; the float32 Gram preconditioner of a
    dense X rounds at 1e-7)."""
    X, Y = rare_labels_problem(2)
    if container is np.asarray:
        X, Y = X[:1500, :300].toarray(), Y[:1500]
    weights = np.random.default_rng(0).integers(0, 4, size=X.shape[0])
    rows = np.repeat(np.arange(X.shape[0]), weights)
    weighted = MultiLabelLogistic().fit(container(X), Y, sample_weight=weights)
    repeated = MultiLabelLogistic().fit(container(X[rows]), Y[rows])
    assert weighted.n_iter_ == repeated.n_iter_
    assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-4)


def test_newton_cholesky_stops_at_a_small_newton_decrement(monkeypatch):
    """A rare binary target (0.08 % positives) on a dense X: the gradient test
    alone stops 7.8e-4 (relative) above the minimum, the Newton decrement test
    within ``tol`` of it."""
    from skbce.linear_model import _newton_cholesky

    rng = np.random.default_rng(3)
    X = rng.normal(size=(20_000, 20))
    y = (rng.random(20_000) < expit(X[:, :5] @ np.full(5, 2.0) - 16.0)).astype(int)
    best = LogisticRegression(tol=1e-10, max_iter=1000).fit(X, y)
    optimum = sklearn_objective(best.coef_, best.intercept_, X, y[:, None], C=1.0)[0]

    def gap(model):
        return sklearn_objective(model.coef_, model.intercept_, X, y[:, None], C=1.0)[0] / optimum - 1

    assert gap(MultiLabelLogistic(solver="newton-cholesky").fit(X, y)) <= 1e-4
    monkeypatch.setattr(_newton_cholesky, "_decrease_small", lambda decrease, f, tol: True)
    assert gap(MultiLabelLogistic(solver="newton-cholesky").fit(X, y)) > 5e-4


def test_newton_cg_label_pool_gives_the_same_solution(multilabel):
    """A pool of two labels at a time (labels join as others converge)."""
    from skbce.linear_model import _newton_cg, _problem

    X, Y = multilabel
    problem = _problem.LinearBCE(X, Y, None, None, 1 / 300, 0.0, True)
    b0 = np.zeros(4)
    whole = _newton_cg.newton_cg(problem, np.zeros((4, 12)), b0, tol=1e-9)
    pooled = _newton_cg.newton_cg(problem, np.zeros((4, 12)), b0, tol=1e-9, pool_size=2)
    assert whole.converged.all() and pooled.converged.all()
    assert_allclose(pooled.coef, whole.coef, atol=1e-7)
    assert_allclose(pooled.intercept, whole.intercept, atol=1e-7)
    # Each label counts its own iterations, whenever it joined.
    assert_array_equal(pooled.label_n_iter, whole.label_n_iter)
    assert pooled.loss_curve[-1] == pytest.approx(whole.loss_curve[-1], rel=1e-10)


def test_dense_products_over_row_blocks(monkeypatch):
    """The dense Hessian and squared products, over ragged row blocks."""
    from sklearn import config_context

    from skbce.linear_model import _problem

    rng = np.random.default_rng(3)
    X = rng.normal(size=(203, 7))
    D = rng.uniform(0.05, 0.25, size=(203, 3))
    V, vb = rng.normal(size=(7, 3)), rng.normal(size=3)
    problem = _problem.LinearBCE(X, (rng.uniform(size=(203, 3)) < 0.4).astype(float),
                                 None, None, 0.01, 0.0, True)
    # 3 labels x 7 features x 16 rows per block: 13 blocks, the last of 11 rows.
    monkeypatch.setattr(_problem, "DENSE_BLOCK_WORK", 7 * 3 * 16)
    assert len(problem._row_blocks(3)) == 13
    HW, Hb = problem.hessp(V, vb, D)
    U = D * (X @ V + vb)
    assert_allclose(HW, X.T @ U, rtol=1e-12)
    assert_allclose(Hb, U.sum(axis=0), rtol=1e-12)
    with config_context(working_memory=1e-3):  # 1 KiB: 18-row squared blocks
        assert_allclose(problem.squared_backward(D), (X * X).T @ D, rtol=1e-12)


def test_mostly_zero_dense_x_with_many_labels_is_fitted_as_csr(monkeypatch):
    """A dense X of 3 % non-zeros and 40 labels goes to the sparse kernels, same model."""
    from skbce.linear_model import _problem

    rng = np.random.default_rng(4)
    X = (rng.uniform(size=(400, 60)) < 0.03).astype(float)
    Y = (X @ rng.normal(size=(60, 40)) + rng.logistic(size=(400, 40)) > 0.5).astype(int)
    seen = []
    make = _problem.LinearBCE

    def spy(X, *args, **kwargs):
        seen.append(sparse.issparse(X))
        return make(X, *args, **kwargs)

    monkeypatch.setattr(_problem, "LinearBCE", spy)
    model = MultiLabelLogistic(tol=1e-8).fit(X, Y)
    reference = MultiLabelLogistic(tol=1e-8).fit(sparse.csr_matrix(X), Y)
    assert seen == [True, True]
    assert_allclose(model.coef_, reference.coef_, atol=1e-10)
    # Fewer labels, or more non-zeros: dense BLAS products.
    MultiLabelLogistic().fit(X, Y[:, :8])
    MultiLabelLogistic().fit(X + (rng.uniform(size=X.shape) < 0.1), Y)
    assert seen[2:] == [False, False]
    lr = LogisticRegression(tol=1e-10).fit(X, Y[:, 3])
    assert_allclose(model.coef_[3], lr.coef_[0], atol=1e-5)


def test_wide_accumulators_take_long_row_blocks(monkeypatch):
    """Many labels: blocks of DENSE_WIDE_ROWS rows; the products are unchanged."""
    from skbce.linear_model import _problem

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 20))
    D = rng.uniform(0.05, 0.25, size=(300, 40))
    V, vb = rng.normal(size=(20, 40)), rng.normal(size=40)
    problem = _problem.LinearBCE(X, (rng.uniform(size=(300, 40)) < 0.4).astype(float),
                                 None, None, 0.01, 0.0, True)
    monkeypatch.setattr(_problem, "DENSE_BLOCK_WORK", 20 * 40 * 16)
    monkeypatch.setattr(_problem, "DENSE_WIDE_ACCUMULATOR", 20 * 40)
    monkeypatch.setattr(_problem, "DENSE_WIDE_ROWS", 64)
    blocks = problem._row_blocks(40)
    assert [b.start for b in blocks] == [0, 64, 128, 192, 256]
    HW, Hb = problem.hessp(V, vb, D)
    U = D * (X @ V + vb)
    assert_allclose(HW, X.T @ U, rtol=1e-12)
    assert_allclose(Hb, U.sum(axis=0), rtol=1e-12)
    assert len(problem._row_blocks(39)) == 300 // 16 + 1  # below the threshold


@pytest.mark.parametrize("container", [np.asarray, sparse.csr_matrix])
def test_working_memory_bounds_the_labels_solved_at_once(multilabel, container):
    """scikit-learn's working_memory caps the solvers' working arrays."""
    from sklearn import config_context

    from skbce.linear_model import _solver_choice

    X, Y = container(multilabel[0]), multilabel[1]
    model = MultiLabelLogistic(tol=1e-9)
    problem = model._problem(X, Y.astype(np.uint8), None, None)
    budget = model._memory_budget(X, problem, "newton-cg")
    assert _solver_choice.label_block_size(problem, budget) == 4
    with config_context(working_memory=0.005):  # 5 KiB: one label at a time
        budget = model._memory_budget(X, problem, "newton-cg")
        assert _solver_choice.label_block_size(problem, budget) == 1
        small = clone(model).fit(X, Y)
    assert_allclose(small.coef_, model.fit(X, Y).coef_, atol=1e-7)


def test_memory_rule_pools_all_labels_of_a_tall_dense_x(monkeypatch):
    """newton-cg takes every label at once where the old budget pooled one.

    6000 x 120 dense, 16 labels: the previous budget (the Gram
    preconditioner's 128 KiB) held one label's arrays; the memory rule
    (bytes(X) + 4 n k 8 + 32 MiB) holds all of them, and the fit's peak stays
    within the rule's first two terms. working_memory, set lower, still caps it.
    """
    import tracemalloc

    from sklearn import config_context

    from skbce.linear_model import _newton_cg, _solver_choice

    rng = np.random.default_rng(0)
    n, d, k = 6000, 120, 16
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    Y = (X @ rng.normal(size=(d, k)) * 0.3 + rng.logistic(size=(n, k)) > 1).astype(np.int8)
    pools = []
    solve = _newton_cg.newton_cg

    def spy(*args, pool_size=None, **kwargs):
        pools.append(pool_size)
        return solve(*args, pool_size=pool_size, **kwargs)

    monkeypatch.setattr(_newton_cg, "newton_cg", spy)
    model = MultiLabelLogistic(tol=1e-8)
    problem = model._problem(X, Y.astype(np.uint8), None, None)
    assert problem.mixed_precision_cg() and problem.gram_bytes() <= 2**17
    old_budget = 2**17
    assert _solver_choice.label_block_size(problem, old_budget) == 1
    model.fit(X, Y)  # warm-up: imports and caches are no part of a fit's memory
    tracemalloc.start()
    model.fit(X, Y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert pools[-1] == k
    assert peak <= X.nbytes + 4 * n * k * 8
    # 1 MiB: seven labels at a time (each label's arrays: logits, gradient,
    # curvature and its dense block of targets, 21 bytes a sample)
    with config_context(working_memory=1):
        lean = clone(model).fit(X, Y)
    assert pools[-1] == 7
    assert_allclose(lean.coef_, model.coef_, atol=1e-6)


def test_working_memory_too_small_for_the_gram_preconditioner(multilabel):
    """A Gram eigendecomposition that exceeds working_memory is not formed."""
    from sklearn import config_context

    X, Y = multilabel
    model = MultiLabelLogistic(tol=1e-9)
    problem = model._problem(X, Y.astype(np.uint8), None, None)
    m = X.shape[1] + 1
    assert problem.gram_bytes() == 2 * 8 * m * m  # float64 below 64 features
    assert problem.gram_eig()[1].shape == (m, m)
    with config_context(working_memory=2 * 8 * m * m / 2**20 * 0.99):
        problem = model._problem(X, Y.astype(np.uint8), None, None)
        assert problem.gram_bytes() == 0
        assert problem.gram_eig() is None
        lean = clone(model).fit(X, Y)
    assert_allclose(lean.coef_, model.fit(X, Y).coef_, atol=1e-7)
    assert_allclose(lean.intercept_, model.intercept_, atol=1e-7)


def test_convergence_warning_and_verbose(multilabel, capsys):
    X, Y = multilabel
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        MultiLabelLogistic(solver="gd", max_iter=2, verbose=2).fit(X, Y)
    out = capsys.readouterr().out
    assert "iter" in out and "objective" in out and "max|grad|" in out and "s\n" in out


def test_newton_cg_line_search_stops_below_the_objectives_rounding(monkeypatch):
    """A float32 fit asked for tol=1e-8 reaches the optimum that float32 can
    resolve; there the line search gives up at once instead of halving its
    step 40 times (a pass over X each; on dask, a sweep of the cluster).

    Before the rounding test this fit made 60 backtracking trials; the
    objective stays within 1e-8 of the float64 optimum.
    """
    from skbce.linear_model import _newton_cg

    trials = []
    try_step = _newton_cg._try_step

    def counting(*args, **kwargs):
        trials.append(1)
        return try_step(*args, **kwargs)

    monkeypatch.setattr(_newton_cg, "_try_step", counting)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 20)).astype(np.float32)
    Y = (X @ rng.standard_normal((20, 3)) + rng.logistic(size=(20000, 3)) > 0).astype(np.uint8)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = MultiLabelLogistic(solver="newton-cg", tol=1e-8).fit(X, Y)
    assert len(trials) < 40
    exact = MultiLabelLogistic(solver="newton-cg", tol=1e-10).fit(X.astype(np.float64), Y)

    def objective(m):
        Z = X.astype(np.float64) @ m.coef_.T.astype(np.float64) + m.intercept_
        loss = np.logaddexp(0, Z) - Y * Z
        return loss.sum(axis=0) + 0.5 * (m.coef_.astype(np.float64) ** 2).sum(axis=1)

    assert_allclose(objective(model), objective(exact), rtol=1e-8)


@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky", "lbfgs", "gd", "sgd"])
def test_badly_scaled_feature_is_fitted_or_warned(multilabel, solver):
    """One feature x 1e10: each solver fits the model or warns, never silently fails.

    The scaled feature's penalty vanishes, so the well-scaled fit is the
    reference up to that penalty's small effect: a training BCE within 0.01
    of its.
    """
    X, Y = multilabel
    scaled = X.copy()
    scaled[:, 0] *= 1e10
    params = dict(solver=solver, random_state=0)
    reference = binary_cross_entropy(Y, MultiLabelLogistic(tol=1e-8).fit(X, Y).predict_proba(X))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MultiLabelLogistic(**params).fit(scaled, Y)
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    proba = model.predict_proba(scaled)
    assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(proba))
    fitted = binary_cross_entropy(Y, proba) <= reference + 0.01
    assert warned or fitted
    if solver == "lbfgs":
        # Its curvature estimate is ruled by the large feature: it stops at
        # a near-constant model, and says so.
        assert warned and not fitted


@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky", "lbfgs", "gd", "sgd"])
@pytest.mark.parametrize("scale, column", [(1e80, None), (1e200, None), (1e80, 0)])
def test_extreme_magnitudes_raise_a_clear_error(multilabel, solver, scale, column):
    X, Y = multilabel
    X = X.copy()
    if column is None:
        X *= scale
    else:
        X[:, column] *= scale
    with pytest.raises(ValueError, match="X holds a feature value of magnitude .*Scale the"):
        MultiLabelLogistic(solver=solver).fit(X, Y)
    with pytest.raises(ValueError, match="magnitude"):
        MultiLabelLogistic().partial_fit(X, Y)
    # float32 overflows far sooner: its limit is 4.3e9.
    with pytest.raises(ValueError, match="float32 features of magnitude up to 4.29e"):
        MultiLabelLogistic(solver=solver).fit((multilabel[0] * 1e10).astype(np.float32), Y)


@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky", "lbfgs", "gd", "sgd"])
def test_large_magnitudes_below_the_limit_give_finite_models(multilabel, solver):
    """All features x 1e70 (below float64's limit): finite, and fitted or warned."""
    X, Y = multilabel
    unpenalised = binary_cross_entropy(
        Y, MultiLabelLogistic(C=np.inf, tol=1e-8).fit(X, Y).predict_proba(X))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MultiLabelLogistic(solver=solver, random_state=0).fit(X * 1e70, Y)
    proba = model.predict_proba(X * 1e70)
    assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(proba))
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    # The scaling makes the penalty vanish: the unpenalised fit's training loss.
    assert warned or binary_cross_entropy(Y, proba) <= unpenalised + 0.01


@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky", "lbfgs", "gd", "sgd"])
@pytest.mark.parametrize("working_memory", [None, 0.005])
def test_verbose_counts_the_iterations_of_n_iter(multilabel, solver, working_memory, capsys):
    """The progress lines count what n_iter_ reports, also label by label in blocks."""
    import re

    from sklearn import config_context

    X, Y = multilabel
    config = {} if working_memory is None else {"working_memory": working_memory}
    with config_context(**config), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MultiLabelLogistic(solver=solver, verbose=2, random_state=0).fit(X, Y)
    printed = [int(n) for n in re.findall(r"\] iter\s+(\d+)", capsys.readouterr().out)]
    assert printed and max(printed) == model.n_iter_


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_narrow_integer_label_matrix_of_many_labels(dtype):
    """int8/uint8 indicator matrices of 128+ labels are read column for column.

    (scikit-learn's LabelBinarizer, in OneVsRestClassifier, overflows int8
    class indices beyond 127 labels.)
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    Y = (X @ rng.normal(size=(4, 140)) + rng.logistic(size=(120, 140)) > 0)
    wide = MultiLabelLogistic().fit(X, Y.astype(np.int64))
    narrow = MultiLabelLogistic().fit(X, Y.astype(dtype))
    assert_array_equal(narrow.classes_, np.arange(140))
    assert_allclose(narrow.coef_, wide.coef_, rtol=1e-12, atol=1e-12)
    # Column j of the model is label j's LogisticRegression.
    for j in (0, 127, 128, 139):
        lr = LogisticRegression(tol=1e-10).fit(X, Y[:, j])
        assert_allclose(narrow.predict_proba(X)[:, j], lr.predict_proba(X)[:, 1], atol=1e-3)
    assert narrow.predict(X).dtype == dtype


def test_float32_trains_in_float32(multilabel):
    X, Y = multilabel
    model32 = MultiLabelLogistic().fit(X.astype(np.float32), Y)
    model64 = MultiLabelLogistic().fit(X, Y)
    assert model32.coef_.dtype == np.float32
    assert model32.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert_allclose(model32.coef_, model64.coef_, atol=1e-3)


def test_sparse_input_is_not_densified(multilabel, monkeypatch):
    X, Y = multilabel
    Xs = sparse.csr_matrix(X)

    def refuse(*args, **kwargs):
        raise AssertionError("densified")

    monkeypatch.setattr(sparse.csr_matrix, "toarray", refuse)
    monkeypatch.setattr(sparse.csr_matrix, "todense", refuse)
    model = MultiLabelLogistic(tol=1e-8).fit(Xs, Y)
    dense = MultiLabelLogistic(tol=1e-8).fit(X, Y)
    assert_allclose(model.predict_proba(Xs), dense.predict_proba(X), atol=1e-7)


# ---------------------------------------------------------------------------
# Targets and weights
# ---------------------------------------------------------------------------


def test_soft_targets_recover_the_true_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4))
    W = np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, -1.0], [3.0, 0.0, 0.0, 0.5]])
    b = np.array([0.5, -1.0, 0.0])
    P = expit(X @ W.T + b)
    model = MultiLabelLogistic(C=np.inf, tol=1e-10).fit(X, P)
    assert_allclose(model.coef_, W, atol=1e-6)
    assert_allclose(model.intercept_, b, atol=1e-6)
    assert_allclose(model.predict_proba(X), P, atol=1e-6)
    # 1-D soft targets: classes_ are 0 and 1.
    one = MultiLabelLogistic(C=np.inf, tol=1e-10).fit(X, P[:, 0])
    assert_array_equal(one.classes_, [0, 1])
    assert_allclose(one.coef_[0], W[0], atol=1e-6)
    assert_allclose(one.predict_proba(X)[:, 1], P[:, 0], atol=1e-6)


def test_constant_labels_get_sensible_probabilities(multilabel):
    X, Y = multilabel
    Y = Y.copy()
    Y[:, 1] = 0
    Y[:, 2] = 1
    model = MultiLabelLogistic().fit(X, Y)
    proba = model.predict_proba(X)
    assert np.all(proba[:, 1] < 1e-3) and np.all(proba[:, 2] > 1 - 1e-3)
    assert_array_equal(model.predict(X)[:, 1:3], Y[:, 1:3])
    assert np.all(np.isfinite(model.coef_))


@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky", "lbfgs", "gd"])
def test_sample_weight_equals_repetition(multilabel, solver):
    X, Y = multilabel
    weights = np.random.default_rng(0).integers(0, 4, size=len(X))
    # gd needs ~1300 iterations for the weighted fit to reach tol=1e-9;
    # lbfgs's line search stops short of it (and warns) on one label.
    params = dict(solver=solver, tol=1e-8 if solver == "lbfgs" else 1e-9, max_iter=3000)
    weighted = MultiLabelLogistic(**params).fit(X, Y, sample_weight=weights)
    repeated = MultiLabelLogistic(**params).fit(
        np.repeat(X, weights, axis=0), np.repeat(Y, weights, axis=0))
    assert_allclose(weighted.coef_, repeated.coef_, atol=1e-6)
    assert_allclose(weighted.intercept_, repeated.intercept_, atol=1e-6)


def test_sample_weight_matches_logistic_regression(multilabel):
    X, Y = multilabel
    sw = np.random.default_rng(1).uniform(0.1, 3, size=len(X))
    lr = LogisticRegression(C=0.5, tol=1e-10).fit(X, Y[:, 0], sample_weight=sw)
    model = MultiLabelLogistic(C=0.5, tol=1e-9).fit(X, Y[:, [0]], sample_weight=sw)
    assert_allclose(model.coef_, lr.coef_, atol=1e-6)


def test_pos_weight_options(multilabel):
    X, Y = multilabel
    n_pos = Y.sum(0)
    balanced = MultiLabelLogistic(pos_weight="balanced").fit(X, Y)
    assert_allclose(balanced.pos_weight_, (len(Y) - n_pos) / n_pos)
    # pos_weight w is the same as a sample weight w on every positive.
    for pw in [2, np.array([2, 1, 3, 1])]:
        model = MultiLabelLogistic(pos_weight=pw, tol=1e-9).fit(X, Y)
        pw_vec = np.broadcast_to(pw, (4,))
        for j in range(4):
            w = np.where(Y[:, j] == 1, pw_vec[j], 1)
            lr = LogisticRegression(tol=1e-10).fit(X, Y[:, j], sample_weight=w)
            assert_allclose(model.coef_[j], lr.coef_[0], atol=1e-6)
            assert_allclose(model.intercept_[j], lr.intercept_[0], atol=1e-6)
    with pytest.raises(ValueError, match="pos_weight"):
        MultiLabelLogistic(pos_weight=[1.0, 2.0]).fit(X, Y)


def test_label_smoothing_and_threshold(multilabel):
    X, Y = multilabel
    smooth = MultiLabelLogistic(label_smoothing=0.2, tol=1e-9).fit(X, Y)
    soft = MultiLabelLogistic(tol=1e-9).fit(X, Y * 0.8 + 0.1)
    assert_allclose(smooth.coef_, soft.coef_, atol=1e-6)
    model = MultiLabelLogistic(threshold=[0.0, 1.0, 0.5, 0.5]).fit(X, Y)
    pred = model.predict(X)
    assert np.all(pred[:, 0] == 1) and np.all(pred[:, 1] == 0)
    assert_array_equal(pred[:, 2:], model.predict_proba(X)[:, 2:] >= 0.5)


# ---------------------------------------------------------------------------
# partial_fit and warm start
# ---------------------------------------------------------------------------


def test_partial_fit_over_chunks_converges_to_the_fit_loss(multilabel):
    X, Y = multilabel
    chunks = np.array_split(np.arange(len(X)), 3)
    model = MultiLabelLogistic(batch_size=32, random_state=0)
    for epoch in range(60):
        for rows in chunks:
            model.partial_fit(X[rows], Y[rows], classes=np.arange(4))
    assert model.solver_ == "sgd" and model.n_iter_ == 180
    # The penalty is weighed against the rows of a pass: that is fit with the same C.
    reference = MultiLabelLogistic(C=1.0, tol=1e-9).fit(X, Y)
    objective = sklearn_objective(model.coef_, model.intercept_, X, Y, 1.0).sum()
    best = sklearn_objective(reference.coef_, reference.intercept_, X, Y, 1.0).sum()
    assert best <= objective <= best * 1.01
    loss = binary_cross_entropy(Y, model.predict_proba(X))
    assert abs(loss - binary_cross_entropy(Y, reference.predict_proba(X))) < 5e-3


def test_partial_fit_one_d_needs_classes():
    X, y = make_classification(n_samples=60, n_features=3, n_informative=2,
                               n_redundant=0, random_state=0)
    model = MultiLabelLogistic()
    with pytest.raises(ValueError, match="one class"):
        model.partial_fit(X[y == 1], y[y == 1])
    model.partial_fit(X[y == 1], y[y == 1], classes=[0, 1])
    model.partial_fit(X[y == 0], y[y == 0])
    assert_array_equal(model.classes_, [0, 1])
    assert model.predict_proba(X).shape == (60, 2)
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :2], y)


def test_warm_start_resumes(multilabel):
    X, Y = multilabel
    cold = MultiLabelLogistic(solver="gd", tol=1e-7).fit(X, Y)
    with pytest.warns(ConvergenceWarning):
        warm = MultiLabelLogistic(solver="gd", tol=1e-7, max_iter=5, warm_start=True).fit(X, Y)
    first_curve = list(warm.loss_curve_)
    warm.set_params(max_iter=1000).fit(X, Y)
    # The second fit starts where the first stopped.
    assert warm.loss_curve_[0] <= first_curve[-1] + 1e-12
    assert warm.n_iter_ < cold.n_iter_
    assert_allclose(warm.coef_, cold.coef_, atol=1e-5)
    # Refit without warm start starts over.
    again = clone(warm).set_params(warm_start=False, max_iter=5)
    with pytest.warns(ConvergenceWarning):
        again.fit(X, Y)
    assert_allclose(again.loss_curve_, first_curve)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda X, Y: (np.where(np.eye(*X.shape, dtype=bool), np.nan, X), Y), "NaN"),
        (lambda X, Y: (np.where(np.eye(*X.shape, dtype=bool), np.inf, X), Y), "infinity"),
        (lambda X, Y: (X, np.where(Y == 1, 2, Y)), "Unknown label type"),
        (lambda X, Y: (X, Y - 0.5), "Unknown label type"),
        (lambda X, Y: (X, np.where(Y == 1, np.nan, Y).astype(float)), "NaN"),
        (lambda X, Y: (X[:-1], Y), "inconsistent numbers of samples"),
        (lambda X, Y: (X, Y[:, :, None]), "y"),
        (lambda X, Y: (X, np.arange(len(Y)) % 3), "Only binary classification"),
        (lambda X, Y: (X, np.linspace(-1, 2, len(Y))), "continuous"),
    ],
)
def test_bad_input_is_a_clear_value_error(multilabel, change, match):
    X, Y = change(*multilabel)
    with pytest.raises(ValueError, match=match):
        MultiLabelLogistic().fit(X, Y)


def test_bad_weights_and_parameters(multilabel):
    X, Y = multilabel
    with pytest.raises(ValueError, match="(?i)negative"):
        MultiLabelLogistic().fit(X, Y, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="(?i)zero"):
        MultiLabelLogistic().fit(X, Y, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="sample_weight"):
        MultiLabelLogistic().fit(X, Y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="C"):
        MultiLabelLogistic(C=-1).fit(X, Y)
    with pytest.raises(ValueError, match="solver"):
        MultiLabelLogistic(solver="newton").fit(X, Y)
    with pytest.raises(ValueError, match="threshold"):
        MultiLabelLogistic(threshold=[0.5, 0.5]).fit(X, Y).predict(X)


# ---------------------------------------------------------------------------
# scikit-learn integration
# ---------------------------------------------------------------------------


@parametrize_with_checks([MultiLabelLogistic()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_clone_pickle_feature_names_set_output(multilabel):
    pd = pytest.importorskip("pandas")
    X, Y = multilabel
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    model = MultiLabelLogistic().fit(frame, Y)
    assert_array_equal(model.feature_names_in_, frame.columns)
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.predict_proba(frame), model.predict_proba(frame))
    assert clone(model).get_params() == model.get_params()
    pipe = make_pipeline(StandardScaler(), MultiLabelLogistic()).set_output(transform="pandas")
    pipe.fit(frame, Y)
    assert_array_equal(pipe[-1].feature_names_in_, frame.columns)
    assert pipe.predict(frame).shape == Y.shape


def test_grid_search_with_bce_scorer(multilabel):
    X, Y = multilabel
    search = GridSearchCV(MultiLabelLogistic(), {"C": [0.001, 1.0]}, scoring=bce_scorer,
                          cv=KFold(3, shuffle=True, random_state=0)).fit(X, Y)
    assert search.best_params_ == {"C": 1.0}
    proba = search.predict_proba(X)
    assert_allclose(-search.score(X, Y), binary_cross_entropy(Y, proba))


def test_multilabel_outputs(multilabel):
    X, Y = multilabel
    model = MultiLabelLogistic().fit(X, Y.astype(np.int8))
    assert_array_equal(model.classes_, np.arange(4))
    assert model.predict(X).dtype == np.int8
    assert model.predict_proba(X).shape == (300, 4)
    assert_allclose(np.log(model.predict_proba(X)), model.predict_log_proba(X), rtol=1e-10)
    assert_array_equal(model.predict(X), model.decision_function(X) >= 0)
    assert 0 <= model.score(X, Y) <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_proba_is_the_log_of_proba_as_rounded(dtype):
    # Large logits: float32 rounds probabilities within 6e-8 of 1 to 1, and
    # the log-probability must then be 0 (scikit-learn's check_classifiers_train
    # compares it with np.log(predict_proba)); where the probability
    # underflows, the exact log-sigmoid is finite.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    Y = (X[:, :2] > 0).astype(int)
    model = MultiLabelLogistic(C=1e4).fit(X.astype(dtype), Y)
    X_far = (np.vstack([X, 30 * X, 3000 * X])).astype(dtype)
    proba, log_proba = model.predict_proba(X_far), model.predict_log_proba(X_far)
    assert log_proba.dtype == dtype
    assert np.any(proba == 1) and np.any(proba == 0)
    normal = proba >= np.finfo(dtype).tiny
    assert_array_equal(log_proba[normal], np.log(proba[normal]))
    scores = model.decision_function(X_far).astype(np.float64)
    exact = -np.logaddexp(0, -scores)
    assert_allclose(log_proba[~normal], exact[~normal], rtol=1e-6)
    assert np.all(np.isfinite(log_proba))
    binary = MultiLabelLogistic(C=1.0).fit(X.astype(dtype), Y[:, 0])
    proba = binary.predict_proba(X_far)
    normal = proba >= np.finfo(dtype).tiny
    assert_array_equal(binary.predict_log_proba(X_far)[normal], np.log(proba[normal]))


def test_many_labels_sparse_match_logistic_regression():
    """Twenty labels: the conjugate gradient drops converged labels from its
    arrays (three register tiles down to two or one) and still reaches each
    label's own optimum."""
    X, Y = make_multilabel_classification(
        n_samples=300, n_features=40, n_classes=20, n_labels=4, random_state=7
    )
    X = sparse.csr_matrix(X / X.max())
    model = MultiLabelLogistic(C=2.0, tol=1e-8).fit(X, Y)
    for j in range(Y.shape[1]):
        ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(X, Y[:, j])
        assert_allclose(model.coef_[j], ref.coef_[0], atol=2e-4)
        assert_allclose(model.intercept_[j], ref.intercept_[0], atol=2e-4)
