"""MultiLabelLogistic: a joint multi-label logistic regression trained on BCE."""

import contextlib
import time
import warnings
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

from skbce._dispatch import is_dask_collection
from skbce.linear_model import (
    _dual_cd,
    _fit_inputs,
    _newton_cg,
    _newton_passes,
    _partial_fit,
    _sgd,
    _solver_choice,
)
from skbce.linear_model._problem import _working_memory_bytes
from skbce.linear_model._solver_base import SolverResult
from skbce.linear_model._solver_choice import (
    _LBFGS_BLOCK,
    _csr_pays,
    _dual_cd_pays,
    _exact_newton_pays,
    memory_budget,
)
from skbce.linear_model._targets import canonical_sparse, encode_targets

__all__ = ["MultiLabelLogistic"]


def _dense(coef):
    """``coef_`` as an ndarray, whether or not :meth:`MultiLabelLogistic.sparsify` pruned it."""
    return coef.toarray() if sparse.issparse(coef) else coef


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

    solver : {"auto", "newton-cg", "newton-cholesky", "dual-cd", "lbfgs", "gd", \
            "sgd"}, default="auto"
        The optimiser; all minimise the same objective.

        - ``"newton-cg"``: batched truncated Newton -- the Hessian-vector
          products of all active labels are one pair of matrix products --
          with a per-label line search. The conjugate gradient is
          preconditioned (by the data's Gram matrix for an ``X`` with at
          most 512 features) and, for large float64 problems, run in float32:
          it only needs a rough Newton direction, and the stopping test is
          always made in full precision. L2 penalty only. Fastest to a tight
          optimum.
        - ``"newton-cholesky"``: Newton's method with the exact Hessian of
          each label, formed in one pass over ``X`` per iteration (a
          register-tiled kernel on blocks of rows) and solved by Cholesky.
          For a dense ``X`` with few features and few labels. L2 penalty
          only.
        - ``"dual-cd"``: dual coordinate descent with shrinking
          (liblinear's ``-s 7`` method, with the intercept kept
          unpenalised by an augmented Lagrangian), labels in blocks of 8
          that share each read of a row of ``X``, blocks over threads. For
          many rare labels on a sparse ``X``. L2 penalty with a finite
          ``C`` only; not on dask.
        - ``"lbfgs"``: scipy's L-BFGS-B on the joint objective. L2 penalty
          only.
        - ``"gd"``: accelerated proximal gradient descent (FISTA) with
          per-label backtracking line search and adaptive restarts; handles
          the L1 part of the penalty by soft-thresholding.
        - ``"sgd"``: mini-batch stochastic gradient descent with a decaying
          step; :meth:`partial_fit`'s on a stream (see its Notes).
        - ``"auto"``: for ``l1_ratio=0``, ``"newton-cholesky"`` for one
          label (a 1-D target) on a dense ``X`` with at most 64 features;
          ``"dual-cd"`` on a sparse ``X`` with at least 32 labels whose
          mean minority share is at most 5 % and ``C * mean(|x_i|^2) <=
          100``; else ``"newton-cg"``. ``"gd"`` for ``l1_ratio > 0``.

    max_iter : int, default=1000
        Maximum number of iterations (epochs for ``"sgd"``).

    tol : float, default=1e-4
        Tolerance of the stopping rule. A label has converged when the
        max-norm of its gradient (of its gradient mapping, with an L1 part)
        is at most ``tol`` -- the objective being ``LogisticRegression``'s
        divided by ``C * sum(sample_weight)``, this is the rule of its
        ``newton-cg`` and ``lbfgs`` solvers -- and, for the Newton solvers,
        when the decrease still to be had is at most ``tol`` times the
        label's objective (``tol**2`` at least): ``"newton-cholesky"`` takes
        the Newton decrement ``-g.p / 2``, ``"newton-cg"`` the decrease a
        Newton step on the Hessian's diagonal predicts. The second test
        matters for labels of small objective (rare labels): there a gradient
        of ``1e-4`` can leave the objective 1 % above its minimum. ``"lbfgs"``
        and ``"gd"`` use the gradient test alone. For ``"sgd"``: training
        stops when the objective has not improved by ``tol`` for 5 epochs.
        See :ref:`stopping_rule`.

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
        Print progress (iteration, labels done of the total, objective,
        gradient norm, elapsed time): at most once a second and a few lines
        per iteration with ``verbose=1``, every iteration with ``verbose>=2``.

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

    coef_ : ndarray or CSR matrix of shape (n_labels, n_features) or (1, n_features)
        Coefficients of the features, one row per label (one row for 1-D
        targets), in the precision of the training data; a CSR matrix after
        :meth:`sparsify`.

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
        The solver used by the last :meth:`fit` (``"auto"`` resolved); after
        :meth:`partial_fit`, ``"sgd"`` or ``"newton-passes"`` (see its
        Notes).

    pos_weight_ : ndarray of shape (n_labels,) or None
        The positive-class weights used (``"balanced"`` resolved).

    n_samples_seen_ : int
        Rows given to :meth:`partial_fit` since its first call (defined
        after :meth:`partial_fit` only).

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
    float32 data are trained in float32 (``coef_`` and ``intercept_`` are
    float32). ``y`` may be a scipy.sparse matrix or array (CSR, CSC, COO):
    it is never densified as a whole, and :meth:`predict` then returns a
    CSR matrix. Beyond its inputs and the coefficients, a fit allocates a
    working set of at most about ``bytes(X) + 4 * n_samples * n_labels * 8
    bytes + 32 MiB``, and within scikit-learn's ``working_memory`` setting
    when that is lower, by working on fewer labels at a time -- with
    ``"newton-cg"`` a pool that converged labels leave and the next labels
    join (see :ref:`many_labels`). :meth:`sparsify` prunes a fitted model
    to a sparse ``coef_``. A dense ``X`` of at
    most 5 % non-zeros is fitted as a CSR copy when there are 32 labels or
    more (the sparse products cost its non-zeros, not its entries).

    ``C`` means the same in :meth:`partial_fit` as in :meth:`fit`, and
    passes over the chunks of a data set told ``n_samples_per_pass`` converge
    to :meth:`fit`'s objective on it: by Newton's method, one step per pass,
    when the Hessians fit in memory; else by SGD (see :meth:`partial_fit`).

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
        "solver": [StrOptions({"auto", "newton-cg", "newton-cholesky", "dual-cd", "lbfgs", "gd",
                               "sgd"})],
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

    # What fit and partial_fit make of their arguments (_fit_inputs.py).
    _validate_X_y = _fit_inputs.validate_X_y
    _resolve_pos_weight = _fit_inputs.resolve_pos_weight
    _smoothed = _fit_inputs.smoothed
    _sample_weight = _fit_inputs.checked_sample_weight
    _problem = _fit_inputs.make_problem
    _kernel_threads = _fit_inputs.kernel_threads
    _thread_limits = _fit_inputs.thread_limits
    _initial_intercept = _fit_inputs.initial_intercept

    def _encode_targets(self, y, classes, dtype, first):
        """Targets as an (n_samples, n_labels) array in [0, 1] (see :func:`encode_targets`)."""
        return encode_targets(self, y, classes, dtype, first)

    def _resolved_solver(self, X=None, Y=None):
        """The solver to use; ``"auto"`` resolved for ``X`` and the encoded targets ``Y`` when given."""
        solver = self.solver
        if solver == "auto":
            if self.l1_ratio > 0:
                return "gd"
            if X is not None and _exact_newton_pays(X, Y.shape[1]):
                return "newton-cholesky"
            if X is not None and _dual_cd_pays(X, Y, self.C):
                return "dual-cd"
            return "newton-cg"
        if solver == "dual-cd" and not np.isfinite(self.C):
            raise ValueError("solver='dual-cd' needs a finite C; use 'newton-cg' for C=inf.")
        if solver in ("lbfgs", "newton-cg", "newton-cholesky", "dual-cd") and self.l1_ratio > 0:
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
            (see :ref:`scale_out`). ``solver="sgd"`` runs its epochs
            over the chunks in turn, each on the worker that holds it.

        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_labels)
            Binary labels (1-D, any two values), a 0/1 multi-label indicator
            matrix, or soft targets in [0, 1]. A scipy.sparse matrix or
            array (CSR, CSC or COO) is kept sparse: the solvers read dense
            blocks of its labels, and :meth:`predict` returns CSR.

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
            if solver == "dual-cd":
                raise ValueError("solver='dual-cd' needs X in memory; use 'newton-cg' on dask.")
            from skbce._dask import training_data

            X, Y, sample_weight, dtype = training_data(self, X, y, sample_weight, solver)
        else:
            X, y = self._validate_X_y(X, y, reset=True)
            dtype = X.dtype.type
            Y = self._encode_targets(y, None, dtype, first=True)
            solver = self._resolved_solver(X, Y)
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
        self.__dict__.pop("n_samples_seen_", None)  # partial_fit's count
        n_labels, n_features = Y.shape[1], X.shape[1]

        warm = (
            self.warm_start
            and hasattr(self, "coef_")
            and getattr(self, "_fitted_shape", None) == (n_labels, n_features)
        )
        if warm:
            W0 = np.asarray(_dense(self.coef_), dtype=np.float64)
            b0 = np.asarray(self.intercept_, dtype=np.float64)
        else:
            # A zero-strided view: each label block copies only its own rows.
            W0 = np.broadcast_to(0.0, (n_labels, n_features))
            b0 = self._initial_intercept(Y, sample_weight, pos_weight)

        start = time.perf_counter()
        # (closing: a dask problem's futures are cancelled, whatever the fit ends with)
        with self._thread_limits(X), contextlib.closing(
                self._problem(X, Y, sample_weight, pos_weight)) as problem:
            if solver == "sgd":
                rng = np.random.default_rng(
                    check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
                result, state = _sgd.sgd(
                    problem, W0, b0, tol=self.tol, max_iter=self.max_iter,
                    verbose=self.verbose, batch_size=self.batch_size,
                    learning_rate=self.learning_rate, rng=rng, decay_every=self._step_decay(),
                )
                self._sgd_rng = rng
            else:
                budget = self._memory_budget(X, problem, solver)
                block = _solver_choice.label_block_size(problem, budget, solver)
                options = dict(tol=self.tol, max_iter=self.max_iter, verbose=self.verbose)
                if solver == "newton-cg":
                    # A pool of labels: those that converge make room for the next.
                    result = _newton_cg.newton_cg(problem, W0, b0, pool_size=block, **options)
                elif solver == "dual-cd":
                    # One label per thread: no per-label arrays of n_samples to budget.
                    result = _dual_cd.dual_cd(problem, W0, b0, **options)
                else:
                    if solver == "lbfgs":
                        # One L-BFGS run shares its line search and stopping
                        # test among its labels: small blocks converge faster.
                        block = min(block, _LBFGS_BLOCK)
                    result = _solver_choice.solve_in_blocks(
                        _solver_choice.SOLVERS[solver], problem, W0, b0, block, **options)
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

    _memory_budget = staticmethod(memory_budget)

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

    def sparsify(self, threshold=0.0):
        """Prune the model: keep the coefficients of magnitude at least ``threshold``, as CSR.

        DiSMEC's pruning: after the fit, coefficients with ``|w| <
        threshold`` are set to zero and ``coef_`` becomes a
        :class:`scipy.sparse.csr_matrix` holding the others (one row per
        label). With many labels most coefficients are tiny -- a rare label
        leans on a few features -- and dropping them shrinks the model many
        times over while its predictions barely move. ``intercept_`` is
        kept. :meth:`predict`, :meth:`predict_proba`,
        :meth:`decision_function`, scorers and pickling work with the sparse
        ``coef_``; :meth:`densify` converts it back (without the pruned
        values), and :meth:`fit` and :meth:`partial_fit` make it dense again.

        Parameters
        ----------
        threshold : float, default=0.0
            Coefficients of magnitude below it are dropped. 0 drops only
            exact zeros, as scikit-learn's linear models' ``sparsify()``
            does. For a model that keeps a fraction ``q`` of the
            coefficients, take the ``1 - q`` quantile of ``abs(coef_)``
            (see :ref:`pruning`).

        Returns
        -------
        self : object
            The pruned estimator.
        """
        check_is_fitted(self)
        if not (np.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"threshold must be a non-negative number; got {threshold!r}.")
        coef = self.coef_
        if sparse.issparse(coef):
            coef = coef.tocsr()
            coef.data[np.abs(coef.data) < threshold] = 0
            coef.eliminate_zeros()
            self.coef_ = coef
            return self
        # Block by block of labels: the mask and the pruned copy of a block
        # are the only temporaries.
        step = max(1, 2**24 // max(1, coef.shape[1]))
        blocks = []
        for rows in gen_batches(coef.shape[0], step):
            block = coef[rows]
            blocks.append(sparse.csr_matrix(np.where(np.abs(block) >= threshold, block, 0)))
        self.coef_ = sparse.vstack(blocks, format="csr").astype(coef.dtype)
        return self

    def densify(self):
        """Make a pruned ``coef_`` (see :meth:`sparsify`) a dense array again.

        Returns
        -------
        self : object
            The estimator.
        """
        check_is_fitted(self)
        if sparse.issparse(self.coef_):
            self.coef_ = np.ascontiguousarray(self.coef_.toarray())
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None, n_samples_per_pass=None):
        """Learn from one chunk of the data: a pass over the data is several calls.

        ``C`` is :meth:`fit`'s ``C``: the penalty is weighed against the
        rows of one pass over the data (``n_samples_per_pass``). Given the
        pass length, the calls of each pass add up the chunks' exact
        Newton terms and the model takes one Newton step per pass;
        without it (a stream), each call is an epoch of mini-batch SGD on
        the chunk. See Notes.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.

        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_labels)
            Its targets, as for :meth:`fit`; a sparse chunk's targets are
            made dense (a chunk is a block of rows).

        classes : array-like, default=None
            For 1-D (and one-column) targets, the two class labels; needed
            on the first call unless that chunk holds both. For 2-D targets, optional: the
            label indices (only its length is checked). Ignored after the
            first call.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        n_samples_per_pass : float, default=None
            The rows of one pass over the data set that the chunks come from
            (with ``sample_weight``: their total weight). Kept for later
            calls until given again. None (never given): the rows seen so
            far, the right weight for a stream that never repeats.
            :class:`skbce.dask.Incremental` gives the rows of its ``X``.

        Returns
        -------
        self : object
            The updated estimator.

        Notes
        -----
        :meth:`fit` weighs the penalty ``||w||^2 / (2 C)`` against the
        losses of all ``N`` rows, ``||w||^2 / (2 C N)`` per row; so does
        ``partial_fit``, with ``N`` = ``n_samples_per_pass`` (with sample
        weights, weights replace rows), or all the rows seen so far
        (``n_samples_seen_``) when it was never given.

        **Newton passes** (``n_samples_per_pass`` given and ``l1_ratio=0``).
        A pass is the calls whose chunks' weight adds up to
        ``n_samples_per_pass`` (to a relative 1e-6), in any order. Each call
        adds its chunk's loss, gradient and Hessian of every label at the
        pass's point to running sums; the pass's last call takes one Newton
        step on them plus the penalty, :meth:`fit`'s objective on the
        pass's rows. The line search is spread over the passes, per label (a
        step that did not lower a label's objective enough is shortened and
        tested on the next pass), and a label stops by :meth:`fit`'s rule.
        The model is each label's best point so far: after the first pass
        it changes at most once per pass; during the first pass (from
        scratch) SGD gives it. The exact Hessians, ``n_labels *
        (n_features + 1)^2`` float64 values kept between calls, must fit
        the memory a :meth:`fit` of the pass's rows may use for its
        per-label work (``4 * rows * n_labels * 8`` bytes + 32 MiB, within
        scikit-learn's ``working_memory``); beyond it each pass keeps the
        Hessian of a weighted sample of its rows, SGD runs beside, and
        each label keeps the better of the two. For chunks that do not
        repeat, leave ``n_samples_per_pass`` unset.

        **SGD** (a stream, an L1 part, or too little memory for a sample of
        as many rows as a label has coefficients): one epoch of mini-batch
        SGD on the chunk, its step set from the first chunk's curvature; the
        model after each call is the average of the SGD iterates over the
        last pass. Repeated passes approach :meth:`fit`'s objective slowly
        on ill-conditioned data.

        How close 20 passes come to :meth:`fit`, and what a pass costs:
        :ref:`dask_stream`.
        """
        first = not hasattr(self, "coef_")
        if not first and sparse.issparse(self.coef_):
            self.densify()  # the Newton passes and SGD update dense coefficients
        X, y = self._validate_X_y(X, y, reset=first)
        dtype = X.dtype.type
        if first:
            Y = self._encode_targets(y, classes, dtype, first=True)
        else:
            Y = self._encode_targets(y, None, dtype, first=False)
        if sparse.issparse(Y):
            # A chunk is a block of rows: its targets are densified (uint8
            # for hard labels), as the Newton passes' sums read them by rows.
            Y = np.ascontiguousarray(Y.toarray())
        sample_weight = self._sample_weight(sample_weight, X)
        _partial_fit.start(self, X, Y, sample_weight, dtype, first)
        W = self._W.astype(dtype, copy=False)
        b = self._b.astype(dtype, copy=False)
        self._pass.add(X.shape[0], X.shape[0] if sample_weight is None else float(
            np.sum(sample_weight, dtype=np.float64)), n_samples_per_pass)
        self.n_samples_seen_ = self._pass.seen_rows
        with self._thread_limits(X):
            problem = self._problem(X, Y, sample_weight, self.pos_weight_,
                                    total=self._pass.weight)
            newton = _newton_passes.newton_state(self, problem, first)
            sgd = newton is None or newton.runs_sgd or newton.keeps_sgd
            if sgd:
                W_avg, b_avg = _partial_fit.epoch(self, problem, X, W, b, sample_weight)
            if newton is not None:
                newton.add(self, problem, X, Y, sample_weight, (W_avg, b_avg) if sgd else None)
                if not newton.runs_sgd:
                    W_avg, b_avg = (a.astype(dtype) for a in newton.published())
                    if not newton.keeps_sgd:
                        # SGD, if it comes back (another pass length), goes on from here.
                        W, b = W_avg.copy(), b_avg.copy()
            objective = problem.objective(W_avg, b_avg)
        self._W, self._b = W, b
        result = SolverResult(
            coef=W_avg.T, intercept=b_avg.copy(), n_iter=1, loss_curve=[], converged=None)
        self._store(result, dtype)
        self.solver_ = "sgd" if newton is None or newton.runs_sgd else "newton-passes"
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
        scores = self._scores(X)
        return scores.ravel() if self._one_d else scores

    def _scores(self, X):
        """``X @ coef_.T + intercept_`` of validated ``X``, dense, in ``X``'s dtype.

        A pruned (sparse) ``coef_`` is used as it is (see :meth:`sparsify`).
        """
        coef = self.coef_.astype(X.dtype, copy=False)
        scores = np.asarray(safe_sparse_dot(X, coef.T, dense_output=True))
        return scores + self.intercept_.astype(X.dtype, copy=False)

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
        """Logarithm of :meth:`predict_proba`, finite where it underflows to 0.

        The logarithm of the probability as :meth:`predict_proba` rounds it,
        so that the two agree in every precision: in float32 a probability
        within 6e-8 of 1 is 1, and its logarithm 0 (not the exact -3e-8),
        and equal probabilities have equal logarithms. Below the smallest
        normal number, where the probability has lost its digits or is 0,
        the exact ``log(expit(score))`` is given instead.

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
            scores = np.column_stack([-scores, scores])
        proba = expit(scores)
        tiny = proba < np.finfo(proba.dtype).tiny
        with np.errstate(divide="ignore"):
            log_proba = np.log(proba)
        log_proba[tiny] = log_expit(scores[tiny])
        return log_proba

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
        y_pred : ndarray or sparse matrix of shape (n_samples,) or (n_samples, n_labels)
            Class labels from ``classes_`` for 1-D targets. For 2-D targets a
            0/1 indicator matrix of the targets' dtype if they were integer or
            bool (pandas' nullable ``Int64`` and ``boolean``: ``int64`` and
            ``bool``), else ``int64``, as
            :class:`~sklearn.multiclass.OneVsRestClassifier` returns; a CSR
            matrix (``csr_array`` for scipy.sparse arrays) if the model was
            fitted on sparse targets, computed in blocks of rows.
        """
        if is_dask_collection(X):
            return self._blockwise(self.predict, X)
        if getattr(self, "_y_sparse", None) is not None:
            return self._predict_sparse(X)
        scores = self.decision_function(X)
        n_labels = 1 if self._one_d else scores.shape[1]
        threshold = self._threshold(n_labels)
        positive = expit(scores) >= threshold
        if self._one_d:
            return self.classes_[positive.astype(int)]
        return positive.astype(self._indicator_dtype())

    def _indicator_dtype(self):
        dtype = self._y_dtype
        if dtype is None or dtype.kind not in "biu":
            dtype = np.int64  # float 0/1 or soft targets: an indicator matrix
        return dtype

    def _predict_sparse(self, X):
        """:meth:`predict` of a model fitted on sparse targets: CSR, in blocks of rows.

        The scores of a block of rows exist only while its positives are
        picked: the dense ``(n_samples, n_labels)`` matrix is never formed.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                          dtype=[np.float64, np.float32])
        if sparse.issparse(X):
            X = X.tocsr()
        n_labels = len(self.classes_)
        threshold = self._threshold(n_labels)
        dtype = self._indicator_dtype()
        # Rows whose scores, probabilities and flags fit scikit-learn's working_memory.
        step = max(1, _working_memory_bytes() // (3 * 8 * max(1, n_labels)))
        blocks = []
        for rows in gen_batches(X.shape[0], step):
            positive = expit(self._scores(X[rows])) >= threshold
            blocks.append(sparse.csr_matrix(positive, dtype=dtype))
        out = (sparse.vstack(blocks, format="csr") if blocks
               else sparse.csr_matrix((0, n_labels), dtype=dtype))
        out = out.astype(dtype)
        return sparse.csr_array(out) if self._y_sparse == "array" else out

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
        if sparse.issparse(y) and y.shape[1] == 1:
            y = y.toarray()  # one column: the dense path's 1-D target
        if sparse.issparse(y):
            y = canonical_sparse(y, "csr")  # a repeated entry is read summed
            if y.dtype.kind == "f":  # soft targets, thresholded at 0.5
                y = sparse.csr_matrix((y.data >= 0.5, y.indices, y.indptr), shape=y.shape)
            y_pred = self.predict(X)
            if not sparse.issparse(y_pred):
                y_pred = sparse.csr_matrix(y_pred)
            return accuracy_score(y.astype(np.int64), sparse.csr_matrix(y_pred, dtype=np.int64),
                                  sample_weight=sample_weight)
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
