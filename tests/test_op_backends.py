"""The shared correctness suite of the fused op, run over every backend (reference, C++, Triton-interpreted).

Forward and both gradients against the fp64 reference for every dtype and odd shape, with uninitialised memory
poisoned (NaN) so a row a kernel forgot to write shows up; strided and expanded dOut; opcheck; torch.compile
(fullgraph) against eager; the padded-batch mask; and the same error messages on every path.
"""

from __future__ import annotations

import os
import zlib

import pytest
import torch

from superpos_kernels import SuperPosPrompt, last_backend, ops, superpos_embed
from superpos_kernels.reference import superpos_backward_reference, superpos_embed_reference

from .op_cases import CASES, DTYPES, assert_close_to_reference, backend_params, make_inputs

BACKEND = backend_params()


def _seed(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


@pytest.fixture
def poisoned():
    """torch.empty / at::empty return NaN-filled memory: an output element left unwritten becomes NaN."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert torch.isnan(torch.empty(4)).all(), "poisoning is not active"
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI only: CI must run every backend, none skipped")
def test_ci_runs_every_backend():
    assert ops.available_backends("cpu") == ["triton", "cpp", "reference"], {
        name: ops.backend_status(name, "cpu") for name in ops.BACKENDS
    }


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_gradients_match_reference(backend, dtype, case, poisoned):
    seed = _seed(backend, dtype, case)
    ids, weight, w, E = make_inputs(case, dtype, seed)
    scale = 1.0 if seed % 2 else 2**0.5  # not an fp32 number: an fp32-rounded scale fails fp64
    out, mask = superpos_embed(ids, weight, w, E, embed_scale=scale, backend=backend)
    assert last_backend() == backend
    assert out.shape == (case.B, case.n + case.L, case.d) and mask.shape == (case.B, case.n + case.L)
    w64, E64 = w.detach().double(), E.detach().double()
    ref = superpos_embed_reference(ids, weight.double(), w64, E64, scale)
    assert_close_to_reference(out, ref, dtype)

    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    dw, dE = torch.autograd.grad(out, (w, E), grad.to(dtype))
    ref_dw, ref_dE = superpos_backward_reference(grad.to(dtype).double(), w64, E64)
    assert_close_to_reference(dw, ref_dw, dtype)
    assert_close_to_reference(dE, ref_dE, dtype)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("layout", ["expanded", "transposed", "sliced"])
def test_strided_grad_out(backend, layout, poisoned):
    case = CASES[2]
    ids, weight, w, E = make_inputs(case, torch.float32, _seed(backend, layout))
    out, _ = superpos_embed(ids, weight, w, E, backend=backend)
    shape = out.shape
    if layout == "expanded":  # what y.sum().backward() hands the op: stride 0 everywhere
        grad = torch.randn(1, 1, 1).expand(shape)
    elif layout == "transposed":
        grad = torch.randn(shape[0], shape[2], shape[1]).transpose(1, 2)
    else:
        grad = torch.randn(shape[0], shape[1] * 2, shape[2])[:, ::2]
    assert not grad.is_contiguous()
    dw, dE = torch.autograd.grad(out, (w, E), grad)
    ref_dw, ref_dE = superpos_backward_reference(grad.double(), w.detach().double(), E.detach().double())
    assert_close_to_reference(dw, ref_dw, torch.float32)
    assert_close_to_reference(dE, ref_dE, torch.float32)


@pytest.mark.parametrize("backend", BACKEND)
def test_strided_table_and_parameters(backend, poisoned):
    """A tied or transposed table, and non-contiguous w / E, give the same result as contiguous ones."""
    case = CASES[2]
    ids, weight, w, E = make_inputs(case, torch.float32, _seed(backend, "strided"))
    table = weight.t().contiguous().t()  # [V, d] with strides (1, V)
    w_nc = w.detach().t().contiguous().t().requires_grad_()
    E_nc = E.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    assert not (table.is_contiguous() or w_nc.is_contiguous() or E_nc.is_contiguous())
    out, _ = superpos_embed(ids, table, w_nc, E_nc, embed_scale=0.5, backend=backend)
    ref = superpos_embed_reference(ids, weight.double(), w.detach().double(), E.detach().double(), 0.5)
    assert_close_to_reference(out, ref, torch.float32)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    dw, dE = torch.autograd.grad(out, (w_nc, E_nc), grad)
    ref_dw, ref_dE = superpos_backward_reference(grad.double(), w.detach().double(), E.detach().double())
    assert_close_to_reference(dw, ref_dw, torch.float32)
    assert_close_to_reference(dE, ref_dE, torch.float32)


@pytest.mark.parametrize("backend", BACKEND)
def test_sum_backward_and_int32_ids(backend):
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 5, ids_dtype=torch.int32)
    out, _ = superpos_embed(ids, weight, w, E, backend=backend)
    out.sum().backward()
    ref_dw, ref_dE = superpos_backward_reference(torch.ones(out.shape, dtype=torch.float64), w.double(), E.double())
    assert_close_to_reference(w.grad, ref_dw, torch.float32)
    assert_close_to_reference(E.grad, ref_dE, torch.float32)


@pytest.mark.parametrize("backend", BACKEND)
def test_no_gradient_for_the_table(backend):
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 9)
    weight.requires_grad_(True)
    out, _ = superpos_embed(ids, weight, w, E, backend=backend)
    out.sum().backward()
    assert weight.grad is None or not weight.grad.any()


@pytest.mark.parametrize("backend", BACKEND)
def test_padded_batch_mask(backend):
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    _, ext = superpos_embed(ids, weight, w, E, attention_mask=mask, backend=backend)
    n = w.shape[0]
    assert torch.equal(ext, torch.cat([torch.ones(2, n, dtype=mask.dtype), mask], dim=1))
    assert ext.dtype == mask.dtype


def _custom_ops(backend: str):
    """The registered torch.library ops behind a backend (the reference is plain PyTorch: none)."""
    if backend == "triton":
        from superpos_kernels import triton_ops

        return triton_ops.triton_embed_forward, triton_ops.triton_embed_backward
    return torch.ops.superpos.embed_forward.default, torch.ops.superpos.embed_backward.default


@pytest.mark.parametrize("backend", [p for p in BACKEND if p.values[0] != "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_opcheck(backend, dtype):
    fwd, bwd = _custom_ops(backend)
    ids, weight, w, E = make_inputs(CASES[1], dtype, 11)
    torch.library.opcheck(fwd, (ids, weight, w, E, 1.5))
    grad = torch.randn(ids.shape[0], w.shape[0] + ids.shape[1], weight.shape[1]).to(dtype)
    torch.library.opcheck(bwd, (grad, w.detach(), E.detach()))


class _Embedder(torch.nn.Module):
    def __init__(self, weight, w, E, backend):
        super().__init__()
        self.weight, self.backend = weight, backend
        self.w, self.E = torch.nn.Parameter(w.detach().clone()), torch.nn.Parameter(E.detach().clone())

    def forward(self, ids, mask):
        out, ext = superpos_embed(ids, self.weight, self.w, self.E, mask, embed_scale=2.0, backend=self.backend)
        return (out * ext.unsqueeze(-1)).sum(dim=1)


@pytest.mark.parametrize("backend", BACKEND)
def test_torch_compile_fullgraph_matches_eager(backend):
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 13)
    mask = torch.ones_like(ids)
    mask[1, 2:] = 0
    eager = _Embedder(weight, w, E, backend)
    compiled_module = _Embedder(weight, w, E, backend)
    torch._dynamo.reset()
    compiled = torch.compile(compiled_module, fullgraph=True, backend="aot_eager")
    expected, got = eager(ids, mask), compiled(ids, mask)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert last_backend() == backend
    expected.square().sum().backward()
    got.square().sum().backward()
    torch.testing.assert_close(compiled_module.w.grad, eager.w.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled_module.E.grad, eager.E.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda a: a.update(ids=a["ids"].float()), TypeError, r"input_ids must be an integer tensor"),
        (lambda a: a.update(ids=a["ids"][0]), ValueError, r"input_ids must have shape \[batch, seq_len\]"),
        (lambda a: a.update(ids=a["ids"] + 10_000), ValueError, r"input_ids holds id \d+, out of range"),
        (lambda a: a.update(ids=a["ids"] - 100), ValueError, r"input_ids holds a negative id"),
        (lambda a: a.update(w=a["w"][:, :-1]), ValueError, r"E \(3, 3, 37\) and w \(3, 2\) disagree"),
        (lambda a: a.update(E=a["E"].double()), TypeError, r"weight, w and E must share one dtype"),
        (lambda a: a.update(weight=a["weight"][:, :5]), ValueError, r"E has dim 37 but the embedding table has dim 5"),
        (lambda a: a.update(mask=torch.ones(1, 1)), ValueError, r"attention_mask must have the shape of input_ids"),
    ],
    ids=["float-ids", "rank1-ids", "id-too-large", "negative-id", "w-shape", "dtype-mix", "dim-mismatch", "mask"],
)
def test_every_backend_validates_the_same_way(backend, mutate, error, match):
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 17)
    args = {"ids": ids, "weight": weight, "w": w, "E": E, "mask": None}
    mutate(args)
    with pytest.raises(error, match=match):
        superpos_embed(args["ids"], args["weight"], args["w"], args["E"], args["mask"], backend=backend)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize(
    ("ids", "mask"),
    [
        (torch.tensor([[1, 50]]), None),
        (torch.tensor([[1, -1]]), None),
        (torch.tensor([[1.0, 2.0]]), None),
        (torch.tensor([1, 2]), None),
        (torch.zeros(0, 2, dtype=torch.long), None),
        (torch.tensor([[1, 2]]), torch.ones(2, 2)),
        (torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.complex64)),
    ],
    ids=["id-too-large", "negative-id", "float-ids", "rank1", "empty-batch", "mask-shape", "mask-dtype"],
)
def test_fused_path_and_layer_give_the_same_error(backend, ids, mask, monkeypatch):
    """The op forced onto a backend rejects exactly what the layer rejects, with the very same message."""
    layer = SuperPosPrompt(torch.nn.Embedding(50, 8), num_prompt_tokens=2, num_sampled_tokens=4, seed=0)
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    with pytest.raises((TypeError, ValueError)) as from_layer:
        layer(ids, mask)
    with pytest.raises(from_layer.type) as from_op:
        superpos_embed(ids, layer.embedding.weight, layer.w, layer.E, mask, backend=backend)
    assert str(from_op.value) == str(from_layer.value)


def test_forcing_an_unknown_or_unavailable_backend_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"backend must be one of \('triton', 'cpp', 'reference'\), got 'cuda'"):
        ops.select_backend("cpu", "cuda")
    monkeypatch.setattr(ops, "backend_status", lambda name, device="cpu": (name == "reference", "not built"))
    with pytest.raises(RuntimeError, match=r"backend 'cpp' was requested .* unavailable on cpu: not built"):
        ops.select_backend("cpu", "cpp")


def test_env_var_forces_the_backend(monkeypatch):
    ids, weight, w, E = make_inputs(CASES[1], torch.float32, 19)
    monkeypatch.setenv(ops.ENV_VAR, "reference")
    superpos_embed(ids, weight, w, E)
    assert last_backend() == "reference"
