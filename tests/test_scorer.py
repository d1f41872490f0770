"""skbce.bce_scorer / make_bce_scorer inside scikit-learn's model selection.

Every value is checked against ``numpy_bce``, a plain numpy binary
cross-entropy written here, applied to positive-class probabilities that
``reference_positive_proba`` reads from the estimator independently of skbce.
"""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import check_scoring, make_scorer
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_validate,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils._param_validation import InvalidParameterError

import skbce
from skbce import bce_scorer, binary_cross_entropy, make_bce_scorer

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # OneVsRestClassifier on a label that is constant in a training fold.
    pytest.mark.filterwarnings("ignore:Label .*present in all training examples"),
]

EPS = np.finfo(np.float64).eps
N_SAMPLES = 90
CV = KFold(n_splits=3)  # no shuffling: fold 0 is rows 0..29


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def numpy_bce(
    y,
    p,
    *,
    sample_weight=None,
    pos_weight=1.0,
    label_weight=None,
    label_smoothing=0.0,
    from_logits=False,
):
    """Mean binary cross-entropy over samples and labels, plain numpy."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    y = y.reshape(len(y), -1)
    p = p.reshape(len(p), -1)
    assert y.shape == p.shape
    y = y * (1 - label_smoothing) + label_smoothing / 2
    if from_logits:
        log_p, log_not_p = -np.logaddexp(0, -p), -np.logaddexp(0, p)
    else:
        p = np.clip(p, EPS, 1 - EPS)
        log_p, log_not_p = np.log(p), np.log(1 - p)
    loss = -(pos_weight * y * log_p + (1 - y) * log_not_p)
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    lw = np.ones(y.shape[1]) if label_weight is None else np.asarray(label_weight)
    weights = sw[:, None] * lw[None, :]
    return float(np.sum(weights * loss) / np.sum(weights))


def reference_positive_proba(estimator, X, y):
    """P(positive) per label, read from predict_proba and classes_ by hand."""
    proba = estimator.predict_proba(X)
    if isinstance(proba, list):
        columns = []
        for output, classes in zip(proba, estimator.classes_):
            classes = list(classes)
            if 1 in classes:
                columns.append(output[:, classes.index(1)])
            else:  # only class 0 was seen in training
                columns.append(np.zeros(len(output)))
        return np.column_stack(columns)
    if np.ndim(y) == 1:
        assert proba.shape[1] == 2
        return proba[:, 1]  # column of classes_[1]
    return proba


def reference_targets(estimator, y):
    y = np.asarray(y)
    if y.ndim == 1 and y.dtype.kind not in "f":
        return (y == estimator.classes_[1]).astype(float)
    return y.astype(float)


def reference_score(estimator, X, y, **options):
    return -numpy_bce(
        reference_targets(estimator, y),
        reference_positive_proba(estimator, X, y),
        **options,
    )


def reference_scorer(**options):
    def scorer(estimator, X, y):
        return reference_score(estimator, X, y, **options)

    return scorer


def sklearn_multilabel_log_loss(Y, P):
    """What sklearn.metrics.log_loss computes for a 0/1 indicator matrix."""
    P = np.clip(P, EPS, 1 - EPS)
    return float(-np.mean(np.sum(Y * np.log(P), axis=1)))


# ---------------------------------------------------------------------------
# Data and estimators
# ---------------------------------------------------------------------------


def multilabel_data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_SAMPLES, 4))
    W = rng.normal(size=(4, 3)) * 2
    Y = (X @ W + rng.logistic(size=(N_SAMPLES, 3)) > 0).astype(int)
    return X, Y


def constant_fold_data():
    """Multi-label data where, in the training part of split 0 of CV, label 2
    is always 0 and label 3 is always 1 (their other class occurs only in
    fold 0, rows 0..29)."""
    X, Y = multilabel_data()
    in_fold_0 = np.arange(N_SAMPLES) < N_SAMPLES // 3
    always_0_outside = (in_fold_0 & (X[:, 0] > 0)).astype(int)
    always_1_outside = 1 - (in_fold_0 & (X[:, 1] > 0)).astype(int)
    return X, np.column_stack([Y[:, :2], always_0_outside, always_1_outside])


def binary_string_data():
    X, Y = multilabel_data()
    return X, np.where(Y[:, 0] == 1, "yes", "no")


DATA = {
    "multilabel": multilabel_data,
    "constant_fold": constant_fold_data,
    "binary_str": binary_string_data,
}


def multilabel_logistic():
    from skbce import MultiLabelLogistic  # written concurrently; import lazily

    return MultiLabelLogistic()


# (estimator factory, data, parameter searched, its values)
CASES = {
    "ovr_logistic": (
        lambda: OneVsRestClassifier(LogisticRegression()),
        "constant_fold",
        "estimator__C",
        [0.1, 1.0],
    ),
    "multioutput_logistic": (
        lambda: MultiOutputClassifier(LogisticRegression()),
        "multilabel",
        "estimator__C",
        [0.1, 1.0],
    ),
    "classifier_chain": (
        lambda: ClassifierChain(LogisticRegression(), order=[2, 0, 1]),
        "multilabel",
        "estimator__C",
        [0.1, 1.0],
    ),
    "random_forest": (
        lambda: RandomForestClassifier(n_estimators=8, random_state=0),
        "constant_fold",
        "max_depth",
        [2, None],
    ),
    "k_neighbors": (
        lambda: KNeighborsClassifier(),
        "constant_fold",
        "n_neighbors",
        [3, 7],
    ),
    "mlp": (
        lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0),
        "constant_fold",
        "alpha",
        [1e-4, 1.0],
    ),
    "binary_string_logistic": (
        lambda: LogisticRegression(),
        "binary_str",
        "C",
        [0.1, 1.0],
    ),
    "pipeline_scaler_knn": (
        lambda: Pipeline(
            [("scale", StandardScaler()), ("knn", KNeighborsClassifier())]
        ),
        "constant_fold",
        "knn__n_neighbors",
        [3, 7],
    ),
    "multilabel_logistic": (
        multilabel_logistic,
        "constant_fold",
        "C",
        [0.1, 1.0],
    ),
}


@pytest.fixture(params=list(CASES))
def case(request):
    factory, data, param, values = CASES[request.param]
    X, y = DATA[data]()
    return factory(), X, y, param, values


def check_split_scores(estimator, X, y, params, train_test, scores, **options):
    """Refit on each training part and compare with the reported scores."""
    for (train, test), score in zip(train_test, scores):
        fitted = clone(estimator).set_params(**params).fit(X[train], y[train])
        expected = reference_score(fitted, X[test], y[test], **options)
        assert score == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_constant_fold_data_has_constant_training_labels():
    X, Y = constant_fold_data()
    train, _ = next(CV.split(X))
    assert np.all(Y[train, 2] == 0) and np.all(Y[train, 3] == 1)
    assert Y[:, 2].any() and not Y[:, 3].all()
    forest = RandomForestClassifier(n_estimators=2, random_state=0)
    forest.fit(X[train], Y[train])
    assert [c.tolist() for c in forest.classes_[2:]] == [[0], [1]]


# ---------------------------------------------------------------------------
# Model selection: values against the numpy reference
# ---------------------------------------------------------------------------


def test_grid_search(case):
    estimator, X, y, param, values = case
    search = GridSearchCV(estimator, {param: values}, scoring=bce_scorer, cv=CV)
    search.fit(X, y)
    splits = list(CV.split(X))
    for i, params in enumerate(search.cv_results_["params"]):
        scores = [search.cv_results_[f"split{s}_test_score"][i] for s in range(3)]
        check_split_scores(estimator, X, y, params, splits, scores)
    assert search.best_score_ == np.max(search.cv_results_["mean_test_score"])
    best = clone(estimator).set_params(**search.best_params_).fit(X, y)
    assert search.score(X, y) == pytest.approx(reference_score(best, X, y), rel=1e-9)


def test_randomized_search_multimetric(case):
    estimator, X, y, param, values = case
    scoring = {
        "bce": bce_scorer,
        "bce_pos_weight": make_bce_scorer(pos_weight=2.0),
        "ref": reference_scorer(),
        "ref_pos_weight": reference_scorer(pos_weight=2.0),
    }
    search = RandomizedSearchCV(
        estimator,
        {param: values},
        n_iter=2,
        scoring=scoring,
        refit="bce",
        cv=CV,
        random_state=0,
    )
    search.fit(X, y)
    results = search.cv_results_
    for s in range(3):
        np.testing.assert_allclose(
            results[f"split{s}_test_bce"], results[f"split{s}_test_ref"], rtol=1e-9
        )
        np.testing.assert_allclose(
            results[f"split{s}_test_bce_pos_weight"],
            results[f"split{s}_test_ref_pos_weight"],
            rtol=1e-9,
        )
    assert not np.allclose(
        results["mean_test_bce"], results["mean_test_bce_pos_weight"]
    )
    assert search.best_index_ == np.argmax(results["mean_test_bce"])


def test_cross_validate_multimetric(case):
    estimator, X, y, _, _ = case
    scoring = {
        "bce": bce_scorer,
        "smoothed": make_bce_scorer(label_smoothing=0.2),
        "logits": make_bce_scorer(from_logits=True),
        "accuracy": "accuracy",
    }
    if not hasattr(estimator, "decision_function"):
        del scoring["logits"]
    result = cross_validate(
        estimator,
        X,
        y,
        cv=CV,
        scoring=scoring,
        return_estimator=True,
        return_indices=True,
    )
    tests = result["indices"]["test"]
    for s, (fitted, test) in enumerate(zip(result["estimator"], tests)):
        Xt, yt = X[test], y[test]
        assert result["test_bce"][s] == pytest.approx(
            reference_score(fitted, Xt, yt), rel=1e-9
        )
        assert result["test_smoothed"][s] == pytest.approx(
            reference_score(fitted, Xt, yt, label_smoothing=0.2), rel=1e-9
        )
        if "logits" in scoring:
            logits = fitted.decision_function(Xt)
            expected = -numpy_bce(
                reference_targets(fitted, yt), logits, from_logits=True
            )
            assert result["test_logits"][s] == pytest.approx(expected, rel=1e-7)
            if not isinstance(fitted, (OneVsRestClassifier,)):
                # Logistic models: predict_proba is the sigmoid of the logits.
                assert result["test_logits"][s] == pytest.approx(
                    result["test_bce"][s], rel=1e-6
                )


def test_permutation_importance(case):
    estimator, X, y, _, _ = case
    fitted = estimator.fit(X, y)
    assert bce_scorer(fitted, X, y) == pytest.approx(
        reference_score(fitted, X, y), rel=1e-9
    )
    common = dict(n_repeats=3, random_state=0)
    ours = permutation_importance(fitted, X, y, scoring=bce_scorer, **common)
    reference = permutation_importance(
        fitted, X, y, scoring=reference_scorer(), **common
    )
    np.testing.assert_allclose(
        ours.importances, reference.importances, rtol=1e-7, atol=1e-12
    )
    assert np.any(ours.importances_mean != 0)

    # Multi-metric dict through permutation_importance.
    both = permutation_importance(
        fitted,
        X,
        y,
        scoring={"bce": bce_scorer, "pw": make_bce_scorer(pos_weight=3.0)},
        **common,
    )
    reference_pw = permutation_importance(
        fitted, X, y, scoring=reference_scorer(pos_weight=3.0), **common
    )
    np.testing.assert_allclose(both["bce"].importances, ours.importances, rtol=1e-9)
    np.testing.assert_allclose(
        both["pw"].importances, reference_pw.importances, rtol=1e-7, atol=1e-12
    )


# ---------------------------------------------------------------------------
# skbce versus neg_log_loss
# ---------------------------------------------------------------------------


def test_issue_example_differs_from_neg_log_loss():
    Y = np.array([[1, 0, 1], [0, 1, 1]])
    P = np.array([[0.8, 0.3, 0.9], [0.2, 0.6, 0.7]])
    model = Precomputed(predict_proba=P, classes_=np.arange(3))
    assert bce_scorer(model, None, Y) == pytest.approx(-numpy_bce(Y, P), rel=1e-12)
    assert bce_scorer(model, None, Y) == pytest.approx(-0.296, abs=5e-4)
    neg_log_loss = check_scoring(LogisticRegression(), "neg_log_loss")
    with pytest.warns(UserWarning, match="do not sum to one"):
        sklearn_value = neg_log_loss(model, None, Y)
    assert sklearn_value == pytest.approx(-0.598, abs=5e-4)
    assert sklearn_value == pytest.approx(-sklearn_multilabel_log_loss(Y, P))


def test_agrees_with_neg_log_loss_on_binary_differs_on_multilabel():
    # Binary (string labels): neg_log_loss is right and skbce agrees.
    X, y = binary_string_data()
    result = cross_validate(
        LogisticRegression(),
        X,
        y,
        cv=CV,
        scoring={"bce": bce_scorer, "neg_log_loss": "neg_log_loss"},
    )
    np.testing.assert_allclose(
        result["test_bce"], result["test_neg_log_loss"], rtol=1e-10
    )

    # Multi-label: neg_log_loss drops the (1 - y) log(1 - p) terms and sums
    # over labels; skbce is the BCE, on every fold.
    X, Y = multilabel_data()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The y_prob values do not sum to one")
        result = cross_validate(
            OneVsRestClassifier(LogisticRegression()),
            X,
            Y,
            cv=CV,
            scoring={"bce": bce_scorer, "neg_log_loss": "neg_log_loss"},
            return_estimator=True,
            return_indices=True,
        )
    for s, (fitted, test) in enumerate(
        zip(result["estimator"], result["indices"]["test"])
    ):
        P = fitted.predict_proba(X[test])
        assert result["test_bce"][s] == pytest.approx(-numpy_bce(Y[test], P))
        assert result["test_neg_log_loss"][s] == pytest.approx(
            -sklearn_multilabel_log_loss(Y[test], P)
        )
        assert abs(result["test_bce"][s] - result["test_neg_log_loss"][s]) > 0.05


# ---------------------------------------------------------------------------
# Plain make_scorer(binary_cross_entropy, ...)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "ovr_logistic",
        "multioutput_logistic",
        "classifier_chain",
        "mlp",
        "random_forest",
        "k_neighbors",
        "pipeline_scaler_knn",
        "multilabel_logistic",
    ],
)
def test_plain_make_scorer_predict_proba(name):
    factory, _, _, _ = CASES[name]
    X, Y = multilabel_data()
    scorer = make_scorer(
        binary_cross_entropy, response_method="predict_proba", greater_is_better=False
    )
    result = cross_validate(
        factory(), X, Y, cv=CV, scoring={"plain": scorer, "skbce": bce_scorer}
    )
    np.testing.assert_allclose(result["test_plain"], result["test_skbce"], rtol=1e-12)
    fitted = factory().fit(X, Y)
    assert scorer(fitted, X, Y) == pytest.approx(reference_score(fitted, X, Y))


def test_plain_make_scorer_on_list_outputs_and_binary():
    scorer = make_scorer(
        binary_cross_entropy, response_method="predict_proba", greater_is_better=False
    )
    X, Y = multilabel_data()
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    assert scorer(forest, X, Y) == pytest.approx(reference_score(forest, X, Y))
    y = Y[:, 0]
    logistic = LogisticRegression().fit(X, y)
    assert scorer(logistic, X, y) == pytest.approx(reference_score(logistic, X, y))


def test_plain_make_scorer_limits_where_bce_scorer_is_needed():
    scorer = make_scorer(
        binary_cross_entropy, response_method="predict_proba", greater_is_better=False
    )
    # A label constant in a training fold: (n, 1) arrays in the list.
    X, Y = constant_fold_data()
    with pytest.raises(ValueError, match="bce_scorer"):
        cross_validate(
            RandomForestClassifier(n_estimators=4, random_state=0),
            X,
            Y,
            cv=CV,
            scoring=scorer,
            error_score="raise",
        )
    # String labels.
    X, y = binary_string_data()
    logistic = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="y_true"):
        scorer(logistic, X, y)
    assert bce_scorer(logistic, X, y) == pytest.approx(reference_score(logistic, X, y))


def test_plain_make_scorer_decision_function_from_logits():
    scorer = make_scorer(
        binary_cross_entropy,
        response_method="decision_function",
        greater_is_better=False,
        from_logits=True,
    )
    X, Y = multilabel_data()
    ovr = OneVsRestClassifier(LogisticRegression()).fit(X, Y)
    expected = -numpy_bce(Y, ovr.decision_function(X), from_logits=True)
    assert scorer(ovr, X, Y) == pytest.approx(expected, rel=1e-9)
    y = Y[:, 1]
    logistic = LogisticRegression().fit(X, y)
    assert scorer(logistic, X, y) == pytest.approx(
        reference_score(logistic, X, y), rel=1e-7
    )


# ---------------------------------------------------------------------------
# Direct calls on controlled predictions
# ---------------------------------------------------------------------------


class Precomputed(ClassifierMixin, BaseEstimator):
    """An 'estimator' returning fixed responses; counts the calls."""

    def __init__(self, predict_proba=None, decision_function=None, classes_=None):
        self._proba = predict_proba
        self._decision = decision_function
        self.calls = 0
        if classes_ is not None:
            self.classes_ = classes_

    def __getattr__(self, name):
        if name == "predict_proba" and self.__dict__.get("_proba") is not None:
            return self._respond(self._proba)
        if name == "decision_function" and self.__dict__.get("_decision") is not None:
            return self._respond(self._decision)
        raise AttributeError(name)

    def _respond(self, value):
        def method(X):
            self.calls += 1
            return value

        is_proba = value is self._proba
        method.__name__ = "predict_proba" if is_proba else "decision_function"
        return method

    def fit(self, X, y):
        return self


def test_list_output_with_single_class_outputs():
    rng = np.random.default_rng(1)
    p0, p1 = rng.uniform(size=8), rng.uniform(size=8)
    proba = [
        np.column_stack([1 - p0, p0]),
        np.ones((8, 1)),  # classes_ == [0]: P(label = 1) is 0
        np.ones((8, 1)),  # classes_ == [1]: P(label = 1) is 1
        np.column_stack([1 - p1, p1]),
    ]
    classes = [np.array([0, 1]), np.array([0]), np.array([1]), np.array([0.0, 1.0])]
    Y = (rng.uniform(size=(8, 4)) < 0.5).astype(int)
    model = Precomputed(predict_proba=proba, classes_=classes)
    expected_p = np.column_stack([p0, np.zeros(8), np.ones(8), p1])
    assert bce_scorer(model, None, Y) == pytest.approx(-numpy_bce(Y, expected_p))
    # The last column is not the positive class of a [0]-only output:
    wrong = np.column_stack([p0, np.ones(8), np.ones(8), p1])
    assert bce_scorer(model, None, Y) != pytest.approx(-numpy_bce(Y, wrong))
    # Plain metric on such a list: a clear error pointing to bce_scorer.
    with pytest.raises(ValueError, match="bce_scorer"):
        binary_cross_entropy(Y, proba)


def test_bool_classes_and_bool_targets():
    p = np.array([0.2, 0.7, 0.9])
    Y = np.array([[False, True], [True, True], [True, False]])
    proba = [np.column_stack([1 - p, p]), np.column_stack([p, 1 - p])]
    model = Precomputed(predict_proba=proba, classes_=[np.array([False, True])] * 2)
    expected = -numpy_bce(Y, np.column_stack([p, 1 - p]))
    assert bce_scorer(model, None, Y) == pytest.approx(expected)


@pytest.mark.parametrize(
    "labels", [("no", "yes"), (-1, 1), (1, 2), (False, True), ("b", "a")]
)
def test_binary_labels_positive_is_classes_1(labels):
    X, Y = multilabel_data()
    y = np.where(Y[:, 0] == 1, labels[1], labels[0])
    model = LogisticRegression().fit(X, y)
    positive = model.classes_[1]
    expected = -numpy_bce((y == positive).astype(float), model.predict_proba(X)[:, 1])
    assert bce_scorer(model, X, y) == pytest.approx(expected, rel=1e-12)
    # decision_function scores classes_[1] too.
    logits = make_bce_scorer(from_logits=True)(model, X, y)
    assert logits == pytest.approx(expected, rel=1e-7)
    # As a column vector.
    assert bce_scorer(model, X, y[:, None]) == pytest.approx(expected, rel=1e-12)


def test_binary_label_not_seen_in_training_is_an_error():
    X, Y = multilabel_data()
    model = LogisticRegression().fit(X, np.where(Y[:, 0] == 1, "yes", "no"))
    with pytest.raises(ValueError, match="maybe"):
        bce_scorer(model, X, np.where(Y[:, 0] == 1, "yes", "maybe"))


def test_soft_targets():
    rng = np.random.default_rng(2)
    P = rng.uniform(0.05, 0.95, size=(20, 3))
    Y_soft = rng.uniform(size=(20, 3))
    model = Precomputed(predict_proba=P, classes_=np.arange(3))
    assert bce_scorer(model, None, Y_soft) == pytest.approx(-numpy_bce(Y_soft, P))
    # 1-D soft target against a binary predict_proba.
    binary = Precomputed(
        predict_proba=np.column_stack([1 - P[:, 0], P[:, 0]]), classes_=np.array([0, 1])
    )
    y = Y_soft[:, 0]
    assert bce_scorer(binary, None, y) == pytest.approx(-numpy_bce(y, P[:, 0]))
    # Plain make_scorer would let sklearn reject them (they are "continuous").
    with pytest.raises(ValueError):
        check_scoring(LogisticRegression(), "neg_log_loss")(binary, None, y)


class TrainingMean(ClassifierMixin, BaseEstimator):
    """Predicts each label's (soft) training mean: a soft-target baseline."""

    def fit(self, X, Y):
        self.mean_ = np.clip(np.mean(Y, axis=0), 0.01, 0.99)
        self.classes_ = np.arange(np.shape(Y)[1])
        return self

    def predict_proba(self, X):
        return np.tile(self.mean_, (len(X), 1))


