"""``superpos train`` end to end: run folder, data, model, method, Trainer, plot, summary.

Order matters for the user: cheap checks first (options, task, run folder, data files), the slow model load last,
so a typo fails in a second, not after a minute of loading.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import checkpoints as ckpt
from . import distributed
from .config import TrainConfig, config_differences, default_data_dir
from .errors import ConfigError, RunFolderError

log = logging.getLogger("superpos_trainer")


def setup_logging(run_dir: Path | None = None, verbose: bool = True) -> None:
    root = logging.getLogger("superpos_trainer")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_superpos", False):
            root.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        stream._superpos = True  # type: ignore[attr-defined]
        root.addHandler(stream)
    if run_dir is not None:
        file = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        file.setFormatter(fmt)
        file._superpos = True  # type: ignore[attr-defined]
        root.addHandler(file)
    root.propagate = False


def _short_model_name(name: str) -> str:
    return Path(name.rstrip("/")).name.replace("/", "_") or "model"


def default_output_dir(config: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.task}-{config.method}-{_short_model_name(config.model)}-{stamp}")


def prepare_run_dir(config: TrainConfig, resume: bool) -> Path:
    """Create (or check, for --resume) the run folder and save the resolved config in it."""
    run_dir = Path(config.output_dir).expanduser()
    saved_path = run_dir / "config.json"
    if resume:
        if not saved_path.is_file():
            raise RunFolderError(f"--resume: {run_dir} holds no run (no config.json); start it without --resume")
        try:
            saved = json.loads(saved_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise RunFolderError(f"{saved_path} is not valid JSON; the run folder is corrupt") from None
        diffs = config_differences(saved, config.to_dict())
        if diffs:
            raise RunFolderError(
                f"--resume: {run_dir} was started with a different config ({'; '.join(diffs)}); resume with the "
                "same options (or --config " + str(saved_path) + "), or pick a new --output-dir"
            )
    elif saved_path.exists():
        raise RunFolderError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose another --output-dir"
        )
    elif run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise RunFolderError(f"output folder {run_dir} exists and is not an empty folder; choose another --output-dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_json(saved_path, config.to_dict())
    except OSError as exc:
        raise RunFolderError(f"cannot write to output folder {run_dir}: {exc.strerror or exc}") from None
    return run_dir


def load_task_data(config: TrainConfig) -> tuple[Any, list[Any], list[Any], list[Any]]:
    """``(task, train, eval, holdout)`` examples per the config's task, subsets and holdout fraction."""
    from .data import load_examples, train_holdout_split
    from .tasks import get_task

    task = get_task(config.task)
    data_dir = config.data_dir
    limit_train = config.train_limit or None
    limit_eval = config.eval_limit or None
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise ConfigError(f"--data-dir {data_dir} is not a folder; point it at the folder holding glue/ and superglue/")
    train = load_examples(task, "train", data_dir, limit=limit_train, seed=config.seed)
    evaluation = load_examples(task, "validation", data_dir, limit=limit_eval, seed=config.seed)
    holdout: list[Any] = []
    if config.holdout_fraction > 0:
        train, holdout = train_holdout_split(train, config.holdout_fraction, config.seed)
    return task, train, evaluation, holdout


def run_training(config: TrainConfig, resume: bool = False, verbose: bool = True) -> dict[str, Any]:
    from .methods import build_method
    from .models import load_model, resolve_device
    from .plots import plot_learning_curve
    from .train import Trainer

    if config.data_dir is None:
        config.data_dir = default_data_dir()
    if config.output_dir is None:
        if resume:
            raise ConfigError("--resume needs --output-dir (the run folder to continue)")
        config.output_dir = default_output_dir(config)
    task, train, evaluation, holdout = load_task_data(config)
    # Under torchrun only rank 0 owns the run folder and the console; the others get its answer (or its error).
    main = distributed.is_main()
    run_dir = distributed.run_on_main(lambda: prepare_run_dir(config, resume))
    setup_logging(run_dir if main else None, verbose and main)
    device = distributed.local_device(resolve_device(config.device))
    torch.manual_seed(config.seed)
    world = distributed.world_size()
    if main:
        print(
            f"superpos train: {config.method} on {task.name} with {config.model}\n"
            f"  data: {len(train)} train / {len(evaluation)} validation"
            + (f" / {len(holdout)} held-out" if holdout else "")
            + f" examples from {config.data_dir or 'the Hugging Face hub'}\n"
            f"  {config.epochs} epoch(s), batch {config.batch_size}x{config.grad_accum}, lr {config.lr}, "
            f"wd {config.weight_decay:g}, device {device}"
            + (f" x {world} processes (DDP; the batch is global)" if world > 1 else "")
            + f"\n  run folder: {run_dir}",
            flush=True,
        )
    loaded = load_model(config.model, config.model_type, device)
    method = build_method(
        config.method,
        loaded,
        config.num_prompt_tokens,
        config.num_sampled_tokens,
        config.residual_hidden,
        config.seed,
        config.w_init,
    )
    trainable, total = method.count_parameters()
    log.info(
        "trainable params: %s || all params: %s || trainable%%: %.4f",
        f"{trainable:,d}",
        f"{total:,d}",
        100 * trainable / total,
    )
    trainer = Trainer(config, method, task, train, evaluation, run_dir, device, holdout)
    log.info("%d optimizer steps planned", trainer.total_steps())
    results = trainer.fit(resume=resume)
    if main:
        plot_learning_curve(run_dir)
        _print_summary(results, run_dir)
    return results


def _print_summary(results: dict[str, Any], run_dir: Path) -> None:
    metric = results["main_metric"]
    best = results["best_metric"]
    line = (
        f"done: best validation {metric} = {best:.4f} at step {results['best_step']}"
        if best is not None
        else (f"done: no valid {metric} was measured")
    )
    if results.get("holdout"):
        line += f"; held-out {metric} = {results['holdout'].get(metric, float('nan')):.4f}"
    print(line, flush=True)
    print(f"results in {run_dir}{os.sep}: results.json, metrics.jsonl, learning_curve.png, best/, last/", flush=True)


__all__ = ["load_task_data", "prepare_run_dir", "run_training", "setup_logging"]
