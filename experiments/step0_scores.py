"""How much of a fair-grid score the untrained prompt already has: held-out rank accuracy at step 0 (issue 15).

On Gemma-3-270M SST-2 simple prompt tuning's best held-out score came at its first evaluations while its training
loss had hardly moved, and its selected lr was the smallest tried: its score looks like the frozen model's own
zero-shot ranking behind a prompt of real token rows, not something it learned. This scores, before any optimizer
step, each method's prompt as the grid's run of that seed builds it, on that run's own held-out split (the
seed's training subset and split, the seed run's scoring options read from its config.json). Forward passes only
and held-out rows only: nothing here looks at the validation split the page reports.

    python experiments/step0_scores.py --model gemma3-270m --tasks sst2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "python")]

from superpos_trainer.config import W_INITS, config_from_dict, default_data_dir  # noqa: E402
from superpos_trainer.evaluate import evaluate  # noqa: E402
from superpos_trainer.methods import METHODS, build_method  # noqa: E402
from superpos_trainer.models import load_model  # noqa: E402
from superpos_trainer.runner import load_task_data  # noqa: E402
from superpos_trainer.train import Trainer  # noqa: E402

RUN_FILES = ROOT / "experiments" / "results" / "fair" / "run_files"
# method[:w init]; SuperPos's `prompt` init is simple prompt tuning's start exactly (test_init.py), so not rerun.
VARIANTS = ["superpos:normal", "superpos:cone", "prompt", "residual"]


def grid_config(model: str, task: str, runs: Path) -> Any:
    """The options of the grid's seed-0 simple prompt tuning run of ``task`` (every method shares its data ones)."""
    found = sorted((runs / model / task).glob("prompt-lr*-seed0/config.json"))
    if not found:
        raise SystemExit(f"no grid run files under {runs / model / task} (prompt-lr*-seed0/config.json)")
    return config_from_dict(json.loads(found[0].read_text()), str(found[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", help="the grid's model folder under --runs")
    parser.add_argument("--tasks", nargs="+", default=["sst2"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help="method[:w init] (default: %(default)s)")
    parser.add_argument("--runs", type=Path, default=RUN_FILES, help="the fair grid's run files")
    parser.add_argument("--data-dir", help="default: the grid run's own, else the trainer's default")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    variants = [[*v.split(":"), "-"][:2] for v in args.variants]
    for v, (name, w_init) in zip(args.variants, variants, strict=True):
        inits = W_INITS if name == "superpos" else ("-",)
        if name not in METHODS or w_init not in inits:
            parser.error(
                f"--variants {v}: expected one of {', '.join(sorted(METHODS))}, superpos with :{'|:'.join(W_INITS)}"
            )

    loaded = None
    results: list[dict[str, Any]] = []
    for task_name in args.tasks:
        base = grid_config(args.model, task_name, args.runs)
        loaded = loaded or load_model(base.model)  # the model the grid's runs loaded
        own = base.data_dir and Path(base.data_dir).is_dir()
        data_dir = args.data_dir or (base.data_dir if own else default_data_dir())
        for seed in args.seeds:
            config = replace(base, seed=seed, data_dir=data_dir, output_dir=None, progress=False)
            task, train, evaluation, holdout = load_task_data(config)
            # One trainer per seed resolves --max-length over every split and encodes them (the same for each
            # method: n prompt slots whatever fills them); each variant's prompt is scored with its encoder.
            trainer: Trainer | None = None
            for name, w_init in variants:
                c = replace(config, method=name, w_init="normal" if w_init == "-" else w_init)
                method = build_method(
                    name, loaded, c.num_prompt_tokens, c.num_sampled_tokens, c.residual_hidden, seed, c.w_init
                )
                if trainer is None:
                    trainer = Trainer.from_config(c, task, (train, evaluation, holdout), loaded, method=method)
                method.eval()
                metrics = evaluate(
                    method, trainer.encoder, task, trainer.holdout_examples, trainer.holdout_encoded,
                    trainer.eval_settings,
                )[0]  # fmt: skip
                score = metrics[task.main_metric]
                results.append(
                    {"task": task_name, "seed": seed, "method": name, "w_init": w_init, "metric": task.main_metric,
                     "score": score, "examples": len(trainer.holdout_examples),
                     "invalid_rate": metrics.get("invalid_rate")}
                )  # fmt: skip
                print(f"{task_name} seed {seed} {name:8s} {w_init:6s} {score:.4f}", file=sys.stderr, flush=True)

    print(f"model {args.model}: held-out score before any step (the grid's split per seed), seeds {args.seeds}\n")
    print("| task | method | w init | per seed | mean |")
    print("|---|---|---|---|---|")
    for task_name in args.tasks:
        for name, w_init in variants:
            mine = [r for r in results if (r["task"], r["method"], r["w_init"]) == (task_name, name, w_init)]
            cells = ", ".join(f"s{r['seed']}: {100 * r['score']:.1f}" for r in mine)
            mean = 100 * statistics.mean(r["score"] for r in mine)
            print(f"| {task_name} | {name} | {w_init} | {cells} | {mean:.1f} |")
    if args.json:
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
