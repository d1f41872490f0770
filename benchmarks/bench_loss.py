"""Speed of skbce's loss kernels against peers measured in the same run.

Run:  python benchmarks/bench_loss.py [--samples 200000] [--labels 50] [--repeats 15]

Every timing is the best of ``--repeats`` calls, the candidates interleaved
round by round so that a noisy neighbour on a shared machine hits all of them
alike. Goals (from the project's issue tracker) are printed as ratios with
PASS/FAIL; the timings themselves are only meaningful relative to each other.

The data are an (n_samples, n_labels) multi-label problem: hard targets (0/1,
30% ones), soft targets (uniform in [0, 1]), probabilities uniform in (0, 1),
logits normal with scale 3. "fused" is ``bce_loss_and_gradient``: the mean
loss and its gradient from one pass (gradient array included in the time).
"close fit": soft targets with logits near the gradient's zero (logit(y) plus
noise of 0.01), where the gradient's two terms cancel and the kernel redoes
them in extra precision -- the worst case of that cost.

OpenMP threads are told to sleep, not spin, between calls
(``OMP_WAIT_POLICY=PASSIVE``, set before anything loads an OpenMP runtime):
scikit-learn ships its own libgomp, and its threads, left spinning after
HalfBinomialLoss, took CPU time from whichever candidate ran next (on two
cores the row after it was 20-40% slower).

The goals are judged on the kernel variant ``import skbce`` picks for this CPU.
A second table then times every variant this CPU runs (baseline, avx2, avx512:
see ``skbce.show_config()``), each in a fresh process with ``SKBCE_CPU`` set,
one column each, with the goals per variant (``--no-variants`` skips it).
"""

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn._loss.loss import HalfBinomialLoss

import skbce
from skbce import _kernels
from skbce._kernels import bce_pass, max_threads

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


def make_data(n_samples, n_labels, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n_samples, n_labels)
    y = (rng.random(shape) < 0.3).astype(np.float64)
    soft = rng.random(shape)
    p = rng.uniform(0.0, 1.0, shape)
    z = rng.normal(scale=3.0, size=shape)
    return y, soft, p, z


def close_fit_logits(soft, seed=1):
    """Logits near the gradient's zero for the soft targets."""
    rng = np.random.default_rng(seed)
    clipped = np.clip(soft, 1e-12, 1 - 1e-12)
    return np.log(clipped) - np.log1p(-clipped) + rng.normal(scale=0.01, size=soft.shape)


def bare_kernel(y, p, n_threads):
    """``bce_pass`` alone: the floor for the loss call.

    Exactly the call ``binary_cross_entropy`` makes for 0/1 float64 targets
    and probabilities -- the checking pass included (``found``: the kernel
    validates the values as it reads them), only the Python layer left out.
    (Until 2026-12 this row passed no ``found``, which takes the kernel's
    unchecked loops: the loss call's real floor is the checked pass, and at
    10M entries the unchecked loop was the slower of the two -- 29.0 against
    22.4 ms, one thread, AVX-512 -- so the row read slower than the call.)
    """
    empty, empty2 = np.empty(0), np.empty((0, 0))
    eps = float(np.finfo(np.float64).eps)
    found = np.zeros(2, dtype=np.intp)
    return lambda: bce_pass(
        y, p, empty, empty, empty, 1.0, False, eps, empty2, empty2, 1.0, n_threads, True, found
    )


def candidates_for(y, soft, p, z, n_threads):
    half_binomial = HalfBinomialLoss()
    z_close = close_fit_logits(soft)
    data = {
        "f64": (y, soft, p, z, z_close),
        "f32": tuple(a.astype(np.float32) for a in (y, soft, p, z, z_close)),
    }
    y8 = y.astype(np.int8)
    loss, fused = skbce.binary_cross_entropy, skbce.bce_loss_and_gradient
    candidates = {
        "memory pass (y + p).sum()": lambda: (y + p).sum(),
        "numpy formula": lambda: -np.mean(
            y * np.log(p + EPS) + (1 - y) * np.log(1 - p + EPS)
        ),
        "sklearn HalfBinomial.loss_gradient": lambda: half_binomial.loss_gradient(
            y.reshape(-1), z.reshape(-1), n_threads=n_threads
        ),
        "bare kernel bce_pass f64": bare_kernel(y, p, n_threads),
    }
    for precision, (y_, soft_, p_, z_, close_) in data.items():
        candidates.update({
            f"loss {precision}": lambda y_=y_, p_=p_: loss(y_, p_),
            f"loss {precision} int8 targets": lambda p_=p_: loss(y8, p_),
            f"loss {precision} soft targets": lambda s_=soft_, p_=p_: loss(s_, p_),
            f"fused {precision}": lambda y_=y_, z_=z_: fused(y_, z_, from_logits=True),
            f"fused {precision} soft targets": (
                lambda s_=soft_, z_=z_: fused(s_, z_, from_logits=True)),
            f"fused {precision} soft targets, close fit": (
                lambda s_=soft_, c_=close_: fused(s_, c_, from_logits=True)),
            f"fused probs {precision}": lambda y_=y_, p_=p_: fused(y_, p_),
            f"fused probs {precision} soft targets": lambda s_=soft_, p_=p_: fused(s_, p_),
        })
    return candidates


