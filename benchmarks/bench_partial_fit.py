"""Passes of ``partial_fit`` over the chunks of a data set against ``fit`` on it.

Run:  python benchmarks/bench_partial_fit.py [--passes 20] [--chunks 6] [--C 1 0.01]
          [--repeats 3] [--shapes ...]

For each data set, ``MultiLabelLogistic(C=C, random_state=0)`` is given
``--passes`` passes over the data cut into ``--chunks`` chunks of uneven
sizes (cut points drawn at random, seeded), the chunks in a new random
order every pass, each call told ``n_samples_per_pass`` (the rows of the
data set), all other settings default, under three memory settings:

* ``new``: scikit-learn's default ``working_memory``: Newton passes with the
  exact Hessians where they fit the budget (``exact``), else with the
  Hessians of a sample of rows (``s0.31``: the share of rows sampled), else
  SGD (``sgd``);
* ``smp``: ``working_memory`` set to a quarter of the exact Hessians' bytes
  (or the default, if smaller): the sampled Hessians, on a sample as large
  as that allows (the column says which ran, as above);
* ``old``: ``working_memory`` below any Hessian's or sample's size, which
  leaves partial_fit with one epoch of mini-batch SGD per chunk (as it was
  before the Newton passes).

``gap %`` is the training objective of the final model over that of
``fit(X, Y)`` at ``tol=1e-8`` (the same ``C``), minus one, in percent; the
objective is ``fit``'s, ``sum_j [C sum_i loss_ij + ||w_j||^2 / 2]``,
computed here from :func:`skbce.binary_cross_entropy`. Times are over the
best time of one ``fit`` at default settings (``tol=1e-4``, ``fit s``):
``pass`` the mean time of a pass (all its calls) over the ``--passes``
passes, and ``new max`` the costliest pass of ``new`` (the first Newton
passes, before labels converge and leave); each the best of ``--repeats``
interleaved rounds.

Data (the Mulan sets need /work/shared/data or ``--data``; skipped when
absent):

* ``yeast``, ``scene``: their standard training rows; ``emotions``: all
  rows. Features standardised (mean 0, variance 1 over the rows used).
* ``digits-std`` / ``digits/16``: scikit-learn's 8x8 digits (1797 x 64),
  standardised, or divided by 16 (in [0, 1]); 10 labels, one per digit
  (one-hot, so each label is "this digit or not").
* ``gauss``: seeded, 3600 x 30 standard normal features, 5 labels from a
  random linear model plus logistic noise.
* ``tall``: seeded, 20000 x 50 correlated features (5 factors plus noise,
  standardised), 10 labels from a sparse random linear model plus logistic
  noise at positive rates from 40 % to 2 % (a shape not looked at while
  writing the method).
* ``bibtex``: all 7395 rows, CSR, 1836 binary features, 159 labels: its
  Hessians (4.3 GB) are beyond the default budget, which holds a sample of
  most of its rows.
"""

import argparse
import os
import time

import numpy as np
from scipy import sparse
from sklearn import config_context, get_config
from sklearn.datasets import load_digits

from skbce import MultiLabelLogistic, binary_cross_entropy

DATA = "/work/shared/data"
# working_memory (MiB) below any Hessian's or sample's size: partial_fit takes SGD.
OLD_MEMORY = 1e-6


def _standardised(X):
    X = X - X.mean(axis=0)
    scale = X.std(axis=0)
    return X / np.where(scale > 0, scale, 1.0)


def _mulan(name, data_dir):
    path = os.path.join(data_dir, f"{name}.npz")
    if not os.path.exists(path):
        return None
    with np.load(path) as f:
        if "X_data" in f:  # CSR, binary features: as they are
            return sparse.csr_matrix((f["X_data"], f["X_indices"], f["X_indptr"]),
                                     shape=tuple(f["X_shape"])), f["Y"].astype(np.int8)
        X, Y = f["X"], f["Y"]
        if "train_mask" in f:
            X, Y = X[f["train_mask"]], Y[f["train_mask"]]
    return _standardised(X), Y.astype(np.int8)


def _digits(scaled):
    X, y = load_digits(return_X_y=True)
    Y = (y[:, None] == np.arange(10)).astype(np.int8)
    return (X / 16.0 if scaled else _standardised(X)), Y


def _gauss():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3600, 30))
    Y = (X @ rng.normal(size=(30, 5)) + rng.logistic(size=(3600, 5)) > 0).astype(np.int8)
    return X, Y


def _tall():
    rng = np.random.default_rng(11)
    n, d, k = 20_000, 50, 10
    X = _standardised(rng.normal(size=(n, 5)) @ rng.normal(size=(5, d))
                      + rng.normal(size=(n, d)))
    W = rng.normal(size=(d, k)) * (rng.uniform(size=(d, k)) < 0.3)
    Z = X @ W
    Z /= Z.std(axis=0)
    rates = np.geomspace(0.4, 0.02, k)
    Z += np.log(rates / (1 - rates))
    return X, (Z + rng.logistic(size=Z.shape) > 0).astype(np.int8)


