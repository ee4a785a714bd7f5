"""The training loop: one optimizer, one data order, evaluation + best/last adapters + exact-resume checkpoints.

Structure for the multi-process extension (DDP): the model is wrapped in ONE place (:meth:`Trainer.wrap`), batches
are sharded in ONE place (:meth:`Trainer.shard`), and only rank 0 writes files (:attr:`Trainer.is_main`).
:meth:`Trainer.train_step` runs one full optimizer step on one batch (benchmarks call it directly).

Exact resume: the data order of an epoch is a pure function of ``(seed, epoch)``; a checkpoint (at every epoch end
and every ``save_steps``) holds the trainable tensors, the optimizer state, all RNG states and the position
``(epoch, step_in_epoch)``, so a resumed run replays the remaining batches exactly as the uninterrupted run would.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import auto_defaults, distributed, guard
from . import checkpoints as ckpt
from .collate import Batch, Encoded, Encoder, epoch_batches, train_batch
from .config import TrainConfig
from .evaluate import decoder_start_fn, evaluate_examples
from .faults import fault_point
from .forward import autocast, label_logits, label_loss
from .methods import Method
from .precision import precision_name, prefer_fast_attention, use_bf16

log = logging.getLogger("superpos_trainer")


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # optimizer steps done inside the current epoch
    best_metric: float | None = None
    best_step: int | None = None
    best_epoch: float | None = None
    loss_sum: float = 0.0  # training loss since the last evaluation (for the logged mean)
    loss_count: int = 0
    examples_since_eval: int = 0
    train_seconds: float = 0.0  # wall time spent training+evaluating, summed over resumed sessions
    done: bool = False


class LossModule(nn.Module):
    """What a data-parallel wrapper wraps: batch -> mean label loss; holds every trainable parameter."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method
        if method.name == "full":  # full fine-tuning trains the backbone itself: register it for DDP
            self.backbone = method.loaded.model

    def forward(self, batch: Batch) -> Tensor:
        return label_loss(label_logits(self.method, batch), batch.labels)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        method: Method,
        task: Any,
        train_examples: Sequence[Any],
        eval_examples: Sequence[Any],
        run_dir: Path | None = None,
        device: torch.device | None = None,
        holdout_examples: Sequence[Any] = (),
    ) -> None:
        config = auto_defaults.resolve(config, method, train_examples)  # --max-length auto, --lr auto -> numbers
        self.config, self.method, self.task = config, method, task
        self.loaded = method.loaded
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = device or self.loaded.embedding.weight.device
        self.bf16 = use_bf16(config.bf16, self.device)
        prefer_fast_attention(self.loaded.model, self.bf16, self.device)
        self.encoder = Encoder(
            self.loaded.tokenizer,
            self.loaded.is_encoder_decoder,
            config.max_length,
            method.num_prompt_tokens,
            config.max_target_length,
            self.loaded.max_positions,
            config.max_new_tokens,
        )
        self.train_examples, self.eval_examples = list(train_examples), list(eval_examples)
        self.holdout_examples = list(holdout_examples)
        self.train_encoded = [self.encoder.encode_example(e) for e in self.train_examples]
        self.eval_encoded = [self.encoder.encode_example(e) for e in self.eval_examples]
        self.holdout_encoded = [self.encoder.encode_example(e) for e in self.holdout_examples]
        self.truncated = auto_defaults.truncation_report({"train": self.train_encoded, "validation": self.eval_encoded})
        self.rank, self.world_size = self._distributed()
        self.train_module = self.wrap(LossModule(method))
        self.optimizer = torch.optim.AdamW(method.param_groups(config.weight_decay), lr=config.lr)
        self.state = TrainState()
        self._decoder_start = decoder_start_fn(self.loaded.model) if self.loaded.is_encoder_decoder else None

    # ---- data-parallel hooks ------------------------------------------------------------------------------------

    @staticmethod
    def _distributed() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """The single place a data-parallel wrapper goes (single process: unchanged)."""
        return distributed.wrap(module, self.device)

    def shard(self, indices: list[int]) -> list[int]:
        """This rank's share of one global micro-batch (single process: all of it; may be empty)."""
        return distributed.shard(indices, self.rank, self.world_size)

    # ---- batches --------------------------------------------------------------------------------------------------

    def epoch_plan(self, epoch: int) -> list[list[list[int]]]:
        """The epoch as optimizer steps, each a list of micro-batches (lists of example positions)."""
        lengths = [len(e.source_ids) + len(e.target_ids) for e in self.train_encoded]
        # --batch-size is the GLOBAL batch: every rank plans the same batches and trains on its shard (fit).
        micro = epoch_batches(lengths, self.config.batch_size, self.config.seed, epoch, self.config.group_by_length)
        accum = self.config.grad_accum
        return [micro[i : i + accum] for i in range(0, len(micro), accum)]

    def make_batch(self, indices: Sequence[int], encoded: Sequence[Encoded] | None = None) -> Batch:
        encoded = self.train_encoded if encoded is None else encoded
        return train_batch(
            encoded, indices, self.loaded.tokenizer.pad_token_id, self.loaded.is_encoder_decoder, self._decoder_start
        ).to(self.device)

    # ---- one step -----------------------------------------------------------------------------------------------

    def set_train_mode(self) -> None:
        # Dropout off (paper): the frozen backbone stays in eval mode, which disables every dropout (modules and
        # functional calls alike) without touching the model config. --dropout on puts it in train mode.
        self.loaded.model.train(self.config.dropout == "on")
        self.method.train()

    def accumulate(self, batch: Batch, scale: float = 1.0, has_rows: bool = True) -> float:
        """Forward + backward of one micro-batch (gradients add up); returns its unscaled loss.

        Under DDP the loss is the global micro-batch's token mean (``distributed.global_mean_loss``); a rank whose
        shard is empty passes one stand-in row with ``has_rows=False`` (weight 0) to join the gradient all-reduce.
        """
        with autocast(self.device, self.bf16):
            loss = self.train_module(batch)
        loss, global_loss = distributed.global_mean_loss(loss, batch.labels, has_rows)
        value = guard.check_loss(global_loss, self.state.step, self.config.lr, self.run_dir)  # same on every rank
        (loss * scale).backward()
        return value

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self, batch: Batch) -> float:
        """One optimizer step on one batch (no accumulation); the benchmark entry point."""
        self.set_train_mode()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.accumulate(batch)
        self.optimizer_step()
        return loss

    # ---- evaluation -----------------------------------------------------------------------------------------------

    def evaluate(
        self, examples: Sequence[Any] | None = None, encoded: Sequence[Encoded] | None = None
    ) -> dict[str, float]:
        examples = self.eval_examples if examples is None else examples
        encoded = self.eval_encoded if encoded is None else encoded
        run = evaluate_examples if self.world_size == 1 else distributed.evaluate_sharded  # same metrics
        metrics, _ = run(
            self.method,
            self.encoder,
            self.task,
            examples,
            encoded,
            self.config.eval_mode,
            self.config.eval_batch_size,
            self.config.max_new_tokens,
            self.device,
            self.bf16,
            rank_score=self.config.rank_score,
            progress=self.config.progress and self.is_main,
        )
        return metrics

    # ---- the loop -------------------------------------------------------------------------------------------------

    def total_steps(self) -> int:
        per_epoch = math.ceil(math.ceil(len(self.train_encoded) / self.config.batch_size) / self.config.grad_accum)
        total = per_epoch * self.config.epochs
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end (or resume), evaluating, keeping best/last adapters; returns the results summary."""
        if resume:
            self._restore()
        if self.state.done:
            log.info("run already complete (step %d); nothing to resume", self.state.step)
            return self.finish()
        cfg = self.config
        total = self.total_steps()
        session_start = time.perf_counter()
        seconds_before = self.state.train_seconds
        examples_session = 0
        bar = _progress(total, self.state.step, enabled=cfg.progress and self.is_main)
        stop = False
        evaluated_at = -1
        while self.state.epoch < cfg.epochs and not stop:
            plan = self.epoch_plan(self.state.epoch)
            while self.state.step_in_epoch < len(plan):
                group = plan[self.state.step_in_epoch]
                self.set_train_mode()
                for indices in group:  # a GLOBAL micro-batch; this rank trains on its shard of it
                    mine = self.shard(indices)
                    loss = self.accumulate(self.make_batch(mine or indices[:1]), 1.0 / len(group), bool(mine))
                    self.state.loss_sum += loss
                    self.state.loss_count += 1
                    self.state.examples_since_eval += len(indices)
                    examples_session += len(indices)
                self.optimizer_step()
                self.state.step += 1
                trained = getattr(self.train_module, "module", self.train_module)  # DDP keeps the module inside
                guard.check_parameters(trained.named_parameters(), self.state.step, cfg.lr, self.run_dir)
                self.state.step_in_epoch += 1
                self.state.train_seconds = seconds_before + time.perf_counter() - session_start
                bar.update(1)
                bar.set_postfix(
                    loss=f"{self.state.loss_sum / max(self.state.loss_count, 1):.4f}",
                    ex_s=f"{examples_session / max(time.perf_counter() - session_start, 1e-9):.1f}",
                )
                _fault_injection(self.state.step)
                epoch_end = self.state.step_in_epoch == len(plan)
                stop = bool(cfg.max_steps) and self.state.step >= cfg.max_steps
                if cfg.eval_steps and self.state.step % cfg.eval_steps == 0 and not (epoch_end or stop):
                    self._evaluate_and_log(len(plan))
                    evaluated_at = self.state.step
                if epoch_end or stop:
                    break
                if cfg.save_steps and self.state.step % cfg.save_steps == 0:
                    self.checkpoint()
            if self.state.step_in_epoch == len(plan):
                self.state.epoch += 1
                self.state.step_in_epoch = 0
            if evaluated_at != self.state.step:
                self._evaluate_and_log(len(plan))
                evaluated_at = self.state.step
            self.state.train_seconds = seconds_before + time.perf_counter() - session_start
            self.state.done = self.state.epoch >= cfg.epochs or stop
            self.save_adapter("last")
            self.checkpoint()
        bar.close()
        return self.finish()

    def _evaluate_and_log(self, steps_in_epoch: int) -> None:
        eval_start = time.perf_counter()
        metrics = self.evaluate()
        fault_point("eval")  # test-only (faults.py): a kill after evaluating, before anything of it is written
        s = self.state
        epoch = s.epoch + s.step_in_epoch / max(steps_in_epoch, 1) if s.step_in_epoch else float(s.epoch)
        row = {
            "epoch": round(epoch, 4),
            "step": s.step,
            **metrics,
            "train_loss": s.loss_sum / s.loss_count if s.loss_count else None,
            "wall_time": round(s.train_seconds + time.perf_counter() - eval_start, 3),
            "train_examples_per_s": round(s.examples_since_eval / max(s.train_seconds, 1e-9), 2)
            if s.examples_since_eval
            else None,
        }
        main = metrics.get(self.task.main_metric, float("nan"))
        is_best = not math.isnan(main) and (s.best_metric is None or main > s.best_metric)
        row["is_best"] = is_best
        log.info(
            "step %d epoch %.2f: %s %.4f (invalid %.1f%%) train_loss %s%s",
            s.step,
            epoch,
            self.task.main_metric,
            main,
            100 * metrics.get("invalid_rate", 0.0),
            "-" if row["train_loss"] is None else f"{row['train_loss']:.4f}",
            "  [best]" if is_best else "",
        )
        if is_best:
            s.best_metric, s.best_step, s.best_epoch = main, s.step, row["epoch"]
            self.save_adapter("best")
        s.loss_sum, s.loss_count, s.examples_since_eval = 0.0, 0, 0
        if self.is_main and self.run_dir is not None:
            path = self.run_dir / "metrics.jsonl"
            ckpt.write_metrics(path, [*ckpt.read_metrics(path), row])

    # ---- files ------------------------------------------------------------------------------------------------------

    def save_adapter(self, name: str) -> None:
        if not self.is_main or self.run_dir is None:
            return
        config = self.config.to_dict()

        def write(tmp: Path) -> None:
            self.method.save_adapter(tmp)
            ckpt.write_json(tmp / "trainer_config.json", {**config, "saved_at_step": self.state.step})

        ckpt.write_folder(self.run_dir / name, write)

    def checkpoint(self) -> None:
        if not self.is_main or self.run_dir is None:
            return
        ckpt.save_checkpoint(
            self.run_dir / "checkpoint",
            self.method.trainable_state(),
            self.optimizer,
            asdict(self.state),
            self.fingerprint(),
        )

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed by this run (fingerprint.py); computed once."""
        if getattr(self, "_fingerprint", None) is None:
            from .fingerprint import run_fingerprint

            self._fingerprint = run_fingerprint(
                self.config,
                self.loaded.model,
                tuple(self.loaded.embedding.weight.shape),
                self.train_examples,
                self.eval_examples,
                self.holdout_examples,
            )
        return self._fingerprint

    def _restore(self) -> None:
        if self.run_dir is None:
            return
        # Rank 0 reads the checkpoint and hands it to the other ranks (no shared file system needed).
        found = distributed.run_on_main(lambda: ckpt.load_checkpoint(self.run_dir / "checkpoint"))
        if found is None:
            log.info("no checkpoint in %s yet: starting from step 0", self.run_dir)
            metrics = self.run_dir / "metrics.jsonl"
            if self.is_main and metrics.exists():
                ckpt.write_metrics(metrics, [])
            return
        from .resume_checks import check_checkpoint

        # Everything is checked before anything is loaded: a refused checkpoint leaves this run untouched.
        per_epoch = len(self.epoch_plan(0))
        state = check_checkpoint(found, self.fingerprint(), self.method, self.optimizer, fields(TrainState), per_epoch)
        self.method.load_trainable_state({k: v.to(self.device) for k, v in found.trainable.items()})
        self.optimizer.load_state_dict(found.optimizer)
        ckpt.set_rng_state(found.rng)
        self.state = TrainState(**state)
        # Evaluations logged after the checkpoint (killed before the next one) will be redone: drop them.
        path = self.run_dir / "metrics.jsonl"
        if self.is_main:
            ckpt.write_metrics(path, [r for r in ckpt.read_metrics(path) if r.get("step", 0) <= self.state.step])
        log.info(
            "resumed from step %d (epoch %d, step %d of it)",
            self.state.step,
            self.state.epoch,
            self.state.step_in_epoch,
        )

    def finish(self) -> dict[str, Any]:
        """Results summary; scores the held-out split with the best adapter when there is one."""
        s = self.state
        trainable, total = self.method.count_parameters()
        rows = ckpt.read_metrics(self.run_dir / "metrics.jsonl") if self.run_dir else []
        results: dict[str, Any] = {
            "task": self.task.name,
            "method": self.config.method,
            "model": self.config.model,
            "precision": precision_name(self.bf16),
            "main_metric": self.task.main_metric,
            "best_metric": s.best_metric,
            "best_step": s.best_step,
            "best_epoch": s.best_epoch,
            "steps": s.step,
            "train_seconds": round(s.train_seconds, 2),
            "trainable_params": trainable,
            "total_params": total,
            "num_train": len(self.train_examples),
            "num_eval": len(self.eval_examples),
            "num_holdout": len(self.holdout_examples),
            "last_eval": rows[-1] if rows else None,
            "holdout": None,
            "truncated": self.truncated,  # share of inputs cut to fit --max-length, per split
        }
        if self.holdout_examples:
            results["holdout"] = self._score_holdout()
        if self.is_main and self.run_dir is not None:
            ckpt.write_json(self.run_dir / "results.json", results)
        return results

    def _score_holdout(self) -> dict[str, float]:
        from .methods import load_method

        best = ckpt.find_folder(self.run_dir / "best") if self.run_dir is not None else None
        method = load_method(best, self.loaded) if best is not None else self.method
        metrics, _ = evaluate_examples(
            method,
            self.encoder,
            self.task,
            self.holdout_examples,
            self.holdout_encoded,
            self.config.eval_mode,
            self.config.eval_batch_size,
            self.config.max_new_tokens,
            self.device,
            self.bf16,
            rank_score=self.config.rank_score,
        )
        log.info(
            "held-out split (%d examples, best adapter): %s %.4f",
            len(self.holdout_examples),
            self.task.main_metric,
            metrics.get(self.task.main_metric, float("nan")),
        )
        return metrics


def _fault_injection(step: int) -> None:
    """``SUPERPOS_FAULT_KILL_AT_STEP=N``: SIGKILL this process right after optimizer step N (crash/resume tests).

    A real kill: no cleanup, no atexit, nothing flushed; whatever the run wrote atomically before is what remains.
    """
    at = os.environ.get("SUPERPOS_FAULT_KILL_AT_STEP")
    if at and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)


__all__ = ["LossModule", "TrainState", "Trainer"]
