"""solver="dual-cd": the same per-label optimum as newton-cg, on sparse and dense X."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import sparse
from scipy.special import expit, log_expit

from skbce import MultiLabelLogistic


def _text_like(n=300, d=60, k=6, seed=0):
    """Sparse non-negative rows (l2-normalised) and labels of varied rarity."""
    rng = np.random.default_rng(seed)
    X = sparse.random(n, d, density=0.1, random_state=seed, format="csr",
                      data_rvs=lambda m: rng.uniform(0.1, 1.0, m))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    W = rng.normal(size=(d, k)) * 3
    rates = np.geomspace(0.3, 0.02, k)
    Z = np.asarray(X @ W)
    Z += np.log(rates / (1 - rates)) - np.median(Z, axis=0)
    Y = (rng.uniform(size=Z.shape) < expit(Z)).astype(np.int64)
    Y[0, :] = 1  # every label has a positive
    return X.tocsr(), Y


def _objective(model, X, Y, C, sample_weight=None, pos_weight=1.0):
    """LogisticRegression's objective (weighted BCE, L2 on coef only), per label."""
    Z = np.asarray(X @ model.coef_.T, dtype=np.float64) + model.intercept_
    loss = -(pos_weight * Y * log_expit(Z) + (1 - Y) * log_expit(-Z))
    sw = np.ones(len(Y)) if sample_weight is None else sample_weight
    return C * (sw @ loss) + 0.5 * (model.coef_.astype(np.float64) ** 2).sum(axis=1)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_dual_cd_reaches_newton_cg_optimum(dense, dtype, weighted):
    X, Y = _text_like()
    X = X.astype(dtype)
    if dense:
        X = X.toarray()
    sw = np.random.default_rng(1).uniform(0.2, 3.0, len(Y)) if weighted else None
    params = dict(C=10.0, tol=1e-8, max_iter=5000)
    ref = MultiLabelLogistic(solver="newton-cg", **params).fit(X, Y, sample_weight=sw)
    model = MultiLabelLogistic(solver="dual-cd", **params).fit(X, Y, sample_weight=sw)
    assert model.solver_ == "dual-cd"
    assert model.coef_.dtype == dtype
    scale = np.abs(ref.coef_).max()
    rtol = 1e-4 if dtype == np.float32 else 1e-6
    assert_allclose(model.coef_, ref.coef_, atol=rtol * scale)
    assert_allclose(model.intercept_, ref.intercept_, atol=rtol * max(1.0, scale))
    f_ref = _objective(ref, X, Y, 10.0, sw)
    f = _objective(model, X, Y, 10.0, sw)
    assert np.all(f <= f_ref * (1 + 10 * rtol))


@pytest.mark.parametrize("options", [
    dict(fit_intercept=False),
    dict(pos_weight=3.0),
    dict(label_smoothing=0.1),
    dict(C=0.01),
])
def test_dual_cd_options_match_newton_cg(options):
    X, Y = _text_like(seed=2)
    params = dict(C=5.0, tol=1e-8, max_iter=5000)
    params.update(options)
    ref = MultiLabelLogistic(solver="newton-cg", **params).fit(X, Y)
    model = MultiLabelLogistic(solver="dual-cd", **params).fit(X, Y)
    # Both stop at a gradient max-norm of 1e-8 (in units of the mean loss),
    # each its own way to the optimum: a few 1e-6 of the largest coefficient.
    scale = max(np.abs(ref.coef_).max(), 1e-3)
    assert_allclose(model.coef_, ref.coef_, atol=3e-6 * scale)
    assert_allclose(model.intercept_, ref.intercept_, atol=3e-6 * max(1.0, scale))
    f_ref = _objective(ref, X, Y, params["C"], pos_weight=params.get("pos_weight", 1.0))
    f = _objective(model, X, Y, params["C"], pos_weight=params.get("pos_weight", 1.0))
    if "label_smoothing" not in options:
        assert_allclose(f, f_ref, rtol=1e-9)


def test_dual_cd_soft_targets():
    X, Y = _text_like(seed=3)
    soft = np.clip(Y * 0.8 + np.random.default_rng(0).uniform(0, 0.2, Y.shape), 0, 1)
    params = dict(C=2.0, tol=1e-8, max_iter=5000)
    ref = MultiLabelLogistic(solver="newton-cg", **params).fit(X, soft)
    model = MultiLabelLogistic(solver="dual-cd", **params).fit(X, soft)
    assert_allclose(model.coef_, ref.coef_, atol=1e-6 * np.abs(ref.coef_).max())
    assert_allclose(model.intercept_, ref.intercept_, atol=1e-6)


