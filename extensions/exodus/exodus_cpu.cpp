// CPU kernels of the EXODUS ops: parallel over (batch, block of features), time loop outside,
// contiguous loop over the features of a block inside (the natural (batch, time, features)
// layout, so no transpose is needed).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <ATen/ops/full_like.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>

#include "lif_step.h"
#include "op_checks.h"

namespace exodus {
namespace {

using at::Tensor;

// Features handled together by one task, at most: long rows (8 kB of float32) keep the
// prefetcher and the TLB busy with few page switches per element; the per-neuron state of a
// block lives in stack arrays of this size.
constexpr int64_t kBlock = 2048;
// At least this many: shorter rows waste the vector lanes and the prefetcher.
constexpr int64_t kMinBlock = 64;

// The loops over the features of a block are vectorised by the compiler: each feature is an
// independent neuron, pointers are __restrict, the step functions are branch-free, and the
// build adds -fno-trapping-math and the CPU's vector ISA. (No `omp simd`: it privatises the
// per-neuron structs into arrays and then gives up on them.)

// Element-steps a thread should get at least: below that, waking other threads costs more than
// it saves (and far more on a busy machine).
constexpr int64_t kMinWorkPerThread = 1 << 16;

// Calls fn(b, n0, n1) for every (batch, feature block) in parallel; `time` sizes the work.
// Blocks are as long as possible while still giving every thread a few tasks (small batches
// split their features more finely).
template <typename Fn>
void for_each_block(int64_t batch, int64_t features, int64_t time, const Fn& fn) {
  const int64_t wanted_tasks = 4 * static_cast<int64_t>(at::get_num_threads());
  const int64_t blocks_per_row = std::max<int64_t>(1, (wanted_tasks + batch - 1) / batch);
  int64_t block = (features + blocks_per_row - 1) / blocks_per_row;
  block = std::min(kBlock, std::max(kMinBlock, (block + 15) / 16 * 16));
  const int64_t blocks = (features + block - 1) / block;
  const int64_t work_per_task = std::min(features, block) * std::max<int64_t>(time, 1);
  const int64_t grain = std::max<int64_t>(1, kMinWorkPerThread / work_per_task);
  at::parallel_for(0, batch * blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks;
      const int64_t n0 = (task % blocks) * block;
      fn(b, n0, std::min(features, n0 + block));
    }
  });
}

// A full-size output, backed by 2 MB pages where the kernel allows it (transparent huge pages in
// "madvise" mode). Fresh large buffers are mapped anew on every call, and faulting them in 4 kB
// pages costs as much as the whole scan; huge pages need 512x fewer faults.
Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  Tensor out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t end = begin + out.nbytes();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = end & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
  return out;
}

// Forward scan over time for features [n0, n1) of batch row b.
template <typename scalar_t, typename acc_t>
void lif_forward_block(const scalar_t* __restrict x, const acc_t* __restrict v0,
                       const acc_t* __restrict alpha, const acc_t* __restrict threshold,
                       const acc_t* __restrict subtract, const acc_t* __restrict min_v,
                       scalar_t* __restrict spikes, acc_t* __restrict v_mem,
                       acc_t* __restrict v_last, int64_t b, int64_t n0, int64_t n1, int64_t T,
                       int64_t N, int max_spikes, int reset) {
  const int64_t len = n1 - n0;
  acc_t state[kBlock];
  for (int64_t i = 0; i < len; ++i) state[i] = v0[b * N + n0 + i];
  alpha += n0;
  threshold += n0;
  subtract += n0;
  min_v += n0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t row = (b * T + t) * N + n0;
    const scalar_t* __restrict x_t = x + row;
    scalar_t* __restrict s_t = spikes + row;
    acc_t* __restrict v_t = v_mem + row;
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<acc_t> p{alpha[i], threshold[i], subtract[i], min_v[i]};
      acc_t s;
      v_t[i] = lif_forward_step(p, static_cast<acc_t>(x_t[i]), state[i], s, max_spikes, reset);
      s_t[i] = static_cast<scalar_t>(s);
    }
  }
  for (int64_t i = 0; i < len; ++i) v_last[b * N + n0 + i] = state[i];
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
  const Tensor min_v = lower_bound_or_none(min_v_in, alpha);
  Tensor spikes = empty_output(x.sizes(), x.options());
  Tensor v_mem = empty_output(x.sizes(), x.options().dtype(alpha.scalar_type()));
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
        const acc_t* mv = min_v.const_data_ptr<acc_t>();
        const int64_t T = L.time, N = L.features;
        for_each_block(L.batch, N, T, [&](int64_t b, int64_t n0, int64_t n1) {
          lif_forward_block<scalar_t, acc_t>(xp, v0, al, th, su, mv, sp, vp, vl, b, n0, n1, T, N,
                                             static_cast<int>(max_spikes),
                                             static_cast<int>(reset));
        });
      });
  return {spikes, v_mem, v_last};
}

