"""Cross-validated C and thresholds: MultiLabelLogisticCV and MultiLabelThresholdCV.

Run:  python benchmarks/bench_cv.py [--data DIR] [--repeats 3] [--datasets yeast scene bibtex]
                                    [--part c thresholds] [--scale 0.1] [--seed 0]

Data: the training parts of the Mulan datasets of ``benchmarks/bench_fit.py``
(yeast and scene: standard split, standardised; bibtex: seeded 2/3 split,
sparse binary features), or, for a name of ``benchmarks/shapes.py``
(``tall-dense``, ``wide-sparse``, ``many-labels-sparse``, ...), the training
part of that seeded synthetic shape with ``--scale`` times its rows.

Part ``c``: ``MultiLabelLogisticCV(n_jobs=2)`` (two folds at a time, in
threads) against ``OneVsRestClassifier(LogisticRegressionCV(Cs=10, cv=folds,
scoring="neg_log_loss"), n_jobs=2)`` (two labels at a time, in processes),
both with the same 5 unshuffled folds
(``KFold(5)``: ``cv=5`` would stratify scikit-learn's folds on each label,
which a joint model cannot, and different folds may choose different C's;
the time is the same either way). ``fit s`` is the best wall time of
``--repeats`` fits, the two interleaved round by round. ``same C`` counts the
labels for which both chose the same C; ``tied`` the labels chosen
differently whose mean fold scores at the two C's differ, in our scores or
in the peer's, by less than 1e-4 or by less than the two implementations'
scores differ at those C's (both solvers stop at a gradient tolerance of
1e-4, so their scores agree only to about that); ``differ`` the rest. The
goal: at least 5x faster, the same C on every label that is not tied.

Part ``thresholds``: held-out micro- and macro-F1 on the standard test parts
of yeast and scene, for MultiLabelLogistic and a random forest, with the 0.5
threshold and with thresholds tuned per label for F1 by
``MultiLabelThresholdCV`` (5-fold out-of-fold probabilities of the training
part).
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import DEFAULT_DATA, load_shared  # noqa: E402
from shapes import SHAPES  # noqa: E402

N_FOLDS = 5
TIE = 1e-4


def load(name, data_dir, scale=0.1, seed=0):
    """Train and test parts of a shared data set, or of a synthetic shape."""
    if name in SHAPES:
        return SHAPES[name](seed=seed, scale=scale)
    return load_shared(name, data_dir)


def fit_quietly(model, X, Y):
    with warnings.catch_warnings():
        # Both fit weakly penalised models that may stop at max_iter.
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X, Y)
        return time.perf_counter() - start


def peer_choice(ovr, Cs):
    """Chosen C and mean fold scores (n_labels, n_Cs) of OvR(LogisticRegressionCV)."""
    chosen, scores = [], []
    for est in ovr.estimators_:
        if not hasattr(est, "C_"):  # a label constant in the data
            chosen.append(np.nan)
            scores.append(np.full(len(Cs), np.nan))
            continue
        chosen.append(float(np.ravel(est.C_)[0]))
        fold_scores = est.scores_ if not isinstance(est.scores_, dict) else (
            next(iter(est.scores_.values())))
        scores.append(np.asarray(fold_scores).reshape(-1, len(Cs)).mean(axis=0))
    return np.array(chosen), np.array(scores)


def compare_choices(ours, peer_C, peer_scores, Cs):
    """Labels with the same C, with different C's that are tied, and that differ.

    Two C's are tied for a label when their mean scores differ by less than
    ``TIE`` in either table, or by less than the two implementations' own
    disagreement: the largest difference between our score and the peer's
    at those two C's (both solvers stop at tol=1e-4, not at the optimum).
    """
    ours_scores = ours.scores_.mean(axis=0).T  # (n_labels, n_Cs)
    same = tied = differ = 0
    for j, (c_ours, c_peer) in enumerate(zip(ours.C_, peer_C)):
        if np.isnan(c_peer) or np.isclose(c_ours, c_peer):
            same += 1
            continue
        pair = [np.searchsorted(Cs, c_ours), np.searchsorted(Cs, c_peer)]
        gap_ours = abs(ours_scores[j, pair[0]] - ours_scores[j, pair[1]])
        gap_peer = abs(peer_scores[j, pair[0]] - peer_scores[j, pair[1]])
        noise = np.max(np.abs(ours_scores[j, pair] - peer_scores[j, pair]))
        if min(gap_ours, gap_peer) < max(TIE, noise):
            tied += 1
        else:
            differ += 1
    return same, tied, differ


def run_c(name, data_dir, repeats, scale, seed):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import KFold
    from sklearn.multiclass import OneVsRestClassifier

    from skbce import MultiLabelLogisticCV

    X, _, Y, _ = load(name, data_dir, scale, seed)
    folds = KFold(N_FOLDS)
    Cs = np.logspace(-4, 4, 10)
    ours = MultiLabelLogisticCV(Cs=10, cv=folds, n_jobs=2)
    peer = OneVsRestClassifier(
        LogisticRegressionCV(Cs=10, cv=folds, scoring="neg_log_loss"), n_jobs=2)
    times = {"ours": [], "peer": []}
    for _ in range(repeats):
        times["ours"].append(fit_quietly(ours, X, Y))
        times["peer"].append(fit_quietly(peer, X, Y))
    peer_C, peer_scores = peer_choice(peer, Cs)
    same, tied, differ = compare_choices(ours, peer_C, peer_scores, Cs)
    best_ours, best_peer = min(times["ours"]), min(times["peer"])
    return dict(name=name, shape=f"{X.shape[0]}x{X.shape[1]}, {Y.shape[1]} labels",
                ours=best_ours, peer=best_peer, speedup=best_peer / best_ours,
                same=same, tied=tied, differ=differ, n_labels=Y.shape[1])


def print_c(rows):
    print(f"{'dataset':11} {'train part':26} {'MLLogisticCV s':>14} {'OvR(LRCV) s':>12} "
          f"{'speed-up':>9} {'same C':>7} {'tied':>5} {'differ':>6}")
    for r in rows:
        print(f"{r['name']:11} {r['shape']:26} {r['ours']:14.2f} {r['peer']:12.2f} "
              f"{r['speedup']:8.1f}x {r['same']:7d} {r['tied']:5d} {r['differ']:6d}")
    ok = all(r["speedup"] >= 5 and r["differ"] == 0 for r in rows)
    print(f"goal (>= 5x faster, same C wherever not tied): {'met' if ok else 'NOT met'}")


def run_thresholds(name, data_dir):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    from skbce import MultiLabelLogistic, MultiLabelThresholdCV

    X_train, X_test, Y_train, Y_test = load(name, data_dir)
    models = {
        "MultiLabelLogistic": MultiLabelLogistic(),
        "RandomForest": RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=2),
    }
    rows = []
    for label, model in models.items():
        tuned = MultiLabelThresholdCV(model, scoring="f1", cv=KFold(5, shuffle=True,
                                                                     random_state=0))
        start = time.perf_counter()
        tuned.fit(X_train, Y_train)
        seconds = time.perf_counter() - start
        plain = tuned.estimator_.predict_proba(X_test)
        proba = plain if isinstance(plain, np.ndarray) else np.column_stack(
            [p[:, -1] for p in plain])
        at_half = (proba >= 0.5).astype(int)
        at_tuned = tuned.predict(X_test)
        rows.append(dict(
            name=name, model=label, seconds=seconds,
            micro=(f1_score(Y_test, at_half, average="micro"),
                   f1_score(Y_test, at_tuned, average="micro")),
            macro=(f1_score(Y_test, at_half, average="macro", zero_division=0),
                   f1_score(Y_test, at_tuned, average="macro", zero_division=0)),
        ))
    return rows


def print_thresholds(rows):
    print(f"{'dataset':8} {'model':20} {'micro-F1 0.5':>12} {'tuned':>7} "
          f"{'macro-F1 0.5':>12} {'tuned':>7} {'tuning s':>9}")
    for r in rows:
        print(f"{r['name']:8} {r['model']:20} {r['micro'][0]:12.4f} {r['micro'][1]:7.4f} "
              f"{r['macro'][0]:12.4f} {r['macro'][1]:7.4f} {r['seconds']:9.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("SKBCE_BENCH_DATA", DEFAULT_DATA)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["yeast", "scene", "bibtex"])
    parser.add_argument("--scale", type=float, default=0.1,
                        help="fraction of the rows of a synthetic shape")
    parser.add_argument("--seed", type=int, default=0, help="seed of a synthetic shape")
    parser.add_argument("--part", nargs="+", default=["c", "thresholds"],
                        choices=["c", "thresholds"])
    args = parser.parse_args(argv)
    if not args.data.is_dir() and any(name not in SHAPES for name in args.datasets):
        sys.exit(f"no data directory {args.data}; pass --data DIR")
    if "c" in args.part:
        rows = []
        for name in args.datasets:
            rows.append(run_c(name, args.data, args.repeats, args.scale, args.seed))
            print(f"  {name} done", flush=True)
        print_c(rows)
    if "thresholds" in args.part:
        rows = []
        for name in [n for n in args.datasets if n in ("yeast", "scene")]:
            rows.extend(run_thresholds(name, args.data))
        print_thresholds(rows)


if __name__ == "__main__":
    main()
