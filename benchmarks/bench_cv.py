"""Cross-validated C and thresholds: MultiLabelLogisticCV and MultiLabelThresholdCV.

Run:  python benchmarks/bench_cv.py [--data DIR] [--repeats 3] [--datasets yeast scene bibtex]
                                    [--part c thresholds folds] [--scale 0.1] [--seed 0]

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

Part ``folds`` (the test matrix of the default folds; datasets default to
yeast, scene, emotions and bibtex): the training rows in four orders --
as stored, sorted by their first label (positives first), sorted by their
rarest label with at least 5 positives (positives first; a rarer label
cannot be in every training fold of 5), and shuffled (seed 0) -- and the
held-out BCE, micro-F1 and macro-F1 on the test part of: no tuning, the
default folds (``cv=5``), and shuffled folds (``KFold(5, shuffle=True,
random_state=0)``). Estimators: ``MultiLabelLogisticCV(Cs=10)`` against
``MultiLabelLogistic()`` (C=1), and ``MultiLabelThresholdCV`` (F1 per label)
around ``MultiLabelLogistic()`` and around ``RandomForestClassifier(100)``
(not on bibtex: 159 forests' outputs per fit, minutes per row), against
the same classifier at 0.5. The tuner keeps the classifier's
probabilities, so its BCE is the untuned one's. ``goal``: the default
folds' BCE (logistic CV) within 0.5 % of the shuffled folds' and not above
the untuned model's; their macro-F1 (thresholds) within 0.01 of the
shuffled folds' and not below the untuned model's. ``warned`` counts the
labels a ``FoldWarning`` named with the default folds (labels with fewer
positives than folds: they keep the untuned choice).
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


ORDERS = ("stored", "by first label", "by rarest label", "shuffled")


def row_order(order, Y, seed=0):
    """The training rows' order: as stored, sorted by a label (positives first), shuffled."""
    if order == "stored":
        return np.arange(len(Y))
    if order == "shuffled":
        return np.random.default_rng(seed).permutation(len(Y))
    counts = Y.sum(axis=0)
    if order == "by first label":
        label = 0
    else:
        label = int(np.argmin(np.where(counts >= N_FOLDS, counts, np.inf)))
    return np.argsort(-Y[:, label], kind="stable")


def positive_proba(model, X):
    proba = model.predict_proba(X)
    if isinstance(proba, list):  # a forest: one (n, n_classes) array per label
        return np.column_stack([
            p[:, list(c).index(1)] if 1 in c else np.zeros(len(p))
            for p, c in zip(proba, model.classes_)])
    return proba


def held_out(model, X_test, Y_test):
    """BCE, micro-F1 and macro-F1 of a fitted model on the test part."""
    from sklearn.metrics import f1_score

    from skbce import binary_cross_entropy

    from skbce import MultiLabelThresholdCV

    inner = model.estimator_ if isinstance(model, MultiLabelThresholdCV) else model
    P = np.clip(positive_proba(inner, X_test), 1e-7, 1 - 1e-7)
    pred = model.predict(X_test)
    return (binary_cross_entropy(Y_test, P),
            f1_score(Y_test, pred, average="micro", zero_division=0),
            f1_score(Y_test, pred, average="macro", zero_division=0))


def fold_models(kind, folds):
    """The model of an estimator kind of the matrix: untuned (folds None) or tuned with folds."""
    from sklearn.ensemble import RandomForestClassifier

    from skbce import MultiLabelLogistic, MultiLabelLogisticCV, MultiLabelThresholdCV

    if kind == "LogisticCV":
        return MultiLabelLogistic() if folds is None else MultiLabelLogisticCV(
            Cs=10, cv=folds, n_jobs=2)
    base = MultiLabelLogistic() if kind == "Thresholds(Logistic)" else RandomForestClassifier(
        n_estimators=100, random_state=0, n_jobs=2)
    return base if folds is None else MultiLabelThresholdCV(base, scoring="f1", cv=folds)


