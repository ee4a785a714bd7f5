"""Padding-free training batches for causal LMs (``--padding-free``): a batch's rows laid end to end in ONE row.

A training batch is padded to its longest row; on SST-2 with SmolLM2-135M about a third of a padded batch's
positions are padding (the soft prompt included), and on a CPU every position costs a full pass through every
matmul. Here the padded ``[B, S, d]`` input embeddings keep only their real positions, concatenated into
``[1, T, d]``, and each row's position ids restart at 0. Hugging Face's mask builder (``masking_utils``, used by the
Llama/Gemma/... families in transformers >= 4.5x) reads restarting position ids with no attention mask as packed
sequences and makes the causal mask block-diagonal, so every example still attends only to itself (and its own
prompt): the same function as the padded batch, to rounding (tests/test_padding_free.py compares losses and
gradients). TRL calls the same idea ``padding_free``; unlike packing it never changes which examples form a batch.

The price is attention over T x T pairs instead of B x S x S (most of them masked off). ``auto`` flattens a batch
only when a cost model of the backbone (matmul multiply-adds per position, attention multiply-adds per pair) says
it is cheaper, and only on CPUs, where the work is compute-bound and this was measured; on CUDA a dense mask would
also take the fused attention kernels away. Seq2seq models (T5) never flatten: their encoder is bidirectional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError

# Eager attention does more than its multiply-adds per (query, key) pair: the mask add, the softmax's exp and sum,
# dtype casts, each a pass over the T x T scores in every head of every layer. bench/padding_free_speed.py
# (SmolLM2-135M, bf16, 1 thread, 2026-11-30) fits ~3x over five batch shapes, but padded matmuls also run faster
# per position at larger shapes, so the break-even lies higher: at 5 the policy keeps the one measured near-tie
# (RTE-like lengths, flat/padded 1.01) padded and still flattens SST-2-like batches (0.84) and batches with one
# long row (0.44).
ATTENTION_PAIR_OVERHEAD = 5.0


@dataclass(frozen=True)
class FlattenPolicy:
    """When to flatten a batch: always (``on``) or when the cost model says it is cheaper (``auto``)."""

    always: bool
    position_cost: float  # multiply-adds per position in the backbone's linear layers (all layers)
    pair_cost: float  # multiply-adds per attended (query, key) pair (QK^T and AV, all layers)

    def worth_it(self, lengths: Tensor) -> bool:
        """Flatten rows of these real ``lengths``? (padded: B x max; flattened: one row of sum(lengths))."""
        if self.always:
            return True
        rows, longest, total = lengths.numel(), int(lengths.max()), int(lengths.sum())
        padded = rows * longest * (self.position_cost + longest * self.pair_cost)
        flat = total * (self.position_cost + total * self.pair_cost)
        return flat < padded


def _linear_macs_per_position(model: nn.Module) -> float:
    """Multiply-adds per position in every Linear of the backbone except the output head (computed on labels only)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return float(sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and m is not head))


def _attention_macs_per_pair(config: Any) -> float:
    """QK^T and AV: 2 x (heads x head_dim) multiply-adds per (query, key) pair in each layer."""
    text = getattr(config, "text_config", None) or config
    heads = getattr(text, "num_attention_heads", None)
    head_dim = getattr(text, "head_dim", None) or (text.hidden_size // heads if heads else 0)
    layers = getattr(text, "num_hidden_layers", 0)
    return float(2 * (heads or 0) * head_dim * layers) * ATTENTION_PAIR_OVERHEAD


def flatten_policy(setting: str, loaded: Any, device: torch.device) -> FlattenPolicy | None:
    """``--padding-free`` (auto | on | off) for this model and device -> a policy, or None (never flatten)."""
    if setting == "off":
        return None
    if loaded.is_encoder_decoder:
        if setting == "on":
            raise ConfigError(
                f"--padding-free on needs a decoder-only (causal) model; {loaded.name} is encoder-decoder, whose "
                "encoder attends both ways: use --padding-free auto or off"
            )
        return None
    if setting == "auto" and device.type != "cpu":
        return None
    model = loaded.model
    return FlattenPolicy(setting == "on", _linear_macs_per_position(model), _attention_macs_per_pair(model.config))


def flatten(embeds: Tensor, mask: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[B, S, d]`` embeddings with their ``[B, S]`` mask and position ids -> ``([1, T, d], [1, T], ends [B])``:
    the real positions of every row in order, their position ids (restarting at each row), and the index in the
    flat row of each row's last position."""
    keep = mask.bool()
    ends = keep.sum(dim=1).cumsum(dim=0) - 1
    return embeds[keep].unsqueeze(0), position_ids[keep].unsqueeze(0), ends


def label_positions(ends: Tensor, keep: int) -> Tensor:
    """Flat indices of the positions predicting each row's last ``keep`` tokens: ``end - keep .. end - 1``.

    A row shorter than ``keep + 1`` (its labels there are -100, never scored) would reach into the row before it;
    those indices are clamped to 0 and their logits are ignored by the loss and the rank scores alike.
    """
    offsets = torch.arange(keep, device=ends.device) - keep
    return (ends.unsqueeze(1) + offsets).clamp_min(0).flatten()


__all__ = ["ATTENTION_PAIR_OVERHEAD", "FlattenPolicy", "flatten", "flatten_policy", "label_positions"]
