"""Optimisers for MultiLabelLogistic: pure functions on (X, Y, weights)."""
