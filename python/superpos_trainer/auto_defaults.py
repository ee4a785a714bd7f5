"""Options derived from the data and the loaded model: ``--max-length auto`` and ``--lr auto``.

``--max-length auto`` (the default): the smallest length that leaves >= 99 % of this run's training inputs uncut,
within the model's positions (``collate.auto_max_length``). Whatever is still cut is reported per split
(``results.json`` ``"truncated"``) and a warning names the split when it is more than 1 %.

``--lr auto`` (opt-in): the paper's learning rates were tuned on T5 v1.1, and Adam moves every parameter by about
``lr`` per step whatever the scale of the embeddings, so the same ``lr`` moves a prompt built from SmolLM2's small
rows (element std 0.136) many times further, relative to its norm, than on T5. The rule keeps the relative move
of the paper's setting::

    lr_auto = lr_paper * u_T5 / u_model,   u = |P_1 - P_0| / |P_0| / lr

where ``u`` is the relative movement of the prompt ``P`` per unit learning rate in ONE AdamW step with a fixed
random gradient on ``P``, measured on the method as built (same n, m, hidden size, w init) at a small probe lr
(the first Adam step is ``lr * sign(g)`` per parameter, so ``u`` does not depend on the gradient's scale).
``u_T5`` is measured the same way on a T5-v1.1-base-shaped reference: a 32128 x 768 table of N(0, 1) elements.
That table is an ASSUMPTION, not a measurement: no T5 checkpoint can be downloaded here, and N(0, 1) is T5's
(Mesh TensorFlow's) embedding initialisation (transformers ``T5PreTrainedModel._init_weights``: ``shared`` ~
N(0, factor * 1.0)); the trained table's scale and its anisotropy are not known to us. Hence ``auto`` is not the
default: the per-method paper defaults stay until the learning-rate sweeps (issue 15) say which transfers.
Full fine-tuning has no prompt: ``--lr auto`` keeps its paper value.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from superpos_kernels.reference import superpose

from .collate import Encoded, auto_max_length, truncated_share
from .config import AUTO, METHOD_DEFAULTS, TrainConfig
from .models import LoadedModel

log = logging.getLogger("superpos_trainer")

PROBE_LR = 1e-4  # small enough that a step is linear in lr (SuperPos: w and E move together, a second-order term)
T5_REFERENCE_SHAPE = (32128, 768)  # t5-base-lm-adapt's table (vocabulary rows, d_model)
T5_REFERENCE_STD = 1.0  # assumed element std of T5 v1.1's embeddings (its initialisation; see the docstring)
TRUNCATION_WARNING = 0.01


@dataclass(frozen=True)
class EmbeddingStats:
    row_norm: float  # mean L2 norm of a row
    element_std: float  # std of all elements
    anisotropy: float  # mean pairwise cosine between distinct rows
    positive_share: float  # share of rows with a positive cosine to the mean row


def embedding_stats(rows: Tensor) -> EmbeddingStats:
    """Statistics of (a sample of) scaled embedding rows ``[N, d]``."""
    rows = rows.detach().float()
    unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = rows.shape[0]
    total = unit.sum(0)
    # mean over i != j of cos(i, j) = (|sum u|^2 - n) / (n (n - 1)), without the n x n matrix
    anisotropy = float((total.pow(2).sum() - n) / (n * (n - 1))) if n > 1 else 0.0
    mean_row = rows.mean(0)
    return EmbeddingStats(
        row_norm=float(rows.norm(dim=1).mean()),
        element_std=float(rows.std()),
        anisotropy=anisotropy,
        positive_share=float((rows @ mean_row > 0).float().mean()),
    )


def scaled_rows(loaded: LoadedModel, count: int = 4096, seed: int = 0) -> Tensor:
    """Up to ``count`` random rows of the table, through the embedding module (Gemma scales inside it)."""
    rows = loaded.embedding.weight.shape[0]
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randperm(rows, generator=generator)[: min(count, rows)]
    with torch.no_grad():
        return loaded.embedding(ids.to(loaded.embedding.weight.device)).float()


def prompt_of(method: nn.Module) -> Tensor:
    """The method's ``[n, d]`` prompt as a differentiable function of its parameters."""
    layer = getattr(method, "layer", None)
    if layer is not None:  # SuperPos: p_i = sum_j w_ij E_ij
        return superpose(layer.w, layer.E)
    return method.prompt_vectors()


