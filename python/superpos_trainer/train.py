"""The training loop: one optimizer, one data order, evaluation with best-result tracking, exact resume.

Structure for the multi-process extension (DDP): the model is wrapped in ONE place (``distributed.wrap``), batches
are sharded in ONE place (``distributed.shard``), and only rank 0 writes files (the run folder's gate).
:meth:`Trainer.train_step` runs one full optimizer step on one batch (benchmarks call it directly).

Exact resume: the data order of an epoch is a pure function of ``(seed, epoch)``; a checkpoint (at every epoch end
and every ``save_steps``) holds the trainable tensors, the optimizer state, all RNG states and the position
``(epoch, step_in_epoch)``, so a resumed run replays the remaining batches exactly as the uninterrupted run would.
What goes where: the files (run_folder.py), saving and restoring them (persist.py), the metrics row, the log line,
the held-out score and results.json (results.py), evaluation (evaluate.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import auto_defaults, distributed, guard, persist, results
from .collate import Batch, Encoded, Encoder, encode_split, epoch_batches, train_batch
from .config import TrainConfig
from .errors import ConfigError
from .evaluate import EvalSettings, evaluate
from .faults import fault_point
from .forward import autocast, decoder_start_fn, label_logits, label_loss
from .methods import Method
from .padding_free import FlattenPolicy, flatten_policy
from .precision import prepare_model
from .run_folder import RunFolder

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

    def __init__(self, method: Method, flat: FlattenPolicy | None = None) -> None:
        super().__init__()
        self.method, self.flat = method, flat
        if method.trains_backbone:  # full fine-tuning trains the backbone itself: register it for DDP
            self.backbone = method.loaded.model

    def forward(self, batch: Batch) -> Tensor:
        return label_loss(label_logits(self.method, batch, self.flat), batch.labels)


class Trainer:
    """The loop, the step and the best-result tracking of one run; build one with :meth:`from_config`."""

    def __init__(
        self,
        config: TrainConfig,
        method: Method,
        task: Any,
        examples: Sequence[Sequence[Any]],
        run_dir: Path | None = None,
        device: torch.device | None = None,
    ) -> None:
        """``examples``: ``(train, validation)`` or ``(train, validation, holdout)``, encoded once here."""
        train, validation, holdout = (*examples, ())[:3]
        self.config = config = auto_defaults.resolve(config, method, (train, validation, holdout))  # auto -> numbers
        self.method, self.task, self.loaded = method, task, method.loaded
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run = RunFolder(self.run_dir) if self.run_dir is not None else None  # writes on rank 0 only
        self.device = device or self.loaded.embedding.weight.device
        progress = config.progress and distributed.is_main()
        self.eval_settings = EvalSettings.from_config(config, self.device, progress=progress)
        self.bf16 = self.eval_settings.bf16
        prepare_model(self.loaded.model, config, self.bf16, self.device, method.trains_backbone)
        self.encoder = Encoder.from_config(config, self.loaded, method.num_prompt_tokens)
        self.train_examples, self.train_encoded = encode_split(self.encoder, train)
        self.eval_examples, self.eval_encoded = encode_split(self.encoder, validation)
        self.holdout_examples, self.holdout_encoded = encode_split(self.encoder, holdout)
        splits = {"train": self.train_encoded, "validation": self.eval_encoded}
        if holdout:
            splits["holdout"] = self.holdout_encoded
        self.truncated = auto_defaults.truncation_report(splits)
        self.select_examples, self.select_encoded = self._selection_split()
        self.flat = flatten_policy(config.padding_free, self.loaded, self.device)  # training batches only
        self.train_module = distributed.wrap(LossModule(method, self.flat), self.device)
        self.optimizer = torch.optim.AdamW(method.param_groups(config.weight_decay), lr=config.lr)
        self.state = TrainState()
        self._decoder_start = decoder_start_fn(self.loaded.model) if self.loaded.is_encoder_decoder else None

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        task: Any,
        examples: Sequence[Sequence[Any]],
        loaded: Any = None,
        method: Method | None = None,
        run_dir: Path | None = None,
        device: torch.device | None = None,
    ) -> Trainer:
        """The Trainer ``superpos train`` runs: the config's method around ``loaded`` (or a ``method`` built
        already); the one way runner.py, the tests and the benchmarks build a trainer."""
        if method is None:
            from .methods import build_method

            c = config
            method = build_method(
                c.method, loaded, c.num_prompt_tokens, c.num_sampled_tokens, c.residual_hidden, c.seed, c.w_init
            )
        return cls(config, method, task, examples, run_dir, device)

    def _selection_split(self) -> tuple[list[Any], list[Encoded]]:
        """The split whose periodic scores choose ``best/`` (``--select-on``)."""
        if self.config.select_on != "holdout":
            return self.eval_examples, self.eval_encoded
        if not self.holdout_examples:
            raise ConfigError("--select-on holdout needs a held-out split: add --holdout-fraction (e.g. 0.1)")
        return self.holdout_examples, self.holdout_encoded

    # ---- batches --------------------------------------------------------------------------------------------------
    def epoch_plan(self, epoch: int) -> list[list[list[int]]]:
        """The epoch as optimizer steps, each a list of micro-batches (lists of example positions)."""
        lengths = [len(e.source_ids) + len(e.target_ids) for e in self.train_encoded]
        # --batch-size is the GLOBAL batch: every rank plans the same batches and trains on its shard (fit).
        micro = epoch_batches(lengths, self.config.batch_size, self.config.seed, epoch, self.config.group_by_length)
        accum = self.config.grad_accum
        return [micro[i : i + accum] for i in range(0, len(micro), accum)]

    def total_steps(self) -> int:
        per_epoch = math.ceil(math.ceil(len(self.train_encoded) / self.config.batch_size) / self.config.grad_accum)
        total = per_epoch * self.config.epochs
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def make_batch(self, indices: Sequence[int], encoded: Sequence[Encoded] | None = None) -> Batch:
        encoded = self.train_encoded if encoded is None else encoded
        pad = self.loaded.tokenizer.pad_token_id
        return train_batch(encoded, indices, pad, self.loaded.is_encoder_decoder, self._decoder_start).to(self.device)

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

    def run_step(self, group: list[list[int]]) -> None:
        """One planned optimizer step: each GLOBAL micro-batch of ``group``, this rank training on its shard."""
        self.set_train_mode()
        s = self.state
        for indices in group:
            mine = distributed.shard(indices, distributed.rank(), distributed.world_size())
            s.loss_sum += self.accumulate(self.make_batch(mine or indices[:1]), 1.0 / len(group), bool(mine))
            s.loss_count += 1
            s.examples_since_eval += len(indices)
        self.optimizer_step()
        s.step += 1
        s.step_in_epoch += 1
        trained = getattr(self.train_module, "module", self.train_module)  # DDP keeps the module inside
        guard.check_parameters(trained.named_parameters(), s.step, self.config.lr, self.run_dir)
        fault_point(f"step:{s.step}")  # test-only (faults.py): a kill right after this optimizer step

    # ---- evaluation and best-result tracking ------------------------------------------------------------------------
    def evaluate(self, examples: Sequence[Any] | None = None, encoded: Sequence[Encoded] | None = None) -> dict:
        """The validation split's metrics (or ``examples``'); sharded over the ranks under torchrun."""
        examples = self.eval_examples if examples is None else examples
        encoded = self.eval_encoded if encoded is None else encoded
        return evaluate(self.method, self.encoder, self.task, examples, encoded, self.eval_settings)[0]

    def evaluate_and_log(self, steps_in_epoch: int) -> None:
        """One evaluation of the selection split (``--select-on``): its row in metrics.jsonl, its log line, and
        ``best/`` when it is the best so far."""
        eval_start = time.perf_counter()
        metrics = self.evaluate(self.select_examples, self.select_encoded)
        fault_point("eval")  # test-only (faults.py): a kill after evaluating, before anything of it is written
        s = self.state
        row = results.metrics_row(s, metrics, steps_in_epoch, time.perf_counter() - eval_start)
        main = metrics.get(self.task.main_metric, float("nan"))
        row["split"] = self.config.select_on
        row["is_best"] = not math.isnan(main) and (s.best_metric is None or main > s.best_metric)
        results.log_evaluation(row, self.task.main_metric, main)
        if row["is_best"]:
            s.best_metric, s.best_step, s.best_epoch = main, s.step, row["epoch"]
            persist.save_adapter(self, "best")
        s.loss_sum, s.loss_count, s.examples_since_eval = 0.0, 0, 0
        if self.run:
            self.run.append_metrics(row)

    # ---- the loop -------------------------------------------------------------------------------------------------
    def stopped(self) -> bool:
        return bool(self.config.max_steps) and self.state.step >= self.config.max_steps

    def should_evaluate(self) -> bool:
        return bool(self.config.eval_steps) and self.state.step % self.config.eval_steps == 0

    def should_save(self) -> bool:
        return bool(self.config.save_steps) and self.state.step % self.config.save_steps == 0

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end (or resume), evaluating, keeping best/last adapters; returns the results summary."""
        if resume:
            persist.restore(self)
        if self.state.done:
            log.info("run already complete (step %d); nothing to resume", self.state.step)
            return self.finish()
        clock = results.SessionClock(self.state, self.total_steps(), self.config.progress and distributed.is_main())
        while not self.state.done and self.state.epoch < self.config.epochs:
            plan = self.epoch_plan(self.state.epoch)
            for group in plan[self.state.step_in_epoch :]:
                self.run_step(group)
                clock.stepped(sum(len(indices) for indices in group))
                if self.state.step_in_epoch == len(plan) or self.stopped():
                    break
                if self.should_evaluate():
                    self.evaluate_and_log(len(plan))
                if self.should_save():
                    persist.save_checkpoint(self)
            self.end_interval(len(plan), clock)
        clock.close()
        return self.finish()

    def end_interval(self, steps_in_epoch: int, clock: results.SessionClock) -> None:
        """An epoch's end (or ``--max-steps``): evaluate, then ``last/`` and a checkpoint of the new position."""
        s = self.state
        if s.step_in_epoch == steps_in_epoch:
            s.epoch, s.step_in_epoch = s.epoch + 1, 0
        self.evaluate_and_log(steps_in_epoch)
        clock.tick()
        s.done = s.epoch >= self.config.epochs or self.stopped()
        persist.save_adapter(self, "last")
        persist.save_checkpoint(self)

    def finish(self) -> dict[str, Any]:
        """The results summary (results.json); scores the held-out split with the best adapter when there is one."""
        return results.finish(self)


__all__ = ["LossModule", "TrainState", "Trainer"]
