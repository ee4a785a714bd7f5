"""A bf16 copy of each frozen ``nn.Linear`` weight under bf16 autocast: cast once, not at every call.

Autocast casts an fp32 weight to bf16 at every ``linear`` it feeds and caches the cast only for tensors that require
grad; a frozen backbone's weights do not, so every forward re-cast all of them (8 % of a SmolLM2-135M train step on
CPU, more in evaluation, issue 16). :class:`Bf16CachedLinear` keeps the bf16 copy and hands it to ``F.linear``,
where autocast's cast of an already-bf16 tensor is a no-op. The numbers do not change: autocast's cast is
``tensor.to(torch.bfloat16)`` (round to nearest even), exactly the copy kept here, and the bias is cast the same way
(tests/test_frozen_weights.py checks training and evaluation bit for bit).

The fp32 parameters themselves are untouched (state_dict, parameter counts, the tied embedding table the prompt
gathers from, saved files): the copy is a plain attribute next to them, used only while bf16 autocast is on for
the input's device and neither tensor requires grad; outside autocast (fp32 evaluation) or when the weight trains
(full fine-tuning) the module is an ordinary ``nn.Linear``. The copy is rebuilt when its weight changes (in-place
update, ``load_state_dict``, a move to another device): it is keyed on the tensor's storage, version and device.
The price is memory: 2 bytes per frozen Linear weight element (270 MB on SmolLM2-135M, its tied head included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _key(t: Tensor | None) -> tuple | None:
    # ``_version`` counts in-place writes (copy_, load_state_dict); data_ptr/device catch ``.data =`` and ``.to()``.
    return None if t is None else (t.data_ptr(), t._version, t.device, t.dtype, t.shape)


def bf16_autocast_on(device_type: str) -> bool:
    """Whether ops on ``device_type`` currently run under bf16 autocast."""
    return torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16


class Bf16CachedLinear(nn.Linear):
    """``nn.Linear`` that feeds autocast a bf16 copy of its frozen weight and bias, made once (module docstring)."""

    _bf16_copy: tuple[tuple, Tensor, Tensor | None] | None = None  # (key of (weight, bias), weight, bias)

    def forward(self, input: Tensor) -> Tensor:
        weight, bias = self.weight, self.bias
        frozen = not weight.requires_grad and (bias is None or not bias.requires_grad)
        if frozen and bf16_autocast_on(input.device.type):
            weight, bias = self.bf16_weights()
        return F.linear(input, weight, bias)

    def bf16_weights(self) -> tuple[Tensor, Tensor | None]:
        """The bf16 copies of (weight, bias), made now if the fp32 tensors changed since the last call."""
        key = (_key(self.weight), _key(self.bias))
        if self._bf16_copy is None or self._bf16_copy[0] != key:
            # A normal tensor even when first made during evaluation (an inference tensor could not be saved for
            # the backward of a later training step); no autograd history (the weights are frozen).
            with torch.inference_mode(False), torch.no_grad():
                weight = self.weight.to(torch.bfloat16)
                bias = None if self.bias is None else self.bias.to(torch.bfloat16)
            self._bf16_copy = (key, weight, bias)
        return self._bf16_copy[1], self._bf16_copy[2]


def cache_frozen_bf16(model: nn.Module, enabled: bool) -> int:
    """``enabled`` (the run uses bf16 autocast and does not train the backbone): every plain ``nn.Linear`` of
    ``model`` becomes a :class:`Bf16CachedLinear` (same parameters, same outputs); returns how many are.

    Not ``enabled``: nothing changes (a model converted by an earlier run still computes as an ``nn.Linear``
    outside bf16 autocast or with trainable weights). Only exact ``nn.Linear`` instances: a subclass may read its
    weight elsewhere (``nn.MultiheadAttention``'s ``out_proj``).
    """
    if not enabled:
        return 0
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = Bf16CachedLinear
        count += isinstance(module, Bf16CachedLinear)
    return count


def plain_linears(model: nn.Module) -> int:
    """Undo :func:`cache_frozen_bf16`: every :class:`Bf16CachedLinear` of ``model`` becomes an ``nn.Linear`` again
    (its bf16 copy dropped); returns how many did. For a model that must run as stock code (a baseline)."""
    count = 0
    for module in model.modules():
        if isinstance(module, Bf16CachedLinear):
            module.__dict__.pop("_bf16_copy", None)
            module.__class__ = nn.Linear
            count += 1
    return count


__all__ = ["Bf16CachedLinear", "bf16_autocast_on", "cache_frozen_bf16", "plain_linears"]
