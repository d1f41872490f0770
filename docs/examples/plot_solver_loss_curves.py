"""
===============================
Loss curves of the four solvers
===============================

:class:`skbce.MultiLabelLogistic` minimises the same penalised mean BCE
with four solvers. ``loss_curve_`` holds the training loss after each
iteration -- an epoch of mini-batches for ``"sgd"`` -- so their progress can
be compared on one task: scikit-learn's handwritten digits, each image tagged
with four yes/no properties of its digit.
"""

# %%
# A multi-label task from the digits
# ----------------------------------
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skbce import MultiLabelLogistic

TAGS = {
    "even": (0, 2, 4, 6, 8),
    "prime": (2, 3, 5, 7),
    "at least 5": (5, 6, 7, 8, 9),
    "closed loop": (0, 6, 8, 9),
}
digits = load_digits()
X = digits.data / 16.0
Y = np.column_stack([np.isin(digits.target, d) for d in TAGS.values()]).astype(int)
print(X.shape, "->", Y.shape, "tags:", ", ".join(TAGS))

# %%
# Fit once per solver
# -------------------
# ``"newton-cg"`` (the default for an L2 penalty) takes few, exact Newton
# steps; ``"lbfgs"`` builds a curvature estimate from past gradients;
# ``"gd"`` takes one accelerated gradient step per pass over the data; ``"sgd"``
# takes many small steps per pass, reaching a good loss in few epochs but
# hovering around the optimum rather than settling on it.
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for solver in ["newton-cg", "lbfgs", "gd", "sgd"]:
    start = time.perf_counter()
    model = MultiLabelLogistic(solver=solver, random_state=0).fit(X, Y)
    seconds = time.perf_counter() - start
    curve = np.asarray(model.loss_curve_)
    print(f"{solver:>9}: {model.n_iter_:4d} iterations, {seconds:.2f} s, "
          f"final training loss {curve[-1]:.4f}")
    ax.plot(np.arange(1, len(curve) + 1), curve, label=solver)
ax.set(xscale="log", yscale="log", xlabel="iteration (epoch for sgd)",
       ylabel="training loss (penalised mean BCE)",
       title="MultiLabelLogistic on the digit tags")
ax.legend(title="solver")
plt.show()
