#!/usr/bin/env python
"""bf16 vs fp32 at the fair grid's settings (issue 16's parity check), from run files only.

Each pair is one ``superpos train`` command of the fair grid (SmolLM2-135M, SST-2, 160 steps of 8, best adapter
chosen on the held-out rows, best and last adapter scored once on the full validation split of 872) run twice,
``--bf16 on`` (autocast, fp32 output layer) and ``--bf16 off``; folders
``experiments/results/precision/fair_parity/<method>-lr<lr>-seed<k>-bf16<on|off>/`` hold each run's
``results.json``, ``metrics.jsonl`` and ``config.json``. Prints, per method: each seed's validation accuracy of the
best and the last adapter in both precisions, the held-out curves, and per score the paired difference bf16 - fp32
(mean and 95 % t-interval over seeds) next to fp32's own seed-to-seed standard deviation.

    python experiments/precision_parity.py [--folder FOLDER] [--write bench/RESULTS.md]

``--write`` replaces the section between ``<!-- precision-parity:begin -->`` and ``<!-- precision-parity:end -->``
of that file with the tables (no number typed by hand).

"Within seed noise" here means: the paired interval includes 0 AND the mean difference is smaller than the
standard deviation of fp32's scores over the same seeds (what a different seed alone moves a score by).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

if not __package__:  # run as a script: the repository root makes `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import doc_sections
from experiments.fair_report import mean_sd, t_interval
from experiments.run_files import read_finished

FOLDER = Path(__file__).resolve().parent / "results" / "precision" / "fair_parity"
SECTION = "precision-parity"
NAME = re.compile(r"^(?P<method>[a-z]+)-lr(?P<lr>[0-9.e-]+)-seed(?P<seed>\d+)-bf16(?P<bf16>on|off)$")


def load(folder: Path) -> dict[str, float | list[float] | str] | None:
    run = read_finished(folder)
    if run is None:
        return None
    return {
        "precision": run.results["precision"],
        "best": run.final("best"),
        "last": run.final("last"),
        "examples": run.final_examples,
        "curve": [score for _, score in run.curve(split=None)],
    }


def collect(folder: Path) -> dict[tuple[str, str], dict[int, dict[str, dict]]]:
    """``{(method, lr): {seed: {"on": run, "off": run}}}`` for the seeds that have both precisions."""
    found: dict[tuple[str, str], dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted(folder.iterdir()):
        match = NAME.match(path.name)
        if match and (run := load(path)) is not None:
            found[match["method"], match["lr"]][int(match["seed"])][match["bf16"]] = run
    return {k: {s: v for s, v in seeds.items() if len(v) == 2} for k, seeds in found.items()}


def verdict(diffs: list[float], fp32_scores: list[float]) -> str:
    mean, low, high = t_interval(diffs)
    _, sd = mean_sd(fp32_scores)
    if low != low:  # nan: fewer than 2 seeds
        return "undetermined (one seed)"
    inside = low <= 0 <= high and abs(mean) < sd
    return "within seed noise" if inside else "outside seed noise"


def report(folder: Path) -> str:
    lines = []
    for (method, lr), seeds in sorted(collect(folder).items()):
        if not seeds:
            continue
        lines += [
            f"**{method}, lr {lr}** ({len(seeds)} seeds; validation accuracy on "
            f"{next(iter(seeds.values()))['off']['examples']} examples)",
            "",
            "| seed | fp32 best | bf16 best | fp32 last | bf16 last | held-out curve fp32 | held-out curve bf16 |",
            "|---|---|---|---|---|---|---|",
        ]
        for seed, runs in sorted(seeds.items()):
            off, on = runs["off"], runs["on"]
            if off["precision"] != "fp32" or on["precision"] != "bf16-autocast":
                raise ValueError(f"{method} lr {lr} seed {seed}: the folder names and results.json's precision differ")
            curve = lambda run: " ".join(f"{v:.3f}" for v in run["curve"])  # noqa: E731
            lines.append(
                f"| {seed} | {off['best']:.3f} | {on['best']:.3f} | {off['last']:.3f} | {on['last']:.3f} | "
                f"{curve(off)} | {curve(on)} |"
            )
        lines.append("")
        for which in ("best", "last"):
            fp32 = [runs["off"][which] for _, runs in sorted(seeds.items())]
            diffs = [runs["on"][which] - runs["off"][which] for _, runs in sorted(seeds.items())]
            mean, low, high = t_interval(diffs)
            _, sd = mean_sd(fp32)
            lines.append(
                f"- {which} adapter: bf16 - fp32 = {100 * mean:+.1f} pp "
                f"(95 % CI {100 * low:+.1f} .. {100 * high:+.1f}; "
                f"per seed {', '.join(f'{100 * d:+.1f}' for d in diffs)}); fp32's seed-to-seed sd {100 * sd:.1f} pp: "
                f"**{verdict(diffs, fp32)}**"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--write", type=Path, help="a markdown file with the section markers to fill")
    args = parser.parse_args()
    return doc_sections.print_or_fill(report(args.folder), args.write, SECTION)


if __name__ == "__main__":
    raise SystemExit(main())
