"""The Triton backend of the fused op: kernels, launchers and the ``torch.library`` custom ops, in one file.

Forward, two launches:

1. ``_prompt_kernel`` computes ``P[i] = sum_j w[i, j] E[i, j]`` once, in fp32, into an ``[n, d]`` scratch buffer.
2. ``_concat_kernel`` writes every output row ``(b, t)``: ``P[t]`` for ``t < n``, else ``weight[ids[b, t - n]] *
   scale``.

Why not superpose inside the concat kernel, per batch row? Superposing reads ``n*m*d`` elements of ``E``
(n=10, m=128, d=768, bf16: 1.97 MB). Doing that for each of B=64 batch rows would read 126 MB, 2.4x the whole
output (64 * 522 * 768 * 2 B = 51 MB). Doing it once and copying ``P`` (15 KB, L2-resident) costs 2 MB extra
reads, 4% of the output: the forward stays a single pass over the output at memory speed. The price is a
second launch (a few microseconds) that the copy waits for; one launch whose prompt programs store their row to
all B batch rows would save it, a change to make only with a GPU measurement in hand (none was available).

Backward, two launches, deterministic (no atomics: every sum has one fixed order):

1. ``_prompt_grad_sum_kernel``: ``g[i] = sum_b dOut[b, i, :]`` in fp32, reading only the prompt slice of dOut
   through its strides (so non-contiguous and stride-0 expanded gradients cost no copy).
2. ``_prompt_bwd_kernel``: ``dw[i, j] = <g[i], E[i, j]>`` and ``dE[i, j] = w[i, j] * g[i]``.

Everything accumulates in fp32 whatever the storage dtype (fp64 inputs accumulate in fp64). Values are loaded,
converted with ``.to(tl.float32)`` before any arithmetic and converted back only at the store: this is also what
keeps bf16 correct in Triton's CPU interpreter, where bf16 arithmetic is silently wrong.

Block sizes for H100-class GPUs. The concat kernel is a pure copy (no FLOPs to speak of; 2 x itemsize bytes moved
per element), so the only goal is enough bytes in flight per SM. A tile of ROWS x BLOCK_D = 8 x 256 bf16 elements
is 4 KB read + 4 KB written per program; with 4 warps that is 32 B per thread, two 128-bit accesses. At B=64,
L=512, d=768 that makes about 12.5k programs for 132 SMs, many waves, which hides latency. d=1024 may prefer
BLOCK_D=1024 with 8 warps (the whole row in one tile). The autotuner chooses among these per ``d`` on GPU only:
the interpreter can run a single config (several fail there), and each interpreted program instance costs ~2 ms,
so interpreted launches use big tiles (64 rows) to keep the program count small.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import Tensor

from .registration import register_fused_op
from .validation import id_range_error

try:
    import triton
    import triton.language as tl

    _IMPORT_ERROR = ""
except ImportError as exc:  # the backend is optional: ops.py reports the reason and picks another path
    triton = None
    _IMPORT_ERROR = f"triton is not installed ({exc}); pip install 'superpos-kernels[triton]'"

# Read when the kernels are defined, as Triton itself does: setting it later has no effect.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def is_available(device: torch.device) -> tuple[bool, str]:
    """Triton runs on CUDA tensors, and on CPU tensors only inside Triton's interpreter (tests)."""
    if triton is None:
        return False, _IMPORT_ERROR
    device = torch.device(device)
    if device.type == "cuda":
        return True, ""
    if device.type == "cpu" and INTERPRET:
        return True, ""
    if device.type == "cpu":
        return False, "Triton runs CPU tensors only under TRITON_INTERPRET=1 (set before triton is imported)"
    return False, f"Triton has no {device.type} target here"


