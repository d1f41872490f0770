"""Pruned models: size and precision@k of MultiLabelLogistic.sparsify(threshold) vs the dense model.

Run:  python benchmarks/bench_prune.py [--shapes eurlex wide] [--scale 1.0] [--C 10]
                                       [--keep 0.10 0.05 0.03] [--seed 0]

Shapes (seeded, :func:`shapes.eurlex_like`; float32 tf-idf ``X``, CSR targets):

* ``eurlex`` -- EURLex-4K-like: 15 000 training and 4 000 test documents,
  5 000 features, 3 946 labels.
* ``wide`` -- the issue's wider shape: 20 000 training documents, 20 000
  features, 5 000 labels (``--scale`` times the rows of both).

Each shape is fitted once (``MultiLabelLogistic(C=C)``, float32, so ``coef_`` is
float32), then pruned with the global threshold that keeps the fraction
``--keep`` of the coefficients (the ``1 - keep`` quantile of ``|coef_|``;
DiSMEC prunes with an absolute threshold, which this picks for a target size).
``bytes`` is the CSR ``coef_``'s data, indices and indptr against the dense
``coef_``'s bytes; P@1 and P@5 are the precision of the top 1 and 5 scores of
each test document (documents with no label count as 0, as in the extreme
classification literature), ``dP`` the pruned minus the dense model's.
The fit's time (a loaded machine's) is printed for orientation only. One
run's tables are in the user guide (docs/user_guide.rst, "Pruning").
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import eurlex_like  # noqa: E402

from skbce import MultiLabelLogistic  # noqa: E402

SHAPES = {
    "eurlex": lambda seed, scale: eurlex_like(seed=seed, scale=scale),
    "wide": lambda seed, scale: eurlex_like(seed=seed + 1, scale=4 / 3 * scale,
                                            n_labels=5000, n_features=20_000, n_topics=500),
}


def precision_at(scores, Y, ks=(1, 5)):
    """Mean precision@k of each row's top-k ``scores`` against the sparse targets ``Y``."""
    Y = sparse.csr_matrix(Y)
    k_max = max(ks)
    top = np.argpartition(-scores, k_max - 1, axis=1)[:, :k_max]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    rows = np.repeat(np.arange(Y.shape[0]), k_max)
    hits = np.asarray(Y[rows, top.ravel()]).reshape(top.shape) != 0
    return {k: float(hits[:, :k].sum(axis=1).mean() / k) for k in ks}


def coef_bytes(coef):
    if sparse.issparse(coef):
        return coef.data.nbytes + coef.indices.nbytes + coef.indptr.nbytes
    return coef.nbytes


def run_shape(name, seed, scale, C, keeps):
    X_train, X_test, Y_train, Y_test = SHAPES[name](seed, scale)
    X_train, X_test = X_train.astype(np.float32), X_test.astype(np.float32)
    print(f"\n{name}: X {X_train.shape} ({X_train.nnz / X_train.shape[0]:.1f} nnz a row), "
          f"{Y_train.shape[1]} labels, {Y_train.nnz / Y_train.shape[0]:.2f} labels a row, "
          f"{X_test.shape[0]} test rows", flush=True)
    start = time.perf_counter()
    model = MultiLabelLogistic(C=C).fit(X_train, Y_train)
    fit_time = time.perf_counter() - start
    dense_bytes = coef_bytes(model.coef_)
    dense = precision_at(model.decision_function(X_test), Y_test)
    print(f"fit {fit_time:.1f} s, coef_ {model.coef_.dtype} {dense_bytes / 2**20:.1f} MiB",
          flush=True)
    print(f"| {'model':<22} | {'nnz':>10} | {'bytes':>9} | {'P@1':>6} | {'P@5':>6} | "
          f"{'dP@1':>7} | {'dP@5':>7} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 11}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 9}|")
    print(f"| {'dense':<22} | {model.coef_.size:>10} | {1.0:>9.3f} | {dense[1]:>6.4f} | "
          f"{dense[5]:>6.4f} | {0:>7.4f} | {0:>7.4f} |")
    magnitudes = np.abs(model.coef_)
    for keep in keeps:
        threshold = float(np.quantile(magnitudes, 1 - keep))
        pruned = MultiLabelLogistic(C=C)
        pruned.__dict__.update(model.__dict__)
        pruned.sparsify(threshold)
        scores = pruned.decision_function(X_test)
        p = precision_at(scores, Y_test)
        label = f"keep {keep:.0%} (|w|>={threshold:.3g})"
        print(f"| {label:<22} | {pruned.coef_.nnz:>10} | "
              f"{coef_bytes(pruned.coef_) / dense_bytes:>9.3f} | {p[1]:>6.4f} | {p[5]:>6.4f} | "
              f"{p[1] - dense[1]:>+7.4f} | {p[5] - dense[5]:>+7.4f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["eurlex", "wide"], choices=list(SHAPES))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--C", type=float, default=10.0)
    parser.add_argument("--keep", type=float, nargs="+", default=[0.10, 0.05, 0.03, 0.02])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.shapes:
        run_shape(name, args.seed, args.scale, args.C, args.keep)


if __name__ == "__main__":
    main()
