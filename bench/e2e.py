"""End-to-end benchmark helpers: our trainer (each method) versus Hugging Face PEFT prompt tuning, same frozen T5.

Two suites, each a plain dict (JSON-ready) that ``bench/to_markdown.py`` renders:

* ``fixed_shape_suite``: one batch of ``B x L`` random token ids (every row exactly L tokens, so both sides see
  identical tensors), the optimizer step timed per provider; then greedy generation of ``max_new_tokens`` for one
  evaluation batch. Providers run one after the other in the same process, in rounds whose order rotates, so slow
  drift of a shared machine hits every provider alike; ratios are taken per round and their median reported.
* ``real_task_suite``: one epoch over a fixed SST-2 slice: our trainer (dynamic padding, its own collation and batch
  order) versus PEFT fed the same batches padded to max length (the usual ``padding="max_length"`` recipe) and the
  same batches padded dynamically (so the table shows how much of the gap is padding and how much is framework).

The model is t5-small-shaped (v1.1 LM-adapt: d_model 512, d_ff 1024 gated-GELU, 8+8 layers, 6 heads, vocabulary
32128) with random weights: timing does not depend on the values. The tokenizer is a sentencepiece unigram model
trained here on SST-2 text (offline; 8000 pieces: an in-domain vocabulary smaller than T5's splits sentences into
slightly MORE tokens than T5's would, which makes the dynamic-padding advantage, if anything, smaller).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from superpos_trainer.methods import METHODS as METHOD_REGISTRY

# ---- settings ----------------------------------------------------------------------------------------------------

ENV_PREFIX = "SUPERPOS_E2E_"
DEVICE_ENV = "SUPERPOS_BENCH_DEVICE"
THREADS_ENV = "SUPERPOS_BENCH_THREADS"
METHODS = tuple(METHOD_REGISTRY)  # every method the trainer registers (superpos_trainer.methods), in --method order


@dataclass(frozen=True)
class E2ESettings:
    """Sizes and repetitions; every field can be overridden by ``SUPERPOS_E2E_<FIELD>`` (e.g. SUPERPOS_E2E_ROUNDS)."""

    batch_size: int = 8
    seq_len: int = 64  # input tokens per row; the soft prompt comes on top
    eval_batch_size: int = 32  # fixed-shape evaluation batch
    epoch_eval_batch_size: int = 64  # real task: the trainer's default --eval-batch-size
    num_prompt_tokens: int = 10
    num_sampled_tokens: int = 128
    max_new_tokens: int = 5
    warmup: int = 3  # untimed steps per provider before timing (after one checked step each)
    # Interleaving at step granularity: each round is one step of every provider (rotating order), so the per-round
    # ratios compare steps taken seconds apart, and load spikes on a shared machine hit every provider alike.
    rounds: int = 15
    steps: int = 1  # timed steps per provider per round (rounds * steps timed steps in all)
    eval_rounds: int = 3  # timed evaluation batches per provider (one per round)
    epoch_examples: int = 256  # real-task slice (SST-2 train); 32 steps of 8
    epoch_eval_examples: int = 128  # real-task evaluation slice (SST-2 validation)
    epoch_rounds: int = 2
    max_length: int = 128  # real task: encoder tokens INCLUDING the soft prompt (the trainer's --max-length)
    max_target_length: int = 8

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> E2ESettings:
        """Defaults, ``SUPERPOS_E2E_LONG=1`` (a longer, steadier run), then per-field overrides."""
        environ = dict(os.environ if environ is None else environ)
        values = asdict(cls())
        if environ.get(ENV_PREFIX + "LONG", "0") not in ("", "0"):
            values.update(warmup=10, rounds=40, eval_rounds=10, epoch_examples=256, epoch_rounds=5)
        for name in values:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a positive integer, got {raw!r}")
            values[name] = value
        return cls(**values)


def bench_methods(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """Our methods to time: ``$SUPERPOS_E2E_METHODS`` (comma-separated), default all four."""
    raw = (os.environ if environ is None else environ).get(ENV_PREFIX + "METHODS", "")
    methods = tuple(m.strip() for m in raw.split(",") if m.strip()) or METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"{ENV_PREFIX}METHODS names unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return methods


def bench_device() -> torch.device:
    """``$SUPERPOS_BENCH_DEVICE``, else CUDA when available, else CPU."""
    spec = os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_ENV}={spec} asks for CUDA, but torch sees no CUDA GPU; unset it or use cpu")
    return device


def configure_threads(environ: dict[str, str] | None = None) -> int:
    """``$SUPERPOS_BENCH_THREADS`` intra-op threads for every provider alike (default: torch's choice).

    On a CPU shared with other jobs, 2 OpenMP threads on 2 busy cores spin-wait on each other and a step gets 3-10x
    slower and very noisy; 1 thread then measures the code, not the neighbours.
    """
    raw = (os.environ if environ is None else environ).get(THREADS_ENV, "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}")
        torch.set_num_threads(int(raw))
    return torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- environment ---------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft_version,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["load_before"] = [round(x, 2) for x in os.getloadavg()]
    return info


# ---- model, tokenizer, data ----------------------------------------------------------------------------------------


def t5_small_config(vocab_size: int = 32128) -> Any:
    """google/t5-small-lm-adapt's shape (T5 v1.1): gated-GELU, untied head, no dropout (frozen net, dropout off)."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size,
        d_model=512,
        d_kv=64,
        d_ff=1024,
        num_layers=8,
        num_decoder_layers=8,
        num_heads=6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


# Used only when no SST-2 text is at hand (the fixed-shape suite needs a tokenizer, not real text).
_FALLBACK_WORDS = (
    "the a film movie is was good bad great awful story plot actor scene very not quite really fun dull boring "
    "positive negative sentence sst2 it this that one with for and but of to in on as an its funny sad long short"
).split()


@functools.lru_cache(maxsize=2)
def build_tokenizer(data_dir: str | None, vocab_size: int = 8000) -> Any:
    """A T5 tokenizer (pad 0, eos 1, unk 2) whose sentencepiece model is trained here on SST-2 text, offline."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    lines: list[str] = []
    if data_dir is not None:
        with contextlib.suppress(OSError, ValueError):
            from superpos_trainer.data import load_examples

            lines = [e.source for e in load_examples("sst2", "train", data_dir, limit=20000, seed=1)]
    if lines:
        lines += ["positive", "negative"] * 50
    else:
        lines = [" ".join(_FALLBACK_WORDS)] * 50
        vocab_size = min(vocab_size, 200)
    folder = Path(tempfile.mkdtemp(prefix="superpos-bench-tok-"))
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    return T5Tokenizer.from_pretrained(str(folder), extra_ids=0)


def build_backbone(tokenizer: Any, device: torch.device, seed: int = 0) -> Any:
    """The frozen random t5-small-shaped model as the trainer's ``LoadedModel`` (what ``load_model`` returns)."""
    from superpos_trainer.models import LoadedModel
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(t5_small_config())
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    return LoadedModel(model, tokenizer, True, "t5-small-shape (random weights)", "<memory>")


def separate_copy(loaded: Any) -> Any:
    """Same weights, separate modules: for providers that change the backbone (full fine-tuning, PEFT's wrapper)."""
    from superpos_trainer.models import LoadedModel

    return LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, True, loaded.name, loaded.path)


