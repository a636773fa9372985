// Host side of the CUDA ops: argument checks, outputs, dtype and variant dispatch, then one
// kernel launch each. Written once over a Launcher policy so that exodus_cuda.cu (real launches
// on the current stream, under a device guard) and exodus_cuda_emulation.cpp (the same kernels
// run as loops on the host) share every line of it.
//
// A Launcher has
//   static auto guard(const at::Tensor&)            -> an RAII device guard (or nothing)
//   static void launch(kernel, elements, args)      -> kernel<<<blocks, kThreads>>>(args)
// and the ops do no host synchronisation: nothing here reads a device value.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "cuda_kernels.cuh"
#include "op_checks.h"

namespace exodus {
namespace gpu {

using at::Tensor;

inline unsigned int blocks_for(int64_t elements) {
  return static_cast<unsigned int>((elements + kThreads - 1) / kThreads);
}

// Calls fn(std::integral_constant<int, Sums>) for the parameter sums the wanted mask needs.
template <typename Fn>
void dispatch_sums(int wanted, const Fn& fn) {
  if (wanted == 0) {
    fn(std::integral_constant<int, kSumsNone>());
  } else if (wanted == kGradAlpha) {
    fn(std::integral_constant<int, kSumsAlpha>());
  } else {
    fn(std::integral_constant<int, kSumsAll>());
  }
}

template <typename Launcher>
std::tuple<Tensor, Tensor, Tensor> lif_forward(const Tensor& x_in, const Tensor& v_init_in,
                                               const Tensor& alpha_in, const Tensor& threshold_in,
                                               const Tensor& subtract_in,
                                               const c10::optional<Tensor>& min_v_in,
                                               int64_t max_spikes, int64_t reset,
                                               int64_t /*gradient*/, int64_t /*surrogate*/,
                                               at::ArrayRef<double> /*surrogate_params*/) {
  const Layout L =
      check_lif_inputs(x_in, v_init_in, alpha_in, threshold_in, subtract_in, min_v_in);
  const auto guard = Launcher::guard(x_in);
  const Tensor x = x_in.contiguous(), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous(), threshold = threshold_in.contiguous();
  const Tensor subtract = subtract_in.contiguous();
  const Tensor min_v = lower_bound_or_none(min_v_in, alpha);
  Tensor spikes = at::empty(x.sizes(), x.options());
  Tensor v_mem = at::empty(x.sizes(), x.options().dtype(alpha.scalar_type()));
  Tensor v_last = at::empty(v_init.sizes(), v_init.options());
  if (L.numel() == 0) {
    v_last.copy_(v_init);
    return {spikes, v_mem, v_last};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "exodus_lif_forward_gpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        LifForwardArgs<scalar_t, acc_t> a;
        a.x = x.const_data_ptr<scalar_t>();
        a.v0 = v_init.const_data_ptr<acc_t>();
        a.alpha = alpha.const_data_ptr<acc_t>();
        a.threshold = threshold.const_data_ptr<acc_t>();
        a.subtract = subtract.const_data_ptr<acc_t>();
        a.min_v = min_v.const_data_ptr<acc_t>();
        a.spikes = spikes.mutable_data_ptr<scalar_t>();
        a.v_mem = v_mem.mutable_data_ptr<acc_t>();
        a.v_last = v_last.mutable_data_ptr<acc_t>();
        a.batch = L.batch;
        a.time = L.time;
        a.features = L.features;
        a.max_spikes = static_cast<int>(max_spikes);
        a.reset = static_cast<int>(reset);
        Launcher::launch(&lif_forward_kernel<scalar_t, acc_t>, L.batch * L.features, a);
      });
  return {spikes, v_mem, v_last};
}

template <typename Launcher>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lif_backward(
    const c10::optional<Tensor>& grad_spikes_in, const c10::optional<Tensor>& grad_v_mem_in,
    const Tensor& grad_v_last_in, const Tensor& v_mem_in, const c10::optional<Tensor>& sigma_in,
    const Tensor& v_init_in, const Tensor& alpha_in, const Tensor& threshold_in,
    const Tensor& subtract_in, const c10::optional<Tensor>& min_v_in, int64_t max_spikes,
    int64_t reset, int64_t gradient, int64_t surrogate, at::ArrayRef<double> surrogate_params,
    int64_t param_grads) {
  const Tensor& like = lif_backward_like(grad_spikes_in, v_mem_in);
  const Layout L = check_lif_inputs(like, v_init_in, alpha_in, threshold_in, subtract_in, min_v_in);
  check_lif_backward_inputs(grad_spikes_in, grad_v_mem_in, grad_v_last_in, v_mem_in, sigma_in,
                            v_init_in, surrogate, surrogate_params);
  const auto guard = Launcher::guard(like);
  const Tensor g = contiguous_or_undefined(grad_spikes_in);
  const Tensor h = contiguous_or_undefined(grad_v_mem_in);
  const Tensor g_last = grad_v_last_in.contiguous(), v_mem = v_mem_in.contiguous();
  const Tensor sigma = contiguous_or_undefined(sigma_in), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous(), threshold = threshold_in.contiguous();
  const Tensor subtract = subtract_in.contiguous();
  const Tensor min_v = lower_bound_or_none(min_v_in, alpha);
  const auto acc_options = v_mem.options();
  Tensor grad_x = at::empty(like.sizes(), like.options());
  Tensor grad_v_init = at::empty(v_init.sizes(), v_init.options());
  const int wanted = wanted_param_grads(param_grads, min_v_in.has_value());
  Tensor grad_alpha = param_grad_output(L, acc_options, wanted & kGradAlpha);
  Tensor grad_threshold = param_grad_output(L, acc_options, wanted & kGradThreshold);
  Tensor grad_subtract = param_grad_output(L, acc_options, wanted & kGradSubtract);
  Tensor grad_min_v = param_grad_output(L, acc_options, wanted & kGradMinV);
  if (L.numel() == 0) {
    grad_v_init.copy_(g_last);
    for (Tensor* t : {&grad_alpha, &grad_threshold, &grad_subtract, &grad_min_v}) t->zero_();
    return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, like.scalar_type(), "exodus_lif_backward_gpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        LifBackwardArgs<scalar_t, acc_t> a;
        a.g = ptr_or_null<scalar_t>(g);
        a.h = ptr_or_null<acc_t>(h);
        a.g_last = g_last.const_data_ptr<acc_t>();
        a.v = v_mem.const_data_ptr<acc_t>();
        a.sigma = ptr_or_null<acc_t>(sigma);
        a.v0 = v_init.const_data_ptr<acc_t>();
        a.alpha = alpha.const_data_ptr<acc_t>();
        a.threshold = threshold.const_data_ptr<acc_t>();
        a.subtract = subtract.const_data_ptr<acc_t>();
        a.min_v = min_v.const_data_ptr<acc_t>();
        a.grad_x = grad_x.mutable_data_ptr<scalar_t>();
        a.grad_v0 = grad_v_init.mutable_data_ptr<acc_t>();
        a.grad_alpha = mutable_ptr_or_null<acc_t>(grad_alpha);
        a.grad_threshold = mutable_ptr_or_null<acc_t>(grad_threshold);
        a.grad_subtract = mutable_ptr_or_null<acc_t>(grad_subtract);
        a.grad_min_v = mutable_ptr_or_null<acc_t>(grad_min_v);
        a.batch = L.batch;
        a.time = L.time;
        a.features = L.features;
        a.max_spikes = static_cast<int>(max_spikes);
        a.reset = static_cast<int>(reset);
        a.gradient = static_cast<int>(gradient);
        a.p0 = surrogate_params.size() > 0 ? acc_t(surrogate_params[0]) : acc_t(0);
        a.p1 = surrogate_params.size() > 1 ? acc_t(surrogate_params[1]) : acc_t(0);
        const int kind = sigma.defined() ? kSurrogateGiven : static_cast<int>(surrogate);
        dispatch_surrogate(kind, [&](auto kind_constant) {
          dispatch_sums(wanted, [&](auto sums_constant) {
            constexpr int Kind = decltype(kind_constant)::value;
            constexpr int Sums = decltype(sums_constant)::value;
            Launcher::launch(&lif_backward_kernel<Kind, Sums, scalar_t, acc_t>,
                             L.batch * L.features, a);
          });
        });
      });
  return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
}

