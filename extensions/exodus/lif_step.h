// The LIF neuron's arithmetic per neuron and time step, shared by the CPU loops and the CUDA
// kernels: they only differ in how they walk over (batch, feature) elements, so tests on a CPU
// machine check the arithmetic the GPU runs.
//
// Notation (docs/exodus_math.md): v = alpha * v_plus_prev + x, s = spikes(v), w = reset(v, s),
// v_plus = max(w, v_min): the lower bound clips the post-reset state, in sinabs' order, so v is
// never clipped and the surrogate sees it as it is. Backward carries rho_t = dL/dv_plus_t in
// reverse time; c_t = 1[w_t > v_min] gates what flows through the carried state.
#pragma once

#include <cmath>

#include "qualifiers.h"
#include "surrogate.h"

namespace exodus {

// Integer codes shared with exodus_lightning/ops/_codes.py and _library.py.
enum Reset : int { kResetSubtract = 0, kResetZero = 1 };
enum Gradient : int { kGradientExodus = 0, kGradientSlayer = 1 };
// Bits of lif_backward's param_grads mask: which parameter gradients are wanted.
enum ParamGradBit : int { kGradAlpha = 1, kGradThreshold = 2, kGradSubtract = 4, kGradMinV = 8 };

// Number of spikes for pre-reset membrane v: floor(v / threshold) if v >= threshold, else 0,
// capped at max_spikes (max_spikes <= 0 means unbounded); NaN for a NaN membrane, so a NaN state
// shows in the spike output instead of silencing the neuron. Written with selects, not
// branches, so the CPU loops vectorise.
template <typename T>
EXODUS_HD T spike_count(T v, T threshold, int max_spikes) {
  const T count = std::floor(v / threshold);
  const T capped = (max_spikes > 0 && count > T(max_spikes)) ? T(max_spikes) : count;
  const T below = v < threshold ? T(0) : v;  // v itself only when v is NaN
  return v >= threshold ? capped : below;
}

// Post-reset membrane w. Selects on the (loop-uniform) reset mode, not 0/1 blends: a blend
// turns an infinite v into NaN (0 · inf).
template <typename T>
EXODUS_HD T reset_membrane(T v, T s, T subtract, int reset) {
  return reset == kResetZero ? (s > T(0) ? T(0) : v) : v - subtract * s;
}

// Parameters of one neuron (already gathered for its feature index). Without a lower bound,
// min_v is NaN: every comparison with it is false, so the clip below is the identity and its
// gradient gate always open, with no branch.
template <typename T>
struct NeuronParams {
  T alpha;
  T threshold;
  T subtract;
  T min_v;
};

// Whether the clip of the post-reset state is active: w ≤ v_min. At a tie it is (relu'(0) = 0
// in sinabs' relu(w − v_min) + v_min); a NaN w (or no bound) never is, so NaN stays visible.
template <typename T>
EXODUS_HD bool clipped(T w, T min_v) {
  return w <= min_v;
}

// The post-reset state carried to the next step: w clipped at v_min.
template <typename T>
EXODUS_HD T clip_state(T w, T min_v) {
  return clipped(w, min_v) ? min_v : w;
}

// v⁺ from the pre-reset membrane v and its spike count s (the forward step's new state; the
// backward rebuilds v⁺_{t-1} with it).
template <typename T>
EXODUS_HD T post_reset_state(const NeuronParams<T>& p, T v, T s, int reset) {
  return clip_state(reset_membrane(v, s, p.subtract, reset), p.min_v);
}

// One forward step: returns the pre-reset membrane v_t and writes the spike count and new state.
template <typename T>
EXODUS_HD T lif_forward_step(const NeuronParams<T>& p, T x, T& v_plus, T& s, int max_spikes,
                             int reset) {
  const T v = p.alpha * v_plus + x;
  s = spike_count(v, p.threshold, max_spikes);
  v_plus = post_reset_state(p, v, s, reset);
  return v;
}

// Running sums of the parameter gradients of one neuron over time.
template <typename T>
struct ParamGrads {
  T alpha = T(0);
  T threshold = T(0);
  T subtract = T(0);
  T min_v = T(0);
};

// The reverse step when only dL/dx and dL/dv_init are wanted and the reset subtracts: then
// dv⁺/dv = c · (1 − exact·subtract·sigma) needs no v⁺_{t-1}, and the spike count only for the
// clip mask c (Clip = false: no lower bound, c = 1, no spike count at all).
//   exact: true for EXODUS, false for SLAYER (which drops the surrogate term of the reset)
// Same arguments and result as lif_backward_step below.
template <bool Clip, typename T>
EXODUS_HD T lif_backward_step_subtract(const NeuronParams<T>& p, T v, T sigma, T g, T h, T& rho,
                                       bool exact, int max_spikes) {
  T carried = rho;
  if constexpr (Clip) {
    const T w = v - p.subtract * spike_count(v, p.threshold, max_spikes);
    carried = clipped(w, p.min_v) ? T(0) : rho;
  }
  const T dvplus_dv = exact ? T(1) - p.subtract * sigma : T(1);
  const T lambda = sigma * g + h + dvplus_dv * carried;
  rho = p.alpha * lambda;
  return lambda;
}

// One reverse step of the EXODUS scan (docs/exodus_math.md).
//   v, s, sigma:   pre-reset membrane, spike count and surrogate dS/dV at step t
//   g, h:          upstream gradients on s_t and on v_t
//   rho:           dL/dv_plus_t on entry; dL/dv_plus_{t-1} on exit
//   v_plus_prev:   post-reset state of step t-1 (v_init for t = 1), for dL/dalpha
// Returns lambda_t = dL/dv_t = dL/dx_t.
template <typename T>
EXODUS_HD T lif_backward_step(const NeuronParams<T>& p, T v, T s, T sigma, T g, T h,
                              T v_plus_prev, T& rho, ParamGrads<T>& grads, int reset,
                              int gradient) {
  const bool zero = reset == kResetZero;
  const bool exact = gradient == kGradientExodus;
  // The clip: where it is active the carried gradient goes to v_min instead.
  const bool clip = clipped(reset_membrane(v, s, p.subtract, reset), p.min_v);
  const T carried = clip ? T(0) : rho;
  grads.min_v += clip ? rho : T(0);
  // dw/dv and the direct dw/dθ; SLAYER drops the surrogate terms of the reset. Selects, not
  // 0/1 blends, so an infinite v does not turn them into NaN.
  const T reset_sigma = exact ? (zero ? v : p.subtract) * sigma : T(0);
  const T keep = zero && s > T(0) ? T(0) : T(1);
  grads.subtract -= zero ? T(0) : s * carried;
  grads.threshold += -sigma * g + reset_sigma * carried;
  const T lambda = sigma * g + h + (keep - reset_sigma) * carried;
  grads.alpha += lambda * v_plus_prev;
  rho = p.alpha * lambda;
  return lambda;
}

}  // namespace exodus
