"""experiments/precision_parity.py: pairs bf16 and fp32 run folders by (method, lr, seed) and judges the differences
against fp32's own seed-to-seed spread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import precision_parity as pp


def _run(folder: Path, name: str, precision: str, best: float, last: float, curve: list[float]) -> None:
    path = folder / name
    path.mkdir(parents=True)
    final = {"split": "validation", "examples": 872, "best": {"accuracy": best}, "last": {"accuracy": last}}
    results = {"precision": precision, "main_metric": "accuracy", "final": final}
    (path / "results.json").write_text(json.dumps(results))
    rows = [{"step": 20 * (k + 1), "accuracy": v, "split": "holdout"} for k, v in enumerate(curve)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def _pair(folder: Path, seed: int, fp32: float, bf16: float) -> None:
    _run(folder, f"superpos-lr0.002-seed{seed}-bf16off", "fp32", fp32, fp32, [0.5, fp32])
    _run(folder, f"superpos-lr0.002-seed{seed}-bf16on", "bf16-autocast", bf16, bf16, [0.5, bf16])


def test_pairs_by_seed_and_judges_against_seed_spread(tmp_path):
    for seed, (fp32, bf16) in enumerate([(0.60, 0.61), (0.70, 0.69), (0.50, 0.515)]):
        _pair(tmp_path, seed, fp32, bf16)
    _run(tmp_path, "superpos-lr0.002-seed7-bf16on", "bf16-autocast", 0.9, 0.9, [0.9])  # no fp32 partner: left out
    text = pp.report(tmp_path)
    assert "**superpos, lr 0.002** (3 seeds; validation accuracy on 872 examples)" in text
    assert "| 1 | 0.700 | 0.690 |" in text and "| 7 |" not in text
    assert "per seed +1.0, -1.0, +1.5" in text
    assert text.count("**within seed noise**") == 2  # fp32 sd is 10 pp; differences ~1 pp


def test_a_consistent_shift_is_outside_seed_noise(tmp_path):
    for seed, fp32 in enumerate([0.60, 0.62, 0.61]):
        _pair(tmp_path, seed, fp32, fp32 - 0.05)
    assert pp.report(tmp_path).count("**outside seed noise**") == 2


def test_precisions_must_match_the_folder_names(tmp_path):
    _run(tmp_path, "prompt-lr0.001-seed0-bf16off", "bf16-autocast", 0.5, 0.5, [0.5])
    _run(tmp_path, "prompt-lr0.001-seed0-bf16on", "bf16-autocast", 0.5, 0.5, [0.5])
    with pytest.raises(ValueError, match="precision differ"):
        pp.report(tmp_path)


def test_write_fills_only_the_marked_section(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    for seed in range(2):
        _pair(runs, seed, 0.6 + seed / 10, 0.6 + seed / 10)
    doc = tmp_path / "RESULTS.md"
    doc.write_text("before\n<!-- precision-parity:begin -->\nold\n<!-- precision-parity:end -->\nafter\n")
    monkeypatch.setattr("sys.argv", ["precision_parity.py", "--folder", str(runs), "--write", str(doc)])
    assert pp.main() == 0
    text = doc.read_text()
    assert text.startswith("before\n<!-- precision-parity:begin -->\n**superpos") and text.endswith("end -->\nafter\n")
    assert "old" not in text and "(2 seeds;" in text
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    monkeypatch.setattr("sys.argv", ["precision_parity.py", "--folder", str(runs), "--write", str(bare)])
    assert pp.main() == 2 and "no <!-- precision-parity:begin -->" in capsys.readouterr().err


def test_results_page_holds_the_tables_of_the_committed_run_files():
    from experiments import doc_sections

    page = Path(__file__).resolve().parents[1] / "bench" / "RESULTS.md"
    assert doc_sections.section(page.read_text(encoding="utf-8"), pp.SECTION) == pp.report(pp.FOLDER).strip("\n")
