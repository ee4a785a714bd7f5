"""Headline speed of the fused op, measured so that a busy machine cannot fake it.

What is timed (all with gradients enabled, as in training), at one shape (default B32 L256 d512, n10 m128, a
T5-sized table of 32128 rows), in one process:

* ``embedding``: a bare ``F.embedding`` over the same ids, the floor any gather pays;
* ``eager``: the eager composition, ``superpos_embed_reference`` (F.embedding + prompt superposition + torch.cat)
  plus ``extend_attention_mask``;
* ``fused``: the public ``superpos_kernels.superpos_embed(ids, weight, w, E, mask)`` (its automatic backend:
  the C++ op on CPU);

``forward`` for all three, ``forward_backward`` (dw, dE from a fixed dOut) for ``eager`` and ``fused``.

How: every round calls every provider once, in an order that rotates from round to round, so a neighbour's burst
lands on all providers alike; the headline ratios are medians of the per-round ratios (calls milliseconds apart),
next to the median times. Python's garbage collector is off during the timed rounds (as in ``timeit``).

When a figure is refused ("noisy, not a result"), with ``cores = os.cpu_count()``:

1. the 1-minute load average was above ``0.5 * cores`` when the process started, before any measurement; or
2. at the end of a configuration, the 1-minute load average minus this process's own estimated share was above
   ``0.5 * cores`` (own share: the process's measured CPU seconds per second over each timed stretch, run through
   the kernel's 60 s exponential average; the estimate, not the raw figure, because a benchmark busy on 2 threads
   for a minute raises the load average toward 2 by itself); or
3. the main thread got less than 90 % of the wall time as CPU time during the timed rounds (it never sleeps in
   them, so less means it was descheduled for another process).

Run (about 1 minute on a 2-core CPU): ``python bench/op_speed.py`` (fp32 and bf16, 1 and 2 threads; ``--json
FILE`` keeps the raw figures), or through pytest, the benches' one entry point:
``python -m pytest bench/test_op_bench.py -k speed_targets -s``. ``SUPERPOS_BENCH_SMOKE=1`` (CI) uses a tiny shape.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    import resource  # POSIX only: the page-fault counts are left at 0 elsewhere
except ImportError:  # pragma: no cover
    resource = None

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a source checkout

import to_markdown

from superpos_kernels import cpp_ops, last_backend, superpos_embed
from superpos_kernels.reference import extend_attention_mask, superpos_embed_reference

SMOKE = os.environ.get("SUPERPOS_BENCH_SMOKE") == "1"
GOALS = {"forward": 1.5, "forward_backward": 1.3, "forward_vs_embedding": 1.25}
LOAD_PER_CORE = 0.5
MIN_CPU_SHARE = 0.9
LOAD_TAU_S = 60.0  # the kernel's 1-minute load average is an exponential average with this time constant
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Shape:
    B: int = 32
    L: int = 256
    d: int = 512
    n: int = 10
    m: int = 128
    V: int = 32128

    @property
    def id(self) -> str:
        return f"B{self.B} L{self.L} d{self.d} n{self.n} m{self.m} V{self.V}"


SHAPE = Shape(B=2, L=8, d=32, n=3, m=4, V=100) if SMOKE else Shape()


class OwnLoad:
    """This process's share of the 1-minute load average, from its own busy stretches.

    A stretch of ``k`` busy CPUs from ``start`` to ``end`` contributes ``k (e^-(now-end)/tau - e^-(now-start)/tau)``
    to an exponential average with time constant ``tau`` (Linux updates it every 5 s: an approximation).
    """

    def __init__(self) -> None:
        self.stretches: list[tuple[float, float, float]] = []

    def add(self, start: float, end: float, cpus: float) -> None:
        self.stretches.append((start, end, cpus))

    def estimate(self, now: float) -> float:
        return sum(
            k * (math.exp(-(now - e) / LOAD_TAU_S) - math.exp(-(now - s) / LOAD_TAU_S)) for s, e, k in self.stretches
        )


def load1() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def verdict(start_load: float | None, end_load: float | None, own: float, cpu_share: float, cores: int) -> str:
    """``"ok"`` or the reason the figures are "noisy, not a result" (rules in the module docstring)."""
    limit = LOAD_PER_CORE * cores
    reasons = []
    if start_load is not None and start_load > limit:
        reasons.append(f"load average {start_load:.2f} at start > {limit:.2f}")
    if end_load is not None and end_load - own > limit:
        reasons.append(f"load average {end_load:.2f} minus own {own:.2f} > {limit:.2f}")
    if cpu_share < MIN_CPU_SHARE:
        reasons.append(f"main thread got {cpu_share:.0%} of wall time as CPU < {MIN_CPU_SHARE:.0%}")
    return "ok" if not reasons else "noisy, not a result: " + "; ".join(reasons)


def make_inputs(shape: Shape, dtype: torch.dtype, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = shape
    return {
        "ids": torch.randint(0, s.V, (s.B, s.L), generator=g),
        "mask": torch.ones(s.B, s.L, dtype=torch.long),
        "weight": torch.randn(s.V, s.d, generator=g).to(dtype),
        "w": (torch.randn(s.n, s.m, generator=g) / s.m**0.5).to(dtype).requires_grad_(),
        "E": torch.randn(s.n, s.m, s.d, generator=g).to(dtype).requires_grad_(),
        "grad": torch.randn(s.B, s.n + s.L, s.d, generator=g).to(dtype),
    }


def providers(x: dict[str, Tensor]) -> dict[str, Callable[[], object]]:
    """``name -> call`` for every (provider, mode) timed; each call drops its results (freed before the next)."""
    ids, mask, weight, w, E, grad = (x[k] for k in ("ids", "mask", "weight", "w", "E", "grad"))
    n = w.shape[0]

    def eager() -> tuple[Tensor, Tensor]:
        return superpos_embed_reference(ids, weight, w, E), extend_attention_mask(mask, ids, n)

    def fused() -> tuple[Tensor, Tensor]:
        return superpos_embed(ids, weight, w, E, mask)

    return {
        "embedding forward": lambda: F.embedding(ids, weight),
        "eager forward": eager,
        "fused forward": fused,
        "eager forward_backward": lambda: torch.autograd.grad(eager()[0], (w, E), grad),
        "fused forward_backward": lambda: torch.autograd.grad(fused()[0], (w, E), grad),
    }


RATIOS = {  # name -> (numerator, denominator, goal, "at least" or "at most")
    "forward speed-up over eager": ("eager forward", "fused forward", GOALS["forward"], ">="),
    "forward+backward speed-up over eager": (
        "eager forward_backward",
        "fused forward_backward",
        GOALS["forward_backward"],
        ">=",
    ),
    "forward time / bare F.embedding": ("fused forward", "embedding forward", GOALS["forward_vs_embedding"], "<="),
}


def _minor_faults() -> int:
    # Page faults served without I/O: first touches of freshly mapped memory. Unlike times they do not depend on
    # the load, so they say whether a provider paid for fresh pages on a call (glibc hands large blocks back to the
    # kernel with munmap or a heap trim, depending on the process's allocation history).
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int
) -> tuple[dict[str, list[float]], float, float, dict[str, list[int]]]:
    """Per-provider times over ``rounds`` rotating rounds; also wall seconds, the main thread's CPU share and the
    minor page faults of every call (two getrusage calls around each, outside the timed stretch)."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                before = _minor_faults()
                start = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - start)
                faults[name].append(_minor_faults() - before)
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    finally:
        gc.enable()
    return times, wall, cpu / wall, faults


