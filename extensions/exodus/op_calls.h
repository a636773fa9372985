// One op call, prepared for either backend: the arguments checked, made contiguous, the outputs
// allocated (by the backend's allocator), empty calls answered, and the kernel argument struct
// (in the model's header) filled for the dispatched dtype. The CPU and CUDA entry points only add how the
// kernel runs, so they share every line of this.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <tuple>

#include "adlif_step.h"
#include "alif_step.h"
#include "leaky_step.h"
#include "lif_step.h"
#include "op_checks.h"
#include "surrogate.h"

namespace exodus {

using at::Tensor;

// Allocates a full-size output: at::empty, or the CPU's version backed by huge pages.
using EmptyFn = Tensor (*)(at::IntArrayRef, const at::TensorOptions&);

struct LifForwardCall {
  Layout L;
  Tensor x, v_init, alpha, threshold, subtract, min_v;  // inputs, contiguous
  Tensor spikes, v_mem, v_last;                          // outputs
  int max_spikes, reset;

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor, Tensor> result() const { return {spikes, v_mem, v_last}; }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  LifForwardArgs<scalar_t, acc_t> args() const {
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
    a.max_spikes = max_spikes;
    a.reset = reset;
    return a;
  }
};

inline LifForwardCall prepare_lif_forward(const Tensor& x, const Tensor& v_init,
                                          const Tensor& alpha, const Tensor& threshold,
                                          const Tensor& subtract,
                                          const c10::optional<Tensor>& min_v, int64_t max_spikes,
                                          int64_t reset, EmptyFn empty) {
  LifForwardCall c;
  c.L = check_lif_inputs(x, v_init, alpha, threshold, subtract, min_v);
  check_codes(max_spikes, reset);
  c.x = x.contiguous();
  c.v_init = v_init.contiguous();
  c.alpha = alpha.contiguous();
  c.threshold = threshold.contiguous();
  c.subtract = subtract.contiguous();
  c.min_v = lower_bound_or_none(min_v, c.alpha);
  c.spikes = empty(c.x.sizes(), c.x.options());
  c.v_mem = empty(c.x.sizes(), c.x.options().dtype(c.alpha.scalar_type()));
  c.v_last = at::empty(c.v_init.sizes(), c.v_init.options());
  c.max_spikes = static_cast<int>(max_spikes);
  c.reset = static_cast<int>(reset);
  if (c.empty()) c.v_last.copy_(c.v_init);  // no step: the state passes through
  return c;
}

struct LifBackwardCall {
  Layout L;
  Tensor g, h, g_last, v_mem, sigma, v_init, alpha, threshold, subtract, min_v;
  Tensor grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v;
  int max_spikes, reset, gradient;
  int kind;    // surrogate code; kSurrogateGiven when sigma is passed
  int wanted;  // ParamGradBit mask of the parameter gradients to compute
  bool min_v_given;  // a lower bound (else min_v holds -inf)
  double p0, p1;

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> result() const {
    return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
  }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  LifBackwardArgs<scalar_t, acc_t> args() const {
    LifBackwardArgs<scalar_t, acc_t> a;
    // An absent upstream gradient points at the membrane, an input at least as large (lif_step.h
    // says why; not at an output, which would fail the CPU loops' runtime overlap checks).
    a.has_g = g.defined();
    a.has_h = h.defined();
    a.g = a.has_g ? g.const_data_ptr<scalar_t>()
                  : reinterpret_cast<const scalar_t*>(v_mem.const_data_ptr<acc_t>());
    a.h = a.has_h ? h.const_data_ptr<acc_t>() : v_mem.const_data_ptr<acc_t>();
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
    a.max_spikes = max_spikes;
    a.reset = reset;
    a.gradient = gradient;
    a.p0 = acc_t(p0);
    a.p1 = acc_t(p1);
    return a;
  }

