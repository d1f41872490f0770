"""MultiLabelLogistic: a joint multi-label logistic regression trained on BCE."""
