#!/usr/bin/env python
"""The ``w`` initialisations in training (issue 15, docs/DEFAULTS_STUDY.md measurement 3), from run files only.

SuperPos-Prompt on SmolLM2-135M with the fair grid's budget, three seeds per ``--w-init``, on two tasks:

- SST-2 at the grid's chosen learning rate for ``normal`` (0.00622): ``normal`` (today's default) is the grid's
  SuperPos seed runs; ``cone`` and ``prompt`` are the same command with ``--w-init`` added;
  simple prompt tuning's grid runs (its chosen lr, ``experiments/results/fair/run_files/``) are shown for scale.
- RTE at ``--lr auto`` (0.00207, the grid's first selection candidate; RTE's own choice was not made yet): ``normal``
  seed 0 is the grid's selection run, the other runs are the same command.
- SST-2 again on fresh seeds 5-9, ``normal`` and ``cone`` both run here: the confirmatory check of the page's second
  decision rule (the seeds that raised the question are left out of it).

The runs that are not the grid's are in ``experiments/results/defaults_study/winit_training/
<task>-superpos-<init>-lr<lr>-seed<k>/``. A seed fixes the data subset, the held-out split, the order and the
sampled ids, so seed k pairs the inits on the same data.

Per init and seed: validation score (full split: SST-2 872, RTE 277) of the best adapter (chosen on the held-out
rows) and of the last; the best held-out score; the mean training loss over the first 20 steps (issue 15 saw
SuperPos start far above simple prompt tuning); the held-out curve. Then each init minus ``normal``, paired by
seed: mean and 95 % t-interval, on the held-out score first: a default chosen from this study is chosen on the
held-out rows, as the fair grid chooses its learning rates (the validation split is only reported).

    python experiments/winit_training.py [--write docs/DEFAULTS_STUDY.md]

``--write`` replaces the section between ``<!-- winit-training:begin -->`` and ``<!-- winit-training:end -->``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: the repository root makes `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import doc_sections
from experiments.fair_report import mean_sd, t_interval
from experiments.run_files import read_finished

RESULTS = Path(__file__).resolve().parent / "results"
GRID = RESULTS / "fair" / "run_files" / "smollm2-135m"
STUDY = RESULTS / "defaults_study" / "winit_training"
PROMPT_TUNING = "simple prompt tuning"
SECTION = "winit-training"
TITLES = {"sst2": "SST-2", "rte": "RTE"}


@dataclass(frozen=True)
class Study:
    task: str
    lr: str  # SuperPos's learning rate, as in the folder names
    inits: tuple[str, ...]
    prompt_lr: str | None = None  # simple prompt tuning's chosen lr on the task, shown for scale
    seeds: tuple[int, ...] = (0, 1, 2)
    note: str = ""

    @property
    def title(self) -> str:
        note = f" ({self.note})" if self.note else ""
        name = TITLES.get(self.task, self.task)
        return f"**{name}, SuperPos lr {self.lr}, seeds {self.seeds[0]}-{self.seeds[-1]}**{note}"


# The first decision rule pools these two studies; the confirmatory rule reads the fresh-seed study alone.
FIRST = (
    Study("sst2", "0.00622", ("normal", "cone", "prompt"), "0.00129"),
    Study("rte", "0.00207", ("normal", "cone")),
)
CONFIRMATORY = Study("sst2", "0.00622", ("normal", "cone"), seeds=(5, 6, 7, 8, 9), note="fresh seeds, confirmatory")
STUDIES = (*FIRST, CONFIRMATORY)


def load(folder: Path) -> dict[str, Any] | None:
    """A finished run's scores, or None when ``folder`` has no results.json yet."""
    run = read_finished(folder)
    if run is None:
        return None
    return {
        "best": run.final("best"),
        "last": run.final("last"),
        "heldout": run.heldout_best,
        "loss20": next(row["train_loss"] for row in run.rows if row.get("step") == 20),
        "curve": [score for _, score in run.curve("holdout")],
    }


def run_folders(study: Study, init: str, seed: int, grid: Path, runs: Path) -> list[Path]:
    """Where the run may be, in order: this study's own run first, then (``normal`` and simple prompt tuning) the
    grid's run files. Own first: the grid's second stage (fair_plan.EXTRA_SEEDS) later trained the same command on
    seeds 5-9 as a separate run, and the study reads the run it was decided on, not a later repeat."""
    if init == PROMPT_TUNING:
        return [grid / study.task / f"prompt-lr{study.prompt_lr}-seed{seed}"]
    own = runs / f"{study.task}-superpos-{init}-lr{study.lr}-seed{seed}"
    return [own, grid / study.task / f"superpos-lr{study.lr}-seed{seed}"] if init == "normal" else [own]


Found = dict[str, dict[int, dict[str, Any]]]  # init -> seed -> a finished run's scores


