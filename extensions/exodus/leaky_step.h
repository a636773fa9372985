// The leaky integrator's arithmetic per neuron and time step (synaptic currents, ExpLeak,
// readouts), shared by the CPU loops and the CUDA kernels (docs/exodus_math.md):
//   forward  i_t = β · i_{t−1} + x_t
//   backward μ_t = g_t + β · μ_{t+1};  dL/dx_t = μ_t,  dL/dβ = Σ_t μ_t · i_{t−1}
#pragma once

#include <cstdint>

#include "qualifiers.h"

namespace exodus {

// One forward step: the new state, which is also the output.
template <typename T>
EXODUS_HD T leaky_forward_step(T alpha, T state, T x) {
  return alpha * state + x;
}

// One reverse step: returns μ_t = dL/dx_t. mu_after holds β · μ_{t+1} (dL/di_T on the first call)
// on entry and β · μ_t on exit; sum_alpha accumulates dL/dβ with i_{t−1} = state_before.
template <typename T>
EXODUS_HD T leaky_backward_step(T alpha, T g, T state_before, T& mu_after, T& sum_alpha) {
  const T mu = g + mu_after;
  sum_alpha += mu * state_before;
  mu_after = alpha * mu;
  return mu;
}

// The ops' kernel arguments (as in lif_step.h).
template <typename scalar_t, typename acc_t>
struct LeakyForwardArgs {
  const scalar_t* x;   // (B, T, N)
  const acc_t* v0;     // (B, N)
  const acc_t* alpha;  // (N,)
  scalar_t* y;         // (B, T, N)
  acc_t* y_last;       // (B, N)
  int64_t batch, time, features;
};

template <typename scalar_t, typename acc_t>
struct LeakyBackwardArgs {
  const scalar_t* g;    // (B, T, N)
  const acc_t* g_last;  // (B, N)
  const scalar_t* y;    // (B, T, N)
  const acc_t* v0;      // (B, N)
  const acc_t* alpha;   // (N,)
  scalar_t* grad_x;     // (B, T, N)
  acc_t* grad_v0;       // (B, N)
  acc_t* grad_alpha;    // (B, N)
  int64_t batch, time, features;
};

// The scans (scan policies, docs/adding_a_neuron_model.md).
template <typename scalar_t, typename acc_t_>
struct LeakyForwardScan {
  using acc_t = acc_t_;
  using Args = LeakyForwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = false;
  struct Consts {
    acc_t alpha;
  };
  struct Carry {
    acc_t state;
  };
  struct Frame {
    acc_t x;
  };

  static EXODUS_HD Consts consts(const Args& a, int64_t n) { return {a.alpha[n]}; }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    return {a.v0[e]};
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) { return {static_cast<acc_t>(a.x[i])}; }
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& k, Carry& c, const Frame& now,
                             const Frame&, int64_t i, int64_t) {
    c.state = leaky_forward_step(k.alpha, c.state, now.x);
    a.y[i] = static_cast<scalar_t>(c.state);
  }
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.y_last[e] = c.state;
  }
};

template <typename scalar_t, typename acc_t_>
struct LeakyBackwardScan {
  using acc_t = acc_t_;
  using Args = LeakyBackwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = true;
  struct Consts {
    acc_t alpha;
  };
  struct Carry {
    acc_t mu_after;  // α · μ_{t+1}, and dL/dy_last at t = T
    acc_t sum_alpha;
  };
  struct Frame {
    acc_t g, y;
  };

  static EXODUS_HD Consts consts(const Args& a, int64_t n) { return {a.alpha[n]}; }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    return {a.g_last[e], acc_t(0)};
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) {
    return {static_cast<acc_t>(a.g[i]), static_cast<acc_t>(a.y[i])};
  }
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& k, Carry& c, const Frame& now,
                             const Frame& before, int64_t i, int64_t e) {
    const acc_t y_before = AtStart ? a.v0[e] : before.y;
    a.grad_x[i] = static_cast<scalar_t>(
        leaky_backward_step(k.alpha, now.g, y_before, c.mu_after, c.sum_alpha));
  }
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.grad_v0[e] = c.mu_after;
    a.grad_alpha[e] = c.sum_alpha;
  }
};

}  // namespace exodus
