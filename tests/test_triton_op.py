"""What is specific to the Triton backend: property tests over shapes and the availability rules.

The shared suite (tests/test_op_backends.py) covers forward/gradients, dtypes, poisoning, strides, opcheck and
torch.compile for this backend too. Here hypothesis draws shapes the fixed cases miss.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from .op_cases import Case, assert_close_to_reference, make_inputs

from superpos_kernels import last_backend, ops, superpos_embed, triton_ops
from superpos_kernels.reference import superpos_backward_reference, superpos_embed_reference

pytestmark = pytest.mark.skipif(
    not triton_ops.is_available(torch.device("cpu"))[0], reason=f"{triton_ops.is_available(torch.device('cpu'))[1]}"
)

shapes = st.builds(
    Case,
    B=st.integers(1, 4),
    L=st.integers(1, 80),
    V=st.integers(1, 5000),
    d=st.integers(1, 300),
    n=st.integers(1, 12),
    m=st.integers(1, 40),
)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(case=shapes, dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=st.integers(0, 2**31 - 1))
def test_matches_reference_on_random_shapes(case, dtype, seed):
    ids, weight, w, E = make_inputs(case, dtype, seed)
    out, _ = superpos_embed(ids, weight, w, E, backend="triton")
    assert_close_to_reference(out, superpos_embed_reference(ids, weight.double(), w.double(), E.double()), dtype)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    dw, dE = torch.autograd.grad(out, (w, E), grad)
    ref_dw, ref_dE = superpos_backward_reference(grad.double(), w.detach().double(), E.detach().double())
    assert_close_to_reference(dw, ref_dw, dtype)
    assert_close_to_reference(dE, ref_dE, dtype)


def test_backward_is_deterministic():
    ids, weight, w, E = make_inputs(Case(B=4, L=9, V=90, d=70, n=3, m=6), torch.float32, 1)
    grad = torch.randn(4, 12, 70)
    first = torch.autograd.grad(superpos_embed(ids, weight, w, E, backend="triton")[0], (w, E), grad)
    second = torch.autograd.grad(superpos_embed(ids, weight, w, E, backend="triton")[0], (w, E), grad)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_availability_rules(monkeypatch):
    assert triton_ops.is_available(torch.device("cpu")) == (True, "")  # the interpreter is on in tests
    monkeypatch.setattr(triton_ops, "INTERPRET", False)
    ok, reason = triton_ops.is_available(torch.device("cpu"))
    assert not ok and "TRITON_INTERPRET=1" in reason
    assert not triton_ops.is_available(torch.device("meta"))[0]


def test_cpu_default_is_not_the_interpreter():
    """On CPU tensors the automatic choice is the compiled C++ op (or the reference), never the slow interpreter."""
    assert ops.select_backend("cpu") in ("cpp", "reference")
    ids, weight, w, E = make_inputs(Case(B=1, L=2, V=9, d=4, n=1, m=2), torch.float32, 0)
    superpos_embed(ids, weight, w, E)
    assert last_backend() != "triton"
