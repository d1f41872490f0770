"""Exact one-vs-rest on thousands of sparse labels: MultiLabelLogistic against the XMC peers.

Run:  python benchmarks/bench_many_labels.py [--shapes eurlex ...] [--scale 0.33]
      [--threads 2] [--C 10] [--methods skbce liblinear-s0 ...] [--repeat N]
      [--peer-python PATH] [--shuffle]
      python benchmarks/bench_many_labels.py --memory-check SECONDS [--C 10]

Each method is fitted once per shape in a subprocess of its own (data read
from a cached ``.npz``), which reports its fit time, its peak resident memory
(``ru_maxrss`` of the child: the interpreter, the data and the fit) and
P@1 / P@5 on the test split (precision of the top-k scores).
The peers are optional: LibMultiLabel, omikuji and napkinXC are imported
from ``--peer-python`` (a separate virtual environment; they are never
dependencies of skbce), and a method whose import fails is reported as such.

Methods:

* ``skbce`` -- ``MultiLabelLogistic(C=C)`` at its defaults (``"auto"``
  takes dual-cd on these shapes), CSR ``X``, an int8 indicator ``Y``
  (dense); ``skbce-dual-cd`` / ``skbce-newton-cg`` the same with that
  solver named; ``skbce-no-intercept`` with ``fit_intercept=False``, the
  model LibMultiLabel fits by default (no bias).
* ``liblinear-s0`` / ``liblinear-s7`` / ``liblinear-s1`` -- LibMultiLabel's
  ``train_1vsrest`` with liblinear's L2 logistic regression by trust-region
  Newton (``-s 0 -c C``) and by dual coordinate descent (``-s 7``) -- the
  same model as ``skbce-no-intercept`` -- and its default L2-loss SVM
  (``-s 1``), ``-m threads`` (liblinear-multicore's threads).
* ``omikuji`` -- Parabel-style label trees, default hyper-parameters (3
  trees), ``threads`` threads.
* ``napkinxc`` -- napkinXC's PLT, default hyper-parameters, ``threads``
  threads.

Shapes (seeded; :func:`eurlex_like` describes the generator):

* ``eurlex`` -- EURLex-4K-like: 15 000 train / 4 000 test documents, 5 000
  tf-idf features, 3 946 labels, ~4.7 labels a document.
* ``wide`` -- more rows and labels: 50 000 / 12 000 documents, 20 000
  features, 20 000 labels.
* ``fewrows`` -- few rows, many labels: 5 000 / 1 500 documents, 5 000
  features, 10 000 labels (mostly 1-5 positives each).

``--scale`` multiplies rows and labels (e.g. 0.33 for a quick check).

Measured (2 threads, C=10, peers at their defaults -- LibMultiLabel fits
no bias -- one run per shape on the shared 2-core machine at load 1.8-2.0
from other tenants; single runs vary by 15-20 % here: the ``skbce`` and
``skbce-dual-cd`` rows fit the same model by the same code):

eurlex, full size (15 000 / 4 000 rows, 3 946 labels, median 9 rows a
label):

| method | fit s | peak RSS GB | P@1 | P@5 |
|---|---|---|---|---|
| skbce (auto: dual-cd) | 36.1 | 0.58 | 0.804 | 0.504 |
| skbce-dual-cd | 36.1 | 0.58 | 0.804 | 0.504 |
| skbce-no-intercept | 49.1 | 0.58 | 0.803 | 0.505 |
| skbce-newton-cg | 116.5 | 1.37 | 0.804 | 0.504 |
| liblinear-s1 | 72.2 | 0.70 | 0.820 | 0.511 |
| liblinear-s7 | 123.8 | 0.70 | 0.802 | 0.505 |
| liblinear-s0 | 288.0 | 0.69 | 0.803 | 0.505 |
| omikuji | 6.3 | 0.28 | 0.789 | 0.496 |
| napkinxc | 3.9 | 0.15 | 0.772 | 0.489 |

fewrows, ``--scale 0.5`` (2 500 / 750 rows, 5 000 labels, median 2 rows a
label, 1 063 labels without a training positive):

| method | fit s | peak RSS GB | P@1 | P@5 |
|---|---|---|---|---|
| skbce (auto: dual-cd) | 5.1 | 0.60 | 0.655 | 0.435 |
| skbce-dual-cd | 4.5 | 0.60 | 0.655 | 0.435 |
| skbce-no-intercept | 7.8 | 0.60 | 0.667 | 0.443 |
| skbce-newton-cg | 25.3 | 0.60 | 0.655 | 0.434 |
| liblinear-s1 | 15.1 | 0.72 | 0.741 | 0.476 |
| liblinear-s7 | 17.7 | 0.72 | 0.664 | 0.443 |
| liblinear-s0 | 53.1 | 0.72 | 0.667 | 0.444 |
| omikuji | 1.6 | 0.12 | 0.655 | 0.421 |
| napkinxc | 1.2 | 0.09 | 0.623 | 0.407 |

wide, ``--scale 0.2`` (10 000 / 2 400 rows, 20 000 features, 4 000 labels,
median 6 rows a label):

| method | fit s | peak RSS GB | P@1 | P@5 |
|---|---|---|---|---|
| skbce (auto: dual-cd) | 32.6 | 1.54 | 0.795 | 0.515 |
| skbce-dual-cd | 26.1 | 1.53 | 0.795 | 0.515 |
| skbce-no-intercept | 34.2 | 1.54 | 0.796 | 0.516 |
| skbce-newton-cg | 99.5 | 1.54 | 0.795 | 0.516 |
| liblinear-s1 | 61.1 | 1.65 | 0.828 | 0.531 |
| liblinear-s7 | 72.6 | 1.65 | 0.795 | 0.515 |
| liblinear-s0 | 234.5 | 1.66 | 0.795 | 0.516 |
| omikuji | 5.4 | 0.25 | 0.783 | 0.510 |
| napkinxc | 3.5 | 0.15 | 0.745 | 0.498 |

Interleaved, best of 2 (``--methods skbce liblinear-s1 --repeat 2``),
against liblinear's ``-s 1``: eurlex with rows and labels shuffled
(``--shuffle``) 31.9 s against 72.4 s (2.27x); wide at scale 0.2,
shuffled, 24.6 s against 46.7 s (1.90x), and in its stored order 25.8 s
against 55.9 s (2.17x; an earlier run the same day 26.3 s against 47.5 s,
1.80x); fewrows at full size (5 000 rows, 10 000 labels) 17.0 s against 47.2 s
(2.77x). Best of 3, in a later run on a quieter machine (load 0.0-1.9), wide
at scale 0.2: stored order 24.2 s against 44.4 s (1.84x), shuffled 22.3 s
against 50.9 s (2.28x); liblinear's time moved more than skbce's between
the two orders and between rounds (44.4-59.5 s against 22.3-27.1 s).

The intercept's Newton centre (each failed check moves the augmented
Lagrangian's centre to the intercept's Newton point with the weights held,
at most one logit, instead of leaving it at the intercept reached): passes
over ``X`` per label at full size (wide at 0.2), 2 threads, before ->
after: wide 8.35 -> 7.85, eurlex 8.22 -> 7.89, fewrows 6.75 -> 6.25, the
same stopping rule and objectives equal or lower; CPU seconds, best of 3
alternations in one process: 43.9 -> 38.8, 67.7 -> 55.9, 28.4 -> 25.2.
Against ``-s 1`` in the same session, interleaved (``--repeat 3`` on wide,
2 on eurlex and fewrows): wide stored 26.4 s against 47.9 s (1.81x),
shuffled 27.2 s against 51.0 s (1.88x); eurlex 32.5 s against 74.2 s
(2.28x); fewrows 16.4 s against 49.0 s (2.99x) -- skbce's own times were
10-20 % above the earlier runs' on this machine that hour (its A/B runs
half an hour later took 19.7-23.2 s on wide). ``-s 0``, one run each: wide
221.9 s, P@1 / P@5 0.795 / 0.516 (skbce 0.794 / 0.515); eurlex 304.0 s,
0.803 / 0.505 (skbce 0.804 / 0.504); fewrows full 197.3 s, 0.657 / 0.430
(skbce 0.651 / 0.428, ``fit_intercept=False`` 0.658 / 0.430). Wide
again after those, the same code and command: stored 21.9 s against 48.4 s
(2.21x; rounds 24.4 / 48.4, 21.9 / 54.7, 23.2 / 52.5), shuffled 23.8 s
against 51.2 s (2.15x; 23.8 / 55.3, 23.8 / 51.2, 23.9 / 54.9). So on wide
the ratio is about 2x, on either side of it from one hour to the next.

So the default fit is 1.8-3.0x faster than liblinear's ``-s 1``: 2x or
more on eurlex and fewrows, 1.8-2.3x on wide (20 000 features: a block's
weights, 8 doubles a feature, 1.25 MiB, do not fit this machine's 512 KiB
L2 cache a core);
2.2-3.5x faster than its logistic dual coordinate descent ``-s 7`` and
7-10x faster than ``-s 0``, with less peak memory than all three. P@k:
with ``fit_intercept=False`` (LibMultiLabel's model) skbce is within
0.001 of ``-s 0`` on every shape; the default's unpenalised intercept
gives the same P@k on eurlex and wide (within 0.001) and 0.012 / 0.009
less on fewrows, where a fifth of the labels have no training positive.

Where the time goes (``verbose=1`` reports the passes; ``perf record``
the rest): on eurlex at scale 0.33 (1 302 labels, one thread), dual-cd
visits 8.8 passes' worth of rows per label (the exact checks included), in
blocks of 8 labels that share each row read. Of the whole process's
samples, the epochs took 48 %, the exact passes 8 %, the scalar ``exp``
of the one-variable Newton solves 6 % and the lanes' vector ``exp`` 4 %;
inside the epochs, a row's dot products with the block's weights (a
gather of one cache line a non-zero) are the largest part. On wide
(20 000 features, two threads) the epochs took 60 % and the exact passes
14 %. Changes of the last two versions: similar labels in a block (the
block's epochs visit the rows active in any of its labels: kernel 9.3 s
-> 7.0 s on that eurlex subset, the same passes per label), the lanes'
sigmoids through libmvec's vector ``exp`` (gcc had unrolled the loop
into 8 scalar calls: 7.0 -> 6.2-6.6 s), a row's dot products in two
chains of adds (a further 3-15 % in A/B runs), a cold start's
coefficients left to lazily zeroed memory (copying 640 MB of zeros took
2.1 s of a 25 s fit on wide) and a block's start read from its
positives' rows only (the constant model's dual weights are those rows'
sum plus a multiple of ``X^T s``, shared by all labels: one axpy pass
over ``X`` a block less).

A block's work, counted on wide (500 blocks): its epochs read 11.5
passes' worth of rows, its exact checks 3.3 passes. Every check
(tolerance phase) restarts with nearly every row active: the epochs after
the checks read 10 000, 10 000, 9 994, 8 263, 2 838, 770, ... rows, so
each phase costs about four passes. The first check fails on 96 % of
the labels, and on the decrease test, not the gradient's: the weights'
predicted decrease is a median 35x the test's bound (their gradient's
max-norm 0.03x its), and half of that decrease sits on the 40 most
common features, present in every row -- so reactivating only the rows
of the features that fail would not save a pass. Tried and not kept:
deferring a block's last 1-3 running labels to blocks of such labels
(warm-started) cut the counted row reads by 6 % on wide, 2 % on eurlex
and 0 % on fewrows, below what this machine's timings can show; a
tighter target for the next phase (1/16 or 1/64 of the test instead of
1/4) gave more passes; 2 MiB pages for the thread's block state, and the
features renumbered by frequency, made no difference; a software
prefetch of the next row's weights made wide slower (30.5 / 31.1 s
against 28.2 / 25.9 s, interleaved). What would close the distance to
the label trees (4-10x above): every exact one-vs-rest label must touch
every row at least at each tightening of its tolerance, while a tree
trains a label on the rows of its cluster only. Fewer passes would need
a phase that moves the common features' collective error (as the
intercept's augmented Lagrangian moves the intercept's) instead of
tightening every row's tolerance. A smaller block state helps less than
it seems: float32 weights (their rounding leaves steps smaller than their
last bit unapplied, and the tightest phases need such steps) or 4 labels
a block would halve the weights to 640 KiB on wide, still above a 512 KiB
L2, and a row's non-zeros still touch one cache line each.
"""

