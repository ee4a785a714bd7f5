"""The public fused op and the one place that picks its backend.

Backends, each computing ``[P | X]`` (see :mod:`superpos_kernels.reference`) with a hand-written backward:

* ``"triton"``  - :mod:`superpos_kernels.triton_ops`, the default for CUDA tensors (CPU only under
  ``TRITON_INTERPRET=1``, which is how CI tests it).
* ``"cpp"``     - :mod:`superpos_kernels.cpp_ops`, the C++ extension built from ``csrc/``: the default for CPU
  tensors, and for CUDA tensors when Triton is missing but the CUDA extension was built.
* ``"reference"`` - plain PyTorch, always available.

Force a backend with the ``backend=`` argument or the ``SUPERPOS_BACKEND`` environment variable;
:func:`last_backend` reports which one ran, so tests can assert it.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .reference import extend_attention_mask, superpos_embed_reference
from .validation import check_embed_inputs, check_id_range

BACKENDS = ("triton", "cpp", "reference")
ENV_VAR = "SUPERPOS_BACKEND"

# name -> module that provides ``is_available(device) -> (bool, reason)`` and ``superpos_embed(...)``.
_BACKEND_MODULES = {"triton": "superpos_kernels.triton_ops", "cpp": "superpos_kernels.cpp_ops"}
_last_backend: str | None = None
_warned: set[str] = set()


def _backend_module(name: str):
    try:
        return importlib.import_module(_BACKEND_MODULES[name]), ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def backend_status(name: str, device: torch.device | str = "cpu") -> tuple[bool, str]:
    """``(available, reason)`` of one backend for tensors on ``device``."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "reference":
        return True, ""
    module, reason = _backend_module(name)
    if module is None:
        return False, reason
    return module.is_available(torch.device(device))


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The backends that can run on ``device``, fastest first."""
    return [name for name in BACKENDS if backend_status(name, device)[0]]


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def select_backend(device: torch.device | str, requested: str | None = None) -> str:
    """The backend for tensors on ``device``: ``requested``, else ``$SUPERPOS_BACKEND``, else the fastest."""
    return _select(torch.device(device).type, requested)


# torch.compile calls this at trace time and bakes the answer into the graph as a constant: the imports and
# environment reads below cannot be traced, and the choice is fixed for a device type anyway.
@torch.compiler.assume_constant_result
def _select(device_type: str, requested: str | None) -> str:
    device = torch.device(device_type)
    forced = requested or os.environ.get(ENV_VAR) or None
    if forced is not None:
        ok, reason = backend_status(forced, device)
        if not ok:
            raise RuntimeError(
                f"superpos backend {forced!r} was requested (argument or ${ENV_VAR}) but is unavailable on "
                f"{device.type}: {reason}. Available here: {available_backends(device)}"
            )
        return forced
    preference = ("triton", "cpp") if device.type == "cuda" else ("cpp",)
    for name in preference:
        ok, reason = backend_status(name, device)
        if ok:
            return name
        _warn_once(
            f"{name}:{device.type}",
            f"superpos_kernels: the {name} backend is unavailable on {device.type} ({reason}); "
            "falling back to a slower path",
        )
    return "reference"


def last_backend() -> str | None:
    """Which backend the most recent :func:`superpos_embed` call used (``None`` before the first call)."""
    return _last_backend


def _embed_fn(name: str) -> Callable[..., Tensor]:
    if name == "reference":
        return superpos_embed_reference
    # Already imported by _select (backend_status): a plain module attribute lookup, which dynamo can trace.
    return sys.modules[_BACKEND_MODULES[name]].superpos_embed


def superpos_embed(
    input_ids: Tensor,
    weight: Tensor,
    w: Tensor,
    E: Tensor,
    attention_mask: Tensor | None = None,
    embed_scale: float = 1.0,
    backend: str | None = None,
) -> tuple[Tensor, Tensor]:
    """The fused SuperPos op: ``(inputs_embeds [B, n + L, d], attention_mask [B, n + L])``.

    Gathers the rows of ``weight`` for ``input_ids`` (times ``embed_scale``), superposes the prompt
    ``P[i] = sum_j w[i, j] E[i, j]`` and writes ``[P | X]``; gradients flow to ``w`` and ``E`` only.
    """
    global _last_backend
    # The id range is left to the backend: the fused kernels check each id where they read it (no extra pass
    # over the ids, and the check runs under torch.compile too, inside the op); the reference checks here, and so
    # does the C++ op on CUDA, whose kernel can only stop with a device-side assert (no message, a dead context).
    input_ids, attention_mask, weight, w, E, embed_scale = check_embed_inputs(
        input_ids, attention_mask, weight, w, E, embed_scale, check_range=False
    )
    name = _select(weight.device.type, backend)
    _last_backend = name
    if name == "reference" or (name == "cpp" and input_ids.is_cuda):
        check_id_range(input_ids, weight.shape[0])
    embeds = _embed_fn(name)(input_ids, weight, w, E, embed_scale)
    return embeds, extend_attention_mask(attention_mask, input_ids, w.shape[0])
