"""The in-memory problem the solvers call: :class:`LinearBCE`.

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
:mod:`skbce._csr_kernels` for sparse ``X``), and one fused kernel pass
(:func:`skbce._linear_kernels.logistic_derivatives`, the arithmetic of
:func:`skbce._bce.bce_pass` plus per-label sums and curvature) gives the loss
of each label and the gradient and curvature with respect to the logits. SGD
uses :func:`skbce._bce.bce_pass` on its mini-batches. Each label has its own
step size, momentum or curvature and its own convergence test; a label that
has converged leaves the active set and stops costing work.

The solvers (one module each: ``_newton_cg``, ``_newton_cholesky``,
``_lbfgs``, ``_gd``, ``_sgd``) are plain functions on a :class:`LinearBCE`
problem -- or on its distributed twin,
:class:`~skbce.linear_model._dask_problem.DaskLinearBCE` -- and return a
:class:`~skbce.linear_model._solver_base.SolverResult`; the estimator
validates inputs once, beforehand.
"""


import copy

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import blas
from sklearn import get_config
from sklearn.utils.extmath import safe_sparse_dot

from skbce._kernels import (
    bce_pass,
    csr_hessp,
    csr_matmul,
    csr_matmul_t,
    dense_newton_terms,
    logistic_derivatives,
    max_abs,
)

__all__ = ["LinearBCE", "gram_eigh", "magnitude_limit"]


# Dense products run over blocks of rows of at most this many multiply-adds
# (see LinearBCE._row_blocks).
DENSE_BLOCK_WORK = 1_000_000
# ... and of at least DENSE_WIDE_ROWS rows when their (n_features, n_labels)
# accumulator has DENSE_WIDE_ACCUMULATOR entries or more (256 KiB in float32).
DENSE_WIDE_ACCUMULATOR = 2**16
DENSE_WIDE_ROWS = 2048
# newton_terms copies a dense X that is not C-ordered in blocks of this size.
NEWTON_COPY_BYTES = 2**22
# newton-cg's conjugate gradient runs in float32 on a float64 problem
# (LinearBCE.mixed_precision_cg) when its products are this large.
MIXED_PRECISION_CG = True
GRAM_MAX_FEATURES = 512  # precondition CG with the data's Gram matrix up to this many features
GRAM_FLOAT32_MIN_FEATURES = 64  # ... in float32 from this many features
MIXED_PRECISION_MIN_WORK = 10_000_000  # multiply-adds of one product
SPARSE_GRAM_BLOCK_NNZ = 2**18  # non-zeros per block of rows of a sparse Gram matrix


