"""experiments/report.py: the numbers in docs/EXPERIMENTS.md come from run files, aggregated correctly.

Synthetic run folders (the files ``superpos train`` and the driver write) stand in for real runs, so the check is
fast and its expected values are known exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments import report
from experiments import run_comparison as driver


def fake_run(root: Path, plan: str, task: str, method: str, seed: int, curve: list[float], m: int = 128) -> None:
    folder = root / plan / task / f"{method}-m{m}-seed{seed}"
    (folder / "run").mkdir(parents=True)
    spec = {"plan": plan, "task": task, "method": method, "seed": seed, "m": m, "command": "superpos train ..."}
    (folder / "experiment.json").write_text(json.dumps(spec))
    rows = [{"step": 8 * (i + 1), "accuracy": v, "train_loss": 1.0} for i, v in enumerate(curve)]
    (folder / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    best = max(curve)
    results = {
        "main_metric": "accuracy",
        "best_metric": best,
        "best_step": 8 * (curve.index(best) + 1),
        "steps": 8 * len(curve),
        "train_seconds": 10.0 + seed,
        "num_train": 512,
        "num_eval": 100,
    }
    (folder / "run" / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    fake_run(tmp_path, "compare", "sst2", "prompt", 0, [0.5, 0.6, 0.7])
    fake_run(tmp_path, "compare", "sst2", "prompt", 1, [0.5, 0.8, 0.6])
    fake_run(tmp_path, "compare", "sst2", "superpos", 0, [0.7, 0.9, 0.8])  # reaches seed 0's 0.7 at step 8
    fake_run(tmp_path, "compare", "sst2", "superpos", 1, [0.6, 0.7, 0.9])  # reaches seed 1's 0.8 at step 24
    fake_run(tmp_path, "compare", "sst2", "residual", 0, [0.5, 0.6, 0.6])  # never reaches 0.7
    fake_run(tmp_path, "msweep", "sst2", "superpos", 0, [0.5, 0.55, 0.6], m=1)
    unfinished = tmp_path / "compare" / "rte" / "prompt-m128-seed0"
    (unfinished / "run").mkdir(parents=True)
    (unfinished / "experiment.json").write_text(
        json.dumps({"plan": "compare", "task": "rte", "method": "prompt", "seed": 0, "m": 128})
    )
    return tmp_path


def test_only_finished_runs_are_collected(runs_root):
    runs = report.collect(runs_root)
    assert len(runs) == 6
    assert all(r.task == "sst2" for r in runs)


def test_comparison_aggregates_over_seeds_and_pairs_reach_steps_by_seed(runs_root):
    rows = {r["method"]: r for r in report.comparison_rows(report.collect(runs_root))}
    superpos, prompt, residual = rows["superpos"], rows["prompt"], rows["residual"]
    assert superpos["best_mean"] == pytest.approx(0.9) and superpos["best_std"] == pytest.approx(0.0)
    assert prompt["best_mean"] == pytest.approx(0.75)
    assert prompt["best_std"] == pytest.approx(math.sqrt(((0.7 - 0.75) ** 2 + (0.8 - 0.75) ** 2) / 1))
    assert superpos["reach_step_mean"] == pytest.approx((8 + 24) / 2) and superpos["reached"] == 2
    assert prompt["reach_step_mean"] == pytest.approx((24 + 16) / 2)  # its own best step
    assert residual["reach_step_mean"] is None and (residual["reached"], residual["paired"]) == (0, 1)
    assert residual["seeds"] == 1 and residual["best_std"] == 0.0


def test_msweep_uses_the_comparison_run_for_m_128_on_common_seeds(runs_root):
    rows = report.msweep_rows(report.collect(runs_root), "sst2", (1, 16, 128))
    # m=1 has only seed 0, so m=128 (2 seeds finished) is compared on seed 0 alone: same data for every m.
    assert [(r["m"], r["seed_ids"]) for r in rows] == [(1, [0]), (128, [0])]
    assert rows[0]["best_mean"] == pytest.approx(0.6) and rows[1]["best_mean"] == pytest.approx(0.9)


def test_rendered_document_shows_the_measured_numbers_and_the_missing_runs(runs_root, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "IMG", tmp_path / "img")
    runs = report.collect(runs_root)
    baselines = {("sst2", 0): 0.6, ("sst2", 1): 0.5}
    sections = report.build_sections(runs, driver, baselines)
    short = next(s for s in sections if s["plan"] == "compare")
    assert short["curves_png"] == "img/compare_curves.png"
    assert (tmp_path / "img" / "compare_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.render(runs, sections, driver)
    # superpos: best 0.9 on both seeds, both above their constant-label scores (mean 55.0)
    assert (
        "| sst2 | accuracy | SuperPos-Prompt | 2 | 90.0 ± 0.0 | 90.0-90.0 | 90.0, 90.0 | 55.0 | 2/2 | 16 (2/2) |"
        in text
    )
    # residual has only seed 0: the winner is picked on the seeds every method finished
    assert "Highest mean best validation metric per task: sst2: SuperPos-Prompt (seeds 0)" in text
    assert "planned runs did not finish" in text and "compare / rte: superpos m=128 seed 0" in text


def test_driver_plan_is_complete_and_orders_seed_0_first():
    runs = driver.plan_runs("all")
    short = [r for r in runs if r.plan in ("compare", "msweep")]
    assert len(short) == 2 * len(driver.METHODS)  # the seed-0 pilot on SST-2 and RTE
    long = [r for r in runs if r.plan.endswith("-long")]
    assert len(long) == 3 * (len(driver.METHODS) + 2)  # 3 methods and m in {1, 16}, 3 seeds each
    assert {r.seed for r in long[:5]} == {0}  # all methods and the m sweep get seed 0 first
    mid = [r for r in runs if r.plan == "compare-mid"]
    assert len(mid) == len(driver.MID_TASKS) * len(driver.METHODS) * len(driver.SEEDS)
    assert [r.seed for r in mid] == sorted(r.seed for r in mid)  # seed-major: a cut grid still compares methods
    limits = {r.task: r.options("smollm2-135m")["train_limit"] for r in mid}
    assert limits == {"rte": 768, "cb": 192, "mrpc": 768}
    assert all(r.options("smollm2-135m")["max_steps"] == 96 for r in mid)
    assert len({r.run_dir for r in runs}) == len(runs)
    first = runs[0].options("smollm2-135m")
    assert first["output_dir"].startswith("experiments/runs/") and first["eval_mode"] == "rank"
    assert long[0].options("smollm2-135m")["max_steps"] > first["max_steps"]


def test_paired_rows_and_sign_test(runs_root: Path):
    runs = report.collect(runs_root)
    (row,) = report.paired_rows(runs, ("compare",), "prompt")
    # superpos best 0.9 on both seeds; prompt best 0.7 (seed 0) and 0.8 (seed 1)
    assert row["task"] == "sst2" and row["seeds"] == [0, 1]
    assert row["diffs"] == pytest.approx([0.2, 0.1])
    (row,) = report.paired_rows(runs, ("compare",), "residual")
    assert row["seeds"] == [0]  # residual finished seed 0 only
    assert report.paired_rows(runs, ("compare-mid",), "prompt") == []
    # exact two-sided sign test, ties dropped: 6 wins of 6 -> 2 / 2**6; 1 win 1 loss -> 1
    assert report.sign_test([0.1] * 6) == (6, 0, 0, pytest.approx(2 / 64))
    assert report.sign_test([0.1, 0.0, -0.2]) == (1, 1, 1, pytest.approx(1.0))
    assert report.sign_test([]) == (0, 0, 0, 1.0)
