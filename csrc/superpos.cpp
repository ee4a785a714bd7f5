// CPU kernels and the operator schema of the fused SuperPos op (namespace "superpos").
//
// embed_forward writes [P | X] in one parallel pass over the output, each element once, straight from its source
// (the prompt superposed in registers, or a gathered, scaled row of the frozen table). embed_backward is one
// parallel pass too and reads only the prompt slice dOut[:, :n, :] through its strides (expanded or non-contiguous
// gradients are never copied). Sums run in at::opmath_type (fp32 for fp16/bf16/fp32, fp64 for fp64),
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
#include <type_traits>
#include <vector>

#include "superpos.h"

namespace superpos {
namespace {

// Columns of d per prompt task of the forward: whole rows up to 1024, so that a task reads its m rows of E as one
// sequential stream, which the hardware prefetcher follows (with 256 columns at d=512 a task read 1 KiB pieces
// 2 KiB apart), while its accumulators stay in L1 (4 KiB in fp32). E is cold on every call (the previous call's
// gather evicts it): see bench/RESULTS.md, "Where the forward's time goes". The backward uses narrower blocks so
// that even a short prompt (small n) splits into enough tasks for every thread.
constexpr int64_t kColumnBlock = 1024;
constexpr int64_t kGradColumnBlock = 64;
// Work per parallel chunk: about at::internal::GRAIN_SIZE (32768) elements, the grain ATen itself uses; smaller
// problems run inline on one thread (an OpenMP fork/join costs more than it saves there).
constexpr int64_t kGrainElements = 32768;

// Table rows requested ahead of the one being copied (see forward_kernel).
constexpr int64_t kPrefetchRows = 4;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The inner loops that carry the forward's arithmetic, compiled for AVX-512, AVX2 and plain x86-64 and picked at
// load time (GCC/Clang function multi-versioning, an ELF ifunc): the wheel is built without -march, so a plain
// loop would run with 16-byte SSE2 vectors even on an AVX-512 machine. A profile at B=32, L=256, d=512, fp32
// (perf, 1 thread) had the SSE2 superposition at 8 % of the forward; the row copies now use memcpy, which glibc
// dispatches the same way (the SSE2 copy loop was 70 % of the forward, where F.embedding's memcpy is faster).
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define SUPERPOS_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SUPERPOS_MULTIVERSION
#endif

// acc[k] += a * e[k] for k < width: one superposed row of the prompt, accumulated in fp32. The AVX clones may fuse
// the multiply-add (last-bit differences from the plain build, within every test tolerance); the order over j is
// fixed by the caller, so a result never depends on the number of threads.
SUPERPOS_MULTIVERSION void axpy_f32(float a, const float* e, float* acc, int64_t width) {
  for (int64_t k = 0; k < width; ++k) acc[k] += a * e[k];
}

SUPERPOS_MULTIVERSION void axpy_bf16(float a, const c10::BFloat16* e, float* acc, int64_t width) {
  for (int64_t k = 0; k < width; ++k) acc[k] += a * static_cast<float>(e[k]);
}

// dst[k] = src[k] * scale, products in fp32 as PyTorch's own bf16/fp32 multiplication.
SUPERPOS_MULTIVERSION void scale_row_f32(const float* src, float* dst, float scale, int64_t d) {
  for (int64_t k = 0; k < d; ++k) dst[k] = src[k] * scale;
}

SUPERPOS_MULTIVERSION void scale_row_bf16(const c10::BFloat16* src, c10::BFloat16* dst, float scale, int64_t d) {
  for (int64_t k = 0; k < d; ++k) dst[k] = static_cast<c10::BFloat16>(static_cast<float>(src[k]) * scale);
}

template <typename param_t, typename acc_t>
inline void axpy(acc_t a, const param_t* e, acc_t* acc, int64_t width) {
  if constexpr (std::is_same_v<param_t, float> && std::is_same_v<acc_t, float>) {
    axpy_f32(a, e, acc, width);
  } else if constexpr (std::is_same_v<param_t, c10::BFloat16> && std::is_same_v<acc_t, float>) {
    axpy_bf16(a, e, acc, width);
  } else {
    for (int64_t k = 0; k < width; ++k) acc[k] += a * static_cast<acc_t>(e[k]);
  }
}

template <typename scalar_t, typename acc_t>
inline void scale_row(const scalar_t* src, scalar_t* dst, acc_t scale, int64_t d) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    scale_row_f32(src, dst, scale, d);
  } else if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    scale_row_bf16(src, dst, scale, d);
  } else {
    for (int64_t k = 0; k < d; ++k) dst[k] = static_cast<scalar_t>(static_cast<acc_t>(src[k]) * scale);
  }
}

