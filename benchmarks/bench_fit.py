"""Fit time of MultiLabelLogistic against OneVsRestClassifier(LogisticRegression).

Run:  python benchmarks/bench_fit.py [--data DIR] [--repeats 3] [--datasets yeast scene]

Data: the Mulan datasets in ``../shared/data`` beside the repository (or
``--data DIR``, or the environment variable ``SKBCE_BENCH_DATA``): yeast and
scene with their standard train/test split, bibtex with a seeded 2/3-1/3
split. Dense features are standardised on the training part; bibtex's binary
word features are used as they are (sparse CSR). ``C=1`` throughout.

For each dataset and model the table gives

* ``fit s``: the best wall time of ``--repeats`` fits, the candidates
  interleaved round by round so that a noisy neighbour hits all alike;
* ``objective``: LogisticRegression's training objective, summed over labels,
  ``sum_j [C * sum_i loss_ij + ||w_j||^2 / 2]``;
* ``test BCE``: the mean binary cross-entropy of ``predict_proba`` on the
  test part;
* ``peak MB``: peak memory allocated during one fit after the warm-up
  (tracemalloc; it sees the main process only, so the ``n_jobs=2`` workers of
  OvR are not counted); the objective and test BCE come from the first,
  untimed fit, which warms up imports and caches;
* ``ratio``: fit time over that of the fastest OvR configuration.

The goal checked at the end: the default solver is at least 2x faster than
the fastest OvR configuration on every dataset, with a training objective
within 1e-3 (relative) of that configuration's, a test BCE no worse than its
+ 0.002 and a peak memory no larger than its.
"""

import argparse
import os
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.special import log_expit

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
C = 1.0


def load(name, data_dir):
    """Train and test parts of one dataset, features ready for a linear model."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    with np.load(data_dir / f"{name}.npz", allow_pickle=False) as data:
        Y = data["Y"].astype(np.int64)
        if "X" in data:
            X = data["X"].astype(np.float64)
        else:
            X = sparse.csr_matrix(
                (data["X_data"], data["X_indices"], data["X_indptr"]),
                shape=tuple(data["X_shape"]),
            ).astype(np.float64)
        mask = data["train_mask"] if "train_mask" in data else None
    if mask is not None:
        X_train, X_test, Y_train, Y_test = X[mask], X[~mask], Y[mask], Y[~mask]
    else:
        X_train, X_test, Y_train, Y_test = train_test_split(
            X, Y, test_size=1 / 3, random_state=0
        )
    if not sparse.issparse(X_train):
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return X_train, X_test, Y_train, Y_test


def coefficients(model, n_features):
    """(coef (k, d), intercept (k,), constant (k,) or None) of a fitted model."""
    if hasattr(model, "estimators_"):  # OneVsRestClassifier
        coef, intercept, constant = [], [], []
        for est in model.estimators_:
            if hasattr(est, "coef_"):
                coef.append(est.coef_.ravel())
                intercept.append(est.intercept_[0])
                constant.append(np.nan)
            else:  # _ConstantPredictor of a label constant in training
                coef.append(np.zeros(n_features))
                intercept.append(0.0)
                constant.append(float(np.ravel(est.y_)[0]))
        return np.array(coef), np.array(intercept), np.array(constant)
    return model.coef_, model.intercept_, np.full(len(model.intercept_), np.nan)


def training_objective(model, X, Y):
    """LogisticRegression's objective summed over labels."""
    coef, intercept, constant = coefficients(model, X.shape[1])
    Z = np.asarray(X @ coef.T) + intercept
    loss = -(Y * log_expit(Z) + (1 - Y) * log_expit(-Z))  # exact BCE from logits
    per_label = C * loss.sum(axis=0) + 0.5 * np.einsum("ij,ij->i", coef, coef)
    per_label[~np.isnan(constant)] = 0.0  # a constant predictor is exact
    return float(per_label.sum())


