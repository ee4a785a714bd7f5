"""``SuperPosModel``: a frozen Hugging Face model plus one :class:`SuperPosPrompt`, used like the model itself.

``get_superpos_model(model, SuperPosConfig(...))`` freezes ``model`` and returns a module that takes
``input_ids`` / ``attention_mask`` / ``labels``, returns the base model's own output type, generates, saves and
loads adapter folders, trains under ``transformers.Trainer`` unchanged and exports to a PEFT prompt-tuning adapter.

Duck typing only (``get_input_embeddings()``, ``config.is_encoder_decoder``, ``generate``): this module does not
import transformers, so ``import superpos_kernels`` stays light.

Layouts. Causal LMs read ``[P | real tokens | padding]`` (left-padded rows are re-packed) with position ids from
the mask, so the last prompt position predicts the first real token and left or right padding give the same logits
and loss; the returned ``logits`` cover the input tokens only, in the caller's order (``[B, L, V]``, aligned with
``input_ids`` and ``labels``); other per-position outputs (hidden states) are in the packed order. Seq2seq models
get the prompt in the encoder only; the encoder input is re-packed to right padding first, because T5's relative
position buckets would otherwise see a different prompt-to-token distance for left-padded rows.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.module import _IncompatibleKeys

from .config import SuperPosConfig
from .io import atomic_write_json, check_adapter_shapes, load_adapter_weights, read_adapter_config
from .io import config_int as _config_int
from .layer import CONFIG_NAME, PEFT_TYPE, SuperPosPrompt
from .validation import check_attention_mask, check_input_ids

# What transformers.Trainer writes for a module that is not a PreTrainedModel: our state_dict() (prompt only).
TRAINER_WEIGHTS_NAME = "model.safetensors"
_PREFIX = "prompt."


def _input_embedding(model: Any) -> nn.Module:
    getter = getattr(model, "get_input_embeddings", None)
    try:
        embedding = getter() if callable(getter) else None
    except NotImplementedError:  # what PreTrainedModel raises for architectures without token embeddings
        embedding = None
    weight = getattr(embedding, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise TypeError(
            f"get_superpos_model needs a model whose get_input_embeddings() returns an embedding with a 2-D .weight "
            f"(a Hugging Face PreTrainedModel, e.g. AutoModelForCausalLM / AutoModelForSeq2SeqLM); "
            f"got {type(model).__name__}"
        )
    return embedding


def _model_name(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "name_or_path", None) or None


def _task_type(model: nn.Module) -> str:
    """PEFT's names for the two kinds of model this wrapper supports."""
    return "SEQ_2_SEQ_LM" if getattr(getattr(model, "config", None), "is_encoder_decoder", False) else "CAUSAL_LM"


def _pack_order(attention_mask: Tensor, left: bool) -> Tensor | None:
    """Per-row order that moves the real tokens to the right (``left`` padding) or to the left, keeping their
    order; ``None`` when every row is packed that way already (the common case: no reordering, no copy).

    A stable sort on the mask handles either padding side (and pads in the middle) in one batched op.
    """
    keys = (attention_mask != 0).to(torch.int8)
    packed = keys[:, :-1] <= keys[:, 1:] if left else keys[:, :-1] >= keys[:, 1:]
    if bool(packed.all()):
        return None
    return torch.sort(keys if left else 1 - keys, dim=1, stable=True).indices


def _pack(input_ids: Tensor, attention_mask: Tensor, left: bool) -> tuple[Tensor, Tensor]:
    order = _pack_order(attention_mask, left)
    if order is None:
        return input_ids, attention_mask
    return input_ids.gather(1, order), attention_mask.gather(1, order)


