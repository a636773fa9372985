// CPU kernels of the EXODUS ops: parallel over (batch, block of features), time loop outside,
// contiguous loop over the features of a block inside (the natural (batch, time, features)
// layout, so no transpose is needed).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>

#include "lif_step.h"
#include "op_checks.h"

namespace exodus {
namespace {

using at::Tensor;

// Features handled together by one task: long enough rows for the prefetcher, small enough that
// the per-neuron state of a block stays in L1.
constexpr int64_t kBlock = 256;

template <typename acc_t>
NeuronParams<acc_t> gather_params(const acc_t* alpha, const acc_t* threshold,
                                  const acc_t* subtract, const acc_t* min_v, int64_t n) {
  return NeuronParams<acc_t>{alpha[n], threshold[n], subtract[n], min_v ? min_v[n] : acc_t(0),
                             min_v != nullptr};
}

// Calls fn(b, n0, n1) for every (batch, feature block) in parallel.
template <typename Fn>
void for_each_block(int64_t batch, int64_t features, const Fn& fn) {
  const int64_t blocks = (features + kBlock - 1) / kBlock;
  at::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks;
      const int64_t n0 = (task % blocks) * kBlock;
      fn(b, n0, std::min(features, n0 + kBlock));
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> lif_forward_cpu(const Tensor& x_in, const Tensor& v_init_in,
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
  const Tensor x = x_in.contiguous();
  const Tensor v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  const Tensor threshold = threshold_in.contiguous();
  const Tensor subtract = subtract_in.contiguous();
  const Tensor min_v = min_v_in.has_value() ? min_v_in->contiguous() : Tensor();
  Tensor spikes = at::empty_like(x);
  Tensor v_mem = at::empty(x.sizes(), x.options().dtype(alpha.scalar_type()));
  Tensor v_last = at::empty_like(v_init);
  if (L.numel() == 0) {
    v_last.copy_(v_init);
    return {spikes, v_mem, v_last};
  }

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "exodus_lif_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        scalar_t* sp = spikes.mutable_data_ptr<scalar_t>();
        acc_t* vp = v_mem.mutable_data_ptr<acc_t>();
        const acc_t* v0 = v_init.const_data_ptr<acc_t>();
        acc_t* vl = v_last.mutable_data_ptr<acc_t>();
        const acc_t* al = alpha.const_data_ptr<acc_t>();
        const acc_t* th = threshold.const_data_ptr<acc_t>();
        const acc_t* su = subtract.const_data_ptr<acc_t>();
        const acc_t* mv = min_v.defined() ? min_v.const_data_ptr<acc_t>() : nullptr;
        const int64_t T = L.time, N = L.features;
        const int ms = static_cast<int>(max_spikes);
        const int rs = static_cast<int>(reset);
        for_each_block(L.batch, N, [&](int64_t b, int64_t n0, int64_t n1) {
          acc_t state[kBlock];
          for (int64_t n = n0; n < n1; ++n) state[n - n0] = v0[b * N + n];
          for (int64_t t = 0; t < T; ++t) {
            const int64_t row = (b * T + t) * N;
            for (int64_t n = n0; n < n1; ++n) {
              const NeuronParams<acc_t> p = gather_params(al, th, su, mv, n);
              acc_t s;
              vp[row + n] = lif_forward_step(p, static_cast<acc_t>(xp[row + n]), state[n - n0],
                                             s, ms, rs);
              sp[row + n] = static_cast<scalar_t>(s);
            }
          }
          for (int64_t n = n0; n < n1; ++n) vl[b * N + n] = state[n - n0];
        });
      });
  return {spikes, v_mem, v_last};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lif_backward_cpu(
    const Tensor& grad_spikes_in, const c10::optional<Tensor>& grad_v_mem_in,
    const Tensor& grad_v_last_in, const Tensor& v_mem_in, const c10::optional<Tensor>& sigma_in,
    const Tensor& v_init_in, const Tensor& alpha_in, const Tensor& threshold_in,
    const Tensor& subtract_in, const c10::optional<Tensor>& min_v_in, int64_t max_spikes,
    int64_t reset, int64_t gradient, int64_t surrogate, at::ArrayRef<double> surrogate_params) {
  const Layout L =
      check_lif_inputs(grad_spikes_in, v_init_in, alpha_in, threshold_in, subtract_in, min_v_in);
  check_lif_backward_inputs(grad_spikes_in, grad_v_mem_in, grad_v_last_in, v_mem_in, sigma_in,
                            v_init_in, surrogate, surrogate_params);
  const Tensor g = grad_spikes_in.contiguous();
  const Tensor h = grad_v_mem_in.has_value() ? grad_v_mem_in->contiguous() : Tensor();
  const Tensor g_last = grad_v_last_in.contiguous();
  const Tensor v_mem = v_mem_in.contiguous();
  const Tensor sigma = sigma_in.has_value() ? sigma_in->contiguous() : Tensor();
  const Tensor v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  const Tensor threshold = threshold_in.contiguous();
  const Tensor subtract = subtract_in.contiguous();
  const Tensor min_v = min_v_in.has_value() ? min_v_in->contiguous() : Tensor();

  const auto acc_options = v_mem.options();
  Tensor grad_x = at::empty_like(g);
  Tensor grad_v_init = at::empty_like(v_init);
  Tensor grad_alpha = at::empty({L.batch, L.features}, acc_options);
  Tensor grad_threshold = at::empty({L.batch, L.features}, acc_options);
  Tensor grad_subtract = at::empty({L.batch, L.features}, acc_options);
  Tensor grad_min_v = min_v.defined() ? at::empty({L.batch, L.features}, acc_options)
                                      : at::empty({0}, acc_options);
  if (L.numel() == 0) {
    grad_v_init.copy_(g_last);
    grad_alpha.zero_();
    grad_threshold.zero_();
    grad_subtract.zero_();
    grad_min_v.zero_();
    return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
  }

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, g.scalar_type(), "exodus_lif_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const acc_t* hp = h.defined() ? h.const_data_ptr<acc_t>() : nullptr;
        const acc_t* glp = g_last.const_data_ptr<acc_t>();
        const acc_t* vp = v_mem.const_data_ptr<acc_t>();
        const acc_t* sgp = sigma.defined() ? sigma.const_data_ptr<acc_t>() : nullptr;
        const acc_t* v0 = v_init.const_data_ptr<acc_t>();
        const acc_t* al = alpha.const_data_ptr<acc_t>();
        const acc_t* th = threshold.const_data_ptr<acc_t>();
        const acc_t* su = subtract.const_data_ptr<acc_t>();
        const acc_t* mv = min_v.defined() ? min_v.const_data_ptr<acc_t>() : nullptr;
        scalar_t* gxp = grad_x.mutable_data_ptr<scalar_t>();
        acc_t* gv0 = grad_v_init.mutable_data_ptr<acc_t>();
        acc_t* ga = grad_alpha.mutable_data_ptr<acc_t>();
        acc_t* gth = grad_threshold.mutable_data_ptr<acc_t>();
        acc_t* gsu = grad_subtract.mutable_data_ptr<acc_t>();
        acc_t* gmv = min_v.defined() ? grad_min_v.mutable_data_ptr<acc_t>() : nullptr;
        const int64_t T = L.time, N = L.features;
        const int ms = static_cast<int>(max_spikes);
        const int rs = static_cast<int>(reset);
        const int gr = static_cast<int>(gradient);
        const int kind = static_cast<int>(surrogate);
        const acc_t p0 = surrogate_params.size() > 0 ? acc_t(surrogate_params[0]) : acc_t(0);
        const acc_t p1 = surrogate_params.size() > 1 ? acc_t(surrogate_params[1]) : acc_t(0);
        for_each_block(L.batch, N, [&](int64_t b, int64_t n0, int64_t n1) {
          acc_t rho[kBlock];
          acc_t v_now[kBlock];
          ParamGrads<acc_t> sums[kBlock];
          for (int64_t n = n0; n < n1; ++n) {
            rho[n - n0] = glp[b * N + n];
            v_now[n - n0] = vp[(b * T + T - 1) * N + n];
            sums[n - n0] = ParamGrads<acc_t>();
          }
          for (int64_t t = T - 1; t >= 0; --t) {
            const int64_t row = (b * T + t) * N;
            for (int64_t n = n0; n < n1; ++n) {
              const int64_t i = n - n0;
              const NeuronParams<acc_t> p = gather_params(al, th, su, mv, n);
              const acc_t v = v_now[i];
              const acc_t s = spike_count(v, p.threshold, ms);
              const acc_t sg =
                  sgp ? sgp[row + n] : surrogate_grad(kind, v, p.threshold, p0, p1);
              acc_t v_plus_prev;
              if (t > 0) {
                const acc_t v_prev = vp[row - N + n];
                v_plus_prev = reset_membrane(v_prev, spike_count(v_prev, p.threshold, ms),
                                             p.subtract, rs);
                v_now[i] = v_prev;
              } else {
                v_plus_prev = v0[b * N + n];
              }
              const acc_t lambda =
                  lif_backward_step(p, v, s, sg, static_cast<acc_t>(gp[row + n]),
                                    hp ? hp[row + n] : acc_t(0), v_plus_prev, rho[i], sums[i],
                                    rs, gr);
              gxp[row + n] = static_cast<scalar_t>(lambda);
            }
          }
          for (int64_t n = n0; n < n1; ++n) {
            const int64_t i = n - n0, o = b * N + n;
            gv0[o] = rho[i];
            ga[o] = sums[i].alpha;
            gth[o] = sums[i].threshold;
            gsu[o] = sums[i].subtract;
            if (gmv) gmv[o] = sums[i].min_v;
          }
        });
      });
  return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
}

