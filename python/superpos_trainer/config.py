"""The one option set of ``superpos train``: defaults, config files (YAML/JSON), CLI overrides, validation.

Every option is a field of :class:`TrainConfig`; the CLI flags are generated from the fields, so a config file and
the command line accept exactly the same names (``num_prompt_tokens`` in a file, ``--num-prompt-tokens`` as a flag).
Precedence: defaults < config file < CLI flags. The resolved config (method defaults filled in) is what a run saves.

The defaults are the embedded quick job (``superpos train`` with no arguments: SmolLM2-135M on an SST-2 subset, a
few minutes on 2 CPU cores). The paper's setup is ``--model google/t5-base-lm-adapt --epochs 80 --train-limit 0
--eval-limit 0`` (README, "Train").
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, short_repr
from .methods import METHODS


class _MethodDefaults(Mapping[str, tuple[float, float]]):
    """``name -> (learning rate, weight decay)``, read live from the method registry (``methods.METHODS``)."""

    def __getitem__(self, name: str) -> tuple[float, float]:
        cls = METHODS[name]
        return cls.default_lr, cls.default_weight_decay

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)


# Each method's paper defaults (its class's default_lr / default_weight_decay); ``METHODS`` is the registry itself,
# so the --method choices follow it.
METHOD_DEFAULTS: Mapping[str, tuple[float, float]] = _MethodDefaults()


def _per_method(index: int) -> str:
    return ", ".join(f"{name} {values[index]:g}" for name, values in METHOD_DEFAULTS.items())


DATA_ENV_VAR = "SUPERPOS_DATA_DIR"
SEED_MAX = 2**32 - 1  # what every seeded generator here accepts (the data order multiplies it by 100_003)
INT_MAX = 2**31 - 1  # the largest count option (int32)
CONFIG_FILE_MAX_BYTES = 1 << 20  # a config file is a few lines; refuse anything that could be a bomb
AUTO = "auto"  # --max-length auto / --lr auto: derived from the data / the model (auto_defaults.py)
W_INITS = ("normal", "cone", "prompt")  # superpos_kernels.init.W_INITS (a test checks they match)


def _opt(
    default: Any, help: str, choices: tuple[str, ...] | None = None, flag: bool = False, auto: bool = False
) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag, "auto": auto})


def parse_auto(kind: type) -> Any:
    """An argparse ``type`` for options that take a number or ``auto``."""

    def parse(text: str) -> Any:
        return AUTO if text == AUTO else kind(text)

    parse.__name__ = f"{kind.__name__} or auto"  # argparse names it in "invalid ... value" errors
    return parse


@dataclass
class TrainConfig:
    # --- what to train ---
    model: str = _opt(
        "smollm2-135m",
        "Hugging Face hub id, local model folder, or an offline short name (smollm2-135m, gemma3-270m)",
    )
    model_type: str = _opt(
        "auto",
        "seq2seq (T5/BART) or causal (Llama, Gemma, GPT-2, Qwen2); auto reads the config",
        ("auto", "seq2seq", "causal"),
    )
    task: str = _opt("sst2", "task name (GLUE/SuperGLUE, e.g. sst2, rte, stsb)")
    data_dir: str | None = _opt(
        None, f"folder with the task files (default: ${DATA_ENV_VAR}, else <repo>/../shared/data, else the HF hub)"
    )
    method: str = _opt("superpos", " | ".join(METHODS), METHODS)  # type: ignore[arg-type]
    num_prompt_tokens: int = _opt(10, "soft prompt length n (superpos, prompt, residual)")
    num_sampled_tokens: int = _opt(128, "superpos: vocabulary rows m superposed per prompt token")
    residual_hidden: int = _opt(800, "residual: bottleneck width of the reparameterisation MLP (official: 800)")
    w_init: str = _opt(
        "normal",
        "superpos: w initialisation: normal N(0,1/m); cone: the same, each prompt vector's sign flipped to the "
        "tokens' side of the mean row; prompt: one weight 1 (simple prompt tuning's start)",
        W_INITS,
    )
    # --- optimisation ---
    lr: float | str | None = _opt(
        None,
        f"learning rate (default per method: {_per_method(0)}); auto: scaled to the "
        "model's embeddings so one step moves the prompt as the paper's lr does on T5 (auto_defaults.py)",
        auto=True,
    )
    weight_decay: float | None = _opt(
        None, f"AdamW weight decay (default per method: {_per_method(1)}; superpos decays w only)"
    )
    epochs: int = _opt(1, "training epochs (paper: 80)")
    max_steps: int = _opt(0, "stop after this many optimizer steps (0 = no cap)")
    batch_size: int = _opt(8, "training examples per micro-batch")
    grad_accum: int = _opt(1, "micro-batches per optimizer step (gradient accumulation)")
    seed: int = _opt(0, "seeds prompt sampling, data order and dropout")
    dropout: str = _opt("off", "off: frozen backbone in eval mode (paper); on: keep its dropout", ("off", "on"))
    group_by_length: bool = _opt(False, "batch examples of similar length together (less padding)", flag=True)
    # --- lengths ---
    max_length: int | str = _opt(
        AUTO,
        "tokens per input sequence INCLUDING the soft prompt (and the label, causal LMs); auto: cover >= 99 percent of "
        "the training inputs uncut, within the model's positions",
        auto=True,
    )
    max_target_length: int = _opt(8, "label tokens kept for training")
    max_new_tokens: int = _opt(5, "tokens generated per example at evaluation")
    # --- data subsets ---
    train_limit: int = _opt(160, "use the first N shuffled training examples (0 = all)")
    eval_limit: int = _opt(64, "evaluate on the first N shuffled validation examples (0 = all)")
    holdout_fraction: float = _opt(
        0.0,
        "hold out this share of the training examples: scored once at the end (best and last adapter), or with "
        "--select-on holdout the split that chooses the best adapter",
    )
    select_on: str = _opt(
        "validation",
        "split whose periodic scores choose the best adapter; holdout: the --holdout-fraction part of the training "
        "data, and the validation split is scored once at the end (best and last adapter), unseen by the choice",
        ("validation", "holdout"),
    )
    # --- evaluation ---
    eval_mode: str = _opt(
        "generate",
        "generate the label text (paper; invalid = wrong) or rank the task's label words by likelihood",
        ("generate", "rank"),
    )
    rank_score: str = _opt(
        "mean",
        "rank mode's label score: mean log-probability per label token (no length bias) or their sum",
        ("mean", "sum"),
    )
    eval_steps: int = _opt(0, "also evaluate every N optimizer steps (0 = only at the end of each epoch)")
    eval_batch_size: int = _opt(64, "examples per evaluation batch")
    # --- runtime ---
    device: str = _opt("auto", "auto, cpu, cuda, cuda:1, ...")
    bf16: str = _opt(
        "auto",
        "bf16 autocast (parameters, optimizer and loss stay fp32): auto = on for CUDA and CPUs with AVX512-BF16 or "
        "AMX, off elsewhere",
        ("auto", "on", "off"),
    )
    attention: str = _opt(
        "auto",
        "attention kernel: auto = eager attention under CPU bf16 (SDPA's bf16 CPU backward is slow), else the "
        "model's own; model = always the model's own",
        ("auto", "model"),
    )
    lm_head: str = _opt(
        "fp32",
        "output layer under bf16 autocast: fp32 (full-precision logits, loss and rank scores: bf16 logits are rounded "
        "to ~3 digits and slowed learning, output_head.py) or autocast (bf16)",
        ("fp32", "autocast"),
    )
    padding_free: str = _opt(
        "auto",
        "causal models: train each batch as one row without padding, every example attending only to itself (the "
        "same math, less compute; padding_free.py): auto = on CPUs when its cost model says it is cheaper",
        ("auto", "on", "off"),
    )
    save_steps: int = _opt(100, "also checkpoint every N optimizer steps (always at each epoch end)")
    output_dir: str | None = _opt(None, "run folder (default: runs/<task>-<method>-<model>-<time>)")
    progress: bool = _opt(True, "show a progress bar", flag=True)

    # ------------------------------------------------------------------------------------------------------------

    def resolved(self) -> TrainConfig:
        """A copy with method defaults filled in and every value checked."""
        cfg = dataclasses.replace(self)
        if cfg.method not in METHODS:
            raise ConfigError(f"unknown method {short_repr(cfg.method)}; choose one of {', '.join(METHODS)}")
        lr, wd = METHOD_DEFAULTS[cfg.method]
        cfg.lr = lr if cfg.lr is None else cfg.lr if cfg.lr == AUTO else float(cfg.lr)
        cfg.weight_decay = wd if cfg.weight_decay is None else float(cfg.weight_decay)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """``ConfigError`` naming the first option out of its range (checked in this order)."""
        self._check_choices()
        self._check_counts()
        self._check_numbers()
        for name in ("model", "task", "device"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{_flag(name)} must be a non-empty text, got {short_repr(getattr(self, name))}")
        if self.select_on == "holdout" and not self.holdout_fraction:
            raise ConfigError("--select-on holdout needs a held-out split: add --holdout-fraction (e.g. 0.1)")
        if _has_prompt(self.method) and self.max_length != AUTO and self.max_length <= self.num_prompt_tokens:
            raise ConfigError(
                f"--max-length {self.max_length} leaves no room for text after the {self.num_prompt_tokens}-token "
                f"prompt; raise --max-length above {self.num_prompt_tokens} or lower --num-prompt-tokens"
            )

    def _check_choices(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"{_flag(f.name)} must be one of {', '.join(choices)}, got {short_repr(value)}")

    def _check_counts(self) -> None:
        positive = (
            "num_prompt_tokens",
            "num_sampled_tokens",
            "residual_hidden",
            "epochs",
            "batch_size",
            "grad_accum",
            *(() if self.max_length == AUTO else ("max_length",)),
            "max_target_length",
            "max_new_tokens",
            "eval_batch_size",
        )
        # Counts past int32 overflow the tokenizer's and torch's index types: a traceback deep inside, not an answer.
        for name in positive:
            if not _is_int(getattr(self, name)) or not 1 <= getattr(self, name) <= INT_MAX:
                value = short_repr(getattr(self, name))
                raise ConfigError(f"{_flag(name)} must be a positive integer (at most {INT_MAX}), got {value}")
        for name in ("max_steps", "train_limit", "eval_limit", "eval_steps", "save_steps"):
            if not _is_int(getattr(self, name)) or not 0 <= getattr(self, name) <= INT_MAX:
                value = short_repr(getattr(self, name))
                raise ConfigError(f"{_flag(name)} must be an integer in [0, {INT_MAX}] (0 = off/all), got {value}")
        if not _is_int(self.seed) or not 0 <= self.seed <= SEED_MAX:
            raise ConfigError(f"--seed must be an integer in [0, {SEED_MAX}], got {short_repr(self.seed)}")

    def _check_numbers(self) -> None:
        # NaN passes every < and >, and inf is no step size: each float option is a finite number in its range.
        ranges = {"holdout_fraction": "in [0, 1)", "lr": "> 0", "weight_decay": ">= 0"}
        for name, shown in ranges.items():
            value = getattr(self, name)
            if value is None or (name == "lr" and value == AUTO):
                continue
            finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            low_ok = finite and (value > 0 if name == "lr" else value >= 0)
            if not (low_ok and (name != "holdout_fraction" or value < 1)):
                raise ConfigError(f"{_flag(name)} must be a finite number {shown}, got {short_repr(value)}")

    def prompt_length(self) -> int:
        return self.num_prompt_tokens if _has_prompt(self.method) else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Options that change neither the numbers a run produces nor its data: a resumed run may differ in these.
RESUME_FREE_KEYS = frozenset({"output_dir", "progress", "eval_batch_size", "device", "data_dir"})


def _has_prompt(method: str) -> bool:
    return METHODS[method].has_prompt if method in METHODS else True


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError


def _as_int(value: Any) -> int:
    if _is_int(value):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():  # 3.0 (YAML/JSON) is 3
        return int(value)
    raise TypeError


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    return float(value)  # finiteness is validate()'s job, with the option's own message


def _as_str(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise TypeError
    text = str(value)
    text.encode("utf-8")  # a lone surrogate (JSON "\ud800") is not text
    return text


# By the start of the field's type ("int | str" is an int option that also takes "auto").
_COERCE = {"bool": _as_bool, "int": _as_int, "float": _as_float, "str": _as_str}


def _coerce(name: str, value: Any, source: str = "config file") -> Any:
    """Type-check one value from a config file (CLI values are already typed by argparse)."""
    f = FIELDS[name]
    kind = f.type if isinstance(f.type, str) else str(f.type)
    if f.metadata.get("auto") and value == AUTO:
        return AUTO
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{source}: option {name!r} cannot be null")
    coerce = next((fn for prefix, fn in _COERCE.items() if kind.startswith(prefix)), None)
    if coerce is None:
        return value
    try:
        return coerce(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{source}: option {name!r} expects {kind}, got {short_repr(value)}") from None


def _no_aliases_loader() -> type:
    """PyYAML's safe loader without anchors/aliases: a few hundred bytes of nested aliases expand to gigabytes."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise ConfigError(
                    f"{self.name}:{mark.line + 1}: YAML aliases (*name) are not supported in a config file; "
                    "write the value out"
                )
            return super().compose_node(parent, index)

    return Loader


