"""Builds the optional C++ (and, where nvcc and a GPU toolchain exist, CUDA) extension ``superpos_kernels._C``.

Everything else about the package lives in pyproject.toml. Build with ``--no-build-isolation`` so the extension
compiles against the torch that is already installed (a CPU wheel here, the user's CUDA build elsewhere).
If the extension cannot be built, the package still installs and the dispatcher falls back to Triton or the
PyTorch reference (see superpos_kernels/ops.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def _extensions() -> tuple[list, dict]:
    if os.environ.get("SUPERPOS_NO_EXTENSION") == "1":
        return [], {}
    try:
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:  # torch missing at build time: pure-Python install, reference/Triton paths only
        return [], {}
    import torch

    sources = [str(p.relative_to(HERE)) for p in sorted((HERE / "csrc").glob("*.cpp"))]
    if not sources:
        return [], {}
    cxx = ["-O3", "-fopenmp", "-std=c++17"]
    # -fopenmp on the link line too: without it at::parallel_for silently runs on one thread.
    link = ["-fopenmp"]
    cuda_sources = [str(p.relative_to(HERE)) for p in sorted((HERE / "csrc").glob("*.cu"))]
    use_cuda = (
        cuda_sources
        and CUDA_HOME is not None
        and torch.version.cuda is not None
        and (torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1")
    )
    if use_cuda:
        ext = CUDAExtension(
            "superpos_kernels._C",
            sources + cuda_sources,
            extra_compile_args={"cxx": [*cxx, "-DWITH_CUDA"], "nvcc": ["-O3", "-DWITH_CUDA"]},
            extra_link_args=link,
        )
    else:
        ext = CppExtension("superpos_kernels._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
