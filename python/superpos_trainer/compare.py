"""``superpos compare``: runs side by side, as a table on stdout and one plot of their learning curves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import SuperposError
from .plots import plot_comparison
from .run_folder import RunFolder


def summarize_run(run_dir: Path) -> dict[str, Any]:
    folder = RunFolder(run_dir)
    config = folder.config()
    rows = folder.metrics()
    results = folder.results() if folder.finished else {}
    metric = folder.main_metric()
    values = [r[metric] for r in rows if isinstance(r.get(metric), int | float) and not isinstance(r[metric], bool)]
    best = max(values) if values else None
    best_row = next((r for r in rows if r.get(metric) == best), None) if values else None
    holdout = (results.get("holdout") or {}).get(metric)
    return {
        "run": folder.name,
        "task": config.get("task"),
        "method": config.get("method"),
        "model": Path(str(config.get("model"))).name,
        "dropout": config.get("dropout"),
        "metric": metric,
        "best": best,
        "best_step": best_row["step"] if best_row else None,
        "last": values[-1] if values else None,
        "invalid_rate": rows[-1].get("invalid_rate") if rows else None,
        "holdout": holdout,
        "trainable_params": results.get("trainable_params"),
        "steps": rows[-1]["step"] if rows else 0,
        "train_seconds": results.get("train_seconds"),
        "finished": bool(results),
        "rows": rows,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,d}"
    return str(value)


COLUMNS = (
    "run",
    "task",
    "method",
    "model",
    "dropout",
    "metric",
    "best",
    "best_step",
    "last",
    "invalid_rate",
    "holdout",
    "trainable_params",
    "steps",
    "train_seconds",
)


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    cells = [[_fmt(s[c]) for c in COLUMNS] for s in summaries]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def compare_runs(runs: Sequence[str | Path], output: str | Path, as_json: bool = False) -> list[dict[str, Any]]:
    summaries = [summarize_run(Path(r).expanduser()) for r in runs]
    if as_json:
        print(json.dumps([{k: v for k, v in s.items() if k != "rows"} for s in summaries], indent=2))
    else:
        print(format_table(summaries))
    labels = [f"{s['run']} ({s['method']}, dropout {s['dropout']})" for s in summaries]
    out = Path(output)
    if not out.parent.is_dir():
        raise SuperposError(f"--output folder {out.parent} does not exist")
    plot_comparison(
        [{"label": lab, "metric": s["metric"], "rows": s["rows"]} for lab, s in zip(labels, summaries, strict=True)],
        out,
    )
    if not as_json:
        print(f"plot: {out}")
    return summaries


__all__ = ["compare_runs", "format_table", "summarize_run"]
