"""Optimisers for MultiLabelLogistic: pure functions on (X, Y, weights).

Every solver minimises, for each label ``j`` separately,

    f_j(w_j, b_j) = sum_i s_i * loss(y_ij, x_i . w_j + b_j) / S
                    + alpha / 2 * ||w_j||^2 + beta * ||w_j||_1

with ``s`` the sample weights, ``S = sum(s)``, ``alpha = (1 - l1_ratio) / (C * S)``
and ``beta = l1_ratio / (C * S)``. This is scikit-learn's ``LogisticRegression``
objective divided by ``C * S``, so a gradient tolerance means the same thing
in both.

The labels share nothing but the data, and the solvers exploit it: the
coefficients of all labels are held as the columns of one ``(n_features,
n_active)`` matrix, so that a forward pass is the single product ``X @ W`` and
a backward pass ``X.T @ G`` (BLAS for dense ``X``, the OpenMP kernels of
:mod:`skbce._linear_kernels` for sparse ``X``), and one fused kernel pass
(:func:`skbce._linear_kernels.logistic_derivatives`, the arithmetic of
:func:`skbce._bce.bce_pass` plus per-label sums and curvature) gives the loss
of each label and the gradient and curvature with respect to the logits. SGD
uses :func:`skbce._bce.bce_pass` on its mini-batches. Each label has its own
step size, momentum or curvature and its own convergence test; a label that
has converged leaves the active set and stops costing work.

Memory: the solvers hold about ten ``(n_samples, n_active)`` arrays; when
that exceeds a budget the labels are solved block by block
(:func:`solve_in_blocks`).

The solvers are plain functions on a :class:`LinearBCE` problem and return a
:class:`SolverResult`; the estimator validates inputs once, beforehand.
"""

import copy
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, sparse
from scipy import linalg
from scipy.linalg import blas
from sklearn import get_config
from sklearn.utils.extmath import safe_sparse_dot

from skbce._kernels import bce_pass
from skbce._kernels import (
    cg_advance,
    cg_curvature,
    cg_direction,
    csr_hessp,
    csr_matmul,
    csr_matmul_t,
    logistic_derivatives,
    max_abs,
)

__all__ = [
    "LinearBCE",
    "SolverResult",
    "SOLVERS",
    "gradient_descent",
    "lbfgs",
    "newton_cg",
    "newton_cholesky",
    "sgd",
    "sgd_epoch",
]


# Dense products run over blocks of rows of at most this many multiply-adds
# (see LinearBCE._row_blocks).
DENSE_BLOCK_WORK = 1_000_000
# ... and of at least DENSE_WIDE_ROWS rows when their (n_features, n_labels)
# accumulator has DENSE_WIDE_ACCUMULATOR entries or more (256 KiB in float32).
DENSE_WIDE_ACCUMULATOR = 2**16
DENSE_WIDE_ROWS = 2048


