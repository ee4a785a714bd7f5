"""The C++ (CPU, and CUDA where it was compiled) backend of the fused op: ``torch.ops.superpos.embed_forward``.

The kernels live in ``csrc/`` and register themselves with ``TORCH_LIBRARY(superpos, ...)`` when their shared
library is loaded. This module loads it once, at import:

1. the extension ``superpos_kernels._C`` that ``pip install`` built ahead of time (setup.py), else
2. a JIT build of ``csrc/`` with :func:`torch.utils.cpp_extension.load` (needs a C++ compiler and ninja; skipped
   when ``SUPERPOS_NO_JIT=1``), else
3. nothing: :func:`is_available` says why, and :mod:`superpos_kernels.ops` falls back to the reference with one
   warning. Importing this module never raises.

It then adds what the C++ side leaves to Python: fake (meta) kernels for ``torch.compile``. The autograd formula
is C++ too (``csrc/autograd.cpp``), so a grad-enabled call never enters Python below ``superpos_embed``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import Tensor

from .registration import register_fused_op

CSRC = Path(__file__).resolve().parent.parent / "csrc"
JIT_NAME = "superpos_kernels_jit"
NO_JIT_ENV = "SUPERPOS_NO_JIT"
# The same flags as setup.py: without -fopenmp on both lines at::parallel_for silently runs on one thread.
CXX_FLAGS = ["-O3", "-fopenmp"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _jit_build() -> str:
    """Compiles ``csrc/`` into a library and loads it (which runs its operator registrations); returns how."""
    from torch.utils.cpp_extension import CUDA_HOME, load

    sources = [str(p) for p in sorted(CSRC.glob("*.cpp"))]
    if not sources:
        raise FileNotFoundError(f"no C++ sources in {CSRC} (csrc/ ships with a source checkout, not with a wheel)")
    cuda_sources = [str(p) for p in sorted(CSRC.glob("*.cu"))]
    with_cuda = bool(cuda_sources) and CUDA_HOME is not None and torch.cuda.is_available()
    load(
        name=JIT_NAME,
        sources=sources + (cuda_sources if with_cuda else []),
        extra_cflags=CXX_FLAGS,
        extra_cuda_cflags=NVCC_FLAGS,
        extra_ldflags=LINK_FLAGS,
        with_cuda=with_cuda,
        is_python_module=False,
    )
    return f"JIT build of {CSRC}" + (" (with CUDA)" if with_cuda else "")


def _load_library() -> tuple[bool, str]:
    """``(loaded, how)`` or ``(False, why not)``; never raises."""
    try:
        importlib.import_module("superpos_kernels._C")
        return True, "prebuilt superpos_kernels._C"
    except Exception as exc:  # ImportError, or an OSError from a library built against another torch
        missing = f"the prebuilt extension superpos_kernels._C could not be loaded ({_first_line(exc)})"
    if os.environ.get(NO_JIT_ENV) == "1":
        return False, f"{missing}; the JIT build is disabled by {NO_JIT_ENV}=1"
    try:
        return True, _jit_build()
    except Exception as exc:
        return False, f"{missing}; the JIT build failed too ({_first_line(exc)})"


def _register_python_parts() -> None:
    """Fake kernels (shape/dtype only, for torch.compile and opcheck); the autograd formula is C++."""
    register_fused_op("superpos::embed_forward", "superpos::embed_backward", None)


LOADED, LOAD_INFO = _load_library()
if LOADED:
    _register_python_parts()


def has_cuda_kernels() -> bool:
    """Whether the loaded extension registered CUDA kernels (built by setup.py only where nvcc and CUDA exist)."""
    return LOADED and torch._C._dispatch_has_kernel_for_dispatch_key("superpos::embed_forward", "CUDA")


def is_available(device: torch.device) -> tuple[bool, str]:
    """``(True, "")`` if the C++ op can run on tensors of ``device``, else ``(False, reason)``."""
    if not LOADED:
        return False, LOAD_INFO
    device = torch.device(device)
    if device.type == "cpu":
        return True, ""
    if device.type == "cuda":
        if has_cuda_kernels():
            return True, ""
        return False, "the C++ extension was built without CUDA kernels (no nvcc or no CUDA torch at build time)"
    return False, f"the C++ extension has no kernels for {device.type} tensors"


def openmp_threads(work_items: int = 64) -> int:
    """How many threads a parallel loop of the extension really uses (1 means it was built without OpenMP)."""
    return int(torch.ops.superpos._openmp_threads(work_items))


def superpos_embed(input_ids: Tensor, weight: Tensor, w: Tensor, E: Tensor, embed_scale: float = 1.0) -> Tensor:
    """``[P | X]`` of shape ``[B, n + L, d]``, differentiable w.r.t. ``w`` and ``E`` (inputs validated by ops.py)."""
    return torch.ops.superpos.embed_forward(input_ids, weight, w, E, float(embed_scale))
