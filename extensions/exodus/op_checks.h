// Argument checks shared by the CPU and CUDA entry points. The Python wrappers
// (exodus_lightning/ops) give users friendlier errors first; these guard the raw ops.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full_like.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "lif_step.h"

namespace exodus {

// x is (batch, time, *features); the kernels see it as (batch, time, features).
struct Layout {
  int64_t batch;
  int64_t time;
  int64_t features;
  int64_t numel() const { return batch * time * features; }
};

inline Layout layout_of(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 2, "exodus_lightning: x must be (batch, time, *features), got ",
              x.dim(), " dims");
  int64_t features = 1;
  for (int64_t d = 2; d < x.dim(); ++d) features *= x.size(d);
  return Layout{x.size(0), x.size(1), features};
}

// The integer settings of the LIF ops: a spike cap the kernels' int holds, known codes.
inline void check_codes(int64_t max_spikes, int64_t reset) {
  TORCH_CHECK(max_spikes >= 0 && max_spikes <= INT32_MAX,
              "exodus_lightning: max_spikes must be 0 (unbounded) to ", INT32_MAX, ", got ",
              max_spikes);
  TORCH_CHECK(reset == kResetSubtract || reset == kResetZero,
              "exodus_lightning: unknown reset code ", reset);
}

// The parameter gradients lif_backward gives: those asked for in the param_grads mask (bits
// ParamGradBit), less min_v_mem's when there is no lower bound.
inline int wanted_param_grads(int64_t param_grads, bool has_min_v) {
  return static_cast<int>(param_grads) & (has_min_v ? ~0 : ~kGradMinV);
}

// One parameter gradient of lif_backward per (batch, feature), or (0,)-shaped when not wanted.
inline at::Tensor param_grad_output(const Layout& L, const at::TensorOptions& options,
                                    bool wanted) {
  return wanted ? at::empty({L.batch, L.features}, options) : at::empty({0}, options);
}

// Nothing to write for a (0,)-shaped output (a gradient that was not asked for).
template <typename T>
T* mutable_ptr_or_null(const at::Tensor& t) {
  return t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr;
}

inline std::vector<int64_t> state_shape(const at::Tensor& x) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.erase(shape.begin() + 1);
  return shape;
}

inline void check_same_shape(const at::Tensor& a, const at::Tensor& b, const char* a_name,
                             const char* b_name) {
  TORCH_CHECK(a.sizes() == b.sizes(), "exodus_lightning: ", a_name, " has shape ", a.sizes(),
              " but ", b_name, " has shape ", b.sizes());
}

inline void check_parameter(const at::Tensor& p, const char* name, const Layout& L,
                            const at::Tensor& x, at::ScalarType acc) {
  TORCH_CHECK(p.dim() == 1 && p.size(0) == L.features, "exodus_lightning: ", name,
              " must be 1-D with one value per feature (", L.features, "), got ", p.sizes());
  TORCH_CHECK(p.scalar_type() == acc, "exodus_lightning: ", name, " must be ", acc, ", got ",
              p.scalar_type());
  TORCH_CHECK(p.device() == x.device(), "exodus_lightning: ", name, " is on ", p.device(),
              " but x is on ", x.device());
}

inline at::ScalarType acc_type_of(const at::Tensor& x) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "exodus_lightning: x must be a floating tensor, got ", x.scalar_type());
  return at::toOpMathType(x.scalar_type());
}

inline void check_state(const at::Tensor& v, const char* name, const at::Tensor& x,
                        at::ScalarType acc) {
  TORCH_CHECK(v.sizes() == at::IntArrayRef(state_shape(x)), "exodus_lightning: ", name,
              " must have shape (batch, *features) = ", at::IntArrayRef(state_shape(x)),
              ", got ", v.sizes());
  TORCH_CHECK(v.scalar_type() == acc, "exodus_lightning: ", name, " must be ", acc, ", got ",
              v.scalar_type());
  TORCH_CHECK(v.device() == x.device(), "exodus_lightning: ", name, " is on ", v.device(),
              " but x is on ", x.device());
}

inline Layout check_lif_inputs(const at::Tensor& x, const at::Tensor& v_init,
                               const at::Tensor& alpha, const at::Tensor& threshold,
                               const at::Tensor& subtract,
                               const c10::optional<at::Tensor>& min_v) {
  const Layout L = layout_of(x);
  const at::ScalarType acc = acc_type_of(x);
  check_state(v_init, "v_init", x, acc);
  check_parameter(alpha, "alpha", L, x, acc);
  check_parameter(threshold, "threshold", L, x, acc);
  check_parameter(subtract, "subtract", L, x, acc);
  if (min_v.has_value()) check_parameter(*min_v, "min_v_mem", L, x, acc);
  return L;
}

inline void check_device(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK(t.device() == x.device(), "exodus_lightning: ", name, " is on ", t.device(),
              " but the other inputs are on ", x.device());
}

inline void check_surrogate_code(int64_t surrogate, at::ArrayRef<double> surrogate_params) {
  TORCH_CHECK(surrogate >= 0 && surrogate <= 6,
              "exodus_lightning: unknown built-in surrogate code ", surrogate,
              " (pass sigma for a custom surrogate)");
  TORCH_CHECK(surrogate_params.size() == 2,
              "exodus_lightning: built-in surrogates take 2 parameters, got ",
              surrogate_params.size());
}

