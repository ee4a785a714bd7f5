#!/usr/bin/env python
"""The fair comparison's report (issue 15), from the run files of experiments/run_fair.py only.

Reads ``experiments/runs/fair/<model>/auto_lr.json``, each run's ``experiment.json``, ``run/results.json`` and
``run/metrics.jsonl``, and the untrained prompts' held-out scores of experiments/step0_scores.py
(``experiments/results/fair/step0/<model>-<task>.json``); writes ``experiments/results/fair/*.json|csv`` and the
generated section of docs/EXPERIMENTS.md between ``<!-- fair-report:begin -->`` and ``<!-- fair-report:end -->``
(experiments/report.py owns the appendix; the markdown: experiments/fair_markdown.py). No number is typed by hand.
The driver regenerates it after every finished run.

    python experiments/fair_report.py                                             # from the grid's run folders
    python experiments/fair_report.py --runs experiments/results/fair/run_files   # from the committed copy

The committed docs/EXPERIMENTS.md is generated from the committed copy (a test checks it is).

Statistics (functions below, tested in tests/test_fair_report.py):

- Per (model, task, method): the final validation score of the best adapter (chosen on the held-out split) and of
  the last adapter, mean and sample standard deviation over seeds.
- Paired differences SuperPos minus each baseline, paired by seed (same training subset, same held-out split,
  same data order): mean and a two-sided 95 % Student t-interval (``mean +- t_{0.975, n-1} * sd / sqrt(n)``) per
  task, and pooled per model over ALL its (task, seed) pairs as one sample (tasks weighted by their number of
  pairs, pairs treated as independent; the metrics are all in [0, 1], so the differences share one scale).
- Steps to reach: per seed, the first evaluation step at which SuperPos's held-out curve reaches the baseline's
  held-out score at its final evaluation (step 160); the median over seeds, a seed that never reaches it counting
  as later than every step (so the median is "not reached" when half or more never do).
- The issue's "conclusive" rule: a pooled CI that excludes 0, or is narrower than +-2 pp.
- Pairs needed (a finished, inconclusive answer): the smallest n whose t-interval at the measured mean and sd
  would be conclusive by that rule, i.e. half-width below max(|mean|, 2 pp).
- Learning-rate selection per (model, task, method): each candidate's best held-out score on that task (seed 0)
  and its rank there; ``--lr auto`` within the best two per task (the issue's transfer check: Gemma-3-270M, SST-2).
- The learning-rate rule ``F x --lr auto``: F = 3^round(mean k) over SmolLM2-135M's chosen ``auto x 3^k``, and the
  out-of-box check: SuperPos minus prompt tuning, each at its derived default, paired by seed wherever both have a
  run at that lr (five seeds where it is the task's chosen lr, else the seed-0 selection run).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as `python experiments/fair_report.py`: the repository root makes `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import doc_sections
from experiments import fair_plan as fp
from experiments.run_files import read_finished

ROOT = fp.ROOT
RESULTS = ROOT / "experiments" / "results" / "fair"
RUN_FILES = RESULTS / "run_files"  # finished runs' files as committed: <model>/<task>/<run>/{results,config,...}.json
STARTS = RESULTS / "step0"  # experiments/step0_scores.py: held-out scores before any step, <model>-<task>.json
DOC = ROOT / "docs" / "EXPERIMENTS.md"
BASELINES = ("prompt", "residual")
RULE_MODEL = "smollm2-135m"  # the learning-rate rule is fitted here and checked on Gemma-3-270M (issue 15)
CONCLUSIVE_HALF_WIDTH = 0.02  # the issue: a pooled CI narrower than +-2 pp is conclusive even if it includes 0


# ---- statistics ---------------------------------------------------------------------------------------------------


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for no value; sd nan for one)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the two-sided Student t-interval of the mean (nan bounds for fewer than 2 values)."""
    mean, sd = mean_sd(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(diffs) - 1)) * sd / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def pairs_needed(mean: float, sd: float, level: float = 0.95, most: int = 10_000) -> int | None:
    """How many pairs would make the t-interval conclusive by the issue's rule if ``mean`` and ``sd`` held: the
    smallest n with ``t_{n-1} * sd / sqrt(n)`` below ``max(|mean|, 2 pp)`` (then it excludes 0 or is narrower than
    +-2 pp). None when ``sd`` is unknown or even ``most`` pairs would not do."""
    if not math.isfinite(sd) or not math.isfinite(mean):
        return None
    import numpy as np
    from scipy.stats import t

    n = np.arange(2, most + 1)
    half = t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)
    enough = np.flatnonzero(half < max(abs(mean), CONCLUSIVE_HALF_WIDTH))
    return int(n[enough[0]]) if enough.size else None


