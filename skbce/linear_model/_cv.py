"""MultiLabelLogisticCV: the regularisation of each label chosen by cross-validation.

Design: a fold fits the whole path of ``Cs`` for *all* labels at once, from
the strongest penalty to the weakest, each fit warm-started from the last --
the labels' objectives are independent, so one joint fit per ``C`` gives
every label its own path at the cost of one multi-label fit. The folds walk
the path in step, one ``C`` at a time: after each ``C`` the mean score over
the folds tells which labels are past their best, and those leave the
path (its weakly penalised end is where the fits are slowest: the
Hessian's conditioning goes with ``C``). The choice is made per label from
the mean over folds. A refit fits each group of labels that chose the same
``C`` (at most ``len(Cs)`` joint fits, in increasing order of ``C``, each
warm-started from the last), which is again exact because the labels do
not interact.
"""

import threading
import warnings
from numbers import Integral

import numpy as np
from joblib import effective_n_jobs
from scipy import sparse
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.utils import Bunch, _safe_indexing
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _raise_for_params,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.validation import _check_method_params, check_is_fitted

from skbce._kernels import max_threads
from skbce.linear_model._logistic import MultiLabelLogistic
from skbce.metrics import binary_cross_entropy
from skbce.model_selection._split import blind_folds, check_multilabel_cv, warn_blind_folds

__all__ = ["MultiLabelLogisticCV"]

# The parameters a fold's or the refit's MultiLabelLogistic takes as they are.
_SHARED_PARAMS = (
    "l1_ratio", "fit_intercept", "solver", "max_iter", "tol", "label_smoothing",
    "threshold", "random_state",
)


# What a fit's problem computes from X and the sample weights alone, and so
# can hand on to the next C of a path (never "low": its float32 problem copy
# carries the penalty of its own C).
_PATH_SHARED = ("gram", "max_abs", "squares")

# MultiLabelLogistic's default C: what a label gets that some training fold
# cannot see (see ``fit``).
UNTUNED_C = 1.0

# A label leaves the path once its mean score over the folds has fallen at
# this many consecutive C's (the default of ``path_patience``).
PATH_PATIENCE = 2


def _never(self):
    return False


class _PathModel(MultiLabelLogistic):
    """MultiLabelLogistic for a path of C's, warm-started, on one training set.

    Each fit's problem takes over what the previous fit's problem computed
    from the same ``X`` and sample weights -- above all the Gram
    eigendecomposition that preconditions newton-cg on a small dense ``X``,
    else recomputed for every C (scene's folds, 969 x 294: about a fifth of
    the path's time). The solutions never depend on it: the preconditioner
    only steers the conjugate gradient.
    """

    def _problem(self, X, Y, sample_weight, pos_weight):
        problem = super()._problem(X, Y, sample_weight, pos_weight)
        cache = getattr(problem, "_cache", None)
        if not isinstance(cache, dict):
            return problem
        # The rows of X: the fold's training indices, which a fold's path
        # slices X with afresh at each C, else X itself.
        rows = getattr(self, "_path_rows", None)
        rows = X if rows is None else rows
        previous = getattr(self, "_path_problem", None)
        if previous is not None and previous[0] is rows and _same_weights(previous[1],
                                                                           sample_weight):
            cache.update({key: previous[2][key] for key in _PATH_SHARED if key in previous[2]})
        self._path_problem = (rows, sample_weight, cache)
        return problem

    def _store(self, result, dtype):
        super()._store(result, dtype)
        converged = result.converged
        self.n_unconverged_ = 0 if converged is None else int(
            np.count_nonzero(~np.asarray(converged, dtype=bool)))

    def fit(self, X, y, sample_weight=None):
        super().fit(X, y, sample_weight=sample_weight)
        # Only what the next C takes over stays: not the problem's other
        # entries (its float32 copy of X), which every fold would keep.
        if getattr(self, "_path_problem", None) is not None:
            rows, weights, cache = self._path_problem
            self._path_problem = (rows, weights, {key: cache[key] for key in _PATH_SHARED
                                                  if key in cache})
        return self

    def __getstate__(self):
        # A fold's model goes to a joblib worker and back at every C: not
        # with its cache, which holds arrays of the size of X's Gram matrix
        # and is keyed by identity (useless in another process).
        state = super().__getstate__()
        state.pop("_path_problem", None)
        return state

    def keep_labels(self, rows):
        """Keep the fitted coefficients of the label rows ``rows``: the next warm start."""
        self.coef_ = np.ascontiguousarray(self.coef_[rows])
        self.intercept_ = self.intercept_[rows]
        self._fitted_shape = self.coef_.shape