def collect(study: Study, grid: Path, runs: Path) -> Found:
    """``{init: {seed: scores}}`` for the finished runs (simple prompt tuning as a last row where it has an lr)."""
    rows = (*study.inits, PROMPT_TUNING) if study.prompt_lr else study.inits
    found: Found = {}
    for init in rows:
        folders = {seed: run_folders(study, init, seed, grid, runs) for seed in study.seeds}
        loaded = {seed: next(filter(None, map(load, paths)), None) for seed, paths in folders.items()}
        found[init] = {seed: run for seed, run in loaded.items() if run is not None}
    return found


def study_report(study: Study, found: Found) -> list[str]:
    lines = [
        study.title,
        "",
        "| w init | seeds | validation, best adapter (mean ± sd, %) | last adapter | held-out best | "
        "train loss, steps 1-20 | per seed: best / last |",
        "|---|---|---|---|---|---|---|",
    ]
    for init, by_seed in found.items():
        if not by_seed:
            lines.append(f"| {init} | 0 | - | - | - | - | - |")
            continue
        cells = []
        for key in ("best", "last", "heldout", "loss20"):
            mean, sd = mean_sd([run[key] for run in by_seed.values()])
            cells.append(f"{mean:.2f} ± {sd:.2f}" if key == "loss20" else f"{100 * mean:.1f} ± {100 * sd:.1f}")
        per_seed = ", ".join(f"s{s}: {100 * r['best']:.1f} / {100 * r['last']:.1f}" for s, r in sorted(by_seed.items()))
        lines.append(f"| {init} | {len(by_seed)} | {' | '.join(cells)} | {per_seed} |")
    if any(found.values()):
        lines += ["", "Held-out curves (steps 20, 40, ..., 160):", ""]
    for init, by_seed in found.items():
        for seed, run in sorted(by_seed.items()):
            lines.append(f"- {init}, seed {seed}: {' '.join(f'{v:.2f}' for v in run['curve'])}")
    lines.append("")
    for init in [name for name in found if name != "normal"]:
        seeds = sorted(set(found[init]) & set(found["normal"]))
        if len(seeds) < 2:
            lines.append(f"- {init} minus normal: {len(seeds)} paired seed(s), no interval yet.")
            continue
        parts = []
        for key in ("heldout", "best", "last"):
            diffs = [found[init][s][key] - found["normal"][s][key] for s in seeds]
            mean, low, high = t_interval(diffs)
            name = "held-out best (what a choice may use)" if key == "heldout" else f"validation, {key} adapter"
            parts.append(f"{name} {100 * mean:+.1f} pp [{100 * low:+.1f}, {100 * high:+.1f}]")
        lines.append(f"- {init} minus normal ({len(seeds)} paired seeds, 95 % t-interval): {'; '.join(parts)}.")
    return [*lines, ""]


def pooled_lines(found: list[Found]) -> list[str]:
    """Each init minus ``normal`` on the held-out best, over the seed pairs of every study in ``found`` that ran it
    (the decision rule's number: a default is chosen on held-out rows)."""
    inits = dict.fromkeys(init for f in found for init in f if init not in ("normal", PROMPT_TUNING))
    lines = []
    for init in inits:
        diffs = [
            f[init][seed]["heldout"] - f["normal"][seed]["heldout"]
            for f in found
            for seed in sorted(set(f.get(init, {})) & set(f["normal"]))
        ]
        if len(diffs) < 2:
            continue
        mean, low, high = t_interval(diffs)
        lines.append(
            f"- **Pooled ({init} minus normal, held-out best)**: {100 * mean:+.1f} pp "
            f"[{100 * low:+.1f}, {100 * high:+.1f}] over {len(diffs)} seed pairs (95 % t-interval)."
        )
    return lines


def report(
    grid: Path = GRID, runs: Path = STUDY, studies: tuple[Study, ...] = STUDIES, pooled: tuple[Study, ...] = FIRST
) -> str:
    """Each study's tables, then the held-out differences pooled over ``pooled`` (the first decision rule's)."""
    found = {study: collect(study, grid, runs) for study in dict.fromkeys([*studies, *pooled])}
    lines = [line for study in studies for line in study_report(study, found[study])]
    pooled_text = pooled_lines([found[study] for study in pooled])
    if pooled_text:
        tasks = "+".join(TITLES.get(study.task, study.task) for study in pooled)
        lines += [f"Pooled over {tasks} (each init over the studies that ran it):", "", *pooled_text]
    return "\n".join(lines).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=GRID, help="the fair grid's SmolLM2 run files")
    parser.add_argument("--runs", type=Path, default=STUDY, help="the study's own run folders")
    parser.add_argument("--write", type=Path, help="a markdown file with the section markers to fill")
    args = parser.parse_args(argv)
    return doc_sections.print_or_fill(report(args.grid, args.runs), args.write, SECTION)


if __name__ == "__main__":
    raise SystemExit(main())
