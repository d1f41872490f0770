"""MultiLabelLogistic: a joint multi-label logistic regression trained on BCE."""

import hashlib
import time
import warnings
from contextlib import ExitStack
from functools import lru_cache
from numbers import Integral, Real

import numpy as np
from joblib import effective_n_jobs
from scipy import sparse
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)
from threadpoolctl import ThreadpoolController

from skbce import _solvers
from skbce._kernels import max_threads
from skbce._dispatch import is_dask_collection

__all__ = ["MultiLabelLogistic"]

# Below this many entries per thread a parallel loss pass costs more than it saves.
_MIN_ENTRIES_PER_THREAD = 20_000
# Below this many entries of a dense X, BLAS products run on one thread.
_SMALL_DENSE = 2**20
# Labels per joint L-BFGS-B problem.
_LBFGS_BLOCK = 16
# The memory rule: the extra memory a fit allocates stays within
# ``bytes(X) + 4 * n_samples * n_labels * 8 + _MEMORY_SLACK`` -- the logits
# of all labels, their gradient, the curvature and one trial set, the size
# of X (for its float32 twin and the products' buffers) and a constant for
# the small arrays -- and within scikit-learn's ``working_memory``.
_MEMORY_SLACK = 32 * 2**20
# "auto" takes Newton with the exact Hessian for one label up to this many
# features (see _exact_newton_pays).
_EXACT_NEWTON_MAX_FEATURES = 200
# A dense X at most this dense is fitted as a CSR copy for this many labels
# or more (see _csr_pays).
_CSR_MAX_DENSITY = 0.05
_CSR_MIN_LABELS = 32


@lru_cache(maxsize=1)
def _threadpool_controller():
    return ThreadpoolController()