// The one place an id is checked: inside the gather, so no separate pass over the ids (the Python min/max check
// it replaces cost ~0.13 ms per call at B=32, L=256, a tenth of the gather). ValueError, worded as the Python
// checks of the other backends (superpos_kernels/validation.py: id_range_error), so every path says the same.
template <typename index_t>
[[noreturn]] C10_NOINLINE void bad_id(const index_t* ids, int64_t r, int64_t L, int64_t V) {
  const int64_t id = static_cast<int64_t>(ids[r]);
  if (id < 0) {
    TORCH_CHECK_VALUE(false, "input_ids holds a negative id (", id, ") at input_ids[", r / L, ", ", r % L,
                      "]; ids must be in [0, ", V, ")");
  }
  TORCH_CHECK_VALUE(false, "input_ids holds id ", id, ", out of range for an embedding table of ", V,
                    " rows, at input_ids[", r / L, ", ", r % L, "]; ids must be in [0, ", V,
                    ") (was the tokenizer made for another model?)");
}

// Forward: ONE parallel pass that writes every output element exactly once, straight from its source.
// Work items are of two kinds on one index line: prompt tasks (i, column block), each superposing
// P[i, k0:k0+1024] = sum_j w[i, j] * E[i, j, k0:k0+1024] and writing it to all B copies, and token rows
// out[b, n + t] = weight[ids[b, t]] * scale. A prompt task is counted as `unit` token rows, an estimate of its cost.
// The line is cut into one segment per prompt task: the task, then its equal share of the token rows. So any
// contiguous piece of the line (at::parallel_for hands each thread one) holds prompt tasks and token rows in the
// same proportion, and the threads stay balanced whatever the true cost of a task is. (With all prompt tasks at
// the start of the line, the estimate decided the balance: at 2 threads, fp32, the thread with the prompt used
// ~20 % less CPU time per call than the other, which the call then waited for: medians of the CPU time per
// chunk over 200 calls, busy machine; with segments the two chunks are within 1 %.)
template <typename scalar_t, typename param_t, typename index_t>
void forward_kernel(const index_t* ids, int64_t B, int64_t L, const scalar_t* weight, int64_t V, int64_t row_stride,
                    const param_t* w, const param_t* E, int64_t n, int64_t m, int64_t d, double embed_scale,
                    scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = n + L;
  const int64_t blocks = ceil_div(d, kColumnBlock);
  const int64_t prompt_tasks = n * blocks;
  const int64_t unit = std::max<int64_t>(1, ceil_div((m + B) * std::min(kColumnBlock, d), d));
  const bool unit_scale = embed_scale == 1.0;
  const acc_t scale = static_cast<acc_t>(embed_scale);
  const int64_t grain = std::max<int64_t>(1, kGrainElements / d);

  auto prompt_task = [&](int64_t task) {
    const int64_t i = task / blocks;
    const int64_t k0 = (task % blocks) * kColumnBlock;
    const int64_t width = std::min(kColumnBlock, d - k0);
    acc_t acc[kColumnBlock];
    scalar_t row[kColumnBlock];
    std::fill(acc, acc + width, acc_t(0));
    for (int64_t j = 0; j < m; ++j) {  // j in order: the same sum on any number of threads
      axpy<param_t, acc_t>(static_cast<acc_t>(w[i * m + j]), E + (i * m + j) * d + k0, acc, width);
    }
    for (int64_t k = 0; k < width; ++k) row[k] = static_cast<scalar_t>(acc[k]);
    for (int64_t b = 0; b < B; ++b) std::memcpy(out + (b * T + i) * d + k0, row, width * sizeof(scalar_t));
  };

  const size_t row_bytes = static_cast<size_t>(d) * sizeof(scalar_t);
  auto token_row = [&](int64_t r) {
    const int64_t id = static_cast<int64_t>(ids[r]);
    // One unsigned comparison covers both ends; the message is built out of line, only on failure.
    if (C10_UNLIKELY(static_cast<uint64_t>(id) >= static_cast<uint64_t>(V))) bad_id(ids, r, L, V);
    const scalar_t* src = weight + id * row_stride;
    scalar_t* dst = out + ((r / L) * T + n + r % L) * d;
    if (unit_scale) {
      std::memcpy(dst, src, row_bytes);  // glibc picks its widest copy for this CPU at load time
    } else {
      scale_row<scalar_t, acc_t>(src, dst, scale, d);
    }
  };

  // Rows of a large table at random ids are DRAM misses, and the hardware prefetcher only catches on within a
  // row: ask for the row kPrefetchRows tokens ahead while copying this one (about 9 % faster on one thread at
  // B=32, L=256, d=512 with a T5-sized table; streaming stores for the output were tried and were slower).
  auto prefetch_row = [&](int64_t r) {
    const int64_t id = static_cast<int64_t>(ids[r]);
    if (id < 0 || id >= V) return;  // reported when the row itself is copied
    const char* src = reinterpret_cast<const char*>(weight + id * row_stride);
    for (size_t offset = 0; offset < row_bytes; offset += 64) __builtin_prefetch(src + offset, 0, 0);
  };

  // Segment s of the line: positions [s * seg_len, (s + 1) * seg_len), prompt task s in its first `unit`
  // positions (none when there is no prompt), then token rows [s * seg_rows, (s + 1) * seg_rows).
  const int64_t rows = B * L;
  const int64_t segments = std::max<int64_t>(prompt_tasks, 1);
  const int64_t task_len = prompt_tasks > 0 ? unit : 0;
  const int64_t seg_rows = ceil_div(rows, segments);
  const int64_t seg_len = task_len + seg_rows;
  // Token rows whose positions lie before position p.
  auto rows_before = [&](int64_t p) {
    const int64_t s = p / seg_len, o = p % seg_len;
    return std::min(rows, s * seg_rows + std::max<int64_t>(0, o - task_len));
  };
  if (seg_len == 0) return;  // no prompt task and no token row
  at::parallel_for(0, segments * seg_len, grain, [&](int64_t begin, int64_t end) {
    // A prompt task runs in the piece that holds its first position.
    for (int64_t s = ceil_div(begin, seg_len); s < prompt_tasks && s * seg_len < end; ++s) prompt_task(s);
    const int64_t first = rows_before(begin);
    const int64_t last = rows_before(end);
    for (int64_t r = first; r < std::min(last, first + kPrefetchRows); ++r) prefetch_row(r);
    for (int64_t r = first; r < last; ++r) {
      if (r + kPrefetchRows < last) prefetch_row(r + kPrefetchRows);
      token_row(r);
    }
  });
}

