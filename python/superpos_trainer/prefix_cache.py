"""The soft prompt's keys/values, computed once per evaluation and shared by every batch (decoder-only models).

During evaluation the prompt is constant and, in a causal model, sits at positions ``0..n-1`` in front of every
row (``forward.position_ids_from_mask``): its keys/values in every layer are the same for every example. They are
computed once (batch 1) and each batch gets a copy repeated to its size (``batch_repeat_interleave``), so a batch
runs only its text. The text then continues with the mask ``[1]*n + text mask`` and the positions the uncached
forward would give it, so every logit is the one the uncached forward computes (up to float summation order).

Seq2seq models read the prompt in a bidirectional encoder, where the prompt's states depend on the text: nothing
of it can be cached across examples there (``PromptPrefix.for_model`` returns None).

Transformers renamed the cache argument and output field from ``past_key_values`` to ``cache`` (5.x); the
helpers here use whichever name the loaded model's ``forward`` accepts.
"""

from __future__ import annotations

import copy
import inspect
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from .methods import Method


@lru_cache(maxsize=32)
def cache_kwarg(model_cls: type) -> str:
    """``cache`` (transformers >= 5) or ``past_key_values`` (4.x): the forward's name for the KV cache."""
    return "cache" if "cache" in inspect.signature(model_cls.forward).parameters else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache a forward returned (``out.cache`` in transformers 5, ``out.past_key_values`` before)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def prompt_embeddings(method: Method, device: torch.device) -> Tensor:
    """The ``[1, n, d]`` prompt exactly as ``method.embed`` prepends it (through the method's public interface)."""
    ids = torch.zeros(1, 1, dtype=torch.long, device=device)  # any token: only the prompt part is kept
    embeds, _ = method.embed(ids, torch.ones_like(ids))
    return embeds[:, : method.num_prompt_tokens]


def supports_prefix_cache(model: Any) -> bool:
    """Decoder-only models with a key/value cache (stateful ones, e.g. Mamba, keep a state that cannot be copied)."""
    config = getattr(model, "config", None)
    return not getattr(config, "is_encoder_decoder", False) and not getattr(model, "_is_stateful", False)


class PromptPrefix:
    """The prompt's KV cache (batch 1) of one evaluation; ``for_batch`` hands out independent, expanded copies."""

    def __init__(self, model: Any, num_prompt_tokens: int, cache: Any) -> None:
        self.model, self.num_prompt_tokens, self._cache = model, num_prompt_tokens, cache

    @classmethod
    def for_model(cls, method: Method, device: torch.device) -> PromptPrefix | None:
        """Run the prompt once (call under inference_mode and the evaluation's autocast); None where unsupported."""
        model = method.loaded.model
        if not supports_prefix_cache(model):
            return None
        n = method.num_prompt_tokens
        if n == 0:  # full fine-tuning: no prompt, every row starts with its text
            return cls(model, 0, None)
        prompt = prompt_embeddings(method, device)
        out = model(
            inputs_embeds=prompt,
            attention_mask=torch.ones(1, n, dtype=torch.long, device=device),
            position_ids=torch.arange(n, device=device).unsqueeze(0),
            use_cache=True,
        )
        return cls(model, n, output_cache(out))

    def for_batch(self, batch_size: int) -> Any:
        """A fresh cache holding the prompt for ``batch_size`` rows (the model appends to it; the original stays)."""
        if self._cache is None:
            return None
        cache = copy.deepcopy(self._cache)
        cache.batch_repeat_interleave(batch_size)
        return cache

    def extend_mask(self, mask: Tensor) -> Tensor:
        """``[1]*n + mask``: the attention mask over prompt + text that a cached forward needs."""
        ones = torch.ones(mask.shape[0], self.num_prompt_tokens, dtype=mask.dtype, device=mask.device)
        return torch.cat([ones, mask], dim=1)

    def cache_kwargs(self, batch_size: int) -> dict[str, Any]:
        """``{cache-argument-name: expanded copy}`` for a forward or ``generate`` call (empty without a prompt)."""
        cache = self.for_batch(batch_size)
        return {} if cache is None else {cache_kwarg(type(self.model)): cache}


__all__ = ["PromptPrefix", "cache_kwarg", "output_cache", "prompt_embeddings", "supports_prefix_cache"]
