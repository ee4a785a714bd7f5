"""Crash safety: SIGKILL at the worst moments, then resume; and the numerical guard.

tests/test_trainer_resume.py kills a run mid-epoch (right after an optimizer step). Here the kill lands inside the
writes and the evaluation, through the test-only hook ``SUPERPOS_FAULT_INJECT`` (superpos_trainer/faults.py):

* ``write:checkpoint``: checkpoint files written into the temporary folder, before its COMPLETE marker;
* ``swap:checkpoint`` / ``swap:last``: between the two renames (old folder moved aside, new one not yet in place);
* ``eval``: an evaluation has computed its metrics, nothing of it is written yet.

After each kill every folder the run holds is either complete and readable or ignored, and the resumed run ends with
exactly the metrics and adapters of a run never killed. Plan: 12 examples, batch 4, 2 epochs = 6 steps; evaluations
at steps 2, 3, 4, 6; checkpoints at 2, 3, 4, 6; ``last`` adapter at 3 and 6.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from superpos_trainer import run_folder
from superpos_trainer.cli import main
from superpos_trainer.train import Trainer

TIMING_KEYS = {"wall_time", "eval_seconds", "eval_examples_per_s", "train_examples_per_s"}


def _args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    fixed = "--task sst2 --epochs 2 --batch-size 4 --num-prompt-tokens 4 --num-sampled-tokens 16 --max-length 64"
    fixed += " --save-steps 2 --eval-steps 2 --eval-mode rank --lr 0.05 --train-limit 0 --eval-limit 0 --no-progress"
    return ["train", "--model", str(model), "--data-dir", str(data), "--output-dir", str(out), *fixed.split(), *extra]


def _rows(run: Path) -> list[dict]:
    rows = run_folder.read_metrics(run / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    json.loads((folder / "adapter_config.json").read_text())
    return load_file(str(folder / "adapter_model.safetensors"))


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    if folder.name == "checkpoint":
        return load_file(str(folder / "trainable.safetensors"))
    return _adapter(folder)


@pytest.fixture(scope="module")
def straight(tiny_t5, tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("faults") / "straight"
    assert main(_args(tiny_t5, tiny_data, run)) == 0
    return run


def _assert_run_folder_readable(run: Path) -> int:
    """Every folder the run would use is complete and loads; returns the checkpoint's step (0 when none)."""
    json.loads((run / "config.json").read_text())
    run_folder.read_metrics(run / "metrics.jsonl")
    for name in ("best", "last"):
        found = run_folder.find_folder(run / name)
        if found is not None:
            assert all(torch.isfinite(t).all() for t in _adapter(found).values())
    loaded = run_folder.RunFolder(run).load_checkpoint()  # raises on any unreadable piece
    return 0 if loaded is None else loaded.state["step"]


# One subprocess pays the imports once, then forks one child per fault (before any torch op ran in it, so no
# thread pool is forked); each child sets its fault and runs the CLI until the hook SIGKILLs it.
_FORK_RUNNER = """
import json, os, sys, traceback
import transformers.models.t5.modeling_t5  # noqa: F401  (imported once, before the forks)
from superpos_trainer import runner, train  # noqa: F401
from superpos_trainer.cli import main
codes = {}
for name, fault, args in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        os.environ["SUPERPOS_FAULT_INJECT"] = fault
        code = 1
        try:
            code = main(args)
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    codes[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(codes))
"""

FAULTS = {
    "write:checkpoint:3": 3,  # step 4's checkpoint half-written: the step-3 one stays
    "swap:checkpoint:1": 2,  # killed at step 3 between the renames: only checkpoint.old (step 2) is complete
    "eval:3": 3,  # killed evaluating at step 4, before the metrics row, the best adapter, the checkpoint
    "swap:last:1": 4,  # the final `last` adapter half swapped (last.old stays); steps 5-6 are redone
}


@pytest.fixture(scope="module")
def killed(tiny_t5, tiny_data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("killed")
    runs = {fault: root / fault.replace(":", "-") for fault in FAULTS}
    jobs = [(fault, fault, _args(tiny_t5, tiny_data, run)) for fault, run in runs.items()]
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_RUNNER, json.dumps(jobs, default=str)], capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == dict.fromkeys(FAULTS, -signal.SIGKILL), proc.stderr[-3000:]
    return runs


@pytest.mark.parametrize("fault", list(FAULTS))
def test_kill_inside_writes_and_evaluation_then_resume(fault, killed, straight, tiny_t5, tiny_data):
    run = killed[fault]
    assert not (run / "results.json").exists()
    assert _assert_run_folder_readable(run) == FAULTS[fault]

    assert main([*_args(tiny_t5, tiny_data, run), "--resume"]) == 0
    assert _rows(run) == _rows(straight)
    for name in ("best", "last", "checkpoint"):
        a, b = _tensors(straight / name), _tensors(run / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (fault, name, key)
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (straight, run))
    assert (ra["best_metric"], ra["best_step"], ra["steps"]) == (rb["best_metric"], rb["best_step"], rb["steps"])
    # The resumed writes swept away what the kill left behind (temp folders, a lone .old).
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in straight.iterdir())


@pytest.mark.parametrize("where", ["prompt", "loss"])
def test_numerical_guard_stops_and_keeps_last_good_checkpoint(where, tiny_t5, tiny_data, tmp_path, capsys, monkeypatch):
    """NaN in the prompt after step 5 (or in the model's output, hence the loss, at step 6): stop, keep step 4."""
    original = Trainer.optimizer_step

    def poisoned(self: Trainer) -> None:
        original(self)
        if self.state.step == 4:  # the 5th step is in progress: its update goes bad
            with torch.no_grad():
                if where == "prompt":
                    self.method.layer.w[0, 0] = float("nan")
                else:
                    self.loaded.model.lm_head.weight.fill_(float("inf"))

    monkeypatch.setattr(Trainer, "optimizer_step", poisoned)
    run = tmp_path / "run"
    assert main(_args(tiny_t5, tiny_data, run)) == 2
    err = capsys.readouterr().err
    if where == "prompt":
        assert "method.layer.w became NaN/Inf at optimizer step 5" in err
    else:
        assert "training loss became nan at optimizer step 6" in err
    assert "training stopped" in err and "checkpoint" in err and "lower --lr" in err and "Traceback" not in err
    assert _assert_run_folder_readable(run) == 4
    trainable = load_file(str(run / "checkpoint" / "trainable.safetensors"))
    assert all(torch.isfinite(t).all() for t in trainable.values())
    assert [r["step"] for r in run_folder.read_metrics(run / "metrics.jsonl")] == [2, 3, 4]
    assert not (run / "results.json").exists()
