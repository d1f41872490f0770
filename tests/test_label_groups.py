"""dual-cd's label order: similar labels share a block of the kernel."""

import numpy as np
import pytest
from scipy import sparse

from skbce.linear_model._label_groups import similar_label_order


def _topic_labels(n_topics=5, per_topic=8, rows_per_topic=40, d=200, seed=0):
    """Rows about one of ``n_topics`` topics (their own features), and
    ``per_topic`` labels a topic, each on a random half of its topic's rows;
    the labels' columns shuffled. Returns X, Y and each column's topic."""
    rng = np.random.default_rng(seed)
    n = n_topics * rows_per_topic
    row_topic = np.repeat(np.arange(n_topics), rows_per_topic)
    own = d // n_topics
    X = np.zeros((n, d))
    for i, t in enumerate(row_topic):
        X[i, rng.choice(own, 10, replace=False) + t * own] = rng.uniform(0.5, 1.0, 10)
    X[:, rng.integers(0, d, size=n)] += 0.05  # a little shared background
    label_topic = np.repeat(np.arange(n_topics), per_topic)
    Y = (row_topic[:, None] == label_topic[None, :]) & (rng.uniform(size=(n, len(label_topic))) < 0.5)
    columns = rng.permutation(len(label_topic))
    return sparse.csr_matrix(X), Y[:, columns].astype(np.int8), label_topic[columns]


@pytest.mark.parametrize("y_format", ["dense", "csc", "soft"])
def test_blocks_hold_labels_of_one_topic(y_format):
    X, Y, topic = _topic_labels()
    if y_format == "csc":
        Y = sparse.csc_array(Y)
    elif y_format == "soft":
        Y = Y * 0.9
    order = similar_label_order(X, Y, 8)
    assert np.array_equal(np.sort(order), np.arange(len(topic)))
    for start in range(0, len(order), 8):
        assert len(set(topic[order[start:start + 8]])) == 1


def _blocks(order, group=8):
    return [frozenset(order[start:start + group].tolist())
            for start in range(0, len(order), group)]


def test_sparse_and_dense_inputs_give_the_same_blocks():
    X, Y, _ = _topic_labels(seed=1)
    dense = _blocks(similar_label_order(X, Y, 8))
    assert _blocks(similar_label_order(X, sparse.csr_matrix(Y), 8)) == dense
    assert _blocks(similar_label_order(X.toarray(), Y, 8)) == dense
    assert _blocks(similar_label_order(X.astype(np.float32), Y, 8)) == dense


def test_labels_without_positives_share_the_last_blocks():
    X, Y, topic = _topic_labels(seed=2)
    empty = np.flatnonzero(topic < 2)  # the 16 labels of two topics lose their positives
    Y[:, empty] = 0
    order = similar_label_order(X, Y, 8)
    assert set(order[-16:].tolist()) == set(empty.tolist())
    # The other 24 labels still go by topic.
    for start in range(0, 24, 8):
        assert len(set(topic[order[start:start + 8]])) == 1


def test_order_is_bounded_by_working_memory():
    """The centroids are summed over blocks of rows: a tiny working memory
    gives the same blocks."""
    import sklearn

    X, Y, _ = _topic_labels(seed=3)
    expected = _blocks(similar_label_order(X, Y, 8))
    with sklearn.config_context(working_memory=1e-3):
        assert _blocks(similar_label_order(X, Y, 8)) == expected
        assert _blocks(similar_label_order(X, sparse.csc_matrix(Y), 8)) == expected


@pytest.mark.parametrize("n_labels", [0, 1, 8, 9, 21, 64])
def test_order_is_a_permutation_for_any_label_count(n_labels):
    """Fewer labels than a block, a block and one, a partial last block,
    labels without positives: the order is always a permutation."""
    rng = np.random.default_rng(n_labels)
    X = sparse.random(60, 30, density=0.2, random_state=0, format="csr")
    Y = (rng.uniform(size=(60, n_labels)) < 0.1).astype(np.int8)
    Y[:, ::4] = 0
    for targets in (Y, np.zeros_like(Y)):
        order = similar_label_order(X, targets, 8)
        assert order.dtype == np.intp
        assert np.array_equal(np.sort(order), np.arange(n_labels))