def check_agreement(y, soft, p, z, n_threads):
    """The timed calls compute the same numbers as the peers."""
    ours = skbce.binary_cross_entropy(y, p)
    numpy_value = -np.mean(y * np.log(p + EPS) + (1 - y) * np.log(1 - p + EPS))
    assert abs(ours - numpy_value) < 1e-9 * abs(numpy_value), (ours, numpy_value)
    assert abs(skbce.binary_cross_entropy(y.astype(np.int8), p) - ours) <= 1e-12 * ours
    assert abs(bare_kernel(y, p, n_threads)() / y.size - ours) <= 1e-12 * ours
    soft_value = -np.mean(soft * np.log(p) + (1 - soft) * np.log1p(-p))
    assert abs(skbce.binary_cross_entropy(soft, p) - soft_value) < 1e-9 * soft_value
    loss, grad = skbce.bce_loss_and_gradient(y, z, from_logits=True)
    sk_loss, sk_grad = HalfBinomialLoss().loss_gradient(y.reshape(-1), z.reshape(-1))
    assert abs(loss - sk_loss.mean()) < 1e-9 * sk_loss.mean()
    assert np.allclose(grad.reshape(-1) * y.size, sk_grad, rtol=1e-9, atol=1e-12)
    loss32 = skbce.binary_cross_entropy(y.astype(np.float32), p.astype(np.float32))
    assert abs(loss32 - ours) < 1e-4 * ours, (loss32, ours)


def goals_for(best):
    """The goals as (name, value, direction, target), from one set of timings."""
    loss64 = best["loss f64"]

    def speedup(slow, fast):
        return best[slow] / best[fast]

    goals = [
        ("loss vs numpy formula (speed-up)", speedup("numpy formula", "loss f64"), ">=", 4.0),
        ("loss vs memory pass (time ratio)",
         loss64 / best["memory pass (y + p).sum()"], "<=", 1.5),
        ("fused vs HalfBinomialLoss (speed-up)",
         speedup("sklearn HalfBinomial.loss_gradient", "fused f64"), ">=", 2.5),
    ]
    for what in ["loss", "loss {} soft targets", "fused", "fused {} soft targets",
                 "fused {} soft targets, close fit", "fused probs",
                 "fused probs {} soft targets"]:
        slow, fast = (what.format(p) if "{}" in what else f"{what} {p}" for p in ("f64", "f32"))
        label = what.replace(" {}", "")
        goals.append((f"f32 vs f64: {label} (speed-up)", speedup(slow, fast), ">=", 1.6))
    for precision in ("f64", "f32"):
        goals.append((
            f"int8 vs float targets: loss {precision} (time ratio)",
            best[f"loss {precision} int8 targets"] / best[f"loss {precision}"], "<=", 1.1,
        ))
    return goals


def passes(value, direction, target):
    return value >= target if direction == ">=" else value <= target


def report(best, shape, n_threads):
    width = max(len(name) for name in best)
    print(f"{shape[0]:,} x {shape[1]} = {shape[0] * shape[1]:,} entries, "
          f"{n_threads} OpenMP threads; f64/f32: dtype of predictions (and float targets); "
          f"kernels: {_kernels.variant}")
    print(f"{'candidate':<{width}}  {'best ms':>8}")
    for name, seconds in best.items():
        print(f"{name:<{width}}  {seconds * 1e3:8.2f}")
    loss64 = best["loss f64"]
    goals = goals_for(best)
    print()
    print(f"{'loss f64 / bare kernel (time ratio)':<44}  {loss64 / best['bare kernel bce_pass f64']:6.2f}")
    print()
    goal_width = max(len(g[0]) for g in goals)
    all_pass = True
    for name, value, direction, target in goals:
        ok = passes(value, direction, target)
        all_pass &= ok
        print(f"{name:<{goal_width}}  {value:6.2f}  goal {direction} {target:<4}  "
              f"{'PASS' if ok else 'FAIL'}")
    return all_pass


def time_variant(variant, args):
    """This benchmark's timings with ``SKBCE_CPU=variant``, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "best.json")
        command = [sys.executable, os.path.abspath(__file__), "--samples", str(args.samples),
                   "--labels", str(args.labels), "--repeats", str(args.repeats), "--json", path]
        subprocess.run(command, check=True, env=dict(os.environ, SKBCE_CPU=variant))
        with open(path) as file:
            return json.load(file)


def report_variants(per_variant):
    """Best ms per candidate and the goals, one column per kernel variant."""
    variants = list(per_variant)
    names = list(per_variant[variants[0]])
    goals = {v: goals_for(best) for v, best in per_variant.items()}
    width = max(len(name) for name in names + [g[0] for g in goals[variants[0]]])
    print("per kernel variant (SKBCE_CPU=...; one process each): best ms, then goals")
    print(f"{'candidate':<{width}}" + "".join(f"  {v:>13}" for v in variants))
    for name in names:
        print(f"{name:<{width}}" + "".join(
            f"  {per_variant[v][name] * 1e3:13.2f}" for v in variants))
    print()
    for i, (name, _, direction, target) in enumerate(goals[variants[0]]):
        cells = []
        for v in variants:
            value = goals[v][i][1]
            cells.append(f"{value:6.2f} {'PASS' if passes(value, direction, target) else 'FAIL'}")
        print(f"{name:<{width}}" + "".join(f"  {c:>13}" for c in cells)
              + f"  goal {direction} {target}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True,
                        help="also time every kernel variant this CPU runs, one column each")
    parser.add_argument("--json", help=argparse.SUPPRESS)  # a variant's run: timings to a file
    args = parser.parse_args()
    y, soft, p, z = make_data(args.samples, args.labels)
    n_threads = max_threads()
    check_agreement(y, soft, p, z, n_threads)
    best = best_times(candidates_for(y, soft, p, z, n_threads), args.repeats)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(best, file)
        return
    report(best, y.shape, n_threads)
    variants = [v for v in _kernels.supported_variants() if v in _kernels.LEVELS]
    if args.variants and len(variants) > 1:
        print()
        report_variants({v: time_variant(v, args) for v in variants})


if __name__ == "__main__":
    main()
