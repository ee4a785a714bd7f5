"""The experiment scripts still run as scripts (``python experiments/<name>.py``), where the repository root is not
on the import path (as under ``pip install -e .``, which installs the two packages but not ``experiments``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .test_experiments_report import fake_run

ROOT = Path(__file__).resolve().parents[1]


def _script_env(tmp_path: Path) -> dict[str, str]:
    """The library and the trainer importable, the repository root (hence ``experiments``) not."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "superpos_kernels").symlink_to(ROOT / "superpos_kernels")
    (lib / "superpos_trainer").symlink_to(ROOT / "python" / "superpos_trainer")
    return {**os.environ, "PYTHONPATH": str(lib), "OMP_NUM_THREADS": "1"}


def _copy_experiments(dest: Path) -> Path:
    """A copy of experiments/ (its scripts write next to their own folder: docs/, experiments/results/)."""
    shutil.copytree(ROOT / "experiments", dest / "experiments", ignore=shutil.ignore_patterns("__pycache__", "runs"))
    return dest / "experiments"


def test_report_runs_as_a_script_and_finds_its_sibling_driver(tiny_data, tmp_path):
    repo = tmp_path / "repo"
    experiments = _copy_experiments(repo)
    fake_run(experiments / "runs", "compare", "sst2", "prompt", 0, [0.5, 0.75])
    fake_run(experiments / "runs", "compare", "sst2", "superpos", 0, [0.75, 1.0])
    env = {**_script_env(tmp_path), "SUPERPOS_DATA_DIR": str(tiny_data)}
    done = subprocess.run(
        [sys.executable, str(experiments / "report.py")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "2 runs -> docs/EXPERIMENTS.md"
    doc = (repo / "docs" / "EXPERIMENTS.md").read_text()
    assert "2 finished runs of the" in doc  # the numbers come from the two fake runs (best 1.0 and 0.75):
    assert "| sst2 | accuracy | SuperPos-Prompt | 1 | 100.0 ± 0.0 |" in doc
    assert "| sst2 | accuracy | Simple prompt tuning | 1 | 75.0 ± 0.0 |" in doc


def test_run_comparison_dry_run_runs_as_a_script(tmp_path):
    experiments = _copy_experiments(tmp_path / "repo")
    done = subprocess.run(
        [sys.executable, str(experiments / "run_comparison.py"), "--plan", "sst2", "--dry-run"],
        cwd=tmp_path,
        env=_script_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines and all(" train --model smollm2-135m " in line for line in lines), done.stdout[:2000]
    assert not (experiments / "runs").exists()  # a dry run writes nothing