import argparse
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from scipy import sparse

SHAPES = {
    "eurlex": dict(n_train=15_000, n_test=4_000, n_features=5_000, n_labels=3_946,
                   n_topics=400, labels_per_doc=4.7),
    "wide": dict(n_train=50_000, n_test=12_000, n_features=20_000, n_labels=20_000,
                 n_topics=2_000, labels_per_doc=5.0),
    "fewrows": dict(n_train=5_000, n_test=1_500, n_features=5_000, n_labels=10_000,
                    n_topics=1_000, labels_per_doc=6.0),
}
METHODS = ("skbce", "skbce-dual-cd", "skbce-newton-cg", "skbce-no-intercept", "liblinear-s0",
           "liblinear-s1", "liblinear-s7", "omikuji", "napkinxc")
PEERS = ("liblinear-s0", "liblinear-s1", "liblinear-s7", "omikuji", "napkinxc")


def eurlex_like(n_train, n_test, n_features, n_labels, n_topics, labels_per_doc,
                doc_words=140, keywords_per_topic=40, keywords_per_label=6,
                label_share_power=1.0, seed=0):
    """Seeded synthetic text shaped like EURLex-4K.

    Documents are bags of words: half of each document's tokens come from a
    background Zipf distribution over the vocabulary, the other half from
    the keyword lists of one to three topics (topics drawn with a Zipf
    popularity, so a few are common and most rare; keywords within a topic
    Zipf-weighted too). Each label belongs to one topic (a topic has labels
    in proportion to its popularity to the power ``label_share_power``) and has a few of
    that topic's keywords; it fires on a document about its topic whose
    count of the label's keywords (plus a little noise) is among the top
    ``m`` of that topic's documents, ``m`` drawn per label (log-normal, capped
    by the topic's documents) and scaled so that documents have
    ``labels_per_doc`` labels on average. ``X`` is tf-idf
    (sublinear tf, idf from the training part), rows l2-normalised, CSR
    float64.

    Returns ``X_train, X_test, Y_train, Y_test`` (Y as CSR int8).
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    background = np.cumsum(1.0 / (1.0 + np.arange(n_features)) ** 1.05)
    background /= background[-1]
    popularity = 1.0 / (1.0 + np.arange(n_topics))
    popularity /= popularity.sum()
    topic_cdf = np.cumsum(popularity)
    topic_words = np.argsort(rng.uniform(size=(n_topics, n_features)),
                             axis=1)[:, :keywords_per_topic]
    within = np.cumsum(1.0 / (1.0 + np.arange(keywords_per_topic)) ** 0.7)
    within /= within[-1]
    share = popularity ** label_share_power
    label_topic = np.concatenate([np.arange(min(n_topics, n_labels)),
                                  rng.choice(n_topics, max(0, n_labels - n_topics),
                                             p=share / share.sum())])[:n_labels]
    ranks = np.argsort(rng.uniform(size=(n_labels, keywords_per_topic)),
                       axis=1)[:, :keywords_per_label]
    label_words = topic_words[label_topic[:, None], ranks]
    # Documents: 1-3 distinct topics each, tokens drawn by inverse CDF.
    n_doc_topics = rng.integers(1, 4, size=n)
    doc_topics = np.searchsorted(topic_cdf, rng.uniform(size=(n, 3)) * topic_cdf[-1])
    doc_topics = np.minimum(doc_topics, n_topics - 1)
    for j in (1, 2):  # distinct topics: a repeat falls back to the next one
        same = (doc_topics[:, j:j + 1] == doc_topics[:, :j]).any(axis=1)
        doc_topics[same, j] = (doc_topics[same, j] + 1 + j) % n_topics
    lengths = rng.poisson(doc_words, size=n) + 10
    doc_of = np.repeat(np.arange(n), lengths)
    n_tokens = len(doc_of)
    from_topic = rng.uniform(size=n_tokens) < 0.5
    words = np.searchsorted(background, rng.uniform(size=n_tokens))
    slot = (rng.uniform(size=n_tokens) * n_doc_topics[doc_of]).astype(int)
    topic = doc_topics[doc_of, slot]
    rank = np.searchsorted(within, rng.uniform(size=n_tokens))
    words = np.where(from_topic, topic_words[topic, np.minimum(rank, keywords_per_topic - 1)],
                     np.minimum(words, n_features - 1))
    counts = sparse.csr_matrix((np.ones(n_tokens), (doc_of, words)), shape=(n, n_features))
    counts.sum_duplicates()
    # Label scores: keyword counts (at most two a word) of documents about
    # the label's topic.
    K = sparse.csr_matrix((np.ones(label_words.size),
                           (np.repeat(np.arange(n_labels), keywords_per_label),
                            label_words.ravel())), shape=(n_labels, n_features))
    present = counts.copy()
    present.data = np.minimum(present.data, 2.0)
    mask_rows = np.repeat(np.arange(n), n_doc_topics)
    mask_topics = doc_topics[np.arange(3)[None, :] < n_doc_topics[:, None]]
    about = sparse.csr_matrix((np.ones(len(mask_rows)), (mask_rows, mask_topics)),
                              shape=(n, n_topics))
    member = sparse.csr_matrix((np.ones(n_labels), (label_topic, np.arange(n_labels))),
                               shape=(n_topics, n_labels))
    score = (present @ K.T).multiply(about @ member).tocsc()
    score.data += rng.uniform(0, 0.9, size=score.nnz)
    # Label j fires on the top m_j documents of its topic by score: m_j
    # log-normal (a heavy tail of frequent labels, most labels rare), capped
    # by the topic's documents and scaled to labels_per_doc a document.
    docs_of_topic = np.asarray(about.sum(axis=0)).ravel()[label_topic]
    m = rng.lognormal(0.0, 1.3, size=n_labels)
    for _ in range(20):
        m *= labels_per_doc * n / np.minimum(m, docs_of_topic).sum()
    m = np.minimum(np.round(m), docs_of_topic).astype(int)
    keep = np.zeros(score.nnz, dtype=bool)
    for j in range(n_labels):
        lo, hi = score.indptr[j], score.indptr[j + 1]
        if m[j] and hi > lo:
            keep[lo + np.argsort(-score.data[lo:hi])[:m[j]]] = True
    score.data = keep.astype(np.int8)
    score.eliminate_zeros()
    Y = score.tocsr().astype(np.int8)
    # tf-idf, idf from the training rows.
    df = np.bincount(counts[:n_train].indices, minlength=n_features)
    idf = np.log((1 + n_train) / (1 + df)) + 1.0
    X = counts.copy()
    X.data = (1.0 + np.log(X.data)) * idf[X.indices]
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = (sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ X).tocsr()
    X.sort_indices()
    return X[:n_train], X[n_train:], Y[:n_train], Y[n_train:]


def shape_data(name, scale, cache_dir):
    """The shape's arrays, generated once and cached as ``.npz`` files."""
    params = dict(SHAPES[name])
    if scale != 1.0:
        for key in ("n_train", "n_test", "n_labels", "n_topics"):
            params[key] = max(10, int(params[key] * scale))
    path = os.path.join(cache_dir, f"{name}-{scale:g}.npz")
    if not os.path.exists(path):
        Xtr, Xte, Ytr, Yte = eurlex_like(**params)
        save(path, Xtr, Xte, Ytr, Yte)
    return path