def _same_weights(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and np.array_equal(a, b)


class _LabelOutputs(ClassifierMixin, BaseEstimator):
    """A fitted model's output for some labels, as a classifier a scorer can call.

    Scorers call ``predict``, ``predict_proba`` or ``decision_function`` of
    an estimator; this one answers from logits computed once per fit (for
    the test rows ``X_test``, recognised by identity) instead of recomputing
    them for every label and scorer. ``label`` selects one label (a binary
    classifier with ``classes``), or None for all of them.
    """

    def __init__(self, model, X_test, logits, label, classes, threshold, one_d):
        self.model = model
        self.X_test = X_test
        self.logits = logits
        self.label = label
        self.classes = classes
        self.threshold = threshold
        self.one_d = one_d
        self.classes_ = classes

    def _binary(self):
        return self.one_d or self.label is not None

    def decision_function(self, X):
        logits = self.logits if X is self.X_test else self.model.decision_function(X)
        logits = logits.reshape(len(logits), -1)
        if self.label is not None:
            return logits[:, self.label]
        return logits[:, 0] if self.one_d else logits

    def predict_proba(self, X):
        logits = self.decision_function(X)
        if self._binary():
            return np.column_stack([expit(-logits), expit(logits)])
        return expit(logits)

    def predict(self, X):
        logits = self.decision_function(X)
        threshold = self.threshold
        if self.label is not None and np.ndim(threshold) == 1:
            threshold = threshold[self.label]
        positive = expit(logits) >= threshold
        if self._binary():
            return np.asarray(self.classes)[positive.astype(int)]
        return positive.astype(int)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = not self._binary()
        return tags


def _fold_step(model, X, Y, y, sample_weight, train, test, C, labels, scoring, per_label,
               score_params, classes, one_d, threshold):
    """Fit one fold's model at ``C`` to the label columns ``labels``; score it.

    ``model`` holds the fold's solution at the previous ``C`` for these
    labels (its warm start). Returns the fitted model, the held-out scores
    (one per label of ``labels`` with ``per_label``, else one number), the
    iterations and the number of labels that did not converge.
    """
    X_train, X_test = _safe_indexing(X, train), _safe_indexing(X, test)
    Y_train, Y_test = Y[train][:, labels], Y[test][:, labels]
    sw_train = None if sample_weight is None else sample_weight[train]
    sw_test = None if sample_weight is None else sample_weight[test]
    score_params = _check_method_params(X, params=score_params, indices=test)
    model._path_rows = train  # the same rows at every C: the problem's cache carries over
    n_unconverged = _fit_quietly(model.set_params(C=C), X_train, Y_train, sw_train)
    n_labels = len(labels)
    logits = np.reshape(model.decision_function(X_test), (len(test), -1))[:, :n_labels]
    if scoring is None:
        # The negated BCE, weighted as the training objective is.
        per_label_loss = binary_cross_entropy(
            Y_test, logits, from_logits=True, sample_weight=sw_test, axis=0)
        scores = -per_label_loss if per_label else -np.mean(per_label_loss)
    elif per_label:
        scores = np.empty(n_labels)
        for i, j in enumerate(labels):
            label_threshold = threshold[j] if np.ndim(threshold) == 1 else threshold
            outputs = _LabelOutputs(model, X_test, logits, i, classes, label_threshold, one_d)
            scores[i] = scoring(outputs, X_test, y[test] if one_d else Y_test[:, i],
                                **score_params)
    else:
        outputs = _LabelOutputs(model, X_test, logits, None, classes, threshold, one_d)
        scores = scoring(outputs, X_test, y[test], **score_params)
    return model, scores, model.n_iter_, n_unconverged


def _past_best(means, step, patience):
    """Whether each label's mean score fell at each of the last ``patience`` steps.

    ``means`` (n_Cs, n_labels) holds the mean fold scores up to row
    ``step``. A falling score (a strict decrease, not a plateau; NaN never
    falls) past the best is the usual shape of a validation curve once the
    penalty is too weak: the model fits the training rows' noise more and
    more.
    """
    if patience is None or step < patience:
        return np.zeros(means.shape[1:], dtype=bool)
    window = means[step - patience:step + 1]
    return np.all(window[1:] < window[:-1], axis=0)


def _nearest_untuned(Cs):
    """Index of the C of ``Cs`` nearest (in log scale) the untuned C; the smaller of two."""
    distance = np.abs(np.log(Cs) - np.log(UNTUNED_C))
    return int(np.flatnonzero(np.isclose(distance, distance.min()))[0])


def _fit_labels(model, X, Y, sample_weight):
    """Fit ``model`` to the label columns ``Y``, however many there are.

    MultiLabelLogistic reads a single column as a 1-D binary target, which
    must hold both classes; a label that is constant in the data is fitted
    (as it would be among other labels) in a 2-D target, twice over: the
    model's first row is then that label's.
    """
    if Y.shape[1] == 1 and sparse.issparse(Y):
        Y = Y.toarray()  # one column: n values
    if Y.shape[1] == 1 and np.all(Y == Y[0, 0]) and Y[0, 0] in (0, 1):
        Y = np.repeat(Y, 2, axis=1)
    return model.fit(X, Y, sample_weight=sample_weight)


# MultiLabelLogistic's own convergence warning: each fit of a path would give
# one; the estimator gives one for all of them instead.
_FIT_WARNING = r"MultiLabelLogistic \(solver="


def _fit_quietly(model, X, Y, sample_weight):
    """Fit ``model`` without its convergence warning; return its unconverged labels.

    Warning filters are global to the process and ``catch_warnings`` is not
    thread-safe: in a worker thread the fit warns freely, and the caller,
    which holds the filter around all its threads, silences the warning.
    """
    if threading.current_thread() is not threading.main_thread():
        _fit_labels(model, X, Y, sample_weight)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FIT_WARNING,
                                    category=ConvergenceWarning)
            _fit_labels(model, X, Y, sample_weight)
    return model.n_unconverged_