  // Which sums the scan keeps (lif_step.h).
  int sums() const {
    return wanted == 0 ? kSumsNone : wanted == kGradAlpha ? kSumsAlpha : kSumsAll;
  }
};

inline LifBackwardCall prepare_lif_backward(
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_v_mem,
    const Tensor& grad_v_last, const Tensor& v_mem, const c10::optional<Tensor>& sigma,
    const Tensor& v_init, const Tensor& alpha, const Tensor& threshold, const Tensor& subtract,
    const c10::optional<Tensor>& min_v, int64_t max_spikes, int64_t reset, int64_t gradient,
    int64_t surrogate, at::ArrayRef<double> surrogate_params, int64_t param_grads,
    EmptyFn empty) {
  const Tensor& like = lif_backward_like(grad_spikes, v_mem);
  LifBackwardCall c;
  c.L = check_lif_inputs(like, v_init, alpha, threshold, subtract, min_v);
  check_lif_backward_inputs(grad_spikes, grad_v_mem, grad_v_last, v_mem, sigma, v_init,
                            surrogate, surrogate_params);
  check_codes(max_spikes, reset);
  c.g = contiguous_or_undefined(grad_spikes);
  c.h = contiguous_or_undefined(grad_v_mem);
  c.g_last = grad_v_last.contiguous();
  c.v_mem = v_mem.contiguous();
  c.sigma = contiguous_or_undefined(sigma);
  c.v_init = v_init.contiguous();
  c.alpha = alpha.contiguous();
  c.threshold = threshold.contiguous();
  c.subtract = subtract.contiguous();
  c.min_v = lower_bound_or_none(min_v, c.alpha);
  c.max_spikes = static_cast<int>(max_spikes);
  c.reset = static_cast<int>(reset);
  c.gradient = static_cast<int>(gradient);
  c.kind = sigma.has_value() ? kSurrogateGiven : static_cast<int>(surrogate);
  c.p0 = surrogate_params.size() > 0 ? surrogate_params[0] : 0.0;
  c.p1 = surrogate_params.size() > 1 ? surrogate_params[1] : 0.0;
  c.wanted = wanted_param_grads(param_grads, min_v.has_value());
  c.min_v_given = min_v.has_value();
  const auto acc_options = c.v_mem.options();
  c.grad_x = empty(like.sizes(), like.options());
  c.grad_v_init = at::empty(c.v_init.sizes(), c.v_init.options());
  c.grad_alpha = param_grad_output(c.L, acc_options, c.wanted & kGradAlpha);
  c.grad_threshold = param_grad_output(c.L, acc_options, c.wanted & kGradThreshold);
  c.grad_subtract = param_grad_output(c.L, acc_options, c.wanted & kGradSubtract);
  c.grad_min_v = param_grad_output(c.L, acc_options, c.wanted & kGradMinV);
  if (c.empty()) {  // no step: the state's gradient passes through, the sums are zero
    c.grad_v_init.copy_(c.g_last);
    for (Tensor* t : {&c.grad_alpha, &c.grad_threshold, &c.grad_subtract, &c.grad_min_v}) {
      t->zero_();
    }
  }
  return c;
}

struct LeakyForwardCall {
  Layout L;
  Tensor x, v_init, alpha, y, y_last;

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor> result() const { return {y, y_last}; }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  LeakyForwardArgs<scalar_t, acc_t> args() const {
    LeakyForwardArgs<scalar_t, acc_t> a;
    a.x = x.const_data_ptr<scalar_t>();
    a.v0 = v_init.const_data_ptr<acc_t>();
    a.alpha = alpha.const_data_ptr<acc_t>();
    a.y = y.mutable_data_ptr<scalar_t>();
    a.y_last = y_last.mutable_data_ptr<acc_t>();
    a.batch = L.batch;
    a.time = L.time;
    a.features = L.features;
    return a;
  }
};

inline LeakyForwardCall prepare_leaky_forward(const Tensor& x, const Tensor& v_init,
                                              const Tensor& alpha, EmptyFn empty) {
  LeakyForwardCall c;
  c.L = check_leaky_inputs(x, v_init, alpha);
  c.x = x.contiguous();
  c.v_init = v_init.contiguous();
  c.alpha = alpha.contiguous();
  c.y = empty(c.x.sizes(), c.x.options());
  c.y_last = at::empty(c.v_init.sizes(), c.v_init.options());
  if (c.empty()) c.y_last.copy_(c.v_init);
  return c;
}

struct LeakyBackwardCall {
  Layout L;
  Tensor g, g_last, y, v_init, alpha, grad_x, grad_v_init, grad_alpha;

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor, Tensor> result() const { return {grad_x, grad_v_init, grad_alpha}; }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  LeakyBackwardArgs<scalar_t, acc_t> args() const {
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
    return a;
  }
};

inline LeakyBackwardCall prepare_leaky_backward(const Tensor& grad_y, const Tensor& grad_y_last,
                                                const Tensor& y, const Tensor& v_init,
                                                const Tensor& alpha, EmptyFn empty) {
  LeakyBackwardCall c;
  c.L = check_leaky_backward_inputs(grad_y, grad_y_last, y, v_init, alpha);
  c.g = grad_y.contiguous();
  c.g_last = grad_y_last.contiguous();
  c.y = y.contiguous();
  c.v_init = v_init.contiguous();
  c.alpha = alpha.contiguous();
  c.grad_x = empty(c.g.sizes(), c.g.options());
  c.grad_v_init = at::empty(c.v_init.sizes(), c.v_init.options());
  c.grad_alpha = at::empty({c.L.batch, c.L.features}, c.alpha.options());
  if (c.empty()) {
    c.grad_v_init.copy_(c.g_last);
    c.grad_alpha.zero_();
  }
  return c;
}

struct AlifForwardCall {
  Layout L;
  Tensor x, v_init, b_init, alpha, rho, beta, b0, min_v;  // inputs, contiguous
  Tensor spikes, v_mem, b, v_last, b_last;                // outputs
  int max_spikes, reset;

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> result() const {
    return {spikes, v_mem, b, v_last, b_last};
  }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  AlifForwardArgs<scalar_t, acc_t> args() const {
    AlifForwardArgs<scalar_t, acc_t> a;
    a.x = x.const_data_ptr<scalar_t>();
    a.v0 = v_init.const_data_ptr<acc_t>();
    a.b0_state = b_init.const_data_ptr<acc_t>();
    a.alpha = alpha.const_data_ptr<acc_t>();
    a.rho = rho.const_data_ptr<acc_t>();
    a.beta = beta.const_data_ptr<acc_t>();
    a.b0 = b0.const_data_ptr<acc_t>();
    a.min_v = min_v.const_data_ptr<acc_t>();
    a.spikes = spikes.mutable_data_ptr<scalar_t>();
    a.v_mem = v_mem.mutable_data_ptr<acc_t>();
    a.b = b.mutable_data_ptr<acc_t>();
    a.v_last = v_last.mutable_data_ptr<acc_t>();
    a.b_last = b_last.mutable_data_ptr<acc_t>();
    a.batch = L.batch;
    a.time = L.time;
    a.features = L.features;
    a.max_spikes = max_spikes;
    a.reset = reset;
    return a;
  }
};

inline AlifForwardCall prepare_alif_forward(const Tensor& x, const Tensor& v_init,
                                            const Tensor& b_init, const Tensor& alpha,
                                            const Tensor& rho, const Tensor& beta,
                                            const Tensor& b0, const c10::optional<Tensor>& min_v,
                                            int64_t max_spikes, int64_t reset, EmptyFn empty) {
  AlifForwardCall c;
  c.L = check_alif_inputs(x, v_init, b_init, alpha, rho, beta, b0, min_v);
  check_codes(max_spikes, reset);
  c.x = x.contiguous();
  c.v_init = v_init.contiguous();
  c.b_init = b_init.contiguous();
  c.alpha = alpha.contiguous();
  c.rho = rho.contiguous();
  c.beta = beta.contiguous();
  c.b0 = b0.contiguous();
  c.min_v = lower_bound_or_none(min_v, c.alpha);
  const auto acc_options = c.x.options().dtype(c.alpha.scalar_type());
  c.spikes = empty(c.x.sizes(), c.x.options());
  c.v_mem = empty(c.x.sizes(), acc_options);
  c.b = empty(c.x.sizes(), acc_options);
  c.v_last = at::empty(c.v_init.sizes(), c.v_init.options());
  c.b_last = at::empty(c.b_init.sizes(), c.b_init.options());
  c.max_spikes = static_cast<int>(max_spikes);
  c.reset = static_cast<int>(reset);
  if (c.empty()) {  // no step: the states pass through
    c.v_last.copy_(c.v_init);
    c.b_last.copy_(c.b_init);
  }
  return c;
}

struct AlifBackwardCall {
  Layout L;
  Tensor g, h, gb, g_last, gb_last, v_mem, b, sigma, v_init, b_init, alpha, rho, beta, b0, min_v;
  Tensor grad_x, grad_v_init, grad_b_init, grad_alpha, grad_rho, grad_beta, grad_b0, grad_min_v;
  int max_spikes, reset, gradient;
  int kind;    // surrogate code; kSurrogateGiven when sigma is passed
  int wanted;  // AlifParamGradBit mask of the parameter gradients to compute
  double p0, p1;

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> result() const {
    return {grad_x, grad_v_init, grad_b_init, grad_alpha, grad_rho, grad_beta, grad_b0,
            grad_min_v};
  }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  AlifBackwardArgs<scalar_t, acc_t> args() const {
    AlifBackwardArgs<scalar_t, acc_t> a;
    // Absent upstream gradients point at the membrane (LifBackwardCall::args says why).
    const acc_t* stand_in = v_mem.const_data_ptr<acc_t>();
    a.has_g = g.defined();
    a.has_h = h.defined();
    a.has_gb = gb.defined();
    a.g = a.has_g ? g.const_data_ptr<scalar_t>() : reinterpret_cast<const scalar_t*>(stand_in);
    a.h = a.has_h ? h.const_data_ptr<acc_t>() : stand_in;
    a.gb = a.has_gb ? gb.const_data_ptr<acc_t>() : stand_in;
    a.g_last = g_last.const_data_ptr<acc_t>();
    a.gb_last = gb_last.const_data_ptr<acc_t>();
    a.v = v_mem.const_data_ptr<acc_t>();
    a.b = b.const_data_ptr<acc_t>();
    a.sigma = ptr_or_null<acc_t>(sigma);
    a.v0 = v_init.const_data_ptr<acc_t>();
    a.b0_state = b_init.const_data_ptr<acc_t>();
    a.alpha = alpha.const_data_ptr<acc_t>();
    a.rho = rho.const_data_ptr<acc_t>();
    a.beta = beta.const_data_ptr<acc_t>();
    a.b0 = b0.const_data_ptr<acc_t>();
    a.min_v = min_v.const_data_ptr<acc_t>();
    a.grad_x = grad_x.mutable_data_ptr<scalar_t>();
    a.grad_v0 = grad_v_init.mutable_data_ptr<acc_t>();
    a.grad_b0_state = grad_b_init.mutable_data_ptr<acc_t>();
    a.grad_alpha = mutable_ptr_or_null<acc_t>(grad_alpha);
    a.grad_rho = mutable_ptr_or_null<acc_t>(grad_rho);
    a.grad_beta = mutable_ptr_or_null<acc_t>(grad_beta);
    a.grad_b0 = mutable_ptr_or_null<acc_t>(grad_b0);
    a.grad_min_v = mutable_ptr_or_null<acc_t>(grad_min_v);
    a.batch = L.batch;
    a.time = L.time;
    a.features = L.features;
    a.max_spikes = max_spikes;
    a.reset = reset;
    a.gradient = gradient;
    a.p0 = acc_t(p0);
    a.p1 = acc_t(p1);
    return a;
  }
};

inline AlifBackwardCall prepare_alif_backward(
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_v_mem,
    const c10::optional<Tensor>& grad_b, const Tensor& grad_v_last, const Tensor& grad_b_last,
    const Tensor& v_mem, const Tensor& b, const c10::optional<Tensor>& sigma,
    const Tensor& v_init, const Tensor& b_init, const Tensor& alpha, const Tensor& rho,
    const Tensor& beta, const Tensor& b0, const c10::optional<Tensor>& min_v, int64_t max_spikes,
    int64_t reset, int64_t gradient, int64_t surrogate, at::ArrayRef<double> surrogate_params,
    int64_t param_grads, EmptyFn empty) {
  const Tensor& like = lif_backward_like(grad_spikes, v_mem);
  AlifBackwardCall c;
  c.L = check_alif_inputs(like, v_init, b_init, alpha, rho, beta, b0, min_v);
  check_codes(max_spikes, reset);
  const at::ScalarType acc = acc_type_of(like);
  check_trace(v_mem, "v_mem", like, acc);
  check_trace(b, "b", like, acc);
  if (grad_v_mem.has_value()) check_trace(*grad_v_mem, "grad_v_mem", like, acc);
  if (grad_b.has_value()) check_trace(*grad_b, "grad_b", like, acc);
  check_state(grad_v_last, "grad_v_last", like, acc);
  check_state(grad_b_last, "grad_b_last", like, acc);
  if (sigma.has_value()) {
    check_trace(*sigma, "sigma", like, acc);
  } else {
    check_surrogate_code(surrogate, surrogate_params);
  }
  c.g = contiguous_or_undefined(grad_spikes);
  c.h = contiguous_or_undefined(grad_v_mem);
  c.gb = contiguous_or_undefined(grad_b);
  c.g_last = grad_v_last.contiguous();
  c.gb_last = grad_b_last.contiguous();
  c.v_mem = v_mem.contiguous();
  c.b = b.contiguous();
  c.sigma = contiguous_or_undefined(sigma);
  c.v_init = v_init.contiguous();
  c.b_init = b_init.contiguous();
  c.alpha = alpha.contiguous();
  c.rho = rho.contiguous();
  c.beta = beta.contiguous();
  c.b0 = b0.contiguous();
  c.min_v = lower_bound_or_none(min_v, c.alpha);
  c.max_spikes = static_cast<int>(max_spikes);
  c.reset = static_cast<int>(reset);
  c.gradient = static_cast<int>(gradient);
  c.kind = sigma.has_value() ? kSurrogateGiven : static_cast<int>(surrogate);
  c.p0 = surrogate_params.size() > 0 ? surrogate_params[0] : 0.0;
  c.p1 = surrogate_params.size() > 1 ? surrogate_params[1] : 0.0;
  c.wanted = static_cast<int>(param_grads) & (min_v.has_value() ? ~0 : ~kAlifGradMinV);
  const auto acc_options = c.v_mem.options();
  c.grad_x = empty(like.sizes(), like.options());
  c.grad_v_init = at::empty(c.v_init.sizes(), c.v_init.options());
  c.grad_b_init = at::empty(c.b_init.sizes(), c.b_init.options());
  c.grad_alpha = param_grad_output(c.L, acc_options, c.wanted & kAlifGradAlpha);
  c.grad_rho = param_grad_output(c.L, acc_options, c.wanted & kAlifGradRho);
  c.grad_beta = param_grad_output(c.L, acc_options, c.wanted & kAlifGradBeta);
  c.grad_b0 = param_grad_output(c.L, acc_options, c.wanted & kAlifGradB0);
  c.grad_min_v = param_grad_output(c.L, acc_options, c.wanted & kAlifGradMinV);
  if (c.empty()) {  // no step: the states' gradients pass through, the sums are zero
    c.grad_v_init.copy_(c.g_last);
    c.grad_b_init.copy_(c.gb_last);
    for (Tensor* t : {&c.grad_alpha, &c.grad_rho, &c.grad_beta, &c.grad_b0, &c.grad_min_v}) {
      t->zero_();
    }
  }
  return c;
}

struct AdlifForwardCall {
  Layout L;
  Tensor x, u_init, w_init, alpha, beta, a, b, threshold;  // inputs, contiguous
  Tensor spikes, u_mem, w, u_last, w_last;                 // outputs

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> result() const {
    return {spikes, u_mem, w, u_last, w_last};
  }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  AdlifForwardArgs<scalar_t, acc_t> args() const {
    AdlifForwardArgs<scalar_t, acc_t> r;
    r.x = x.const_data_ptr<scalar_t>();
    r.u0 = u_init.const_data_ptr<acc_t>();
    r.w0 = w_init.const_data_ptr<acc_t>();
    r.alpha = alpha.const_data_ptr<acc_t>();
    r.beta = beta.const_data_ptr<acc_t>();
    r.a = a.const_data_ptr<acc_t>();
    r.b = b.const_data_ptr<acc_t>();
    r.threshold = threshold.const_data_ptr<acc_t>();
    r.spikes = spikes.mutable_data_ptr<scalar_t>();
    r.u_mem = u_mem.mutable_data_ptr<acc_t>();
    r.w = w.mutable_data_ptr<acc_t>();
    r.u_last = u_last.mutable_data_ptr<acc_t>();
    r.w_last = w_last.mutable_data_ptr<acc_t>();
    r.batch = L.batch;
    r.time = L.time;
    r.features = L.features;
    return r;
  }
};

inline AdlifForwardCall prepare_adlif_forward(const Tensor& x, const Tensor& u_init,
                                              const Tensor& w_init, const Tensor& alpha,
                                              const Tensor& beta, const Tensor& a,
                                              const Tensor& b, const Tensor& threshold,
                                              EmptyFn empty) {
  AdlifForwardCall c;
  c.L = check_adlif_inputs(x, u_init, w_init, alpha, beta, a, b, threshold);
  c.x = x.contiguous();
  c.u_init = u_init.contiguous();
  c.w_init = w_init.contiguous();
  c.alpha = alpha.contiguous();
  c.beta = beta.contiguous();
  c.a = a.contiguous();
  c.b = b.contiguous();
  c.threshold = threshold.contiguous();
  const auto acc_options = c.x.options().dtype(c.alpha.scalar_type());
  c.spikes = empty(c.x.sizes(), c.x.options());
  c.u_mem = empty(c.x.sizes(), acc_options);
  c.w = empty(c.x.sizes(), acc_options);
  c.u_last = at::empty(c.u_init.sizes(), c.u_init.options());
  c.w_last = at::empty(c.w_init.sizes(), c.w_init.options());
  if (c.empty()) {  // no step: the states pass through
    c.u_last.copy_(c.u_init);
    c.w_last.copy_(c.w_init);
  }
  return c;
}

struct AdlifBackwardCall {
  Layout L;
  Tensor g, h, k, g_u_last, g_w_last, u_mem, w, x, sigma, u_init, w_init, alpha, beta, a, b,
      threshold;
  Tensor grad_x, grad_u_init, grad_w_init, grad_alpha, grad_beta, grad_a, grad_b,
      grad_threshold;
  int gradient;
  int kind;    // surrogate code; kSurrogateGiven when sigma is passed
  int wanted;  // AdlifParamGradBit mask of the parameter gradients to compute
  double p0, p1;

