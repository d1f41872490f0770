"""Tests of the loss API against worked examples and independent references."""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose
from scipy.special import expit, log_expit

import skbce.metrics
from skbce import _kernels, bce_gradient, bce_loss_and_gradient, binary_cross_entropy


# ---------------------------------------------------------------------------
# Independent references: plain float64 numpy, written from the definition.
# ---------------------------------------------------------------------------

def reference_elementwise(y, p, *, pos_weight=1.0, eps=None, from_logits=False):
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if from_logits:
        # log(sigmoid(z)) and log(1 - sigmoid(z)) = log(sigmoid(-z)).
        return -(pos_weight * y * log_expit(p) + (1 - y) * log_expit(-p))
    eps = np.finfo(np.float64).eps if eps is None else eps
    p = np.clip(p, eps, 1 - eps)
    return -(pos_weight * y * np.log(p) + (1 - y) * np.log(1 - p))


def reference_bce(
    y,
    p,
    *,
    sample_weight=None,
    label_weight=None,
    pos_weight=1.0,
    label_smoothing=0.0,
    reduction="mean",
    axis=None,
    **kwargs,
):
    y = np.asarray(y, dtype=np.float64)
    y = y * (1 - label_smoothing) + label_smoothing / 2
    loss = reference_elementwise(y, p, pos_weight=pos_weight, **kwargs)
    y2 = y.reshape(len(y), -1)
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    lw = np.ones(y2.shape[1]) if label_weight is None else np.asarray(label_weight, float)
    w = (sw[:, None] * lw[None, :]).reshape(loss.shape)
    if reduction == "none":
        return w * loss
    if reduction == "sum":
        return np.sum(w * loss, axis=axis)
    return np.sum(w * loss, axis=axis) / np.sum(w, axis=axis)


def random_problem(rng, shape, soft=False, dtype=np.float64):
    y = rng.random(shape) if soft else (rng.random(shape) < 0.4).astype(float)
    p = rng.uniform(0.001, 0.999, size=shape)
    return y.astype(dtype), p.astype(dtype)


# ---------------------------------------------------------------------------
# Worked examples
# ---------------------------------------------------------------------------

def test_worked_example_natural_log():
    y, p = [1, 0, 1], [0.8, 0.3, 0.9]
    per_entry = binary_cross_entropy(y, p, reduction="none")
    assert_allclose(per_entry, [0.22314, 0.35667, 0.10536], atol=5e-6)
    assert binary_cross_entropy(y, p) == pytest.approx(0.22839, abs=5e-6)
    # A popular tutorial prints the base-10 values by mistake.
    assert per_entry[0] != pytest.approx(0.0969, abs=1e-3)
    assert per_entry[1] != pytest.approx(0.1549, abs=1e-3)


def test_half_target_half_probability_is_log_2():
    assert binary_cross_entropy([0.5], [0.5]) == pytest.approx(math.log(2), rel=1e-15)
    assert binary_cross_entropy([[0.5, 0.5]], [[0.5, 0.5]]) == pytest.approx(math.log(2))


def test_multilabel_example_differs_from_row_renormalisation():
    Y = [[1, 0, 1], [0, 1, 1]]
    P = [[0.8, 0.3, 0.9], [0.2, 0.6, 0.7]]
    assert binary_cross_entropy(Y, P) == pytest.approx(0.29597, abs=1e-5)
    assert_allclose(binary_cross_entropy(Y, P, axis=0), [0.22314, 0.43375, 0.23102], atol=1e-5)
    assert_allclose(binary_cross_entropy(Y, P, axis=1), [0.22839, 0.36355], atol=1e-5)


def test_exact_zero_and_one_probabilities_are_clipped_with_dtype_eps():
    eps64 = np.finfo(np.float64).eps
    assert binary_cross_entropy([1.0], [0.0]) == pytest.approx(-math.log(eps64))
    assert binary_cross_entropy([1.0], [1.0]) == pytest.approx(-math.log1p(-eps64), abs=1e-15)
    eps32 = float(np.finfo(np.float32).eps)
    loss32 = binary_cross_entropy(np.array([0.0], np.float32), np.array([1.0], np.float32))
    assert loss32 == pytest.approx(-math.log(eps32), rel=1e-6)
    assert binary_cross_entropy([1.0], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3))


# ---------------------------------------------------------------------------
# Agreement with the reference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (57,), (30_011,), (40, 1), (333, 7), (3, 250)])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probabilities_match_reference(shape, soft, reduction):
    rng = np.random.default_rng(sum(shape))
    y, p = random_problem(rng, shape, soft=soft)
    got = binary_cross_entropy(y, p, reduction=reduction)
    assert_allclose(got, reference_bce(y, p, reduction=reduction), rtol=1e-12)