def shuffled_data(path, seed=0):
    """A copy of a cached shape with its training rows and its labels in a seeded random order.

    The generator stores labels by topic popularity (the first
    ``n_topics`` labels are one per topic) and rows in the order drawn; a
    user's data may come in any order, so both are permuted (the test rows'
    labels with the same permutation; the test rows stay as they are).
    """
    out = path[:-len(".npz")] + f"-shuffled{seed}.npz"
    if not os.path.exists(out):
        Xtr, Xte, Ytr, Yte = load(path)
        rng = np.random.default_rng(seed)
        rows = rng.permutation(Xtr.shape[0])
        labels = rng.permutation(Ytr.shape[1])
        Xtr, Ytr, Yte = Xtr[rows], Ytr[rows][:, labels].tocsr(), Yte[:, labels].tocsr()
        save(out, Xtr, Xte, Ytr, Yte)
    return out


def save(path, Xtr, Xte, Ytr, Yte):
    """The four CSR matrices of a shape as one ``.npz``, read back by :func:`load`."""
    np.savez(path, **{f"{key}_{part}": getattr(M, part) for key, M in
                      (("Xtr", Xtr), ("Xte", Xte), ("Ytr", Ytr), ("Yte", Yte))
                      for part in ("data", "indices", "indptr")},
             shapes=np.array([Xtr.shape, Xte.shape, Ytr.shape, Yte.shape]))


