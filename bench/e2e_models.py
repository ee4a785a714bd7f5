"""The end-to-end bench's frozen model: t5-small-shaped with random weights, and a tokenizer trained here, offline."""

from __future__ import annotations

import contextlib
import copy
import functools
import tempfile
from pathlib import Path
from typing import Any

import torch


def t5_small_config(vocab_size: int = 32128) -> Any:
    """google/t5-small-lm-adapt's shape (T5 v1.1): gated-GELU, untied head, no dropout (frozen net, dropout off)."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size,
        d_model=512,
        d_kv=64,
        d_ff=1024,
        num_layers=8,
        num_decoder_layers=8,
        num_heads=6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


# Used only when no SST-2 text is at hand (the fixed-shape suite needs a tokenizer, not real text).
_FALLBACK_WORDS = (
    "the a film movie is was good bad great awful story plot actor scene very not quite really fun dull boring "
    "positive negative sentence sst2 it this that one with for and but of to in on as an its funny sad long short"
).split()


@functools.lru_cache(maxsize=2)
def build_tokenizer(data_dir: str | None, vocab_size: int = 8000) -> Any:
    """A T5 tokenizer (pad 0, eos 1, unk 2) whose sentencepiece model is trained here on SST-2 text, offline."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    lines: list[str] = []
    if data_dir is not None:
        with contextlib.suppress(OSError, ValueError):
            from superpos_trainer.data import load_examples

            lines = [e.source for e in load_examples("sst2", "train", data_dir, limit=20000, seed=1)]
    if lines:
        lines += ["positive", "negative"] * 50
    else:
        lines = [" ".join(_FALLBACK_WORDS)] * 50
        vocab_size = min(vocab_size, 200)
    folder = Path(tempfile.mkdtemp(prefix="superpos-bench-tok-"))
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    return T5Tokenizer.from_pretrained(str(folder), extra_ids=0)


def build_backbone(tokenizer: Any, device: torch.device, seed: int = 0) -> Any:
    """The frozen random t5-small-shaped model as the trainer's ``LoadedModel`` (what ``load_model`` returns)."""
    from superpos_trainer.models import LoadedModel
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(t5_small_config())
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    return LoadedModel(model, tokenizer, True, "t5-small-shape (random weights)", "<memory>")


def separate_copy(loaded: Any) -> Any:
    """Same weights, separate modules: for providers that change the backbone (full fine-tuning, PEFT's wrapper).

    The copy is stock Hugging Face code even when one of our trainers already gave ``loaded`` its bf16 weight
    copies (frozen_weights.py): the PEFT baseline runs as a user would run it.
    """
    from superpos_trainer.frozen_weights import plain_linears
    from superpos_trainer.models import LoadedModel

    model = copy.deepcopy(loaded.model)
    plain_linears(model)
    return LoadedModel(model, loaded.tokenizer, True, loaded.name, loaded.path)
