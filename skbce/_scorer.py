"""Binary cross-entropy as a scikit-learn scorer that is right for every classifier.

scikit-learn's ``"neg_log_loss"`` scorer treats a multi-label row as one
multiclass distribution -- it keeps only the ``y * log(p)`` terms, summed over
the row, and warns that the probabilities "do not sum to one" -- and rejects
soft targets. The scorer defined here scores every label as its own Bernoulli
variable (the mean of ``-(y log p + (1 - y) log(1 - p))``), reads which
column is the positive class from the estimator's ``classes_`` (per output
for multi-output estimators, including outputs that saw a single class in
training) and takes hard, soft, string or {-1, 1} targets.

Plain ``make_scorer(binary_cross_entropy, response_method="predict_proba",
greater_is_better=False)`` is enough for binary classifiers with 0/1 labels
and for multi-label estimators whose ``predict_proba`` is an
``(n_samples, n_labels)`` array or a list of ``(n_samples, 2)`` arrays. Use
:data:`bce_scorer` / :func:`make_bce_scorer` for string or {-1, 1} labels,
soft targets, and multi-output estimators (random forests, nearest neighbours,
``MultiOutputClassifier`` of trees) in which a label saw only one class during
training, so that ``predict_proba`` gives an ``(n_samples, 1)`` column for it.
"""

from numbers import Number, Real

import numpy as np
from scipy import sparse
from sklearn.metrics._scorer import _BaseScorer, _cached_call
from sklearn.utils._array_api import _convert_to_numpy, _is_numpy_namespace, get_namespace
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import _check_response_method

from skbce.metrics import binary_cross_entropy

__all__ = ["bce_scorer", "make_bce_scorer"]

_RESPONSE_METHODS = {
    None: ("predict_proba", "decision_function"),
    False: "predict_proba",
    True: "decision_function",
}

# Key under which a raw (unprocessed) response is kept in the cache that
# scikit-learn's _MultimetricScorer shares between the scorers of one call.
# scikit-learn's own entries are keyed by the bare method name and hold
# post-processed values (a positive-class column chosen with classes_[-1]),
# which is exactly what this scorer must not rely on.
_CACHE_KEY = "skbce:raw:{}"


def _neg_bce_score_func(y_true, y_pred, *, sample_weight=None, **loss_options):
    """The metric behind the scorer; its signature drives metadata routing.

    Only ``sample_weight`` can be requested as metadata
    (``set_score_request(sample_weight=True)``); the loss options are fixed
    when the scorer is made.
    """
    return binary_cross_entropy(
        y_true, y_pred, sample_weight=sample_weight, **loss_options
    )


def _name(estimator):
    return type(estimator).__name__


def _is_one(value):
    return isinstance(value, (Number, np.bool_, np.number)) and value == 1


def _is_zero(value):
    return isinstance(value, (Number, np.bool_, np.number)) and value == 0


def _flat_classes(estimator):
    """``classes_`` as a 1-D array of labels, or None (absent or per output)."""
    classes = getattr(estimator, "classes_", None)
    if classes is None or isinstance(classes, (list, tuple)):
        return None
    classes = np.asarray(classes)
    if classes.ndim != 1 or (
        classes.dtype == object and any(isinstance(c, np.ndarray) for c in classes)
    ):
        return None
    return classes


def _multiclass_error(estimator, detail):
    return ValueError(
        f"Binary cross-entropy is not defined for multiclass targets ({detail}; "
        f"estimator {_name(estimator)}). Use sklearn.metrics.log_loss "
        "(scoring='neg_log_loss') for multiclass problems, or binarize the "
        "target into one indicator column per class for a multi-label BCE."
    )


