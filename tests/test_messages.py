"""What a new user reads: verbose progress, input errors, the demo's grid note."""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from skbce import MultiLabelLogistic
from skbce.linear_model import _solver_base
from skbce.linear_model._solver_base import _Progress


def test_progress_says_labels_done_and_stays_a_few_lines_per_iteration(monkeypatch, capsys):
    # A 5 000-label fit whose iteration count stays at 11 for 100 s while
    # labels move through the pool: it printed "iter 11" once a second.
    clock = iter(np.arange(0.0, 1000.0, 0.25))
    monkeypatch.setattr(_solver_base.time, "perf_counter", lambda: next(clock))
    progress = _Progress("newton-cg", verbose=1, n_labels=5000)
    for step in range(400):  # 100 s, an iteration's line due every 0.25 s
        remaining = 5000 - 10 * step
        progress(11, 0.5, 1e-3, remaining, pool=min(500, remaining))
    lines = capsys.readouterr().out.splitlines()
    assert 3 <= len(lines) <= 8
    done = [int(re.search(r"labels done (\d+)/5000 \(\d+ in the pool\)", line)[1])
            for line in lines]
    assert done == sorted(done) and done[-1] > done[0]
    # A new iteration count is shown again (at most once a second).
    for _ in range(8):
        progress(12, 0.4, 1e-3, 100, pool=100)
    assert "iter    12" in capsys.readouterr().out


def test_a_fit_with_verbose_prints_labels_done(capsys):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((60, 4)), rng.integers(0, 2, (60, 3))
    MultiLabelLogistic(solver="newton-cg", verbose=2).fit(X, Y)
    out = capsys.readouterr().out
    assert re.search(r"\[newton-cg\] iter +\d+ +labels done \d/3", out)


@pytest.mark.parametrize("X, y, message", [
    (None, [0, 1], r"^X is None: MultiLabelLogistic needs X"),
    ([["a", "b"], ["c", "d"]], [0, 1], r"^X must hold numbers"),
    (np.zeros((2, 2)), [[2, 0], [1, 1]],
     r"^y must hold 0/1 labels or probabilities in \[0, 1\] \(soft targets\); found 2 at "
     r"index \(0, 0\)"),
    (np.zeros((2, 2)), [[0.5, 1.5], [1, 1]], r"^y must hold .* found 1\.5 at index \(0, 1\)"),
], ids=["X None", "string X", "label 2", "soft 1.5"])
def test_input_errors_name_the_argument_and_the_problem_first(X, y, message):
    with pytest.raises(ValueError, match=message):
        MultiLabelLogistic().fit(X, y)


def test_demo_says_when_the_best_C_is_at_the_edge_of_its_grid():
    from skbce.__main__ import best_c_line

    def search(bce):
        return SimpleNamespace(cv_results_={
            "param_C": np.array([0.01, 0.1, 1.0, 10.0]),
            "mean_test_bce": -np.asarray(bce),
            "mean_test_log_loss": -np.array([3.0, 2.0, 1.0, 2.0]),
        })

    edge = best_c_line(search([0.4, 0.3, 0.2, 0.1]))
    assert edge.startswith("best C by skbce.bce_scorer: 10; by neg_log_loss: 1")
    assert "C=10 is the largest C of the grid: the best C may lie beyond it" in edge
    assert "smallest C of the grid" in best_c_line(search([0.1, 0.2, 0.3, 0.4]))
    inside = best_c_line(search([0.4, 0.1, 0.2, 0.3]))
    assert inside == "best C by skbce.bce_scorer: 0.1; by neg_log_loss: 1"