def load(path):
    f = np.load(path)
    shapes = f["shapes"]
    out = []
    for key, shape in zip(("Xtr", "Xte", "Ytr", "Yte"), shapes):
        out.append(sparse.csr_matrix((f[f"{key}_data"], f[f"{key}_indices"],
                                      f[f"{key}_indptr"]), shape=tuple(shape)))
    return out


def precision_at(scores_top, Y, k):
    """P@k: the mean over test rows of the fraction of the top-k that are labels."""
    Y = Y.tocsr()
    hits = 0
    for i in range(Y.shape[0]):
        row = set(Y.indices[Y.indptr[i]:Y.indptr[i + 1]].tolist())
        hits += sum(1 for j in scores_top[i][:k] if j in row)
    return hits / (k * Y.shape[0])


def top_k_dense(scores, k=5):
    scores = np.asarray(scores)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def top_k_blocks(decision, X, k=5, rows=2000):
    return np.vstack([top_k_dense(decision(X[i:i + rows]), k)
                      for i in range(0, X.shape[0], rows)])


def big_shape(n=100_000, n_features=20_000, row_nnz=100, n_labels=30_000, labels_per_row=5,
              seed=0):
    """Goal 2's memory shape: seeded random sparse rows and Zipf-distributed labels.

    ``X``: CSR float32, ``row_nnz`` features a row drawn uniformly (repeats
    merged), values uniform in [0.1, 1], rows l2-normalised. ``Y``: CSR
    int8, ``labels_per_row`` labels a row drawn from a Zipf law over the
    labels (a few frequent, most rare; repeats merged).
    """
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, n_features, size=(n, row_nnz))
    X = sparse.csr_matrix((rng.uniform(0.1, 1.0, size=n * row_nnz).astype(np.float32),
                           cols.ravel(), np.arange(n + 1) * row_nnz), shape=(n, n_features))
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel())
    X = (sparse.diags((1.0 / norms).astype(np.float32)) @ X).tocsr()
    p = 1.0 / (1.0 + np.arange(n_labels))
    labels = rng.choice(n_labels, size=(n, labels_per_row), p=p / p.sum())
    Y = sparse.csr_matrix((np.ones(labels.size, dtype=np.int8), labels.ravel(),
                           np.arange(n + 1) * labels_per_row), shape=(n, n_labels))
    Y.sum_duplicates()
    Y.data[:] = 1
    return X, Y


