"""What the fused op guarantees beyond its values, on every backend: ids outside the table are an error on every
path (eager and compiled), double backward works, and the layer runs under CPU bf16 autocast.

Triton runs in its CPU interpreter here (tests/conftest.py sets TRITON_INTERPRET=1), which executes the very
kernel code a GPU would compile, masks included: an id past the table read garbage there before it was checked.
"""

from __future__ import annotations

import pytest
import torch

from superpos_kernels import SuperPosPrompt, last_backend, superpos_embed

from .op_cases import CASES, Case, backend_params, make_inputs

BACKEND = backend_params()
V = CASES[1].V  # 50 rows
# Eager paths and the fused kernels (compiled or not) name the id; the reference traced by torch.compile can only
# assert inside the graph (torch._assert_async), whose message names the table's range.
OUT_OF_RANGE = rf"input_ids holds (id \d+, out of range for an embedding table of {V} rows|an id outside \[0, {V}\))"
NEGATIVE = rf"input_ids holds (a negative id \(-\d+\)|an id outside \[0, {V}\))"


class _Embedder(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, w: torch.Tensor, E: torch.Tensor, backend: str) -> None:
        super().__init__()
        self.weight, self.backend = weight, backend
        self.w, self.E = torch.nn.Parameter(w.detach().clone()), torch.nn.Parameter(E.detach().clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return superpos_embed(ids, self.weight, self.w, self.E, backend=self.backend)[0]


def _bad(ids: torch.Tensor, value: int) -> torch.Tensor:
    bad = ids.clone()
    bad[1, 2] = value
    return bad


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("compiler", ["eager", "aot_eager", "inductor"])
def test_an_id_past_the_table_is_an_error_on_every_path(backend, compiler):
    """Not garbage, not a crash: the same call that works with good ids raises once one id is out of range."""
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 21)
    module = _Embedder(weight, w, E, backend)
    if compiler != "eager":
        torch._dynamo.reset()
        module = torch.compile(module, fullgraph=True, backend=compiler)
    good = module(ids)
    assert last_backend() == backend
    torch.testing.assert_close(good, _Embedder(weight, w, E, "reference")(ids))
    for value, match in ((V, OUT_OF_RANGE), (V + 10_000, OUT_OF_RANGE), (-1, NEGATIVE)):
        with pytest.raises((ValueError, RuntimeError), match=match):
            module(_bad(ids, value))


@pytest.mark.parametrize("backend", [p for p in BACKEND if p.values[0] != "reference"])
def test_fused_kernels_name_the_bad_id_and_its_position(backend):
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 22)
    torch._dynamo.reset()
    compiled = torch.compile(_Embedder(weight, w, E, backend), fullgraph=True, backend="aot_eager")
    with pytest.raises(ValueError, match=rf"holds id {V + 3}, out of range .* at input_ids\[1, 2\]"):
        compiled(_bad(ids, V + 3))


def test_triton_kernel_reads_no_row_past_the_table():
    """Called below every Python check, the Triton launcher still refuses (the kernel masks the id range)."""
    from superpos_kernels import triton_ops

    if not triton_ops.is_available(torch.device("cpu"))[0]:
        pytest.skip("triton interpreter unavailable")
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 23)
    # A table that is a view into a bigger buffer: rows past its end exist in memory and hold a loud value.
    storage = torch.full((V + 8, weight.shape[1]), 7.4e22)
    storage[:V] = weight
    with pytest.raises(ValueError, match=rf"holds id {V + 1}, out of range"):
        triton_ops._forward(_bad(ids, V + 1), storage[:V], w.detach(), E.detach(), 1.0)


def _hvp(backend: str, ids, weight, w, E, v_w, v_E):
    """Hessian-vector product of a non-linear loss of the op's output: needs the op's double backward."""
    w, E = w.detach().clone().requires_grad_(), E.detach().clone().requires_grad_()
    out = superpos_embed(ids, weight, w, E, backend=backend)[0]
    loss = (out.square() * torch.linspace(0.5, 1.5, out.shape[-1], dtype=out.dtype)).sum()
    gw, gE = torch.autograd.grad(loss, (w, E), create_graph=True)
    return torch.autograd.grad((gw * v_w).sum() + (gE * v_E).sum(), (w, E))


@pytest.mark.parametrize("backend", BACKEND)
def test_double_backward_matches_the_reference(backend):
    case = Case(B=2, L=3, V=11, d=6, n=2, m=3)
    ids, weight, w, E = make_inputs(case, torch.float64, 24)
    torch.autograd.gradgradcheck(
        lambda w_, E_: superpos_embed(ids, weight, w_, E_, backend=backend)[0], (w, E), fast_mode=False
    )
    g = torch.Generator().manual_seed(25)
    v_w = torch.randn(w.shape, generator=g, dtype=torch.float64)
    v_E = torch.randn(E.shape, generator=g, dtype=torch.float64)
    got = _hvp(backend, ids, weight, w, E, v_w, v_E)
    expected = _hvp("reference", ids, weight, w, E, v_w, v_E)
    assert all(t.abs().max() > 0 for t in expected)  # a zero Hessian would make the comparison vacuous
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKEND)
def test_layer_under_cpu_bf16_autocast(backend, monkeypatch):
    """fp32 parameters, bf16 autocast around the layer and a model layer after it (how the trainer runs)."""
    monkeypatch.setenv("SUPERPOS_BACKEND", backend)
    emb = torch.nn.Embedding(40, 16)
    layer = SuperPosPrompt(emb, num_prompt_tokens=3, num_sampled_tokens=5, seed=2)
    head = torch.nn.Linear(16, 4)
    ids = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(26))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeds, mask = layer(ids)
        logits = head(embeds)
    assert last_backend() == backend
    # The gather and the superposition are not matmuls: like nn.Embedding under autocast they stay in the table's
    # dtype, and the first matmul of the model casts to bf16.
    assert embeds.dtype == emb(ids).dtype == torch.float32 and logits.dtype == torch.bfloat16
    assert mask.shape == (2, 8)
    logits.float().square().sum().backward()
    assert layer.w.grad.dtype == torch.float32 and layer.E.grad.dtype == torch.float32
    assert torch.isfinite(layer.w.grad).all() and layer.w.grad.abs().max() > 0
    monkeypatch.setenv("SUPERPOS_BACKEND", "reference")
    expected, _ = layer(ids)
    torch.testing.assert_close(embeds, expected)