def make_trainer(
    loaded: Any,
    method: str,
    settings: E2ESettings,
    max_length: int,
    eval_batch_size: int,
    train: Sequence[Any],
    evals: Sequence[Any],
) -> Any:
    """Our trainer exactly as ``superpos train`` builds it (paper lr / weight decay per method)."""
    from superpos_trainer.config import TrainConfig
    from superpos_trainer.methods import build_method
    from superpos_trainer.tasks import get_task
    from superpos_trainer.train import Trainer

    device = loaded.embedding.weight.device
    config = TrainConfig(
        model=loaded.name,
        task="sst2",
        method=method,
        num_prompt_tokens=settings.num_prompt_tokens,
        num_sampled_tokens=settings.num_sampled_tokens,
        batch_size=settings.batch_size,
        max_length=max_length,
        max_target_length=settings.max_target_length,
        max_new_tokens=settings.max_new_tokens,
        eval_batch_size=eval_batch_size,
        device=str(device),
        progress=False,
    ).resolved()
    built = build_method(
        method, loaded, config.num_prompt_tokens, config.num_sampled_tokens, config.residual_hidden, config.seed
    )
    return Trainer(config, built, get_task("sst2"), train, evals, run_dir=None, device=device)


class PeftProvider:
    """Hugging Face PEFT prompt tuning on (a copy of) the same frozen model, trained with a plain AdamW loop."""

    def __init__(self, loaded: Any, settings: E2ESettings, bf16: bool) -> None:
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        config = PromptTuningConfig(
            task_type=TaskType.SEQ_2_SEQ_LM,
            num_virtual_tokens=settings.num_prompt_tokens,
            # One prompt for the encoder only, what the model reads (PEFT's seq2seq default allocates a second,
            # unused block of vectors for the decoder).
            num_transformer_submodules=1,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
        self.loaded = separate_copy(loaded)
        self.model = get_peft_model(self.loaded.model, config)
        self.model.eval()  # dropout off, as in our trainer (the config has none anyway)
        self.device = loaded.embedding.weight.device
        self.bf16 = bf16
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The paper's prompt-tuning optimizer (the same as our "prompt" method): AdamW lr 1e-2, weight decay 1e-2.
        self.optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
        self.trainable = sum(p.numel() for p in params)

    def _autocast(self) -> contextlib.AbstractContextManager:
        from superpos_trainer.evaluate import autocast

        return autocast(self.device, self.bf16)

    def train_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> list[str]:
        from transformers import GenerationConfig

        tok = self.loaded.tokenizer
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            decoder_start_token_id=self.model.config.decoder_start_token_id,
        )
        with self._autocast():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=gen)
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


