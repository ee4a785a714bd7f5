"""The output layer (LM head) in fp32 under bf16 autocast: logits, loss and rank scores at full precision.

Under autocast the head's matmul returns bf16 logits: about 3 significant digits, so a logit near 20 is rounded to a
multiple of 0.125 and softmax probabilities move by up to ~6 %. Upcasting afterwards (``forward.label_loss``) cannot
restore them. Measured on the README's main job (SmolLM2-135M, SST-2, 20 steps, 1 thread, 2026-11-30): bf16 head
0.19 accuracy with 66 % invalid generations; this fp32 head 0.53 / 22 % (seed 0) and 0.50 / 8 % (seed 1), fp32
throughout 0.55 / 11 %. The rest of the model keeps its bf16 matmuls: the head sees only the positions whose logits
are used (``logits_to_keep`` in training and rank scoring, the last position in generation), so fp32 costs little.

``--lm-head autocast`` keeps the model's own head (bf16 under autocast): the behaviour of runs started before this
option, which resume with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Fp32HeadLinear(nn.Linear):
    """``nn.Linear`` that computes in fp32 with autocast off (same parameters; tied weights stay tied)."""

    def forward(self, input: Tensor) -> Tensor:
        # contiguous: models pass a slice of the hidden states (``logits_to_keep``); F.linear on a non-contiguous
        # 3-d input takes a batched-matmul path ~10x slower than one mm (SmolLM2's 49k x 576 head: 404 ms vs 43 ms
        # forward+backward for 8 x 3 positions, 2 threads). Under autocast the cast to bf16 made the copy anyway.
        with torch.autocast(input.device.type, enabled=False):
            bias = None if self.bias is None else self.bias.float()
            return F.linear(input.float().contiguous(), self.weight.float(), bias)


def fp32_output_head(model: nn.Module, enabled: bool) -> bool:
    """``enabled`` (``--lm-head fp32``): the model's output embeddings compute in fp32 on a contiguous input;
    returns whether they now do. Models whose head is not a plain ``nn.Linear`` keep theirs (returns False).

    Also without autocast: an fp32 run computes the same numbers, one mm instead of the slow batched path."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not enabled or head is None:
        return False
    if type(head) is nn.Linear:
        head.__class__ = Fp32HeadLinear
    return isinstance(head, Fp32HeadLinear)


__all__ = ["Fp32HeadLinear", "fp32_output_head"]
