"""partial_fit's penalty means what fit's does: passes over chunks converge to fit.

The penalty is weighed against the rows of a pass over the data
(``n_samples_per_pass``; without it, all rows seen so far), so that ``C``
has fit's meaning. With the pass length, Newton's method takes one step per
pass; without it (a stream), or beyond the Hessians' memory budget, each
call is an epoch of SGD. The references are the in-memory fit's objective,
computed from the public loss or with numpy alone.
"""

import pickle

import numpy as np
import pytest
from scipy import sparse
from sklearn import config_context
from sklearn.datasets import load_breast_cancer, load_digits

from skbce import MultiLabelLogistic, binary_cross_entropy
from skbce.linear_model._newton_passes import NewtonPasses, SampledNewtonPasses

N_CHUNKS, CHUNK_ROWS = 6, 600


def objective(model, X, Y, C):
    """fit's objective (mean over labels) at ``model``'s coefficients."""
    loss = binary_cross_entropy(Y, X @ model.coef_.T + model.intercept_, from_logits=True,
                                axis=0)
    return float(np.mean(loss + 0.5 * np.sum(model.coef_ ** 2, axis=1) / (C * len(X))))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(N_CHUNKS * CHUNK_ROWS, 30))
    Y = (X @ rng.normal(size=(30, 5)) + rng.logistic(size=(len(X), 5)) > 0).astype(np.int8)
    return X, Y


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_passes_over_chunks_converge_to_fit(data, C):
    X, Y = data
    best = objective(MultiLabelLogistic(C=C, tol=1e-8).fit(X, Y), X, Y, C)
    model = MultiLabelLogistic(C=C, solver="sgd", random_state=0)
    chunks = np.array_split(np.arange(len(X)), N_CHUNKS)
    order = np.random.default_rng(0)
    for _ in range(20):
        for i in order.permutation(N_CHUNKS):
            model.partial_fit(X[chunks[i]], Y[chunks[i]], n_samples_per_pass=len(X))
    assert model.n_iter_ == 20 * N_CHUNKS and model.n_samples_seen_ == 20 * len(X)
    # C means what it means in fit: one chunk's penalty is not that of a
    # data set of its size (C / 6 would be far above).
    assert objective(model, X, Y, C) <= 1.005 * best
    assert objective(model, X, Y, C / N_CHUNKS) > objective(model, X, Y, C)


def test_a_stream_is_fitted_as_everything_seen(data):
    # Chunks that never come again: each call weighs the penalty against all
    # rows seen so far, as a fit of them would.
    # (With each chunk's own weight, the penalty of a 60-row chunk would be
    # 60 times fit's, at C=0.01 a model shrunk to far above fit's objective.)
    X, Y = data
    C = 0.01
    model = MultiLabelLogistic(C=C, solver="sgd", random_state=0)
    for chunk in np.array_split(np.arange(len(X)), 60):
        model.partial_fit(X[chunk], Y[chunk])
    assert model.n_samples_seen_ == len(X) and model._pass.weight == len(X)
    assert model._newton is None and model.solver_ == "sgd"
    best = objective(MultiLabelLogistic(C=C).fit(X, Y), X, Y, C)
    shrunk = objective(MultiLabelLogistic(C=C / 60).fit(X, Y), X, Y, C)
    assert objective(model, X, Y, C) <= best + 0.1 * (shrunk - best)


