// Per-element arithmetic of the EXODUS ops, shared by the CPU loops and the CUDA kernels.
//
// Every function here works on one neuron at one time step. The CPU file and the CUDA file only
// differ in how they walk over (batch, feature) elements; the numbers come from this header, so
// tests on a CPU machine check the arithmetic the GPU runs.
//
// Notation (docs/exodus_math.md): v = alpha * v_plus_prev + x, s = spikes(v), w = reset(v, s),
// v_plus = max(w, v_min): the lower bound clips the post-reset state, in sinabs' order, so v is
// never clipped and the surrogate sees it as it is. Backward carries rho_t = dL/dv_plus_t in
// reverse time; c_t = 1[w_t > v_min] gates what flows through the carried state.
#pragma once

#include <cmath>
#include <type_traits>

#if defined(__CUDACC__)
#define EXODUS_HD __host__ __device__ __forceinline__
#else
#define EXODUS_HD inline
#endif

namespace exodus {

// Integer codes shared with exodus_lightning/ops/_codes.py.
enum Reset : int { kResetSubtract = 0, kResetZero = 1 };
enum Gradient : int { kGradientExodus = 0, kGradientSlayer = 1 };
// Bits of lif_backward's param_grads mask: which parameter gradients are wanted.
enum ParamGradBit : int { kGradAlpha = 1, kGradThreshold = 2, kGradSubtract = 4, kGradMinV = 8 };
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
// capped at max_spikes (max_spikes <= 0 means unbounded). Written with selects, not branches,
// so the CPU loops vectorise.
template <typename T>
EXODUS_HD T spike_count(T v, T threshold, int max_spikes) {
  const T count = std::floor(v / threshold);
  const T capped = (max_spikes > 0 && count > T(max_spikes)) ? T(max_spikes) : count;
  return v >= threshold ? capped : T(0);
}

// Post-reset membrane. The reset mode is uniform over a loop; blending with 0/1 factors instead
// of selecting keeps the CPU loops vectorisable (each product with 0 or 1 is exact).
template <typename T>
EXODUS_HD T reset_membrane(T v, T s, T subtract, int reset) {
  const T zero_reset = reset == kResetZero ? T(1) : T(0);
  const T to_zero = s > T(0) ? T(0) : v;
  return zero_reset * to_zero + (T(1) - zero_reset) * (v - subtract * s);
}

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
  x = x < -87.0f ? -87.0f : x;  // below, e^x is subnormal; 1.6e-38 instead is harmless
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
  return p * scale;
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
    return d > T(0) ? c.c0 * d : T(0);
  }
}

// Calls fn(std::integral_constant<int, Kind>) for a runtime surrogate code.
template <typename Fn>
EXODUS_HD void dispatch_surrogate(int kind, const Fn& fn) {
  switch (kind) {
    case kSingleExponential: fn(std::integral_constant<int, kSingleExponential>()); break;
    case kPeriodicExponential: fn(std::integral_constant<int, kPeriodicExponential>()); break;
    case kHeaviside: fn(std::integral_constant<int, kHeaviside>()); break;
    case kGaussian: fn(std::integral_constant<int, kGaussian>()); break;
    case kFastSigmoid: fn(std::integral_constant<int, kFastSigmoid>()); break;
    case kArcTan: fn(std::integral_constant<int, kArcTan>()); break;
    case kTriangle: fn(std::integral_constant<int, kTriangle>()); break;
    default: fn(std::integral_constant<int, kSurrogateGiven>()); break;
  }
}

// Parameters of one neuron (already gathered for its feature index). Without a lower bound,
// min_v = -inf: the clip is then the identity, and no branch is needed for it.
template <typename T>
struct NeuronParams {
  T alpha;
  T threshold;
  T subtract;
  T min_v;
};

// The post-reset state carried to the next step: the reset membrane w, clipped at v_min.
// Not max(): the clip is "w if w > v_min", the same tie rule as its gradient (c = 0 at w == v_min).
template <typename T>
EXODUS_HD T clip_state(T w, T min_v) {
  return w > min_v ? w : min_v;
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
//   exact: 1 for EXODUS, 0 for SLAYER (which drops the surrogate term of the reset)
// Same arguments and result as lif_backward_step below.
template <bool Clip, typename T>
EXODUS_HD T lif_backward_step_subtract(const NeuronParams<T>& p, T v, T sigma, T g, T h, T& rho,
                                       T exact, int max_spikes) {
  T carried = rho;
  if constexpr (Clip) {
    const T w = v - p.subtract * spike_count(v, p.threshold, max_spikes);
    carried = w > p.min_v ? rho : T(0);
  }
  const T dvplus_dv = T(1) - exact * p.subtract * sigma;
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
  // Uniform 0/1 factors rather than selects, as in reset_membrane.
  const T exact = gradient == kGradientExodus ? T(1) : T(0);
  const T zero_reset = reset == kResetZero ? T(1) : T(0);
  // The clip: where it is active (w ≤ v_min) the carried gradient goes to v_min instead.
  const bool passes = reset_membrane(v, s, p.subtract, reset) > p.min_v;
  const T carried = passes ? rho : T(0);
  grads.min_v += passes ? T(0) : rho;
  // dw/dv and the direct dw/dθ; SLAYER drops the surrogate terms of the reset.
  const T reset_sigma = exact * (zero_reset * v + (T(1) - zero_reset) * p.subtract) * sigma;
  const T keep = T(1) - zero_reset * (s > T(0) ? T(1) : T(0));
  grads.subtract -= (T(1) - zero_reset) * s * carried;
  grads.threshold += -sigma * g + reset_sigma * carried;
  const T lambda = sigma * g + h + (keep - reset_sigma) * carried;
  grads.alpha += lambda * v_plus_prev;
  rho = p.alpha * lambda;
  return lambda;
}

}  // namespace exodus
