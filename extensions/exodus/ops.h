// The ops' entry points, written once for every backend over a Runner policy: the CPU
// (exodus_cpu*.cpp: cpu_scan.h's loops), CUDA (exodus_cuda*.cu: cuda_kernels.cuh launched on the
// current stream) and the CUDA kernels emulated on the host (exodus_cuda_emulation.cpp).
//
// A Runner has
//   static auto guard(const at::Tensor&)         -> an RAII device guard (or nothing)
//   static Tensor empty(sizes, options)          -> a full-size output
//   template <typename P> static void run(args)  -> policy P over every neuron and step
//   static constexpr bool kFixedReset            -> whether reverse LIF scans take the reset
//                                                   mode as a template argument
// and the ops do no host synchronisation: nothing here reads a device value.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "adlif_step.h"
#include "alif_step.h"
#include "leaky_step.h"
#include "lif_step.h"
#include "op_calls.h"
#include "static_switch.h"
#include "surrogate.h"

namespace exodus {

template <typename Runner>
std::tuple<Tensor, Tensor, Tensor> lif_forward(const Tensor& x, const Tensor& v_init,
                                               const Tensor& alpha, const Tensor& threshold,
                                               const Tensor& subtract,
                                               const c10::optional<Tensor>& min_v,
                                               int64_t max_spikes, int64_t reset,
                                               int64_t /*gradient*/, int64_t /*surrogate*/,
                                               at::ArrayRef<double> /*surrogate_params*/) {
  const auto guard = Runner::guard(x);
  const LifForwardCall c = prepare_lif_forward(x, v_init, alpha, threshold, subtract, min_v,
                                               max_spikes, reset, &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(),
                                  "exodus_lif_forward", [&] {
                                    using acc_t = at::opmath_type<scalar_t>;
                                    Runner::template run<LifForwardScan<scalar_t, acc_t>>(
                                        c.args<scalar_t>());
                                  });
  return c.result();
}

// Picks the reverse LIF scan for a call: the sums it keeps, and (where the Runner fixes the
// reset at compile time) the reset mode, with the cheaper scan when the reset subtracts and no
// parameter gradient is wanted.
template <typename Runner, int Kind, typename scalar_t>
void run_lif_backward(const LifBackwardCall& c) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto a = c.args<scalar_t>();
  const int sums = c.sums();
  if constexpr (!Runner::kFixedReset) {
    int_switch<kSumsNone, kSumsAlpha, kSumsAll>(sums, [&](auto s) {
      Runner::template run<LifBackwardScan<Kind, decltype(s)::value, kResetRuntime, scalar_t,
                                           acc_t>>(a);
    });
  } else if (c.reset == kResetZero) {
    int_switch<kSumsNone, kSumsAlpha, kSumsAll>(sums, [&](auto s) {
      Runner::template run<LifBackwardScan<Kind, decltype(s)::value, kResetZero, scalar_t,
                                           acc_t>>(a);
    });
  } else if (sums == kSumsNone) {
    bool_switch(c.min_v_given, [&](auto clip) {
      Runner::template run<LifBackwardSubtractScan<Kind, decltype(clip)::value, scalar_t,
                                                   acc_t>>(a);
    });
  } else {
    int_switch<kSumsAlpha, kSumsAll>(sums, [&](auto s) {
      Runner::template run<LifBackwardScan<Kind, decltype(s)::value, kResetSubtract, scalar_t,
                                           acc_t>>(a);
    });
  }
}

// The reverse LIF scans of one dtype, every surrogate. A translation unit may declare some
// dtypes' instantiations `extern template` and leave them to another file that the build
// compiles in parallel (exodus_cpu.cpp and exodus_cpu_lif_half.cpp).
template <typename Runner, typename scalar_t>
void lif_backward_typed(const LifBackwardCall& c) {
  const bool known = dispatch_surrogate(c.kind, [&](auto kind) {
    run_lif_backward<Runner, decltype(kind)::value, scalar_t>(c);
  });
  TORCH_CHECK(known, "exodus_lightning: unknown surrogate code ", c.kind);
}