# ---- timing --------------------------------------------------------------------------------------------------------


def interleaved(
    providers: dict[str, Callable[[], Any]], warmup: int, rounds: int, per_round: int, device: torch.device
) -> dict[str, list[list[float]]]:
    """Seconds per call, ``{name: [[round 0 calls], [round 1 calls], ...]}``; each round rotates the order."""
    names = list(providers)
    for name in names:
        for _ in range(warmup):
            providers[name]()
        synchronize(device)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            calls = []
            for _ in range(per_round):
                start = time.perf_counter()
                providers[name]()
                synchronize(device)
                calls.append(time.perf_counter() - start)
            times[name].append(calls)
    return times


def summary(values: Sequence[float]) -> dict[str, float]:
    values = sorted(values)
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {
        "median": statistics.median(values),
        "q1": q[0],
        "q3": q[2],
        "min": values[0],
        "max": values[-1],
        "n": len(values),
    }


def round_ratios(times: dict[str, list[list[float]]], num: str, den: str) -> dict[str, float]:
    """Per-round ratio of medians (both measured within the same round), summarized over the rounds."""
    ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(times[num], times[den], strict=True)]
    return summary(ratios)


def target(name: str, measured: float, op: str, threshold: float, detail: str) -> dict[str, Any]:
    met = measured <= threshold if op == "<=" else measured >= threshold
    return {"name": name, "measured": measured, "op": op, "threshold": threshold, "met": bool(met), "detail": detail}


def flat(rounds: list[list[float]]) -> list[float]:
    return [x for r in rounds for x in r]


# ---- suites ----------------------------------------------------------------------------------------------------------


def _fixed_encoded(tokenizer: Any, rows: int, length: int, seed: int) -> list[Any]:
    """Rows of exactly ``length`` source tokens (random ids, ending in EOS) with the label "positive"."""
    from superpos_trainer.collate import Encoded

    generator = torch.Generator().manual_seed(seed)
    low, high = 3, len(tokenizer)  # skip pad / eos / unk
    target_ids = tuple(tokenizer("positive")["input_ids"])
    out = []
    for _ in range(rows):
        ids = torch.randint(low, high, (length - 1,), generator=generator).tolist()
        out.append(Encoded((*ids, tokenizer.eos_token_id), target_ids))
    return out


