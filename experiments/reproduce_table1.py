#!/usr/bin/env python
"""Reproduce Table 1 of the SuperPos-Prompt paper: T5 v1.1 LM-adapted small/base x 13 GLUE/SuperGLUE tasks x
{SuperPos, simple prompt tuning, Residual prompt tuning, full fine-tuning} x dropout {on, off}, 80 epochs each.

NOT RUN IN THIS REPOSITORY. It needs a GPU and access to the Hugging Face hub (the checkpoints
google/t5-small-lm-adapt and google/t5-base-lm-adapt, and the task data unless --data-dir points to local GLUE /
SuperGLUE files). Neither was available where this project was built (2 CPU cores, no hub), so no number from this
script appears anywhere in the docs; tests/test_reproduce_table1.py only checks that every configuration builds and
passes the trainer's validation. The measured results we do have are small CPU runs on SmolLM2-135M
(docs/EXPERIMENTS.md, experiments/run_comparison.py).

Every run is one ``superpos train`` call with the paper's settings (lr / weight decay per method are the trainer's
defaults, which are the paper's; n=10, m=128; the whole train split; 80 epochs; full validation set; labels
generated as text, an invalid generation counts as wrong). 13 x 4 x 2 x 2 = 208 runs; MNLI, QQP and QNLI at 80
epochs dominate the cost, so use --tasks / --methods / --sizes / --dropout to split the grid across machines.
Finished runs are skipped, so the script can be restarted after an interruption.

    python experiments/reproduce_table1.py --dry-run                 # print the 208 commands
    python experiments/reproduce_table1.py --sizes small --tasks rte cb copa --output-root runs/table1
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLE1_TASKS = ("qqp", "qnli", "mnli", "sst2", "stsb", "mrpc", "cola", "multirc", "rte", "cb", "copa", "wic", "boolq")
TABLE1_METHODS = ("superpos", "prompt", "residual", "full")
TABLE1_DROPOUT = ("on", "off")
TABLE1_MODELS = {"small": "google/t5-small-lm-adapt", "base": "google/t5-base-lm-adapt"}

# The paper's shared settings; everything else is the trainer's default (method lr / weight decay included).
PAPER_OPTIONS: dict[str, Any] = {
    "model_type": "seq2seq",
    "epochs": 80,
    "num_prompt_tokens": 10,
    "num_sampled_tokens": 128,
    "train_limit": 0,  # the whole training split
    "eval_limit": 0,  # the whole validation split
    "eval_mode": "generate",  # labels generated as text; an invalid generation is wrong
    "max_length": 256,
    "seed": 0,
}


@dataclass(frozen=True)
class Table1Run:
    size: str
    task: str
    method: str
    dropout: str
    options: dict[str, Any] = field(hash=False)

    @property
    def name(self) -> str:
        return f"{self.size}/{self.task}/{self.method}-dropout-{self.dropout}"


def table1_runs(
    output_root: str | Path = "runs/table1",
    sizes: Iterable[str] = tuple(TABLE1_MODELS),
    tasks: Iterable[str] = TABLE1_TASKS,
    methods: Iterable[str] = TABLE1_METHODS,
    dropouts: Iterable[str] = TABLE1_DROPOUT,
    extra: dict[str, Any] | None = None,
) -> list[Table1Run]:
    """Every run of the grid (or of the selected part), with the complete option set of each."""
    runs = []
    for size in sizes:
        if size not in TABLE1_MODELS:
            raise ValueError(f"unknown model size {size!r}; choose from {', '.join(TABLE1_MODELS)}")
        for task in tasks:
            for method in methods:
                for dropout in dropouts:
                    run = Table1Run(size, task, method, dropout, {})
                    options = {
                        **PAPER_OPTIONS,
                        "model": TABLE1_MODELS[size],
                        "task": task,
                        "method": method,
                        "dropout": dropout,
                        "output_dir": str(Path(output_root) / run.name),
                        **(extra or {}),
                    }
                    runs.append(Table1Run(size, task, method, dropout, options))
    return runs


def to_cli_args(options: dict[str, Any]) -> list[str]:
    """Options -> ``superpos train`` flags (``num_prompt_tokens`` -> ``--num-prompt-tokens``)."""
    args = []
    for key, value in options.items():
        if isinstance(value, bool):
            raise TypeError(f"option {key!r}: boolean flags are not used by this grid")
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


def train_command(run: Table1Run) -> list[str]:
    # Through the installed package's entry point, with the interpreter running this script.
    launcher = "import sys; from superpos_trainer.cli import main; sys.exit(main())"
    return [sys.executable, "-c", launcher, "train", *to_cli_args(run.options)]


def is_finished(run_dir: Path) -> bool:
    """A run is done once the trainer wrote its final results file."""
    return (run_dir / "results.json").is_file()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--output-root", default="runs/table1", help="one sub-folder per run (default runs/table1)")
    parser.add_argument("--sizes", nargs="+", default=list(TABLE1_MODELS), choices=list(TABLE1_MODELS))
    parser.add_argument("--tasks", nargs="+", default=list(TABLE1_TASKS), choices=list(TABLE1_TASKS))
    parser.add_argument("--methods", nargs="+", default=list(TABLE1_METHODS), choices=list(TABLE1_METHODS))
    parser.add_argument("--dropout", nargs="+", default=list(TABLE1_DROPOUT), choices=list(TABLE1_DROPOUT))
    parser.add_argument("--data-dir", default=None, help="local GLUE/SuperGLUE files (default: the trainer's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    extra = {"data_dir": args.data_dir} if args.data_dir else None
    runs = table1_runs(args.output_root, args.sizes, args.tasks, args.methods, args.dropout, extra)
    for i, run in enumerate(runs, 1):
        command = train_command(run)
        if args.dry_run:
            print(shlex.join(command))
            continue
        if is_finished(Path(run.options["output_dir"])):
            print(f"[{i}/{len(runs)}] {run.name}: finished earlier, skipped", flush=True)
            continue
        print(f"[{i}/{len(runs)}] {run.name}", flush=True)
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            print(f"{run.name} failed with exit code {result.returncode}; rerun to resume", file=sys.stderr)
            return result.returncode
    if args.dry_run:
        print(f"# {len(runs)} runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
