"""The solver kernels (skbce._linear_kernels, skbce._csr_kernels) against scipy / numpy references.

Edge cases the register tiles have to get right: label counts that are not a
multiple of the tile width (the last tile reads or writes past its columns),
nonzeros in the last columns of X (where those lanes would leave the array),
float64 values of X with float32 coefficients, int32 and int64 indices, and
one or more threads.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import sparse
from scipy.special import expit, log_expit

from skbce._kernels import (
    csr_hessp,
    csr_matmul,
    csr_matmul_t,
    dense_newton_terms,
    logistic_derivatives,
)

LABEL_COUNTS = [1, 2, 3, 4, 7, 8, 9, 16, 21]


def random_csr(n, d, seed, density=0.3):
    rng = np.random.default_rng(seed)
    X = sparse.random(n, d, density=density, format="lil", random_state=seed)
    X[:, d - 1] = rng.normal(size=(n, 1))  # every row touches the last column
    X = X.tocsr()
    X.data = rng.normal(size=X.nnz)
    return X


def tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("k", LABEL_COUNTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_products_match_scipy(k, dtype, index, n_threads):
    X = random_csr(300, 13, seed=k)
    rng = np.random.default_rng(k)
    W = rng.normal(size=(13, k)).astype(dtype)
    G = rng.normal(size=(300, k)).astype(dtype)
    indptr, indices = X.indptr.astype(index), X.indices.astype(index)
    for square in (False, True):
        M = X.multiply(X) if square else X
        out = np.full((300, k), np.nan, dtype=dtype)
        csr_matmul(indptr, indices, X.data, W, out, square, n_threads)
        assert_allclose(out, M @ W.astype(np.float64), **tolerance(dtype))
        out_t = np.full((13, k), np.nan, dtype=dtype)
        csr_matmul_t(indptr, indices, X.data, G, out_t, square, n_threads)
        assert_allclose(out_t, M.T @ G.astype(np.float64), **tolerance(dtype))


@pytest.mark.parametrize("k", LABEL_COUNTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("intercept", [False, True])
def test_hessian_vector_product(k, dtype, intercept):
    X = random_csr(700, 9, seed=100 + k)  # enough rows for two threads
    rng = np.random.default_rng(k)
    V = rng.normal(size=(9, k)).astype(dtype)
    D = rng.uniform(size=(700, k)).astype(dtype)
    vb = rng.normal(size=k).astype(dtype) if intercept else np.empty(0, dtype=dtype)
    U = D * (X @ V.astype(np.float64) + (vb if intercept else 0))
    for n_threads in (1, 2):
        out = np.full((9, k), np.nan, dtype=dtype)
        out_b = np.full(k, np.nan)
        csr_hessp(X.indptr, X.indices, X.data, V, vb, D, out, out_b, n_threads)
        assert_allclose(out, X.T @ U, **tolerance(dtype))
        assert_allclose(out_b, U.sum(axis=0), **tolerance(dtype))


# The kernel runs over blocks of about 1024 entries (whole rows): several
# blocks and a partial last one; one block; rows longer than a block.
@pytest.mark.parametrize("shape", [(257, 11), (257, 1), (5, 1100)])
@pytest.mark.parametrize("targets", ["uint8", "float64"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logistic_derivatives(targets, dtype, shape):
    rng = np.random.default_rng(3)
    n, k = shape
    Y = rng.integers(0, 2, size=(n, k)).astype(targets)
    Z = (4 * rng.normal(size=(n, k))).astype(dtype)
    sw = rng.uniform(size=n).astype(dtype)
    pw = rng.uniform(0.5, 3, size=k).astype(dtype)
    smoothing = 0.1
    y = Y * (1 - smoothing) + smoothing / 2
    z = Z.astype(np.float64)
    loss = -(pw * y * log_expit(z) + (1 - y) * log_expit(-z))
    p = expit(z)
    grad = (1 - y) * p - pw * y * (1 - p)
    hess = (pw * y + 1 - y) * p * (1 - p)
    scale = 0.5
    w = scale * sw[:, None]
    for n_threads in (1, 2):
        out_loss = np.empty(k)
        G = np.empty((n, k), dtype=dtype)
        H = np.empty((n, k), dtype=np.float32)
        logistic_derivatives(Y, Z, sw, pw, 1.0, smoothing, scale, out_loss, G, H, n_threads)
        assert_allclose(out_loss, (w * loss).sum(axis=0), **tolerance(dtype))
        assert_allclose(G, w * grad, **tolerance(dtype))
        assert_allclose(H, w * hess, rtol=1e-5, atol=1e-6)
        # The loss alone, with a scalar pos_weight.
        empty = np.empty(0, dtype=dtype)
        logistic_derivatives(Y, Z, empty, empty, 2.0, 0.0, 1.0, out_loss,
                             np.empty((0, 0), dtype=dtype), np.empty((0, 0), dtype=dtype),
                             n_threads)
        plain = -(2.0 * Y * log_expit(z) + (1 - Y) * log_expit(-z))
        assert_allclose(out_loss, plain.sum(axis=0), **tolerance(dtype))


# Feature counts around the Hessian kernel's tiles (four rows of H, 3 vectors
# of columns), row counts around its blocks of 64 rows (and two threads).
@pytest.mark.parametrize("d", [1, 3, 4, 11, 12, 13, 27])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("intercept", [False, True])
def test_dense_newton_terms(d, k, dtype, intercept):
    rng = np.random.default_rng(10 * d + k)
    n = 645
    X = rng.normal(size=(n, d)).astype(dtype)
    W = (0.5 * rng.normal(size=(d, k))).astype(dtype)
    b = rng.normal(size=k).astype(dtype) if intercept else np.empty(0, dtype=dtype)
    Y = rng.integers(0, 2, size=(n, k)).astype(np.uint8)
    sw = rng.uniform(size=n).astype(dtype)
    pw = rng.uniform(0.5, 3, size=k).astype(dtype)
    smoothing, scale = 0.1, 0.01
    # The reference: numpy in float64 from the formulas.
    y = Y * (1 - smoothing) + smoothing / 2
    z = X.astype(np.float64) @ W + (b if intercept else 0)
    p = expit(z)
    w = scale * sw[:, None]
    loss = (w * -(pw * y * log_expit(z) + (1 - y) * log_expit(-z))).sum(axis=0)
    g = w * ((1 - y) * p - pw * y * (1 - p))
    h = w * (pw * y + 1 - y) * p * (1 - p)
    A = np.hstack([X, np.ones((n, 1), dtype)]) if intercept else X
    A = A.astype(np.float64)
    m = A.shape[1]
    upper = np.triu_indices(m)
    for n_threads in (1, 2):
        out_loss = np.full(k, np.nan)
        grad = np.full((m, k), np.nan)
        hess = np.full((k, m, m), -7.0, dtype=dtype)
        dense_newton_terms(X, W, b, Y, sw, pw, 1.0, smoothing, scale, out_loss, grad, hess,
                           n_threads)
        assert_allclose(out_loss, loss, **tolerance(dtype))
        assert_allclose(grad, A.T @ g, **tolerance(dtype))
        for j in range(k):
            assert_allclose(hess[j][upper], (A.T @ (h[:, j:j + 1] * A))[upper],
                            **tolerance(dtype))
            assert np.all(hess[j][np.tril_indices(m, -1)] == -7.0)  # lower triangle untouched


def test_dense_newton_terms_scalar_weights():
    """No sample weights and a scalar pos_weight: the plain weighted sums."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    W = rng.normal(size=(5, 1))
    b = np.array([0.3])
    Y = rng.integers(0, 2, size=(300, 1)).astype(np.float64)
    empty = np.empty(0)
    loss, grad, hess = np.empty(1), np.empty((6, 1)), np.zeros((1, 6, 6))
    dense_newton_terms(X, W, b, Y, empty, empty, 2.0, 0.0, 1.0, loss, grad, hess, 1)
    z = X @ W + b
    A = np.hstack([X, np.ones((300, 1))])
    p = expit(z)
    assert_allclose(loss, -(2.0 * Y * log_expit(z) + (1 - Y) * log_expit(-z)).sum(axis=0))
    assert_allclose(grad, A.T @ ((1 - Y) * p - 2.0 * Y * (1 - p)))
    weights = (2.0 * Y + 1 - Y) * p * (1 - p)
    assert_allclose(np.triu(hess[0]), np.triu(A.T @ (weights * A)))


