"""Seeded synthetic data sets of the shapes in bench_fit.py's matrix.

Each generator returns ``X_train, X_test, Y_train, Y_test`` (a 1-D target
for the binary shape), deterministic for a given ``seed``. Every label
(every target) is drawn from a logistic model with a sparse random weight
vector, its intercept set so that the label has the intended positive rate;
the noise is the model's own, so no model can fit the labels exactly and the
penalty matters. ``scale`` shrinks the number of rows (``--quick``), and
the wide shape's vocabulary with them.

Shapes (after the Mulan and text collections users have):

* :func:`tall_dense` -- mediamill-like: 45 000 x 120 dense features,
  correlated (a random factor model, 20 factors plus noise) and
  standardised, 100 labels whose positive rates fall geometrically from 30 %
  to 0.5 %.
* :func:`many_labels_dense` -- delicious-like: 12 000 x 500 binary (0/1)
  features, each present with a Zipf-like frequency (mean ~20 per row),
  983 labels with positive rates from 30 % down to 0.1 %.
* :func:`many_labels_sparse` -- the same data with ``X`` as a CSR matrix.
* :func:`binary_tall` -- 400 000 x 50 dense standardised features, one
  binary target (35 % positive).
* :func:`wide_sparse` -- rcv1-like text: 45 000 x 30 000 CSR, 54 non-zeros a
  row on average (term frequencies Zipf-distributed over the vocabulary,
  tf-idf-like weights), rows l2-normalised, 100 labels with positive rates
  from 30 % to 0.5 %.

Test parts have a third as many rows as training parts.
"""

import numpy as np
from scipy import sparse
from scipy.special import expit


def _rates(n_labels, high, low):
    return np.geomspace(high, low, n_labels)


def _labels(rng, X, rates, density=0.2, signal=2.0):
    """Labels from a logistic model per label; intercepts hit ``rates``."""
    n, d = X.shape
    W = rng.normal(size=(d, len(rates))) * (rng.uniform(size=(d, len(rates))) < density)
    Z = np.asarray(X @ W)
    Z *= signal / np.maximum(Z.std(axis=0), 1e-12)
    # The intercept that gives each label its rate (a few bisection steps
    # on the mean probability).
    lo, hi = np.full(len(rates), -30.0), np.full(len(rates), 30.0)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        too_many = expit(Z + mid).mean(axis=0) > rates
        hi = np.where(too_many, mid, hi)
        lo = np.where(too_many, lo, mid)
    P = expit(Z + 0.5 * (lo + hi))
    return (rng.uniform(size=P.shape) < P).astype(np.int64)


def _split(X, Y, n_train):
    return X[:n_train], X[n_train:], Y[:n_train], Y[n_train:]


def tall_dense(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    n_train = int(45_000 * scale)
    n = n_train + n_train // 3
    d, factors = 120, 20
    X = rng.normal(size=(n, factors)) @ rng.normal(size=(factors, d))
    X += rng.normal(size=(n, d))
    X -= X[:n_train].mean(axis=0)
    X /= X[:n_train].std(axis=0)
    Y = _labels(rng, X, _rates(100, 0.3, 0.005))
    return _split(X, Y, n_train)


def _binary_features(rng, n, d, mean_nnz):
    freq = 1.0 / np.arange(1, d + 1) ** 0.8
    freq *= mean_nnz / freq.sum()
    return (rng.uniform(size=(n, d)) < np.minimum(freq, 0.9)[rng.permutation(d)]).astype(
        np.float64)


def many_labels_dense(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    n_train = int(12_000 * scale)
    n = n_train + n_train // 3
    X = _binary_features(rng, n, 500, 20)
    Y = _labels(rng, X, _rates(983, 0.3, 0.001), density=0.05)
    return _split(X, Y, n_train)


def many_labels_sparse(seed=0, scale=1.0):
    X_train, X_test, Y_train, Y_test = many_labels_dense(seed, scale)
    return sparse.csr_matrix(X_train), sparse.csr_matrix(X_test), Y_train, Y_test


def binary_tall(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    n_train = int(400_000 * scale)
    n = n_train + n_train // 3
    d = 50
    X = rng.normal(size=(n, 10)) @ rng.normal(size=(10, d)) * 0.5 + rng.normal(size=(n, d))
    X -= X[:n_train].mean(axis=0)
    X /= X[:n_train].std(axis=0)
    y = _labels(rng, X, np.array([0.35]), density=0.5)[:, 0]
    return _split(X, y, n_train)


def wide_sparse(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    n_train = int(45_000 * scale)
    n = n_train + n_train // 3
    # The vocabulary shrinks with the rows: a tenth of the rows with all
    # 30 000 columns would be a much wider shape, not a smaller one.
    d, mean_nnz = int(30_000 * min(1.0, scale)), 54
    counts = np.maximum(1, rng.poisson(mean_nnz, size=n))
    popularity = 1.0 / np.arange(1, d + 1) ** 1.0
    popularity /= popularity.sum()
    cols = rng.choice(d, size=int(counts.sum()), p=popularity)
    rows = np.repeat(np.arange(n), counts)
    X = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(n, d))
    X.sum_duplicates()
    idf = np.log((1 + n) / (1 + np.bincount(X.indices, minlength=d))) + 1
    X.data = np.log1p(X.data) * idf[X.indices]
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sparse.csr_matrix(sparse.diags(1 / np.maximum(norms, 1e-12)) @ X)
    X.sort_indices()  # canonical CSR, as a vectoriser gives (liblinear sorts a copy otherwise)
    Y = _labels(rng, X, _rates(100, 0.3, 0.005), density=0.01, signal=2.5)
    return _split(X, Y, n_train)


SHAPES = {
    "tall-dense": tall_dense,
    "many-labels-dense": many_labels_dense,
    "binary-tall": binary_tall,
    "wide-sparse": wide_sparse,
    "many-labels-sparse": many_labels_sparse,
}
