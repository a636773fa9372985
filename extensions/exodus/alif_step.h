// The adaptive LIF neuron (sinabs' ALIF) per neuron and time step, shared by the CPU loops and
// the CUDA kernels (docs/alif_math.md). Forward, t = 1..T, v⁺_0 = v_init, b_0 = b_init:
//   v_t = α · v⁺_{t−1} + x_t                 θ_t = b0 + β · b_{t−1}
//   s_t = spikes(v_t, θ_t)                    w_t = v_t − θ_t · s_t   (or 0 where s_t > 0)
//   b_t = ρ · b_{t−1} + (1 − ρ) · s_t         v⁺_t = max(w_t, v_min)
// Backward: one reverse scan of two adjoints, ρ̂_t = dL/dv⁺_t and m_t = dL/db_t (less the
// gradient of the b_t output itself, added at step t). As in sinabs, the spike passes gradient to
// v only (ds/dv = σ(v_t, θ_t), ds/dθ = 0); θ_t gets gradient through the reset term θ_t · s_t.
#pragma once

#include <cstdint>
#include <type_traits>

#include "lif_step.h"
#include "qualifiers.h"
#include "surrogate.h"

namespace exodus {

// Bits of alif_backward's param_grads mask (exodus_lightning/ops/_library.py has the same).
enum AlifParamGradBit : int {
  kAlifGradAlpha = 1,
  kAlifGradRho = 2,
  kAlifGradBeta = 4,
  kAlifGradB0 = 8,
  kAlifGradMinV = 16,
};

// Parameters of one neuron. min_v is NaN without a lower bound (see NeuronParams).
template <typename T>
struct AlifParams {
  T alpha, rho, beta, b0, min_v;
};

// The threshold at step t from the adaptation b_{t−1}.
template <typename T>
EXODUS_HD T adaptive_threshold(const AlifParams<T>& p, T b_before) {
  return p.b0 + p.beta * b_before;
}

// One forward step: returns v_t; writes s_t, v⁺_t (v_plus) and b_t (b).
template <typename T>
EXODUS_HD T alif_forward_step(const AlifParams<T>& p, T x, T& v_plus, T& b, T& s, int max_spikes,
                              int reset) {
  const T v = p.alpha * v_plus + x;
  const T threshold = adaptive_threshold(p, b);
  s = spike_count(v, threshold, max_spikes);
  v_plus = clip_state(reset_membrane(v, s, threshold, reset), p.min_v);
  b = p.rho * b + (T(1) - p.rho) * s;
  return v;
}

template <typename T>
struct AlifParamGrads {
  T alpha = T(0), rho = T(0), beta = T(0), b0 = T(0), min_v = T(0);
};

// What a reverse step carries from step t+1 to step t.
template <typename T>
struct AlifAdjoints {
  T v_plus;        // ρ̂_t = dL/dv⁺_t
  T b;             // m_t: dL/db_t through b_{t+1} and θ_{t+1} (and b_last)
  T lambda_after;  // λ_{t+1} = dL/dv_{t+1}, for dL/dα = Σ λ_{t+1} · v⁺_t (0 at t = T)
};

// One reverse step at t (docs/alif_math.md). v, sigma: v_t and σ(v_t, θ_t); g, h, gb: upstream
// gradients on s_t, v_t and b_t; b_before = b_{t−1}. Returns λ_t = dL/dv_t = dL/dx_t and moves
// the adjoints to step t−1. The sums take Σ λ_{t+1} · v⁺_t for α (v⁺_t is rebuilt here, and
// λ_1 · v_init is added by the caller after the last step).
template <typename T>
EXODUS_HD T alif_backward_step(const AlifParams<T>& p, T v, T sigma, T g, T h, T gb, T b_before,
                               AlifAdjoints<T>& adj, AlifParamGrads<T>& sums, int max_spikes,
                               int reset, bool exact) {
  const bool zero = reset == kResetZero;
  const T threshold = adaptive_threshold(p, b_before);
  const T s = spike_count(v, threshold, max_spikes);
  const T w = reset_membrane(v, s, threshold, reset);
  const bool clip = clipped(w, p.min_v);
  sums.alpha += adj.lambda_after * (clip ? p.min_v : w);
  const T kappa = clip ? T(0) : adj.v_plus;  // dL/dw_t
  sums.min_v += clip ? adj.v_plus : T(0);
  const T mu = adj.b + gb;                   // dL/db_t
  // dw/dv through the spike (EXODUS; SLAYER drops it) and without it.
  const T reset_sigma = exact ? (zero ? v : threshold) * sigma : T(0);
  const T keep = zero && s > T(0) ? T(0) : T(1);
  const T lambda = sigma * (g + (T(1) - p.rho) * mu) + h + (keep - reset_sigma) * kappa;
  const T grad_threshold = zero ? T(0) : -s * kappa;
  sums.rho += mu * (b_before - s);
  sums.beta += grad_threshold * b_before;
  sums.b0 += grad_threshold;
  adj.b = p.rho * mu + p.beta * grad_threshold;
  adj.v_plus = p.alpha * lambda;
  adj.lambda_after = lambda;
  return lambda;
}

// ---------------------------------------------------------------------------------------------
// The ops' kernel arguments (as in lif_step.h).

template <typename scalar_t, typename acc_t>
struct AlifForwardArgs {
  const scalar_t* x;                            // (B, T, N)
  const acc_t *v0, *b0_state;                   // (B, N) v_init, b_init
  const acc_t *alpha, *rho, *beta, *b0, *min_v;  // (N,)
  scalar_t* spikes;                             // (B, T, N)
  acc_t *v_mem, *b;                             // (B, T, N) v_t and b_t
  acc_t *v_last, *b_last;                       // (B, N)
  int64_t batch, time, features;
  int max_spikes, reset;
};

template <typename scalar_t, typename acc_t>
struct AlifBackwardArgs {
  // (B, T, N) upstream gradients on s, v and b; an absent one points at valid memory at least
  // as large and has has_* = 0 (LifBackwardArgs says why).
  const scalar_t* g;
  const acc_t *h, *gb;
  const acc_t *g_last, *gb_last;                // (B, N) on v_last, b_last
  const acc_t *v, *b;                           // (B, T, N) saved v_t and b_t
  const acc_t* sigma;                           // (B, T, N) given surrogate, or null
  const acc_t *v0, *b0_state;                   // (B, N)
  const acc_t *alpha, *rho, *beta, *b0, *min_v;  // (N,)
  scalar_t* grad_x;                             // (B, T, N)
  acc_t *grad_v0, *grad_b0_state;               // (B, N)
  // (B, N) each; null when not wanted
  acc_t *grad_alpha, *grad_rho, *grad_beta, *grad_b0, *grad_min_v;
  int64_t batch, time, features;
  int max_spikes, reset, gradient;
  int has_g, has_h, has_gb;
  acc_t p0, p1;  // surrogate parameters
};

// ---------------------------------------------------------------------------------------------
// The scans (scan policies, docs/adding_a_neuron_model.md).

template <typename scalar_t, typename acc_t_>
struct AlifForwardScan {
  using acc_t = acc_t_;
  using Args = AlifForwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = false;
  using Consts = AlifParams<acc_t>;
  struct Carry {
    acc_t v_plus, b;
  };
  struct Frame {
    acc_t x;
  };

