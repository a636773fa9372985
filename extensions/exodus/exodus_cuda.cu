// CUDA kernels of the EXODUS ops: one thread per (batch, feature) element, looping over time.
// Neighbouring threads handle neighbouring features, so every load and store of a time step is
// coalesced in the natural (batch, time, features) layout; the work per element is O(T).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "lif_step.h"
#include "op_checks.h"

namespace exodus {
namespace {

using at::Tensor;

constexpr int kThreads = 256;

template <typename acc_t>
__device__ __forceinline__ NeuronParams<acc_t> gather_params(const acc_t* alpha,
                                                             const acc_t* threshold,
                                                             const acc_t* subtract,
                                                             const acc_t* min_v, int64_t n) {
  return NeuronParams<acc_t>{alpha[n], threshold[n], subtract[n], min_v[n]};
}

template <typename scalar_t, typename acc_t>
__global__ void lif_forward_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ v0,
                                   const acc_t* __restrict__ alpha,
                                   const acc_t* __restrict__ threshold,
                                   const acc_t* __restrict__ subtract,
                                   const acc_t* __restrict__ min_v, scalar_t* __restrict__ spikes,
                                   acc_t* __restrict__ v_mem, acc_t* __restrict__ v_last,
                                   int64_t B, int64_t T, int64_t N, int max_spikes, int reset) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= B * N) return;
  const int64_t b = e / N, n = e % N;
  const NeuronParams<acc_t> p = gather_params(alpha, threshold, subtract, min_v, n);
  acc_t state = v0[e];
  for (int64_t t = 0; t < T; ++t) {
    const int64_t i = (b * T + t) * N + n;
    acc_t s;
    v_mem[i] = lif_forward_step(p, static_cast<acc_t>(x[i]), state, s, max_spikes, reset);
    spikes[i] = static_cast<scalar_t>(s);
  }
  v_last[e] = state;
}

template <int Kind, typename scalar_t, typename acc_t>
__global__ void lif_backward_kernel(
    const scalar_t* __restrict__ g, const acc_t* __restrict__ h, const acc_t* __restrict__ g_last,
    const acc_t* __restrict__ v_mem, const acc_t* __restrict__ sigma, const acc_t* __restrict__ v0,
    const acc_t* __restrict__ alpha, const acc_t* __restrict__ threshold,
    const acc_t* __restrict__ subtract, const acc_t* __restrict__ min_v,
    scalar_t* __restrict__ grad_x, acc_t* __restrict__ grad_v0, acc_t* __restrict__ grad_alpha,
    acc_t* __restrict__ grad_threshold, acc_t* __restrict__ grad_subtract,
    acc_t* __restrict__ grad_min_v, int64_t B, int64_t T, int64_t N, int max_spikes, int reset,
    int gradient, acc_t p0, acc_t p1) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= B * N) return;
  const int64_t b = e / N, n = e % N;
  const NeuronParams<acc_t> p = gather_params(alpha, threshold, subtract, min_v, n);
  const SurrogateCoeffs<acc_t> coeffs = surrogate_setup<Kind>(p.threshold, p0, p1);
  acc_t rho = g_last[e];
  ParamGrads<acc_t> sums;
  acc_t v = v_mem[(b * T + T - 1) * N + n];
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t i = (b * T + t) * N + n;
    const acc_t s = spike_count(v, p.threshold, max_spikes);
    acc_t sg;
    if constexpr (Kind == kSurrogateGiven) {
      sg = sigma[i];
    } else {
      sg = surrogate_grad<Kind>(v, p.threshold, coeffs);
    }
    acc_t v_prev = acc_t(0);
    acc_t v_plus_prev;
    if (t > 0) {
      v_prev = v_mem[i - N];
      v_plus_prev = post_reset_state(p, v_prev, spike_count(v_prev, p.threshold, max_spikes), reset);
    } else {
      v_plus_prev = v0[e];
    }
    const acc_t lambda = lif_backward_step(p, v, s, sg, static_cast<acc_t>(g[i]),
                                           h ? h[i] : acc_t(0), v_plus_prev, rho, sums, reset,
                                           gradient);
    grad_x[i] = static_cast<scalar_t>(lambda);
    v = v_prev;
  }
  grad_v0[e] = rho;
  // Only the wanted parameter gradients have an output (the others' pointers are null).
  if (grad_alpha) grad_alpha[e] = sums.alpha;
  if (grad_threshold) grad_threshold[e] = sums.threshold;
  if (grad_subtract) grad_subtract[e] = sums.subtract;
  if (grad_min_v) grad_min_v[e] = sums.min_v;
}

