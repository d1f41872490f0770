"""ONNX export of skbce's estimators: converters for skl2onnx.

``import skbce.onnx`` registers, with :func:`skl2onnx.update_registered_converter`
(the way skl2onnx extends itself to models it does not know), a parser, a
shape calculator and a converter for :class:`~skbce.MultiLabelLogistic`,
:class:`~skbce.MultiLabelLogisticCV` and :class:`~skbce.MultiLabelThresholdCV`.
From then on :func:`skl2onnx.to_onnx` converts them alone or at the end of a
pipeline. Needs the ``onnx`` extra (skl2onnx, onnx, onnxruntime to run the
graphs); the estimators themselves know nothing of this module.

What a graph computes is what the estimator's methods compute, output by
output:

- ``probabilities`` is ``predict_proba``: for a 1-D (or one-column) target the
  two columns ``sigmoid(-s)`` and ``sigmoid(s)`` of the score ``s = X @
  coef_.T + intercept_``, for a multi-label target one column ``sigmoid(s)``
  per label; in the input's precision (float32 or float64), as skbce casts
  ``coef_`` to the dtype of ``X``.
- ``label`` is ``predict``: the positive class where the probability is at
  least ``threshold`` (``thresholds_`` for the tuner), the comparison made in
  float64 as numpy makes it. For a 1-D target the class is taken from
  ``classes_`` (int64, float64 or string tensors); for a multi-label target it
  is an int64 0/1 matrix.

Both are plain tensors: skl2onnx's ``zipmap`` option (which turns a binary
classifier's probabilities into a list of dictionaries, and which its
pipeline parser sets on every final classifier) is accepted and ignored, so
that a served model returns what ``predict_proba`` returns.

:class:`~skbce.MultiLabelThresholdCV` converts around any fitted estimator
that skl2onnx itself converts to a ``label`` and a ``probabilities`` tensor
(skbce's models, pipelines ending in one, ``LogisticRegression``,
``OneVsRestClassifier``, forests of binary or multi-label targets...): the
tuner's parser hands that estimator to skl2onnx's own parser, which inserts
its operators as they would be for the estimator alone (``zipmap=False``),
and the tuner's operator compares their positive-class probabilities with
``thresholds_``. skl2onnx documents no public entry point for parsing a
wrapped model; ``skl2onnx._parse._parse_sklearn`` is the one its own
meta-estimators (pipelines, ``OneVsRestClassifier``) call.
"""

import numpy as np
from onnx import TensorProto
from scipy import sparse
from skl2onnx import update_registered_converter
from skl2onnx._parse import _parse_sklearn
from skl2onnx.algebra.onnx_ops import (
    OnnxAdd,
    OnnxCast,
    OnnxConcat,
    OnnxGather,
    OnnxGreaterOrEqual,
    OnnxIdentity,
    OnnxMatMul,
    OnnxNeg,
    OnnxReshape,
    OnnxSigmoid,
    OnnxTranspose,
)
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.pipeline import Pipeline

from skbce.linear_model import MultiLabelLogistic, MultiLabelLogisticCV
from skbce.model_selection import MultiLabelThresholdCV

__all__ = ["register_converters"]

# Accepted for skl2onnx's pipeline parser, which sets zipmap on every final
# classifier; the outputs stay tensors (see the module docstring).
_OPTIONS = {"zipmap": [False, True, "columns"]}

_ALIASES = {
    MultiLabelLogistic: "SkbceMultiLabelLogistic",
    MultiLabelLogisticCV: "SkbceMultiLabelLogisticCV",
    MultiLabelThresholdCV: "SkbceMultiLabelThresholdCV",
}


# -- types ----------------------------------------------------------------------

def _float_type(variable):
    """The numpy float type a graph computes in: that of its input, float32 else."""
    return np.float64 if isinstance(variable.type, DoubleTensorType) else np.float32


def _onnx_float(dtype):
    return TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT


def _tensor_type(dtype):
    return DoubleTensorType if dtype == np.float64 else FloatTensorType