  static EXODUS_HD Consts consts(const Args& a, int64_t n) {
    return {a.alpha[n], a.rho[n], a.beta[n], a.b0[n], a.min_v[n]};
  }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    return {a.v0[e], a.b0_state[e]};
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) { return {static_cast<acc_t>(a.x[i])}; }
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& p, Carry& c, const Frame& now,
                             const Frame&, int64_t i, int64_t) {
    acc_t s;
    a.v_mem[i] = alif_forward_step(p, now.x, c.v_plus, c.b, s, a.max_spikes, a.reset);
    a.b[i] = c.b;
    a.spikes[i] = static_cast<scalar_t>(s);
  }
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.v_last[e] = c.v_plus;
    a.b_last[e] = c.b;
  }
};

// Reverse, with all parameter sums (KeepSums) or none, and the reset mode Reset (kResetRuntime:
// a.reset, as in LifBackwardScan).
template <int Kind, bool KeepSums, int Reset, typename scalar_t, typename acc_t_>
struct AlifBackwardScan {
  using acc_t = acc_t_;
  using Args = AlifBackwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = true;
  struct Consts {
    AlifParams<acc_t> p;
  };
  // Without KeepSums the carry holds no sums at all: the CPU loop keeps every carried word in a
  // stack array, which the compiler cannot drop even when nothing reads it at the end.
  struct WithSums {
    AlifAdjoints<acc_t> adj;
    AlifParamGrads<acc_t> sums;
  };
  struct WithoutSums {
    AlifAdjoints<acc_t> adj;
  };
  using Carry = std::conditional_t<KeepSums, WithSums, WithoutSums>;
  struct Frame {
    acc_t v, g, h, gb, b, sigma;
  };