@pytest.mark.parametrize("shape", [(57,), (30_011,), (333, 7)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_logits_match_scipy_reference(shape, reduction):
    rng = np.random.default_rng(7)
    y = rng.random(shape)
    z = rng.normal(scale=8, size=shape)
    got = binary_cross_entropy(y, z, from_logits=True, reduction=reduction)
    want = reference_bce(y, z, from_logits=True, reduction=reduction)
    assert_allclose(got, want, rtol=1e-12)
    # The same numbers through probabilities (expit), away from clipping;
    # the probability path loses digits in 1 - p when p is close to 1.
    z_mid = np.clip(z, -20, 20)
    assert_allclose(
        binary_cross_entropy(y, z_mid, from_logits=True, reduction=reduction),
        binary_cross_entropy(y, expit(z_mid), reduction=reduction),
        rtol=1e-7,
    )


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_weights_pos_weight_smoothing_and_axes(axis, reduction, from_logits):
    rng = np.random.default_rng(3)
    y, p = random_problem(rng, (200, 5), soft=True)
    if from_logits:
        p = rng.normal(scale=3, size=p.shape)
    options = dict(
        sample_weight=rng.uniform(0, 2, size=200),
        label_weight=[1.0, 0.5, 2.0, 0.25, 1.0],
        pos_weight=np.array([1.0, 3.0, 0.5, 2.0, 1.0]),
        label_smoothing=0.1,
    )
    got = binary_cross_entropy(
        y, p, from_logits=from_logits, reduction=reduction, axis=axis, **options
    )
    want = reference_bce(
        y, p, from_logits=from_logits, reduction=reduction, axis=axis, **options
    )
    assert_allclose(got, want, rtol=1e-11)


def test_mean_along_an_axis_ignores_the_weight_that_cancels():
    # The mean over the labels of one sample does not depend on that sample's
    # weight (nor the mean over samples of one label on that label's weight),
    # so a zero weight there gives the unweighted mean, not 0 / 0.
    rng = np.random.default_rng(2)
    y, p = random_problem(rng, (40, 3), soft=True)
    per_label = binary_cross_entropy(y, p, axis=0, label_weight=[1.0, 0.0, 2.0])
    assert_allclose(per_label, reference_bce(y, p, axis=0), rtol=1e-12)
    sw = np.ones(40)
    sw[5] = 0.0
    per_sample = binary_cross_entropy(y, p, axis=1, sample_weight=sw)
    assert_allclose(per_sample, reference_bce(y, p, axis=1), rtol=1e-12)
    assert np.all(np.isfinite(bce_gradient(y, p, axis=1, sample_weight=sw)))


def test_scalar_weights_on_one_label():
    rng = np.random.default_rng(4)
    y, p = random_problem(rng, (1000,))
    sw = rng.uniform(0, 3, size=1000)
    got = binary_cross_entropy(y, p, sample_weight=sw, pos_weight=2.5, label_weight=3.0)
    want = reference_bce(y, p, sample_weight=sw, pos_weight=2.5)
    assert_allclose(got, want, rtol=1e-12)


def test_sample_weight_equals_repetition():
    rng = np.random.default_rng(5)
    y, p = random_problem(rng, (50, 3), soft=True)
    counts = rng.integers(0, 4, size=50)
    counts[0] = 1
    weighted = binary_cross_entropy(y, p, sample_weight=counts)
    repeated = binary_cross_entropy(np.repeat(y, counts, 0), np.repeat(p, counts, 0))
    assert weighted == pytest.approx(repeated, rel=1e-12)


@pytest.mark.parametrize("from_logits", [False, True])
def test_float32_computes_in_float32_and_matches(from_logits):
    rng = np.random.default_rng(6)
    y, p = random_problem(rng, (5000, 4), dtype=np.float32)
    if from_logits:
        p = rng.normal(scale=4, size=p.shape).astype(np.float32)
    elementwise = binary_cross_entropy(y, p, from_logits=from_logits, reduction="none")
    assert elementwise.dtype == np.float32
    want = reference_bce(y, p, from_logits=from_logits, reduction="none")
    assert_allclose(elementwise, want, rtol=2e-5, atol=1e-6)
    mean = binary_cross_entropy(y, p, from_logits=from_logits)
    assert mean == pytest.approx(want.mean(), rel=1e-5)
    grad = bce_gradient(y, p, from_logits=from_logits)
    assert grad.dtype == np.float32
    # A float64 target keeps float64 math.
    assert binary_cross_entropy(
        y.astype(np.float64), p, reduction="none", from_logits=from_logits
    ).dtype == np.float64


def test_integer_and_bool_targets():
    p = np.array([0.2, 0.7, 0.9])
    want = reference_bce([0, 1, 1], p)
    for y in ([0, 1, 1], np.array([False, True, True]), np.array([0, 1, 1], np.int8)):
        assert binary_cross_entropy(y, p) == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("layout", ["strided", "fortran", "transposed", "negative_step"])
def test_non_contiguous_inputs(layout):
    rng = np.random.default_rng(8)
    y, p = random_problem(rng, (120, 10), soft=True)
    if layout == "strided":
        y_in, p_in = y[::3, ::2], p[::3, ::2]
    elif layout == "fortran":
        y_in, p_in = np.asfortranarray(y), np.asfortranarray(p)
    elif layout == "transposed":
        y_in, p_in = y.T, p.T
    else:
        y_in, p_in = y[::-1, ::-2], p[::-1, ::-2]
    y_ref, p_ref = np.array(y_in), np.array(p_in)
    for reduction in ("mean", "none"):
        assert_allclose(
            binary_cross_entropy(y_in, p_in, reduction=reduction),
            reference_bce(y_ref, p_ref, reduction=reduction),
            rtol=1e-12,
        )
    assert_allclose(bce_gradient(y_in, p_in), bce_gradient(y_ref, p_ref), rtol=1e-14)


# ---------------------------------------------------------------------------
# Prediction formats
# ---------------------------------------------------------------------------

def test_two_column_predictions_use_column_one():
    y = np.array([1, 0, 1, 1])
    p1 = np.array([0.9, 0.2, 0.6, 0.4])
    two = np.column_stack([1 - p1, p1])
    assert binary_cross_entropy(y, two) == pytest.approx(reference_bce(y, p1), rel=1e-14)
    grad = bce_gradient(y, two)
    assert grad.shape == (4, 2)
    assert_allclose(grad[:, 0], 0)
    assert_allclose(grad[:, 1], bce_gradient(y, p1))


def test_list_of_per_label_arrays():
    rng = np.random.default_rng(9)
    Y, P = random_problem(rng, (30, 3))
    as_list = [np.column_stack([1 - P[:, j], P[:, j]]) for j in range(3)]
    assert binary_cross_entropy(Y, as_list) == pytest.approx(reference_bce(Y, P), rel=1e-14)
    grad = bce_gradient(Y, as_list)
    assert isinstance(grad, list) and len(grad) == 3
    for j in range(3):
        assert grad[j].shape == (30, 2)
        assert_allclose(grad[j][:, 1], bce_gradient(Y, P)[:, j])
        assert_allclose(grad[j][:, 0], 0)


def test_list_with_single_column_points_to_scorer():
    with pytest.raises(ValueError, match=r"y_pred\[1\].*classes_"):
        binary_cross_entropy([[0, 1], [1, 1]], [np.full((2, 2), 0.5), np.ones((2, 1))])


# ---------------------------------------------------------------------------
# Symmetry and extreme logits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("from_logits", [False, True])
def test_symmetry(from_logits):
    rng = np.random.default_rng(10)
    y, p = random_problem(rng, (400, 3), soft=True)
    if from_logits:
        z = rng.normal(scale=5, size=p.shape)
        assert binary_cross_entropy(y, z, from_logits=True) == pytest.approx(
            binary_cross_entropy(1 - y, -z, from_logits=True), rel=1e-13
        )
    else:
        assert binary_cross_entropy(y, p) == pytest.approx(
            binary_cross_entropy(1 - y, 1 - p), rel=1e-13
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite_and_exact(dtype):
    y = np.array([1, 0, 0, 1, 0.5], dtype=dtype)
    z = np.array([1e4, -1e4, 1e4, -1e4, 1e4], dtype=dtype)
    loss = binary_cross_entropy(y, z, from_logits=True, reduction="none")
    assert np.all(np.isfinite(loss))
    assert_allclose(loss, [0.0, 0.0, 1e4, 1e4, 5e3], rtol=1e-7)
    assert loss[0] == 0 and loss[1] == 0
    grad = bce_gradient(y, z, from_logits=True, reduction="sum")
    assert_allclose(grad, [0.0, 0.0, 1.0, -1.0, 0.5], atol=0)
    big = np.finfo(dtype).max / 4
    assert np.isfinite(binary_cross_entropy([1, 0], np.array([-big, big], dtype), from_logits=True))


def test_moderate_logit_keeps_relative_accuracy():
    # y = 1, z = 30: the loss is log1p(exp(-30)) ~ 9.36e-14, not rounded to 0.
    loss = binary_cross_entropy([1.0], [30.0], from_logits=True)
    assert loss == pytest.approx(math.log1p(math.exp(-30)), rel=1e-12)


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------

def numerical_gradient(function, x, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (function(up) - function(down)) / (2 * step)
    return grad


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_gradient_matches_finite_differences(from_logits, reduction, axis):
    rng = np.random.default_rng(11)
    y, p = random_problem(rng, (6, 3), soft=True)
    p = np.clip(p, 0.05, 0.95)
    if from_logits:
        p = rng.normal(scale=2, size=p.shape)
    options = dict(
        from_logits=from_logits,
        reduction=reduction,
        axis=axis,
        sample_weight=rng.uniform(0.5, 2, size=6),
        label_weight=[1.0, 2.0, 0.5],
        pos_weight=[2.0, 1.0, 0.5],
        label_smoothing=0.05,
    )

    def total(x):
        return np.sum(binary_cross_entropy(y, x, **options))

    grad = bce_gradient(y, p, **options)
    assert_allclose(grad, numerical_gradient(total, p), rtol=1e-6, atol=1e-8)
    loss, grad_fused = bce_loss_and_gradient(y, p, **options)
    assert_allclose(loss, binary_cross_entropy(y, p, **options), rtol=1e-14)
    assert_allclose(grad_fused, grad, rtol=1e-14)


def test_logit_gradient_is_sigmoid_minus_target():
    rng = np.random.default_rng(12)
    y = rng.random((100, 4))
    z = rng.normal(scale=6, size=(100, 4))
    grad = bce_gradient(y, z, from_logits=True, reduction="sum")
    assert_allclose(grad, expit(z) - y, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------

unit = st.floats(0, 1, allow_nan=False)
shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=12)


def test_tiny_probability_keeps_its_digits():
    # The one-log path for hard targets must not lose a small p to
    # cancellation (e.g. by computing it as 1 - (1 - p)).
    for p in (1.1920929e-07, 1e-12, 1e-15):
        assert binary_cross_entropy([1.0], [p]) == pytest.approx(-math.log(p), rel=1e-14)
        assert binary_cross_entropy([0.0], [p]) == pytest.approx(-math.log1p(-p), rel=1e-12)
        assert binary_cross_entropy(np.ones(999), np.full(999, p)) == pytest.approx(
            -math.log(p), rel=1e-14
        )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), shape=shapes)
def test_property_probabilities(data, shape):
    y = data.draw(hnp.arrays(np.float64, shape, elements=unit))
    p = data.draw(hnp.arrays(np.float64, shape, elements=unit))
    loss = binary_cross_entropy(y, p, reduction="none")
    assert np.all(loss >= 0) and np.all(np.isfinite(loss))
    assert_allclose(loss, reference_bce(y, p, reduction="none"), rtol=1e-12, atol=1e-15)
    # Symmetry, on a y and a p whose complements are exact: 1 - p itself
    # rounds, and for a tiny p that rounding alone changes log(p) in the 4th
    # digit (as it changes a tiny y's weight in the 11th).
    y, p = 1 - (1 - y), 1 - (1 - p)
    assert binary_cross_entropy(y, p) == pytest.approx(
        binary_cross_entropy(1 - y, 1 - p), rel=1e-12, abs=1e-15
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), shape=shapes)
def test_property_logits(data, shape):
    y = data.draw(hnp.arrays(np.float64, shape, elements=unit))
    z = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e6, 1e6)))
    loss, grad = bce_loss_and_gradient(y, z, from_logits=True, reduction="none")
    assert np.all(loss >= 0) and np.all(np.isfinite(loss))
    assert_allclose(
        loss, reference_bce(y, z, from_logits=True, reduction="none"), rtol=1e-12, atol=1e-15
    )
    assert np.all(np.abs(grad) <= 1)


