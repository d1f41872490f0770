"""Scale-out on dask (the optional extra ``skbce[dask]``).

A grid search run on a two-process ``distributed.LocalCluster`` through
joblib's dask backend must agree with the local run, and
``dask_ml.wrappers.Incremental`` must train ``MultiLabelLogistic(solver="sgd")``
block by block to the test BCE of an in-memory fit.
"""

import logging

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")

import joblib  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, train_test_split  # noqa: E402

from skbce import MultiLabelLogistic, bce_scorer, binary_cross_entropy  # noqa: E402

# Yes/no tags of the digit each image shows: even, prime, at least 5, closed loop.
TAGS = [(0, 2, 4, 6, 8), (2, 3, 5, 7), (5, 6, 7, 8, 9), (0, 6, 8, 9)]
ROWS_PER_BLOCK = 200


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    Y = np.column_stack([np.isin(data.target, tag) for tag in TAGS]).astype(np.int8)
    return train_test_split(data.data / 16.0, Y, test_size=0.3, random_state=0)


@pytest.fixture(scope="module")
def client():
    """A client of a local cluster of two single-threaded worker processes."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def label_blocks(Y):
    """``Y``'s row blocks, each whole, under the 1-D keys ``Incremental`` reads.

    dask-ml passes block ``i`` of ``y`` to ``partial_fit`` by the key
    ``(name, i)``, which only a 1-D array has; a 2-D label array's blocks are
    ``(name, i, 0)``. This view keeps the (rows, n_labels) blocks and gives
    them 1-D keys.
    """
    return Y.rechunk({1: -1}).map_blocks(lambda block: block, drop_axis=1, dtype=Y.dtype)


def grid_search():
    return GridSearchCV(
        MultiLabelLogistic(solver="lbfgs"),
        {"C": [0.01, 0.1, 1.0, 10.0]},
        scoring=bce_scorer,
        cv=KFold(3, shuffle=True, random_state=0),
        n_jobs=-1,
    )


def test_grid_search_on_a_cluster_matches_the_local_run(client, digits):
    X_train, _, Y_train, _ = digits
    local = grid_search().set_params(n_jobs=None).fit(X_train, Y_train)
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_backend("dask"):
            remote = grid_search().fit(X_train, Y_train)
    assert tasks.data, "no task ran on the cluster"
    assert remote.best_params_ == local.best_params_
    for key in ["mean_test_score", *(f"split{k}_test_score" for k in range(3))]:
        np.testing.assert_allclose(remote.cv_results_[key], local.cv_results_[key], rtol=1e-7)
    np.testing.assert_allclose(remote.best_score_, local.best_score_, rtol=1e-7)


def test_incremental_sgd_over_blocks_matches_in_memory_fit(client, digits):
    X_train, X_test, Y_train, Y_test = digits
    sgd = MultiLabelLogistic(solver="sgd", random_state=0)
    in_memory = binary_cross_entropy(Y_test, sgd.fit(X_train, Y_train).predict_proba(X_test))

    X_blocks = da.from_array(X_train, chunks=(ROWS_PER_BLOCK, -1))
    Y_blocks = label_blocks(da.from_array(Y_train, chunks=(ROWS_PER_BLOCK, -1)))
    assert X_blocks.numblocks[0] > 1
    model = wrappers.Incremental(MultiLabelLogistic(solver="sgd", random_state=0),
                                 random_state=0)
    # Each call is one pass over the blocks, continuing from the last.
    for _ in range(sgd.n_iter_):
        model.partial_fit(X_blocks, Y_blocks)
    blockwise = binary_cross_entropy(Y_test, model.estimator_.predict_proba(X_test))
    assert abs(blockwise - in_memory) < 0.01, (blockwise, in_memory)