def test_dual_cd_default_tol_meets_the_stopping_rule():
    """At the default tol each label's gradient max-norm (objective / (C n)) is <= tol."""
    X, Y = _text_like(n=400, d=80, k=8, seed=4)
    C = 10.0
    model = MultiLabelLogistic(solver="dual-cd", C=C).fit(X, Y)
    Z = np.asarray(X @ model.coef_.T) + model.intercept_
    G = (expit(Z) - Y) / len(Y)
    gW = np.asarray(X.T @ G) + model.coef_.T / (C * len(Y))
    gmax = np.maximum(np.abs(gW).max(axis=0), np.abs(G.sum(axis=0)))
    assert np.all(gmax <= model.tol)


def test_dual_cd_rare_and_empty_labels():
    """A label without positives gets a very negative intercept, finite coefficients."""
    X, Y = _text_like(n=300, d=40, k=4, seed=5)
    Y[:, 1] = 0
    Y[:, 2] = 0
    Y[7, 2] = 1  # a single positive
    model = MultiLabelLogistic(solver="dual-cd", C=10.0, tol=1e-6).fit(X, Y)
    assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(model.intercept_))
    proba = model.predict_proba(X)
    assert proba[:, 1].max() < 0.05
    ref = MultiLabelLogistic(solver="newton-cg", C=10.0, tol=1e-8).fit(X, Y)
    f = _objective(model, X, Y, 10.0)
    f_ref = _objective(ref, X, Y, 10.0)
    assert np.all(f <= f_ref + 1e-5 * np.maximum(1.0, f_ref))


@pytest.mark.parametrize("container", [sparse.csr_matrix, sparse.csc_array])
def test_dual_cd_sparse_targets_in_label_blocks(container):
    """A sparse y is read a block of labels at a time: the dense y's model."""
    import sklearn

    X, Y = _text_like(n=300, d=40, k=21, seed=3)
    dense = MultiLabelLogistic(solver="dual-cd", C=10.0, tol=1e-8).fit(X, Y)
    # 1e-3 MiB holds three labels of 300 one-byte targets, rounded up to a
    # kernel block of 8: three chunks of 8, 8 and 5 labels.
    with sklearn.config_context(working_memory=1e-3):
        model = MultiLabelLogistic(solver="dual-cd", C=10.0, tol=1e-8).fit(X, container(Y))
    # A block's row order is seeded by its place in the kernel's call, so a
    # label takes another path to the same optimum (to tol=1e-8).
    f, f_dense = _objective(model, X, Y, 10.0), _objective(dense, X, Y, 10.0)
    assert_allclose(f, f_dense, rtol=1e-9)
    assert_allclose(model.coef_, dense.coef_, atol=1e-5)
    assert_allclose(model.intercept_, dense.intercept_, atol=1e-5)
    assert sparse.issparse(model.predict(X))


def test_dual_cd_per_label_settings_follow_their_label_in_chunks():
    """Sparse targets in chunks (each chunk's targets in the kernel's order,
    the labels' arrays in theirs), a per-label pos_weight and a warm start
    of varied labels: every label gets its own settings and start, so the
    fit equals the dense one and each label its fit alone."""
    import sklearn

    X, Y = _text_like(n=300, d=40, k=21, seed=5)
    pos_weight = np.linspace(0.5, 4.0, Y.shape[1])
    params = dict(solver="dual-cd", C=10.0, tol=1e-8, max_iter=5000, pos_weight=pos_weight)
    dense = MultiLabelLogistic(**params).fit(X, Y)
    with sklearn.config_context(working_memory=1e-3):
        warm = MultiLabelLogistic(warm_start=True, **params)
        warm.coef_ = dense.coef_ * np.linspace(0.0, 1.5, Y.shape[1])[:, None]
        warm.intercept_ = dense.intercept_ + np.linspace(-1.0, 1.0, Y.shape[1])
        warm.fit(X, sparse.csc_array(Y))
    f_dense = _objective(dense, X, Y, 10.0, pos_weight=pos_weight)
    assert_allclose(_objective(warm, X, Y, 10.0, pos_weight=pos_weight), f_dense, rtol=1e-9)
    assert_allclose(warm.coef_, dense.coef_, atol=1e-5)
    for j in (2, 13):
        alone = MultiLabelLogistic(**dict(params, pos_weight=pos_weight[j])).fit(X, Y[:, [j]])
        assert_allclose(dense.coef_[j], alone.coef_[0], atol=1e-5)
        assert_allclose(dense.intercept_[j], alone.intercept_[0], atol=1e-5)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_dual_cd_blocks_of_labels_and_partial_warm_start(n_jobs):
    """21 labels go in blocks of 8 lanes (the last block partly empty), some
    lanes warm-started at their optimum and some cold: each label reaches its
    own optimum, as when fitted alone."""
    X, Y = _text_like(n=250, d=40, k=21, seed=7)
    params = dict(solver="dual-cd", C=10.0, tol=1e-8, max_iter=5000, n_jobs=n_jobs)
    model = MultiLabelLogistic(**params).fit(X, Y)
    for j in (0, 9, 20):
        alone = MultiLabelLogistic(**params).fit(X, Y[:, [j]])
        assert_allclose(model.coef_[j], alone.coef_[0], atol=1e-5)
        assert_allclose(model.intercept_[j], alone.intercept_[0], atol=1e-5)
    warm = MultiLabelLogistic(warm_start=True, **params)
    warm.coef_ = model.coef_.copy()
    warm.intercept_ = model.intercept_.copy()
    warm.coef_[::3] = 0.0
    warm.intercept_[::3] = 0.0
    warm.fit(X, Y)
    assert_allclose(_objective(warm, X, Y, 10.0), _objective(model, X, Y, 10.0), rtol=1e-9)
    assert_allclose(warm.coef_, model.coef_, atol=1e-5)


