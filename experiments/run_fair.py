#!/usr/bin/env python
"""The fair comparison of issue 15: SuperPos-Prompt vs simple prompt tuning vs Residual prompt tuning, each at a
learning rate chosen for it on held-out training data, scored once on the full validation split.

Protocol (the plan itself is data in experiments/fair_plan.py; every run is one ``superpos train`` call):

- **One budget, every method and task the same**: ``--bf16 auto --attention auto`` (bf16 autocast on CPUs with
  native bf16: ~2.4x per step, checked against fp32 in bench/RESULTS.md; the report says which precision each
  table used), ``--eval-mode rank --rank-score mean`` (label words ranked by mean log-probability per token: no
  invalid answers, no length bias between a 2- and a 5-token label), ``--max-length auto`` (>= 99 % of every split
  uncut: the evidence of RTE/CB/MRPC is no longer cut off), batch 8, ``--max-steps 160`` (``--epochs 1000`` is
  never reached), ``--eval-steps 20 --save-steps 20`` (a checkpoint at every evaluation: a killed run loses
  little), n = 10, m = 128, ``--dropout off`` (the paper's frozen backbone).
- **Model selection never sees the reported data**: ``--select-on holdout``: the periodic evaluations score a
  held-out part of the training subset, the best adapter is chosen there, and only at the end are the best and the
  last adapter scored once on the FULL validation split (``--eval-limit 0``: SST-2 872, RTE 277, CB 56, MRPC 408
  examples; 64 examples made one example 1.6 pp).
- **Training subset**: ``--train-limit 1472 --holdout-fraction 0.13``: ~1280 training examples (one pass in 160
  steps of 8, so no method is judged on a repeated small subset) and ~190 held out (enough to rank adapters). CB
  has 250 training examples: all of them (``--train-limit 0``) with ``--holdout-fraction 0.2`` (~200 + 50). The
  seed draws the subset and the split, so all methods of one seed see the same data (pairs are paired on data).
- **Learning rate per (model, task, method), on that task's held-out scores only**: equal learning rates are not
  equal treatment (one AdamW step at lr 1e-2 moves a SuperPos prompt ~10x further than a simple prompt on SmolLM2,
  docs/DEFAULTS_STUDY.md). Candidates {auto/3, auto, 3 auto}, ``auto`` = the method's ``--lr auto`` on that model
  (superpos_trainer.auto_defaults, computed once and recorded in ``<model>/auto_lr.json``), run on the task with
  seed 0; the lr whose run has the best held-out score (its best adapter's) wins (tie: the smaller lr). A winner at
  an edge of the candidates adds one more factor of 3 on that side (at most twice in all) and the choice is made
  again. Per task rather than once per (model, method) on the mean over SST-2 and RTE: each task gets each method's
  best lr (fairer), and a task's answer never waits for another task's selection (an RTE run takes ~10x an SST-2
  run, so SST-2's comparison would otherwise wait hours for RTE's candidates). The rank of ``auto`` among the final
  candidates answers the issue's "derived default within the best two" check (Gemma-3-270M: on SST-2). Selection
  runs are seed-0 runs of the same budget, so the winner's run IS the (task, method, seed 0) run of the comparison
  (no re-run).
- **Then seeds 1..4** x 3 methods at each (task, method)'s chosen lr, with the winner as seed 0: SmolLM2-135M on
  SST-2, RTE, CB, MRPC; Gemma-3-270M (base) on SST-2 and RTE.
- **A second stage of fixed size** (fair_plan.EXTRA_SEEDS): SmolLM2-135M's seeds 5..9 of SuperPos and simple
  prompt tuning on every task, after its seeds 0..4 left the pooled answer inconclusive; its size was fixed before
  any of its runs (fair_plan.py says why), and it runs after every task's first stage, seed-major over the tasks.
- **Order** (the grid takes many hours; whatever finishes first answers the most): per model (SmolLM2, then Gemma),
  per task in that order: the task's selection runs (auto first, then its neighbours, then extensions; methods
  interleaved), then its seed runs (seed-major, methods interleaved); then the next task. So SmolLM2's SST-2 is
  complete before its RTE starts, except that with ``--jobs N`` a slot that finds nothing ready (seeds waiting on
  an unfinished selection) takes the next ready run.

Runs go to ``experiments/runs/fair/<model>/<task>/<method>-lr<lr>-seed<s>/``: ``experiment.json`` (what the run
is, the command, the git commit and a source hash of the trainer's tree at its start), ``stdout.log`` and the
trainer's folder ``run/``. Resume: a run with ``run/results.json`` is done; a run folder with ``config.json`` is
continued with ``superpos train --resume --output-dir <run>``; an empty folder or an unfinished start (only a lock
and a log) is started again; a run whose lock is held is running elsewhere and is left alone; anything else is
reported and skipped. A run that fails is not retried in the same driver session. After every finished run the
report (experiments/fair_report.py) is regenerated. The driver logs to ``experiments/runs/fair/driver.log``.
On a new machine, ``python experiments/fair_sync.py restore`` first puts the committed finished runs back
(the run folders are not committed); ``fair_sync.py save`` copies finished runs to the committed copy.

    nohup nice -n 19 python experiments/run_fair.py --jobs 2 > /dev/null 2>&1 &
    python experiments/run_fair.py --dry-run               # the commands, what would be resumed/started
    python experiments/run_fair.py --plan smollm2-sst2     # a subset (see --help for the plans)
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if not __package__:  # run as `python experiments/run_fair.py`: the repository root makes `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import fair_plan as fp

ROOT = fp.ROOT
SHORT = {"smollm2-135m": "smollm2", "gemma3-270m": "gemma"}
LOCK_NAME = ".lock"  # the trainer's advisory lock (superpos_trainer.run_folder)


# ---- plans --------------------------------------------------------------------------------------------------------


def plan_names() -> list[str]:
    names = ["all"]
    for model, tasks in fp.MODELS.items():
        short = SHORT[model]
        names += [short, f"{short}-select", *(f"{short}-{task}" for task in tasks)]
    return names


def plan_filter(name: str) -> Callable[[fp.Run], bool]:
    """Which runs a plan holds: ``all``; ``<model>`` (its selections and seeds); ``<model>-select`` (the selection
    runs of all its tasks); ``<model>-<task>`` (that task's selection and seed runs: nothing of another task)."""
    if name == "all":
        return lambda run: True
    for model, short in SHORT.items():
        if name == short:
            return lambda run: run.model == model
        if name == f"{short}-select":
            return lambda run: run.model == model and run.k is not None
        task = name.removeprefix(f"{short}-")
        if name.startswith(f"{short}-") and task in fp.MODELS[model]:
            return lambda run: run.model == model and run.task == task
    raise ValueError(f"unknown plan {name!r}; choose one of: {', '.join(plan_names())}")


def models_of(name: str) -> list[str]:
    if name == "all":
        return list(fp.MODELS)
    return [model for model, short in SHORT.items() if name == short or name.startswith(short + "-")]


# ---- one run: command, state, code version ---------------------------------------------------------------------


def to_cli_args(options: dict[str, Any]) -> list[str]:
    return [part for key, value in options.items() for part in ("--" + key.replace("_", "-"), str(value))]


def start_command(run: fp.Run, runs_root: Path = fp.RUNS) -> list[str]:
    return [
        sys.executable,
        "-m",
        "superpos_trainer.cli",
        "train",
        *to_cli_args(run.options(runs_root)),
        "--no-progress",
    ]


def resume_command(run: fp.Run, runs_root: Path = fp.RUNS) -> list[str]:
    """The run's own options come from its config.json (the trainer refuses a differing flag)."""
    output_dir = run.options(runs_root)["output_dir"]
    return [
        sys.executable,
        "-m",
        "superpos_trainer.cli",
        "train",
        "--resume",
        "--output-dir",
        output_dir,
        "--no-progress",
    ]


def lock_is_held(run_dir: Path) -> bool:
    """Whether a live process holds the trainer's lock on ``run_dir`` (flock is released when a process dies)."""
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EACCES)
    finally:
        os.close(fd)


