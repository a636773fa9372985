// Per-element arithmetic of the EXODUS ops, shared by the CPU loops and the CUDA kernels.
//
// Every function here works on one neuron at one time step. The CPU file and the CUDA file only
// differ in how they walk over (batch, feature) elements; the numbers come from this header, so
// tests on a CPU machine check the arithmetic the GPU runs.
//
// Notation (see EXODUS_MATH in the docs): u = alpha * v_plus_prev + x, v = max(u, v_min),
// s = spikes(v), v_plus = reset(v, s). Backward carries rho_t = dL/dv_plus_t in reverse time.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define EXODUS_HD __host__ __device__ __forceinline__
#else
#define EXODUS_HD inline
#endif

namespace exodus {

// Integer codes shared with exodus_lightning/ops/_codes.py.
enum Reset : int { kResetSubtract = 0, kResetZero = 1 };
enum Gradient : int { kGradientExodus = 0, kGradientSlayer = 1 };
enum Surrogate : int {
  kSurrogateGiven = -1,  // sigma = dS/dV was computed in Python and is passed as a tensor
  kSingleExponential = 0,
  kPeriodicExponential = 1,
  kHeaviside = 2,
  kGaussian = 3,
  kFastSigmoid = 4,
  kArcTan = 5,
  kTriangle = 6,
};

// Number of spikes for pre-reset membrane v: floor(v / threshold) if v >= threshold, else 0,
// capped at max_spikes (max_spikes <= 0 means unbounded).
template <typename T>
EXODUS_HD T spike_count(T v, T threshold, int max_spikes) {
  if (!(v >= threshold)) return T(0);
  T s = floor(v / threshold);
  if (max_spikes > 0 && s > T(max_spikes)) s = T(max_spikes);
  return s;
}

// Post-reset membrane.
template <typename T>
EXODUS_HD T reset_membrane(T v, T s, T subtract, int reset) {
  if (reset == kResetZero) return s > T(0) ? T(0) : v;
  return v - subtract * s;
}

// Built-in surrogate gradients dS/dV; formulas mirror exodus_lightning/ops/surrogate.py.
template <typename T>
EXODUS_HD T surrogate_grad(int kind, T v, T threshold, T p0, T p1) {
  const T pi = T(3.14159265358979323846);
  switch (kind) {
    case kSingleExponential: {  // p0 = grad_width (relative to threshold), p1 = grad_scale
      const T width = threshold * p0;
      return p1 / width * exp(-fabs(v - threshold) / width);
    }
    case kPeriodicExponential: {  // p0 = grad_width (relative), p1 = grad_scale
      const T shifted = v - threshold / T(2);
      T centred = shifted;
      if (v >= threshold) centred = shifted - floor(shifted / threshold) * threshold;
      return p1 * exp(-fabs(centred - threshold / T(2)) / (p0 * threshold)) / threshold;
    }
    case kHeaviside:  // p0 = window below threshold
      return v >= threshold - p0 ? T(1) / threshold : T(0);
    case kGaussian: {  // p0 = sigma, p1 = grad_scale
      const T d = (v - threshold) / p0;
      return p1 * exp(-d * d / T(2)) / (sqrt(T(2) * pi) * p0);
    }
    case kFastSigmoid: {  // p0 = slope, p1 = grad_scale
      const T d = T(1) + p0 * fabs(v - threshold);
      return p1 / (d * d);
    }
    case kArcTan: {  // p0 = alpha, p1 = grad_scale
      const T d = pi / T(2) * p0 * (v - threshold);
      return p1 * p0 / T(2) / (T(1) + d * d);
    }
    case kTriangle: {  // p0 = half width, p1 = grad_scale
      const T d = T(1) - fabs(v - threshold) / p0;
      return d > T(0) ? p1 * d / p0 : T(0);
    }
    default:
      return T(0);
  }
}

// Parameters of one neuron (already gathered for its feature index).
template <typename T>
struct NeuronParams {
  T alpha;
  T threshold;
  T subtract;
  T min_v;
  bool has_min;
};

// One forward step: returns the pre-reset membrane v_t and writes the spike count and new state.
template <typename T>
EXODUS_HD T lif_forward_step(const NeuronParams<T>& p, T x, T& v_plus, T& s, int max_spikes,
                             int reset) {
  T v = p.alpha * v_plus + x;
  if (p.has_min && v < p.min_v) v = p.min_v;
  s = spike_count(v, p.threshold, max_spikes);
  v_plus = reset_membrane(v, s, p.subtract, reset);
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

// One reverse step of the EXODUS scan.
//   v, s, sigma:   pre-reset membrane, spike count and surrogate dS/dV at step t
//   g, h:          upstream gradients on s_t and on v_t
//   rho:           dL/dv_plus_t on entry; dL/dv_plus_{t-1} on exit
//   v_plus_prev:   post-reset membrane of step t-1 (v_init for t = 1), for dL/dalpha
// Returns lambda_t = dL/du_t = dL/dx_t.
template <typename T>
EXODUS_HD T lif_backward_step(const NeuronParams<T>& p, T v, T s, T sigma, T g, T h,
                              T v_plus_prev, T& rho, ParamGrads<T>& grads, int reset,
                              int gradient) {
  const bool exact = gradient == kGradientExodus;
  T dvplus_dv;
  T dvplus_dthreshold;
  if (reset == kResetZero) {
    dvplus_dv = (s > T(0) ? T(0) : T(1)) - (exact ? v * sigma : T(0));
    dvplus_dthreshold = exact ? v * sigma : T(0);
  } else {
    dvplus_dv = T(1) - (exact ? p.subtract * sigma : T(0));
    dvplus_dthreshold = exact ? p.subtract * sigma : T(0);
    grads.subtract -= s * rho;
  }
  grads.threshold += -sigma * g + dvplus_dthreshold * rho;
  const T d = sigma * g + h + dvplus_dv * rho;
  // Not clipped: v > min_v exactly when u > min_v, since v = max(u, min_v).
  const bool passes = !p.has_min || v > p.min_v;
  const T lambda = passes ? d : T(0);
  if (!passes) grads.min_v += d;
  grads.alpha += lambda * v_plus_prev;
  rho = p.alpha * lambda;
  return lambda;
}

}  // namespace exodus
