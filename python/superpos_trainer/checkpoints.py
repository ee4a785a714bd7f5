"""Run-folder files, all written atomically: adapters, the exact-resume checkpoint, metrics.jsonl.

A folder (adapter, checkpoint) is built under a temporary name and swapped in with renames, so a run killed at any
moment leaves either the previous folder or the new one complete: ``target`` is renamed to ``target.old`` (kept
until the new one is in place), then ``target.tmp-*`` to ``target``. A reader that finds only ``target.old``
(killed between the two renames) uses that. Single files go through ``superpos_kernels.io.atomic_write``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from superpos_kernels.io import atomic_write

from . import state_codec
from .errors import RunFolderError, clip, short_repr
from .faults import fault_point
from .run_folder import follow_umask

COMPLETE_MARKER = "COMPLETE"
set_rng_state = state_codec.set_rng_state


def write_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_folder)`` then swap it in as ``target`` (see the module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Temp folders of writes killed earlier (SIGKILL skips the cleanup below); only the run lock's holder writes here.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(tmp)
        fault_point(f"write:{target.name}")  # test-only (faults.py)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        follow_umask(tmp)  # mkdtemp made it 0700, atomic writes inside 0600
        old = target.with_name(target.name + ".old")
        if target.exists():  # a lone .old (earlier kill between renames) stays until the new folder is in place
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            fault_point(f"swap:{target.name}")  # test-only (faults.py)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old)
    except (OSError, SafetensorError, RuntimeError) as exc:
        # Disk full, folder gone read-only, ...: safetensors reports it as SafetensorError, torch.save as a
        # RuntimeError ("file write failed"). The previous complete folder is untouched.
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, RuntimeError) and not _is_write_failure(exc):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else clip(str(exc), 200)
        raise RunFolderError(
            f"cannot write {target}: {reason}; the previous complete {target.name} (if any) is kept. "
            "Free space (or fix the folder) and continue with --resume"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_write_failure(exc: RuntimeError) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("write", "space", "i/o", "disk", "quota", "serializ"))


def find_folder(target: Path) -> Path | None:
    """The complete folder for ``target`` (or its ``.old`` twin after an ill-timed kill), else None."""
    for candidate in (Path(target), Path(target).with_name(Path(target).name + ".old")):
        if (candidate / COMPLETE_MARKER).is_file():
            return candidate
    return None


# ---- exact-resume checkpoint -------------------------------------------------------------------------------------
#
# Format 2 (a folder, swapped in whole): trainable.safetensors (the trainable tensors), optimizer_rng.safetensors +
# checkpoint.json (optimizer and RNG states as tensors + JSON, state_codec.py; checkpoint.json also holds the format
# version and the run's fingerprint), trainer_state.json (the counters). Nothing is a pickle.
# Format 1 (before versions existed) had optimizer_rng.pt, a torch pickle: read with weights_only (state_codec).

FORMAT_VERSION = 2
# Counters every checkpoint has held since format 1: a state file lacking one is refused. Fields added to TrainState
# later may be missing (older checkpoints) and take their defaults.
STATE_FIELDS_V1 = frozenset(
    {"step", "epoch", "step_in_epoch", "best_metric", "best_step", "best_epoch", "loss_sum", "loss_count",
     "examples_since_eval", "train_seconds", "done"}
)  # fmt: skip


@dataclass
class Checkpoint:
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # an optimizer.state_dict()
    rng: dict[str, Any]
    state: dict[str, Any]  # trainer_state.json, not yet checked against TrainState (see checked_state)
    fingerprint: dict[str, Any] | None  # None: a format-1 checkpoint, written before fingerprints
    folder: Path


def save_checkpoint(
    folder: Path,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    fingerprint: dict[str, Any],
) -> None:
    """Trainable tensors, optimizer + RNG states, counters and fingerprint, swapped in atomically."""
    plain = {k: v.detach().contiguous().cpu().clone() for k, v in trainable.items()}
    tensors, data = state_codec.encode(optimizer.state_dict(), state_codec.rng_state())
    meta = {"format_version": FORMAT_VERSION, "fingerprint": fingerprint, **data}

    def write(tmp: Path) -> None:
        save_file(plain, str(tmp / "trainable.safetensors"))
        save_file(tensors, str(tmp / "optimizer_rng.safetensors"))
        (tmp / "checkpoint.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2, sort_keys=True) + "\n")

    write_folder(folder, write)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise state_codec.StateFormatError(f"{path.name} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, bad UTF-8, a 5000-digit number
        raise state_codec.StateFormatError(f"{path.name} is not valid JSON ({clip(str(exc), 120)})") from None


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The complete checkpoint in ``folder`` (or its ``.old`` twin), every file checked; None when there is none.

    Any unreadable or malformed piece is a :class:`RunFolderError` naming the file and what is wrong.
    """
    found = find_folder(folder)
    if found is None:
        return None
    piece = found
    try:
        piece = found / "trainer_state.json"
        state = _read_json(piece)
        if not isinstance(state, dict):
            raise state_codec.StateFormatError(f"expected a JSON object, got {type(state).__name__}")
        piece = found / "trainable.safetensors"
        trainable = load_file(str(piece))
        if (found / "checkpoint.json").is_file():
            piece = found / "checkpoint.json"
            meta = _read_json(piece)
            version = meta.get("format_version") if isinstance(meta, dict) else None
            if version != FORMAT_VERSION:
                raise RunFolderError(
                    f"checkpoint {found} has format version {short_repr(version)}; this superpos reads version "
                    f"{FORMAT_VERSION} (and the unversioned format 1); resume with the superpos that wrote it"
                )
            fingerprint = meta.get("fingerprint")
            if not isinstance(fingerprint, dict):
                raise state_codec.StateFormatError("the field 'fingerprint' must be a JSON object")
            piece = found / "optimizer_rng.safetensors"
            tensors = load_file(str(piece))
            piece = found / "checkpoint.json"  # decode checks the JSON against the tensors; messages name both
            optimizer, rng = state_codec.decode(tensors, meta)
        elif (found / "optimizer_rng.pt").is_file():
            piece = found / "optimizer_rng.pt"
            optimizer, rng = state_codec.load_legacy(piece)
            fingerprint = None
        else:
            raise state_codec.StateFormatError("no checkpoint.json (nor a format-1 optimizer_rng.pt) in the folder")
    except RunFolderError:
        raise
    except Exception as exc:  # a pickle refused, a truncated tensor file, a wrong field: all unusable
        reason = clip(str(exc), 200) or type(exc).__name__
        if isinstance(exc, pickle.UnpicklingError):
            reason = "it holds more than plain tensors and numbers, so it was not loaded (nothing in it was run)"
        raise RunFolderError(
            f"checkpoint file {piece} is unreadable: {reason}; delete {found} to restart the run from step 0"
        ) from None
    return Checkpoint(trainable, optimizer, rng, state, fingerprint, found)


