"""Elementwise accuracy of the loss kernels, in units in the last place (ulps).

Goal: every elementwise loss and gradient within 4 ulps, in its own
precision, of the exactly rounded value -- probabilities anywhere in
[eps, 1 - eps], hard and soft targets, logits in +-1e4. The references are
independent of skbce: for float32 inputs the formula in float64 (numpy's
``log``/``log1p``, exact to far below a float32 ulp), for float64 inputs
mpmath at 40 digits.

The gradient with respect to a logit for a *soft* target,
``(1 - y) sigmoid(z) - w y sigmoid(-z)``, cancels where ``sigmoid(z)`` is close
to ``y`` (a close fit): in working precision it is exact only to a few ulps of
its larger term (169 ulps of the result were seen in float32, 26 in float64).
The kernels compute such entries in extra precision (float32: every soft
target's gradient in double; float64: the cancelling entries again in
double-double); the tests below include logits at a close fit. The bound
has a limit: the double-double ``exp`` is good to about 2^-85, so a float64
gradient stays within 4 ulps while the two terms differ in their leading
~30 bits; a fit closer than that (``y`` set to the rounded ``sigmoid(z)``
itself) is beyond it, and only a correctly rounded sigmoid would do.
"""

import math

import numpy as np
import pytest
from scipy.special import expit

from skbce import bce_loss_and_gradient, binary_cross_entropy

mpmath = pytest.importorskip("mpmath")
mpmath.mp.dps = 40

MAX_ULPS = 4


def ordered(values):
    """Floats as integers that count representable numbers from zero."""
    values = np.asarray(values)
    int_type = np.int64 if values.dtype == np.float64 else np.int32
    bits = values.view(int_type).astype(np.int64)
    return np.where(bits < 0, np.iinfo(int_type).min - bits, bits)


def ulps(computed, reference):
    return np.abs(ordered(computed) - ordered(reference.astype(computed.dtype)))


def probabilities(rng, dtype, n):
    """Small, near-one and plain probabilities, and the edges of [eps, 1 - eps]."""
    eps = np.finfo(dtype).eps
    small = np.exp(rng.uniform(np.log(eps), np.log(0.5), n))
    edges = [eps, 2 * eps, 1e-3, 0.5, np.nextafter(dtype(0.5), dtype(0)), 1 - 2 * eps, 1 - eps]
    p = np.concatenate([small, 1 - small, rng.uniform(eps, 1 - eps, n), edges])
    return np.clip(p.astype(dtype), eps, dtype(1 - eps))