template <typename scalar_t, typename acc_t>
__global__ void leaky_forward_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ v0,
                                     const acc_t* __restrict__ alpha, scalar_t* __restrict__ y,
                                     acc_t* __restrict__ y_last, int64_t B, int64_t T, int64_t N) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= B * N) return;
  const int64_t b = e / N, n = e % N;
  const acc_t a = alpha[n];
  acc_t state = v0[e];
  for (int64_t t = 0; t < T; ++t) {
    const int64_t i = (b * T + t) * N + n;
    state = a * state + static_cast<acc_t>(x[i]);
    y[i] = static_cast<scalar_t>(state);
  }
  y_last[e] = state;
}

template <typename scalar_t, typename acc_t>
__global__ void leaky_backward_kernel(const scalar_t* __restrict__ g,
                                      const acc_t* __restrict__ g_last,
                                      const scalar_t* __restrict__ y, const acc_t* __restrict__ v0,
                                      const acc_t* __restrict__ alpha,
                                      scalar_t* __restrict__ grad_x, acc_t* __restrict__ grad_v0,
                                      acc_t* __restrict__ grad_alpha, int64_t B, int64_t T,
                                      int64_t N) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= B * N) return;
  const int64_t b = e / N, n = e % N;
  const acc_t a = alpha[n];
  acc_t mu_next = g_last[e];
  acc_t sum_alpha = acc_t(0);
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t i = (b * T + t) * N + n;
    const acc_t mu = static_cast<acc_t>(g[i]) + mu_next;
    const acc_t y_prev = t > 0 ? static_cast<acc_t>(y[i - N]) : v0[e];
    sum_alpha += mu * y_prev;
    mu_next = a * mu;
    grad_x[i] = static_cast<scalar_t>(mu);
  }
  grad_v0[e] = mu_next;
  grad_alpha[e] = sum_alpha;
}

unsigned int blocks_for(int64_t elements) {
  return static_cast<unsigned int>((elements + kThreads - 1) / kThreads);
}

// min_v_mem as one value per feature; -inf (no clip) when absent, so the kernels have no branch.
Tensor lower_bound_or_none(const c10::optional<Tensor>& min_v, const Tensor& like) {
  if (min_v.has_value()) return min_v->contiguous();
  return at::full_like(like, -std::numeric_limits<double>::infinity());
}

