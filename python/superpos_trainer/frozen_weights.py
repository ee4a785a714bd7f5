"""The frozen backbone's matmul weights kept in bf16 while a run uses bf16 autocast: cast once, not at every call.

Autocast casts an fp32 weight to bf16 at every ``linear`` it feeds and caches the cast only for tensors that require
grad; a frozen backbone's weights do not, so each forward re-cast all of them (8 % of a SmolLM2-135M train step on
CPU, issue 16). Stored in bf16, the cast autocast still performs on them is a no-op. The numbers do not change:
autocast's cast is ``tensor.to(torch.bfloat16)`` (round to nearest even), exactly what is stored here, and a bias is
cast along with its weight the same way (tests/test_frozen_weights.py checks training and evaluation bit for bit).

Only ``nn.Linear`` weights and biases that do not require grad are stored in bf16: embedding tables (the prompt
gathers fp32 rows from them) and norms stay fp32. A Linear whose weight is shared with another module (an
``lm_head`` tied to the input embeddings) keeps the shared fp32 parameter untouched and gets its own bf16 copy as a
non-persistent buffer, so the embedding table, ``model.parameters()`` and the parameter counts are what they were.

The fp32 originals are kept on the model (``_superpos_fp32_weights``), so ``keep_frozen_in_bf16(model, False)``
puts them back exactly: a Trainer without bf16 autocast (or one that trains the backbone) built on a model an
earlier Trainer converted computes in fp32 as if nothing happened. A copy made with ``copy.deepcopy`` carries them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

STASH = "_superpos_fp32_weights"  # attribute of the model: the list of what was converted (to undo it)


@dataclass
class _Stored:
    module: nn.Linear
    name: str  # "weight" or "bias"
    original: Tensor  # the fp32 data (converted in place) or the shared fp32 Parameter (tied)
    tied: bool


def _owner_counts(model: nn.Module) -> dict[int, int]:
    """How many (module, name) slots hold each parameter: more than one means it is shared (tied)."""
    counts: dict[int, int] = {}
    for module in model.modules():
        for param in module._parameters.values():
            if param is not None:
                counts[id(param)] = counts.get(id(param), 0) + 1
    return counts


def keep_frozen_in_bf16(model: nn.Module, enabled: bool) -> int:
    """``enabled``: store every frozen ``nn.Linear`` weight and bias of ``model`` in bf16 (once); not ``enabled``:
    restore the fp32 originals of an earlier call. Returns how many tensors are stored in bf16 afterwards.

    Call it with ``enabled`` only when every forward of the model runs under bf16 autocast (a bf16 weight outside
    autocast meets fp32 activations and the matmul fails), and before an optimizer is built over the model.
    """
    stored: list[_Stored] | None = getattr(model, STASH, None)
    if not enabled:
        if stored is not None:
            _restore(model, stored)
        return 0
    if stored is not None:  # converted already (a second Trainer on the same model)
        return len(stored)
    owners = _owner_counts(model)
    stored = []
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        for name in ("weight", "bias"):
            param = module._parameters.get(name)
            if param is None or param.requires_grad or param.dtype != torch.float32:
                continue
            if owners[id(param)] > 1:  # tied: the other owner (the embedding table) keeps the fp32 parameter
                del module._parameters[name]
                module.register_buffer(name, param.detach().to(torch.bfloat16), persistent=False)
                stored.append(_Stored(module, name, param, tied=True))
            else:
                original = param.data
                param.data = original.to(torch.bfloat16)
                stored.append(_Stored(module, name, original, tied=False))
    object.__setattr__(model, STASH, stored)  # a plain attribute: not a submodule, buffer or parameter
    return len(stored)


def _restore(model: nn.Module, stored: list[_Stored]) -> None:
    for entry in stored:
        if entry.tied:
            del entry.module._buffers[entry.name]
            entry.module.register_parameter(entry.name, entry.original)
        else:
            entry.module._parameters[entry.name].data = entry.original
    object.__delattr__(model, STASH)


__all__ = ["STASH", "keep_frozen_in_bf16"]