def test_soft_targets_in_cross_validate():
    X, _ = multilabel_data()
    rng = np.random.default_rng(3)
    Y_soft = rng.beta(2, 5, size=(N_SAMPLES, 3))
    result = cross_validate(
        TrainingMean(), X, Y_soft, cv=CV, scoring=bce_scorer, return_indices=True
    )
    for s, (train, test) in enumerate(
        zip(result["indices"]["train"], result["indices"]["test"])
    ):
        mean = np.clip(Y_soft[train].mean(axis=0), 0.01, 0.99)
        expected = -numpy_bce(Y_soft[test], np.tile(mean, (len(test), 1)))
        assert result["test_score"][s] == pytest.approx(expected, rel=1e-12)


def test_soft_targets_multilabel_logistic():
    from skbce import MultiLabelLogistic

    X, _ = multilabel_data()
    rng = np.random.default_rng(4)
    Y_soft = rng.beta(2, 2, size=(N_SAMPLES, 3))
    search = GridSearchCV(
        MultiLabelLogistic(), {"C": [0.1, 1.0]}, scoring=bce_scorer, cv=CV
    ).fit(X, Y_soft)
    check_split_scores(
        MultiLabelLogistic(),
        X,
        Y_soft,
        search.cv_results_["params"][0],
        list(CV.split(X)),
        [search.cv_results_[f"split{s}_test_score"][0] for s in range(3)],
    )
    y_soft = Y_soft[:, 0]
    model = MultiLabelLogistic().fit(X, y_soft)
    expected = -numpy_bce(y_soft, model.predict_proba(X)[:, 1])
    assert bce_scorer(model, X, y_soft) == pytest.approx(expected, rel=1e-9)