# ---------------------------------------------------------------------------
# Bad input: a ValueError naming the argument, never a crash
# ---------------------------------------------------------------------------

GOOD_Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
GOOD_P = np.array([[0.9, 0.2], [0.3, 0.6], [0.5, 0.5]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y_true=[[np.nan, 0], [0, 1], [1, 1]]), "y_true"),
        (dict(y_true=[[np.inf, 0], [0, 1], [1, 1]]), "y_true"),
        (dict(y_true=[[1.5, 0], [0, 1], [1, 1]]), r"y_true.*\[0, 1\].*1\.5.*\(0, 0\)"),
        (dict(y_true=[[-0.1, 0], [0, 1], [1, 1]]), "y_true"),
        (dict(y_pred=[[np.nan, 0.2], [0.3, 0.6], [0.5, 0.5]]), "y_pred"),
        (dict(y_pred=[[-np.inf, 0.2], [0.3, 0.6], [0.5, 0.5]]), "y_pred"),
        (dict(y_pred=[[1.1, 0.2], [0.3, 0.6], [0.5, 0.5]]), r"y_pred.*1\.1"),
        (dict(y_pred=[[-0.2, 0.2], [0.3, 0.6], [0.5, 0.5]]), "y_pred"),
        (dict(y_pred=[[0.9, 0.2], [0.3, 0.6]]), "inconsistent shapes"),
        (dict(y_pred=[[0.9], [0.3], [0.5]]), "inconsistent shapes"),
        (dict(y_true=[], y_pred=[]), "y_true is empty"),
        (dict(y_true=np.zeros((3, 0)), y_pred=np.zeros((3, 0))), "y_true is empty"),
        (dict(y_true=np.zeros((3, 2, 1))), "y_true must be 1-D.*2-D"),
        (dict(y_pred=np.full((3, 2, 1), 0.5)), "y_pred must be 1-D.*2-D"),
        (dict(y_true=np.array([["a", "b"]] * 3)), "y_true"),
        (dict(y_pred=np.array([[object(), 0.2]] * 3, dtype=object)), "y_pred"),
        (dict(y_true=0.5, y_pred=0.5), "y_true"),
        (dict(y_true=np.array(0.5), y_pred=np.array(0.5)), "y_true"),
        (dict(y_pred=np.full((3, 2), 0.5) + 0j), "y_pred"),
        (dict(sample_weight=[1.0, -1.0, 1.0]), "sample_weight"),
        (dict(sample_weight=[0.0, 0.0, 0.0]), "sample_weight"),
        (dict(sample_weight=[1.0, 1.0]), "sample_weight"),
        (dict(sample_weight=[1.0, np.nan, 1.0]), "sample_weight"),
        (dict(label_weight=[1.0, 1.0, 1.0]), "label_weight"),
        (dict(label_weight=[0.0, 0.0]), "label_weight"),
        (dict(label_weight=[1.0, -2.0]), "label_weight"),
        (dict(pos_weight=[1.0, np.inf]), "pos_weight"),
        (dict(pos_weight=-1.0), "pos_weight"),
        (dict(pos_weight=[1.0]), "pos_weight"),
        (dict(reduction="avg"), "reduction"),
        (dict(axis=2), "axis"),
        (dict(reduction="none", axis=0), "axis"),
        (dict(label_smoothing=1.5), "label_smoothing"),
        (dict(eps=0.7), "eps"),
        (dict(from_logits=True, y_pred=[[np.inf, 0], [0, 1], [1, 1]]), "y_pred.*finite"),
    ],
)
@pytest.mark.parametrize("function", [binary_cross_entropy, bce_gradient, bce_loss_and_gradient])
def test_bad_input_is_a_value_error_naming_the_argument(function, kwargs, match):
    arguments = dict(y_true=GOOD_Y, y_pred=GOOD_P) | kwargs
    with pytest.raises(ValueError, match=match):
        function(**arguments)


