"""The pure-PyTorch oracle for the fused SuperPos op.

Every fast path (Triton, C++/CUDA) is tested against these functions. They are written to be obviously
correct, not fast: no fusion, no in-place tricks, autograd does the backward.
"""

from __future__ import annotations

import torch
from torch import Tensor


def superpose(w: Tensor, E: Tensor) -> Tensor:
    """Prompt rows ``P[i] = sum_j w[i, j] * E[i, j, :]``: ``w [n, m]``, ``E [n, m, d]`` -> ``[n, d]``."""
    return (w.unsqueeze(-1) * E).sum(dim=1)


def extend_attention_mask(attention_mask: Tensor | None, input_ids: Tensor, num_prompt_tokens: int) -> Tensor:
    """``[B, L]`` mask -> ``[B, n + L]`` with ones in front for the prompt (all ones when no mask is given).

    The result keeps the dtype of the given mask (``torch.long`` when none is given), so it can be handed to a
    Hugging Face model exactly where the original mask would have gone.
    """
    batch, length = input_ids.shape
    if attention_mask is None:
        return torch.ones(batch, num_prompt_tokens + length, dtype=torch.long, device=input_ids.device)
    # One op (allocate and write once) rather than ones + cat: the mask is on every call's path.
    return torch.nn.functional.pad(attention_mask, (num_prompt_tokens, 0), value=1)


def superpos_embed_reference(
    input_ids: Tensor, weight: Tensor, w: Tensor, E: Tensor, embed_scale: float = 1.0
) -> Tensor:
    """``[P | X]``: the superposed prompt followed by the (scaled) embeddings of ``input_ids``.

    input_ids ``[B, L]`` integer, weight ``[V, d]`` (the frozen table), w ``[n, m]``, E ``[n, m, d]``
    -> ``[B, n + L, d]``. ``embed_scale`` multiplies only the gathered rows, as models such as Gemma scale
    their token embeddings inside the embedding module; the prompt is trained in the scaled space already.
    """
    prompt = superpose(w, E)
    # The table is frozen by definition of the method: it never receives a gradient, even if a user forgot
    # requires_grad_(False) on it (the fused backends behave the same way).
    tokens = torch.nn.functional.embedding(input_ids.long(), weight.detach())
    if embed_scale != 1.0:
        tokens = tokens * embed_scale
    batch = input_ids.shape[0]
    return torch.cat([prompt.unsqueeze(0).expand(batch, -1, -1), tokens], dim=1)


def superpos_backward_reference(grad_out: Tensor, w: Tensor, E: Tensor) -> tuple[Tensor, Tensor]:
    """The closed-form gradients of :func:`superpos_embed_reference` with respect to ``w`` and ``E``.

    ``g[i] = sum_b dOut[b, i, :]``; ``dw[i, j] = <g[i], E[i, j]>``; ``dE[i, j] = w[i, j] * g[i]``. Accumulated in
    fp32 (or fp64 for fp64 inputs) and returned in the parameters' dtype, as the fused kernels do.
    """
    n = w.shape[0]
    acc = torch.float64 if w.dtype == torch.float64 else torch.float32
    g = grad_out[:, :n, :].to(acc).sum(dim=0)  # [n, d]
    dw = torch.einsum("nd,nmd->nm", g, E.to(acc))
    dE = w.to(acc).unsqueeze(-1) * g.unsqueeze(1)
    return dw.to(w.dtype), dE.to(E.dtype)
