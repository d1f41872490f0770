"""The metric on array-API arrays (torch tensors, array-api-strict, CuPy...).

With ``sklearn.set_config(array_api_dispatch=True)``, scikit-learn's metrics
compute on the arrays they are given, in their namespace, device and dtype;
:func:`skbce.binary_cross_entropy`, :func:`~skbce.bce_gradient` and
:func:`~skbce.bce_loss_and_gradient` do the same here. ``metrics._evaluate``
asks :func:`sklearn.utils._array_api.get_namespace` once, at its entry (as
scikit-learn's metrics do): NumPy inputs, and every input while dispatch is
off, stay on the compiled kernels of ``skbce._bce``; other namespaces come
here.

The formulas are those of the kernels (``skbce/_elementwise.pxd``), written
with the array API's elementwise functions: probabilities clipped to ``[eps,
1 - eps]`` and differentiated at the clipped value; logits through the stable
``softplus(z) = max(z, 0) + log1p(exp(-|z|))``; per-entry weights
``sample_weight[i] * label_weight[j]``, of which a mean drops the one that
cancels, exactly as ``metrics._evaluate`` does. Values are checked with
array reductions before any arithmetic, so invalid input raises the NumPy
path's ``ValueError``. The computation dtype is the NumPy path's: float32 if
the predictions are float32 and the targets are not float64, float64 (or the
device's widest float) otherwise. A scalar result is a Python float, as
scikit-learn's ``log_loss`` returns; a vector (``axis``, ``reduction="none"``)
and the gradient are arrays of the inputs' namespace.
"""

from numbers import Number

import numpy as np
from sklearn.utils._array_api import _convert_to_numpy, get_namespace
from sklearn.utils._array_api import device as array_device

from skbce.metrics import _check_label_vector


def _is_floating(xp, dtype):
    return dtype in (xp.float32, xp.float64)


def _compute_dtype(xp, y_true, y_pred):
    if y_pred.dtype == xp.float32 and y_true.dtype != xp.float64:
        return xp.float32
    return xp.float64


def _numpy(values):
    """An array of any namespace as a NumPy array; lists and numbers as they are."""
    if isinstance(values, (Number, list, tuple, np.ndarray)):
        return values
    try:
        namespace, _ = get_namespace(values)
    except TypeError:  # not an array to the array API
        return np.asarray(values)
    return _convert_to_numpy(values, namespace)


def _moved(xp, values, device):
    """``values`` (an array of any namespace, a list, a number) as an array of ``xp``."""
    if hasattr(values, "shape") and not isinstance(values, np.ndarray):
        try:
            if get_namespace(values)[0] is xp:
                return values
        except TypeError:
            pass
    return xp.asarray(np.asarray(_numpy(values)), device=device)


def _as_array(xp, values, name, device):
    """``values`` as an array of ``xp`` with one or two dimensions and an entry."""
    values = _moved(xp, values, device)
    if not (_is_floating(xp, values.dtype) or xp.isdtype(values.dtype, ("integral", "bool"))):
        raise ValueError(f"{name} must hold real numbers; got dtype {values.dtype}.")
    if values.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (n_samples,) or 2-D (n_samples, n_labels); "
            f"got shape {tuple(values.shape)}.")
    if values.shape[0] == 0 or (values.ndim == 2 and values.shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {tuple(values.shape)}).")
    return values


def _check_range(xp, array, name, low, high, what):
    """The NumPy path's ValueError for the first entry outside [low, high] or NaN."""
    bad = xp.reshape(~((array >= low) & (array <= high)), (-1,))
    if not bool(xp.any(bad)):
        return
    first = int(xp.nonzero(bad)[0][0])
    index = first if array.ndim == 1 else divmod(first, array.shape[1])
    value = float(xp.reshape(array, (-1,))[first])
    raise ValueError(f"{name} must {what}; found {value!r} at index {index}.")


def _vector(xp, values, n, name, dtype, device):
    """A per-label weight vector (the NumPy path's checks), as an array of ``xp``."""
    checked = _check_label_vector(_numpy(values), n, name, np.float64)
    return xp.asarray(checked, dtype=dtype, device=device)


def _sample_weight(xp, sample_weight, n_samples, dtype, device):
    weight = xp.astype(_moved(xp, sample_weight, device), dtype)
    if weight.ndim == 0:
        weight = xp.full((n_samples,), float(weight), dtype=dtype, device=device)
    if tuple(weight.shape) != (n_samples,):
        raise ValueError(
            f"sample_weight.shape == {tuple(weight.shape)}, expected ({n_samples},)!")
    if not bool(xp.all(xp.isfinite(weight))):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if bool(xp.any(weight < 0)):
        raise ValueError("Negative values in data passed to sample_weight")
    total = float(xp.sum(xp.astype(weight, xp.float64) if dtype == xp.float64 else weight))
    if total <= 0:
        raise ValueError("sample_weight must not be all zero.")
    return weight, total


def _softplus(xp, z):
    return xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))


def _sigmoid(xp, z):
    return 1 / (1 + xp.exp(-z))


