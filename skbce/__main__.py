"""`python -m skbce`: the demo.

Fits :class:`skbce.MultiLabelLogistic` and scikit-learn's
``OneVsRestClassifier(LogisticRegression())`` on a real multi-label task and
prints how they compare, then runs a grid search over ``C`` scored with
:data:`skbce.bce_scorer` next to scikit-learn's ``neg_log_loss``.

With no arguments the task is scikit-learn's bundled handwritten digits, each
image tagged with several yes/no properties of the digit it shows (even,
prime, at least 5, drawn with a closed loop, a multiple of 3): nothing to
download. ``--data`` takes the user's own data instead, and ``--plot`` saves
the training loss curves of each solver. Bad files or options print one line
on stderr and exit with code 2.
"""

import argparse
import csv
import importlib.util
import sys
import textwrap
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

__all__ = ["main"]

# The tags of the default task: for each, the digits that carry it. "closed
# loop" is how the digit is usually drawn (4 is often open, so it is left out).
DIGIT_TAGS = {
    "even": (0, 2, 4, 6, 8),
    "prime": (2, 3, 5, 7),
    "at_least_5": (5, 6, 7, 8, 9),
    "closed_loop": (0, 6, 8, 9),
    "multiple_of_3": (0, 3, 6, 9),
}
SOLVERS = ("newton-cg", "lbfgs", "gd", "sgd")
C_GRID = (0.01, 0.1, 1.0, 10.0)
# The "yes to every tag" prediction that exposes log_loss on multi-label data.
CONSTANT_PROBABILITY = 0.999
NPZ_LAYOUT = "Y plus X, or X_data/X_indices/X_indptr/X_shape for a CSR matrix"
# Per-label tables longer than this (bibtex has 159 labels) are cut.
MAX_LABEL_ROWS = 20


class DemoError(Exception):
    """A bad file or option: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing usage and exiting."""

    def error(self, message):
        raise DemoError(message)


@dataclass
class Task:
    """A multi-label task split into a training and a test part."""

    name: str
    X_train: object
    X_test: object
    Y_train: np.ndarray
    Y_test: np.ndarray
    label_names: list


# --------------------------------------------------------------------------
# Command line and progress
# --------------------------------------------------------------------------


def build_parser():
    """The demo's argument parser.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    parser = _Parser(
        prog="python -m skbce",
        description="Compare skbce.MultiLabelLogistic with scikit-learn's "
        "one-vs-rest logistic regression on a real multi-label task.",
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="your own data: an .npz file (keys " + NPZ_LAYOUT + ", optional "
        "label_names and train_mask) or a .csv file with a header row; "
        "default: the handwritten digits bundled with scikit-learn",
    )
    parser.add_argument(
        "--labels",
        metavar="COL,COL,...",
        help="comma-separated label columns: required for a CSV file (all "
        "other columns are features); for an .npz file, a subset of its "
        "label_names",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="save the loss curves of each solver"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split and of sgd (0)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress messages on stderr"
    )
    return parser


class Progress:
    """Progress messages on stderr, so that stdout holds only the report.

    Each step is announced when it starts and timed when it ends; a step
    that takes longer than ``interval`` seconds reports, every ``interval``
    seconds, that it is still running -- a long fit is not a hung one.
    """

    def __init__(self, enabled=True, stream=None, interval=10.0):
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval

    @contextmanager
    def step(self, message):
        """Announce a step, report while it runs, then report its duration."""
        start = time.perf_counter()
        self._write(f"{message} ...")
        finished = threading.Event()
        ticker = threading.Thread(
            target=self._tick, args=(message, start, finished), daemon=True
        )
        ticker.start()
        try:
            yield
        finally:
            finished.set()
            ticker.join()
        self._write(f"{message}: done in {time.perf_counter() - start:.1f} s")

    def _tick(self, message, start, finished):
        while not finished.wait(self.interval):
            elapsed = time.perf_counter() - start
            self._write(f"{message}: still running after {elapsed:.0f} s")

    def _write(self, text):
        if self.enabled:
            print(text, file=self.stream, flush=True)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def digit_tags(digits):
    """The yes/no tags of each digit as an (n_samples, n_tags) 0/1 matrix.

    Parameters
    ----------
    digits : array-like of int, shape (n_samples,)
        The digit (0-9) each image shows.

    Returns
    -------
    Y : ndarray of shape (n_samples, len(DIGIT_TAGS)), dtype int8
    """
    digits = np.asarray(digits)
    return np.column_stack(
        [np.isin(digits, members) for members in DIGIT_TAGS.values()]
    ).astype(np.int8)


def digits_task(seed):
    """The default task: 8x8 digit images and their tags.

    Pixels are 0-16 ink counts; dividing by 16 puts every feature on the same
    [0, 1] scale without fitting anything on the test part.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, Y = digits.data / 16.0, digit_tags(digits.target)
    name = f"handwritten digits ({X.shape[0]} images of 8x8 pixels)"
    return _split(name, X, Y, list(DIGIT_TAGS), None, seed, scale=False)