def test_the_pass_length_is_kept_until_given_again(data):
    X, Y = data
    C = 0.01
    rows = np.array_split(np.arange(len(X)), N_CHUNKS)
    weights = np.random.default_rng(2).uniform(0.5, 2.0, size=len(X))
    given = MultiLabelLogistic(C=C, solver="sgd", random_state=0)
    kept = MultiLabelLogistic(C=C, solver="sgd", random_state=0)
    for i, chunk in enumerate(rows * 3):
        given.partial_fit(X[chunk], Y[chunk], sample_weight=weights[chunk],
                          n_samples_per_pass=weights.sum())
        kept.partial_fit(X[chunk], Y[chunk], sample_weight=weights[chunk],
                         n_samples_per_pass=weights.sum() if i == 0 else None)
    np.testing.assert_array_equal(kept.coef_, given.coef_)
    # Weighed against one pass: near fit's weighted objective, not against three.
    weighted = MultiLabelLogistic(C=C, tol=1e-8).fit(X, Y, sample_weight=weights)
    thrice = MultiLabelLogistic(C=3 * C, tol=1e-8).fit(X, Y, sample_weight=weights)
    assert (np.linalg.norm(given.coef_ - weighted.coef_)
            < 0.5 * np.linalg.norm(thrice.coef_ - weighted.coef_))
    # fit forgets partial_fit's count.
    assert not hasattr(given.fit(X, Y), "n_samples_seen_")


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), "all", True])
def test_a_bad_pass_length_is_a_clear_error(data, bad):
    X, Y = data
    with pytest.raises(ValueError, match="n_samples_per_pass must be a positive number"):
        MultiLabelLogistic(solver="sgd").partial_fit(X[:100], Y[:100], n_samples_per_pass=bad)


# -- Newton passes ------------------------------------------------------------

def numpy_objective(model, X, Y, C, sample_weight=None, pos_weight=1.0, smoothing=0.0):
    """fit's objective, sum over labels of C sum_i s_i loss_ij + ||w_j||^2 / 2, in numpy."""
    Z = np.asarray(X @ model.coef_.T) + model.intercept_
    T = Y * (1 - smoothing) + smoothing / 2
    loss = pos_weight * T * np.logaddexp(0, -Z) + (1 - T) * np.logaddexp(0, Z)
    s = np.ones(len(Z)) if sample_weight is None else sample_weight
    return float(np.sum(C * (s @ loss) + 0.5 * np.sum(model.coef_ ** 2, axis=1)))


def uneven_chunks(n, seed=0):
    """Five chunks of uneven sizes (from a tenth to a third of the rows)."""
    sizes = np.array([0.1, 0.33, 0.15, 0.3, 0.12])
    cuts = np.round(np.cumsum(sizes[:-1]) * n).astype(int)
    return np.split(np.random.default_rng(seed).permutation(n), cuts)


def passes(model, X, Y, n_passes=20, chunks=None, seed=0, **kwargs):
    """Passes over the chunks, in a new order each pass, told the pass's rows."""
    chunks = uneven_chunks(X.shape[0]) if chunks is None else chunks
    order = np.random.default_rng(seed)
    sw = kwargs.pop("sample_weight", None)
    per_pass = kwargs.pop("n_samples_per_pass", X.shape[0] if sw is None else sw.sum())
    for _ in range(n_passes):
        for i in order.permutation(len(chunks)):
            rows = chunks[i]
            model.partial_fit(X[rows], Y[rows], n_samples_per_pass=per_pass,
                              sample_weight=None if sw is None else sw[rows], **kwargs)
    return model


def digits16():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, (y[:, None] == np.arange(10)).astype(np.int8)


@pytest.mark.parametrize("C", [1.0, 0.01])
def test_newton_passes_reach_fit_on_ill_conditioned_data(C):
    # Digits in [0, 1]: one-epoch SGD per chunk stayed 55 % above fit's
    # objective after 20 passes at C=1.
    X, Y = digits16()
    best = numpy_objective(MultiLabelLogistic(C=C, tol=1e-8).fit(X, Y), X, Y, C)
    model = passes(MultiLabelLogistic(C=C, random_state=0), X, Y)
    assert model._newton is not None and model._newton.passes == 20
    assert numpy_objective(model, X, Y, C) <= 1.005 * best
    # Every label met fit's stopping rule, and later passes skipped it.
    assert model._newton.converged.all()
    assert model.n_iter_ == 100 and model.n_samples_seen_ == 20 * len(X)


