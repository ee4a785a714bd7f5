"""The files of a run folder (``superpos train --output-dir``): their names, and the one reader of them.

A run folder holds::

    config.json          the resolved configuration (written once the model and method are built)
    metrics.jsonl        one JSON row per evaluation (step, main metric, invalid_rate, train_loss, is_best, ...)
    results.json         the run's summary, written at its end: its presence marks a finished run
    best/  last/         adapters (the best evaluation's and the last one's), swapped in whole
    checkpoint/          the exact-resume checkpoint, swapped in whole
    train.log            the log
    learning_curve.png   the plot of metrics.jsonl

:class:`RunFolder` is the reader every consumer goes through: ``superpos compare`` (compare.py), the plots
(plots.py) and ``experiments/report.py``. The writers still live where they were (``train.py``, ``runner.py``,
``checkpoints.py``: metrics, adapters, checkpoints, results); they move here next, in the trainer refactor of
issue 13, so that one module owns every path and file of a run. Until then ``metrics.jsonl`` is parsed by
``checkpoints.read_metrics``, the function the trainer itself resumes from, so every reader sees the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoints import read_metrics
from .errors import RunFolderError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
BEST_DIR = "best"
LAST_DIR = "last"
CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "train.log"
LEARNING_CURVE_FILE = "learning_curve.png"


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; anything else (missing, unreadable, not JSON, not an object) is one line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path} does not exist") from None
    except OSError as exc:
        raise RunFolderError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deeply
        raise RunFolderError(f"{path} is not valid JSON ({str(exc)[:120]}); the run folder is corrupt") from None
    if not isinstance(data, dict):
        raise RunFolderError(
            f"{path} must hold a JSON object, found a JSON {type(data).__name__}; the run folder is corrupt"
        )
    return data


class RunFolder:
    """One run folder: the path of each of its files, and readers that fail with one line naming the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def best_dir(self) -> Path:
        return self.path / BEST_DIR

    @property
    def last_dir(self) -> Path:
        return self.path / LAST_DIR

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def learning_curve_path(self) -> Path:
        return self.path / LEARNING_CURVE_FILE

    @property
    def finished(self) -> bool:
        """True once the trainer wrote ``results.json`` (at the end of the run)."""
        return self.results_path.is_file()

    def config(self) -> dict[str, Any]:
        """``config.json``; its absence means the folder is no run folder at all."""
        if not self.config_path.is_file():
            raise RunFolderError(f"{self.path} is not a run folder (no {CONFIG_FILE})")
        return read_json_object(self.config_path)

    def metrics(self) -> list[dict[str, Any]]:
        """The ``metrics.jsonl`` rows in order; ``[]`` before the first evaluation (no file yet).

        A line that is not JSON (a truncated last line included) is a :class:`RunFolderError` naming the line:
        the trainer replaces the file atomically, so a broken line means a damaged folder, not a write in progress.
        """
        return read_metrics(self.metrics_path)

    def results(self) -> dict[str, Any]:
        """``results.json``; only a finished run has one (see :attr:`finished`)."""
        if not self.finished:
            raise RunFolderError(f"{self.path} holds no {RESULTS_FILE}: the run has not finished")
        return read_json_object(self.results_path)

    def main_metric(self) -> str:
        """The metric the run selected its best evaluation by: from ``results.json``, else from its task."""
        if self.finished:
            metric = self.results().get("main_metric")
            if metric is not None:
                return str(metric)
        from .tasks import get_task  # only runs without results need the task table

        task = self.config().get("task")
        if not isinstance(task, str):
            raise RunFolderError(f"{self.config_path} names no task (field 'task'); the run folder is corrupt")
        return get_task(task).main_metric


__all__ = [
    "BEST_DIR",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "LAST_DIR",
    "LEARNING_CURVE_FILE",
    "LOG_FILE",
    "METRICS_FILE",
    "RESULTS_FILE",
    "RunFolder",
    "read_json_object",
]