// The tensor that stands for x in lif_backward: grad_spikes (x's dtype), or v_mem when there is
// no spike gradient (grad_x then comes back in the state dtype).
inline const at::Tensor& lif_backward_like(const c10::optional<at::Tensor>& grad_spikes,
                                           const at::Tensor& v_mem) {
  return grad_spikes.has_value() ? *grad_spikes : v_mem;
}

inline void check_lif_backward_inputs(const c10::optional<at::Tensor>& grad_spikes,
                                      const c10::optional<at::Tensor>& grad_v_mem,
                                      const at::Tensor& grad_v_last, const at::Tensor& v_mem,
                                      const c10::optional<at::Tensor>& sigma,
                                      const at::Tensor& v_init, int64_t surrogate,
                                      at::ArrayRef<double> surrogate_params) {
  const at::Tensor& like = lif_backward_like(grad_spikes, v_mem);
  const at::ScalarType acc = acc_type_of(like);
  check_same_shape(v_mem, like, "v_mem", "grad_spikes");
  check_device(v_mem, "v_mem", like);
  TORCH_CHECK(v_mem.scalar_type() == acc, "exodus_lightning: v_mem must be ", acc);
  if (grad_v_mem.has_value()) {
    check_same_shape(*grad_v_mem, v_mem, "grad_v_mem", "v_mem");
    check_device(*grad_v_mem, "grad_v_mem", like);
    TORCH_CHECK(grad_v_mem->scalar_type() == acc, "exodus_lightning: grad_v_mem must be ", acc);
  }
  check_state(grad_v_last, "grad_v_last", like, acc);
  check_state(v_init, "v_init", like, acc);
  if (sigma.has_value()) {
    check_same_shape(*sigma, v_mem, "sigma", "v_mem");
    check_device(*sigma, "sigma", like);
    TORCH_CHECK(sigma->scalar_type() == acc, "exodus_lightning: sigma must be ", acc);
  } else {
    check_surrogate_code(surrogate, surrogate_params);
  }
}

inline Layout check_leaky_inputs(const at::Tensor& x, const at::Tensor& v_init,
                                 const at::Tensor& alpha) {
  const Layout L = layout_of(x);
  const at::ScalarType acc = acc_type_of(x);
  check_state(v_init, "v_init", x, acc);
  check_parameter(alpha, "alpha", L, x, acc);
  return L;
}

inline Layout check_leaky_backward_inputs(const at::Tensor& grad_y, const at::Tensor& grad_y_last,
                                          const at::Tensor& y, const at::Tensor& v_init,
                                          const at::Tensor& alpha) {
  const Layout L = check_leaky_inputs(grad_y, v_init, alpha);
  check_same_shape(y, grad_y, "y", "grad_y");
  check_device(y, "y", grad_y);
  TORCH_CHECK(y.scalar_type() == grad_y.scalar_type(), "exodus_lightning: y must be ",
              grad_y.scalar_type(), ", got ", y.scalar_type());
  check_state(grad_y_last, "grad_y_last", grad_y, acc_type_of(grad_y));
  return L;
}

inline Layout check_alif_inputs(const at::Tensor& x, const at::Tensor& v_init,
                                const at::Tensor& b_init, const at::Tensor& alpha,
                                const at::Tensor& rho, const at::Tensor& beta,
                                const at::Tensor& b0, const c10::optional<at::Tensor>& min_v) {
  const Layout L = layout_of(x);
  const at::ScalarType acc = acc_type_of(x);
  check_state(v_init, "v_init", x, acc);
  check_state(b_init, "b_init", x, acc);
  check_parameter(alpha, "alpha", L, x, acc);
  check_parameter(rho, "rho", L, x, acc);
  check_parameter(beta, "beta", L, x, acc);
  check_parameter(b0, "b0", L, x, acc);
  if (min_v.has_value()) check_parameter(*min_v, "min_v_mem", L, x, acc);
  return L;
}

// A saved or upstream (B, T, N) tensor of alif_backward: v_mem's shape, the state dtype.
inline void check_trace(const at::Tensor& t, const char* name, const at::Tensor& like,
                        at::ScalarType acc) {
  check_same_shape(t, like, name, "grad_spikes");
  check_device(t, name, like);
  TORCH_CHECK(t.scalar_type() == acc, "exodus_lightning: ", name, " must be ", acc, ", got ",
              t.scalar_type());
}

inline Layout check_adlif_inputs(const at::Tensor& x, const at::Tensor& u_init,
                                 const at::Tensor& w_init, const at::Tensor& alpha,
                                 const at::Tensor& beta, const at::Tensor& a,
                                 const at::Tensor& b, const at::Tensor& threshold) {
  const Layout L = layout_of(x);
  const at::ScalarType acc = acc_type_of(x);
  check_state(u_init, "u_init", x, acc);
  check_state(w_init, "w_init", x, acc);
  check_parameter(alpha, "alpha", L, x, acc);
  check_parameter(beta, "beta", L, x, acc);
  check_parameter(a, "a", L, x, acc);
  check_parameter(b, "b", L, x, acc);
  check_parameter(threshold, "threshold", L, x, acc);
  return L;
}

// min_v_mem as one value per feature; NaN (never clipped, see NeuronParams) when absent, so the
// loops have no branch.
inline at::Tensor lower_bound_or_none(const c10::optional<at::Tensor>& min_v,
                                      const at::Tensor& like) {
  if (min_v.has_value()) return min_v->contiguous();
  return at::full_like(like, std::numeric_limits<double>::quiet_NaN());
}

inline at::Tensor contiguous_or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

}  // namespace exodus