def memory_child(C, threads):
    """Fit the big shape (CSR Y), printing progress; the parent samples the RSS."""
    from skbce import MultiLabelLogistic

    X, Y = big_shape()
    print(f"PHASE data X {X.data.nbytes / 1e6:.0f} MB non-zeros, Y {Y.nnz} entries",
          flush=True)
    model = MultiLabelLogistic(C=C, n_jobs=threads, verbose=1)
    print(f"PHASE fit starts; solver for auto: {model._resolved_solver(X, Y.tocsc())}",
          flush=True)
    start = time.perf_counter()
    model.fit(X, Y)
    print(f"PHASE fit done in {time.perf_counter() - start:.0f} s; coef_ {model.coef_.dtype} "
          f"{model.coef_.nbytes / 1e9:.2f} GB", flush=True)


def memory_check(args):
    """Run :func:`memory_child` for at most ``args.memory_check`` seconds; report its peak RSS.

    The resident set is read from ``/proc`` every second (the child's own
    ``ru_maxrss`` is lost if it is stopped). dual-cd allocates its
    coefficients, its workspace and its first block of dense targets before
    the first label is fitted, so a run stopped early has already met the
    fit's peak, short of what ends the fit (the estimator's attributes).
    """
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "memory", "--data", "-",
           "--C", str(args.C), "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout],
                     daemon=True).start()
    start, peak = time.perf_counter(), 0
    while proc.poll() is None and time.perf_counter() - start < args.memory_check:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                rss = next(int(line.split()[1]) * 1024 for line in status
                           if line.startswith("VmRSS"))
            peak = max(peak, rss)
        except (OSError, StopIteration):
            pass
        while not lines.empty():
            print(f"{time.perf_counter() - start:7.0f} s  peak RSS so far {peak / 2**30:.2f} "
                  f"GiB  {lines.get().rstrip()}", flush=True)
        time.sleep(1.0)
    finished = proc.poll() is not None
    if not finished:
        proc.kill()
    proc.wait()
    print(f"peak RSS {peak / 2**30:.2f} GiB over {time.perf_counter() - start:.0f} s "
          f"({'fit finished' if finished else 'stopped before the end of the fit'})")


