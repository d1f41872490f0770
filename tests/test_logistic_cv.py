"""MultiLabelLogisticCV: its choice of C against independent loops, and its refit."""

import warnings

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import f1_score, make_scorer, roc_auc_score
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbce import MultiLabelLogistic, MultiLabelLogisticCV, binary_cross_entropy

CS = np.array([0.003, 0.03, 0.3, 3.0, 30.0])
TIGHT = dict(tol=1e-9, max_iter=5000)


@pytest.fixture(scope="module")
def data():
    # Four labels from weak to strong signal: they want different C's.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 6))
    logits = (X @ rng.standard_normal((6, 4))) * np.array([0.2, 0.7, 2.0, 6.0])
    Y = (rng.uniform(size=logits.shape) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, Y


def manual_scores(X, Y, folds, score, sample_weight=None):
    """(n_folds, n_Cs, n_labels) scores of independent fits, one per fold and C."""
    out = []
    for train, test in folds:
        sw = None if sample_weight is None else sample_weight[train]
        row = []
        for C in CS:
            model = MultiLabelLogistic(C=C, **TIGHT).fit(X[train], Y[train], sample_weight=sw)
            row.append(score(Y[test], model.predict_proba(X[test]), model.predict(X[test]), test))
        out.append(row)
    return np.array(out)


def assert_path_scores(scores, expected, patience=2, **tolerance):
    """``scores`` are the loop's where computed; NaN only after a label left the path.

    A label may leave only once the mean of the loop's scores fell at
    ``patience`` consecutive C's, and then leaves in every fold at once.
    """
    computed = ~np.isnan(scores)
    assert_allclose(scores[computed], expected[computed], **tolerance)
    assert np.all(computed == computed[0])
    steps = computed[0].reshape(len(CS), -1)
    mean = expected.mean(axis=0).reshape(len(CS), -1)
    for j, n_steps in enumerate(steps.sum(axis=0)):
        assert steps[:n_steps, j].all()  # a prefix of the path
        if n_steps < len(CS):
            falls = mean[n_steps - 1 - patience:n_steps, j]
            assert len(falls) == patience + 1 and np.all(np.diff(falls) < 0)
    return steps.sum(axis=0)


def neg_bce(Y, P, sample_weight=None):
    loss = -(Y * np.log(P) + (1 - Y) * np.log1p(-P))
    return -np.average(loss, axis=0, weights=sample_weight)


def test_C_per_label_is_the_argmax_of_an_independent_loop(data):
    X, Y = data
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    expected = manual_scores(X, Y, folds, lambda y, p, _, __: neg_bce(y, p))
    model = MultiLabelLogisticCV(Cs=CS, cv=folds, **TIGHT).fit(X, Y)
    assert model.scores_.shape == (3, len(CS), Y.shape[1])
    n_steps = assert_path_scores(model.scores_, expected, rtol=1e-6)
    assert np.any(n_steps < len(CS))  # labels left the path past their best
    assert_array_equal(model.C_, CS[np.argmax(expected.mean(axis=0), axis=0)])
    assert len(np.unique(model.C_)) > 1  # the labels really choose differently
    assert_array_equal(model.Cs_, CS)
    assert model.n_iter_.shape == (3, len(CS))
    assert np.all((model.n_iter_ > 0) == (np.arange(len(CS)) < n_steps.max()))
    # Without leaving the path: every score, and the same choice.
    full = MultiLabelLogisticCV(Cs=CS, cv=folds, path_patience=None, **TIGHT).fit(X, Y)
    assert_allclose(full.scores_, expected, rtol=1e-6)
    assert_array_equal(full.C_, model.C_)
    assert_allclose(full.coef_, model.coef_, rtol=1e-6, atol=1e-8)


def test_refit_is_each_label_fitted_alone_with_its_C(data):
    X, Y = data
    model = MultiLabelLogisticCV(Cs=CS, cv=3, **TIGHT).fit(X, Y)
    for j, C in enumerate(model.C_):
        alone = MultiLabelLogistic(C=C, **TIGHT).fit(X, Y[:, j])
        assert_allclose(model.coef_[j], alone.coef_[0], rtol=1e-5, atol=1e-7)
        assert_allclose(model.intercept_[j], alone.intercept_[0], rtol=1e-5, atol=1e-7)
    assert_allclose(model.predict_proba(X), 1 / (1 + np.exp(-(X @ model.coef_.T
                                                               + model.intercept_))))


def test_scorer_per_label_and_for_all_labels(data):
    X, Y = data
    folds = list(KFold(3, shuffle=True, random_state=2).split(X))

    def auc(y, p, _, __):
        return [roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1])]

    expected = manual_scores(X, Y, folds, auc)
    model = MultiLabelLogisticCV(Cs=CS, cv=folds, scoring="roc_auc", **TIGHT).fit(X, Y)
    assert_path_scores(model.scores_, expected, rtol=1e-6)
    assert_array_equal(model.C_, CS[np.argmax(expected.mean(axis=0), axis=0)])

    expected = manual_scores(
        X, Y, folds, lambda y, _, pred, __: f1_score(y, pred, average="micro"))
    model = MultiLabelLogisticCV(Cs=CS, cv=folds, scoring="f1_micro", per_label=False,
                                 **TIGHT).fit(X, Y)
    assert model.scores_.shape == (3, len(CS))
    assert_path_scores(model.scores_, expected)
    assert model.C_ == CS[np.argmax(expected.mean(axis=0))]
    assert_allclose(model.coef_, MultiLabelLogistic(C=model.C_, **TIGHT).fit(X, Y).coef_,
                    rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # LogisticRegressionCV's transitions
def test_binary_target_matches_logistic_regression_cv(data):
    X, Y = data
    y = np.where(Y[:, 1] == 1, "yes", "no")
    folds = list(StratifiedKFold(4).split(X, y))
    ours = MultiLabelLogisticCV(Cs=CS, cv=folds, **TIGHT).fit(X, y)
    peer = LogisticRegressionCV(Cs=CS, cv=folds, scoring="neg_log_loss", tol=1e-10,
                                max_iter=5000).fit(X, y)
    assert ours.C_.shape == (1,)
    assert ours.C_[0] == np.ravel(peer.C_)[0]
    assert_array_equal(ours.classes_, ["no", "yes"])
    assert_allclose(ours.coef_, peer.coef_, rtol=1e-4, atol=1e-6)
    assert_array_equal(ours.predict(X), peer.predict(X))


def test_refit_false_averages_the_folds_at_the_chosen_C(data):
    X, Y = data
    folds = list(KFold(3).split(X))
    model = MultiLabelLogisticCV(Cs=CS, cv=folds, refit=False, **TIGHT).fit(X, Y)
    fits = [[MultiLabelLogistic(C=C, **TIGHT).fit(X[train], Y[train]) for C in model.C_]
            for train, _ in folds]
    coef = np.mean([[m.coef_[j] for j, m in enumerate(row)] for row in fits], axis=0)
    assert_allclose(model.coef_, coef, rtol=1e-5, atol=1e-7)
    assert model.refit_n_iter_ == 0


def test_sample_weight_in_fits_and_default_score(data):
    X, Y = data
    sw = np.random.default_rng(0).uniform(0.2, 3.0, len(X))
    folds = list(KFold(3).split(X))
    expected = manual_scores(X, Y, folds, lambda y, p, _, test: neg_bce(y, p, sw[test]),
                             sample_weight=sw)
    model = MultiLabelLogisticCV(Cs=CS, cv=folds, **TIGHT).fit(X, Y, sample_weight=sw)
    assert_path_scores(model.scores_, expected, rtol=1e-6)


def test_metadata_routing_to_scorer_and_splitter(data):
    X, Y = data
    sw = np.random.default_rng(1).uniform(0.2, 3.0, len(X))
    groups = np.arange(len(X)) % 5
    folds = list(GroupKFold(3).split(X, groups=groups))

    def weighted_f1(y, _, pred, test):
        return [f1_score(y[:, j], pred[:, j], sample_weight=sw[test]) for j in range(4)]

    expected = manual_scores(X, Y, folds, weighted_f1, sample_weight=sw)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_scorer(f1_score).set_score_request(sample_weight=True)
        model = MultiLabelLogisticCV(Cs=CS, cv=GroupKFold(3), scoring=scorer, **TIGHT)
        model.fit(X, Y, sample_weight=sw, groups=groups)
        assert_path_scores(model.scores_, expected)
        unweighted = make_scorer(f1_score).set_score_request(sample_weight=False)
        model.set_params(scoring=unweighted).fit(X, Y, sample_weight=sw, groups=groups)
        assert not np.allclose(model.scores_, expected, equal_nan=True)


def test_sparse_soft_and_parallel_agree(data):
    X, Y = data
    dense = MultiLabelLogisticCV(Cs=CS, cv=3, **TIGHT).fit(X, Y)
    # n_jobs=2: two folds at a time, in threads (joblib's default here).
    sparse_model = MultiLabelLogisticCV(Cs=CS, cv=3, n_jobs=2, **TIGHT).fit(
        sparse.csr_matrix(X), Y)
    assert_allclose(sparse_model.scores_, dense.scores_, rtol=1e-6)  # NaN where dense has
    assert_allclose(sparse_model.coef_, dense.coef_, rtol=1e-5, atol=1e-7)
    soft = np.clip(Y * 0.8 + 0.1, 0, 1)
    model = MultiLabelLogisticCV(Cs=CS, cv=3).fit(X, soft)
    assert model.C_.shape == (4,)
    assert model.score(X, soft) < 0


def test_input_errors_and_one_convergence_warning(data):
    X, Y = data
    with pytest.raises(ValueError, match="Cs must be"):
        MultiLabelLogisticCV(Cs=[1.0, -1.0]).fit(X, Y)
    with pytest.raises(ValueError, match="l1_ratio"):
        MultiLabelLogisticCV(solver="lbfgs", l1_ratio=0.5).fit(X, Y)
    assert not hasattr(MultiLabelLogisticCV(), "partial_fit")
    for n_jobs in [None, 2]:  # folds one after the other, or in two threads
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            MultiLabelLogisticCV(Cs=CS, cv=3, max_iter=1, n_jobs=n_jobs).fit(X, Y)
            warnings.warn("after the fit", UserWarning)  # the caller's record still works
        messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
        assert len(messages) == 2  # one for the folds, one for the refit
        assert "at 5 of 5 values of C" in messages[0]
        assert "at worst 4 of 4 label(s)" in messages[0]
        assert "the refit did not converge" in messages[1]
        assert [str(w.message) for w in caught if w.category is UserWarning] == [
            "after the fit"]


@parametrize_with_checks([MultiLabelLogisticCV(cv=3)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_labels_constant_in_the_data_or_in_a_fold(data):
    X, Y = data
    Y = Y.copy()
    Y[:, 0] = 0  # constant everywhere: its own group in the refit if C differs
    Y[:50, 3] = 1  # constant in the training part of one fold
    Y[50:, 3] = 0
    folds = list(KFold(3).split(X))
    # Label 3 is warned about (not label 0: constant in the data, nothing to tune).
    with pytest.warns(UserWarning, match=r"fold\(s\) 0 has .* of label\(s\) 3 \("):
        model = MultiLabelLogisticCV(Cs=CS, cv=folds).fit(X, Y)
    assert np.all(model.predict_proba(X)[:, 0] < 1e-3)
    assert model.C_[3] == 1.0  # untuned: MultiLabelLogistic's default
    assert_allclose(model.coef_[3], MultiLabelLogistic(C=1.0).fit(X, Y).coef_[3],
                    rtol=1e-3, atol=1e-4)
    alone = MultiLabelLogisticCV(Cs=CS, cv=folds).fit(X, Y[:, :1].repeat(2, axis=1))
    assert_allclose(model.coef_[0], alone.coef_[0], atol=1e-8)
    # A binary target one class of which a training fold lacks.
    with pytest.warns(UserWarning, match=r"label\(s\) 0 "):
        binary = MultiLabelLogisticCV(Cs=CS, cv=folds, path_patience=None).fit(X, Y[:, 3])
    assert np.all(np.isfinite(binary.scores_))
    assert binary.C_[0] == 1.0
    assert abs(binary.predict_proba(X)[:, 1].mean() - 1 / 3) < 0.05


def test_path_fits_share_the_gram_matrix_and_not_the_solution(data):
    X, Y = data
    from skbce.linear_model._cv import _PathModel

    model = _PathModel(C=0.1, tol=1e-10)
    model.fit(X, Y)
    first = model._path_problem[2]["gram"]
    model.set_params(C=10.0).fit(X, Y)
    assert model._path_problem[2]["gram"] is first  # handed on, not recomputed
    assert_allclose(model.coef_, MultiLabelLogistic(C=10.0, tol=1e-10).fit(X, Y).coef_,
                    rtol=1e-7, atol=1e-9)
    model.fit(X[:100], Y[:100])  # other data: a Gram matrix of its own
    assert model._path_problem[2]["gram"] is not first


def test_default_folds_on_ordered_rows_score_as_shuffled_ones(ordered_multilabel):
    # Rows stored grouped by type, as scene's are: unshuffled folds (the
    # default before) chose C for types they had not seen, and did worse on
    # held-out rows than no tuning at all (0.1037 against 0.0871).
    X, X_test, Y, Y_test = ordered_multilabel

    def held_out_bce(model):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return binary_cross_entropy(Y_test, model.fit(X, Y).predict_proba(X_test))

    default = held_out_bce(MultiLabelLogisticCV(Cs=10))
    shuffled = held_out_bce(MultiLabelLogisticCV(Cs=10, cv=KFold(5, shuffle=True,
                                                                 random_state=0)))
    untuned = held_out_bce(MultiLabelLogistic())
    assert default <= 1.005 * shuffled
    assert default <= untuned


def test_a_users_folds_that_cannot_see_a_label_are_named(data):
    X, Y = data
    # A user's folds: the first holds out every positive of label 2, so its
    # training rows have none.
    rows = np.arange(len(X))
    positives, negatives = rows[Y[:, 2] == 1], rows[Y[:, 2] == 0]
    folds = [(negatives, positives)] + [
        (np.setdiff1d(rows, part), part) for part in np.array_split(negatives, 2)]
    pattern = r"fold\(s\) 0 has no positive or no negative of label\(s\) 2 "
    with pytest.warns(UserWarning, match=pattern):
        model = MultiLabelLogisticCV(Cs=CS, cv=folds).fit(X, Y)
    assert model.C_[2] == 1.0  # untuned, not chosen on a fold that cannot see it
    best = CS[np.nanargmax(model.scores_.mean(axis=0), axis=0)]
    assert_array_equal(np.delete(model.C_, 2), np.delete(best, 2))  # the others are tuned
    assert best[2] != 1.0
    # refit=False: the folds' mean at the C of Cs nearest 1 in log scale (3).
    with pytest.warns(UserWarning, match=pattern):
        averaged = MultiLabelLogisticCV(Cs=CS, cv=folds, refit=False).fit(X, Y)
    assert averaged.C_[2] == 3.0
    fits = [MultiLabelLogistic(C=3.0, **TIGHT).fit(X[train], Y[train]) for train, _ in folds]
    assert_allclose(averaged.coef_[2], np.mean([m.coef_[2] for m in fits], axis=0),
                    rtol=1e-3, atol=1e-4)


def test_default_folds_are_stratified_deterministic_and_shared_by_all_labels():
    from skbce.model_selection import MultiLabelStratifiedKFold

    rng = np.random.default_rng(3)
    Y = (rng.uniform(size=(300, 8)) < np.linspace(0.02, 0.9, 8)).astype(int)
    Y = Y[np.lexsort(Y.T)]  # stored in label order
    X = np.zeros((len(Y), 1))
    folds = list(MultiLabelStratifiedKFold(5).split(X, Y))
    assert [f[1].tolist() for f in folds] == [
        f[1].tolist() for f in MultiLabelStratifiedKFold(5).split(X, Y)]
    tests = np.concatenate([test for _, test in folds])
    assert_array_equal(np.sort(tests), np.arange(len(Y)))  # a partition
    sizes = [len(test) for _, test in folds]
    assert max(sizes) - min(sizes) <= 2
    for j in range(Y.shape[1]):
        minority = min(Y[:, j].sum(), len(Y) - Y[:, j].sum())
        per_fold = [min(Y[test, j].sum(), len(test) - Y[test, j].sum()) for _, test in folds]
        # Each fold holds its share of the label's minority class, to one row.
        assert max(per_fold) - min(per_fold) <= 1 + (minority < 5), (j, per_fold)
        for train, _ in folds:
            if minority >= 5:
                assert 0 < Y[train, j].sum() < len(train)
    # What an int cv means: these folds for a multi-label target (scikit-learn's
    # check_cv gives KFold), StratifiedKFold for a binary one.
    from skbce.model_selection._split import check_multilabel_cv

    assert isinstance(check_multilabel_cv(5, Y), MultiLabelStratifiedKFold)
    assert isinstance(check_multilabel_cv(None, Y), MultiLabelStratifiedKFold)
    assert isinstance(check_multilabel_cv(5, Y[:, 0]), StratifiedKFold)
    soft = np.clip(Y * 0.8 + 0.1, 0, 1)
    assert [f[1].tolist() for f in check_multilabel_cv(5, soft).split(X, soft)] == [
        f[1].tolist() for f in folds]  # soft targets: positive from 0.5
