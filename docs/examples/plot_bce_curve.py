"""
=====================================
The binary cross-entropy of one entry
=====================================

For a target ``y`` and a predicted probability ``p`` the binary
cross-entropy is ``-(y log p + (1 - y) log(1 - p))``: ``-log p`` when the
answer is yes, ``-log(1 - p)`` when it is no. Both curves are finite for
``0 < p < 1`` and grow without bound at the wrong end, which is why
:func:`skbce.binary_cross_entropy` clips probabilities to ``[eps, 1 - eps]``
-- and why computing from logits (``from_logits=True``) is better still.

A soft target such as ``y = 0.5`` gives the mixture of both curves; its
minimum sits at ``p = y`` (where it equals the entropy of ``y``, not 0).
"""

# %%
# Loss as a function of the predicted probability
# -----------------------------------------------
# ``reduction="none"`` returns the loss of every entry, so one call per
# target draws a whole curve.
import matplotlib.pyplot as plt
import numpy as np

from skbce import binary_cross_entropy

p = np.linspace(0.001, 0.999, 500)
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for y, label in [(1.0, r"$y = 1$: $-\log p$"), (0.0, r"$y = 0$: $-\log(1 - p)$"),
                 (0.5, r"soft target $y = 0.5$")]:
    loss = binary_cross_entropy(np.full_like(p, y), p, reduction="none")
    ax.plot(p, loss, label=label)
ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
ax.set(xlabel="predicted probability $p$", ylabel="binary cross-entropy",
       ylim=(0, 5), title="BCE of a single entry")
ax.legend()

# %%
# The same loss as a function of the logit
# ----------------------------------------
# With ``from_logits=True`` the loss is evaluated as ``softplus(-z)`` for a
# positive and ``softplus(z)`` for a negative target: exact and finite for
# any finite logit, with no clipping. Through probabilities, a confident
# mistake saturates at ``-log(eps)`` once ``sigmoid(z)`` rounds to 1.
z = np.linspace(-40, 40, 801)
from_logits = binary_cross_entropy(np.zeros_like(z), z, from_logits=True,
                                   reduction="none")
through_p = binary_cross_entropy(np.zeros_like(z), 1 / (1 + np.exp(-z)),
                                 reduction="none")
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.plot(z, from_logits, label="from logits: exact")
ax.plot(z, through_p, linestyle="--", label="from probabilities: clipped")
ax.set(xlabel="logit $z$", ylabel="BCE for $y = 0$",
       title="The logit path does not saturate")
ax.legend()
plt.show()
