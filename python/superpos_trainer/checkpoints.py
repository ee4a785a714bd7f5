"""Run-folder files, all written atomically: adapters, the exact-resume checkpoint, metrics.jsonl.

A folder (adapter, checkpoint) is built under a temporary name and swapped in with renames, so a run killed at any
moment leaves either the previous folder or the new one complete: ``target`` is renamed to ``target.old`` (kept
until the new one is in place), then ``target.tmp-*`` to ``target``. A reader that finds only ``target.old``
(killed between the two renames) uses that. Single files go through ``superpos_kernels.io.atomic_write``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from superpos_kernels.io import atomic_write, atomic_write_json

from .errors import RunFolderError
from .faults import fault_point

COMPLETE_MARKER = "COMPLETE"


def write_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_folder)`` then swap it in as ``target`` (see the module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Temp folders of writes killed earlier (SIGKILL skips the cleanup below); one writer per run folder (rank 0).
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(tmp)
        fault_point(f"write:{target.name}")  # test-only (faults.py)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        old = target.with_name(target.name + ".old")
        if target.exists():  # a lone .old (earlier kill between renames) stays until the new folder is in place
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            fault_point(f"swap:{target.name}")  # test-only (faults.py)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old)
    except OSError as exc:  # disk full, folder gone read-only, ...: the previous complete folder is untouched
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunFolderError(
            f"cannot write {target}: {exc.strerror or exc}; the previous complete {target.name} (if any) is kept. "
            "Free space (or fix the folder) and continue with --resume"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def find_folder(target: Path) -> Path | None:
    """The complete folder for ``target`` (or its ``.old`` twin after an ill-timed kill), else None."""
    for candidate in (Path(target), Path(target).with_name(Path(target).name + ".old")):
        if (candidate / COMPLETE_MARKER).is_file():
            return candidate
    return None


# ---- exact-resume checkpoint -------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (global state)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002 (restores the global state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, trainer_state: dict[str, Any]
) -> None:
    """Trainable tensors (safetensors), optimizer + RNG states (torch), counters (JSON), swapped in atomically."""
    plain = {k: v.detach().contiguous().cpu().clone() for k, v in trainable.items()}
    extras = {"optimizer": optimizer.state_dict(), "rng": rng_state()}

    def write(tmp: Path) -> None:
        save_file(plain, str(tmp / "trainable.safetensors"))
        torch.save(extras, tmp / "optimizer_rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2, sort_keys=True) + "\n")

    write_folder(folder, write)


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]] | None:
    """``(trainable, extras{optimizer, rng}, trainer_state)`` or None when no complete checkpoint exists."""
    found = find_folder(folder)
    if found is None:
        return None
    try:
        trainable = load_file(str(found / "trainable.safetensors"))
        # Our own file, written by save_checkpoint: it holds Python RNG tuples, so weights_only cannot load it.
        extras = torch.load(found / "optimizer_rng.pt", weights_only=False)
        state = json.loads((found / "trainer_state.json").read_text())
    except Exception as exc:  # any unreadable piece makes the checkpoint unusable; say which folder
        raise RunFolderError(f"checkpoint {found} is unreadable ({exc}); delete it to restart the run") from None
    return trainable, extras, state


# ---- metrics.jsonl -------------------------------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunFolderError(f"{path} line {n} is not JSON; the run folder is corrupt") from None
    return rows


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data)


__all__ = [
    "find_folder",
    "load_checkpoint",
    "read_metrics",
    "save_checkpoint",
    "set_rng_state",
    "write_folder",
    "write_json",
    "write_metrics",
]
