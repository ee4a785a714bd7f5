"""Predictions and metrics: generate the label text (default) or rank the task's label words.

``generate`` is the paper's protocol for every model: greedy decoding of a few tokens, mapped back with
``task.parse_prediction``; text that is no label counts as wrong and its share is reported (``invalid_rate``). It
works for every task, STS-B's numbers included. ``rank`` scores each label word by the summed log-likelihood of its
tokens (logits only at the label positions) and picks the best: it can never be invalid and needs one forward per
label word instead of a decoding loop; it needs a task with a closed label set (not STS-B).

Evaluation batches are sorted by length (little padding), run under ``inference_mode`` and put back in order.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import torch

from .collate import Encoded, Encoder, source_batch, train_batch
from .errors import ConfigError
from .forward import label_logits, label_logprob_sums
from .methods import Method


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def decoder_start_fn(model: Any) -> Any:
    """``labels -> decoder_input_ids`` (shift right) for seq2seq models."""
    return lambda labels: model.prepare_decoder_input_ids_from_labels(labels=labels)


def _length_sorted_chunks(encoded: Sequence[Encoded], size: int) -> list[list[int]]:
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].source_ids))
    return [order[i : i + size] for i in range(0, len(order), size)]


def generate_texts(
    method: Method,
    encoder: Encoder,
    encoded: Sequence[Encoded],
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    bf16: bool = False,
) -> list[str]:
    from transformers import GenerationConfig

    loaded = method.loaded
    model, tok = loaded.model, loaded.tokenizer
    gen = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=encoder.eos,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    texts: list[str] = [""] * len(encoded)
    with torch.inference_mode(), autocast(device, bf16):
        for chunk in _length_sorted_chunks(encoded, batch_size):
            batch = source_batch(encoded, chunk, tok.pad_token_id, loaded.is_encoder_decoder).to(device)
            embeds, mask = method.embed(batch.input_ids, batch.attention_mask)
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=gen)
            for row, i in zip(out.tolist(), chunk, strict=True):
                texts[i] = encoder.decode(row)  # decoder-only + inputs_embeds: only new tokens come back
    return texts


def rank_label_words(
    method: Method,
    encoder: Encoder,
    encoded: Sequence[Encoded],
    label_words: Sequence[str],
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
) -> list[str]:
    if not label_words:
        raise ConfigError(
            "--eval-mode rank needs a task with label words (not a regression task such as stsb); "
            "use --eval-mode generate"
        )
    loaded = method.loaded
    candidates = [encoder.target(w) for w in label_words]
    per_batch = max(1, batch_size // len(candidates))
    start = decoder_start_fn(loaded.model) if loaded.is_encoder_decoder else None
    picks: list[str] = [""] * len(encoded)
    with torch.inference_mode(), autocast(device, bf16):
        for chunk in _length_sorted_chunks(encoded, per_batch):
            rows = [Encoded(encoded[i].source_ids, c) for i in chunk for c in candidates]
            batch = train_batch(
                rows, range(len(rows)), loaded.tokenizer.pad_token_id, loaded.is_encoder_decoder, start
            ).to(device)
            scores = label_logprob_sums(label_logits(method, batch), batch.labels).view(len(chunk), len(candidates))
            for i, j in zip(chunk, scores.argmax(dim=1).tolist(), strict=True):
                picks[i] = label_words[j]
    return picks


def predict_texts(
    method: Method,
    encoder: Encoder,
    encoded: Sequence[Encoded],
    mode: str,
    label_words: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    bf16: bool = False,
) -> list[str]:
    was_training = method.loaded.model.training
    method.loaded.model.eval()
    method.eval()
    try:
        if mode == "rank":
            return rank_label_words(method, encoder, encoded, label_words, batch_size, device, bf16)
        return generate_texts(method, encoder, encoded, batch_size, max_new_tokens, device, bf16)
    finally:
        method.loaded.model.train(was_training)


def evaluate_examples(
    method: Method,
    encoder: Encoder,
    task: Any,
    examples: Sequence[Any],
    encoded: Sequence[Encoded],
    mode: str,
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    bf16: bool = False,
) -> tuple[dict[str, float], list[str]]:
    """``(metrics, generated texts)``; metrics holds the task's metrics, ``invalid_rate`` and throughput."""
    start = time.perf_counter()
    texts = predict_texts(method, encoder, encoded, mode, task.label_words, batch_size, max_new_tokens, device, bf16)
    return score_texts(task, examples, texts, start), texts


def score_texts(task: Any, examples: Sequence[Any], texts: Sequence[str], start: float) -> dict[str, float]:
    """The task's metrics (invalid outputs count as wrong) plus throughput since ``start`` (a perf_counter)."""
    predictions = [task.parse_prediction(t) for t in texts]
    metrics = dict(task.compute_metrics(predictions, list(examples)))
    seconds = time.perf_counter() - start
    metrics.update(
        num_examples=len(examples),
        eval_seconds=round(seconds, 3),
        eval_examples_per_s=round(len(examples) / max(seconds, 1e-9), 2),
    )
    return metrics


__all__ = [
    "autocast",
    "decoder_start_fn",
    "evaluate_examples",
    "generate_texts",
    "predict_texts",
    "rank_label_words",
    "score_texts",
]
