// CPU kernels of the EXODUS ops: parallel over (batch, block of features), time loop outside,
// contiguous loop over the features of a block inside (the natural (batch, time, features)
// layout, so no transpose is needed).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>

#include "leaky_step.h"
#include "lif_step.h"
#include "op_calls.h"
#include "static_switch.h"
#include "surrogate.h"

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

// Forward scan over time for features [n0, n1) of batch row b. The pointers are __restrict
// parameters: GCC only trusts restrict on parameters here, and without it the loop stays scalar
// (it cannot rule out that a store to v_mem changes alpha).
template <typename scalar_t, typename acc_t>
void lif_forward_rows(const scalar_t* __restrict x, const acc_t* __restrict v0,
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

template <typename scalar_t, typename acc_t>
void lif_forward_block(const LifForwardArgs<scalar_t, acc_t>& a, int64_t b, int64_t n0,
                       int64_t n1) {
  lif_forward_rows(a.x, a.v0, a.alpha, a.threshold, a.subtract, a.min_v, a.spikes, a.v_mem,
                   a.v_last, b, n0, n1, a.time, a.features, a.max_spikes, a.reset);
}

std::tuple<Tensor, Tensor, Tensor> lif_forward_cpu(const Tensor& x, const Tensor& v_init,
                                                   const Tensor& alpha, const Tensor& threshold,
                                                   const Tensor& subtract,
                                                   const c10::optional<Tensor>& min_v,
                                                   int64_t max_spikes, int64_t reset,
                                                   int64_t /*gradient*/, int64_t /*surrogate*/,
                                                   at::ArrayRef<double> /*surrogate_params*/) {
  const LifForwardCall c = prepare_lif_forward(x, v_init, alpha, threshold, subtract, min_v,
                                               max_spikes, reset, &empty_output);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.x.scalar_type(), "exodus_lif_forward_cpu", [&] {
        const auto a = c.args<scalar_t>();
        for_each_block(c.L.batch, c.L.features, c.L.time, [&](int64_t b, int64_t n0, int64_t n1) {
          lif_forward_block(a, b, n0, n1);
        });
      });
  return c.result();
}

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

// Rows of zeros standing in for an absent upstream gradient (g or h): one loop serves every
// case, at the cost of an L1 load per element (more instantiations would double the build).
template <typename scalar_t, typename acc_t>
struct ZeroRows {
  scalar_t g[kBlock];
  acc_t h[kBlock];
  ZeroRows(const LifBackwardArgs<scalar_t, acc_t>& a, int64_t len) {
    if (!a.g) std::fill(g, g + len, scalar_t(0));
    if (!a.h) std::fill(h, h + len, acc_t(0));
  }
};

// Reverse scan for features [n0, n1) of batch row b when the reset subtracts and no parameter
// gradient is wanted (lif_backward_step_subtract): v⁺_{t-1} is not needed (nor, without a lower
// bound, the spike counts), so each step reads v_t, g_t (and h_t) and writes dL/dx_t.
template <int Kind, bool Clip, typename scalar_t, typename acc_t>
void lif_backward_block_subtract(const LifBackwardArgs<scalar_t, acc_t>& a, int64_t b,
                                 int64_t n0, int64_t n1) {
  const int64_t T = a.time, N = a.features, len = n1 - n0;
  acc_t rho[kBlock], coeff0[kBlock], coeff1[kBlock];
  for (int64_t i = 0; i < len; ++i) rho[i] = a.g_last[b * N + n0 + i];
  setup_surrogate_block<Kind>(a.threshold + n0, a.p0, a.p1, len, coeff0, coeff1);
  const ZeroRows<scalar_t, acc_t> zeros(a, len);
  const acc_t* __restrict alpha = a.alpha + n0;
  const acc_t* __restrict threshold = a.threshold + n0;
  const acc_t* __restrict subtract = a.subtract + n0;
  const acc_t* __restrict min_v = a.min_v + n0;
  const bool exact = a.gradient == kGradientExodus;
  const int max_spikes = a.max_spikes;
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t row = (b * T + t) * N + n0;
    const acc_t* __restrict v = a.v + row;
    const scalar_t* __restrict g = a.g ? a.g + row : zeros.g;
    const acc_t* __restrict h = a.h ? a.h + row : zeros.h;
    const acc_t* __restrict sigma = Kind == kSurrogateGiven ? a.sigma + row : nullptr;
    scalar_t* __restrict grad_x = a.grad_x + row;
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<acc_t> p{alpha[i], threshold[i], subtract[i], min_v[i]};
      const acc_t sg = surrogate_at<Kind>(Kind == kSurrogateGiven ? sigma[i] : acc_t(0), v[i],
                                          p.threshold, SurrogateCoeffs<acc_t>{coeff0[i], coeff1[i]});
      grad_x[i] = static_cast<scalar_t>(lif_backward_step_subtract<Clip>(
          p, v[i], sg, static_cast<acc_t>(g[i]), h[i], rho[i], exact, max_spikes));
    }
  }
  for (int64_t i = 0; i < len; ++i) a.grad_v0[b * N + n0 + i] = rho[i];
}