# -- one method, in the child process ---------------------------------------

def run_skbce(Xtr, Ytr, Xte, C, threads, solver="auto", verbose=0, fit_intercept=True):
    from skbce import MultiLabelLogistic

    model = MultiLabelLogistic(C=C, solver=solver, n_jobs=threads, verbose=verbose,
                               fit_intercept=fit_intercept)
    start = time.perf_counter()
    model.fit(Xtr, Ytr.toarray())  # int8
    fit = time.perf_counter() - start
    return fit, top_k_blocks(model.decision_function, Xte), {"solver": model.solver_,
                                                            "n_iter": int(model.n_iter_)}


def run_liblinear(Xtr, Ytr, Xte, C, threads, s):
    from libmultilabel import linear

    start = time.perf_counter()
    model = linear.train_1vsrest(Ytr.astype(np.float64), Xtr,
                                 options=f"-s {s} -c {C} -m {threads} -q")
    fit = time.perf_counter() - start
    top = top_k_blocks(lambda A: linear.predict_values(model, A), Xte)
    return fit, top, {}


def run_omikuji(Xtr, Ytr, Xte, C, threads):
    import omikuji

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(f"{Xtr.shape[0]} {Xtr.shape[1]} {Ytr.shape[1]}\n")
        for i in range(Xtr.shape[0]):
            labels = ",".join(map(str, Ytr.indices[Ytr.indptr[i]:Ytr.indptr[i + 1]]))
            feats = " ".join(f"{j}:{v:.6g}" for j, v in
                             zip(Xtr.indices[Xtr.indptr[i]:Xtr.indptr[i + 1]],
                                 Xtr.data[Xtr.indptr[i]:Xtr.indptr[i + 1]]))
            f.write(f"{labels} {feats}\n")
        path = f.name
    start = time.perf_counter()
    model = omikuji.Model.train_on_data(path, omikuji.Model.default_hyper_param(),
                                        n_threads=threads)
    fit = time.perf_counter() - start
    os.unlink(path)
    top = []
    for i in range(Xte.shape[0]):
        pairs = list(zip(Xte.indices[Xte.indptr[i]:Xte.indptr[i + 1]].tolist(),
                         Xte.data[Xte.indptr[i]:Xte.indptr[i + 1]].tolist()))
        top.append([label for label, _ in model.predict(pairs, top_k=5)])
    return fit, top, {}