def test_loss_options_against_numpy():
    rng = np.random.default_rng(5)
    P = rng.uniform(0.01, 0.99, size=(30, 3))
    Y = (rng.uniform(size=(30, 3)) < 0.4).astype(int)
    model = Precomputed(predict_proba=P, classes_=np.arange(3))
    pw, lw = np.array([1.0, 2.0, 0.5]), np.array([0.2, 1.0, 3.0])
    scorer = make_bce_scorer(pos_weight=pw, label_weight=lw, label_smoothing=0.1)
    expected = -numpy_bce(Y, P, pos_weight=pw, label_weight=lw, label_smoothing=0.1)
    assert scorer(model, None, Y) == pytest.approx(expected, rel=1e-12)
    assert make_bce_scorer(eps=0.05)(model, None, Y) == pytest.approx(
        -numpy_bce(Y, np.clip(P, 0.05, 0.95))
    )


def test_decision_function_fallback_and_from_logits():
    X, Y = multilabel_data()
    y = Y[:, 2]
    svc = LinearSVC().fit(X, y)  # no predict_proba
    expected = -numpy_bce(y, svc.decision_function(X), from_logits=True)
    assert bce_scorer(svc, X, y) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(AttributeError, match="LinearSVC"):
        make_bce_scorer(from_logits=False)(svc, X, y)

    ovr = OneVsRestClassifier(LinearSVC()).fit(X, Y)
    expected = -numpy_bce(Y, ovr.decision_function(X), from_logits=True)
    assert bce_scorer(ovr, X, Y) == pytest.approx(expected, rel=1e-9)

    # from_logits=True scores decision_function even when predict_proba exists.
    logistic = Precomputed(
        predict_proba=np.full((3, 2), 0.5),
        decision_function=np.array([2.0, -1.0, 0.5]),
        classes_=np.array([0, 1]),
    )
    y = np.array([1, 0, 0])
    assert make_bce_scorer(from_logits=True)(logistic, None, y) == pytest.approx(
        -numpy_bce(y, [2.0, -1.0, 0.5], from_logits=True)
    )
    assert bce_scorer(logistic, None, y) == pytest.approx(np.log(0.5))


