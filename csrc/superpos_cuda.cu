// CUDA kernels of the fused SuperPos op, registered for the CUDA dispatch key of the "superpos" library that
// superpos.cpp defines. Built by setup.py only where nvcc and a CUDA build of torch exist; on GPUs Triton is the
// default backend and this is the fallback when Triton is missing. Same maths and accumulation types as the CPU
// kernels (see superpos.h): fp32 for fp16/bf16/fp32, fp64 for fp64; fixed summation orders (deterministic).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: that one needs the cuSPARSE/cuBLAS headers too
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <tuple>

#include "superpos.h"

namespace superpos {
namespace {

constexpr int kThreads = 256;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// prompt[i, k] = sum_j w[i, j] * E[i, j, k]; grid (column blocks, n), one thread per column, coalesced over k.
template <typename scalar_t>
__global__ void superpose_kernel(const scalar_t* __restrict__ w, const scalar_t* __restrict__ E, int64_t m, int64_t d,
                                 scalar_t* __restrict__ prompt) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t i = blockIdx.y;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= d) return;
  acc_t acc = 0;
  for (int64_t j = 0; j < m; ++j) {
    acc += static_cast<acc_t>(w[i * m + j]) * static_cast<acc_t>(E[(i * m + j) * d + k]);
  }
  prompt[i * d + k] = static_cast<scalar_t>(acc);
}

// One block per output row (b, t): a prompt row or a gathered, scaled table row. Every output element written once.
template <typename scalar_t, typename index_t>
__global__ void gather_concat_kernel(const index_t* __restrict__ ids, int64_t L, const scalar_t* __restrict__ weight,
                                     int64_t V, int64_t row_stride, const scalar_t* __restrict__ prompt, int64_t n,
                                     int64_t d, at::opmath_type<scalar_t> scale, bool unit_scale,
                                     scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row = blockIdx.x;
  const int64_t T = n + L;
  const int64_t b = row / T;
  const int64_t t = row % T;
  scalar_t* dst = out + row * d;
  if (t < n) {
    const scalar_t* src = prompt + t * d;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) dst[k] = src[k];
    return;
  }
  const int64_t id = static_cast<int64_t>(ids[b * L + (t - n)]);
  CUDA_KERNEL_ASSERT(id >= 0 && id < V && "superpos::embed_forward: input id out of range of the embedding table");
  const scalar_t* src = weight + id * row_stride;
  if (unit_scale) {
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) dst[k] = src[k];
  } else {
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
      dst[k] = static_cast<scalar_t>(static_cast<acc_t>(src[k]) * scale);
    }
  }
}

// g[i, k] = sum_b dOut[b, i, k] over the prompt slice only, read through dOut's strides (expanded dOut included).
template <typename scalar_t>
__global__ void prompt_grad_sum_kernel(const scalar_t* __restrict__ grad, int64_t B, int64_t s_b, int64_t s_t,
                                       int64_t s_k, int64_t d, at::opmath_type<scalar_t>* __restrict__ g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t i = blockIdx.y;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= d) return;
  acc_t acc = 0;
  for (int64_t b = 0; b < B; ++b) acc += static_cast<acc_t>(grad[b * s_b + i * s_t + k * s_k]);
  g[i * d + k] = acc;
}

// One block per (i, j): dE[i, j, :] = w[i, j] * g[i, :] and dw[i, j] = <g[i], E[i, j]> (fixed-order tree sum).
template <typename scalar_t>
__global__ void prompt_param_grad_kernel(const at::opmath_type<scalar_t>* __restrict__ g,
                                         const scalar_t* __restrict__ w, const scalar_t* __restrict__ E, int64_t m,
                                         int64_t d, scalar_t* __restrict__ dw, scalar_t* __restrict__ dE) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t partial[kThreads];
  const int64_t r = blockIdx.x;
  const acc_t* gi = g + (r / m) * d;
  const acc_t wij = static_cast<acc_t>(w[r]);
  acc_t dot = 0;
  for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
    const acc_t gk = gi[k];
    dot += gk * static_cast<acc_t>(E[r * d + k]);
    dE[r * d + k] = static_cast<scalar_t>(wij * gk);
  }
  partial[threadIdx.x] = dot;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) dw[r] = static_cast<scalar_t>(partial[0]);
}

