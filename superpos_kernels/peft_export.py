"""Export a trained SuperPos prompt as a PEFT ``PROMPT_TUNING`` adapter, for stacks that serve PEFT prompts.

After training, the prompt is just ``n`` vectors ``p_i = sum_j w_ij E_i[j]``: PEFT's prompt tuning stores exactly
that, as ``prompt_embeddings [num_virtual_tokens, token_dim]`` in ``adapter_model.safetensors`` next to an
``adapter_config.json`` (the fields PEFT's ``PromptTuningConfig`` writes). ``peft`` is not imported: the folder
is written directly, and ``tests/test_superpos_model.py`` loads it with ``peft.PeftModel.from_pretrained``.

Seq2seq models get ``num_transformer_submodules: 1`` (PEFT's default of 2 would put a prompt in the decoder too,
which SuperPos never trained). PEFT does not pass position ids for prompt tuning, so a PEFT model and the
SuperPosModel agree on unpadded input; for padded causal batches PEFT's positions include the padding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .io import atomic_write_json, save_adapter_weights

PEFT_WEIGHTS_KEY = "prompt_embeddings"


def _first_attr(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def peft_prompt_tuning_config(num_virtual_tokens: int, token_dim: int, base_model: nn.Module) -> dict[str, Any]:
    config = getattr(base_model, "config", None)
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    return {
        "peft_type": "PROMPT_TUNING",
        "task_type": "SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM",
        "num_virtual_tokens": num_virtual_tokens,
        "token_dim": token_dim,
        "num_transformer_submodules": 1,
        "num_layers": _first_attr(config, "num_hidden_layers", "num_layers", "n_layer"),
        "num_attention_heads": _first_attr(config, "num_attention_heads", "num_heads", "n_head"),
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None,
        "tokenizer_kwargs": None,
        "base_model_name_or_path": getattr(config, "name_or_path", None) or None,
        "inference_mode": True,
        "auto_mapping": None,
        "modules_to_save": None,
        "revision": None,
    }


def export_prompt_tuning(prompt: Tensor, base_model: nn.Module, save_directory: str | os.PathLike[str]) -> None:
    """Write ``prompt [n, d]`` (already materialised, in the base model's embedding space) as a PEFT adapter."""
    if prompt.dim() != 2:
        raise ValueError(f"prompt must have shape [num_virtual_tokens, token_dim], got {tuple(prompt.shape)}")
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    save_adapter_weights(folder / "adapter_model.safetensors", {PEFT_WEIGHTS_KEY: prompt})
    atomic_write_json(folder / "adapter_config.json", peft_prompt_tuning_config(*prompt.shape, base_model))


__all__ = ["PEFT_WEIGHTS_KEY", "export_prompt_tuning", "peft_prompt_tuning_config"]
