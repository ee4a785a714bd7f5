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


def check_checkpoint(
    found: Checkpoint, fingerprint: dict[str, Any], method: Any, optimizer: torch.optim.Optimizer, fields: Sequence[Any]
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
    _check_optimizer(found.optimizer, optimizer, folder)
    _check_rng(found.rng, folder)
    return checked_state(fields, found.state, folder / "trainer_state.json")


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


def _check_optimizer(saved: dict[str, Any], optimizer: torch.optim.Optimizer, folder: Any) -> None:
    where = folder / ("checkpoint.json" if (folder / "checkpoint.json").is_file() else "optimizer_rng.pt")
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise RunFolderError(
            f"{where}: the optimizer has {len(groups)} parameter group(s), this run {len(optimizer.param_groups)}"
        )
    params = []
    for i, (old, new) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        if len(old["params"]) != len(new["params"]):
            raise RunFolderError(f"{where}: optimizer group {i} holds another number of tensors than this run's")
        for key in HYPERPARAMETERS:
            if key in old and _plain(old[key]) != _plain(new.get(key)):
                raise RunFolderError(
                    f"{where}: optimizer group {i} has {key} {short_repr(old[key])}, this run's options give "
                    f"{short_repr(new.get(key))}; the checkpoint is another run's"
                )
        params += [(index, p) for index, p in zip(old["params"], new["params"], strict=True)]
    by_index = dict(params)
    for index, entries in saved["state"].items():
        if index not in by_index:
            raise RunFolderError(f"{where}: optimizer state for tensor {index}, which this run does not have")
        for name, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != by_index[index].shape:
                raise RunFolderError(
                    f"{where}: optimizer state {index}.{name} has shape {list(value.shape)}, the tensor it "
                    f"belongs to {list(by_index[index].shape)}"
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
