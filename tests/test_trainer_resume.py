"""Exact resume: a run SIGKILLed mid-epoch and resumed ends with the same metrics and adapters as one never killed."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from superpos_trainer.cli import main
from superpos_trainer.collate import epoch_batches
from superpos_trainer.run_folder import find_folder, write_folder

TIMING_KEYS = {"wall_time", "eval_seconds", "eval_examples_per_s", "train_examples_per_s"}
REPO = Path(__file__).resolve().parents[1]
# The last commit before the run folder got one owner (issue 13: metrics.jsonl appended, run_files.py and
# run_folder.py merged, the trainer split): run folders it wrote must resume under today's code.
BEFORE_RUN_FOLDER_REFACTOR = "bd71617"


def _args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    # 12 train examples, batch 4 -> 3 steps per epoch, 9 steps; checkpoints at 2, 3 (epoch end), 4, 6, ...
    return [
        "train",
        "--model",
        str(model),
        "--task",
        "sst2",
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--num-prompt-tokens",
        "4",
        "--num-sampled-tokens",
        "16",
        "--max-length",
        "64",
        "--save-steps",
        "2",
        "--dropout",
        "on",
        "--train-limit",
        "0",
        "--eval-limit",
        "0",
        "--no-progress",
        *extra,
    ]


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tiny_t5, tiny_data, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(_args(tiny_t5, tiny_data, straight)) == 0

    env = {**os.environ, "SUPERPOS_FAULT_INJECT": "step:5:1"}  # mid-epoch 2, one step after the step-4 checkpoint
    proc = subprocess.run(
        [sys.executable, "-m", "superpos_trainer.cli", *_args(tiny_t5, tiny_data, killed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = json.loads((killed / "checkpoint" / "trainer_state.json").read_text())
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (4, 1, 1)
    assert not (killed / "results.json").exists()

    assert main([*_args(tiny_t5, tiny_data, killed), "--resume"]) == 0
    assert _metrics(killed) == _metrics(straight)
    assert [r["step"] for r in _metrics(straight)] == [3, 6, 9]
    for name in ("best", "last"):
        a, b = _tensors(straight / name), _tensors(killed / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (straight, killed))
    assert (ra["best_metric"], ra["best_step"], ra["steps"]) == (rb["best_metric"], rb["best_step"], rb["steps"])
    assert (killed / "learning_curve.png").stat().st_size > 1000


def test_resume_refuses_a_different_config(tiny_t5, tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*_args(tiny_t5, tiny_data, run), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*_args(tiny_t5, tiny_data, run), "--epochs", "1", "--lr", "0.5", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "lr: 0.01 -> 0.5" in err and "Traceback" not in err
    # without --resume the folder is protected
    assert main([*_args(tiny_t5, tiny_data, run), "--epochs", "1"]) == 2
    assert "--resume" in capsys.readouterr().err
    # resuming a finished run changes nothing
    before = (run / "metrics.jsonl").read_text()
    assert main([*_args(tiny_t5, tiny_data, run), "--epochs", "1", "--resume"]) == 0
    assert (run / "metrics.jsonl").read_text() == before


def test_folder_swap_survives_a_kill_between_renames(tmp_path):
    target = tmp_path / "best"
    write_folder(target, lambda d: (d / "x.txt").write_text("1"))
    write_folder(target, lambda d: (d / "x.txt").write_text("2"))
    assert (find_folder(target) / "x.txt").read_text() == "2"
    assert not target.with_name("best.old").exists()
    # A kill after `best -> best.old` but before `tmp -> best` leaves only best.old: readers fall back to it.
    os.replace(target, target.with_name("best.old"))
    assert (find_folder(target) / "x.txt").read_text() == "2"
    write_folder(target, lambda d: (d / "x.txt").write_text("3"))
    assert (find_folder(target) / "x.txt").read_text() == "3"

    def crash(d: Path) -> None:
        (d / "x.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_folder(target, crash)
    assert (find_folder(target) / "x.txt").read_text() == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no temp folder left behind


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    lengths = [5, 50, 7, 48, 6, 49, 8, 47] * 30
    a = epoch_batches(lengths, 8, seed=0, epoch=3)
    assert a == epoch_batches(lengths, 8, seed=0, epoch=3)
    assert a != epoch_batches(lengths, 8, seed=0, epoch=4)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    grouped = epoch_batches(lengths, 8, seed=0, epoch=3, group_by_length=True)
    assert sorted(i for b in grouped for i in b) == list(range(len(lengths)))

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(grouped) < padding(a) / 4


def test_resume_needs_only_the_run_folder_and_keeps_its_options(tiny_t5, tiny_data, tmp_path, capsys):
    """--resume reuses the options the run was started with: defaults changed since never block an old run."""
    run = tmp_path / "run"
    assert main([*_args(tiny_t5, tiny_data, run), "--epochs", "1"]) == 0
    saved = json.loads((run / "config.json").read_text())
    # The run's own value where today's default differs (max_length 64; the default is auto): resuming without the
    # flag must not count as a change (old run folders hold the defaults of their day).
    assert saved["max_length"] == 64
    before = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", "--output-dir", str(run), "--resume"]) == 0, capsys.readouterr().err
    assert (run / "metrics.jsonl").read_text() == before
    # A flag that differs from the run's own options is still refused, naming the option.
    assert main(["train", "--output-dir", str(run), "--resume", "--max-length", "32"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "max_length: 64 -> 32" in err


def _old_trainer(dest: Path) -> Path:
    """``python/`` of :data:`BEFORE_RUN_FOLDER_REFACTOR`, unpacked from the git history into ``dest``."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", BEFORE_RUN_FOLDER_REFACTOR, "python/superpos_trainer"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs the git history with commit {BEFORE_RUN_FOLDER_REFACTOR} (a full clone)")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "python"