if triton is not None:

    @triton.jit
    def _prompt_kernel(w_ptr, E_ptr, P_ptr, m, d, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):
        """One program: prompt row ``i``, columns ``[c0, c0 + BLOCK_D)``; loops over the m superposed rows."""
        i = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        col_ok = cols < d
        acc = tl.zeros((BLOCK_D,), dtype=ACC)
        for j0 in range(0, m, BLOCK_M):
            js = j0 + tl.arange(0, BLOCK_M)
            j_ok = js < m
            wv = tl.load(w_ptr + i * m + js, mask=j_ok, other=0.0).to(ACC)
            ev = tl.load(
                E_ptr + (i * m + js)[:, None] * d + cols[None, :], mask=j_ok[:, None] & col_ok[None, :], other=0.0
            ).to(ACC)
            acc += tl.sum(wv[:, None] * ev, axis=0)
        tl.store(P_ptr + i * d + cols, acc, mask=col_ok)

    @triton.jit
    def _concat_kernel(
        ids_ptr,
        weight_ptr,
        P_ptr,
        out_ptr,
        bad_ptr,
        rows,
        n,
        L,
        d,
        V,
        stride_v,
        stride_c,
        scale,
        scale_lo,
        ACC: tl.constexpr,
        EXACT_SCALE: tl.constexpr,
        ROWS: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        """One program: ROWS consecutive output rows (flattened over b, t) x BLOCK_D columns.

        An id outside ``[0, V)`` is never read: its row is written as zeros and ``bad_ptr[0]`` set to 1, which the
        launcher turns into an error (the tile masks alone would let it read past the table).
        """
        r = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)
        cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        row_ok = r < rows
        col_ok = cols < d
        t = r % (n + L)
        b = r // (n + L)
        is_prompt = t < n
        is_token = row_ok & (t >= n)
        tok = tl.load(ids_ptr + b * L + (t - n), mask=is_token, other=0).to(tl.int64)
        tok_ok = (tok >= 0) & (tok < V)
        tl.store(bad_ptr + tl.zeros_like(r), tl.full((ROWS,), 1, tl.int32), mask=is_token & ~tok_ok)
        is_token = is_token & tok_ok
        tile_ok = row_ok[:, None] & col_ok[None, :]
        pv = tl.load(P_ptr + t[:, None] * d + cols[None, :], mask=tile_ok & is_prompt[:, None], other=0.0)
        x_ptrs = weight_ptr + tok[:, None] * stride_v + cols[None, :].to(tl.int64) * stride_c
        xv = tl.load(x_ptrs, mask=tile_ok & is_token[:, None], other=0.0)
        x = xv.to(ACC)
        if EXACT_SCALE:  # fp64: scale = hi + lo, two fp32 kernel arguments (see _split_scale)
            x = x * scale + x * scale_lo  # x is fp64: both products promote to fp64
        else:
            x = x * scale
        val = tl.where(is_prompt[:, None], pv, x)
        tl.store(out_ptr + r[:, None] * d + cols[None, :], val.to(out_ptr.dtype.element_ty), mask=tile_ok)

    @triton.jit
    def _prompt_grad_sum_kernel(
        g_ptr, G_ptr, B, d, stride_b, stride_t, stride_d, BLOCK_D: tl.constexpr, ACC: tl.constexpr
    ):
        """``G[i] = sum_b dOut[b, i, :]`` in a fixed order over b (deterministic), any strides (0 included)."""
        i = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        col_ok = cols < d
        acc = tl.zeros((BLOCK_D,), dtype=ACC)
        ptr = g_ptr + i * stride_t + cols.to(tl.int64) * stride_d
        for _ in range(0, B):  # advancing the pointer keeps the offset arithmetic 64-bit
            acc += tl.load(ptr, mask=col_ok, other=0.0).to(ACC)
            ptr += stride_b
        tl.store(G_ptr + i * d + cols, acc, mask=col_ok)

    @triton.jit
    def _prompt_bwd_kernel(
        G_ptr, w_ptr, E_ptr, dw_ptr, dE_ptr, m, d, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr
    ):
        """One program: prompt row ``i``, superposed rows ``[j0, j0 + BLOCK_M)``; loops over d."""
        i = tl.program_id(0).to(tl.int64)
        js = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        j_ok = js < m
        wv = tl.load(w_ptr + i * m + js, mask=j_ok, other=0.0).to(ACC)
        acc = tl.zeros((BLOCK_M,), dtype=ACC)
        for c0 in range(0, d, BLOCK_D):
            cols = c0 + tl.arange(0, BLOCK_D)
            col_ok = cols < d
            g = tl.load(G_ptr + i * d + cols, mask=col_ok, other=0.0)
            offs = (i * m + js)[:, None] * d + cols[None, :]
            tile_ok = j_ok[:, None] & col_ok[None, :]
            ev = tl.load(E_ptr + offs, mask=tile_ok, other=0.0).to(ACC)
            acc += tl.sum(ev * g[None, :], axis=1)
            tl.store(dE_ptr + offs, (wv[:, None] * g[None, :]).to(dE_ptr.dtype.element_ty), mask=tile_ok)
        tl.store(dw_ptr + i * m + js, acc.to(dw_ptr.dtype.element_ty), mask=j_ok)

    if not INTERPRET:  # GPU: let the autotuner pick the copy tile per embedding width (see module docstring)
        _concat_kernel = triton.autotune(
            configs=[
                triton.Config({"ROWS": 8, "BLOCK_D": 256}, num_warps=4),
                triton.Config({"ROWS": 16, "BLOCK_D": 256}, num_warps=4),
                triton.Config({"ROWS": 4, "BLOCK_D": 1024}, num_warps=8),
                triton.Config({"ROWS": 2, "BLOCK_D": 1024}, num_warps=4),
            ],
            key=["d"],
        )(_concat_kernel)


