"""End-to-end benchmark helpers: our trainer (each method) versus Hugging Face PEFT prompt tuning, same frozen T5.

The modules, one job each: ``e2e_settings`` (sizes, device, threads, the machine), ``e2e_models`` (the frozen
model and tokenizer), ``e2e_providers`` (our trainer, PEFT), ``e2e_timing`` (interleaved rounds, summaries),
``e2e_suites`` (the two suites). This module is their front: the methods raced and the names the bench uses.

Two suites, each a plain dict (JSON-ready) that ``bench/to_markdown.py`` renders:

* ``fixed_shape_suite``: one batch of ``B x L`` random token ids (every row exactly L tokens, so both sides see
  identical tensors), the optimizer step timed per provider; then greedy generation of ``max_new_tokens`` for one
  evaluation batch. Providers run one after the other in the same process, in rounds whose order rotates, so slow
  drift of a shared machine hits every provider alike; ratios are taken per round and their median reported.
* ``real_task_suite``: one epoch over a fixed SST-2 slice: our trainer (dynamic padding, its own collation and batch
  order) versus PEFT fed the same batches padded to max length (the usual ``padding="max_length"`` recipe) and the
  same batches padded dynamically (so the table shows how much of the gap is padding and how much is framework).

The model is t5-small-shaped (v1.1 LM-adapt: d_model 512, d_ff 1024 gated-GELU, 8+8 layers, 6 heads, vocabulary
32128) with random weights: timing does not depend on the values. The tokenizer is a sentencepiece unigram model
trained here on SST-2 text (offline; 8000 pieces: an in-domain vocabulary smaller than T5's splits sentences into
slightly MORE tokens than T5's would, which makes the dynamic-padding advantage, if anything, smaller).
"""

from __future__ import annotations

import os

from e2e_settings import ENV_PREFIX, E2ESettings, bench_device, configure_threads
from e2e_suites import fixed_shape_suite, real_task_suite
from superpos_trainer.methods import METHODS as METHOD_REGISTRY

METHODS = tuple(METHOD_REGISTRY)  # every method the trainer registers (superpos_trainer.methods), in --method order


def bench_methods(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """Our methods to time: ``$SUPERPOS_E2E_METHODS`` (comma-separated), default all four."""
    raw = (os.environ if environ is None else environ).get(ENV_PREFIX + "METHODS", "")
    methods = tuple(m.strip() for m in raw.split(",") if m.strip()) or METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"{ENV_PREFIX}METHODS names unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return methods


__all__ = [
    "METHODS",
    "E2ESettings",
    "bench_device",
    "bench_methods",
    "configure_threads",
    "fixed_shape_suite",
    "real_task_suite",
]