def fixed_shape_suite(settings: E2ESettings, device: torch.device, methods: Sequence[str] = METHODS) -> dict[str, Any]:
    from superpos_trainer.config import default_data_dir
    from superpos_trainer.tasks import Example

    from superpos_kernels import last_backend

    s = settings
    env = environment(device)
    tokenizer = build_tokenizer(default_data_dir())
    loaded = build_backbone(tokenizer, device)
    dummy = [Example("x", "positive", 1) for _ in range(s.eval_batch_size)]
    train_enc = _fixed_encoded(tokenizer, s.batch_size, s.seq_len, seed=1)
    eval_enc = _fixed_encoded(tokenizer, s.eval_batch_size, s.seq_len, seed=2)
    max_length = s.seq_len + s.num_prompt_tokens

    trainers = {}
    for method in methods:
        # Full fine-tuning makes the backbone trainable: it gets its own copy so the others stay frozen.
        base = separate_copy(loaded) if method == "full" else loaded
        trainers[f"ours-{method}"] = make_trainer(base, method, s, max_length, s.eval_batch_size, dummy, dummy)
    first = next(iter(trainers.values()))
    batch = first.make_batch(list(range(s.batch_size)), train_enc)
    peft = PeftProvider(loaded, s, bf16=first.bf16)
    eval_ids = first.make_batch(list(range(s.eval_batch_size)), eval_enc)
    task = first.task

    backends: dict[str, str | None] = {}

    def ours_step(name: str) -> Callable[[], float]:
        def run() -> float:
            loss = trainers[name].train_step(batch)
            if name == "ours-superpos":
                backends[name] = last_backend()
            return loss

        return run

    def ours_eval(name: str) -> Callable[[], Any]:
        return lambda: trainers[name].evaluate(dummy, eval_enc)

    def peft_step() -> float:
        return peft.train_step(batch.input_ids, batch.attention_mask, batch.labels)

    def peft_eval() -> Any:
        texts = peft.generate(eval_ids.input_ids, eval_ids.attention_mask, s.max_new_tokens)
        return task.compute_metrics([task.parse_prediction(t) for t in texts], dummy)

    steps = {name: ours_step(name) for name in trainers} | {"peft-prompt": peft_step}
    evals = {name: ours_eval(name) for name in trainers} | {"peft-prompt": peft_eval}
    losses = {name: fn() for name, fn in steps.items()}  # one call each: every provider must produce a finite loss
    bad = {k: v for k, v in losses.items() if not torch.isfinite(torch.tensor(v))}
    if bad:
        raise FloatingPointError(f"non-finite training loss from {bad}")
    step_times = interleaved(steps, s.warmup, s.rounds, s.steps, device)
    eval_times = interleaved(evals, 1, s.eval_rounds, 1, device)

    rows = []
    for name in steps:
        step = summary(flat(step_times[name]))
        ev = summary([s.eval_batch_size / t for t in flat(eval_times[name])])
        trainable = peft.trainable if name == "peft-prompt" else trainers[name].method.count_parameters()[0]
        rows.append(
            {
                "provider": name,
                "trainable_params": trainable,
                "train_step_s": step,
                "train_steps_per_s": 1.0 / step["median"],
                "eval_examples_per_s": ev,
                "backend": backends.get(name),
            }
        )
    targets = []
    if "ours-superpos" in steps and "ours-prompt" in steps:
        r = round_ratios(step_times, "ours-superpos", "ours-prompt")
        targets.append(
            target(
                "SuperPos step overhead over simple prompt tuning (our trainer)",
                r["median"] - 1.0,
                "<=",
                0.02,
                f"per-round ratio superpos/prompt: median {r['median']:.4f}, range {r['min']:.4f}-{r['max']:.4f} "
                f"over {r['n']} rounds",
            )
        )
    for ours in ("ours-superpos", "ours-prompt"):
        if ours in steps:
            r = round_ratios(step_times, ours, "peft-prompt")
            targets.append(
                target(
                    f"{ours} step time / PEFT prompt-tuning step time",
                    r["median"],
                    "<=",
                    1.0,
                    f"per-round ratio: median {r['median']:.4f}, range {r['min']:.4f}-{r['max']:.4f} "
                    f"over {r['n']} rounds",
                )
            )
    env["load_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "suite": "fixed_shape",
        "env": env,
        "settings": asdict(s),
        "shape": {
            "train": [s.batch_size, s.seq_len + s.num_prompt_tokens],
            "eval": [s.eval_batch_size, s.seq_len + s.num_prompt_tokens],
            "labels": len(train_enc[0].target_ids),
        },
        "rows": rows,
        "targets": targets,
        "timed_steps_per_provider": s.rounds * s.steps,
    }


def _real_slices(settings: E2ESettings, data_dir: str) -> tuple[list[Any], list[Any]]:
    from superpos_trainer.data import load_examples

    train = load_examples("sst2", "train", data_dir, limit=settings.epoch_examples, seed=0)
    evals = load_examples("sst2", "validation", data_dir, limit=settings.epoch_eval_examples, seed=0)
    return train, evals


def _padded(tokenizer: Any, texts: Sequence[str], max_length: int, ignore: bool = False) -> dict[str, torch.Tensor]:
    """The PEFT recipe's ``tokenizer(..., padding="max_length", truncation=True)``; labels pad with -100."""
    out = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    if ignore:
        out["input_ids"] = out["input_ids"].masked_fill(out["attention_mask"] == 0, -100)
    return dict(out)


