"""
=============================================
Choosing ``C`` by grid search with bce_scorer
=============================================

The inverse regularisation strength ``C`` of
:class:`skbce.MultiLabelLogistic` is chosen by cross-validation, scored with
:data:`skbce.bce_scorer` -- the negated mean BCE over all labels of the
held-out rows. scikit-learn's ``neg_log_loss`` is computed alongside: on
multi-label targets it scores only the labels each row *has*, so it keeps
rewarding larger probabilities and prefers weaker regularisation.
"""

# %%
# Data: four yes/no tags of each handwritten digit
# ------------------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold

from skbce import MultiLabelLogistic, bce_scorer

digits = load_digits()
X = digits.data / 16.0
tags = [(0, 2, 4, 6, 8), (2, 3, 5, 7), (5, 6, 7, 8, 9), (0, 6, 8, 9)]
Y = np.column_stack([np.isin(digits.target, t) for t in tags]).astype(int)

# %%
# One search, two scorers
# -----------------------
# ``refit="bce"`` refits the model chosen by BCE; ``cv_results_`` keeps the
# mean and spread of both scores for every ``C``.
Cs = np.logspace(-3, 3, 7)
search = GridSearchCV(
    MultiLabelLogistic(),
    {"C": Cs},
    scoring={"bce": bce_scorer, "log_loss": "neg_log_loss"},
    refit="bce",
    cv=KFold(4, shuffle=True, random_state=0),
)
with warnings.catch_warnings():
    # log_loss warns that multi-label probabilities do not sum to one.
    warnings.filterwarnings("ignore", message=".*do not sum to one")
    search.fit(X, Y)
print("best C by bce_scorer:  ", search.best_params_["C"])
best_log_loss = Cs[np.argmax(search.cv_results_["mean_test_log_loss"])]
print("best C by neg_log_loss:", best_log_loss)

# %%
# Validation loss against ``C``
# -----------------------------
results = search.cv_results_
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for key, label in [("bce", "BCE (skbce.bce_scorer)"),
                   ("log_loss", "sklearn log_loss (neg_log_loss)")]:
    mean, std = -results[f"mean_test_{key}"], results[f"std_test_{key}"]
    line, = ax.plot(Cs, mean, marker="o", label=label)
    ax.fill_between(Cs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
ax.axvline(search.best_params_["C"], color="grey", linestyle=":",
           label="C chosen by BCE")
ax.set(xscale="log", xlabel="C (inverse regularisation strength)",
       ylabel="mean validation loss", title="4-fold grid search over C")
ax.legend()
plt.show()