def _classes_tensor(classes):
    """``classes_`` as a constant the label is read from, and its tensor type."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        return classes.astype(np.int64), Int64TensorType
    if classes.dtype.kind == "f":
        return classes.astype(np.float64), DoubleTensorType
    return np.array([str(c) for c in classes]), StringTensorType


def _dense(array, dtype):
    """A fitted array as a dense numpy array of ``dtype`` (``coef_`` may be sparse)."""
    if sparse.issparse(array):
        array = array.toarray()
    return np.asarray(array, dtype=dtype)


# -- parser and shapes -----------------------------------------------------------

def _parse_classifier(scope, model, inputs, custom_parsers=None):
    """One operator with two tensor outputs, ``label`` and ``probabilities``."""
    operator = scope.declare_local_operator(_ALIASES[type(model)], model)
    operator.inputs = inputs
    label = scope.declare_local_variable("label", Int64TensorType())
    proba = scope.declare_local_variable(
        "probabilities", _tensor_type(_float_type(inputs[0]))())
    operator.outputs.extend([label, proba])
    return operator.outputs


def _inner_layout(model):
    """How the tuned estimator's ``probabilities`` tensor is laid out.

    ``"columns"``: (n_samples, n_classes) of a binary target or (n_samples,
    n_labels) of a multi-label one; ``"stacked"``: (n_labels, n_samples, 2),
    as skl2onnx converts a multi-output forest (whose ``predict_proba`` is a
    list of (n_samples, 2) arrays).
    """
    estimator = model.estimator_
    per_label = getattr(estimator, "classes_", None)
    if model._one_d:
        n_classes = len(np.asarray(per_label))
        if n_classes != 2:
            raise NotImplementedError(
                f"MultiLabelThresholdCV's estimator_ was fitted on {n_classes} class(es); "
                "its ONNX graph needs an estimator fitted on both classes of the target.")
        return "columns"
    if isinstance(per_label, (list, tuple)):
        if any(np.asarray(c).tolist() != [0, 1] for c in per_label):
            raise NotImplementedError(
                "MultiLabelThresholdCV's estimator_ has a label fitted on one class only; "
                "its ONNX graph needs classes_ [0, 1] for every label.")
        return "stacked"
    return "columns"


def _parse_thresholds(scope, model, inputs, custom_parsers=None):
    """The tuned estimator's operators (skl2onnx's own parser), then the thresholds.

    The estimator -- a pipeline too -- is parsed as skl2onnx parses any model,
    asked for plain tensors (``zipmap=False`` on its final classifier); its
    ``probabilities`` output is the input of the tuner's operator.
    """
    final = model.estimator_
    while isinstance(final, Pipeline):
        final = final.steps[-1][1]
    scope.add_options(id(final), {"zipmap": False})
    inner_outputs = _parse_sklearn(scope, model.estimator_, inputs,
                                   custom_parsers=custom_parsers)
    operator = scope.declare_local_operator(_ALIASES[type(model)], model)
    operator.inputs = [inner_outputs[1]]
    label = scope.declare_local_variable("label", Int64TensorType())
    proba = scope.declare_local_variable(
        "probabilities", _tensor_type(_float_type(inputs[0]))())
    operator.outputs.extend([label, proba])
    return operator.outputs


def _set_output_shapes(operator, one_d, n_columns, dtype, n_rows):
    label_type = _classes_tensor(operator.raw_operator.classes_)[1] if one_d else Int64TensorType
    operator.outputs[0].type = label_type([n_rows] if one_d else [n_rows, n_columns])
    operator.outputs[1].type = _tensor_type(dtype)([n_rows, 2 if one_d else n_columns])


def _logistic_shapes(operator):
    model, X = operator.raw_operator, operator.inputs[0]
    _set_output_shapes(operator, model._one_d, model.coef_.shape[0], _float_type(X),
                       X.get_first_dimension())


def _threshold_shapes(operator):
    model, proba = operator.raw_operator, operator.inputs[0]
    # The parser declared the output in the graph input's precision.
    dtype = _float_type(operator.outputs[1])
    n_labels = len(model.thresholds_)
    stacked = _inner_layout(model) == "stacked"
    n_rows = proba.get_second_dimension() if stacked else proba.get_first_dimension()
    _set_output_shapes(operator, model._one_d, n_labels, dtype, n_rows)
    if stacked:
        operator.outputs[1].type = _tensor_type(dtype)([n_labels, n_rows, 2])


# -- converters -------------------------------------------------------------------

def _labels(positive_proba, threshold, classes, one_d, name, opv):
    """``predict`` from positive-class probabilities: ``p >= threshold`` in float64."""
    above = OnnxGreaterOrEqual(
        OnnxCast(positive_proba, to=TensorProto.DOUBLE, op_version=opv),
        np.asarray(threshold, dtype=np.float64).reshape(-1),
        op_version=opv,
    )
    index = OnnxCast(above, to=TensorProto.INT64, op_version=opv)
    if not one_d:
        return OnnxIdentity(index, op_version=opv, output_names=[name])
    classes, _ = _classes_tensor(classes)
    flat = OnnxReshape(index, np.array([-1], dtype=np.int64), op_version=opv)
    return OnnxGather(classes, flat, axis=0, op_version=opv, output_names=[name])


def _convert_logistic(scope, operator, container):
    """MultiLabelLogistic(CV): ``predict`` and ``predict_proba`` of its linear scores."""
    model = operator.raw_operator
    opv = container.target_opset
    X = operator.inputs[0]
    dtype = _float_type(X)
    label_name, proba_name = (out.full_name for out in operator.outputs)
    coef = _dense(model.coef_, dtype).T
    intercept = _dense(model.intercept_, dtype).reshape(-1)
    scores = OnnxAdd(OnnxMatMul(X, coef, op_version=opv), intercept, op_version=opv)
    positive = OnnxSigmoid(scores, op_version=opv)
    if model._one_d:
        # Two columns as skbce computes them: sigmoid(-s) is not 1 - sigmoid(s)
        # in floating point where s is large.
        negative = OnnxSigmoid(OnnxNeg(scores, op_version=opv), op_version=opv)
        proba = OnnxConcat(negative, positive, axis=1, op_version=opv,
                           output_names=[proba_name])
    else:
        proba = OnnxIdentity(positive, op_version=opv, output_names=[proba_name])
    label = _labels(positive, model.threshold, model.classes_, model._one_d, label_name, opv)
    proba.add_to(scope, container)
    label.add_to(scope, container)


def _convert_thresholds(scope, operator, container):
    """MultiLabelThresholdCV: the estimator's probabilities against ``thresholds_``."""
    model = operator.raw_operator
    opv = container.target_opset
    proba = operator.inputs[0]
    label_name, proba_name = (out.full_name for out in operator.outputs)
    if _inner_layout(model) == "stacked":
        # Class 1 of each label (a 0-d index drops the axis), labels as columns.
        positive = OnnxTranspose(
            OnnxGather(proba, np.array(1, dtype=np.int64), axis=2, op_version=opv),
            perm=[1, 0], op_version=opv)
    elif model._one_d:
        positive = OnnxGather(proba, np.array([1], dtype=np.int64), axis=1, op_version=opv)
    else:
        positive = proba
    label = _labels(positive, model.thresholds_, model.classes_, model._one_d, label_name, opv)
    dtype = _float_type(operator.outputs[1])
    proba = OnnxCast(proba, to=_onnx_float(dtype), op_version=opv, output_names=[proba_name])
    proba.add_to(scope, container)
    label.add_to(scope, container)