@pytest.mark.parametrize("working_memory, method", [
    (1024, NewtonPasses),
    (0.04, SampledNewtonPasses),  # 40 KiB: not the Hessians, a sample of rows
])
def test_newton_passes_with_weights_soft_targets_pos_weight_smoothing_float32_sparse(
        working_memory, method):
    X, y = load_breast_cancer(return_X_y=True)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    rng = np.random.default_rng(3)
    Y = np.column_stack([y, rng.uniform(size=len(y)) * y, 1 - y]).astype(np.float32)
    sw = rng.uniform(0.2, 3.0, size=len(y))
    params = dict(C=0.5, pos_weight=[1.0, 2.0, 0.5], label_smoothing=0.1)
    Xs = sparse.csr_matrix(np.where(np.abs(X) < 0.5, 0, X))
    # The references in float64 (fit to tol=1e-8 in float32 is out of reach).
    best, best_sparse = (numpy_objective(
        MultiLabelLogistic(tol=1e-8, **params).fit(A.astype(np.float64), Y, sample_weight=sw),
        A, Y, 0.5, sw, np.array([1.0, 2.0, 0.5]), 0.1) for A in (X, Xs))
    with config_context(working_memory=working_memory):
        dense = passes(MultiLabelLogistic(random_state=0, **params), X, Y, sample_weight=sw)
        sparse_model = passes(MultiLabelLogistic(random_state=0, **params), Xs, Y,
                              sample_weight=sw)
    for model in (dense, sparse_model):
        assert type(model._newton) is method
        if method is SampledNewtonPasses:
            assert model._newton.rate < 1
    assert dense.coef_.dtype == np.float32
    assert numpy_objective(dense, X, Y, 0.5, sw, np.array([1.0, 2.0, 0.5]), 0.1) <= (
        1.005 * best)
    assert numpy_objective(sparse_model, Xs, Y, 0.5, sw, np.array([1.0, 2.0, 0.5]),
                           0.1) <= 1.005 * best_sparse


def test_a_chunk_of_constant_labels_first_and_no_intercept():
    # The first chunk holds negatives only: SGD starts from its intercept
    # (-14), Newton from zero logits. Without an intercept, too.
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]
    chunks = np.array_split(np.arange(len(y)), 4)
    assert np.all(y[chunks[0]] == 0)
    for fit_intercept in (True, False):
        params = dict(C=1.0, fit_intercept=fit_intercept)
        best = numpy_objective(MultiLabelLogistic(tol=1e-8, **params).fit(X, y), X,
                               y[:, None], 1.0)
        model = passes(MultiLabelLogistic(random_state=0, **params), X, y, chunks=chunks,
                       classes=[0, 1])
        assert numpy_objective(model, X, y[:, None], 1.0) <= 1.005 * best
        assert model._newton.n_backtracks == 0


def test_the_estimate_changes_once_per_pass_after_the_first():
    X, Y = digits16()
    chunks = uneven_chunks(len(X))
    model = MultiLabelLogistic(random_state=0)
    seen = []
    for p in range(4):
        for rows in chunks:
            model.partial_fit(X[rows], Y[rows], n_samples_per_pass=len(X))
            seen.append(model.coef_.copy())
    changed = [c for c in range(1, len(seen)) if not np.array_equal(seen[c], seen[c - 1])]
    # The first pass (SGD): every call; later: each pass's last call only.
    n = len(chunks)
    assert changed == list(range(1, n)) + [c for c in range(n, 4 * n) if c % n == n - 1]


def test_the_safeguard_backtracks_a_newton_step_that_overshoots():
    # From fit's solution at C=1e4 (logits of tens), passes over the flipped
    # labels: the flat loss there makes the full Newton steps overshoot.
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    chunks = np.array_split(np.arange(len(y)), 4)
    model = MultiLabelLogistic(C=1e4).fit(X, y)
    curve = []
    for _ in range(8):
        for rows in chunks:
            model.partial_fit(X[rows], 1 - y[rows], n_samples_per_pass=len(y))
        curve.append(numpy_objective(model, X, (1 - y)[:, None], 1e4))
    assert model._newton.n_backtracks > 0
    # Rejected steps are never published: the objective never rises.
    assert np.all(np.diff(curve) <= 1e-9 * curve[0]) and curve[-1] < 0.5 * curve[0]


