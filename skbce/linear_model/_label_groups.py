"""An order of the labels in which neighbours share rows: dual-cd's blocks of labels.

dual-cd fits labels in blocks of 8 that share each visit of a row (see
:mod:`skbce.linear_model._dual_cd`). A block's epochs visit the rows that
are active in *any* of its labels: a rare label's positives and the
negatives close to them. Labels about the same thing share those rows, so
a block of similar labels visits a few times fewer rows than a block of
labels taken in the order they are stored (measured in the user guide).

The similarity is that of the labels' positive centroids, ``Y.T @ X``
(each label's rows, weighted by the targets), seen through a seeded
Gaussian projection of ``X`` to a few dimensions (Johnson-Lindenstrauss:
inner products are kept to a few tenths; an order needs no more, and the
projection keeps the cost at one pass over ``X`` and ``n_labels x
PROJECTION_DIM`` numbers). The order is the leaves of a balanced binary
tree built by 2-means on the normalised centroids (as Parabel builds its
label trees), read left to right: every leaf but the last holds exactly
``group`` labels, so the kernel's blocks are the leaves.
"""

import numpy as np
from scipy import sparse
from sklearn import get_config

__all__ = ["similar_label_order"]

# Dimensions of the projection: enough to tell topics apart, cheap to hold
# (n_samples x 32 floats) and to cluster.
PROJECTION_DIM = 32
# 2-means steps at each split of the tree: an order tolerates an unfinished
# clustering, and the split rarely changes after a few steps.
SPLIT_STEPS = 6


def similar_label_order(X, Y, group, seed=0):
    """A permutation of ``range(n_labels)`` whose consecutive ``group``-s are similar labels.

    ``X`` is (n_samples, n_features), dense or sparse; ``Y`` (n_samples,
    n_labels) the targets in [0, 1], dense or sparse. Labels without a
    positive have a zero centroid and end up together.
    """
    n_labels = Y.shape[1]
    if n_labels <= group:
        return np.arange(n_labels)
    rng = np.random.default_rng(seed)
    projected = np.asarray(X @ rng.standard_normal((X.shape[1], PROJECTION_DIM)))
    centroids = _label_centroids(Y, projected)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids /= np.maximum(norms, np.finfo(np.float64).tiny)
    return _balanced_leaves(centroids, group, rng)


def _label_centroids(Y, projected):
    """``Y.T @ projected``, a block of labels at a time when ``Y`` is dense.

    A dense block becomes its non-zeros first: neither a float copy of
    ``Y`` nor a mask of more than ``working_memory`` is made.
    """
    if sparse.issparse(Y):
        return np.asarray(sparse.csr_matrix(Y.T) @ projected, dtype=np.float64)
    n, n_labels = Y.shape
    centroids = np.empty((n_labels, projected.shape[1]))
    budget = get_config()["working_memory"] * 2**20 // 8
    width = int(max(1, min(n_labels, budget // max(n, 1))))
    for start in range(0, n_labels, width):
        block = np.asarray(Y[:, start:start + width])
        rows, cols = np.nonzero(block)
        weights = block[rows, cols].astype(np.float64)
        indicator = sparse.csr_matrix((weights, (cols, rows)), shape=(block.shape[1], n))
        centroids[start:start + width] = indicator @ projected
    return centroids


def _balanced_leaves(points, group, rng):
    """The leaves of a balanced 2-means tree over ``points``' rows, left to right.

    Each split puts a multiple of ``group`` points on the left: the leaves
    are then ``group`` points each, but for the last.
    """
    order = []
    pending = [np.arange(len(points))]
    while pending:
        members = pending.pop()
        if len(members) <= group:
            order.append(members)
            continue
        left, right = _balanced_split(points[members], group, rng)
        pending.append(members[right])  # popped after the left side: left to right
        pending.append(members[left])
    return np.concatenate(order)


def _balanced_split(points, group, rng):
    """Two halves of ``points`` (indices), the left a multiple of ``group``, by 2-means."""
    size = len(points)
    n_left = max(group, (size // 2) // group * group)
    first, second = rng.choice(size, 2, replace=False)
    centre_a, centre_b = points[first], points[second]
    left = None
    for _ in range(SPLIT_STEPS):
        # The n_left points closest to centre a relative to centre b.
        preference = points @ (centre_b - centre_a)
        split = np.argpartition(preference, n_left - 1)
        new_left = np.sort(split[:n_left])
        if left is not None and np.array_equal(new_left, left):
            break
        left = new_left
        right = np.sort(split[n_left:])
        centre_a, centre_b = points[left].mean(axis=0), points[right].mean(axis=0)
    return left, right
