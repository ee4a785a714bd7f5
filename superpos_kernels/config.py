"""``SuperPosConfig``: what :func:`superpos_kernels.get_superpos_model` needs to build a SuperPos prompt.

A dataclass with ``help`` metadata on each field, in the style of PEFT's configs, so it can feed an argument
parser (``transformers.HfArgumentParser``) as well as plain code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .init import W_INITS
from .validation import check_positive_int


@dataclass
class SuperPosConfig:
    num_prompt_tokens: int = field(default=10, metadata={"help": "n, the number of prompt vectors (paper: 10)."})
    num_sampled_tokens: int = field(
        default=128, metadata={"help": "m, vocabulary rows superposed in each prompt vector (paper: 128)."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds the sampling of the m token ids and the w initialisation."})
    vocab_size: int | None = field(
        default=None,
        metadata={
            "help": "Ids are sampled from [0, vocab_size); None = every row of the embedding table. Pass "
            "len(tokenizer) when the table is padded (T5: 32128 rows, 32100 tokens)."
        },
    )
    exclude_ids: tuple[int, ...] = field(
        default=(), metadata={"help": "Ids never sampled: padding, EOS, sentinels (tokenizer.all_special_ids)."}
    )
    w_init: str = field(
        default="normal",
        metadata={
            "help": "Where the prompt starts: normal (N(0, 1/m) weights), cone (the same, each prompt vector on the "
            "tokens' side of the mean row) or prompt (simple prompt tuning's start); superpos_kernels.init.",
            "choices": W_INITS,
        },
    )

    def __post_init__(self) -> None:
        check_positive_int("SuperPosConfig.num_prompt_tokens", self.num_prompt_tokens)
        check_positive_int("SuperPosConfig.num_sampled_tokens", self.num_sampled_tokens)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise TypeError(f"SuperPosConfig.seed must be an int >= 0, got {self.seed!r}")
        if self.vocab_size is not None:
            check_positive_int("SuperPosConfig.vocab_size", self.vocab_size)
        ids = tuple(self.exclude_ids)
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int)]
        if bad:
            raise TypeError(f"SuperPosConfig.exclude_ids must hold ints, got {bad[0]!r} ({type(bad[0]).__name__})")
        self.exclude_ids = ids
        if self.w_init not in W_INITS:
            raise ValueError(f"SuperPosConfig.w_init must be one of {', '.join(W_INITS)}, got {self.w_init!r}")

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> SuperPosConfig:
        """``vocab_size=len(tokenizer)`` and ``exclude_ids=tokenizer.all_special_ids``; ``kwargs`` set the rest."""
        kwargs.setdefault("vocab_size", len(tokenizer))
        kwargs.setdefault("exclude_ids", tuple(getattr(tokenizer, "all_special_ids", ())))
        return cls(**kwargs)


__all__ = ["SuperPosConfig"]