# GPU tiles of the prompt-sized kernels (fixed: their work is a few MB, not worth autotuning time). They stream
# E (n*m*d elements; 3.9 MB at n=10, m=128, d=768, fp32), so what matters is the program count on 132 SMs:
# * superpose: one program per (i, BLOCK_D columns), looping over m in BLOCK_M rows. BLOCK_D=64 gives
#   n*d/64 = 120 programs at d=768 (vs 60 at 128) while each row read stays 128-256 B contiguous; the
#   BLOCK_M x BLOCK_D = 32 x 64 tile is 16 fp32 values per thread with 4 warps.
# * gradient: one program per (i, BLOCK_M superposed rows), looping over d; it reads E and writes dE
#   (2*n*m*d elements) and re-reads g[i] (fp32, L2-resident). BLOCK_M=4 gives n*m/4 = 320 programs (vs 40 at
#   32: 70% of the SMs idle); the 4 x 256 tile is 8 values per thread, 256 contiguous elements per row.
PROMPT_BLOCK_D, PROMPT_BLOCK_M = 64, 32
BWD_BLOCK_D, BWD_BLOCK_M = 256, 4


def _pow2_block(d: int, cap: int) -> int:
    return min(cap, triton.next_power_of_2(d))


def _acc(dtype: torch.dtype) -> tuple[torch.dtype, object]:
    """The accumulation dtype: fp32 for fp32/fp16/bf16 storage, fp64 for fp64 (torch dtype, Triton dtype)."""
    return (torch.float64, tl.float64) if dtype == torch.float64 else (torch.float32, tl.float32)


