// CPU kernels and the operator schema of the fused SuperPos op (namespace "superpos").
//
// embed_forward writes [P | X] in one pass over the output: the n prompt rows are superposed once (into the first
// batch row of the output), then every output row is either a copy of that prompt row or a gathered, scaled row of
// the frozen table. embed_backward reads only the prompt slice dOut[:, :n, :] through its strides (expanded or
// non-contiguous gradients are never copied). Sums run in at::opmath_type (fp32 for fp16/bf16/fp32, fp64 for fp64),
// in a fixed order per output element, so results do not depend on the number of threads.
//
// Build with -fopenmp on the compile AND link lines: at::parallel_for is inline in the ATen headers and silently
// runs on one thread when _OPENMP is undefined. superpos::_openmp_threads lets the tests check that it did not.
#include <Python.h>  // only for PyInit_<name>, so that `import superpos_kernels._C` loads the registrations

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include "superpos.h"

namespace superpos {
namespace {

// Columns of d per task in the prompt and gradient reductions: a task's accumulators stay in registers/L1.
constexpr int64_t kColumnBlock = 256;
// Rows of the output per task: about at::internal::GRAIN_SIZE (32768) elements, the grain ATen itself uses.
constexpr int64_t kGrainElements = 32768;

// prompt[i, :] = sum_j w[i, j] * E[i, j, :] (n x d, row-major), accumulated in acc_t over j in order.
template <typename scalar_t, typename acc_t>
void superpose_rows(const scalar_t* w, const scalar_t* E, int64_t n, int64_t m, int64_t d, scalar_t* prompt) {
  const int64_t blocks = (d + kColumnBlock - 1) / kColumnBlock;
  at::parallel_for(0, n * blocks, 1, [&](int64_t begin, int64_t end) {
    acc_t acc[kColumnBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / blocks;
      const int64_t k0 = (task % blocks) * kColumnBlock;
      const int64_t width = std::min(kColumnBlock, d - k0);
      std::fill(acc, acc + width, acc_t(0));
      for (int64_t j = 0; j < m; ++j) {
        const acc_t wij = static_cast<acc_t>(w[i * m + j]);
        const scalar_t* e = E + (i * m + j) * d + k0;
        for (int64_t k = 0; k < width; ++k) acc[k] += wij * static_cast<acc_t>(e[k]);
      }
      scalar_t* dst = prompt + i * d + k0;
      for (int64_t k = 0; k < width; ++k) dst[k] = static_cast<scalar_t>(acc[k]);
    }
  });
}

template <typename scalar_t, typename index_t>
void forward_kernel(const index_t* ids, int64_t B, int64_t L, const scalar_t* weight, int64_t V, int64_t row_stride,
                    const scalar_t* w, const scalar_t* E, int64_t n, int64_t m, int64_t d, double embed_scale,
                    scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = n + L;
  // The prompt goes straight into out[0, :n]; the other batch rows copy it from there (it stays in cache).
  superpose_rows<scalar_t, acc_t>(w, E, n, m, d, out);
  const bool unit_scale = embed_scale == 1.0;
  const acc_t scale = static_cast<acc_t>(embed_scale);
  const int64_t grain = std::max<int64_t>(1, kGrainElements / d);
  at::parallel_for(n, B * T, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T;
      const int64_t t = r % T;
      scalar_t* dst = out + r * d;
      if (t < n) {
        std::memcpy(dst, out + t * d, d * sizeof(scalar_t));
        continue;
      }
      const int64_t id = static_cast<int64_t>(ids[b * L + (t - n)]);
      TORCH_CHECK(id >= 0 && id < V, "superpos::embed_forward: input_ids[", b, ", ", t - n, "] = ", id,
                  " is out of range for an embedding table of ", V, " rows");
      const scalar_t* src = weight + id * row_stride;
      if (unit_scale) {
        std::memcpy(dst, src, d * sizeof(scalar_t));
      } else {
        for (int64_t k = 0; k < d; ++k) dst[k] = static_cast<scalar_t>(static_cast<acc_t>(src[k]) * scale);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* grad, int64_t B, int64_t s_b, int64_t s_t, int64_t s_k, const scalar_t* w,
                     const scalar_t* E, int64_t n, int64_t m, int64_t d, scalar_t* dw, scalar_t* dE) {
  using acc_t = at::opmath_type<scalar_t>;
  // Phase 1: g[i, :] = sum_b dOut[b, i, :], over (prompt row, column block), b in order.
  std::vector<acc_t> g(n * d);
  const int64_t blocks = (d + kColumnBlock - 1) / kColumnBlock;
  at::parallel_for(0, n * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / blocks;
      const int64_t k0 = (task % blocks) * kColumnBlock;
      const int64_t width = std::min(kColumnBlock, d - k0);
      acc_t* gi = g.data() + i * d + k0;
      std::fill(gi, gi + width, acc_t(0));
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* src = grad + b * s_b + i * s_t + k0 * s_k;
        if (s_k == 1) {
          for (int64_t k = 0; k < width; ++k) gi[k] += static_cast<acc_t>(src[k]);
        } else {
          for (int64_t k = 0; k < width; ++k) gi[k] += static_cast<acc_t>(src[k * s_k]);
        }
      }
    }
  });
  // Phase 2: per (i, j): dw = <g[i], E[i, j]> and dE[i, j] = w[i, j] * g[i], one pass over E and dE.
  const int64_t grain = std::max<int64_t>(1, kGrainElements / d);
  at::parallel_for(0, n * m, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const acc_t* gi = g.data() + (r / m) * d;
      const scalar_t* e = E + r * d;
      scalar_t* de = dE + r * d;
      const acc_t wij = static_cast<acc_t>(w[r]);
      // Eight partial sums in a fixed order: vectorisable without -ffast-math, still deterministic.
      acc_t part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 8 <= d; k += 8) {
        for (int u = 0; u < 8; ++u) {
          const acc_t gk = gi[k + u];
          part[u] += gk * static_cast<acc_t>(e[k + u]);
          de[k + u] = static_cast<scalar_t>(wij * gk);
        }
      }
      for (; k < d; ++k) {
        part[0] += gi[k] * static_cast<acc_t>(e[k]);
        de[k] = static_cast<scalar_t>(wij * gi[k]);
      }
      dw[r] = static_cast<scalar_t>(((part[0] + part[1]) + (part[2] + part[3])) +
                                    ((part[4] + part[5]) + (part[6] + part[7])));
    }
  });
}

