"""Which precision a run uses: bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere.

``--bf16 auto`` turns autocast on for CUDA and for CPUs with AVX512-BF16 or AMX-BF16 (oneDNN then runs the matmuls
in bf16 at 2-3x the fp32 speed, issue 16); on other CPUs bf16 is emulated and slower than fp32, so it stays off.
Only the forward's matmuls run in bf16: trainable parameters, their gradients, the optimizer state and the loss
(computed from upcast logits, ``forward.label_loss``) stay fp32. The frozen backbone's matmul weights get a bf16
copy made once (``frozen_weights.py``) instead of autocast's cast at every call: the same numbers, cast once. The
output layer computes in fp32 (``output_head.py``, ``--lm-head``): bf16 logits are too coarse to learn from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .frozen_weights import cache_frozen_bf16
from .output_head import fp32_output_head

# /proc/cpuinfo flag names (Linux) of the instructions that compute bf16 dot products natively.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU feature flags the kernel reports, or None where there is no /proc/cpuinfo (macOS, Windows)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def _torch_probe() -> bool:
    """torch's own cpuinfo check (private API, so guarded): used where /proc/cpuinfo is missing."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # a private probe that changed or fails: treat as "not known to be native"
            continue
    return False


def cpu_has_native_bf16(
    flags: frozenset[str] | None = None,
    capability: str | None = None,
    probe: Callable[[], bool] = _torch_probe,
) -> bool:
    """True when this CPU computes bf16 natively AND torch's kernels use AVX-512 (ATEN_CPU_CAPABILITY may lower it).

    ``flags`` defaults to /proc/cpuinfo's flags, ``capability`` to ``torch.backends.cpu.get_cpu_capability()``;
    both are parameters so the decision can be tested without the hardware.
    """
    if capability is None:
        capability = torch.backends.cpu.get_cpu_capability()
    if "AVX512" not in capability.upper() and "AMX" not in capability.upper():
        return False
    if flags is None:
        flags = cpu_flags()
    if flags is not None:
        return bool(flags & NATIVE_BF16_FLAGS)
    return probe()


def use_bf16(setting: str, device: torch.device, native_cpu: Callable[[], bool] = cpu_has_native_bf16) -> bool:
    """``--bf16`` (auto | on | off) on ``device`` -> whether the forward runs under bf16 autocast."""
    if setting == "off" or device.type not in ("cuda", "cpu"):  # forward.autocast covers CUDA and CPU only
        return False
    return setting == "on" or device.type == "cuda" or native_cpu()


def prefer_fast_attention(model: torch.nn.Module, bf16: bool, device: torch.device) -> bool:
    """Under bf16 autocast on a CPU, run a model's attention in eager mode instead of SDPA; returns whether it did.

    PyTorch's CPU flash-attention kernel is slow in bf16, its backward most of all: on SmolLM2-135M (batch 8 x ~40
    tokens, 2026-11-30, quiet 2-core EPYC) a bf16 train step took 0.99 s with SDPA and 0.63 s with eager attention
    (1.36 s vs 1.06 s at 1 thread), while in fp32 SDPA was the faster one. Only models that run SDPA are switched;
    the math is the same softmax(QK^T)V, so results agree to rounding (tests/test_fast_attention.py).
    """
    config = getattr(model, "config", None)
    if not bf16 or device.type != "cpu" or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation("eager")
    return True


def prepare_model(model: torch.nn.Module, config: Any, bf16: bool, device: torch.device, trains_backbone: bool) -> None:
    """What a run's precision asks of the backbone, the same for training and for ``superpos evaluate``/``predict``:
    the fp32 output head (``--lm-head``), bf16 copies of the frozen weights, eager attention (``--attention``)."""
    fp32_output_head(model, config.lm_head == "fp32")  # before the cache, which then leaves the head alone
    cache_frozen_bf16(model, bf16 and not trains_backbone)  # casts once, not per call
    if config.attention == "auto":
        prefer_fast_attention(model, bf16, device)


def precision_name(bf16: bool) -> str:
    """What results.json records: ``bf16-autocast`` or ``fp32``."""
    return "bf16-autocast" if bf16 else "fp32"


__all__ = [
    "NATIVE_BF16_FLAGS",
    "cpu_flags",
    "cpu_has_native_bf16",
    "precision_name",
    "prefer_fast_attention",
    "prepare_model",
    "use_bf16",
]
