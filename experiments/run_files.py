"""One reader of a finished ``superpos train`` run folder, shared by the experiment reports.

A run folder is finished when its ``results.json`` holds the final scores; the reports read that file and the
periodic evaluations in ``metrics.jsonl`` through the trainer's own readers (one line for a corrupt file, no
traceback, no pickle), and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FinishedRun:
    results: dict[str, Any]  # results.json
    rows: list[dict[str, Any]]  # metrics.jsonl, one dict per evaluation

    @property
    def metric(self) -> str:
        """The task's main metric (accuracy, F1, ...): every score below is this one."""
        return str(self.results["main_metric"])

    def final(self, adapter: str) -> float:
        """The validation score of the ``"best"`` or the ``"last"`` adapter, scored once at the end."""
        return float(self.results["final"][adapter][self.metric])

    @property
    def final_examples(self) -> int:
        return int(self.results["final"]["examples"])

    @property
    def heldout_best(self) -> float:
        """The best periodic score: what the best adapter was chosen on."""
        return float(self.results["best_metric"])

    def curve(self, split: str | None = "holdout") -> list[tuple[int, float]]:
        """``(step, score)`` of the periodic evaluations on ``split`` (None: every row that has the metric)."""
        return [
            (int(row["step"]), float(row[self.metric]))
            for row in self.rows
            if row.get(self.metric) is not None and (split is None or row.get("split") == split)
        ]


def read_finished(folder: Path) -> FinishedRun | None:
    """The run in ``folder`` (the trainer's output folder, holding results.json), or None while it is unfinished."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    from superpos_trainer.run_folder import read_json_object, read_metrics  # lazy: the trainer imports torch

    results = read_json_object(path)
    if not isinstance(results.get("final"), dict):  # an older run that never scored the validation split at the end
        return None
    return FinishedRun(results, read_metrics(folder / "metrics.jsonl"))
