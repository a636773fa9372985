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
#include <cstdint>

#include "qualifiers.h"
#include "surrogate.h"

namespace exodus {

// Integer codes shared with exodus_lightning/ops/_codes.py and _library.py.
enum Reset : int { kResetSubtract = 0, kResetZero = 1 };
// Not a code: a scan template argument meaning "the reset mode is read from the arguments".
constexpr int kResetRuntime = -1;
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

// ---------------------------------------------------------------------------------------------
// The ops' kernel arguments, one struct per op passed by value (mamba's style), filled by
// op_calls.h. Sizes are (batch B, time T, features N); tensors are contiguous in the natural
// (B, T, N) layout; acc_t is the accumulation type of scalar_t (float for half types).

template <typename scalar_t, typename acc_t>
struct LifForwardArgs {
  const scalar_t* x;                                  // (B, T, N)
  const acc_t* v0;                                    // (B, N)
  const acc_t *alpha, *threshold, *subtract, *min_v;  // (N,)
  scalar_t* spikes;                                   // (B, T, N)
  acc_t* v_mem;                                       // (B, T, N)
  acc_t* v_last;                                      // (B, N)
  int64_t batch, time, features;
  int max_spikes, reset;
};

template <typename scalar_t, typename acc_t>
struct LifBackwardArgs {
  // (B, T, N) dL/dspikes and dL/dv_mem; where one is absent (zeros), has_g / has_h is false and
  // the pointer points at other memory at least as large, whose values are loaded and dropped:
  // the vector loops cannot load from null (a masked load of it takes a microcode assist on the
  // CPU, 8x slower, even with every lane masked off).
  const scalar_t* g;
  const acc_t* h;
  const acc_t* g_last;                                // (B, N) dL/dv_last
  const acc_t* v;                                     // (B, T, N) pre-reset membrane
  const acc_t* sigma;                                 // (B, T, N) given surrogate, or null
  const acc_t* v0;                                    // (B, N)
  const acc_t *alpha, *threshold, *subtract, *min_v;  // (N,)
  scalar_t* grad_x;                                   // (B, T, N)
  acc_t* grad_v0;                                     // (B, N)
  // (B, N) each; null when not wanted
  acc_t *grad_alpha, *grad_threshold, *grad_subtract, *grad_min_v;
  int64_t batch, time, features;
  int max_spikes, reset, gradient;
  int has_g, has_h;  // 0 or 1 (ints: a vectorised select cannot take a bool)
  acc_t p0, p1;  // surrogate parameters
};

// ---------------------------------------------------------------------------------------------
// The scans (scan policies, see docs/adding_a_neuron_model.md): what one neuron keeps over
// time and does at each step. cpu_scan.h and cuda_kernels.cuh walk them over (batch, feature)
// and time.

// Forward: v_t = α·v⁺_{t−1} + x_t, spikes and v⁺_t.
template <typename scalar_t, typename acc_t_>
struct LifForwardScan {
  using acc_t = acc_t_;
  using Args = LifForwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = false;
  using Consts = NeuronParams<acc_t>;
  struct Carry {
    acc_t v_plus;
  };
  struct Frame {
    acc_t x;
  };

  static EXODUS_HD Consts consts(const Args& a, int64_t n) {
    return {a.alpha[n], a.threshold[n], a.subtract[n], a.min_v[n]};
  }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    return {a.v0[e]};
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) { return {static_cast<acc_t>(a.x[i])}; }
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& p, Carry& c, const Frame& now,
                             const Frame&, int64_t i, int64_t) {
    acc_t s;
    a.v_mem[i] = lif_forward_step(p, now.x, c.v_plus, s, a.max_spikes, a.reset);
    a.spikes[i] = static_cast<scalar_t>(s);
  }
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.v_last[e] = c.v_plus;
  }
};

// Which parameter sums a backward scan keeps; the others are dead code the compiler drops (on
// the CPU, fewer sums also keep the loop from spilling registers: ~30 % faster at
// (32, 300, 2048) than all sums).
enum Sums : int { kSumsNone = 0, kSumsAlpha = 1, kSumsAll = 2 };

// The kept sums of one neuron, as a base of the scan's carry (empty for kSumsNone).
template <int Sums, typename T>
struct KeptSums {
  ParamGrads<T> sums;
  EXODUS_HD ParamGrads<T> get() const { return sums; }
  EXODUS_HD void set(const ParamGrads<T>& s) { sums = s; }
};
template <typename T>
struct KeptSums<kSumsAlpha, T> {
  T sum_alpha;
  EXODUS_HD ParamGrads<T> get() const {
    ParamGrads<T> s;
    s.alpha = sum_alpha;
    return s;
  }
  EXODUS_HD void set(const ParamGrads<T>& s) { sum_alpha = s.alpha; }
};
template <typename T>
struct KeptSums<kSumsNone, T> {
  EXODUS_HD ParamGrads<T> get() const { return {}; }
  EXODUS_HD void set(const ParamGrads<T>&) {}
};

// What every reverse LIF scan knows of a neuron: its parameters and surrogate factors.
template <typename acc_t>
struct LifBackwardConsts {
  NeuronParams<acc_t> p;
  SurrogateCoeffs<acc_t> coeffs;
};

// The frame of one reverse step: v_t, the upstream gradients (zero when absent) and, for a
// custom surrogate, its value.
template <int Kind, typename scalar_t, typename acc_t>
struct LifBackwardFrame {
  acc_t v, g, h, sigma;

