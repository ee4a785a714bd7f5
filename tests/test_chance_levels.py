"""experiments/chance_levels.py: the best constant answer per task, scored with the task's own metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import chance_levels


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_best_single_answer_under_the_task_metric(tmp_path: Path):
    _write(tmp_path / "glue/sst2/dev.tsv", "sentence\tlabel\ngood\t1\nfine\t1\nbad\t0\n")
    # MRPC is scored by the mean of F1 (class 1) and accuracy: with one paraphrase in four, answering
    # "not_equivalent" everywhere scores (0 + 0.75) / 2 = 0.375, "equivalent" (0.4 + 0.25) / 2 = 0.325
    rows = "".join(f"{label}\t{i}\t{i + 10}\ts{i}\tt{i}\n" for i, label in enumerate([1, 0, 0, 0]))
    _write(tmp_path / "glue/mrpc/dev.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + rows)
    levels = chance_levels.compute(["sst2", "mrpc"], tmp_path)
    assert levels["sst2"] == {"metric": "accuracy", "score": pytest.approx(2 / 3), "answer": "positive", "examples": 3}
    assert levels["mrpc"]["metric"] == "f1_accuracy" and levels["mrpc"]["answer"] == "not_equivalent"
    assert levels["mrpc"]["score"] == pytest.approx(0.375)


def test_a_missing_data_folder_is_one_line_and_exit_2(tmp_path: Path, capsys):
    assert chance_levels.main(["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: --data-dir ")


def test_a_data_folder_without_a_task_file_is_one_line_and_exit_2(tmp_path: Path, capsys):
    _write(tmp_path / "glue/sst2/dev.tsv", "sentence\tlabel\ngood\t1\n")  # the other tasks' files are missing
    assert chance_levels.main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not chance_levels.CHANCE.read_text().startswith("{}")  # the committed file is left as it was


def test_the_committed_levels_cover_every_task_of_the_grid():
    from experiments import fair_plan as fp

    levels = chance_levels.read()
    assert set(levels) == {task for tasks in fp.MODELS.values() for task in tasks}
    assert all(0 < level["score"] < 1 and level["examples"] > 0 for level in levels.values())
