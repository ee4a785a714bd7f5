"""Shared set-up of the benchmarks in bench/: machine facts for the JSON report and a copy-bandwidth yardstick.

Benchmarks are never part of the test command (README); run them with ``python -m pytest bench/``.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

# Smoke mode (CI: SUPERPOS_BENCH_SMOKE=1 with --benchmark-disable): every benchmark runs once, on tiny sizes, as a
# test of the benchmark code. The end-to-end sizes are e2e.py's own SUPERPOS_E2E_* overrides (set only where the
# caller did not); its model is a random t5-small-shaped network and its tokenizer is trained here, so nothing is
# downloaded and nothing needs skipping.
SMOKE_E2E = {
    "BATCH_SIZE": "2",
    "SEQ_LEN": "8",
    "EVAL_BATCH_SIZE": "2",
    "EPOCH_EVAL_BATCH_SIZE": "4",
    "NUM_SAMPLED_TOKENS": "8",
    "MAX_NEW_TOKENS": "2",
    "WARMUP": "1",
    "ROUNDS": "1",
    "EVAL_ROUNDS": "1",
    "EPOCH_EXAMPLES": "4",
    "EPOCH_EVAL_EXAMPLES": "4",
    "EPOCH_ROUNDS": "1",
    "MAX_LENGTH": "24",
    "METHODS": "superpos,prompt",
}
if os.environ.get("SUPERPOS_BENCH_SMOKE") == "1":
    for _name, _value in SMOKE_E2E.items():
        os.environ.setdefault("SUPERPOS_E2E_" + _name, _value)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@pytest.fixture(scope="session")
def bench_device() -> torch.device:
    """The GPU where there is one (Triton and the CUDA extension race there), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def copy_bandwidth_gbs(bench_device: torch.device) -> float:
    """Achievable memory bandwidth in GB/s (bytes read + written by a 64 MiB tensor copy, fastest of 7).

    The op is a memory-bound gather/copy, so "GB/s moved at the floor" divided by this says how close a provider
    comes to what this machine can move at all, on CPU and GPU alike.
    """
    src = torch.empty(16 * 2**20, dtype=torch.float32, device=bench_device).uniform_()
    dst = torch.empty_like(src)
    times = []
    for _ in range(9):
        _sync(bench_device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(bench_device)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / min(times[2:]) / 1e9


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    """Versions and threads in the JSON report, so a figure can always be traced to its setting."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_num_threads"] = torch.get_num_threads()
    machine_info["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    machine_info["omp_num_threads_env"] = os.environ.get("OMP_NUM_THREADS")
    try:
        import triton

        machine_info["triton"] = triton.__version__
    except ImportError:
        machine_info["triton"] = None
    from superpos_kernels import cpp_ops

    machine_info["superpos_cpp_extension"] = cpp_ops.LOAD_INFO
    machine_info["superpos_cpp_openmp_threads"] = cpp_ops.openmp_threads() if cpp_ops.LOADED else None
