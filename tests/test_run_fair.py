"""experiments/run_fair.py and fair_plan.py: the fair grid's commands, its resume decisions and the lr selection.

Fake run folders (the files ``superpos train`` writes) stand in for training, so nothing here trains a model.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import fair_plan as fp
from experiments import run_fair

ROOT = Path(__file__).resolve().parents[1]
AUTOS = {"superpos": 0.002074, "prompt": 0.00129, "residual": 0.04828}


def write_autos(runs_root: Path, model: str = "smollm2-135m", autos: dict[str, float] = AUTOS) -> None:
    path = fp.auto_lr_path(model, runs_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": model, "auto_lr": autos}))


def finish(run: fp.Run, runs_root: Path, best: float) -> None:
    """A finished run as the trainer leaves it (only what the plan reads)."""
    run_dir = run.run_dir(runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "results.json").write_text(json.dumps({"best_metric": best, "main_metric": "accuracy"}))


def driver(runs_root: Path, plan: str = "all", jobs: int = 1, dry_run: bool = True) -> run_fair.Driver:
    args = argparse.Namespace(plan=plan, jobs=jobs, threads=1, dry_run=dry_run, no_report=True)
    return run_fair.Driver(args, runs_root)


# ---- the lr selection ---------------------------------------------------------------------------------------------


def test_selection_waits_for_every_candidate_then_picks_the_best_and_ties_go_to_the_smaller_lr():
    pending = fp.select({-1: 0.7, 0: None, 1: 0.6}.get)
    assert pending.chosen is None and pending.candidates == (-1, 0, 1)
    chosen = fp.select({-1: 0.7, 0: 0.8, 1: 0.6}.get)
    assert chosen.chosen == 0 and chosen.extensions == 0 and chosen.rank_of(0) == 1 and chosen.rank_of(-1) == 2
    tie = fp.select({-1: 0.7, 0: 0.8, 1: 0.8}.get)
    assert tie.chosen == 0  # 0.8 twice: the smaller lr (k = 0 < 1) wins, and it is interior: no extension


def test_an_edge_winner_extends_by_one_factor_of_3_at_most_twice():
    scores: dict[int, float | None] = {-1: 0.5, 0: 0.6, 1: 0.7}
    first = fp.select(scores.get)
    assert first.chosen is None and first.candidates == (-1, 0, 1, 2) and first.scores[2] is None
    scores[2] = 0.65  # k = 1 stays best and is now interior
    assert fp.select(scores.get).chosen == 1
    scores[2] = 0.75  # k = 2 best: at the edge again, one more extension
    second = fp.select(scores.get)
    assert second.candidates == (-1, 0, 1, 2, 3) and second.chosen is None
    scores[3] = 0.9  # best at the edge, but two extensions were made: chosen there
    final = fp.select(scores.get)
    assert (final.chosen, final.extensions) == (3, 2)
    assert final.rank_of(0) == 4 and final.rank_of(-1) == 5  # auto (0.6) beats only auto/3 (0.5)
    low = fp.select({-3: 0.85, -2: 0.9, -1: 0.8, 0: 0.1, 1: 0.2}.get)  # the low edge extends downwards, twice
    assert low.candidates == (-3, -2, -1, 0, 1) and (low.chosen, low.extensions) == (-2, 2) and low.rank_of(0) == 5
    assert fp.select({-1: 0.9, 0: 0.1, 1: 0.2}.get).candidates == (-2, -1, 0, 1)


def test_candidate_lrs_are_the_auto_value_times_powers_of_3_at_3_digits():
    assert [fp.candidate_lr(0.002074, k) for k in (-1, 0, 1)] == [0.000691, 0.00207, 0.00622]
    assert fp.format_lr(6.9e-05) == "6.9e-05"


def test_each_task_chooses_its_own_lr_and_its_seeds_do_not_wait_for_another_task(tmp_path: Path):
    score = fp.file_score(tmp_path)
    plan = fp.plan_model("smollm2-135m", AUTOS, score)
    assert len(plan.selection_runs) == 4 * 3 * 3 and not plan.seed_runs  # 4 tasks x 3 methods x 3 candidates
    extra = len(fp.EXTRA_SEEDS["smollm2-135m"])  # the second stage: seeds 5-9 of SuperPos and prompt tuning only
    seeds_left = {m: 4 + (extra if m in fp.EXTRA_METHODS else 0) for m in fp.METHODS}  # seeds 1-4, then 5-9
    assert plan.waiting == {(t, m): seeds_left[m] for t in fp.MODELS["smollm2-135m"] for m in fp.METHODS}
    assert fp.planned_total(plan) == 36 + 4 * sum(seeds_left.values())
    assert fp.planned_comparison_runs("smollm2-135m") == 4 * (3 * 5 + 2 * extra)

    def finish_prompt(task: str, scores: dict[int, float]) -> None:
        for k, best in scores.items():
            finish(fp.selection_run("smollm2-135m", task, "prompt", AUTOS["prompt"], k), tmp_path, best)

    # prompt tuning on SST-2: auto wins on SST-2's own held-out score; RTE has not run: SST-2's seeds go ahead
    finish_prompt("sst2", {-1: 0.7, 0: 0.8, 1: 0.6})
    plan = fp.plan_model("smollm2-135m", AUTOS, score)
    assert plan.chosen_lr("sst2", "prompt") == 0.00129 and plan.chosen_lr("rte", "prompt") is None
    prompt_runs = [r for r in plan.seed_runs if r.method == "prompt"]
    assert [(r.task, r.seed, r.lr) for r in prompt_runs] == [("sst2", s, 0.00129) for s in range(1, 5 + extra)]
    order = [r.key for r in fp.ordered_runs([plan]) if r.seed in fp.SEEDS]
    last_sst2 = max(i for i, key in enumerate(order) if "/sst2/" in key)
    assert last_sst2 < min(i for i, key in enumerate(order) if "/rte/" in key)  # SST-2 complete before RTE
    # RTE: auto/3 wins at the edge, the extension (auto/9) scores lower: RTE's lr is auto/3, SST-2's stays auto
    finish_prompt("rte", {-1: 0.6, 0: 0.5, 1: 0.4})
    assert fp.plan_model("smollm2-135m", AUTOS, score).selections[("rte", "prompt")].candidates == (-2, -1, 0, 1)
    finish_prompt("rte", {-2: 0.55})
    plan = fp.plan_model("smollm2-135m", AUTOS, score)
    assert (plan.chosen_lr("sst2", "prompt"), plan.chosen_lr("rte", "prompt")) == (0.00129, 0.00043)
    prompt_runs = [r for r in plan.seed_runs if r.method == "prompt"]
    assert {(r.task, r.lr) for r in prompt_runs} == {("sst2", 0.00129), ("rte", 0.00043)}
    assert len(prompt_runs) == 2 * (4 + extra)
    assert plan.waiting[("cb", "prompt")] == 4 + extra and plan.waiting[("rte", "superpos")] == 4 + extra
    # the second stage comes after every task's seeds 0-4, seed-major over the tasks (a cut-short stage pools evenly)
    ordered = fp.ordered_runs([plan])
    stage2 = [(r.seed, r.task) for r in ordered if r.seed not in fp.SEEDS]
    assert stage2 == [(s, t) for s in fp.EXTRA_SEEDS["smollm2-135m"] for t in ("sst2", "rte")]
    assert all(r.seed in fp.SEEDS for r in ordered[: len(ordered) - len(stage2)])
    comparison = [r for r in fp.comparison_runs(plan) if r.k is not None]  # the winners' runs are seed 0
    assert {(r.task, r.method, r.seed, r.k) for r in comparison} == {("sst2", "prompt", 0, 0), ("rte", "prompt", 0, -1)}
    # the order within a task: auto, then its neighbours, then extensions; methods interleaved
    rte = [(r.method, r.k) for r in plan.selection_runs if r.task == "rte"]
    assert rte[:6] == [(m, k) for k in (0, -1) for m in fp.METHODS] and rte[-1] == ("prompt", -2)


# ---- commands and resume decisions -------------------------------------------------------------------------------


def test_dry_run_prints_the_protocol_commands_in_priority_order(tmp_path: Path, capsys):
    write_autos(tmp_path)
    assert driver(tmp_path, "smollm2").main() == 0
    out = capsys.readouterr().out
    commands = [line.strip() for line in out.splitlines() if line.startswith("    ")]
    assert len(commands) == 4 * 9  # only the selection runs (per task): every seed run waits for its lr
    first = commands[0].split()
    assert first[1:4] == ["-m", "superpos_trainer.cli", "train"]
    options = dict(zip(first[4:-1:2], first[5:-1:2], strict=True))
    assert options == {
        "--model": "smollm2-135m", "--task": "sst2", "--method": "superpos", "--seed": "0", "--lr": "0.00207",
        "--bf16": "auto", "--attention": "auto", "--eval-mode": "rank", "--rank-score": "mean", "--max-length": "auto",
        "--batch-size": "8", "--max-steps": "160", "--epochs": "1000", "--eval-steps": "20", "--save-steps": "20",
        "--select-on": "holdout", "--eval-limit": "0", "--num-prompt-tokens": "10", "--num-sampled-tokens": "128",
        "--dropout": "off", "--train-limit": "1472", "--holdout-fraction": "0.13",
        "--output-dir": str(tmp_path / "smollm2-135m/sst2/superpos-lr0.00207-seed0/run"),
    }  # fmt: skip
    assert first[-1] == "--no-progress"
    order = [line.split()[1] for line in out.splitlines() if line.startswith("start")]
    autos = (("superpos", "0.00207"), ("prompt", "0.00129"), ("residual", "0.0483"))
    assert order[:3] == [f"smollm2-135m/sst2/{m}-lr{lr}-seed0" for m, lr in autos]
    assert all("/sst2/" in key for key in order[:9])  # SST-2's candidates, then RTE's (auto first)
    assert order[9:12] == [f"smollm2-135m/rte/{m}-lr{lr}-seed0" for m, lr in autos]
    assert "#   rte prompt: candidates k=[-1, 0, 1], chosen lr pending" in out
    assert not (tmp_path / "driver.log").exists()  # a dry run writes nothing


def test_cb_uses_its_whole_training_split_with_a_larger_holdout():
    options = fp.Run("smollm2-135m", "cb", "superpos", 3, 0.002).options()
    assert (options["train_limit"], options["holdout_fraction"]) == (0, 0.2)
    assert options["output_dir"] == "experiments/runs/fair/smollm2-135m/cb/superpos-lr0.002-seed3/run"


def test_resume_decisions_from_the_run_folder(tmp_path: Path):
    run = fp.Run("smollm2-135m", "sst2", "prompt", 1, 0.00129)
    run_dir = run.run_dir(tmp_path)
    assert run_fair.run_state(run, tmp_path) == "start"
    run_dir.mkdir(parents=True)
    (run_dir / ".lock").write_text("123\n")
    (run_dir / "train.log").write_text("loading\n")
    assert run_fair.run_state(run, tmp_path) == "start"  # an unfinished start: the trainer restarts it
    (run_dir / "stray.txt").write_text("?")
    assert run_fair.run_state(run, tmp_path) == "blocked"  # not ours to delete
    (run_dir / "stray.txt").unlink()
    (run_dir / "config.json").write_text("{}")
    assert run_fair.run_state(run, tmp_path) == "resume"
    command = run_fair.command_for(run, "resume", tmp_path)
    assert command[1:] == ["-m", "superpos_trainer.cli", "train", "--resume", "--output-dir", str(run_dir),
                           "--no-progress"]  # fmt: skip
    fd = os.open(run_dir / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a live trainer holds it
    try:
        assert run_fair.run_state(run, tmp_path) == "running"
    finally:
        os.close(fd)
    assert run_fair.run_state(run, tmp_path) == "resume"  # the holder died: the lock is free again
    (run_dir / "results.json").write_text("{}")
    assert run_fair.run_state(run, tmp_path) == "done"
    assert run_fair.command_for(run, "done", tmp_path) is None


def test_a_committed_copy_of_run_files_is_read_in_place_and_a_grid_folder_through_run(tmp_path: Path):
    run = fp.Run("smollm2-135m", "sst2", "prompt", 1, 0.00129)
    assert run.run_dir(tmp_path) == run.folder(tmp_path) / "run"  # the grid: the trainer writes into run/
    run.folder(tmp_path).mkdir(parents=True)
    (run.folder(tmp_path) / "experiment.json").write_text("{}")
    assert run.run_dir(tmp_path) == run.folder(tmp_path) / "run"  # a run being started: still run/
    (run.folder(tmp_path) / "results.json").write_text(json.dumps({"best_metric": 0.7}))
    assert run.run_dir(tmp_path) == run.folder(tmp_path)  # experiments/results/fair/run_files: files in place
    assert fp.file_score(tmp_path)(run) == 0.7


def test_scheduler_claims_in_order_counts_runs_trained_elsewhere_and_skips_failures(tmp_path: Path):
    write_autos(tmp_path)
    d = driver(tmp_path, "smollm2-select", jobs=2, dry_run=False)
    autos = {"smollm2-135m": AUTOS}
    first, second = d.next_run(autos), d.next_run(autos)
    assert first[0].key == "smollm2-135m/sst2/superpos-lr0.00207-seed0" and first[1] == "start"
    assert second[0].key == "smollm2-135m/sst2/prompt-lr0.00129-seed0"
    assert d.next_run(autos) == "wait"  # two jobs in flight
    d.claimed.clear()
    d.failed.add(first[0].key)
    held = second[0].run_dir(tmp_path)
    held.mkdir(parents=True)
    fd = os.open(held / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:  # one run trained by another process: one slot left, failed and running runs skipped
        third = d.next_run(autos)
        assert third[0].key == "smollm2-135m/sst2/residual-lr0.0483-seed0"
        assert d.next_run(autos) == "wait"
    finally:
        os.close(fd)


def test_plans_select_subsets():
    keep = run_fair.plan_filter("smollm2-rte")
    assert keep(fp.Run("smollm2-135m", "rte", "prompt", 3, 0.001))
    assert keep(fp.Run("smollm2-135m", "rte", "prompt", 0, 0.001, k=0))  # RTE's own selection
    assert not keep(fp.Run("smollm2-135m", "sst2", "prompt", 0, 0.001, k=0))  # another task's selection: not needed
    assert not keep(fp.Run("smollm2-135m", "sst2", "prompt", 3, 0.001))
    select = run_fair.plan_filter("smollm2-select")
    assert select(fp.Run("smollm2-135m", "cb", "prompt", 0, 0.001, k=1)) and not select(
        fp.Run("smollm2-135m", "cb", "prompt", 1, 0.001)
    )
    assert not keep(fp.Run("gemma3-270m", "rte", "prompt", 3, 0.001))
    assert run_fair.models_of("gemma-sst2") == ["gemma3-270m"]
    with pytest.raises(ValueError, match="unknown plan 'smollm2-cola'"):
        run_fair.plan_filter("smollm2-cola")


def test_code_version_names_the_commit_of_the_trainer_tree():
    version = run_fair.code_version(ROOT / "python" / "superpos_trainer")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert version["commit"] == head and len(version["sources_sha256"]) == 16


def test_driver_runs_as_a_script_with_a_plan(tmp_path: Path):
    from .test_experiments_scripts import _copy_experiments, _script_env

    experiments = _copy_experiments(tmp_path / "repo")
    write_autos(experiments / "runs" / "fair", "gemma3-270m")
    done = subprocess.run(
        [sys.executable, str(experiments / "run_fair.py"), "--plan", "gemma-select", "--dry-run"],
        cwd=tmp_path, env=_script_env(tmp_path), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    starts = [line for line in done.stdout.splitlines() if line.startswith("start")]
    assert len(starts) == 18 and all("gemma3-270m/" in line for line in starts)


FAKE_TRAINER = """
import json, sys
from pathlib import Path
args = sys.argv[2:]
run = Path(args[args.index("--output-dir") + 1])
run.mkdir(parents=True, exist_ok=True)
(run / "config.json").write_text("{}")
if "--seed" in args and args[args.index("--seed") + 1] == "4":
    sys.exit(2)  # one run fails: it must not be retried, nor stop the others
