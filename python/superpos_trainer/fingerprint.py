"""What must not change when a run resumes, as one JSON object stored in every checkpoint.

``config.json`` alone does not protect a run: a checkpoint folder copied in from another run (another --lr, another
model with the same n/m/d, other data) would continue under the wrong settings. The fingerprint ties the checkpoint
to its run: the resolved options that change the numbers, the model's identity and embedding shape, and a hash of
the exact rows trained and evaluated on (so another --data-dir with other files is caught, the same files moved
elsewhere are not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from .config import RESUME_FREE_KEYS, TrainConfig, option_defaults
from .errors import short_repr


def _rows_hash(examples: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{len(e.source)}:{e.source}|{len(e.target)}:{e.target}\n".encode("utf-8", "surrogatepass"))
    return f"sha256:{digest.hexdigest()[:32]} ({len(examples)} rows)"


def run_fingerprint(
    config: TrainConfig,
    model: Any,
    embedding_shape: Sequence[int],
    train: Sequence[Any],
    evaluation: Sequence[Any],
    holdout: Sequence[Any],
) -> dict[str, Any]:
    model_config = getattr(model, "config", None)
    options = {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE_KEYS}
    return {
        "options": options,
        "model": {
            "class": type(model).__name__,
            "model_type": getattr(model_config, "model_type", None),
            "embedding": list(embedding_shape),
        },
        "data": {"train": _rows_hash(train), "validation": _rows_hash(evaluation), "holdout": _rows_hash(holdout)},
    }


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``section.key: saved -> current`` for each entry that differs; options absent from an older checkpoint are
    compared against their default (an option added later does not make old run folders un-resumable)."""
    defaults = option_defaults()
    diffs = []
    for section in ("options", "model", "data"):
        old, new = saved.get(section), current.get(section) or {}
        old = old if isinstance(old, dict) else {}  # a malformed section differs in every entry
        for key in sorted(set(old) | set(new)):
            fallback = defaults.get(key) if section == "options" else None
            before = old.get(key, fallback)
            if before != new.get(key, fallback):
                diffs.append(f"{section}.{key}: {short_repr(before)} -> {short_repr(new.get(key, fallback))}")
    return diffs


__all__ = ["differences", "run_fingerprint"]
