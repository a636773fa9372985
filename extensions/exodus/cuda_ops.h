// Host side of the CUDA ops: one kernel launch per op on top of op_calls.h. Written once over a
// Launcher policy so that exodus_cuda.cu (real launches on the current stream, under a device
// guard) and exodus_cuda_emulation.cpp (the same kernels run as loops on the host) share it.
//
// A Launcher has
//   static auto guard(const at::Tensor&)            -> an RAII device guard (or nothing)
//   static void launch(kernel, elements, args)      -> kernel<<<blocks, kThreads>>>(args)
// and the ops do no host synchronisation: nothing here reads a device value.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "cuda_kernels.cuh"
#include "op_calls.h"

namespace exodus {
namespace gpu {

inline unsigned int blocks_for(int64_t elements) {
  return static_cast<unsigned int>((elements + kThreads - 1) / kThreads);
}

template <typename Launcher>
std::tuple<Tensor, Tensor, Tensor> lif_forward(const Tensor& x, const Tensor& v_init,
                                               const Tensor& alpha, const Tensor& threshold,
                                               const Tensor& subtract,
                                               const c10::optional<Tensor>& min_v,
                                               int64_t max_spikes, int64_t reset,
                                               int64_t /*gradient*/, int64_t /*surrogate*/,
                                               at::ArrayRef<double> /*surrogate_params*/) {
  const auto guard = Launcher::guard(x);
  const LifForwardCall c = prepare_lif_forward(x, v_init, alpha, threshold, subtract, min_v,
                                               max_spikes, reset, &plain_empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.x.scalar_type(), "exodus_lif_forward_gpu", [&] {
        Launcher::launch(&lif_forward_kernel<scalar_t, at::opmath_type<scalar_t>>,
                         c.L.batch * c.L.features, c.args<scalar_t>());
      });
  return c.result();
}

template <typename Launcher>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lif_backward(
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_v_mem,
    const Tensor& grad_v_last, const Tensor& v_mem, const c10::optional<Tensor>& sigma,
    const Tensor& v_init, const Tensor& alpha, const Tensor& threshold, const Tensor& subtract,
    const c10::optional<Tensor>& min_v, int64_t max_spikes, int64_t reset, int64_t gradient,
    int64_t surrogate, at::ArrayRef<double> surrogate_params, int64_t param_grads) {
  const auto guard = Launcher::guard(v_mem);
  const LifBackwardCall c = prepare_lif_backward(
      grad_spikes, grad_v_mem, grad_v_last, v_mem, sigma, v_init, alpha, threshold, subtract,
      min_v, max_spikes, reset, gradient, surrogate, surrogate_params, param_grads, &plain_empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.grad_x.scalar_type(), "exodus_lif_backward_gpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const bool known = dispatch_surrogate(c.kind, [&](auto kind) {
          int_switch<kSumsNone, kSumsAlpha, kSumsAll>(c.sums(), [&](auto sums) {
            Launcher::launch(&lif_backward_kernel<decltype(kind)::value, decltype(sums)::value,
                                                  scalar_t, acc_t>,
                             c.L.batch * c.L.features, c.args<scalar_t>());
          });
        });
        TORCH_CHECK(known, "exodus_lightning: unknown surrogate code ", c.kind);
      });
  return c.result();
}

template <typename Launcher>
std::tuple<Tensor, Tensor> leaky_forward(const Tensor& x, const Tensor& v_init,
                                         const Tensor& alpha) {
  const auto guard = Launcher::guard(x);
  const LeakyForwardCall c = prepare_leaky_forward(x, v_init, alpha, &plain_empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.x.scalar_type(), "exodus_leaky_forward_gpu", [&] {
        Launcher::launch(&leaky_forward_kernel<scalar_t, at::opmath_type<scalar_t>>,
                         c.L.batch * c.L.features, c.args<scalar_t>());
      });
  return c.result();
}

template <typename Launcher>
std::tuple<Tensor, Tensor, Tensor> leaky_backward(const Tensor& grad_y,
                                                  const Tensor& grad_y_last, const Tensor& y,
                                                  const Tensor& v_init, const Tensor& alpha) {
  const auto guard = Launcher::guard(grad_y);
  const LeakyBackwardCall c =
      prepare_leaky_backward(grad_y, grad_y_last, y, v_init, alpha, &plain_empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.g.scalar_type(), "exodus_leaky_backward_gpu", [&] {
        Launcher::launch(&leaky_backward_kernel<scalar_t, at::opmath_type<scalar_t>>,
                         c.L.batch * c.L.features, c.args<scalar_t>());
      });
  return c.result();
}

// Registers the four ops of a library (`exodus_lightning` for CUDA, the emulation's own name
// for CPU tensors) with this launcher's kernels.
template <typename Launcher>
void register_ops(torch::Library& m) {
  m.impl("lif_forward", &lif_forward<Launcher>);
  m.impl("lif_backward", &lif_backward<Launcher>);
  m.impl("leaky_forward", &leaky_forward<Launcher>);
  m.impl("leaky_backward", &leaky_backward<Launcher>);
}

}  // namespace gpu
}  // namespace exodus