template <typename Launcher>
std::tuple<Tensor, Tensor> leaky_forward(const Tensor& x_in, const Tensor& v_init_in,
                                         const Tensor& alpha_in) {
  const Layout L = check_leaky_inputs(x_in, v_init_in, alpha_in);
  const auto guard = Launcher::guard(x_in);
  const Tensor x = x_in.contiguous(), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  Tensor y = at::empty(x.sizes(), x.options());
  Tensor y_last = at::empty(v_init.sizes(), v_init.options());
  if (L.numel() == 0) {
    y_last.copy_(v_init);
    return {y, y_last};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "exodus_leaky_forward_gpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        LeakyForwardArgs<scalar_t, acc_t> a;
        a.x = x.const_data_ptr<scalar_t>();
        a.v0 = v_init.const_data_ptr<acc_t>();
        a.alpha = alpha.const_data_ptr<acc_t>();
        a.y = y.mutable_data_ptr<scalar_t>();
        a.y_last = y_last.mutable_data_ptr<acc_t>();
        a.batch = L.batch;
        a.time = L.time;
        a.features = L.features;
        Launcher::launch(&leaky_forward_kernel<scalar_t, acc_t>, L.batch * L.features, a);
      });
  return {y, y_last};
}

template <typename Launcher>
std::tuple<Tensor, Tensor, Tensor> leaky_backward(const Tensor& grad_y_in,
                                                  const Tensor& grad_y_last_in,
                                                  const Tensor& y_in, const Tensor& v_init_in,
                                                  const Tensor& alpha_in) {
  const Layout L =
      check_leaky_backward_inputs(grad_y_in, grad_y_last_in, y_in, v_init_in, alpha_in);
  const auto guard = Launcher::guard(grad_y_in);
  const Tensor g = grad_y_in.contiguous(), g_last = grad_y_last_in.contiguous();
  const Tensor y = y_in.contiguous(), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  Tensor grad_x = at::empty(g.sizes(), g.options());
  Tensor grad_v_init = at::empty(v_init.sizes(), v_init.options());
  Tensor grad_alpha = at::empty({L.batch, L.features}, alpha.options());
  if (L.numel() == 0) {
    grad_v_init.copy_(g_last);
    grad_alpha.zero_();
    return {grad_x, grad_v_init, grad_alpha};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, g.scalar_type(), "exodus_leaky_backward_gpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        LeakyBackwardArgs<scalar_t, acc_t> a;
        a.g = g.const_data_ptr<scalar_t>();
        a.g_last = g_last.const_data_ptr<acc_t>();
        a.y = y.const_data_ptr<scalar_t>();
        a.v0 = v_init.const_data_ptr<acc_t>();
        a.alpha = alpha.const_data_ptr<acc_t>();
        a.grad_x = grad_x.mutable_data_ptr<scalar_t>();
        a.grad_v0 = grad_v_init.mutable_data_ptr<acc_t>();
        a.grad_alpha = grad_alpha.mutable_data_ptr<acc_t>();
        a.batch = L.batch;
        a.time = L.time;
        a.features = L.features;
        Launcher::launch(&leaky_backward_kernel<scalar_t, acc_t>, L.batch * L.features, a);
      });
  return {grad_x, grad_v_init, grad_alpha};
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