def prompt_movement(method: Any, lr: float, steps: int, weight_decay: float = 0.0, seed: int = 0) -> list[float]:
    """``|P_k - P_0| / |P_0|`` after each of ``steps`` AdamW steps with one fixed random gradient on ``P``.

    The method's parameters are restored afterwards (the optimizer is a throwaway one).
    """
    saved = {k: v.detach().clone() for k, v in method.trainable_state().items()}
    optimizer = torch.optim.AdamW(method.param_groups(weight_decay), lr=lr)
    moves = []
    with torch.enable_grad():
        start = prompt_of(method).detach().clone()
        generator = torch.Generator().manual_seed(seed)
        gradient = torch.randn(start.shape, generator=generator).to(start)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            (prompt_of(method) * gradient).sum().backward()
            optimizer.step()
            moves.append(float((prompt_of(method).detach() - start).norm() / start.norm()))
    optimizer.zero_grad(set_to_none=True)
    method.load_trainable_state(saved)
    return moves


def unit_movement(method: Any) -> float:
    """``u``: the relative prompt movement of one AdamW step per unit learning rate."""
    return prompt_movement(method, PROBE_LR, 1)[0] / PROBE_LR


class _Vocabulary:
    """The tokenizer stand-in of the reference model: a size and no special ids."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.all_special_ids: list[int] = []

    def __len__(self) -> int:
        return self.size


class _TableModel(nn.Module):
    """A model that is only an embedding table (what the methods read of a model to build a prompt)."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.embed = nn.Embedding.from_pretrained(table, freeze=True)
        self.config = None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed


def table_model(table: Tensor, name: str = "table") -> LoadedModel:
    """A ``LoadedModel`` around a bare embedding table (the reference, and tests)."""
    return LoadedModel(_TableModel(table), _Vocabulary(table.shape[0]), False, name, name)


@functools.lru_cache(maxsize=8)
def reference_unit(method: str, num_prompt_tokens: int, num_sampled_tokens: int, hidden: int, w_init: str) -> float:
    """``u_T5``: ``unit_movement`` of the method built the same way on the T5 v1.1 reference table."""
    from .methods import build_method

    generator = torch.Generator().manual_seed(0)
    table = torch.randn(*T5_REFERENCE_SHAPE, generator=generator) * T5_REFERENCE_STD
    built = build_method(
        method, table_model(table, "t5-reference"), num_prompt_tokens, num_sampled_tokens, hidden, 0, w_init
    )
    return unit_movement(built)


def auto_lr(method: Any, config: TrainConfig) -> float:
    """``lr_paper * u_T5 / u_model`` for a prompt method; the paper's lr for full fine-tuning."""
    paper_lr = METHOD_DEFAULTS[config.method][0]
    if config.method == "full":
        return paper_lr
    reference = reference_unit(
        config.method, config.num_prompt_tokens, config.num_sampled_tokens, config.residual_hidden, config.w_init
    )
    return paper_lr * reference / unit_movement(method)


def resolve(config: TrainConfig, method: Any, train_examples: Sequence[Any]) -> TrainConfig:
    """The config with ``auto`` values replaced by numbers (what the adapters' trainer_config.json records)."""
    changes: dict[str, Any] = {}
    loaded = method.loaded
    if config.max_length == AUTO:
        changes["max_length"] = auto_max_length(
            loaded.tokenizer,
            [e.source for e in train_examples],
            loaded.is_encoder_decoder,
            method.num_prompt_tokens,
            config.max_target_length,
            loaded.max_positions,
            config.max_new_tokens,
        )
        log.info("--max-length auto: %d tokens (>= 99%% of the training inputs uncut)", changes["max_length"])
    if config.lr == AUTO:
        changes["lr"] = auto_lr(method, config)
        log.info("--lr auto: %.3g (the paper's relative prompt step on T5, on this model's embeddings)", changes["lr"])
    return dataclasses.replace(config, **changes) if changes else config


def truncation_report(splits: Mapping[str, Sequence[Encoded]]) -> dict[str, float]:
    """Share of truncated inputs per split; a warning for each split above 1 %."""
    shares = {name: truncated_share(encoded) for name, encoded in splits.items()}
    for name, share in shares.items():
        if share > TRUNCATION_WARNING:
            log.warning(
                "%.1f%% of the %s inputs are truncated (their longest field lost its end); raise --max-length "
                "(or use --max-length auto) to keep their evidence",
                100 * share,
                name,
            )
    return shares


__all__ = [
    "EmbeddingStats",
    "auto_lr",
    "embedding_stats",
    "prompt_movement",
    "reference_unit",
    "resolve",
    "scaled_rows",
    "table_model",
    "truncation_report",
    "unit_movement",
]
