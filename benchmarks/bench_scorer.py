"""Cost of scoring with skbce.bce_scorer against calling the BCE kernel directly.

Run:  python benchmarks/bench_scorer.py [--samples 100000] [--labels 50] [--repeats 15]

Goal (from the issue "BCE as a scikit-learn scorer"): on 100 000 x 50
predictions, ``bce_scorer(estimator, X, Y)`` minus the estimator's own
``predict_proba`` time stays within 1.5x of calling the kernel directly.

Two references are printed:

* ``binary_cross_entropy(Y, P)`` (R) -- the public function a user would
  call on the predictions (validation + kernel); the 1.5x goal is judged
  against it, on the precomputed (n, k) array row (the clean subtraction);
* ``bce_pass`` -- the bare Cython kernel on arrays already laid out and
  validated, for information (it skips the input checks every public entry
  point performs).

Scorer lines use an estimator whose ``predict_proba`` returns precomputed
probabilities (so subtracting its time is clean) in the two layouts
estimators produce, plus real estimators, whose ``predict_proba`` is timed
separately and subtracted. Every timing is the median of ``--repeats`` calls,
candidates interleaved round by round; "scorer - predict_proba" is the
median over rounds of the difference of the two calls made back to back.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier
from sklearn.neural_network import MLPClassifier

import skbce
from skbce._kernels import bce_pass
from skbce.metrics import _n_threads

GOAL = 1.5


class Precomputed(ClassifierMixin, BaseEstimator):
    """A fitted-looking classifier whose predict_proba returns fixed output."""

    def __init__(self, proba=None, classes=None):
        self.proba = proba
        self.classes = classes

    def fit(self, X=None, y=None):
        self.classes_ = self.classes
        return self

    def predict_proba(self, X):
        return self.proba


def round_robin_times(candidates, repeats):
    """Wall times in seconds of each callable, one per round, round-robin."""
    times = {name: [] for name in candidates}
    for function in candidates.values():
        function()  # warm up
    for _ in range(repeats):
        for name, function in candidates.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    n, k = args.samples, args.labels

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, args.features))
    W = rng.normal(size=(args.features, k))
    Y = (X @ W + rng.logistic(size=(n, k)) > 0).astype(np.float64)
    P = rng.uniform(0.01, 0.99, size=(n, k))
    P_list = [np.column_stack([1 - P[:, j], P[:, j]]) for j in range(k)]
    classes_list = [np.array([0, 1])] * k

    # Bare kernel on validated, laid-out arrays.
    empty = np.empty(0)
    out = np.empty((0, 0))
    eps = float(np.finfo(np.float64).eps)
    threads = _n_threads(Y.size)

    def kernel():
        return bce_pass(
            Y, P, empty, empty, empty, 1.0, False, eps, out, out, 1.0, threads, True
        ) / Y.size

    assert np.isclose(kernel(), skbce.binary_cross_entropy(Y, P))

    array_est = Precomputed(P, classes=np.arange(k)).fit()
    list_est = Precomputed(P_list, classes=classes_list).fit()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit_rows = slice(0, 5_000)
        mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0)
        mlp.fit(X[fit_rows], Y[fit_rows])
        multi_lr = MultiOutputClassifier(LogisticRegression(max_iter=200))
        multi_lr.fit(X[fit_rows], Y[fit_rows])

    scorer = skbce.bce_scorer
    bce = skbce.binary_cross_entropy
    rounds = round_robin_times(
        {
            "kernel": kernel,
            "array_direct": lambda: bce(Y, P),
            "array_pp": lambda: array_est.predict_proba(X),
            "array_scorer": lambda: scorer(array_est, X, Y),
            "list_direct": lambda: bce(Y, P_list),
            "list_pp": lambda: list_est.predict_proba(X),
            "list_scorer": lambda: scorer(list_est, X, Y),
            "mlp_direct": lambda: bce(Y, mlp.predict_proba(X)),
            "mlp_pp": lambda: mlp.predict_proba(X),
            "mlp_scorer": lambda: scorer(mlp, X, Y),
            "mo_direct": lambda: bce(Y, multi_lr.predict_proba(X)),
            "mo_pp": lambda: multi_lr.predict_proba(X),
            "mo_scorer": lambda: scorer(multi_lr, X, Y),
        },
        args.repeats,
    )
    times = {name: float(np.median(t)) for name, t in rounds.items()}

    reference = times["array_direct"]
    ms = 1e3
    print(
        f"bce_scorer on {n} x {k} predictions: median of {args.repeats} "
        f"calls, {threads} kernel thread(s)"
    )
    kernel_ms = times["kernel"] * ms
    print(f"  bare kernel bce_pass (validated arrays)       {kernel_ms:8.2f} ms")
    print(f"  binary_cross_entropy(Y, P)  = reference R     {reference * ms:8.2f} ms")
    print()
    print(
        f"  {'estimator: predict_proba layout':<46}{'predict_proba':>14}"
        f"{'scorer-pp':>11}{'direct*':>10}{'/direct':>9}{'/R':>7}{'/kernel':>9}"
        "  goal /R"
    )
    rows = [
        ("precomputed: (n, k) array", "array"),
        ("precomputed: list of (n, 2) arrays", "list"),
        ("MLPClassifier: (n, k) array", "mlp"),
        ("MultiOutputClassifier(LR): list of (n, 2)", "mo"),
    ]
    verdicts = {}
    for label, key in rows:
        pp = times[f"{key}_pp"]
        # Median over rounds of (scorer - predict_proba) timed back to back.
        own = float(np.median(rounds[f"{key}_scorer"] - rounds[f"{key}_pp"]))
        direct = float(np.median(rounds[f"{key}_direct"] - rounds[f"{key}_pp"]))
        ratio = own / reference
        verdicts[label] = ratio <= GOAL
        print(
            f"  {label:<46}{pp * ms:11.2f} ms{own * ms:8.2f} ms{direct * ms:7.2f} ms"
            f"{own / direct:8.2f}x{ratio:6.2f}x{own / times['kernel']:8.2f}x  "
            f"{'PASS' if ratio <= GOAL else 'FAIL'} (<= {GOAL}x)"
        )
    print()
    print(
        "  * direct = binary_cross_entropy(Y, estimator.predict_proba(X)) minus "
        "predict_proba,\n    timed like the scorer; for list layouts it includes "
        "the same gather of the\n    positive columns the scorer does."
    )
    headline = rows[0][0]
    print(
        f"goal, {n} x {k} (n, k) predictions, clean subtraction: "
        f"{'PASS' if verdicts[headline] else 'FAIL'}"
    )
    print(
        f"all rows within {GOAL}x of R: {sum(verdicts.values())}/{len(verdicts)} "
        "(list rows pay a gather of the positive columns; real-estimator rows "
        "subtract a noisy predict_proba and read a cold output -- see /direct)"
    )


if __name__ == "__main__":
    main()