def test_kernels_reject_inconsistent_shapes():
    X = random_csr(20, 5, seed=0)
    V = np.zeros((5, 3))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        csr_hessp(X.indptr, X.indices, X.data, V, np.empty(0), np.zeros((20, 2)),
                  np.empty((5, 3)), np.empty(3), 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        csr_matmul(X.indptr, X.indices, X.data, V, np.empty((19, 3)), False, 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        csr_matmul_t(X.indptr, X.indices, X.data, np.zeros((20, 2)), np.empty((5, 3)), False, 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        logistic_derivatives(np.zeros((20, 3), np.uint8), np.zeros((20, 2)), np.empty(0),
                             np.empty(0), 1.0, 0.0, 1.0, np.empty(3), np.empty((0, 0)),
                             np.empty((0, 0)), 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):  # hess is (k, d, d): no intercept
        dense_newton_terms(np.zeros((20, 5)), V, np.zeros(3), np.zeros((20, 3), np.uint8),
                           np.empty(0), np.empty(0), 1.0, 0.0, 1.0, np.empty(3),
                           np.empty((6, 3)), np.empty((3, 5, 5)), 1)


def test_malformed_sparse_matrix_is_a_value_error():
    """The kernels run without bounds checks: bad CSR indices must not reach them."""
    from skbce import MultiLabelLogistic

    X = random_csr(30, 6, seed=1)
    Y = np.random.default_rng(0).integers(0, 2, size=(30, 2))
    bad = X.copy()
    bad.indices[3] = 6  # a column index past the last column
    with pytest.raises(ValueError, match="malformed sparse matrix"):
        MultiLabelLogistic().fit(bad, Y)
    bad = X.copy()
    bad.indptr[5] = bad.indptr[6] + 1  # indptr must not decrease
    with pytest.raises(ValueError, match="malformed sparse matrix"):
        MultiLabelLogistic().fit(bad, Y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conjugate_gradient_updates(dtype):
    """The fused vector updates of newton-cg's conjugate gradient against numpy."""
    from skbce._kernels import cg_advance, cg_curvature, cg_direction

    rng = np.random.default_rng(5)
    d, k_all = 37, 11
    cols = np.array([0, 3, 4, 9, 10], dtype=np.intp)  # the labels still iterating
    k = len(cols)
    PW = rng.normal(size=(d, k_all)).astype(dtype)
    DW, RW, HW, ZW = (rng.normal(size=(d, k)).astype(dtype) for _ in range(4))
    step = rng.uniform(size=k).astype(dtype)
    beta = rng.uniform(size=k).astype(dtype)
    tol = tolerance(dtype)

    curv = np.empty(k)
    expected_HW = HW + 0.3 * DW
    cg_curvature(HW, DW, 0.3, curv)
    assert_allclose(HW, expected_HW, **tol)
    assert_allclose(curv, (DW * expected_HW).sum(axis=0), **tol)

    rr = np.empty(k)
    expected_PW = PW.copy()
    expected_PW[:, cols] += step * DW
    expected_RW = RW - step * HW
    cg_advance(PW, cols, DW, RW, HW, step, rr)
    assert_allclose(PW, expected_PW, **tol)
    assert_allclose(RW, expected_RW, **tol)
    assert_allclose(rr, (expected_RW**2).sum(axis=0), **tol)

    expected_DW = ZW + beta * DW
    cg_direction(DW, ZW, beta)
    assert_allclose(DW, expected_DW, **tol)

    with pytest.raises(ValueError, match="out of range"):
        cg_advance(PW, np.array([0, 1, 2, 3, k_all], dtype=np.intp), DW, RW, HW, step, rr)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        cg_direction(DW, np.ascontiguousarray(ZW[:, :2]), beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 63, 64, 1001])
def test_max_abs_matches_numpy(dtype, n):
    from skbce._kernels import max_abs

    x = np.random.default_rng(n).normal(size=n).astype(dtype) * 1e3
    expected = float(np.abs(x).max()) if n else 0.0
    for threads in (1, 2):
        assert max_abs(x, threads) == expected
