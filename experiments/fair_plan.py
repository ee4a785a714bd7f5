"""The fair comparison's protocol as data: its budget, its runs, and the learning-rate selection (issue 15).

Pure planning, no training: experiments/run_fair.py (the driver) trains what :func:`ordered_runs` lists, and
experiments/fair_report.py reads the same plan to say what is still missing. Why each choice is made: see the
driver's module docstring.

The plan depends on finished runs: which learning rate each (model, task, method) uses for its seeds is chosen
from the held-out scores of that task's selection runs, and the selection may ask for more candidates (one more
factor of 3 beyond the edge). Everything here takes the scores as an argument (``score(run) -> float | None``), so
the driver, the report and the tests all see one rule.

The lr is chosen per task, not per (model, method) on a mean over tasks, for two reasons: each task gets each
method's best lr (the fairer comparison: a method whose best lr differs between tasks is not held to a compromise),
and a task's answer never waits for another task's selection runs (an RTE run takes ~10x an SST-2 run: with one
selection over SST-2 and RTE, SST-2's seeds would wait hours for RTE's candidates).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "experiments" / "runs" / "fair"

# Models in priority order, with their tasks in priority order.
MODELS: dict[str, tuple[str, ...]] = {"smollm2-135m": ("sst2", "rte", "cb", "mrpc"), "gemma3-270m": ("sst2", "rte")}
METHODS = ("superpos", "prompt", "residual")
SEEDS = (0, 1, 2, 3, 4)
# A second stage of fixed size for the "conclusive" rule, written down before any of its runs started: with
# seeds 0-4 done, SmolLM2-135M's pooled SuperPos minus prompt tuning was +2.4 pp [-0.5, +5.4] (20 pairs, sd 6.3 pp),
# neither excluding 0 nor within +-2 pp. Seeds 5-9 of the two methods the rule compares double that to 40 pairs,
# whose t-interval at that sd is +-2.0 pp. Fixed in advance rather than "add seeds until conclusive": stopping at the
# first CI that excludes 0 would make a 95 % interval cover less than 95 %. Residual prompt tuning keeps seeds 0-4
# (the rule is about SuperPos minus simple prompt tuning). Added after every task's seeds 0-4, seed-major over the
# tasks, so a grid cut short still pools the tasks evenly.
EXTRA_SEEDS: dict[str, tuple[int, ...]] = {"smollm2-135m": (5, 6, 7, 8, 9)}
EXTRA_METHODS = ("superpos", "prompt")
SELECTION_SEED = 0
LR_FACTOR = 3.0
FIRST_CANDIDATES = (0, -1, 1)  # exponents k of lr = auto * 3**k, in the order they are trained (auto first)
MAX_EXTENSIONS = 2  # extra candidates beyond an edge winner, in all

# One budget for every method and task (the driver's docstring gives the reasons).
BUDGET: dict[str, Any] = {
    "bf16": "auto",
    "attention": "auto",
    "eval_mode": "rank",
    "rank_score": "mean",
    "max_length": "auto",
    "batch_size": 8,
    "max_steps": 160,
    "epochs": 1000,  # never reached: --max-steps ends every run
    "eval_steps": 20,
    "save_steps": 20,
    "select_on": "holdout",
    "eval_limit": 0,  # the FULL validation split, scored once at the end (best and last adapter)
    "num_prompt_tokens": 10,
    "num_sampled_tokens": 128,
    "dropout": "off",
}
TRAIN_LIMIT = 1472  # 1281 train (160 steps of 8 = one pass) + 191 held out
HOLDOUT_FRACTION = 0.13
# Tasks whose training split is smaller than TRAIN_LIMIT: all of it, a larger held-out share (CB: 200 + 50).
SMALL_TRAIN_SPLITS: dict[str, float] = {"cb": 0.2}
RESIDUAL_HIDDEN = 800  # the trainer's default (official Residual); only --lr auto's computation needs it
W_INIT = "normal"  # the trainer's default


def seeds_of(model: str, method: str) -> tuple[int, ...]:
    """The comparison's seeds of one (model, method): SEEDS, plus the model's EXTRA_SEEDS for EXTRA_METHODS."""
    return SEEDS + (EXTRA_SEEDS.get(model, ()) if method in EXTRA_METHODS else ())


def model_seeds(model: str) -> tuple[int, ...]:
    """Every seed some method of ``model`` runs, ascending."""
    return SEEDS + EXTRA_SEEDS.get(model, ())


def planned_comparison_runs(model: str) -> int:
    """Comparison runs of ``model`` with every seed done: per task, each method's seeds."""
    return len(MODELS[model]) * sum(len(seeds_of(model, method)) for method in METHODS)


def format_lr(lr: float) -> str:
    """Three significant digits: the form on the command line and in folder names (``0.00207``, ``6.9e-05``)."""
    return f"{lr:.3g}"


def candidate_lr(auto: float, k: int) -> float:
    return float(format_lr(auto * LR_FACTOR**k))