  static EXODUS_HD LifBackwardFrame load(const LifBackwardArgs<scalar_t, acc_t>& a, int64_t i) {
    // Loads, then selects: the pointers are valid either way, and a conditional load would
    // keep the CPU loop scalar.
    const acc_t g = static_cast<acc_t>(a.g[i]);
    const acc_t h = a.h[i];
    return {a.v[i], a.has_g != 0 ? g : acc_t(0), a.has_h != 0 ? h : acc_t(0),
            Kind == kSurrogateGiven ? a.sigma[i] : acc_t(0)};
  }
};

template <int Kind, typename acc_t>
EXODUS_HD LifBackwardConsts<acc_t> lif_backward_consts(const NeuronParams<acc_t>& p, acc_t p0,
                                                       acc_t p1) {
  return {p, surrogate_setup<Kind>(p.threshold, p0, p1)};
}

// Reverse: the EXODUS scan with the sums of Sums and the reset mode Reset (kResetRuntime:
// a.reset; the CPU fixes it at compile time, since a runtime select in the loop keeps GCC from
// vectorising it, 3x slower). Each membrane value is thresholded once: the spike count of
// v_{t-1}, needed for v⁺_{t-1}, is carried to the next step as its own.
template <int Kind, int Sums, int Reset, typename scalar_t, typename acc_t_>
struct LifBackwardScan {
  using acc_t = acc_t_;
  using Args = LifBackwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = true;
  using Consts = LifBackwardConsts<acc_t>;
  struct Carry : KeptSums<Sums, acc_t> {
    acc_t rho;  // dL/dv⁺_t
    acc_t s;    // spike count of v_t
  };
  using Frame = LifBackwardFrame<Kind, scalar_t, acc_t>;

  static EXODUS_HD Consts consts(const Args& a, int64_t n) {
    return lif_backward_consts<Kind>(
        NeuronParams<acc_t>{a.alpha[n], a.threshold[n], a.subtract[n], a.min_v[n]}, a.p0, a.p1);
  }
  static EXODUS_HD Carry start(const Args& a, const Consts& k, int64_t e, int64_t first) {
    Carry c;
    c.set(ParamGrads<acc_t>());
    c.rho = a.g_last[e];
    c.s = spike_count(a.v[first], k.p.threshold, a.max_spikes);
    return c;
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) { return Frame::load(a, i); }
  // AtStart (t = 0) takes v⁺_{-1} = v_init as it is; the other steps rebuild v⁺_{t-1} from
  // v_{t-1}, the frame walked next.
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& k, Carry& c, const Frame& now,
                             const Frame& before, int64_t i, int64_t e) {
    const int reset = Reset == kResetRuntime ? a.reset : Reset;
    const acc_t sg = surrogate_at<Kind>(now.sigma, now.v, k.p.threshold, k.coeffs);
    acc_t s_before = acc_t(0);
    acc_t v_plus_before;
    if constexpr (AtStart) {
      v_plus_before = a.v0[e];
    } else {
      s_before = spike_count(before.v, k.p.threshold, a.max_spikes);
      v_plus_before = post_reset_state(k.p, before.v, s_before, reset);
    }
    ParamGrads<acc_t> sums = c.get();
    const acc_t lambda = lif_backward_step(k.p, now.v, c.s, sg, now.g, now.h, v_plus_before,
                                           c.rho, sums, reset, a.gradient);
    c.set(sums);
    c.s = s_before;
    a.grad_x[i] = static_cast<scalar_t>(lambda);
  }
  // Only the wanted parameter gradients have an output (the others' pointers are null).
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.grad_v0[e] = c.rho;
    const ParamGrads<acc_t> sums = c.get();
    if (Sums != kSumsNone && a.grad_alpha) a.grad_alpha[e] = sums.alpha;
    if (Sums == kSumsAll) {
      if (a.grad_threshold) a.grad_threshold[e] = sums.threshold;
      if (a.grad_subtract) a.grad_subtract[e] = sums.subtract;
      if (a.grad_min_v) a.grad_min_v[e] = sums.min_v;
    }
  }
};

// Reverse, when the reset subtracts and no parameter gradient is wanted
// (lif_backward_step_subtract): no v⁺_{t-1} is needed (nor, without a lower bound, Clip, any
// spike count), so each step reads v_t, g_t (and h_t) and writes dL/dx_t.
template <int Kind, bool Clip, typename scalar_t, typename acc_t_>
struct LifBackwardSubtractScan {
  using acc_t = acc_t_;
  using Args = LifBackwardArgs<scalar_t, acc_t>;
  static constexpr bool kReverse = true;
  using Consts = LifBackwardConsts<acc_t>;
  struct Carry {
    acc_t rho;
  };
  using Frame = LifBackwardFrame<Kind, scalar_t, acc_t>;

  static EXODUS_HD Consts consts(const Args& a, int64_t n) {
    return LifBackwardScan<Kind, kSumsNone, kResetSubtract, scalar_t, acc_t>::consts(a, n);
  }
  static EXODUS_HD Carry start(const Args& a, const Consts&, int64_t e, int64_t) {
    return {a.g_last[e]};
  }
  static EXODUS_HD Frame load(const Args& a, int64_t i) { return Frame::load(a, i); }
  template <bool AtStart>
  static EXODUS_HD void step(const Args& a, const Consts& k, Carry& c, const Frame& now,
                             const Frame&, int64_t i, int64_t) {
    const acc_t sg = surrogate_at<Kind>(now.sigma, now.v, k.p.threshold, k.coeffs);
    a.grad_x[i] = static_cast<scalar_t>(lif_backward_step_subtract<Clip>(
        k.p, now.v, sg, now.g, now.h, c.rho, a.gradient == kGradientExodus, a.max_spikes));
  }
  static EXODUS_HD void finish(const Args& a, const Consts&, const Carry& c, int64_t e) {
    a.grad_v0[e] = c.rho;
  }
};

}  // namespace exodus