class MultiLabelLogistic(ClassifierMixin, BaseEstimator):
    """Multi-label logistic regression trained on the binary cross-entropy.

    One linear model with a sigmoid output per label, fitted by minimising the
    binary cross-entropy (BCE) of all labels jointly. For each label ``j``
    the objective is that of scikit-learn's
    :class:`~sklearn.linear_model.LogisticRegression`,

    .. math::

        C \\sum_i s_i \\, \\ell(y_{ij}, x_i^\\top w_j + b_j)
        + \\frac{1 - \\rho}{2} \\lVert w_j \\rVert_2^2
        + \\rho \\lVert w_j \\rVert_1 ,

    with ``s`` the sample weights, :math:`\\rho` = ``l1_ratio`` and
    :math:`\\ell` the (``pos_weight``-weighted) BCE; the intercept is not
    penalised. With the same ``C`` each label's ``coef_`` and ``intercept_``
    are therefore those of ``LogisticRegression(C=C, l1_ratio=l1_ratio)``
    fitted on that label alone, to optimiser tolerance -- but all labels are
    trained in one pass over the data per iteration, and labels that have
    converged stop costing work.

    Targets may be 1-D binary labels of any type (then the model behaves like
    ``LogisticRegression``: ``classes_`` holds the two labels and
    ``predict_proba`` has two columns), a 2-D 0/1 multi-label indicator
    matrix, or *soft* targets: probabilities in [0, 1], 1-D or 2-D, such as
    the fraction of annotators who said yes. A one-column 2-D target
    (``y.reshape(-1, 1)``, ``df[["target"]]``) is a 1-D target, as for
    :class:`~sklearn.multiclass.OneVsRestClassifier`.

    Read more in the :ref:`User Guide <choosing_a_solver>`.

    Parameters
    ----------
    C : float, default=1.0
        Inverse of the regularisation strength, as in ``LogisticRegression``:
        the data term is ``C`` times the sum of the weighted losses. Must be
        positive; ``np.inf`` means no penalty.

    l1_ratio : float in [0, 1], default=0.0
        The elastic-net mixing parameter: 0 is a pure L2 penalty, 1 a pure L1
        (lasso) penalty. Values above 0 need ``solver="gd"`` or ``"sgd"``.

    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept per label.

    solver : {"auto", "newton-cg", "newton-cholesky", "lbfgs", "gd", "sgd"}, \
            default="auto"
        The optimiser; all minimise the same objective.

        - ``"newton-cg"``: batched truncated Newton -- the Hessian-vector
          products of all active labels are one pair of matrix products --
          with a per-label line search. The conjugate gradient is
          preconditioned (by the data's Gram matrix for a dense ``X`` with at
          most 512 features) and, for large float64 problems, run in float32:
          it only needs a rough Newton direction, and the stopping test is
          always made in full precision. L2 penalty only. Fastest to a tight
          optimum.
        - ``"newton-cholesky"``: Newton's method with the exact Hessian of
          each label, formed in one pass over ``X`` per iteration (BLAS
          ``syrk`` on blocks of rows) and solved by Cholesky. For a dense
          ``X`` with few features and few labels. L2 penalty only.
        - ``"lbfgs"``: scipy's L-BFGS-B on the joint objective. L2 penalty
          only.
        - ``"gd"``: accelerated proximal gradient descent (FISTA) with
          per-label backtracking line search and adaptive restarts; handles
          the L1 part of the penalty by soft-thresholding.
        - ``"sgd"``: mini-batch stochastic gradient descent with a decaying
          step; the solver :meth:`partial_fit` always uses.
        - ``"auto"``: for ``l1_ratio=0``, ``"newton-cholesky"`` for one
          label (a 1-D target) on a dense ``X`` with at most 200 features,
          else ``"newton-cg"``; ``"gd"`` for ``l1_ratio > 0``.

    max_iter : int, default=1000
        Maximum number of iterations (epochs for ``"sgd"``).

    tol : float, default=1e-4
        Tolerance of the stopping rule. A label has converged when the
        max-norm of its gradient (of its gradient mapping, with an L1 part)
        is at most ``tol`` -- the objective being ``LogisticRegression``'s
        divided by ``C * sum(sample_weight)``, this is the rule of its
        ``newton-cg`` and ``lbfgs`` solvers. For ``"sgd"``: training stops
        when the objective has not improved by ``tol`` for 5 epochs.

    pos_weight : float, array-like of shape (n_labels,), "balanced" or None, \
            default=None
        Weight of the positive term of the loss, ``-(pos_weight * y * log(p)
        + (1 - y) * log(1 - p))``, one number for all labels or one per
        label. ``"balanced"`` uses, per label, the weighted number of
        negatives over that of positives. None means 1.

    label_smoothing : float in [0, 1), default=0.0
        Train on ``y * (1 - label_smoothing) + label_smoothing / 2`` instead
        of ``y`` (the Keras convention).

    threshold : float or array-like of shape (n_labels,), default=0.5
        :meth:`predict` returns the positive class (1, or ``classes_[1]``)
        where the predicted probability is at least ``threshold``; one
        threshold per label is allowed for multi-label targets.

    warm_start : bool, default=False
        Whether :meth:`fit` starts from the previous solution (when the
        number of features and labels is unchanged) instead of from scratch.

    batch_size : int, default=256
        Rows per mini-batch of ``"sgd"`` and of :meth:`partial_fit`.

    learning_rate : float or "auto", default="auto"
        Initial step size of ``"sgd"``; it decays as ``learning_rate / sqrt(1
        + t / (10 * batch_size))`` after ``t`` samples. ``"auto"`` uses the
        inverse of a bound on the curvature of the loss of a mini-batch.

    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of ``"sgd"`` and :meth:`partial_fit`. The other
        solvers are deterministic.

    verbose : int, default=0
        Print progress (iteration, objective, gradient norm, elapsed time):
        about once a second with ``verbose=1``, every iteration with
        ``verbose>=2``.

    n_jobs : int, default=None
        Number of threads of the OpenMP kernels (loss, gradient and sparse
        products) during :meth:`fit` and :meth:`partial_fit`; an explicit
        value also limits the BLAS products (through threadpoolctl). None
        means every core OpenMP may use (as for scikit-learn's OpenMP-based
        estimators; ``OMP_NUM_THREADS`` and threadpoolctl limit it) with
        BLAS left at its default; -1 means all processors. The BLAS products
        of a small dense ``X`` always run on one thread.

    Attributes
    ----------
    classes_ : ndarray
        For 1-D (and one-column) targets the two class labels (``[0, 1]`` for
        soft targets); for 2-D targets of two or more labels the label
        indices ``arange(n_labels)``, as
        :class:`~sklearn.multiclass.OneVsRestClassifier` has.

    coef_ : ndarray of shape (n_labels, n_features) or (1, n_features)
        Coefficients of the features, one row per label (one row for 1-D
        targets).

    intercept_ : ndarray of shape (n_labels,) or (1,)
        Intercepts; zeros when ``fit_intercept=False``.

    n_iter_ : int
        Number of iterations run (the maximum over the labels; epochs for
        ``"sgd"``, calls for :meth:`partial_fit`).

    loss_curve_ : list of float
        The training objective after each iteration: the mean over labels of
        each label's penalised mean BCE, ``sum_i s_i loss_ij / S +
        penalty_j / (C * S)`` with ``S = sum(s)``.

    solver_ : str
        The solver used by the last :meth:`fit` (``"auto"`` resolved);
        ``"sgd"`` after :meth:`partial_fit`.

    pos_weight_ : ndarray of shape (n_labels,) or None
        The positive-class weights used (``"balanced"`` resolved).

    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`. Defined only when ``X``
        has feature names that are all strings.

    See Also
    --------
    sklearn.linear_model.LogisticRegression : One binary target at a time.
    sklearn.multiclass.OneVsRestClassifier : One independent model per label.
    skbce.binary_cross_entropy : The loss this model minimises.
    skbce.bce_scorer : A scorer for model selection by BCE.

    Notes
    -----
    ``X`` may be dense or sparse (CSR or CSC; a sparse one is never densified or copied);
    float32 data are trained in float32. The solvers' working memory grows
    with ``n_samples * n_labels``: a fit allocates at most about ``bytes(X) +
    4 * n_samples * n_labels * 8 bytes + 32 MiB`` beyond its inputs, and
    within scikit-learn's ``working_memory`` setting when that is lower, by
    working on fewer labels at a time -- with ``"newton-cg"`` a pool that
    converged labels leave and the next labels join. A dense ``X`` of at
    most 5 % non-zeros is fitted as a CSR copy when there are 32 labels or
    more (the sparse products cost its non-zeros, not its entries).

    ``C`` means the same in :meth:`partial_fit` as in :meth:`fit`: the
    penalty is weighed against the rows of one pass over the data, so that
    passes over the chunks of a data set converge to :meth:`fit`'s
    objective on all of it. The pass is learned from the chunks given: its
    weight is that of the distinct chunks seen so far, until a chunk comes
    again (the same data), which completes it; a stream that never repeats
    is fitted as everything seen so far. The model after each call is the
    average of the SGD iterates over the last pass.

    On dask arrays :meth:`fit` trains data-parallel on a ``distributed``
    cluster and the prediction methods return lazy dask arrays (see
    :ref:`scale_out`).

    Examples
    --------
    >>> import numpy as np
    >>> from skbce import MultiLabelLogistic
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0],
    ...               [2.0, 1.0], [1.0, 2.0]])
    >>> Y = np.array([[0, 1], [1, 0], [1, 1], [0, 0], [1, 0], [0, 1]])
    >>> model = MultiLabelLogistic(C=10.0).fit(X, Y)
    >>> model.coef_.shape, model.intercept_.shape
    ((2, 2), (2,))
    >>> model.predict(X)
    array([[0, 1],
           [1, 0],
           [1, 1],
           [0, 0],
           [1, 0],
           [0, 1]])
    >>> model.predict_proba([[1.0, 1.0]]).round(2)
    array([[0.61, 0.61]])

    Soft targets are probabilities; the model learns them:

    >>> soft = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.5])
    >>> x = np.array([[-2.0], [-1.0], [0.0], [1.0], [2.0], [0.0]])
    >>> MultiLabelLogistic(C=np.inf).fit(x, soft).predict_proba([[0.0]]).round(3)
    array([[0.5, 0.5]])
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="right")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"auto", "newton-cg", "newton-cholesky", "lbfgs", "gd", "sgd"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "pos_weight": [
            Interval(Real, 0, None, closed="neither"),
            "array-like",
            StrOptions({"balanced"}),
            None,
        ],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "threshold": [Interval(Real, 0, 1, closed="both"), "array-like"],
        "warm_start": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        *,
        C=1.0,
        l1_ratio=0.0,
        fit_intercept=True,
        solver="auto",
        max_iter=1000,
        tol=1e-4,
        pos_weight=None,
        label_smoothing=0.0,
        threshold=0.5,
        warm_start=False,
        batch_size=256,
        learning_rate="auto",
        random_state=None,
        verbose=0,
        n_jobs=None,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.pos_weight = pos_weight
        self.label_smoothing = label_smoothing
        self.threshold = threshold
        self.warm_start = warm_start
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------
    # Input handling
    # ------------------------------------------------------------------

    def _validate_X_y(self, X, y, reset):
        nullable_dtype = _nullable_label_dtype(y)
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            accept_sparse=["csr", "csc"],
            dtype=[np.float64, np.float32],
            multi_output=True,
            y_numeric=False,
        )
        if nullable_dtype is not None:
            # validate_data makes pandas' nullable integer and boolean targets
            # float64 (room for pd.NA, which it rejects): back to their type,
            # so that classes_ and predict have it.
            y = y.astype(nullable_dtype)
        if sparse.issparse(X):
            # int64 or int32 indices both work with scipy's products.
            X = X.tocsr() if X.format not in ("csr", "csc") else X
        return X, y

    def _encode_targets(self, y, classes, dtype, first):
        """Targets as an (n_samples, n_labels) float array in [0, 1].

        Sets ``classes_``, ``_one_d`` and ``_y_dtype`` when ``first``;
        otherwise checks ``y`` against them.
        """
        if sparse.issparse(y):
            y = y.toarray()
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            # A column vector (y.reshape(-1, 1), df[["target"]]) is one binary
            # target, as for OneVsRestClassifier: classes_ then holds its two
            # classes. Label indices ([0]) would read, to anything that looks
            # at classes_ (scorers), as "only class 0 was seen in training".
            y = y[:, 0]
        if y.ndim == 1:
            y_type = type_of_target(y, input_name="y", raise_unknown=True)
            if y_type == "continuous":
                values = y.astype(np.float64)
                try:
                    _check_unit_interval(values)
                except ValueError as exc:
                    raise ValueError(f"Unknown label type: continuous. {exc}") from None
                labels = np.array([0, 1])
                Y = values
            elif y_type == "binary":
                if first:
                    labels = np.unique(y) if classes is None else np.unique(classes)
                else:
                    labels = self.classes_
                    if not np.all(np.isin(np.unique(y), labels)):
                        raise ValueError(
                            f"y holds labels {np.setdiff1d(np.unique(y), labels)} "
                            f"not in classes_ {labels}."
                        )
                if len(labels) > 2:
                    raise ValueError(
                        "Only binary classification is supported for 1-D targets; "
                        f"classes has {len(labels)} values. Pass a 2-D indicator "
                        "matrix for multi-label targets."
                    )
                if len(labels) < 2:
                    raise ValueError(
                        "MultiLabelLogistic needs samples of at least 2 classes in a "
                        f"1-D target, but the data contains only one class: "
                        f"{labels[0]!r}. Pass classes= to partial_fit, or a 2-D "
                        "target of two or more labels to fit a label that is constant."
                    )
                Y = (y == labels[1]).astype(np.float64)
            elif y_type in ("multiclass",):
                raise ValueError(
                    "Only binary classification is supported. The type of the target "
                    f"is {y_type}: 1-D targets must have two classes (or be "
                    "probabilities in [0, 1]); for multi-label targets pass a 2-D "
                    "0/1 indicator matrix."
                )
            else:
                raise ValueError(f"Unknown label type: {y_type!r} for a 1-D target.")
            Y = Y.reshape(-1, 1)
            one_d = True
        elif y.ndim == 2:
            if y.dtype.kind not in "biuf":
                try:
                    y = y.astype(np.float64)
                except (TypeError, ValueError):
                    raise ValueError(
                        "Unknown label type: a 2-D target must hold numbers in [0, 1] "
                        f"(a multi-label indicator matrix or probabilities); got dtype "
                        f"{y.dtype}."
                    ) from None
            # Integer labels are checked as they are: no float copy.
            Y = y if y.dtype.kind in "biu" else y.astype(np.float64)
            try:
                _check_unit_interval(Y)
            except ValueError as exc:
                y_type = type_of_target(y, input_name="y")
                raise ValueError(f"Unknown label type: {y_type}. {exc}") from None
            labels = np.arange(Y.shape[1])
            one_d = False
            if classes is not None and first and len(np.asarray(classes)) != Y.shape[1]:
                raise ValueError(
                    f"classes has {len(np.asarray(classes))} entries but y has "
                    f"{Y.shape[1]} labels; for a 2-D target classes holds the label "
                    "indices."
                )
        else:
            raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}.")
        if first:
            self.classes_ = labels
            self._one_d = one_d
            self._y_dtype = y.dtype if not one_d else None
        else:
            if one_d != self._one_d or (not one_d and Y.shape[1] != len(self.classes_)):
                raise ValueError(
                    f"y has shape {y.shape}, but the model was fitted on "
                    + ("1-D targets." if self._one_d else
                       f"{len(self.classes_)} labels.")
                )
        # Hard targets are stored as uint8 (a float copy of a large label
        # matrix would dominate the memory of a fit); the solvers convert
        # blocks of labels to the floating dtype as they go.
        if Y.dtype.kind in "biu" or np.all((Y == 0) | (Y == 1)):
            return np.ascontiguousarray(Y, dtype=np.uint8)
        return np.ascontiguousarray(Y, dtype=dtype)

    def _resolve_pos_weight(self, Y, sample_weight):
        n_labels = Y.shape[1]
        pw = self.pos_weight
        if pw is None:
            return None
        if isinstance(pw, str):  # "balanced"
            pos = self._smoothed(_weighted_column_sums(Y, sample_weight))
            total = len(Y) if sample_weight is None else float(np.sum(sample_weight))
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

    def _smoothed(self, mean):
        """Means of the targets after label smoothing."""
        return mean * (1 - self.label_smoothing) + self.label_smoothing / 2 if (
            self.label_smoothing > 0) else mean

    def _sample_weight(self, sample_weight, X):
        if sample_weight is None:
            return None
        sw = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        if not np.all(np.isfinite(sw)):
            raise ValueError("sample_weight must be finite.")
        if float(np.sum(sw, dtype=np.float64)) <= 0:
            raise ValueError("sample_weight must not be all zero.")
        return sw

    def _problem(self, X, Y, sample_weight, pos_weight, total=None):
        """The problem of ``X``, with the penalty weighed against ``total``
        (default: the weight of ``X``'s rows)."""
        if total is None:
            total = X.shape[0] if sample_weight is None else float(
                np.sum(sample_weight, dtype=np.float64))
        if np.isinf(self.C):
            alpha = beta = 0.0
        else:
            alpha = (1.0 - self.l1_ratio) / (self.C * total)
            beta = self.l1_ratio / (self.C * total)
        if is_dask_collection(X):
            from skbce._dask_problem import DaskLinearBCE

            return DaskLinearBCE(X, Y, sample_weight, pos_weight, alpha, beta,
                                 self.fit_intercept, label_smoothing=self.label_smoothing)
        n_threads = self._kernel_threads(Y.size)
        problem = _solvers.LinearBCE(
            X, Y, sample_weight, pos_weight, alpha, beta, self.fit_intercept, n_threads,
            label_smoothing=self.label_smoothing,
            product_threads=self._kernel_threads(X.nnz) if sparse.issparse(X) else None,
        )
        _check_magnitude(problem)
        return problem

    def _kernel_threads(self, n_entries):
        # As scikit-learn's OpenMP-based estimators do, None uses every core
        # OpenMP is allowed (OMP_NUM_THREADS, threadpoolctl); a number limits it.
        limit = max_threads() if self.n_jobs is None else min(
            max_threads(), effective_n_jobs(self.n_jobs))
        return int(max(1, min(limit, n_entries // _MIN_ENTRIES_PER_THREAD)))

    def _thread_limits(self, X):
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
        if self.n_jobs is not None:
            stack.enter_context(controller.limit(limits=int(effective_n_jobs(self.n_jobs))))
        if sparse.issparse(X) or X.shape[0] * X.shape[1] < _SMALL_DENSE:
            stack.enter_context(controller.limit(limits=1, user_api="blas"))
        return stack

    def _initial_intercept(self, Y, sample_weight, pos_weight):
        """The intercept of the best constant model: a good starting point."""
        if not self.fit_intercept:
            return np.zeros(Y.shape[1])
        total = len(Y) if sample_weight is None else float(np.sum(sample_weight))
        mean = self._smoothed(_weighted_column_sums(Y, sample_weight) / total)
        mean = np.clip(mean, 1e-6, 1 - 1e-6)
        odds = mean / (1 - mean)
        if pos_weight is not None:
            odds = odds * pos_weight
        return np.log(odds)

    def _resolved_solver(self, X=None, n_labels=None):
        """The solver to use; ``"auto"`` resolved for ``X`` and ``n_labels`` when given."""
        solver = self.solver
        if solver == "auto":
            if self.l1_ratio > 0:
                return "gd"
            if X is not None and _exact_newton_pays(X, n_labels):
                return "newton-cholesky"
            return "newton-cg"
        if solver in ("lbfgs", "newton-cg", "newton-cholesky") and self.l1_ratio > 0:
            raise ValueError(
                f"solver={solver!r} supports only l1_ratio=0 (an L2 penalty); got "
                f"l1_ratio={self.l1_ratio}. Use solver='gd' (or 'sgd', or 'auto') "
                "for an L1 or elastic-net penalty."
            )
        return solver

    # ------------------------------------------------------------------
    # Fitting
    # ------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Training data; CSR and CSC matrices are used as they are. A dask
            array (dense or CSR chunks; ``y`` and ``sample_weight`` may be
            dask arrays too) is trained on data-parallel on the current
            ``distributed`` cluster: the same solvers and the same model,
            with every pass over the data run on the workers, chunk by chunk
            (see :ref:`scale_out`). ``solver="sgd"`` needs in-memory data.

        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Binary labels (1-D, any two values), a 0/1 multi-label indicator
            matrix, or soft targets in [0, 1].

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample; an integer weight is the same
            as repeating the sample.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        solver = self._resolved_solver()
        if is_dask_collection(X, y, sample_weight):
            # Data-parallel: the same solvers on a problem spread over the cluster.
            from skbce._dask import training_data

            X, Y, sample_weight, dtype = training_data(self, X, y, sample_weight, solver)
        else:
            X, y = self._validate_X_y(X, y, reset=True)
            dtype = X.dtype.type
            Y = self._encode_targets(y, None, dtype, first=True)
            solver = self._resolved_solver(X, Y.shape[1])
            if solver == "newton-cholesky" and sparse.issparse(X):
                raise ValueError(
                    "solver='newton-cholesky' needs a dense X; use 'newton-cg' (or "
                    "'auto') for a sparse one."
                )
            sample_weight = self._sample_weight(sample_weight, X)
            if solver != "newton-cholesky" and _csr_pays(X, Y.shape[1]):
                X = sparse.csr_matrix(X)
        pos_weight = self._resolve_pos_weight(Y, sample_weight)
        self.pos_weight_ = pos_weight
        self._W = self._sgd_rng = None
        n_labels, n_features = Y.shape[1], X.shape[1]

        warm = (
            self.warm_start
            and hasattr(self, "coef_")
            and getattr(self, "_fitted_shape", None) == (n_labels, n_features)
        )
        if warm:
            W0 = np.asarray(self.coef_, dtype=np.float64)
            b0 = np.asarray(self.intercept_, dtype=np.float64)
        else:
            # A zero-strided view: each label block copies only its own rows.
            W0 = np.broadcast_to(0.0, (n_labels, n_features))
            b0 = self._initial_intercept(Y, sample_weight, pos_weight)

        start = time.perf_counter()
        with self._thread_limits(X):
            problem = self._problem(X, Y, sample_weight, pos_weight)
            if solver == "sgd":
                rng = np.random.default_rng(
                    check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
                result, state = _solvers.sgd(
                    problem, W0, b0, tol=self.tol, max_iter=self.max_iter,
                    verbose=self.verbose, batch_size=self.batch_size,
                    learning_rate=self.learning_rate, rng=rng, decay_every=self._step_decay(),
                )
                self._sgd_rng = rng
            else:
                budget = self._memory_budget(X, problem, solver)
                block = _solvers.label_block_size(problem, budget, solver)
                options = dict(tol=self.tol, max_iter=self.max_iter, verbose=self.verbose)
                if solver == "newton-cg":
                    # A pool of labels: those that converge make room for the next.
                    result = _solvers.newton_cg(problem, W0, b0, pool_size=block, **options)
                else:
                    if solver == "lbfgs":
                        # One L-BFGS run shares its line search and stopping
                        # test among its labels: small blocks converge faster.
                        block = min(block, _LBFGS_BLOCK)
                    result = _solvers.solve_in_blocks(
                        _solvers.SOLVERS[solver], problem, W0, b0, block, **options)
        if self.verbose:
            print(f"[MultiLabelLogistic] solver={solver}: {result.n_iter} iterations "
                  f"in {time.perf_counter() - start:.3f}s", flush=True)
        self._store(result, dtype)
        self.solver_ = solver
        self.n_iter_ = result.n_iter
        self.loss_curve_ = list(result.loss_curve)
        if not (np.all(np.isfinite(self.coef_)) and np.all(np.isfinite(self.intercept_))):
            raise ValueError(
                f"MultiLabelLogistic (solver={solver!r}) diverged: non-finite coefficients. "
                "Scale the features, e.g. with StandardScaler."
            )
        if not np.all(result.converged):
            n_bad = int(np.sum(~result.converged))
            warnings.warn(
                f"MultiLabelLogistic (solver={solver!r}) did not converge for {n_bad} "
                f"of {n_labels} label(s): it stopped (max_iter={self.max_iter}, or no "
                f"further progress) before meeting tol={self.tol}. Scale the features "
                "(e.g. with StandardScaler) or increase max_iter.",
                ConvergenceWarning,
            )
        return self

    @staticmethod
    def _memory_budget(X, problem, solver):
        """Bytes the solvers' per-label working arrays may take.

        The memory rule's allowance (``_MEMORY_SLACK``, above) less what the
        fit holds whatever the number of labels at once: the float32 twin of
        a dense ``X`` (newton-cg's mixed precision) and the Gram
        preconditioner. Never more than scikit-learn's ``working_memory``
        setting: a user who sets it low trades time for memory (fewer labels
        at a time, each sweep over ``X`` serving fewer of them).
        """
        if sparse.issparse(X):
            x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
        else:
            x_bytes = X.nbytes
        allowed = x_bytes + 4 * problem.n_samples * problem.n_labels * 8 + _MEMORY_SLACK
        # The coefficients of all labels and the result's copy of them: on a
        # wide X (30 000 features, 100 labels) 24 MB each.
        allowed -= 2 * problem.n_features * problem.n_labels * problem.dtype.itemsize
        if solver == "newton-cg":
            allowed -= problem.gram_bytes()
            if problem.mixed_precision_cg() and not sparse.issparse(X):
                allowed -= X.size * 4
        return max(0, min(allowed, _solvers._working_memory_bytes()))

    def _step_decay(self):
        return 10.0 * self.batch_size

    def _store(self, result, dtype):
        coef = np.asarray(result.coef, dtype=dtype)
        intercept = np.asarray(result.intercept, dtype=dtype)
        if not self.fit_intercept:
            intercept = np.zeros_like(intercept)
        self.coef_ = np.ascontiguousarray(coef)
        self.intercept_ = intercept
        self._fitted_shape = self.coef_.shape

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch of mini-batch SGD on the given chunk of data.

        The penalty is weighed against the rows of a pass over all the
        chunks (see Notes), so ``C`` is :meth:`fit`'s ``C``. The first call
        sets the step size from that chunk's curvature.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.

        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Its targets, as for :meth:`fit`.

        classes : array-like, default=None
            For 1-D (and one-column) targets, the two class labels; needed
            on the first call unless that chunk holds both. For 2-D targets, optional: the
            label indices (only its length is checked). Ignored after the
            first call.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        self : object
            The updated estimator.
        """
        first = not hasattr(self, "coef_")
        X, y = self._validate_X_y(X, y, reset=first)
        dtype = X.dtype.type
        if first:
            Y = self._encode_targets(y, classes, dtype, first=True)
        else:
            Y = self._encode_targets(y, None, dtype, first=False)
        sample_weight = self._sample_weight(sample_weight, X)
        if first:
            self.pos_weight_ = self._resolve_pos_weight(Y, sample_weight)
            n_labels, n_features = Y.shape[1], X.shape[1]
            self._W = np.zeros((n_features, n_labels), dtype=dtype)
            self._b = self._initial_intercept(Y, sample_weight, self.pos_weight_).astype(dtype)
            self._sgd_rng = np.random.default_rng(
                check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            self._sgd_state = None
            self._pass = _Pass()
            self.n_iter_ = 0
            self.loss_curve_ = []
        elif getattr(self, "_W", None) is None:
            # Continue from a solution of fit.
            self._W = np.ascontiguousarray(self.coef_.T, dtype=dtype)
            self._b = np.array(self.intercept_, dtype=dtype)
            if getattr(self, "_sgd_rng", None) is None:
                self._sgd_rng = np.random.default_rng(
                    check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            self._sgd_state = None
            self._pass = _Pass()
        W = self._W.astype(dtype, copy=False)
        b = self._b.astype(dtype, copy=False)
        self._pass.add(X, Y, sample_weight)
        with self._thread_limits(X):
            problem = self._problem(X, Y, sample_weight, self.pos_weight_,
                                    total=self._pass.weight)
            if self._sgd_state is None:
                batch = int(min(self.batch_size, X.shape[0]))
                precond = _solvers.sgd_preconditioner(problem)
                # Also the first chunk's curvature bound (a power iteration),
                # which the row-norm bound exceeds up to n_features times: a
                # few passes then go a long way (3600 x 30 Gaussian features,
                # 6 chunks: 44% above fit's objective after 20 passes with
                # the row-norm step, 0.2% with this). Either bounds the
                # preconditioned curvature (its factors are at most 1).
                step0 = max(_solvers.sgd_step_size(problem, batch, precond),
                            1.0 / problem.lipschitz())
                self._sgd_state = _solvers.SGDState(
                    step0=step0, avg_start=self._step_decay(), precond=precond)
            _solvers.sgd_epoch(
                problem, W, b, self._sgd_state, batch_size=self.batch_size,
                learning_rate=self.learning_rate, rng=self._sgd_rng,
                decay_every=self._step_decay(),
            )
            W_avg, b_avg = self._pass.average(self._sgd_state, W, b, X.shape[0])
            objective = problem.objective(W_avg, b_avg)
        self._W, self._b = W, b
        result = _solvers.SolverResult(
            coef=W_avg.T, intercept=b_avg.copy(), n_iter=1, loss_curve=[], converged=None)
        self._store(result, dtype)
        self.solver_ = "sgd"
        self.n_iter_ += 1
        self.loss_curve_.append(float(np.mean(objective)))
        return self

    # ------------------------------------------------------------------
    # Prediction
    # ------------------------------------------------------------------

    def decision_function(self, X):
        """Logits (log-odds) of the positive class of each label.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Samples. For a dask array the result is a lazy dask array,
            computed block by block of rows.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_labels)
            1-D for 1-D targets, as ``LogisticRegression`` returns.
        """
        if is_dask_collection(X):
            return self._blockwise(self.decision_function, X)
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                          dtype=[np.float64, np.float32])
        coef = self.coef_.astype(X.dtype, copy=False)
        scores = np.asarray(safe_sparse_dot(X, coef.T, dense_output=True))
        scores = scores + self.intercept_.astype(X.dtype, copy=False)
        return scores.ravel() if self._one_d else scores

    def predict_proba(self, X):
        """Probability of the positive class of each label.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Samples. For a dask array the result is a lazy dask array,
            computed block by block of rows.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2) or (n_samples, n_labels)
            For 1-D targets the probabilities of ``classes_[0]`` and
            ``classes_[1]``; for multi-label targets one column per label.
        """
        if is_dask_collection(X):
            return self._blockwise(self.predict_proba, X)
        scores = self.decision_function(X)
        if self._one_d:
            return np.column_stack([expit(-scores), expit(scores)])
        return expit(scores)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed without underflow.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Samples. For a dask array the result is a lazy dask array,
            computed block by block of rows.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, 2) or (n_samples, n_labels)
        """
        if is_dask_collection(X):
            return self._blockwise(self.predict_log_proba, X)
        scores = self.decision_function(X)
        if self._one_d:
            return np.column_stack([log_expit(-scores), log_expit(scores)])
        return log_expit(scores)

    def _blockwise(self, method, X):
        """``method`` on each block of rows of a dask array ``X``: a lazy dask array."""
        from skbce._dask import predict_blockwise

        check_is_fitted(self)
        return predict_blockwise(method, X, self.n_features_in_)

    def _threshold(self, n_labels):
        threshold = np.asarray(self.threshold, dtype=np.float64)
        if threshold.ndim == 1 and (threshold.shape != (n_labels,) or self._one_d):
            raise ValueError(
                f"threshold must be a number or an array of shape ({n_labels},), "
                f"one per label of a 2-D target; got shape {threshold.shape}."
            )
        if threshold.ndim > 1 or np.any((threshold < 0) | (threshold > 1)):
            raise ValueError("threshold must lie in [0, 1].")
        return threshold

    def predict(self, X):
        """Predicted labels: positive where the probability is at least ``threshold``.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Samples. For a dask array the result is a lazy dask array,
            computed block by block of rows.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Class labels from ``classes_`` for 1-D targets. For 2-D targets a
            0/1 indicator matrix of the targets' dtype if they were integer or
            bool (pandas' nullable ``Int64`` and ``boolean``: ``int64`` and
            ``bool``), else ``int64``, as
            :class:`~sklearn.multiclass.OneVsRestClassifier` returns.
        """
        if is_dask_collection(X):
            return self._blockwise(self.predict, X)
        scores = self.decision_function(X)
        n_labels = 1 if self._one_d else scores.shape[1]
        threshold = self._threshold(n_labels)
        positive = expit(scores) >= threshold
        if self._one_d:
            return self.classes_[positive.astype(int)]
        dtype = self._y_dtype
        if dtype is None or dtype.kind not in "biu":
            dtype = np.int64  # float 0/1 or soft targets: an indicator matrix
        return positive.astype(dtype)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy (subset accuracy for multi-label targets).

        Soft targets are compared after thresholding them at 0.5.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Test samples.

        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            True labels.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Accuracy of :meth:`predict`.
        """
        y = np.asarray(y)
        if y.dtype.kind == "f" and np.any((y != 0) & (y != 1)) and not np.any(np.isnan(y)):
            y = (y >= 0.5).astype(int)
            if self._one_d:
                y = self.classes_[y]
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = True
        return tags


class _Pass:
    """One pass over the chunks that :meth:`MultiLabelLogistic.partial_fit` is given.

    Its weight is that of the distinct chunks seen so far, until a chunk
    comes again (the same bytes): then a pass is complete and its weight
    fixed. The penalty of each chunk's SGD steps is weighed against it, as
    :meth:`~MultiLabelLogistic.fit` weighs it against all rows: repeated
    passes converge to the fit of the data set, and a stream that never
    repeats to the fit of everything seen. The estimate is the average of
    the SGD iterates over the last pass (over everything seen, in the first),
    as ``"sgd"``'s is over the last epoch.
    """

    def __init__(self):
        self.weight = 0.0
        self.rows = 0
        self.complete = False
        self._seen = set()
        # The running average of the iterates over the current window.
        self._window_rows = 0
        self._count = 0
        self._W = self._b = None

    def add(self, X, Y, sample_weight):
        if self.complete:
            return
        key = _fingerprint(X, Y, sample_weight)
        if key in self._seen:
            self.complete, self._seen = True, None
            return
        self._seen.add(key)
        self.rows += X.shape[0]
        self.weight += X.shape[0] if sample_weight is None else float(
            np.sum(sample_weight, dtype=np.float64))

    def average(self, state, W, b, n_rows):
        """Fold the averaged iterates of this chunk (in ``state``) into the pass's."""
        if self.complete and self._window_rows >= self.rows:
            self._window_rows = self._count = 0
        self._window_rows += n_rows
        if state.n_avg:
            if self._count == 0:
                self._W, self._b = state.avg_W.copy(), state.avg_b.copy()
            else:
                share = state.n_avg / (self._count + state.n_avg)
                self._W += W.dtype.type(share) * (state.avg_W - self._W)
                self._b += b.dtype.type(share) * (state.avg_b - self._b)
            self._count += state.n_avg
        return (self._W, self._b) if self._count else (W, b)


def _fingerprint(X, Y, sample_weight):
    """A digest of a chunk's bytes: the same chunk given again has the same one."""
    digest = hashlib.blake2b(digest_size=16)
    parts = [X.data, X.indices, X.indptr] if sparse.issparse(X) else [X]
    for part in [*parts, Y] + ([] if sample_weight is None else [sample_weight]):
        part = np.ascontiguousarray(part)
        digest.update(f"{part.dtype.str}{part.shape}".encode())
        digest.update(memoryview(part).cast("B"))
    return digest.digest()


def _weighted_column_sums(Y, sample_weight):
    """``sample_weight @ Y`` in float64, without a float copy of all of ``Y``."""
    if is_dask_collection(Y):
        from skbce._dask import weighted_column_sums

        return weighted_column_sums(Y, sample_weight)
    total = np.zeros(Y.shape[1])
    chunk = max(1, 2**16 // max(1, Y.shape[1]))  # rows per float block: 512 KiB
    for start in range(0, len(Y), chunk):
        block = Y[start:start + chunk].astype(np.float64)
        if sample_weight is None:
            total += block.sum(axis=0)
        else:
            total += np.asarray(sample_weight[start:start + chunk], dtype=np.float64) @ block
    return total


def _nullable_label_dtype(y):
    """The NumPy dtype of a pandas target of nullable integers or booleans.

    None for anything else, including a target whose columns are all NumPy
    dtypes (validate_data keeps those).
    """
    if hasattr(y, "columns"):  # a DataFrame
        dtypes = list(y.dtypes)
    else:
        dtypes = [getattr(y, "dtype", None)]
    numpy_dtypes = []
    for dtype in dtypes:
        numpy_dtype = dtype if isinstance(dtype, np.dtype) else getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is None or numpy_dtype.kind not in "biu":
            return None
        numpy_dtypes.append(numpy_dtype)
    if all(isinstance(dtype, np.dtype) for dtype in dtypes):
        return None
    return np.result_type(*numpy_dtypes)


def _exact_newton_pays(X, n_labels):
    """Whether ``"auto"`` takes Newton with the exact Hessian: one label, dense X, few features.

    Per iteration it costs one pass over ``X`` with ``n m^2 / 2`` multiply-adds
    at matrix-matrix (BLAS-3) speed, ``m = n_features + 1``; newton-cg's
    conjugate gradient costs ``2 n m`` per inner iteration at the speed of
    memory-bound matrix-vector products, about an order of magnitude
    slower per operation, and takes 5-10 of them per Newton step: break-even
    near ``m = 200``. With more labels the conjugate gradient's products
    are matrix-matrix too, while the exact Hessians grow with the labels.
    """
    return (not sparse.issparse(X) and n_labels == 1
            and X.shape[1] <= _EXACT_NEWTON_MAX_FEATURES)


def _csr_pays(X, n_labels):
    """Whether a dense ``X`` is fitted faster as a CSR copy: mostly zeros, many labels.

    The sparse kernels' products cost ``nnz * n_labels``, BLAS's ``n_samples *
    n_features * n_labels`` at a few times the speed per multiply-add. One
    float32 Hessian product, 12000 x 500 (one thread each): 100 labels,
    density 4 %: dense 50 ms, CSR 21 ms; 15 %: 56 / 55 ms; 983 labels, 4 %:
    0.72 s / 0.18 s. With 8 labels the narrow sparse products lose at every
    density (4 %: 4.6 / 12 ms). The copy, at most 12 bytes per non-zero,
    stays within the memory rule's bytes(X).
    """
    if sparse.issparse(X) or n_labels < _CSR_MIN_LABELS or X.size == 0:
        return False
    return np.count_nonzero(X) <= _CSR_MAX_DENSITY * X.size


def _check_magnitude(problem):
    """A clear error for features too large for the arithmetic of the fit."""
    limit = _solvers.magnitude_limit(problem.dtype)
    largest = problem.feature_max_abs()
    if largest > limit:
        raise ValueError(
            f"X holds a feature value of magnitude {largest:.3g}; MultiLabelLogistic "
            f"fits {problem.dtype} features of magnitude up to {limit:.3g} (the "
            "curvature of the loss grows with their squares and would overflow). "
            "Scale the features, e.g. with StandardScaler, or divide X by a constant."
        )


def _check_unit_interval(values):
    if values.dtype.kind in "biu":
        if values.size == 0 or (values.min() >= 0 and values.max() <= 1):
            return
    elif not np.all(np.isfinite(values)):
        raise ValueError("Targets must be finite.")
    bad = (values < 0) | (values > 1)
    if np.any(bad):
        index = np.unravel_index(np.flatnonzero(bad)[0], values.shape)
        raise ValueError(
            "Targets must be 0/1 labels or probabilities in [0, 1] (soft targets); "
            f"found {values[index]!r} at index {tuple(int(i) for i in index)}. "
            "Continuous targets outside [0, 1] are regression targets."
        )
