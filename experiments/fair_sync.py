#!/usr/bin/env python
"""Carry the fair grid's finished runs between its run folders and the committed copy, both ways.

The grid (experiments/run_fair.py) takes many hours and outlives a machine: its run folders
(``experiments/runs/fair/``, not committed) hold checkpoints, logs and adapters, while the report needs only four
small files per finished run. ``save`` copies those into the committed copy (``experiments/results/fair/run_files``)
and regenerates the report from it; ``restore`` puts the committed runs back into a fresh run folder in the
driver's layout, so that on a new machine the driver resumes where the last one stopped instead of re-running
finished work.

    python experiments/fair_sync.py save [--runs <grid's run folders>]      # then commit results/fair and the page
    python experiments/fair_sync.py restore [--runs <a fresh grid folder>]  # before the driver starts

Only finished runs (``run/results.json`` present) travel; an unfinished run stays where it is. Nothing is ever
overwritten in a run folder: ``restore`` skips a run the folder already has (it may be newer than the copy).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

if not __package__:  # run as `python experiments/fair_sync.py`: the repository root makes `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import fair_plan as fp
from experiments import fair_report

RUN_FILES = fair_report.RUN_FILES
SPEC = "experiment.json"  # the driver's record of the run (command, code version); beside the trainer's folder
TRAINER_FILES = ("config.json", "metrics.jsonl", "results.json")  # what the report reads of the trainer's folder
AUTO_LR = "auto_lr.json"


def finished_runs(runs: Path) -> list[Path]:
    """The driver's run folders ``<model>/<task>/<run>`` under ``runs`` whose trainer folder has results.json."""
    return sorted(path.parent.parent for path in runs.glob(f"*/*/*/run/{TRAINER_FILES[-1]}"))


def save(runs: Path, copy: Path = RUN_FILES) -> int:
    """Copy every finished run's files and each model's auto_lr.json from ``runs`` into ``copy`` (flat: a run's
    folder holds its files itself). Returns the number of runs copied."""
    for auto in runs.glob(f"*/{AUTO_LR}"):
        (copy / auto.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(auto, copy / auto.parent.name / AUTO_LR)
    folders = finished_runs(runs)
    for folder in folders:
        target = copy / folder.relative_to(runs)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / SPEC, target / SPEC)
        for name in TRAINER_FILES:
            shutil.copy2(folder / "run" / name, target / name)
    return len(folders)


def restore(runs: Path, copy: Path = RUN_FILES) -> tuple[int, int]:
    """Put the committed runs back into ``runs`` in the driver's layout (``<run>/experiment.json``,
    ``<run>/run/{config,metrics,results}``); a run folder that already exists is left alone. Returns (restored,
    skipped)."""
    restored = skipped = 0
    for auto in copy.glob(f"*/{AUTO_LR}"):
        target = runs / auto.parent.name / AUTO_LR
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(auto, target)
    for results in sorted(copy.glob(f"*/*/*/{TRAINER_FILES[-1]}")):
        source = results.parent
        target = runs / source.relative_to(copy)
        if target.exists():
            skipped += 1
            continue
        (target / "run").mkdir(parents=True)
        shutil.copy2(source / SPEC, target / SPEC)
        for name in TRAINER_FILES:
            shutil.copy2(source / name, target / "run" / name)
        restored += 1
    return restored, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("direction", choices=("save", "restore"), help="save: run folders -> copy; restore: back")
    parser.add_argument(
        "--runs", type=Path, default=fp.RUNS, help=f"the grid's run folders (default {fp.RUNS.relative_to(fp.ROOT)})"
    )
    args = parser.parse_args(argv)
    if args.direction == "save":
        if not args.runs.is_dir():
            print(f"error: --runs {args.runs} is not a folder; give the grid's run folders", file=sys.stderr)
            return 2
        print(f"saved {save(args.runs)} finished runs to {RUN_FILES.relative_to(fp.ROOT)}")
        return fair_report.main(["--runs", str(RUN_FILES)])
    restored, skipped = restore(args.runs)
    print(f"restored {restored} finished runs into {args.runs} ({skipped} already there, left alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
