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