def _refit_path(model, X, Y, sample_weight, C_per_label, pos_weight):
    """Fit the labels of ``Y`` on all the data, each with its C: a path over the chosen C's.

    The first (smallest) chosen C is fitted for all labels from the
    intercept-only start; each next one, warm, for the labels that chose it
    or a larger C. The result depends on the data and the C's alone: not on
    the folds (whose solutions carry their own rounding, and would make
    equivalent weightings of the data refit differently), only on which
    other labels shared a fit, within ``tol``.
    """
    n_labels = Y.shape[1]
    coef = intercept = None
    n_iter = n_unconverged = 0
    held = None
    for C in np.unique(C_per_label):
        labels = np.flatnonzero(C_per_label >= C)
        if held is not None:
            model.keep_labels(np.searchsorted(held, labels))
        model.set_params(C=C, pos_weight=None if pos_weight is None else pos_weight[labels])
        n_unconverged = max(n_unconverged, _fit_quietly(model, X, Y[:, labels], sample_weight))
        held = labels
        if coef is None:
            coef = np.empty((n_labels, model.coef_.shape[1]), dtype=model.coef_.dtype)
            intercept = np.empty(n_labels, dtype=model.intercept_.dtype)
        done = C_per_label[labels] == C
        coef[labels[done]] = model.coef_[:len(labels)][done]
        intercept[labels[done]] = model.intercept_[:len(labels)][done]
        n_iter = max(n_iter, model.n_iter_)
    return Bunch(coef=coef, intercept=intercept, n_iter=n_iter, n_unconverged=n_unconverged,
                 solver=model.solver_)


