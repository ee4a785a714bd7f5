"""One forward pass of the frozen model with the method's prompt, returning logits at the label positions only.

Causal models get explicit position ids from the extended mask (``cumsum - 1``, the formula Hugging Face's
``generate`` uses), so the prompt sits at positions ``0..n-1`` and the text right after it whatever the padding:
a row's result does not depend on the batch it is in. Seq2seq models read the prompt in the encoder only.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from .collate import IGNORE_INDEX, Batch
from .methods import Method


def position_ids_from_mask(mask: Tensor) -> Tensor:
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 0)


@lru_cache(maxsize=32)
def _accepts_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


def label_logits(method: Method, batch: Batch) -> Tensor:
    """Logits predicting each entry of ``batch.labels``: ``[B, T, V]`` aligned with the labels."""
    loaded = method.loaded
    model = loaded.model
    embeds, mask = method.embed(batch.input_ids, batch.attention_mask)
    if loaded.is_encoder_decoder:
        out = model(
            inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=batch.decoder_input_ids, use_cache=False
        )
        return out.logits
    keep = batch.labels.shape[1]
    kwargs = {"logits_to_keep": keep + 1} if _accepts_logits_to_keep(type(model)) else {}
    out = model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False, **kwargs
    )
    # Position t predicts token t+1: the last K labels are predicted by positions -K-1 .. -2.
    return out.logits[:, -(keep + 1) : -1]


def label_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the label tokens (fp32, whatever the autocast dtype)."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


def label_logprob_sums(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-row sum of log p(label token): the score a label word gets when ranking."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    valid = labels != IGNORE_INDEX
    picked = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (picked * valid).sum(dim=1)


__all__ = ["label_logits", "label_logprob_sums", "label_loss", "position_ids_from_mask"]
