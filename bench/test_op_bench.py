"""Op microbenchmarks of the fused SuperPos op: providers x modes x shapes x dtypes (pytest-benchmark).

Run: ``python -m pytest bench/test_op_bench.py`` (about 3 minutes on 2 CPU cores, each case at torch's thread count
and at 1 thread; ``SUPERPOS_BENCH_THREADS=2`` for one count only). ``SUPERPOS_BENCH_FULL=1`` runs the full sweep:
B in {8, 32, 64}, L in {64, 256, 512}, d in {512, 768, 1024}, fp32/bf16/fp16. n = 10, m = 128 and a
T5-sized table (32128 rows) throughout.

Providers: ``eager`` (the PyTorch reference), ``compile`` (torch.compile of the reference), ``cpp`` (the C++
extension; on a GPU only if its CUDA kernels were built) and ``triton`` (GPU only: the Triton interpreter is not
something to time). Modes: ``forward`` (grad-enabled, as in training), ``backward`` (dOut -> dw, dE on a recorded
forward) and ``forward_backward``. Each benchmark runs in pedantic mode after warm-up rounds (which also absorb
torch.compile's compilation); ``extra_info`` holds the bytes a perfect kernel must move (the floor), the GB/s that
implies at the measured median, and that as a share of this machine's copy bandwidth.

``test_speed_targets`` gives the headline ratios (``bench/op_speed.py``: the public op against the eager
composition and a bare ``F.embedding``, providers interleaved round by round, load average checked, fp32 and bf16).
Targets are reported, never asserted: a benchmark on a shared machine must not fail because someone else was busy;
a busy machine's figures are marked "noisy, not a result" instead.

``SUPERPOS_BENCH_SMOKE=1`` (CI, with ``--benchmark-disable``): tiny shapes, one thread, each benchmark run once as
a test, so the benchmark code cannot rot unnoticed.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed: pip install -e '.[bench]'")

# bench/ has no __init__.py: pytest puts this folder on sys.path, so its helper modules import by name.
import op_speed
import to_markdown

from superpos_kernels import cpp_ops
from superpos_kernels.reference import superpos_embed_reference

FULL = os.environ.get("SUPERPOS_BENCH_FULL") == "1"
SMOKE = op_speed.SMOKE
N_PROMPT, M_SAMPLED, VOCAB = 10, 128, 32128
TARGET_SHAPE = (32, 256, 512)
PROVIDERS = ("eager", "compile", "cpp", "triton")
MODES = ("forward", "backward", "forward_backward")
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}


def _thread_counts() -> list[int]:
    """CPU thread counts to time: torch's default and 1 (``SUPERPOS_BENCH_THREADS=1,2`` to choose).

    One thread shows the kernels themselves; on a machine whose cores are shared, every OpenMP fork/join can wait
    for a descheduled thread (milliseconds), which the multi-threaded figures then include. A GPU run times once.
    """
    if torch.cuda.is_available():
        return [torch.get_num_threads()]
    if SMOKE:
        return [1]
    chosen = os.environ.get("SUPERPOS_BENCH_THREADS")
    if chosen:
        return [int(t) for t in chosen.split(",")]
    return sorted({1, torch.get_num_threads()}, reverse=True)


THREADS = _thread_counts()


@pytest.fixture(params=THREADS, ids=lambda t: f"{t}thr")
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Case:
    B: int
    L: int
    d: int
    dtype: torch.dtype

    @property
    def id(self) -> str:
        return f"B{self.B}-L{self.L}-d{self.d}-{DTYPE_NAMES[self.dtype]}"


def _cases() -> list[Case]:
    if SMOKE:
        return [Case(2, 8, 32, torch.float32), Case(2, 8, 32, torch.bfloat16)]
    if FULL:
        grid = itertools.product((8, 32, 64), (64, 256, 512), (512, 768, 1024))
        return [Case(B, L, d, dt) for (B, L, d) in grid for dt in (torch.float32, torch.bfloat16, torch.float16)]
    # Default: small, the acceptance shape, and a long/wide one, in fp32; the acceptance shape in bf16 too.
    return [
        Case(8, 64, 768, torch.float32),
        Case(*TARGET_SHAPE, torch.float32),
        Case(16, 512, 1024, torch.float32),
        Case(*TARGET_SHAPE, torch.bfloat16),
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compiled_reference() -> Callable[..., Tensor]:
    # Every case and mode is a new specialisation of the same function: raise dynamo's per-function limit so none
    # silently falls back to eager.
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)
    return torch.compile(superpos_embed_reference, dynamic=False)


def provider_fn(provider: str, device: torch.device) -> Callable[..., Tensor]:
    """``embed(ids, weight, w, E, scale) -> out`` for ``provider``, or pytest.skip with the reason."""
    if provider == "eager":
        return superpos_embed_reference
    if provider == "compile":
        return _compiled_reference()
    if provider == "cpp":
        ok, reason = cpp_ops.is_available(device)
        if not ok:
            pytest.skip(f"cpp provider unavailable on {device.type}: {reason}")
        return cpp_ops.superpos_embed
    if provider == "triton":
        if device.type != "cuda":
            pytest.skip("triton provider needs a CUDA GPU (the Triton CPU interpreter is not benchmarked)")
        try:
            module = importlib.import_module("superpos_kernels.triton_ops")
        except Exception as exc:
            pytest.skip(f"triton provider unavailable: {type(exc).__name__}: {exc}")
        ok, reason = module.is_available(device)
        if not ok:
            pytest.skip(f"triton provider unavailable: {reason}")
        return module.superpos_embed
    raise ValueError(f"unknown provider {provider!r}")


def make_inputs(case: Case, device: torch.device, seed: int = 0) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (case.B, case.L), generator=g).to(device)
    weight = torch.randn(VOCAB, case.d, generator=g).to(device, case.dtype)
    w = (torch.randn(N_PROMPT, M_SAMPLED, generator=g) / M_SAMPLED**0.5).to(device, case.dtype).requires_grad_()
    E = torch.randn(N_PROMPT, M_SAMPLED, case.d, generator=g).to(device, case.dtype).requires_grad_()
    grad = torch.randn(case.B, N_PROMPT + case.L, case.d, generator=g).to(device, case.dtype)
    return ids, weight, w, E, grad


def floor_bytes(case: Case, mode: str) -> int:
    """Bytes a perfect kernel must move: what it reads at least once and writes exactly once."""
    s = torch.tensor([], dtype=case.dtype).element_size()
    params = N_PROMPT * M_SAMPLED * (case.d + 1) * s  # w and E
    forward = case.B * (N_PROMPT + case.L) * case.d * s + case.B * case.L * (case.d * s + 8) + params
    backward = case.B * N_PROMPT * case.d * s + 2 * params  # the prompt slice of dOut; read w, E; write dw, dE
    return {"forward": forward, "backward": backward, "forward_backward": forward + backward}[mode]


def mode_fn(embed: Callable[..., Tensor], mode: str, inputs: tuple[Tensor, ...], scale: float = 1.0) -> Callable:
    ids, weight, w, E, grad = inputs
    if mode == "forward":
        return lambda: embed(ids, weight, w, E, scale)
    if mode == "backward":
        out = embed(ids, weight, w, E, scale)
        return lambda: torch.autograd.grad(out, (w, E), grad, retain_graph=True)
    if mode == "forward_backward":
        return lambda: torch.autograd.grad(embed(ids, weight, w, E, scale), (w, E), grad)
    raise ValueError(f"unknown mode {mode!r}")


def _synced(fn: Callable, device: torch.device) -> Callable:
    def run():
        result = fn()
        _sync(device)
        return result

    return run


def _rounds_for(fn: Callable, budget_s: float = 1.0) -> int:
    """Enough rounds for a steady median within about ``budget_s``, between 5 and 60."""
    if SMOKE:
        return 2
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(5, min(60, int(budget_s / max(once, 1e-6))))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.id)
def test_op(
    benchmark, case: Case, provider: str, mode: str, threads: int, bench_device: torch.device, copy_bandwidth_gbs
) -> None:
    embed = provider_fn(provider, bench_device)
    fn = _synced(mode_fn(embed, mode, make_inputs(case, bench_device)), bench_device)
    benchmark.group = f"{mode} {case.id} {threads} thread(s)"
    for _ in range(3):  # warm-up outside the timer too, so _rounds_for does not time a compilation
        fn()
    benchmark.pedantic(fn, rounds=_rounds_for(fn), warmup_rounds=2, iterations=1)
    if benchmark.disabled:  # smoke mode (--benchmark-disable): fn ran once as a test; there are no statistics
        return
    median = benchmark.stats.stats.median
    moved = floor_bytes(case, mode)
    benchmark.extra_info.update(
        provider=provider,
        mode=mode,
        B=case.B,
        L=case.L,
        d=case.d,
        n=N_PROMPT,
        m=M_SAMPLED,
        dtype=DTYPE_NAMES[case.dtype],
        device=bench_device.type,
        threads=threads,
        floor_MB=round(moved / 1e6, 3),
        GBps_at_floor=round(moved / median / 1e9, 3),
        pct_of_copy_bw=round(100 * moved / median / 1e9 / copy_bandwidth_gbs, 1),
    )


# The load average as the session found it (read at collection, before any benchmark ran) and this process's own
# share of it. Only these tests record their busy time: run them alone (-k speed_targets) for headline figures,
# or the other benchmarks' load counts against them and they are refused as noisy (never the other way round).
_START_LOAD = op_speed.load1()
_OWN_LOAD = op_speed.OwnLoad()


@pytest.mark.parametrize("dtype_name", list(op_speed.DTYPES))
def test_speed_targets(benchmark, dtype_name: str, threads: int, bench_device: torch.device) -> None:
    """The headline ratios of bench/op_speed.py at the acceptance shape: in extra_info and on stdout."""
    if bench_device.type != "cpu":
        pytest.skip("op_speed times CPU tensors (its fused provider is the public op's CPU default)")
    rounds = int(os.environ.get("SUPERPOS_BENCH_ROUNDS", "3" if SMOKE else "400"))
    start_load = _START_LOAD
    benchmark.group = f"op speed targets, {threads} thread(s) (interleaved; row time = whole measurement)"
    result = benchmark.pedantic(
        op_speed.measure, args=(dtype_name, threads, rounds, _OWN_LOAD, start_load), rounds=1, iterations=1
    )
    benchmark.extra_info[to_markdown.OP_SPEED_KEY] = result
    assert result["backend"] in ("cpp", "reference")
    assert all(math.isfinite(t) and t > 0 for t in result["median_ms"].values())
    print("\n" + op_speed.render([result], start_load))