def candidates():
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from skbce import MultiLabelLogistic

    models = {"MultiLabelLogistic() [default]": lambda: MultiLabelLogistic(C=C)}
    for solver in ("newton-cg", "lbfgs", "gd", "sgd"):
        models[f"MultiLabelLogistic(solver={solver!r})"] = (
            lambda solver=solver: MultiLabelLogistic(C=C, solver=solver, random_state=0)
        )
    for solver in ("lbfgs", "liblinear", "newton-cg"):
        for n_jobs in (1, 2):
            models[f"OvR(LR(solver={solver!r}), n_jobs={n_jobs})"] = (
                lambda solver=solver, n_jobs=n_jobs: OneVsRestClassifier(
                    LogisticRegression(C=C, solver=solver), n_jobs=n_jobs
                )
            )
    return models


def fit_quietly(model, X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, Y)


def run_dataset(name, data_dir, repeats):
    from skbce import binary_cross_entropy

    X_train, X_test, Y_train, Y_test = load(name, data_dir)
    makers = candidates()
    rows = {}
    # First fit of each model: warms up imports, caches and worker pools,
    # and gives the objective and the test BCE.
    for label, make in makers.items():
        model = fit_quietly(make(), X_train, Y_train)
        rows[label] = {
            "time": np.inf,
            "objective": training_objective(model, X_train, Y_train),
            "bce": binary_cross_entropy(Y_test, model.predict_proba(X_test)),
        }
    for _ in range(repeats):
        for label, make in makers.items():
            model = make()
            start = time.perf_counter()
            fit_quietly(model, X_train, Y_train)
            rows[label]["time"] = min(rows[label]["time"], time.perf_counter() - start)
    # Peak memory of one more fit (tracemalloc slows a fit, so it is not
    # timed); after the warm-up, so that the one-time costs of a process's
    # first fit (imports, caches) are charged to no model.
    for label, make in makers.items():
        model = make()
        tracemalloc.start()
        fit_quietly(model, X_train, Y_train)
        rows[label]["peak"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    ovr = [label for label in rows if label.startswith("OvR")]
    fastest = min(ovr, key=lambda label: rows[label]["time"])
    kind = "sparse" if sparse.issparse(X_train) else "dense"
    print(f"\n{name}: {X_train.shape[0]} train / {X_test.shape[0]} test rows, "
          f"{X_train.shape[1]} {kind} features, {Y_train.shape[1]} labels; "
          f"fastest OvR: {fastest}")
    header = f"{'model':<42} {'fit s':>8} {'objective':>14} {'test BCE':>9} {'peak MB':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for label, row in rows.items():
        print(f"{label:<42} {row['time']:8.4f} {row['objective']:14.6f} "
              f"{row['bce']:9.5f} {row['peak']:8.2f} {row['time'] / rows[fastest]['time']:6.3f}")
    ours, ref = rows["MultiLabelLogistic() [default]"], rows[fastest]
    checks = {
        "speed >= 2x": ref["time"] / ours["time"] >= 2,
        "objective within 1e-3": ours["objective"] <= ref["objective"] * (1 + 1e-3),
        "test BCE <= +0.002": ours["bce"] <= ref["bce"] + 0.002,
        "peak memory <=": ours["peak"] <= ref["peak"],
    }
    summary = ", ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items())
    print(f"default vs fastest OvR: {ref['time'] / ours['time']:.2f}x faster, "
          f"objective rel. diff {(ours['objective'] - ref['objective']) / ref['objective']:+.2e}, "
          f"BCE diff {ours['bce'] - ref['bce']:+.5f} -- {summary}")
    return all(checks.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("SKBCE_BENCH_DATA", DEFAULT_DATA)),
                        help="directory of the .npz files (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["yeast", "scene", "bibtex"])
    args = parser.parse_args(argv)
    missing = [n for n in args.datasets if not (args.data / f"{n}.npz").is_file()]
    if missing:
        print(f"bench_fit: no data for {', '.join(missing)} in {args.data}; pass --data DIR "
              "or set SKBCE_BENCH_DATA to the directory holding the Mulan .npz files.",
              file=sys.stderr)
        return 0
    results = [run_dataset(name, args.data, args.repeats) for name in args.datasets]
    print("\nall goals met" if all(results) else "\nsome goals not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