# atomically, as the trainer does: the driver may read the file while this process writes it
(run / "results.tmp").write_text(json.dumps({"best_metric": 0.5, "main_metric": "accuracy"}))
(run / "results.tmp").replace(run / "results.json")
"""


def test_driver_trains_the_selection_extends_it_then_the_seeds(tmp_path: Path, monkeypatch):
    write_autos(tmp_path)

    real_start = run_fair.start_command

    def fake_start(run: fp.Run, runs_root: Path = fp.RUNS) -> list[str]:  # same options, a fake trainer
        return [sys.executable, "-c", FAKE_TRAINER, *real_start(run, runs_root)[3:]]

    monkeypatch.setattr(run_fair, "start_command", fake_start)
    d = driver(tmp_path, "smollm2-sst2", jobs=2, dry_run=False)
    d.poll_seconds = 0.01
    assert d.main() == 1  # a run failed
    # every candidate scores 0.5: the smaller lr wins each time, at the low edge, so the selection extends twice
    plan = fp.plan_model("smollm2-135m", AUTOS, fp.file_score(tmp_path))
    assert all(plan.selections[("sst2", m)].chosen == -3 for m in fp.METHODS)
    assert all(plan.selections[("sst2", m)].candidates == (-3, -2, -1, 0, 1) for m in fp.METHODS)
    assert plan.selections[("rte", "prompt")].chosen is None  # SST-2's comparison never waited for RTE
    done = sorted(p.parent.parent.name for p in tmp_path.glob("smollm2-135m/*/*/run/results.json"))
    extra = len(fp.EXTRA_SEEDS["smollm2-135m"])  # the second stage (seeds 5-9) of SuperPos and prompt tuning
    assert len(done) == 3 * 5 + 3 * 3 + 2 * extra  # SST-2's selection (5 candidates), seeds 1-3, the second stage
    failed = sorted(p.name for p in tmp_path.glob("smollm2-135m/sst2/*-seed4"))
    assert len(failed) == 3 and not any(
        (tmp_path / "smollm2-135m/sst2" / f / "run/results.json").exists() for f in failed
    )
    assert not list(tmp_path.glob("smollm2-135m/rte/*"))  # the plan holds SST-2's runs only: no RTE selection
    spec = json.loads((tmp_path / "smollm2-135m/sst2/prompt-lr4.78e-05-seed2/experiment.json").read_text())
    assert spec["lr"] == 4.78e-05 and spec["auto_lr"] == AUTOS["prompt"] and spec["phase"] == "seeds"
    assert spec["command"].startswith("superpos train --model smollm2-135m --task sst2 --method prompt --seed 2")
    assert len(spec["code"]["commit"]) == 40
    log = (tmp_path / "driver.log").read_text()
    assert log.count("exit 2 after") == 3 and "(not retried)" in log and "driver stops: 3 known run(s) not done" in log


def test_the_trainer_accepts_every_command_of_the_grid_as_the_protocol_says():
    """Each start command through the trainer's own parser and config check (no training)."""
    from superpos_trainer.cli import FIELDS, build_parser
    from superpos_trainer.config import build_config

    parser = build_parser()
    for task in ("sst2", "cb"):
        command = run_fair.start_command(fp.Run("gemma3-270m", task, "residual", 4, 0.0161))
        args = parser.parse_args(command[3:])
        config = build_config({}, {name: getattr(args, name) for name in FIELDS})
        assert (config.select_on, config.eval_limit, config.max_steps, config.eval_steps) == ("holdout", 0, 160, 20)
        assert (config.lr, config.seed, config.rank_score, config.max_length) == (0.0161, 4, "mean", "auto")
        assert config.holdout_fraction == (0.2 if task == "cb" else 0.13)
        assert config.train_limit == (0 if task == "cb" else 1472)