def _positive_column(proba, classes, estimator, where):
    """Probability of the positive class (the label 1) from one output.

    ``proba`` is an (n_samples, n_classes) array of one output whose columns
    follow ``classes``. An output that saw a single class in training has one
    column (HistGradientBoosting two), the first that class's probability:
    the positive class's if that class is 1, its complement if it is 0.
    """
    proba = np.asarray(proba)
    if proba.ndim == 1:
        return proba
    if proba.ndim != 2:
        raise ValueError(
            f"{_name(estimator)}.predict_proba{where} has shape {proba.shape}; "
            "expected (n_samples, n_classes)."
        )
    n_columns = proba.shape[1]
    if classes is None:
        if n_columns == 2:
            return proba[:, 1]
        if n_columns > 2:
            raise _multiclass_error(
                estimator, f"{n_columns} probability columns{where}"
            )
        raise ValueError(
            f"{_name(estimator)}.predict_proba{where} has a single column and the "
            "estimator has no classes_ telling which class it is."
        )
    labels = np.asarray(classes).tolist()
    if len(labels) == 1 and n_columns in (1, 2) and (_is_one(labels[0]) or _is_zero(labels[0])):
        # Only one class was seen in training: the first column is its
        # probability (1 for most estimators; HistGradientBoosting keeps a
        # second column for the class it never saw).
        seen = proba[:, 0]
        return seen if _is_one(labels[0]) else 1 - seen
    if len(labels) != n_columns:
        raise ValueError(
            f"{_name(estimator)}.predict_proba{where} has {n_columns} columns but "
            f"classes_{where} has {len(labels)} entries: {labels}."
        )
    if n_columns > 2:
        raise _multiclass_error(estimator, f"classes {labels}{where}")
    positive = [i for i, c in enumerate(labels) if _is_one(c)]
    if n_columns == 2 and positive and all(
        _is_zero(c) for i, c in enumerate(labels) if i != positive[0]
    ):
        return proba[:, positive[0]]
    raise ValueError(
        f"Cannot tell the positive class of {_name(estimator)}'s output{where}: its "
        f"classes_ are {labels}; multi-label targets must be 0/1 (or soft "
        "targets in [0, 1])."
    )


def _binary_targets(y, classes, estimator):
    """A 1-D target as 0/1 (or soft) numbers, positive class ``classes_[1]``."""
    numeric = y.dtype.kind in "biuf"
    if classes is not None and len(classes) > 2:
        raise _multiclass_error(estimator, f"classes_ {classes.tolist()}")
    if classes is not None and len(classes) == 2:
        if numeric and classes.dtype.kind in "biuf" and classes.tolist() == [0, 1]:
            return y  # 0/1 or soft targets: already what the loss wants.
        unknown = ~np.isin(y, classes)
        if np.any(unknown):
            raise ValueError(
                f"y_true holds {y[unknown][0]!r}, which is not one of the classes "
                f"{classes.tolist()} that {_name(estimator)} was fitted on."
            )
        return (y == classes[1]).astype(np.float64)
    if numeric:
        # No usable classes_ (absent, or a single training class): 0/1 or
        # soft targets pass as they are; two other values map their larger
        # one to 1, as classes_[1] would be.
        finite = y[np.isfinite(y)] if y.dtype.kind == "f" else y
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            values = np.unique(finite)
            if len(values) > 2:
                raise _multiclass_error(estimator, f"y_true has {len(values)} classes")
            if len(values) == 2 and (classes is None or values[1] in classes):
                return (y == values[1]).astype(np.float64)
        return y
    raise ValueError(
        f"Cannot tell the positive class of {_name(estimator)}: y_true holds "
        f"labels of dtype {y.dtype} but the estimator's classes_ is "
        f"{None if classes is None else classes.tolist()}; the positive class "
        "is classes_[1] of a classifier fitted on two classes."
    )


def _diagnose_targets(y, estimator):
    """Turn a rejected target of whole numbers into a multiclass error."""
    if y.dtype.kind not in "biuf":
        return
    two_d = y.ndim == 2
    if sparse.issparse(y):
        y = y.tocsr().data  # the stored values; the others are 0
    finite = y[np.isfinite(y)] if y.dtype.kind == "f" else y
    if finite.size and np.all(finite == np.round(finite)):
        values = np.unique(finite)
        if len(values) > 2 or values[0] < 0 or values[-1] > 1:
            raise _multiclass_error(
                estimator,
                f"a {'multiclass-multioutput' if two_d else 'multiclass'} "
                "target with values "
                f"{values[:10].tolist()}",
            )


