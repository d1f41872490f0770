"""
===========================
Training on soft labels
===========================

BCE accepts targets anywhere in ``[0, 1]``. When several annotators label
each example, the fraction who said yes is a *soft label*: it keeps the
information that an example was ambiguous, which a majority vote throws
away. This example simulates such annotations -- each with a known true
probability -- and trains :class:`skbce.MultiLabelLogistic` on the soft
labels and on the majority votes, then compares how close each model's
probabilities come to the truth.
"""

# %%
# Simulated annotations
# ---------------------
# Three labels whose true probability is a logistic function of the
# features; five annotators per example answer yes with that probability.
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit

from skbce import MultiLabelLogistic, binary_cross_entropy

rng = np.random.default_rng(0)
n_samples, n_features, n_labels, n_annotators = 600, 5, 3, 5
X = rng.normal(size=(n_samples, n_features))
true_proba = expit(X @ rng.normal(scale=1.5, size=(n_features, n_labels)))
votes = rng.binomial(n_annotators, true_proba)
soft = votes / n_annotators                          # in {0, 0.2, ..., 1}
majority = (votes > n_annotators / 2).astype(int)
train, test = slice(0, 400), slice(400, None)

# %%
# The same model, two kinds of target
# -----------------------------------
# The BCE against soft targets is minimised by predicting the annotators'
# rate; a majority vote turns a 3-to-2 split into certainty, so the model
# trained on it is pushed towards overconfident probabilities.
models = {
    "soft labels": MultiLabelLogistic().fit(X[train], soft[train]),
    "majority vote": MultiLabelLogistic().fit(X[train], majority[train]),
}
for name, model in models.items():
    proba = model.predict_proba(X[test])
    error = np.abs(proba - true_proba[test]).mean()
    loss = binary_cross_entropy(true_proba[test], proba)
    print(f"{name:>13}: mean |p - true p| = {error:.3f}, "
          f"BCE against the true probabilities = {loss:.4f}")

# %%
# Predicted against true probability
# ----------------------------------
fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True, layout="constrained")
for ax, (name, model) in zip(axes, models.items()):
    proba = model.predict_proba(X[test])
    ax.scatter(true_proba[test].ravel(), proba.ravel(), s=6, alpha=0.4)
    ax.plot([0, 1], [0, 1], color="black", linewidth=1)
    ax.set(title=f"trained on {name}", xlabel="true probability",
           xlim=(0, 1), ylim=(0, 1))
axes[0].set_ylabel("predicted probability")
plt.show()