@dataclass(frozen=True)
class Run:
    model: str
    task: str
    method: str
    seed: int
    lr: float
    k: int | None = None  # exponent of the lr candidate for selection runs; None for other seed runs

    @property
    def key(self) -> str:
        return f"{self.model}/{self.task}/{self.method}-lr{format_lr(self.lr)}-seed{self.seed}"

    def folder(self, runs_root: Path = RUNS) -> Path:
        """Holds the driver's experiment.json and stdout.log, and the trainer's run folder ``run/``."""
        return runs_root / self.model / self.task / f"{self.method}-lr{format_lr(self.lr)}-seed{self.seed}"

    def run_dir(self, runs_root: Path = RUNS) -> Path:
        """The trainer's run folder, ``<folder>/run``; in the committed copy of finished runs' files
        (experiments/results/fair/run_files, where a run folder holds its results.json itself) the folder."""
        folder = self.folder(runs_root)
        return folder if (folder / "results.json").is_file() else folder / "run"

    def options(self, runs_root: Path = RUNS) -> dict[str, Any]:
        holdout = SMALL_TRAIN_SPLITS.get(self.task)
        run_dir = self.run_dir(runs_root)
        return {
            "model": self.model,
            "task": self.task,
            "method": self.method,
            "seed": self.seed,
            "lr": format_lr(self.lr),
            **BUDGET,
            "train_limit": 0 if holdout is not None else TRAIN_LIMIT,
            "holdout_fraction": holdout if holdout is not None else HOLDOUT_FRACTION,
            # relative when inside the repository: the driver runs the trainer from ROOT
            "output_dir": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
        }


# ---- learning-rate selection ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Where the selection of one (model, task, method) stands, given the candidates' scores."""

    candidates: tuple[int, ...]  # exponents k run or to run, ascending
    scores: dict[int, float | None]  # k -> the candidate's best held-out score on the task (None: not finished)
    chosen: int | None  # the winner's k once every candidate is scored and no extension is due
    extensions: int

    @property
    def done(self) -> bool:
        return self.chosen is not None

    def rank_of(self, k: int) -> int | None:
        """1 = best; ties ordered as the selection orders them (the smaller lr first)."""
        order = ranked(self.scores) if self.done else None
        return order.index(k) + 1 if order and k in order else None


def ranked(scores: Mapping[int, float | None]) -> list[int]:
    """Candidates best first: higher score, then the smaller lr (tie rule)."""
    return sorted((k for k, s in scores.items() if s is not None), key=lambda k: (-scores[k], k))  # type: ignore[operator]


def select(score_of: Callable[[int], float | None]) -> Selection:
    """Run the selection rule on the candidates' scores (``score_of(k)``: the candidate run's best held-out score,
    None while it is unfinished): start with {auto/3, auto, 3 auto}; a winner at an edge adds one more factor of 3 on
    that side (at most MAX_EXTENSIONS in all) and the choice is made again."""
    candidates = sorted(FIRST_CANDIDATES)
    extensions = 0
    while True:
        scores = {k: score_of(k) for k in candidates}
        if any(s is None for s in scores.values()):
            return Selection(tuple(candidates), scores, None, extensions)
        best = ranked(scores)[0]
        edge = -1 if best == candidates[0] else 1 if best == candidates[-1] else 0
        if edge == 0 or extensions >= MAX_EXTENSIONS:
            return Selection(tuple(candidates), scores, best, extensions)
        candidates = sorted([*candidates, best + edge])
        extensions += 1


# ---- the plan -----------------------------------------------------------------------------------------------------


ScoreFn = Callable[[Run], "float | None"]


@dataclass
class ModelPlan:
    model: str
    autos: dict[str, float]
    selections: dict[tuple[str, str], Selection] = field(default_factory=dict)  # (task, method) -> its selection
    selection_runs: list[Run] = field(default_factory=list)
    seed_runs: list[Run] = field(default_factory=list)  # for (task, method)s whose lr is chosen
    waiting: dict[tuple[str, str], int] = field(default_factory=dict)  # (task, method) -> seed runs not planned yet

    def chosen_lr(self, task: str, method: str) -> float | None:
        chosen = self.selections[(task, method)].chosen
        return None if chosen is None else candidate_lr(self.autos[method], chosen)


def selection_run(model: str, task: str, method: str, auto: float, k: int) -> Run:
    return Run(model, task, method, SELECTION_SEED, candidate_lr(auto, k), k)


def plan_model(model: str, autos: Mapping[str, float], score: ScoreFn) -> ModelPlan:
    """The runs of one model as far as the finished runs decide them (``score``: a run's best held-out score), in
    training priority: task by task (MODELS order), each task's selection runs (auto first, then its neighbours, then
    extensions; methods interleaved), then its seed runs (seed-major, methods interleaved). The chosen lr's
    selection run is that (task, method)'s seed-0 run of the comparison."""
    plan = ModelPlan(model, dict(autos))
    for task in MODELS[model]:
        for method in METHODS:

            def task_score(k: int, task: str = task, method: str = method) -> float | None:
                return score(selection_run(model, task, method, autos[method], k))

            plan.selections[(task, method)] = select(task_score)
        candidates = {k for m in METHODS for k in plan.selections[(task, m)].candidates}
        for k in dict.fromkeys([*FIRST_CANDIDATES, *sorted(candidates, key=abs)]):
            for method in METHODS:
                if k in plan.selections[(task, method)].candidates:
                    plan.selection_runs.append(selection_run(model, task, method, autos[method], k))
        for seed in model_seeds(model):  # seed-major: a grid cut short still compares every method on its seeds
            if seed == SELECTION_SEED:
                continue  # the chosen lr's selection run is this run
            for method in (m for m in METHODS if seed in seeds_of(model, m)):
                lr = plan.chosen_lr(task, method)
                if lr is None:
                    plan.waiting[(task, method)] = plan.waiting.get((task, method), 0) + 1
                else:
                    plan.seed_runs.append(Run(model, task, method, seed, lr))
    return plan