class _BCEScorer(_BaseScorer):
    """Negated mean binary cross-entropy of an estimator's predictions.

    Built by :func:`make_bce_scorer`; see there for the parameters.
    """

    def __init__(self, loss_options, from_logits=None):
        super().__init__(
            score_func=_neg_bce_score_func,
            sign=-1,
            kwargs=loss_options,
            response_method=_RESPONSE_METHODS[from_logits],
        )
        self._from_logits = from_logits

    def __repr__(self):
        options = dict(self._kwargs)
        if self._from_logits is not None:
            options = {"from_logits": self._from_logits, **options}
        arguments = ", ".join(f"{k}={v!r}" for k, v in options.items())
        return f"make_bce_scorer({arguments})"

    def _response(self, method_caller, estimator, X):
        """The raw output of predict_proba (or decision_function) and its name."""
        try:
            method = _check_response_method(estimator, self._response_method)
        except AttributeError as exc:
            methods = self._response_method
            wanted = methods if isinstance(methods, str) else " or ".join(methods)
            raise AttributeError(
                f"{self!r} needs an estimator with {wanted}; {_name(estimator)} "
                f"has {'no ' + wanted if isinstance(methods, str) else 'neither'}. "
                f"Estimator: {estimator!r}"
            ) from exc
        name = getattr(method, "__name__", None) or getattr(method.func, "__name__")
        # Share raw responses between the skbce scorers of one multi-metric
        # call: method_caller is functools.partial(_cached_call, cache).
        cache = None
        if getattr(method_caller, "func", None) is _cached_call and method_caller.args:
            cache = method_caller.args[0]
        key = _CACHE_KEY.format(name)
        if cache is not None and key in cache:
            return cache[key], name
        raw = method(X)
        if cache is not None:
            cache[key] = raw
        return raw, name

    def _score(self, method_caller, estimator, X, y_true, **kwargs):
        """Score ``estimator`` on ``X`` against ``y_true``.

        Parameters
        ----------
        method_caller : callable
            scikit-learn's (possibly caching) response getter; only its
            cache is used, as it post-processes responses in ways that are
            wrong for multi-output estimators.

        estimator : object
            A fitted estimator with ``predict_proba`` or ``decision_function``.

        X : {array-like, sparse matrix}
            Test data.

        y_true : array-like or sparse matrix
            Binary labels of any type (positive class ``classes_[1]``), a 0/1
            indicator matrix, or soft targets in [0, 1].

        **kwargs : dict
            Routed metadata; only ``sample_weight`` is accepted.

        Returns
        -------
        score : float
            Minus the mean binary cross-entropy.
        """
        self._warn_overlap(
            message=(
                "There is an overlap between the loss options of this scorer and "
                "passed metadata. Please pass them either to make_bce_scorer or as "
                "metadata, but not both."
            ),
            kwargs=kwargs,
        )
        if sparse.issparse(y_true) and (y_true.ndim != 2 or y_true.shape[1] == 1):
            y_true = y_true.toarray()  # one column: n values
        # A sparse multi-label y_true stays sparse: the metric reads it in row
        # blocks. Other targets are read in NumPy (class labels, their mapping
        # to 0/1); an array of another namespace is converted, as
        # scikit-learn's metrics do.
        y = y_true if sparse.issparse(y_true) else _as_numpy(y_true)
        classes = _flat_classes(estimator)
        if y.ndim == 2 and y.shape[1] == 1 and classes is not None:
            if len(classes) <= 2 or y.dtype.kind not in "biuf":
                y = y[:, 0]  # a column vector of a single-output classifier
        if y.ndim == 1:
            y = _binary_targets(y, classes, estimator)
        elif y.ndim == 2 and y.dtype.kind not in "biuf":
            raise ValueError(
                f"A 2-D y_true must be a 0/1 indicator matrix or soft targets in "
                f"[0, 1]; got dtype {y.dtype}."
            )

        raw, method_name = self._response(method_caller, estimator, X)
        from_logits = method_name == "decision_function"
        xp, is_array_api = get_namespace(raw, remove_types=(str, list, tuple))
        if is_array_api and not _is_numpy_namespace(xp):
            # array_api_dispatch=True and, say, torch predictions: the loss
            # is computed on them, in their namespace (the targets are moved).
            y_pred = _positive_predictions_in_namespace(raw, y, estimator, from_logits)
        else:
            y_pred = self._positive_predictions(raw, y, estimator, from_logits)

        try:
            loss = binary_cross_entropy(
                y, y_pred, from_logits=from_logits, **{**self._kwargs, **kwargs}
            )
        except ValueError as exc:
            if "y_true must lie in [0, 1]" in str(exc):
                _diagnose_targets(y, estimator)
            raise
        return self._sign * loss

    @staticmethod
    def _positive_predictions(raw, y, estimator, from_logits):
        """Lay out a response as the positive-class column(s) matching ``y``."""
        if isinstance(raw, (list, tuple)):
            # One (n_samples, n_classes_j) array per output, as forests,
            # nearest neighbours and MultiOutputClassifier return.
            classes = getattr(estimator, "classes_", None)
            if not isinstance(classes, (list, tuple)) or len(classes) != len(raw):
                classes = [None] * len(raw)
            columns = [
                _positive_column(p, c, estimator, f"[{j}]")
                for j, (p, c) in enumerate(zip(raw, classes))
            ]
            stacked = np.column_stack(columns)
            return stacked[:, 0] if y.ndim == 1 and stacked.shape[1] == 1 else stacked

        raw = np.asarray(raw)
        if y.ndim == 1 and raw.ndim == 2:
            if from_logits:
                if raw.shape[1] == 1:
                    return raw[:, 0]
                raise _multiclass_error(
                    estimator, f"decision_function has {raw.shape[1]} columns"
                )
            classes = _flat_classes(estimator)
            if classes is not None and len(classes) == 2 and raw.shape[1] == 2:
                return raw[:, 1]  # y_true was mapped with classes_[1] as positive
            return _positive_column(raw, classes, estimator, "")
        if y.ndim == 2 and raw.ndim == 1 and y.shape[1] == 1:
            return raw[:, None]
        return raw


