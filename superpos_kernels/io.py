"""Atomic, validated reading and writing of adapter folders (JSON config + safetensors weights).

Writes go to a temporary file in the same folder, are fsynced, then renamed over the target: a reader (or a
run killed mid-write) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import SuperPosInputError

# The largest real config lists m sampled ids: even m = 262,144 (Gemma's whole vocabulary) is ~2 MB of JSON.
MAX_CONFIG_BYTES = 64 * 1024 * 1024


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
        raise SuperPosInputError(
            f"adapter folder {path.parent} does not exist; pass the folder written by save_pretrained()"
        )
    if not path.is_file():
        raise SuperPosInputError(f"{path} is missing; is {path.parent} an adapter folder written by save_pretrained()?")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise SuperPosInputError(
            f"{path} is {size:,d} bytes, more than any adapter config ({MAX_CONFIG_BYTES:,d}); the folder is corrupt"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SuperPosInputError(f"{path} is not valid JSON ({exc}); the adapter folder is corrupt") from None
    except RecursionError:
        raise SuperPosInputError(
            f"{path} nests JSON too deeply to be an adapter config; the folder is corrupt"
        ) from None
    if not isinstance(config, dict):
        raise SuperPosInputError(
            f"{path} must hold a JSON object, found a JSON {type(config).__name__}; the adapter folder is corrupt"
        )
    if peft_type is not None and config.get("peft_type") != peft_type:
        raise SuperPosInputError(
            f"{path} describes a {config.get('peft_type')!r} adapter, expected peft_type {peft_type!r}"
        )
    return config


def _bounded(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: a hostile file must not turn one error line into megabytes."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_error(path: Path, key: str, expected: str, value: Any) -> SuperPosInputError:
    return SuperPosInputError(
        f"{path}: key {key!r} must be {expected}, got {_bounded(value)} ({type(value).__name__}); "
        "the adapter folder is corrupt or was edited by hand"
    )


def config_int(path: Path, config: dict[str, Any], key: str, minimum: int = 1, default: int | None = None) -> int:
    """An integer entry of an adapter config. JSON ``"4"``, ``4.0`` and ``true`` are refused, not coerced."""
    if key not in config and default is not None:
        return default
    if key not in config:
        raise SuperPosInputError(f"{path} lacks the key {key!r}; the adapter folder is corrupt")
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _type_error(path, key, f"an integer >= {minimum}", value)
    return value


def config_float(path: Path, config: dict[str, Any], key: str, default: float) -> float:
    """A finite number (int or float, not bool) of an adapter config."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _type_error(path, key, "a finite number", value)
    return float(value)


def config_optional_str(path: Path, config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise _type_error(path, key, "a string or null", value)
    return value


def config_int_list(path: Path, config: dict[str, Any], key: str, length: int) -> list[int]:
    """A list of exactly ``length`` non-negative integers (checked before anything of that size is built)."""
    if key not in config:
        raise SuperPosInputError(f"{path} lacks the key {key!r}; the adapter folder is corrupt")
    value = config[key]
    if not isinstance(value, list) or len(value) != length:
        got = f"{len(value)} entries" if isinstance(value, list) else _bounded(value)
        raise SuperPosInputError(f"{path}: key {key!r} must be a list of {length} token ids, got {got}")
    bad = [i for i in value if isinstance(i, bool) or not isinstance(i, int) or i < 0]
    if bad:
        raise _type_error(path, key, "a list of non-negative integers", bad[0])
    return value


def read_safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the file header only: nothing of the tensors' size is read or allocated.

    safetensors checks on open that the header's offsets cover exactly the file, so these shapes are bounded by the
    file's size: a config that claims more than the file holds is caught here, before any allocation.
    """
    if not path.is_file():
        raise SuperPosInputError(f"{path} is missing; the adapter folder is incomplete")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SuperPosInputError(
            f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupt"
        ) from None


def check_adapter_shapes(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Names and shapes in the header of ``path`` against ``expected`` (from the config): one line per mismatch."""
    found = read_safetensors_shapes(path)
    for name, shape in expected.items():
        if name not in found:
            raise SuperPosInputError(f"{path} has no tensor {name!r} (found {sorted(found)[:10]})")
        if found[name] != tuple(shape):
            raise SuperPosInputError(
                f"{path}: tensor {name!r} has shape {found[name]}, expected {tuple(shape)} from the adapter config; "
                "the config and the weights do not belong together"
            )


def load_adapter_weights(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Load after checking names and shapes in the header; refuse NaN/inf. Errors (``SuperPosInputError``) name
    the file."""
    check_adapter_shapes(path, expected)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SuperPosInputError(
            f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupt"
        ) from None
    for name in expected:
        tensor = tensors[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SuperPosInputError(
                f"{path}: tensor {name!r} holds NaN or inf values; the adapter is corrupt (a diverged run?): "
                "use another checkpoint or retrain"
            )
    return tensors
