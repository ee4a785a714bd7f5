"""What is specific to the C++ backend (csrc/, superpos_kernels/cpp_ops.py).

Forward/backward correctness for every dtype, odd shapes, poisoned outputs, strided dOut, opcheck and
torch.compile live in the shared suite (tests/test_op_backends.py), which runs over every backend, this one
included. Here: the parallel loops really run on several threads and give identical results on 1 and 2 threads,
fp64 gradcheck, the backward reads nothing but the prompt slice, the direct-call checks, the JIT-build and
no-extension fallbacks (each in a fresh interpreter, since a process can load the "superpos" library only once),
and that the CUDA kernels compile with nvcc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from superpos_kernels import cpp_ops
from superpos_kernels.reference import superpos_backward_reference, superpos_embed_reference

from .op_cases import Case, assert_close_to_reference, make_inputs

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")

pytestmark = pytest.mark.skipif(not cpp_ops.LOADED, reason=f"C++ extension unavailable: {cpp_ops.LOAD_INFO}")


def _inputs(
    dtype: torch.dtype, B: int = 3, L: int = 37, d: int = 67, n: int = 5, m: int = 9, V: int = 41, seed: int = 0
):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, L), generator=g)
    weight = torch.randn(V, d, generator=g).to(dtype)
    w = (torch.randn(n, m, generator=g) / m**0.5).to(dtype).requires_grad_()
    E = torch.randn(n, m, d, generator=g).to(dtype).requires_grad_()
    return ids, weight, w, E


@pytest.fixture
def num_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_parallel_for_really_uses_the_threads_torch_has(num_threads: None) -> None:
    # Without -fopenmp at compile and link time at::parallel_for runs inline on one thread whatever torch says.
    if torch.get_num_threads() < 2:
        pytest.skip("torch runs on one thread here (set OMP_NUM_THREADS>=2 to check the OpenMP build)")
    assert cpp_ops.openmp_threads(64) == torch.get_num_threads()
    torch.set_num_threads(1)
    assert cpp_ops.openmp_threads(64) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_results_identical_on_one_and_two_threads(dtype: torch.dtype, num_threads: None) -> None:
    # Odd d (several column blocks plus a tail) and enough rows that both loops split into chunks on 2 threads
    # (the shared suite's shapes are below the grain, so this is where the chunked paths meet the reference).
    case = Case(B=5, L=61, V=41, d=515, n=7, m=33)
    ids, weight, w, E = make_inputs(case, dtype, seed=3)
    grad = torch.randn(case.B, case.n + case.L, case.d, generator=torch.Generator().manual_seed(4)).to(dtype)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out = cpp_ops.superpos_embed(ids, weight, w, E, 1.7)
        dw, dE = torch.autograd.grad(out, (w, E), grad)
        results.append((out, dw, dE))
    for one, two in zip(*results, strict=True):
        assert torch.equal(one, two)
    out, dw, dE = results[1]
    assert_close_to_reference(out, superpos_embed_reference(ids, weight.double(), w.double(), E.double(), 1.7), dtype)
    ref_dw, ref_dE = superpos_backward_reference(grad.double(), w.double(), E.double())
    assert_close_to_reference(dw, ref_dw, dtype)
    assert_close_to_reference(dE, ref_dE, dtype)


def test_gradcheck_fp64() -> None:
    ids, weight, w, E = _inputs(torch.float64, B=2, L=4, d=6, n=3, m=4, V=9)
    ids32 = ids.to(torch.int32)
    assert torch.autograd.gradcheck(lambda w, E: cpp_ops.superpos_embed(ids32, weight, w, E, 1.5), (w, E))


def test_backward_reads_only_the_prompt_slice_in_place() -> None:
    # NaN in the token part of dOut must not reach the gradients; a transposed (k-strided) view must not be copied
    # wrongly. Compared with the closed form on the same slice.
    ids, _, w, E = _inputs(torch.float32)
    n, d = w.shape[0], E.shape[2]
    grad = torch.randn(d, ids.shape[1] + n, ids.shape[0]).permute(2, 1, 0)  # [B, n + L, d], stride(2) != 1
    grad[:, n:] = float("nan")
    dw, dE = torch.ops.superpos.embed_backward(grad, w.detach(), E.detach())
    ref_dw, ref_dE = superpos_backward_reference(grad[:, :n].contiguous(), w.detach(), E.detach())
    torch.testing.assert_close(dw, ref_dw)
    torch.testing.assert_close(dE, ref_dE)


def test_opcheck_backward_op_with_expanded_grad() -> None:
    ids, _, w, E = _inputs(torch.float32)
    grad = torch.randn(1, w.shape[0] + ids.shape[1], E.shape[2]).expand(ids.shape[0], -1, -1)
    torch.library.opcheck(torch.ops.superpos.embed_backward.default, (grad, w.detach(), E.detach()))


def test_direct_op_call_rejects_out_of_range_ids_and_mixed_dtypes() -> None:
    # ops.py validates first; these are the C++ checks for callers of torch.ops.superpos.* themselves.
    ids, weight, w, E = _inputs(torch.float32)
    bad = ids.clone()
    bad[1, 2] = weight.shape[0]
    # The kernel checks each id inside its gather loop (no Python pass over the ids): a ValueError naming it.
    with pytest.raises(
        ValueError, match=r"holds id 41, out of range for an embedding table of 41 rows, at input_ids\[1, 2\]"
    ):
        torch.ops.superpos.embed_forward(bad, weight, w, E, 1.0)
    bad[1, 2] = -5
    with pytest.raises(ValueError, match=r"holds a negative id \(-5\) at input_ids\[1, 2\]"):
        torch.ops.superpos.embed_forward(bad, weight, w, E, 1.0)
    with pytest.raises(RuntimeError, match="must share one dtype"):
        torch.ops.superpos.embed_forward(ids, weight.double(), w, E, 1.0)
    with pytest.raises(RuntimeError, match=r"grad_out must be \[batch, n \+ seq_len, dim\]"):
        torch.ops.superpos.embed_backward(torch.zeros(2, 3, 4), w, E)


def test_is_available_per_device() -> None:
    assert cpp_ops.is_available(CPU) == (True, "")
    ok, reason = cpp_ops.is_available(torch.device("cuda"))
    assert ok == cpp_ops.has_cuda_kernels()
    assert ok or "without CUDA kernels" in reason
    assert cpp_ops.is_available(torch.device("meta"))[0] is False


def test_load_reason_names_both_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_prebuilt(name: str):
        raise ImportError(f"No module named {name!r}")

    def no_compiler() -> str:
        raise RuntimeError("Error building extension 'superpos_kernels_jit'\nc++: not found")

    monkeypatch.setattr(cpp_ops.importlib, "import_module", no_prebuilt)
    monkeypatch.setattr(cpp_ops, "_jit_build", no_compiler)
    monkeypatch.delenv(cpp_ops.NO_JIT_ENV, raising=False)
    loaded, reason = cpp_ops._load_library()
    assert not loaded
    assert "superpos_kernels._C could not be loaded" in reason
    assert "JIT build failed too (RuntimeError: Error building extension" in reason
    monkeypatch.setenv(cpp_ops.NO_JIT_ENV, "1")
    assert "disabled by SUPERPOS_NO_JIT=1" in cpp_ops._load_library()[1]


# A fresh interpreter in which `import superpos_kernels._C` fails (None in sys.modules makes import raise).
_BLOCK_PREBUILT = "import sys; sys.modules['superpos_kernels._C'] = None\n"


def _run_python(code: str, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    full_env.pop("SUPERPOS_BACKEND", None)
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_PREBUILT + textwrap.dedent(code)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_without_any_extension_the_dispatcher_warns_once_and_runs_the_reference() -> None:
    code = """
        import warnings, torch
        import superpos_kernels as sk
        from superpos_kernels import cpp_ops, ops
        assert not cpp_ops.LOADED and "SUPERPOS_NO_JIT=1" in cpp_ops.LOAD_INFO, cpp_ops.LOAD_INFO
        ok, reason = ops.backend_status("cpp", "cpu")
        assert not ok and "superpos_kernels._C could not be loaded" in reason, reason
        ids = torch.randint(0, 11, (2, 5)); weight = torch.randn(11, 4)
        w = torch.randn(3, 2, requires_grad=True); E = torch.randn(3, 2, 4, requires_grad=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                out, mask = sk.superpos_embed(ids, weight, w, E)
        assert sk.last_backend() == "reference", sk.last_backend()
        assert torch.equal(out, sk.superpos_embed_reference(ids, weight, w, E))
        messages = [str(c.message) for c in caught if issubclass(c.category, RuntimeWarning)]
        assert len(messages) == 1 and "cpp backend is unavailable" in messages[0], messages
        print("OK")
    """
    result = _run_python(code, {"SUPERPOS_NO_JIT": "1"}, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


@pytest.mark.skipif(
    shutil.which("ninja") is None and shutil.which(os.environ.get("CXX", "c++")) is None,
    reason="the JIT build needs ninja and a C++ compiler",
)
def test_jit_build_when_the_prebuilt_extension_is_missing(tmp_path: Path) -> None:
    code = """
        import torch
        from superpos_kernels import cpp_ops
        from superpos_kernels.reference import superpos_embed_reference
        assert cpp_ops.LOADED and cpp_ops.LOAD_INFO.startswith("JIT build"), cpp_ops.LOAD_INFO
        # The JIT flags carry -fopenmp too: the freshly built loops must use every thread torch has.
        assert cpp_ops.openmp_threads(64) == torch.get_num_threads(), cpp_ops.openmp_threads(64)
        ids = torch.randint(0, 11, (2, 5)); weight = torch.randn(11, 4)
        w = torch.randn(3, 2); E = torch.randn(3, 2, 4)
        torch.testing.assert_close(cpp_ops.superpos_embed(ids, weight, w, E, 2.0),
                                   superpos_embed_reference(ids, weight, w, E, 2.0))
        print("OK")
    """
    result = _run_python(code, {"TORCH_EXTENSIONS_DIR": str(tmp_path), "SUPERPOS_NO_JIT": "0"}, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), (result.stdout + result.stderr)[-3000:]


def _torch_cuda_headers() -> bool:
    from torch.utils.cpp_extension import include_paths

    return any((Path(p) / "c10" / "cuda" / "CUDAStream.h").exists() for p in include_paths())


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.skipif(not _torch_cuda_headers(), reason="this torch ships no c10/cuda headers")
def test_cuda_kernels_compile_with_nvcc(tmp_path: Path) -> None:
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS, include_paths

    obj = tmp_path / "superpos_cuda.o"
    cmd = [
        "nvcc", "-c", str(ROOT / "csrc" / "superpos_cuda.cu"), "-o", str(obj), "-std=c++20", "-Xcompiler", "-fPIC",
        *COMMON_NVCC_FLAGS, *(f"-I{p}" for p in include_paths()),
        # A CPU wheel of torch lacks the CMake-generated c10/cuda/impl/cuda_cmake_macros.h; a CUDA build has it.
        "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    symbols = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True, check=True).stdout
    for kernel in ("superpose_kernel", "gather_concat_kernel", "prompt_grad_sum_kernel", "prompt_param_grad_kernel"):
        assert kernel in symbols, f"{kernel} missing from the compiled object"