def _as_numpy(values):
    """An array of any namespace (torch, array-api-strict...) as a NumPy array."""
    if isinstance(values, (np.ndarray, list, tuple)):
        return np.asarray(values)
    try:
        namespace, _ = get_namespace(values)
    except TypeError:  # not an array to the array API (with dispatch on)
        return np.asarray(values)
    return np.asarray(_convert_to_numpy(values, namespace))


def _positive_predictions_in_namespace(raw, y, estimator, from_logits):
    """The positive-class column(s) of an array-API response, kept in its namespace.

    The common layouts -- a 1-D response, an (n_samples, 2) ``predict_proba``
    of two classes, an (n_samples, 1) decision function, an (n_samples,
    n_labels) array -- are sliced as they are; any other goes through
    NumPy and the rules of :meth:`_BCEScorer._positive_predictions`.
    """
    classes = _flat_classes(estimator)
    if y.ndim == 1 and raw.ndim == 2:
        if from_logits and raw.shape[1] == 1:
            return raw[:, 0]
        if not from_logits and raw.shape[1] == 2 and classes is not None and len(classes) == 2:
            return raw[:, 1]
    elif y.ndim == 2 and raw.ndim == 2 and tuple(raw.shape) == y.shape:
        return raw
    elif raw.ndim == 1 and y.ndim == 1:
        return raw
    return _BCEScorer._positive_predictions(_as_numpy(raw), y, estimator, from_logits)


