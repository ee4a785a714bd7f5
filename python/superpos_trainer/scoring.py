"""Rank scoring: how well each candidate label word continues each source, with or without recomputation.

A label's score is the mean (default) or sum of log p(label token) over its tokens, EOS included, from fp32 logits.
The sum penalises long labels ("not_entailment" is 5 tokens against "entailment"'s 2; issue 15), the mean per
token does not. A row with a non-finite score has no valid prediction (it counts in ``invalid_rate``).

Two scorers compute the same numbers:

* :class:`UncachedScorer`, the reference: one full forward per (example, label word), ``[P | source | label]``.
* :class:`CachedScorer`: each source once, every label from its keys/values. Causal: the prompt's KV come from a
  :class:`~superpos_trainer.prefix_cache.PromptPrefix` computed once per evaluation, ``[source]`` runs once per
  example on top of it, its last logit predicts every label's first token, and the cache repeated over the
  candidates scores the remaining label tokens in one batched forward. Seq2seq: the encoder runs once per example,
  the decoder once for all its labels (batched, encoder states repeated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .collate import IGNORE_INDEX, Encoded, label_rows, source_batch, train_batch
from .forward import keep_last_logits, label_logits, label_token_logprobs, position_ids_from_mask
from .methods import Method
from .prefix_cache import PromptPrefix, cache_kwarg, output_cache

RANK_SCORES = ("mean", "sum")


def reduce_scores(picked: Tensor, valid: Tensor, how: str) -> Tensor:
    """Per-row label score from token log-probs ``[R, T]``: their mean over valid tokens, or their sum."""
    total = picked.sum(dim=-1)
    if how == "sum":
        return total
    if how == "mean":
        return total / valid.sum(dim=-1).clamp_min(1)
    raise ValueError(f"rank score must be one of {', '.join(RANK_SCORES)}, got {how!r}")


def choose_labels(scores: Tensor, label_words: Sequence[str]) -> list[str]:
    """The best label word per row of ``scores [B, C]``; ``""`` (invalid) where any score is NaN or infinite.

    ``argmax`` over a NaN row returns the first NaN's index: without this check a broken forward would silently
    predict the first label word.
    """
    finite = torch.isfinite(scores).all(dim=1).tolist()
    best = scores.nan_to_num(nan=-torch.inf).argmax(dim=1).tolist()
    return [label_words[j] if ok else "" for j, ok in zip(best, finite, strict=True)]


class Scorer:
    """Scores ``[B, C]`` from the subclass's token log-probabilities ``[B*C, K]`` and the rank score ``how``."""

    how = "mean"

    def token_logprobs(
        self, encoded: Sequence[Encoded], chunk: Sequence[int], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """``(log p [B*C, K], valid [B*C, K])``, row ``b*C + c`` = example ``chunk[b]``, label ``c``."""
        raise NotImplementedError

    def scores(self, encoded: Sequence[Encoded], chunk: Sequence[int], device: torch.device) -> Tensor:
        """``[B, C]``: each label word's score for each example of ``chunk``."""
        picked, valid = self.token_logprobs(encoded, chunk, device)
        return reduce_scores(picked, valid, self.how).view(len(chunk), -1)


class UncachedScorer(Scorer):
    """Reference scoring: ``[P | source | label]`` for every (example, label word), exactly as training sees it."""

    def __init__(self, method: Method, candidates: Sequence[tuple[int, ...]], how: str, decoder_start: Any) -> None:
        self.method, self.candidates, self.how, self.decoder_start = method, list(candidates), how, decoder_start

    def token_logprobs(
        self, encoded: Sequence[Encoded], chunk: Sequence[int], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        loaded = self.method.loaded
        rows = [Encoded(encoded[i].source_ids, c) for i in chunk for c in self.candidates]
        batch = train_batch(
            rows, range(len(rows)), loaded.tokenizer.pad_token_id, loaded.is_encoder_decoder, self.decoder_start
        ).to(device)
        return label_token_logprobs(label_logits(self.method, batch), batch.labels)


class CachedScorer(Scorer):
    """Each source encoded once; all label words scored from its cached states (see the module docstring)."""

    def __init__(
        self,
        method: Method,
        candidates: Sequence[tuple[int, ...]],
        how: str,
        decoder_start: Any,
        prefix: PromptPrefix | None,
    ) -> None:
        self.method, self.how, self.decoder_start, self.prefix = method, how, decoder_start, prefix
        self.labels = label_rows(candidates)  # [C, K], right-padded with -100

    def token_logprobs(
        self, encoded: Sequence[Encoded], chunk: Sequence[int], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        loaded = self.method.loaded
        batch = source_batch(encoded, chunk, loaded.tokenizer.pad_token_id, loaded.is_encoder_decoder).to(device)
        labels = self.labels.to(device).repeat(len(chunk), 1)  # row b*C + c: example b, candidate c
        if loaded.is_encoder_decoder:
            logits = self._seq2seq_logits(batch.input_ids, batch.attention_mask, labels)
        else:
            logits = self._causal_logits(batch.input_ids, batch.attention_mask, labels)
        return label_token_logprobs(logits, labels)

    def _seq2seq_logits(self, ids: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        model, repeats = self.method.loaded.model, self.labels.shape[0]
        embeds, mask = self.method.embed(ids, mask)
        hidden = model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        out = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden.repeat_interleave(repeats, dim=0)),
            attention_mask=mask.repeat_interleave(repeats, dim=0),
            decoder_input_ids=self.decoder_start(labels),
            use_cache=False,
        )
        return out.logits

    def _causal_logits(self, ids: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
        model, repeats, rows = self.method.loaded.model, self.labels.shape[0], ids.shape[0]
        prefix = self.prefix
        if prefix is None:
            raise ValueError("causal cached scoring needs the prompt prefix (PromptPrefix.for_model)")
        n = prefix.num_prompt_tokens
        text = self.method.embed(ids, mask)[0][:, n:]  # the text's embeddings exactly as the uncached forward
        full_mask = prefix.extend_mask(mask)
        positions = position_ids_from_mask(full_mask)
        out = model(
            inputs_embeds=text,
            attention_mask=full_mask,
            position_ids=positions[:, n:],
            use_cache=True,
            **prefix.cache_kwargs(rows),
            **keep_last_logits(model, 1),
        )
        first = out.logits[:, -1:].repeat_interleave(repeats, dim=0)  # predicts every label's first token
        width = labels.shape[1] - 1  # label tokens that predict a next one (the last one predicts nothing)
        if width == 0:
            return first
        cache = output_cache(out)
        cache.batch_repeat_interleave(repeats)
        step_labels = labels[:, :width]
        step_mask = (step_labels != IGNORE_INDEX).long()
        step_ids = step_labels.masked_fill(step_mask == 0, self.method.loaded.tokenizer.pad_token_id)
        step = self.method.embed(step_ids, step_mask)[0][:, n:]
        after = positions[:, -1:].repeat_interleave(repeats, dim=0) + 1  # left padding: the last token is real
        out = model(
            inputs_embeds=step,
            attention_mask=torch.cat([full_mask.repeat_interleave(repeats, dim=0), step_mask], dim=1),
            position_ids=after + torch.arange(width, device=ids.device),
            use_cache=True,
            **{cache_kwarg(type(model)): cache},
        )
        return torch.cat([first, out.logits], dim=1)


__all__ = ["RANK_SCORES", "CachedScorer", "Scorer", "UncachedScorer", "choose_labels", "reduce_scores"]
