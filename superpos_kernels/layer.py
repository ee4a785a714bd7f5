"""``SuperPosPrompt``: the drop-in soft-prompt layer of SuperPos-Prompt (Sadraei Javaheri et al., 2024).

Each of the ``n`` prompt vectors is a superposition of ``m`` vocabulary embeddings, ``p_i = sum_j w_ij E_i[j]``.
The ``m`` token ids are sampled once; every prompt token gets its own trainable copy ``E_i`` of those rows.
The frozen embedding table is referenced, never copied into this module's parameters or state dict.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import __version__
from .errors import SuperPosInputError
from .init import W_INITS, initial_w
from .io import (
    atomic_write_json,
    check_adapter_shapes,
    config_float,
    config_int,
    config_int_list,
    config_optional_str,
    load_adapter_weights,
    read_adapter_config,
    save_adapter_weights,
)
from .ops import superpos_embed
from .reference import superpose
from .validation import check_positive_int

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_TYPE = "SUPERPOS_PROMPT"


def _resolve_embedding(embedding: Any) -> nn.Embedding | nn.Module:
    """Accept an ``nn.Embedding`` or any model exposing ``get_input_embeddings()`` (Hugging Face)."""
    if hasattr(embedding, "get_input_embeddings") and not isinstance(embedding, nn.Embedding):
        embedding = embedding.get_input_embeddings()
    weight = getattr(embedding, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise TypeError(
            "embedding must be an nn.Embedding or a model with get_input_embeddings(), "
            f"got {type(embedding).__name__} without a 2-D .weight"
        )
    return embedding


def _embed_scale_of(embedding: nn.Module) -> float:
    """Models such as Gemma scale token embeddings inside their embedding module (``embed_scale``)."""
    scale = getattr(embedding, "embed_scale", 1.0)
    return float(scale.item() if isinstance(scale, Tensor) else scale)


def sample_token_ids(
    num_sampled_tokens: int, vocab_size: int, exclude_ids: Iterable[int] = (), seed: int = 0
) -> list[int]:
    """``m`` unique ids from ``[0, vocab_size)`` minus ``exclude_ids``, reproducible from ``seed``."""
    excluded = {int(i) for i in exclude_ids}
    candidates = torch.tensor([i for i in range(vocab_size) if i not in excluded], dtype=torch.long)
    if num_sampled_tokens > len(candidates):
        raise SuperPosInputError(
            f"num_sampled_tokens={num_sampled_tokens} is larger than the sampleable vocabulary "
            f"({len(candidates)} ids in [0, {vocab_size}) after excluding {len(excluded)} special ids); "
            "lower num_sampled_tokens"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(candidates), generator=generator)[:num_sampled_tokens]
    return candidates[order].tolist()


def _device_memory_bytes(device: torch.device) -> int | None:
    """The memory of the device the parameters go to (None where it cannot be read)."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        if device.type == "cpu":
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, RuntimeError, AttributeError):
        pass
    return None


def _check_fits_in_memory(n: int, m: int, table: Tensor) -> None:
    """Refuse before allocating: ``E`` holds ``n * m * d`` values, and one typo in ``n`` or ``m`` must be an error
    naming them, not an allocator failure (or the OOM killer) after the memory is gone."""
    needed = n * m * table.shape[1] * table.element_size()
    available = _device_memory_bytes(table.device)
    if available is not None and needed > available:
        raise SuperPosInputError(
            f"num_prompt_tokens={n} x num_sampled_tokens={m} x dim={table.shape[1]} needs {needed / 2**30:.1f} GiB "
            f"for E alone, more than the {available / 2**30:.1f} GiB of {table.device}; lower num_prompt_tokens or "
            "num_sampled_tokens"
        )


