// The adaptive LIF neuron of SE-adLIF (Baronig et al. 2025) per neuron and time step, shared by
// the CPU loops and the CUDA kernels (docs/adlif_math.md). Forward, t = 1..T, u⁺_0 = u_init,
// w_0 = w_init:
//   u_t = α · u⁺_{t−1} + (1 − α) · (x_t − w_{t−1})      s_t = 1[u_t > θ]
//   u⁺_t = 0 if u_t > θ else u_t
//   w_t = β · w_{t−1} + (1 − β) · (a · u⁺_t + b · s_t)
// Backward: one reverse scan of two adjoints, P_t = dL/du⁺_t and Q_t = dL/dw_t (both through
// step t+1 and the last states). ds/du = σ(u_t, θ), ds/dθ = −σ; the spike inside the reset is
// detached (the authors' choice, gradient = SLAYER) or differentiated (gradient = EXODUS); the
// spike that drives w always carries σ.
#pragma once

#include <cstdint>
#include <type_traits>

#include "lif_step.h"
#include "qualifiers.h"
#include "surrogate.h"

namespace exodus {

// Bits of adlif_backward's param_grads mask (exodus_lightning/ops/_library.py has the same).
enum AdlifParamGradBit : int {
  kAdlifGradAlpha = 1,
  kAdlifGradBeta = 2,
  kAdlifGradA = 4,
  kAdlifGradB = 8,
  kAdlifGradThreshold = 16,
};

// Parameters of one neuron: decays α, β, couplings a, b (as the update uses them, the authors'
// q·a and q·b) and the threshold θ.
template <typename T>
struct AdlifParams {
  T alpha, beta, a, b, threshold;
};

// 1[u > θ] (strict, the authors' heaviside(u − θ, 0)); NaN for a NaN membrane. Written as two
// independent selects: GCC threads a chain of selects on one comparison (and a reset that tests
// the spike again) into branches, and the CPU scan loop then is not vectorised.
template <typename T>
EXODUS_HD T spike_above(T u, T threshold) {
  const T fired = u > threshold ? T(1) : T(0);
  return u == u ? fired : u;
}

// The post-reset membrane: 0 where u > θ, else u (a select: an infinite u gives 0, not NaN).
template <typename T>
EXODUS_HD T adlif_reset(T u, T threshold) {
  return u > threshold ? T(0) : u;
}

// One forward step: returns u_t; writes s_t, u⁺_t (u_plus) and w_t (w). The arithmetic is
// written in the reference's order (the build does not contract to FMAs), so float64 results
// match it to the last bit.
template <typename T>
EXODUS_HD T adlif_forward_step(const AdlifParams<T>& p, T x, T& u_plus, T& w, T& s) {
  const T u = p.alpha * u_plus + (T(1) - p.alpha) * (x - w);
  s = spike_above(u, p.threshold);
  u_plus = adlif_reset(u, p.threshold);
  w = p.beta * w + (T(1) - p.beta) * (p.a * u_plus + p.b * s);
  return u;
}

// Running sums of the parameter gradients of one neuron; a and b without their factor 1 − β,
// which finish applies once.
template <typename T>
struct AdlifParamGrads {
  T alpha = T(0), beta = T(0), a = T(0), b = T(0), threshold = T(0);
};

// What a reverse step carries from step t+1 to step t.
template <typename T>
struct AdlifAdjoints {
  T u_plus;  // P_t = dL/du⁺_t through u_{t+1} (and u_last)
  T w;       // Q_t = dL/dw_t through u_{t+1}, w_{t+1} (and w_last)
};

// One reverse step at t (docs/adlif_math.md). u, sigma: u_t and σ(u_t, θ); g, h, k: upstream
// gradients on s_t, u_t and w_t. For the sums (KeepSums): u_plus_before = u⁺_{t−1},
// w_before = w_{t−1}, x = x_t. Returns λ_t = dL/du_t (dL/dx_t = (1 − α)·λ_t) and moves the
// adjoints to step t−1.
template <bool KeepSums, typename T>
EXODUS_HD T adlif_backward_step(const AdlifParams<T>& p, T u, T sigma, T g, T h, T k,
                                T u_plus_before, T w_before, T x, AdlifAdjoints<T>& adj,
                                AdlifParamGrads<T>& sums, bool exact) {
  const T s = spike_above(u, p.threshold);
  const T u_plus = adlif_reset(u, p.threshold);
  const T keep = T(1) - s;  // du⁺/du with the reset's spike held fixed (NaN for a NaN u)
  const T grad_w = adj.w + k;                                            // W_t
  const T grad_u_plus = adj.u_plus + (T(1) - p.beta) * p.a * grad_w;    // R_t
  // Everything that reaches s_t except through u_t; a select, so an infinite u with the
  // SLAYER gradient gives no inf · 0.
  const T reset_term = exact ? u * grad_u_plus : T(0);
  const T grad_s = g + (T(1) - p.beta) * p.b * grad_w - reset_term;     // G_t
  const T lambda = h + sigma * grad_s + keep * grad_u_plus;
  if constexpr (KeepSums) {
    sums.alpha += lambda * (u_plus_before - x + w_before);
    sums.beta += grad_w * (w_before - p.a * u_plus - p.b * s);
    sums.a += grad_w * u_plus;
    sums.b += grad_w * s;
    sums.threshold -= sigma * grad_s;
  }
  adj.u_plus = p.alpha * lambda;
  adj.w = p.beta * grad_w - (T(1) - p.alpha) * lambda;
  return lambda;
}

// ---------------------------------------------------------------------------------------------
// The ops' kernel arguments (as in lif_step.h).

template <typename scalar_t, typename acc_t>
struct AdlifForwardArgs {
  const scalar_t* x;                                 // (B, T, N)
  const acc_t *u0, *w0;                              // (B, N) u_init, w_init
  const acc_t *alpha, *beta, *a, *b, *threshold;     // (N,)
  scalar_t* spikes;                                  // (B, T, N)
  acc_t *u_mem, *w;                                  // (B, T, N) u_t (pre-reset) and w_t
  acc_t *u_last, *w_last;                            // (B, N)
  int64_t batch, time, features;
};

template <typename scalar_t, typename acc_t>
struct AdlifBackwardArgs {
  // (B, T, N) upstream gradients on s, u and w, and the input x (read for dL/dα only); an
  // absent one points at valid memory at least as large and has has_* = 0 (LifBackwardArgs
  // says why).
  const scalar_t *g, *x;
  const acc_t *h, *k;
  const acc_t *g_u_last, *g_w_last;                  // (B, N) on u_last, w_last
  const acc_t *u, *w;                                // (B, T, N) saved u_t and w_t
  const acc_t* sigma;                                // (B, T, N) given surrogate, or null
  const acc_t *u0, *w0;                              // (B, N)
  const acc_t *alpha, *beta, *a, *b, *threshold;     // (N,)
  scalar_t* grad_x;                                  // (B, T, N)
  acc_t *grad_u0, *grad_w0;                          // (B, N)
  // (B, N) each; null when not wanted
  acc_t *grad_alpha, *grad_beta, *grad_a, *grad_b, *grad_threshold;
  int64_t batch, time, features;
  int gradient;
  int has_g, has_h, has_k, has_x;
  acc_t p0, p1;  // surrogate parameters
};

// ---------------------------------------------------------------------------------------------
// The scans (scan policies, docs/adding_a_neuron_model.md).

template <typename scalar_t, typename acc_t_>
struct AdlifForwardScan {
  using acc_t = acc_t_;
  using Args = AdlifForwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = false;
  using Consts = AdlifParams<acc_t>;
  struct Carry {
    acc_t u_plus, w;
  };
  struct Frame {
    acc_t x;
  };

