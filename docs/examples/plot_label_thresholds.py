"""
=====================================================
Tuning the decision threshold of each label for F1
=====================================================

A multi-label classifier predicts a label where its probability is at least
0.5. For F1 that is rarely the best threshold, and the rarer the label, the
further from it the best one tends to be: a rare label's probabilities seldom
reach 0.5, so at 0.5 it is hardly ever predicted. :class:`skbce.MultiLabelThresholdCV`
chooses each label's threshold on out-of-fold probabilities. This example
tunes the thresholds of :class:`skbce.MultiLabelLogistic` and of a random
forest for F1, and measures the F1 each label gains on held-out data.
"""

# %%
# Data: eight labels, from common to rare
# ---------------------------------------
# Each label is a noisy logistic function of 20 features; the intercepts make
# the labels' frequencies run from about one half down to a few percent.
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from skbce import MultiLabelLogistic, MultiLabelThresholdCV

rng = np.random.default_rng(0)
n_samples, n_features, n_labels = 1500, 20, 8
X = rng.normal(size=(n_samples, n_features))
weights = rng.normal(scale=0.6, size=(n_features, n_labels))
intercepts = np.linspace(0.5, -5.0, n_labels)
Y = (rng.uniform(size=(n_samples, n_labels)) < expit(X @ weights + intercepts)).astype(int)
X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.5, random_state=0)
print("label frequencies:", Y_train.mean(axis=0).round(2))

# %%
# Tune, then compare with 0.5 on the test half
# --------------------------------------------
# ``predict_proba`` of the tuned meta-estimator is the classifier's own, so the
# 0.5 predictions come from the same refitted model.
models = {
    "MultiLabelLogistic": MultiLabelLogistic(C=0.1),
    "random forest": RandomForestClassifier(n_estimators=100, min_samples_leaf=2,
                                            random_state=0),
}
results = {}
for name, model in models.items():
    tuned = MultiLabelThresholdCV(model, scoring="f1", cv=5).fit(X_train, Y_train)
    proba = tuned.predict_proba(X_test)
    if isinstance(proba, list):  # a forest: one (n, 2) array per label
        proba = np.column_stack([p[:, 1] for p in proba])
    f1_default = f1_score(Y_test, proba >= 0.5, average=None, zero_division=0)
    f1_tuned = f1_score(Y_test, tuned.predict(X_test), average=None, zero_division=0)
    results[name] = (tuned.thresholds_, f1_default, f1_tuned)
    print(f"{name:20s} macro-F1 at 0.5: {f1_default.mean():.3f}   "
          f"tuned: {f1_tuned.mean():.3f}")

# %%
# Thresholds and F1 gained, label by label
# ----------------------------------------
labels = np.arange(Y.shape[1])
width = 0.4
fig, (ax_t, ax_g) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, layout="constrained")
for k, (name, (thresholds, f1_default, f1_tuned)) in enumerate(results.items()):
    shift = (k - 0.5) * width
    ax_t.bar(labels + shift, thresholds, width, label=name)
    ax_g.bar(labels + shift, f1_tuned - f1_default, width, label=name)
ax_t.axhline(0.5, color="k", lw=1, ls="--", label="default 0.5")
ax_t.set_ylabel("tuned threshold")
ax_t.legend(loc="upper left", fontsize="small")
ax_g.axhline(0, color="k", lw=1)
ax_g.set_ylabel("test F1 gained\n(tuned - 0.5)")
ax_g.set_xlabel("label (most to least frequent)")
ax_g.set_xticks(labels)
plt.show()

# %%
# The rare labels, predicted too seldom at 0.5, get the lowest thresholds and
# gain the most. With :class:`~skbce.MultiLabelLogistic` the thresholds can be
# written back into the model, which then predicts with them on its own:
thresholds = results["MultiLabelLogistic"][0]
model = MultiLabelLogistic(C=0.1, threshold=thresholds).fit(X_train, Y_train)
print("macro-F1 of the model with its thresholds written back:",
      round(f1_score(Y_test, model.predict(X_test), average="macro", zero_division=0), 3))