def real_task_suite(settings: E2ESettings, device: torch.device, data_dir: str) -> dict[str, Any]:
    s = settings
    env = environment(device)
    tokenizer = build_tokenizer(data_dir)
    loaded = build_backbone(tokenizer, device)
    train, evals = _real_slices(s, data_dir)
    ours = make_trainer(loaded, "superpos", s, s.max_length, s.epoch_eval_batch_size, train, evals)
    peft = PeftProvider(loaded, s, bf16=ours.bf16)
    budget = ours.encoder.source_budget  # max_length minus the prompt: the same encoder length on both sides
    src = _padded(tokenizer, [e.source for e in train], budget)
    lab = _padded(tokenizer, [e.target for e in train], s.max_target_length, ignore=True)["input_ids"]
    for i, enc in enumerate(ours.train_encoded):  # same tokens on both sides; only the padding differs
        if src["input_ids"][i, : len(enc.source_ids)].tolist() != list(enc.source_ids):
            raise AssertionError(f"PEFT and trainer tokenize example {i} differently")
    plan = [group[0] for group in ours.epoch_plan(0)]  # grad_accum 1: one micro-batch per step

    def ours_epoch() -> None:
        for indices in plan:
            ours.train_step(ours.make_batch(indices))

    def peft_max_step(indices: list[int]) -> None:
        idx = torch.tensor(indices)
        peft.train_step(src["input_ids"][idx].to(device), src["attention_mask"][idx].to(device), lab[idx].to(device))

    def peft_max_epoch() -> None:
        for indices in plan:
            peft_max_step(indices)

    def peft_dynamic_epoch() -> None:
        for indices in plan:
            b = ours.make_batch(indices)
            peft.train_step(b.input_ids, b.attention_mask, b.labels)

    eval_src = _padded(tokenizer, [e.source for e in evals], budget)
    task = ours.task

    def ours_eval() -> None:
        ours.evaluate()

    def peft_eval_max() -> None:
        texts: list[str] = []
        for start in range(0, len(evals), s.epoch_eval_batch_size):  # in file order, padded to max length
            sl = slice(start, start + s.epoch_eval_batch_size)
            ids, mask = eval_src["input_ids"][sl].to(device), eval_src["attention_mask"][sl].to(device)
            texts += peft.generate(ids, mask, s.max_new_tokens)
        task.compute_metrics([task.parse_prediction(t) for t in texts], evals)

    epochs = {"ours-superpos (dynamic)": ours_epoch, "peft-prompt (max_length)": peft_max_epoch,
              "peft-prompt (dynamic, our batches)": peft_dynamic_epoch}  # fmt: skip
    # Warm-up: a few steps of each, not a whole epoch.
    warm = plan[: min(3, len(plan))]
    for indices in warm:
        ours.train_step(ours.make_batch(indices))
        peft_max_step(indices)
    epoch_times = interleaved(epochs, 0, s.epoch_rounds, 1, device)
    eval_times = interleaved({"ours-superpos (dynamic)": ours_eval, "peft-prompt (max_length)": peft_eval_max}, 1,
                             s.epoch_rounds, 1, device)  # fmt: skip

    dyn_len = statistics.mean(max(len(ours.train_encoded[i].source_ids) for i in b) for b in plan)
    lengths = [len(e.source_ids) for e in ours.train_encoded]
    rows = []
    for name in epochs:
        t = summary(flat(epoch_times[name]))
        padded = budget if "max_length" in name else dyn_len
        row = {
            "provider": name,
            "epoch_s": t,
            "train_examples_per_s": len(train) / t["median"],
            "mean_encoder_len": padded + s.num_prompt_tokens,
        }
        if name in eval_times:
            row["eval_examples_per_s"] = summary([len(evals) / x for x in flat(eval_times[name])])
        rows.append(row)
    r = round_ratios(epoch_times, "peft-prompt (max_length)", "ours-superpos (dynamic)")
    r_dyn = round_ratios(epoch_times, "peft-prompt (dynamic, our batches)", "ours-superpos (dynamic)")
    targets = [
        target(
            "epoch speed-up: PEFT (max_length) epoch time / our epoch time (SuperPos, dynamic padding)",
            r["median"],
            ">=",
            1.5,
            f"per-round ratio median {r['median']:.3f}, range {r['min']:.3f}-{r['max']:.3f} over {r['n']} rounds; "
            f"PEFT fed our dynamic batches: ratio {r_dyn['median']:.3f}",
        )
    ]
    env["load_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "suite": "real_task",
        "env": env,
        "settings": asdict(s),
        "data": {
            "task": "sst2",
            "train_examples": len(train),
            "eval_examples": len(evals),
            "steps_per_epoch": len(plan),
            "source_tokens_mean": statistics.mean(lengths),
            "source_tokens_max": max(lengths),
            "max_length": s.max_length,
        },
        "rows": rows,
        "targets": targets,
    }