def datasets(names, data_dir):
    makers = {
        "yeast": lambda: _mulan("yeast", data_dir),
        "emotions": lambda: _mulan("emotions", data_dir),
        "scene": lambda: _mulan("scene", data_dir),
        "digits-std": lambda: _digits(False),
        "digits/16": lambda: _digits(True),
        "gauss": _gauss,
        "tall": _tall,
        "bibtex": lambda: _mulan("bibtex", data_dir),
    }
    for name in names:
        data = makers[name]()
        if data is None:
            print(f"{name}: not found in {data_dir}, skipped")
            continue
        yield name, data


def objective(model, X, Y, C):
    """fit's objective, sum over labels of C * sum_i loss + ||w||^2 / 2."""
    logits = np.asarray(X @ model.coef_.T) + model.intercept_
    loss = binary_cross_entropy(Y, logits, from_logits=True, axis=0, reduction="sum")
    return float(np.sum(C * loss + 0.5 * np.sum(model.coef_ ** 2, axis=1)))


def chunk_rows(n, n_chunks, rng):
    """Uneven chunks: cut points at random, each chunk at least a fifth of the mean."""
    while True:
        cuts = np.sort(rng.choice(np.arange(1, n), size=n_chunks - 1, replace=False))
        sizes = np.diff(np.concatenate([[0], cuts, [n]]))
        if sizes.min() >= n / n_chunks / 5:
            return np.split(np.arange(n), cuts)


def passes(X, Y, C, chunks, n_passes, working_memory=None):
    """The model after ``n_passes``, and the mean and the longest time of a pass."""
    model = MultiLabelLogistic(C=C, random_state=0)
    order = np.random.default_rng(1)
    times = []
    with config_context(working_memory=working_memory or get_config()["working_memory"]):
        for _ in range(n_passes):
            start = time.perf_counter()
            for i in order.permutation(len(chunks)):
                model.partial_fit(X[chunks[i]], Y[chunks[i]], n_samples_per_pass=X.shape[0])
            times.append(time.perf_counter() - start)
    return model, np.mean(times), np.max(times)


def method(model):
    newton = model._newton
    if newton is None:
        return "sgd"
    return "exact" if not hasattr(newton, "rate") else f"s{newton.rate:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--C", type=float, nargs="+", default=[1.0, 0.01])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--shapes", nargs="+", default=[
        "yeast", "emotions", "scene", "digits-std", "digits/16", "gauss", "tall", "bibtex"])
    args = parser.parse_args()
    header = (f"{'data':<11}{'n x d, k':>16}{'C':>6}{'old gap %':>10}{'new gap %':>10}"
              f"{'new':>7}{'smp gap %':>10}{'smp':>7}{'old pass':>9}{'new pass':>9}"
              f"{'new max':>8}{'smp pass':>9}{'fit s':>8}")
    print(f"{args.passes} passes over {args.chunks} uneven chunks, shuffled each pass; "
          "times per pass over one fit's")
    print(header)
    print("-" * len(header))
    for name, (X, Y) in datasets(args.shapes, args.data):
        chunks = chunk_rows(X.shape[0], args.chunks, np.random.default_rng(0))
        m = X.shape[1] + 1
        # A quarter of the exact Hessians' bytes: a sample of rows must do.
        small = min(get_config()["working_memory"], Y.shape[1] * m * m * 32 / 4 / 2**20)
        for C in args.C:
            reference = objective(MultiLabelLogistic(C=C, tol=1e-8).fit(X, Y), X, Y, C)
            fit_s = np.inf
            runs = {"old": OLD_MEMORY, "new": None, "smp": small}
            times = {key: (np.inf, np.inf) for key in runs}
            models = {}
            for _ in range(args.repeats):
                start = time.perf_counter()
                MultiLabelLogistic(C=C).fit(X, Y)
                fit_s = min(fit_s, time.perf_counter() - start)
                for key, memory in runs.items():
                    models[key], mean, longest = passes(X, Y, C, chunks, args.passes, memory)
                    times[key] = (min(times[key][0], mean), min(times[key][1], longest))
            assert models["old"]._newton is None
            gap = {key: 100 * (objective(model, X, Y, C) / reference - 1)
                   for key, model in models.items()}
            shape = f"{X.shape[0]}x{X.shape[1]}, {Y.shape[1]}"
            print(f"{name:<11}{shape:>16}{C:>6g}{gap['old']:>10.3f}{gap['new']:>10.4f}"
                  f"{method(models['new']):>7}{gap['smp']:>10.4f}{method(models['smp']):>7}"
                  f"{times['old'][0] / fit_s:>9.2f}{times['new'][0] / fit_s:>9.2f}"
                  f"{times['new'][1] / fit_s:>8.2f}{times['smp'][0] / fit_s:>9.2f}"
                  f"{fit_s:>8.4f}", flush=True)


if __name__ == "__main__":
    main()
