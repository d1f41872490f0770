"""ONNX export: conversion time, and onnxruntime against skbce on a 1 000-row batch.

Run:  python benchmarks/bench_onnx.py [--rows 1000] [--rounds 30] [--data DIR]

Needs the ``onnx`` extra. For ``Pipeline(StandardScaler(), MultiLabelLogistic())``
fitted on each shared Mulan set (emotions, yeast, scene from ``../shared/data``
beside the repository, ``--data DIR`` or ``SKBCE_BENCH_DATA``; a seeded
synthetic set of the same kind when absent) and on a synthetic set of 200
labels, it prints:

* ``convert``: ``skl2onnx.to_onnx`` of the fitted pipeline plus the creation
  of its ``onnxruntime.InferenceSession`` (what a serving process pays once),
  best of 5;
* ``predict_proba``: the pipeline's ``predict_proba`` on ``--rows`` rows, and
  ``onnxruntime``: one ``session.run`` on the same rows (label and
  probabilities), float32 and float64; each the median over ``--rounds``
  rounds, the two calls back to back in alternating order, and
  ``ort / skbce`` the median over rounds of their ratio within a round (so a
  slow phase of a shared machine hits both alike);
* ``max |dp|``: the largest difference between the two probability arrays.

onnxruntime runs with its default thread pool, skbce with its defaults (the
StandardScaler and the product run in NumPy/BLAS).
"""

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skbce.onnx  # noqa: F401  (registers the converters)
from skbce import MultiLabelLogistic

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED = {"emotions": (593, 72, 6), "yeast": (2417, 103, 14), "scene": (2407, 294, 6)}


def synthetic(n_samples, n_features, n_labels, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 5, n_features)
    W = rng.normal(size=(n_features, n_labels)) / np.sqrt(n_features)
    Y = (X @ W + rng.normal(size=(n_samples, n_labels)) > 0.5).astype(np.int64)
    return X, Y


def load(name, data_dir):
    path = data_dir / f"{name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["X"].astype(np.float64), data["Y"].astype(np.int64), name
    return (*synthetic(*SHARED[name]), f"{name} (synthetic stand-in: no {path})")


def batch(X, rows, seed=1):
    """``rows`` rows of X (drawn with replacement when X has fewer)."""
    rng = np.random.default_rng(seed)
    return X[rng.choice(len(X), rows, replace=len(X) < rows)]


def best_convert(model, X, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        graph = to_onnx(model, X[:1])
        session = ort.InferenceSession(graph.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        times.append(time.perf_counter() - start)
    return min(times), session


def compare(model, session, X, rounds):
    name = session.get_inputs()[0].name
    ours, theirs, ratios = [], [], []
    for i in range(rounds):
        timings = {}
        order = ("skbce", "ort") if i % 2 == 0 else ("ort", "skbce")
        for who in order:
            start = time.perf_counter()
            if who == "skbce":
                proba = model.predict_proba(X)
            else:
                _, onnx_proba = session.run(None, {name: X})
            timings[who] = time.perf_counter() - start
        ours.append(timings["skbce"])
        theirs.append(timings["ort"])
        ratios.append(timings["ort"] / timings["skbce"])
    gap = float(np.max(np.abs(onnx_proba - proba)))
    return statistics.median(ours), statistics.median(theirs), statistics.median(ratios), gap


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("SKBCE_BENCH_DATA", DEFAULT_DATA)))
    args = parser.parse_args(argv)
    sets = [load(name, args.data) for name in SHARED]
    sets.append((*synthetic(5000, 100, 200), "synthetic 5000 x 100, 200 labels"))
    print(f"bench_onnx: {args.rows}-row batches, {args.rounds} rounds, onnxruntime "
          f"{ort.__version__}, {os.cpu_count()} CPUs")
    header = (f"{'data':<34} {'dtype':<8} {'convert ms':>10} {'predict_proba ms':>17} "
              f"{'onnxruntime ms':>15} {'ort / skbce':>12} {'max |dp|':>9}")
    print(header)
    print("-" * len(header))
    for X, Y, label in sets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make_pipeline(StandardScaler(), MultiLabelLogistic()).fit(X, Y)
        for dtype in (np.float32, np.float64):
            Xb = batch(X, args.rows).astype(dtype)
            convert, session = best_convert(model, Xb)
            ours, theirs, ratio, gap = compare(model, session, Xb, args.rounds)
            print(f"{label:<34} {np.dtype(dtype).name:<8} {convert * 1e3:>10.1f} "
                  f"{ours * 1e3:>17.3f} {theirs * 1e3:>15.3f} {ratio:>12.2f} {gap:>9.1e}")


if __name__ == "__main__":
    main()
