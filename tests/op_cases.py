"""The one parametrisation of the fused op shared by every backend's tests (and mirrored by bench/).

Shapes are small because the Triton kernels run in Triton's CPU interpreter in CI (~2 ms per program instance),
but each one exercises an edge: d not a multiple of any block, one column block vs several, n = 1, m = 1, L = 1,
B = 1, more rows than one interpreted program covers, and a T5-sized table with ids at both ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from superpos_kernels import ops


@dataclass(frozen=True)
class Case:
    B: int
    L: int
    V: int
    d: int
    n: int
    m: int

    @property
    def id(self) -> str:
        return f"B{self.B}-L{self.L}-V{self.V}-d{self.d}-n{self.n}-m{self.m}"


CASES = [
    Case(B=1, L=1, V=7, d=1, n=1, m=1),
    Case(B=2, L=3, V=50, d=37, n=3, m=3),
    Case(B=3, L=7, V=1000, d=300, n=2, m=5),  # two column blocks, the second ragged
    Case(B=1, L=5, V=32128, d=64, n=10, m=128),  # the paper's n, m; T5's table size
    Case(B=4, L=1, V=20, d=33, n=1, m=17),
    Case(B=2, L=70, V=40, d=8, n=2, m=2),  # 144 output rows: several row programs
]

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# Relative to the largest magnitude of the fp64 reference: the error budget is the storage rounding of the result
# (fp32/fp64 accumulate exactly enough that only summation order differs).
REL_TOL = {torch.float32: 2e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def assert_close_to_reference(actual: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype) -> None:
    assert actual.dtype == dtype, f"result dtype {actual.dtype}, expected {dtype}"
    assert not torch.isnan(actual).any(), "NaN in the result: an output element was never written"
    scale = max(reference.abs().max().item(), 1.0)
    torch.testing.assert_close(actual.double(), reference, rtol=0.0, atol=REL_TOL[dtype] * scale)


def make_inputs(case: Case, dtype: torch.dtype, seed: int, ids_dtype: torch.dtype = torch.long):
    """Fresh random ``(input_ids, weight, w, E)``; ids include both ends of the table."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, case.V, (case.B, case.L), generator=g)
    ids.view(-1)[0] = 0
    ids.view(-1)[-1] = case.V - 1
    weight = torch.randn(case.V, case.d, generator=g, dtype=torch.float64).to(dtype)
    w = (torch.randn(case.n, case.m, generator=g, dtype=torch.float64) / case.m**0.5).to(dtype)
    E = torch.randn(case.n, case.m, case.d, generator=g, dtype=torch.float64).to(dtype)
    return ids.to(ids_dtype), weight, w.requires_grad_(), E.requires_grad_()


def backend_params() -> list:
    """Every backend; one unavailable here is skipped with its reason (CI asserts none is, see test_op_backends)."""
    import pytest

    params = []
    for name in ops.BACKENDS:
        ok, reason = ops.backend_status(name, "cpu")
        marks = [] if ok else [pytest.mark.skip(reason=f"{name} backend unavailable: {reason}")]
        params.append(pytest.param(name, marks=marks, id=name))
    return params
