#!/usr/bin/env python
"""Cached vs uncached rank scoring on real data: same predictions, scores equal to float tolerance (issue 16).

The cached path (each source once, labels from its keys/values, the prompt's keys/values once per evaluation) must
predict exactly what the reference path (one full forward per example and label word) predicts. Both run on the
same length-sorted batches; each returns per-token log-probabilities, from which both rank scores (``mean`` and
``sum``) are computed, so one pass per path checks both. Exit code 1 when any prediction differs.

    # (a) the full SST-2 (872) and RTE (277) validation sets, fp32, SmolLM2-135M with a fresh SuperPos prompt
    nice -n 10 python experiments/check_cached_scoring.py
    # a trained adapter instead of a fresh prompt
    nice -n 10 python experiments/check_cached_scoring.py --adapter runs/x/best
    # (b) timing: providers interleaved round by round in this process, on 64 examples per task (the experiments'
    #     evaluation size); "uncached fp32" is what evaluation ran before (one forward per example and label)
    nice -n 10 python experiments/check_cached_scoring.py --check none --timing-rounds 3 --limit 64

Timing figures are medians over rounds with the load average before and after; they are marked "noisy, not a
result" when the load average exceeded this process's threads (another process was running).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "python")]

from superpos_trainer.collate import Encoder  # noqa: E402
from superpos_trainer.config import default_data_dir  # noqa: E402
from superpos_trainer.data import load_examples  # noqa: E402
from superpos_trainer.evaluate import (  # noqa: E402
    EvalSettings,
    generate_texts,
    length_sorted_chunks,
    make_scorer,
    rank_scores,
)
from superpos_trainer.forward import autocast  # noqa: E402
from superpos_trainer.methods import build_method, load_method  # noqa: E402
from superpos_trainer.models import load_model  # noqa: E402
from superpos_trainer.precision import use_bf16  # noqa: E402
from superpos_trainer.scoring import choose_labels, reduce_scores  # noqa: E402
from superpos_trainer.tasks import get_task  # noqa: E402

CPU = torch.device("cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "rte"])
    parser.add_argument("--limit", type=int, default=0, help="validation examples per task (0 = all)")
    parser.add_argument("--adapter", help="a trained adapter folder (default: a fresh prompt of --method)")
    parser.add_argument("--method", default="superpos", choices=("superpos", "prompt", "residual", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="(example, label) rows per batch, as evaluation")
    parser.add_argument("--max-length", type=int, default=512, help="large enough that no source is cut")
    parser.add_argument("--check", choices=("fp32", "bf16", "none"), default="fp32", help="precision of the check")
    parser.add_argument("--timing-rounds", type=int, default=0, help="interleaved timing rounds (0 = no timing)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", help="also write the JSON summary here")
    return parser.parse_args(argv)


def setup(args: argparse.Namespace, task_name: str, loaded: Any, method: Any) -> tuple[Any, Encoder, list, list]:
    task = get_task(task_name)
    examples = load_examples(task, "validation", args.data_dir or default_data_dir(), limit=args.limit or None)
    encoder = Encoder(
        loaded.tokenizer, loaded.is_encoder_decoder, args.max_length, method.num_prompt_tokens, 8, loaded.max_positions
    )
    return task, encoder, examples, [encoder.encode(e.source, e.target) for e in examples]


def both_scores(method: Any, encoder: Encoder, encoded: list, words: list[str], args: Any, cached: bool, bf16: bool):
    """``{"mean": [N, C], "sum": [N, C]}`` from one pass of the chosen path, and its seconds."""
    out = {how: torch.empty(len(encoded), len(words)) for how in ("mean", "sum")}
    start = time.perf_counter()
    with torch.inference_mode(), autocast(CPU, bf16):
        scorer = make_scorer(method, encoder, words, EvalSettings(cached=cached))
        for chunk in length_sorted_chunks(encoded, max(1, args.batch_size // len(words))):
            picked, valid = scorer.token_logprobs(encoded, chunk, CPU)
            for how in out:
                out[how][chunk] = reduce_scores(picked, valid, how).view(len(chunk), -1).float()
    return out, time.perf_counter() - start


def check(args: argparse.Namespace, task_name: str, loaded: Any, method: Any) -> dict[str, Any]:
    task, encoder, examples, encoded = setup(args, task_name, loaded, method)
    bf16 = args.check == "bf16"
    words = list(task.label_words)
    cached, t_cached = both_scores(method, encoder, encoded, words, args, True, bf16)
    plain, t_plain = both_scores(method, encoder, encoded, words, args, False, bf16)
    result: dict[str, Any] = {
        "examples": len(examples),
        "label_tokens": {w: len(encoder.target(w)) for w in words},
        "seconds": {"cached": round(t_cached, 1), "uncached": round(t_plain, 1)},
    }
    for how in ("mean", "sum"):
        a, b = choose_labels(cached[how], words), choose_labels(plain[how], words)
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        top2 = plain[how].topk(min(2, len(words)), dim=1).values
        result[how] = {
            "same_predictions": len(a) - len(differ),
            "different_predictions": len(differ),
            "invalid": sum(1 for p in b if not p),
            "max_abs_score_diff": float((cached[how] - plain[how]).abs().max()),
            "smallest_margin": float((top2[:, 0] - top2[:, -1]).min()) if len(words) > 1 else None,
            "differing_examples": [
                {"index": i, "cached": a[i], "uncached": b[i], "scores": plain[how][i].tolist()} for i in differ[:10]
            ],
            "accuracy_cached": sum(task.parse_prediction(p) == e.label for p, e in zip(a, examples, strict=True))
            / len(examples),
        }
    return result


def timing(args: argparse.Namespace, loaded: Any, method: Any) -> dict[str, Any]:
    """Providers interleaved round by round (same process, same data), medians per task and provider."""
    bf16_native = use_bf16("auto", CPU)
    providers = [("uncached fp32 (before)", False, False), ("cached fp32", True, False)]
    providers += [("uncached bf16", False, True), ("cached bf16", True, True)] if bf16_native else []
    setups = {name: setup(args, name, loaded, method) for name in args.tasks}
    times: dict[str, dict[str, list[float]]] = {t: {p[0]: [] for p in providers} for t in args.tasks}
    generate: dict[str, list[float]] = {"generate, prompt recomputed": [], "generate, prompt cached": []}
    load_before = os.getloadavg()
    warmup = True
    for _ in range(args.timing_rounds + 1):  # round 0 warms up (allocator, oneDNN primitives) and is dropped
        for name, (task, encoder, _, encoded) in setups.items():
            for label, cached, bf16 in providers:
                start = time.perf_counter()
                settings = EvalSettings(batch_size=args.batch_size, bf16=bf16, cached=cached)
                rank_scores(method, encoder, encoded, task.label_words, settings)
                if not warmup:
                    times[name][label].append(time.perf_counter() - start)
        first = next(iter(setups.values()))
        for label, reuse in (("generate, prompt recomputed", False), ("generate, prompt cached", True)):
            start = time.perf_counter()
            settings = EvalSettings(batch_size=args.batch_size, max_new_tokens=5, bf16=bf16_native, cached=reuse)
            generate_texts(method, first[1], first[3], settings)
            if not warmup:
                generate[label].append(time.perf_counter() - start)
        warmup = False
    load_after = os.getloadavg()
    threads = torch.get_num_threads()
    noisy = max(load_before[0], load_after[0]) > threads + 0.5
    summary: dict[str, Any] = {
        "threads": threads,
        "rounds": args.timing_rounds,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "status": "noisy, not a result" if noisy else "quiet",
        "generation_task": args.tasks[0],
        "generation_precision": "bf16-autocast" if bf16_native else "fp32",
    }
    for name, per in [*times.items(), ("generation", generate)]:
        medians = {k: statistics.median(v) for k, v in per.items() if v}
        base = next(iter(medians.values()))
        summary[name] = {k: {"median_s": round(v, 3), "speedup": round(base / v, 2)} for k, v in medians.items()}
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    loaded = load_model(args.model)
    if args.adapter:
        method = load_method(args.adapter, loaded)
    elif args.method == "superpos":
        method = build_method("superpos", loaded, 10, 128, seed=args.seed)
    else:
        method = build_method(args.method, loaded, 10, seed=args.seed)
    method.eval()
    report: dict[str, Any] = {"model": args.model, "adapter": args.adapter, "method": method.name}
    failed = False
    if args.check != "none":
        report["precision"] = args.check
        for name in args.tasks:
            report[name] = check(args, name, loaded, method)
            failed |= any(report[name][how]["different_predictions"] for how in ("mean", "sum"))
            print(f"{name}: {json.dumps(report[name])}", file=sys.stderr, flush=True)
    if args.timing_rounds:
        report["timing"] = timing(args, loaded, method)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
