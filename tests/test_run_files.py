"""run_folder.RunFolder: the names match what ``superpos train`` writes, every reader fails with one line, and
metrics.jsonl is appended (an interrupted append never becomes a row; a resume keeps the earlier rows byte for byte)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from superpos_trainer import run_folder
from superpos_trainer.cli import main
from superpos_trainer.errors import RunFolderError
from superpos_trainer.run_folder import RunFolder
from superpos_trainer.tasks import get_task

ROWS = [{"step": 4, "accuracy": 0.5, "train_loss": 2.0}, {"step": 8, "accuracy": 0.75, "train_loss": 1.0}]


def _folder(tmp_path: Path, config: object = None, metrics: str | None = None, results: object = None) -> RunFolder:
    run = tmp_path / "run"
    run.mkdir()
    if config is not None:
        (run / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if metrics is not None:
        (run / "metrics.jsonl").write_text(metrics)
    if results is not None:
        (run / "results.json").write_text(results if isinstance(results, str) else json.dumps(results))
    return RunFolder(run)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _jsonl_sorted(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def test_names_match_the_files_a_real_run_writes(tiny_t5, tiny_data, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_t5), "--data-dir", str(tiny_data), "--output-dir", str(out)]
    argv += ["--epochs", "1", "--batch-size", "4", "--num-prompt-tokens", "4", "--num-sampled-tokens", "16"]
    argv += ["--max-length", "64", "--save-steps", "1", "--no-progress"]
    assert main(argv) == 0
    run = RunFolder(out)
    paths = (run.config_path, run.metrics_path, run.results_path, run.log_path, run.learning_curve_path)
    assert all(p.is_file() for p in paths), [p.name for p in paths if not p.is_file()]
    assert all(d.is_dir() for d in (run.best_dir, run.last_dir, run.checkpoint_dir))
    assert run.finished and run.config()["task"] == "sst2" and run.main_metric() == "accuracy"
    rows = run.metrics()
    assert rows and [r["step"] for r in rows] == sorted(r["step"] for r in rows)
    assert run.results()["best_metric"] == max(r["accuracy"] for r in rows)


def test_metrics_rows_in_order_blank_lines_skipped_and_none_before_the_first_evaluation(tmp_path):
    run = _folder(tmp_path, config={"task": "sst2"})
    assert run.metrics() == []  # no metrics.jsonl yet: a run before its first evaluation
    run.metrics_path.write_text(_jsonl(ROWS[:1]) + "\n" + _jsonl(ROWS[1:]))
    assert run.metrics() == ROWS


def test_a_broken_metrics_line_is_an_error_naming_the_line_and_an_unfinished_append_is_no_row(tmp_path):
    # A complete line (newline-terminated) that is not a row is damage; a last line without its newline is an
    # append in progress, or one a kill cut short: not a row yet.
    run = _folder(tmp_path, config={"task": "sst2"}, metrics=_jsonl(ROWS) + '{"step": 12, "accur')
    assert run.metrics() == ROWS
    run.metrics_path.write_text(_jsonl(ROWS) + '{"step": 12, "accur\n')
    with pytest.raises(RunFolderError, match=r"metrics\.jsonl line 3 is not JSON"):
        run.metrics()


def test_metrics_are_appended_and_a_resume_keeps_earlier_rows_byte_for_byte(tmp_path):
    run = RunFolder(tmp_path, main=True)
    for row in ROWS:
        run.append_metrics(row)
    written = run.metrics_path.read_bytes()
    assert written == _jsonl_sorted(ROWS).encode() and run.metrics() == ROWS
    with open(run.metrics_path, "ab") as handle:  # a kill in the middle of the third append
        handle.write(b'{"accuracy": 0.9, "st')
    run.truncate_metrics(8)  # resuming from the step-8 checkpoint: the torn line goes
    assert run.metrics_path.read_bytes() == written
    run.truncate_metrics(4)  # from step 4: the step-8 row will be redone
    assert run.metrics_path.read_bytes() == _jsonl_sorted(ROWS[:1]).encode()
    run.truncate_metrics(None)  # no checkpoint: every row will be redone
    assert run.metrics_path.read_bytes() == b""


def test_only_rank_0_writes(tmp_path):
    other = RunFolder(tmp_path, main=False)
    other.write_config({"task": "sst2"})
    other.append_metrics(ROWS[0])
    other.write_results({"main_metric": "accuracy"})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    run = RunFolder(tmp_path, main=True)
    run.append_metrics(ROWS[0])
    before = run.metrics_path.read_bytes()
    real_write = run_folder.os.write

    def half_then_full(fd, data):  # writes 5 bytes, then the disk is full
        if len(data) > 5:
            return real_write(fd, bytes(data[:5]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_folder.os, "write", half_then_full)
    with pytest.raises(RunFolderError, match=r"No space left on device.*previous metrics\.jsonl is kept"):
        run.append_metrics(ROWS[1])
    monkeypatch.undo()
    assert run.metrics_path.read_bytes() == before


def test_config_missing_or_not_an_object_is_one_clear_error(tmp_path):
    run = _folder(tmp_path)
    with pytest.raises(RunFolderError, match=r"is not a run folder \(no config\.json\)"):
        run.config()
    run.config_path.write_text("{task: sst2")
    with pytest.raises(RunFolderError, match=r"config\.json is not valid JSON"):
        run.config()
    run.config_path.write_text("[1, 2]")
    with pytest.raises(RunFolderError, match="must hold a JSON object, found a JSON list"):
        run.config()


def test_results_only_for_a_finished_run(tmp_path):
    run = _folder(tmp_path, config={"task": "sst2"}, metrics=_jsonl(ROWS))
    assert not run.finished
    with pytest.raises(RunFolderError, match=r"holds no results\.json: the run has not finished"):
        run.results()
    run.results_path.write_text(json.dumps({"main_metric": "accuracy", "best_metric": 0.75}))
    assert run.finished and run.results()["best_metric"] == 0.75


def test_main_metric_from_results_else_from_the_task(tmp_path):
    run = _folder(tmp_path, config={"task": "mrpc"})
    assert run.main_metric() == get_task("mrpc").main_metric  # unfinished: the task decides
    run.results_path.write_text(json.dumps({"main_metric": "f1"}))
    assert run.main_metric() == "f1"
    run.results_path.write_text(json.dumps({"best_metric": 0.5}))  # results without it: the task again
    assert run.main_metric() == get_task("mrpc").main_metric
    run.config_path.write_text(json.dumps({"method": "prompt"}))
    with pytest.raises(RunFolderError, match="names no task"):
        run.main_metric()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "is not a run folder (no config.json)"),
        ({"config": "{"}, "config.json is not valid JSON"),
        ({"config": {"task": "sst2"}, "metrics": _jsonl(ROWS) + "{\n"}, "metrics.jsonl line 3 is not JSON"),
        (
            {"config": {"task": "sst2"}, "metrics": _jsonl(ROWS), "results": "[]"},
            "results.json must hold a JSON object, found a JSON list",
        ),
    ],
    ids=["no-config", "config-not-json", "metrics-truncated", "results-not-object"],
)
def test_compare_on_a_damaged_folder_is_one_line_and_exit_2(files, expected, tmp_path, capsys):
    run = _folder(tmp_path, **files)
    assert main(["compare", str(run.path), "--output", str(tmp_path / "cmp.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "cmp.png").exists()