class MultiLabelLogisticCV(MultiLabelLogistic):
    """Multi-label logistic regression with ``C`` chosen per label by cross-validation.

    For every fold, the path of ``Cs`` is fitted with warm starts -- all
    labels jointly, one :class:`MultiLabelLogistic` fit per ``C`` -- and
    every label is scored on the held-out rows at every ``C``, until its
    mean score over the folds has clearly passed its best (see
    ``path_patience``). Each label
    then gets the ``C`` of its best mean score over the folds
    (``per_label=True``), or all labels share the ``C`` of the best mean
    score over labels and folds (``per_label=False``). With ``refit=True``
    the model is refitted on all the data with the chosen ``C`` of each
    label. It is otherwise a :class:`MultiLabelLogistic`: the same targets
    (1-D binary labels, a 0/1 indicator matrix, soft targets), sparse ``X``,
    ``sample_weight``, and the same prediction methods.

    The labels' objectives do not interact, so a label's coefficients are
    those :class:`MultiLabelLogistic` (or ``LogisticRegression``) would
    fit on that label alone with its ``C``: for a binary target the choice is
    that of ``LogisticRegressionCV`` given the same folds and scoring, while
    all labels share each fit's passes over the data.

    Read more in the :ref:`User Guide <cross_validation>`.

    Parameters
    ----------
    Cs : int or array-like of shape (n_Cs,), default=10
        The values of ``C`` (inverse regularisation strength) to try; an int
        ``n`` means ``n`` values from 1e-4 to 1e4 on a log scale, as in
        ``LogisticRegressionCV``. Each fold fits them in increasing order,
        each fit starting from the previous solution.

    cv : int, cross-validation generator or iterable, default=None
        The splitting of the rows: None means 5 folds; an int the number of
        folds, stratified -- ``StratifiedKFold`` for a binary 1-D target,
        :class:`~skbce.model_selection.MultiLabelStratifiedKFold` (with its
        fixed seed 0: the same folds at every fit) for a multi-label or soft
        target, which spreads every label's positives over the folds while
        keeping one set of folds for all labels, as the joint path needs; or
        a splitter or an iterable of (train, test) index arrays, used as
        given. A label whose positives (or negatives) some training fold
        lacks is warned about (a
        :class:`~skbce.model_selection.FoldWarning` naming the labels and the
        folds), whatever the splitter, and is not tuned: it gets ``C=1``,
        :class:`MultiLabelLogistic`'s default (with ``refit=False``: the
        value of ``Cs`` nearest 1), as the folds cannot score its choices.

    scoring : str, callable or None, default=None
        The score to maximise. None means minus the mean binary cross-entropy
        of the held-out rows, weighted by ``sample_weight`` (the measure
        :data:`skbce.bce_scorer` gives). A scorer name or a
        ``scorer(estimator, X, y)`` callable is called once per label with
        ``per_label=True`` -- with an estimator that acts as a binary
        classifier of that label and that label's targets -- and once for
        all labels otherwise.

    per_label : bool, default=True
        Whether each label gets its own ``C`` (``C_`` has one entry per
        label) or all labels share one (``C_`` is a float).

    refit : bool, default=True
        Whether to refit on all the data with the chosen ``C``. If False,
        ``coef_`` and ``intercept_`` are the means over the folds of the
        fold models' coefficients at each label's chosen ``C``.

    l1_ratio : float in [0, 1], default=0.0
        The elastic-net mixing parameter, see :class:`MultiLabelLogistic`.

    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept per label.

    solver : {"auto", "newton-cg", "lbfgs", "gd", "sgd"}, default="auto"
        The optimiser of every fit, see :class:`MultiLabelLogistic`.

    tol : float, default=1e-4
        Tolerance of each fit's stopping rule.

    max_iter : int, default=1000
        Maximum number of iterations of each fit.

    pos_weight : float, array-like of shape (n_labels,), "balanced" or None, \
            default=None
        Weight of the positive term of the training loss; ``"balanced"`` is
        resolved on each fold's training rows. The default score does not
        use it.

    label_smoothing : float in [0, 1), default=0.0
        Label smoothing of the training targets (not of the scored ones).

    threshold : float or array-like of shape (n_labels,), default=0.5
        :meth:`predict`'s probability threshold, one number or one per
        label; also what a scorer that calls ``predict`` sees in the folds.

    n_jobs : int, default=None
        Number of folds fitted in parallel with joblib (None means 1 unless
        in a :obj:`joblib.parallel_backend` context; -1 means all
        processors): the folds' fits at one ``C`` at a time, in threads
        unless the joblib context chooses another backend (a dask backend
        spreads the folds over a cluster). Each fit's kernels then use its
        share of the cores (all of them with sequential folds).

    verbose : int, default=0
        joblib's progress lines with ``verbose>=1``; the fits' own progress
        with ``verbose>=2``.

    random_state : int, RandomState instance or None, default=None
        Seeds ``solver="sgd"``; the folds come from ``cv`` (an int shuffles
        and stratifies with a fixed seed; pass a splitter for other folds).

    path_patience : int or None, default=2
        A label leaves the path once its mean score over the folds has
        fallen at ``path_patience`` consecutive values of ``C`` (strictly,
        each below the one before): its score is then past its best, on
        the falling side of the validation curve where a weaker penalty
        only fits more of the training rows' noise, and the remaining,
        weaker penalties -- the slowest fits of the path -- are not fitted
        for it. With ``per_label=False`` the whole path stops once the mean
        over the labels has. None fits every ``C`` for every label.

    Attributes
    ----------
    C_ : ndarray of shape (n_labels,) or float
        The chosen ``C`` of each label (one entry for a 1-D target), or the
        shared one with ``per_label=False``.

    Cs_ : ndarray of shape (n_Cs,)
        The values of ``C`` tried, in increasing order.

    scores_ : ndarray of shape (n_folds, n_Cs, n_labels) or (n_folds, n_Cs)
        The score of every fold and ``C`` (and label with
        ``per_label=True``); greater is better. NaN at the values of ``C``
        after a label left the path (see ``path_patience``).

    coef_ : ndarray of shape (n_labels, n_features) or (1, n_features)
        Coefficients of the features, one row per label.

    intercept_ : ndarray of shape (n_labels,) or (1,)
        Intercepts.

    classes_ : ndarray
        As for :class:`MultiLabelLogistic`: the two classes of a 1-D target,
        ``arange(n_labels)`` for a 2-D one.

    n_iter_ : ndarray of shape (n_folds, n_Cs)
        Iterations of each fold's fit at each ``C`` (the maximum over the
        labels; 0 once every label has left the path).

    refit_n_iter_ : int
        Iterations of the refit (the maximum over its fits); 0 when
        ``refit=False``.

    pos_weight_ : ndarray of shape (n_labels,) or None
        The positive-class weights of the refit (``"balanced"`` resolved on
        all the data).

    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`. Defined only when ``X``
        has feature names that are all strings.

    See Also
    --------
    MultiLabelLogistic : The model with a given ``C``.
    MultiLabelThresholdCV : Tune the decision threshold of each label.
    sklearn.linear_model.LogisticRegressionCV : One binary or multiclass target.

    Examples
    --------
    >>> from sklearn.datasets import make_multilabel_classification
    >>> from skbce import MultiLabelLogisticCV
    >>> X, Y = make_multilabel_classification(n_samples=200, n_features=8,
    ...                                       n_classes=3, random_state=0)
    >>> model = MultiLabelLogisticCV(Cs=5, cv=3).fit(X, Y)
    >>> model.Cs_
    array([1.e-04, 1.e-02, 1.e+00, 1.e+02, 1.e+04])
    >>> model.C_
    array([1.  , 1.  , 0.01])
    >>> model.scores_.shape
    (3, 5, 3)
    >>> model.predict(X[:2])
    array([[0, 1, 1],
           [0, 0, 1]])
    """

    _parameter_constraints: dict = {
        **{key: MultiLabelLogistic._parameter_constraints[key]
           for key in _SHARED_PARAMS + ("pos_weight", "verbose")},
        "Cs": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "per_label": ["boolean"],
        "refit": ["boolean"],
        "n_jobs": [Integral, None],
        "path_patience": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        Cs=10,
        cv=None,
        scoring=None,
        per_label=True,
        refit=True,
        l1_ratio=0.0,
        fit_intercept=True,
        solver="auto",
        tol=1e-4,
        max_iter=1000,
        pos_weight=None,
        label_smoothing=0.0,
        threshold=0.5,
        n_jobs=None,
        verbose=0,
        random_state=None,
        path_patience=PATH_PATIENCE,
    ):
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.per_label = per_label
        self.refit = refit
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.pos_weight = pos_weight
        self.label_smoothing = label_smoothing
        self.threshold = threshold
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state
        self.path_patience = path_patience

    # A CV estimator is fitted in one go, as LogisticRegressionCV is.
    partial_fit = available_if(_never)(MultiLabelLogistic.partial_fit)

    def _candidate_Cs(self):
        if isinstance(self.Cs, Integral):
            return np.logspace(-4, 4, self.Cs)
        Cs = np.asarray(self.Cs, dtype=np.float64)
        if Cs.ndim != 1 or Cs.size == 0 or not np.all(Cs > 0):
            raise ValueError(f"Cs must be a positive int or a 1-D array of positive values; "
                             f"got {self.Cs!r}.")
        return np.sort(Cs)

    def _model(self, kind=MultiLabelLogistic, **params):
        """A MultiLabelLogistic with this estimator's shared parameters."""
        shared = {key: getattr(self, key) for key in _SHARED_PARAMS}
        return kind(**shared, verbose=max(0, self.verbose - 1), **params)

    def _scorer(self):
        return None if self.scoring is None else check_scoring(self, scoring=self.scoring)

    def _routed_params(self, sample_weight, params):
        if _routing_enabled():
            return process_routing(self, "fit", sample_weight=sample_weight, **params)
        _raise_for_params(params, self, "fit")
        # As LogisticRegressionCV does without routing: the scorer gets the
        # sample weights the fits get.
        score = {} if sample_weight is None else {"sample_weight": sample_weight}
        return Bunch(splitter=Bunch(split={}), scorer=Bunch(score=score))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, **params):
        """Choose ``C`` by cross-validation, then fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; CSR and CSC matrices are used as they are.

        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_labels)
            Binary labels, a 0/1 multi-label indicator matrix, or soft
            targets in [0, 1]. A scipy.sparse matrix or array stays sparse
            (see :meth:`MultiLabelLogistic.fit`).

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample, used by every fit and the
            default score; also passed to a ``scoring`` scorer (with metadata
            routing enabled: if the scorer requests it).

        **params : dict
            With metadata routing enabled, metadata for the splitter (e.g.
            ``groups``) and the scorer.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y = self._validate_X_y(X, y, reset=True)
        Y = self._encode_targets(y, None, X.dtype.type, first=True)
        sample_weight = self._sample_weight(sample_weight, X)
        self._resolved_solver()  # rejects a solver that cannot take l1_ratio
        Cs = self._candidate_Cs()
        routed = self._routed_params(sample_weight, params)
        folds = list(check_multilabel_cv(self.cv, y).split(X, y, **routed.splitter.split))
        blind = self._blind_labels(Y, folds, Cs)
        path = self._path(X, Y, y, sample_weight, Cs, folds, routed.scorer.score, blind)
        self.Cs_ = Cs
        self.scores_, self.n_iter_ = path.scores, path.n_iter
        self._warn_unconverged(path.n_unconverged, Y.shape[1])
        C_per_label = Cs[path.best]
        if self.refit:
            C_per_label[blind] = UNTUNED_C
        self.C_ = C_per_label if self.per_label else float(C_per_label[0])
        dtype = X.dtype.type
        if self.refit:
            self._refit(X, Y, sample_weight, C_per_label, dtype)
        else:
            # The mean over the folds of each label's solution at its chosen C.
            self.coef_ = np.ascontiguousarray(path.coef_sum / len(folds), dtype=dtype)
            self.intercept_ = (path.intercept_sum / len(folds)).astype(dtype)
            self.refit_n_iter_ = 0
            self.pos_weight_ = self._resolve_pos_weight(Y, sample_weight)
        return self

    def _blind_labels(self, Y, folds, Cs):
        """The labels some training fold cannot see, warned about; bool (n_labels,).

        With ``per_label=False`` the labels share one C: the warning alone.
        """
        blind = blind_folds(Y, folds)
        if self.refit:
            fallback = f"MultiLabelLogistic's default C={UNTUNED_C:g}"
        else:
            fallback = f"the C of Cs nearest {UNTUNED_C:g} ({Cs[_nearest_untuned(Cs)]:.3g})"
        if not self.per_label:
            fallback = "the C shared by all labels, chosen on folds that include these"
        warn_blind_folds(type(self).__name__, blind, fallback)
        return blind.any(axis=0) & self.per_label

    def _path(self, X, Y, y, sample_weight, Cs, folds, score_params, blind):
        """Walk the path of ``Cs`` in all folds at once; labels leave it past their best.

        Returns the scores (NaN where a label had left), iterations, the
        labels that did not converge, each label's best C (its index) and
        the sums over the folds of its solution there. A ``blind`` label's
        best is the C of ``Cs`` nearest the untuned one, whatever its scores.
        """
        pinned = _nearest_untuned(Cs)
        scorer = self._scorer()
        n_folds, n_Cs, (n_labels, n_features) = len(folds), len(Cs), (Y.shape[1], X.shape[1])
        scores = np.full((n_folds, n_Cs, n_labels) if self.per_label else (n_folds, n_Cs),
                         np.nan)
        n_iter = np.zeros((n_folds, n_Cs), dtype=np.int64)
        n_unconverged = np.zeros((n_folds, n_Cs), dtype=np.int64)
        best = np.zeros(n_labels, dtype=np.intp)
        coef_sum = np.zeros((n_labels, n_features))
        intercept_sum = np.zeros(n_labels)
        # Folds in parallel share the cores: each fit's kernels get its share.
        _, fold_threads = self._n_workers(n_folds)
        models = [self._model(_PathModel, warm_start=True, n_jobs=fold_threads) for _ in folds]
        labels = fitted = np.arange(n_labels)  # on the path; held by the fold models
        # Threads unless the joblib context says otherwise: the fits' kernels
        # release the GIL, and a fold's model (its warm start) stays where it is.
        with Parallel(n_jobs=self.n_jobs, verbose=self.verbose, prefer="threads") as parallel, \
                warnings.catch_warnings():
            # For the fits in worker threads (see _fit_quietly).
            warnings.filterwarnings("ignore", message=_FIT_WARNING, category=ConvergenceWarning)
            for step, C in enumerate(Cs):
                if len(labels) < len(fitted):
                    rows = np.searchsorted(fitted, labels)
                    for model in models:
                        model.keep_labels(rows)
                results = parallel(
                    delayed(_fold_step)(
                        model, X, Y, y, sample_weight, train, test, C, labels, scorer,
                        self.per_label, score_params, self.classes_, self._one_d,
                        self.threshold,
                    )
                    for model, (train, test) in zip(models, folds)
                )
                models = [result[0] for result in results]
                fitted = labels
                for fold, (_, fold_scores, iters, unconverged) in enumerate(results):
                    if self.per_label:
                        scores[fold, step, labels] = fold_scores
                    else:
                        scores[fold, step] = fold_scores
                    n_iter[fold, step], n_unconverged[fold, step] = iters, unconverged
                means = scores.mean(axis=0)
                if not self.per_label:
                    means = np.repeat(means[:, None], n_labels, axis=1)
                better = (step == 0) | (means[step, labels] > means[best[labels], labels])
                improved = labels[np.where(blind[labels], step == pinned, better)]
                best[improved] = step
                rows = np.searchsorted(labels, improved)
                coef_sum[improved] = sum(m.coef_[:len(labels)][rows] for m in models)
                intercept_sum[improved] = sum(m.intercept_[:len(labels)][rows] for m in models)
                # A blind label stays on the path up to its pinned C.
                labels = labels[~_past_best(means[:step + 1, labels], step, self.path_patience)
                                | (blind[labels] & (step < pinned))]
                if not len(labels):
                    break
        return Bunch(scores=scores, n_iter=n_iter, n_unconverged=n_unconverged, best=best,
                     coef_sum=coef_sum, intercept_sum=intercept_sum)

    def _warn_unconverged(self, n_unconverged, n_labels):
        if np.any(n_unconverged):
            fold, step = np.unravel_index(np.argmax(n_unconverged), n_unconverged.shape)
            warnings.warn(
                f"MultiLabelLogisticCV: fits did not converge within max_iter={self.max_iter} "
                f"iterations at {int(np.sum(np.any(n_unconverged, axis=0)))} of "
                f"{len(self.Cs_)} values of C (at worst {n_unconverged[fold, step]} of "
                f"{n_labels} label(s), C={self.Cs_[step]:.3g}). Increase max_iter, or "
                "scale the data (e.g. with StandardScaler).",
                ConvergenceWarning,
            )

    def _n_workers(self, n_tasks):
        """Tasks run at once by joblib, and the kernel threads of each one's fits."""
        n_workers = max(1, min(n_tasks, effective_n_jobs(self.n_jobs)))
        return n_workers, None if n_workers == 1 else max(1, max_threads() // n_workers)

    def _refit(self, X, Y, sample_weight, C_per_label, dtype):
        """Fit every label on all the data with its C (see ``_refit_path``).

        With ``n_jobs``, the labels are dealt out to that many refit paths
        run side by side, each with labels of every chosen C.
        """
        n_labels = Y.shape[1]
        pos_weight = self._resolve_pos_weight(Y, sample_weight)
        n_workers, threads = self._n_workers(n_labels)
        order = np.argsort(C_per_label, kind="stable")
        groups = [np.sort(order[start::n_workers]) for start in range(n_workers)]
        with Parallel(n_jobs=n_workers, prefer="threads") as parallel, \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FIT_WARNING, category=ConvergenceWarning)
            results = parallel(
                delayed(_refit_path)(
                    self._model(_PathModel, warm_start=True, n_jobs=threads), X, Y[:, labels],
                    sample_weight, C_per_label[labels],
                    None if pos_weight is None else pos_weight[labels],
                )
                for labels in groups
            )
        coef = np.empty((n_labels, X.shape[1]), dtype=dtype)
        intercept = np.empty(n_labels, dtype=dtype)
        for labels, result in zip(groups, results):
            coef[labels], intercept[labels] = result.coef, result.intercept
        n_unconverged = max(result.n_unconverged for result in results)
        if n_unconverged:
            warnings.warn(
                f"MultiLabelLogisticCV: the refit did not converge within max_iter="
                f"{self.max_iter} iterations (at worst for {n_unconverged} of the labels "
                "of one of its fits). Increase max_iter, or scale the data (e.g. with "
                "StandardScaler).",
                ConvergenceWarning,
            )
        self.coef_, self.intercept_ = coef, intercept
        self.refit_n_iter_ = max(result.n_iter for result in results)
        self.solver_ = results[-1].solver
        self.pos_weight_ = pos_weight
        self._fitted_shape = coef.shape

    def score(self, X, y, sample_weight=None, **score_params):
        """The ``scoring`` score on the given data (greater is better).

        Minus the mean BCE for ``scoring=None``; with ``per_label=True`` the
        mean over labels of the per-label scores.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Test samples.

        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            True labels or soft targets.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        **score_params : dict
            With metadata routing enabled, metadata for the scorer.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        if sample_weight is not None:
            score_params["sample_weight"] = sample_weight
        if _routing_enabled():
            routed = process_routing(self, "score", **score_params).scorer.score
        else:
            _raise_for_params(score_params, self, "score")
            routed = score_params
        logits = self.decision_function(X)
        y = y if sparse.issparse(y) else np.asarray(y)
        Y = self._encode_targets(y, None, np.float64, first=False)
        scorer = self._scorer()
        if scorer is None:
            return -binary_cross_entropy(Y, logits.reshape(Y.shape[0], -1), from_logits=True,
                                         sample_weight=sample_weight)
        if not self.per_label:
            return scorer(self, X, y, **routed)
        scores = [
            scorer(_LabelOutputs(self, X, logits, j, self.classes_, self.threshold, self._one_d),
                   X, y if self._one_d else Y[:, j], **routed)
            for j in range(Y.shape[1])
        ]
        return float(np.mean(scores))

    def get_metadata_routing(self):
        """Get metadata routing of this object.

        Returns
        -------
        routing : MetadataRouter
            Where ``fit`` and ``score`` send their metadata: ``groups`` and
            the like to the splitter, requested metadata to the scorer.
        """
        router = MetadataRouter(owner=self.__class__.__name__).add_self_request(self)
        router.add(
            splitter=check_multilabel_cv(self.cv),
            method_mapping=MethodMapping().add(caller="fit", callee="split"),
        )
        if self.scoring is not None:
            router.add(
                scorer=self._scorer(),
                method_mapping=MethodMapping().add(caller="fit", callee="score")
                .add(caller="score", callee="score"),
            )
        return router