def _device_guard(t: Tensor):
    """Triton launches on the current CUDA device: make it the tensors' one (cuda:1 tensors, cuda:0 current)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _split_scale(scale: float) -> tuple[float, float]:
    """``scale`` as fp32 ``hi + lo``: compiled Triton passes a Python float as an fp32 argument.

    fp32/fp16/bf16 outputs use ``hi`` alone, which is exactly what PyTorch does (it multiplies in fp32 opmath,
    the reference included); fp64 outputs use ``hi + lo`` (48 significant bits, error ~4e-15 relative) instead
    of an fp32-rounded scale (~3e-8, e.g. Gemma's sqrt(d)).
    """
    hi = float(torch.tensor(scale, dtype=torch.float32))
    return hi, float(torch.tensor(scale - hi, dtype=torch.float32))


def _forward(input_ids: Tensor, weight: Tensor, w: Tensor, E: Tensor, embed_scale: float) -> Tensor:
    batch, length = input_ids.shape
    n, m, d = E.shape
    # The table is read through its strides: a tied or transposed table must not be copied (V x d) every step.
    ids, w, E = input_ids.contiguous(), w.contiguous(), E.contiguous()
    out = torch.empty(batch, n + length, d, dtype=weight.dtype, device=weight.device)
    acc_torch, acc = _acc(weight.dtype)
    prompt = torch.empty(n, d, dtype=acc_torch, device=weight.device)
    rows = batch * (n + length)
    block_d = _pow2_block(d, 256 if INTERPRET else PROMPT_BLOCK_D)
    block_m = min(PROMPT_BLOCK_M, triton.next_power_of_2(m))
    table_strides = weight.stride()
    bad = torch.zeros(1, dtype=torch.int32, device=weight.device)  # set by the kernel on an id outside the table
    scales = _split_scale(embed_scale)
    exact = weight.dtype == torch.float64
    with _device_guard(weight):
        _prompt_kernel[(n, triton.cdiv(d, block_d))](w, E, prompt, m, d, BLOCK_M=block_m, BLOCK_D=block_d, ACC=acc)
        args = (ids, weight, prompt, out, bad, rows, n, length, d, weight.shape[0], *table_strides, *scales)
        if INTERPRET:
            grid = (triton.cdiv(rows, 64), triton.cdiv(d, block_d))
            _concat_kernel[grid](*args, ACC=acc, EXACT_SCALE=exact, ROWS=64, BLOCK_D=block_d)
        else:

            def grid(meta):
                return (triton.cdiv(rows, meta["ROWS"]), triton.cdiv(d, meta["BLOCK_D"]))

            _concat_kernel[grid](*args, ACC=acc, EXACT_SCALE=exact)
    # Inside the custom op, so it runs under torch.compile as well. One 4-byte read back (a sync on a GPU, as the
    # min/max check it replaces had); only a flagged batch pays for the search that words the message.
    if bad.item():
        raise ValueError(id_range_error(ids, weight.shape[0]))
    return out


def _backward(grad_out: Tensor, w: Tensor, E: Tensor) -> tuple[Tensor, Tensor]:
    n, m, d = E.shape
    w, E = w.contiguous(), E.contiguous()
    acc_torch, acc = _acc(E.dtype)
    g_sum = torch.empty(n, d, dtype=acc_torch, device=E.device)
    dw, dE = torch.empty_like(w), torch.empty_like(E)
    sum_block_d = _pow2_block(d, 256 if INTERPRET else 128)
    block_d = _pow2_block(d, 256 if INTERPRET else BWD_BLOCK_D)
    block_m = min(32 if INTERPRET else BWD_BLOCK_M, triton.next_power_of_2(m))
    stride_b, stride_t, stride_d = grad_out.stride()
    with _device_guard(E):
        _prompt_grad_sum_kernel[(n, triton.cdiv(d, sum_block_d))](
            grad_out, g_sum, grad_out.shape[0], d, stride_b, stride_t, stride_d, BLOCK_D=sum_block_d, ACC=acc
        )
        _prompt_bwd_kernel[(n, triton.cdiv(m, block_m))](
            g_sum, w, E, dw, dE, m, d, BLOCK_M=block_m, BLOCK_D=block_d, ACC=acc
        )
    return dw, dE


@torch.library.custom_op("superpos::triton_embed_forward", mutates_args=())
def triton_embed_forward(input_ids: Tensor, weight: Tensor, w: Tensor, E: Tensor, embed_scale: float) -> Tensor:
    """``[P | X]``, ``[B, n + L, d]`` in ``weight``'s dtype."""
    return _forward(input_ids, weight, w, E, embed_scale)


@torch.library.custom_op("superpos::triton_embed_backward", mutates_args=())
def triton_embed_backward(grad_out: Tensor, w: Tensor, E: Tensor) -> tuple[Tensor, Tensor]:
    """``(dw, dE)`` from the prompt slice of ``grad_out``."""
    return _backward(grad_out, w, E)


register_fused_op("superpos::triton_embed_forward", "superpos::triton_embed_backward", triton_embed_backward)


def superpos_embed(input_ids: Tensor, weight: Tensor, w: Tensor, E: Tensor, embed_scale: float = 1.0) -> Tensor:
    """Backend entry point for :mod:`superpos_kernels.ops` (inputs already validated there)."""
    return triton_embed_forward(input_ids, weight, w, E, float(embed_scale))