def fault_summary(faults: Sequence[int]) -> dict[str, float]:
    """Minor page faults per call: median, mean, and the share of calls that faulted at all."""
    return {
        "median": float(statistics.median(faults)),
        "mean": statistics.fmean(faults),
        "calls_faulting": sum(1 for f in faults if f > 0) / len(faults),
    }


def measure(
    dtype_name: str, threads: int, rounds: int, own: OwnLoad, start_load: float | None, shape: Shape = SHAPE
) -> dict[str, object]:
    """One configuration (dtype, thread count): medians, ratios, load figures and the verdict."""
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fns = providers(make_inputs(shape, DTYPES[dtype_name]))
        for fn in fns.values():  # warm-up: first-call allocations, lazy initialisation
            for _ in range(3):
                fn()
        backend = last_backend()
        # What the extension's parallel loops really use (1 would mean a build without OpenMP).
        openmp = cpp_ops.openmp_threads() if cpp_ops.LOADED else None
        load_before = load1()
        t0, p0 = time.time(), time.process_time()
        times, wall, cpu_share, faults = interleaved(fns, rounds)
        t1 = time.time()
        own.add(t0, t1, (time.process_time() - p0) / max(t1 - t0, 1e-9))
        load_after = load1()
    finally:
        torch.set_num_threads(before_threads)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {}
    for label, (num, den, goal, sense) in RATIOS.items():
        value = statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))
        met = value >= goal if sense == ">=" else value <= goal
        ratios[label] = {"value": value, "goal": f"{sense} {goal}", "met": met}
    own_now = own.estimate(time.time())
    return {
        "dtype": dtype_name,
        "threads": threads,
        "shape": asdict(shape),
        "backend": backend,
        "cpp_openmp_threads": openmp,
        "rounds": rounds,
        "wall_s": wall,
        "median_ms": {name: t * 1e3 for name, t in medians.items()},
        "page_faults_per_call": {name: fault_summary(f) for name, f in faults.items()},
        "ratios": ratios,
        "load_before": load_before,
        "load_after": load_after,
        "own_load_estimate": own_now,
        "main_thread_cpu_share": cpu_share,
        "verdict": verdict(start_load, load_after, own_now, cpu_share, os.cpu_count() or 1),
    }


