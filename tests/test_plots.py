"""The learning curve: what it draws from metrics.jsonl, and that it renders with one or many evaluations."""

from __future__ import annotations

import json

import pytest
from superpos_trainer.plots import learning_curve_series, plot_learning_curve

ROWS = [
    {"step": 8, "accuracy": 0.5, "invalid_rate": 0.25, "train_loss": 2.0, "is_best": True},
    {"step": 16, "accuracy": 0.4, "invalid_rate": 0.0, "train_loss": 1.5, "is_best": False},
    {"step": 20, "accuracy": float("nan"), "invalid_rate": 1.0, "train_loss": None, "is_best": False},
]


def test_series_cover_every_evaluation_and_each_loss_interval():
    series = learning_curve_series(ROWS, "accuracy")
    assert series["metric"] == [(8, 0.5), (16, 0.4)]  # NaN is not drawn
    assert series["best"] == [(8, 0.5)]
    assert series["invalid"] == [(8, 0.25), (16, 0.0), (20, 1.0)]
    # the mean loss of steps 0..8, then 8..16; the last evaluation had no training steps
    assert series["loss"] == [(0, 8, 2.0), (8, 16, 1.5)]


def _run_dir(tmp_path, rows):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "results.json").write_text(json.dumps({"main_metric": "accuracy"}))
    return tmp_path


@pytest.mark.parametrize("rows", [ROWS[:1], ROWS], ids=["one-evaluation", "three-evaluations"])
def test_learning_curve_renders(tmp_path, rows):
    out = plot_learning_curve(_run_dir(tmp_path, rows))
    assert out == tmp_path / "learning_curve.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_no_metrics_no_plot(tmp_path):
    assert plot_learning_curve(tmp_path) is None