def test_error_when_no_probability_or_decision_function():
    X, Y = multilabel_data()
    regressor = LinearRegression().fit(X, Y[:, 0])
    with pytest.raises(AttributeError, match="LinearRegression.*neither"):
        bce_scorer(regressor, X, Y[:, 0])
    # Inside multi-metric cross-validation the error still names it.
    with pytest.raises(AttributeError, match="LinearRegression"):
        cross_validate(
            LinearRegression(),
            X,
            Y[:, 0],
            cv=CV,
            scoring={"a": bce_scorer, "b": make_bce_scorer(pos_weight=2.0)},
            error_score="raise",
        )


def test_error_on_multiclass_targets():
    X, Y = multilabel_data()
    y = Y @ np.array([1, 1, 1])  # 0..3
    model = LogisticRegression().fit(X, y)
    message = r"(?s)multiclass.*LogisticRegression.*log_loss"
    with pytest.raises(ValueError, match=message):
        bce_scorer(model, X, y)
    with pytest.raises(ValueError, match="log_loss"):
        cross_validate(model, X, y, cv=CV, scoring=bce_scorer, error_score="raise")
    # Multiclass-multioutput: per-output classes of size 3.
    Y3 = np.column_stack([y, Y[:, 0]])
    tree = DecisionTreeClassifier(random_state=0).fit(X, Y3)
    with pytest.raises(ValueError, match="log_loss"):
        bce_scorer(tree, X, Y3)
    # Without classes_, from the target values.
    no_classes = Precomputed(predict_proba=np.full((N_SAMPLES, 2), 0.5))
    with pytest.raises(ValueError, match="log_loss"):
        bce_scorer(no_classes, X, y)
    no_classes = Precomputed(predict_proba=np.full((N_SAMPLES, 2), 0.5))
    with pytest.raises(ValueError, match="multiclass-multioutput.*log_loss"):
        bce_scorer(no_classes, X, Y3.astype(float))
    # classes_ [0, 1] but a target with a third class.
    binary = LogisticRegression().fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="log_loss"):
        bce_scorer(binary, X, y)


