"""Is this checkpoint this run's? Every check a resume makes before it loads anything.

A checkpoint is refused (one :class:`RunFolderError` line naming the file and what differs) when its fingerprint
differs from the run's (options, model, data rows: fingerprint.py), when its tensors do not fit the method or the
optimizer (another n, m, d, another method), when its optimizer was built with other hyperparameters (a format-1
checkpoint has no fingerprint; this still catches one copied from an --lr 0.5 run), or when its counters are
malformed (checkpoints.checked_state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from . import state_codec
from .checkpoints import Checkpoint, checked_state
from .errors import RunFolderError, short_repr
from .fingerprint import differences

HYPERPARAMETERS = ("lr", "weight_decay", "betas", "eps")
ADAM_STATE = frozenset({"step", "exp_avg", "exp_avg_sq"})  # what AdamW keeps per tensor (the trainer's optimizer)


def check_checkpoint(
    found: Checkpoint,
    fingerprint: dict[str, Any],
    method: Any,
    optimizer: torch.optim.Optimizer,
    fields: Sequence[Any],
    steps_per_epoch: int,
) -> dict[str, Any]:
    """The checked trainer state of ``found``; :class:`RunFolderError` if any part does not belong to this run."""
    folder = found.folder
    if found.fingerprint is not None:
        diffs = differences(found.fingerprint, fingerprint)
        if diffs:
            raise RunFolderError(
                f"checkpoint {folder} belongs to another run ({'; '.join(diffs[:4])}"
                f"{'; ...' if len(diffs) > 4 else ''}); resume with that run's options and data, or delete "
                f"{folder} to restart this run from step 0"
            )
    _check_tensors(found.trainable, method.trainable_state(), folder / "trainable.safetensors")
    found.optimizer = _check_optimizer(found.optimizer, optimizer, folder)  # the checked state is what gets loaded
    _check_rng(found.rng, folder)
    state = checked_state(fields, found.state, folder / "trainer_state.json")
    _check_position(state, steps_per_epoch, folder / "trainer_state.json")
    return state


def _check_position(state: dict[str, Any], per_epoch: int, where: Any) -> None:
    """The counters describe one point of this run's plan: step = epoch * steps per epoch + step_in_epoch."""
    step, epoch, in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
    if in_epoch >= per_epoch or step != epoch * per_epoch + in_epoch:
        raise RunFolderError(
            f"{where}: step {step}, epoch {epoch}, step_in_epoch {in_epoch} is no position of this run "
            f"({per_epoch} steps per epoch); the checkpoint is corrupt or another run's"
        )


def _check_tensors(saved: dict[str, torch.Tensor], current: dict[str, torch.Tensor], where: Any) -> None:
    if set(saved) != set(current):
        raise RunFolderError(
            f"{where} holds the tensors {short_repr(sorted(saved))}, this run trains {short_repr(sorted(current))}; "
            "it is another method's checkpoint"
        )
    for name, tensor in current.items():
        if saved[name].shape != tensor.shape or saved[name].dtype != tensor.dtype:
            raise RunFolderError(
                f"{where}: tensor {name!r} is {saved[name].dtype} {list(saved[name].shape)}, this run needs "
                f"{tensor.dtype} {list(tensor.shape)} (another --num-prompt-tokens, --num-sampled-tokens or model?)"
            )


def _check_optimizer(saved: dict[str, Any], optimizer: torch.optim.Optimizer, folder: Any) -> dict[str, Any]:
    """The state dict to load: the saved per-tensor state (checked), this run's own parameter groups.

    The groups' hyperparameters must equal this run's (so nothing is lost by taking the run's own groups, and a
    group lacking a key or holding a wrong flag can never reach the optimizer).
    """
    where = folder / ("checkpoint.json" if (folder / "checkpoint.json").is_file() else "optimizer_rng.pt")
    groups = saved["param_groups"]
    current = optimizer.state_dict()["param_groups"]
    if len(groups) != len(current):
        raise RunFolderError(f"{where}: the optimizer has {len(groups)} parameter group(s), this run {len(current)}")
    params = _check_groups(groups, current, optimizer, where)
    for index, entries in saved["state"].items():
        if index not in params:
            raise RunFolderError(f"{where}: optimizer state for tensor {index}, which this run does not have")
        _check_state_entries(index, entries, list(params[index].shape), where)
    return {"state": saved["state"], "param_groups": current}


def _check_groups(
    groups: list[dict[str, Any]], current: list[dict[str, Any]], optimizer: torch.optim.Optimizer, where: Any
) -> dict[int, torch.Tensor]:
    """Each saved group holds this run's tensors with this run's hyperparameters; returns index -> tensor."""
    params: dict[int, torch.Tensor] = {}
    for i, (old, new, live) in enumerate(zip(groups, current, optimizer.param_groups, strict=True)):
        if old["params"] != new["params"]:
            raise RunFolderError(f"{where}: optimizer group {i} holds other tensors than this run's")
        for key in HYPERPARAMETERS:
            if key in new and _plain(old.get(key)) != _plain(new[key]):
                raise RunFolderError(
                    f"{where}: optimizer group {i} has {key} {short_repr(old.get(key))}, this run's options give "
                    f"{short_repr(new[key])}; the checkpoint is another run's"
                )
        params.update(zip(new["params"], live["params"], strict=True))
    return params


def _check_state_entries(index: int, entries: dict[str, Any], shape: list[int], where: Any) -> None:
    """One tensor's Adam state: every entry present, float tensors, each of the tensor's shape (or a scalar)."""
    missing = sorted(ADAM_STATE - set(entries))
    if missing:
        raise RunFolderError(f"{where}: optimizer state {index} lacks {', '.join(missing)}")
    for name, value in entries.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise RunFolderError(f"{where}: optimizer state {index}.{name} must be a float tensor")
        if value.dim() > 0 and list(value.shape) != shape:
            raise RunFolderError(
                f"{where}: optimizer state {index}.{name} has shape {list(value.shape)}, the tensor it "
                f"belongs to {shape}"
            )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_rng(rng: dict[str, Any], folder: Any) -> None:
    """Setting a malformed RNG state fails; try it, then put the current state back."""
    current = state_codec.rng_state()
    try:
        state_codec.set_rng_state(rng)
    except state_codec.StateFormatError as exc:
        raise RunFolderError(f"checkpoint {folder}: {exc}; delete it to restart the run") from None
    finally:
        state_codec.set_rng_state(current)


__all__ = ["check_checkpoint"]
