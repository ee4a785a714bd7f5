"""``superpos train`` end to end: run folder, data, model, method, Trainer, plot, summary.

Order matters for the user: cheap checks first (options, task, run folder, data files), the slow model load last,
so a typo fails in a second, not after a minute of loading.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import distributed, run_folder
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
        file = logging.FileHandler(run_folder.RunFolder(run_dir).log_path, encoding="utf-8")
        file.setFormatter(fmt)
        file._superpos = True  # type: ignore[attr-defined]
        root.addHandler(file)
    root.propagate = False


def _short_model_name(name: str) -> str:
    return Path(name.rstrip("/")).name.replace("/", "_") or "model"


def default_output_dir(config: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.task}-{config.method}-{_short_model_name(config.model)}-{stamp}")


def prepare_run_dir(config: TrainConfig, resume: bool) -> tuple[Path, run_folder.RunLock, bool]:
    """Lock the run folder (creating it) and check it: ``(run_dir, lock, created)``; config.json comes later.

    For --resume the folder must hold a run started with the same options; otherwise it must be new, empty, or an
    unfinished start (run_folder.py). The lock is held until the run ends; temporaries of killed writes are swept.
    """
    folder = run_folder.RunFolder(config.output_dir)
    run_dir, saved_path = folder.path, folder.config_path
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"output folder {run_dir} exists and is not an empty folder; choose another --output-dir")
    if resume and not saved_path.is_file():
        raise RunFolderError(f"--resume: {run_dir} holds no run (no config.json); start it without --resume")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = folder.lock()
    except OSError as exc:
        raise RunFolderError(f"cannot write to output folder {run_dir}: {exc.strerror or exc}") from None
    try:
        if resume:
            _check_saved_config(saved_path, config)
        elif saved_path.exists():
            raise RunFolderError(
                f"{run_dir} already holds a run; pass --resume to continue it, or choose another --output-dir"
            )
        elif not run_folder.is_unfinished_start(run_dir):
            raise RunFolderError(
                f"output folder {run_dir} exists and is not an empty folder; choose another --output-dir"
            )
        swept = run_folder.sweep_temporaries(run_dir)
    except BaseException:
        lock.release()
        raise
    if swept:
        log.info("removed %d temporary file(s) of interrupted writes from %s", len(swept), run_dir)
    return run_dir, lock, created


def saved_run_options(run_dir: Path) -> dict[str, Any]:
    """The options ``run_dir`` was started with (``{}`` when it holds no run), as the defaults of ``--resume``.

    Read through :func:`config_from_dict`: each value type-checked, options the run predates at the value it ran
    with (or today's default). ``output_dir`` is the folder itself and stays the caller's.
    """
    path = run_folder.RunFolder(run_dir).config_path
    if not path.is_file():
        return {}
    from .config import config_from_dict, read_json_file

    saved = config_from_dict(read_json_file(path), str(path)).to_dict()
    saved.pop("output_dir", None)
    return saved


def _check_saved_config(saved_path: Path, config: TrainConfig) -> None:
    from .config import read_json_file

    saved = read_json_file(saved_path)
    if not isinstance(saved, dict):
        raise RunFolderError(f"{saved_path} must hold a JSON object of options; the run folder is corrupt")
    diffs = config_differences(saved, config.to_dict())
    if diffs:
        raise RunFolderError(
            f"--resume: {saved_path.parent} was started with a different config ({'; '.join(diffs[:6])}); resume "
            f"with the same options (or --config {saved_path}), or pick a new --output-dir"
        )


def write_run_config(run_dir: Path, config: TrainConfig) -> None:
    """config.json: from now on the folder holds a run (written once the model and method are built)."""
    run_folder.RunFolder(run_dir, main=True).write_config(config.to_dict())  # called on rank 0 only


def _undo_failed_start(run_dir: Path, created: bool) -> None:
    """A start that failed before config.json leaves nothing behind that would block the corrected command."""
    for name in (run_folder.LOG_FILE, run_folder.LOCK_NAME):
        (run_dir / name).unlink(missing_ok=True)
    run_folder.sweep_temporaries(run_dir)
    if created and not any(run_dir.iterdir()):
        run_dir.rmdir()


def check_device(spec: str) -> Any:
    """The torch device for ``--device``; one that cannot hold data (meta) is refused before anything starts."""
    from .models import resolve_device

    device = resolve_device(spec)
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ConfigError(f"--device {spec} cannot run a model (it holds no data); use auto, cpu, cuda or cuda:N")
    return device


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
    if config.data_dir is None:
        config.data_dir = default_data_dir()
    if config.output_dir is None:
        if resume:
            raise ConfigError("--resume needs --output-dir (the run folder to continue)")
        config.output_dir = default_output_dir(config)
    task, train, evaluation, holdout = load_task_data(config)
    device = check_device(config.device)
    # Under torchrun only rank 0 owns the run folder and the console; the others get its answer (or its error).
    main = distributed.is_main()
    held: list[tuple[run_folder.RunLock, bool]] = []

    def prepare() -> Path:
        run_dir, lock, created = prepare_run_dir(config, resume)
        held.append((lock, created))
        return run_dir

    run_dir = distributed.run_on_main(prepare)
    started = resume  # a resumed run has its config.json; a new one gets it once the model and method are built
    try:
        return _train(config, resume, verbose, (task, train, evaluation, holdout), device, run_dir)
    except BaseException:
        started = started or run_folder.RunFolder(run_dir).config_path.exists()
        if main and held and not started:
            _close_log_file()
            _undo_failed_start(run_dir, held[0][1])
        raise
    finally:
        if held:
            held[0][0].release()


def _close_log_file() -> None:
    root = logging.getLogger("superpos_trainer")
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and getattr(handler, "_superpos", False):
            root.removeHandler(handler)
            handler.close()


def _train(
    config: TrainConfig,
    resume: bool,
    verbose: bool,
    data: tuple[Any, list[Any], list[Any], list[Any]],
    device: Any,
    run_dir: Path,
) -> dict[str, Any]:
    """The run proper, once its folder is locked: ``data`` is :func:`load_task_data`'s (task, train, eval, holdout)."""
    from .models import load_model
    from .plots import plot_learning_curve
    from .results import environment
    from .train import Trainer

    task, train, evaluation, holdout = data
    main = distributed.is_main()
    setup_logging(run_dir if main else None, verbose and main)
    device = distributed.local_device(device)
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
    trainer = Trainer.from_config(config, task, (train, evaluation, holdout), loaded, run_dir=run_dir, device=device)
    trainable, total = trainer.method.count_parameters()
    log.info(
        "trainable params: %s || all params: %s || trainable%%: %.4f",
        f"{trainable:,d}",
        f"{total:,d}",
        100 * trainable / total,
    )
    # Per session, so a resumed run's log says what each part ran under (results.json keeps the last session's).
    log.info("environment: %s", ", ".join(f"{k} {v}" for k, v in environment(device).items()))
    if not resume:  # a resumed run keeps its config.json (same options; a refused checkpoint changes nothing)
        distributed.run_on_main(lambda: write_run_config(run_dir, config))
    log.info("%d optimizer steps planned", trainer.total_steps())
    results = trainer.fit(resume=resume)
    if main:
        curve = plot_learning_curve(run_dir)
        if curve is not None and curve.exists():
            run_folder.follow_umask(curve)  # written through a 0600 temporary file
        _print_summary(results, run_dir)
    return results


# At or above this share of unparseable generations the metric says more about the output format than the task.
HIGH_INVALID_SHARE = 0.5


def _print_summary(results: dict[str, Any], run_dir: Path) -> None:
    metric = results["main_metric"]
    best = results["best_metric"]
    line = (
        f"done: best {results.get('select_on', 'validation')} {metric} = {best:.4f} at step {results['best_step']}"
        if best is not None
        else (f"done: no valid {metric} was measured")
    )
    final = results.get("final")
    if final:
        scores = (final[which].get(metric, float("nan")) for which in ("best", "last"))
        line += "; {} {} = {:.4f} (best adapter), {:.4f} (last)".format(final["split"], metric, *scores)
    last = results.get("last_eval") or {}
    invalid = last.get("invalid_rate")
    if isinstance(invalid, (int, float)):
        line += f"; invalid outputs {100 * invalid:.1f}% at the last evaluation"
        if invalid >= HIGH_INVALID_SHARE:
            line += " (most outputs map to no label: --eval-mode rank scores the label words instead)"
    print(line, flush=True)
    print(f"results in {run_dir}{os.sep}: results.json, metrics.jsonl, learning_curve.png, best/, last/", flush=True)


__all__ = ["check_device", "load_task_data", "prepare_run_dir", "run_training", "setup_logging", "write_run_config"]
