"""What a training run reports: the metrics row and log line of each evaluation, the session's clock and progress
bar, and the end-of-run summary (``results.json``, with the split that did not choose the best adapter scored by the
best and the last adapter)."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import replace
from typing import Any

import torch

from . import distributed
from .evaluate import evaluate
from .precision import precision_name

log = logging.getLogger("superpos_trainer")


class SessionClock:
    """Training time of this session added to the sessions before it (``state.train_seconds``), and the bar."""

    def __init__(self, state: Any, total_steps: int, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.state, self.start, self.before, self.examples = state, time.perf_counter(), state.train_seconds, 0
        self.bar = tqdm(
            total=total_steps, initial=state.step, disable=not progress, desc="train", unit="step", dynamic_ncols=True
        )

    def tick(self) -> None:
        self.state.train_seconds = self.before + time.perf_counter() - self.start

    def stepped(self, examples: int) -> None:
        """One optimizer step on ``examples`` (global) examples is done."""
        self.examples += examples
        self.tick()
        s = self.state
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{s.loss_sum / max(s.loss_count, 1):.4f}",
            ex_s=f"{self.examples / max(time.perf_counter() - self.start, 1e-9):.1f}",
        )

    def close(self) -> None:
        self.bar.close()


def metrics_row(state: Any, metrics: dict[str, float], steps_in_epoch: int, eval_seconds: float) -> dict[str, Any]:
    """The ``metrics.jsonl`` row of an evaluation at ``state`` (``is_best`` is added by the trainer)."""
    s = state
    epoch = s.epoch + s.step_in_epoch / max(steps_in_epoch, 1) if s.step_in_epoch else float(s.epoch)
    return {
        "epoch": round(epoch, 4),
        "step": s.step,
        **metrics,
        "train_loss": s.loss_sum / s.loss_count if s.loss_count else None,
        "wall_time": round(s.train_seconds + eval_seconds, 3),
        "train_examples_per_s": round(s.examples_since_eval / max(s.train_seconds, 1e-9), 2)
        if s.examples_since_eval
        else None,
    }


def log_evaluation(row: dict[str, Any], metric: str, value: float) -> None:
    log.info(
        "step %d epoch %.2f: %s %.4f (invalid %.1f%%) train_loss %s%s",
        row["step"],
        row["epoch"],
        metric,
        value,
        100 * row.get("invalid_rate", 0.0),
        "-" if row["train_loss"] is None else f"{row['train_loss']:.4f}",
        "  [best]" if row["is_best"] else "",
    )


def finish(trainer: Any) -> dict[str, Any]:
    """The run's summary, written to ``results.json``; the held-out split is scored with the best adapter."""
    s, config, task = trainer.state, trainer.config, trainer.task
    trainable, total = trainer.method.count_parameters()
    rows = trainer.run.metrics() if trainer.run else []
    results: dict[str, Any] = {
        "task": task.name,
        "method": config.method,
        "model": config.model,
        "precision": precision_name(trainer.bf16),
        "padding_free": trainer.flat is not None,  # training batches may run as one unpadded row (padding_free.py)
        "main_metric": task.main_metric,
        "best_metric": s.best_metric,
        "best_step": s.best_step,
        "best_epoch": s.best_epoch,
        "steps": s.step,
        "train_seconds": round(s.train_seconds, 2),
        "trainable_params": trainable,
        "total_params": total,
        "num_train": len(trainer.train_examples),
        "num_eval": len(trainer.eval_examples),
        "num_holdout": len(trainer.holdout_examples),
        "select_on": config.select_on,  # the split best_metric/best_step were measured on
        "last_eval": rows[-1] if rows else None,
        "truncated": trainer.truncated,  # share of inputs cut to fit --max-length, per split
        "environment": environment(trainer.device),
    }
    final = score_final(trainer)
    results["final"] = final  # the split the choice never saw, scored once with the best and the last adapter
    results["holdout"] = final["best"] if final and final["split"] == "holdout" else None
    if trainer.run:
        trainer.run.write_results(results)
    return results


def environment(device: torch.device) -> dict[str, Any]:
    """What a run's numbers may depend on besides its options (README, "Reproducing a run"): the same command gave
    bit-identical SmolLM2 bf16 runs at 1 and 2 CPU threads, yet did not reproduce a run of another session whose
    environment went unrecorded. The finishing session's values: a resumed run may have run its earlier steps under
    others (train.log prints them each session)."""
    import transformers

    import superpos_kernels

    return {
        "superpos_kernels": superpos_kernels.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,  # the model's forward code (attention, RoPE) lives there
        "python": platform.python_version(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "processes": distributed.world_size(),
    }


def score_final(trainer: Any) -> dict[str, Any] | None:
    """The split that did not choose ``best/`` (validation under ``--select-on holdout``, else the held-out split
    when there is one), scored once with the best adapter and with the last one (the trained method)."""
    if trainer.config.select_on == "holdout":
        split, examples, encoded = "validation", trainer.eval_examples, trainer.eval_encoded
    elif trainer.holdout_examples:
        split, examples, encoded = "holdout", trainer.holdout_examples, trainer.holdout_encoded
    else:
        return None
    best = trainer.run.adapter("best") if trainer.run else None
    adapters = {"best": best, "last": None}  # None: the trained method, i.e. the last adapter
    scores = {name: score_split(trainer, adapter, examples, encoded) for name, adapter in adapters.items()}
    metric = trainer.task.main_metric
    log.info(
        "%s split (%d examples): %s %.4f with the best adapter, %.4f with the last",
        split,
        len(examples),
        metric,
        scores["best"].get(metric, float("nan")),
        scores["last"].get(metric, float("nan")),
    )
    return {"split": split, "examples": len(examples), **scores}


def score_split(trainer: Any, adapter: Any, examples: list[Any], encoded: list[Any]) -> dict[str, float]:
    """``examples``' metrics with the saved ``adapter`` (the trained method when None).

    Not sharded: every rank scores the whole split with the adapter it can read (only rank 0's result is written).
    """
    from .methods import load_method

    method = load_method(adapter, trainer.loaded) if adapter is not None else trainer.method
    settings = replace(trainer.eval_settings, progress=False)
    return evaluate(method, trainer.encoder, trainer.task, examples, encoded, settings, shard=False)[0]


__all__ = ["SessionClock", "finish", "log_evaluation", "metrics_row", "score_final", "score_split"]
