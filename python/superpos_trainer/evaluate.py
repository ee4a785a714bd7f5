"""Predictions and metrics: generate the label text (default) or rank the task's label words.

``generate`` is the paper's protocol for every model: greedy decoding of a few tokens, mapped back with
``task.parse_prediction``; text that is no label counts as wrong and its share is reported (``invalid_rate``). It
works for every task, STS-B's numbers included. ``rank`` scores each label word by the mean (``--rank-score mean``,
default) or summed (``sum``) log-likelihood of its tokens and picks the best (``scoring.py``); a non-finite score
makes the prediction invalid. It needs a task with a closed label set (not STS-B).

Rank scoring encodes each source once and scores every label word from its cached keys/values; for causal models
the soft prompt's keys/values are computed once per evaluation (``prefix_cache.py``) and reused by generation too.
``EvalSettings(cached=False)`` is the reference path (one full forward per example and label word) that the cached
one must match. Evaluation batches are sorted by length (little padding), run under ``inference_mode`` and put back
in order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from . import distributed
from .collate import Encoded, Encoder, source_batch
from .errors import ConfigError
from .forward import autocast, decoder_start_fn
from .methods import Method
from .prefix_cache import PromptPrefix
from .progress import Progress
from .scoring import CachedScorer, Scorer, UncachedScorer, choose_labels

CPU = torch.device("cpu")


@dataclass(frozen=True)
class EvalSettings:
    """How every evaluation of a run (or of ``superpos evaluate``/``predict``) runs: built once, passed everywhere.

    A new evaluation option is one field here plus its line in :meth:`from_config`.
    """

    mode: str = "generate"  # generate | rank
    batch_size: int = 64
    max_new_tokens: int = 5
    device: torch.device = CPU
    bf16: bool = False  # bf16 autocast (precision.use_bf16 resolved it for the device)
    rank_score: str = "mean"  # mean | sum (scoring.RANK_SCORES)
    cached: bool = True  # reuse the prompt's keys/values (rank and generate); False: the reference path
    progress: bool = False

    @classmethod
    def from_config(cls, config: Any, device: torch.device, **overrides: Any) -> EvalSettings:
        """The run's evaluation settings (a ``TrainConfig``); ``overrides`` replace single fields."""
        from .precision import use_bf16

        settings = cls(
            mode=config.eval_mode,
            batch_size=config.eval_batch_size,
            max_new_tokens=config.max_new_tokens,
            device=device,
            bf16=use_bf16(config.bf16, device),
            rank_score=config.rank_score,
            progress=bool(config.progress),
        )
        return replace(settings, **overrides)


def length_sorted_chunks(encoded: Sequence[Encoded], size: int) -> list[list[int]]:
    """Example positions in batches of ``size``, shortest sources first (little padding per batch)."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].source_ids))
    return [order[i : i + size] for i in range(0, len(order), size)]


def generate_texts(method: Method, encoder: Encoder, encoded: Sequence[Encoded], settings: EvalSettings) -> list[str]:
    """Greedy generations; causal models start from the prompt's cached keys/values (computed once)."""
    from transformers import GenerationConfig

    loaded, device = method.loaded, settings.device
    model, tok = loaded.model, loaded.tokenizer
    gen = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=encoder.eos,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    texts: list[str] = [""] * len(encoded)
    bar = Progress(len(encoded), "generate", enabled=settings.progress)
    with torch.inference_mode(), autocast(device, settings.bf16):
        prefix = PromptPrefix.for_model(method, device) if settings.cached else None
        for chunk in length_sorted_chunks(encoded, settings.batch_size):
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


def make_scorer(method: Method, encoder: Encoder, label_words: Sequence[str], settings: EvalSettings) -> Scorer:
    """The scorer of one evaluation; call it under inference_mode and the evaluation's autocast (the prompt's
    keys/values are computed here, once). ``cached=False`` or a model without a usable cache: the reference path."""
    if not label_words:
        raise ConfigError(
            "--eval-mode rank needs a task with label words (not a regression task such as stsb); "
            "use --eval-mode generate"
        )
    loaded, how = method.loaded, settings.rank_score
    candidates = [encoder.target(w) for w in label_words]
    start = decoder_start_fn(loaded.model) if loaded.is_encoder_decoder else None
    prefix = PromptPrefix.for_model(method, settings.device) if settings.cached else None
    if settings.cached and (loaded.is_encoder_decoder or prefix is not None):
        return CachedScorer(method, candidates, how, start, prefix)
    return UncachedScorer(method, candidates, how, start)


def rank_scores(
    method: Method, encoder: Encoder, encoded: Sequence[Encoded], label_words: Sequence[str], settings: EvalSettings
) -> Tensor:
    """``[N, C]`` fp32 scores of every label word for every example (in ``encoded``'s order)."""
    scores = torch.empty(len(encoded), len(label_words), dtype=torch.float32)
    bar = Progress(len(encoded), "rank", enabled=settings.progress)
    with torch.inference_mode(), autocast(settings.device, settings.bf16):
        scorer = make_scorer(method, encoder, label_words, settings)
        # One batch holds batch_size (example, label) rows in both paths, so memory matches the uncached path.
        for chunk in length_sorted_chunks(encoded, max(1, settings.batch_size // len(label_words))):
            scores[chunk] = scorer.scores(encoded, chunk, settings.device).float().cpu()
            bar.update(len(chunk))
    bar.close()
    return scores


def rank_label_words(
    method: Method, encoder: Encoder, encoded: Sequence[Encoded], label_words: Sequence[str], settings: EvalSettings
) -> list[str]:
    """The best-scoring label word per example; ``""`` (invalid) where a score is not finite."""
    return choose_labels(rank_scores(method, encoder, encoded, label_words, settings), label_words)


def predict_texts(
    method: Method, encoder: Encoder, encoded: Sequence[Encoded], label_words: Sequence[str], settings: EvalSettings
) -> list[str]:
    """The output text per example (``settings.mode``: generated, or the best label word), model in eval mode."""
    was_training = method.loaded.model.training
    method.loaded.model.eval()
    method.eval()
    try:
        if settings.mode == "rank":
            return rank_label_words(method, encoder, encoded, label_words, settings)
        return generate_texts(method, encoder, encoded, settings)
    finally:
        method.loaded.model.train(was_training)


def evaluate(
    method: Method,
    encoder: Encoder,
    task: Any,
    examples: Sequence[Any],
    encoded: Sequence[Encoded],
    settings: EvalSettings,
    shard: bool = True,
) -> tuple[dict[str, float], list[str]]:
    """``(metrics, output texts)``: the task's metrics, ``invalid_rate`` and throughput.

    Under torchrun (an initialised process group) and with ``shard``, each rank predicts its strided share of the
    examples and the texts are gathered back in order (``distributed.gather_in_order``): every rank returns the
    same result, each example scored once. ``shard=False``: every rank scores all of them (its own adapter).
    """
    start = time.perf_counter()
    world = distributed.world_size() if shard else 1
    mine = distributed.shard(range(len(encoded)), distributed.rank(), world) if world > 1 else list(range(len(encoded)))
    texts = predict_texts(method, encoder, [encoded[i] for i in mine], task.label_words, settings) if mine else []
    if world > 1:
        texts = distributed.gather_in_order(mine, texts, len(encoded))
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
    "EvalSettings",
    "evaluate",
    "generate_texts",
    "length_sorted_chunks",
    "make_scorer",
    "predict_texts",
    "rank_label_words",
    "rank_scores",
    "score_texts",
]