  static EXODUS_HD Consts consts(const Args& a, int64_t n) {
    return {a.alpha[n], a.beta[n], a.a[n], a.b[n], a.threshold[n]};
  }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    return {a.u0[e], a.w0[e]};
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) { return {static_cast<acc_t>(a.x[i])}; }
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& p, Carry& c, const Frame& now,
                             const Frame&, int64_t i, int64_t) {
    acc_t s;
    a.u_mem[i] = adlif_forward_step(p, now.x, c.u_plus, c.w, s);
    a.w[i] = c.w;
    a.spikes[i] = static_cast<scalar_t>(s);
  }
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.u_last[e] = c.u_plus;
    a.w_last[e] = c.w;
  }
};

// Reverse, with all parameter sums (KeepSums: then each step also reads u_{t−1}, w_{t−1} and
// x_t) or none (each step reads u_t and the upstream gradients only).
template <int Kind, bool KeepSums, typename scalar_t, typename acc_t_>
struct AdlifBackwardScan {
  using acc_t = acc_t_;
  using Args = AdlifBackwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = true;
  struct Consts {
    AdlifParams<acc_t> p;
    SurrogateCoeffs<acc_t> coeffs;  // the threshold is fixed per neuron: set up once
  };
  // Without KeepSums the carry holds no sums at all (the CPU loop keeps every carried word in a
  // stack array, which the compiler cannot drop even when nothing reads it at the end).
  struct WithSums {
    AdlifAdjoints<acc_t> adj;
    AdlifParamGrads<acc_t> sums;
  };
  struct WithoutSums {
    AdlifAdjoints<acc_t> adj;
  };
  using Carry = std::conditional_t<KeepSums, WithSums, WithoutSums>;
  struct Frame {
    acc_t u, g, h, k, sigma, w, x;
  };