def render(results: Sequence[dict[str, object]], start_load: float | None) -> str:
    title = (
        f"Fused op, {SHAPE.id}; {os.cpu_count()} CPUs, torch {torch.__version__}; 1-min load average at start "
        f"{'?' if start_load is None else f'{start_load:.2f}'}; medians of interleaved rounds, ratios per round"
    )
    return to_markdown.render_op_speed(results, title)


def render_faults(results: Sequence[dict[str, object]]) -> str:
    """Minor page faults per call of every provider (median / mean / share of calls faulting): not timings, so
    they hold on a busy machine too. A median above 0 means a provider paid for fresh pages on most calls."""
    lines = ["", "Minor page faults per call (median / mean / calls faulting):"]
    for r in results:
        cells = [
            f"{name} {f['median']:.0f} / {f['mean']:.0f} / {f['calls_faulting']:.0%}"
            for name, f in r["page_faults_per_call"].items()
        ]
        lines.append(f"- {r['dtype']}, {r['threads']} thread(s): " + "; ".join(cells))
    return "\n".join(lines)


def run(dtypes: Sequence[str], threads: Sequence[int], rounds: int) -> tuple[list[dict[str, object]], str]:
    start_load = load1()  # before any measurement: the machine as this process found it
    own = OwnLoad()
    results = [measure(dt, t, rounds, own, start_load) for t in threads for dt in dtypes]
    return results, render(results, start_load)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, from: " + ", ".join(DTYPES))
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    parser.add_argument("--rounds", type=int, default=20 if SMOKE else 400, help="interleaved rounds per setting")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or args.rounds < 1:
        parser.error(f"--dtypes must name {list(DTYPES)} (got {unknown}) and --rounds must be >= 1")
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not threads or min(threads) < 1:
        parser.error(f"--threads must be positive integers, got {args.threads!r}")
    results, table = run(dtypes, threads, args.rounds)
    print(table)
    print(render_faults(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
