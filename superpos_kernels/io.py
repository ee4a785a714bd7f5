"""Atomic, validated reading and writing of adapter folders (JSON config + safetensors weights).

Writes go to a temporary file in the same folder, are fsynced, then renamed over the target: a reader (or a
run killed mid-write) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync, then ``os.replace`` onto ``path``; the temp file never survives a failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")

    atomic_write(path, write)


def save_adapter_weights(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor]) -> None:
    plain = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, tmp, metadata={"format": "pt"}))


def read_adapter_config(path: Path, peft_type: str | None) -> dict[str, Any]:
    """The JSON config of an adapter folder; ``peft_type`` None accepts any type (the caller dispatches on it)."""
    if not path.parent.is_dir():
        raise ValueError(f"adapter folder {path.parent} does not exist; pass the folder written by save_pretrained()")
    if not path.is_file():
        raise ValueError(f"{path} is missing; is {path.parent} an adapter folder written by save_pretrained()?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); the adapter folder is corrupt") from None
    if not isinstance(config, dict):
        raise ValueError(
            f"{path} must hold a JSON object, found a JSON {type(config).__name__}; the adapter folder is corrupt"
        )
    if peft_type is not None and config.get("peft_type") != peft_type:
        raise ValueError(f"{path} describes a {config.get('peft_type')!r} adapter, expected peft_type {peft_type!r}")
    return config


def load_adapter_weights(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Load and check names and shapes; a truncated or garbled file is a ``ValueError`` naming the file."""
    if not path.is_file():
        raise ValueError(f"{path} is missing; the adapter folder is incomplete")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupt") from None
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"{path} has no tensor {name!r} (found {sorted(tensors)})")
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape}")
    return tensors
