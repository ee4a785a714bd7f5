"""experiments/fair_sync.py: the fair grid's finished runs travel to the committed copy and back (fake runs)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import fair_plan as fp
from experiments import fair_report, fair_sync

from .test_fair_report import MODEL, fake, select_run
from .test_run_fair import write_autos


def grid(root: Path) -> tuple[fp.Run, fp.Run]:
    """A grid folder with one finished run and one unfinished (a checkpoint, no results.json yet)."""
    write_autos(root)
    done, running = select_run("sst2", "superpos", 0), select_run("sst2", "prompt", 0)
    fake(done, root, [0.5, 0.7], 0.72, 0.70)
    (done.run_dir(root) / "config.json").write_text('{"lr": 0.002}')
    (done.folder(root) / "experiment.json").write_text(json.dumps({"model": MODEL, "seed": 0}))
    (running.run_dir(root) / "checkpoint").mkdir(parents=True)
    (running.run_dir(root) / "config.json").write_text("{}")
    return done, running


def test_save_copies_finished_runs_flat_and_restore_rebuilds_the_drivers_layout(tmp_path: Path):
    runs, copy, fresh = tmp_path / "runs", tmp_path / "copy", tmp_path / "fresh"
    done, running = grid(runs)
    assert fair_sync.save(runs, copy) == 1
    flat = copy / done.folder(runs).relative_to(runs)
    assert sorted(p.name for p in flat.iterdir()) == ["config.json", "experiment.json", "metrics.jsonl", "results.json"]
    assert not (copy / running.folder(runs).relative_to(runs)).exists()  # unfinished: stays in the grid
    assert (copy / MODEL / "auto_lr.json").read_text() == fp.auto_lr_path(MODEL, runs).read_text()

    assert fair_sync.restore(fresh, copy) == (1, 0)
    assert done.run_dir(fresh) == done.folder(fresh) / "run"  # the driver's layout, not the flat one
    for name in ("config.json", "metrics.jsonl", "results.json"):
        assert (done.run_dir(fresh) / name).read_bytes() == (done.run_dir(runs) / name).read_bytes()
    assert (done.folder(fresh) / "experiment.json").is_file()
    (before,), (after,) = fair_report.collect(runs), fair_report.collect(fresh)
    assert before.selection.keys() == after.selection.keys() and len(after.selection) == 1


def test_restore_never_overwrites_a_run_the_grid_already_has(tmp_path: Path):
    runs, copy = tmp_path / "runs", tmp_path / "copy"
    done, _ = grid(runs)
    fair_sync.save(runs, copy)
    newer = done.run_dir(runs) / "results.json"
    newer.write_text(newer.read_text().replace("0.72", "0.73"))
    assert fair_sync.restore(runs, copy) == (0, 1)
    assert "0.73" in newer.read_text()


def test_save_refuses_a_missing_runs_folder_before_writing(tmp_path: Path, capsys):
    assert fair_sync.main(["save", "--runs", str(tmp_path / "typo")]) == 2
    assert "--runs " in capsys.readouterr().err
