"""The demo (``python -m skbce`` / ``skbce-demo``), run in-process on small inputs."""

import io
import re
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from scipy import sparse
from sklearn.datasets import make_multilabel_classification

from skbce.__main__ import DIGIT_TAGS, Progress, digit_tags, format_table, main

MODEL_NAMES = ["MultiLabelLogistic()", "OneVsRestClassifier(LogisticRegression())"]


def small_problem(n_samples=90, n_labels=3):
    X, Y = make_multilabel_classification(
        n_samples=n_samples, n_features=6, n_classes=n_labels, random_state=0
    )
    return X, Y.astype(np.int8)


def write_npz(path, *, csr=False, train_mask=True):
    X, Y = small_problem()
    arrays = {"Y": Y, "label_names": np.array(["sun", "sea", "sky"])}
    if csr:
        X = sparse.csr_matrix(X)
        arrays.update(X_data=X.data, X_indices=X.indices, X_indptr=X.indptr,
                      X_shape=np.array(X.shape))
    else:
        arrays["X"] = X
    if train_mask:
        arrays["train_mask"] = np.arange(len(Y)) < 60
    np.savez(path, **arrays)
    return path


def write_csv(path, *, cell=None):
    X, Y = small_problem()
    header = [f"f{j}" for j in range(X.shape[1])] + ["red", "green", "blue"]
    rows = [[f"{v:g}" for v in x] + [str(v) for v in y] for x, y in zip(X, Y)]
    if cell is not None:
        rows[4][2] = cell
    path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    return path


def run_demo(capsys, *args):
    code = main(["--quiet", *args])
    out, err = capsys.readouterr()
    return code, out, err


def table_lines(out, first_header):
    """The lines of the table whose header line starts with ``first_header``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


@pytest.fixture(scope="module")
def default_output():
    """One run of the demo with no arguments, shared by the tests that read it."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([])
    return code, out.getvalue(), err.getvalue()


def test_digit_tags():
    Y = digit_tags([0, 2, 5, 6, 7])
    tags = list(DIGIT_TAGS)
    six = dict(zip(tags, Y[3]))
    assert six == {"even": 1, "prime": 0, "at_least_5": 1, "closed_loop": 1,
                   "multiple_of_3": 1}
    assert Y[:, tags.index("prime")].tolist() == [0, 1, 1, 0, 1]


def test_format_table_aligns_columns():
    table = format_table(["name", "x"], [["a", "1.5"], ["long name", "10.25"]])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[2] == "a            1.5"


def test_progress_reports_a_long_step_while_it_runs():
    stream = io.StringIO()
    with Progress(stream=stream, interval=0.02).step("fitting"):
        time.sleep(0.15)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "fitting ..."
    assert any(re.fullmatch(r"fitting: still running after \d+ s", line) for line in lines)
    assert re.fullmatch(r"fitting: done in 0\.\d s", lines[-1])


def test_default_run_compares_both_models(default_output):
    code, out, _ = default_output
    assert code == 0
    table = table_lines(out, "model")
    assert len({len(line) for line in table}) == 1, "columns are not aligned"
    for name in MODEL_NAMES:
        row = next(line for line in table if line.startswith(name))
        fit_time, bce, subset_accuracy, micro_f1 = map(float, row[len(name):].split())
        assert fit_time > 0
        # Digit tags are learnable from pixels: far better than chance.
        assert 0 < bce < 0.4 and subset_accuracy > 0.4 and micro_f1 > 0.8


def test_default_run_reports_each_tag_and_the_grid(default_output):
    _, out, _ = default_output
    per_label = table_lines(out, "label")
    assert [line.split()[0] for line in per_label[2:]] == list(DIGIT_TAGS)
    grid = [line for line in table_lines(out, "C ")[2:] if re.match(r"[\d.]+ ", line)]
    losses = [[float(v) for v in line.split()[1:]] for line in grid]
    assert len(losses) >= 3 and all(bce > 0 and ll > 0 for bce, ll in losses)
    assert re.search(r"best C by skbce\.bce_scorer: [\d.]+; by neg_log_loss: [\d.]+", out)
    match = re.search(r"log_loss = (\d+\.\d+).* but BCE = (\d+\.\d+)", out, re.S)
    assert float(match[1]) < 0.01 < 1 < float(match[2])