template <typename Runner>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lif_backward(
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_v_mem,
    const Tensor& grad_v_last, const Tensor& v_mem, const c10::optional<Tensor>& sigma,
    const Tensor& v_init, const Tensor& alpha, const Tensor& threshold, const Tensor& subtract,
    const c10::optional<Tensor>& min_v, int64_t max_spikes, int64_t reset, int64_t gradient,
    int64_t surrogate, at::ArrayRef<double> surrogate_params, int64_t param_grads) {
  const auto guard = Runner::guard(v_mem);
  const LifBackwardCall c = prepare_lif_backward(
      grad_spikes, grad_v_mem, grad_v_last, v_mem, sigma, v_init, alpha, threshold, subtract,
      min_v, max_spikes, reset, gradient, surrogate, surrogate_params, param_grads,
      &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.grad_x.scalar_type(), "exodus_lif_backward",
      [&] { lif_backward_typed<Runner, scalar_t>(c); });
  return c.result();
}

template <typename Runner>
std::tuple<Tensor, Tensor> leaky_forward(const Tensor& x, const Tensor& v_init,
                                         const Tensor& alpha) {
  const auto guard = Runner::guard(x);
  const LeakyForwardCall c = prepare_leaky_forward(x, v_init, alpha, &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(),
                                  "exodus_leaky_forward", [&] {
                                    using acc_t = at::opmath_type<scalar_t>;
                                    Runner::template run<LeakyForwardScan<scalar_t, acc_t>>(
                                        c.args<scalar_t>());
                                  });
  return c.result();
}

template <typename Runner>
std::tuple<Tensor, Tensor, Tensor> leaky_backward(const Tensor& grad_y,
                                                  const Tensor& grad_y_last, const Tensor& y,
                                                  const Tensor& v_init, const Tensor& alpha) {
  const auto guard = Runner::guard(grad_y);
  const LeakyBackwardCall c =
      prepare_leaky_backward(grad_y, grad_y_last, y, v_init, alpha, &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.g.scalar_type(),
                                  "exodus_leaky_backward", [&] {
                                    using acc_t = at::opmath_type<scalar_t>;
                                    Runner::template run<LeakyBackwardScan<scalar_t, acc_t>>(
                                        c.args<scalar_t>());
                                  });
  return c.result();
}

template <typename Runner>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> alif_forward(
    const Tensor& x, const Tensor& v_init, const Tensor& b_init, const Tensor& alpha,
    const Tensor& rho, const Tensor& beta, const Tensor& b0, const c10::optional<Tensor>& min_v,
    int64_t max_spikes, int64_t reset, int64_t /*gradient*/, int64_t /*surrogate*/,
    at::ArrayRef<double> /*surrogate_params*/) {
  const auto guard = Runner::guard(x);
  const AlifForwardCall c = prepare_alif_forward(x, v_init, b_init, alpha, rho, beta, b0, min_v,
                                                 max_spikes, reset, &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(),
                                  "exodus_alif_forward", [&] {
                                    using acc_t = at::opmath_type<scalar_t>;
                                    Runner::template run<AlifForwardScan<scalar_t, acc_t>>(
                                        c.args<scalar_t>());
                                  });
  return c.result();
}

template <typename Runner>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> alif_backward(
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_v_mem,
    const c10::optional<Tensor>& grad_b, const Tensor& grad_v_last, const Tensor& grad_b_last,
    const Tensor& v_mem, const Tensor& b, const c10::optional<Tensor>& sigma,
    const Tensor& v_init, const Tensor& b_init, const Tensor& alpha, const Tensor& rho,
    const Tensor& beta, const Tensor& b0, const c10::optional<Tensor>& min_v, int64_t max_spikes,
    int64_t reset, int64_t gradient, int64_t surrogate, at::ArrayRef<double> surrogate_params,
    int64_t param_grads) {
  const auto guard = Runner::guard(v_mem);
  const AlifBackwardCall c = prepare_alif_backward(
      grad_spikes, grad_v_mem, grad_b, grad_v_last, grad_b_last, v_mem, b, sigma, v_init, b_init,
      alpha, rho, beta, b0, min_v, max_spikes, reset, gradient, surrogate, surrogate_params,
      param_grads, &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.grad_x.scalar_type(), "exodus_alif_backward", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto a = c.args<scalar_t>();
        const bool known = dispatch_surrogate(c.kind, [&](auto kind) {
          constexpr int Kind = decltype(kind)::value;
          bool_switch(c.wanted != 0, [&](auto sums) {
            constexpr bool KeepSums = decltype(sums)::value;
            if constexpr (!Runner::kFixedReset) {
              Runner::template run<AlifBackwardScan<Kind, KeepSums, kResetRuntime, scalar_t, acc_t>>(
                  a);
            } else if (c.reset == kResetZero) {
              Runner::template run<AlifBackwardScan<Kind, KeepSums, kResetZero, scalar_t, acc_t>>(a);
            } else {
              Runner::template run<AlifBackwardScan<Kind, KeepSums, kResetSubtract, scalar_t, acc_t>>(
                  a);
            }
          });
        });
        TORCH_CHECK(known, "exodus_lightning: unknown surrogate code ", c.kind);
      });
  return c.result();
}

