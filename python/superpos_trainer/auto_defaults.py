"""Options derived from the data and the loaded model: ``--max-length auto`` and ``--lr auto``.

``--max-length auto`` (the default): the smallest length that leaves >= 99 % of this run's training inputs uncut,
within the model's positions (``collate.auto_max_length``). Whatever is still cut is reported per split
(``results.json`` ``"truncated"``) and a warning names the split when it is more than 1 %.

``--lr auto`` (opt-in): the paper's learning rates were tuned on T5 v1.1, and Adam moves every parameter by about
``lr`` per step whatever the scale of the embeddings, so the same ``lr`` moves a prompt built from SmolLM2's small
rows (element std 0.136) many times further, relative to its norm, than on T5. The rule keeps the relative move
of the paper's setting: ``lr_auto`` is the learning rate at which ONE AdamW step with a fixed random gradient on
the prompt ``P`` moves it by as much, relative to ``|P|``, as the paper's learning rate moves the same method
(same n, m, hidden size, w init) on T5::

    move_model(lr_auto) = move_T5(lr_paper),   move(lr) = |P_1 - P_0| / |P_0|

solved by bisection on ``log lr`` (``move`` grows with ``lr``). The first Adam step is ``lr * sign(g)`` for every
parameter, so the rule does not depend on the gradient's scale. For simple prompt tuning ``move = lr / rms`` (the
element RMS of the rows), so the rule is ``lr_paper * rms_model / rms_T5``; SuperPos and Residual are not linear
in ``lr`` (``w`` and ``E`` move together; Residual's LayerNorm caps its branch), hence a solve, not a ratio.
``move_T5`` is measured on a T5-v1.1-base-shaped reference: a 32128 x 768 table of N(0, 1) elements.
That table is an ASSUMPTION, not a measurement: no T5 checkpoint can be downloaded here, and N(0, 1) is T5's
(Mesh TensorFlow's) embedding initialisation (transformers ``T5PreTrainedModel._init_weights``: ``shared`` ~
N(0, factor * 1.0)); the trained table's scale and its anisotropy are not known to us. Hence ``auto`` is not the
default: the per-method paper defaults stay; the sweeps of issue 15 checked it on Gemma-3-270M and it did not
transfer for every method (docs/DEFAULTS_STUDY.md, "Outcome").
Full fine-tuning has no prompt: ``--lr auto`` keeps its paper value.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from superpos_kernels.reference import superpose

from .collate import Encoded, auto_max_length, length_cap, truncated_share
from .config import AUTO, METHOD_DEFAULTS, TrainConfig
from .models import LoadedModel

log = logging.getLogger("superpos_trainer")

PROBE_LR = 1e-4  # small enough that a step is linear in lr (SuperPos: w and E move together, a second-order term)
LR_BRACKET = (1e-7, 10.0)  # where --lr auto searches
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


def reference_table() -> Tensor:
    """The T5 v1.1 stand-in: T5-base's table shape, N(0, T5_REFERENCE_STD^2) elements (an assumption, see above)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(*T5_REFERENCE_SHAPE, generator=generator) * T5_REFERENCE_STD


@functools.lru_cache(maxsize=8)
def reference_move(method: str, num_prompt_tokens: int, num_sampled_tokens: int, hidden: int, w_init: str) -> float:
    """``move_T5(lr_paper)``: one step of the paper's lr, the method built the same way on the reference table."""
    from .methods import build_method

    loaded = table_model(reference_table(), "t5-reference")
    built = build_method(method, loaded, num_prompt_tokens, num_sampled_tokens, hidden, 0, w_init)
    return prompt_movement(built, METHOD_DEFAULTS[method][0], 1)[0]


def matching_lr(method: Any, target: float, iterations: int = 40) -> float:
    """The lr whose first AdamW step moves the prompt by ``target`` (relative), by bisection on ``log lr``."""
    low, high = LR_BRACKET
    if prompt_movement(method, high, 1)[0] < target:
        return high
    if prompt_movement(method, low, 1)[0] > target:
        return low
    for _ in range(iterations):
        mid = math.sqrt(low * high)
        if prompt_movement(method, mid, 1)[0] < target:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def auto_lr(method: Any, config: TrainConfig) -> float:
    """``--lr auto`` for a prompt method (see the module docstring); the paper's lr for full fine-tuning."""
    if config.prompt_length() == 0:  # no prompt to move (full fine-tuning): the method's own default
        return METHOD_DEFAULTS[config.method][0]
    target = reference_move(
        config.method, config.num_prompt_tokens, config.num_sampled_tokens, config.residual_hidden, config.w_init
    )
    return matching_lr(method, target)


def resolve(config: TrainConfig, method: Any, splits: Sequence[Sequence[Any]]) -> TrainConfig:
    """The config with ``auto`` values replaced by numbers (what the adapters' trainer_config.json records).

    ``splits``: the run's examples (train, validation[, holdout]). ``--max-length auto`` covers >= 99 % of the inputs
    of EACH split: SST-2's training split is mostly short phrases, its validation split whole sentences, and a length
    fitted to the training split alone cut 9.4 % of the validation sentences.
    """
    changes: dict[str, Any] = {}
    loaded = method.loaded
    if config.max_length == AUTO:
        cap = length_cap(loaded.is_encoder_decoder, loaded.max_positions, config.max_new_tokens)
        changes["max_length"] = max(
            auto_max_length(
                loaded.tokenizer,
                [e.source for e in split],
                loaded.is_encoder_decoder,
                method.num_prompt_tokens,
                config.max_target_length,
                cap,
            )
            for split in splits
            if split
        )
        log.info("--max-length auto: %d tokens (>= 99%% of each split's inputs uncut)", changes["max_length"])
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
                "to keep their evidence",
                100 * share,
                name,
            )
    return shares


__all__ = [
    "EmbeddingStats",
    "auto_lr",
    "embedding_stats",
    "matching_lr",
    "prompt_movement",
    "reference_move",
    "reference_table",
    "resolve",
    "scaled_rows",
    "table_model",
    "truncation_report",
    "unit_movement",
]
