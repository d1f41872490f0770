"""Speed of skbce's loss kernels against peers measured in the same run.

Run:  python benchmarks/bench_loss.py [--samples 200000] [--labels 50] [--repeats 25]

The candidates are called round by round (``--repeats`` rounds), each a
float64 call and its float32 twin back to back, in alternating order, so that
a noisy neighbour on a shared machine hits both alike. The table gives each
candidate's best and median time. A goal is a ratio of two candidates: its
value is the *median over the rounds of the ratio within each round*, and the
ratio of the best times is printed beside it. On this project's shared 2-core
VMs the speed of a ~10 ms call drifts in phases of seconds (the best of 30
back-to-back calls of one C loop ranged from 8.5 to 11.4 ms in three runs a
minute apart), so the best of each candidate, taken in different phases, can
move a ratio by 20-30 %; a ratio within a round is taken in one phase.
Goals (from the project's issue tracker) are printed with PASS/FAIL; the
timings themselves are only meaningful relative to each other.

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


def timing_order(names):
    """The candidates in calling order: each float64 one beside its float32 twin."""
    order = []
    for name in names:
        if name in order:
            continue
        order.append(name)
        twin = name.replace("f64", "f32")
        if "f64" in name and twin in names and twin not in order:
            order.append(twin)
    return order


def round_times(candidates, repeats):
    """Wall times in seconds of each callable, one per round, as arrays.

    Each round calls every candidate once in ``timing_order``; a float64
    candidate and its float32 twin swap places every other round, so that
    neither is always the one called first.
    """
    names = list(candidates)
    order = timing_order(names)
    times = {name: [] for name in names}
    for function in candidates.values():
        function()  # warm up caches, page in outputs, start the thread pool
    for round_ in range(repeats):
        calls = list(order)
        if round_ % 2:
            for i, name in enumerate(calls[:-1]):
                if calls[i + 1] == name.replace("f64", "f32") != name:
                    calls[i], calls[i + 1] = calls[i + 1], name
        for name in calls:
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(times[name]) for name in names}


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


def goals_for(times):
    """The goals as (name, value, ratio of bests, direction, target).

    ``times``: each candidate's per-round times. A goal's value is the median
    over the rounds of its ratio within each round.
    """
    def ratio(numerator, denominator):
        within = np.median(times[numerator] / times[denominator])
        return within, times[numerator].min() / times[denominator].min()

    goals = [
        ("loss vs numpy formula (speed-up)", *ratio("numpy formula", "loss f64"), ">=", 4.0),
        ("loss vs memory pass (time ratio)",
         *ratio("loss f64", "memory pass (y + p).sum()"), "<=", 1.5),
        ("fused vs HalfBinomialLoss (speed-up)",
         *ratio("sklearn HalfBinomial.loss_gradient", "fused f64"), ">=", 2.5),
    ]
    for what in ["loss", "loss {} soft targets", "fused", "fused {} soft targets",
                 "fused {} soft targets, close fit", "fused probs",
                 "fused probs {} soft targets"]:
        slow, fast = (what.format(p) if "{}" in what else f"{what} {p}" for p in ("f64", "f32"))
        label = what.replace(" {}", "")
        goals.append((f"f32 vs f64: {label} (speed-up)", *ratio(slow, fast), ">=", 1.6))
    for precision in ("f64", "f32"):
        goals.append((
            f"int8 vs float targets: loss {precision} (time ratio)",
            *ratio(f"loss {precision} int8 targets", f"loss {precision}"), "<=", 1.1,
        ))
    return goals


def passes(value, direction, target):
    return value >= target if direction == ">=" else value <= target


def report(times, shape, n_threads):
    width = max(len(name) for name in times)
    print(f"{shape[0]:,} x {shape[1]} = {shape[0] * shape[1]:,} entries, "
          f"{n_threads} OpenMP threads; f64/f32: dtype of predictions (and float targets); "
          f"kernels: {_kernels.variant}; {len(times['loss f64'])} rounds")
    print(f"{'candidate':<{width}}  {'best ms':>8}  {'median ms':>9}")
    for name, seconds in times.items():
        print(f"{name:<{width}}  {seconds.min() * 1e3:8.2f}  {np.median(seconds) * 1e3:9.2f}")
    bare = np.median(times["loss f64"] / times["bare kernel bce_pass f64"])
    goals = goals_for(times)
    print()
    print(f"{'loss f64 / bare kernel (time ratio)':<44}  {bare:6.2f}")
    print()
    goal_width = max(len(g[0]) for g in goals)
    print(f"{'goal: median ratio within a round':<{goal_width}}  {'value':>6}  "
          f"{'bests':>6}")
    all_pass = True
    for name, value, of_bests, direction, target in goals:
        ok = passes(value, direction, target)
        all_pass &= ok
        print(f"{name:<{goal_width}}  {value:6.2f}  {of_bests:6.2f}  goal {direction} "
              f"{target:<4}  {'PASS' if ok else 'FAIL'}")
    return all_pass


def time_variant(variant, args):
    """This benchmark's per-round times with ``SKBCE_CPU=variant``, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "times.json")
        command = [sys.executable, os.path.abspath(__file__), "--samples", str(args.samples),
                   "--labels", str(args.labels), "--repeats", str(args.repeats), "--json", path]
        subprocess.run(command, check=True, env=dict(os.environ, SKBCE_CPU=variant))
        with open(path) as file:
            return {name: np.array(seconds) for name, seconds in json.load(file).items()}


def report_variants(per_variant):
    """Best ms per candidate and the goals, one column per kernel variant."""
    variants = list(per_variant)
    names = list(per_variant[variants[0]])
    goals = {v: goals_for(times) for v, times in per_variant.items()}
    width = max(len(name) for name in names + [g[0] for g in goals[variants[0]]])
    print("per kernel variant (SKBCE_CPU=...; one process each): best ms, then goals "
          "(median ratio within a round)")
    print(f"{'candidate':<{width}}" + "".join(f"  {v:>13}" for v in variants))
    for name in names:
        print(f"{name:<{width}}" + "".join(
            f"  {per_variant[v][name].min() * 1e3:13.2f}" for v in variants))
    print()
    for i, (name, _, _, direction, target) in enumerate(goals[variants[0]]):
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
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True,
                        help="also time every kernel variant this CPU runs, one column each")
    parser.add_argument("--json", help=argparse.SUPPRESS)  # a variant's run: timings to a file
    args = parser.parse_args()
    y, soft, p, z = make_data(args.samples, args.labels)
    n_threads = max_threads()
    check_agreement(y, soft, p, z, n_threads)
    times = round_times(candidates_for(y, soft, p, z, n_threads), args.repeats)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({name: seconds.tolist() for name, seconds in times.items()}, file)
        return
    report(times, y.shape, n_threads)
    variants = [v for v in _kernels.supported_variants() if v in _kernels.LEVELS]
    if args.variants and len(variants) > 1:
        print()
        report_variants({v: time_variant(v, args) for v in variants})


if __name__ == "__main__":
    main()