@validate_params(
    {
        "from_logits": ["boolean", None],
        "pos_weight": [Interval(Real, 0, None, closed="left"), "array-like", None],
        "label_weight": [Interval(Real, 0, None, closed="left"), "array-like", None],
        "label_smoothing": [Interval(Real, 0, 1, closed="both")],
        "eps": [Interval(Real, 0, 0.5, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def make_bce_scorer(
    *,
    from_logits=None,
    pos_weight=None,
    label_weight=None,
    label_smoothing=0.0,
    eps=None,
):
    """Make a scorer returning minus the mean binary cross-entropy.

    The scorer works like any scikit-learn scorer (``scorer(estimator, X,
    y)``, ``scoring=`` of ``GridSearchCV``, ``cross_validate``,
    ``permutation_importance``; greater is better) and is right where
    ``"neg_log_loss"`` is not: multi-label targets are scored label by label,
    soft targets in [0, 1] are accepted, and the positive class of every
    label is read from the estimator's ``classes_``:

    - binary classifiers: ``classes_[1]`` is the positive class, so string or
      {-1, 1} labels work;
    - a list of per-label arrays from ``predict_proba`` (forests, nearest
      neighbours, ``MultiOutputClassifier``): the column of class 1 of each
      label; a label seen with one class in training (an (n_samples, 1)
      array with ``classes_ == [0]`` or ``[1]``) has probability 0 or 1;
    - an (n_samples, n_labels) array (``OneVsRestClassifier``,
      ``ClassifierChain``, ``MLPClassifier``): used as is.

    Multiclass targets raise a ``ValueError`` pointing to
    :func:`sklearn.metrics.log_loss`; an estimator with neither
    ``predict_proba`` nor ``decision_function`` raises an ``AttributeError``
    naming it.

    Parameters
    ----------
    from_logits : bool or None, default=None
        Which response to score. None uses ``predict_proba`` and falls back
        to ``decision_function`` (read as logits) when there is none; True
        always scores ``decision_function`` as logits, False always
        ``predict_proba``. Decision functions that are not log-odds (e.g.
        SVMs without calibration) give a well-defined but not a
        probabilistic score.

    pos_weight : float or array-like of shape (n_labels,), default=None
        Weight of the positive term, see
        :func:`~skbce.binary_cross_entropy`.

    label_weight : float or array-like of shape (n_labels,), default=None
        Weight of each label in the mean.

    label_smoothing : float in [0, 1], default=0.0
        Pull the targets towards 1/2 (Keras convention).

    eps : float, default=None
        Clipping of probabilities; None is the machine epsilon of the dtype.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y_true, **metadata)`` returning minus the mean
        BCE over all samples and labels (a float; greater is better). With
        ``sklearn.set_config(enable_metadata_routing=True)``,
        ``scorer.set_score_request(sample_weight=True)`` routes
        ``sample_weight`` to it.

    See Also
    --------
    bce_scorer : The scorer with default options.
    skbce.binary_cross_entropy : The loss itself.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skbce import make_bce_scorer
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> Y = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1]])
    >>> forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    >>> scorer = make_bce_scorer(pos_weight=2.0)
    >>> scorer
    make_bce_scorer(pos_weight=2.0)
    >>> round(scorer(forest, X, Y), 4)
    -0.3852

    A label that is constant in the training data is scored from the
    estimator's ``classes_``, not from a guessed column:

    >>> Y_constant = Y.copy()
    >>> Y_constant[:, 2] = 1
    >>> forest = RandomForestClassifier(n_estimators=5, random_state=0)
    >>> forest = forest.fit(X, Y_constant)
    >>> [c.tolist() for c in forest.classes_]
    [[0, 1], [0, 1], [1]]
    >>> [p.shape for p in forest.predict_proba(X)]
    [(4, 2), (4, 2), (4, 1)]
    >>> round(make_bce_scorer()(forest, X, Y_constant), 4)
    -0.1527
    """
    options = {
        "pos_weight": pos_weight,
        "label_weight": label_weight,
        "label_smoothing": label_smoothing,
        "eps": eps,
    }
    loss_options = {k: v for k, v in options.items() if v is not None}
    if label_smoothing == 0:
        del loss_options["label_smoothing"]
    return _BCEScorer(loss_options, from_logits=from_logits)


bce_scorer = make_bce_scorer()
bce_scorer.__doc__ = """Scorer: minus the mean binary cross-entropy (greater is better).

``bce_scorer(estimator, X, y_true)`` scores ``predict_proba`` (or, failing
that, ``decision_function`` as logits) of binary and multi-label
classifiers; see :func:`make_bce_scorer` for the rules and for loss options.
``bce_scorer`` is one shared object: to request metadata with
``set_score_request``, make your own with ``make_bce_scorer()`` rather than
changing this one.

Examples
--------
>>> from sklearn.datasets import make_multilabel_classification
>>> from sklearn.model_selection import cross_val_score
>>> from sklearn.multioutput import MultiOutputClassifier
>>> from sklearn.linear_model import LogisticRegression
>>> from skbce import bce_scorer
>>> X, Y = make_multilabel_classification(n_samples=60, n_classes=3, random_state=0)
>>> model = MultiOutputClassifier(LogisticRegression(max_iter=1000))
>>> scores = cross_val_score(model, X, Y, cv=3, scoring=bce_scorer)
>>> scores.shape, bool((scores < 0).all())
((3,), True)

Binary labels of any type; the positive class is ``classes_[1]``:

>>> import numpy as np
>>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
>>> y = np.array(["no", "no", "yes", "yes"])
>>> clf = LogisticRegression().fit(x, y)
>>> p_yes = clf.predict_proba(x)[:, 1]
>>> bool(np.isclose(bce_scorer(clf, x, y),
...                 np.mean(np.where(y == "yes", np.log(p_yes), np.log(1 - p_yes)))))
True
"""

__test__ = {"bce_scorer": bce_scorer.__doc__}