const Tensor contiguous_or_undefined(const c10::optional<Tensor>& t) {
  return t.has_value() ? t->contiguous() : Tensor();
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

std::tuple<Tensor, Tensor, Tensor> lif_forward_cuda(const Tensor& x_in, const Tensor& v_init_in,
                                                    const Tensor& alpha_in,
                                                    const Tensor& threshold_in,
                                                    const Tensor& subtract_in,
                                                    const c10::optional<Tensor>& min_v_in,
                                                    int64_t max_spikes, int64_t reset,
                                                    int64_t gradient, int64_t surrogate,
                                                    at::ArrayRef<double> surrogate_params) {
  (void)gradient;
  (void)surrogate;
  (void)surrogate_params;
  const Layout L = check_lif_inputs(x_in, v_init_in, alpha_in, threshold_in, subtract_in, min_v_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Tensor x = x_in.contiguous(), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous(), threshold = threshold_in.contiguous();
  const Tensor subtract = subtract_in.contiguous();
  const Tensor min_v = lower_bound_or_none(min_v_in, alpha);
  Tensor spikes = at::empty_like(x);
  Tensor v_mem = at::empty(x.sizes(), x.options().dtype(alpha.scalar_type()));
  Tensor v_last = at::empty_like(v_init);
  if (L.numel() == 0) {
    v_last.copy_(v_init);
    return {spikes, v_mem, v_last};
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "exodus_lif_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        lif_forward_kernel<scalar_t, acc_t>
            <<<blocks_for(L.batch * L.features), kThreads, 0, stream>>>(
                x.const_data_ptr<scalar_t>(), v_init.const_data_ptr<acc_t>(),
                alpha.const_data_ptr<acc_t>(), threshold.const_data_ptr<acc_t>(),
                subtract.const_data_ptr<acc_t>(), min_v.const_data_ptr<acc_t>(),
                spikes.mutable_data_ptr<scalar_t>(), v_mem.mutable_data_ptr<acc_t>(),
                v_last.mutable_data_ptr<acc_t>(), L.batch, L.time, L.features,
                static_cast<int>(max_spikes), static_cast<int>(reset));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {spikes, v_mem, v_last};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lif_backward_cuda(
    const Tensor& grad_spikes_in, const c10::optional<Tensor>& grad_v_mem_in,
    const Tensor& grad_v_last_in, const Tensor& v_mem_in, const c10::optional<Tensor>& sigma_in,
    const Tensor& v_init_in, const Tensor& alpha_in, const Tensor& threshold_in,
    const Tensor& subtract_in, const c10::optional<Tensor>& min_v_in, int64_t max_spikes,
    int64_t reset, int64_t gradient, int64_t surrogate, at::ArrayRef<double> surrogate_params,
    int64_t param_grads) {
  const Layout L =
      check_lif_inputs(grad_spikes_in, v_init_in, alpha_in, threshold_in, subtract_in, min_v_in);
  check_lif_backward_inputs(grad_spikes_in, grad_v_mem_in, grad_v_last_in, v_mem_in, sigma_in,
                            v_init_in, surrogate, surrogate_params);
  const c10::cuda::CUDAGuard guard(grad_spikes_in.device());
  const Tensor g = grad_spikes_in.contiguous(), h = contiguous_or_undefined(grad_v_mem_in);
  const Tensor g_last = grad_v_last_in.contiguous(), v_mem = v_mem_in.contiguous();
  const Tensor sigma = contiguous_or_undefined(sigma_in), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous(), threshold = threshold_in.contiguous();
  const Tensor subtract = subtract_in.contiguous();
  const Tensor min_v = lower_bound_or_none(min_v_in, alpha);
  const auto acc_options = v_mem.options();
  Tensor grad_x = at::empty_like(g);
  Tensor grad_v_init = at::empty_like(v_init);
  const int wanted = wanted_param_grads(param_grads, min_v_in.has_value());
  Tensor grad_alpha = param_grad_output(L, acc_options, wanted & kGradAlpha);
  Tensor grad_threshold = param_grad_output(L, acc_options, wanted & kGradThreshold);
  Tensor grad_subtract = param_grad_output(L, acc_options, wanted & kGradSubtract);
  Tensor grad_min_v = param_grad_output(L, acc_options, wanted & kGradMinV);
  if (L.numel() == 0) {
    grad_v_init.copy_(g_last);
    grad_alpha.zero_();
    grad_threshold.zero_();
    grad_subtract.zero_();
    grad_min_v.zero_();
    return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, g.scalar_type(), "exodus_lif_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t p0 = surrogate_params.size() > 0 ? acc_t(surrogate_params[0]) : acc_t(0);
        const acc_t p1 = surrogate_params.size() > 1 ? acc_t(surrogate_params[1]) : acc_t(0);
        const int kind = sigma.defined() ? kSurrogateGiven : static_cast<int>(surrogate);
        dispatch_surrogate(kind, [&](auto kind_constant) {
          constexpr int Kind = decltype(kind_constant)::value;
          lif_backward_kernel<Kind, scalar_t, acc_t>
              <<<blocks_for(L.batch * L.features), kThreads, 0, stream>>>(
                  g.const_data_ptr<scalar_t>(), ptr_or_null<acc_t>(h),
                  g_last.const_data_ptr<acc_t>(), v_mem.const_data_ptr<acc_t>(),
                  ptr_or_null<acc_t>(sigma), v_init.const_data_ptr<acc_t>(),
                  alpha.const_data_ptr<acc_t>(), threshold.const_data_ptr<acc_t>(),
                  subtract.const_data_ptr<acc_t>(), min_v.const_data_ptr<acc_t>(),
                  grad_x.mutable_data_ptr<scalar_t>(), grad_v_init.mutable_data_ptr<acc_t>(),
                  mutable_ptr_or_null<acc_t>(grad_alpha),
                  mutable_ptr_or_null<acc_t>(grad_threshold),
                  mutable_ptr_or_null<acc_t>(grad_subtract),
                  mutable_ptr_or_null<acc_t>(grad_min_v),
                  L.batch, L.time, L.features, static_cast<int>(max_spikes),
                  static_cast<int>(reset), static_cast<int>(gradient), p0, p1);
        });
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
}

std::tuple<Tensor, Tensor> leaky_forward_cuda(const Tensor& x_in, const Tensor& v_init_in,
                                              const Tensor& alpha_in) {
  const Layout L = check_leaky_inputs(x_in, v_init_in, alpha_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Tensor x = x_in.contiguous(), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  Tensor y = at::empty_like(x);
  Tensor y_last = at::empty_like(v_init);
  if (L.numel() == 0) {
    y_last.copy_(v_init);
    return {y, y_last};
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "exodus_leaky_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        leaky_forward_kernel<scalar_t, acc_t>
            <<<blocks_for(L.batch * L.features), kThreads, 0, stream>>>(
                x.const_data_ptr<scalar_t>(), v_init.const_data_ptr<acc_t>(),
                alpha.const_data_ptr<acc_t>(), y.mutable_data_ptr<scalar_t>(),
                y_last.mutable_data_ptr<acc_t>(), L.batch, L.time, L.features);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {y, y_last};
}

std::tuple<Tensor, Tensor, Tensor> leaky_backward_cuda(const Tensor& grad_y_in,
                                                       const Tensor& grad_y_last_in,
                                                       const Tensor& y_in,
                                                       const Tensor& v_init_in,
                                                       const Tensor& alpha_in) {
  const Layout L = check_leaky_inputs(grad_y_in, v_init_in, alpha_in);
  check_same_shape(y_in, grad_y_in, "y", "grad_y");
  check_same_shape(grad_y_last_in, v_init_in, "grad_y_last", "v_init");
  const c10::cuda::CUDAGuard guard(grad_y_in.device());
  const Tensor g = grad_y_in.contiguous(), g_last = grad_y_last_in.contiguous();
  const Tensor y = y_in.contiguous(), v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  Tensor grad_x = at::empty_like(g);
  Tensor grad_v_init = at::empty_like(v_init);
  Tensor grad_alpha = at::empty({L.batch, L.features}, alpha.options());
  if (L.numel() == 0) {
    grad_v_init.copy_(g_last);
    grad_alpha.zero_();
    return {grad_x, grad_v_init, grad_alpha};
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, g.scalar_type(), "exodus_leaky_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        leaky_backward_kernel<scalar_t, acc_t>
            <<<blocks_for(L.batch * L.features), kThreads, 0, stream>>>(
                g.const_data_ptr<scalar_t>(), g_last.const_data_ptr<acc_t>(),
                y.const_data_ptr<scalar_t>(), v_init.const_data_ptr<acc_t>(),
                alpha.const_data_ptr<acc_t>(), grad_x.mutable_data_ptr<scalar_t>(),
                grad_v_init.mutable_data_ptr<acc_t>(), grad_alpha.mutable_data_ptr<acc_t>(),
                L.batch, L.time, L.features);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {grad_x, grad_v_init, grad_alpha};
}

}  // namespace

TORCH_LIBRARY_IMPL(exodus_lightning, CUDA, m) {
  m.impl("lif_forward", &lif_forward_cuda);
  m.impl("lif_backward", &lif_backward_cuda);
  m.impl("leaky_forward", &leaky_forward_cuda);
  m.impl("leaky_backward", &leaky_backward_cuda);
}

}  // namespace exodus