def read_text_file(path: Path, max_bytes: int | None = None) -> str:
    """The UTF-8 text of ``path``; a bad byte is a ``ConfigError`` naming the file and line."""
    try:
        size = path.stat().st_size
        raw = b"" if max_bytes is not None and size > max_bytes else path.read_bytes()
    except OSError as exc:  # unreadable (permissions), a folder, gone: the user's file, not a bug
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if max_bytes is not None and size > max_bytes:
        raise ConfigError(f"{path} is {size} bytes; a config file is at most {max_bytes}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def read_json_file(path: Path) -> Any:
    """A JSON file of a run or adapter folder; bad UTF-8, bad JSON, a huge number or deep nesting names the file."""
    text = read_text_file(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"line {exc.lineno}: {exc.msg}"
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:  # an integer of more than 4300 digits
        reason = " ".join(str(exc).split())[:120]
    raise ConfigError(f"{path} is not valid JSON ({reason}); the folder is corrupt")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Options from a YAML (.yaml/.yml) or JSON file; keys may use - or _."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = read_text_file(path, CONFIG_FILE_MAX_BYTES)
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            loader = _no_aliases_loader()(text)
            loader.name = str(path)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
        else:
            data = json.loads(text)
    except ConfigError:
        raise
    except (Exception, RecursionError) as exc:  # YAMLError / JSONDecodeError / too deep: all "not parseable"
        kind = path.suffix.lstrip(".") or "JSON"
        detail = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:300]
        raise ConfigError(f"config file {path} is not valid {kind}: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value, got {type(data).__name__}")
    return _options_from(data, f"config file {path}")


def _options_from(data: dict[Any, Any], source: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"{source}: unknown option {short_repr(key)} (see superpos train --help)")
        options[name] = _coerce(name, value, source)
    return options


def build_config(file_options: dict[str, Any] | None = None, cli_options: dict[str, Any] | None = None) -> TrainConfig:
    """defaults < file < CLI, then resolved (method defaults) and validated."""
    merged = {**(file_options or {}), **{k: v for k, v in (cli_options or {}).items() if v is not None}}
    unknown = set(merged) - set(FIELDS)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**merged).resolved()