def load_task(path, labels, seed):
    """Read the user's ``--data`` file into a :class:`Task`."""
    path = Path(path)
    if not path.is_file():
        raise DemoError(f"--data: no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        X, Y, names, train_mask = _read_npz(path, labels)
    elif suffix == ".csv":
        X, Y, names = _read_csv(path, labels)
        train_mask = None
    else:
        raise DemoError(f"--data: expected an .npz or .csv file, got {path.name}")
    _check_targets(Y, names, path.name)
    return _split(path.name, X, Y, names, train_mask, seed, scale=True)


def _read_npz(path, labels):
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # numpy raises many types for a damaged file
        raise DemoError(f"--data: cannot read {path.name} as .npz: {exc}") from None
    if "Y" not in arrays:
        raise DemoError(f"--data: {path.name} has no 'Y' array (expected {NPZ_LAYOUT})")
    X = _npz_features(arrays, path.name)
    Y = np.asarray(arrays["Y"])
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise DemoError(
            f"--data: {path.name}: Y must have shape (n_samples, n_labels) with "
            f"n_samples = {X.shape[0]}; got {Y.shape}"
        )
    names = [str(n) for n in arrays.get("label_names", range(Y.shape[1]))]
    train_mask = _npz_train_mask(arrays, Y.shape[0], path.name)
    if labels:
        columns = _label_columns(labels, names, path.name)
        Y, names = Y[:, columns], [names[j] for j in columns]
    return X, Y, names, train_mask


def _npz_features(arrays, name):
    if "X" in arrays:
        X = np.asarray(arrays["X"])
        if X.ndim != 2:
            raise DemoError(f"--data: {name}: X must be 2-D; got shape {X.shape}")
        return _as_float(X, name)
    parts = ("X_data", "X_indices", "X_indptr", "X_shape")
    if not all(part in arrays for part in parts):
        raise DemoError(f"--data: {name} has no features (expected {NPZ_LAYOUT})")
    try:
        data, indices, indptr, shape = (arrays[part] for part in parts)
        return sparse.csr_matrix((data, indices, indptr), shape=tuple(shape))
    except (TypeError, ValueError) as exc:
        raise DemoError(f"--data: {name}: bad CSR arrays: {exc}") from None


def _npz_train_mask(arrays, n_samples, name):
    if "train_mask" not in arrays:
        return None
    mask = np.asarray(arrays["train_mask"])
    if mask.shape != (n_samples,) or mask.dtype != bool:
        raise DemoError(f"--data: {name}: train_mask must be {n_samples} booleans")
    return mask


def _read_csv(path, labels):
    if not labels:
        raise DemoError("--data: a CSV file needs --labels naming its label columns")
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DemoError(f"--data: cannot read {path.name}: {exc}") from None
    if len(rows) < 2:
        raise DemoError(f"--data: {path.name} needs a header row and data rows")
    header = [column.strip() for column in rows[0]]
    label_columns = _label_columns(labels, header, path.name)
    feature_columns = [j for j in range(len(header)) if j not in label_columns]
    if not feature_columns:
        raise DemoError(f"--data: {path.name} has no feature columns besides the labels")
    values = _csv_values(rows[1:], len(header), path.name)
    names = [header[j] for j in label_columns]
    return values[:, feature_columns], values[:, label_columns], names


def _csv_values(rows, n_columns, name):
    """The data rows as floats; the first bad cell is named in the error."""
    values = np.empty((len(rows), n_columns))
    for i, row in enumerate(rows):
        if len(row) != n_columns:
            raise DemoError(
                f"--data: {name} line {i + 2} has {len(row)} fields, "
                f"the header has {n_columns}"
            )
        try:
            values[i] = [float(cell) for cell in row]
        except ValueError as exc:
            raise DemoError(f"--data: {name} line {i + 2}: {exc}") from None
    return values


def _label_columns(labels, names, source):
    wanted = [label.strip() for label in labels.split(",") if label.strip()]
    missing = [label for label in wanted if label not in names]
    if missing or not wanted:
        raise DemoError(
            f"--labels: {source} has no label(s) {', '.join(missing) or repr(labels)}; "
            f"it has: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
        )
    return [names.index(label) for label in wanted]


def _as_float(X, name):
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DemoError(f"--data: {name}: features are not numeric: {exc}") from None
    if not np.all(np.isfinite(X)):
        raise DemoError(f"--data: {name}: features contain NaN or infinity")
    return X


def _check_targets(Y, names, source):
    """The comparison needs 0/1 labels and enough rows to split."""
    if not np.all((Y == 0) | (Y == 1)):
        raise DemoError(f"--data: {source}: labels must be 0 or 1")
    if Y.shape[0] < 10:
        raise DemoError(f"--data: {source}: need at least 10 rows, got {Y.shape[0]}")


def _split(name, X, Y, names, train_mask, seed, scale):
    """A Task: the file's own split if it has one, else a seeded 2/3-1/3 split."""
    from sklearn.model_selection import train_test_split

    Y = np.asarray(Y, dtype=np.int8)
    if train_mask is not None:
        parts = X[train_mask], X[~train_mask], Y[train_mask], Y[~train_mask]
    else:
        parts = train_test_split(X, Y, test_size=1 / 3, random_state=seed)
    X_train, X_test, Y_train, Y_test = parts
    if scale:
        X_train, X_test = _standardise(X_train, X_test)
    return Task(name, X_train, X_test, Y_train, Y_test, list(names))


def _standardise(X_train, X_test):
    """Raw features on one scale, fitted on the training part only.

    Sparse data are only scaled, not centred, to stay sparse.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler(with_mean=not sparse.issparse(X_train)).fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test)


# --------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------


def candidate_models(seed):
    """The two models compared, by display name."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from skbce import MultiLabelLogistic

    return {
        "MultiLabelLogistic()": MultiLabelLogistic(random_state=seed),
        "OneVsRestClassifier(LogisticRegression())": OneVsRestClassifier(
            LogisticRegression()
        ),
    }


def evaluate(model, task):
    """Fit ``model`` on the training part; its scores on the test part."""
    from sklearn.metrics import accuracy_score, f1_score

    from skbce import binary_cross_entropy

    start = time.perf_counter()
    with _quiet_fit_warnings():
        model.fit(task.X_train, task.Y_train)
    fit_time = time.perf_counter() - start
    proba = model.predict_proba(task.X_test)
    predicted = model.predict(task.X_test)
    return {
        "fit_time": fit_time,
        "bce": binary_cross_entropy(task.Y_test, proba),
        "subset_accuracy": accuracy_score(task.Y_test, predicted),
        "micro_f1": f1_score(task.Y_test, predicted, average="micro", zero_division=0),
        "label_bce": binary_cross_entropy(task.Y_test, proba, axis=0),
    }


@contextmanager
def _quiet_fit_warnings():
    # A label that never occurs in a training part (common in bibtex) makes
    # OneVsRestClassifier warn once per label; the demo reports scores, not that.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label .* is present in all")
        warnings.filterwarnings("ignore", message="Label not .* is present in all")
        yield


def grid_search(task):
    """Grid search over ``C`` scored by BCE and by ``neg_log_loss`` together.

    Returns
    -------
    search : sklearn.model_selection.GridSearchCV
        Refitted on the BCE score; ``cv_results_`` holds both scores.
    """
    from sklearn.model_selection import GridSearchCV, KFold

    from skbce import MultiLabelLogistic, bce_scorer

    search = GridSearchCV(
        MultiLabelLogistic(),
        {"C": list(C_GRID)},
        scoring={"bce": bce_scorer, "log_loss": "neg_log_loss"},
        refit="bce",
        cv=KFold(3, shuffle=True, random_state=0),
    )
    with warnings.catch_warnings():
        # log_loss warns that the rows of a multi-label predict_proba do not
        # sum to one -- precisely the problem the demo goes on to show.
        warnings.filterwarnings("ignore", message=".*do not sum to one")
        search.fit(task.X_train, task.Y_train)
    return search


def constant_prediction_scores(task, probability=CONSTANT_PROBABILITY):
    """BCE and sklearn's log_loss of one absurd prediction: every tag, always.

    On a multi-label target ``log_loss`` adds ``-log(p)`` over the tags a
    row has and ignores the tags it lacks, so saying "yes" to everything
    looks nearly perfect to it; BCE charges ``-log(1 - p)`` for each absent tag.

    Returns
    -------
    bce, log_loss : float
    """
    from sklearn.metrics import log_loss

    from skbce import binary_cross_entropy

    proba = np.full(task.Y_test.shape, probability)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*do not sum to one")
        return binary_cross_entropy(task.Y_test, proba), log_loss(task.Y_test, proba)


def plot_loss_curves(task, path, seed):
    """Fit one model per solver and save their ``loss_curve_`` to ``path``."""
    from matplotlib.figure import Figure

    from skbce import MultiLabelLogistic

    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for solver in SOLVERS:
        model = MultiLabelLogistic(solver=solver, random_state=seed)
        model.fit(task.X_train, task.Y_train)
        axes.plot(np.arange(1, len(model.loss_curve_) + 1), model.loss_curve_, label=solver)
    axes.set(xlabel="iteration (epoch for sgd)", ylabel="training loss",
             yscale="log", title=f"MultiLabelLogistic on {task.name}")
    axes.legend(title="solver")
    try:
        figure.savefig(path)
    except (OSError, ValueError) as exc:
        raise DemoError(f"--plot: cannot save {path}: {exc}") from None


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def format_table(header, rows):
    """An aligned text table: first column left-aligned, the others right.

    Parameters
    ----------
    header : list of str
    rows : list of list of str

    Returns
    -------
    table : str
    """
    widths = [max(len(row[j]) for row in [header, *rows]) for j in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def comparison_table(results):
    header = ["model", "fit time [s]", "test BCE", "subset accuracy", "micro-F1"]
    rows = [
        [name, f"{r['fit_time']:.2f}", f"{r['bce']:.4f}",
         f"{r['subset_accuracy']:.3f}", f"{r['micro_f1']:.3f}"]
        for name, r in results.items()
    ]
    return format_table(header, rows)


def label_table(results, label_names):
    """Per-label test BCE, one row per label and one column per model."""
    short = [name.split("(")[0] for name in results]
    rows = [
        [label, *(f"{r['label_bce'][j]:.4f}" for r in results.values())]
        for j, label in enumerate(label_names)
    ]
    table = format_table(["label", *short], rows[:MAX_LABEL_ROWS])
    if len(rows) > MAX_LABEL_ROWS:
        table += f"\n... and {len(rows) - MAX_LABEL_ROWS} more labels"
    return table


def grid_table(search):
    results = search.cv_results_
    rows = [
        [f"{C:g}", f"{-bce:.4f}", f"{-log_loss:.4f}"]
        for C, bce, log_loss in zip(
            results["param_C"], results["mean_test_bce"], results["mean_test_log_loss"]
        )
    ]
    header = ["C", "BCE (skbce.bce_scorer)", "log_loss (neg_log_loss)"]
    return format_table(header, rows)


def best_by(search, metric):
    results = search.cv_results_
    return results["param_C"][int(np.argmax(results[f"mean_test_{metric}"]))]


def best_c_line(search):
    """The best C under each scorer, with a word when the BCE's is at an edge of the grid."""
    by_bce, by_log_loss = best_by(search, "bce"), best_by(search, "log_loss")
    line = f"best C by skbce.bce_scorer: {by_bce:g}; by neg_log_loss: {by_log_loss:g}"
    grid = search.cv_results_["param_C"]
    edge = {min(grid): "smallest", max(grid): "largest"}.get(by_bce)
    if edge is not None:
        line += (f"\n(C={by_bce:g} is the {edge} C of the grid: the best C may lie beyond "
                 "it; MultiLabelLogisticCV searches a wider range, per label)")
    return line


def log_loss_section(search, constant_scores):
    """The paragraph that shows what ``neg_log_loss`` misses."""
    constant_bce, constant_log_loss = constant_scores
    best_fitted = -np.max(search.cv_results_["mean_test_log_loss"])
    beats = " -- better than every C in the grid --" if constant_log_loss < best_fitted else ""
    text = (
        "Where neg_log_loss goes wrong: on multi-label targets scikit-learn's "
        "log_loss adds -log(p) over the tags a row has and ignores the tags it "
        f"lacks. Predicting every tag with probability {CONSTANT_PROBABILITY} "
        f"for every test row scores log_loss = {constant_log_loss:.4f}{beats} "
        f"but BCE = {constant_bce:.4f}."
    )
    return textwrap.fill(text, width=78)


def report(task, results, search, constant_scores):
    """The demo's whole text report."""
    names = task.label_names
    return "\n".join([
        f"Data: {task.name}",
        f"{task.Y_train.shape[0]} training and {task.Y_test.shape[0]} test rows, "
        f"{len(names)} labels: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}",
        "",
        comparison_table(results),
        "",
        "Per-label test BCE:",
        label_table(results, names),
        "",
        "GridSearchCV(MultiLabelLogistic()) over C, 3-fold cross-validation;",
        "mean validation loss under each scorer (lower is better):",
        grid_table(search),
        best_c_line(search),
        "",
        log_loss_section(search, constant_scores),
        "",
    ])


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def run(args, out=None):
    """Run the demo for parsed arguments, printing the report to ``out``."""
    # Loading takes well under a second and may fail: no progress message,
    # so that a bad file leaves just the one error line on stderr.
    if args.data:
        task = load_task(args.data, args.labels, args.seed)
    elif args.labels:
        raise DemoError("--labels needs --data")
    else:
        task = digits_task(args.seed)
    if args.plot:
        _check_plot_path(args.plot)
    progress = Progress(enabled=not args.quiet)
    try:
        _experiments(task, args, progress, out or sys.stdout)
    except ValueError as exc:
        if not args.data:
            raise  # the bundled data cannot be bad: this is a bug, show it all
        raise DemoError(f"--data: {task.name}: {exc}") from None


def _experiments(task, args, progress, out):
    results = {}
    for name, model in candidate_models(args.seed).items():
        with progress.step(f"fitting {name}"):
            results[name] = evaluate(model, task)
    with progress.step(f"grid search over C = {', '.join(map(str, C_GRID))}"):
        search = grid_search(task)
    scores = constant_prediction_scores(task)
    print(report(task, results, search, scores), file=out)
    if args.plot:
        with progress.step(f"fitting each solver for {args.plot}"):
            plot_loss_curves(task, args.plot, args.seed)


def _check_plot_path(path):
    """Fail before the fits, not after them, on a plot that cannot be saved."""
    # The path first: its errors do not depend on what is installed.
    path = Path(path)
    if path.suffix.lower() not in {".png", ".pdf", ".svg"}:
        raise DemoError(f"--plot: expected a .png, .pdf or .svg file name, got {path.name}")
    if not path.parent.is_dir():
        raise DemoError(f"--plot: no such directory: {path.parent}")
    if importlib.util.find_spec("matplotlib") is None:
        raise DemoError("--plot needs matplotlib: pip install matplotlib")


def main(argv=None):
    """Run the demo; the ``skbce-demo`` command and ``python -m skbce``.

    Parameters
    ----------
    argv : list of str, default=None
        Command-line arguments without the program name; None reads
        ``sys.argv[1:]``.

    Returns
    -------
    exit_code : int
        0 on success, 2 for a bad file or option (reported on one line on
        stderr, without a traceback).
    """
    try:
        run(build_parser().parse_args(argv))
    except DemoError as exc:
        print(f"skbce: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
