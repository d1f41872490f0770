"""skbce: binary cross-entropy done right for scikit-learn."""

from skbce.metrics import bce_gradient, bce_loss_and_gradient, binary_cross_entropy
from skbce.linear_model import MultiLabelLogistic, MultiLabelLogisticCV
from skbce._scorer import bce_scorer, make_bce_scorer
from skbce.model_selection import MultiLabelThresholdCV
from skbce._kernels import show_config

__version__ = "0.1.0"

__all__ = [
    "MultiLabelLogistic",
    "MultiLabelLogisticCV",
    "MultiLabelThresholdCV",
    "bce_gradient",
    "bce_loss_and_gradient",
    "binary_cross_entropy",
    "bce_scorer",
    "make_bce_scorer",
    "show_config",
]
