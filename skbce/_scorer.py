"""Scorers built on binary_cross_entropy (see issue: BCE as a scikit-learn scorer)."""
