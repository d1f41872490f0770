"""Speed of skbce's loss kernels against peers measured in the same run.

Run:  python benchmarks/bench_loss.py [--entries 10000000] [--repeats 15]

Every timing is the best of ``--repeats`` calls, the candidates interleaved
round by round so that a noisy neighbour on a shared machine hits all of them
alike. Goals (from the project's issue tracker) are printed as ratios with
PASS/FAIL; the timings themselves are only meaningful relative to each other.
"""

import argparse
import time

import numpy as np
from sklearn._loss.loss import HalfBinomialLoss

import skbce
from skbce._bce import bce_pass, max_threads

EPS = 1e-15


def best_times(candidates, repeats):
    """Best wall time in seconds of each callable, measured round-robin."""
    best = {name: np.inf for name in candidates}
    for function in candidates.values():
        function()  # warm up caches, page in outputs, start the thread pool
    for _ in range(repeats):
        for name, function in candidates.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def make_data(n_entries, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n_entries) < 0.3).astype(np.float64)
    p = rng.uniform(0.0, 1.0, n_entries)
    z = rng.normal(scale=3.0, size=n_entries)
    return y, p, z


def bare_kernel(y, p, n_threads):
    """``bce_pass`` alone on inputs known valid: the floor for the loss.

    The arguments ``binary_cross_entropy`` passes for 0/1 float64 targets and
    probabilities, minus the validation (``found``) and the Python layer.
    """
    y2, p2 = y.reshape(-1, 1), p.reshape(-1, 1)
    empty, empty2 = np.empty(0), np.empty((0, 0))
    eps = float(np.finfo(np.float64).eps)
    return lambda: bce_pass(
        y2, p2, empty, empty, empty, 1.0, False, eps, empty2, empty2, 1.0, n_threads, True
    )


def candidates_for(y, p, z, n_threads):
    half_binomial = HalfBinomialLoss()
    y32, p32 = y.astype(np.float32), p.astype(np.float32)
    y8 = y.astype(np.int8)
    return {
        "memory pass (y + p).sum()": lambda: (y + p).sum(),
        "bare kernel bce_pass float64": bare_kernel(y, p, n_threads),
        "skbce loss float64, int8 targets": lambda: skbce.binary_cross_entropy(y8, p),
        "numpy formula": lambda: -np.mean(
            y * np.log(p + EPS) + (1 - y) * np.log(1 - p + EPS)
        ),
        "skbce loss float64": lambda: skbce.binary_cross_entropy(y, p),
        "skbce loss float32": lambda: skbce.binary_cross_entropy(y32, p32),
        "sklearn HalfBinomial.loss_gradient": lambda: half_binomial.loss_gradient(
            y, z, n_threads=n_threads
        ),
        "skbce loss+gradient (logits)": lambda: skbce.bce_loss_and_gradient(
            y, z, from_logits=True
        ),
    }


def check_agreement(y, p, z):
    """The timed calls compute the same numbers as the peers."""
    ours = skbce.binary_cross_entropy(y, p)
    numpy_value = -np.mean(y * np.log(p + EPS) + (1 - y) * np.log(1 - p + EPS))
    assert ours == skbce.binary_cross_entropy(y.astype(np.int8), p)
    assert abs(bare_kernel(y, p, max_threads())() / len(y) - ours) <= 1e-12 * ours
    loss, grad = skbce.bce_loss_and_gradient(y, z, from_logits=True)
    sk_loss, sk_grad = HalfBinomialLoss().loss_gradient(y, z)
    assert abs(ours - numpy_value) < 1e-9 * abs(numpy_value), (ours, numpy_value)
    assert abs(loss - sk_loss.mean()) < 1e-9 * sk_loss.mean()
    assert np.allclose(grad * len(y), sk_grad, rtol=1e-9, atol=1e-12)


def report(best, n_entries, n_threads):
    width = max(len(name) for name in best)
    print(f"{n_entries:,} entries, float64 unless noted, {n_threads} OpenMP threads")
    print(f"{'candidate':<{width}}  {'best ms':>8}")
    for name, seconds in best.items():
        print(f"{name:<{width}}  {seconds * 1e3:8.2f}")
    loss64 = best["skbce loss float64"]
    goals = [
        ("loss vs numpy formula (speed-up)", best["numpy formula"] / loss64, ">=", 4.0),
        ("loss vs memory pass (time ratio)", loss64 / best["memory pass (y + p).sum()"], "<=", 1.5),
        (
            "loss+gradient vs HalfBinomialLoss (speed-up)",
            best["sklearn HalfBinomial.loss_gradient"] / best["skbce loss+gradient (logits)"],
            ">=",
            2.5,
        ),
        ("float32 vs float64 loss (speed-up)", loss64 / best["skbce loss float32"], ">=", 1.6),
    ]
    bare = best["bare kernel bce_pass float64"]
    overheads = [
        ("loss float64 / bare kernel (time ratio)", loss64 / bare),
        ("loss float64 int8 targets / bare kernel (time ratio)",
         best["skbce loss float64, int8 targets"] / bare),
    ]
    print()
    for name, value in overheads:
        print(f"{name:<52}  {value:6.2f}")
    print()
    goal_width = max(len(g[0]) for g in goals)
    all_pass = True
    for name, value, direction, target in goals:
        ok = value >= target if direction == ">=" else value <= target
        all_pass &= ok
        print(f"{name:<{goal_width}}  {value:6.2f}  goal {direction} {target:<4}  {'PASS' if ok else 'FAIL'}")
    return all_pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    y, p, z = make_data(args.entries)
    n_threads = max_threads()
    check_agreement(y, p, z)
    best = best_times(candidates_for(y, p, z, n_threads), args.repeats)
    report(best, args.entries, n_threads)


if __name__ == "__main__":
    main()
