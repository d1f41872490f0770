"""skbce: binary cross-entropy done right for scikit-learn."""

from skbce.metrics import bce_gradient, bce_loss_and_gradient, binary_cross_entropy

__version__ = "0.1.0"

__all__ = [
    "bce_gradient",
    "bce_loss_and_gradient",
    "binary_cross_entropy",
]
