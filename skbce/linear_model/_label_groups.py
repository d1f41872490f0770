"""An order of the labels in which neighbours share rows: dual-cd's blocks of labels.

dual-cd fits labels in blocks of 8 that share each visit of a row (see
:mod:`skbce.linear_model._dual_cd`). A block's epochs visit the rows that
are active in *any* of its labels: a rare label's positives and the
negatives close to them. Labels about the same thing share those rows, so
a block of similar labels visits fewer rows than a block of labels taken in
the order they are stored (measured in the user guide).

The similarity is that of the labels' positive centroids, ``Y.T @ X``
(each label's rows, weighted by the targets), seen through a seeded sparse
random projection of the features to ``PROJECTION_DIM`` dimensions (each
feature adds into ``PROJECTION_NNZ`` random dimensions with a random sign,
Kane and Nelson's sparse Johnson-Lindenstrauss transform): inner products
are kept well enough for an order, and the cost is a few operations per
non-zero of ``X`` and ``n_labels x PROJECTION_DIM`` numbers, summed over
blocks of rows. The order is the leaves of a balanced binary tree built by
2-means on the normalised centroids (as Parabel builds its label trees),
read left to right: every leaf but the last holds exactly ``group`` labels,
so the kernel's blocks are the leaves. Labels without a positive (zero
centroid) come last, together.
"""

import numpy as np
from scipy import sparse
from sklearn import get_config

__all__ = ["similar_label_order"]

# The projection: enough dimensions to tell topics apart and cheap to
# cluster; a few non-zeros a feature so that two frequent features rarely
# share all their dimensions.
PROJECTION_DIM = 32
PROJECTION_NNZ = 4
# 2-means steps at each split of the tree: an order tolerates an unfinished
# clustering, and the split rarely changes after a few steps.
SPLIT_STEPS = 6


def similar_label_order(X, Y, group, seed=0):
    """A permutation of ``range(n_labels)`` whose consecutive ``group``-s are similar labels.

    ``X`` is (n_samples, n_features), dense or sparse; ``Y`` (n_samples,
    n_labels) the targets in [0, 1], dense or sparse. Returns an ``intp``
    array.
    """
    n_labels = Y.shape[1]
    if n_labels <= group:
        return np.arange(n_labels, dtype=np.intp)
    rng = np.random.default_rng(seed)
    centroids = _label_centroids(X, Y, _sparse_projection(X.shape[1], rng))
    norms = np.linalg.norm(centroids, axis=1)
    with_positives = np.flatnonzero(norms > 0)
    points = centroids[with_positives] / norms[with_positives, None]
    order = with_positives[_balanced_leaves(points, group, rng)]
    return np.concatenate([order, np.flatnonzero(norms == 0)]).astype(np.intp)


def _sparse_projection(n_features, rng):
    """``(n_features, PROJECTION_DIM)`` CSR: ``PROJECTION_NNZ`` entries of +-1 a feature."""
    columns = np.argsort(rng.uniform(size=(n_features, PROJECTION_DIM)), axis=1)
    columns = columns[:, :PROJECTION_NNZ].ravel()
    signs = rng.choice(np.array([-1.0, 1.0]), size=columns.size)
    indptr = np.arange(n_features + 1) * PROJECTION_NNZ
    return sparse.csr_matrix((signs, columns, indptr), shape=(n_features, PROJECTION_DIM))


def _label_centroids(X, Y, projection):
    """``Y.T @ (X @ projection)``, summed over blocks of rows sized by ``working_memory``.

    A block's targets become sparse before the product: neither a float
    copy of ``Y`` nor a projected ``X`` of more than a block is made.
    """
    n, n_labels = Y.shape
    if sparse.issparse(Y):
        Y = sparse.csr_matrix(Y)  # row blocks; a copy of the non-zeros at most
    # A dense block's non-zeros cost ~48 bytes an entry at worst (indices,
    # values and the sparse matrix's own copy).
    budget = get_config()["working_memory"] * 2**20
    rows = int(max(1, budget // (48 * n_labels + 16 * PROJECTION_DIM)))
    centroids = np.zeros((n_labels, PROJECTION_DIM))
    for start in range(0, n, rows):
        block = slice(start, min(start + rows, n))
        projected = X[block] @ projection
        if sparse.issparse(projected):
            projected = projected.toarray()
        targets = sparse.csr_matrix(Y[block], dtype=np.float64)
        centroids += targets.T @ np.asarray(projected, dtype=np.float64)
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
    return np.concatenate(order) if order else np.zeros(0, dtype=np.intp)


def _balanced_split(points, group, rng):
    """Two halves of ``points`` (indices), the left a multiple of ``group``, by 2-means.

    The centres start at a random point and the point least like it.
    """
    size = len(points)
    n_left = max(group, (size // 2) // group * group)
    first = rng.integers(size)
    second = np.argmin(points @ points[first])
    centre_a, centre_b = points[first], points[second]
    left = right = None
    for _ in range(SPLIT_STEPS):
        # The n_left points closest to centre a relative to centre b.
        preference = points @ (centre_b - centre_a)
        split = np.argpartition(preference, n_left - 1)
        new_left = np.sort(split[:n_left])
        if left is not None and np.array_equal(new_left, left):
            break
        left, right = new_left, np.sort(split[n_left:])
        centre_a, centre_b = points[left].mean(axis=0), points[right].mean(axis=0)
    return left, right
