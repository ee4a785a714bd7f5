"""What is specific to the Triton backend: property tests over shapes and the availability rules.

The shared suite (tests/test_op_backends.py) covers forward/gradients, dtypes, poisoning, strides, opcheck and
torch.compile for this backend too. Here hypothesis draws shapes the fixed cases miss.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from superpos_kernels import SuperPosPrompt, last_backend, ops, superpos_embed, triton_ops
from superpos_kernels.reference import superpos_backward_reference, superpos_embed_reference

from .op_cases import Case, assert_close_to_reference, make_inputs

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


class _OpLog(TorchDispatchMode):
    """Records every operator that reaches the dispatcher: proof of which kernels ran, not just bookkeeping."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def test_triton_kernels_run_forward_and_backward():
    ids, weight, w, E = make_inputs(Case(B=2, L=3, V=30, d=16, n=2, m=4), torch.float32, 2)
    with _OpLog() as log:
        out, _ = superpos_embed(ids, weight, w, E, backend="triton")
        out.sum().backward()
    assert last_backend() == "triton"
    assert "superpos.triton_embed_forward.default" in log.names
    assert "superpos.triton_embed_backward.default" in log.names
    assert not any(name.startswith("superpos.embed_") for name in log.names)  # not the C++ ops


def test_layer_compiled_with_inductor_runs_the_triton_op(monkeypatch):
    """SuperPosPrompt under torch.compile(fullgraph=True, inductor) with the backend forced by the env var."""
    monkeypatch.setenv(ops.ENV_VAR, "triton")
    emb = torch.nn.Embedding(40, 12)
    layer = SuperPosPrompt(emb, num_prompt_tokens=3, num_sampled_tokens=5, seed=1)
    ids = torch.randint(0, 40, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    torch._dynamo.reset()  # the backend choice is baked in at trace time
    compiled = torch.compile(layer, fullgraph=True)
    got, got_mask = compiled(ids, mask)
    assert last_backend() == "triton"
    ops._last_backend = None
    got, got_mask = compiled(ids, mask)  # the second call runs the cached graph: bookkeeping still happens
    assert last_backend() == "triton"
    expected, expected_mask = layer(ids, mask)
    torch.testing.assert_close(got, expected)
    assert torch.equal(got_mask, expected_mask)
    got.square().sum().backward()
    w_grad, E_grad = layer.w.grad.clone(), layer.E.grad.clone()
    layer.zero_grad()
    expected.square().sum().backward()
    torch.testing.assert_close(w_grad, layer.w.grad)
    torch.testing.assert_close(E_grad, layer.E.grad)


@pytest.mark.parametrize("scale", [1.0, 2**0.5, 768**0.5, 1 / 3, 1e-3])
def test_scale_split_into_two_fp32_arguments(scale):
    """Compiled Triton passes a Python float as fp32 (the interpreter keeps it fp64, so the kernel tests cannot
    see the difference): fp64 outputs rely on hi + lo, each an fp32 number, carrying ~48 bits of the scale."""
    hi, lo = triton_ops._split_scale(scale)
    for part in (hi, lo):
        assert float(torch.tensor(part, dtype=torch.float32)) == part
    assert hi == float(torch.tensor(scale, dtype=torch.float32))  # what fp32 outputs use: PyTorch's rounding
    assert abs(hi + lo - scale) <= 2.0**-47 * abs(scale)