def test_the_memory_budget_chooses_exact_or_sampled_hessians_or_sgd(data):
    # 3600 x 30, 5 labels: the Hessians take 5 x 31^2 x (8 + 8 per thread
    # and output) bytes, about 0.12-0.15 MiB.
    X, Y = data
    models = {}
    for working_memory in (0.01, 0.1, 1.0):
        with config_context(working_memory=working_memory):
            models[working_memory] = passes(MultiLabelLogistic(random_state=0), X, Y,
                                            n_passes=2)
    # 10 KiB: not even a sample of as many rows as coefficients: SGD.
    assert models[0.01]._newton is None and models[0.01].solver_ == "sgd"
    # 100 KiB: the Hessians of a sample of the rows.
    sampled = models[0.1]._newton
    assert type(sampled) is SampledNewtonPasses and 31 / 3600 < sampled.rate < 1
    assert models[0.1].solver_ == "newton-passes"
    # 1 MiB: the exact Hessians.
    assert type(models[1.0]._newton) is NewtonPasses
    assert not np.array_equal(models[0.01].coef_, models[1.0].coef_)


@pytest.mark.parametrize("C", [1.0, 0.01])
def test_sampled_hessians_reach_fit_on_ill_conditioned_data(C):
    # Standardised digits in 0.5 MiB: a sample of a fifth of the rows, drawn
    # by their share of each label's Hessian (with a uniform one of 36 % of
    # the rows, at C=1, no label converged and the objective stayed 64 %
    # above fit's; SGD alone: 186 %).
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1)
    Y = (y[:, None] == np.arange(10)).astype(np.int8)
    best = numpy_objective(MultiLabelLogistic(C=C, tol=1e-8).fit(X, Y), X, Y, C)
    with config_context(working_memory=0.5):
        model = passes(MultiLabelLogistic(C=C, random_state=0), X, Y)
    assert type(model._newton) is SampledNewtonPasses and model._newton.rate < 0.5
    assert numpy_objective(model, X, Y, C) <= 1.005 * best


def test_sampled_hessians_of_few_rows_never_leave_the_estimate_behind_sgd(data):
    # 0.05 MiB holds a sample of about 40 rows for 31 coefficients: Newton
    # steps on its Hessian are poor, and SGD runs beside them. Its estimate
    # after each pass is evaluated on the next and published where better:
    # after 20 passes the model is at least as good as SGD's after 19.
    X, Y = data
    with config_context(working_memory=0.05):
        sampled = passes(MultiLabelLogistic(random_state=0), X, Y)
    with config_context(working_memory=0.01):
        sgd = passes(MultiLabelLogistic(random_state=0), X, Y, n_passes=19)
    assert type(sampled._newton) is SampledNewtonPasses and sampled._newton.rate < 0.02
    assert sgd._newton is None
    assert numpy_objective(sampled, X, Y, 1.0) <= numpy_objective(sgd, X, Y, 1.0) * (1 + 1e-9)


def test_a_stream_keeps_sgd_and_a_new_pass_length_restarts_newton(data):
    X, Y = data
    model = MultiLabelLogistic(random_state=0)
    for rows in np.array_split(np.arange(len(X)), 6):
        before = model.coef_.copy() if hasattr(model, "coef_") else None
        model.partial_fit(X[rows], Y[rows])
        assert model._newton is None
        assert before is None or not np.array_equal(before, model.coef_)
    passes(model, X, Y, n_passes=1)
    assert model._newton.passes == 1 and not model._newton.runs_sgd
    state = model._newton
    passes(model, X, Y, n_passes=1, n_samples_per_pass=2 * len(X))
    assert model._newton is not state and model._newton.passes == 0