class SuperPosPrompt(nn.Module):
    """A SuperPos soft prompt for a frozen model.

    Args:
        embedding: the frozen input embedding (``nn.Embedding``) or a model with ``get_input_embeddings()``.
        num_prompt_tokens: ``n``, the prompt length (paper: 10).
        num_sampled_tokens: ``m``, vocabulary rows superposed per prompt token (paper: 128).
        seed: seeds the id sampling and the ``w`` initialisation.
        vocab_size: ids are sampled from ``[0, vocab_size)``; defaults to the table's rows. Pass ``len(tokenizer)``
            when the table is padded (a T5 table has 32128 rows but 32100 tokens).
        exclude_ids: ids never sampled (padding, EOS, sentinels: ``tokenizer.all_special_ids``).
        sampled_token_ids: use these ids instead of sampling (e.g. to share them across runs).
        base_model_name: recorded in the saved config.
        embed_scale: multiplier of gathered rows; read from ``embedding.embed_scale`` when not given.
        w_init: ``normal`` (default) | ``cone`` | ``prompt``, where the prompt starts (``superpos_kernels.init``).

    ``w`` is initialised ``N(0, 1/m)``: the superposed prompt then starts with the expected norm of one vocabulary
    row (for near-orthogonal rows ``|p|^2 = sum_j w_j^2 |e_j|^2``), and the random signs break the symmetry between
    prompt tokens that all start from the same ``m`` rows. The paper leaves this choice open.
    """

    # The public constructor names every choice of the method (PEFT's configs do the same with a dataclass:
    # SuperPosConfig is that dataclass for get_superpos_model); everything after `embedding` has a default.
    def __init__(  # noqa: PLR0913
        self,
        embedding: Any,
        num_prompt_tokens: int = 10,
        num_sampled_tokens: int = 128,
        seed: int = 0,
        vocab_size: int | None = None,
        exclude_ids: Iterable[int] = (),
        sampled_token_ids: Sequence[int] | None = None,
        base_model_name: str | None = None,
        embed_scale: float | None = None,
        w_init: str = "normal",
    ) -> None:
        super().__init__()
        embedding = _resolve_embedding(embedding)
        n = check_positive_int("num_prompt_tokens", num_prompt_tokens)
        m = check_positive_int("num_sampled_tokens", num_sampled_tokens)
        table = embedding.weight
        num_rows, dim = table.shape
        _check_fits_in_memory(n, m, table)
        vocab_size = num_rows if vocab_size is None else check_positive_int("vocab_size", vocab_size)
        if vocab_size > num_rows:
            raise SuperPosInputError(f"vocab_size={vocab_size} exceeds the embedding table's {num_rows} rows")
        if sampled_token_ids is None:
            ids = sample_token_ids(m, vocab_size, exclude_ids, seed)
        else:
            ids = [int(i) for i in sampled_token_ids]
            if len(ids) != m or len(set(ids)) != m:
                raise SuperPosInputError(
                    f"sampled_token_ids must hold {m} unique ids, got {len(ids)} ({len(set(ids))} unique)"
                )
            bad = [i for i in ids if not 0 <= i < num_rows]
            if bad:
                raise SuperPosInputError(f"sampled_token_ids holds ids outside [0, {num_rows}): {bad[:5]}")

        # Kept out of the module tree on purpose: the table belongs to the frozen model and must not show up in
        # this adapter's parameters(), state_dict() or optimizer groups.
        self._frozen = (embedding,)
        self.embed_scale = _embed_scale_of(embedding) if embed_scale is None else float(embed_scale)
        if not math.isfinite(self.embed_scale):
            # A NaN scale would silently turn every input embedding into NaN (and every score with it).
            raise SuperPosInputError(f"embed_scale must be a finite number, got {self.embed_scale}")
        self.num_prompt_tokens, self.num_sampled_tokens, self.embedding_dim = n, m, dim
        self.num_embeddings, self.seed, self.base_model_name = num_rows, seed, base_model_name
        self.register_buffer("sampled_token_ids", torch.tensor(ids, dtype=torch.long), persistent=True)

        with torch.no_grad():
            rows = table.detach()[torch.tensor(ids, device=table.device)] * self.embed_scale
            w0 = initial_w(w_init, n, rows, seed, table.detach().float().mean(0) * self.embed_scale)
        self.w_init = w_init
        self.w = nn.Parameter(w0.to(device=table.device, dtype=table.dtype))
        self.E = nn.Parameter(rows.unsqueeze(0).repeat(n, 1, 1).contiguous())

    @property
    def embedding(self) -> nn.Module:
        return self._frozen[0]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(inputs_embeds [B, n + L, d], attention_mask [B, n + L])`` for the frozen model."""
        return superpos_embed(
            input_ids, self.embedding.weight, self.w, self.E, attention_mask, embed_scale=self.embed_scale
        )

    def materialize(self) -> Tensor:
        """The ``[n, d]`` prompt as plain vectors, for inference without this layer or for export."""
        with torch.no_grad():
            return superpose(self.w, self.E).clone()

    def param_groups(self, weight_decay: float = 1e-5) -> list[dict[str, Any]]:
        """AdamW groups: decay on ``w`` only (decaying ``E`` pulls it away from the vocabulary and destroys it)."""
        return [
            {"params": [self.w], "weight_decay": float(weight_decay), "name": "superpos_w"},
            {"params": [self.E], "weight_decay": 0.0, "name": "superpos_E"},
        ]

    def num_parameters(self) -> tuple[int, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.parameters())

    def print_trainable_parameters(self, model: nn.Module | None = None) -> None:
        """PEFT's line. ``all params`` counts ``model`` (plus this adapter) when given, else the embedding."""
        trainable, total = self.num_parameters()
        frozen = model if model is not None else self.embedding
        total += sum(p.numel() for p in frozen.parameters())
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    # ---- persistence (PEFT-style adapter folder) -------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return {
            "peft_type": PEFT_TYPE,
            "superpos_kernels_version": __version__,
            "num_prompt_tokens": self.num_prompt_tokens,
            "num_sampled_tokens": self.num_sampled_tokens,
            "sampled_token_ids": self.sampled_token_ids.tolist(),
            "embedding_dim": self.embedding_dim,
            "num_embeddings": self.num_embeddings,
            "embed_scale": self.embed_scale,
            "seed": self.seed,
            "w_init": self.w_init,
            "dtype": str(self.w.dtype).removeprefix("torch."),
            "base_model_name_or_path": self.base_model_name,
        }

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors``, each atomically."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        save_adapter_weights(folder / WEIGHTS_NAME, {"w": self.w, "E": self.E})
        atomic_write_json(folder / CONFIG_NAME, self.config_dict())

    @classmethod
    def from_pretrained(
        cls, save_directory: str | os.PathLike[str], embedding: Any, device: torch.device | str | None = None
    ) -> SuperPosPrompt:
        """Rebuild a saved adapter on top of ``embedding`` (the same frozen model it was trained on).

        Every config entry is type-checked and the weights' shapes are read from the safetensors header and
        compared with the config *before* the layer is built, so a hostile or corrupt config cannot make this
        allocate more than the weights file holds.
        """
        folder = Path(save_directory)
        path = folder / CONFIG_NAME
        config = read_adapter_config(path, PEFT_TYPE)
        n = config_int(path, config, "num_prompt_tokens")
        m = config_int(path, config, "num_sampled_tokens")
        ids = config_int_list(path, config, "sampled_token_ids", m)
        seed = config_int(path, config, "seed", minimum=0, default=0)
        embed_scale = config_float(path, config, "embed_scale", 1.0)
        base_model_name = config_optional_str(path, config, "base_model_name_or_path")
        w_init = config_optional_str(path, config, "w_init") or "normal"  # adapters saved before the record: normal
        if w_init not in W_INITS:
            raise SuperPosInputError(f"{path}: w_init {w_init!r} is not one of {', '.join(W_INITS)}")
        dim = _resolve_embedding(embedding).weight.shape[1]
        saved_dim = config_int(path, config, "embedding_dim", default=dim)
        if saved_dim != dim:
            raise SuperPosInputError(
                f"adapter in {folder} was trained for embedding dim {saved_dim}, "
                f"but the given embedding has dim {dim}; load it on the model it was trained on"
            )
        expected = {"w": (n, m), "E": (n, m, dim)}
        check_adapter_shapes(folder / WEIGHTS_NAME, expected)
        layer = cls(
            embedding,
            num_prompt_tokens=n,
            num_sampled_tokens=m,
            sampled_token_ids=ids,
            seed=seed,
            base_model_name=base_model_name,
            embed_scale=embed_scale,
            w_init=w_init,
        )
        tensors = load_adapter_weights(folder / WEIGHTS_NAME, expected)
        with torch.no_grad():
            layer.w.copy_(tensors["w"])
            layer.E.copy_(tensors["E"])
        return layer if device is None else layer.to(device)

    def extra_repr(self) -> str:
        return (
            f"num_prompt_tokens={self.num_prompt_tokens}, num_sampled_tokens={self.num_sampled_tokens}, "
            f"embedding_dim={self.embedding_dim}, embed_scale={self.embed_scale:g}"
        )


__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "SuperPosPrompt", "sample_token_ids"]
