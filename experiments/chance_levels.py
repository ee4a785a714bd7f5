#!/usr/bin/env python
"""The score of always giving one answer, per task of the fair grid, on the validation split it reports.

A method that scores below this level has learned nothing a constant could not do (RTE at the grid's budget, for
one), so the report prints it beside the methods. Per task: each class answered for every example, scored with
the task's own metric (accuracy; F1/accuracy for MRPC and CB); the best of them. From the data files only:

    python experiments/chance_levels.py [--data-dir DIR]     # writes experiments/results/fair/chance.json

``--data-dir`` defaults to the trainer's (``$SUPERPOS_DATA_DIR``, else ``../shared/data``); the committed JSON is
what the report reads, so regenerating the report needs no data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: the repository root makes `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import fair_plan as fp
from experiments.fair_report import RESULTS

CHANCE = RESULTS / "chance.json"


def constant_answer(task_name: str, data_dir: str | Path) -> dict[str, Any]:
    """``{"metric", "score", "answer", "examples"}``: the best single answer on the validation split."""
    from superpos_trainer.data import load_examples
    from superpos_trainer.tasks import get_task

    task = get_task(task_name)
    examples = load_examples(task, "validation", data_dir)
    golds = [example.label for example in examples]
    groups = [example.group or "" for example in examples]
    scores = {
        word: task.metric.score([label] * len(golds), golds, groups, task.num_classes)[task.main_metric]
        for label, word in enumerate(task.label_words)
    }
    answer = max(scores, key=lambda word: scores[word])  # first of equals: the lower class index
    return {"metric": task.main_metric, "score": scores[answer], "answer": answer, "examples": len(examples)}


def compute(tasks: Iterable[str], data_dir: str | Path) -> dict[str, dict[str, Any]]:
    return {task: constant_answer(task, data_dir) for task in tasks}


def read(path: Path = CHANCE) -> dict[str, dict[str, Any]]:
    """The committed levels ({} when the file was never written)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    from superpos_trainer.config import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=default_data_dir(), help="a folder laid out like shared/data")
    args = parser.parse_args(argv)
    if args.data_dir is None or not Path(args.data_dir).is_dir():
        print(f"error: --data-dir {args.data_dir} is not a folder; give one laid out like shared/data", file=sys.stderr)
        return 2
    from superpos_trainer.data import DataError

    tasks = sorted({task for tasks in fp.MODELS.values() for task in tasks})
    try:
        levels = compute(tasks, args.data_dir)
    except DataError as exc:  # a missing or malformed file: its one line (path, line, what is wrong), no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    CHANCE.write_text(json.dumps(levels, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for task, level in levels.items():
        print(f"{task}: {level['metric']} {level['score']:.4f} answering {level['answer']!r} ({level['examples']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
