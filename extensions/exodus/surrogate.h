// Surrogate gradients dS/dV, fused into the backward kernels of every neuron model.
//
// Formulas mirror exodus_lightning/ops/surrogate.py. Per-neuron factors (divisions by the
// threshold and the width) do not change over time: surrogate_setup computes them once per
// neuron, surrogate_grad uses them at every step, so most time loops have no division.
#pragma once

#include <cmath>
#include <type_traits>

#include "qualifiers.h"
#include "static_switch.h"

namespace exodus {

// Integer codes shared with exodus_lightning/ops/surrogate.py (kernel_code).
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

// exp(x) for x <= 0, the only arguments the surrogates produce (each is exp(-something >= 0)).
// On the CPU, float uses a polynomial that the compiler can vectorise (glibc's expf is a call,
// which keeps the backward loop scalar); within 2 ulp of expf. The polynomial uses explicit
// fused multiply-adds: the build turns off contraction elsewhere (so forward values round like
// the reference), but here it only shortens the dependency chain.
template <typename T>
EXODUS_HD T exp_nonpositive(T x) {
  return std::exp(x);
}

#if !defined(__CUDACC__)
template <>
inline float exp_nonpositive<float>(float x) {
  const float given = x;
  x = x < -87.0f ? -87.0f : x;  // below, e^x is subnormal: flushed to 0 at the end
  const float k = std::nearbyint(x * 1.44269504088896341f);  // x / ln 2
  const float r = __builtin_fmaf(k, 2.12194440e-4f, x - k * 0.693359375f);  // x − k·ln 2
  // Minimax polynomial for e^r on [−ln2/2, ln2/2] (Cephes expf coefficients).
  float p = 1.9875691500e-4f;
  p = __builtin_fmaf(p, r, 1.3981999507e-3f);
  p = __builtin_fmaf(p, r, 8.3334519073e-3f);
  p = __builtin_fmaf(p, r, 4.1665795894e-2f);
  p = __builtin_fmaf(p, r, 1.6666665459e-1f);
  p = __builtin_fmaf(p, r, 5.0000001201e-1f);
  p = __builtin_fmaf(p, r * r, r + 1.0f);
  // Scale by 2^k through the exponent bits.
  const int bits = (static_cast<int>(k) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  // Exactly 0 far below: a tiny stand-in times a huge factor (v · σ with v ~ 1e30) is not small.
  return given < -87.0f ? 0.0f : p * scale;
}
#endif

// Built-in surrogate gradients dS/dV; formulas mirror exodus_lightning/ops/surrogate.py.
// Kind is a template argument so each CPU loop is specialised for one formula.
//
// The per-neuron factors (divisions by the threshold and the width) do not change over time:
// surrogate_setup computes them once per neuron, surrogate_grad uses them at every step, so the
// time loop has no division for most surrogates.
template <typename T>
struct SurrogateCoeffs {
  T c0 = T(0);
  T c1 = T(0);
};

template <int Kind, typename T>
EXODUS_HD SurrogateCoeffs<T> surrogate_setup(T threshold, T p0, T p1) {
  const T pi = T(3.14159265358979323846);
  SurrogateCoeffs<T> c;
  if constexpr (Kind == kSingleExponential) {  // p0 = grad_width (relative), p1 = grad_scale
    c.c1 = T(1) / (threshold * p0);            // 1 / width
    c.c0 = p1 * c.c1;
  } else if constexpr (Kind == kPeriodicExponential) {  // p0 = grad_width (absolute), p1 = scale
    c.c0 = p1;
    c.c1 = T(1) / p0;
  } else if constexpr (Kind == kHeaviside) {  // p0 = window below threshold
    c.c0 = T(1) / threshold;
    c.c1 = threshold - p0;
  } else if constexpr (Kind == kGaussian) {  // p0 = sigma, p1 = grad_scale
    c.c0 = p1 / (std::sqrt(T(2) * pi) * p0);
    c.c1 = T(1) / p0;
  } else if constexpr (Kind == kFastSigmoid) {  // p0 = slope, p1 = grad_scale
    c.c0 = p1;
    c.c1 = p0;
  } else if constexpr (Kind == kArcTan) {  // p0 = alpha, p1 = grad_scale
    c.c0 = p1 * p0 / T(2);
    c.c1 = pi / T(2) * p0;
  } else if constexpr (Kind == kTriangle) {  // p0 = half width, p1 = grad_scale
    c.c0 = p1 / p0;
    c.c1 = T(1) / p0;
  }
  return c;
}

template <int Kind, typename T>
EXODUS_HD T surrogate_grad(T v, T threshold, const SurrogateCoeffs<T>& c) {
  if constexpr (Kind == kSingleExponential) {  // scale / w · exp(−|v − θ| / w), w = width·θ
    return c.c0 * exp_nonpositive(-std::fabs(v - threshold) * c.c1);
  } else if constexpr (Kind == kPeriodicExponential) {
    // sinabs': below θ the distance to θ; above, θ·(2·frac(v/θ − 1/2) − 1), the signed distance
    // to the nearest multiple of θ, doubled (so the peaks are twice as narrow above threshold).
    const T n = v / threshold - T(0.5);
    const T above = threshold * (T(2) * (n - std::floor(n)) - T(1));
    const T d = v >= threshold ? above : v - threshold;
    return c.c0 * exp_nonpositive(-std::fabs(d) * c.c1);
  } else if constexpr (Kind == kHeaviside) {  // 1/θ where v ≥ θ − window
    return v >= c.c1 ? c.c0 : T(0);
  } else if constexpr (Kind == kGaussian) {  // scale · N(v; θ, σ²)
    const T d = (v - threshold) * c.c1;
    return c.c0 * exp_nonpositive(-d * d / T(2));
  } else if constexpr (Kind == kFastSigmoid) {  // scale / (1 + slope·|v − θ|)²
    const T d = T(1) + c.c1 * std::fabs(v - threshold);
    return c.c0 / (d * d);
  } else if constexpr (Kind == kArcTan) {  // scale·α/2 / (1 + (π/2·α·(v − θ))²)
    const T d = c.c1 * (v - threshold);
    return c.c0 / (T(1) + d * d);
  } else {  // kTriangle: scale/w · max(0, 1 − |v − θ|/w)
    const T d = T(1) - std::fabs(v - threshold) * c.c1;
    return d <= T(0) ? T(0) : c.c0 * d;  // a NaN membrane gives NaN (clamp(min=0) keeps it)
  }
}

// Calls fn(std::integral_constant<int, Kind>) for a surrogate code (kSurrogateGiven included);
// false for an unknown code.
template <typename Fn>
bool dispatch_surrogate(int kind, const Fn& fn) {
  return int_switch<kSurrogateGiven, kSingleExponential, kPeriodicExponential, kHeaviside,
                    kGaussian, kFastSigmoid, kArcTan, kTriangle>(kind, fn);
}

// dS/dV at one step: the formula of a built-in surrogate, or the value a custom surrogate gave
// (Kind == kSurrogateGiven: computed in Python on the saved membrane and passed in).
template <int Kind, typename T>
EXODUS_HD T surrogate_at(T given, T v, T threshold, const SurrogateCoeffs<T>& c) {
  if constexpr (Kind == kSurrogateGiven) {
    return given;
  } else {
    return surrogate_grad<Kind>(v, threshold, c);
  }
}

}  // namespace exodus