// Backward: ONE parallel pass over tasks (prompt row i, column block), each reading only its piece of the prompt
// slice of dOut through the strides: g = sum_b dOut[b, i, k0:k0+64], then for every j
// dE[i, j, block] = w[i, j] * g and a partial dot <g, E[i, j, block]>. The partial dots of a row are summed in
// block order afterwards (n * m * blocks additions), so dw is the same on any number of threads.
template <typename scalar_t>
void backward_kernel(const scalar_t* grad, int64_t B, int64_t s_b, int64_t s_t, int64_t s_k, const scalar_t* w,
                     const scalar_t* E, int64_t n, int64_t m, int64_t d, scalar_t* dw, scalar_t* dE) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t blocks = ceil_div(d, kGradColumnBlock);
  std::vector<acc_t> partial(n * m * blocks);
  const int64_t task_elements = (B + 2 * m) * std::min(kGradColumnBlock, d);
  const int64_t grain = std::max<int64_t>(1, ceil_div(kGrainElements, task_elements));
  at::parallel_for(0, n * blocks, grain, [&](int64_t begin, int64_t end) {
    acc_t g[kGradColumnBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / blocks;
      const int64_t kb = task % blocks;
      const int64_t k0 = kb * kGradColumnBlock;
      const int64_t width = std::min(kGradColumnBlock, d - k0);
      std::fill(g, g + width, acc_t(0));
      for (int64_t b = 0; b < B; ++b) {  // b in order
        const scalar_t* src = grad + b * s_b + i * s_t + k0 * s_k;
        if (s_k == 1) {
          for (int64_t k = 0; k < width; ++k) g[k] += static_cast<acc_t>(src[k]);
        } else {
          for (int64_t k = 0; k < width; ++k) g[k] += static_cast<acc_t>(src[k * s_k]);
        }
      }
      for (int64_t j = 0; j < m; ++j) {
        const int64_t r = i * m + j;
        const acc_t wij = static_cast<acc_t>(w[r]);
        const scalar_t* e = E + r * d + k0;
        scalar_t* de = dE + r * d + k0;
        // Eight partial sums in a fixed order: vectorisable without -ffast-math, still deterministic.
        acc_t lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t k = 0;
        for (; k + 8 <= width; k += 8) {
          for (int u = 0; u < 8; ++u) {
            lane[u] += g[k + u] * static_cast<acc_t>(e[k + u]);
            de[k + u] = static_cast<scalar_t>(wij * g[k + u]);
          }
        }
        for (; k < width; ++k) {
          lane[0] += g[k] * static_cast<acc_t>(e[k]);
          de[k] = static_cast<scalar_t>(wij * g[k]);
        }
        partial[r * blocks + kb] =
            ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
      }
    }
  });
  for (int64_t r = 0; r < n * m; ++r) {
    acc_t sum = 0;
    for (int64_t kb = 0; kb < blocks; ++kb) sum += partial[r * blocks + kb];
    dw[r] = static_cast<scalar_t>(sum);
  }
}

