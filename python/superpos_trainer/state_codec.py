"""Optimizer and RNG states as plain data: tensors (for safetensors) + JSON values, never a pickle.

A run folder is something people share, so nothing in it may run code when read: ``torch.load`` of a pickle can.
:func:`encode` splits the states into named tensors and a JSON-able dict; :func:`decode` rebuilds them and checks
every field's type and shape on the way (a wrong file is a :class:`StateFormatError` naming the field, not a
``TypeError`` deep inside the optimizer). :func:`load_legacy` reads the ``optimizer_rng.pt`` of format-1 run folders
with ``weights_only=True`` and an explicit allow-list of the three numpy globals it holds: a crafted pickle cannot
run code through it.
"""

from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import short_repr


class StateFormatError(ValueError):
    """A checkpoint state file does not have the expected structure (the message names the field)."""


JSONScalar = (bool, int, float, str, type(None))


# ---- encoding ------------------------------------------------------------------------------------------------------


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}  # JSON has no inf/nan; kept exact as text
    if isinstance(value, tuple | list):
        return [_scalar(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, JSONScalar):
        return value
    raise TypeError(f"cannot store {where} of type {type(value).__name__} in a checkpoint")


def encode(optimizer_state: dict[str, Any], rng: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, json)`` for ``optimizer.state_dict()`` and :func:`rng_state` output."""
    tensors: dict[str, Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for index, entries in optimizer_state["state"].items():
        scalars: dict[str, Any] = {}
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous().cpu().clone()
            else:
                scalars[name] = _scalar(value, f"optimizer state {index}.{name}")
        per_param[str(index)] = scalars
    groups = [{k: _scalar(v, f"param_groups.{k}") for k, v in g.items()} for g in optimizer_state["param_groups"]]
    version, mt, gauss = rng["python"]
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = rng["numpy"]
    tensors["rng.python"] = torch.tensor(mt, dtype=torch.int64)
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
    tensors["rng.torch"] = rng["torch"].contiguous().clone()
    for i, state in enumerate(rng.get("cuda", [])):
        tensors[f"rng.cuda.{i}"] = state.contiguous().cpu().clone()
    data = {
        "optimizer": {"state": per_param, "param_groups": groups},
        "rng": {
            "python": {"version": version, "gauss_next": gauss},
            "numpy": {"kind": np_kind, "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached": float(np_gauss)},
            "cuda_devices": len(rng.get("cuda", [])),
        },
    }
    return tensors, data


# ---- decoding (every field checked) --------------------------------------------------------------------------------


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise StateFormatError(f"{where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise StateFormatError(f"{where} lacks the field {key!r}")
    value = obj[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise StateFormatError(f"{where}.{key} must be {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise StateFormatError(f"{where}.{key} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _unscalar(value: Any, where: str, depth: int = 0) -> Any:
    if depth > 4:
        raise StateFormatError(f"{where} is nested too deeply")
    if isinstance(value, dict):
        if set(value) != {"float"} or value["float"] not in ("inf", "-inf", "nan"):
            raise StateFormatError(f"{where} is an object; expected a number, string, boolean, null or list")
        return float(value["float"])
    if isinstance(value, list):
        return [_unscalar(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    return value


def _tensor(tensors: dict[str, Tensor], key: str, dtype: torch.dtype, file: str, numel: int | None = None) -> Tensor:
    if key not in tensors:
        raise StateFormatError(f"{file}: the tensor {key!r} is missing")
    value = tensors[key]
    if value.dtype != dtype or value.dim() != 1 or (numel is not None and value.numel() != numel):
        shape = f"[{numel}]" if numel is not None else "1-d"
        raise StateFormatError(
            f"{file}: the tensor {key!r} must be {dtype} {shape}, got {value.dtype} {list(value.shape)}"
        )
    return value


def decode(
    tensors: dict[str, Tensor], data: Any, tensor_file: str = "optimizer_rng.safetensors"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(optimizer state_dict, rng state)`` from :func:`encode` output; :class:`StateFormatError` if malformed."""
    opt = _field(data, "optimizer", dict, "state")
    groups = [_decode_group(i, g) for i, g in enumerate(_field(opt, "param_groups", list, "optimizer"))]
    state = _decode_optimizer_state(tensors, opt)
    return {"state": state, "param_groups": groups}, _decode_rng(tensors, data, tensor_file)


def _decode_group(i: int, group: Any) -> dict[str, Any]:
    if not isinstance(group, dict):
        raise StateFormatError(f"optimizer.param_groups[{i}] must be a JSON object")
    params = _field(group, "params", list, f"optimizer.param_groups[{i}]")
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in params):
        raise StateFormatError(f"optimizer.param_groups[{i}].params must be a list of integers")
    restored = {k: _unscalar(v, f"optimizer.param_groups[{i}].{k}") for k, v in group.items()}
    if isinstance(restored.get("betas"), list):
        restored["betas"] = tuple(restored["betas"])  # what the optimizer itself stores
    return restored