def run_state(run: fp.Run, runs_root: Path = fp.RUNS) -> str:
    """``done`` | ``running`` | ``resume`` | ``start`` | ``blocked``: what the driver does with the run."""
    run_dir = run.run_dir(runs_root)
    if (run_dir / "results.json").is_file():
        return "done"
    if not run_dir.exists():
        return "start"
    if lock_is_held(run_dir):
        return "running"
    if (run_dir / "config.json").is_file():
        return "resume"
    from superpos_trainer.run_folder import is_unfinished_start

    return "start" if run_dir.is_dir() and is_unfinished_start(run_dir) else "blocked"


def command_for(run: fp.Run, state: str, runs_root: Path = fp.RUNS) -> list[str] | None:
    return (
        {"start": start_command, "resume": resume_command}[state](run, runs_root)
        if state in ("start", "resume")
        else None
    )


def trainer_tree(env: dict[str, str]) -> Path:
    """The source tree the trainer subprocess imports ``superpos_trainer`` from (same interpreter, env and cwd)."""
    probe = "import importlib.util as u; print(u.find_spec('superpos_trainer').origin)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    origin = done.stdout.strip()
    return Path(origin).resolve().parent if done.returncode == 0 and origin else ROOT / "python" / "superpos_trainer"


def code_version(package_dir: Path) -> dict[str, Any]:
    """The git commit of the trainer's tree, whether it has uncommitted changes, and a hash of the library and
    trainer sources as they are at the run's start (so results of different code can be told apart)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=package_dir, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    top = Path(git("rev-parse", "--show-toplevel") or package_dir.parents[1])
    digest = hashlib.sha256()
    for path in sorted([*top.glob("superpos_kernels/*.py"), *package_dir.glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "superpos_kernels", str(package_dir))),
        "tree": str(top),
        "sources_sha256": digest.hexdigest()[:16],
    }


def spec_of(run: fp.Run, command: list[str], code: dict[str, Any], autos: dict[str, float]) -> dict[str, Any]:
    return {
        "model": run.model,
        "task": run.task,
        "method": run.method,
        "seed": run.seed,
        "lr": run.lr,
        "auto_lr": autos[run.method],
        "lr_exponent": run.k,  # selection runs: lr = auto * 3**k (rounded to 3 digits); None for seed runs
        "phase": "selection" if run.k is not None else "seeds",
        "command": shlex.join(["superpos", *command[3:]]),
        "code": code,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---- the driver ---------------------------------------------------------------------------------------------------


class Driver:
    """Schedules the ready runs of a plan on ``jobs`` slots, recomputing the plan whenever a run finishes."""

    def __init__(self, args: argparse.Namespace, runs_root: Path = fp.RUNS) -> None:
        self.args = args
        self.runs_root = runs_root
        self.keep = plan_filter(args.plan)
        self.models = models_of(args.plan)
        self.lock = threading.Lock()
        self.report_lock = threading.Lock()  # one report at a time, without holding up the scheduling
        self.claimed: set[str] = set()  # run folders trained by this driver now
        self.failed: set[str] = set()  # not retried in this session
        self.env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env[name] = str(args.threads)
        self.package_dir = trainer_tree(self.env)
        self.poll_seconds = 10.0  # how long an idle slot waits before looking again

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        print(line, flush=True)
        if not self.args.dry_run:
            self.runs_root.mkdir(parents=True, exist_ok=True)
            with open(self.runs_root / "driver.log", "a", encoding="utf-8") as out:
                out.write(line + "\n")

    def autos(self, model: str) -> dict[str, float] | None:
        """The model's ``--lr auto`` values: recorded once in ``<model>/auto_lr.json``, computed when missing."""
        known = fp.read_auto_lrs(model, self.runs_root)
        if known is not None:
            return known
        self.log(f"computing --lr auto for {model} (auto_defaults.auto_lr, seed {fp.SELECTION_SEED})")
        # In a child process: the driver runs for hours and need not hold torch and a model in memory.
        command = [sys.executable, "-m", "experiments.fair_plan", model]
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:  # a model that cannot load must not stop the others
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            self.log(f"cannot compute --lr auto for {model} ({reason}); its runs are skipped until a restart")
            return None
        autos = {method: float(value) for method, value in json.loads(lines[-1]).items()}
        record = {
            "model": model,
            "auto_lr": autos,
            "code": code_version(self.package_dir),
            "note": fp.__doc__.split("\n")[0],
        }
        path = fp.auto_lr_path(model, self.runs_root)
        if not self.args.dry_run:
            from superpos_kernels.io import atomic_write_json

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, record)
        self.log(f"--lr auto on {model}: " + ", ".join(f"{m} {v:.4g}" for m, v in autos.items()))
        return autos

    def plans(self, autos: dict[str, dict[str, float]]) -> list[fp.ModelPlan]:
        score = fp.file_score(self.runs_root)
        return [fp.plan_model(model, autos[model], score) for model in self.models if model in autos]

    def runs(self, autos: dict[str, dict[str, float]]) -> list[fp.Run]:
        return [run for run in fp.ordered_runs(self.plans(autos)) if self.keep(run)]

    def next_run(self, autos: dict[str, dict[str, float]]) -> tuple[fp.Run, str] | str | None:
        """The first run to train now, ``"wait"`` while others are in flight, None when nothing is left."""
        with self.lock:
            states = [(run, run_state(run, self.runs_root)) for run in self.runs(autos)]
            # runs a stopped driver left training occupy cores too: never start more than --jobs at once
            elsewhere = sum(state == "running" and run.key not in self.claimed for run, state in states)
            if len(self.claimed) + elsewhere >= self.args.jobs:
                return "wait"
            for run, state in states:
                if state in ("start", "resume") and run.key not in self.claimed and run.key not in self.failed:
                    self.claimed.add(run.key)
                    return run, state
            return "wait" if self.claimed or elsewhere else None

    def train(self, run: fp.Run, state: str, autos: dict[str, float]) -> int:
        command = command_for(run, state, self.runs_root)
        assert command is not None
        folder = run.folder(self.runs_root)
        folder.mkdir(parents=True, exist_ok=True)
        spec_path = folder / "experiment.json"
        spec = spec_of(run, start_command(run, self.runs_root), code_version(self.package_dir), autos)
        if state == "resume" and spec_path.is_file():  # keep the first start's record, add this session's
            first = json.loads(spec_path.read_text(encoding="utf-8"))
            spec = {**first, "resumed": [*first.get("resumed", []), {"code": spec["code"], "at": spec["started"]}]}
        from superpos_kernels.io import atomic_write_json

        atomic_write_json(spec_path, spec)
        with open(folder / "stdout.log", "a", encoding="utf-8") as out:
            out.write(f"$ {shlex.join(command)}\n")
            out.flush()
            return subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, check=False
            ).returncode

    def report(self) -> None:
        if self.args.no_report:
            return
        script = ROOT / "experiments" / "fair_report.py"
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            self.log(f"report failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")

    def worker(self, autos: dict[str, dict[str, float]]) -> None:
        while True:
            picked = self.next_run(autos)
            if picked is None:
                return
            if picked == "wait":
                time.sleep(self.poll_seconds)
                continue
            run, state = picked
            start = time.time()
            self.log(f"{state} {run.key}")
            code = self.train(run, state, autos[run.model])
            with self.lock:
                self.claimed.discard(run.key)
                if code != 0:
                    self.failed.add(run.key)
            self.log(
                f"exit {code} after {time.time() - start:.0f} s: {run.key}" + ("" if code == 0 else " (not retried)")
            )
            if code == 0:
                with self.report_lock:
                    self.report()

    def dry_run(self, autos: dict[str, dict[str, float]]) -> int:
        plans = self.plans(autos)
        for plan in plans:
            print(f"# {plan.model}: --lr auto " + ", ".join(f"{m} {v:.4g}" for m, v in plan.autos.items()))
            for (task, method), selection in plan.selections.items():
                lr = plan.chosen_lr(task, method)
                chosen = "pending" if lr is None else fp.format_lr(lr)
                print(f"#   {task} {method}: candidates k={list(selection.candidates)}, chosen lr {chosen}")
            if plan.waiting:
                print(f"#   seed runs waiting for their lr: {sum(plan.waiting.values())}")
        for run in fp.ordered_runs(plans):
            if not self.keep(run):
                continue
            state = run_state(run, self.runs_root)
            command = command_for(run, state, self.runs_root)
            print(f"{state:8s} {run.key}" + (f"\n    {shlex.join(command)}" if command else ""))
        return 0

    def main(self) -> int:
        autos = {model: a for model in self.models if (a := self.autos(model)) is not None}
        if self.args.dry_run:
            return self.dry_run(autos)
        self.log(
            f"plan {self.args.plan}: {self.args.jobs} job(s), {self.args.threads} thread(s) each; "
            f"trainer {self.package_dir}"
        )
        for run in self.runs(autos):
            if run_state(run, self.runs_root) == "blocked":
                self.log(f"skipped {run.key}: its run folder holds files but no config.json (inspect or remove it)")
        pool = [threading.Thread(target=self.worker, args=(autos,)) for _ in range(self.args.jobs)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        left = [run for run in self.runs(autos) if run_state(run, self.runs_root) != "done"]
        waiting = sum(sum(p.waiting.values()) for p in self.plans(autos))
        self.log(
            f"driver stops: {len(left)} known run(s) not done ({len(self.failed)} failed), {waiting} waiting for an lr"
        )
        for run in left:
            self.log(f"  not done: {run.key} ({run_state(run, self.runs_root)})")
        return 1 if self.failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="all", choices=plan_names(), help="which runs (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (default 1)")
    parser.add_argument("--threads", type=int, default=0, help="OMP threads per run (default: cores // jobs, >= 1)")
    parser.add_argument("--dry-run", action="store_true", help="print each run's state and command; train nothing")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate the report after each run")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 0:
        parser.error(f"--jobs must be >= 1 and --threads >= 0 (given --jobs {args.jobs} --threads {args.threads})")
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return Driver(parse_args(argv)).main()


if __name__ == "__main__":
    sys.exit(main())