def _without_split(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "split"} for row in rows]


def test_a_run_killed_under_the_previous_code_resumes_exactly(tiny_t5, tiny_data, tmp_path):
    """The previous trainer (whole-file metrics.jsonl, its own run-folder modules) is SIGKILLed mid-epoch; today's
    code resumes its folder and ends with the metrics and adapters of a run never killed."""
    old_python = _old_trainer(tmp_path / "old-code")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # The previous code ran the model's own attention and a bf16 output layer; a resumed run keeps what it started
    # with (the legacy values of --attention and --lm-head), so the never-killed run does too.
    assert main([*_args(tiny_t5, tiny_data, straight), "--attention", "model", "--lm-head", "autocast"]) == 0

    paths = [str(old_python), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "SUPERPOS_FAULT_KILL_AT_STEP": "5"}
    code = "import sys, superpos_trainer.cli as c; assert 'old-code' in c.__file__; sys.exit(c.main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, *_args(tiny_t5, tiny_data, killed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert json.loads((killed / "checkpoint" / "trainer_state.json").read_text())["step"] == 4
    assert [r["step"] for r in _metrics(killed)] == [3]  # the epoch-1 evaluation, written by the old code

    assert main([*_args(tiny_t5, tiny_data, killed), "--resume"]) == 0
    # The old code's row predates the rows' "split" key (--select-on); every other value must match.
    assert _without_split(_metrics(killed)) == _without_split(_metrics(straight))
    for name in ("best", "last"):
        a, b = _tensors(straight / name), _tensors(killed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (straight, killed))
    assert (ra["best_metric"], ra["best_step"], ra["steps"]) == (rb["best_metric"], rb["best_step"], rb["steps"])


def test_results_and_each_sessions_log_record_the_environment(tiny_t5, tiny_data, tmp_path):
    """What a run's numbers may depend on besides its options (README, "Reproducing a run"): results.json keeps the
    finishing session's environment, train.log a line per session (a resumed run may change threads)."""
    import platform

    import transformers

    import superpos_kernels

    run, threads = tmp_path / "run", torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*_args(tiny_t5, tiny_data, run), "--epochs", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert json.loads((run / "results.json").read_text())["environment"] == {
        "superpos_kernels": superpos_kernels.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "cpu_threads": 1,
        "processes": 1,
    }
    assert main(["train", "--output-dir", str(run), "--resume"]) == 0
    sessions = [line for line in (run / "train.log").read_text().splitlines() if "environment:" in line]
    assert len(sessions) == 2
    assert "cpu_threads 1," in sessions[0] and f"cpu_threads {threads}," in sessions[1]
