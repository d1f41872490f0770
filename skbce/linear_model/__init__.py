"""Linear models trained on the binary cross-entropy: the estimators and their solvers.

Where things are:

* ``_logistic.py`` -- :class:`MultiLabelLogistic`: parameters, fit, partial_fit,
  predict; ``_targets.py`` validates and encodes its targets,
  ``_solver_choice.py`` resolves ``solver="auto"`` and sizes the label blocks
  to the memory budget, ``_fit_inputs.py`` makes fit's arguments into
  validated data, weights and the problem, ``_partial_fit.py`` holds
  partial_fit's state between calls and its SGD epoch, ``_newton_passes.py``
  its Newton steps over passes.
* ``_cv.py`` -- :class:`MultiLabelLogisticCV`.
* ``_problem.py`` -- ``LinearBCE``, the interface every solver calls (loss and
  gradient, curvature, Hessian-vector products, on coefficients of all
  labels at once); ``_dask_problem.py`` -- the same over dask chunks, with
  ``_dask_chunks.py`` the tasks run on each chunk and ``_dask_logits.py`` the
  per-sample arrays (logits, gradient, curvature) held as coefficients.
* ``_newton_cg.py``, ``_newton_cholesky.py``, ``_lbfgs.py``, ``_gd.py``,
  ``_sgd.py`` -- one solver each; ``_solver_base.py`` -- what they share.
"""

from skbce.linear_model._logistic import MultiLabelLogistic
from skbce.linear_model._cv import MultiLabelLogisticCV

__all__ = ["MultiLabelLogistic", "MultiLabelLogisticCV"]
