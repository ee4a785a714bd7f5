"""experiments/winit_training.py: pairs each ``--w-init`` run with the ``normal`` run of the same seed (the grid's
own run where it has one) and reports the paired differences from run files only."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import winit_training as wt

SST2 = wt.Study("sst2", "0.006", ("normal", "cone", "prompt"), "0.001")


def _run(folder: Path, best: float, last: float, loss20: float) -> None:
    folder.mkdir(parents=True)
    final = {"split": "validation", "examples": 872, "best": {"accuracy": best}, "last": {"accuracy": last}}
    results = {"main_metric": "accuracy", "best_metric": best + 0.05, "final": final}
    (folder / "results.json").write_text(json.dumps(results))
    rows = [
        {"step": 20, "train_loss": loss20, "accuracy": 0.5, "split": "holdout"},
        {"step": 40, "train_loss": 0.7, "accuracy": best, "split": "holdout"},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_pairs_by_seed_against_normal(tmp_path):
    grid, runs = tmp_path / "grid", tmp_path / "runs"
    for seed, score in enumerate([0.60, 0.70, 0.65]):
        normal = (
            grid / "sst2" / f"superpos-lr0.006-seed{seed}" if seed < 2 else runs / "sst2-superpos-normal-lr0.006-seed2"
        )
        _run(normal, score, score - 0.1, 7.0)  # seed 2's normal run is the study's own: found all the same
        _run(runs / f"sst2-superpos-cone-lr0.006-seed{seed}", score + 0.02, score - 0.1, 3.0)
    _run(runs / "sst2-superpos-prompt-lr0.006-seed0", 0.9, 0.9, 1.0)  # one seed only: no interval
    text = wt.report(grid, runs, (SST2,), pooled=())
    assert text.startswith("**SST-2, SuperPos lr 0.006, seeds 0-2**")
    assert "| normal | 3 | 65.0 ± 5.0 | 55.0 ± 5.0 | 70.0 ± 5.0 | 7.00 ± 0.00 | s0: 60.0 / 50.0," in text
    assert "| cone | 3 | 67.0 ± 5.0 |" in text and "| 3.00 ± 0.00 |" in text
    assert (
        "- cone minus normal (3 paired seeds, 95 % t-interval): held-out best (what a choice may use) +2.0 pp "
        "[+2.0, +2.0]; validation, best adapter +2.0 pp [+2.0, +2.0]" in text
    )
    assert "last adapter +0.0 pp [+0.0, +0.0]." in text and "- cone, seed 1: 0.50 0.72" in text
    assert "- prompt minus normal: 1 paired seed(s), no interval yet." in text
    assert "| simple prompt tuning | 0 | - |" in text


def test_pooled_held_out_difference_over_the_studies_that_ran_the_init(tmp_path):
    grid, runs = tmp_path / "grid", tmp_path / "runs"
    rte = wt.Study("rte", "0.002", ("normal", "cone"))
    for seed in range(3):
        _run(grid / "sst2" / f"superpos-lr0.006-seed{seed}", 0.6, 0.6, 5.0)
        _run(runs / f"sst2-superpos-cone-lr0.006-seed{seed}", 0.6 + 0.01 * (seed + 1), 0.6, 5.0)
        _run(runs / f"rte-superpos-normal-lr0.002-seed{seed}", 0.5, 0.5, 5.0)
        _run(runs / f"rte-superpos-cone-lr0.002-seed{seed}", 0.5 + 0.01 * (seed + 1), 0.5, 5.0)
    text = wt.report(grid, runs, (SST2, rte), pooled=(SST2, rte))
    # held-out best = validation best + 0.05 in _run: differences 1, 2, 3 pp on each task
    assert "Pooled over SST-2+RTE (each init over the studies that ran it):" in text
    assert "- **Pooled (cone minus normal, held-out best)**: +2.0 pp [+1.1, +2.9] over 6 seed pairs" in text
    assert "prompt minus normal, held-out" not in text  # one prompt run: no interval


def test_fresh_seeds_are_read_from_the_study_alone(tmp_path):
    fresh = wt.Study("sst2", "0.006", ("normal", "cone"), seeds=(5, 6), note="fresh seeds, confirmatory")
    _run(tmp_path / "grid" / "sst2" / "superpos-lr0.006-seed0", 0.9, 0.9, 1.0)  # another seed: not read
    for seed in (5, 6):
        _run(tmp_path / "runs" / f"sst2-superpos-normal-lr0.006-seed{seed}", 0.6, 0.6, 5.0)
        _run(tmp_path / "runs" / f"sst2-superpos-cone-lr0.006-seed{seed}", 0.7, 0.7, 4.0)
    text = wt.report(tmp_path / "grid", tmp_path / "runs", (fresh,), pooled=())
    assert text.startswith("**SST-2, SuperPos lr 0.006, seeds 5-6** (fresh seeds, confirmatory)")
    assert "| normal | 2 | 60.0 ± 0.0 |" in text and "held-out best (what a choice may use) +10.0 pp" in text


def test_a_study_without_a_prompt_tuning_lr_has_no_prompt_tuning_row(tmp_path):
    text = wt.report(tmp_path, tmp_path, (wt.Study("rte", "0.002", ("normal", "cone")),), pooled=())
    assert "| normal | 0 |" in text and "| cone | 0 |" in text and "simple prompt tuning" not in text


def test_write_needs_the_markers(tmp_path, capsys):
    doc = tmp_path / "STUDY.md"
    doc.write_text("a\n<!-- winit-training:begin -->\nold\n<!-- winit-training:end -->\nb\n")
    none = str(tmp_path / "none")
    args = ["--grid", none, "--runs", none]
    assert wt.main([*args, "--write", str(doc)]) == 0
    assert "old" not in doc.read_text() and "| normal | 0 |" in doc.read_text()
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert wt.main([*args, "--write", str(bare)]) == 2
    assert "no <!-- winit-training:begin -->" in capsys.readouterr().err


def test_the_study_page_holds_the_tables_of_the_committed_run_files():
    doc = Path(__file__).resolve().parents[1] / "docs" / "DEFAULTS_STUDY.md"
    from experiments import doc_sections

    assert doc_sections.section(doc.read_text(encoding="utf-8"), wt.SECTION) == wt.report()
