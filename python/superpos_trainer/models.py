"""Load a frozen backbone: any Hugging Face seq2seq (T5, BART) or causal LM (Llama, Gemma 3, GPT-2, Qwen2).

Names resolve in this order: an offline short name (``smollm2-135m``, ``gemma3-270m``: pip-packaged GGUF models,
see ``offline_models``), a local folder, a hub id (``google/t5-base-lm-adapt``). Loading is the real
``from_pretrained``; nothing here knows about prompts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelLoadError

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    is_encoder_decoder: bool
    name: str  # as the user gave it
    path: str  # what from_pretrained read

    @property
    def embedding(self) -> nn.Module:
        return self.model.get_input_embeddings()

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the model can position (None: relative positions, e.g. T5)."""
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None


def _resolve_path(name: str) -> str:
    """An offline short name -> its cached HF folder; anything else is returned unchanged (folder or hub id)."""
    try:
        from .offline_models import resolve_offline_model
    except ImportError:  # the offline-model helper is optional
        return name
    try:
        path = resolve_offline_model(name)
    except (ModuleNotFoundError, FileNotFoundError, FileExistsError) as exc:  # each message names its fix
        raise ModelLoadError(str(exc)) from None
    return str(path) if path is not None else name


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick request to the hub endpoint (proxy settings honoured), no retries.

    Without it an unknown name on a machine without network spends ~25 s in huggingface_hub's five rounds of
    retries before its error; with it such a load reads the local cache only (``local_files_only``) and fails at
    once. ``HF_HUB_OFFLINE=1`` counts as unreachable.
    """
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # whatever the HTTP stack raises for DNS, refused or timed-out connections
        return False
    return True


def load_model(
    name: str,
    model_type: str = "auto",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load model + tokenizer, backbone frozen (``requires_grad=False``) and in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-shard "Loading weights" bars drown the training log

    path = _resolve_path(name)
    if _looks_local(path) and not Path(path).expanduser().is_dir():
        raise ModelLoadError(f"model path {path} does not exist; pass a model folder, a hub id or smollm2-135m")
    offline = not _looks_local(path) and not _hub_reachable()
    hub = {"local_files_only": True} if offline else {}
    try:
        config = AutoConfig.from_pretrained(path, **hub)
    except (OSError, ValueError) as exc:
        if offline:
            raise ModelLoadError(
                f"cannot load model {name!r}: it is not a local folder, an offline short name (smollm2-135m, "
                "gemma3-270m) or in the Hugging Face cache, and the hub is unreachable from here; "
                "check the name, or pass a local model folder"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load model {name!r}: {first} (pass a local model folder, a hub id reachable from here, "
            "or an offline short name: smollm2-135m, gemma3-270m)"
        ) from None
    is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    if model_type == "seq2seq" and not is_seq2seq:
        raise ModelLoadError(f"--model-type seq2seq, but {name!r} is a {config.model_type} decoder-only model")
    if model_type == "causal" and is_seq2seq:
        raise ModelLoadError(f"--model-type causal, but {name!r} is a {config.model_type} encoder-decoder model")
    auto_cls = AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM
    try:
        model = auto_cls.from_pretrained(path, dtype=dtype, **hub)
        tokenizer = AutoTokenizer.from_pretrained(path, **hub)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {name!r} from {path}: {exc}") from None

    if not is_seq2seq:
        # Decoder-only batches are left-padded so every row's label ends at the last position (generation and
        # the label-only logits rely on that). The pad id is never attended to, so EOS serves when none exists.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise ModelLoadError(f"tokenizer of {name!r} has neither a pad nor an EOS token; cannot batch")
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    log.info(
        "loaded %s (%s, %s parameters) from %s",
        name,
        config.model_type,
        f"{sum(p.numel() for p in model.parameters()):,d}",
        path,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, is_encoder_decoder=is_seq2seq, name=name, path=path)


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ModelLoadError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {spec} asked for CUDA, but no CUDA GPU is available; use --device cpu")
    return device


__all__ = ["LoadedModel", "load_model", "resolve_device"]