std::tuple<Tensor, Tensor> leaky_forward_cpu(const Tensor& x_in, const Tensor& v_init_in,
                                             const Tensor& alpha_in) {
  const Layout L = check_leaky_inputs(x_in, v_init_in, alpha_in);
  const Tensor x = x_in.contiguous();
  const Tensor v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  Tensor y = at::empty_like(x);
  Tensor y_last = at::empty_like(v_init);
  if (L.numel() == 0) {
    y_last.copy_(v_init);
    return {y, y_last};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "exodus_leaky_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        scalar_t* yp = y.mutable_data_ptr<scalar_t>();
        const acc_t* v0 = v_init.const_data_ptr<acc_t>();
        acc_t* yl = y_last.mutable_data_ptr<acc_t>();
        const acc_t* al = alpha.const_data_ptr<acc_t>();
        const int64_t T = L.time, N = L.features;
        for_each_block(L.batch, N, [&](int64_t b, int64_t n0, int64_t n1) {
          acc_t state[kBlock];
          for (int64_t n = n0; n < n1; ++n) state[n - n0] = v0[b * N + n];
          for (int64_t t = 0; t < T; ++t) {
            const int64_t row = (b * T + t) * N;
            for (int64_t n = n0; n < n1; ++n) {
              acc_t& i_syn = state[n - n0];
              i_syn = al[n] * i_syn + static_cast<acc_t>(xp[row + n]);
              yp[row + n] = static_cast<scalar_t>(i_syn);
            }
          }
          for (int64_t n = n0; n < n1; ++n) yl[b * N + n] = state[n - n0];
        });
      });
  return {y, y_last};
}