@pytest.mark.parametrize(
    "dtype", [bool, np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64,
              ">f8", ">i8"],
)
@pytest.mark.parametrize("layout", ["1-D", "2-D", "strided", "Fortran"])
def test_ndarray_targets_and_lists_give_the_same_loss(dtype, layout):
    # Real-valued native ndarrays skip check_array (it would return them
    # unchanged); everything else goes through it. Both roads must agree.
    rng = np.random.default_rng(0)
    y = (rng.random((40, 6)) < 0.4).astype(dtype)
    p = rng.uniform(0.01, 0.99, (40, 6))
    if layout == "1-D":
        y, p = y[:, 0], p[:, 0]
    elif layout == "strided":
        y, p = y[::2, ::3], p[::2, ::3]
    elif layout == "Fortran":
        y, p = np.asfortranarray(y), np.asfortranarray(p)
    want = binary_cross_entropy(y.astype(np.float64).tolist(), p.tolist())
    assert binary_cross_entropy(y, p) == pytest.approx(want, rel=1e-12)
    loss, grad = bce_loss_and_gradient(y, p)
    assert loss == pytest.approx(want, rel=1e-12)
    assert grad.shape == p.shape


def test_large_bad_input_reports_first_offender():
    p = np.full((100_000, 3), 0.5)
    p[70_001, 2] = np.nan
    with pytest.raises(ValueError, match=r"y_pred.*nan.*\(70001, 2\)"):
        binary_cross_entropy(np.ones_like(p), p)


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------

