"""Shared by the bad-input corpus (tests/test_bad_inputs*.py): run a CLI command that must fail, check the answer.

The contract every case checks: exit code 2, exactly one error line on stderr (info logs may come first), no
traceback, the file or option named in it, and the run folder (when one is given) byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from superpos_trainer import run_folder
from superpos_trainer.cli import main

# SUPERPOS_FUZZ_EXAMPLES=5000 turns the property tests into a longer fuzzing run (the default keeps them fast).
FUZZ_EXAMPLES = int(os.environ.get("SUPERPOS_FUZZ_EXAMPLES", "150"))
# Files that may change without the run changing: the log grows, the lock holds the pid of its last holder.
VOLATILE = ("train.log", ".lock")


@dataclass
class Ctx:
    tmp: Path
    t5: Path
    data: Path
    finished: Path
    capsys: pytest.CaptureFixture
    monkeypatch: pytest.MonkeyPatch


def train_args(ctx: Ctx, out: Path, *extra: str, data: Path | None = None, task: str = "sst2") -> list[str]:
    fixed = "--epochs 1 --batch-size 4 --num-prompt-tokens 4 --num-sampled-tokens 16 --max-length 64 --save-steps 2"
    fixed += " --eval-mode rank --train-limit 0 --eval-limit 0 --no-progress"
    paths = ["--model", str(ctx.t5), "--data-dir", str(data or ctx.data), "--output-dir", str(out)]
    return ["train", "--task", task, *paths, *fixed.split(), *extra]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in VOLATILE
    }


def cli_fails(ctx: Ctx, args: list[str], *needles: str, run: Path | None = None) -> str:
    """The CLI exits 2 with one clear line holding every needle; ``run`` (if given) is left byte-identical."""
    before = snapshot(run) if run is not None else None
    ctx.capsys.readouterr()
    assert main(args) == 2
    err = ctx.capsys.readouterr().err
    prefix = f"superpos {args[0]}: error: "
    errors = [line for line in err.splitlines() if line.startswith(prefix)]
    assert "Traceback" not in err and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-3000:]
    last = errors[0]
    assert len(last) < 2200, f"an error line of {len(last)} characters"
    for needle in needles:
        assert needle in last, (needle, last)
    if run is not None:
        assert snapshot(run) == before
    return last


def copy_run(source: Path, dest: Path) -> Path:
    """A copy of a finished run, its config pointing at the copy (a resume rewrites config.json byte-identically)."""
    shutil.copytree(source, dest)
    config = json.loads((dest / "config.json").read_text())
    run_folder.write_json(dest / "config.json", {**config, "output_dir": str(dest)})
    return dest


def finished_run(ctx: Ctx, out: Path, *extra: str) -> Path:
    assert main(train_args(ctx, out, *extra)) == 0
    return out


__all__ = ["FUZZ_EXAMPLES", "VOLATILE", "Ctx", "cli_fails", "copy_run", "finished_run", "snapshot", "train_args"]
