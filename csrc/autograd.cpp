// The autograd formula of superpos::embed_forward, in C++ for the CPU and CUDA kernels alike.
//
// Why not torch.library.register_autograd from Python: that wraps every grad-enabled call in a Python
// autograd.Function, about 14 us per call (measured at a tiny shape, 1 thread), a tenth of a bf16 forward's budget
// over a bare F.embedding at B=32, L=256, d=512. Here the whole grad-enabled call stays in C++.
//
// The backward is the superpos::embed_backward kernel, except under create_graph=True (double backward,
// Hessian-vector products): the engine runs this with grad mode on, and a kernel's result would carry no graph,
// so its second derivative would silently be zero. There the same closed form is taken with differentiable ATen
// ops (superpos_kernels/reference.py: superpos_backward_reference, the formula the tests compare against).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <tuple>

namespace superpos {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const auto& forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("superpos::embed_forward", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, double)>();
  return op;
}

const auto& backward_op() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("superpos::embed_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op;
}

// g[i] = sum_b dOut[b, i]; dw[i, j] = <g[i], E[i, j]>; dE[i, j] = w[i, j] g[i], accumulated as the kernels do.
std::tuple<at::Tensor, at::Tensor> differentiable_backward(const at::Tensor& grad_out, const at::Tensor& w,
                                                           const at::Tensor& E) {
  const auto acc = w.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor g = grad_out.narrow(1, 0, w.size(0)).to(acc).sum(0);  // [n, d]
  const at::Tensor dw = (g.unsqueeze(1) * E.to(acc)).sum(-1);
  const at::Tensor dE = w.to(acc).unsqueeze(-1) * g.unsqueeze(1);
  return {dw.to(w.scalar_type()), dE.to(E.scalar_type())};
}

class EmbedFunction : public torch::autograd::Function<EmbedFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input_ids, const at::Tensor& weight,
                            const at::Tensor& w, const at::Tensor& E, double embed_scale) {
    ctx->save_for_backward({w, E});
    // Below the autograd key, so the call reaches the CPU/CUDA (or fake) kernel instead of this one again.
    at::AutoDispatchBelowADInplaceOrView guard;
    return forward_op().call(input_ids, weight, w, E, embed_scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const bool need_w = ctx->needs_input_grad(2), need_E = ctx->needs_input_grad(3);
    at::Tensor dw, dE;
    if (need_w || need_E) {
      std::tie(dw, dE) = at::GradMode::is_enabled() ? differentiable_backward(grads[0], saved[0], saved[1])
                                                    : backward_op().call(grads[0], saved[0], saved[1]);
    }
    // No gradient for the ids or the frozen table: the table is frozen by definition of the method.
    return {at::Tensor(), at::Tensor(), need_w ? dw : at::Tensor(), need_E ? dE : at::Tensor(), at::Tensor()};
  }
};

at::Tensor embed_forward_autograd(const at::Tensor& input_ids, const at::Tensor& weight, const at::Tensor& w,
                                  const at::Tensor& E, double embed_scale) {
  return EmbedFunction::apply(input_ids, weight, w, E, embed_scale);
}

}  // namespace
}  // namespace superpos

TORCH_LIBRARY_IMPL(superpos, Autograd, m) { m.impl("embed_forward", &superpos::embed_forward_autograd); }
