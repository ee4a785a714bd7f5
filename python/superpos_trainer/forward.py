"""One forward pass of the frozen model with the method's prompt, returning logits at the label positions only.

Runs under :func:`autocast` (bf16 where ``--bf16`` resolves on, see ``precision.py``); whatever the autocast dtype,
the label logits are upcast to fp32 before the loss or a rank score is computed from them.

Causal models get explicit position ids from the extended mask (``cumsum - 1``, the formula Hugging Face's
``generate`` uses), so the prompt sits at positions ``0..n-1`` and the text right after it whatever the padding:
a row's result does not depend on the batch it is in. Seq2seq models read the prompt in the encoder only.
"""

from __future__ import annotations

import contextlib
import inspect
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .collate import IGNORE_INDEX, Batch
from .methods import Method
from .padding_free import FlattenPolicy, flatten, label_positions


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA and CPU when ``enabled`` (parameters stay fp32: autocast casts per op), else nothing."""
    if enabled and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def decoder_start_fn(model: Any) -> Any:
    """``labels -> decoder_input_ids`` (shift right) for seq2seq models."""
    return lambda labels: model.prepare_decoder_input_ids_from_labels(labels=labels)


def position_ids_from_mask(mask: Tensor) -> Tensor:
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 0)


@lru_cache(maxsize=32)
def _accepts_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


def keep_last_logits(model: torch.nn.Module, keep: int) -> dict[str, int]:
    """``{"logits_to_keep": keep}`` where the model accepts it: only the last ``keep`` positions reach the head."""
    return {"logits_to_keep": keep} if _accepts_logits_to_keep(type(model)) else {}


def label_logits(method: Method, batch: Batch, flat: FlattenPolicy | None = None) -> Tensor:
    """Logits predicting each entry of ``batch.labels``: ``[B, T, V]`` aligned with the labels.

    ``flat`` (causal models, ``--padding-free``): run the batch as one row without padding when the policy says
    so (padding_free.py); the logits are the same to rounding.
    """
    loaded = method.loaded
    model = loaded.model
    embeds, mask = method.embed(batch.input_ids, batch.attention_mask)
    if loaded.is_encoder_decoder:
        out = model(
            inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=batch.decoder_input_ids, use_cache=False
        )
        return out.logits
    keep = batch.labels.shape[1]
    positions = position_ids_from_mask(mask)
    if flat is not None and flat.worth_it(mask.sum(dim=1)):
        embeds, positions, ends = flatten(embeds, mask, positions)
        wanted = label_positions(ends, keep)
        # No attention mask: Hugging Face then reads the restarting position ids as packed rows (block-diagonal).
        kwargs = {"logits_to_keep": wanted} if _accepts_logits_to_keep(type(model)) else {}
        logits = model(inputs_embeds=embeds, attention_mask=None, position_ids=positions, use_cache=False, **kwargs)
        logits = logits.logits[0] if kwargs else logits.logits[0, wanted]
        return logits.view(len(batch), keep, -1)
    out = model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        use_cache=False,
        **keep_last_logits(model, keep + 1),
    )
    # Position t predicts token t+1: the last K labels are predicted by positions -K-1 .. -2.
    return out.logits[:, -(keep + 1) : -1]


def label_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the label tokens (fp32, whatever the autocast dtype)."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


def label_token_logprobs(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(log p(label token) [.., T], valid [.., T])`` in fp32; positions with label -100 hold 0 and valid False."""
    logits = logits.float()
    valid = labels != IGNORE_INDEX
    picked = logits.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return picked.masked_fill(~valid, 0.0), valid


__all__ = [
    "autocast",
    "decoder_start_fn",
    "keep_last_logits",
    "label_logits",
    "label_loss",
    "label_token_logprobs",
    "position_ids_from_mask",
]