def steps_to_reach(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The first step whose value reaches ``target`` (None: never)."""
    return next((step for step, value in curve if value >= target - 1e-12), None)


def median_steps(steps: Sequence[int | None]) -> float | None:
    """Median over seeds, "never" counting as later than any step; None when the median is "never"."""
    if not steps:
        return None
    value = statistics.median([math.inf if s is None else float(s) for s in steps])
    return None if math.isinf(value) else value


def verdict(low: float, high: float) -> str:
    """The issue's rule on a pooled CI of SuperPos minus the baseline."""
    if math.isnan(low):
        return "undetermined"
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "equivalent" if (high - low) / 2 < CONCLUSIVE_HALF_WIDTH else "inconclusive"


# ---- run files ------------------------------------------------------------------------------------------------------


@dataclass
class FairRun:
    model: str
    task: str
    method: str
    seed: int
    lr: float
    k: int | None
    metric: str
    heldout_best: float
    heldout_best_step: int
    heldout_curve: list[tuple[int, float]]
    val_best: float
    val_last: float
    val_examples: int
    precision: str
    steps: int
    train_seconds: float
    code: dict[str, Any] = field(default_factory=dict)
    truncated: dict[str, Any] = field(default_factory=dict)


def load_run(run: fp.Run, runs_root: Path = fp.RUNS) -> FairRun | None:
    """A finished run's numbers; None when it is unfinished (or not a --select-on holdout run)."""
    finished = read_finished(run.run_dir(runs_root))
    if finished is None or finished.results.get("select_on") != "holdout":
        return None
    from superpos_trainer.run_folder import read_json_object

    results = finished.results
    spec_path = run.folder(runs_root) / "experiment.json"
    spec = read_json_object(spec_path) if spec_path.is_file() else {}
    return FairRun(
        model=run.model,
        task=run.task,
        method=run.method,
        seed=run.seed,
        lr=run.lr,
        k=run.k,
        metric=finished.metric,
        heldout_best=finished.heldout_best,
        heldout_best_step=int(results["best_step"]),
        heldout_curve=finished.curve("holdout"),
        val_best=finished.final("best"),
        val_last=finished.final("last"),
        val_examples=finished.final_examples,
        precision=str(results.get("precision", "?")),
        steps=int(results["steps"]),
        train_seconds=float(results.get("train_seconds", math.nan)),
        code=spec.get("code", {}),
        truncated=results.get("truncated") or {},
    )


@dataclass
class ModelData:
    plan: fp.ModelPlan
    comparison: dict[tuple[str, str, int], FairRun]  # (task, method, seed) -> finished run at the chosen lr
    selection: dict[fp.Run, FairRun]  # finished selection runs
    planned: int  # comparison runs planned (tasks x each method's seeds)
    starts: dict[tuple[str, str, int], float] = field(default_factory=dict)  # (task, method, seed) -> step-0 held-out


def load_starts(model: str, root: Path = STARTS) -> dict[tuple[str, str, int], float]:
    """``(task, method, seed)`` -> the held-out score of the method's untrained prompt on that seed's split (SuperPos:
    the grid's ``normal`` init), from experiments/step0_scores.py's ``<model>-<task>.json``; empty without them."""
    from superpos_trainer.run_folder import read_json_object

    starts = {}
    for path in sorted(root.glob(f"{model}-*.json")):
        for r in read_json_object(path)["results"]:
            if r["w_init"] in ("normal", "-"):
                starts[(r["task"], r["method"], int(r["seed"]))] = float(r["score"])
    return starts


def collect(runs_root: Path = fp.RUNS, starts_root: Path | None = None) -> list[ModelData]:
    """Every model's finished runs under ``runs_root``; with ``starts_root`` (the report: STARTS) also the step-0
    scores."""
    data = []
    for plan in fp.plans_from_files(fp.MODELS, runs_root):
        loaded = {run: load_run(run, runs_root) for run in fp.ordered_runs([plan])}
        chosen = {(r.task, r.method, r.seed) for r in fp.comparison_runs(plan)}
        comparison = {
            (run.task, run.method, run.seed): fair
            for run, fair in loaded.items()
            if fair is not None
            and (run.task, run.method, run.seed) in chosen
            and (run.k is None or fp.is_chosen(plan, run))
        }
        selection = {run: fair for run, fair in loaded.items() if fair is not None and run.k is not None}
        planned = fp.planned_comparison_runs(plan.model)
        starts = load_starts(plan.model, starts_root) if starts_root else {}
        data.append(ModelData(plan, comparison, selection, planned, starts))
    return data


# ---- tables -------------------------------------------------------------------------------------------------------


def method_rows(data: ModelData) -> list[dict[str, Any]]:
    rows = []
    for task in fp.MODELS[data.plan.model]:
        for method in fp.METHODS:
            runs = sorted(
                (r for (t, m, _), r in data.comparison.items() if (t, m) == (task, method)), key=lambda r: r.seed
            )
            best, best_sd = mean_sd([r.val_best for r in runs])
            last, last_sd = mean_sd([r.val_last for r in runs])
            held, held_sd = mean_sd([r.heldout_best for r in runs])
            start = [v for (t, m, _), v in data.starts.items() if (t, m) == (task, method)]
            rows.append(
                {
                    "model": data.plan.model,
                    "task": task,
                    "method": method,
                    "lr": data.plan.chosen_lr(task, method),
                    "metric": runs[0].metric if runs else None,
                    "seeds": [r.seed for r in runs],
                    "val_best_mean": best,
                    "val_best_sd": best_sd,
                    "val_last_mean": last,
                    "val_last_sd": last_sd,
                    "heldout_best_mean": held,
                    "heldout_best_sd": held_sd,
                    "heldout_start_mean": mean_sd(start)[0],  # the untrained prompt, over the seeds scored
                    "heldout_start_seeds": len(start),
                    "val_examples": runs[0].val_examples if runs else None,
                    "precision": sorted({r.precision for r in runs}),
                }
            )
    return rows


def pairs(
    data: ModelData, task: str, baseline: str, which: str = "val_best", seeds: Sequence[int] | None = None
) -> list[tuple[int, float]]:
    """(seed, SuperPos minus ``baseline``) for every seed both finished (of ``seeds``: default all the model's)."""
    out = []
    for seed in fp.model_seeds(data.plan.model) if seeds is None else seeds:
        ours, theirs = data.comparison.get((task, "superpos", seed)), data.comparison.get((task, baseline, seed))
        if ours is not None and theirs is not None:
            out.append((seed, getattr(ours, which) - getattr(theirs, which)))
    return out


def interval_fields(which: str, diffs: Sequence[float]) -> dict[str, Any]:
    """A paired row's columns for one score (``val_best``/``val_last``): pairs, mean and the 95 % t-interval."""
    mean, low, high = t_interval(diffs)
    sd = mean_sd(diffs)[1]
    return {
        f"{which}_n": len(diffs), f"{which}_mean": mean, f"{which}_sd": sd, f"{which}_low": low, f"{which}_high": high
    }  # fmt: skip


def paired_rows(data: ModelData, seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Per baseline: one row per task, then the pooled row (every (task, seed) pair of the model; of ``seeds`` only
    when given, e.g. the first stage's fp.SEEDS)."""
    rows = []
    for baseline in BASELINES:
        pooled: dict[str, list[float]] = {"val_best": [], "val_last": []}
        for task in [*fp.MODELS[data.plan.model], "pooled"]:
            row: dict[str, Any] = {"model": data.plan.model, "task": task, "baseline": baseline}
            for which in ("val_best", "val_last"):
                if task == "pooled":
                    diffs = pooled[which]
                else:
                    found = pairs(data, task, baseline, which, seeds)
                    diffs = [d for _, d in found]
                    pooled[which] += diffs
                    row["seeds"] = [s for s, _ in found]
                row.update(interval_fields(which, diffs))
            row["verdict"] = verdict(row["val_best_low"], row["val_best_high"])
            rows.append(row)
    return rows


def pooled_row(data: ModelData, baseline: str = "prompt", seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """The pooled paired row of SuperPos minus ``baseline``: the answer's number for the model."""
    return next(r for r in paired_rows(data, seeds) if r["task"] == "pooled" and r["baseline"] == baseline)


def reach_rows(data: ModelData) -> list[dict[str, Any]]:
    rows = []
    for task in fp.MODELS[data.plan.model]:
        for baseline in BASELINES:
            per_seed: dict[int, int | None] = {}
            for seed in fp.model_seeds(data.plan.model):
                ours, theirs = (
                    data.comparison.get((task, "superpos", seed)),
                    data.comparison.get((task, baseline, seed)),
                )
                if ours is not None and theirs is not None and theirs.heldout_curve:
                    per_seed[seed] = steps_to_reach(ours.heldout_curve, theirs.heldout_curve[-1][1])
            rows.append(
                {
                    "model": data.plan.model,
                    "task": task,
                    "baseline": baseline,
                    "per_seed": per_seed,
                    "median": median_steps(list(per_seed.values())),
                    "reached": sum(s is not None for s in per_seed.values()),
                }
            )
    return rows


def selection_rows(data: ModelData) -> list[dict[str, Any]]:
    """One row per (task, method, candidate): its best held-out score (seed 0), its rank on that task (1 = chosen,
    once the task's selection is done), whether it is ``--lr auto``'s value and whether it was chosen."""
    rows = []
    plan = data.plan
    for task in fp.MODELS[plan.model]:
        for method in fp.METHODS:
            selection = plan.selections[(task, method)]
            for k in selection.candidates:
                run = data.selection.get(fp.selection_run(plan.model, task, method, plan.autos[method], k))
                rows.append(
                    {
                        "model": plan.model,
                        "task": task,
                        "method": method,
                        "k": k,
                        "lr": fp.candidate_lr(plan.autos[method], k),
                        "auto_lr": plan.autos[method],
                        "is_auto": k == 0,
                        "heldout": None if run is None else run.heldout_best,
                        "rank": selection.rank_of(k),
                        "candidates": len(selection.candidates),
                        "chosen": selection.chosen == k,
                        "selection_done": selection.done,
                    }
                )
    return rows


def chosen_factors(data: ModelData) -> dict[str, dict[str, int]]:
    """Per method, per task whose selection is done: the exponent k of the chosen lr = ``--lr auto`` x 3^k. The
    learning-rate rule is fitted on these (issue 15: derive it on SmolLM2-135M, check it on Gemma-3-270M)."""
    return {
        method: {
            task: chosen
            for task in fp.MODELS[data.plan.model]
            if (chosen := data.plan.selections[(task, method)].chosen) is not None
        }
        for method in fp.METHODS
    }


def fitted_exponent(exponents: Sequence[int]) -> int:
    """The rule's exponent from the chosen ones: ``round(mean k)``, a tie (a mean of x.5) rounded toward 0, so
    that a factor is adopted only when more than half of the evidence asks for it (docs/DEFAULTS_STUDY.md, written
    before the tasks that decide it were selected)."""
    mean = sum(exponents) / len(exponents)
    return int(math.copysign(math.ceil(abs(mean) - 0.5), mean))


def fitted_rule(data: ModelData) -> dict[str, int | None]:
    """Per method: the exponent F = 3^k of the derived default ``F x --lr auto``, once every task of the model has
    its lr chosen (None before: a rule fitted on part of the tasks would be a different rule)."""
    tasks = fp.MODELS[data.plan.model]
    return {
        method: fitted_exponent(list(by_task.values())) if len(by_task) == len(tasks) else None
        for method, by_task in chosen_factors(data).items()
    }


def models_rule(models: Sequence[ModelData]) -> dict[str, int | None]:
    """The rule's exponents fitted on RULE_MODEL's data among ``models`` ({} when it has no runs yet)."""
    rule_data = next((d for d in models if d.plan.model == RULE_MODEL), None)
    return {} if rule_data is None else fitted_rule(rule_data)


def rank_checks(data: ModelData, task: str, exponents: Mapping[str, int]) -> dict[str, tuple[int | None, int]]:
    """Per method on ``task``: the rank of the candidate ``auto x 3^k`` (k from ``exponents``) among the final
    candidates (None while the selection runs, or when k is not a candidate) and their number."""
    selections = {method: data.plan.selections[(task, method)] for method in exponents}
    return {
        method: (selections[method].rank_of(k), len(selections[method].candidates)) for method, k in exponents.items()
    }


def auto_checks(data: ModelData, task: str) -> dict[str, tuple[int | None, int]]:
    """Per method on ``task``: ``--lr auto``'s rank among the final candidates (None while the selection runs) and
    their number (F = 1 of the derived default ``F x auto``, whose check is ``rank_checks``)."""
    return rank_checks(data, task, dict.fromkeys(fp.METHODS, 0))


def runs_at(data: ModelData, task: str, method: str, k: int) -> dict[int, FairRun]:
    """Finished runs of (task, method) at ``auto x 3^k``, by seed: every seed when ``k`` is the chosen lr (its seed
    runs exist), else the one selection run (seed 0) if ``k`` was a candidate."""
    if data.plan.selections[(task, method)].chosen == k:
        return {s: r for (t, m, s), r in data.comparison.items() if (t, m) == (task, method)}
    run = data.selection.get(fp.selection_run(data.plan.model, task, method, data.plan.autos[method], k))
    return {} if run is None else {run.seed: run}


def interior_choices(data: ModelData, method: str) -> tuple[int, int]:
    """(tasks whose chosen lr for ``method`` has a scored candidate on each side, tasks whose selection is done). An
    interior choice brackets the held-out optimum within a factor of 3: a lr default could not find a better one in
    the grid's range."""
    done = [s for (_, m), s in data.plan.selections.items() if m == method and s.done]
    return sum(min(s.candidates) < s.chosen < max(s.candidates) for s in done), len(done)  # type: ignore[operator]


def start_gain(data: ModelData, task: str, method: str) -> float | None:
    """Mean over seeds of a run's best held-out score minus its untrained prompt's held-out score (same seed, same
    split): what the run learned beyond where it started. None without a seed that has both."""
    gains = [
        run.heldout_best - data.starts[(task, method, seed)]
        for (t, m, seed), run in data.comparison.items()
        if (t, m) == (task, method) and (task, method, seed) in data.starts
    ]
    return statistics.fmean(gains) if gains else None


def starts_above_candidates(data: ModelData, method: str = "superpos") -> list[tuple[str, float, float]]:
    """``(task, start, best candidate)`` for each task whose selection is done and where ``method``'s untrained
    prompt (seed 0) scored higher on the held-out split than the best held-out score of every lr candidate (seed 0,
    the selection runs). As lr -> 0 a run keeps its start, so there a lr below the candidates scores higher: the lr
    search then bounds nothing, however its choice sits among the candidates."""
    out = []
    for (task, m), selection in data.plan.selections.items():
        start = data.starts.get((task, method, 0))
        if m != method or not selection.done or start is None:
            continue
        best = max(r.heldout_best for r in data.selection.values() if (r.task, r.method) == (task, method))
        if start > best:
            out.append((task, start, best))
    return out


def default_rows(data: ModelData, rule: Mapping[str, int | None]) -> list[dict[str, Any]]:
    """The issue's out-of-box check: SuperPos-Prompt minus simple prompt tuning, each at its derived default
    ``F x --lr auto`` (``rule``: the exponents fitted on RULE_MODEL), paired by seed; one row per task, then the
    pooled row. Empty while either method's rule is unfitted."""
    ours, theirs = rule.get("superpos"), rule.get("prompt")
    if ours is None or theirs is None:
        return []
    scores = ("val_best", "val_last")
    per_task: dict[str, dict[str, list[float]]] = {}
    seeds_of: dict[str, list[int]] = {}
    for task in fp.MODELS[data.plan.model]:
        a, b = runs_at(data, task, "superpos", ours), runs_at(data, task, "prompt", theirs)
        seeds_of[task] = sorted(a.keys() & b.keys())
        per_task[task] = {
            which: [getattr(a[s], which) - getattr(b[s], which) for s in seeds_of[task]] for which in scores
        }
    per_task["pooled"] = {which: [d for t in seeds_of for d in per_task[t][which]] for which in scores}
    rows = []
    for task, diffs in per_task.items():
        row: dict[str, Any] = {"model": data.plan.model, "task": task, "superpos_k": ours, "prompt_k": theirs}
        row["seeds"] = seeds_of.get(task)
        for which, values in diffs.items():
            row.update(interval_fields(which, values))
        row["verdict"] = verdict(row["val_best_low"], row["val_best_high"])
        rows.append(row)
    return rows


def missing(data: ModelData) -> tuple[list[str], int]:
    """Known runs not finished (keys), and seed runs whose lr is not chosen yet."""
    finished = {
        (r.model, r.task, r.method, r.seed, r.lr) for r in [*data.comparison.values(), *data.selection.values()]
    }
    keys = [r.key for r in fp.ordered_runs([data.plan]) if (r.model, r.task, r.method, r.seed, r.lr) not in finished]
    return keys, sum(data.plan.waiting.values())


# ---- outputs ------------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    from superpos_kernels.io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buffer.getvalue(), encoding="utf-8"))


def finite(value: Any) -> Any:
    """``value`` with every nan/inf float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_outputs(models: list[ModelData], results: Path = RESULTS, doc: Path = DOC) -> None:
    from experiments import chance_levels, fair_markdown  # fair_markdown imports this module's tables

    rule = models_rule(models)
    chance = chance_levels.read()
    tables = {
        "methods": [row for d in models for row in method_rows(d)],
        "out_of_box": [row for d in models for row in default_rows(d, rule)],
        "paired": [row for d in models for row in paired_rows(d)],
        "steps_to_reach": [row for d in models for row in reach_rows(d)],
        "lr_selection": [row for d in models for row in selection_rows(d)],
        "runs": [
            {k: v for k, v in asdict(r).items() if k != "heldout_curve"}
            for d in models
            for r in {
                (r.task, r.method, r.seed, r.lr): r for r in [*d.selection.values(), *d.comparison.values()]
            }.values()
        ],
    }
    for name, rows in tables.items():
        write_csv(results / f"{name}.csv", rows)
    summary = {
        **tables,
        "answer": [fair_markdown.answer_line(d, chance) for d in models],
        "missing": {d.plan.model: missing(d)[0] for d in models},
        "waiting_for_lr": {d.plan.model: missing(d)[1] for d in models},
        "curves": [
            {"key": f"{r.model}/{r.task}/{r.method}/seed{r.seed}", "lr": r.lr, "heldout": r.heldout_curve}
            for d in models
            for r in d.comparison.values()
        ],
    }
    from superpos_kernels.io import atomic_write

    text = json.dumps(finite(summary), indent=1, default=str)
    atomic_write(results / "summary.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    doc_sections.write_section(doc, doc_sections.FAIR, fair_markdown.render(models))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=Path,
        default=fp.RUNS,
        help=f"the run folders to read (default: the grid's, {fp.RUNS.relative_to(ROOT)}); the committed copy of "
        f"the finished runs' files is {RUN_FILES.relative_to(ROOT)}",
    )
    args = parser.parse_args(argv)
    if not args.runs.is_dir():  # a typo must not overwrite the page with an empty report
        print(f"error: --runs {args.runs} is not a folder; give the grid's run folders or {RUN_FILES}", file=sys.stderr)
        return 2
    models = collect(args.runs, STARTS)
    write_outputs(models)
    done = sum(len(d.comparison) for d in models)
    planned = sum(fp.planned_comparison_runs(model) for model in fp.MODELS)
    print(f"{done} comparison runs of {planned} planned -> {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
