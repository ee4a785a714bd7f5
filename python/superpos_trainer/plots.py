"""Learning curves (one run) and the comparison plot (several runs), as PNG files written atomically.

Matplotlib runs on the Agg backend: no display needed, safe in CI and over ssh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superpos_kernels.io import atomic_write

from .checkpoints import read_metrics


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def _main_metric(run_dir: Path, rows: Sequence[dict[str, Any]]) -> str:
    results = run_dir / "results.json"
    if results.is_file():
        return json.loads(results.read_text())["main_metric"]
    from .tasks import get_task

    config = json.loads((run_dir / "config.json").read_text())
    return get_task(config["task"]).main_metric


def plot_learning_curve(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """``<run>/learning_curve.png``: the main validation metric and the training loss against steps."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    if not rows:
        return None
    metric = _main_metric(run_dir, rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r.get(metric) for r in rows], "o-", color="tab:blue", label=f"validation {metric}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    losses = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    if losses:
        ax2 = ax.twinx()
        ax2.plot(*zip(*losses, strict=True), "s--", color="tab:orange", label="train loss")
        ax2.set_ylabel("train loss")
        ax2.legend(loc="lower right")
    ax.legend(loc="lower left")
    ax.set_title(run_dir.name, fontsize=9)
    out = Path(out) if out is not None else run_dir / "learning_curve.png"
    _save(fig, out)
    plt.close(fig)
    return out


def plot_comparison(runs: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """One plot: each run's main validation metric against steps (runs: ``{label, metric, rows}``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    metrics = sorted({r["metric"] for r in runs})
    for run in runs:
        rows = run["rows"]
        ax.plot([r["step"] for r in rows], [r.get(run["metric"]) for r in rows], "o-", label=run["label"])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(" / ".join(metrics))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = Path(out)
    _save(fig, out)
    plt.close(fig)
    return out


__all__ = ["plot_comparison", "plot_learning_curve"]