def run_napkinxc(Xtr, Ytr, Xte, C, threads):
    from napkinxc.models import PLT

    labels = [Ytr.indices[Ytr.indptr[i]:Ytr.indptr[i + 1]].tolist()
              for i in range(Ytr.shape[0])]
    with tempfile.TemporaryDirectory() as model_dir:
        model = PLT(model_dir, threads=threads)
        start = time.perf_counter()
        model.fit(Xtr.astype(np.float32), labels)
        fit = time.perf_counter() - start
        top = model.predict(Xte.astype(np.float32), top_k=5)
    return fit, top, {}


def child(method, path, C, threads, verbose):
    if method == "memory":
        memory_child(C, threads)
        return
    Xtr, Xte, Ytr, Yte = load(path)
    if method == "skbce":
        fit, top, extra = run_skbce(Xtr, Ytr, Xte, C, threads, verbose=verbose)
    elif method == "skbce-dual-cd":
        fit, top, extra = run_skbce(Xtr, Ytr, Xte, C, threads, "dual-cd", verbose)
    elif method == "skbce-newton-cg":
        fit, top, extra = run_skbce(Xtr, Ytr, Xte, C, threads, "newton-cg", verbose)
    elif method == "skbce-no-intercept":
        fit, top, extra = run_skbce(Xtr, Ytr, Xte, C, threads, verbose=verbose,
                                    fit_intercept=False)
    elif method.startswith("liblinear-s"):
        fit, top, extra = run_liblinear(Xtr, Ytr, Xte, C, threads, int(method[-1]))
    elif method == "omikuji":
        fit, top, extra = run_omikuji(Xtr, Ytr, Xte, C, threads)
    elif method == "napkinxc":
        fit, top, extra = run_napkinxc(Xtr, Ytr, Xte, C, threads)
    else:
        raise ValueError(f"unknown method {method!r}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = dict(method=method, fit=fit, rss=rss, p1=precision_at(top, Yte, 1),
                  p5=precision_at(top, Yte, 5), **extra)
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent --------------------------------------------------------------