def _decode_optimizer_state(tensors: dict[str, Tensor], opt: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per-tensor state: the scalars from the JSON, the tensors from ``optimizer.<index>.<field>``."""
    state: dict[int, dict[str, Any]] = {}
    for key, scalars in _field(opt, "state", dict, "optimizer").items():
        if not key.isdigit() or not isinstance(scalars, dict):
            raise StateFormatError(f"optimizer.state has a malformed entry {key[:40]!r}")
        state[int(key)] = {k: _unscalar(v, f"optimizer.state.{key}.{k}") for k, v in scalars.items()}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, field = name.split(".", 2)
            if not index.isdigit():
                raise StateFormatError(f"the tensor {name!r} has no parameter index")
            state.setdefault(int(index), {})[field] = value
    return state


def _decode_rng(tensors: dict[str, Tensor], data: Any, tensor_file: str) -> dict[str, Any]:
    rng_data = _field(data, "rng", dict, "state")
    py = _field(rng_data, "python", dict, "rng")
    npy = _field(rng_data, "numpy", dict, "rng")
    gauss = _field(py, "gauss_next", (float, int, type(None)), "rng.python")
    pos = _field(npy, "pos", int, "rng.numpy")
    if not 0 <= pos <= 624:
        raise StateFormatError(f"rng.numpy.pos must be in [0, 624] (the MT19937 key position), got {short_repr(pos)}")
    rng: dict[str, Any] = {
        "python": (
            _field(py, "version", int, "rng.python"),
            tuple(_tensor(tensors, "rng.python", torch.int64, tensor_file, 625).tolist()),
            None if gauss is None else float(gauss),
        ),
        "numpy": (
            _field(npy, "kind", str, "rng.numpy"),
            _tensor(tensors, "rng.numpy", torch.int64, tensor_file, 624).numpy().astype(np.uint32),
            pos,
            _field(npy, "has_gauss", int, "rng.numpy"),
            float(_field(npy, "cached", (float, int), "rng.numpy")),
        ),
        "torch": _tensor(tensors, "rng.torch", torch.uint8, tensor_file),
    }
    cuda = _field(rng_data, "cuda_devices", int, "rng")
    if cuda:
        rng["cuda"] = [_tensor(tensors, f"rng.cuda.{i}", torch.uint8, tensor_file) for i in range(cuda)]
    return rng


# ---- global RNG states ---------------------------------------------------------------------------------------------


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
    try:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])  # noqa: NPY002 (restores the global state)
        torch.set_rng_state(state["torch"])
    except (TypeError, ValueError, RuntimeError) as exc:  # a well-typed but impossible state (bad position, size)
        raise StateFormatError(f"the RNG state cannot be restored ({' '.join(str(exc).split())[:200]})") from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- format 1 (``optimizer_rng.pt``), read without running code ----------------------------------------------------


def _numpy_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved the module; either pickles as its own path
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_legacy(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(optimizer state_dict, rng state)`` from a format-1 pickle, through PyTorch's weights-only unpickler.

    That unpickler builds only tensors, plain containers and the allow-listed numpy array pieces; any other global
    (``os.system``, ...) is refused before it is called. The result is then checked like :func:`decode`'s.
    """
    allowed = _numpy_globals()
    scoped = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; 2.4 only has the global list
    if scoped is None:
        torch.serialization.add_safe_globals(allowed)
    with scoped(allowed) if scoped is not None else contextlib.nullcontext():
        extras = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(extras, dict) or set(extras) != {"optimizer", "rng"}:
        raise StateFormatError("expected a dict with 'optimizer' and 'rng'")
    try:
        tensors, data = encode(extras["optimizer"], _checked_legacy_rng(extras["rng"]))
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise StateFormatError(f"not a format-1 optimizer + RNG state ({short_repr(exc, 120)})") from None
    return decode(tensors, data, path.name)


def _checked_legacy_rng(rng: Any) -> dict[str, Any]:
    if not isinstance(rng, dict) or not {"python", "numpy", "torch"} <= set(rng):
        raise StateFormatError("rng must hold python, numpy and torch states")
    py, npy = rng["python"], rng["numpy"]
    if not (isinstance(py, tuple) and len(py) == 3 and isinstance(py[1], tuple)):
        raise StateFormatError("rng.python is not a random.getstate() tuple")
    if not (isinstance(npy, tuple) and len(npy) == 5 and isinstance(npy[1], np.ndarray)):
        raise StateFormatError("rng.numpy is not a numpy get_state() tuple")
    if not isinstance(rng["torch"], Tensor):
        raise StateFormatError("rng.torch is not a tensor")
    return rng


__all__ = ["StateFormatError", "decode", "encode", "load_legacy", "rng_state", "set_rng_state"]
