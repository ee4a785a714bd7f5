"""Tokenise examples once and pad batches dynamically (to the longest row of each batch, never to max_length).

Layouts (the soft prompt is prepended later, by the method, in front of everything):

* seq2seq: encoder ``[source]`` right-padded; decoder labels ``[target </s>]`` padded with -100.
* causal: ``[source target eos]`` LEFT-padded, so every row's label ends at the last position: the label logits
  are then the last ``K`` positions for the whole batch (``logits_to_keep``; Gemma's 262k vocabulary makes full
  logits expensive) and generation continues every row from the same position. ``labels`` holds only those last
  ``K`` tokens (-100 where a shorter label leaves source tokens), so prompt and source positions never count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigError

IGNORE_INDEX = -100
AUTO_COVERAGE = 0.99  # --max-length auto: share of training sources that must fit uncut
FALLBACK_LENGTH = 512  # --max-length auto without training data or a position limit (T5's pre-training length)


@dataclass(frozen=True)
class Encoded:
    source_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    truncated: bool = False  # the source lost tokens to fit the length budget


@dataclass
class Batch:
    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor | None = None  # seq2seq: [B, T]; causal: [B, K] = the last K positions
    decoder_input_ids: Tensor | None = None
    indices: list[int] = field(default_factory=list)  # positions in the encoded list

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            move(self.input_ids),
            move(self.attention_mask),
            move(self.labels),
            move(self.decoder_input_ids),
            self.indices,
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class Encoder:
    """Turns ``(source, target)`` text into token ids with the layout's special tokens and length limits."""

    def __init__(
        self,
        tokenizer: Any,
        is_encoder_decoder: bool,
        max_length: int | str,
        num_prompt_tokens: int,
        max_target_length: int,
        max_positions: int | None = None,
        max_new_tokens: int = 0,
    ) -> None:
        self.tokenizer, self.seq2seq = tokenizer, is_encoder_decoder
        self.max_target_length = max_target_length
        if max_length == "auto":  # no training data here (inference): as long as the model allows
            max_length = length_cap(is_encoder_decoder, max_positions, max_new_tokens) or FALLBACK_LENGTH
        self.max_length = int(max_length)
        budget = max_length - num_prompt_tokens - (0 if is_encoder_decoder else max_target_length)
        if budget < 1:
            raise ConfigError(
                f"--max-length {max_length} is too small: the {num_prompt_tokens}-token prompt"
                + ("" if is_encoder_decoder else f" and {max_target_length} label tokens")
                + " leave no room for the input text; raise --max-length"
            )
        self.source_budget = budget
        if max_positions is not None and not is_encoder_decoder and max_length + max_new_tokens > max_positions:
            raise ConfigError(
                f"--max-length {max_length} (+ {max_new_tokens} generated tokens) exceeds the model's "
                f"{max_positions} positions; lower --max-length"
            )
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ConfigError("the tokenizer has no EOS token; labels need one to end")
        self.eos = int(eos)

    @classmethod
    def from_config(cls, config: Any, loaded: Any, num_prompt_tokens: int) -> Encoder:
        """The encoder of a run: lengths from ``config`` (a TrainConfig), tokenizer and layout from ``loaded``."""
        return cls(
            loaded.tokenizer,
            is_encoder_decoder=loaded.is_encoder_decoder,
            max_length=config.max_length,
            num_prompt_tokens=num_prompt_tokens,
            max_target_length=config.max_target_length,
            max_positions=loaded.max_positions,
            max_new_tokens=config.max_new_tokens,
        )

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _plain(self, text: str) -> tuple[tuple[int, ...], bool]:
        full = self._ids(text)
        if len(full) <= self.source_budget:
            return tuple(full), False
        # The tokenizer's own truncation keeps the special tokens (T5's closing </s>, a BOS).
        ids = self.tokenizer(text, add_special_tokens=True, truncation=True, max_length=self.source_budget)
        return tuple(ids["input_ids"]), True

    def source(self, text: str) -> tuple[int, ...]:
        """Plain text cut at the end (inputs without fields, e.g. ``superpos predict --text``)."""
        return self._plain(text)[0]

    def fit_fields(self, prefix: str, fields: Sequence[tuple[str, str]]) -> tuple[tuple[int, ...], bool]:
        """``(ids, truncated)``: the source of ``fields`` within the budget, shortening the longest field first."""
        from .tasks import render_source

        ids = self._ids(render_source(prefix, fields))
        excess = len(ids) - self.source_budget
        if excess <= 0:
            return tuple(ids), False
        keys = [key for key, _ in fields]
        # Each field's tokens in context form (a leading space), so cutting k of them shortens the source by ~k.
        pieces = [self.tokenizer(" " + text, add_special_tokens=False)["input_ids"] for _, text in fields]
        keep = [len(p) for p in pieces]
        while excess > 0:
            if not any(keep):
                raise ConfigError(
                    f"--max-length {self.max_length} is too small for the field names alone "
                    f"({', '.join(keys)}: {len(ids)} tokens with every field empty); raise --max-length"
                )
            for _ in range(excess):  # one token off whichever field is longest now (ties: the first)
                longest = max(range(len(keep)), key=lambda i: keep[i])
                keep[longest] = max(keep[longest] - 1, 0)
            texts = [
                " ".join(self.tokenizer.decode(p[:k], skip_special_tokens=True).split())
                for p, k in zip(pieces, keep, strict=True)
            ]
            ids = self._ids(render_source(prefix, list(zip(keys, texts, strict=True))))
            excess = len(ids) - self.source_budget  # re-tokenising may merge or split a token: loop until it fits
        return tuple(ids), True

    def encode_example(self, example: Any) -> Encoded:
        """An ``Example`` (tasks.py): fields shortened longest-first when it is too long, the label never."""
        if not example.fields:
            return self.encode(example.source, example.target)
        ids, truncated = self.fit_fields(example.prefix, example.fields)
        return Encoded(ids, self.target(example.target), truncated)

    def target(self, text: str) -> tuple[int, ...]:
        if self.seq2seq:
            ids = self.tokenizer(text, add_special_tokens=True, truncation=True, max_length=self.max_target_length)
            return tuple(ids["input_ids"])
        # A leading space: the label is a new word after the source, as the model would write it.
        ids = self.tokenizer(" " + text, add_special_tokens=False)["input_ids"][: self.max_target_length - 1]
        return (*ids, self.eos)

    def encode(self, source: str, target: str) -> Encoded:
        ids, truncated = self._plain(source)
        return Encoded(ids, self.target(target), truncated)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()


