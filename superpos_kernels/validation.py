"""Input checks shared by the layer and every backend of the fused op.

Each failure names the argument, what was expected and what was given, so a user never has to decode an error
raised deep inside torch (or, worse, read silent garbage from an out-of-range gather in a GPU kernel).
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
ID_DTYPES = (torch.int64, torch.int32)
MASK_DTYPES = (torch.int64, torch.int32, torch.bool, torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _require_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_input_ids(input_ids: object, num_embeddings: int | None = None) -> Tensor:
    """``input_ids`` must be a non-empty ``[B, L]`` integer tensor with every id in ``[0, num_embeddings)``.

    The range check reads the min and max back to the host (one sync); it is skipped while ``torch.compile``
    traces, where data-dependent Python control flow would break the graph.
    """
    ids = _require_tensor("input_ids", input_ids)
    if ids.dtype not in ID_DTYPES:
        raise TypeError(
            f"input_ids must be an integer tensor (torch.int64 or torch.int32), got {ids.dtype}; "
            "token ids come from a tokenizer, cast with .long() if you built them by hand"
        )
    if ids.dim() != 2:
        raise ValueError(f"input_ids must have shape [batch, seq_len] (2 dims), got shape {tuple(ids.shape)}")
    if ids.shape[0] == 0:
        raise ValueError(f"input_ids is an empty batch (shape {tuple(ids.shape)}); pass at least one sequence")
    checkable = ids.device.type != "meta" and not torch.compiler.is_compiling()
    if num_embeddings is not None and ids.numel() > 0 and checkable:
        lo, hi = (int(v) for v in torch.aminmax(ids))
        if lo < 0:
            raise ValueError(f"input_ids holds a negative id ({lo}); ids must be in [0, {num_embeddings})")
        if hi >= num_embeddings:
            raise ValueError(
                f"input_ids holds id {hi}, out of range for an embedding table of {num_embeddings} rows; "
                f"ids must be in [0, {num_embeddings}) (was the tokenizer made for another model?)"
            )
    return ids


def check_attention_mask(attention_mask: object, input_ids: Tensor) -> Tensor | None:
    if attention_mask is None:
        return None
    mask = _require_tensor("attention_mask", attention_mask)
    if mask.dtype not in MASK_DTYPES:
        raise TypeError(f"attention_mask must be an integer, bool or float tensor, got {mask.dtype}")
    if mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(mask.shape)}"
        )
    if mask.device != input_ids.device:
        raise ValueError(
            f"attention_mask is on {mask.device} but input_ids is on {input_ids.device}; move both to one device"
        )
    return mask


def check_prompt_params(weight: object, w: object, E: object) -> tuple[Tensor, Tensor, Tensor]:
    """``weight [V, d]``, ``w [n, m]``, ``E [n, m, d]``: matching sizes, one floating dtype, one device."""
    weight = _require_tensor("weight", weight)
    w = _require_tensor("w", w)
    E = _require_tensor("E", E)
    for name, t in (("weight", weight), ("w", w), ("E", E)):
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be a floating tensor (float32, float64, float16, bfloat16), got {t.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"weight (the embedding table) must have shape [vocab, dim], got shape {tuple(weight.shape)}")
    if w.dim() != 2:
        raise ValueError(f"w must have shape [num_prompt_tokens, num_sampled_tokens], got shape {tuple(w.shape)}")
    if E.dim() != 3:
        raise ValueError(f"E must have shape [num_prompt_tokens, num_sampled_tokens, dim], got shape {tuple(E.shape)}")
    if E.shape[:2] != w.shape:
        raise ValueError(
            f"E {tuple(E.shape)} and w {tuple(w.shape)} disagree on [num_prompt_tokens, num_sampled_tokens]"
        )
    if E.shape[2] != weight.shape[1]:
        raise ValueError(f"E has dim {E.shape[2]} but the embedding table has dim {weight.shape[1]}")
    if w.numel() == 0 or weight.shape[0] == 0:
        raise ValueError(f"w {tuple(w.shape)} and weight {tuple(weight.shape)} must not be empty")
    if not (weight.dtype == w.dtype == E.dtype):
        raise TypeError(
            f"weight, w and E must share one dtype, got weight={weight.dtype}, w={w.dtype}, E={E.dtype}; "
            "the prompt parameters follow the frozen embedding's dtype (cast the module with .to(dtype))"
        )
    if not (weight.device == w.device == E.device):
        raise ValueError(
            f"weight, w and E must be on one device, got weight={weight.device}, w={w.device}, E={E.device}"
        )
    return weight, w, E


def check_embed_inputs(
    input_ids: object, attention_mask: object, weight: object, w: object, E: object, embed_scale: object = 1.0
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor, float]:
    """All checks of the fused op, in the order a user would fix them."""
    weight, w, E = check_prompt_params(weight, w, E)
    ids = check_input_ids(input_ids)
    if ids.device != weight.device:
        raise ValueError(
            f"input_ids is on {ids.device} but the embedding table is on {weight.device}; "
            f"move the batch with input_ids.to({str(weight.device)!r})"
        )
    check_input_ids(ids, weight.shape[0])
    mask = check_attention_mask(attention_mask, ids)
    if isinstance(embed_scale, bool) or not isinstance(embed_scale, (int, float)):
        raise TypeError(f"embed_scale must be a Python float, got {type(embed_scale).__name__}")
    return ids, mask, weight, w, E, float(embed_scale)