# ---------------------------------------------------------------------------
# sample_weight and metadata routing
# ---------------------------------------------------------------------------


def test_sample_weight_direct_call():
    X, Y = multilabel_data()
    w = np.random.default_rng(6).uniform(0.1, 2.0, size=N_SAMPLES)
    model = OneVsRestClassifier(LogisticRegression()).fit(X, Y)
    expected = -numpy_bce(Y, model.predict_proba(X), sample_weight=w)
    assert bce_scorer(model, X, Y, sample_weight=w) == pytest.approx(expected)
    assert bce_scorer(model, X, Y) != pytest.approx(expected)


def test_sample_weight_routing_cross_validate_and_grid_search():
    X, Y = constant_fold_data()
    w = np.random.default_rng(7).uniform(0.1, 2.0, size=N_SAMPLES)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_bce_scorer().set_score_request(sample_weight=True)
        scorer_pw = make_bce_scorer(pos_weight=2.0).set_score_request(
            sample_weight=True
        )
        result = cross_validate(
            KNeighborsClassifier(),
            X,
            Y,
            cv=CV,
            scoring={
                "bce": scorer,
                "pw": scorer_pw,
                "plain": make_bce_scorer().set_score_request(sample_weight=False),
            },
            params={"sample_weight": w},
            return_estimator=True,
            return_indices=True,
        )
        for s, (fitted, test) in enumerate(
            zip(result["estimator"], result["indices"]["test"])
        ):
            P = reference_positive_proba(fitted, X[test], Y[test])
            assert result["test_bce"][s] == pytest.approx(
                -numpy_bce(Y[test], P, sample_weight=w[test])
            )
            assert result["test_pw"][s] == pytest.approx(
                -numpy_bce(Y[test], P, sample_weight=w[test], pos_weight=2.0)
            )
            assert result["test_plain"][s] == pytest.approx(-numpy_bce(Y[test], P))

        # Weighted fit and weighted score through GridSearchCV.
        estimator = OneVsRestClassifier(
            LogisticRegression().set_fit_request(sample_weight=True)
        )
        search = GridSearchCV(
            estimator, {"estimator__C": [0.1, 1.0]}, scoring=scorer, cv=CV
        ).fit(X, Y, sample_weight=w)
        for i, params in enumerate(search.cv_results_["params"]):
            for s, (train, test) in enumerate(CV.split(X)):
                fitted = clone(estimator).set_params(**params)
                fitted.fit(X[train], Y[train], sample_weight=w[train])
                expected = -numpy_bce(
                    Y[test], fitted.predict_proba(X[test]), sample_weight=w[test]
                )
                assert search.cv_results_[f"split{s}_test_score"][i] == pytest.approx(
                    expected, rel=1e-9
                )
    # The shared bce_scorer was not modified.
    assert not hasattr(bce_scorer, "_metadata_request")