def test_same_result_from_eight_python_threads():
    rng = np.random.default_rng(13)
    y, p = random_problem(rng, (200_000, 5), soft=True)
    z = np.log(p / (1 - p))
    serial_loss = binary_cross_entropy(y, p)
    serial_fused = bce_loss_and_gradient(y, z, from_logits=True)

    def work(_):
        return binary_cross_entropy(y, p), bce_loss_and_gradient(y, z, from_logits=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    for loss, (fused_loss, fused_grad) in results:
        assert loss == serial_loss
        assert fused_loss == serial_fused[0]
        np.testing.assert_array_equal(fused_grad, serial_fused[1])


def test_threadpoolctl_limit_is_honoured():
    from threadpoolctl import threadpool_limits

    from skbce._kernels import max_threads

    rng = np.random.default_rng(14)
    y, p = random_problem(rng, (300_000,))
    default = binary_cross_entropy(y, p)
    with threadpool_limits(limits=1, user_api="openmp"):
        assert max_threads() == 1
        assert binary_cross_entropy(y, p) == pytest.approx(default, rel=1e-13)


# ---------------------------------------------------------------------------
# Validation inside the kernel pass (bit tests) and hard-target speculation
# ---------------------------------------------------------------------------

# Odd sizes: more than one thread chunk (see test_large_shape_is_split), and
# a vector-loop tail.
LARGE_SHAPE = (20_011, 3)


def test_large_shape_is_split_between_threads():
    from skbce._kernels import max_threads
    from skbce.metrics import _n_threads

    assert _n_threads(LARGE_SHAPE[0] * LARGE_SHAPE[1]) == min(2, max_threads())


def _large_problem(dtype, soft, from_logits):
    rng = np.random.default_rng(15)
    y = rng.random(LARGE_SHAPE) if soft else (rng.random(LARGE_SHAPE) < 0.4) * 1.0
    if from_logits:
        p = rng.normal(scale=4, size=LARGE_SHAPE)
    else:
        p = rng.uniform(0.001, 0.999, size=LARGE_SHAPE)
    return y.astype(dtype), p.astype(dtype)


def _bad_values(dtype, argument, from_logits):
    values = [np.nan, -np.nan, np.inf, -np.inf]
    if argument == "y_true" or not from_logits:
        # Just outside [0, 1], on both sides.
        values += [np.nextafter(dtype(1), dtype(2)), -np.finfo(dtype).smallest_subnormal, 1.5]
    return [dtype(v) for v in values]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("argument", ["y_true", "y_pred"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(
    "position", [(0, 0), (LARGE_SHAPE[0] - 1, 2), (LARGE_SHAPE[0] // 2 + 1, 1)]
)
def test_invalid_value_anywhere_in_a_large_array_is_reported(
    dtype, from_logits, argument, soft, position
):
    y, p = _large_problem(dtype, soft, from_logits)
    what = "finite logits" if from_logits and argument == "y_pred" else r"\[0, 1\]"
    for bad in _bad_values(dtype, argument, from_logits):
        y_bad, p_bad = y.copy(), p.copy()
        (y_bad if argument == "y_true" else p_bad)[position] = bad
        match = rf"{argument} must .*{what}.*at index \({position[0]}, {position[1]}\)"
        for function in (binary_cross_entropy, bce_loss_and_gradient):
            with pytest.raises(ValueError, match=match):
                function(y_bad, p_bad, from_logits=from_logits)
        # The weighted (rows) loop checks too.
        with pytest.raises(ValueError, match=match):
            binary_cross_entropy(
                y_bad, p_bad, from_logits=from_logits,
                sample_weight=np.ones(LARGE_SHAPE[0]), pos_weight=[1.0, 2.0, 0.5],
            )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_offender_is_reported_when_both_arguments_are_invalid(dtype):
    y, p = _large_problem(dtype, False, False)
    y[19_000, 1] = 2.0
    p[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"y_true.*\(19000, 1\)"):
        binary_cross_entropy(y, p)
    y[19_000, 1] = 1.0
    with pytest.raises(ValueError, match=r"y_pred.*nan.*\(5, 0\)"):
        binary_cross_entropy(y, p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("from_logits", [False, True])
def test_boundary_values_are_accepted(dtype, from_logits):
    # -0.0 is a valid 0 for targets and probabilities (its bits are not those
    # of +0.0); 1.0, subnormals and, for logits, the largest floats are valid.
    y, p = _large_problem(dtype, False, from_logits)
    tiny = np.finfo(dtype).smallest_subnormal
    y[0, :] = [-0.0, 1.0, 0.0]
    y[-1, :] = [1.0, -0.0, tiny]
    if from_logits:
        big = np.finfo(dtype).max
        p[0, :] = [-0.0, big, -big]
        p[-1, :] = [tiny, -tiny, 0.0]
    else:
        p[0, :] = [-0.0, 1.0, 0.0]
        p[-1, :] = [tiny, -0.0, 1.0]
    loss = binary_cross_entropy(y, p, from_logits=from_logits)
    assert np.isfinite(loss)
    # -0.0 behaves as +0.0.
    same = binary_cross_entropy(y + dtype(0), p + dtype(0), from_logits=from_logits)
    assert loss == same


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64])
def test_integer_targets_outside_zero_one_are_reported(dtype):
    y = np.ones(LARGE_SHAPE, dtype=dtype)
    p = np.full(LARGE_SHAPE, 0.5)
    y[-1, 2] = 2
    with pytest.raises(ValueError, match=r"y_true.*2\.0.*\(20010, 2\)"):
        binary_cross_entropy(y, p)
    if np.issubdtype(dtype, np.signedinteger):
        y[-1, 2] = -1
        with pytest.raises(ValueError, match=r"y_true.*-1\.0.*\(20010, 2\)"):
            binary_cross_entropy(y, p)
    y[-1, 2] = 0
    y_bool = y.astype(bool)
    # Equal up to the rounding of the sum: each target type has its own
    # vector loop, and so its own order of additions.
    expected = binary_cross_entropy(y.astype(np.float64), p)
    assert binary_cross_entropy(y, p) == pytest.approx(expected, rel=1e-14)
    assert binary_cross_entropy(y_bool, p) == pytest.approx(expected, rel=1e-14)


def test_label_smoothing_does_not_hide_an_invalid_target():
    # With label_smoothing=1 every target becomes 0.5: -0.5 must be caught
    # before smoothing.
    y = np.array([1.0, -0.5, 0.0])
    with pytest.raises(ValueError, match=r"y_true.*-0\.5.*index 1"):
        binary_cross_entropy(y, [0.5, 0.5, 0.5], label_smoothing=1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("first_soft", [0, 255, 256, 5_000, LARGE_SHAPE[0] * 3 - 1])
def test_speculation_gives_the_two_log_result(dtype, first_soft):
    # Hard targets with soft ones from entry ``first_soft`` on: whether the
    # first guess (from the leading targets) is right or not, the result is
    # the two-log pass, bit for bit.
    from skbce._kernels import bce_pass

    y, p = _large_problem(dtype, False, False)
    flat = y.reshape(-1)
    rng = np.random.default_rng(16)
    soft_at = np.arange(first_soft, flat.size, 7)
    flat[soft_at] = rng.uniform(0.01, 0.99, size=soft_at.size)
    empty, empty2 = np.empty(0, dtype), np.empty((0, 0), dtype)
    eps = float(np.finfo(dtype).eps)
    found = np.zeros(2, dtype=np.intp)
    arguments = (y, p, empty, empty, empty, 1.0, False, eps, empty2, empty2, 1.0, 2)
    two_log = bce_pass(*arguments, False, found)
    one_log = bce_pass(*arguments, True, found)
    assert list(found) == [0, 1]
    assert one_log != two_log  # the one-log pass is wrong for soft targets
    assert binary_cross_entropy(y, p, reduction="sum") == two_log
    elementwise, grad = bce_loss_and_gradient(y, p, reduction="none")
    assert_allclose(
        elementwise, reference_bce(y, p, reduction="none", eps=eps),
        rtol=1e-12 if dtype == np.float64 else 2e-5, atol=1e-6,
    )
    # The fused pass and the gradient alone run different loops, which gcc
    # may vectorise apart under fast-math (the baseline build): equal to a
    # few ulps, not bit for bit.
    assert_allclose(grad, bce_gradient(y, p, reduction="none"),
                    rtol=4 * float(np.finfo(dtype).eps))


def test_all_hard_targets_take_the_one_log_pass():
    from skbce._kernels import bce_pass

    y, p = _large_problem(np.float64, False, False)
    empty, empty2 = np.empty(0), np.empty((0, 0))
    eps = float(np.finfo(np.float64).eps)
    found = np.ones(2, dtype=np.intp)
    one_log = bce_pass(
        y, p, empty, empty, empty, 1.0, False, eps, empty2, empty2, 1.0, 2, True, found
    )
    assert list(found) == [0, 0]
    assert binary_cross_entropy(y, p, reduction="sum") == one_log


def test_bce_pass_found_flags_and_positional_compatibility():
    from skbce._kernels import bce_pass

    y = np.array([[1.0, 0.0], [0.5, 1.0]])
    p = np.array([[0.9, 0.2], [0.3, 0.6]])
    empty, empty2 = np.empty(0), np.empty((0, 0))
    plain = bce_pass(y, p, empty, empty, empty, 1.0, False, 1e-7, empty2, empty2, 1.0, 1)
    assert isinstance(plain, float)
    found = np.full(2, -1, dtype=np.intp)
    checked = bce_pass(
        y, p, empty, empty, empty, 1.0, False, 1e-7, empty2, empty2, 1.0, 1, False, found
    )
    # Equal up to rounding only: the kernels are built with -ffast-math, and
    # gcc may vectorise (reassociate) the checked and unchecked loops apart.
    assert checked == pytest.approx(plain, rel=1e-12) and list(found) == [0, 1]
    p[1, 1] = np.nan
    bce_pass(y, p, empty, empty, empty, 1.0, False, 1e-7, empty2, empty2, 1.0, 1, True, found)
    assert found[0] == 1
    bce_pass(y, p, empty, empty, empty, 1.0, True, 0.0, empty2, empty2, 1.0, 1, found=found)
    assert list(found) == [1, 0]
    with pytest.raises(ValueError, match="found"):
        bce_pass(y, p, empty, empty, empty, 1.0, False, 1e-7, empty2, empty2, 1.0, 1,
                 found=np.zeros(3, dtype=np.intp))


def test_import_from_a_source_tree_says_what_to_do(tmp_path):
    # A copy of the package's Python files and a pyproject.toml: a source
    # tree, without compiled extensions. -S keeps an editable install's
    # import hook (a .pth file) out; the dependencies come from PYTHONPATH.
    import os
    import shutil
    import subprocess
    import sys
    import sysconfig

    import skbce

    package = os.path.dirname(skbce.__file__)
    shutil.copytree(package, tmp_path / "skbce", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'skbce'\n")
    paths = sysconfig.get_paths()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), paths["purelib"], paths["platlib"]])}
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import skbce"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: skbce's compiled kernels (skbce._")
    assert "source tree" in message and "pip install ." in message
    assert "outside that directory" in message


def test_readme_describes_log_loss_and_its_numbers_are_true():
    import re
    from pathlib import Path

    from sklearn.metrics import log_loss

    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("no README.md beside the tests")
    text = " ".join(readme.read_text().split())
    # What log_loss does with an indicator matrix (it once renormalised rows).
    assert "renormalis" not in text
    assert "sums only the `y*log(p)` terms of the row" in text
    quick_start = re.search(
        r"binary_cross_entropy\(Y, P\) # ([0-9.]+) \(sklearn's log_loss: ([0-9.]+), and a warning\)",
        text,
    )
    bce_text, log_loss_text = quick_start.groups()
    Y = np.array([[1, 0, 1], [0, 1, 1]])
    P = np.array([[0.8, 0.3, 0.9], [0.2, 0.6, 0.7]])
    assert f"{binary_cross_entropy(Y, P):.4f}" == bce_text
    with pytest.warns(UserWarning, match="do not sum to one"):
        sklearn_value = log_loss(Y, P)
    assert f"{sklearn_value:.4f}" == log_loss_text
    assert sklearn_value == pytest.approx(-np.mean(np.sum(Y * np.log(P), axis=1)))


# ---------------------------------------------------------------------------
# Every kernel variant this CPU runs, with every output and weighting
# ---------------------------------------------------------------------------

def reference_gradient(y, p, w, pos_weight, from_logits):
    """d (w * loss) / d prediction, elementwise, in float64, and its two terms.

    The terms' size bounds the rounding error of their difference.
    """
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if from_logits:
        up, down = w * (1 - y) * expit(p), w * pos_weight * y * expit(-p)
    else:
        up, down = w * (1 - y) / (1 - p), w * pos_weight * y / p
    return up - down, np.abs(up) + np.abs(down)


def assert_gradient_close(got, want, size, rtol, err_msg):
    assert np.all(np.abs(got - want) <= rtol * size), err_msg


@pytest.fixture(params=_kernels.supported_variants())
def kernel_variant(request, monkeypatch):
    """The loss API on one compiled variant, loaded into this process.

    Only variants this CPU supports: the others could die with SIGILL.
    """
    bce_pass = _kernels.load_variant(request.param)["_bce"].bce_pass
    monkeypatch.setattr(skbce.metrics, "bce_pass", bce_pass)
    return request.param


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("weighting", ["none", "sample", "label", "pos", "all"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("targets", ["hard", "soft", np.int8, np.uint8, np.int64, bool])
def test_every_reduction_and_weighting_on_every_variant(
    kernel_variant, from_logits, weighting, dtype, targets
):
    # Each combination takes its own loop in the kernel (flat or per-row,
    # with or without weights, with or without elementwise outputs): each
    # must read and write only the arrays it was given. Lengths that are not
    # a multiple of any vector width leave remainders for the masked tails.
    rng = np.random.default_rng(21)
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    for shape in [(37,), (29, 3), (2, 2053)]:
        y, p = random_problem(rng, shape, soft=targets == "soft")
        if targets not in ("hard", "soft"):
            y = y.astype(targets)
        else:
            y = y.astype(dtype)
        z = rng.normal(scale=3.0, size=shape)
        prediction = (z if from_logits else p).astype(dtype)
        n_labels = 1 if len(shape) == 1 else shape[1]
        options = {}
        if weighting in ("sample", "all"):
            options["sample_weight"] = rng.uniform(0.5, 2.0, shape[0])
        if weighting in ("label", "all"):
            options["label_weight"] = rng.uniform(0.5, 2.0, n_labels)
        if weighting in ("pos", "all"):
            options["pos_weight"] = rng.uniform(0.5, 3.0, n_labels)
        sw = options.get("sample_weight", np.ones(shape[0]))
        lw = options.get("label_weight", np.ones(n_labels))
        pw = options.get("pos_weight", np.ones(n_labels))
        w = (sw[:, None] * lw[None, :]).reshape(shape)
        pw = np.broadcast_to(pw, (shape[0], n_labels)).reshape(shape)
        exact = prediction.astype(np.float64)
        loss = w * reference_elementwise(y, exact, pos_weight=pw, from_logits=from_logits)
        gradient, size = reference_gradient(y, exact, w, pw, from_logits)
        for reduction, scale in [("none", 1.0), ("sum", 1.0), ("mean", 1 / w.sum())]:
            want = loss if reduction == "none" else loss.sum() * scale
            got = binary_cross_entropy(
                y, prediction, from_logits=from_logits, reduction=reduction, **options
            )
            assert_allclose(got, want, rtol=rtol, err_msg=f"{shape} {reduction}")
            got_loss, got_gradient = bce_loss_and_gradient(
                y, prediction, from_logits=from_logits, reduction=reduction, **options
            )
            assert_allclose(got_loss, want, rtol=rtol, err_msg=f"{shape} {reduction}")
            assert_gradient_close(got_gradient, gradient * scale, size * scale, rtol,
                                  f"{shape} {reduction}")
            assert_gradient_close(
                bce_gradient(y, prediction, from_logits=from_logits, reduction=reduction,
                             **options),
                gradient * scale, size * scale, rtol, f"{shape} {reduction}",
            )


@pytest.mark.parametrize("value", [2**32, 2**32 + 1, -(2**32), 2**62 + 1])
def test_int64_targets_beyond_int32_are_reported(kernel_variant, value):
    # The kernel converts int64 targets through int32 (AVX2 has no vector
    # int64 -> float conversion): 2**32 + 1 wraps to 1 there, and must still
    # be reported as outside [0, 1].
    y = np.zeros((50, 41), dtype=np.int64)
    y[31, 7] = value
    p = np.full(y.shape, 0.5)
    for from_logits in (False, True):
        with pytest.raises(ValueError, match=r"y_true must lie in \[0, 1\].*\(31, 7\)"):
            binary_cross_entropy(y, p, from_logits=from_logits)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unwanted_output_scratch_leaves_wanted_outputs_exact(kernel_variant, from_logits, dtype):
    # The gradient, not wanted here, goes to a scratch row per thread, which
    # nothing reads back: what this checks is that those writes stay out of
    # the wanted outputs. With more threads than cores, the elementwise
    # losses (per-row weights: the rows loop; per-entry weights: the flat
    # loop) equal a one-thread pass's exactly.
    rng = np.random.default_rng(5)
    y, p = random_problem(rng, (5_003, 7), soft=True, dtype=dtype)
    prediction = rng.normal(size=y.shape).astype(dtype) if from_logits else p
    bce_pass = skbce.metrics.bce_pass
    empty, empty2 = np.empty(0, dtype), np.empty((0, 0), dtype)
    sample_weight = rng.uniform(0.5, 2.0, y.shape[0]).astype(dtype)
    label_weight = rng.uniform(0.5, 2.0, y.shape[1]).astype(dtype)
    for weights in [(sample_weight, label_weight, empty), (sample_weight, empty, empty)]:
        flat = (y.reshape(-1, 1), prediction.reshape(-1, 1))
        arrays = (y, prediction) if len(weights[1]) else flat
        if not len(weights[1]):
            weights = (np.repeat(sample_weight, y.shape[1]), empty, empty)
        results = []
        for n_threads in (1, 4):
            loss = np.empty(arrays[0].shape, dtype)
            total = bce_pass(*arrays, *weights, 1.0, from_logits, 1e-7, loss, empty2, 1.0,
                             n_threads)
            results.append((total, loss))
        assert_allclose(results[1][1], results[0][1], rtol=0, atol=0)
        assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
