"""The four tuning methods behind one interface, so the trainer treats them alike.

A method turns ``(input_ids, attention_mask)`` into ``(inputs_embeds, attention_mask)`` for the frozen model (the
soft prompt prepended), names its trainable parameters and AdamW groups, and saves / loads its adapter as a PEFT-like
folder (``adapter_config.json`` + ``adapter_model.safetensors``).

* ``superpos``: :class:`superpos_kernels.SuperPosPrompt` (n=10 prompt tokens, m=128 superposed rows, decay on w).
* ``prompt``: simple prompt tuning (Lester et al. 2021), n trainable vectors initialised from sampled vocab rows.
* ``residual``: Residual Prompt Tuning (Razdaibiedina et al. 2023), as its official code runs it by default
  (github.com/arazd/ResidualPrompts at 53087ca; ``train.py`` is its command line, ``prompt_tuner2.py`` the model):

  - ``P = LayerNorm(W2 relu(W1 P0)) + P0``: Linear(d, hidden), ReLU, Linear(hidden, d), then LayerNorm, then the
    skip connection (prompt_tuner2.py:42-56, 92-93; ``--residual 1`` train.py:220, ``--mlp_layer_norm 1``
    train.py:234, ``--nonlinearity relu`` train.py:241);
  - ONE MLP shared by every prompt token (``--separate_mlps 0``, train.py:227; prompt_tuner2.py:293-302);
  - bottleneck 800 (``--bottleneck_size``, train.py:248), no dropout (``--mlp_dropout 0.0``, train.py:150);
  - AdamW, lr 0.3 (train.py:143), weight decay 1e-5 on every parameter, the prompt, the MLP and the LayerNorm
    alike (train.py:24 passes 1e-5; prompt_tuner2.py:232-263 uses it for all groups, the MLP's included);
  - the prompt starts from random vocabulary rows (prompt_tuner2.py:321-325). Here: sampled non-special rows
    through the embedding module, as for ``prompt``, so both baselines start from the same point.

  One documented adaptation: the LayerNorm's gain starts at the element RMS of the model's (scaled) embedding
  table instead of 1. PyTorch's LayerNorm outputs elements of RMS 1 (norm ``sqrt(d)``); on T5, whose embedding
  elements are of order 1 (Mesh TensorFlow initialises them N(0, 1)), that is a token's scale, but on SmolLM2-135M
  (element std 0.136) it is 7.5x a token row and the MLP branch drowns ``P0``. The gain is trainable as in the
  official code (affine LayerNorm), only its start is rescaled; on a table of element RMS 1 nothing changes.
* ``full``: full fine-tuning, no prompt; every backbone weight trains.

The frozen model is referenced, never registered as a submodule: ``method.parameters()`` and ``state_dict()`` hold
the adapter only (``full`` returns the model's weights explicitly).

``METHODS`` is the one registry (name -> class, in ``--method`` order): ``@register_method`` adds a class, and the
``--method`` choices, the default learning rate and weight decay (``config.py``), ``build_method``,
``load_method`` (by the adapter's ``peft_type``) and the benches' method lists all read it. A new method is one
decorated class here (its ``create``, ``load``, defaults and prompt) plus its test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn

from superpos_kernels import CONFIG_NAME, WEIGHTS_NAME, SuperPosInputError, SuperPosPrompt, io, sample_token_ids
from superpos_kernels.io import atomic_write, atomic_write_json

from .errors import ConfigError, SuperposError
from .models import LoadedModel

FULL_WEIGHTS_NAME = "model.safetensors"


def _special_ids(tokenizer: Any) -> list[int]:
    return [int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None]


def _vocab_size(loaded: LoadedModel) -> int:
    # Tables are often padded past the tokenizer (T5: 32128 rows, 32100 tokens); never sample those rows.
    return min(len(loaded.tokenizer), loaded.embedding.weight.shape[0])


@dataclass(frozen=True)
class MethodOptions:
    """What ``create`` may read from the config (each method takes what it needs)."""

    num_prompt_tokens: int = 10
    num_sampled_tokens: int = 128
    residual_hidden: int = 800  # official --bottleneck_size default (ResidualPrompts train.py:248)
    seed: int = 0
    w_init: str = "normal"


class Method(nn.Module):
    """Base: a subclass sets the class attributes below, implements ``create``/``load`` and the prompt, and is
    added to ``METHODS`` with ``@register_method``."""

    name: ClassVar[str] = ""  # the --method value
    peft_type: ClassVar[str] = ""  # adapter_config.json's peft_type: how load_method finds the class
    default_lr: ClassVar[float] = 0.0  # used when --lr is not given
    default_weight_decay: ClassVar[float] = 0.0  # used when --weight-decay is not given
    has_prompt: ClassVar[bool] = True  # False: no soft prompt (--num-prompt-tokens is ignored)
    trains_backbone: ClassVar[bool] = False  # True: the backbone's own weights train (DDP must register them)

    @classmethod
    def create(cls, loaded: LoadedModel, options: MethodOptions) -> Method:
        """A fresh, untrained method around ``loaded``."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, loaded: LoadedModel) -> Method:
        """The method saved in ``folder`` by ``save_adapter``, around ``loaded``."""
        raise NotImplementedError

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self._frozen = (loaded,)

    @property
    def loaded(self) -> LoadedModel:
        return self._frozen[0]

    @property
    def num_prompt_tokens(self) -> int:
        return 0

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``[P | X]`` embeddings and the mask extended by ones for the prompt."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return [{"params": self.trainable_parameters(), "weight_decay": float(weight_decay), "name": self.name}]

    def trainable_state(self) -> dict[str, Tensor]:
        """Everything that training changes (for exact-resume checkpoints)."""
        return {k: v for k, v in self.state_dict().items()}

    def load_trainable_state(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state)

    def save_adapter(self, folder: str | os.PathLike[str]) -> None:
        raise NotImplementedError

    def adapter_config(self) -> dict[str, Any]:
        return {
            "peft_type": self.peft_type,
            "superpos_trainer_method": self.name,
            "base_model_name_or_path": self.loaded.name,
        }

    def count_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` where total counts the frozen backbone too."""
        trainable = sum(p.numel() for p in self.trainable_parameters())
        backbone = sum(p.numel() for p in self.loaded.model.parameters())
        own = sum(p.numel() for p in self.parameters())
        return trainable, backbone + own


M = TypeVar("M", bound=type[Method])

# The registry: name -> class, in --method order. Filled by @register_method below; read by config.py (choices,
# defaults), build_method, load_method and the benches.
METHODS: dict[str, type[Method]] = {}


def register_method(cls: M) -> M:
    """Class decorator: adds a Method subclass to ``METHODS`` (name and peft_type must be new)."""
    if not cls.name or not cls.peft_type:
        raise TypeError(f"{cls.__name__} must set the class attributes name and peft_type")
    clash = [m.__name__ for m in METHODS.values() if cls.peft_type == m.peft_type or cls.name == m.name]
    if clash:
        raise TypeError(f"{cls.__name__}: name {cls.name!r} or peft_type {cls.peft_type!r} is taken by {clash[0]}")
    METHODS[cls.name] = cls
    return cls


def _prepend(prompt: Tensor, embeds: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    batch = embeds.shape[0]
    full = torch.cat([prompt.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
    ones = torch.ones(batch, prompt.shape[0], dtype=attention_mask.dtype, device=attention_mask.device)
    return full, torch.cat([ones, attention_mask], dim=1)


@register_method
class SuperPosMethod(Method):
    name, peft_type = "superpos", "SUPERPOS_PROMPT"
    default_lr, default_weight_decay = 1e-2, 1e-5  # the paper's; the decay is on w only (param_groups)

    def __init__(self, loaded: LoadedModel, layer: SuperPosPrompt) -> None:
        super().__init__(loaded)
        self.layer = layer

    @classmethod
    def create(cls, loaded: LoadedModel, options: MethodOptions) -> SuperPosMethod:
        num_sampled_tokens = options.num_sampled_tokens
        vocab = _vocab_size(loaded)
        specials = _special_ids(loaded.tokenizer)
        if num_sampled_tokens > vocab - len(set(specials) & set(range(vocab))):
            raise ConfigError(
                f"--num-sampled-tokens {num_sampled_tokens} exceeds the {vocab} sampleable vocabulary ids of "
                f"{loaded.name}; lower it"
            )
        layer = SuperPosPrompt(
            loaded.model,
            num_prompt_tokens=options.num_prompt_tokens,
            num_sampled_tokens=num_sampled_tokens,
            seed=options.seed,
            vocab_size=vocab,
            exclude_ids=specials,
            base_model_name=loaded.name,
            w_init=options.w_init,
        )
        return cls(loaded, layer)

    @property
    def num_prompt_tokens(self) -> int:
        return self.layer.num_prompt_tokens

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.layer(input_ids, attention_mask)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return self.layer.param_groups(weight_decay)  # decay on w only

    def save_adapter(self, folder: str | os.PathLike[str]) -> None:
        self.layer.save_pretrained(folder)

    @classmethod
    def load(cls, folder: Path, loaded: LoadedModel) -> SuperPosMethod:
        layer = SuperPosPrompt.from_pretrained(folder, loaded.model, device=loaded.embedding.weight.device)
        layer.w_init = read_adapter_config(folder).get("w_init", "normal")  # w itself is loaded; keep the record
        return cls(loaded, layer)


@register_method
class PromptMethod(Method):
    """Simple prompt tuning: the prompt is n free vectors, initialised from n sampled (scaled) vocabulary rows."""

    name, peft_type = "prompt", "PROMPT_TUNING"
    default_lr, default_weight_decay = 1e-2, 1e-2

    def __init__(self, loaded: LoadedModel, prompt: Tensor) -> None:
        super().__init__(loaded)
        self.prompt = nn.Parameter(prompt.detach().clone())

    @staticmethod
    def initial_prompt(loaded: LoadedModel, num_prompt_tokens: int, seed: int) -> Tensor:
        ids = sample_token_ids(num_prompt_tokens, _vocab_size(loaded), _special_ids(loaded.tokenizer), seed)
        with torch.no_grad():
            # Through the embedding module so models that scale inside it (Gemma: sqrt(d)) start in their space.
            return loaded.embedding(torch.tensor(ids, device=loaded.embedding.weight.device)).float()

    @classmethod
    def create(cls, loaded: LoadedModel, options: MethodOptions) -> PromptMethod:
        prompt = cls.initial_prompt(loaded, options.num_prompt_tokens, options.seed)
        return cls(loaded, prompt).to(loaded.embedding.weight.device)

    @property
    def num_prompt_tokens(self) -> int:
        return self.prompt.shape[0]

    def prompt_vectors(self) -> Tensor:
        return self.prompt

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        return _prepend(self.prompt_vectors(), self.loaded.embedding(input_ids), attention_mask)

    def adapter_config(self) -> dict[str, Any]:
        return {
            **super().adapter_config(),
            "num_virtual_tokens": self.num_prompt_tokens,
            "token_dim": self.prompt.shape[1],
        }

    def save_adapter(self, folder: str | os.PathLike[str]) -> None:
        _save_folder(folder, self.adapter_config(), {k: v for k, v in self.state_dict().items()})

    @classmethod
    def load(cls, folder: Path, loaded: LoadedModel) -> PromptMethod:
        _, tensors = _read_folder(folder)
        method = cls(loaded, tensors["prompt"])
        _check_dim(folder, method.prompt.shape[1], loaded)
        return method.to(loaded.embedding.weight.device)


RESIDUAL_HIDDEN = MethodOptions.residual_hidden


def embedding_rms(loaded: LoadedModel) -> float:
    """Root mean square of the embedding table's elements, times the module's own scale (Gemma: sqrt(d))."""
    weight = loaded.embedding.weight.detach()
    scale = getattr(loaded.embedding, "embed_scale", 1.0)
    scale = float(scale.item() if isinstance(scale, Tensor) else scale)
    return float(weight.float().pow(2).mean().sqrt()) * scale


@register_method
class ResidualMethod(PromptMethod):
    """``P = LayerNorm(W2 relu(W1 P0)) + P0``: one MLP, shared by every prompt token, reparameterises the prompt.

    ``norm_scale`` is the LayerNorm gain's start (the module docstring says why it is the embeddings' RMS).
    """

    name, peft_type = "residual", "RESIDUAL_PROMPT_TUNING"
    # Official code (arazd/ResidualPrompts train.py:143, :24): lr 0.3, decay 1e-5 on every parameter.
    default_lr, default_weight_decay = 0.3, 1e-5

    def __init__(self, loaded: LoadedModel, prompt: Tensor, hidden: int, norm_scale: float = 1.0) -> None:
        super().__init__(loaded, prompt)
        dim = prompt.shape[1]
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)
        with torch.no_grad():
            self.norm.weight.fill_(norm_scale)
        self.norm_scale = float(norm_scale)
        self.to(loaded.embedding.weight.device)

    @classmethod
    def create(cls, loaded: LoadedModel, options: MethodOptions) -> ResidualMethod:
        prompt = cls.initial_prompt(loaded, options.num_prompt_tokens, options.seed)
        with torch.random.fork_rng(devices=[]):  # MLP init seeded, without disturbing the global stream
            torch.manual_seed(options.seed)
            return cls(loaded, prompt, options.residual_hidden, embedding_rms(loaded))

    def prompt_vectors(self) -> Tensor:
        return self.norm(self.mlp(self.prompt)) + self.prompt

    def adapter_config(self) -> dict[str, Any]:
        return {
            **super().adapter_config(),
            "residual_hidden": self.mlp[0].out_features,
            "residual_norm_scale": self.norm_scale,  # the gain's start; the trained gain is in the weights
        }

    @classmethod
    def load(cls, folder: Path, loaded: LoadedModel) -> ResidualMethod:
        config, tensors = _read_folder(folder)
        _check_dim(folder, tensors["prompt"].shape[1], loaded)
        method = cls(loaded, tensors["prompt"], int(config["residual_hidden"]), config.get("residual_norm_scale", 1.0))
        _load_state(method, tensors, folder)
        return method


@register_method
class FullMethod(Method):
    """Full fine-tuning: no prompt, every backbone weight is trainable (AdamW, lr 1e-5)."""

    name, peft_type = "full", "FULL_FINETUNE"
    # The paper gives only the learning rate; no weight decay keeps it plain AdamW.
    default_lr, default_weight_decay = 1e-5, 0.0
    has_prompt, trains_backbone = False, True

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        loaded.model.requires_grad_(True)

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.loaded.embedding(input_ids), attention_mask

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.loaded.model.parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, Tensor]:
        return dict(self.loaded.model.state_dict())

    def load_trainable_state(self, state: dict[str, Tensor]) -> None:
        self.loaded.model.load_state_dict(state)

    def save_adapter(self, folder: str | os.PathLike[str]) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # save_model de-duplicates tied weights (input/output embeddings), which save_file refuses.
        atomic_write(folder / FULL_WEIGHTS_NAME, lambda tmp: save_model(self.loaded.model, tmp))
        atomic_write_json(folder / CONFIG_NAME, self.adapter_config())

    @classmethod
    def load(cls, folder: Path, loaded: LoadedModel) -> FullMethod:
        path = Path(folder) / FULL_WEIGHTS_NAME
        if not path.is_file():
            raise SuperposError(f"{path} is missing; the full fine-tuning checkpoint is incomplete")
        missing, unexpected = load_model(loaded.model, str(path), strict=False)
        if missing or unexpected:
            raise SuperposError(
                f"{path} does not fit {loaded.name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        return cls(loaded)

    @classmethod
    def create(cls, loaded: LoadedModel, options: MethodOptions) -> FullMethod:
        return cls(loaded)


def _save_folder(folder: str | os.PathLike[str], config: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(plain, tmp, metadata={"format": "pt"}))
    atomic_write_json(folder / CONFIG_NAME, config)


def _read_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    weights = Path(folder) / WEIGHTS_NAME
    if not weights.is_file():
        raise SuperposError(f"{weights} is missing; {folder} is not a complete adapter folder")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for a truncated file
        raise SuperposError(f"{weights} is not a readable safetensors file ({exc})") from None
    return read_adapter_config(folder), tensors


def _load_state(method: nn.Module, tensors: dict[str, Tensor], folder: Path) -> None:
    try:
        method.load_state_dict(tensors)
    except RuntimeError as exc:
        raise SuperposError(f"adapter weights in {folder} do not fit: {str(exc).splitlines()[0]}") from None


def _check_dim(folder: Path, dim: int, loaded: LoadedModel) -> None:
    model_dim = loaded.embedding.weight.shape[1]
    if dim != model_dim:
        raise SuperposError(f"adapter in {folder} has dim {dim}, but {loaded.name} embeds in dim {model_dim}")


def read_adapter_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return io.read_adapter_config(Path(folder) / CONFIG_NAME, peft_type=None)
    except SuperPosInputError as exc:  # the library's message names the file; the CLI reports SuperposError
        raise SuperposError(str(exc)) from None


def build_method(
    method: str,
    loaded: LoadedModel,
    num_prompt_tokens: int = 10,
    num_sampled_tokens: int = 128,
    residual_hidden: int = RESIDUAL_HIDDEN,
    seed: int = 0,
    w_init: str = "normal",
) -> Method:
    """A fresh ``METHODS[method]`` around ``loaded`` (each method reads the options it needs)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    options = MethodOptions(num_prompt_tokens, num_sampled_tokens, residual_hidden, seed, w_init)
    return METHODS[method].create(loaded, options)


def load_method(folder: str | os.PathLike[str], loaded: LoadedModel) -> Method:
    """Rebuild a saved adapter (any method) on top of ``loaded``."""
    folder = Path(folder)
    peft_type = read_adapter_config(folder).get("peft_type")
    by_peft_type = {cls.peft_type: cls for cls in METHODS.values()}
    if peft_type not in by_peft_type:
        raise SuperposError(
            f"{folder / CONFIG_NAME} has peft_type {peft_type!r}; expected one of {sorted(by_peft_type)}"
        )
    try:
        return by_peft_type[peft_type].load(folder, loaded)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, SuperposError):
            raise
        raise SuperposError(f"cannot load the adapter in {folder}: {exc}") from None


__all__ = [
    "METHODS",
    "Method",
    "MethodOptions",
    "build_method",
    "load_method",
    "read_adapter_config",
    "register_method",
]
