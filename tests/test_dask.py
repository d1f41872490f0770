"""Scale-out on dask (the optional extra ``skbce[dask]``), on one local cluster.

On a two-process ``distributed.LocalCluster``: the loss functions and the
predictions on dask arrays are lazy and equal the in-memory ones; a grid
search through joblib's dask backend agrees with the local run;
``MultiLabelLogistic.fit`` on dask arrays trains data-parallel to the
in-memory model; and passes of ``skbce.dask.Incremental`` (dask-ml's, for a
plain 2-D label array) over blocks converge to the in-memory fit.
"""

import doctest
import logging
import os
import re
import signal
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")

import cloudpickle  # noqa: E402
import joblib  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, train_test_split  # noqa: E402

from scipy import sparse  # noqa: E402

from skbce.dask import Incremental, label_blocks  # noqa: E402
from skbce import (  # noqa: E402
    MultiLabelLogistic,
    bce_gradient,
    bce_loss_and_gradient,
    bce_scorer,
    binary_cross_entropy,
)

# Functions of this module run on the workers, which cannot import it.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Yes/no tags of the digit each image shows: even, prime, at least 5, closed loop.
TAGS = [(0, 2, 4, 6, 8), (2, 3, 5, 7), (5, 6, 7, 8, 9), (0, 6, 8, 9)]


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
        dashboard_address=":0",  # any free port: 8787 may be taken
        silence_logs=logging.ERROR,
    ) as cluster, distributed.Client(cluster) as client:
        yield client


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


def test_logistic_cv_folds_on_a_cluster_match_the_local_run(client, digits):
    # MultiLabelLogisticCV sends the folds' fits of each C through joblib: the
    # dask backend runs them on the workers, each fold's model (its warm
    # start) travelling with its task.
    from skbce import MultiLabelLogisticCV

    X_train, _, Y_train, _ = digits
    # The refit deals the labels out to the workers: fits of other groups of
    # labels, equal within tol.
    params = dict(Cs=[0.01, 1.0, 100.0], cv=KFold(3), tol=1e-9)
    local = MultiLabelLogisticCV(**params).fit(X_train, Y_train)
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_backend("dask"):
            remote = MultiLabelLogisticCV(**params, n_jobs=-1).fit(X_train, Y_train)
    assert tasks.data, "no task ran on the cluster"
    np.testing.assert_allclose(remote.scores_, local.scores_, rtol=1e-7)
    np.testing.assert_array_equal(remote.C_, local.C_)
    np.testing.assert_allclose(remote.coef_, local.coef_, rtol=1e-6, atol=1e-7)