at::Tensor embed_forward_cuda(const at::Tensor& input_ids, const at::Tensor& weight, const at::Tensor& w,
                              const at::Tensor& E, double embed_scale) {
  check_forward_args(input_ids, weight, w, E);
  TORCH_CHECK(weight.is_cuda(), "superpos::embed_forward (CUDA kernel) got tensors on ", weight.device());
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor table = weight.stride(1) == 1 ? weight : weight.contiguous();
  const at::Tensor ids = input_ids.contiguous();
  const at::Tensor wc = w.contiguous();
  const at::Tensor Ec = E.contiguous();
  const int64_t B = ids.size(0), L = ids.size(1), n = wc.size(0), m = wc.size(1), d = Ec.size(2);
  at::Tensor out = at::empty({B, n + L, d}, weight.options().memory_format(at::MemoryFormat::Contiguous));
  if (d == 0 || out.numel() == 0) return out;
  at::Tensor prompt = at::empty({n, d}, weight.options().memory_format(at::MemoryFormat::Contiguous));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "superpos_embed_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const dim3 grid(static_cast<unsigned>(ceil_div(d, kThreads)), static_cast<unsigned>(n));
    superpose_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        wc.const_data_ptr<scalar_t>(), Ec.const_data_ptr<scalar_t>(), m, d, prompt.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "superpos_embed_forward_cuda_ids", [&] {
      gather_concat_kernel<scalar_t, index_t><<<static_cast<unsigned>(B * (n + L)), kThreads, 0, stream>>>(
          ids.const_data_ptr<index_t>(), L, table.const_data_ptr<scalar_t>(), table.size(0), table.stride(0),
          prompt.const_data_ptr<scalar_t>(), n, d, static_cast<acc_t>(embed_scale), embed_scale == 1.0,
          out.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> embed_backward_cuda(const at::Tensor& grad_out, const at::Tensor& w,
                                                       const at::Tensor& E) {
  check_backward_args(grad_out, w, E);
  TORCH_CHECK(w.is_cuda(), "superpos::embed_backward (CUDA kernel) got tensors on ", w.device());
  const c10::cuda::CUDAGuard guard(w.device());
  const at::Tensor wc = w.contiguous();
  const at::Tensor Ec = E.contiguous();
  const int64_t B = grad_out.size(0), n = wc.size(0), m = wc.size(1), d = Ec.size(2);
  at::Tensor dw = at::empty({n, m}, w.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor dE = at::empty({n, m, d}, E.options().memory_format(at::MemoryFormat::Contiguous));
  if (d == 0) return {dw.zero_(), dE};
  const at::ScalarType acc_type = w.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor g = at::empty({n, d}, w.options().dtype(acc_type).memory_format(at::MemoryFormat::Contiguous));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "superpos_embed_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const dim3 grid(static_cast<unsigned>(ceil_div(d, kThreads)), static_cast<unsigned>(n));
    prompt_grad_sum_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        grad_out.const_data_ptr<scalar_t>(), B, grad_out.stride(0), grad_out.stride(1), grad_out.stride(2), d,
        g.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    prompt_param_grad_kernel<scalar_t><<<static_cast<unsigned>(n * m), kThreads, 0, stream>>>(
        g.const_data_ptr<acc_t>(), wc.const_data_ptr<scalar_t>(), Ec.const_data_ptr<scalar_t>(), m, d,
        dw.mutable_data_ptr<scalar_t>(), dE.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dw, dE};
}

}  // namespace
}  // namespace superpos

TORCH_LIBRARY_IMPL(superpos, CUDA, m) {
  m.impl("embed_forward", &superpos::embed_forward_cuda);
  m.impl("embed_backward", &superpos::embed_backward_cuda);
}