at::Tensor embed_forward_cpu(const at::Tensor& input_ids, const at::Tensor& weight, const at::Tensor& w,
                             const at::Tensor& E, double embed_scale) {
  check_forward_args(input_ids, weight, w, E);
  TORCH_CHECK(weight.device().is_cpu(), "superpos::embed_forward (CPU kernel) got tensors on ", weight.device());
  // Rows of the table are read in place (any row stride); only a table with non-unit column stride is copied.
  const at::Tensor table = weight.stride(1) == 1 ? weight : weight.contiguous();
  const at::Tensor ids = input_ids.contiguous();
  // fp16 <-> fp32 conversions do not vectorise without F16C (not assumed: no -march), ATen's .to() does: the
  // fp16 prompt parameters are widened once (n * m * d elements) and superposed in fp32.
  const bool half = w.scalar_type() == at::kHalf;
  const at::Tensor wc = half ? w.to(at::kFloat).contiguous() : w.contiguous();
  const at::Tensor Ec = half ? E.to(at::kFloat).contiguous() : E.contiguous();
  const int64_t B = ids.size(0), L = ids.size(1), n = wc.size(0), m = wc.size(1), d = Ec.size(2);
  at::Tensor out = at::empty({B, n + L, d}, weight.options().memory_format(at::MemoryFormat::Contiguous));
  if (d == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "superpos_embed_forward_cpu", [&] {
    using param_t = std::conditional_t<std::is_same_v<scalar_t, at::Half>, float, scalar_t>;
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "superpos_embed_forward_cpu_ids", [&] {
      forward_kernel<scalar_t, param_t, index_t>(ids.const_data_ptr<index_t>(), B, L, table.const_data_ptr<scalar_t>(),
                                                 table.size(0), table.stride(0), wc.const_data_ptr<param_t>(),
                                                 Ec.const_data_ptr<param_t>(), n, m, d, embed_scale,
                                                 out.mutable_data_ptr<scalar_t>());
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> embed_backward_cpu(const at::Tensor& grad_out, const at::Tensor& w,
                                                      const at::Tensor& E) {
  check_backward_args(grad_out, w, E);
  TORCH_CHECK(w.device().is_cpu(), "superpos::embed_backward (CPU kernel) got tensors on ", w.device());
  if (w.scalar_type() == at::kHalf) {
    // As in the forward: widen with ATen (vectorised) and run the fp32 kernel; only the prompt slice of dOut is
    // converted. Accumulation is fp32 either way, and .to(kHalf) rounds to nearest as the kernel's cast would.
    const int64_t n = w.size(0);
    auto [dw, dE] = embed_backward_cpu(grad_out.narrow(1, 0, n).to(at::kFloat), w.to(at::kFloat), E.to(at::kFloat));
    return {dw.to(at::kHalf), dE.to(at::kHalf)};
  }
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