std::tuple<Tensor, Tensor, Tensor> leaky_backward_cpu(const Tensor& grad_y_in,
                                                      const Tensor& grad_y_last_in,
                                                      const Tensor& y_in, const Tensor& v_init_in,
                                                      const Tensor& alpha_in) {
  const Layout L = check_leaky_inputs(grad_y_in, v_init_in, alpha_in);
  check_same_shape(y_in, grad_y_in, "y", "grad_y");
  check_same_shape(grad_y_last_in, v_init_in, "grad_y_last", "v_init");
  const Tensor g = grad_y_in.contiguous();
  const Tensor g_last = grad_y_last_in.contiguous();
  const Tensor y = y_in.contiguous();
  const Tensor v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  Tensor grad_x = at::empty_like(g);
  Tensor grad_v_init = at::empty_like(v_init);
  Tensor grad_alpha = at::empty({L.batch, L.features}, alpha.options());
  if (L.numel() == 0) {
    grad_v_init.copy_(g_last);
    grad_alpha.zero_();
    return {grad_x, grad_v_init, grad_alpha};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, g.scalar_type(), "exodus_leaky_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const acc_t* glp = g_last.const_data_ptr<acc_t>();
        const scalar_t* yp = y.const_data_ptr<scalar_t>();
        const acc_t* v0 = v_init.const_data_ptr<acc_t>();
        const acc_t* al = alpha.const_data_ptr<acc_t>();
        scalar_t* gxp = grad_x.mutable_data_ptr<scalar_t>();
        acc_t* gv0 = grad_v_init.mutable_data_ptr<acc_t>();
        acc_t* ga = grad_alpha.mutable_data_ptr<acc_t>();
        const int64_t T = L.time, N = L.features;
        for_each_block(L.batch, N, [&](int64_t b, int64_t n0, int64_t n1) {
          acc_t mu_next[kBlock];  // alpha * mu_{t+1}, plus the y_last gradient at t = T
          acc_t sum_alpha[kBlock];
          for (int64_t n = n0; n < n1; ++n) {
            mu_next[n - n0] = glp[b * N + n];
            sum_alpha[n - n0] = acc_t(0);
          }
          for (int64_t t = T - 1; t >= 0; --t) {
            const int64_t row = (b * T + t) * N;
            for (int64_t n = n0; n < n1; ++n) {
              const int64_t i = n - n0;
              const acc_t mu = static_cast<acc_t>(gp[row + n]) + mu_next[i];
              const acc_t y_prev = t > 0 ? static_cast<acc_t>(yp[row - N + n]) : v0[b * N + n];
              sum_alpha[i] += mu * y_prev;
              mu_next[i] = al[n] * mu;
              gxp[row + n] = static_cast<scalar_t>(mu);
            }
          }
          for (int64_t n = n0; n < n1; ++n) {
            gv0[b * N + n] = mu_next[n - n0];
            ga[b * N + n] = sum_alpha[n - n0];
          }
        });
      });
  return {grad_x, grad_v_init, grad_alpha};
}

}  // namespace

TORCH_LIBRARY_IMPL(exodus_lightning, CPU, m) {
  m.impl("lif_forward", &lif_forward_cpu);
  m.impl("lif_backward", &lif_backward_cpu);
  m.impl("leaky_forward", &leaky_forward_cpu);
  m.impl("leaky_backward", &leaky_backward_cpu);
}

}  // namespace exodus
