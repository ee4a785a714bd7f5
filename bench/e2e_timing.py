"""Timing and its summaries: interleaved rounds, medians and quartiles, per-round ratios, targets."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from e2e_settings import synchronize


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