at::Tensor embed_forward_cpu(const at::Tensor& input_ids, const at::Tensor& weight, const at::Tensor& w,
                             const at::Tensor& E, double embed_scale) {
  check_forward_args(input_ids, weight, w, E);
  TORCH_CHECK(weight.device().is_cpu(), "superpos::embed_forward (CPU kernel) got tensors on ", weight.device());
  // Rows of the table are read in place (any row stride); only a table with non-unit column stride is copied.
  const at::Tensor table = weight.stride(1) == 1 ? weight : weight.contiguous();
  const at::Tensor ids = input_ids.contiguous();
  const at::Tensor wc = w.contiguous();
  const at::Tensor Ec = E.contiguous();
  const int64_t B = ids.size(0), L = ids.size(1), n = wc.size(0), m = wc.size(1), d = Ec.size(2);
  at::Tensor out = at::empty({B, n + L, d}, weight.options().memory_format(at::MemoryFormat::Contiguous));
  if (d == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "superpos_embed_forward_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "superpos_embed_forward_cpu_ids", [&] {
      forward_kernel<scalar_t, index_t>(ids.const_data_ptr<index_t>(), B, L, table.const_data_ptr<scalar_t>(),
                                        table.size(0), table.stride(0), wc.const_data_ptr<scalar_t>(),
                                        Ec.const_data_ptr<scalar_t>(), n, m, d, embed_scale,
                                        out.mutable_data_ptr<scalar_t>());
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> embed_backward_cpu(const at::Tensor& grad_out, const at::Tensor& w,
                                                      const at::Tensor& E) {
  check_backward_args(grad_out, w, E);
  TORCH_CHECK(w.device().is_cpu(), "superpos::embed_backward (CPU kernel) got tensors on ", w.device());
  const at::Tensor wc = w.contiguous();
  const at::Tensor Ec = E.contiguous();
  const int64_t B = grad_out.size(0), n = wc.size(0), m = wc.size(1), d = Ec.size(2);
  at::Tensor dw = at::empty({n, m}, w.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor dE = at::empty({n, m, d}, E.options().memory_format(at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "superpos_embed_backward_cpu", [&] {
    // const_data_ptr is the storage offset already applied; strides address the prompt slice in place.
    backward_kernel<scalar_t>(grad_out.const_data_ptr<scalar_t>(), B, grad_out.stride(0), grad_out.stride(1),
                              grad_out.stride(2), wc.const_data_ptr<scalar_t>(), Ec.const_data_ptr<scalar_t>(), n, m,
                              d, dw.mutable_data_ptr<scalar_t>(), dE.mutable_data_ptr<scalar_t>());
  });
  return {dw, dE};
}

// How many distinct threads ran chunks of an at::parallel_for over work_items items (grain 1). A build without
// OpenMP returns 1 whatever torch.get_num_threads() says: the tests compare the two.
int64_t openmp_threads(int64_t work_items) {
  std::mutex mutex;
  std::set<int> seen;
  at::parallel_for(0, work_items, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mutex);
    seen.insert(at::get_thread_num());
  });
  return static_cast<int64_t>(seen.size());
}

}  // namespace
}  // namespace superpos

TORCH_LIBRARY(superpos, m) {
  // Fake (meta) kernels and autograd live in this Python module; torch points users there if it was not imported.
  m.set_python_module("superpos_kernels.cpp_ops");
  m.def("embed_forward(Tensor input_ids, Tensor weight, Tensor w, Tensor E, float embed_scale) -> Tensor");
  m.def("embed_backward(Tensor grad_out, Tensor w, Tensor E) -> (Tensor, Tensor)");
  m.def("_openmp_threads(int work_items) -> int", &superpos::openmp_threads);
}

TORCH_LIBRARY_IMPL(superpos, CPU, m) {
  m.impl("embed_forward", &superpos::embed_forward_cpu);
  m.impl("embed_backward", &superpos::embed_backward_cpu);
}

// A Python module with no functions: importing it runs the static registrations above. Named after the build's
// TORCH_EXTENSION_NAME so the same file serves setup.py (`_C`) and the JIT fallback (its own name).
#define SUPERPOS_CONCAT_(a, b) a##b
#define SUPERPOS_CONCAT(a, b) SUPERPOS_CONCAT_(a, b)
#define SUPERPOS_STR_(a) #a
#define SUPERPOS_STR(a) SUPERPOS_STR_(a)

extern "C" PyMODINIT_FUNC SUPERPOS_CONCAT(PyInit_, TORCH_EXTENSION_NAME)(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, SUPERPOS_STR(TORCH_EXTENSION_NAME),
                                          "Registers the superpos::* operators (CPU, and CUDA if built).", -1,
                                          nullptr};
  return PyModule_Create(&module_def);
}
