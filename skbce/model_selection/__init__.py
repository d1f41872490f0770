"""Model selection for multi-label classifiers: per-label decision thresholds, and folds."""

from skbce.model_selection._split import FoldWarning, MultiLabelStratifiedKFold
from skbce.model_selection._thresholds import MultiLabelThresholdCV

__all__ = ["FoldWarning", "MultiLabelStratifiedKFold", "MultiLabelThresholdCV"]
