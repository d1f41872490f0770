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
* :func:`eurlex_like` -- EURLex-4K-like text: 15 000 x 5 000 tf-idf CSR,
  3 946 labels (CSR targets), most of them rare.
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


def eurlex_like(seed=0, scale=1.0, n_labels=3946, n_features=5000, n_topics=400):
    """EURLex-4K-like text: Zipf topics, tf-idf words, thousands of rare labels.

    15 000 training and 4 000 test documents (``scale`` times as many),
    ``n_features`` tf-idf features (log term frequency times idf of the
    training part, rows l2-normalised), ``n_labels`` labels, every one with
    a positive in the training part. At full scale (seed 0): 94.7 non-zeros
    a row, 6.1 labels a document, a median of 8 training documents a label
    (the most frequent label: 2 436).

    Each document is a bag of words about one to three of ``n_topics``
    topics, drawn with Zipf-distributed popularity; half its words come from
    its topics' vocabularies (60 words each, Zipf within the topic), the
    rest from a Zipf background over all features. Each label belongs to a
    topic and has four keywords from the topic's vocabulary; it fires for a
    document about its topic that uses at least ``m`` of them (``m`` is 2,
    3 or 4, per label). ``Y`` is returned as CSR ``int64`` matrices.
    """
    rng = np.random.default_rng(seed)
    n_train = int(15_000 * scale)
    n = n_train + int(4_000 * scale)
    d, words_per_topic = n_features, 60
    popularity = 1.0 / np.arange(1, n_topics + 1)
    popularity /= popularity.sum()
    topic_words = np.array([rng.choice(d, words_per_topic, replace=False)
                            for _ in range(n_topics)])
    within = 1.0 / np.arange(1, words_per_topic + 1) ** 0.7
    within_cdf = np.cumsum(within / within.sum())
    background = 1.0 / (np.arange(d) + 10.0) ** 1.1
    background_cdf = np.cumsum(background[rng.permutation(d)] / background.sum())

    # Topics of each document: one to three distinct ones.
    doc_topics = rng.choice(n_topics, size=(n, 3), p=popularity)
    n_doc_topics = rng.choice([1, 2, 3], size=n, p=[0.4, 0.35, 0.25])
    doc_topics[:, 1] = np.where((n_doc_topics < 2) | (doc_topics[:, 1] == doc_topics[:, 0]),
                                -1, doc_topics[:, 1])
    doc_topics[:, 2] = np.where((n_doc_topics < 3) | (doc_topics[:, 2] == doc_topics[:, 0])
                                | (doc_topics[:, 2] == doc_topics[:, 1]), -1, doc_topics[:, 2])

    # Tokens: each from the background or from one of the document's topics.
    length = 40 + rng.poisson(85, size=n)
    doc = np.repeat(np.arange(n), length)
    from_topic = rng.uniform(size=len(doc)) < 0.5
    slot = rng.integers(0, 3, size=len(doc))
    topic = doc_topics[doc, slot]
    topic = np.where(topic < 0, doc_topics[doc, 0], topic)
    in_topic = np.minimum(np.searchsorted(within_cdf, rng.uniform(size=len(doc))),
                          words_per_topic - 1)
    in_background = np.minimum(np.searchsorted(background_cdf, rng.uniform(size=len(doc))),
                               d - 1)
    word = np.where(from_topic, topic_words[topic, in_topic], in_background)
    counts = sparse.csr_matrix((np.ones(len(doc)), (doc, word)), shape=(n, d))
    counts.sum_duplicates()
    counts.sort_indices()

    # Labels: a topic and four of its words each; more are drawn than kept,
    # so that every kept label has a training positive.
    n_drawn = int(n_labels * 1.6) + 10
    label_topic = rng.integers(0, n_topics, size=n_drawn)
    keywords = topic_words[label_topic[:, None],
                           np.minimum(np.searchsorted(within_cdf, rng.uniform(size=(n_drawn, 4))),
                                      words_per_topic - 1)]
    needed = rng.choice([2, 3, 4], size=n_drawn, p=[0.25, 0.45, 0.3])
    present = counts.copy()
    present.data[:] = 1
    K = sparse.csr_matrix((np.ones(keywords.size), (keywords.ravel(),
                                                    np.repeat(np.arange(n_drawn), 4))),
                          shape=(d, n_drawn))
    K.data[:] = 1  # a repeated keyword counts once
    hits = (present @ K).tocsr()
    topic_rows = np.repeat(np.arange(n), 3)
    valid = doc_topics.ravel() >= 0
    T = sparse.csr_matrix((np.ones(valid.sum()), (topic_rows[valid], doc_topics.ravel()[valid])),
                          shape=(n, n_topics))
    L = sparse.csr_matrix((np.ones(n_drawn), (label_topic, np.arange(n_drawn))),
                          shape=(n_topics, n_drawn))
    about = (T @ L).tocsr()
    hits.data = (hits.data >= needed[hits.indices]).astype(np.float64)
    Y = hits.multiply(about).tocsr()
    Y.eliminate_zeros()
    seen = np.flatnonzero(np.diff(Y[:n_train].tocsc().indptr) > 0)[:n_labels]
    Y = sparse.csr_matrix(Y[:, seen], dtype=np.int64)

    idf = np.log(n_train / (1 + np.bincount(counts[:n_train].indices, minlength=d))) + 1
    X = counts
    X.data = (1 + np.log(X.data)) * np.maximum(idf, 0.1)[X.indices]
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sparse.csr_matrix(sparse.diags(1 / np.maximum(norms, 1e-12)) @ X)
    X.sort_indices()
    return X[:n_train], X[n_train:], Y[:n_train], Y[n_train:]