def _loss_and_gradient(xp, y, prediction, pos_weight, from_logits, eps, want_gradient):
    """Elementwise loss and its derivative with respect to the prediction."""
    if from_logits:
        loss = pos_weight * y * _softplus(xp, -prediction) + (1 - y) * _softplus(xp, prediction)
        if not want_gradient:
            return loss, None
        gradient = (1 - y) * _sigmoid(xp, prediction) - pos_weight * y * _sigmoid(xp, -prediction)
        return loss, gradient
    p = xp.clip(prediction, eps, 1 - eps)
    loss = -(pos_weight * y * xp.log(p) + (1 - y) * xp.log1p(-p))
    if not want_gradient:
        return loss, None
    return loss, (1 - y) / (1 - p) - pos_weight * y / p


def evaluate(xp, y_true, y_pred, want_loss, want_gradient, *, reduction, axis, from_logits,
             sample_weight, label_weight, pos_weight, label_smoothing, eps):
    """``metrics._evaluate`` for arrays of the namespace ``xp``: (loss, gradient)."""
    if isinstance(y_pred, (list, tuple)):
        raise ValueError(
            "y_pred as a list of per-label arrays is read through NumPy only; with "
            "array_api_dispatch=True pass an (n_samples, n_labels) array.")
    device = array_device(y_pred)
    y_pred = _as_array(xp, y_pred, "y_pred", device)
    y_true = _as_array(xp, y_true, "y_true", device)
    pred_shape = tuple(y_pred.shape)
    two_columns = (y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 2
                   and not from_logits)
    if two_columns:
        y_pred = y_pred[:, 1]  # predict_proba of a binary classifier
    if tuple(y_true.shape) != tuple(y_pred.shape):
        raise ValueError(
            f"y_true and y_pred have inconsistent shapes: y_true {tuple(y_true.shape)}, "
            f"y_pred {pred_shape}.")
    if reduction == "none" and axis is not None:
        raise ValueError("axis can only be used with reduction='mean' or 'sum'.")
    one_label = y_true.ndim == 1
    dtype = _compute_dtype(xp, y_true, y_pred)
    n_samples = y_true.shape[0]
    y = xp.reshape(xp.astype(y_true, dtype), (n_samples, -1))
    prediction = xp.reshape(xp.astype(y_pred, dtype), (n_samples, -1))
    n_labels = y.shape[1]

    _check_range(xp, y_true, "y_true", 0, 1, "lie in [0, 1]")
    if from_logits:
        _check_range(xp, xp.reshape(prediction, y_true.shape), "y_pred",
                     -float(xp.finfo(dtype).max), float(xp.finfo(dtype).max),
                     "be finite logits")
    else:
        _check_range(xp, xp.reshape(prediction, y_true.shape), "y_pred", 0, 1,
                     "be probabilities in [0, 1]")
    if label_smoothing > 0:
        y = y * (1 - label_smoothing) + label_smoothing / 2

    if sample_weight is None:
        sw, sw_total = None, float(n_samples)
    else:
        sw, sw_total = _sample_weight(xp, sample_weight, n_samples, dtype, device)
    if label_weight is None:
        lw, lw_total = None, float(n_labels)
    else:
        lw = _vector(xp, label_weight, n_labels, "label_weight", dtype, device)
        lw_total = float(xp.sum(lw))
        if lw_total <= 0:
            raise ValueError("label_weight must not be all zero.")
    if pos_weight is None:
        pw = 1.0
    elif isinstance(pos_weight, Number):
        pw = float(pos_weight)
    else:
        pw = _vector(xp, pos_weight, n_labels, "pos_weight", dtype, device)
    eps = float(xp.finfo(dtype).eps) if eps is None else float(eps)

    # The weight that cancels out of a mean, and the scale, as in metrics._evaluate.
    axis = None if axis is None else axis % 2
    drop, scale = None, 1.0
    if reduction == "mean":
        if axis is None:
            scale = 1.0 / (sw_total * lw_total)
        elif axis == 1:
            drop, scale = "sample_weight", 1.0 / lw_total
        else:
            drop, scale = "label_weight", 1.0 / sw_total
    weight = None
    if sw is not None and drop != "sample_weight":
        weight = sw[:, None]
    if lw is not None and drop != "label_weight":
        weight = lw[None, :] if weight is None else weight * lw[None, :]

    loss_entries, grad = _loss_and_gradient(xp, y, prediction, pw, from_logits, eps,
                                            want_gradient)
    if weight is not None:
        loss_entries = loss_entries * weight
        grad = None if grad is None else grad * weight

    loss = None
    if want_loss:
        if reduction == "none":
            loss = xp.reshape(loss_entries, tuple(y_true.shape))
        elif axis is None:
            loss = float(xp.sum(loss_entries)) * scale
        else:
            loss = xp.sum(loss_entries, axis=axis) * scale
            if one_label and axis == 1:
                loss = xp.reshape(loss, (-1,))
    gradient = None
    if want_gradient:
        grad = grad * scale
        if two_columns:
            gradient = xp.stack([xp.zeros_like(grad[:, 0]), grad[:, 0]], axis=1)
        else:
            gradient = xp.reshape(grad, pred_shape)
    return loss, gradient