def is_chosen(plan: ModelPlan, run: Run) -> bool:
    """Whether ``run`` is the chosen lr's selection run of its (task, method)."""
    return run.k is not None and run.k == plan.selections[(run.task, run.method)].chosen


def comparison_runs(plan: ModelPlan) -> list[Run]:
    """The runs the comparison tables use: every seed run plus the chosen lr's selection runs (seed 0)."""
    return [r for r in plan.selection_runs if is_chosen(plan, r)] + plan.seed_runs


def ordered_runs(plans: Sequence[ModelPlan]) -> list[Run]:
    """Every run known so far, in training priority: per model (in MODELS order), per task (in MODELS order) the
    task's selection runs, then its seed runs; so a model's first task is complete before its second one starts
    (the driver lets a free slot take the next ready run while a task's seeds wait for its selection). A model's
    EXTRA_SEEDS come after all its tasks, seed-major over the tasks (a second stage cut short pools tasks evenly)."""
    out: list[Run] = []
    for plan in plans:
        tasks = MODELS[plan.model]
        first = [r for r in plan.selection_runs + plan.seed_runs if r.seed in SEEDS]
        for task in tasks:
            out += [r for r in first if r.task == task]
        extra = [r for r in plan.seed_runs if r.seed not in SEEDS]
        out += sorted(extra, key=lambda r: (r.seed, tasks.index(r.task), METHODS.index(r.method)))
    return list(dict.fromkeys(out))


def planned_total(plan: ModelPlan) -> int:
    """Runs known so far plus seed runs still waiting for their lr."""
    return len(plan.selection_runs) + len(plan.seed_runs) + sum(plan.waiting.values())


# ---- run files ------------------------------------------------------------------------------------------------------


def read_results(run: Run, runs_root: Path = RUNS) -> dict[str, Any] | None:
    """The trainer's results.json of a finished run, else None."""
    path = run.run_dir(runs_root) / "results.json"
    if not path.is_file():
        return None
    from superpos_trainer.run_folder import read_json_object

    return read_json_object(path)


def held_out_score(results: Mapping[str, Any] | None) -> float | None:
    """The best adapter's held-out score (what the lr is chosen on); None for an unfinished run."""
    if results is None:
        return None
    value = results.get("best_metric")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def file_score(runs_root: Path = RUNS) -> ScoreFn:
    def score(run: Run) -> float | None:
        return held_out_score(read_results(run, runs_root))

    return score


AUTO_FILE = "auto_lr.json"


def auto_lr_path(model: str, runs_root: Path = RUNS) -> Path:
    return runs_root / model / AUTO_FILE


def read_auto_lrs(model: str, runs_root: Path = RUNS) -> dict[str, float] | None:
    path = auto_lr_path(model, runs_root)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {m: float(data["auto_lr"][m]) for m in METHODS}


def compute_auto_lrs(model: str) -> dict[str, float]:
    """Each method's ``--lr auto`` value on ``model``, as the trainer computes it for seed 0 (auto_defaults.py)."""
    from superpos_trainer import auto_defaults
    from superpos_trainer.config import TrainConfig
    from superpos_trainer.methods import build_method
    from superpos_trainer.models import load_model

    loaded = load_model(model)
    n, m = BUDGET["num_prompt_tokens"], BUDGET["num_sampled_tokens"]
    out = {}
    for method in METHODS:
        built = build_method(method, loaded, n, m, RESIDUAL_HIDDEN, SELECTION_SEED, W_INIT)
        config = TrainConfig(
            model=model, method=method, num_prompt_tokens=n, num_sampled_tokens=m, residual_hidden=RESIDUAL_HIDDEN,
            w_init=W_INIT, seed=SELECTION_SEED,
        ).resolved()  # fmt: skip
        out[method] = float(auto_defaults.auto_lr(built, config))
    return out


def plans_from_files(models: Iterable[str], runs_root: Path = RUNS) -> list[ModelPlan]:
    """The plan of every model whose auto lrs are recorded (a model without them has no known runs yet)."""
    score = file_score(runs_root)
    plans = []
    for model in models:
        autos = read_auto_lrs(model, runs_root)
        if autos is not None:
            plans.append(plan_model(model, autos, score))
    return plans


if __name__ == "__main__":  # python -m experiments.fair_plan MODEL: its --lr auto values as one JSON line
    import sys

    print(json.dumps(compute_auto_lrs(sys.argv[1])))
