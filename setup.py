"""Builds the optional C++ (and, where nvcc and a CUDA build of torch exist, CUDA) extension ``superpos_kernels._C``.

Everything else about the package lives in pyproject.toml. Build with ``--no-build-isolation`` so the extension
compiles against the torch that is already installed (a CPU wheel here, the user's CUDA build elsewhere).
If the extension cannot be built, the package still installs (with a warning) and
:mod:`superpos_kernels.cpp_ops` tries a JIT build at first use, then the dispatcher falls back to Triton or the
PyTorch reference and says so once. ``SUPERPOS_REQUIRE_EXTENSION=1`` turns a failed build into an error;
``SUPERPOS_NO_EXTENSION=1`` skips it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
# -O3 for the kernels; -fopenmp on the compile AND the link line: at::parallel_for is inline in the ATen headers and
# silently runs on one thread without it. torch adds -std=c++20 itself. Shared with the JIT fallback (cpp_ops.py).
CXX_FLAGS = ["-O3", "-fopenmp"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3"]


def _build_ext_class(base: type) -> type:
    class OptionalBuildExt(base):
        """Builds the extension, but lets the install go on without it unless SUPERPOS_REQUIRE_EXTENSION=1."""

        def run(self) -> None:
            # run(), not build_extension(): torch checks the compiler in build_extensions() before any of them.
            try:
                super().run()
            except Exception as exc:
                if os.environ.get("SUPERPOS_REQUIRE_EXTENSION") == "1":
                    raise
                print(
                    f"WARNING: superpos_kernels: building the C++ extension failed ({type(exc).__name__}: {exc}); "
                    "installing without it (a JIT build is tried at first use, else the PyTorch reference runs)",
                    file=sys.stderr,
                )

    return OptionalBuildExt


def _extensions() -> tuple[list, dict]:
    if os.environ.get("SUPERPOS_NO_EXTENSION") == "1":
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:  # torch missing at build time: pure-Python install, reference/Triton paths only
        return [], {}

    sources = [str(p.relative_to(HERE)) for p in sorted((HERE / "csrc").glob("*.cpp"))]
    if not sources:
        return [], {}
    depends = [str(p.relative_to(HERE)) for p in sorted((HERE / "csrc").glob("*.h"))]
    cuda_sources = [str(p.relative_to(HERE)) for p in sorted((HERE / "csrc").glob("*.cu"))]
    use_cuda = (
        bool(cuda_sources)
        and CUDA_HOME is not None
        and torch.version.cuda is not None
        and (torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1")
    )
    if use_cuda:
        ext = CUDAExtension(
            "superpos_kernels._C",
            sources + cuda_sources,
            depends=depends,
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
            extra_link_args=LINK_FLAGS,
        )
    else:
        ext = CppExtension(
            "superpos_kernels._C",
            sources,
            depends=depends,
            extra_compile_args={"cxx": CXX_FLAGS},
            extra_link_args=LINK_FLAGS,
        )
    build_ext = _build_ext_class(BuildExtension.with_options(no_python_abi_suffix=True))
    return [ext], {"build_ext": build_ext}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
