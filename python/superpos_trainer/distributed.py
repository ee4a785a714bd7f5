"""Data-parallel training on PyTorch's own engine: ``torch.distributed`` process group + ``DistributedDataParallel``.

``torchrun --nproc_per_node N $(which superpos) train ...`` runs the same command in N processes; torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, :func:`process_group` reads them
(backend ``nccl`` on CUDA, ``gloo`` on the CPU). Without them everything here is a no-op: one process, rank 0.

Semantics, chosen so that N processes train exactly the model one process trains with the same options:

* ``--batch-size`` is the GLOBAL batch. Every rank builds the same global batch order (a pure function of seed and
  epoch) and trains on its strided share of each global micro-batch (:func:`shard`): ``batch_size / N`` rows each.
* The loss is the mean over the label tokens of the whole global micro-batch, not a mean of per-rank means: each
  rank scales its local mean by ``local_tokens * N / global_tokens`` (one all-reduce of two scalars per micro-batch,
  :func:`global_mean_loss`) before DDP averages the gradients. The logged loss is that global mean on every rank.
* A global micro-batch with fewer rows than ranks (the last one of an epoch) leaves some ranks without rows; they
  still run one real row with weight 0 so DDP's gradient all-reduce sees every rank (no hang, no contribution).
* Evaluation is sharded the same way and the predictions are gathered back into the original order, each example
  exactly once (no padding duplicates, :func:`gather_in_order`, called by ``evaluate.evaluate``); every rank
  computes the same metrics.
* Only rank 0 touches the run folder; what the others need from it (the resolved run folder, the checkpoint on
  resume) rank 0 reads and broadcasts (:func:`run_on_main`), so a multi-node run needs no shared file system.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .collate import IGNORE_INDEX
from .errors import ConfigError, SuperposError, short_repr, user_error

T = TypeVar("T")


# ---- process group -----------------------------------------------------------------------------------------------


def launched_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when not launched by it)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        raise ConfigError(
            f"WORLD_SIZE={short_repr(os.environ['WORLD_SIZE'])} is not an integer; launch with torchrun"
        ) from None


def _wants_cuda(device: str) -> bool:
    kind = device.split(":", 1)[0]
    return torch.cuda.is_available() and (kind == "cuda" or kind == "auto")


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[None]:
    """Join the process group torchrun describes (nccl for CUDA, gloo for the CPU); leave it on exit."""
    if launched_world_size() == 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run a single process (without torchrun)")
    backend = "nccl" if _wants_cuda(device) else "gloo"
    if backend == "nccl":  # before init: NCCL binds each process to its own GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, CUDA means this process's own GPU ``cuda:LOCAL_RANK``."""
    if world_size() == 1 or device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index is not None and device.index != local:
        raise ConfigError(
            f"--device {device} pins every process to one GPU; under torchrun pass --device cuda (or auto): "
            f"process LOCAL_RANK={local} then uses cuda:{local}"
        )
    return torch.device("cuda", local)


# ---- training ------------------------------------------------------------------------------------------------------


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DDP around the loss module when several processes train; the module itself otherwise."""
    if world_size() == 1:
        return module
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # No buffer sync per forward: the only buffers are frozen (sampled ids, rotary tables); nothing updates them.
    # (torch >= 2.13 renames broadcast_buffers to forward_sync_buffers; both still sync once at construction.)
    params = inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def shard(indices: Sequence[int], rank_: int, world: int) -> list[int]:
    """This rank's strided share of one global micro-batch (may be empty when it has fewer rows than ranks)."""
    return list(indices[rank_::world])


def global_mean_loss(local_mean: Tensor, labels: Tensor, has_rows: bool = True) -> tuple[Tensor, Tensor]:
    """``(loss to backpropagate on this rank, global mean loss)`` for one global micro-batch.

    With DDP averaging the gradients over N ranks, backpropagating ``local_mean * n_local * N / n_global`` gives the
    gradient of the mean over all ``n_global`` label tokens: what one process computes on the whole batch.
    """
    world = world_size()
    if world == 1:
        return local_mean, local_mean.detach()
    n_local = (labels != IGNORE_INDEX).sum().to(torch.float32) * float(has_rows)
    # torch.where, not a product: a weight-0 row must not turn a non-finite local loss into NaN for everyone.
    contribution = torch.where(n_local > 0, local_mean.detach().float() * n_local, torch.zeros_like(n_local))
    stats = torch.stack([contribution, n_local])
    dist.all_reduce(stats)
    total = stats[1].clamp_min(1.0)
    return local_mean * (n_local * world / total), stats[0] / total


# ---- rank 0 reads, everyone gets it --------------------------------------------------------------------------------


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def run_on_main(fn: Callable[[], T]) -> T:
    """Call ``fn`` on rank 0 only and hand its result (or its error) to every rank."""
    if world_size() == 1:
        return fn()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            payload[0] = ("ok", _to_cpu(fn()))
        except Exception as exc:  # every rank must learn of it, or the others wait forever
            error = exc
            line = user_error(exc)  # the same rule as the CLI: a user error stays one line, a bug stays a bug
            payload[0] = ("error", line is not None, line if line is not None else " ".join(str(exc).split()))
    dist.broadcast_object_list(payload, src=0)
    if error is not None:
        raise error
    if payload[0][0] == "error":
        _, is_user_error, message = payload[0]
        raise (SuperposError if is_user_error else RuntimeError)(f"(rank 0 failed) {message}")
    return payload[0][1]


# ---- evaluation ----------------------------------------------------------------------------------------------------


def gather_in_order(positions: Sequence[int], values: Sequence[Any], total: int) -> list[Any]:
    """Every rank's ``(positions, values)`` put back into one list of ``total`` entries, each filled exactly once."""
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, (list(positions), list(values)))
    out: list[Any] = [None] * total
    filled = [False] * total
    for pos, vals in parts:
        for p, v in zip(pos, vals, strict=True):
            if filled[p]:
                raise RuntimeError(f"evaluation example {p} came back from two ranks; the eval sharding is broken")
            out[p], filled[p] = v, True
    if not all(filled):
        missing = [p for p, f in enumerate(filled) if not f]
        raise RuntimeError(f"evaluation examples {missing[:5]} came back from no rank")
    return out


__all__ = [
    "gather_in_order",
    "global_mean_loss",
    "is_main",
    "launched_world_size",
    "local_device",
    "process_group",
    "rank",
    "run_on_main",
    "shard",
    "world_size",
    "wrap",
]