# ---------------------------------------------------------------------------
# Scorer plumbing
# ---------------------------------------------------------------------------


def test_multimetric_cache_shares_one_predict_proba_call():
    P = np.array([[0.9, 0.2], [0.3, 0.6], [0.4, 0.1]])
    Y = np.array([[1, 0], [0, 1], [1, 0]])
    model = Precomputed(predict_proba=P, classes_=np.arange(2))
    multi = check_scoring(
        model,
        {"a": bce_scorer, "b": make_bce_scorer(pos_weight=2.0), "c": bce_scorer},
    )
    scores = multi(model, None, Y)
    assert model.calls == 1
    assert scores["a"] == scores["c"] == pytest.approx(-numpy_bce(Y, P))
    assert scores["b"] == pytest.approx(-numpy_bce(Y, P, pos_weight=2.0))


def test_multimetric_with_sklearn_scorers_on_binary():
    X, y = binary_string_data()
    model = LogisticRegression().fit(X, y)
    multi = check_scoring(
        model, {"bce": bce_scorer, "nll": "neg_log_loss", "auc": "roc_auc"}
    )
    scores = multi(model, X, y)
    assert scores["bce"] == pytest.approx(scores["nll"], rel=1e-12)
    assert scores["bce"] == pytest.approx(reference_score(model, X, y))