@pytest.mark.parametrize("shift", [-3.0, 3.0])
def test_dual_cd_intercepts_far_off_return_to_the_optimum(shift):
    """Weights at their optimum and every intercept 3 logits off (beyond the
    one-logit Newton step an exact pass may take): each label, rare ones
    included, comes back to newton-cg's optimum."""
    X, Y = _text_like(n=400, d=60, k=6, seed=12)
    params = dict(C=10.0, tol=1e-8, max_iter=5000)
    ref = MultiLabelLogistic(solver="newton-cg", **params).fit(X, Y)
    model = MultiLabelLogistic(solver="dual-cd", warm_start=True, **params).fit(X, Y)
    model.coef_ = ref.coef_.copy()
    model.intercept_ = ref.intercept_ + shift
    model.fit(X, Y)
    scale = np.abs(ref.coef_).max()
    assert_allclose(model.intercept_, ref.intercept_, atol=1e-5 * max(1.0, scale))
    assert_allclose(model.coef_, ref.coef_, atol=1e-5 * scale)
    assert_allclose(_objective(model, X, Y, 10.0), _objective(ref, X, Y, 10.0), rtol=1e-9)


def test_auto_takes_dual_cd_for_many_rare_labels_on_sparse_x():
    """"auto" takes dual-cd for many rare labels on a sparse X of mild curvature
    (C |x_i|^2 small), and newton-cg for a dense X, frequent labels, few labels,
    or a large C; either way the same model."""
    X, Y = _text_like(n=400, d=60, k=40, seed=6)
    rare = np.zeros_like(Y)
    rng = np.random.default_rng(6)
    for j in range(Y.shape[1]):
        rare[rng.choice(len(Y), size=6, replace=False), j] = 1
    model = MultiLabelLogistic(C=10.0, tol=1e-8, max_iter=2000).fit(X, rare)
    assert model.solver_ == "dual-cd"
    ref = MultiLabelLogistic(C=10.0, tol=1e-8, max_iter=2000, solver="newton-cg").fit(X, rare)
    assert_allclose(_objective(model, X, rare, 10.0), _objective(ref, X, rare, 10.0), rtol=1e-8)
    assert MultiLabelLogistic(C=10.0, max_iter=50).fit(X.toarray(), rare).solver_ == "newton-cg"
    frequent = np.zeros_like(rare)
    frequent[: len(Y) // 3] = 1
    assert MultiLabelLogistic(C=10.0, max_iter=50).fit(X, frequent).solver_ == "newton-cg"
    assert MultiLabelLogistic(C=10.0, max_iter=50).fit(X, rare[:, :8]).solver_ == "newton-cg"
    assert MultiLabelLogistic(C=1e3, max_iter=50).fit(X, rare).solver_ == "newton-cg"


def test_dual_cd_rejects_what_it_cannot_fit():
    X, Y = _text_like(n=50, d=10, k=2)
    with pytest.raises(ValueError, match="finite C"):
        MultiLabelLogistic(solver="dual-cd", C=np.inf).fit(X, Y)
    with pytest.raises(ValueError, match="l1_ratio"):
        MultiLabelLogistic(solver="dual-cd", l1_ratio=0.5).fit(X, Y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cold_start_column_sums_match_scipy(dtype):
    """``X^T sw``, shared by every block's cold start, also on a row block whose indptr starts past 0."""
    from skbce.linear_model._dual_cd import _weighted_column_sums

    X, _ = _text_like(n=120, d=40, seed=3)
    X = X.astype(dtype)
    X.data = np.concatenate([X.data, np.full(5, 7.0, dtype=dtype)])  # stored beyond indptr[-1]
    X.indices = np.concatenate([X.indices, np.zeros(5, dtype=X.indices.dtype)])
    sw = np.random.default_rng(0).uniform(0.0, 2.0, 120)
    full = _weighted_column_sums(X.indptr, X.indices, X.data, sw, 40)
    assert full.dtype == np.float64
    assert_allclose(full, X[:, :].T @ sw, rtol=1e-6)
    rows = slice(30, 90)  # the raw arrays of rows 30..89, indptr not rebased
    block = _weighted_column_sums(X.indptr[30:91], X.indices, X.data, sw[rows], 40)
    assert_allclose(block, X[rows].T @ sw[rows], rtol=1e-6)
