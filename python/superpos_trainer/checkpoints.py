"""The exact-resume checkpoint's content: what is written into its folder and how it is read back and checked.

Where the folder lives and how it is swapped in whole (a kill leaves the previous complete one) is the run
folder's job (run_folder.py: ``write_folder``, ``find_folder``).
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import state_codec
from .errors import RunFolderError, clip, short_repr
from .run_folder import find_folder, write_folder

set_rng_state = state_codec.set_rng_state


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


__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "checked_state",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]