class LinearBCE:
    """The penalised per-label BCE of a linear model, on validated data.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        Floating point, the dtype of the computation.
    Y : ndarray or sparse matrix of shape (n_samples, n_labels)
        Targets in [0, 1]: ``uint8`` for hard labels, else ``X``'s dtype. A
        sparse ``Y`` (best CSC) stays sparse: the solvers read the targets of
        the active labels (:attr:`Y`), a dense ``(n_samples, n_active)``
        block made when first read, never all labels at once.
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
        self.dtype = np.dtype(X.dtype)
        # Targets stay as stored -- uint8 for hard labels, floats for soft
        # ones -- and the loss kernel reads them so: no float copy of Y.
        if Y.dtype not in (np.uint8, np.float32, np.float64):
            Y = Y.astype(np.uint8 if Y.dtype.kind in "biu" else np.float64)
        if sparse.issparse(Y) and Y.format != "csc":
            Y = sparse.csc_matrix(Y)
        self._Y = None
        self._Y_rows = None  # a CSR copy of a sparse Y_all, for SGD's batches of rows
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

    @property
    def XT(self):
        """``X.T``, made when used. A sparse ``X``'s transpose can copy it:
        scipy prunes arrays that are views of a larger buffer, as those of a
        matrix received from a dask worker are."""
        return self.X.T

    def row_block(self, rows):
        """This problem on the rows ``rows`` (a slice): views of its arrays, no copies.

        Its loss and derivatives are those rows' shares of this problem's (the
        weights are not renormalised): for working through a large problem
        in blocks of rows whose temporaries stay small.
        """
        start, stop, _ = rows.indices(self.n_samples)
        block = copy.copy(self)
        block.n_samples = stop - start
        if self._csr is not None:
            indptr, indices, data = self._csr
            # The kernels read row i at indptr[i]:indptr[i + 1] of the whole
            # arrays: a slice of indptr is the block.
            block._csr = (indptr[start:stop + 1], indices, data)
            block.X = None
        else:
            block.X = self.X[start:stop]
        block.Y_all = self.Y_all[start:stop]
        block._Y_rows = None
        block.Y = self.Y[start:stop]
        # An unweighted loss is scaled by 1 / n_samples: the whole problem's
        # scale, as explicit weights.
        block.sw = (np.full(block.n_samples, 1.0 / self.n_samples, dtype=self.dtype)
                    if self.sw is None else self.sw[start:stop])
        return block

    @property
    def Y(self):
        """Targets of the active labels, a dense C-ordered ``(n_samples, n_active)`` array.

        Made when first read after :meth:`set_active`: a sparse ``Y_all`` is
        densified one block of labels at a time (the solvers' working set),
        and a problem whose labels are all active but which no solver reads
        (the end of a fit) makes none.
        """
        if self._Y is None and self.Y_all is not None:
            self._Y = self._target_columns(self.active)
        return self._Y

    @Y.setter
    def Y(self, value):
        self._Y = value

    def _target_columns(self, labels):
        Y = self.Y_all
        if sparse.issparse(Y):
            if len(labels) != self.n_labels:
                Y = Y[:, labels]
            return np.ascontiguousarray(Y.toarray())
        if len(labels) != self.n_labels:
            Y = Y[:, labels]
        return np.ascontiguousarray(Y)

    def targets(self, rows=None, labels=None):
        """Float targets of ``rows`` x ``labels`` (None: all), label smoothing applied.

        For SGD's mini-batches; the full-batch solvers read the stored targets.
        """
        Y = self.Y_all
        if sparse.issparse(Y):
            if self._Y_rows is None:
                self._Y_rows = Y.tocsr()
            Y = self._Y_rows
        if rows is not None:
            Y = Y[rows]
        if labels is not None and len(labels) != self.n_labels:
            Y = Y[:, labels]
        if sparse.issparse(Y):
            Y = Y.toarray()
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
        sub._Y_rows = None
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
        if self._csr is not None:
            return self._sparse_gram_matrix()
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

    def _sparse_gram_matrix(self):
        """:meth:`gram_matrix` of a CSR ``X``: sparse products over blocks of rows.

        Each block's weighted copy holds at most ``SPARSE_GRAM_BLOCK_NNZ``
        non-zeros, so the temporaries stay far below the size of ``X``.
        """
        d = self.n_features
        m = d + 1 if self.fit_intercept else d
        indptr, indices, data = self._csr
        w = (np.full(self.n_samples, 1.0 / self.n_samples) if self.sw is None
             else self.sw.astype(np.float64))
        gram = np.zeros((m, m))
        start = 0
        while start < self.n_samples:
            stop = int(np.searchsorted(indptr, indptr[start] + SPARSE_GRAM_BLOCK_NNZ, "right"))
            stop = min(self.n_samples, max(stop - 1, start + 1))
            lo, hi = indptr[start], indptr[stop]
            block = sparse.csr_matrix(
                (data[lo:hi].astype(np.float64), indices[lo:hi], indptr[start:stop + 1] - lo),
                shape=(stop - start, d))
            weighted = sparse.diags(w[start:stop]) @ block
            gram[:d, :d] += (block.T @ weighted).toarray()
            if self.fit_intercept:
                gram[:d, d] += np.asarray(weighted.sum(axis=0)).ravel()
            start = stop
        if self.fit_intercept:
            gram[d, d] = w.sum()
        return np.asfortranarray(np.triu(gram), dtype=self._gram_dtype())

    def gram_bytes(self):
        """Peak bytes of :meth:`gram_eig` (the matrix and its eigenvectors), 0 if unused.

        The Gram preconditioner is used for an ``X`` (dense or sparse) of at
        most ``GRAM_MAX_FEATURES`` features whose eigendecomposition fits in
        scikit-learn's ``working_memory``; otherwise CG takes the diagonal
        one, slower but with no ``d x d`` arrays. On a sparse ``X`` of few
        features the diagonal one had left the conjugate gradient of an
        ill-conditioned label (nearly separable, ``C=1e4``) so sensitive to
        rounding that weights and the equivalent repeated rows led to
        different steps (predictions 0.7 % apart), where the Gram one agrees
        to 1e-14.
        """
        if self.n_features > GRAM_MAX_FEATURES:
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

    def close(self):
        """Release what the problem holds outside this process: nothing in memory
        (over dask chunks, its futures on the cluster)."""

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
            low._Y_rows = None
            low._empty = np.empty(0, dtype=np.float32)
            low._empty2 = np.empty((0, 0), dtype=np.float32)
            if not sparse.issparse(self.X):
                low.X = self.X.astype(np.float32)
            self._cache["low"] = low
        return self._cache["low"]

    # -- active set ---------------------------------------------------------

    def set_active(self, labels):
        """Restrict the computations to the labels ``labels`` (indices)."""
        self.active = np.asarray(labels)
        self.Y = None  # released; the new block is made when read (see Y)
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
        one holds logits as their coefficients and the curvature on its
        workers (:mod:`skbce.linear_model._dask_problem`).
        """
        return np.ascontiguousarray(Z)

    def _setup_products(self, threads):
        """How ``X @ W`` and ``X.T @ G`` are computed, chosen once.

        A sparse ``X`` goes to the kernels of :mod:`skbce._csr_kernels` as
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

    def batch_gradient(self, rows, W, b):
        """Gradient of the mean loss over the samples ``rows`` (sorted), wrt ``(W, b)``.

        For SGD's mini-batches: ``(gW, gb)`` of shapes (n_features, n_labels)
        and (n_labels,), the data term only, its sample weights normalised
        over the batch; None for a batch of zero weight.
        """
        dtype = self.dtype
        Xb = self.X[rows]
        Z = np.ascontiguousarray(safe_sparse_dot(Xb, W, dense_output=True), dtype=dtype)
        if self.fit_intercept:
            Z += b
        if self.sw is None:
            sw, scale = self._empty, 1.0 / len(rows)
        else:
            sw = self.sw[rows]
            total = float(sw.sum())
            if total <= 0:
                return None
            sw, scale = sw / dtype.type(total), 1.0
        G = np.empty_like(Z)
        pw = self._empty if self.pw_all is None else self.pw_all
        bce_pass(self.targets(rows=rows), Z, sw, self._empty, pw, self.pw_scalar, True, 0.0,
                 self._empty2, G, scale, 1)
        gW = np.asarray(safe_sparse_dot(Xb.T, G, dense_output=True))
        return gW, G.sum(axis=0)

    def run_epoch(self, epoch, W, b, state, **options):
        """``epoch(self, W, b, state, **options)``: one pass of SGD over the rows.

        ``W``, ``b`` and ``state`` are updated in place. A distributed
        problem runs the same function on each of its chunks in turn.
        """
        return epoch(self, W, b, state, **options)

    def squared_row_norm_summary(self, feature_weights):
        """The largest and the mean of :meth:`squared_row_norms`: SGD's step bound."""
        sq = self.squared_row_norms(feature_weights)
        return (float(sq.max()), float(sq.mean())) if sq.size else (0.0, 0.0)

    def squared_row_norms(self, feature_weights):
        """``sum_k feature_weights_k x_ik^2`` of every sample, float64: SGD's step bound."""
        X = self.X
        if sparse.issparse(X):
            return np.asarray(X.multiply(X) @ feature_weights).ravel()
        return np.einsum("ij,ij,j->i", X, X, feature_weights, dtype=np.float64)

    def squared_column_means(self):
        """``sum_i s_i x_ik^2`` (``s``: the normalised sample weights), float64, cached."""
        if "squares" not in self._cache:
            w = (np.full(self.n_samples, 1.0 / self.n_samples, dtype=self.dtype)
                 if self.sw is None else self.sw)
            self._cache["squares"] = self.squared_backward(w[:, None])[:, 0].astype(np.float64)
        return self._cache["squares"]

    def nonzero_weights(self):
        """``sum_i s_i [x_ik != 0]`` (``s``: the normalised sample weights), float64, cached.

        With :meth:`squared_column_means`, the mean square of each feature's
        nonzero values: the scale of the feature, whatever its frequency.
        """
        if "nonzeros" not in self._cache:
            w = (np.full(self.n_samples, 1.0 / self.n_samples) if self.sw is None
                 else self.sw.astype(np.float64))
            if self._csr is not None:
                indptr, indices, _ = self._csr
                self._cache["nonzeros"] = np.bincount(
                    indices[:indptr[-1]], weights=np.repeat(w, np.diff(indptr)),
                    minlength=self.n_features)
            else:
                counts = np.zeros(self.n_features)
                step = max(16, 2**22 // max(1, self.n_features))  # 4 MiB of booleans
                for start in range(0, self.n_samples, step):
                    rows = slice(start, start + step)
                    counts += (self.X[rows] != 0).T @ w[rows]
                self._cache["nonzeros"] = counts
        return self._cache["nonzeros"]

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
        triangles, ``m = n_features + fit_intercept``. One sweep over a dense
        ``X`` (:func:`skbce._linear_kernels.dense_newton_terms`: each block of
        rows gives its logits, their derivatives, and its share of the
        gradient and of every label's Hessian while it is in cache). For few
        labels and features, where this costs ``k n m^2 / 2`` multiply-adds
        against the conjugate gradient's ``2 k n m`` per inner iteration over
        memory-bound matrix-vector products.
        """
        if self._csr is not None:
            raise ValueError("newton_terms needs a dense X.")
        W = np.ascontiguousarray(W, dtype=self.dtype)
        k, d = W.shape[1], self.n_features
        m = d + 1 if self.fit_intercept else d
        b = np.ascontiguousarray(b, dtype=self.dtype) if self.fit_intercept else self._empty
        pw = self._empty if self.pw is None else self.pw
        scale = 1.0 / self.n_samples if self.sw is None else 1.0
        loss, grad = np.zeros(k), np.zeros((m, k))
        hess = np.zeros((k, m, m), dtype=self.dtype)
        if self.X.flags.c_contiguous:
            blocks = [slice(0, self.n_samples)]
        else:
            # The kernel reads C-ordered rows: copies of blocks of another layout.
            step = max(64, NEWTON_COPY_BYTES // max(1, d * self.dtype.itemsize))
            blocks = [slice(i, i + step) for i in range(0, self.n_samples, step)]
        part_loss, part_grad = np.empty(k), np.empty((m, k))
        part_hess = hess if len(blocks) == 1 else np.zeros_like(hess)
        for rows in blocks:
            sw = self._empty if self.sw is None else self.sw[rows]
            dense_newton_terms(np.ascontiguousarray(self.X[rows]), W, b, self.Y[rows], sw, pw,
                               self.pw_scalar, self.label_smoothing, scale, part_loss,
                               part_grad, part_hess, self.n_threads)
            loss += part_loss
            grad += part_grad
            if part_hess is not hess:
                hess += part_hess
        return loss, grad, hess

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


def _check_magnitude(problem):
    """A clear error for features too large for the arithmetic of the fit."""
    limit = magnitude_limit(problem.dtype)
    largest = problem.feature_max_abs()
    if largest > limit:
        raise ValueError(
            f"X holds a feature value of magnitude {largest:.3g}; MultiLabelLogistic "
            f"fits {problem.dtype} features of magnitude up to {limit:.3g} (the "
            "curvature of the loss grows with their squares and would overflow). "
            "Scale the features, e.g. with StandardScaler, or divide X by a constant."
        )