def run_folds(name, data_dir, scale, seed):
    from sklearn.model_selection import KFold

    from skbce.model_selection import FoldWarning

    X_train, X_test, Y_train, Y_test = load(name, data_dir, scale, seed)
    kinds = ["LogisticCV", "Thresholds(Logistic)"] + (
        [] if name == "bibtex" else ["Thresholds(RandomForest)"])
    settings = {"untuned": None, "default": N_FOLDS,
                "shuffled": KFold(N_FOLDS, shuffle=True, random_state=0)}
    rows = []
    for order in ORDERS:
        rows_of = row_order(order, Y_train)
        X, Y = X_train[rows_of], Y_train[rows_of]
        for kind in kinds:
            scores, warned, seconds = {}, 0, 0.0
            for setting, folds in settings.items():
                model = fold_models(kind, folds)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    start = time.perf_counter()
                    model.fit(X, Y)
                    seconds += time.perf_counter() - start
                if setting == "default":
                    fold_warnings = [w for w in caught if issubclass(w.category, FoldWarning)]
                    warned = sum(_n_labels_named(w.message) for w in fold_warnings)
                scores[setting] = held_out(model, X_test, Y_test)
            rows.append(dict(name=name, order=order, kind=kind, scores=scores, warned=warned,
                             seconds=seconds))
            print(f"  {name}, {order}, {kind}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def _n_labels_named(message):
    """How many labels a FoldWarning names (its "label(s) a, b, ... (n in all)" list)."""
    import re

    text = str(message)
    listed = re.search(r"label\(s\) ([\d, ]+)(?:, \.\.\. \((\d+) in all\))?", text)
    if listed is None:
        return 0
    return int(listed[2]) if listed[2] else len(listed[1].strip(", ").split(","))


def folds_goal(row):
    untuned, default, shuffled = (row["scores"][k] for k in ("untuned", "default", "shuffled"))
    if row["kind"] == "LogisticCV":
        return default[0] <= 1.005 * shuffled[0] and default[0] <= untuned[0]
    return default[2] >= shuffled[2] - 0.01 and default[2] >= untuned[2]


def print_folds(rows):
    print(f"{'dataset':8} {'row order':16} {'estimator':25} "
          f"{'BCE: none':>9} {'default':>8} {'shuffled':>8}   "
          f"{'micro-F1: none':>14} {'default':>7} {'shuffled':>8}   "
          f"{'macro-F1: none':>14} {'default':>7} {'shuffled':>8} {'warned':>6} {'goal':>5}")
    for r in rows:
        s = [r["scores"][k] for k in ("untuned", "default", "shuffled")]
        print(f"{r['name']:8} {r['order']:16} {r['kind']:25} "
              f"{s[0][0]:9.4f} {s[1][0]:8.4f} {s[2][0]:8.4f}   "
              f"{s[0][1]:14.4f} {s[1][1]:7.4f} {s[2][1]:8.4f}   "
              f"{s[0][2]:14.4f} {s[1][2]:7.4f} {s[2][2]:8.4f} {r['warned']:6d} "
              f"{'met' if folds_goal(r) else 'NOT':>5}")
    print(f"goal met on {sum(map(folds_goal, rows))} of {len(rows)} rows")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("SKBCE_BENCH_DATA", DEFAULT_DATA)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="default: yeast scene bibtex (part folds: and emotions)")
    parser.add_argument("--scale", type=float, default=0.1,
                        help="fraction of the rows of a synthetic shape")
    parser.add_argument("--seed", type=int, default=0, help="seed of a synthetic shape")
    parser.add_argument("--part", nargs="+", default=["c", "thresholds", "folds"],
                        choices=["c", "thresholds", "folds"])
    args = parser.parse_args(argv)
    datasets = args.datasets or ["yeast", "scene", "bibtex"]
    if args.datasets is None and args.part == ["folds"]:
        datasets = ["yeast", "scene", "emotions", "bibtex"]
    args.datasets = datasets
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
    if "folds" in args.part:
        names = args.datasets if args.part == ["folds"] or args.datasets != [
            "yeast", "scene", "bibtex"] else ["yeast", "scene", "emotions", "bibtex"]
        rows = []
        for name in names:
            rows.extend(run_folds(name, args.data, args.scale, args.seed))
        print_folds(rows)


if __name__ == "__main__":
    main()