// Reverse scan over time for features [n0, n1) of batch row b, keeping the parameter sums of
// Sums (op_args.h), with the reset mode fixed at compile time: a runtime reset mode leaves
// selects in the loop that keep GCC from vectorising it (3x slower), and fewer sums free enough
// registers to keep the loop from spilling (~30 % faster at (32, 300, 2048) than all sums).
template <int Kind, int Sums, int Reset, typename scalar_t, typename acc_t>
void lif_backward_block(const LifBackwardArgs<scalar_t, acc_t>& a, int64_t b, int64_t n0,
                        int64_t n1) {
  const int64_t T = a.time, N = a.features, len = n1 - n0;
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
  const ZeroRows<scalar_t, acc_t> zeros(a, len);
  const acc_t* __restrict alpha = a.alpha + n0;
  const acc_t* __restrict threshold = a.threshold + n0;
  const acc_t* __restrict subtract = a.subtract + n0;
  const acc_t* __restrict min_v = a.min_v + n0;
  const int max_spikes = a.max_spikes, gradient = a.gradient;
  constexpr int reset = Reset;
  const acc_t zero = acc_t(0);
  // One reverse step over the block; First (t = 0) takes v⁺_0 = v_init as it is, the other
  // steps rebuild v⁺_{t-1} from v_{t-1}. A compile-time flag: a uniform select in the loop
  // would keep it scalar.
  auto step = [&](int64_t t, auto first_constant) {
    constexpr bool First = decltype(first_constant)::value;
    const int64_t row = (b * T + t) * N + n0;
    const acc_t* __restrict prev = First ? a.v0 + b * N + n0 : a.v + row - N;
    const scalar_t* __restrict g = a.g ? a.g + row : zeros.g;
    const acc_t* __restrict h = a.h ? a.h + row : zeros.h;
    const acc_t* __restrict sigma = Kind == kSurrogateGiven ? a.sigma + row : nullptr;
    scalar_t* __restrict grad_x = a.grad_x + row;
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<acc_t> p{alpha[i], threshold[i], subtract[i], min_v[i]};
      const acc_t v = v_now[i];
      const acc_t s = s_now[i];
      const acc_t sg = surrogate_at<Kind>(Kind == kSurrogateGiven ? sigma[i] : zero, v,
                                          p.threshold, SurrogateCoeffs<acc_t>{coeff0[i], coeff1[i]});
      const acc_t v_prev = prev[i];
      acc_t v_plus_prev = v_prev;
      if constexpr (!First) {
        const acc_t s_prev = spike_count(v_prev, p.threshold, max_spikes);
        v_plus_prev = post_reset_state(p, v_prev, s_prev, reset);
        s_now[i] = s_prev;
      }
      ParamGrads<acc_t> sums{Sums != kSumsNone ? sum_alpha[i] : zero,
                             Sums == kSumsAll ? sum_threshold[i] : zero,
                             Sums == kSumsAll ? sum_subtract[i] : zero,
                             Sums == kSumsAll ? sum_min[i] : zero};
      const acc_t lambda = lif_backward_step(p, v, s, sg, static_cast<acc_t>(g[i]), h[i],
                                             v_plus_prev, rho[i], sums, reset, gradient);
      if constexpr (Sums != kSumsNone) sum_alpha[i] = sums.alpha;
      if constexpr (Sums == kSumsAll) {
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
    const c10::optional<Tensor>& grad_spikes, const c10::optional<Tensor>& grad_v_mem,
    const Tensor& grad_v_last, const Tensor& v_mem, const c10::optional<Tensor>& sigma,
    const Tensor& v_init, const Tensor& alpha, const Tensor& threshold, const Tensor& subtract,
    const c10::optional<Tensor>& min_v, int64_t max_spikes, int64_t reset, int64_t gradient,
    int64_t surrogate, at::ArrayRef<double> surrogate_params, int64_t param_grads) {
  const LifBackwardCall c = prepare_lif_backward(
      grad_spikes, grad_v_mem, grad_v_last, v_mem, sigma, v_init, alpha, threshold, subtract,
      min_v, max_spikes, reset, gradient, surrogate, surrogate_params, param_grads,
      &empty_output);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.grad_x.scalar_type(), "exodus_lif_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        using Args = LifBackwardArgs<scalar_t, acc_t>;
        const Args a = c.args<scalar_t>();
        const auto run = [&](void (*scan)(const Args&, int64_t, int64_t, int64_t)) {
          for_each_block(c.L.batch, c.L.features, c.L.time,
                         [&](int64_t b, int64_t n0, int64_t n1) { scan(a, b, n0, n1); });
        };
        const int sums = c.sums();
        const bool known = dispatch_surrogate(c.kind, [&](auto kind) {
          constexpr int Kind = decltype(kind)::value;
          if (c.reset == kResetZero) {
            int_switch<kSumsNone, kSumsAlpha, kSumsAll>(sums, [&](auto s) {
              run(&lif_backward_block<Kind, decltype(s)::value, kResetZero, scalar_t, acc_t>);
            });
          } else if (sums == kSumsNone) {
            bool_switch(c.min_v_given, [&](auto clip) {
              run(&lif_backward_block_subtract<Kind, decltype(clip)::value, scalar_t, acc_t>);
            });
          } else {
            int_switch<kSumsAlpha, kSumsAll>(sums, [&](auto s) {
              run(&lif_backward_block<Kind, decltype(s)::value, kResetSubtract, scalar_t, acc_t>);
            });
          }
        });
        TORCH_CHECK(known, "exodus_lightning: unknown surrogate code ", c.kind);
      });
  return c.result();
}