def synthetic(n_rows=3600, n_features=30, n_labels=5, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    W = rng.normal(size=(n_features, n_labels))
    return X, (X @ W + rng.logistic(size=(n_rows, n_labels)) > 0).astype(np.int8)


def fit_objective(model, X, Y, C=1.0):
    """fit's objective (mean over labels) at ``model``'s coefficients."""
    loss = binary_cross_entropy(Y, X @ model.coef_.T + model.intercept_, from_logits=True,
                                axis=0)
    return float(np.mean(loss + 0.5 * np.sum(model.coef_ ** 2, axis=1) / (C * len(X))))


def test_incremental_passes_with_a_plain_2d_label_array_converge_to_fit(client):
    # 20 passes over 6 blocks of 600 rows, the labels a plain 2-D dask array.
    X, Y = synthetic()
    best = fit_objective(MultiLabelLogistic().fit(X, Y), X, Y)
    model = Incremental(MultiLabelLogistic(solver="sgd", random_state=0), random_state=0)
    dX = da.from_array(X, chunks=(600, 10))  # split along features: rechunked
    dY = da.from_array(Y, chunks=(600, 2))
    for _ in range(20):
        model.partial_fit(dX, dY)
    # Each block was told the rows of the pass: C means what it does in fit.
    assert model.estimator_.n_iter_ == 20 * 6 and model.estimator_._pass.weight == len(X)
    assert fit_objective(model.estimator_, X, Y) <= 1.005 * best


def test_label_blocks_feed_dask_ml_incremental(client):
    X, Y = synthetic(n_rows=1200)
    dX, dY = da.from_array(X, chunks=(400, -1)), da.from_array(Y, chunks=(400, -1))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        wrappers.Incremental(MultiLabelLogistic(solver="sgd")).partial_fit(dX, dY)
    model = wrappers.Incremental(MultiLabelLogistic(solver="sgd", random_state=0))
    model.partial_fit(dX, label_blocks(dY))
    assert model.estimator_.coef_.shape == (Y.shape[1], X.shape[1])
    assert model.estimator_.n_iter_ == 3


def test_skbce_dask_docstring_examples(client):
    import skbce.dask

    result = doctest.testmod(skbce.dask, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


# -- the loss on dask arrays ------------------------------------------------


@pytest.fixture(scope="module")
def loss_data():
    """Targets (hard and soft), probabilities and weights; a block of zero weights."""
    rng = np.random.default_rng(0)
    n, k = 103, 4
    Y = (rng.random((n, k)) < 0.4).astype(np.float64)
    Y[:5] = rng.random((5, k))
    P = rng.random((n, k))
    sample_weight = rng.random(n)
    sample_weight[20:40] = 0.0
    return Y, P, sample_weight, rng.random(k)


REDUCTIONS = [("mean", None), ("mean", 0), ("mean", 1), ("sum", None), ("sum", 0),
              ("sum", 1), ("none", None)]


@pytest.mark.parametrize("reduction, axis", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("from_logits", [False, True])
def test_loss_on_dask_arrays_is_lazy_and_equals_in_memory(
        client, loss_data, reduction, axis, weighted, from_logits):
    Y, P, sample_weight, label_weight = loss_data
    options = dict(reduction=reduction, axis=axis, from_logits=from_logits,
                   label_weight=label_weight, pos_weight=2.0, label_smoothing=0.1)
    sw = sample_weight if weighted else None
    loss, grad = bce_loss_and_gradient(Y, P, sample_weight=sw, **options)
    # Uneven blocks, chunked along labels too, and not the same for each array.
    dY = da.from_array(Y, chunks=(17, 2))
    dP = da.from_array(P, chunks=(30, 4))
    dsw = None if sw is None else da.from_array(sw, chunks=20)
    lazy_loss, lazy_grad = bce_loss_and_gradient(dY, dP, sample_weight=dsw, **options)
    assert isinstance(lazy_loss, da.Array) and isinstance(lazy_grad, da.Array)
    np.testing.assert_allclose(lazy_loss.compute(), loss, rtol=1e-12)
    np.testing.assert_allclose(lazy_grad.compute(), grad, rtol=1e-12)
    # One dask argument is enough; the others are matched to its blocks.
    np.testing.assert_allclose(
        binary_cross_entropy(Y, dP, sample_weight=sw, **options).compute(), loss, rtol=1e-12)
    np.testing.assert_allclose(
        bce_gradient(dY, P, sample_weight=dsw, **options).compute(), grad, rtol=1e-12)


def test_loss_of_two_column_predictions_on_dask(client, loss_data):
    Y, P, _, _ = loss_data
    y = Y[:, 0] >= 0.5
    proba = np.column_stack([1 - P[:, 0], P[:, 0]])
    dy, dproba = da.from_array(y, chunks=25), da.from_array(proba, chunks=(40, 1))
    assert binary_cross_entropy(dy, dproba).compute() == pytest.approx(
        binary_cross_entropy(y, proba), rel=1e-12)
    np.testing.assert_allclose(bce_gradient(dy, dproba).compute(), bce_gradient(y, proba),
                               rtol=1e-12)


def test_loss_on_dask_reports_invalid_input(client, loss_data):
    Y, P, sample_weight, _ = loss_data
    bad = Y.copy()
    bad[50, 1] = 1.5
    with pytest.raises(ValueError, match="y_true must lie in"):
        binary_cross_entropy(da.from_array(bad, chunks=30), P).compute()
    with pytest.raises(ValueError, match="sample_weight must not be all zero"):
        binary_cross_entropy(Y, da.from_array(P, chunks=30),
                             sample_weight=np.zeros(len(Y))).compute()
    with pytest.raises(ValueError, match="inconsistent shapes"):
        binary_cross_entropy(da.from_array(Y[:, :2], chunks=30), P)
    unknown = da.from_array(P, chunks=30)
    unknown = unknown[unknown[:, 0] >= 0]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        binary_cross_entropy(Y, unknown)


# -- predictions on dask arrays ---------------------------------------------


@pytest.mark.parametrize("target", ["multi-label", "binary"])
@pytest.mark.parametrize("chunk_kind", ["dense", "sparse"])
def test_predictions_on_dask_are_lazy_and_equal_in_memory(client, digits, target, chunk_kind):
    X_train, X_test, Y_train, _ = digits
    y = Y_train if target == "multi-label" else np.where(Y_train[:, 0], "even", "odd")
    model = MultiLabelLogistic(C=0.5).fit(X_train, y)
    # Uneven row blocks, and split along the features (rechunked to whole rows).
    X = da.from_array(X_test, chunks=((100, 0, 250, 190), (40, 24)))
    if chunk_kind == "sparse":
        X = X.map_blocks(sparse.csr_matrix, dtype=X.dtype)
    for method in ["decision_function", "predict_proba", "predict_log_proba", "predict"]:
        lazy = getattr(model, method)(X)
        expected = getattr(model, method)(X_test)
        assert isinstance(lazy, da.Array), method
        computed = lazy.compute()
        assert computed.dtype == expected.dtype and computed.shape == expected.shape, method
        if expected.dtype.kind == "f":
            # (BLAS may block a product differently: logits near 0 differ in absolute terms.)
            np.testing.assert_allclose(computed, expected, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_array_equal(computed, expected)


# -- data-parallel fit ------------------------------------------------------


def objective(model, X, Y, sample_weight=None, pos_weight=None, label_smoothing=0.0):
    """The fit's objective of ``model`` on in-memory data, from the public loss."""
    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    logits = np.asarray(X @ model.coef_.T) + model.intercept_
    Y = Y * (1 - label_smoothing) + label_smoothing / 2
    total = len(X) if sample_weight is None else np.sum(sample_weight)
    loss = binary_cross_entropy(Y, logits, from_logits=True, sample_weight=sample_weight,
                                pos_weight=pos_weight, axis=0)
    return float(np.mean(loss + 0.5 * np.sum(model.coef_ ** 2, axis=1) / (model.C * total)))


@pytest.fixture(scope="module")
def fit_data():
    """Four labels, one of them rare; the first 150 rows have no positive at all."""
    rng = np.random.default_rng(1)
    n, d = 900, 12
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, 4))
    Y = (X @ W + rng.logistic(size=(n, 4)) > np.array([0.0, 1.0, -1.0, 4.0])).astype(np.int8)
    Y[:150] = 0
    return X, Y, rng.uniform(0.2, 2.0, size=n)


def as_dask(X, Y, sample_weight, chunk_kind="dense"):
    """Uneven row blocks (one of them empty, one holding only negatives); X split
    along its columns and Y, sample_weight blocked differently: all rechunked to
    X's rows."""
    dX = da.from_array(X, chunks=((150, 0, 400, 350), (8, 4)))
    if chunk_kind == "sparse":
        dX = dX.map_blocks(sparse.csr_matrix, dtype=X.dtype)
    dY = da.from_array(Y, chunks=(300, 2))
    dsw = None if sample_weight is None else da.from_array(sample_weight, chunks=450)
    return dX, dY, dsw


CASES = {
    # solver, chunks, estimator options, targets, weighted
    "newton-cg dense": ("newton-cg", "dense", dict(pos_weight="balanced"), "hard", True),
    "newton-cg sparse": ("newton-cg", "sparse", dict(label_smoothing=0.1), "soft", False),
    "lbfgs sparse": ("lbfgs", "sparse", dict(pos_weight=[1.0, 2.0, 0.5, 3.0]), "hard", True),
    "newton-cholesky dense": ("newton-cholesky", "dense", dict(label_smoothing=0.05), "hard",
                              True),
    # gd takes many cheap iterations, each a round of tasks: kept short here.
    "gd dense": ("gd", "dense", dict(C=1.0, tol=1e-6), "hard", False),
}


@pytest.mark.parametrize("case", CASES)
def test_fit_on_dask_trains_the_in_memory_model(client, fit_data, case):
    solver, chunk_kind, options, targets, weighted = CASES[case]
    X, Y, sample_weight = fit_data
    if targets == "soft":
        Y = np.clip(Y * 0.8 + 0.1 * (X[:, :4] > 0), 0, 1)
    sample_weight = sample_weight if weighted else None
    params = dict(solver=solver, tol=1e-8, max_iter=2000)
    params.update(options)
    local = MultiLabelLogistic(**params).fit(X, Y, sample_weight=sample_weight)
    remote = MultiLabelLogistic(**params).fit(*as_dask(X, Y, sample_weight, chunk_kind))
    assert remote.solver_ == solver
    np.testing.assert_array_equal(remote.classes_, local.classes_)
    expected = objective(local, X, Y, sample_weight, local.pos_weight_,
                         options.get("label_smoothing", 0.0))
    assert objective(remote, X, Y, sample_weight, remote.pos_weight_,
                     options.get("label_smoothing", 0.0)) == pytest.approx(expected, rel=1e-6)
    assert remote.loss_curve_[-1] == pytest.approx(local.loss_curve_[-1], rel=1e-6)
    np.testing.assert_allclose(remote.coef_, local.coef_, rtol=1e-3, atol=1e-4)
    # Predictions of a model trained on dask, on dask: lazy and equal.
    np.testing.assert_allclose(remote.predict_proba(da.from_array(X, chunks=400)).compute(),
                               remote.predict_proba(X), rtol=1e-12, atol=1e-15)


def test_fit_on_dask_one_d_labels_warm_start_and_verbose(client, fit_data, capsys):
    X, Y, _ = fit_data
    y = np.where(Y[:, 0] == 1, "yes", "no")
    dX, dy = da.from_array(X, chunks=300), da.from_array(y, chunks=200)
    model = MultiLabelLogistic(C=0.05, tol=1e-8, verbose=1).fit(dX, dy)
    assert "[newton-cg] iter" in capsys.readouterr().out
    local = MultiLabelLogistic(C=0.05, tol=1e-8).fit(X, y)
    np.testing.assert_array_equal(model.classes_, ["no", "yes"])
    assert model.coef_.shape == (1, X.shape[1]) and model.n_features_in_ == X.shape[1]
    assert objective(model, X, Y[:, 0]) == pytest.approx(objective(local, X, Y[:, 0]), rel=1e-6)
    np.testing.assert_array_equal(model.predict(dX).compute(), local.predict(X))
    # A warm start from the solution is at the solution already.
    model.set_params(C=0.05, warm_start=True, verbose=0).fit(dX, dy)
    assert model.n_iter_ <= 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol=0
@pytest.mark.parametrize("chunk_kind", ["dense", "sparse"])
def test_sgd_on_dask_runs_its_epochs_over_the_chunks(client, fit_data, chunk_kind):
    X, Y, sample_weight = fit_data
    params = dict(solver="sgd", C=0.1, max_iter=30, tol=0.0, random_state=0)
    local = MultiLabelLogistic(**params).fit(X, Y, sample_weight=sample_weight)
    remote = MultiLabelLogistic(**params).fit(*as_dask(X, Y, sample_weight, chunk_kind))
    assert remote.solver_ == "sgd" and remote.n_iter_ == 30
    best = objective(MultiLabelLogistic(C=0.1, tol=1e-8).fit(X, Y, sample_weight=sample_weight),
                     X, Y, sample_weight)
    # The same algorithm over the rows in another order: as close to the optimum.
    ours = objective(remote, X, Y, sample_weight)
    assert ours - best <= 2 * (objective(local, X, Y, sample_weight) - best) + 1e-3 * best
    assert remote.loss_curve_[-1] == pytest.approx(ours, rel=1e-6)


def test_fit_on_dask_computes_a_lazy_X_once(client, fit_data, tmp_path):
    X, Y, _ = fit_data
    log = str(tmp_path)

    def build(block):
        with open(os.path.join(log, uuid.uuid4().hex), "w"):
            pass
        return block * 1.0

    # (meta given: dask would otherwise call build once more to infer it)
    lazy_X = da.from_array(X, chunks=300).map_blocks(build, meta=np.empty((0, 0)))
    MultiLabelLogistic(tol=1e-6).fit(lazy_X, Y)
    assert len(os.listdir(log)) == lazy_X.numblocks[0]


def test_fit_on_dask_rejects_what_cannot_be_lined_up(client, fit_data):
    X, Y, _ = fit_data
    dX = da.from_array(X, chunks=300)
    unknown = dX[dX[:, 0] > -np.inf]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        MultiLabelLogistic().fit(unknown, Y[:len(X)])
    with pytest.raises(ValueError, match="has 899 rows; expected 900"):
        MultiLabelLogistic().fit(dX, da.from_array(Y[:-1], chunks=300))
    bad = Y.astype(float)
    bad[5, 1] = 2.0
    with pytest.raises(ValueError, match="Targets must be 0/1 labels or probabilities"):
        MultiLabelLogistic().fit(dX, bad)
    nan = X.copy()
    nan[700, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        MultiLabelLogistic().fit(da.from_array(nan, chunks=300), Y)


# -- the distributed problem's pieces, in one process ---------------------------


def test_affine_logits_do_the_arithmetic_of_their_values():
    from skbce.linear_model._dask_problem import AffineLogits

    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 5))

    def logits(k):
        return AffineLogits(rng.normal(size=(5, k)), rng.normal(size=k), 30)

    def value(Z):
        return X @ Z.A + Z.c

    Z1, Z2, t = logits(4), logits(4), rng.uniform(0.5, 2.0, size=4)
    v1, v2 = value(Z1), value(Z2)
    for got, expected in [(Z1 + Z2, v1 + v2), (Z1 - Z2, v1 - v2), (t * Z1, t * v1),
                          (Z1 * t, v1 * t), (-Z1, -v1), (Z1 + t, v1 + t), (Z1 / t, v1 / t),
                          (Z1[:, [3, 1]], v1[:, [3, 1]]),
                          (np.concatenate([Z1, Z2[:, :2]], axis=1),
                           np.concatenate([v1, v2[:, :2]], axis=1))]:
        np.testing.assert_allclose(value(got), expected, rtol=1e-12, atol=1e-12)
    # In-place forms change the object, never a copy of it or shared arrays.
    kept = Z1.copy()
    Z1 += Z2
    np.subtract(Z1, Z2, out=Z1)
    np.testing.assert_allclose(value(Z1), v1, rtol=1e-12, atol=1e-12)
    mask = np.array([True, False, True, False])
    np.copyto(Z1, Z2, where=mask)
    Z1[:, [1]] = Z2[:, [1]]
    np.testing.assert_allclose(value(Z1), np.where([True, True, True, False], v2, v1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(value(kept), v1)
    Z3 = np.empty_like(Z1)
    Z3[...] = t
    np.testing.assert_array_equal(value(Z3), np.broadcast_to(t, (30, 4)))
    with pytest.raises(TypeError, match="not affine"):
        Z1 * Z2
    with pytest.raises(TypeError):  # per-sample values are not coefficients
        Z1 + np.ones((30, 4))
    with pytest.raises(TypeError, match="not converted to a numpy array"):
        np.asarray(Z1)


@pytest.mark.parametrize("chunk_kind", ["dense", "unaligned", "sparse"])
def test_a_chunk_swept_in_row_blocks_gives_the_whole_chunk_results(monkeypatch, chunk_kind):
    from skbce.linear_model import _dask_chunks

    rng = np.random.default_rng(4)
    n, d, k = 1000, 7, 5
    X = rng.normal(size=(n, d))
    if chunk_kind == "sparse":
        X = sparse.csr_matrix(np.where(rng.uniform(size=X.shape) < 0.3, X, 0))
    elif chunk_kind == "unaligned":
        # As an array received from another process may be: not at a multiple of 8 bytes.
        unaligned = np.empty(X.nbytes + 1, dtype=np.uint8)[1:].view(np.float64).reshape(n, d)
        unaligned[...] = X
        X = unaligned
        assert not X.flags.aligned
    Y = (rng.uniform(size=(n, k)) < 0.4).astype(np.uint8)
    problem = _dask_chunks._chunk_problem(X, Y, rng.uniform(0.5, 2, size=n), 3.0 * n,
                                           rng.uniform(0.5, 2, size=k), True, 0.1)
    problem.set_active(np.array([4, 0, 2, 3]))
    cols = np.array([0, 2, 3])
    A, c = rng.normal(size=(d, 3)) * 0.3, rng.normal(size=3)
    # Whole-chunk reference: the in-memory problem's own methods.
    loss, G, H = problem.loss_grad_logits(problem.linear(A, c), want_hess=True, cols=cols)
    expected = (loss, problem.backward(G), G.sum(axis=0), H.sum(axis=0))
    V, vb = rng.normal(size=(d, 3)), rng.normal(size=3)
    expected_hessp = problem.hessp(V, vb, H)

    monkeypatch.setattr(_dask_chunks, "_SWEEP_BLOCK_BYTES", 3 * 256 * 8)  # 4 blocks
    assert len(list(_dask_chunks._row_blocks(problem, 3))) == 4
    spare = np.empty((n, 4))
    sums, swept = _dask_chunks._sweep(problem, A, c, cols, True, True, np.dtype(np.float64),
                                       spare)
    for got, want in zip(sums, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(swept, H, rtol=1e-12, atol=1e-15)
    assert np.shares_memory(swept, spare)  # written into the memory of the old weights
    # The curvature of all four active labels, of which the product reads three.
    wide = np.empty((n, 4))
    wide[:, [0, 2, 3]], wide[:, 1] = H, 7.0
    for got, want in zip(_dask_chunks._hessp(problem, V, vb, cols, wide), expected_hessp):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


# -- the user guide's scale-out page ----------------------------------------


def test_scale_out_page_runs_as_shown(client, capsys):
    # The page's python blocks, in order, as one session (it starts and
    # closes a cluster of its own); the guide ships beside the tests.
    page = Path(__file__).resolve().parents[1] / "docs" / "dask.rst"
    if not page.is_file():
        pytest.skip("docs/ is not beside the tests")
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", page.read_text(),
                        flags=re.MULTILINE)
    assert len(blocks) >= 5
    code = "\n".join(textwrap.dedent(block) for block in blocks)
    namespace = {}
    exec(compile(code, str(page), "exec"), namespace)
    assert namespace["search"].best_params_["C"] in (0.01, 0.1, 1, 10)
    assert namespace["model"].coef_.shape == (5, 20)
    assert isinstance(namespace["proba"], da.Array)
    assert namespace["fitted"].n_iter_ == 5 * namespace["X"].numblocks[0]
    assert "{'C':" in capsys.readouterr().out


@pytest.mark.parametrize("wrap", ["scipy", "dask"])
def test_fit_on_dask_takes_sparse_targets(client, fit_data, wrap):
    """A scipy.sparse y with dask X, or a dask array of CSR chunks: kept sparse, same model."""
    X, Y, sample_weight = fit_data
    local = MultiLabelLogistic(tol=1e-8, pos_weight="balanced").fit(
        X, Y, sample_weight=sample_weight)
    Ys = sparse.csc_matrix(Y)  # any format: made CSR row blocks
    if wrap == "dask":
        Ys = da.from_array(sparse.csr_matrix(Y), chunks=(300, -1), asarray=False)
    dX = da.from_array(X, chunks=(450, -1))
    remote = MultiLabelLogistic(tol=1e-8, pos_weight="balanced").fit(
        dX, Ys, sample_weight=da.from_array(sample_weight, chunks=450))
    np.testing.assert_allclose(remote.pos_weight_, local.pos_weight_, rtol=1e-12)
    np.testing.assert_allclose(remote.coef_, local.coef_, rtol=1e-3, atol=1e-4)


# -- a lost worker ----------------------------------------------------------------
#
# The moment of each kill is a round of the fit's tasks (the states' test
# hook), chosen by a seed among the rounds of a fault-free fit of the same
# data: a worker process dies (SIGKILL) while the round's tasks are queued
# or running on it, and the test waits until the scheduler has seen it go.


def _worker_pid(client, address):
    return client.run(os.getpid, workers=[address])[address]


def _kill(client, address):
    """SIGKILL the worker process at ``address``; return when the scheduler knows."""
    os.kill(_worker_pid(client, address), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while address in client.nthreads():
        assert time.monotonic() < deadline, f"the scheduler still lists {address}"
        time.sleep(0.05)


def _cluster_state(client):
    """What the cluster holds: the scheduler's tasks, the client's futures, the
    workers' stored keys."""
    tasks = client.run_on_scheduler(lambda dask_scheduler: sorted(map(str, dask_scheduler.tasks)))
    stored = client.run(lambda dask_worker: sorted(map(str, dask_worker.data.keys())))
    return tasks, sorted(map(str, client.futures)), sorted(k for keys in stored.values()
                                                           for k in keys)


def _assert_back_to(client, before):
    """The cluster returns to what it held before (releases travel asynchronously)."""
    deadline = time.monotonic() + 20
    while (now := _cluster_state(client)) != before:
        assert time.monotonic() < deadline, f"left on the cluster: {now} (before: {before})"
        time.sleep(0.1)


@pytest.fixture
def no_hang():
    """A fit that hangs (the bug these tests are about) ends the test run with the
    threads' tracebacks, rather than hanging it."""
    import faulthandler

    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


class _WorkerProcesses:
    """``dask worker`` processes without a nanny: a killed one stays dead (a nanny
    would start another, in its own time), and :meth:`top_up` starts new ones."""

    def __init__(self, scheduler_address, directory):
        self.address, self.directory, self.processes = scheduler_address, directory, []

    def top_up(self, client, n):
        import subprocess

        for _ in range(n - len(client.nthreads())):
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                 "--no-nanny", "--nthreads", "1", "--no-dashboard", "--local-directory",
                 str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                # Not the repository root: ``python -m`` puts the working
                # directory first on sys.path, and the source tree's skbce/
                # has no compiled extension.
                cwd=self.directory))
        client.wait_for_workers(n, timeout=120)

    def close(self):
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    """A scheduler, and three single-threaded worker processes before each test."""
    with distributed.LocalCluster(
        n_workers=0, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL,
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        workers = _WorkerProcesses(cluster.scheduler_address, tmp_path_factory.mktemp("workers"))
        try:
            yield workers, client
        finally:
            workers.close()


@pytest.fixture
def client3(cluster3, no_hang):
    workers, client = cluster3
    workers.top_up(client, 3)
    with client.as_current():
        yield client


@pytest.fixture(scope="module")
def fault_data():
    """6 chunks of 500 rows (2 per worker), 15 features, 3 labels."""
    rng = np.random.default_rng(7)
    n, d = 3000, 15
    X = rng.normal(size=(n, d))
    Y = (X @ rng.normal(size=(d, 3)) + rng.logistic(size=(n, 3)) > 0).astype(np.int8)
    return X, Y, rng.uniform(0.2, 2.0, size=n)


def _fault_arrays(fault_data, chunk_kind, weighted):
    X, Y, sample_weight = fault_data
    dX = da.from_array(X, chunks=(500, -1))
    if chunk_kind == "sparse":
        dX = dX.map_blocks(sparse.csr_matrix, dtype=X.dtype)
    dsw = da.from_array(sample_weight, chunks=500) if weighted else None
    return dX, da.from_array(Y, chunks=(500, -1)), dsw


def _round_hook(monkeypatch, action):
    """Run ``action(states, n)`` after each round ``n`` of the fit's tasks is submitted."""
    from skbce.linear_model import _dask_states

    monkeypatch.setattr(_dask_states, "_ROUND_HOOK", action)


def _rounds_of_a_fit(monkeypatch, fit):
    count = []
    _round_hook(monkeypatch, lambda states, n: count.append(n))
    model = fit()
    _round_hook(monkeypatch, None)
    return model, len(count)


FAULT_CASES = {
    # chunks, weighted, seed of the round at which the worker dies
    "dense": ("dense", False, 0),
    "sparse": ("sparse", False, 1),
    "weighted": ("dense", True, 2),
}


@pytest.mark.parametrize("case", FAULT_CASES)
def test_fit_survives_the_loss_of_the_worker_holding_most_chunks(client3, fault_data, case,
                                                                 monkeypatch):
    chunk_kind, weighted, seed = FAULT_CASES[case]
    dX, dY, dsw = _fault_arrays(fault_data, chunk_kind, weighted)

    def fit():
        return MultiLabelLogistic(tol=1e-8).fit(dX, dY, sample_weight=dsw)

    before = _cluster_state(client3)
    reference, rounds = _rounds_of_a_fit(monkeypatch, fit)
    _assert_back_to(client3, before)
    kill_at = int(np.random.default_rng(seed).integers(rounds // 4, 3 * rounds // 4))
    killed = []

    def kill_the_busiest(states, n):
        if n == kill_at:
            counts = {w: states.workers.count(w) for w in states.workers}
            killed.append(max(counts, key=counts.get))
            _kill(client3, killed[-1])

    _round_hook(monkeypatch, kill_the_busiest)
    faulted = fit()
    assert len(killed) == 1
    assert killed[0] not in client3.nthreads()
    np.testing.assert_allclose(faulted.coef_, reference.coef_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(faulted.intercept_, reference.intercept_, rtol=0, atol=1e-6)
    assert faulted.n_iter_ == reference.n_iter_
    _assert_back_to(client3, before)


def test_a_second_fit_after_a_lost_worker_and_an_interrupt_is_the_first(
        client3, fault_data, monkeypatch):
    dX, dY, _ = _fault_arrays(fault_data, "dense", False)
    before = _cluster_state(client3)
    reference = MultiLabelLogistic(tol=1e-8).fit(dX, dY)

    def interrupt(states, n):
        if n == 5:
            raise KeyboardInterrupt

    _round_hook(monkeypatch, interrupt)
    with pytest.raises(KeyboardInterrupt) as interrupted:
        MultiLabelLogistic(tol=1e-8).fit(dX, dY)
    # Nothing of the interrupted fit is left, though its frames (in the
    # traceback) still hold its problem and data.
    assert interrupted.traceback
    _assert_back_to(client3, before)
    _round_hook(monkeypatch, None)
    again = MultiLabelLogistic(tol=1e-8).fit(dX, dY)
    np.testing.assert_array_equal(again.coef_, reference.coef_)
    _assert_back_to(client3, before)


def test_fit_on_scattered_data_lost_with_its_worker_says_so(client3, fault_data, monkeypatch):
    # Scattered blocks have no graph to recompute them from.
    X, Y, _ = fault_data
    blocks = client3.scatter([X[i:i + 500] for i in range(0, len(X), 500)])
    dX = da.concatenate([da.from_delayed(b, shape=(500, X.shape[1]), dtype=X.dtype)
                         for b in blocks])
    holder = client3.who_has(blocks)[blocks[0].key][0]

    def kill(states, n):
        if n == 3:
            _kill(client3, holder)

    _round_hook(monkeypatch, kill)
    with pytest.raises(RuntimeError, match=r"chunk\(s\) 0 \(500 rows\).* cannot be recomputed"):
        MultiLabelLogistic(tol=1e-8).fit(dX, da.from_array(Y, chunks=(500, -1)))


def test_fit_without_workers_raises_within_the_timeout(fault_data, monkeypatch, tmp_path,
                                                       no_hang):
    dask = pytest.importorskip("dask")
    X, Y, _ = fault_data
    with distributed.LocalCluster(
        n_workers=0, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL,
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        workers = _WorkerProcesses(cluster.scheduler_address, tmp_path)
        try:
            workers.top_up(client, 2)
            stopped = []

            def kill_all(states, n):
                if n == 4:
                    for address in list(client.nthreads()):
                        _kill(client, address)
                    stopped.append(time.monotonic())

            _round_hook(monkeypatch, kill_all)
            with client.as_current(), dask.config.set({"skbce.dask.timeout": 2}):
                with pytest.raises(TimeoutError, match=r"no worker was alive for 2 s .*'skbce"
                                                       r"\.dask\.timeout'.*Lost so far: chunk 0"):
                    MultiLabelLogistic(tol=1e-8).fit(da.from_array(X, chunks=(500, -1)),
                                                     da.from_array(Y, chunks=(500, -1)))
            # The timeout, a look at the workers (every 0.5 s) and their answer.
            assert time.monotonic() - stopped[0] < 2 + 3
            _assert_back_to(client, ([], [], []))
        finally:
            workers.close()


def test_fit_on_dask_rejects_a_timeout_that_is_not_a_duration(client, fit_data):
    dask = pytest.importorskip("dask")
    X, Y, _ = fit_data
    with dask.config.set({"skbce.dask.timeout": "soon"}):
        with pytest.raises(ValueError, match=r"'skbce\.dask\.timeout' must be a positive "
                                             r"duration.*got 'soon'"):
            MultiLabelLogistic().fit(*as_dask(X, Y, None)[:2])
    deadline = time.monotonic() + 20  # (releases travel asynchronously)
    while client.futures:
        assert time.monotonic() < deadline, f"left: {list(client.futures)}"
        time.sleep(0.05)