def test_check_scoring_repr_pickle_and_validation():
    assert check_scoring(LogisticRegression(), bce_scorer) is bce_scorer
    assert repr(bce_scorer) == "make_bce_scorer()"
    assert repr(make_bce_scorer(from_logits=True, pos_weight=2.0)) == (
        "make_bce_scorer(from_logits=True, pos_weight=2.0)"
    )
    X, Y = multilabel_data()
    model = KNeighborsClassifier().fit(X, Y)
    clone_ = pickle.loads(pickle.dumps(make_bce_scorer(label_smoothing=0.1)))
    assert clone_(model, X, Y) == make_bce_scorer(label_smoothing=0.1)(model, X, Y)
    with pytest.raises(InvalidParameterError):
        make_bce_scorer(label_smoothing=2.0)
    with pytest.raises(InvalidParameterError):
        make_bce_scorer(from_logits="yes")
    assert skbce.bce_scorer is bce_scorer and "make_bce_scorer" in skbce.__all__


def test_two_labels_are_not_mistaken_for_binary_columns():
    # OneVsRestClassifier on two labels has classes_ == [0, 1] and a
    # predict_proba of shape (n, 2): one column per label, not per class.
    X, Y = multilabel_data()
    model = OneVsRestClassifier(LogisticRegression()).fit(X, Y[:, :2])
    assert model.classes_.tolist() == [0, 1]
    P = model.predict_proba(X)
    assert bce_scorer(model, X, Y[:, :2]) == pytest.approx(-numpy_bce(Y[:, :2], P))