@dataclass
class SolverResult:
    """What a solver returns.

    coef : ndarray of shape (n_labels, n_features)
    intercept : ndarray of shape (n_labels,)
    n_iter : int
        Iterations (epochs for SGD) run; the maximum over the labels.
    loss_curve : list of float
        Mean over labels of the objective ``f_j`` after each iteration.
    converged : ndarray of bool, shape (n_labels,)
    label_n_iter : ndarray of int, shape (n_labels,)
        Iterations each label took until it converged (or stopped).
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    loss_curve: list
    converged: np.ndarray
    label_n_iter: np.ndarray = field(default=None)


class LinearBCE:
    """The penalised per-label BCE of a linear model, on validated data.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        Floating point, the dtype of the computation.
    Y : ndarray of shape (n_samples, n_labels)
        Targets in [0, 1], C-contiguous, of ``X``'s dtype.
    sample_weight : ndarray of shape (n_samples,) or None
    pos_weight : ndarray of shape (n_labels,) or None
    alpha, beta : float
        L2 and L1 strengths of the scaled objective (see the module docstring).
    fit_intercept : bool
    n_threads : int
        OpenMP threads for the loss kernel.
    product_threads : int or None
        OpenMP threads for the products with a sparse ``X`` (None: ``n_threads``).
        Their work is ``X.nnz`` per label, not the ``(n_samples, n_labels)``
        entries of the loss: a binary target on a large sparse ``X`` has few
        loss entries but heavy products.
    """

    def __init__(self, X, Y, sample_weight, pos_weight, alpha, beta, fit_intercept,
                 n_threads=1, label_smoothing=0.0, product_threads=None):
        self.X = X
        self.XT = X.T
        self.dtype = np.dtype(X.dtype)
        # Targets stay as stored -- uint8 for hard labels, floats for soft
        # ones -- and the loss kernel reads them so: no float copy of Y.
        if Y.dtype not in (np.uint8, np.float32, np.float64):
            Y = Y.astype(np.uint8 if Y.dtype.kind in "biu" else np.float64)
        self.Y_all = Y
        self.label_smoothing = float(label_smoothing)
        self.n_samples, self.n_features = X.shape
        self.n_labels = Y.shape[1]
        self.total_labels = self.n_labels  # kept by the subproblems of label blocks
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            total = sample_weight.sum()
            if np.all(sample_weight == sample_weight[0]):
                sample_weight = None
            else:
                sample_weight = np.ascontiguousarray(sample_weight / total, dtype=self.dtype)
        self.sw = sample_weight  # normalised to sum 1, or None for 1 / n
        if pos_weight is not None:
            pos_weight = np.ascontiguousarray(pos_weight, dtype=self.dtype)
            if np.all(pos_weight == pos_weight[0]):
                self.pw_scalar, pos_weight = float(pos_weight[0]), None
            else:
                self.pw_scalar = 1.0
        else:
            self.pw_scalar = 1.0
        self.pw_all = pos_weight
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.fit_intercept = fit_intercept
        self.n_threads = int(n_threads)
        self._empty = np.empty(0, dtype=self.dtype)
        self._empty2 = np.empty((0, 0), dtype=self.dtype)
        self._setup_products(self.n_threads if product_threads is None else int(product_threads))
        # What depends on X alone (the float32 twin, the Gram matrix) is
        # computed once and shared with the subproblems of label blocks.
        self._cache = {}
        self.set_active(np.arange(self.n_labels))

    def targets(self, rows=None, labels=None):
        """Float targets of ``rows`` x ``labels`` (None: all), label smoothing applied.

        For SGD's mini-batches; the full-batch solvers read the stored targets.
        """
        Y = self.Y_all
        if rows is not None:
            Y = Y[rows]
        if labels is not None and len(labels) != self.n_labels:
            Y = Y[:, labels]
        Y = np.ascontiguousarray(Y, dtype=self.dtype)
        if self.label_smoothing > 0:
            if Y is self.Y_all:
                Y = Y.copy()
            Y *= self.dtype.type(1 - self.label_smoothing)
            Y += self.dtype.type(self.label_smoothing / 2)
        return Y

    def subproblem(self, labels):
        """The same problem restricted to the labels ``labels``."""
        sub = copy.copy(self)
        labels = np.asarray(labels)
        sub.Y_all = self.Y_all[:, labels]
        sub.n_labels = len(labels)
        sub.pw_all = None if self.pw_all is None else self.pw_all[labels].copy()
        sub.set_active(np.arange(sub.n_labels))
        return sub

    def gram_eig(self):
        """Eigendecomposition of ``A.T S A``, ``A = [X, 1]``, for a small dense X.

        None unless :meth:`gram_bytes` says it is used. Computed once and
        cached.
        """
        if not self.gram_bytes():
            return None
        if "gram" not in self._cache:
            self._cache["gram"] = gram_eigh(self.gram_matrix())
        return self._cache["gram"]

    def gram_matrix(self):
        """The upper triangle of ``A.T S A``, ``A = [X, 1]`` (Fortran order).

        A sum over rows: a distributed problem adds its chunks'.
        """
        d = self.n_features
        m = d + 1 if self.fit_intercept else d
        dtype = self._gram_dtype()
        syrk = blas.ssyrk if dtype == np.float32 else blas.dsyrk
        # Only the upper triangle is accumulated (BLAS syrk, in place):
        # eigh reads no other, and no symmetric temporaries are needed.
        gram = np.zeros((m, m), dtype=dtype, order="F")
        step = max(16, 2**15 // (m * dtype.itemsize))  # rows per block: 32 KiB
        A = None
        for start in range(0, self.n_samples, step):
            stop = min(start + step, self.n_samples)
            if self.sw is None:
                root = np.full(stop - start, np.sqrt(1.0 / self.n_samples), dtype)
            else:
                root = np.sqrt(self.sw[start:stop].astype(dtype))
            A = None  # freed before its successor is allocated
            A = np.empty((stop - start, m), dtype=dtype, order="F")
            A[:, :d] = self.X[start:stop]
            A[:, :d] *= root[:, None]
            if self.fit_intercept:
                A[:, d] = root
            # gram += A.T @ A with A.T S A = sum_i s_i a_i a_i^T
            gram = syrk(1.0, A, beta=1.0, c=gram, trans=1, lower=0, overwrite_c=1)
        return gram

    def gram_bytes(self):
        """Peak bytes of :meth:`gram_eig` (the matrix and its eigenvectors), 0 if unused.

        The Gram preconditioner is used for a dense ``X`` of at most
        ``GRAM_MAX_FEATURES`` features whose eigendecomposition fits in
        scikit-learn's ``working_memory``; otherwise CG takes the diagonal
        one, slower but with no ``d x d`` arrays.
        """
        if sparse.issparse(self.X) or self.n_features > GRAM_MAX_FEATURES:
            return 0
        m = self.n_features + 1 if self.fit_intercept else self.n_features
        size = 2 * self._gram_dtype().itemsize * m * m
        return size if size <= _working_memory_bytes() else 0

    def _gram_dtype(self):
        """float32 for the preconditioner of all but a few features.

        A preconditioner need not be exact (the conjugate gradient runs to a
        relative residual of 0.1): in float32 its memory and the time of its
        eigendecomposition and products are halved (scene, 295 columns:
        0.7 MB and ~4 ms per fit saved). A small one costs little in float64,
        which keeps equivalent weightings of the data (sample weights or
        repeated rows) on the same path to within rounding.
        """
        return np.dtype(np.float32 if self.n_features >= GRAM_FLOAT32_MIN_FEATURES
                        else np.float64)

    def mixed_precision_cg(self):
        """Whether newton-cg runs its conjugate gradient in float32.

        It pays off on large products only; small problems keep float64
        throughout (and bit-for-bit reproducibility between equivalent
        weightings of the data).
        """
        return (MIXED_PRECISION_CG and self.dtype == np.float64
                and self.product_size() * self.n_labels >= MIXED_PRECISION_MIN_WORK
                and self.feature_max_abs() <= magnitude_limit(np.float32))

    def feature_max_abs(self):
        """``max |X|``, computed once: the scale the magnitude checks go by."""
        if "max_abs" not in self._cache:
            X = self.X
            if sparse.issparse(X):
                flat = np.ascontiguousarray(X.data)
            elif X.flags.c_contiguous or X.flags.f_contiguous:
                flat = X.ravel(order="K")
            else:
                flat = np.ascontiguousarray(X).ravel()
            self._cache["max_abs"] = max_abs(flat, self.n_threads) if flat.size else 0.0
        return self._cache["max_abs"]

    def product_size(self):
        """Multiply-adds of ``X @ w`` for one label."""
        if sparse.issparse(self.X):
            return int(self.X.nnz)
        return self.n_samples * self.n_features

    def low_precision(self):
        """This problem's linear algebra in float32, for inexact Newton steps.

        Conjugate gradient only needs its directions to a relative accuracy
        of ``FORCING_MAX``, far above float32 rounding; its matrix products
        then move half the bytes and use twice the SIMD lanes. A sparse
        ``X`` is shared as it is (the kernels round its values on the fly); a
        dense one is copied to float32 once per fit.
        """
        if self.dtype == np.float32:
            return self
        if "low" not in self._cache:
            low = copy.copy(self)
            low.dtype = np.dtype(np.float32)
            low.Y_all = low.Y = low.pw_all = low.pw = low.sw = None
            low._empty = np.empty(0, dtype=np.float32)
            low._empty2 = np.empty((0, 0), dtype=np.float32)
            if not sparse.issparse(self.X):
                low.X = self.X.astype(np.float32)
                low.XT = low.X.T
            self._cache["low"] = low
        return self._cache["low"]

    # -- active set ---------------------------------------------------------

    def set_active(self, labels):
        """Restrict the computations to the labels ``labels`` (indices)."""
        self.active = np.asarray(labels)
        self.Y = None  # release before copying the new block
        Y = self.Y_all
        if len(self.active) != self.n_labels:
            Y = Y[:, self.active]
        self.Y = np.ascontiguousarray(Y)
        if len(self.active) == self.n_labels:
            self.pw = self.pw_all
        else:
            self.pw = None if self.pw_all is None else self.pw_all[self.active].copy()

    # -- model pieces -------------------------------------------------------

    def empty_logits(self, n_active):
        """An uninitialised (n_samples, n_active) array of logits."""
        return np.empty((self.n_samples, n_active), dtype=self.dtype)

    @staticmethod
    def compact(Z):
        """A per-sample array (logits, their derivatives) in the kernels' layout.

        The solvers hold such arrays only through this problem: a distributed
        one keeps them on its workers (:mod:`skbce._dask_problem`).
        """
        return np.ascontiguousarray(Z)

    def _setup_products(self, threads):
        """How ``X @ W`` and ``X.T @ G`` are computed, chosen once.

        A sparse ``X`` goes to the kernels of :mod:`skbce._linear_kernels` as
        the three arrays of its CSR form, with no copy (a CSC matrix is
        converted once): both products run over its rows.
        """
        X = self.X
        self._csr = None
        if sparse.issparse(X):
            rows = X.tocsr()
            _check_csr_structure(rows)
            index = np.result_type(rows.indptr.dtype, rows.indices.dtype)
            self._csr = (rows.indptr.astype(index, copy=False),
                         rows.indices.astype(index, copy=False),
                         np.ascontiguousarray(rows.data))
            self._product_threads = threads if X.nnz >= 20_000 else 1

    def _sparse_product(self, forward, M, square=False):
        M = np.ascontiguousarray(M, dtype=self.dtype)
        k = M.shape[1]
        if forward:
            out = np.empty((self.n_samples, k), dtype=self.dtype)
            csr_matmul(*self._csr, M, out, square, self._product_threads)
        else:
            out = np.empty((self.n_features, k), dtype=self.dtype)
            csr_matmul_t(*self._csr, M, out, square, self._product_threads)
        return out

    def linear(self, W, b):
        """Logits ``X @ W + b`` of shape (n_samples, n_active), C-contiguous."""
        if self._csr is not None:
            Z = self._sparse_product(True, W)
        else:
            W = np.asarray(W, dtype=self.dtype)
            Z = np.empty((self.n_samples, W.shape[1]), dtype=self.dtype)
            for rows in self._row_blocks(W.shape[1]):
                np.matmul(self.X[rows], W, out=Z[rows])
        if self.fit_intercept:
            Z += b
        return Z

    def direction(self, V, vb):
        """``X @ V + vb``: the logits of a direction."""
        return self.linear(V, vb)

    def backward(self, G):
        """``X.T @ G`` of shape (n_features, n_active)."""
        if self._csr is not None:
            return self._sparse_product(False, G)
        blocks = self._row_blocks(G.shape[1])
        if len(blocks) == 1:
            return self.XT @ G
        out = np.zeros((self.n_features, G.shape[1]), dtype=self.dtype)
        for rows in blocks:
            out += self.X[rows].T @ G[rows]
        return out

    def hessp(self, V, vb, D):
        """``(X.T @ U, U.sum(0))`` for ``U = D * (X @ V + vb)``.

        The Hessian of the data term applied to the direction ``(V, vb)``,
        given its curvature weights ``D``. A sparse ``X`` is read once, by
        one kernel sweep that never forms ``U``.
        """
        k = V.shape[1]
        if self._csr is not None:
            out = np.empty((self.n_features, k), dtype=self.dtype)
            out_b = np.empty(k)
            vb = (np.ascontiguousarray(vb, dtype=self.dtype) if self.fit_intercept
                  else self._empty)
            csr_hessp(*self._csr, np.ascontiguousarray(V, dtype=self.dtype), vb,
                      np.ascontiguousarray(D, dtype=self.dtype), out, out_b,
                      self._product_threads)
            if not self.fit_intercept:
                out_b[:] = 0
            return out, out_b.astype(self.dtype)
        # Both products of a block of rows run while it is in cache.
        # One buffer serves every block's ``U``: a fresh one per block
        # would hold two blocks at once while the old one is replaced.
        V = np.asarray(V, dtype=self.dtype)
        HW = np.zeros((self.n_features, k), dtype=self.dtype)
        Hb = np.zeros(k, dtype=self.dtype)
        blocks = self._row_blocks(k)
        buffer = np.empty((min(blocks[0].stop, self.n_samples), k), dtype=self.dtype)
        for rows in blocks:
            X_rows = self.X[rows]
            U = buffer[:X_rows.shape[0]]
            np.matmul(X_rows, V, out=U)
            if self.fit_intercept:
                U += vb
            U *= D[rows]
            HW += X_rows.T @ U
            if self.fit_intercept:
                Hb += U.sum(axis=0)
        return HW, Hb

    def _row_blocks(self, n_labels):
        """Slices of rows of a dense ``X`` for products with ``n_labels`` columns.

        Each block's product has at most ``DENSE_BLOCK_WORK`` multiply-adds.
        The labels are few, so a product is thin (``k`` columns), and thin
        products over a whole ``X`` run far below BLAS's speed: OpenBLAS
        (numpy's) takes its small-matrix kernels only up to 10^6
        multiply-adds, and the Hessian product reads ``X`` twice. Measured
        with one thread, ``X.T @ (D * (X @ V))`` with 6 labels: scene's
        1211 x 294, 0.53 ms in one piece, 0.25 ms in blocks; 4000 x 500,
        6.0 ms vs 1.7 ms; one block (small ``X``) costs the same as before.
        """
        accumulator = self.n_features * max(1, n_labels)
        step = max(16, DENSE_BLOCK_WORK // accumulator)
        if accumulator >= DENSE_WIDE_ACCUMULATOR:
            # Many labels: the (d, k) sum that every block adds to outgrows
            # the cache, and short blocks spend their time re-reading it.
            # 12000 x 500 with 983 labels, float32 Hessian product: 16-row
            # blocks 6.5 s, 256 rows 1.5 s, 1024 rows 0.82 s, 4096 0.72 s.
            step = max(step, DENSE_WIDE_ROWS)
        return [slice(start, start + step) for start in range(0, self.n_samples, step)]

    def squared_column_means(self):
        """``sum_i s_i x_ik^2`` (``s``: the normalised sample weights), float64, cached."""
        if "squares" not in self._cache:
            w = (np.full(self.n_samples, 1.0 / self.n_samples, dtype=self.dtype)
                 if self.sw is None else self.sw)
            self._cache["squares"] = self.squared_backward(w[:, None])[:, 0].astype(np.float64)
        return self._cache["squares"]

    def squared_backward(self, D):
        """``(X * X).T @ D``: the Hessian diagonals, for preconditioning."""
        if self._csr is not None:
            return self._sparse_product(False, D, square=True)
        out = np.zeros((self.n_features, D.shape[1]), dtype=self.dtype)
        # The squared block is a temporary: at most 256 KiB of it, half the
        # size of the logits (at least 32 KiB), and within working_memory, so
        # that this one-off product never sets the fit's peak. (scene: a whole
        # squared X was 2.9 MB; 256 KiB blocks, 0.45 MB peak; now 0.34 MB.)
        half_logits = self.n_samples * len(self.active) * self.dtype.itemsize // 2
        size = min(2**18, max(2**15, half_logits), _working_memory_bytes())
        step = max(16, size // (self.dtype.itemsize * max(1, self.n_features)))
        for start in range(0, self.n_samples, step):
            block = self.X[start:start + step]
            out += (block * block).T @ D[start:start + step]
        return out

    def loss_grad_logits(self, Z, want_grad=True, want_hess=False, cols=None,
                         hess_dtype=None, rows=None):
        """Per-label mean loss (n_active,), and its derivatives wrt ``Z``.

        The gradient ``G`` and curvature ``H`` carry the normalised sample
        weights, so ``X.T @ G`` is the gradient of the data term and
        ``X.T @ (H * (X @ V))`` its Hessian applied to ``V``. ``cols``
        restricts the computation to those of the active labels (``Z`` then
        holds those columns); ``hess_dtype`` (default: the problem's) is the
        dtype of ``H``. ``rows`` (a slice) restricts it to those samples
        (``Z`` then holds those rows): the loss is their share of the mean.
        """
        loss = np.empty(Z.shape[1])
        G = np.empty(Z.shape, dtype=self.dtype) if want_grad else self._empty2
        if want_hess:
            H = np.empty(Z.shape, dtype=hess_dtype or self.dtype)
        else:
            H = self._empty2
        sw = self._empty if self.sw is None else self.sw
        pw = self._empty if self.pw is None else self.pw
        Y = self.Y
        if rows is not None:
            Y = Y[rows]
            sw = sw if self.sw is None else sw[rows]
        if cols is not None:
            Y = np.ascontiguousarray(Y[:, cols])
            pw = pw if self.pw is None else np.ascontiguousarray(pw[cols])
        scale = 1.0 / self.n_samples if self.sw is None else 1.0
        threads = self.n_threads if Z.size >= 20_000 else 1
        logistic_derivatives(Y, Z, sw, pw, self.pw_scalar, self.label_smoothing, scale,
                             loss, G, H, threads)
        if want_hess:
            return loss, G, H
        return loss, (G if want_grad else None)

    def loss(self, Z):
        return self.loss_grad_logits(Z, want_grad=False)[0]

    def newton_terms(self, W, b):
        """Loss, gradient and exact Hessian of each active label's data term.

        With respect to ``(w_j, b_j)`` (the intercept last, when fitted):
        ``loss`` (k,), ``grad`` (m, k) and ``hess`` (k, m, m), upper
        triangles, ``m = n_features + fit_intercept``. One pass over a dense
        ``X`` in blocks of rows that stay in cache: the logits, their
        derivatives, and the products ``X_b.T @ G_b`` and ``A.T @ A`` with
        ``A = sqrt(D_j) [X_b, 1]`` (BLAS syrk) of each block. For few labels
        and features, where this costs ``k n m^2 / 2`` multiply-adds against
        the conjugate gradient's ``2 k n m`` per inner iteration over
        memory-bound matrix-vector products.
        """
        if self._csr is not None:
            raise ValueError("newton_terms needs a dense X.")
        W = np.asarray(W, dtype=self.dtype)
        k, d = W.shape[1], self.n_features
        m = d + 1 if self.fit_intercept else d
        loss = np.zeros(k)
        grad = np.zeros((m, k))
        hess = [np.zeros((m, m), dtype=self.dtype, order="F") for _ in range(k)]
        syrk = blas.dsyrk if self.dtype == np.float64 else blas.ssyrk
        step = max(64, 2**20 // (m * self.dtype.itemsize))  # rows per block: 1 MiB
        A = np.empty((step, m), dtype=self.dtype)
        if self.fit_intercept:
            A[:, d] = 1
        for start in range(0, self.n_samples, step):
            rows = slice(start, min(start + step, self.n_samples))
            Xb = self.X[rows]
            Z = Xb @ W
            if self.fit_intercept:
                Z += b
            part, G, D = self.loss_grad_logits(np.ascontiguousarray(Z), want_hess=True,
                                               rows=rows)
            loss += part
            grad[:d] += Xb.T @ G
            if self.fit_intercept:
                grad[d] += G.sum(axis=0)
            Ab = A[:Xb.shape[0]]
            for j in range(k):
                root = np.sqrt(D[:, j])
                np.multiply(Xb, root[:, None], out=Ab[:, :d])
                if self.fit_intercept:
                    Ab[:, d] = root
                # A C-ordered block is the F-ordered transpose: syrk of A.T
                # (no trans) is A.T @ A, without a copy.
                hess[j] = syrk(1.0, Ab.T, beta=1.0, c=hess[j], trans=0, lower=0,
                               overwrite_c=1)
        return loss, grad, np.stack(hess) if k else np.zeros((0, m, m))

    def penalty(self, W, smooth_only=False):
        value = 0.5 * self.alpha * np.einsum("ij,ij->j", W, W, dtype=np.float64)
        if self.beta > 0 and not smooth_only:
            value = value + self.beta * np.abs(W).sum(axis=0, dtype=np.float64)
        return value

    def gradient(self, W, G):
        """Gradient of the smooth part wrt (W, b) given the logit gradient G."""
        gW = self.backward(G)
        if self.alpha > 0:
            gW = gW + self.alpha * W
        gb = G.sum(axis=0) if self.fit_intercept else np.zeros(G.shape[1], self.dtype)
        return gW, gb

    def objective(self, W, b):
        """Per-label objective at (W, b) over the active labels."""
        return self.loss(self.linear(W, b)) + self.penalty(W)

    def lipschitz(self):
        """An estimate of the largest curvature of the data term (all labels)."""
        X = self.X
        rng = np.random.RandomState(0)
        v = rng.normal(size=self.n_features + 1)
        sw = (np.full(self.n_samples, 1.0 / self.n_samples) if self.sw is None
              else self.sw.astype(np.float64))
        ones = 1.0 if self.fit_intercept else 0.0
        lam = 1.0
        for _ in range(12):
            v /= np.linalg.norm(v)
            u = np.asarray(safe_sparse_dot(X, v[:-1].astype(self.dtype))).ravel() + ones * v[-1]
            u = u * sw
            v_new = np.empty_like(v)
            v_new[:-1] = np.asarray(safe_sparse_dot(self.XT, u.astype(self.dtype))).ravel()
            v_new[-1] = ones * u.sum()
            lam = np.linalg.norm(v_new)
            v = v_new
        pw_max = max(self.pw_scalar, 1.0) if self.pw_all is None else max(
            float(self.pw_all.max()), 1.0)
        return 0.25 * pw_max * lam * 1.05 + self.alpha


def gram_eigh(gram):
    """Eigenvalues (float64, clipped at 0) and vectors of an upper-triangle Gram matrix."""
    lam, V = linalg.eigh(gram, lower=False, overwrite_a=True, check_finite=False, driver="evr")
    return np.maximum(lam.astype(np.float64), 0.0), V


def _check_csr_structure(M):
    """The kernels read a CSR matrix without bounds checks: check it once.

    scipy does not check the index arrays of a matrix it is handed, and
    ``check_format`` may prune (modify) the caller's matrix.
    """
    indptr, indices = M.indptr, M.indices
    n_rows, n_cols = M.shape
    if (len(indptr) != n_rows + 1 or indptr[0] != 0 or indptr[-1] > min(len(indices), len(M.data))
            or np.any(np.diff(indptr) < 0)
            or (indptr[-1] > 0 and (indices[:indptr[-1]].min() < 0
                                    or indices[:indptr[-1]].max() >= n_cols))):
        raise ValueError(
            "X is a malformed sparse matrix: its indptr must rise from 0 and its column "
            f"indices must lie in [0, {n_cols})."
        )


def _soft_threshold(W, threshold):
    return np.sign(W) * np.maximum(np.abs(W) - threshold, 0)


def _max_abs(gW, gb):
    m = np.abs(gW).max(axis=0) if gW.shape[0] else np.zeros(gW.shape[1])
    return np.maximum(m, np.abs(gb))


def _l1_subgradient(gW, W, beta):
    """Minimum-norm subgradient of ``smooth + beta * ||W||_1`` given the smooth gradient."""
    if beta == 0:
        return gW
    out = gW + beta * np.sign(W)
    zero = W == 0
    out[zero] = np.sign(gW[zero]) * np.maximum(np.abs(gW[zero]) - beta, 0)
    return out


class _Progress:
    """Verbose output: iteration, objective, gradient norm, elapsed time."""

    def __init__(self, name, verbose):
        self.name, self.verbose = name, verbose
        self.start = time.perf_counter()
        self.last = self.start

    def __call__(self, it, objective, grad_norm, n_active, force=False):
        if not self.verbose:
            return
        now = time.perf_counter()
        if self.verbose > 1 or force or now - self.last >= 1.0 or it == 1:
            self.last = now
            print(f"[{self.name}] iter {it:5d}  objective {objective:.8g}  "
                  f"max|grad| {grad_norm:.3e}  active labels {n_active:4d}  "
                  f"{now - self.start:7.2f}s", flush=True)


class _Labels:
    """The state of all labels, the active ones in compact arrays."""

    def __init__(self, problem, W0, b0):
        k = problem.n_labels
        self.problem = problem
        self.W_all = np.array(np.asarray(W0).T, dtype=problem.dtype, order="C")  # own copy
        self.b_all = np.array(b0, dtype=problem.dtype)
        self.f_all = np.zeros(k)
        self.converged = np.zeros(k, dtype=bool)
        self.n_iter = np.zeros(k, dtype=int)
        self.active = np.arange(k)

    def retire(self, keep, W, b, f, it):
        """Write back labels not in ``keep`` (bool over the active set).

        ``it``: the iterations run, a number or one per active label.
        """
        gone = self.active[~keep]
        self.W_all[:, gone] = W[:, ~keep]
        self.b_all[gone] = b[~keep]
        self.f_all[gone] = f[~keep]
        self.n_iter[gone] = np.broadcast_to(it, keep.shape)[~keep]
        self.active = self.active[keep]
        self.problem.set_active(self.active)

    def finish(self, W, b, f, it):
        self.W_all[:, self.active] = W
        self.b_all[self.active] = b
        self.f_all[self.active] = f
        self.n_iter[self.active] = it

    def curve_value(self, f):
        values = self.f_all.copy()
        values[self.active] = f
        return float(values.mean())

    def result(self, it, curve):
        self.problem.set_active(np.arange(self.problem.n_labels))
        return SolverResult(
            coef=np.ascontiguousarray(self.W_all.T),
            intercept=self.b_all.copy(),
            n_iter=int(max(it, 1)),
            loss_curve=curve,
            converged=self.converged.copy(),
            label_n_iter=self.n_iter.copy(),
        )


PRECONDITIONER_MIX = 0.01
# CG stops at a relative residual ``min(FORCING_MAX, |g|^FORCING_POWER)``.
# The classical choice (0.5, 0.5) tightens as |g| falls and oversolves the
# last Newton steps of a loose ``tol`` (bibtex: ~19% more products for the
# same stopping test); a constant 0.1 keeps a linear rate of 0.1 per
# Newton step, far more than a ``tol`` of 1e-4 needs.
FORCING_MAX, FORCING_POWER = 0.1, 0.0
MIXED_PRECISION_CG = True
# The labels' conjugate gradients run together, each sweep over X serving
# all of them, until all have converged -- or until this fraction has: the
# last few labels would keep every sweep going for little (truncated Newton
# only needs a descent direction, and the line search and the per-label
# gradient test keep the outer iteration exact). bibtex: ~25% less time.
CG_QUORUM = 0.75
GRAM_MAX_FEATURES = 512  # dense X: precondition CG with the data's Gram matrix
GRAM_FLOAT32_MIN_FEATURES = 64  # ... in float32 from this many features
MIXED_PRECISION_MIN_WORK = 10_000_000  # multiply-adds of one product
STALL_LIMIT = 3  # newton-cg: iterations without a decrease before a label stops


def magnitude_limit(dtype):
    """The largest ``|X|`` the solvers take in ``dtype``: the fourth root of its maximum.

    The curvature of the loss grows with the squares of the features and the
    Hessian products (and the Gram preconditioner) sum such squares times
    directions: beyond this the arithmetic can overflow. float64: 1.2e77,
    float32: 4.3e9 (which also bounds the float32 twin of a float64 ``X``
    that newton-cg's mixed precision uses).
    """
    return float(np.finfo(dtype).max) ** 0.25


def _working_memory_bytes():
    """scikit-learn's ``working_memory`` setting (MiB), in bytes."""
    return int(get_config()["working_memory"] * 2**20)


def _pcg(problem, D, gW, gb, cg_tol, max_cg):
    """Batched preconditioned conjugate gradient for ``H_j p_j = -g_j``.

    ``D`` (n_samples, n_active) holds the curvature weights: ``H_j v = X.T @
    (D_j * (X @ v)) + alpha v`` (plus the intercept row). The preconditioner
    is the data's Gram matrix scaled per label for a small dense ``X``, the
    Hessian's diagonal otherwise. A label stops once its residual is below
    ``cg_tol[j]`` (or its curvature is not positive): it is dropped from the
    arrays when that makes the products narrower, frozen otherwise; all
    stop once ``CG_QUORUM`` of the labels have.
    """
    dtype = problem.dtype
    alpha = problem.alpha
    fit_b = problem.fit_intercept
    k = gW.shape[1]
    PW = np.zeros(gW.shape, dtype=dtype)
    Pb = np.zeros_like(gb)
    gram = problem.gram_eig()
    if gram is not None:
        # H_j ~ c_j * A.T S A + alpha I with A = [X, 1] and c_j the mean
        # curvature of label j: one eigendecomposition serves every label
        # and every Newton iteration.
        lam, V = gram
        curv_scale = D.sum(axis=0).astype(np.float64)
        ridge = alpha if alpha > 0 else 1e-10 * max(float(lam[-1]), 1e-300)

        def precondition(RW, Rb, idx):
            R = np.vstack([RW, Rb[None, :]]) if fit_b else RW
            T = V.T @ R.astype(V.dtype, copy=False)
            T /= curv_scale[idx] * lam[:, None] + ridge
            out = (V @ T).astype(dtype, copy=False)
            if fit_b:
                return np.ascontiguousarray(out[:-1]), out[-1].copy()
            return out, np.zeros(len(idx), dtype)
    else:
        # The Hessian's diagonal sum_i D_ij x_ik^2 approximated, like the
        # Gram preconditioner above, by c_j * sum_i s_i x_ik^2: the second
        # factor is computed once per fit, not a product per iteration.
        # Formed in place in the CG's dtype: one (d, k) array, where the
        # float64 temporaries were four (wide X: 24 MB each at 30 000
        # features and 100 labels).
        mix = PRECONDITIONER_MIX
        col = problem.squared_column_means() * mix
        curv = D.sum(axis=0, dtype=np.float64)
        MW_all = np.multiply.outer(col.astype(dtype), curv.astype(dtype))
        MW_all += dtype.type(mix * alpha + (1 - mix))
        np.reciprocal(MW_all, out=MW_all)
        diag_b = mix * D.sum(axis=0) + (1 - mix)
        Mb_all = (1.0 / diag_b).astype(dtype) if fit_b else np.zeros(k, dtype)

        def precondition(RW, Rb, idx):
            if len(idx) == k:
                return MW_all * RW, Mb_all * Rb
            return MW_all[:, idx] * RW, Mb_all[idx] * Rb

    RW, Rb = np.negative(gW, order="C"), -gb
    idx = np.arange(k, dtype=np.intp)
    finished = np.zeros(k, dtype=bool)
    ZW, Zb = precondition(RW, Rb, idx)
    DW, Db = np.array(ZW, order="C"), Zb.copy()
    rz = np.einsum("ij,ij->j", RW, ZW) + Rb * Zb
    Dsub = D
    n_products = 0
    for _ in range(max_cg):
        HW, Hb = problem.hessp(DW, Db, Dsub)
        HW = np.ascontiguousarray(HW)
        n_products += DW.shape[1]
        curv = np.empty(len(idx))
        cg_curvature(HW, DW, alpha, curv)  # HW += alpha DW, and the column dots
        curv += Db * Hb
        positive = curv > 0
        step = np.where(positive, rz / np.where(positive, curv, 1), 0).astype(dtype)
        rr = np.empty(len(idx))
        cg_advance(PW, idx, DW, RW, HW, step, rr)  # PW[:, idx] += step DW, RW -= step HW
        Pb[idx] += step * Db
        Rb -= step * Hb
        rnorm = np.sqrt(rr + Rb * Rb)
        done = (rnorm <= cg_tol[idx]) | ~positive
        finished[idx[done]] = True
        if done.all() or np.count_nonzero(finished) >= CG_QUORUM * k:
            break
        if done.any():
            keep = ~done
            if _tiles(keep.sum()) < _tiles(len(keep)):
                idx = idx[keep]
                RW, Rb = np.ascontiguousarray(RW[:, keep]), Rb[keep]
                DW, Db = np.ascontiguousarray(DW[:, keep]), Db[keep]
                rz = rz[keep]
                Dsub = problem.compact(D[:, idx])
            else:
                # Dropping these labels would not make the products any
                # narrower in vector registers: freeze them instead (a zero
                # residual and direction stay zero, and take no steps).
                RW[:, done] = 0
                Rb[done] = 0
                DW[:, done] = 0
                Db[done] = 0
        ZW, Zb = precondition(RW, Rb, idx)
        rz_new = np.einsum("ij,ij->j", RW, ZW) + Rb * Zb
        beta = (rz_new / np.where(rz > 0, rz, 1)).astype(dtype)
        cg_direction(DW, np.ascontiguousarray(ZW), beta)
        Db = Zb + beta * Db
        rz = rz_new
    return PW, Pb, n_products


def _tiles(n_labels):
    """Register tiles (8 float32 labels) that products over ``n_labels`` use."""
    return -(-int(n_labels) // 8)


def _try_step(problem, Z, XP, W, PW, f, f_new, t, slope, cols):
    """Armijo test of the steps ``t[cols]`` of the labels ``cols``.

    Accepted labels get their logits written into ``Z`` and their objective
    into ``f_new``; returns the accepted mask. ``XP`` holds the step's
    logits on ``cols`` only.
    """
    tp = t[cols].astype(problem.dtype)
    Zp = problem.compact(Z[:, cols] + tp * XP)
    lp = problem.loss_grad_logits(Zp, want_grad=False, cols=cols)[0]
    fp = lp + problem.penalty(W[:, cols] + tp * PW[:, cols])
    ok = fp <= f[cols] + 1e-4 * t[cols] * slope[cols] + 1e-12 * np.abs(f[cols])
    if ok.any():
        done = cols[ok]
        Z[:, done] = Zp[:, ok]
        f_new[done] = fp[ok]
    return ok


def newton_cg(problem, W0, b0, *, tol=1e-4, max_iter=100, verbose=0, max_cg=None,
              pool_size=None):
    """Batched truncated Newton (Newton-CG) with per-label line search.

    L2 penalty only (``problem.beta == 0``). Each outer iteration solves
    ``H_j p_j = -g_j`` inexactly, by preconditioned conjugate gradient, for
    every active label at once -- a Hessian-vector product of all labels is
    ``X.T @ (D * (X @ V))``, one sweep over a sparse ``X`` -- to the relative
    residual ``FORCING_MAX`` (0.1), then backtracks each label's step until
    that label's objective has decreased enough (Armijo). A label stops once
    ``max |g_j| <= tol``, the criterion of scikit-learn's ``newton-cg``, or
    after ``max_iter`` iterations of its own, and leaves the active set.

    At most ``pool_size`` labels (default: all) are active at a time: when
    labels leave, the next ones in line join at the start of the following
    iteration. The memory is that of ``pool_size`` labels, and, unlike
    solving fixed blocks one after the other, every sweep over ``X`` serves
    a full pool rather than the last few slow labels of a block.

    Memory: between iterations only the logits ``Z`` of the active labels
    live; the gradient and curvature weights with respect to them (one
    kernel pass) exist from the start of an iteration until the gradient,
    respectively the conjugate gradient, has used them, and the line search
    evaluates the loss alone.
    """
    if problem.beta > 0:
        raise ValueError("newton_cg supports an L2 penalty only (l1_ratio=0).")
    k = problem.n_labels
    pool_size = k if pool_size is None else max(1, min(int(pool_size), k))
    labels = _Labels(problem, W0, b0)
    progress = _Progress("newton-cg", verbose)
    dtype = problem.dtype
    if max_cg is None:
        max_cg = max(20, min(200, problem.n_features + 1))
    fit_b = problem.fit_intercept
    cg_problem = problem.low_precision() if problem.mixed_precision_cg() else problem
    # The preconditioner's eigendecomposition (dense X) holds its input and
    # output at once: done before any per-label array exists, it does not add
    # to the peak of the iterations.
    cg_problem.gram_eig()
    # The objective of every label at its starting point, for loss_curve_.
    for start in range(0, k, pool_size):
        cols = np.arange(start, min(k, start + pool_size))
        problem.set_active(cols)
        Z0 = _start_logits(problem, labels.W_all[:, cols], labels.b_all[cols])
        labels.f_all[cols] = problem.loss(Z0) + problem.penalty(labels.W_all[:, cols])
        del Z0
    waiting = np.arange(k)  # labels not yet admitted, in order
    labels.active = waiting[:0]
    W = labels.W_all[:, :0].copy()
    b = labels.b_all[:0].copy()
    f = np.zeros(0)
    Z = problem.empty_logits(0)
    joined = np.zeros(0, dtype=int)  # iteration at which each active label joined
    stalls = np.zeros(0, dtype=int)  # iterations in a row without a real decrease
    curve = []
    it = 0
    while len(labels.active) or len(waiting):
        it += 1
        if len(waiting) and len(labels.active) < pool_size:
            new = waiting[:pool_size - len(labels.active)]
            waiting = waiting[len(new):]
            W, b, f, Z = _admit(problem, labels, new, W, b, f, Z)
            joined = np.concatenate([joined, np.full(len(new), it - 1)])
            stalls = np.concatenate([stalls, np.zeros(len(new), dtype=int)])
        _, G, D = problem.loss_grad_logits(Z, want_hess=True, hess_dtype=cg_problem.dtype)
        gW, gb = problem.gradient(W, G)
        del G
        gmax = _max_abs(gW, gb)
        done = gmax <= tol
        labels.converged[labels.active[done]] = True
        leave = done | (it - 1 - joined >= max_iter)
        if leave.any():
            keep = ~leave
            labels.retire(keep, W, b, f, it - 1 - joined)
            W, b, f, gW, gb, gmax = W[:, keep], b[keep], f[keep], gW[:, keep], gb[keep], \
                gmax[keep]
            joined, stalls = joined[keep], stalls[keep]
            # One at a time: each old array is freed before the next copy.
            Z = problem.compact(Z[:, keep])
            D = problem.compact(D[:, keep])
            if not keep.any():
                del D
                if len(waiting):
                    continue
                it -= 1
                break
        # --- inexact Newton direction ----------------------------------------
        gnorm = np.sqrt(np.einsum("ij,ij->j", gW, gW) + gb * gb)
        cg_tol = np.minimum(FORCING_MAX, gnorm ** FORCING_POWER) * gnorm
        cg_type = cg_problem.dtype
        PW, Pb, _ = _pcg(cg_problem, D, gW.astype(cg_type, copy=False),
                         gb.astype(cg_type, copy=False), cg_tol, max_cg)
        del D
        PW, Pb = PW.astype(dtype, copy=False), Pb.astype(dtype, copy=False)
        # A label whose CG made no progress falls back to steepest descent.
        no_step = ~np.any(PW != 0, axis=0) & (Pb == 0)
        if no_step.any():
            PW[:, no_step] = -gW[:, no_step]
            Pb[no_step] = -gb[no_step]
        slope = np.einsum("ij,ij->j", gW, PW) + gb * Pb
        del gW, gb
        t, Z, f_new = _line_search(problem, W, PW, Pb, Z, f, slope)
        # The Armijo test allows a rise of rounding size; a label whose
        # objective has not really decreased for STALL_LIMIT iterations in
        # a row cannot meet its gradient test in this arithmetic (all
        # features x 1e70: 1000 iterations at the optimum, its gradient
        # ~1e70 times the rounding of the residuals).
        stalls = np.where(f_new >= f - 4 * np.finfo(np.float64).eps * np.abs(f), stalls + 1, 0)
        stuck = (t == 0) | (stalls >= STALL_LIMIT)
        W = W + t.astype(dtype) * PW
        if fit_b:
            b = b + t.astype(dtype) * Pb
        f = f_new
        del PW, Pb
        if stuck.any():
            # No decrease found: the label is at its optimum to machine
            # precision, or the problem is too badly scaled for the
            # arithmetic; either way its gradient test is not met (it was
            # made above). Keep it where it is, stop it, and let the
            # estimator warn.
            keep = ~stuck
            labels.retire(keep, W, b, f, it - joined)
            W, b, f, joined, stalls = W[:, keep], b[keep], f[keep], joined[keep], stalls[keep]
            Z = problem.compact(Z[:, keep])
        curve.append(labels.curve_value(f))
        # The count n_iter_ reports: the most iterations any label has run
        # (with a pool of labels, fewer than the sweeps over X).
        label_iter = max(int(labels.n_iter.max()), int((it - joined).max()) if len(joined) else 0)
        progress(label_iter, curve[-1], float(gmax.max()) if gmax.size else 0.0,
                 len(labels.active) + len(waiting))
    if len(labels.active):
        labels.finish(W, b, f, it - joined)
    n_iter = int(labels.n_iter.max()) if k else 0
    progress(n_iter, curve[-1] if curve else float(labels.f_all.mean()) if k else 0.0,
             0.0, len(labels.active), force=True)
    return labels.result(n_iter, curve)


def _admit(problem, labels, new, W, b, f, Z):
    """Add the labels ``new`` to the active arrays, at their starting point."""
    labels.active = np.concatenate([labels.active, new])
    problem.set_active(labels.active)
    Wn, bn = labels.W_all[:, new], labels.b_all[new]
    Z = np.concatenate([Z, _start_logits(problem, Wn, bn)], axis=1)
    return (np.concatenate([W, Wn], axis=1), np.concatenate([b, bn]),
            np.concatenate([f, labels.f_all[new]]), Z)


def _start_logits(problem, W, b):
    """Logits at a starting point; no product for a cold start (``W = 0``)."""
    if W.any():
        return problem.linear(W, b)
    Z = problem.empty_logits(W.shape[1])
    Z[...] = b if problem.fit_intercept else 0
    return Z


def _line_search(problem, W, PW, Pb, Z, f, slope):
    """Per-label backtracking (Armijo) along ``(PW, Pb)`` from logits ``Z``.

    Returns the step of each label (0 where no decrease was found), the
    logits at the new point (``Z`` updated in place, or replaced) and the
    objective there. The full step is nearly always accepted: its logits
    are formed in the buffer of the step's own logits, and only the labels
    it rejects keep that buffer, as the step's logits, to retry shorter
    steps.
    """
    fit_b = problem.fit_intercept
    Zt = problem.direction(PW, Pb) if fit_b else problem.direction(PW, 0)
    Zt += Z
    ft = problem.loss(Zt) + problem.penalty(W + PW)
    accepted = ft <= f + 1e-4 * slope + 1e-12 * np.abs(f)
    f_new = np.where(accepted, ft, f)
    t = np.ones(len(f))
    pending = np.flatnonzero(~accepted)
    if not len(pending):
        return t, Zt, f_new
    np.copyto(Z, Zt, where=accepted)
    XP = np.subtract(Zt, Z, out=Zt)  # the step's logits (zero where accepted)
    del Zt
    for _ in range(40):
        if not len(pending):
            break
        t[pending] *= 0.5
        ok = np.zeros(len(pending), dtype=bool)
        # Column chunks bound the trial arrays when most labels backtrack.
        chunk = max(8, len(f) // 2)
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            ok[start:start + chunk] = _try_step(problem, Z, XP[:, part], W, PW, f, f_new, t,
                                                slope, part)
        pending = pending[~ok]
    t[pending] = 0.0
    return t, Z, f_new


def newton_cholesky(problem, W0, b0, *, tol=1e-4, max_iter=100, verbose=0):
    """Newton's method with the exact Hessian, for few labels on a dense X of few features.

    Each iteration takes one pass over ``X`` (:meth:`LinearBCE.newton_terms`:
    loss, gradient and the ``(d+1)``-square Hessian of every active label),
    solves each label's Newton system by Cholesky and tries the full step
    at the next pass: the pass that evaluates a step also yields the next
    gradient and Hessian, so an accepted step (nearly all of them, Newton
    being quadratically convergent from the intercept-only start) costs one
    pass. A rejected one backtracks (Armijo) on the objective alone. A label
    stops once ``max |g_j| <= tol`` (converged) or when its objective stops
    decreasing (``STALL_LIMIT`` iterations; not converged: the estimator
    warns). L2 penalty only.
    """
    if problem.beta > 0:
        raise ValueError("newton_cholesky supports an L2 penalty only (l1_ratio=0).")
    labels = _Labels(problem, W0, b0)
    progress = _Progress("newton-cholesky", verbose)
    alpha = problem.alpha
    d = problem.n_features
    fit_b = problem.fit_intercept
    W = labels.W_all.astype(np.float64)
    b = labels.b_all.astype(np.float64)
    loss, grad, hess = problem.newton_terms(W, b)
    f = loss + problem.penalty(W)
    stalls = np.zeros(len(b), dtype=int)
    curve = []
    it = 0
    for it in range(1, max_iter + 1):
        grad[:d] += alpha * W
        gmax = np.abs(grad).max(axis=0) if len(b) else np.zeros(0)
        done = gmax <= tol
        labels.converged[labels.active[done]] = True
        stop = done | (stalls >= STALL_LIMIT)
        if stop.any():
            keep = ~stop
            labels.retire(keep, W, b, f, it - 1)
            W, b, f, stalls = W[:, keep], b[keep], f[keep], stalls[keep]
            grad, hess, gmax = grad[:, keep], hess[keep], gmax[keep]
            if not keep.any():
                it -= 1
                break
        step = _newton_directions(hess, grad, alpha, d)
        slope = np.einsum("ij,ij->j", grad, step)
        t = np.ones(len(b))
        W_new, b_new = W + step[:d], (b + step[d] if fit_b else b)
        loss, grad_new, hess_new = problem.newton_terms(W_new, b_new)
        f_new = loss + problem.penalty(W_new)
        accepted = f_new <= f + 1e-4 * slope + 1e-12 * np.abs(f)
        for _ in range(40):
            if accepted.all():
                break
            t = np.where(accepted, t, 0.5 * t)
            W_try, b_try = W + t * step[:d], (b + t * step[d] if fit_b else b)
            f_try = problem.objective(W_try, b_try)
            ok = ~accepted & (f_try <= f + 1e-4 * t * slope + 1e-12 * np.abs(f))
            W_new[:, ok], f_new[ok] = W_try[:, ok], f_try[ok]
            if fit_b:
                b_new[ok] = b_try[ok]
            accepted |= ok
        t = np.where(accepted, t, 0.0)
        if not accepted.all() or (t < 1).any():
            # The pass above evaluated the full step: recompute the
            # derivatives where a shorter (or no) step was taken.
            W_new[:, ~accepted], f_new[~accepted] = W[:, ~accepted], f[~accepted]
            if fit_b:
                b_new[~accepted] = b[~accepted]
            loss, grad_new, hess_new = problem.newton_terms(W_new, b_new)
        stalls = np.where(f_new >= f - 4 * np.finfo(np.float64).eps * np.abs(f), stalls + 1, 0)
        W, b, f, grad, hess = W_new, b_new, f_new, grad_new, hess_new
        curve.append(labels.curve_value(f))
        progress(it, curve[-1], float(gmax.max()) if gmax.size else 0.0, len(b))
    if len(labels.active):
        labels.finish(W, b, f, it)
    n_iter = int(labels.n_iter.max()) if len(labels.n_iter) else 0
    progress(n_iter, curve[-1] if curve else float(labels.f_all.mean()), 0.0, len(b),
             force=True)
    return labels.result(n_iter, curve)


def _newton_directions(hess, grad, alpha, d):
    """``-(H_j + alpha I_d) \\ g_j`` per label, by Cholesky (upper triangles given).

    A Hessian that is singular to working precision (no penalty and
    collinear features, or all curvature lost to saturated logits) gets a
    ridge of ``1e-10`` times its largest diagonal entry, then as a last
    resort the least-squares solution.
    """
    out = np.empty_like(grad)
    for j in range(grad.shape[1]):
        H = np.array(hess[j], dtype=np.float64, order="F")
        H[np.arange(d), np.arange(d)] += alpha
        try:
            factor = linalg.cho_factor(H, lower=False, check_finite=False)
            out[:, j] = -linalg.cho_solve(factor, grad[:, j], check_finite=False)
            continue
        except linalg.LinAlgError:
            pass
        H = np.triu(H) + np.triu(H, 1).T
        H[np.diag_indices_from(H)] += 1e-10 * max(float(np.abs(np.diag(H)).max()), 1e-300)
        out[:, j] = -linalg.lstsq(H, grad[:, j], check_finite=False)[0]
    return out


def gradient_descent(problem, W0, b0, *, tol=1e-4, max_iter=1000, verbose=0):
    """Accelerated proximal gradient descent (FISTA) with per-label steps.

    Each label has its own step ``1 / L_j``, found by backtracking (``L_j``
    doubles until the quadratic upper bound holds at the new point, and
    shrinks a little after every accepted step), its own Nesterov momentum,
    restarted whenever its objective goes up, and its own stopping test: the
    gradient mapping ``L_j * (y_j - x_j^+)`` -- the gradient for an L2-only
    penalty, its proximal generalisation with an L1 part -- has max-norm at
    most ``tol``. The L1 part of the penalty enters by soft-thresholding.

    A forward pass ``X @ W`` is needed only at the new point: the logits at
    the extrapolated point are the same extrapolation of the logits.
    """
    labels = _Labels(problem, W0, b0)
    progress = _Progress("gd", verbose)
    dtype = problem.dtype
    fit_b = problem.fit_intercept
    beta = problem.beta
    L0 = problem.lipschitz()
    W = labels.W_all.copy()
    b = labels.b_all.copy()
    Zx = problem.linear(W, b)
    f = problem.loss(Zx) + problem.penalty(W)
    k = len(b)
    L = np.full(k, L0 * 0.5)
    momentum_t = np.ones(k)
    had_momentum = np.zeros(k, dtype=bool)
    Wy, by, Zy = W.copy(), b.copy(), Zx.copy()
    curve = []
    it = 0
    for it in range(1, max_iter + 1):
        loss_y, G = problem.loss_grad_logits(Zy)
        fy_smooth = loss_y + problem.penalty(Wy, smooth_only=True)
        gW, gb = problem.gradient(Wy, G)
        # Backtracking on L, per label.
        pending = np.ones(len(b), dtype=bool)
        W_new = np.empty_like(W)
        b_new = np.empty_like(b)
        Z_new = np.empty_like(Zx)
        f_new = np.empty_like(f)
        gmap = np.empty(len(b))
        for _ in range(60):
            step = (1.0 / L).astype(dtype)
            Wc = Wy - step * gW
            if beta > 0:
                Wc = _soft_threshold(Wc, (step * beta).astype(dtype))
            bc = by - step * gb if fit_b else by
            Zc = problem.linear(Wc, bc)
            lc = problem.loss(Zc)
            dW = Wc - Wy
            db = bc - by
            quad = (np.einsum("ij,ij->j", gW, dW) + gb * db
                    + 0.5 * L * (np.einsum("ij,ij->j", dW, dW) + db * db))
            smooth_c = lc + problem.penalty(Wc, smooth_only=True)
            ok = pending & (smooth_c <= fy_smooth + quad + 1e-12 * np.abs(fy_smooth))
            if ok.any():
                W_new[:, ok] = Wc[:, ok]
                b_new[ok] = bc[ok]
                Z_new[:, ok] = Zc[:, ok]
                f_new[ok] = (smooth_c + (beta * np.abs(Wc).sum(axis=0) if beta > 0 else 0))[ok]
                gmap[ok] = (L * _max_abs(dW, db))[ok]
                pending &= ~ok
            if not pending.any():
                break
            L = np.where(pending, 2 * L, L)
        floor = pending.copy()
        if floor.any():
            # No step size gave the bound: the label is at its optimum to
            # machine precision, or the problem is too badly scaled for the
            # arithmetic. Keep its point and stop it, unconverged (the
            # estimator warns): its gradient mapping was not shown small.
            W_new[:, floor] = W[:, floor]
            b_new[floor] = b[floor]
            Z_new[:, floor] = Zx[:, floor]
            f_new[floor] = f[floor]
            gmap[floor] = np.inf
        # Momentum with function-value restart, kept monotone: a label whose
        # objective went up keeps its previous point and restarts from it
        # with a plain proximal gradient step.
        # (A step taken without momentum is a proximal gradient step, which
        # cannot go up but by rounding: it is always kept.)
        restart = f_new > f + 1e-15 * np.abs(f)
        reject = restart & had_momentum
        if reject.any():
            W_new[:, reject] = W[:, reject]
            b_new[reject] = b[reject]
            Z_new[:, reject] = Zx[:, reject]
            f_new[reject] = f[reject]
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * momentum_t ** 2))
        mom = np.where(restart, 0.0, (momentum_t - 1) / t_next).astype(dtype)
        momentum_t = np.where(restart, 1.0, t_next)
        had_momentum = mom != 0
        Wy = W_new + mom * (W_new - W)
        by = b_new + mom * (b_new - b) if fit_b else b_new
        Zy = Z_new + mom * (Z_new - Zx)
        W, b, Zx, f = W_new, b_new, Z_new, f_new
        L = L * 0.9
        curve.append(labels.curve_value(f))
        progress(it, curve[-1], float(gmap.max()), len(labels.active))
        done = gmap <= tol
        labels.converged[labels.active[done]] = True
        done |= floor
        if done.any():
            keep = ~done
            labels.retire(keep, W, b, f, it)
            if not keep.any():
                break
            W, b, f, L, momentum_t = W[:, keep], b[keep], f[keep], L[keep], momentum_t[keep]
            had_momentum = had_momentum[keep]
            Wy, by = Wy[:, keep], by[keep]
            Zx = problem.compact(Zx[:, keep])
            Zy = problem.compact(Zy[:, keep])
    if len(labels.active):
        labels.finish(W, b, f, it)
    progress(it, curve[-1] if curve else 0.0, 0.0, len(labels.active), force=True)
    return labels.result(it, curve)


def lbfgs(problem, W0, b0, *, tol=1e-4, max_iter=100, verbose=0):
    """scipy's L-BFGS-B on the sum over labels of the objectives (L2 only).

    The labels are optimised jointly as one vector; since the objective is a
    sum of per-label terms, the gradient test ``max |g| <= tol`` is the
    per-label test of the other solvers taken over all labels.
    """
    if problem.beta > 0:
        raise ValueError(
            "solver='lbfgs' supports only l1_ratio=0 (an L2 penalty); use "
            "solver='gd' or 'sgd' for an L1 or elastic-net penalty."
        )
    progress = _Progress("lbfgs", verbose)
    d, k = problem.n_features, problem.n_labels
    dtype = problem.dtype
    fit_b = problem.fit_intercept
    x0 = np.concatenate([np.asarray(W0, dtype=np.float64).T.ravel(),
                         np.asarray(b0, dtype=np.float64)])
    state = {"f": None}

    def unpack(x):
        W = x[: d * k].reshape(d, k).astype(dtype)
        b = x[d * k:].astype(dtype)
        return W, b

    def fun(x):
        W, b = unpack(x)
        Z = problem.linear(W, b)
        loss, G = problem.loss_grad_logits(Z)
        fj = loss + problem.penalty(W)
        gW, gb = problem.gradient(W, G)
        if not fit_b:
            gb = np.zeros_like(gb)
        grad = np.concatenate([gW.astype(np.float64).ravel(), gb.astype(np.float64)])
        state["f"], state["fj"] = float(fj.sum()), fj
        state["g"] = float(np.abs(grad).max()) if grad.size else 0.0
        return float(fj.sum()), grad

    curve = []

    def callback(intermediate_result):
        curve.append(float(intermediate_result.fun) / k)
        progress(len(curve), curve[-1], state["g"], k)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = optimize.minimize(
            fun, x0, method="L-BFGS-B", jac=True, callback=callback,
            options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                     "ftol": 0.0},
        )
    W, b = unpack(result.x)
    if not curve:
        curve.append(float(result.fun) / k)
    Z = problem.linear(W, b)
    loss, G = problem.loss_grad_logits(Z)
    gW, gb = problem.gradient(W, G)
    if not fit_b:
        gb = np.zeros_like(gb)
    gmax = _max_abs(gW, gb)
    # L-BFGS-B also stops on a relative decrease of the objective below
    # ftol, or when its line search fails; neither means the gradient test
    # is met. On a badly scaled X (one feature x 1e10) it stopped so after 7
    # iterations at a near-constant model: only the gradient test counts.
    converged = gmax <= tol
    progress(result.nit, curve[-1], float(gmax.max()) if gmax.size else 0.0, k, force=True)
    return SolverResult(
        coef=np.ascontiguousarray(W.T), intercept=b.copy(), n_iter=int(max(result.nit, 1)),
        loss_curve=curve, converged=np.asarray(converged, dtype=bool) & np.ones(k, bool),
        label_n_iter=np.full(k, int(result.nit)),
    )


@dataclass
class SGDState:
    """What mini-batch SGD carries from one call (epoch or chunk) to the next."""

    step0: float
    t: int = 0  # samples processed so far
    avg_start: float = 0.0  # samples after which iterates are averaged
    avg_W: np.ndarray = None  # Polyak-Ruppert average of the iterates
    avg_b: np.ndarray = None
    n_avg: int = 0
    precond: np.ndarray = None  # per-feature step factors (sgd_preconditioner)

    def averaged(self, W, b):
        """The averaged iterate, or the current one before averaging starts."""
        if self.n_avg == 0:
            return W, b
        return self.avg_W, self.avg_b


def sgd_preconditioner(problem):
    """Per-feature step factors ``1 / max(mean x_k^2, 1)`` for SGD.

    One feature of a much larger scale than the others sets the curvature
    bound, hence the step, of every feature: with one feature scaled by 1e3
    the step of the rest was a millionth of what they need, and SGD stopped
    (no progress within ``tol``) at a near-constant model. Dividing each
    feature's step by its mean square puts all features on the scale of a
    standardised one; features of mean square at most 1 -- standardised,
    binary, tf-idf -- keep the plain step.
    """
    return (1.0 / np.maximum(problem.squared_column_means(), 1.0)).astype(problem.dtype)


def sgd_step_size(problem, batch_size, precond=None):
    """A safe initial step ``1 / L`` for mini-batches: L bounds a batch's curvature.

    With ``precond`` (per-feature step factors), the bound of the
    preconditioned problem.
    """
    X = problem.X
    P = np.ones(problem.n_features) if precond is None else np.asarray(precond, np.float64)
    if sparse.issparse(X):
        sq = np.asarray(X.multiply(X) @ P).ravel()
    else:
        sq = np.einsum("ij,ij,j->i", X, X, P, dtype=np.float64)
    if problem.fit_intercept:
        sq = sq + 1.0
    pw_max = max(problem.pw_scalar, 1.0) if problem.pw_all is None else max(
        float(problem.pw_all.max()), 1.0)
    # Average over a batch: the mean row norm is a bound in expectation; use a
    # blend with the max so that large batches are not too timid.
    bound = 0.25 * pw_max * (0.5 * sq.max() + 0.5 * sq.mean()) + problem.alpha * P.max()
    return 1.0 / bound


def sgd_epoch(problem, W, b, state, *, batch_size, learning_rate, rng, decay_every):
    """One pass of mini-batch SGD over ``problem``'s rows, in a shuffled order.

    ``W`` (n_features, n_labels) and ``b`` are updated in place. The step is
    ``step0 / sqrt(1 + t / decay_every)`` with ``t`` the number of samples
    processed so far; an L1 part is applied by soft-thresholding after each
    step. Once ``t`` reaches ``state.avg_start`` the iterates of the pass are
    also averaged in ``state`` (tail averaging): the average is the estimate,
    far less noisy than the last iterate, and lags it by half a pass only.
    """
    n = problem.n_samples
    X = problem.X
    dtype = problem.dtype
    order = rng.permutation(n)
    state.n_avg = 0  # average the iterates of this pass only
    sw_all = problem.sw
    fit_b = problem.fit_intercept
    for start in range(0, n, batch_size):
        rows = np.sort(order[start:start + batch_size])
        Xb = X[rows]
        Yb = problem.targets(rows=rows)
        Zb = np.ascontiguousarray(safe_sparse_dot(Xb, W, dense_output=True), dtype=dtype)
        if fit_b:
            Zb += b
        Gb = np.empty_like(Zb)
        if sw_all is None:
            sw = np.empty(0, dtype=dtype)
            scale = 1.0 / len(rows)
        else:
            sw = np.ascontiguousarray(sw_all[rows])
            total = float(sw.sum())
            if total <= 0:
                continue
            sw = sw / dtype.type(total)
            scale = 1.0
        pw = np.empty(0, dtype=dtype) if problem.pw_all is None else problem.pw_all
        bce_pass(Yb, Zb, sw, np.empty(0, dtype=dtype), pw, problem.pw_scalar, True, 0.0,
                 np.empty((0, 0), dtype=dtype), Gb, scale, 1)
        if learning_rate == "auto":
            eta = state.step0 / np.sqrt(1.0 + state.t / decay_every)
        else:
            eta = float(learning_rate) / np.sqrt(1.0 + state.t / decay_every)
        eta = dtype.type(eta)
        gW = np.asarray(safe_sparse_dot(Xb.T, Gb, dense_output=True))
        if problem.alpha > 0:
            gW += problem.alpha * W
        if state.precond is not None:
            gW *= state.precond[:, None]
        W -= eta * gW
        if problem.beta > 0:
            threshold = eta * problem.beta
            if state.precond is not None:
                threshold = threshold * state.precond[:, None]
            W[...] = _soft_threshold(W, threshold)
        if fit_b:
            b -= eta * Gb.sum(axis=0)
        state.t += len(rows)
        if state.t >= state.avg_start:
            if state.n_avg == 0:
                state.avg_W, state.avg_b = W.copy(), b.copy()
            state.n_avg += 1
            weight = dtype.type(1.0 / state.n_avg)
            state.avg_W += weight * (W - state.avg_W)
            state.avg_b += weight * (b - state.avg_b)
    return W, b


def sgd(problem, W0, b0, *, tol=1e-4, max_iter=1000, verbose=0, batch_size=256,
        learning_rate="auto", rng=None, n_iter_no_change=5, state=None, decay_every=None):
    """Mini-batch SGD over epochs until the objective stops improving.

    Stops when the objective (evaluated on all the data after each epoch) has
    not decreased by more than ``tol`` for ``n_iter_no_change`` epochs in a
    row, the rule of scikit-learn's ``SGDClassifier``.
    """
    progress = _Progress("sgd", verbose)
    dtype = problem.dtype
    W = np.array(np.asarray(W0).T, dtype=dtype, order="C")  # own, writable copy
    b = np.array(b0, dtype=dtype)
    if rng is None:
        rng = np.random.default_rng(0)
    batch_size = int(min(batch_size, problem.n_samples))
    if decay_every is None:
        decay_every = 10.0 * batch_size
    if state is None:
        precond = sgd_preconditioner(problem)
        state = SGDState(step0=sgd_step_size(problem, batch_size, precond),
                         avg_start=decay_every, precond=precond)
    curve = []
    best = np.inf
    no_change = 0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        sgd_epoch(problem, W, b, state, batch_size=batch_size,
                  learning_rate=learning_rate, rng=rng, decay_every=decay_every)
        fj = problem.objective(*state.averaged(W, b))
        value = float(fj.mean())
        curve.append(value)
        progress(it, value, float("nan"), problem.n_labels)
        if value > best - tol:
            no_change += 1
        else:
            no_change = 0
        best = min(best, value)
        if no_change >= n_iter_no_change:
            converged = True
            break
    k = problem.n_labels
    W_avg, b_avg = state.averaged(W, b)
    return SolverResult(
        coef=np.ascontiguousarray(W_avg.T), intercept=b_avg.copy(), n_iter=int(max(it, 1)),
        loss_curve=curve, converged=np.full(k, converged), label_n_iter=np.full(k, it),
    ), state


SOLVERS = {"gd": gradient_descent, "lbfgs": lbfgs, "newton-cg": newton_cg,
           "newton-cholesky": newton_cholesky}


def label_block_size(problem, budget_bytes, solver="newton-cg"):
    """Labels solved at once so that the solvers' working arrays fit ``budget_bytes``.

    Per label, newton-cg holds about three values per sample at once (the
    logits, the logit gradient and the curvature -- float32 when the
    conjugate gradient is -- or, later, the trial logits of the line search)
    and ten coefficient-sized vectors (the iterate, the gradient and the
    conjugate gradient's); gd about eight per sample (the logits at the
    iterate, the extrapolated and the trial points, their gradient and the
    momentum's temporaries); lbfgs three. Labels are independent problems,
    so working on fewer at once bounds the memory at the cost of narrower
    (less efficient) sweeps over ``X``. The result is a multiple of 8, the
    labels a vector register holds in the sparse kernels.
    """
    itemsize = problem.dtype.itemsize
    if solver == "newton-cg":
        curvature = 4 if problem.mixed_precision_cg() else itemsize
        per_sample = 2 * itemsize + curvature
    else:
        per_sample = (8 if solver == "gd" else 3) * itemsize
    per_label = per_sample * problem.n_samples + 10 * itemsize * problem.n_features
    size = int(budget_bytes // max(per_label, 1))
    if 8 <= size < problem.n_labels:
        size -= size % 8
    return int(max(1, min(problem.n_labels, size)))


def solve_in_blocks(solver, problem, W0, b0, block_size, **options):
    """Run ``solver`` on blocks of ``block_size`` labels; stitch the results."""
    k = problem.n_labels
    W0 = np.asarray(W0)
    b0 = np.asarray(b0)
    if block_size >= k:
        return solver(problem, W0, b0, **options)
    coef = np.empty((k, problem.n_features), dtype=problem.dtype)
    intercept = np.empty(k, dtype=problem.dtype)
    converged = np.empty(k, dtype=bool)
    label_n_iter = np.empty(k, dtype=int)
    curves = []
    for start in range(0, k, block_size):
        cols = np.arange(start, min(k, start + block_size))
        sub = problem.subproblem(cols)
        result = solver(sub, W0[cols], b0[cols], **options)
        del sub
        coef[cols] = result.coef
        intercept[cols] = result.intercept
        converged[cols] = result.converged
        label_n_iter[cols] = result.label_n_iter
        curves.append((len(cols), np.asarray(result.loss_curve, dtype=float)))
    n_iter = max(len(c) for _, c in curves)
    curve = np.zeros(max(n_iter, 1))
    for size, c in curves:
        if len(c):
            padded = np.concatenate([c, np.full(len(curve) - len(c), c[-1])])
            curve += size * padded
    return SolverResult(
        coef=coef, intercept=intercept, n_iter=int(max(n_iter, 1)),
        loss_curve=list(curve / k), converged=converged, label_n_iter=label_n_iter,
    )