  bool empty() const { return L.numel() == 0; }
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> result() const {
    return {grad_x, grad_u_init, grad_w_init, grad_alpha, grad_beta, grad_a, grad_b,
            grad_threshold};
  }

  template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
  AdlifBackwardArgs<scalar_t, acc_t> args() const {
    AdlifBackwardArgs<scalar_t, acc_t> r;
    // Absent inputs point at the membrane (LifBackwardCall::args says why).
    const acc_t* stand_in = u_mem.const_data_ptr<acc_t>();
    r.has_g = g.defined();
    r.has_h = h.defined();
    r.has_k = k.defined();
    r.has_x = x.defined();
    r.g = r.has_g ? g.const_data_ptr<scalar_t>() : reinterpret_cast<const scalar_t*>(stand_in);
    r.x = r.has_x ? x.const_data_ptr<scalar_t>() : reinterpret_cast<const scalar_t*>(stand_in);
    r.h = r.has_h ? h.const_data_ptr<acc_t>() : stand_in;
    r.k = r.has_k ? k.const_data_ptr<acc_t>() : stand_in;
    r.g_u_last = g_u_last.const_data_ptr<acc_t>();
    r.g_w_last = g_w_last.const_data_ptr<acc_t>();
    r.u = u_mem.const_data_ptr<acc_t>();
    r.w = w.const_data_ptr<acc_t>();
    r.sigma = ptr_or_null<acc_t>(sigma);
    r.u0 = u_init.const_data_ptr<acc_t>();
    r.w0 = w_init.const_data_ptr<acc_t>();
    r.alpha = alpha.const_data_ptr<acc_t>();
    r.beta = beta.const_data_ptr<acc_t>();
    r.a = a.const_data_ptr<acc_t>();
    r.b = b.const_data_ptr<acc_t>();
    r.threshold = threshold.const_data_ptr<acc_t>();
    r.grad_x = grad_x.mutable_data_ptr<scalar_t>();
    r.grad_u0 = grad_u_init.mutable_data_ptr<acc_t>();
    r.grad_w0 = grad_w_init.mutable_data_ptr<acc_t>();
    r.grad_alpha = mutable_ptr_or_null<acc_t>(grad_alpha);
    r.grad_beta = mutable_ptr_or_null<acc_t>(grad_beta);
    r.grad_a = mutable_ptr_or_null<acc_t>(grad_a);
    r.grad_b = mutable_ptr_or_null<acc_t>(grad_b);
    r.grad_threshold = mutable_ptr_or_null<acc_t>(grad_threshold);
    r.batch = L.batch;
    r.time = L.time;
    r.features = L.features;
    r.gradient = gradient;
    r.p0 = acc_t(p0);
    r.p1 = acc_t(p1);
    return r;
  }
};

inline AdlifBackwardCall prepare_adlif_backward(
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_u_mem,
    const c10::optional<Tensor>& grad_w, const Tensor& grad_u_last, const Tensor& grad_w_last,
    const Tensor& u_mem, const Tensor& w, const c10::optional<Tensor>& x,
    const c10::optional<Tensor>& sigma, const Tensor& u_init, const Tensor& w_init,
    const Tensor& alpha, const Tensor& beta, const Tensor& a, const Tensor& b,
    const Tensor& threshold, int64_t gradient, int64_t surrogate,
    at::ArrayRef<double> surrogate_params, int64_t param_grads, EmptyFn empty) {
  const Tensor& like = lif_backward_like(grad_spikes, u_mem);
  AdlifBackwardCall c;
  c.L = check_adlif_inputs(like, u_init, w_init, alpha, beta, a, b, threshold);
  const at::ScalarType acc = acc_type_of(like);
  check_trace(u_mem, "u_mem", like, acc);
  check_trace(w, "w", like, acc);
  if (grad_u_mem.has_value()) check_trace(*grad_u_mem, "grad_u_mem", like, acc);
  if (grad_w.has_value()) check_trace(*grad_w, "grad_w", like, acc);
  check_state(grad_u_last, "grad_u_last", like, acc);
  check_state(grad_w_last, "grad_w_last", like, acc);
  if (sigma.has_value()) {
    check_trace(*sigma, "sigma", like, acc);
  } else {
    check_surrogate_code(surrogate, surrogate_params);
  }
  TORCH_CHECK(gradient == kGradientExodus || gradient == kGradientSlayer,
              "exodus_lightning: unknown gradient code ", gradient);
  const int wanted = static_cast<int>(param_grads);
  TORCH_CHECK(!(wanted & kAdlifGradAlpha) || x.has_value(),
              "exodus_lightning: adlif_backward needs x for grad_alpha (param_grads bit 1)");
  if (x.has_value()) {
    check_same_shape(*x, like, "x", "grad_spikes");
    check_device(*x, "x", like);
    TORCH_CHECK(x->scalar_type() == like.scalar_type(), "exodus_lightning: x must be ",
                like.scalar_type(), " (grad_spikes' dtype, or u_mem's without it), got ",
                x->scalar_type());
  }
  c.g = contiguous_or_undefined(grad_spikes);
  c.h = contiguous_or_undefined(grad_u_mem);
  c.k = contiguous_or_undefined(grad_w);
  c.g_u_last = grad_u_last.contiguous();
  c.g_w_last = grad_w_last.contiguous();
  c.u_mem = u_mem.contiguous();
  c.w = w.contiguous();
  c.x = contiguous_or_undefined(x);
  c.sigma = contiguous_or_undefined(sigma);
  c.u_init = u_init.contiguous();
  c.w_init = w_init.contiguous();
  c.alpha = alpha.contiguous();
  c.beta = beta.contiguous();
  c.a = a.contiguous();
  c.b = b.contiguous();
  c.threshold = threshold.contiguous();
  c.gradient = static_cast<int>(gradient);
  c.kind = sigma.has_value() ? kSurrogateGiven : static_cast<int>(surrogate);
  c.p0 = surrogate_params.size() > 0 ? surrogate_params[0] : 0.0;
  c.p1 = surrogate_params.size() > 1 ? surrogate_params[1] : 0.0;
  c.wanted = wanted;
  const auto acc_options = c.u_mem.options();
  c.grad_x = empty(like.sizes(), like.options());
  c.grad_u_init = at::empty(c.u_init.sizes(), c.u_init.options());
  c.grad_w_init = at::empty(c.w_init.sizes(), c.w_init.options());
  c.grad_alpha = param_grad_output(c.L, acc_options, wanted & kAdlifGradAlpha);
  c.grad_beta = param_grad_output(c.L, acc_options, wanted & kAdlifGradBeta);
  c.grad_a = param_grad_output(c.L, acc_options, wanted & kAdlifGradA);
  c.grad_b = param_grad_output(c.L, acc_options, wanted & kAdlifGradB);
  c.grad_threshold = param_grad_output(c.L, acc_options, wanted & kAdlifGradThreshold);
  if (c.empty()) {  // no step: the states' gradients pass through, the sums are zero
    c.grad_u_init.copy_(c.g_u_last);
    c.grad_w_init.copy_(c.g_w_last);
    for (Tensor* t : {&c.grad_alpha, &c.grad_beta, &c.grad_a, &c.grad_b, &c.grad_threshold}) {
      t->zero_();
    }
  }
  return c;
}

}  // namespace exodus