# What a config saved before an option existed ran with, where that differs from today's default: an old run
# resumes (and its adapter evaluates) as it was measured. Rank scoring summed log-probabilities before --rank-score;
# attention was the model's own before --attention; the head ran under autocast before --lm-head; batches were
# padded before --padding-free.
LEGACY_VALUES: dict[str, Any] = {
    "rank_score": "sum",
    "attention": "model",
    "lm_head": "autocast",
    "padding_free": "off",
}


def config_from_dict(data: Any, source: str = "saved config") -> TrainConfig:
    """Rebuild a saved (resolved) config, each value type-checked; options it lacks (added later) get defaults.

    Options a saved config predates take the value it ran with (:data:`LEGACY_VALUES`), else today's default.
    Keys this version does not know (written by a newer one) are ignored; ``source`` names the file in errors.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object of option: value, got {type(data).__name__}")
    known = {k: v for k, v in data.items() if str(k).replace("-", "_") in FIELDS}
    if known:  # a saved config (not a bare adapter): options it predates take the value it ran with
        known = {**LEGACY_VALUES, **known}
    options = _options_from(known, source)
    config = TrainConfig(**options)
    try:
        config.validate()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def option_defaults() -> dict[str, Any]:
    """What a saved record (config.json, a checkpoint's fingerprint) that lacks an option ran with: the option's
    value from before it existed (:data:`LEGACY_VALUES`), else today's default."""
    return {**TrainConfig().to_dict(), **LEGACY_VALUES}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys (outside RESUME_FREE_KEYS) whose values differ, formatted ``key: saved -> current``.

    A key the saved config lacks (an option added after the run started) counts as its default value.
    """
    defaults = option_defaults()
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_FREE_KEYS:
            continue
        before, now = saved.get(key, defaults.get(key)), current.get(key, defaults.get(key))
        if before != now:
            diffs.append(f"{key}: {short_repr(before)} -> {short_repr(now)}")
    return diffs


def default_data_dir() -> str | None:
    """``$SUPERPOS_DATA_DIR``, else ``<repo>/../shared/data`` when it exists, else None (= the HF hub)."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return env
    repo = Path(__file__).resolve().parents[2]
    candidate = repo.parent / "shared" / "data"
    return str(candidate) if candidate.is_dir() else None


__all__ = [
    "METHODS",
    "METHOD_DEFAULTS",
    "TrainConfig",
    "build_config",
    "config_differences",
    "config_from_dict",
    "default_data_dir",
    "option_defaults",
    "read_config_file",
    "read_json_file",
    "read_text_file",
]
