"""What a Trainer keeps in its run folder and takes back on ``--resume``: adapters, the checkpoint, the restore.

The files themselves (names, atomic swaps, the rank-0 gate) are the run folder's (run_folder.py); the checkpoint's
content is checkpoints.py's; whether a checkpoint belongs to this run is resume_checks.py's. Every function here
takes the Trainer and does nothing without a run folder (a trainer built for a benchmark or a test).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from typing import Any

from . import distributed
from .checkpoints import set_rng_state

log = logging.getLogger("superpos_trainer")


def save_adapter(trainer: Any, name: str) -> None:
    """``best/`` or ``last/``: the method's adapter and the options it was trained with (at which step)."""
    if trainer.run:
        config = {**trainer.config.to_dict(), "saved_at_step": trainer.state.step}
        trainer.run.save_adapter(name, trainer.method, config)


def save_checkpoint(trainer: Any) -> None:
    """The exact-resume checkpoint: trainable tensors, optimizer and RNG states, counters, the run's fingerprint."""
    if trainer.run:
        state = asdict(trainer.state)
        trainer.run.save_checkpoint(trainer.method.trainable_state(), trainer.optimizer, state, fingerprint(trainer))


def fingerprint(trainer: Any) -> dict[str, Any]:
    """What a checkpoint must match to be resumed by this run (fingerprint.py); computed once."""
    if getattr(trainer, "_fingerprint", None) is None:
        from .fingerprint import run_fingerprint

        trainer._fingerprint = run_fingerprint(
            trainer.config,
            trainer.loaded.model,
            tuple(trainer.loaded.embedding.weight.shape),
            trainer.train_examples,
            trainer.eval_examples,
            trainer.holdout_examples,
        )
    return trainer._fingerprint


def restore(trainer: Any) -> None:
    """Continue from the run's checkpoint (or from step 0 without one); later metrics rows are dropped.

    Rank 0 reads the checkpoint and hands it to the other ranks (no shared file system needed). Everything is
    checked before anything is loaded: a refused checkpoint leaves this run untouched.
    """
    run = trainer.run
    if run is None:
        return
    found = distributed.run_on_main(run.load_checkpoint)
    if found is None:
        log.info("no checkpoint in %s yet: starting from step 0", run.path)
        run.truncate_metrics(None)
        return
    from .resume_checks import check_checkpoint

    per_epoch = len(trainer.epoch_plan(0))
    state_fields = fields(type(trainer.state))
    state = check_checkpoint(found, fingerprint(trainer), trainer.method, trainer.optimizer, state_fields, per_epoch)
    trainer.method.load_trainable_state({k: v.to(trainer.device) for k, v in found.trainable.items()})
    trainer.optimizer.load_state_dict(found.optimizer)
    set_rng_state(found.rng)
    trainer.state = type(trainer.state)(**state)
    # Evaluations logged after the checkpoint (killed before the next one) will be redone: drop them.
    run.truncate_metrics(trainer.state.step)
    log.info(
        "resumed from step %d (epoch %d, step %d of it)",
        trainer.state.step,
        trainer.state.epoch,
        trainer.state.step_in_epoch,
    )


__all__ = ["fingerprint", "restore", "save_adapter", "save_checkpoint"]
