"""Linear models trained on the binary cross-entropy: the estimators and their solvers."""

from skbce.linear_model._logistic import MultiLabelLogistic
from skbce.linear_model._cv import MultiLabelLogisticCV

__all__ = ["MultiLabelLogistic", "MultiLabelLogisticCV"]
