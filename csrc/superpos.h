// Shared by the CPU (superpos.cpp) and CUDA (superpos_cuda.cu) kernels of the fused SuperPos op.
//
// The op computes out = [P | X] with P[i] = sum_j w[i, j] * E[i, j, :] (the superposed prompt, broadcast over the
// batch) and X[b, t] = weight[input_ids[b, t]] * embed_scale; its backward needs only the prompt slice of dOut:
// g[i] = sum_b dOut[b, i, :], dw[i, j] = <g[i], E[i, j]>, dE[i, j] = w[i, j] * g[i].
//
// The Python wrapper (superpos_kernels/ops.py) validates every input with a readable message before it gets here;
// these checks are the last line of defence for direct torch.ops.superpos.* calls, so they name the argument too.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace superpos {

inline void check_forward_args(const at::Tensor& input_ids, const at::Tensor& weight, const at::Tensor& w,
                               const at::Tensor& E) {
  TORCH_CHECK(input_ids.dim() == 2, "superpos::embed_forward: input_ids must be [batch, seq_len], got ",
              input_ids.sizes());
  TORCH_CHECK(input_ids.scalar_type() == at::kLong || input_ids.scalar_type() == at::kInt,
              "superpos::embed_forward: input_ids must be int64 or int32, got ", input_ids.scalar_type());
  TORCH_CHECK(weight.dim() == 2, "superpos::embed_forward: weight must be [vocab, dim], got ", weight.sizes());
  TORCH_CHECK(w.dim() == 2, "superpos::embed_forward: w must be [n, m], got ", w.sizes());
  TORCH_CHECK(E.dim() == 3 && E.size(0) == w.size(0) && E.size(1) == w.size(1) && E.size(2) == weight.size(1),
              "superpos::embed_forward: E must be [n, m, dim] = [", w.size(0), ", ", w.size(1), ", ", weight.size(1),
              "], got ", E.sizes());
  TORCH_CHECK(weight.scalar_type() == w.scalar_type() && w.scalar_type() == E.scalar_type(),
              "superpos::embed_forward: weight, w and E must share one dtype, got ", weight.scalar_type(), ", ",
              w.scalar_type(), ", ", E.scalar_type());
  TORCH_CHECK(input_ids.device() == weight.device() && weight.device() == w.device() && w.device() == E.device(),
              "superpos::embed_forward: all tensors must be on one device, got input_ids=", input_ids.device(),
              " weight=", weight.device(), " w=", w.device(), " E=", E.device());
}

inline void check_backward_args(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& E) {
  TORCH_CHECK(w.dim() == 2 && E.dim() == 3 && E.size(0) == w.size(0) && E.size(1) == w.size(1),
              "superpos::embed_backward: w must be [n, m] and E [n, m, dim], got ", w.sizes(), " and ", E.sizes());
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(1) >= w.size(0) && grad_out.size(2) == E.size(2),
              "superpos::embed_backward: grad_out must be [batch, n + seq_len, dim] with n = ", w.size(0),
              " and dim = ", E.size(2), ", got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == w.scalar_type() && w.scalar_type() == E.scalar_type(),
              "superpos::embed_backward: grad_out, w and E must share one dtype, got ", grad_out.scalar_type(), ", ",
              w.scalar_type(), ", ", E.scalar_type());
  TORCH_CHECK(grad_out.device() == w.device() && w.device() == E.device(),
              "superpos::embed_backward: all tensors must be on one device, got grad_out=", grad_out.device(),
              " w=", w.device(), " E=", E.device());
}

}  // namespace superpos
