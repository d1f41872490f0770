"""The metric and the scorer on array-API inputs (array-api-strict, torch on CPU).

With ``array_api_dispatch=True`` the loss and gradient are computed in the
inputs' namespace and dtype and must equal the NumPy path (the compiled
kernels) to the rounding of that dtype; without it, inputs are converted to
NumPy, as scikit-learn's metrics do. scikit-learn's dispatch needs SciPy >=
1.14 (and ``SCIPY_ARRAY_API=1`` from 1.8 on, which it only reads when the
option is set: skbce's array-API path calls no SciPy function, so the tests
set the variable then); with older SciPy the dispatch tests skip.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import sklearn
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import skbce._array_api
from skbce import bce_gradient, bce_loss_and_gradient, bce_scorer, binary_cross_entropy


def _namespaces():
    params = []
    for name in ("array_api_strict", "torch"):
        params.append(pytest.param(name, id=name))
    return params


@pytest.fixture(params=_namespaces())
def xp(request):
    return pytest.importorskip(request.param)


@pytest.fixture
def dispatch(monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    try:
        with sklearn.config_context(array_api_dispatch=True):
            yield
    except ImportError as exc:  # scikit-learn's own check: SciPy too old
        pytest.skip(f"scikit-learn's array API dispatch is unavailable here: {exc}")


def _asarray(xp, values):
    return xp.asarray(np.ascontiguousarray(values))


def _as_numpy(value):
    if isinstance(value, float):
        return value
    return np.asarray(value.cpu() if hasattr(value, "cpu") else value)


def _dtype_name(array):
    return str(array.dtype).rsplit(".", 1)[-1]


RTOL = {np.float32: 2e-5, np.float64: 1e-12}

rng = np.random.default_rng(0)
N, L = 40, 3
Y = (rng.random((N, L)) > 0.5).astype(np.int64)
SOFT = rng.random((N, L))
P = rng.uniform(0.01, 0.99, (N, L))
Z = rng.normal(0, 3, (N, L))
SW = rng.uniform(0.1, 2, N)
LW = rng.uniform(0.1, 2, L)

CASES = {
    "mean": {},
    "logits": dict(from_logits=True),
    "weights": dict(sample_weight=SW, label_weight=LW, pos_weight=2.0),
    "pos_weight per label, logits": dict(from_logits=True, pos_weight=LW),
    "per label": dict(axis=0, sample_weight=SW),
    "per sample": dict(axis=1, label_weight=LW),
    "none": dict(reduction="none", sample_weight=SW),
    "sum, smoothing": dict(reduction="sum", label_smoothing=0.2),
    "eps": dict(eps=0.05),
}


def _inputs(case, dtype):
    options = CASES[case]
    prediction = Z if options.get("from_logits") else P
    targets = SOFT if case == "sum, smoothing" else Y
    return targets, prediction.astype(dtype), options


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_values_match_numpy_path(xp, dispatch, case, dtype):
    y, prediction, options = _inputs(case, dtype)
    expected_loss, expected_grad = bce_loss_and_gradient(y, prediction, **options)
    xp_options = {k: (_asarray(xp, v) if k == "sample_weight" else v) for k, v in options.items()}
    loss, grad = bce_loss_and_gradient(_asarray(xp, y), _asarray(xp, prediction),
                                       **xp_options)
    # The gradient stays in the namespace of the predictions, in the NumPy
    # path's dtype (float32 stays float32, unless the targets are float64).
    assert type(grad) is type(_asarray(xp, prediction))
    assert _dtype_name(grad) == expected_grad.dtype.name
    if y.dtype != np.float64:
        assert expected_grad.dtype == dtype
    np.testing.assert_allclose(_as_numpy(grad), expected_grad, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * np.abs(expected_grad).max())
    if isinstance(expected_loss, float):
        assert isinstance(loss, float)
    else:
        assert type(loss) is type(grad)
        assert _dtype_name(loss) == expected_loss.dtype.name
    np.testing.assert_allclose(_as_numpy(loss), expected_loss, rtol=RTOL[dtype])
    # The single-purpose functions agree with the pair.
    np.testing.assert_array_equal(
        _as_numpy(binary_cross_entropy(_asarray(xp, y), _asarray(xp, prediction),
                                       **xp_options)), _as_numpy(loss))
    np.testing.assert_array_equal(
        _as_numpy(bce_gradient(_asarray(xp, y), _asarray(xp, prediction), **xp_options)),
        _as_numpy(grad))


def test_numpy_inputs_keep_the_kernels(dispatch, monkeypatch):
    # Dispatch on, NumPy arrays in: the compiled kernels, not the array-API path.
    def refuse(*args, **kwargs):
        raise AssertionError("the array-API path was taken for NumPy inputs")

    monkeypatch.setattr(skbce._array_api, "evaluate", refuse)
    assert binary_cross_entropy(Y, P) == pytest.approx(
        np.mean(-(Y * np.log(P) + (1 - Y) * np.log1p(-P))), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_predict_proba_columns(xp, dispatch, dtype):
    y, p = Y[:, 0], P[:, 0].astype(dtype)
    two = np.column_stack([1 - p, p])
    loss, grad = bce_loss_and_gradient(_asarray(xp, y), _asarray(xp, two))
    expected_loss, expected_grad = bce_loss_and_gradient(y, two)
    assert loss == pytest.approx(expected_loss, rel=RTOL[dtype])
    assert tuple(grad.shape) == (N, 2)
    np.testing.assert_allclose(_as_numpy(grad), expected_grad, rtol=RTOL[dtype])


def test_mixed_inputs_are_moved_to_the_predictions_namespace(xp, dispatch):
    # NumPy targets and weights with array-API predictions, as log_loss allows.
    loss = binary_cross_entropy(Y, _asarray(xp, P), sample_weight=list(SW))
    assert loss == pytest.approx(binary_cross_entropy(Y, P, sample_weight=SW), rel=1e-12)


@pytest.mark.parametrize(("y", "prediction", "options", "message"), [
    (Y * 2, P, {}, r"y_true must lie in \[0, 1\]; found 2(\.0)? at index \(0, 0\)"),
    (Y, P + 1, {}, r"y_pred must be probabilities in \[0, 1\]"),
    (Y, np.where(Z > 5, np.inf, Z), dict(from_logits=True), "y_pred must be finite logits"),
    (Y, P[:, :2], {}, "inconsistent shapes"),
    (Y, P, dict(label_weight=[1.0, 2.0]), "label_weight must be a number or an array"),
    (Y, P, dict(sample_weight=SW[:5]), "sample_weight"),
])
def test_invalid_inputs_raise_like_numpy(xp, dispatch, y, prediction, options, message):
    with pytest.raises(ValueError, match=message) as numpy_error:
        binary_cross_entropy(y, prediction, **options)
    with pytest.raises(ValueError, match=message) as xp_error:
        binary_cross_entropy(_asarray(xp, y), _asarray(xp, prediction), **options)
    if "must" in message:  # the value checks: the very same message
        assert str(xp_error.value) == str(numpy_error.value)


def test_without_dispatch_inputs_are_converted(xp):
    # Dispatch off: arrays go through NumPy (check_array), and what comes back
    # is NumPy's, as for scikit-learn's metrics.
    loss = binary_cross_entropy(_asarray(xp, Y), _asarray(xp, P), reduction="none")
    assert isinstance(loss, np.ndarray)
    np.testing.assert_array_equal(loss, binary_cross_entropy(Y, P, reduction="none"))
    grad = bce_gradient(_asarray(xp, Y), _asarray(xp, P.astype(np.float32)))
    assert isinstance(grad, np.ndarray) and grad.dtype == np.float32
    np.testing.assert_array_equal(grad, bce_gradient(Y, P.astype(np.float32)))


def test_scorer_computes_in_the_namespace(xp, dispatch, monkeypatch):
    # LinearDiscriminantAnalysis follows the array API: fitted on xp arrays,
    # its predict_proba is one; the scorer's loss is computed on it.
    X = rng.normal(size=(N, 4))
    y = (X[:, 0] + rng.normal(size=N) > 0).astype(np.int64)
    reference = bce_scorer(LinearDiscriminantAnalysis().fit(X, y), X, y)
    calls = []
    evaluate = skbce._array_api.evaluate

    def spy(namespace, *args, **kwargs):
        calls.append(namespace)
        return evaluate(namespace, *args, **kwargs)

    monkeypatch.setattr(skbce._array_api, "evaluate", spy)
    X_xp, y_xp = _asarray(xp, X), _asarray(xp, y)
    model = LinearDiscriminantAnalysis().fit(X_xp, y_xp)
    score = bce_scorer(model, X_xp, y_xp)
    assert isinstance(score, float)
    assert score == pytest.approx(reference, rel=1e-10)
    assert len(calls) == 1 and not calls[0].__name__.endswith("numpy")


def test_dispatch_with_scipy_array_api_set_at_start():
    # The user's way: SCIPY_ARRAY_API=1 before anything imports SciPy, in a
    # fresh interpreter (from /, so that the installed skbce is imported).
    pytest.importorskip("array_api_strict")
    code = """
import numpy as np, sklearn, array_api_strict as xp
from skbce import bce_gradient, binary_cross_entropy
rng = np.random.default_rng(0)
y = (rng.random((30, 2)) > 0.5).astype(np.int64)
p = rng.uniform(0.05, 0.95, (30, 2)).astype(np.float32)
with sklearn.config_context(array_api_dispatch=True):
    loss = binary_cross_entropy(xp.asarray(y), xp.asarray(p), axis=0)
    grad = bce_gradient(xp.asarray(y), xp.asarray(p))
assert type(loss).__module__.startswith("array_api_strict"), type(loss)
assert loss.dtype == xp.float32 and grad.dtype == xp.float32
np.testing.assert_allclose(np.asarray(loss), binary_cross_entropy(y, p, axis=0), rtol=2e-6)
np.testing.assert_allclose(np.asarray(grad), bce_gradient(y, p), rtol=2e-6)
print("ok")
"""
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd="/", env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    if "SciPy must be" in result.stderr:  # scikit-learn's own check: SciPy too old
        pytest.skip("scikit-learn's array API dispatch needs SciPy >= 1.14")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