def targets(rng, kind, n):
    if kind == "hard":
        return (rng.random(n) < 0.5).astype(np.float64)
    tiny = np.exp(rng.uniform(-30, 0, n // 4))
    soft = np.concatenate([rng.uniform(0, 1, n - 2 * (n // 4)), tiny, 1 - tiny])
    return rng.permutation(soft)


def logits(rng, dtype, n):
    magnitude = np.exp(rng.uniform(np.log(1e-8), np.log(1e4), n))
    z = magnitude * rng.choice([-1.0, 1.0], n)
    return np.concatenate([z, [0.0, 1e4, -1e4, 20.0, -20.0, 40.0, -40.0]]).astype(dtype)


def mp(values):
    return [mpmath.mpf(float(v)) for v in values]


def probability_references(y, p):
    """Exactly rounded loss and gradient (pos_weight 1) at each (y, p)."""
    if p.dtype == np.float32:
        y64, p64 = y.astype(np.float64), p.astype(np.float64)
        loss = -(y64 * np.log(p64) + (1 - y64) * np.log1p(-p64))
        # p - y is exact in float64 for float32 inputs: no cancellation.
        return loss, (p64 - y64) / (p64 * (1 - p64))
    loss, grad = [], []
    for a, b in zip(mp(y), mp(p)):
        loss.append(float(-(a * mpmath.log(b) + (1 - a) * mpmath.log1p(-b))))
        grad.append(float((1 - a) / (1 - b) - a / b))
    return np.array(loss), np.array(grad)


def logit_references(y, z, pos_weight=1.0):
    """Exactly rounded loss and gradient.

    For float32 the float64 formula: where its two gradient terms cancel it
    keeps 2^-52 of the terms, exact for float32 while they differ in 26 bits
    (the close fits below differ in at most ~10).
    """
    if z.dtype == np.float32:
        y64, z64 = y.astype(np.float64), z.astype(np.float64)
        loss = pos_weight * y64 * np.logaddexp(0, -z64) + (1 - y64) * np.logaddexp(0, z64)
        return loss, (1 - y64) * expit(z64) - pos_weight * y64 * expit(-z64)
    loss, grad = [], []
    w = mpmath.mpf(pos_weight)
    for a, b in zip(mp(y), mp(z)):
        loss.append(float(w * a * mpmath.log1p(mpmath.exp(-b)) + (1 - a) * mpmath.log1p(mpmath.exp(b))))
        grad.append(float((1 - a) / (1 + mpmath.exp(-b)) - w * a / (1 + mpmath.exp(b))))
    return np.array(loss), np.array(grad)


def close_fit_logits(rng, y, dtype, pos_weight=1.0, scale=1e-3):
    """Logits near the gradient's zero, sigmoid(z) = w y / (1 - y + w y)."""
    y64 = np.clip(y.astype(np.float64), 1e-30, 1 - 1e-16)
    zero = np.log(pos_weight * y64) - np.log1p(-y64)
    return (zero + rng.normal(scale=scale, size=y.size)).astype(dtype)


def evaluate(y, prediction, layout, **options):
    """Elementwise loss and gradient through the flat or the rows loop."""
    if layout == "rows":
        # Unit sample and label weights take the per-row loop (w = 1 exactly).
        shape = (len(y) // 4, 4)
        y, prediction = y[: shape[0] * 4].reshape(shape), prediction[: shape[0] * 4].reshape(shape)
        options.update(sample_weight=np.ones(shape[0]), label_weight=np.ones(shape[1]))
    loss, grad = bce_loss_and_gradient(y, prediction, reduction="none", **options)
    return y.reshape(-1), prediction.reshape(-1), loss.reshape(-1), grad.reshape(-1)


def sample_size(dtype):
    return 2000 if dtype == np.float32 else 200  # mpmath is slow


@pytest.mark.parametrize("layout", ["flat", "rows"])
@pytest.mark.parametrize("kind", ["hard", "soft", "int8"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probability_loss_and_gradient_within_4_ulps(dtype, kind, layout):
    rng = np.random.default_rng(0)
    p = probabilities(rng, dtype, sample_size(dtype))
    y = targets(rng, "soft" if kind == "soft" else "hard", p.size)
    y = y.astype(np.int8 if kind == "int8" else dtype)
    y, p, loss, grad = evaluate(y, p, layout)
    assert loss.dtype == grad.dtype == dtype
    want_loss, want_grad = probability_references(y, p)
    assert ulps(loss, want_loss).max() <= MAX_ULPS
    assert ulps(grad, want_grad).max() <= MAX_ULPS
    # The loss alone (no gradient output) takes the same point functions.
    alone = binary_cross_entropy(y, p, reduction="none")
    assert ulps(alone, want_loss).max() <= MAX_ULPS


@pytest.mark.parametrize("layout", ["flat", "rows"])
@pytest.mark.parametrize("kind", ["hard", "soft", "soft at a close fit"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logit_loss_and_gradient_within_4_ulps(dtype, kind, layout):
    rng = np.random.default_rng(1)
    z = logits(rng, dtype, sample_size(dtype))
    y = targets(rng, kind.split()[0], z.size).astype(dtype)
    if kind == "soft at a close fit":
        z = close_fit_logits(rng, y, dtype)
    y, z, loss, grad = evaluate(y, z, layout, from_logits=True)
    want_loss, want_grad = logit_references(y, z)
    assert ulps(loss, want_loss).max() <= MAX_ULPS
    assert ulps(grad, want_grad).max() <= MAX_ULPS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logit_gradient_with_pos_weight_at_a_close_fit(dtype):
    # With pos_weight w the terms cancel at sigmoid(z) = w y / (1 - y + w y);
    # a mix of cancelling and plain entries, so that the float64 kernel packs
    # the cancelling ones.
    rng = np.random.default_rng(3)
    n = sample_size(dtype)
    y = targets(rng, "soft", n).astype(dtype)
    z = np.where(rng.random(n) < 0.1, close_fit_logits(rng, y, dtype, 2.5), logits(rng, dtype, n)[:n])
    loss, grad = bce_loss_and_gradient(y, z, from_logits=True, pos_weight=2.5, reduction="none")
    want_loss, want_grad = logit_references(y, z, pos_weight=2.5)
    assert ulps(loss, want_loss).max() <= MAX_ULPS
    assert ulps(grad, want_grad).max() <= MAX_ULPS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_gradient_of_blocks_with_and_without_soft_targets(dtype):
    # The solvers' call: the mean loss and its gradient, no elementwise
    # loss. The kernels work in blocks of 2048 entries and pick a block's
    # loop by its targets (float32: a block holding a soft target computes
    # its gradient in double). 4 blocks: all hard; all soft at a close fit;
    # hard with one soft target in the middle; soft at random logits. 2^13
    # entries, so the mean's 1/n scales every gradient exactly.
    rng = np.random.default_rng(4)
    block = 2048
    hard = targets(rng, "hard", 4 * block)
    soft = targets(rng, "soft", 4 * block)
    y = np.concatenate([hard[:block], soft[block:2 * block], hard[2 * block:3 * block],
                        soft[3 * block:]])
    y[2 * block + block // 2] = 0.3
    y = y.astype(dtype)
    z = logits(rng, dtype, 4 * block)[: 4 * block]
    z[block:2 * block] = close_fit_logits(rng, y[block:2 * block], dtype)
    mean_loss, grad = bce_loss_and_gradient(y, z, from_logits=True)
    want_loss, want_grad = logit_references(y, z)
    # Where the mean's gradient is subnormal (|z| near the end of the range)
    # it has fewer digits than 4 ulps can speak of; those are left out.
    normal = np.abs(want_grad) / y.size >= np.finfo(dtype).tiny
    assert normal.mean() > 0.9
    assert ulps(grad[normal] * dtype(y.size), want_grad[normal]).max() <= MAX_ULPS
    assert mean_loss == pytest.approx(want_loss.mean(), rel=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize(
    "dtype, p", [(np.float32, 1e-6), (np.float32, 3e-4), (np.float64, 1e-12), (np.float64, 1e-9)]
)
def test_complement_of_a_small_probability_keeps_its_digits(dtype, p):
    # y = 0: the loss is -log1p(-p); log(1 - p) rounds 1 - p first (float32
    # at p = 1e-6: relative error 1.3e-2; float64 at p = 1e-12: 2.2e-5).
    p = np.array([p, p], dtype=dtype)
    y = np.zeros(2, dtype=dtype)
    exact = -math.log1p(-float(p[0]))
    for y_true in (y, y.astype(np.int8)):
        loss = binary_cross_entropy(y_true, p, reduction="none")
        assert abs(float(loss[0]) - exact) <= 2 * np.spacing(dtype(exact))
        assert binary_cross_entropy(y_true, p) == pytest.approx(exact, rel=4 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_partial_sums_keep_the_mean_accurate(dtype):
    # Blocks of entries are summed in the working precision, blocks in
    # float64: the mean of a million entries stays within a few float32 ulps.
    rng = np.random.default_rng(2)
    y = rng.random((250_000, 4)).astype(dtype)
    p = rng.uniform(0.001, 0.999, size=y.shape).astype(dtype)
    elementwise = binary_cross_entropy(y, p, reduction="none").astype(np.float64)
    exact = math.fsum(elementwise.ravel()) / elementwise.size
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    assert binary_cross_entropy(y, p) == pytest.approx(exact, rel=tolerance)
    assert binary_cross_entropy(y, p, axis=0) == pytest.approx(
        elementwise.mean(axis=0), rel=tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_solver_derivatives_at_large_logits_keep_their_digits(dtype):
    # logistic_derivatives (the solvers' kernel) formed 1 - sigmoid(z): for
    # y = 1 and z = 40 the gradient was 0 instead of -exp(-40).
    from skbce._kernels import logistic_derivatives

    z = np.array([[5.0], [20.0], [40.0], [-40.0], [80.0]], dtype=dtype)
    y = np.array([[1], [1], [1], [0], [1]], dtype=np.uint8)
    loss = np.zeros(1)
    grad, hess = np.empty_like(z), np.empty_like(z)
    empty = np.empty(0, dtype=dtype)
    logistic_derivatives(y, z, empty, empty, 1.0, 0.0, 1.0, loss, grad, hess, 1)
    z64 = z.astype(np.float64).ravel()
    want_grad = np.where(y.ravel() == 1, -expit(-z64), expit(z64))
    want_hess = expit(z64) * expit(-z64)
    assert ulps(grad.ravel(), want_grad).max() <= MAX_ULPS
    assert ulps(hess.ravel(), want_hess).max() <= MAX_ULPS
