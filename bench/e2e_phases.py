"""Per-phase times of finished long-budget runs (issue 16): training steps, evaluation, trainer wall; old vs new.

Reads each run folder's ``metrics.jsonl`` (``eval_seconds`` of every evaluation) and ``results.json``
(``train_seconds``: the trainer's wall time, training + evaluation, checkpoints included), groups the folders by
the name before the first ``-`` (``old-2t-...``, ``new-2t-...``: /work/wt/e2e_old.sh and e2e_*.sh name them so)
and prints each run, the median per group, and the ratio of every group's medians to the first group's.

    python bench/e2e_phases.py /tmp/e2e/old-2t-* /tmp/e2e/new-2t-*

"training" is the trainer's wall time minus its evaluations: the optimizer steps plus the adapter and checkpoint
saves (a few tens of milliseconds each, 2 x 8 of them in this run) and the loop's own bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def phases(folder: Path) -> dict[str, float]:
    """``{"trainer": s, "evaluation": s, "training": s, "evaluations": n}`` of one finished run folder."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    results = json.loads((folder / "results.json").read_text())
    trainer = float(results.get("train_seconds") or rows[-1]["wall_time"])
    evaluation = sum(float(r["eval_seconds"]) for r in rows)
    return {"trainer": trainer, "evaluation": evaluation, "training": trainer - evaluation, "evaluations": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    groups: dict[str, list[dict[str, float]]] = {}
    for folder in args.folders:
        if not (folder / "results.json").is_file():
            print(f"skipped {folder}: no results.json (unfinished run)", file=sys.stderr)
            continue
        row = phases(folder)
        groups.setdefault(folder.name.split("-")[0], []).append(row)
        print(
            f"{folder.name}: trainer {row['trainer']:.1f} s = training {row['training']:.1f} s "
            f"+ evaluation {row['evaluation']:.1f} s ({row['evaluations']:.0f} evaluations)"
        )
    medians = {
        name: {key: statistics.median(r[key] for r in rows) for key in ("trainer", "training", "evaluation")}
        for name, rows in groups.items()
    }
    base = next(iter(medians), None)
    for name, m in medians.items():
        ratios = ", ".join(f"{key} {m[key] / medians[base][key]:.3f}" for key in m) if base else ""
        print(
            f"median {name} (n={len(groups[name])}): trainer {m['trainer']:.1f} s, training {m['training']:.1f} s, "
            f"evaluation {m['evaluation']:.1f} s; / {base}: {ratios}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