def run_method(method, path, args):
    python = args.peer_python if method in PEERS else sys.executable
    cmd = [python, os.path.abspath(__file__), "--child", method, "--data", path,
           "--C", str(args.C), "--threads", str(args.threads), "--verbose", str(args.verbose)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
        if args.verbose:
            print("   ", line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return dict(method=method, error=tail)


def describe(path):
    Xtr, Xte, Ytr, _ = load(path)
    per_label = np.diff(Ytr.tocsc().indptr)
    return (f"{Xtr.shape[0]} train / {Xte.shape[0]} test rows, {Xtr.shape[1]} features "
            f"({Xtr.nnz / Xtr.shape[0]:.0f} non-zeros a row), {Ytr.shape[1]} labels, "
            f"{Ytr.nnz / Ytr.shape[0]:.2f} labels a row, median {np.median(per_label):.0f} "
            f"rows a label ({np.sum(per_label == 0)} labels without a training positive)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["eurlex"], choices=list(SHAPES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--C", type=float, default=10.0)
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over the methods (interleaved); the table shows each "
                             "method's fastest fit, the note how many rounds ran")
    parser.add_argument("--peer-python", default=os.environ.get(
        "SKBCE_PEER_PYTHON", "/work/peers/bin/python"))
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                        "skbce-bench-many-labels"))
    parser.add_argument("--memory-check", type=float, metavar="SECONDS",
                        help="fit the 100 000 x 20 000 x 30 000 memory shape (big_shape) "
                             "for at most SECONDS and report the peak resident memory")
    parser.add_argument("--shuffle", action="store_true",
                        help="fit the training rows and the labels in a seeded random order "
                             "(shuffled_data) instead of the generator's")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.C, args.threads, args.verbose)
        return
    if args.memory_check:
        memory_check(args)
        return
    os.makedirs(args.cache, exist_ok=True)
    load_avg = os.getloadavg()
    print(f"# load average at start: {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f} "
          f"({os.cpu_count()} cores); threads={args.threads}, C={args.C}")
    for name in args.shapes:
        path = shape_data(name, args.scale, args.cache)
        if args.shuffle:
            path = shuffled_data(path)
        order = ", rows and labels shuffled" if args.shuffle else ""
        print(f"\n## {name} (scale {args.scale:g}{order}): {describe(path)}\n")
        best = {}
        for round_ in range(args.repeat):
            for method in args.methods:
                r = run_method(method, path, args)
                if args.repeat > 1:
                    fit = f"{r['fit']:.1f} s" if "fit" in r else r.get("error", "")[:80]
                    print(f"# round {round_ + 1}: {method} {fit}", flush=True)
                if "error" in r or method not in best or r["fit"] < best[method]["fit"]:
                    best[method] = r
        print("| method | fit s | peak RSS GB | P@1 | P@5 | note |")
        print("|---|---|---|---|---|---|")
        for method in args.methods:
            r = best[method]
            if "error" in r:
                print(f"| {method} | - | - | - | - | failed: {r['error'][:120]} |", flush=True)
                continue
            note = ", ".join(f"{k}={r[k]}" for k in ("solver", "n_iter") if k in r)
            print(f"| {method} | {r['fit']:.1f} | {r['rss'] / 1e9:.2f} | {r['p1']:.3f} | "
                  f"{r['p5']:.3f} | {note} |", flush=True)
        if "skbce" in best and "fit" in best["skbce"]:
            ratios = [f"{m} {best[m]['fit'] / best['skbce']['fit']:.2f}x"
                      for m in args.methods if m != "skbce" and "fit" in best[m]]
            print(f"\nfit time over skbce's (best of {args.repeat}): " + ", ".join(ratios))
    load_avg = os.getloadavg()
    print(f"\n# load average at end: {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}")


if __name__ == "__main__":
    main()