@pytest.mark.parametrize("working_memory", [1.0, 0.1])  # exact, sampled Hessians
def test_pickling_mid_pass_continues_identically(data, working_memory):
    X, Y = data
    chunks = uneven_chunks(len(X))
    with config_context(working_memory=working_memory):
        model = passes(MultiLabelLogistic(random_state=0), X, Y, n_passes=2)
        model.partial_fit(X[chunks[0]], Y[chunks[0]], n_samples_per_pass=len(X))
        copy = pickle.loads(pickle.dumps(model))
        for m in (model, copy):
            for rows in chunks[1:]:
                m.partial_fit(X[rows], Y[rows], n_samples_per_pass=len(X))
    assert model._newton.passes == copy._newton.passes == 3
    assert type(copy._newton) is (NewtonPasses if working_memory == 1.0
                                  else SampledNewtonPasses)
    np.testing.assert_array_equal(copy.coef_, model.coef_)


def test_a_pass_that_overflows_ends_with_its_last_chunk(data):
    # Chunks of 1000 rows over a pass of 3600: a pass ends with the chunk that
    # completes it, its sums averaged over the 4000 rows it got.
    X, Y = data
    model = MultiLabelLogistic(random_state=0)
    for rows in np.array_split(np.arange(4000) % len(X), 4) * 3:
        model.partial_fit(X[rows], Y[rows], n_samples_per_pass=len(X))
    assert model._newton.passes == 3 and model._newton.weight == 0


@pytest.mark.parametrize("working_memory, method", [
    (1.0, NewtonPasses),
    (0.1, SampledNewtonPasses),
])
def test_partial_fit_after_fit_starts_newton_at_its_solution(data, working_memory, method):
    # After every pass, not only the last: with sampled Hessians SGD runs
    # beside the Newton steps, and its estimate, not yet evaluated after the
    # first pass, must not replace fit's solution.
    X, Y = data
    model = MultiLabelLogistic(C=0.1, tol=1e-8, random_state=0).fit(X, Y)
    start = numpy_objective(model, X, Y, 0.1)
    with config_context(working_memory=working_memory):
        for seed in range(3):
            passes(model, X, Y, n_passes=1, seed=seed)
            assert type(model._newton) is method
            assert numpy_objective(model, X, Y, 0.1) <= start * (1 + 1e-9)
    assert model._newton.n_backtracks == 0


def test_a_pass_ends_within_the_memory_its_hessians_were_given():
    # The pass's last call solves the Newton systems of the summed Hessians:
    # float32, one thread, where newton_bytes is tightest (float64 sums, one
    # float32 set in the kernel and its output, a float64 copy: 24 bytes an
    # entry). The end of the pass made two more float64 copies (the sums
    # divided by the pass's weight, the accepted labels' Hessians) while the
    # last chunk's were still alive: 32 bytes an entry.
    import tracemalloc

    from threadpoolctl import threadpool_limits

    from skbce.linear_model._newton_passes import newton_bytes

    rng = np.random.default_rng(7)
    n, d, k = 400, 120, 12
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (X @ rng.normal(size=(d, k)) + rng.logistic(size=(n, k)) > 0).astype(np.int8)
    hessians = newton_bytes(k, d + 1, 4, 1)
    model = MultiLabelLogistic(random_state=0)
    with threadpool_limits(1, user_api="openmp"):
        for _ in range(2):
            # Traced from the pass's first chunk, so that its running sums count.
            tracemalloc.start()
            model.partial_fit(X[:200], Y[:200], n_samples_per_pass=n)
            model.partial_fit(X[200:], Y[200:], n_samples_per_pass=n)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            # Measured: 0.85-0.87 of newton_bytes; 1.44-1.46 before.
            assert peak <= hessians, (peak, hessians)
    assert type(model._newton) is NewtonPasses and model._newton.passes == 2
