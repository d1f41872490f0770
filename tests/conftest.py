"""Test-suite configuration."""

from hypothesis import settings

# Property tests draw the same examples on every run, so that CI's verdict
# does not depend on luck; ``--hypothesis-profile=explore`` draws new ones.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")


import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ordered_multilabel():
    """Seeded multi-label data stored as scene's training rows are: grouped by type.

    Six labels, each row of one type (a label, and one of three sub-types of
    it; 7 % of the rows carry a second label), 150 features; the training
    rows sorted by type, the test rows (as many) in random order. Unshuffled
    5-fold splits of the training rows hold out whole types, and the model
    chosen on them is tuned for types it has not seen.
    """
    rng = np.random.default_rng(0)
    n, n_labels, n_sub, n_features = 1200, 6, 3, 150
    centers = rng.standard_normal((n_labels, n_features)) * 0.3
    sub_centers = rng.standard_normal((n_labels, n_sub, n_features)) * 0.3
    kind, sub = rng.integers(0, n_labels, n), rng.integers(0, n_sub, n)
    Y = np.zeros((n, n_labels), dtype=int)
    Y[np.arange(n), kind] = 1
    second = rng.uniform(size=n) < 0.07
    Y[second, rng.integers(0, n_labels, second.sum())] = 1
    X = Y @ centers + sub_centers[kind, sub] + rng.standard_normal((n, n_features))
    order = np.argsort(kind[:600] * n_sub + sub[:600], kind="stable")
    return X[:600][order], X[600:], Y[:600][order], Y[600:]