def _accepts(function: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def _accepts_var_kwargs(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class SuperPosModel(nn.Module):
    """A frozen base model with a SuperPos prompt. Build it with :func:`get_superpos_model` or ``from_pretrained``.

    ``state_dict()`` holds the prompt only (``prompt.w``, ``prompt.E``, ``prompt.sampled_token_ids``): this is
    what ``transformers.Trainer`` saves for a plain ``nn.Module`` (``model.safetensors``: n x m x d floats, no base
    weights) and reloads on ``resume_from_checkpoint``. ``from_pretrained`` reads that file as well as the adapter
    folder written by :meth:`save_pretrained`.
    """

    main_input_name = "input_ids"
    _keys_to_ignore_on_save = None  # read by transformers.Trainer after loading a checkpoint

    def __init__(self, base_model: nn.Module, prompt: SuperPosPrompt) -> None:
        super().__init__()
        # Frozen here, not by the caller: no weight gradient of the base model is ever computed.
        base_model.requires_grad_(False)
        self.base_model = base_model
        self.prompt = prompt
        self.is_encoder_decoder = _task_type(base_model) == "SEQ_2_SEQ_LM"
        self._takes_position_ids = not self.is_encoder_decoder and _accepts(base_model.forward, "position_ids")
        accepts = getattr(base_model, "accepts_loss_kwargs", None)
        # Trainer passes num_items_in_batch only when the model's forward takes it (it reads this attribute).
        self.accepts_loss_kwargs = bool(_accepts_var_kwargs(base_model.forward) if accepts is None else accepts)

    # ---- what Trainer and user code read off a Hugging Face model ------------------------------------------------

    @property
    def config(self) -> Any:
        return self.base_model.config

    @property
    def device(self) -> torch.device:
        return self.prompt.w.device

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    # ---- forward / generate ------------------------------------------------------------------------------------

    def _inputs(self, input_ids: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        ids = check_input_ids(input_ids)
        mask = check_attention_mask(attention_mask, ids)
        return ids, torch.ones_like(ids) if mask is None else mask

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """The base model's forward on ``[P | input]``: same output type, ``loss`` when ``labels`` are given.

        ``labels`` are the base model's: ``[B, L]`` like ``input_ids`` for a causal LM (``-100`` where not scored;
        the ``n`` prompt positions are added here), the target ids ``[B, T]`` for a seq2seq model.
        """
        ids, mask = self._inputs(input_ids, attention_mask)
        n = self.prompt.num_prompt_tokens
        if labels is not None:
            self._check_labels(labels, ids)
        if self.is_encoder_decoder:
            ids, mask = _pack(ids, mask, left=False)
            embeds, full_mask = self.prompt(ids, mask)
            return self.base_model(inputs_embeds=embeds, attention_mask=full_mask, labels=labels, **kwargs)
        # Causal: run [P | real tokens | padding], so the last prompt position predicts the first real token for
        # either padding side (with [P | padding | x] a pad position would), then put the logits back in the
        # caller's order.
        order = _pack_order(mask, left=False)
        if order is not None:
            ids, mask = ids.gather(1, order), mask.gather(1, order)
            labels = None if labels is None else labels.gather(1, order)
        if labels is not None:
            labels = torch.cat([labels.new_full((labels.shape[0], n), -100), labels], dim=1)
        embeds, full_mask = self.prompt(ids, mask)
        if self._takes_position_ids and kwargs.get("position_ids") is None:
            kwargs["position_ids"] = (full_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.base_model(inputs_embeds=embeds, attention_mask=full_mask, labels=labels, **kwargs)
        logits = getattr(out, "logits", None)
        if isinstance(logits, Tensor) and logits.dim() == 3 and logits.shape[1] == n + ids.shape[1]:
            logits = logits[:, n:]  # drop the prompt positions: logits line up with input_ids and labels
            if order is not None:
                inverse = torch.argsort(order, dim=1)
                logits = logits.gather(1, inverse.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
            out.logits = logits
        return out

    def _check_labels(self, labels: Any, ids: Tensor) -> None:
        if not isinstance(labels, Tensor) or labels.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"labels must be an integer tensor, got {getattr(labels, 'dtype', type(labels).__name__)}")
        if self.is_encoder_decoder:
            if labels.dim() != 2 or labels.shape[0] != ids.shape[0]:
                raise ValueError(
                    f"labels must have shape [batch, target_len] with batch {ids.shape[0]} (the target ids of the "
                    f"seq2seq model), got {tuple(labels.shape)}"
                )
        elif labels.shape != ids.shape:
            raise ValueError(
                f"labels must have the shape of input_ids {tuple(ids.shape)} for a causal LM (the input ids with "
                f"-100 where no loss is wanted; the prompt's {self.prompt.num_prompt_tokens} positions are added "
                f"by SuperPosModel), got {tuple(labels.shape)}"
            )

    @torch.no_grad()
    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> Any:
        """``base_model.generate`` with the prompt; left or right padded input gives the same text.

        Returns what the base model's ``generate(input_ids)`` returns. Causal LMs: ``[input | new tokens]``, where
        the input is re-packed to left padding (right-padded rows have their padding moved to the front), so
        ``out[:, input_ids.shape[1]:]`` are the new tokens in both cases; ``max_length`` counts the input tokens but
        not the prompt, as for the base model. Seq2seq models: the decoder's sequences (start token + new tokens).
        ``kwargs`` go to ``generate`` unchanged (``max_new_tokens``, ``do_sample``, ``num_beams``, ...).
        """
        if "inputs_embeds" in kwargs:
            raise TypeError("SuperPosModel.generate takes input_ids (the prompt is added here), not inputs_embeds")
        ids, mask = self._inputs(input_ids, attention_mask)
        ids, mask = _pack(ids, mask, left=not self.is_encoder_decoder)
        embeds, full_mask = self.prompt(ids, mask)
        if self.is_encoder_decoder:
            return self.base_model.generate(inputs_embeds=embeds, attention_mask=full_mask, **kwargs)
        if kwargs.get("max_length") is not None and kwargs.get("max_new_tokens") is None:
            # HF counts max_length over inputs_embeds, i.e. including the prompt: keep the base model's meaning.
            kwargs["max_new_tokens"] = max(kwargs.pop("max_length") - ids.shape[1], 0)
        out = self.base_model.generate(inputs_embeds=embeds, attention_mask=full_mask, **kwargs)
        # Decoder-only generate() given only inputs_embeds returns the new tokens; prepend the input like
        # generate(input_ids) does (repeated for num_return_sequences / beams).
        sequences = out if isinstance(out, Tensor) else out.sequences
        prefix = ids.repeat_interleave(sequences.shape[0] // ids.shape[0], dim=0)
        sequences = torch.cat([prefix, sequences], dim=1)
        if isinstance(out, Tensor):
            return sequences
        out.sequences = sequences
        return out

    # ---- training helpers --------------------------------------------------------------------------------------

    def param_groups(self, weight_decay: float = 1e-5) -> list[dict[str, Any]]:
        """AdamW groups with decay on ``w`` only: ``torch.optim.AdamW(model.param_groups(1e-5), lr=1e-2)``."""
        return self.prompt.param_groups(weight_decay)

    def print_trainable_parameters(self) -> None:
        self.prompt.print_trainable_parameters(self.base_model)

    # ---- state dict: the prompt only ----------------------------------------------------------------------------

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """The prompt's tensors only: the frozen base model is never saved (nor its tied weights)."""
        return self.prompt.state_dict(*args, destination=destination, prefix=prefix + _PREFIX, keep_vars=keep_vars)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> _IncompatibleKeys:
        own = {k.removeprefix(_PREFIX): v for k, v in state_dict.items() if k.startswith(_PREFIX)}
        other = [k for k in state_dict if not k.startswith(_PREFIX)]
        if strict and other:
            raise RuntimeError(f"state dict holds keys that are not SuperPosModel's prompt: {other[:5]}")
        result = self.prompt.load_state_dict(own, strict=strict, assign=assign)
        return _IncompatibleKeys(
            [_PREFIX + k for k in result.missing_keys], [_PREFIX + k for k in result.unexpected_keys] + other
        )

    # ---- persistence ---------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike[str], **_: Any) -> None:
        """The adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), with the model kind."""
        self.prompt.save_pretrained(save_directory)
        config = self.prompt.config_dict()
        config["task_type"] = _task_type(self.base_model)
        if config["base_model_name_or_path"] is None:
            config["base_model_name_or_path"] = _model_name(self.base_model)
        atomic_write_json(Path(save_directory) / CONFIG_NAME, config)

    @classmethod
    def from_pretrained(cls, base_model: nn.Module, save_directory: str | os.PathLike[str]) -> SuperPosModel:
        """Load an adapter folder (``save_pretrained``) or a ``trainer.save_model()`` folder onto ``base_model``."""
        folder = Path(save_directory)
        embedding = _input_embedding(base_model)
        if not (folder / CONFIG_NAME).is_file() and (folder / TRAINER_WEIGHTS_NAME).is_file():
            return cls(base_model, _prompt_from_state_file(folder / TRAINER_WEIGHTS_NAME, base_model))
        config = read_adapter_config(folder / CONFIG_NAME, PEFT_TYPE)
        _check_same_base(folder, config, base_model, embedding)
        prompt = SuperPosPrompt.from_pretrained(folder, base_model, device=embedding.weight.device)
        return cls(base_model, prompt)

    def export_to_peft(self, save_directory: str | os.PathLike[str]) -> None:
        """Write the materialised prompt as a PEFT ``PROMPT_TUNING`` adapter (see ``peft_export.py``)."""
        from .peft_export import export_prompt_tuning

        export_prompt_tuning(self.prompt.materialize(), self.base_model, save_directory)


def _check_same_base(folder: Path, config: dict[str, Any], base_model: nn.Module, embedding: nn.Module) -> None:
    """An adapter of another base model must not load silently onto this one."""
    path = folder / CONFIG_NAME
    rows, dim = embedding.weight.shape
    saved = (_config_int(path, config, "num_embeddings", default=rows), _config_int(path, config, "embedding_dim"))
    kind = config.get("task_type", _task_type(base_model))
    if saved != (rows, dim) or kind != _task_type(base_model):
        raise ValueError(
            f"adapter in {folder} was trained on {config.get('base_model_name_or_path')!r} ({kind}, embedding "
            f"table {saved[0]} x {saved[1]}), but the given model is {_model_name(base_model)!r} "
            f"({_task_type(base_model)}, {rows} x {dim}); load it on the base model it was trained on"
        )


def _prompt_from_state_file(path: Path, base_model: nn.Module) -> SuperPosPrompt:
    """Rebuild the prompt from the ``model.safetensors`` that ``transformers.Trainer`` wrote from state_dict()."""
    from .io import read_safetensors_shapes

    shapes = read_safetensors_shapes(path)
    w_shape = shapes.get(_PREFIX + "w")
    if w_shape is None or len(w_shape) != 2:
        raise ValueError(
            f"{path} holds no {_PREFIX}w tensor: it is not a SuperPosModel checkpoint (found {sorted(shapes)[:5]})"
        )
    n, m = w_shape
    dim = _input_embedding(base_model).weight.shape[1]
    expected = {_PREFIX + "w": (n, m), _PREFIX + "E": (n, m, dim), _PREFIX + "sampled_token_ids": (m,)}
    check_adapter_shapes(path, expected)
    tensors = load_adapter_weights(path, expected)
    prompt = SuperPosPrompt(
        base_model,
        num_prompt_tokens=n,
        num_sampled_tokens=m,
        sampled_token_ids=tensors[_PREFIX + "sampled_token_ids"].tolist(),
        base_model_name=_model_name(base_model),
    )
    prompt.load_state_dict({k.removeprefix(_PREFIX): v for k, v in tensors.items()})
    return prompt


def get_superpos_model(model: nn.Module, config: SuperPosConfig) -> SuperPosModel:
    """Freeze ``model`` and wrap it with a new SuperPos prompt built from ``config``."""
    if not isinstance(config, SuperPosConfig):
        raise TypeError(f"config must be a SuperPosConfig, got {type(config).__name__}")
    _input_embedding(model)
    try:
        prompt = SuperPosPrompt(
            model,
            num_prompt_tokens=config.num_prompt_tokens,
            num_sampled_tokens=config.num_sampled_tokens,
            seed=config.seed,
            vocab_size=config.vocab_size,
            exclude_ids=config.exclude_ids,
            base_model_name=_model_name(model),
            w_init=config.w_init,
        )
    except ValueError as exc:
        raise ValueError(f"SuperPosConfig does not fit {type(model).__name__}: {exc}") from None
    return SuperPosModel(model, prompt)


__all__ = ["TRAINER_WEIGHTS_NAME", "SuperPosModel", "get_superpos_model"]