def encode_split(encoder: Encoder, examples: Sequence[Any]) -> tuple[list[Any], list[Encoded]]:
    """``(examples, their encodings)``: a split encoded once, when a trainer is built."""
    examples = list(examples)
    return examples, [encoder.encode_example(e) for e in examples]


def length_cap(seq2seq: bool, max_positions: int | None, max_new_tokens: int) -> int | None:
    """Longest ``--max-length`` the model can take (causal: room left for the generated tokens); None: no limit."""
    if seq2seq or max_positions is None:
        return None
    return max_positions - max_new_tokens


def auto_max_length(
    tokenizer: Any,
    sources: Sequence[str],
    is_encoder_decoder: bool,
    num_prompt_tokens: int,
    max_target_length: int,
    cap: int | None = None,
    coverage: float = AUTO_COVERAGE,
) -> int:
    """The smallest ``--max-length`` that leaves at least ``coverage`` of ``sources`` uncut, at most ``cap`` (the
    model's limit, :func:`length_cap`; None: no limit).

    Counts what the Encoder puts in a row: the prompt, the source with its special tokens and (causal) the label
    budget ``max_target_length``.
    """
    if not sources:
        return cap or FALLBACK_LENGTH
    lengths = sorted(len(ids) for ids in tokenizer(list(sources), add_special_tokens=True)["input_ids"])
    covered = lengths[max(math.ceil(coverage * len(lengths)) - 1, 0)]
    needed = num_prompt_tokens + covered + (0 if is_encoder_decoder else max_target_length)
    return needed if cap is None else min(needed, cap)


def truncated_share(encoded: Sequence[Encoded]) -> float:
    """Share of rows whose source was cut (0.0 for no rows)."""
    return sum(e.truncated for e in encoded) / len(encoded) if encoded else 0.0


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            if left:
                out[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            else:
                out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def _mask(rows: Sequence[Sequence[int]], left: bool) -> Tensor:
    return _pad([[1] * len(r) for r in rows], 0, left)


def train_batch(
    encoded: Sequence[Encoded], indices: Sequence[int], pad_id: int, seq2seq: bool, decoder_start: Any = None
) -> Batch:
    """A training batch; ``decoder_start(labels) -> decoder_input_ids`` for seq2seq models (shift right)."""
    items = [encoded[i] for i in indices]
    if seq2seq:
        src = [e.source_ids for e in items]
        labels = _pad([e.target_ids for e in items], IGNORE_INDEX, left=False)
        dec = decoder_start(labels) if decoder_start is not None else None
        return Batch(_pad(src, pad_id, left=False), _mask(src, left=False), labels, dec, list(indices))
    rows = [e.source_ids + e.target_ids for e in items]
    labels = _pad([e.target_ids for e in items], IGNORE_INDEX, left=True)
    return Batch(_pad(rows, pad_id, left=True), _mask(rows, left=True), labels, None, list(indices))


def source_batch(encoded: Sequence[Encoded], indices: Sequence[int], pad_id: int, seq2seq: bool) -> Batch:
    """Sources only, for generation (left-padded for causal models)."""
    src = [encoded[i].source_ids for i in indices]
    left = not seq2seq
    return Batch(_pad(src, pad_id, left=left), _mask(src, left=left), indices=list(indices))


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = False
) -> list[list[int]]:
    """The batches of one epoch, a pure function of ``(seed, epoch)``: a resumed run replays the same order.

    With ``group_by_length``, the shuffled order is cut into chunks of 50 batches, each sorted by length before it
    is cut into batches, and the batch order is shuffled again: similar lengths share a batch (less padding)
    while the epoch stays random.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def label_rows(targets: Sequence[Sequence[int]]) -> Tensor:
    """Label rows ``[C, K]`` right-padded with -100: the candidate labels rank scoring runs after a cached source."""
    return _pad(targets, IGNORE_INDEX, left=False)


__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "Encoded",
    "Encoder",
    "auto_max_length",
    "encode_split",
    "epoch_batches",
    "label_rows",
    "length_cap",
    "source_batch",
    "train_batch",
    "truncated_share",
]