template <typename Runner>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> adlif_forward(
    const Tensor& x, const Tensor& u_init, const Tensor& w_init, const Tensor& alpha,
    const Tensor& beta, const Tensor& a, const Tensor& b, const Tensor& threshold,
    int64_t /*gradient*/, int64_t /*surrogate*/, at::ArrayRef<double> /*surrogate_params*/) {
  const auto guard = Runner::guard(x);
  const AdlifForwardCall c = prepare_adlif_forward(x, u_init, w_init, alpha, beta, a, b,
                                                   threshold, &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(),
                                  "exodus_adlif_forward", [&] {
                                    using acc_t = at::opmath_type<scalar_t>;
                                    Runner::template run<AdlifForwardScan<scalar_t, acc_t>>(
                                        c.args<scalar_t>());
                                  });
  return c.result();
}

template <typename Runner>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> adlif_backward(
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_u_mem,
    const c10::optional<Tensor>& grad_w, const Tensor& grad_u_last, const Tensor& grad_w_last,
    const Tensor& u_mem, const Tensor& w, const c10::optional<Tensor>& x,
    const c10::optional<Tensor>& sigma, const Tensor& u_init, const Tensor& w_init,
    const Tensor& alpha, const Tensor& beta, const Tensor& a, const Tensor& b,
    const Tensor& threshold, int64_t gradient, int64_t surrogate,
    at::ArrayRef<double> surrogate_params, int64_t param_grads) {
  const auto guard = Runner::guard(u_mem);
  const AdlifBackwardCall c = prepare_adlif_backward(
      grad_spikes, grad_u_mem, grad_w, grad_u_last, grad_w_last, u_mem, w, x, sigma, u_init,
      w_init, alpha, beta, a, b, threshold, gradient, surrogate, surrogate_params, param_grads,
      &Runner::empty);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.grad_x.scalar_type(), "exodus_adlif_backward", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto args = c.args<scalar_t>();
        const bool known = dispatch_surrogate(c.kind, [&](auto kind) {
          bool_switch(c.wanted != 0, [&](auto sums) {
            Runner::template run<AdlifBackwardScan<decltype(kind)::value,
                                                   decltype(sums)::value, scalar_t, acc_t>>(args);
          });
        });
        TORCH_CHECK(known, "exodus_lightning: unknown surrogate code ", c.kind);
      });
  return c.result();
}

// Register the ops of a library (`exodus_lightning` for CPU and CUDA, the emulation's own
// namespace for CPU tensors) with this runner, one neuron model at a time: the CPU and CUDA
// libraries build each model in its own translation unit, so the compiler runs them in parallel.
template <typename Runner>
void register_lif_ops(torch::Library& m) {
  m.impl("lif_forward", &lif_forward<Runner>);
  m.impl("lif_backward", &lif_backward<Runner>);
  m.impl("leaky_forward", &leaky_forward<Runner>);
  m.impl("leaky_backward", &leaky_backward<Runner>);
}

template <typename Runner>
void register_alif_ops(torch::Library& m) {
  m.impl("alif_forward", &alif_forward<Runner>);
  m.impl("alif_backward", &alif_backward<Runner>);
}

template <typename Runner>
void register_adlif_ops(torch::Library& m) {
  m.impl("adlif_forward", &adlif_forward<Runner>);
  m.impl("adlif_backward", &adlif_backward<Runner>);
}

template <typename Runner>
void register_ops(torch::Library& m) {
  register_lif_ops<Runner>(m);
  register_alif_ops<Runner>(m);
  register_adlif_ops<Runner>(m);
}

}  // namespace exodus
