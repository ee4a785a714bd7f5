"""Test-wide setup. Runs before any test module imports triton.

Without a GPU the Triton kernels run in Triton's CPU interpreter, which must be switched on before triton is
imported (the kernels read it when they are defined).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A user's SUPERPOS_BACKEND must not leak into tests that check the automatic choice.
os.environ.pop("SUPERPOS_BACKEND", None)

# The tiny models and data of tests/model_fixtures.py, as session fixtures every test module sees without importing
# them (imported after the environment above is set).
from .model_fixtures import tiny_data, tiny_gemma3, tiny_llama, tiny_t5  # noqa: F401
