"""End-to-end bench settings and the machine they ran on: sizes (``SUPERPOS_E2E_*``), device, threads, environment."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ENV_PREFIX = "SUPERPOS_E2E_"
DEVICE_ENV = "SUPERPOS_BENCH_DEVICE"
THREADS_ENV = "SUPERPOS_BENCH_THREADS"


@dataclass(frozen=True)
class E2ESettings:
    """Sizes and repetitions; every field can be overridden by ``SUPERPOS_E2E_<FIELD>`` (e.g. SUPERPOS_E2E_ROUNDS)."""

    batch_size: int = 8
    seq_len: int = 64  # input tokens per row; the soft prompt comes on top
    eval_batch_size: int = 32  # fixed-shape evaluation batch
    epoch_eval_batch_size: int = 64  # real task: the trainer's default --eval-batch-size
    num_prompt_tokens: int = 10
    num_sampled_tokens: int = 128
    max_new_tokens: int = 5
    warmup: int = 3  # untimed steps per provider before timing (after one checked step each)
    # Interleaving at step granularity: each round is one step of every provider (rotating order), so the per-round
    # ratios compare steps taken seconds apart, and load spikes on a shared machine hit every provider alike.
    rounds: int = 15
    steps: int = 1  # timed steps per provider per round (rounds * steps timed steps in all)
    eval_rounds: int = 3  # timed evaluation batches per provider (one per round)
    epoch_examples: int = 256  # real-task slice (SST-2 train); 32 steps of 8
    epoch_eval_examples: int = 128  # real-task evaluation slice (SST-2 validation)
    epoch_rounds: int = 2
    max_length: int = 128  # real task: encoder tokens INCLUDING the soft prompt (the trainer's --max-length)
    max_target_length: int = 8

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> E2ESettings:
        """Defaults, ``SUPERPOS_E2E_LONG=1`` (a longer, steadier run), then per-field overrides."""
        environ = dict(os.environ if environ is None else environ)
        values = asdict(cls())
        if environ.get(ENV_PREFIX + "LONG", "0") not in ("", "0"):
            values.update(warmup=10, rounds=40, eval_rounds=10, epoch_examples=256, epoch_rounds=5)
        for name in values:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a positive integer, got {raw!r}")
            values[name] = value
        return cls(**values)


def bench_device() -> torch.device:
    """``$SUPERPOS_BENCH_DEVICE``, else CUDA when available, else CPU."""
    spec = os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_ENV}={spec} asks for CUDA, but torch sees no CUDA GPU; unset it or use cpu")
    return device


def configure_threads(environ: dict[str, str] | None = None) -> int:
    """``$SUPERPOS_BENCH_THREADS`` intra-op threads for every provider alike (default: torch's choice).

    On a CPU shared with other jobs, 2 OpenMP threads on 2 busy cores spin-wait on each other and a step gets 3-10x
    slower and very noisy; 1 thread then measures the code, not the neighbours.
    """
    raw = (os.environ if environ is None else environ).get(THREADS_ENV, "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}")
        torch.set_num_threads(int(raw))
    return torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft_version,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["load_before"] = [round(x, 2) for x in os.getloadavg()]
    return info
