"""Numerical guard: stop training with a clear message the moment the loss or a trainable tensor is NaN/Inf.

Checked before anything is written: the loss right after the forward (before its backward), the trainable tensors
right after each optimizer step (before the step's evaluation or checkpoint). A diverged run therefore never
overwrites its last good checkpoint or adapters; the error says where they are. Resuming the same run would replay
the same steps into the same divergence, so the advice is a new run with a lower learning rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import TrainingDivergedError


def _kept(run_dir: Path | None) -> str:
    """What the run folder really holds (a run stopped at its first steps has no last/ yet, maybe no checkpoint/)."""
    if run_dir is None:
        return ""
    kept = [f"{name}/" for name in ("checkpoint", "best", "last") if _complete(run_dir / name)]
    if not kept:
        return f"; nothing was saved in {run_dir} yet"
    return f"; the last good {', '.join(kept)} in {run_dir} {'is' if len(kept) == 1 else 'are'} kept"


def _complete(folder: Path) -> bool:
    # run_folder.find_folder's rule, inlined: guard must not import the writer (it runs inside the training step).
    return any((f / "COMPLETE").is_file() for f in (folder, folder.with_name(folder.name + ".old")))


def check_loss(loss: Tensor | float, step: int, lr: float, run_dir: Path | None = None) -> float:
    """The loss as a float; ``TrainingDivergedError`` (a ``FloatingPointError``) when it is NaN or Inf."""
    value = float(loss)
    if value != value or value in (float("inf"), float("-inf")):
        raise TrainingDivergedError(
            f"training loss became {value} at optimizer step {step + 1}: training stopped{_kept(run_dir)}; "
            f"start a new run with a lower --lr (now {lr:g}) or check the inputs for NaN/Inf"
        )
    return value


def check_parameters(
    named: Iterable[tuple[str, nn.Parameter]], step: int, lr: float, run_dir: Path | None = None
) -> None:
    """``TrainingDivergedError`` naming the first trainable tensor holding NaN or Inf (one host sync in all)."""
    named = [(name, p) for name, p in named if p.requires_grad]
    if not named:
        return
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])
    if bool(finite.all()):
        return
    bad = [name for (name, _), ok in zip(named, finite.tolist(), strict=True) if not ok]
    raise TrainingDivergedError(
        f"trainable tensor(s) {', '.join(bad)} became NaN/Inf at optimizer step {step}: training stopped"
        f"{_kept(run_dir)}; start a new run with a lower --lr (now {lr:g})"
    )


__all__ = ["check_loss", "check_parameters"]