std::tuple<Tensor, Tensor> leaky_forward_cpu(const Tensor& x, const Tensor& v_init,
                                             const Tensor& alpha) {
  const LeakyForwardCall c = prepare_leaky_forward(x, v_init, alpha, &empty_output);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.x.scalar_type(), "exodus_leaky_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto a = c.args<scalar_t>();
        const int64_t T = a.time, N = a.features;
        for_each_block(a.batch, N, T, [&](int64_t b, int64_t n0, int64_t n1) {
          acc_t state[kBlock];
          for (int64_t n = n0; n < n1; ++n) state[n - n0] = a.v0[b * N + n];
          for (int64_t t = 0; t < T; ++t) {
            const int64_t row = (b * T + t) * N;
            for (int64_t n = n0; n < n1; ++n) {
              acc_t& i_syn = state[n - n0];
              i_syn = leaky_forward_step(a.alpha[n], i_syn, static_cast<acc_t>(a.x[row + n]));
              a.y[row + n] = static_cast<scalar_t>(i_syn);
            }
          }
          for (int64_t n = n0; n < n1; ++n) a.y_last[b * N + n] = state[n - n0];
        });
      });
  return c.result();
}

std::tuple<Tensor, Tensor, Tensor> leaky_backward_cpu(const Tensor& grad_y,
                                                      const Tensor& grad_y_last, const Tensor& y,
                                                      const Tensor& v_init, const Tensor& alpha) {
  const LeakyBackwardCall c =
      prepare_leaky_backward(grad_y, grad_y_last, y, v_init, alpha, &empty_output);
  if (c.empty()) return c.result();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.g.scalar_type(), "exodus_leaky_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto a = c.args<scalar_t>();
        const int64_t T = a.time, N = a.features;
        for_each_block(a.batch, N, T, [&](int64_t b, int64_t n0, int64_t n1) {
          acc_t mu_after[kBlock];  // α · μ_{t+1}, and dL/dy_last at t = T
          acc_t sum_alpha[kBlock];
          for (int64_t n = n0; n < n1; ++n) {
            mu_after[n - n0] = a.g_last[b * N + n];
            sum_alpha[n - n0] = acc_t(0);
          }
          for (int64_t t = T - 1; t >= 0; --t) {
            const int64_t row = (b * T + t) * N;
            for (int64_t n = n0; n < n1; ++n) {
              const acc_t y_before =
                  t > 0 ? static_cast<acc_t>(a.y[row - N + n]) : a.v0[b * N + n];
              a.grad_x[row + n] = static_cast<scalar_t>(
                  leaky_backward_step(a.alpha[n], static_cast<acc_t>(a.g[row + n]), y_before,
                                      mu_after[n - n0], sum_alpha[n - n0]));
            }
          }
          for (int64_t n = n0; n < n1; ++n) {
            a.grad_v0[b * N + n] = mu_after[n - n0];
            a.grad_alpha[b * N + n] = sum_alpha[n - n0];
          }
        });
      });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(exodus_lightning, CPU, m) {
  m.impl("lif_forward", &lif_forward_cpu);
  m.impl("lif_backward", &lif_backward_cpu);
  m.impl("leaky_forward", &leaky_forward_cpu);
  m.impl("leaky_backward", &leaky_backward_cpu);
}

}  // namespace exodus
