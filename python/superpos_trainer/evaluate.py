"""Predictions and metrics: generate the label text (default) or rank the task's label words.

``generate`` is the paper's protocol for every model: greedy decoding of a few tokens, mapped back with
``task.parse_prediction``; text that is no label counts as wrong and its share is reported (``invalid_rate``). It
works for every task, STS-B's numbers included. ``rank`` scores each label word by the mean (``--rank-score mean``,
default) or summed (``sum``) log-likelihood of its tokens and picks the best (``scoring.py``); a non-finite score
makes the prediction invalid. It needs a task with a closed label set (not STS-B).

Rank scoring encodes each source once and scores every label word from its cached keys/values; for causal models
the soft prompt's keys/values are computed once per evaluation (``prefix_cache.py``) and reused by generation too.
``cached=False`` is the reference path (one full forward per example and label word) that the cached one must
match. Evaluation batches are sorted by length (little padding), run under ``inference_mode`` and put back in order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .collate import Encoded, Encoder, source_batch
from .errors import ConfigError
from .forward import autocast
from .methods import Method
from .prefix_cache import PromptPrefix
from .progress import Progress
from .scoring import CachedScorer, Scorer, UncachedScorer, choose_labels


def decoder_start_fn(model: Any) -> Any:
    """``labels -> decoder_input_ids`` (shift right) for seq2seq models."""
    return lambda labels: model.prepare_decoder_input_ids_from_labels(labels=labels)


def length_sorted_chunks(encoded: Sequence[Encoded], size: int) -> list[list[int]]:
    """Example positions in batches of ``size``, shortest sources first (little padding per batch)."""
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
    progress: bool = False,
    reuse_prefix: bool = True,
) -> list[str]:
    """Greedy generations; causal models start from the prompt's cached keys/values (computed once)."""
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
    bar = Progress(len(encoded), "generate", enabled=progress)
    with torch.inference_mode(), autocast(device, bf16):
        prefix = PromptPrefix.for_model(method, device) if reuse_prefix else None
        for chunk in length_sorted_chunks(encoded, batch_size):
            batch = source_batch(encoded, chunk, tok.pad_token_id, loaded.is_encoder_decoder).to(device)
            embeds, mask = method.embed(batch.input_ids, batch.attention_mask)
            # With a prefix cache, generate runs only the positions past the cache: the prompt's rows of
            # ``embeds`` are skipped, its keys/values come from the cache (same positions, same mask).
            cache = {} if prefix is None else prefix.cache_kwargs(len(chunk))
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=gen, **cache)
            for row, i in zip(out.tolist(), chunk, strict=True):
                texts[i] = encoder.decode(row)  # decoder-only + inputs_embeds: only new tokens come back
            bar.update(len(chunk))
    bar.close()
    return texts


def make_scorer(
    method: Method, encoder: Encoder, label_words: Sequence[str], rank_score: str, cached: bool, device: torch.device
) -> Scorer:
    """The scorer of one evaluation; call it under inference_mode and the evaluation's autocast (the prompt's
    keys/values are computed here, once). ``cached=False`` or a model without a usable cache: the reference path."""
    if not label_words:
        raise ConfigError(
            "--eval-mode rank needs a task with label words (not a regression task such as stsb); "
            "use --eval-mode generate"
        )
    loaded = method.loaded
    candidates = [encoder.target(w) for w in label_words]
    start = decoder_start_fn(loaded.model) if loaded.is_encoder_decoder else None
    prefix = PromptPrefix.for_model(method, device) if cached else None
    if cached and (loaded.is_encoder_decoder or prefix is not None):
        return CachedScorer(method, candidates, rank_score, start, prefix)
    return UncachedScorer(method, candidates, rank_score, start)


def rank_scores(
    method: Method,
    encoder: Encoder,
    encoded: Sequence[Encoded],
    label_words: Sequence[str],
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
    rank_score: str = "mean",
    cached: bool = True,
    progress: bool = False,
) -> Tensor:
    """``[N, C]`` fp32 scores of every label word for every example (in ``encoded``'s order)."""
    scores = torch.empty(len(encoded), len(label_words), dtype=torch.float32)
    bar = Progress(len(encoded), "rank", enabled=progress)
    with torch.inference_mode(), autocast(device, bf16):
        scorer = make_scorer(method, encoder, label_words, rank_score, cached, device)
        # One batch holds batch_size (example, label) rows in both paths, so memory matches the uncached path.
        for chunk in length_sorted_chunks(encoded, max(1, batch_size // len(label_words))):
            scores[chunk] = scorer.scores(encoded, chunk, device).float().cpu()
            bar.update(len(chunk))
    bar.close()
    return scores


def rank_label_words(
    method: Method,
    encoder: Encoder,
    encoded: Sequence[Encoded],
    label_words: Sequence[str],
    batch_size: int,
    device: torch.device,
    **options: Any,
) -> list[str]:
    """The best-scoring label word per example; ``""`` (invalid) where a score is not finite.

    ``options``: :func:`rank_scores`'s ``bf16``, ``rank_score``, ``cached`` and ``progress``.
    """
    scores = rank_scores(method, encoder, encoded, label_words, batch_size, device, **options)
    return choose_labels(scores, label_words)


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
    rank_score: str = "mean",
    progress: bool = False,
) -> list[str]:
    was_training = method.loaded.model.training
    method.loaded.model.eval()
    method.eval()
    try:
        if mode == "rank":
            return rank_label_words(
                method,
                encoder,
                encoded,
                label_words,
                batch_size,
                device,
                bf16=bf16,
                rank_score=rank_score,
                progress=progress,
            )
        return generate_texts(method, encoder, encoded, batch_size, max_new_tokens, device, bf16, progress)
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
    rank_score: str = "mean",
    progress: bool = False,
) -> tuple[dict[str, float], list[str]]:
    """``(metrics, generated texts)``; metrics holds the task's metrics, ``invalid_rate`` and throughput."""
    start = time.perf_counter()
    texts = predict_texts(
        method, encoder, encoded, mode, task.label_words, batch_size, max_new_tokens, device, bf16, rank_score, progress
    )
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
    "length_sorted_chunks",
    "make_scorer",
    "predict_texts",
    "rank_label_words",
    "rank_scores",
    "score_texts",
]