def register_converters():
    """Register skbce's estimators with skl2onnx (done by ``import skbce.onnx``).

    Calling it again is harmless: each registration replaces the previous one.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from skl2onnx import to_onnx
    >>> import skbce.onnx  # registers the converters
    >>> from skbce import MultiLabelLogistic
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    >>> Y = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    >>> model = MultiLabelLogistic(C=10.0).fit(X, Y)
    >>> graph = to_onnx(model, X[:1])
    >>> session = ort.InferenceSession(graph.SerializeToString(),
    ...                                providers=["CPUExecutionProvider"])
    >>> [output.name for output in session.get_outputs()]
    ['label', 'probabilities']
    >>> label, proba = session.run(None, {"X": X})
    >>> bool((label == model.predict(X)).all())
    True
    >>> bool(np.allclose(proba, model.predict_proba(X), rtol=1e-5))
    True
    """
    for model, parser, shapes, convert in (
        (MultiLabelLogistic, _parse_classifier, _logistic_shapes, _convert_logistic),
        (MultiLabelLogisticCV, _parse_classifier, _logistic_shapes, _convert_logistic),
        (MultiLabelThresholdCV, _parse_thresholds, _threshold_shapes, _convert_thresholds),
    ):
        update_registered_converter(model, _ALIASES[model], shapes, convert,
                                    parser=parser, options=_OPTIONS)


register_converters()
