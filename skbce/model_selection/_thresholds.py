"""MultiLabelThresholdCV: the decision threshold of each label, tuned by cross-validation.

Design: the wrapped classifier is fitted on each training fold and its
probabilities for the held-out rows are pooled into one out-of-fold matrix
``P`` of shape (n_samples, n_labels). The thresholds are then chosen on
``P`` alone -- no refitting per candidate. For the usual binary metrics
(F1, precision, recall, Jaccard, accuracy, balanced accuracy) and their
micro averages a label's confusion counts at every candidate come from one
sort of its column, so all candidates cost about one pass; any other scorer
is called once per candidate (and label) on the thresholded predictions.
Metrics that couple the labels (micro or per-sample averages) are maximised
jointly, one label at a time with the others fixed, until no label moves.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    check_scoring,
    f1_score,
    get_scorer_names,
    jaccard_score,
    precision_score,
    recall_score,
)
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.multioutput import ClassifierChain
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch, _safe_indexing, get_tags, indexable
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    _assert_all_finite,
    _check_method_params,
    _num_samples,
    check_is_fitted,
)

from skbce._scorer import _positive_column
from skbce.model_selection._split import blind_folds, check_multilabel_cv, warn_blind_folds

__all__ = ["MultiLabelThresholdCV"]

# Averages under which a metric couples the labels: tuned jointly.
_JOINT_AVERAGES = {"micro", "macro", "samples", "weighted"}
# Coordinate-ascent sweeps over the labels of a joint metric (each sweep only
# moves a label that strictly improves the score, so it stops by itself;
# this bounds the pathological case).
_MAX_SWEEPS = 20
# The default decision threshold of a probabilistic classifier: always a
# candidate, and the choice among equally good ones.
_DEFAULT = 0.5


def _estimator_has(name):
    def check(self):
        return hasattr(getattr(self, "estimator_", self.estimator), name)
    return check


# -- confusion counts at many thresholds ------------------------------------

def _counts(p, y, w, candidates):
    """Weighted (tp, fp, fn, tn) of ``p >= t`` for every candidate ``t``."""
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    pos = (y[order] * w[order]).astype(np.float64)
    neg = ((1 - y[order]) * w[order]).astype(np.float64)
    # Positives and negatives at or above each sorted position.
    pos_above = np.concatenate([np.cumsum(pos[::-1])[::-1], [0.0]])
    neg_above = np.concatenate([np.cumsum(neg[::-1])[::-1], [0.0]])
    first = np.searchsorted(p_sorted, candidates, side="left")
    tp, fp = pos_above[first], neg_above[first]
    return tp, fp, pos_above[0] - tp, neg_above[0] - fp


def _ratio(num, den):
    """num / den, 0 where den is 0 (scikit-learn's zero_division default)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _balanced_accuracy(tp, fp, fn, tn):
    pos, neg = tp + fn, tn + fp
    if np.all(pos == 0) or np.all(neg == 0):  # one class in y: its recall alone
        return _ratio(tp + tn, pos + neg)
    return (_ratio(tp, pos) + _ratio(tn, neg)) / 2


_COUNT_METRICS = {
    f1_score: lambda tp, fp, fn, tn: _ratio(2 * tp, 2 * tp + fp + fn),
    precision_score: lambda tp, fp, fn, tn: _ratio(tp, tp + fp),
    recall_score: lambda tp, fp, fn, tn: _ratio(tp, tp + fn),
    jaccard_score: lambda tp, fp, fn, tn: _ratio(tp, tp + fp + fn),
    accuracy_score: lambda tp, fp, fn, tn: _ratio(tp + tn, tp + fp + fn + tn),
    balanced_accuracy_score: _balanced_accuracy,
}


def _count_metric(scorer, joint):
    """The counts formula equal to ``scorer``, or None if there is none."""
    func = getattr(scorer, "_score_func", None)
    kwargs = dict(getattr(scorer, "_kwargs", {}) or {})
    if func not in _COUNT_METRICS or getattr(scorer, "_sign", 1) != 1:
        return None
    if getattr(scorer, "_response_method", "predict") != "predict":
        return None
    average = kwargs.pop("average", "binary")
    if joint and average != "micro" or not joint and average not in ("binary", None):
        return None
    if func in (accuracy_score, balanced_accuracy_score) and joint:
        return None
    pos_label = kwargs.pop("pos_label", 1)
    # Averaged scorers carry pos_label=None, which averages over labels ignore.
    if pos_label != 1 and not (joint and pos_label is None):
        return None
    if kwargs.pop("zero_division", "warn") not in ("warn", 0):
        return None
    return None if kwargs else _COUNT_METRICS[func]


# -- scorers on thresholded probabilities -------------------------------------

class _Thresholded(ClassifierMixin, BaseEstimator):
    """Probabilities and a threshold, as a fitted classifier a scorer can call.

    ``X`` is ignored: the scorer is always called on the rows of ``proba``.
    """

    def __init__(self, proba, threshold, classes, binary):
        self.proba = proba
        self.threshold = threshold
        self.classes = classes
        self.binary = binary
        self.classes_ = classes

    def predict_proba(self, X):
        if self.binary:
            return np.column_stack([1 - self.proba, self.proba])
        return self.proba

    def predict(self, X):
        positive = (self.proba >= self.threshold).astype(int)
        return np.asarray(self.classes)[positive] if self.binary else positive

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = not self.binary
        return tags


class _Objective:
    """The score of thresholds on the out-of-fold probabilities ``P``."""

    def __init__(self, scorer, P, Y, y, classes, one_d, score_params):
        self.scorer, self.P, self.Y, self.y = scorer, P, Y, y  # Y: ndarray or CSC
        self.classes, self.one_d = classes, one_d
        self.score_params = score_params
        weights = score_params.get("sample_weight")
        self.w = np.ones(len(P)) if weights is None else np.asarray(weights, dtype=np.float64)
        average = (getattr(scorer, "_kwargs", None) or {}).get("average")
        self.joint = average in _JOINT_AVERAGES and not one_d
        self.fast = _count_metric(scorer, self.joint)
        self._X = np.empty((len(P), 0))
        self._memo = {}

    def label_scores(self, j, candidates):
        """Score of a binary metric on label ``j`` at each candidate."""
        if self.fast is not None:
            return self.fast(*_counts(self.P[:, j], self._label(j), self.w, candidates))
        y = self.y if self.one_d else self._label(j)
        classes = self.classes if self.one_d else np.array([0, 1])
        return self._call([_Thresholded(self.P[:, j], t, classes, True) for t in candidates], y)

    def _label(self, j):
        """The targets of label ``j``, a dense vector."""
        if sparse.issparse(self.Y):
            return self.Y[:, [j]].toarray().ravel()
        return self.Y[:, j]

    def _call(self, outputs, y):
        """The scorer on each of ``outputs``."""
        with warnings.catch_warnings():
            # Candidates that predict no label at all are part of the search.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            return np.array([self.scorer(o, self._X, y, **self.score_params) for o in outputs])

    def _counts_at(self, j, threshold):
        """Label ``j``'s counts at one threshold, remembered: a sweep moves few labels."""
        key = (j, float(threshold))
        if key not in self._memo:
            self._memo[key] = np.ravel(_counts(self.P[:, j], self._label(j), self.w, [threshold]))
        return self._memo[key]

    def shared_scores(self, candidates):
        """Score of one threshold for all labels, at each candidate."""
        n_labels = self.P.shape[1]
        if not self.joint:
            return np.mean([self.label_scores(j, candidates) for j in range(n_labels)], axis=0)
        if self.fast is not None:
            counts = [_counts(self.P[:, j], self._label(j), self.w, candidates)
                      for j in range(n_labels)]
            return self.fast(*np.sum(counts, axis=0))
        labels = np.arange(n_labels)
        return self._call([_Thresholded(self.P, t, labels, False) for t in candidates], self.Y)

    def joint_scores(self, thresholds, j, candidates):
        """Score of a multi-label metric as label ``j``'s threshold runs over candidates."""
        if self.fast is not None:
            # Micro average: the other labels' counts are fixed.
            fixed = sum((self._counts_at(k, thresholds[k])
                         for k in range(self.P.shape[1]) if k != j), np.zeros(4))
            counts = _counts(self.P[:, j], self._label(j), self.w, candidates)
            return self.fast(*(c + f for c, f in zip(counts, fixed)))
        outputs = []
        for t in candidates:
            trial = thresholds.copy()
            trial[j] = t
            outputs.append(_Thresholded(self.P, trial, np.arange(self.P.shape[1]), False))
        return self._call(outputs, self.Y)


def _best(scores, candidates):
    """Index of the best score; among ties, the candidate nearest 0.5 (then the lowest)."""
    scores = np.asarray(scores, dtype=np.float64)
    top = np.flatnonzero(scores == np.nanmax(scores))
    distance = np.abs(candidates[top] - _DEFAULT)
    return top[np.argmin(distance)]


def _positive_proba(estimator, X, one_d, classes):
    """Probabilities of the positive class, (n_samples, n_labels) (one column if 1-D)."""
    proba = estimator.predict_proba(X)
    if isinstance(proba, (list, tuple)):
        # One (n, n_classes_j) array per label: forests, KNN, MultiOutputClassifier.
        per_label = getattr(estimator, "classes_", None)
        if not isinstance(per_label, (list, tuple)) or len(per_label) != len(proba):
            per_label = [None] * len(proba)
        return np.column_stack([
            _positive_column(p, c, estimator, f"[{j}]")
            for j, (p, c) in enumerate(zip(proba, per_label))
        ])
    proba = np.asarray(proba, dtype=np.float64)
    if not one_d:
        return _constant_links(estimator, proba)
    seen = np.asarray(estimator.classes_)
    if len(seen) == 2:
        return proba[:, np.flatnonzero(seen == classes[1])]
    # A training fold with one class: the first column is that class's
    # probability (the only one, or HistGradientBoosting's first of two).
    first = proba[:, :1]
    return first if seen[0] == classes[1] else 1 - first


def _constant_links(estimator, proba):
    """``proba`` with the columns of a ClassifierChain's one-class links set to their class.

    scikit-learn's ``ClassifierChain.predict_proba`` reads the second column
    of each link's ``predict_proba``, which for a link fitted on one class
    (its ``classes_`` a single 0 or 1) is not the probability of 1: a
    forest's link has no second column at all, HistGradientBoosting's holds
    the class it never saw (the chain reported 1.0 for a label all 0 in
    training). Such a label's probability is its class.
    """
    chain = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if not isinstance(chain, ClassifierChain):
        return proba
    proba = proba.copy()
    for label, link in zip(chain.order_, chain.estimators_):
        classes = getattr(link, "classes_", None)
        if classes is not None and len(classes) == 1 and classes[0] in (0, 1):
            proba[:, label] = float(classes[0])
    return proba


def _fold_probabilities(estimator, X, y, train, test, fit_params, one_d, classes, keep):
    """Fit on ``train``; the positive-class probabilities of ``test`` (and the model if ``keep``)."""
    X_train, y_train = _safe_indexing(X, train), _safe_indexing(y, train)
    fit_params = _check_method_params(X, params=fit_params, indices=train)
    estimator.fit(X_train, y_train, **fit_params)
    P = _positive_proba(estimator, _safe_indexing(X, test), one_d, classes)
    return P, estimator if keep else None


class MultiLabelThresholdCV(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Tune the decision threshold of each label of a classifier by cross-validation.

    A multi-label classifier predicts a label where its probability is at
    least 0.5 -- rarely the threshold that maximises F1, least of all for a
    rare label. This meta-estimator fits ``estimator`` on each training fold,
    pools the probabilities it gives the held-out rows, and chooses, for
    every label, the threshold of those out-of-fold probabilities that
    maximises ``scoring``; :meth:`predict` then applies those thresholds to
    the probabilities of ``estimator`` refitted on all the data.

    Any classifier with ``predict_proba`` works: one that returns an
    ``(n_samples, n_labels)`` array (:class:`MultiLabelLogistic`,
    ``OneVsRestClassifier``, ``ClassifierChain``, ``MLPClassifier``) or a
    list of ``(n_samples, n_classes)`` arrays (random forests, extra trees,
    nearest neighbours, ``MultiOutputClassifier``), also at the end of a
    ``Pipeline``; and binary classifiers of a 1-D target. A label constant
    in a fit's training rows is read through the estimator's ``classes_``:
    the one column a forest gives it is the probability of the class seen
    (0 or 1), and of ``HistGradientBoostingClassifier``'s two columns the
    first is; a ``ClassifierChain`` link fitted on one class, whose column the
    chain itself misreads, gives that class. (The chain still needs a base
    estimator that fits one class and gives a second column, such as
    ``HistGradientBoostingClassifier``: ``LogisticRegression`` refuses one
    class, and the chain rejects a forest's single column.)
    scikit-learn's :class:`~sklearn.model_selection.TunedThresholdClassifierCV`
    is the one-label version.

    Read more in the :ref:`User Guide <cross_validation>`.

    Parameters
    ----------
    estimator : estimator object
        A classifier with ``fit`` and ``predict_proba``; cloned for each fold
        and the refit, used as it is with ``cv="prefit"``.

    scoring : str or callable, default="f1"
        What the thresholds maximise, a scorer name or a ``scorer(estimator,
        X, y)`` callable that calls ``predict`` (greater is better):

        - a binary metric (``"f1"``, ``"precision"``, ``"recall"``,
          ``"jaccard"``, ``"accuracy"``, ``"balanced_accuracy"``, or e.g.
          ``make_scorer(fbeta_score, beta=2)``) is computed per label; with
          ``per_label=True`` each label maximises its own, with
          ``per_label=False`` one threshold maximises their mean over labels;
        - a multi-label metric (``"f1_micro"``, ``"f1_samples"``,
          ``"jaccard_samples"``, any scorer with ``average="micro"``,
          ``"macro"``, ``"samples"`` or ``"weighted"``) is computed on all
          labels at once and maximised jointly: one label's threshold at a
          time, the others fixed, until none improves it.

        The binary metrics above and their micro averages are computed from
        confusion counts at all candidates at once; other scorers are called
        once per candidate.

    cv : int, float, cross-validation generator, iterable or "prefit", default=5
        The folds: an int is the number of folds, stratified --
        ``StratifiedKFold`` for a binary target,
        :class:`~skbce.model_selection.MultiLabelStratifiedKFold` (fixed seed
        0: the same folds at every fit) for a multi-label one, so that every
        label's positives are spread over the folds whatever order the rows
        are stored in; a float in (0, 1) one shuffled split with that
        fraction of the rows held out; a splitter or an iterable of (train,
        test) index arrays, used as given. ``"prefit"``: ``estimator`` is
        already fitted, and the data given to :meth:`fit` are a validation
        set (never the data it was fitted on); ``refit`` must then be False.

        A label whose positives (or negatives) the training part of some
        fold lacks is warned about (a
        :class:`~skbce.model_selection.FoldWarning` naming the labels and the
        folds), whatever the splitter, and keeps the default threshold 0.5:
        the probabilities of a model that never saw one class would pick a
        threshold of that fold's making (typically the lowest, "always
        positive"). With ``per_label=False`` the shared threshold is kept
        and the warning alone is given.

    thresholds : int or array-like, default=100
        Candidate thresholds: an int ``n`` means, per label, ``n`` values
        evenly spaced between the smallest and largest out-of-fold
        probability of the label (over all labels with ``per_label=False``),
        plus 0.5; an array gives the candidates of every label.

    per_label : bool, default=True
        Whether each label gets its own threshold or all labels share one.

    refit : bool, default=True
        Whether to refit ``estimator`` on all the data for :meth:`predict`.
        If False, ``cv`` must be ``"prefit"`` or a single split, whose
        training part the final estimator was fitted on.

    n_jobs : int, default=None
        Number of folds fitted in parallel (joblib).

    random_state : int, RandomState instance or None, default=None
        Seeds the split of a float ``cv``.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted classifier :meth:`predict` uses.

    thresholds_ : ndarray of shape (n_labels,)
        The threshold of each label (one entry for a 1-D target; all equal
        with ``per_label=False``). A label is predicted where its
        probability is at least its threshold.

    best_scores_ : ndarray of shape (n_labels,) or float
        The out-of-fold score at ``thresholds_``: per label for a binary
        metric with ``per_label=True``, one number otherwise.

    classes_ : ndarray
        The two classes of a 1-D target, ``arange(n_labels)`` for a 2-D one.

    n_features_in_ : int
        Number of features seen during :meth:`fit` (if the estimator has it).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit` (if the estimator has them).

    See Also
    --------
    sklearn.model_selection.TunedThresholdClassifierCV : The binary version.
    MultiLabelLogisticCV : Choose the regularisation of each label.

    Notes
    -----
    With :class:`MultiLabelLogistic` as ``estimator`` the thresholds can be
    written back into it: ``estimator_.set_params(threshold=thresholds_)``
    predicts as this meta-estimator does.

    Examples
    --------
    >>> from sklearn.datasets import make_multilabel_classification
    >>> from skbce import MultiLabelLogistic, MultiLabelThresholdCV
    >>> X, Y = make_multilabel_classification(n_samples=300, n_features=10,
    ...                                       n_classes=4, random_state=0)
    >>> tuned = MultiLabelThresholdCV(MultiLabelLogistic(C=0.1), scoring="f1")
    >>> tuned.fit(X, Y).thresholds_.round(2)
    array([0.4 , 0.29, 0.44, 0.33])
    >>> tuned.predict(X[:2])
    array([[1, 1, 1, 0],
           [0, 1, 1, 0]])
    >>> model = tuned.estimator_.set_params(threshold=tuned.thresholds_)
    >>> bool((model.predict(X) == tuned.predict(X)).all())
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "scoring": [StrOptions(set(get_scorer_names())), callable],
        "cv": ["cv_object", StrOptions({"prefit"}), Interval(Real, 0.0, 1.0, closed="neither")],
        "thresholds": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "per_label": ["boolean"],
        "refit": ["boolean"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, scoring="f1", cv=5, thresholds=100, per_label=True,
                 refit=True, n_jobs=None, random_state=None):
        self.estimator = estimator
        self.scoring = scoring
        self.cv = cv
        self.thresholds = thresholds
        self.per_label = per_label
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------

    def _targets(self, y):
        if not hasattr(y, "toarray"):
            _assert_all_finite(np.asarray(y), allow_nan=False, input_name="y")
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type == "binary":
            y = np.asarray(y)
            y = y[:, 0] if y.ndim == 2 else y
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError(f"y has 1 class ({classes[0]!r}): no threshold to tune.")
            return y, (y == classes[1]).astype(np.int64)[:, None], classes, True
        if y_type != "multilabel-indicator":
            raise ValueError(
                "Only binary classification is supported (and multi-label targets). The "
                f"type of the target is {y_type}: MultiLabelThresholdCV needs a 0/1 "
                "multi-label indicator matrix or a binary target."
            )
        if sparse.issparse(y):
            # Kept sparse: the labels are read one column at a time.
            return y, sparse.csc_matrix(y, dtype=np.int64), np.arange(y.shape[1]), False
        Y = np.asarray(y)
        return y, Y.astype(np.int64), np.arange(Y.shape[1]), False

    def _splits(self, X, y, split_params):
        if self.cv == "prefit":
            return None
        if isinstance(self.cv, Real) and not isinstance(self.cv, Integral):
            kind = StratifiedShuffleSplit if self._one_d else ShuffleSplit
            cv = kind(n_splits=1, test_size=self.cv, random_state=self.random_state)
        else:
            cv = check_multilabel_cv(self.cv, y)
        splits = list(cv.split(X, y, **split_params))
        if not self.refit and len(splits) > 1:
            raise ValueError(
                f"refit=False needs cv='prefit' or a single split; cv={self.cv!r} gives "
                f"{len(splits)} folds."
            )
        return splits

    def _blind_labels(self, Y, splits):
        """The labels some training fold cannot see, warned about; bool (n_labels,).

        Their out-of-fold probabilities come partly from models that never
        saw one of the label's classes: a threshold tuned on them would be
        the artefact of those folds (typically 0, "always positive").
        """
        if splits is None:
            return np.zeros(Y.shape[1], dtype=bool)
        blind = blind_folds(Y, splits)
        fallback = (f"the default threshold {_DEFAULT}" if self.per_label else
                    "the threshold shared by all labels, tuned with these in")
        warn_blind_folds(type(self).__name__, blind, fallback)
        return blind.any(axis=0) & self.per_label

    def _routed_params(self, sample_weight, params):
        if sample_weight is not None:
            params = {**params, "sample_weight": sample_weight}
        if _routing_enabled():
            return process_routing(self, "fit", **params)
        # Without routing: everything to the estimator's fit, and the sample
        # weights to the metric as well.
        score = {} if sample_weight is None else {"sample_weight": sample_weight}
        return Bunch(estimator=Bunch(fit=params), splitter=Bunch(split={}),
                     scorer=Bunch(score=score))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, **params):
        """Tune the thresholds on out-of-fold probabilities, then refit.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (the validation set with ``cv="prefit"``).

        y : {array-like, sparse matrix} of shape (n_samples, n_labels) or (n_samples,)
            A 0/1 multi-label indicator matrix (a scipy.sparse one is read
            one label at a time, never densified), or binary labels.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the metric and, without metadata
            routing, in ``estimator.fit`` (with routing: where requested).

        **params : dict
            Parameters of ``estimator.fit`` (with metadata routing enabled:
            metadata for the estimator, the splitter and the scorer).

        Returns
        -------
        self : object
            The fitted meta-estimator.
        """
        if self.cv == "prefit" and self.refit:
            raise ValueError("cv='prefit' uses the given estimator as it is: set refit=False.")
        X, y = indexable(X, y)
        if _num_samples(X) == 0:
            raise ValueError("Found array with 0 sample(s) (X); MultiLabelThresholdCV needs data.")
        y, Y, classes, self._one_d = self._targets(y)
        self.classes_ = classes
        routed = self._routed_params(sample_weight, params)
        scorer = check_scoring(self.estimator, scoring=self.scoring)
        splits = self._splits(X, y, routed.splitter.split)
        if splits is None:
            check_is_fitted(self.estimator)
            self.estimator_ = self.estimator
            P, rows = (_positive_proba(self.estimator, X, self._one_d, classes),
                       np.arange(Y.shape[0]))
        else:
            P, rows = self._out_of_fold(X, y, Y.shape, splits, routed.estimator.fit)
        # Only held-out rows have out-of-fold probabilities (a single
        # shuffled split holds out some rows only).
        score_params = _check_method_params(X, routed.scorer.score, indices=rows)
        objective = _Objective(scorer, P, Y[rows], _safe_indexing(y, rows), classes,
                               self._one_d, score_params)
        self.thresholds_, self.best_scores_ = self._tune(objective,
                                                         self._blind_labels(Y, splits))
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(self.estimator_, name):
                setattr(self, name, getattr(self.estimator_, name))
        return self

    def _out_of_fold(self, X, y, shape, splits, fit_params):
        """Out-of-fold probabilities of the held-out rows (and which rows); sets estimator_."""
        keep = not self.refit  # the one split's model is the final one
        folds = Parallel(n_jobs=self.n_jobs)(
            delayed(_fold_probabilities)(
                clone(self.estimator), X, y, train, test, fit_params, self._one_d,
                self.classes_, keep)
            for train, test in splits
        )
        P = np.full(shape, np.nan)
        for (_, test), (fold_P, estimator) in zip(splits, folds):
            P[test] = fold_P
        if self.refit:
            self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        else:
            self.estimator_ = folds[0][1]
        rows = np.flatnonzero(~np.isnan(P[:, 0]))
        return P[rows], rows

    def _candidates(self, values):
        """The candidate thresholds for out-of-fold probabilities ``values``."""
        if not isinstance(self.thresholds, Integral):
            candidates = np.asarray(self.thresholds, dtype=np.float64)
            if candidates.ndim != 1 or candidates.size == 0:
                raise ValueError(
                    f"thresholds must be an int or a 1-D array; got {self.thresholds!r}.")
            return np.unique(candidates)
        grid = np.linspace(np.min(values), np.max(values), self.thresholds)
        return np.unique(np.append(grid, _DEFAULT))

    def _tune(self, objective, blind):
        """The thresholds and their scores; a ``blind`` label keeps the default 0.5."""
        n_labels = objective.P.shape[1]
        # Zero-weight rows do not count; nor should they stretch the grid.
        P = objective.P[objective.w > 0] if np.any(objective.w > 0) else objective.P
        if not self.per_label or objective.joint:
            shared = self._candidates(P)
            scores = objective.shared_scores(shared)
            best = _best(scores, shared)
            thresholds = np.full(n_labels, shared[best])
            if not self.per_label:
                return thresholds, float(scores[best])
            score = scores[best]
            if blind.any():
                thresholds[blind] = _DEFAULT
                score = objective.joint_scores(thresholds, 0, thresholds[:1])[0]
            return self._coordinate_ascent(objective, thresholds, P, score, ~blind)
        thresholds, best_scores = np.empty(n_labels), np.empty(n_labels)
        for j in range(n_labels):
            candidates = np.array([_DEFAULT]) if blind[j] else self._candidates(P[:, j])
            scores = objective.label_scores(j, candidates)
            best = _best(scores, candidates)
            thresholds[j], best_scores[j] = candidates[best], scores[best]
        return thresholds, best_scores

    def _coordinate_ascent(self, objective, thresholds, P, score, movable):
        """Maximise a joint metric one label at a time, from ``thresholds``.

        Only the ``movable`` labels' thresholds move.
        """
        for _ in range(_MAX_SWEEPS):
            moved = False
            for j in np.flatnonzero(movable):
                candidates = np.unique(np.append(self._candidates(P[:, j]), thresholds[j]))
                scores = objective.joint_scores(thresholds, j, candidates)
                best = _best(scores, candidates)
                # Move only to a strictly better score, so that the sweeps end.
                if scores[best] > scores[np.searchsorted(candidates, thresholds[j])]:
                    thresholds[j], score, moved = candidates[best], scores[best], True
            if not moved:
                break
        return thresholds, float(score)

    # -- prediction --------------------------------------------------------------

    def _proba(self, X):
        check_is_fitted(self, "thresholds_")
        return _positive_proba(self.estimator_, X, self._one_d, self.classes_)

    def predict(self, X):
        """Predicted labels: positive where the probability is at least the label's threshold.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples, n_labels) or (n_samples,)
            A 0/1 indicator matrix, or the classes of a 1-D target.
        """
        positive = self._proba(X) >= self.thresholds_
        if self._one_d:
            return self.classes_[positive[:, 0].astype(int)]
        return positive.astype(np.int64)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """``estimator_.predict_proba(X)``, as it is.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray or list of ndarray
            The estimator's probabilities, in its own layout.
        """
        check_is_fitted(self, "thresholds_")
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """``estimator_.predict_log_proba(X)``, as it is.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_proba : ndarray or list of ndarray
            The estimator's log-probabilities.
        """
        check_is_fitted(self, "thresholds_")
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """``estimator_.decision_function(X)``, as it is.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        scores : ndarray
            The estimator's decision function.
        """
        check_is_fitted(self, "thresholds_")
        return self.estimator_.decision_function(X)

    def get_metadata_routing(self):
        """Get metadata routing of this object.

        Returns
        -------
        routing : MetadataRouter
            Where :meth:`fit` sends metadata: to the estimator's ``fit``, the
            scorer and the splitter, as each requests.
        """
        router = MetadataRouter(owner=self.__class__.__name__).add(
            estimator=self.estimator,
            method_mapping=MethodMapping().add(caller="fit", callee="fit"),
        ).add(
            scorer=check_scoring(self.estimator, scoring=self.scoring),
            method_mapping=MethodMapping().add(caller="fit", callee="score"),
        )
        if self.cv != "prefit" and not isinstance(self.cv, float):
            router.add(
                splitter=check_multilabel_cv(self.cv),
                method_mapping=MethodMapping().add(caller="fit", callee="split"),
            )
        return router

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = get_tags(self.estimator).input_tags.sparse
        return tags
