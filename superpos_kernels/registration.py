"""What every compiled backend of the fused op registers from Python: fake kernels and the autograd formula.

Each backend (C++ ``superpos::embed_*``, Triton ``superpos::triton_embed_*``) defines one forward op with schema
``(input_ids, weight, w, E, embed_scale) -> out`` and one backward op ``(grad_out, w, E) -> (dw, dE)``. The fake
(meta) kernels, needed by ``torch.compile`` and ``opcheck``, are the same for all of them, so they live here once,
with the Python autograd wiring the Triton ops use (the C++ op registers its autograd in C++, csrc/autograd.cpp:
a Python autograd wrapper costs about 14 us per call).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .reference import superpos_backward_reference


def _forward_fake(input_ids: Tensor, weight: Tensor, w: Tensor, E: Tensor, embed_scale: float) -> Tensor:
    return weight.new_empty((input_ids.shape[0], w.shape[0] + input_ids.shape[1], weight.shape[1]))


def _backward_fake(grad_out: Tensor, w: Tensor, E: Tensor) -> tuple[Tensor, Tensor]:
    return w.new_empty(w.shape), E.new_empty(E.shape)


def _setup_context(ctx, inputs, output) -> None:
    _, _, w, E, _ = inputs
    ctx.save_for_backward(w, E)


def register_fused_op(
    forward_name: str, backward_name: str, backward_op: Callable[..., tuple[Tensor, Tensor]] | None
) -> None:
    """Fake kernels for both ops and, unless ``backward_op`` is None (autograd registered in C++), ``forward``'s
    autograd formula, whose backward calls ``backward_op``.

    Call it from the backend module itself: an op whose C++ schema names its Python module
    (``m.set_python_module``) requires its fake kernel to be registered from that module, which torch reads off
    the caller's frame (hence ``_stacklevel=2``).
    """
    torch.library.register_fake(forward_name, _forward_fake, _stacklevel=2)
    torch.library.register_fake(backward_name, _backward_fake, _stacklevel=2)
    if backward_op is None:
        return

    def backward(ctx, grad_out: Tensor):
        w, E = ctx.saved_tensors
        dw = dE = None
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            # create_graph=True (double backward, Hessian-vector products) runs this with grad mode on: the
            # kernels' results would carry no graph and their second derivative would silently be zero, so the
            # same closed form is taken with differentiable torch ops there.
            op = superpos_backward_reference if torch.is_grad_enabled() else backward_op
            dw, dE = op(grad_out, w, E)
        # No gradient for the ids or the frozen table: the table is frozen by definition of the method.
        return None, None, dw if ctx.needs_input_grad[2] else None, dE if ctx.needs_input_grad[3] else None, None

    torch.library.register_autograd(forward_name, backward, setup_context=_setup_context)