// Pointers and settings of one backward call.
template <typename scalar_t, typename acc_t>
struct BackwardArgs {
  const scalar_t* g;      // (B, T, N) upstream gradient on spikes, or nullptr
  const acc_t* h;         // (B, T, N) upstream gradient on v_mem, or nullptr
  const acc_t* g_last;    // (B, N) upstream gradient on v_last
  const acc_t* v;         // (B, T, N) pre-reset membrane
  const acc_t* sigma;     // (B, T, N) precomputed surrogate (Kind == kSurrogateGiven)
  const acc_t* v0;        // (B, N)
  const acc_t *alpha, *threshold, *subtract, *min_v;  // (N,)
  scalar_t* grad_x;       // (B, T, N)
  acc_t* grad_v0;                                                  // (B, N)
  acc_t *grad_alpha, *grad_threshold, *grad_subtract, *grad_min_v;  // (B, N), null: not wanted
  int64_t T, N;
  int max_spikes, reset, gradient;
  acc_t p0, p1;
};

// Per-neuron surrogate factors of a block (SurrogateCoeffs), in two arrays so the time loop
// loads them like any other per-feature parameter.
template <int Kind, typename acc_t>
void setup_surrogate_block(const acc_t* __restrict threshold, acc_t p0, acc_t p1, int64_t len,
                           acc_t* __restrict coeff0, acc_t* __restrict coeff1) {
  for (int64_t i = 0; i < len; ++i) {
    const SurrogateCoeffs<acc_t> c = surrogate_setup<Kind>(threshold[i], p0, p1);
    coeff0[i] = c.c0;
    coeff1[i] = c.c1;
  }
}

// dS/dV of element i: the precomputed sigma, or the fused formula.
template <int Kind, typename acc_t>
inline acc_t surrogate_at(const acc_t* __restrict sigma, int64_t i, acc_t v, acc_t threshold,
                          acc_t c0, acc_t c1) {
  if constexpr (Kind == kSurrogateGiven) {
    return sigma[i];
  } else {
    return surrogate_grad<Kind>(v, threshold, SurrogateCoeffs<acc_t>{c0, c1});
  }
}

// Reverse scan for features [n0, n1) of batch row b when the reset subtracts and no parameter
// gradient is wanted (lif_backward_step_subtract): v⁺_{t-1} is not needed (nor, without a lower
// bound, the spike counts), so each step reads v_t, g_t (and h_t) and writes dL/dx_t.
template <int Kind, bool Clip, typename scalar_t, typename acc_t>
void lif_backward_block_subtract(const BackwardArgs<scalar_t, acc_t>& a, int64_t b, int64_t n0,
                                 int64_t n1) {
  const int64_t T = a.T, N = a.N, len = n1 - n0;
  acc_t rho[kBlock], coeff0[kBlock], coeff1[kBlock];
  for (int64_t i = 0; i < len; ++i) rho[i] = a.g_last[b * N + n0 + i];
  setup_surrogate_block<Kind>(a.threshold + n0, a.p0, a.p1, len, coeff0, coeff1);
  const acc_t* __restrict alpha = a.alpha + n0;
  const acc_t* __restrict threshold = a.threshold + n0;
  const acc_t* __restrict subtract = a.subtract + n0;
  const acc_t* __restrict min_v = a.min_v + n0;
  const acc_t exact = a.gradient == kGradientExodus ? acc_t(1) : acc_t(0);
  const int max_spikes = a.max_spikes;
  // Without a spike or membrane gradient g or h reads a row of zeros: one loop for every case,
  // at the cost of an L1 load per element (more instantiations would double the build time).
  acc_t zero_row[kBlock];
  scalar_t zero_g[kBlock];
  if (!a.h) std::fill(zero_row, zero_row + len, acc_t(0));
  if (!a.g) std::fill(zero_g, zero_g + len, scalar_t(0));
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t row = (b * T + t) * N + n0;
    const acc_t* __restrict v = a.v + row;
    const scalar_t* __restrict g = a.g ? a.g + row : zero_g;
    const acc_t* __restrict h = a.h ? a.h + row : zero_row;
    const acc_t* __restrict sigma = Kind == kSurrogateGiven ? a.sigma + row : nullptr;
    scalar_t* __restrict grad_x = a.grad_x + row;
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<acc_t> p{alpha[i], threshold[i], subtract[i], min_v[i]};
      const acc_t sg = surrogate_at<Kind>(sigma, i, v[i], p.threshold, coeff0[i], coeff1[i]);
      grad_x[i] = static_cast<scalar_t>(lif_backward_step_subtract<Clip>(
          p, v[i], sg, static_cast<acc_t>(g[i]), h[i], rho[i], exact, max_spikes));
    }
  }
  for (int64_t i = 0; i < len; ++i) a.grad_v0[b * N + n0 + i] = rho[i];
}

