#!/usr/bin/env python
"""Run the paper's method comparison on a real pretrained causal LM, on CPU, through ``superpos train``.

Each run trains one soft prompt (SuperPos, simple prompt tuning or Residual prompt tuning) on a frozen model with
the SAME budget: the same fixed training subset, batch size, number of optimizer steps, sequence length and
validation subset, evaluated every ``eval_steps`` by ranking the task's label words (logits only at label
positions). Method hyper-parameters are the paper's (the trainer's defaults). Runs go to
``experiments/runs/<plan>/<task>/<method>-m<m>-seed<s>``; a finished run (trainer's ``results.json`` present) is
skipped, so the script can be stopped and restarted at any time. After every run the report
(``experiments/report.py``) is regenerated, so docs/EXPERIMENTS.md always shows what has finished.

    nohup nice -n 10 python experiments/run_comparison.py --plan all > experiments/runs/driver.log 2>&1 &

Plans (short budget): one per task (``sst2``, ``rte``, ``cb``, ``mrpc``: 3 methods x 3 seeds), ``msweep``
(SuperPos with m in {1, 16} on SST-2; m=128 is the comparison run). ``long``: SST-2 with the long budget, 3 methods
x 3 seeds plus m in {1, 16} (seed 0); ``msweep-long``: that m sweep on all 3 seeds. ``mid``: RTE, CB and MRPC with
the mid budget, 3 methods x 3 seeds. ``all``: what was run here, in that order (the short pilot, ``long``, ``mid``,
the m sweep's seeds 1 and 2). ``--dry-run`` prints the commands.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from superpos_kernels.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "experiments" / "runs"

METHODS = ("superpos", "prompt", "residual")
SEEDS = (0, 1, 2)
M_SWEEP = (1, 16, 128)
M_SWEEP_TASK = "sst2"

# The SHORT budget, shared by every method of one task, chosen so one run takes a few minutes on 2 shared CPU
# cores with SmolLM2-135M: 48 optimizer steps of 8 examples drawn from a fixed 512-example training subset (CB has
# 250: it cycles), validation on a fixed 64-example subset (CB: all 56) every 12 steps. (A first attempt with 100
# validation examples every 8 steps evaluated ~1 example/s on the shared cores: too slow to finish the grid.)
# The subsets are drawn with the run's seed, so all methods of one seed see the same data. Inputs are cut to
# max_length tokens (soft prompt and label included): SST-2 sentences fit in 64; 96 keeps the median sentence
# pair of RTE, CB and MRPC whole.
BUDGET: dict[str, Any] = {
    "model": "smollm2-135m",
    "batch_size": 8,
    "max_steps": 48,
    "epochs": 100,  # never reached: max_steps ends every run
    "train_limit": 512,
    "eval_limit": 64,
    "eval_steps": 12,
    "eval_mode": "rank",
    "num_prompt_tokens": 10,
    "num_sampled_tokens": 128,
    "dropout": "off",
    "save_steps": 12,  # a resumable checkpoint at every evaluation: a killed run loses little
}
# The LONG budget (SST-2 only): after 48 steps every method of the first short runs had learned only the label
# prior, so the remaining time goes to fewer, longer runs: 160 steps (2.5 passes over the subset), evaluated every
# 20 steps; everything else as above.
LONG_BUDGET: dict[str, Any] = {**BUDGET, "max_steps": 160, "eval_steps": 20, "save_steps": 20}
# The MID budget (RTE, CB, MRPC, 3 methods x 3 seeds): sized so the 27 runs fit a 2-core session (~8 min per run,
# two at a time): 96 optimizer steps of 8 (twice the short budget) over 768 distinct training examples (one pass,
# so the prompt sees more of the task than in the short budget's repeated 512), validation every 24 steps. CB has
# only 250 training examples: it uses a fixed 192 (24 steps per epoch, so its epoch-end evaluations fall on the
# same steps 24/48/72/96 as the other tasks'); see MID_TRAIN_LIMIT.
MID_BUDGET: dict[str, Any] = {**BUDGET, "max_steps": 96, "train_limit": 768, "eval_steps": 24, "save_steps": 24}
MID_TRAIN_LIMIT = {"cb": 192}
MID_TASKS = ("rte", "cb", "mrpc")
BUDGETS = {"short": BUDGET, "long": LONG_BUDGET, "mid": MID_BUDGET}
MAX_LENGTH = {"sst2": 64, "rte": 96, "cb": 96, "mrpc": 96}
TASKS = ("sst2", "rte", "cb", "mrpc")


@dataclass(frozen=True)
class Run:
    plan: str  # compare | msweep (short budget), compare-long | msweep-long (long), compare-mid (mid)
    task: str
    method: str
    seed: int
    m: int = 128

    @property
    def budget(self) -> dict[str, Any]:
        return BUDGETS[self.plan.split("-")[1] if "-" in self.plan else "short"]

    @property
    def folder(self) -> Path:
        """Holds the driver's experiment.json and driver.log, and the trainer's run folder ``run/``."""
        return RUNS / self.plan / self.task / f"{self.method}-m{self.m}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def train_limit(self) -> int:
        exceptions = MID_TRAIN_LIMIT if self.plan == "compare-mid" else {}
        return exceptions.get(self.task, self.budget["train_limit"])

    def options(self, model: str) -> dict[str, Any]:
        return {
            **self.budget,
            "model": model,
            "task": self.task,
            "method": self.method,
            "seed": self.seed,
            "num_sampled_tokens": self.m,
            "max_length": MAX_LENGTH[self.task],
            "train_limit": self.train_limit,
            "output_dir": str(self.run_dir.relative_to(ROOT)),  # the driver runs the trainer in ROOT
        }


def m_sweep(plan: str, seeds: Sequence[int]) -> list[Run]:
    """SuperPos on the sweep task with each m but the default 128 (the comparison plan's runs hold m = 128)."""
    return [Run(plan, M_SWEEP_TASK, "superpos", seed, m) for seed in seeds for m in M_SWEEP if m != 128]


def plan_runs(plan: str) -> list[Run]:
    """Runs of one plan, in the order they are trained."""
    if plan in MAX_LENGTH:
        return [Run("compare", plan, method, seed) for seed in SEEDS for method in METHODS]
    if plan == "msweep":
        return m_sweep("msweep", SEEDS)
    if plan == "long":
        # Seed 0 of all three methods, then the m sweep (seed 0), then the other seeds.
        runs = [Run("compare-long", M_SWEEP_TASK, method, 0) for method in METHODS]
        runs += m_sweep("msweep-long", SEEDS[:1])
        runs += [Run("compare-long", M_SWEEP_TASK, method, seed) for seed in SEEDS[1:] for method in METHODS]
        return runs
    if plan == "mid":
        # Seed-major, so a grid cut short still compares all methods on every task.
        return [Run("compare-mid", task, method, seed) for seed in SEEDS for task in MID_TASKS for method in METHODS]
    if plan == "msweep-long":
        return m_sweep("msweep-long", SEEDS)
    if plan == "all":
        # What was run here, in this order: SST-2 and RTE seed 0 (short: a pilot that learned only the label
        # prior), the long SST-2 plan, the mid grid on RTE, CB and MRPC, then the m sweep's seeds 1 and 2. The
        # short grid's other tasks and seeds (``--plan cb`` etc.) were replaced by the mid grid and are not in it.
        first = [Run("compare", task, method, 0) for task in ("sst2", "rte") for method in METHODS]
        return first + plan_runs("long") + plan_runs("mid") + m_sweep("msweep-long", SEEDS[1:])
    raise ValueError(f"unknown plan {plan!r}; choose from {', '.join(TASKS)}, msweep, long, mid, msweep-long, all")


def to_cli_args(options: dict[str, Any]) -> list[str]:
    return [part for key, value in options.items() for part in ("--" + key.replace("_", "-"), str(value))]


def train_command(run: Run, model: str) -> list[str]:
    launcher = "import sys; from superpos_trainer.cli import main; sys.exit(main())"
    return [sys.executable, "-c", launcher, "train", *to_cli_args(run.options(model)), "--no-progress"]


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def is_running(run: Run) -> bool:
    """Whether some process (e.g. left by an earlier, stopped driver) is training this run now (Linux /proc)."""
    needle = str(run.run_dir.relative_to(ROOT)).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():
                return True
        except OSError:  # the process ended while we looked
            continue
    return False


def code_version() -> dict[str, str]:
    """The git commit plus a hash of the library and trainer sources as they are when a run starts (the working
    tree may hold uncommitted changes), so results from different code can be told apart."""
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("superpos_kernels/*.py"), *ROOT.glob("python/superpos_trainer/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return {"commit": commit.stdout.strip(), "sources_sha256": digest.hexdigest()[:16]}


def run_one(run: Run, command: list[str], threads: int) -> int:
    """Train one run (resuming a killed one from its checkpoint); returns the trainer's exit code."""
    run.folder.mkdir(parents=True, exist_ok=True)
    # What the report needs to group this run, written before training so a crash is still attributable.
    spec = {
        "plan": run.plan,
        "task": run.task,
        "method": run.method,
        "seed": run.seed,
        "m": run.m,
        "command": shlex.join(["superpos", *command[3:]]),
        "code": code_version(),
    }
    atomic_write_json(run.folder / "experiment.json", spec)
    if (run.run_dir / "config.json").is_file():
        command = [*command, "--resume"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads)}
    with open(run.folder / "driver.log", "a", encoding="utf-8") as log:
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="all", help=f"{' | '.join(TASKS)} | msweep | long | mid | msweep-long | all")
    parser.add_argument("--model", default=BUDGET["model"], help="offline short name, folder or hub id")
    parser.add_argument("--workers", type=int, default=1, help="runs trained at the same time (default 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (default: cores / workers)")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate docs/EXPERIMENTS.md")
    args = parser.parse_args(argv)

    runs = [run for run in plan_runs(args.plan) if not is_finished(run.run_dir)]
    if args.dry_run:
        for run in plan_runs(args.plan):
            print(shlex.join(train_command(run, args.model)))
        return 0
    workers = max(args.workers, 1)
    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    report_lock = threading.Lock()
    pending = list(runs)
    claimed: set[Run] = set()
    lock = threading.Lock()

    def next_run() -> Run | None:
        """The first pending run nobody trains, once fewer than ``workers`` runs are in flight (counting runs a
        stopped driver left running, so a restart never overloads the cores or trains a run twice)."""
        while True:
            with lock:
                pending[:] = [run for run in pending if not is_finished(run.run_dir)]  # e.g. a stopped driver's
                if not pending:
                    return None
                in_flight = claimed | {run for run in pending if is_running(run)}
                if len(in_flight) < workers:
                    for run in pending:
                        if run not in in_flight:
                            pending.remove(run)
                            claimed.add(run)
                            return run
            time.sleep(15)

    def worker() -> None:
        while (run := next_run()) is not None:
            start = time.time()
            print(f"[{time.strftime('%H:%M:%S')}] start {run.folder.relative_to(RUNS)}", flush=True)
            code = run_one(run, train_command(run, args.model), threads)
            with lock:
                claimed.discard(run)
            print(
                f"[{time.strftime('%H:%M:%S')}] exit {code} after {time.time() - start:.0f} s: "
                f"{run.folder.relative_to(RUNS)}",
                flush=True,
            )
            if code == 0 and not args.no_report:
                with report_lock:
                    subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py")], check=False)

    pool = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
