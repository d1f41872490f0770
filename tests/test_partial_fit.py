"""partial_fit's penalty means what fit's does: passes over chunks converge to fit.

The penalty of each chunk's SGD steps is weighed against the rows of a pass
over the data (``n_samples_per_pass``; without it, all rows seen so far), so
that ``C`` has fit's meaning; the reference is the in-memory fit's
objective, computed from the public loss.
"""

import numpy as np
import pytest

from skbce import MultiLabelLogistic, binary_cross_entropy

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