  static EXODUS_HD Consts consts(const Args& a, int64_t n) {
    return {{a.alpha[n], a.rho[n], a.beta[n], a.b0[n], a.min_v[n]}};
  }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    Carry c;
    c.adj = {a.g_last[e], a.gb_last[e], acc_t(0)};
    if constexpr (KeepSums) c.sums = AlifParamGrads<acc_t>();
    return c;
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) {
    // Loads, then selects (LifBackwardFrame says why).
    const acc_t g = static_cast<acc_t>(a.g[i]);
    const acc_t h = a.h[i];
    const acc_t gb = a.gb[i];
    return {a.v[i], a.has_g != 0 ? g : acc_t(0), a.has_h != 0 ? h : acc_t(0),
            a.has_gb != 0 ? gb : acc_t(0), a.b[i],
            Kind == kSurrogateGiven ? a.sigma[i] : acc_t(0)};
  }
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& k, Carry& c, const Frame& now,
                             const Frame& before, int64_t i, int64_t e) {
    const int reset = Reset == kResetRuntime ? a.reset : Reset;
    const acc_t b_before = AtStart ? a.b0_state[e] : before.b;
    const acc_t threshold = adaptive_threshold(k.p, b_before);
    // The surrogate's factors depend on the threshold, which moves at every step.
    const acc_t sigma = surrogate_at<Kind>(now.sigma, now.v, threshold,
                                           surrogate_setup<Kind>(threshold, a.p0, a.p1));
    AlifParamGrads<acc_t> sums;
    if constexpr (KeepSums) sums = c.sums;
    a.grad_x[i] = static_cast<scalar_t>(
        alif_backward_step(k.p, now.v, sigma, now.g, now.h, now.gb, b_before, c.adj, sums,
                           a.max_spikes, reset, a.gradient == kGradientExodus));
    if constexpr (KeepSums) c.sums = sums;
  }
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.grad_v0[e] = c.adj.v_plus;
    a.grad_b0_state[e] = c.adj.b;
    if constexpr (KeepSums) {
      // Only the wanted ones have an output (the others' pointers are null).
      if (a.grad_alpha) a.grad_alpha[e] = c.sums.alpha + c.adj.lambda_after * a.v0[e];
      if (a.grad_rho) a.grad_rho[e] = c.sums.rho;
      if (a.grad_beta) a.grad_beta[e] = c.sums.beta;
      if (a.grad_b0) a.grad_b0[e] = c.sums.b0;
      if (a.grad_min_v) a.grad_min_v[e] = c.sums.min_v;
    }
  }
};

}  // namespace exodus
