"""Initialisations of SuperPos-Prompt's weights ``w`` ([n, m]): where the prompt starts.

``p_i = sum_j w_ij e_j`` over the ``m`` sampled (scaled) vocabulary rows ``e_j``. Three starts:

* ``normal`` (the default, unchanged): ``w ~ N(0, 1/m)``. For near-orthogonal rows ``|p|^2 = sum_j w_j^2 |e_j|^2``
  is a row's norm, and the random signs make the ``n`` prompt tokens differ although they share the ``m`` rows. On
  anisotropic tables (real LLMs: rows share a common direction) about half of the prompt vectors then point away
  from where real tokens lie.
* ``cone``: the ``normal`` draw, with each prompt token's weights negated where its vector points away from the
  mean embedding row (the direction real tokens share on anisotropic tables: on SmolLM2-135M 99 % of the rows have
  a positive cosine with it). Same norms and the same diversity between prompt tokens as ``normal``, but every
  prompt vector starts on the tokens' side. (All-positive weights, ``|N(0, 1/m)|`` rescaled to a token's norm,
  were tried first: they average the rows, so the ``n`` vectors collapse onto the mean direction, pairwise cosine
  0.995 on SmolLM2, and started with the highest loss; docs/DEFAULTS_STUDY.md.)
* ``prompt``: ``w_i`` one-hot on sampled row ``i`` (``i mod m`` when ``n > m``): ``p_i = e_i``, simple prompt
  tuning's start. The layer samples its ids with the same generator as ``sample_token_ids(n, ...)``, so its first
  ``n`` ids are the ones simple prompt tuning would draw with the same seed: both methods start at the same point.

Every choice is deterministic in ``seed``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

W_INITS = ("normal", "cone", "prompt")


def _normal(n: int, m: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, m, generator=generator, dtype=torch.float32) / math.sqrt(m)


def initial_w(
    kind: str, num_prompt_tokens: int, rows: Tensor, seed: int = 0, token_direction: Tensor | None = None
) -> Tensor:
    """``w`` ([n, m], float32, on the CPU) for the ``m`` scaled rows ``rows`` ([m, d]) per ``kind`` in W_INITS.

    ``token_direction`` ([d]): where real tokens lie, for ``cone`` (the layer passes the mean row of the whole
    table); default the mean of ``rows``.
    """
    n, m = num_prompt_tokens, rows.shape[0]
    if kind == "normal":
        return _normal(n, m, seed)
    if kind == "cone":
        w = _normal(n, m, seed)
        rows32 = rows.detach().float().cpu()
        direction = rows32.mean(0) if token_direction is None else token_direction.detach().float().cpu()
        side = torch.sign((w @ rows32) @ direction)
        return w * torch.where(side == 0, torch.ones_like(side), side).unsqueeze(1)
    if kind == "prompt":
        w = torch.zeros(n, m, dtype=torch.float32)
        w[torch.arange(n), torch.arange(n) % m] = 1.0
        return w
    raise ValueError(f"w_init={kind!r} is not one of {', '.join(W_INITS)}")


__all__ = ["W_INITS", "initial_w"]
