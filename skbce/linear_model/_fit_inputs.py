"""What fit and partial_fit make of their arguments, before a solver runs.

Validated ``X`` and ``y``, checked sample weights, ``pos_weight`` resolved
per label, the best constant model's intercept, the problem the solvers
call (:mod:`skbce.linear_model._problem`, or its dask twin) and the thread
limits of the fit. Each function takes the estimator, whose parameters it
reads; :class:`~skbce.linear_model.MultiLabelLogistic` binds them as its
private methods (``_validate_X_y``, ``_problem``, ...), which
:class:`~skbce.linear_model.MultiLabelLogisticCV` shares.
"""

from contextlib import ExitStack
from functools import lru_cache

import numpy as np
from joblib import effective_n_jobs
from scipy import sparse
from sklearn.utils.validation import _check_sample_weight, validate_data
from threadpoolctl import ThreadpoolController

from skbce._dispatch import is_dask_collection
from skbce._kernels import max_threads
from skbce.linear_model import _problem
from skbce.linear_model._problem import _check_magnitude
from skbce.linear_model._targets import _nullable_label_dtype, _weighted_column_sums

# Below this many entries per thread a parallel loss pass costs more than it saves.
_MIN_ENTRIES_PER_THREAD = 20_000
# Below this many entries of a dense X, BLAS products run on one thread.
_SMALL_DENSE = 2**20


@lru_cache(maxsize=1)
def _threadpool_controller():
    return ThreadpoolController()


def validate_X_y(estimator, X, y, reset):
    name = type(estimator).__name__
    if X is None:
        raise ValueError(f"X is None: {name} needs X, an array-like or sparse matrix of "
                         "shape (n_samples, n_features).")
    nullable_dtype = _nullable_label_dtype(y)
    try:
        X, y = validate_data(
            estimator,
            X,
            y,
            reset=reset,
            accept_sparse=["csr", "csc"],
            dtype=[np.float64, np.float32],
            multi_output=True,
            y_numeric=False,
        )
    except ValueError as exc:
        if "could not convert" not in str(exc):
            raise
        raise ValueError(f"X must hold numbers; {name} cannot read it as floats ({exc}). "
                         "Encode text or categorical features first (e.g. with "
                         "sklearn.preprocessing.OneHotEncoder).") from None
    if nullable_dtype is not None:
        # validate_data makes pandas' nullable integer and boolean targets
        # float64 (room for pd.NA, which it rejects): back to their type,
        # so that classes_ and predict have it.
        y = y.astype(nullable_dtype)
    if sparse.issparse(X):
        # int64 or int32 indices both work with scipy's products.
        X = X.tocsr() if X.format not in ("csr", "csc") else X
    return X, y


def resolve_pos_weight(estimator, Y, sample_weight):
    n_labels = Y.shape[1]
    pw = estimator.pos_weight
    if pw is None:
        return None
    if isinstance(pw, str):  # "balanced"
        pos = estimator._smoothed(_weighted_column_sums(Y, sample_weight))
        total = Y.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        neg = total - pos
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((pos > 0) & (neg > 0), neg / np.where(pos > 0, pos, 1), 1.0)
        return ratio
    vector = np.asarray(pw, dtype=np.float64)
    if vector.ndim == 0:
        vector = np.full(n_labels, float(vector))
    if vector.shape != (n_labels,):
        raise ValueError(
            f"pos_weight must be a number, 'balanced' or an array of shape "
            f"({n_labels},), one per label; got shape {vector.shape}."
        )
    if not np.all(np.isfinite(vector)) or np.any(vector <= 0):
        raise ValueError(f"pos_weight must be finite and positive; got {vector}.")
    return vector


def smoothed(estimator, mean):
    """Means of the targets after label smoothing."""
    return mean * (1 - estimator.label_smoothing) + estimator.label_smoothing / 2 if (
        estimator.label_smoothing > 0) else mean


def checked_sample_weight(estimator, sample_weight, X):
    if sample_weight is None:
        return None
    sw = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
    if not np.all(np.isfinite(sw)):
        raise ValueError("sample_weight must be finite.")
    if float(np.sum(sw, dtype=np.float64)) <= 0:
        raise ValueError("sample_weight must not be all zero.")
    return sw


def make_problem(estimator, X, Y, sample_weight, pos_weight, total=None):
    """The problem of ``X``, with the penalty weighed against ``total``
    (default: the weight of ``X``'s rows)."""
    if total is None:
        total = X.shape[0] if sample_weight is None else float(
            np.sum(sample_weight, dtype=np.float64))
    if np.isinf(estimator.C):
        alpha = beta = 0.0
    else:
        alpha = (1.0 - estimator.l1_ratio) / (estimator.C * total)
        beta = estimator.l1_ratio / (estimator.C * total)
    if is_dask_collection(X):
        from skbce.linear_model._dask_problem import DaskLinearBCE

        return DaskLinearBCE(X, Y, sample_weight, pos_weight, alpha, beta,
                             estimator.fit_intercept, label_smoothing=estimator.label_smoothing)
    n_threads = estimator._kernel_threads(Y.shape[0] * Y.shape[1])
    problem = _problem.LinearBCE(
        X, Y, sample_weight, pos_weight, alpha, beta, estimator.fit_intercept, n_threads,
        label_smoothing=estimator.label_smoothing,
        product_threads=estimator._kernel_threads(X.nnz) if sparse.issparse(X) else None,
    )
    _check_magnitude(problem)
    return problem


def kernel_threads(estimator, n_entries):
    # As scikit-learn's OpenMP-based estimators do, None uses every core
    # OpenMP is allowed (OMP_NUM_THREADS, threadpoolctl); a number limits it.
    limit = max_threads() if estimator.n_jobs is None else min(
        max_threads(), effective_n_jobs(estimator.n_jobs))
    return int(max(1, min(limit, n_entries // _MIN_ENTRIES_PER_THREAD)))


def thread_limits(estimator, X):
    """Thread limits of the BLAS and OpenMP pools for the fit.

    ``n_jobs`` limits both. BLAS runs on one thread whatever ``n_jobs``
    is for a small dense ``X``, as waking a second thread costs more than
    it saves there (and much more on a busy machine), and for a sparse
    ``X``: its products are OpenMP kernels, BLAS only does small vector
    work between them, and its idle threads, spinning, take the cores from
    the kernels' threads (bibtex, two cores: ``"lbfgs"`` 10.6 s with BLAS
    on two threads, 3.6 s on one; ``"newton-cg"``, median of 6 fits,
    1.32 s and 1.13 s).
    """
    stack = ExitStack()
    controller = _threadpool_controller()
    if estimator.n_jobs is not None:
        stack.enter_context(controller.limit(limits=int(effective_n_jobs(estimator.n_jobs))))
    if sparse.issparse(X) or X.shape[0] * X.shape[1] < _SMALL_DENSE:
        stack.enter_context(controller.limit(limits=1, user_api="blas"))
    return stack


def initial_intercept(estimator, Y, sample_weight, pos_weight):
    """The intercept of the best constant model: a good starting point."""
    if not estimator.fit_intercept:
        return np.zeros(Y.shape[1])
    total = Y.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    mean = estimator._smoothed(_weighted_column_sums(Y, sample_weight) / total)
    mean = np.clip(mean, 1e-6, 1 - 1e-6)
    odds = mean / (1 - mean)
    if pos_weight is not None:
        odds = odds * pos_weight
    return np.log(odds)
