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
    """``input_ids`` must be a non-empty ``[B, L]`` integer tensor (with every id in ``[0, num_embeddings)`` if
    that is given: see :func:`check_id_range`)."""
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
    if num_embeddings is not None:
        check_id_range(ids, num_embeddings)
    return ids


def id_range_error(ids: Tensor, num_embeddings: int) -> str | None:
    """The error for the first id outside ``[0, num_embeddings)`` in row-major order, or ``None`` if all fit.

    Only called once a cheap test has failed. The C++ kernel raises the same words from inside its gather
    (csrc/superpos.cpp: ``bad_id``), so every backend names the bad id and where it is.
    """
    outside = ((ids < 0) | (ids >= num_embeddings)).flatten().nonzero()
    if outside.numel() == 0:
        return None
    flat = int(outside[0, 0])
    b, t = divmod(flat, ids.shape[1])
    bad = int(ids.flatten()[flat])
    if bad < 0:
        return f"input_ids holds a negative id ({bad}) at input_ids[{b}, {t}]; ids must be in [0, {num_embeddings})"
    return (
        f"input_ids holds id {bad}, out of range for an embedding table of {num_embeddings} rows, at "
        f"input_ids[{b}, {t}]; ids must be in [0, {num_embeddings}) (was the tokenizer made for another model?)"
    )


def check_id_range(ids: Tensor, num_embeddings: int) -> None:
    """Every id in ``[0, num_embeddings)``, or ValueError; enforced while ``torch.compile`` traces too.

    Eagerly: the min and max read back to the host (one pass, one sync) for a message that names the bad id.
    While tracing, data-dependent Python control flow would break the graph, so the check becomes
    ``torch._assert_async``, a graph op that raises at run time (RuntimeError, the table size in its message).
    The fused backends do not call this: their kernels check each id as they gather it (C++) or flag it (Triton).
    """
    if ids.numel() == 0 or ids.device.type == "meta":
        return
    lo, hi = torch.aminmax(ids)
    if torch.compiler.is_compiling():
        torch._assert_async(
            (lo >= 0) & (hi < num_embeddings),
            f"input_ids holds an id outside [0, {num_embeddings}), the rows of the embedding table "
            "(was the tokenizer made for another model?)",
        )
        return
    if int(lo) < 0 or int(hi) >= num_embeddings:
        raise ValueError(id_range_error(ids, num_embeddings))


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


def _check_prompt_ranks(weight: Tensor, w: Tensor, E: Tensor) -> None:
    if weight.dim() != 2:
        raise ValueError(f"weight (the embedding table) must have shape [vocab, dim], got shape {tuple(weight.shape)}")
    if w.dim() != 2:
        raise ValueError(f"w must have shape [num_prompt_tokens, num_sampled_tokens], got shape {tuple(w.shape)}")
    if E.dim() != 3:
        raise ValueError(f"E must have shape [num_prompt_tokens, num_sampled_tokens, dim], got shape {tuple(E.shape)}")


def check_prompt_params(weight: object, w: object, E: object) -> tuple[Tensor, Tensor, Tensor]:
    """``weight [V, d]``, ``w [n, m]``, ``E [n, m, d]``: matching sizes, one floating dtype, one device."""
    weight = _require_tensor("weight", weight)
    w = _require_tensor("w", w)
    E = _require_tensor("E", E)
    for name, t in (("weight", weight), ("w", w), ("E", E)):
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be a floating tensor (float32, float64, float16, bfloat16), got {t.dtype}")
    _check_prompt_ranks(weight, w, E)
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
    input_ids: object,
    attention_mask: object,
    weight: object,
    w: object,
    E: object,
    embed_scale: object = 1.0,
    check_range: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor, float]:
    """All checks of the fused op, in the order a user would fix them.

    ``check_range=False`` leaves the id range to a backend that checks it in its kernel (no extra pass).
    """
    weight, w, E = check_prompt_params(weight, w, E)
    ids = check_input_ids(input_ids)
    if ids.device != weight.device:
        raise ValueError(
            f"input_ids is on {ids.device} but the embedding table is on {weight.device}; "
            f"move the batch with input_ids.to({str(weight.device)!r})"
        )
    if check_range:
        check_id_range(ids, weight.shape[0])
    mask = check_attention_mask(attention_mask, ids)
    if isinstance(embed_scale, bool) or not isinstance(embed_scale, (int, float)):
        raise TypeError(f"embed_scale must be a Python float, got {type(embed_scale).__name__}")
    return ids, mask, weight, w, E, float(embed_scale)