// Which parameter sums a full reverse scan keeps. The α-only variants (the default nn.LIF trains
// τ and not θ) also fix the reset mode at compile time: together that frees enough registers to
// keep the loop from spilling (~30 % faster than the all-sums loop at (32, 300, 2048)).
enum ScanSums : int { kAllSums, kAlphaSumSubtract, kAlphaSumZero };

// Reverse scan over time for features [n0, n1) of batch row b.
template <int Kind, int Sums, typename scalar_t, typename acc_t>
void lif_backward_block(const BackwardArgs<scalar_t, acc_t>& a, int64_t b, int64_t n0,
                        int64_t n1) {
  constexpr bool AlphaOnly = Sums != kAllSums;
  const int64_t T = a.T, N = a.N, len = n1 - n0;
  // v_t and s_t of the step being processed, carried from the previous (later) step, which
  // loaded them as its v_{t-1}: each membrane value is read and thresholded once.
  acc_t rho[kBlock], v_now[kBlock], s_now[kBlock];
  acc_t sum_alpha[kBlock], sum_threshold[kBlock], sum_subtract[kBlock], sum_min[kBlock];
  acc_t coeff0[kBlock], coeff1[kBlock];
  setup_surrogate_block<Kind>(a.threshold + n0, a.p0, a.p1, len, coeff0, coeff1);
  for (int64_t i = 0; i < len; ++i) {
    rho[i] = a.g_last[b * N + n0 + i];
    v_now[i] = a.v[(b * T + T - 1) * N + n0 + i];
    s_now[i] = spike_count(v_now[i], a.threshold[n0 + i], a.max_spikes);
    sum_alpha[i] = sum_threshold[i] = sum_subtract[i] = sum_min[i] = acc_t(0);
  }
  // Local restrict pointers: loads through the struct could alias the stores, which keeps the
  // compiler from vectorising.
  const acc_t* __restrict alpha = a.alpha + n0;
  const acc_t* __restrict threshold = a.threshold + n0;
  const acc_t* __restrict subtract = a.subtract + n0;
  const acc_t* __restrict min_v = a.min_v + n0;
  const int max_spikes = a.max_spikes, gradient = a.gradient;
  const int reset = Sums == kAlphaSumSubtract ? kResetSubtract
                    : Sums == kAlphaSumZero   ? kResetZero
                                              : a.reset;
  const acc_t zero = acc_t(0);
  acc_t zero_row[kBlock];  // h and g when there is no such gradient, as above
  scalar_t zero_g[kBlock];
  if (!a.h) std::fill(zero_row, zero_row + len, zero);
  if (!a.g) std::fill(zero_g, zero_g + len, scalar_t(0));
  // One reverse step over the block; First (t = 0) takes v⁺_0 = v_init as it is, the other
  // steps rebuild v⁺_{t-1} from v_{t-1}. A compile-time flag: a uniform select in the loop
  // would keep it scalar.
  auto step = [&](int64_t t, auto first_constant) {
    constexpr bool First = decltype(first_constant)::value;
    const int64_t row = (b * T + t) * N + n0;
    const acc_t* __restrict prev = First ? a.v0 + b * N + n0 : a.v + row - N;
    const scalar_t* __restrict g = a.g ? a.g + row : zero_g;
    const acc_t* __restrict h = a.h ? a.h + row : zero_row;
    const acc_t* __restrict sigma = Kind == kSurrogateGiven ? a.sigma + row : nullptr;
    scalar_t* __restrict grad_x = a.grad_x + row;
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<acc_t> p{alpha[i], threshold[i], subtract[i], min_v[i]};
      const acc_t v = v_now[i];
      const acc_t s = s_now[i];
      const acc_t sg = surrogate_at<Kind>(sigma, i, v, p.threshold, coeff0[i], coeff1[i]);
      const acc_t v_prev = prev[i];
      acc_t v_plus_prev = v_prev;
      if constexpr (!First) {
        const acc_t s_prev = spike_count(v_prev, p.threshold, max_spikes);
        v_plus_prev = post_reset_state(p, v_prev, s_prev, reset);
        s_now[i] = s_prev;
      }
      ParamGrads<acc_t> sums{sum_alpha[i], AlphaOnly ? zero : sum_threshold[i],
                             AlphaOnly ? zero : sum_subtract[i], AlphaOnly ? zero : sum_min[i]};
      const acc_t lambda =
          lif_backward_step(p, v, s, sg, static_cast<acc_t>(g[i]), h[i],
                            v_plus_prev, rho[i], sums, reset, gradient);
      sum_alpha[i] = sums.alpha;
      if constexpr (!AlphaOnly) {
        sum_threshold[i] = sums.threshold;
        sum_subtract[i] = sums.subtract;
        sum_min[i] = sums.min_v;
      }
      grad_x[i] = static_cast<scalar_t>(lambda);
      v_now[i] = v_prev;
    }
  };
  for (int64_t t = T - 1; t > 0; --t) step(t, std::false_type());
  step(0, std::true_type());
  // Only the wanted parameter gradients have an output (the others' pointers are null).
  const int64_t o = b * N + n0;
  for (int64_t i = 0; i < len; ++i) a.grad_v0[o + i] = rho[i];
  if (a.grad_alpha) std::copy(sum_alpha, sum_alpha + len, a.grad_alpha + o);
  if (a.grad_threshold) std::copy(sum_threshold, sum_threshold + len, a.grad_threshold + o);
  if (a.grad_subtract) std::copy(sum_subtract, sum_subtract + len, a.grad_subtract + o);
  if (a.grad_min_v) std::copy(sum_min, sum_min + len, a.grad_min_v + o);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lif_backward_cpu(
    const c10::optional<Tensor>& grad_spikes_in, const c10::optional<Tensor>& grad_v_mem_in,
    const Tensor& grad_v_last_in, const Tensor& v_mem_in, const c10::optional<Tensor>& sigma_in,
    const Tensor& v_init_in, const Tensor& alpha_in, const Tensor& threshold_in,
    const Tensor& subtract_in, const c10::optional<Tensor>& min_v_in, int64_t max_spikes,
    int64_t reset, int64_t gradient, int64_t surrogate, at::ArrayRef<double> surrogate_params,
    int64_t param_grads) {
  const Tensor& like = lif_backward_like(grad_spikes_in, v_mem_in);
  const Layout L = check_lif_inputs(like, v_init_in, alpha_in, threshold_in, subtract_in, min_v_in);
  check_lif_backward_inputs(grad_spikes_in, grad_v_mem_in, grad_v_last_in, v_mem_in, sigma_in,
                            v_init_in, surrogate, surrogate_params);
  const Tensor g = contiguous_or_undefined(grad_spikes_in);
  const Tensor h = contiguous_or_undefined(grad_v_mem_in);
  const Tensor g_last = grad_v_last_in.contiguous();
  const Tensor v_mem = v_mem_in.contiguous();
  const Tensor sigma = contiguous_or_undefined(sigma_in);
  const Tensor v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  const Tensor threshold = threshold_in.contiguous();
  const Tensor subtract = subtract_in.contiguous();
  const Tensor min_v = lower_bound_or_none(min_v_in, alpha);

  const auto acc_options = v_mem.options();
  Tensor grad_x = empty_output(like.sizes(), like.options());
  Tensor grad_v_init = at::empty_like(v_init);
  const int wanted = wanted_param_grads(param_grads, min_v_in.has_value());
  Tensor grad_alpha = param_grad_output(L, acc_options, wanted & kGradAlpha);
  Tensor grad_threshold = param_grad_output(L, acc_options, wanted & kGradThreshold);
  Tensor grad_subtract = param_grad_output(L, acc_options, wanted & kGradSubtract);
  Tensor grad_min_v = param_grad_output(L, acc_options, wanted & kGradMinV);
  if (L.numel() == 0) {
    grad_v_init.copy_(g_last);
    grad_alpha.zero_();
    grad_threshold.zero_();
    grad_subtract.zero_();
    grad_min_v.zero_();
    return {grad_x, grad_v_init, grad_alpha, grad_threshold, grad_subtract, grad_min_v};
  }

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, like.scalar_type(), "exodus_lif_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        BackwardArgs<scalar_t, acc_t> a;
        a.g = ptr_or_null<scalar_t>(g);
        a.h = ptr_or_null<acc_t>(h);
        a.g_last = g_last.const_data_ptr<acc_t>();
        a.v = v_mem.const_data_ptr<acc_t>();
        a.sigma = sigma.defined() ? sigma.const_data_ptr<acc_t>() : nullptr;
        a.v0 = v_init.const_data_ptr<acc_t>();
        a.alpha = alpha.const_data_ptr<acc_t>();
        a.threshold = threshold.const_data_ptr<acc_t>();
        a.subtract = subtract.const_data_ptr<acc_t>();
        a.min_v = min_v.const_data_ptr<acc_t>();
        a.grad_x = grad_x.mutable_data_ptr<scalar_t>();
        a.grad_v0 = grad_v_init.mutable_data_ptr<acc_t>();
        a.grad_alpha = mutable_ptr_or_null<acc_t>(grad_alpha);
        a.grad_threshold = mutable_ptr_or_null<acc_t>(grad_threshold);
        a.grad_subtract = mutable_ptr_or_null<acc_t>(grad_subtract);
        a.grad_min_v = mutable_ptr_or_null<acc_t>(grad_min_v);
        a.T = L.time;
        a.N = L.features;
        a.max_spikes = static_cast<int>(max_spikes);
        a.reset = static_cast<int>(reset);
        a.gradient = static_cast<int>(gradient);
        a.p0 = surrogate_params.size() > 0 ? acc_t(surrogate_params[0]) : acc_t(0);
        a.p1 = surrogate_params.size() > 1 ? acc_t(surrogate_params[1]) : acc_t(0);
        const int kind = sigma.defined() ? kSurrogateGiven : static_cast<int>(surrogate);
        dispatch_surrogate(kind, [&](auto kind_constant) {
          constexpr int Kind = decltype(kind_constant)::value;
          // A loop for each set of parameter sums.
          auto scan = [&]() {
            if (wanted == 0 && reset == kResetSubtract) {
              return min_v_in.has_value() ? &lif_backward_block_subtract<Kind, true, scalar_t, acc_t>
                                          : &lif_backward_block_subtract<Kind, false, scalar_t, acc_t>;
            } else if ((wanted & ~kGradAlpha) == 0 && reset == kResetSubtract) {
              return &lif_backward_block<Kind, kAlphaSumSubtract, scalar_t, acc_t>;
            } else if ((wanted & ~kGradAlpha) == 0) {
              return &lif_backward_block<Kind, kAlphaSumZero, scalar_t, acc_t>;
            }
            return &lif_backward_block<Kind, kAllSums, scalar_t, acc_t>;
          };
          const auto block = scan();
          for_each_block(L.batch, L.features, L.time, [&](int64_t b, int64_t n0, int64_t n1) {
            block(a, b, n0, n1);
          });
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
  Tensor y = empty_output(x.sizes(), x.options());
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
        for_each_block(L.batch, N, T, [&](int64_t b, int64_t n0, int64_t n1) {
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
  const Layout L =
      check_leaky_backward_inputs(grad_y_in, grad_y_last_in, y_in, v_init_in, alpha_in);
  const Tensor g = grad_y_in.contiguous();
  const Tensor g_last = grad_y_last_in.contiguous();
  const Tensor y = y_in.contiguous();
  const Tensor v_init = v_init_in.contiguous();
  const Tensor alpha = alpha_in.contiguous();
  Tensor grad_x = empty_output(g.sizes(), g.options());
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
        for_each_block(L.batch, N, T, [&](int64_t b, int64_t n0, int64_t n1) {
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