  static EXODUS_HD Consts consts(const Args& a, int64_t n) {
    const AdlifParams<acc_t> p{a.alpha[n], a.beta[n], a.a[n], a.b[n], a.threshold[n]};
    return {p, surrogate_setup<Kind>(p.threshold, a.p0, a.p1)};
  }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    Carry c;
    c.adj = {a.g_u_last[e], a.g_w_last[e]};
    if constexpr (KeepSums) c.sums = AdlifParamGrads<acc_t>();
    return c;
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) {
    // Loads, then selects (LifBackwardFrame says why); w and x only where the sums read them.
    const acc_t g = static_cast<acc_t>(a.g[i]);
    const acc_t h = a.h[i];
    const acc_t k = a.k[i];
    Frame f{a.u[i], a.has_g != 0 ? g : acc_t(0), a.has_h != 0 ? h : acc_t(0),
            a.has_k != 0 ? k : acc_t(0), Kind == kSurrogateGiven ? a.sigma[i] : acc_t(0),
            acc_t(0), acc_t(0)};
    if constexpr (KeepSums) {
      const acc_t x = static_cast<acc_t>(a.x[i]);
      f.w = a.w[i];
      f.x = a.has_x != 0 ? x : acc_t(0);
    }
    return f;
  }
  // AtStart (t = 0) takes u⁺ and w before the first step from u_init and w_init; the other
  // steps rebuild u⁺_{t−1} from u_{t−1} and read w_{t−1}, in the frame walked next.
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& k, Carry& c, const Frame& now,
                             const Frame& before, int64_t i, int64_t e) {
    const acc_t sigma = surrogate_at<Kind>(now.sigma, now.u, k.p.threshold, k.coeffs);
    acc_t u_plus_before = acc_t(0), w_before = acc_t(0);
    AdlifParamGrads<acc_t> sums;
    if constexpr (KeepSums) {
      if constexpr (AtStart) {
        u_plus_before = a.u0[e];
        w_before = a.w0[e];
      } else {
        u_plus_before = adlif_reset(before.u, k.p.threshold);
        w_before = before.w;
      }
      sums = c.sums;
    }
    const acc_t lambda = adlif_backward_step<KeepSums>(
        k.p, now.u, sigma, now.g, now.h, now.k, u_plus_before, w_before, now.x, c.adj, sums,
        a.gradient == kGradientExodus);
    if constexpr (KeepSums) c.sums = sums;
    a.grad_x[i] = static_cast<scalar_t>((acc_t(1) - k.p.alpha) * lambda);
  }
  static EXODUS_HD void finish(const Args& a, const Consts& k, const Carry& c, int64_t e) {
    a.grad_u0[e] = c.adj.u_plus;
    a.grad_w0[e] = c.adj.w;
    if constexpr (KeepSums) {
      // Only the wanted ones have an output (the others' pointers are null).
      const acc_t drive = acc_t(1) - k.p.beta;
      if (a.grad_alpha) a.grad_alpha[e] = c.sums.alpha;
      if (a.grad_beta) a.grad_beta[e] = c.sums.beta;
      if (a.grad_a) a.grad_a[e] = drive * c.sums.a;
      if (a.grad_b) a.grad_b[e] = drive * c.sums.b;
      if (a.grad_threshold) a.grad_threshold[e] = c.sums.threshold;
    }
  }
};

}  // namespace exodus
