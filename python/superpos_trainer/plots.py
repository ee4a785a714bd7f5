"""Learning curves (one run) and the comparison plot (several runs), as PNG files written atomically.

Matplotlib runs on the Agg backend: no display needed, safe in CI and over ssh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superpos_kernels.io import atomic_write

from .run_folder import RunFolder


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def learning_curve_series(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, list[Any]]:
    """What the learning curve draws, from ``metrics.jsonl`` rows (one per evaluation).

    ``metric`` and ``invalid``: ``(step, value)`` per evaluation. ``loss``: ``(first_step, last_step, mean)`` per
    evaluation: the trainer records the mean train loss over the steps since the previous evaluation (no per-step
    loss), so it is drawn as a flat segment over exactly those steps rather than as a misleading single point.
    """
    series: dict[str, list[Any]] = {"metric": [], "invalid": [], "loss": [], "best": []}
    previous = 0
    for row in rows:
        step = int(row.get("step", 0))
        value = _finite(row.get(metric))
        if value is not None:
            series["metric"].append((step, value))
            if row.get("is_best"):
                series["best"].append((step, value))
        invalid = _finite(row.get("invalid_rate"))
        if invalid is not None:
            series["invalid"].append((step, invalid))
        loss = _finite(row.get("train_loss"))
        if loss is not None:
            series["loss"].append((previous, step, loss))
        previous = step
    return series


def _draw_metric(ax: Any, series: dict[str, list[Any]], metric: str, label_points: bool) -> None:
    """The top panel: each evaluation's metric (best ones starred) and, where any, the invalid share."""
    if series["metric"]:
        ax.plot(*zip(*series["metric"], strict=True), "o-", color="tab:blue", ms=7, label=f"validation {metric}")
        if label_points:
            for step, value in series["metric"]:
                ax.annotate(f"{value:.3f}", (step, value), textcoords="offset points", xytext=(0, 7), ha="center")
    if series["best"]:
        ax.plot(*zip(*series["best"], strict=True), "*", color="gold", mec="black", ms=14, label="best")
    show_invalid = any(v > 0 for _, v in series["invalid"])
    if show_invalid:
        ax.plot(*zip(*series["invalid"], strict=True), "x:", color="tab:red", ms=7, label="invalid share")
    if not series["metric"]:
        ax.text(0.5, 0.5, f"no valid {metric} measured", transform=ax.transAxes, ha="center", va="center")
    shown = [v for _, v in series["metric"]] + [v for _, v in series["invalid"] if show_invalid]
    if shown and all(0.0 <= v <= 1.0 for v in shown):
        ax.set_ylim(-0.05, 1.12)  # a fixed 0..1 scale: one point (or a flat curve) is not blown up to fill the axis
    ax.set_ylabel(f"{metric} / invalid share" if show_invalid else metric)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def _draw_loss(ax: Any, series: dict[str, list[Any]], label_points: bool, last_step: int) -> None:
    """The bottom panel: the mean train loss of each evaluation interval, as a flat segment over its steps."""
    for first, last, loss in series["loss"]:
        ax.hlines(loss, first, last, color="tab:orange", lw=2)
        ax.plot([last], [loss], "s", color="tab:orange", ms=6)
        if label_points:
            ax.annotate(f"{loss:.3f}", (last, loss), textcoords="offset points", xytext=(0, 7), ha="center")
    if not series["loss"]:
        ax.text(0.5, 0.5, "no train loss recorded", transform=ax.transAxes, ha="center", va="center")
    ax.set_ylabel("train loss\n(mean per interval)")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    ax.set_xlim(-0.03 * max(last_step, 1), 1.06 * max(last_step, 1))


def plot_learning_curve(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """``<run>/learning_curve.png``: every evaluation's validation metric (and invalid share) above the mean train
    loss of each evaluation interval. Points are marked and labelled, so a run with one evaluation is readable."""
    folder = RunFolder(run_dir)
    rows = folder.metrics()
    if not rows:
        return None
    metric = folder.main_metric()
    series = learning_curve_series(rows, metric)
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True, height_ratios=(3, 2))
    label_points = len(rows) <= 12  # values as text while that stays legible
    _draw_metric(top, series, metric, label_points)
    _draw_loss(bottom, series, label_points, max(int(r.get("step", 0)) for r in rows))
    top.set_title(f"{folder.name} ({len(rows)} evaluation{'s' if len(rows) != 1 else ''})", fontsize=9)
    out = Path(out) if out is not None else folder.learning_curve_path
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


__all__ = ["learning_curve_series", "plot_comparison", "plot_learning_curve"]
