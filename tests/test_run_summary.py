"""The `done:` line: best metric, the invalid share of the last evaluation, and the rank-mode hint when it is high."""

from __future__ import annotations

from pathlib import Path

import pytest
from superpos_trainer.runner import _print_summary


def results(best, invalid):
    return {
        "main_metric": "accuracy",
        "best_metric": best,
        "best_step": 20,
        "holdout": None,
        "last_eval": {"step": 20, "accuracy": best or 0.0, "invalid_rate": invalid},
    }


@pytest.mark.parametrize(
    ("best", "invalid", "expected", "hint"),
    [
        (0.0, 1.0, "done: best validation accuracy = 0.0000 at step 20; invalid outputs 100.0% at the last", True),
        (0.5, 0.5, "invalid outputs 50.0% at the last evaluation", True),
        (0.9, 0.03, "done: best validation accuracy = 0.9000 at step 20; invalid outputs 3.0% at the last", False),
    ],
)
def test_done_line_reports_the_invalid_share(capsys, best, invalid, expected, hint):
    _print_summary(results(best, invalid), Path("runs/x"))
    done = capsys.readouterr().out.splitlines()[0]
    assert expected in done
    assert ("--eval-mode rank" in done) is hint


def test_done_line_without_evaluations(capsys):
    _print_summary({"main_metric": "f1", "best_metric": None, "holdout": None, "last_eval": None}, Path("runs/x"))
    assert capsys.readouterr().out.splitlines()[0] == "done: no valid f1 was measured"
