"""The two end-to-end suites, each returning a plain dict (JSON-ready) that ``bench/to_markdown.py`` renders.

* :func:`fixed_shape_suite`: one batch of ``B x L`` random token ids (every row exactly L tokens, so both sides see
  identical tensors), the optimizer step timed per provider; then greedy generation of ``max_new_tokens`` for one
  evaluation batch. Providers run in interleaved rounds (``e2e_timing.interleaved``).
* :func:`real_task_suite`: one epoch over a fixed SST-2 slice: our trainer (dynamic padding, its own collation and
  batch order) versus PEFT fed the same batches padded to max length (the usual ``padding="max_length"`` recipe)
  and the same batches padded dynamically (so the table shows how much of the gap is padding and how much is
  framework).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
from e2e_models import build_backbone, build_tokenizer, separate_copy
from e2e_providers import PeftProvider, make_trainer
from e2e_settings import E2ESettings, environment
from e2e_timing import flat, interleaved, round_ratios, summary, target
from superpos_trainer.methods import METHODS as METHOD_REGISTRY


def _load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


# ---- fixed shape ---------------------------------------------------------------------------------------------------


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


def _our_trainers(loaded: Any, s: E2ESettings, methods: Sequence[str], dummy: list[Any]) -> dict[str, Any]:
    trainers = {}
    for method in methods:
        # A method that trains the backbone (full fine-tuning) gets its own copy so the others stay frozen.
        base = separate_copy(loaded) if METHOD_REGISTRY[method].trains_backbone else loaded
        max_length = s.seq_len + s.num_prompt_tokens
        trainers[f"ours-{method}"] = make_trainer(base, method, s, max_length, s.eval_batch_size, (dummy, dummy))
    return trainers


def _ours_step(trainer: Any, batch: Any, record_backend: Callable[[], None] | None) -> Callable[[], float]:
    def run() -> float:
        loss = trainer.train_step(batch)
        if record_backend is not None:
            record_backend()
        return loss

    return run


def _providers(
    trainers: dict[str, Any], peft: PeftProvider, inputs: dict[str, Any], backends: dict[str, str | None]
) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    """``(step providers, evaluation providers)``; ``inputs``: batch, eval_ids, eval_enc, dummy, max_new_tokens."""
    from superpos_kernels import last_backend

    batch, eval_ids, dummy = inputs["batch"], inputs["eval_ids"], inputs["dummy"]
    task = next(iter(trainers.values())).task

    def superpos_backend() -> None:
        backends["ours-superpos"] = last_backend()

    def peft_eval() -> Any:
        texts = peft.generate(eval_ids.input_ids, eval_ids.attention_mask, inputs["max_new_tokens"])
        return task.compute_metrics([task.parse_prediction(t) for t in texts], dummy)

    steps = {
        name: _ours_step(t, batch, superpos_backend if name == "ours-superpos" else None)
        for name, t in trainers.items()
    }
    steps["peft-prompt"] = lambda: peft.train_step(batch.input_ids, batch.attention_mask, batch.labels)
    evals = {name: (lambda t=t: t.evaluate(dummy, inputs["eval_enc"])) for name, t in trainers.items()}
    evals["peft-prompt"] = peft_eval
    return steps, evals


def _check_finite(steps: dict[str, Callable[[], float]]) -> None:
    """One call each: every provider must produce a finite loss before anything is timed."""
    losses = {name: fn() for name, fn in steps.items()}
    bad = {k: v for k, v in losses.items() if not torch.isfinite(torch.tensor(v))}
    if bad:
        raise FloatingPointError(f"non-finite training loss from {bad}")


def _fixed_targets(step_times: dict[str, list[list[float]]]) -> list[dict[str, Any]]:
    targets = []
    if "ours-superpos" in step_times and "ours-prompt" in step_times:
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
        if ours in step_times:
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
    return targets


def fixed_shape_suite(settings: E2ESettings, device: torch.device, methods: Sequence[str]) -> dict[str, Any]:
    from superpos_trainer.config import default_data_dir
    from superpos_trainer.tasks import Example

    s = settings
    env = environment(device)
    tokenizer = build_tokenizer(default_data_dir())
    loaded = build_backbone(tokenizer, device)
    dummy = [Example("x", "positive", 1) for _ in range(s.eval_batch_size)]
    train_enc = _fixed_encoded(tokenizer, s.batch_size, s.seq_len, seed=1)
    eval_enc = _fixed_encoded(tokenizer, s.eval_batch_size, s.seq_len, seed=2)
    trainers = _our_trainers(loaded, s, methods, dummy)
    first = next(iter(trainers.values()))
    peft = PeftProvider(loaded, s, bf16=first.bf16)
    inputs = {
        "batch": first.make_batch(list(range(s.batch_size)), train_enc),
        "eval_ids": first.make_batch(list(range(s.eval_batch_size)), eval_enc),
        "eval_enc": eval_enc,
        "dummy": dummy,
        "max_new_tokens": s.max_new_tokens,
    }
    backends: dict[str, str | None] = {}
    steps, evals = _providers(trainers, peft, inputs, backends)
    _check_finite(steps)
    step_times = interleaved(steps, s.warmup, s.rounds, s.steps, device)
    eval_times = interleaved(evals, 1, s.eval_rounds, 1, device)

    rows = []
    for name in steps:
        step = summary(flat(step_times[name]))
        trainable = peft.trainable if name == "peft-prompt" else trainers[name].method.count_parameters()[0]
        rows.append(
            {
                "provider": name,
                "trainable_params": trainable,
                "train_step_s": step,
                "train_steps_per_s": 1.0 / step["median"],
                "eval_examples_per_s": summary([s.eval_batch_size / t for t in flat(eval_times[name])]),
                "backend": backends.get(name),
            }
        )
    env["load_after"] = _load_average()
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
        "targets": _fixed_targets(step_times),
        "timed_steps_per_provider": s.rounds * s.steps,
    }


# ---- real task -----------------------------------------------------------------------------------------------------


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


def _peft_inputs(ours: Any, train: list[Any], s: E2ESettings) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """PEFT's max-length padded sources and labels: the same tokens as our trainer's, only the padding differs."""
    tokenizer, budget = ours.loaded.tokenizer, ours.encoder.source_budget  # the same encoder length on both sides
    src = _padded(tokenizer, [e.source for e in train], budget)
    lab = _padded(tokenizer, [e.target for e in train], s.max_target_length, ignore=True)["input_ids"]
    for i, enc in enumerate(ours.train_encoded):
        if src["input_ids"][i, : len(enc.source_ids)].tolist() != list(enc.source_ids):
            raise AssertionError(f"PEFT and trainer tokenize example {i} differently")
    return src, lab


def _epoch_providers(ours: Any, peft: PeftProvider, plan: list[list[int]], s: E2ESettings, train: list[Any]) -> dict:
    src, lab = _peft_inputs(ours, train, s)
    device = ours.device

    def peft_max_step(indices: list[int]) -> None:
        idx = torch.tensor(indices)
        peft.train_step(src["input_ids"][idx].to(device), src["attention_mask"][idx].to(device), lab[idx].to(device))

    def peft_dynamic_step(indices: list[int]) -> None:
        b = ours.make_batch(indices)
        peft.train_step(b.input_ids, b.attention_mask, b.labels)

    steps = {
        "ours-superpos (dynamic)": lambda indices: ours.train_step(ours.make_batch(indices)),
        "peft-prompt (max_length)": peft_max_step,
        "peft-prompt (dynamic, our batches)": peft_dynamic_step,
    }
    for indices in plan[: min(3, len(plan))]:  # warm-up: a few steps of each, not a whole epoch
        steps["ours-superpos (dynamic)"](indices)
        peft_max_step(indices)
    return {name: (lambda step=step: [step(indices) for indices in plan]) for name, step in steps.items()}


def _eval_providers(ours: Any, peft: PeftProvider, evals: list[Any], s: E2ESettings) -> dict:
    eval_src = _padded(ours.loaded.tokenizer, [e.source for e in evals], ours.encoder.source_budget)
    task, device, size = ours.task, ours.device, s.epoch_eval_batch_size

    def peft_eval_max() -> None:
        texts: list[str] = []
        for start in range(0, len(evals), size):  # in file order, padded to max length
            ids, mask = eval_src["input_ids"][start : start + size], eval_src["attention_mask"][start : start + size]
            texts += peft.generate(ids.to(device), mask.to(device), s.max_new_tokens)
        task.compute_metrics([task.parse_prediction(t) for t in texts], evals)

    return {"ours-superpos (dynamic)": ours.evaluate, "peft-prompt (max_length)": peft_eval_max}


def _real_rows(times: tuple[dict, dict], ours: Any, plan: list[list[int]], counts: tuple[int, int], s: E2ESettings):
    epoch_times, eval_times = times
    dyn_len = statistics.mean(max(len(ours.train_encoded[i].source_ids) for i in b) for b in plan)
    rows = []
    for name in epoch_times:
        t = summary(flat(epoch_times[name]))
        padded = ours.encoder.source_budget if "max_length" in name else dyn_len
        row = {
            "provider": name,
            "epoch_s": t,
            "train_examples_per_s": counts[0] / t["median"],
            "mean_encoder_len": padded + s.num_prompt_tokens,
        }
        if name in eval_times:
            row["eval_examples_per_s"] = summary([counts[1] / x for x in flat(eval_times[name])])
        rows.append(row)
    return rows


def real_task_suite(settings: E2ESettings, device: torch.device, data_dir: str) -> dict[str, Any]:
    s = settings
    env = environment(device)
    loaded = build_backbone(build_tokenizer(data_dir), device)
    train, evals = _real_slices(s, data_dir)
    ours = make_trainer(loaded, "superpos", s, s.max_length, s.epoch_eval_batch_size, (train, evals))
    peft = PeftProvider(loaded, s, bf16=ours.bf16)
    plan = [group[0] for group in ours.epoch_plan(0)]  # grad_accum 1: one micro-batch per step
    epoch_times = interleaved(_epoch_providers(ours, peft, plan, s, train), 0, s.epoch_rounds, 1, device)
    eval_times = interleaved(_eval_providers(ours, peft, evals, s), 1, s.epoch_rounds, 1, device)
    rows = _real_rows((epoch_times, eval_times), ours, plan, (len(train), len(evals)), s)
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
    env["load_after"] = _load_average()
    lengths = [len(e.source_ids) for e in ours.train_encoded]
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


__all__ = ["fixed_shape_suite", "real_task_suite"]
