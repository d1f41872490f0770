"""Model selection for multi-label classifiers: per-label decision thresholds."""

from skbce.model_selection._thresholds import MultiLabelThresholdCV

__all__ = ["MultiLabelThresholdCV"]