@pytest.mark.filterwarnings("ignore:A column-vector y was passed")
def test_sparse_and_column_vector_targets():
    X, Y = multilabel_data()
    model = OneVsRestClassifier(LogisticRegression()).fit(X, Y)
    expected = reference_score(model, X, Y)
    assert bce_scorer(model, X, sparse.csr_matrix(Y)) == pytest.approx(expected)
    single = MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    single.fit(X, Y[:, :1])
    P = single.predict_proba(X)
    assert bce_scorer(single, X, Y[:, :1]) == pytest.approx(
        -numpy_bce(Y[:, :1], P.reshape(-1)[:, None] if P.ndim == 1 else P[:, -1:])
    )


# ---------------------------------------------------------------------------
# One-column 2-D targets: y.reshape(-1, 1), df[["target"]]
# ---------------------------------------------------------------------------


def breast_cancer_scaled():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def one_column(y, container):
    if container == "pandas":
        pd = pytest.importorskip("pandas")
        return pd.DataFrame({"target": y})[["target"]]
    return y.reshape(-1, 1)


def positive_proba_by_hand(model, X):
    """P(y = 1) from predict_proba, reading the class order off classes_."""
    proba = model.predict_proba(X)
    if isinstance(proba, list):  # MultiOutputClassifier: one output
        (proba,), (classes,) = proba, model.classes_
        return proba[:, list(classes).index(1)]
    if proba.shape[1] == 2:
        return proba[:, list(model.classes_).index(1)]
    # One column per label of a multi-label indicator matrix.
    assert proba.shape[1] == 1
    return proba[:, 0]


ONE_COLUMN_ESTIMATORS = {
    "multilabel_logistic": multilabel_logistic,
    "one_vs_rest": lambda: OneVsRestClassifier(LogisticRegression()),
    "multi_output": lambda: MultiOutputClassifier(LogisticRegression()),
    "random_forest": lambda: RandomForestClassifier(n_estimators=8, random_state=0),
    "k_neighbors": lambda: KNeighborsClassifier(),
}


@pytest.mark.filterwarnings("ignore:A column-vector y was passed")
@pytest.mark.parametrize("container", ["numpy", "pandas"])
@pytest.mark.parametrize("name", ONE_COLUMN_ESTIMATORS)
def test_one_column_target_scores_the_bce_of_predict_proba(name, container):
    X, y = breast_cancer_scaled()
    Y1 = one_column(y, container)
    model = ONE_COLUMN_ESTIMATORS[name]().fit(X, Y1)
    expected = -numpy_bce(y, positive_proba_by_hand(model, X))
    assert bce_scorer(model, X, Y1) == pytest.approx(expected, rel=1e-9)
    assert bce_scorer(model, X, y) == pytest.approx(expected, rel=1e-9)
    if name != "multi_output":  # which needs a 2-D target
        # The same model as from the 1-D target, so the same score.
        flat = ONE_COLUMN_ESTIMATORS[name]().fit(X, y)
        assert bce_scorer(flat, X, y) == pytest.approx(expected, rel=1e-6)


def test_one_column_target_grid_search_picks_the_one_d_choice():
    from skbce import MultiLabelLogistic

    X, y = breast_cancer_scaled()
    grid = {"C": [1e-4, 1e-2, 1.0, 100.0]}
    searches = {
        shape: GridSearchCV(MultiLabelLogistic(), grid, scoring=bce_scorer).fit(X, target)
        for shape, target in [("1-D", y), ("column", y.reshape(-1, 1))]
    }
    one_d, column = searches["1-D"], searches["column"]
    scores = column.cv_results_["mean_test_score"]
    assert len(np.unique(scores)) == len(grid["C"])
    np.testing.assert_allclose(scores, one_d.cv_results_["mean_test_score"], rtol=1e-9)
    assert column.best_params_ == one_d.best_params_
    assert column.best_params_["C"] != 1e-4
    # Each split's score is the BCE of the refitted model, computed by hand
    # (GridSearchCV splits a classifier's data with StratifiedKFold).
    best = column.best_index_
    for s, (train, test) in enumerate(StratifiedKFold(n_splits=5).split(X, y)):
        fitted = MultiLabelLogistic(**column.best_params_).fit(X[train], y[train, None])
        expected = -numpy_bce(y[test], positive_proba_by_hand(fitted, X[test]))
        assert column.cv_results_[f"split{s}_test_score"][best] == pytest.approx(
            expected, rel=1e-9
        )
