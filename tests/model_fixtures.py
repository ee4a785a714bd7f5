"""Tiny real models for offline tests, built once per session and loaded with ``from_pretrained`` like any checkpoint.

* a T5 (v1.1 style: gated-GELU, untied head) from ``T5Config`` with a sentencepiece unigram tokenizer trained here
  on the tiny task data, saved as ``spiece.model`` and wrapped with ``T5Tokenizer.from_pretrained``;
* a Llama-style causal LM (tied input/output embeddings, no pad token: the trainer must fall back to EOS) with a
  byte-level BPE tokenizer trained here.

Both have d_model 32, 1-2 layers and a vocabulary of a few hundred pieces, so a training step takes milliseconds.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
import torch

from .data_fixtures import write_tiny_data_dir

_ROOT = Path(tempfile.mkdtemp(prefix="superpos-test-models-"))
WORDS = (
    "the a film movie is was good bad great awful story plot actor scene very not quite really fun dull boring "
    "question answer passage premise hypothesis sentence word choice cause effect paragraph yes no true false "
    "cats dogs sit mat run fast slow house tree water fire man woman child car road city"
).split()


@functools.lru_cache(maxsize=1)
def tiny_data_dir() -> Path:
    """All 13 tasks in their official formats (tests/data_fixtures.py), shared by the session."""
    return write_tiny_data_dir(_ROOT / "data", n_train=12, n_val=8)


@functools.lru_cache(maxsize=1)
def corpus_lines() -> tuple[str, ...]:
    from superpos_trainer.data import load_examples
    from superpos_trainer.tasks import TASKS

    lines = [" ".join(WORDS)]
    for task in TASKS.values():
        lines.append(" ".join(task.label_words))
        for split in ("train", "validation"):
            for e in load_examples(task, split, tiny_data_dir()):
                lines += [e.source, e.target]
    return tuple(lines)


def _write_corpus(folder: Path) -> Path:
    path = folder / "corpus.txt"
    # Repeated so the subword trainers see every label word often enough to keep it whole.
    path.write_text("\n".join(list(corpus_lines()) * 3) + "\n", encoding="utf-8")
    return path


def build_tiny_t5(folder: Path) -> Path:
    import sentencepiece as spm
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent))
    spm.SentencePieceTrainer.train(
        input=str(_write_corpus(work)),
        model_prefix=str(work / "spiece"),
        vocab_size=300,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        character_coverage=1.0,
        minloglevel=2,
    )
    tokenizer = T5Tokenizer.from_pretrained(str(work), extra_ids=0)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.1,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        relative_attention_num_buckets=8,
    )
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_llama(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus_lines()) * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        attention_dropout=0.1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_gemma3(folder: Path) -> Path:
    """A tiny Gemma 3 (tiny Llama's tokenizer): sliding-window and full layers (two cache layer kinds), embeddings
    scaled inside the model.

    The window (64) exceeds every sequence here, as Gemma-3-270M's 512 exceeds the trainer's inputs: with left
    padding, a window shorter than the row would count pad slots, in the uncached forward too.
    """
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_path()))
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=256,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
    )
    folder.mkdir(parents=True, exist_ok=True)
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@functools.lru_cache(maxsize=1)
def tiny_t5_path() -> Path:
    return build_tiny_t5(_ROOT / "tiny-t5")


@functools.lru_cache(maxsize=1)
def tiny_llama_path() -> Path:
    return build_tiny_llama(_ROOT / "tiny-llama")


@functools.lru_cache(maxsize=1)
def tiny_gemma3_path() -> Path:
    return build_tiny_gemma3(_ROOT / "tiny-gemma3")


# Fixtures: every test sees them through tests/conftest.py, no import needed. The builders are cached at module
# level, so each model is built once per session.
@pytest.fixture(scope="session")
def tiny_t5() -> Path:
    return tiny_t5_path()


@pytest.fixture(scope="session")
def tiny_llama() -> Path:
    return tiny_llama_path()


@pytest.fixture(scope="session")
def tiny_gemma3() -> Path:
    return tiny_gemma3_path()


@pytest.fixture(scope="session")
def tiny_data() -> Path:
    return tiny_data_dir()


def tiny_config(model: Path, output_dir: Path | None, **overrides):
    """A resolved TrainConfig for a few-step run on the tiny data (no progress bar)."""
    from superpos_trainer.config import TrainConfig

    options = dict(
        model=str(model),
        task="sst2",
        data_dir=str(tiny_data_dir()),
        num_prompt_tokens=4,
        num_sampled_tokens=16,
        epochs=2,
        batch_size=4,
        max_length=64,
        eval_batch_size=16,
        train_limit=0,
        eval_limit=0,
        progress=False,
        output_dir=None if output_dir is None else str(output_dir),
    )
    options.update(overrides)
    return TrainConfig(**options).resolved()