def checked_state(fields: Any, state: dict[str, Any], where: Path) -> dict[str, Any]:
    """``state`` checked against the dataclass ``fields`` (their annotations, e.g. ``"float | None"``).

    Each value must have its field's type, counters must be >= 0 and numbers finite; fields of format 1 must be
    present, later ones default. Unknown keys (a newer superpos) are refused.
    """
    kinds = {"int": int, "float": (int, float), "bool": bool, "None": type(None)}
    out = {}
    names = {f.name for f in fields}
    unknown = sorted(set(state) - names)
    if unknown:
        raise RunFolderError(f"{where}: unknown field(s) {short_repr(unknown)}; written by a newer superpos?")
    for f in fields:
        if f.name not in state:
            if f.name in STATE_FIELDS_V1:
                raise RunFolderError(f"{where} lacks the field {f.name!r}; the checkpoint is incomplete or corrupt")
            continue
        value = state[f.name]
        allowed = tuple(t for part in str(f.type).split("|") for t in _as_tuple(kinds[part.strip()]))
        bad_bool = isinstance(value, bool) and bool not in allowed
        if bad_bool or not isinstance(value, allowed):
            raise RunFolderError(f"{where}: field {f.name!r} must be {f.type}, got {short_repr(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RunFolderError(f"{where}: field {f.name!r} must be finite, got {value}")
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0 and f.name != "best_metric":
            raise RunFolderError(f"{where}: field {f.name!r} must be >= 0, got {short_repr(value)}")
        out[f.name] = value
    return out


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# ---- metrics.jsonl -------------------------------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``: each a JSON object whose ``step`` is an integer >= 0."""
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, a 5000-digit number, nested too deeply
            raise RunFolderError(f"{path} line {n} is not JSON; the run folder is corrupt") from None
        step = row.get("step") if isinstance(row, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise RunFolderError(
                f"{path} line {n} is not a metrics row (a JSON object with an integer step); the run folder is corrupt"
            )
        bad = [k for k, v in row.items() if isinstance(v, list | dict) or (k in _NUMERIC and not _is_number(v))]
        if bad:
            raise RunFolderError(
                f"{path} line {n}: {short_repr(bad[0], 40)} holds {short_repr(row[bad[0]], 40)}, not a number; "
                "the run folder is corrupt"
            )
        rows.append(row)
    return rows


_NUMERIC = frozenset({"epoch", "train_loss", "wall_time", "train_examples_per_s"})  # plotted / compared as numbers


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """``superpos_kernels.io.atomic_write`` with the umask's file mode (its temporary file is created 0600); a
    failed write (disk full, read-only folder) leaves the previous file whole and says so in one line."""

    def write_with_mode(tmp: str) -> None:
        write(tmp)
        follow_umask(Path(tmp))

    try:
        atomic_write(path, write_with_mode)
    except OSError as exc:
        raise RunFolderError(
            f"cannot write {path}: {exc.strerror or exc}; the previous {path.name} (if any) is kept. Free space "
            "(or fix the folder) and run the command again (a training run: with --resume)"
        ) from exc


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "checked_state",
    "find_folder",
    "load_checkpoint",
    "read_metrics",
    "save_checkpoint",
    "set_rng_state",
    "write_folder",
    "write_json",
    "write_metrics",
]
