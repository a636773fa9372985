// The leaky integrator's arithmetic per neuron and time step (synaptic currents, ExpLeak,
// readouts), shared by the CPU loops and the CUDA kernels (docs/exodus_math.md):
//   forward  i_t = β · i_{t−1} + x_t
//   backward μ_t = g_t + β · μ_{t+1};  dL/dx_t = μ_t,  dL/dβ = Σ_t μ_t · i_{t−1}
#pragma once

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

}  // namespace exodus