def test_default_run_shows_progress_on_stderr(default_output):
    _, out, err = default_output
    assert "fitting MultiLabelLogistic() ..." in err
    assert re.search(r"grid search over C .*: done in [\d.]+ s", err)
    assert "done in" not in out


@pytest.mark.parametrize("csr", [False, True], ids=["dense", "csr"])
def test_data_npz(tmp_path, capsys, csr):
    path = write_npz(tmp_path / "small.npz", csr=csr)
    code, out, err = run_demo(capsys, "--data", str(path))
    assert code == 0, err
    assert "60 training and 30 test rows, 3 labels: sun, sea, sky" in out
    assert [line.split()[0] for line in table_lines(out, "label")[2:]] == ["sun", "sea", "sky"]


def test_data_npz_label_subset_and_seeded_split(tmp_path, capsys):
    path = write_npz(tmp_path / "small.npz", train_mask=False)
    code, out, err = run_demo(capsys, "--data", str(path), "--labels", "sky,sun")
    assert code == 0, err
    assert "60 training and 30 test rows, 2 labels: sky, sun" in out


def test_data_csv(tmp_path, capsys):
    path = write_csv(tmp_path / "small.csv")
    code, out, err = run_demo(capsys, "--data", str(path), "--labels", "red, blue")
    assert code == 0, err
    assert "2 labels: red, blue" in out
    for name in MODEL_NAMES:
        assert name in out


def test_plot_saves_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    data = write_csv(tmp_path / "small.csv")
    figure = tmp_path / "curves.png"
    code, _, err = run_demo(capsys, "--data", str(data), "--labels", "red,green",
                            "--plot", str(figure))
    assert code == 0, err
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def bad_cases(tmp_path):
    """(arguments, a fragment of the expected message) for each kind of mistake."""
    csv_file = write_csv(tmp_path / "ok.csv")
    text_cell = write_csv(tmp_path / "text.csv", cell="seven")
    soft_label = tmp_path / "soft.csv"
    soft_label.write_text("f0,f1,y\n" + "\n".join(f"{i},{i % 3},0.5" for i in range(20)))
    not_npz = tmp_path / "broken.npz"
    not_npz.write_text("not a zip archive")
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, X=np.ones((20, 2)))
    return [
        (["--data", str(tmp_path / "missing.npz")], "no such file"),
        (["--data", str(csv_file)], "needs --labels"),
        (["--data", str(csv_file), "--labels", "purple"], "no label(s) purple"),
        (["--data", str(text_cell), "--labels", "red"], "line 6"),
        (["--data", str(soft_label), "--labels", "y"], "labels must be 0 or 1"),
        (["--data", str(not_npz)], "cannot read broken.npz"),
        (["--data", str(no_y)], "no 'Y' array"),
        (["--labels", "red"], "--labels needs --data"),
        (["--plot", str(tmp_path / "nowhere" / "x.png")], "no such directory"),
        (["--plot", str(tmp_path / "x.gif")], "expected a .png"),
        (["--seed", "abc"], "invalid int value"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ]


def test_bad_inputs_give_one_line_and_exit_code_2(tmp_path, capsys):
    wrong_type = tmp_path / "data.json"
    wrong_type.write_text("{}")
    cases = bad_cases(tmp_path) + [(["--data", str(wrong_type)], "expected an .npz or .csv")]
    for args, fragment in cases:
        code, out, err = run_demo(capsys, *args)
        assert code == 2, args
        assert out == "", args
        assert err.count("\n") == 1 and err.startswith("skbce: error: "), err
        assert fragment in err, (fragment, err)
        assert "Traceback" not in err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "--data FILE" in capsys.readouterr().out


def test_python_dash_m_runs_main(tmp_path):
    # The __main__ guard, in a fresh process started outside the source tree.
    data = write_csv(tmp_path / "small.csv")
    done = subprocess.run(
        [sys.executable, "-m", "skbce", "--data", str(data), "--labels", "nope"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"skbce: error: --labels: small.csv has no label(s) nope; it has: "
        f"{', '.join([f'f{j}' for j in range(6)] + ['red', 'green', 'blue'])}"
    ]
