// CUDA kernels of the EXODUS ops: one thread per (batch, feature) element, looping over time.
//
// Neighbouring threads handle neighbouring features, so each load and store of a time step is
// coalesced in the natural (batch, time, features) layout, and the work per element is O(T).
// The scan is a serial dependency per thread, so the kernels hide memory latency by loading the
// inputs of the next kChunk time steps into registers before computing the current ones
// (scan_time). The arithmetic per step comes from lif_step.h, shared with the CPU code.
//
// This file uses no CUDA runtime API: exodus_cuda.cu compiles it with nvcc, and
// exodus_cuda_emulation.cpp compiles it with the host compiler through cuda_emulation.h, so the
// test suite runs these very kernels on machines without a GPU.
#pragma once

#include <cstdint>

#include "leaky_step.h"
#include "lif_step.h"
#include "op_args.h"
#include "surrogate.h"

namespace exodus {
namespace gpu {

// Threads per block: small blocks spread a modest number of neurons (65k at (32, ·, 2048)) over
// all 132 multiprocessors of an H100/H200 with little imbalance, and still fill an SM.
constexpr int kThreads = 64;
// Time steps loaded ahead per thread (registers): forward reads one value per step, backward
// two or three, so the backward chunk is shorter to keep the register count in check.
constexpr int kForwardChunk = 16;
constexpr int kBackwardChunk = 8;

// This thread's neuron: its flat index e = b·N + n, and the offset of (b, t = 0, n).
struct Neuron {
  int64_t e, n, base;
};

// The neuron of this thread, or false for the threads past the last one.
EXODUS_DEVICE bool this_neuron(int64_t batch, int64_t time, int64_t features, Neuron& out) {
  // 64-bit before multiplying: blockIdx.x · blockDim.x overflows 32 bits past 2^32 neurons.
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= batch * features) return false;
  const int64_t b = e / features;
  out.e = e;
  out.n = e - b * features;
  out.base = b * time * features + out.n;
  return true;
}

// Walks the T steps of one neuron, forward (Reverse = false) or backward in time, calling
// step(t, frame_t, frame_after) where frame_after is the frame of the next step walked (t + 1
// forward, t − 1 backward; undefined for the last one). load(t) reads a step's inputs; frames
// are loaded one chunk of K steps ahead, so while a thread computes K steps, the loads of the
// next K are in flight.
template <int K, bool Reverse, typename Frame, typename Load, typename Step>
EXODUS_DEVICE void scan_time(int64_t T, const Load& load, const Step& step) {
  Frame cur[K] = {}, next[K] = {};
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if (k < T) cur[k] = load(Reverse ? T - 1 - k : k);
  }
  for (int64_t j0 = 0; j0 < T; j0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t j = j0 + K + k;
      if (j < T) next[k] = load(Reverse ? T - 1 - j : j);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t j = j0 + k;
      if (j < T) step(Reverse ? T - 1 - j : j, cur[k], k + 1 < K ? cur[k + 1] : next[0]);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) cur[k] = next[k];
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    lif_forward_kernel(const LifForwardArgs<scalar_t, acc_t> a) {
  Neuron me;
  if (!this_neuron(a.batch, a.time, a.features, me)) return;
  const int64_t N = a.features;
  const NeuronParams<acc_t> p{a.alpha[me.n], a.threshold[me.n], a.subtract[me.n], a.min_v[me.n]};
  acc_t state = a.v0[me.e];
  struct Frame {
    acc_t x;
  };
  scan_time<kForwardChunk, false, Frame>(
      a.time,
      [&](int64_t t) { return Frame{static_cast<acc_t>(a.x[me.base + t * N])}; },
      [&](int64_t t, const Frame& f, const Frame&) {
        acc_t s;
        const int64_t i = me.base + t * N;
        a.v_mem[i] = lif_forward_step(p, f.x, state, s, a.max_spikes, a.reset);
        a.spikes[i] = static_cast<scalar_t>(s);
      });
  a.v_last[me.e] = state;
}

// The reverse scan (docs/exodus_math.md). Kind: the surrogate (kSurrogateGiven: read sigma);
// Sums: which parameter sums to keep. Each membrane value is thresholded once: the spike count
// of v_{t-1}, needed for v⁺_{t-1}, is carried to the next step as its own.
template <int Kind, int Sums, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    lif_backward_kernel(const LifBackwardArgs<scalar_t, acc_t> a) {
  Neuron me;
  if (!this_neuron(a.batch, a.time, a.features, me)) return;
  const int64_t N = a.features, T = a.time;
  const NeuronParams<acc_t> p{a.alpha[me.n], a.threshold[me.n], a.subtract[me.n], a.min_v[me.n]};
  const SurrogateCoeffs<acc_t> coeffs = surrogate_setup<Kind>(p.threshold, a.p0, a.p1);
  struct Frame {
    acc_t v, g, h, sigma;
  };
  acc_t rho = a.g_last[me.e];
  acc_t s_now = spike_count(a.v[me.base + (T - 1) * N], p.threshold, a.max_spikes);
  ParamGrads<acc_t> sums;
  scan_time<kBackwardChunk, true, Frame>(
      T,
      [&](int64_t t) {
        const int64_t i = me.base + t * N;
        Frame f;
        f.v = a.v[i];
        f.g = a.g ? static_cast<acc_t>(a.g[i]) : acc_t(0);
        f.h = a.h ? a.h[i] : acc_t(0);
        f.sigma = Kind == kSurrogateGiven ? a.sigma[i] : acc_t(0);
        return f;
      },
      [&](int64_t t, const Frame& f, const Frame& before) {
        const acc_t sg = surrogate_at<Kind>(f.sigma, f.v, p.threshold, coeffs);
        acc_t s_before = acc_t(0), v_plus_before = a.v0[me.e];
        if (t > 0) {
          s_before = spike_count(before.v, p.threshold, a.max_spikes);
          v_plus_before = post_reset_state(p, before.v, s_before, a.reset);
        }
        const acc_t lambda = lif_backward_step(p, f.v, s_now, sg, f.g, f.h, v_plus_before, rho,
                                               sums, a.reset, a.gradient);
        a.grad_x[me.base + t * N] = static_cast<scalar_t>(lambda);
        s_now = s_before;
      });
  a.grad_v0[me.e] = rho;
  if constexpr (Sums != kSumsNone) {
    if (a.grad_alpha) a.grad_alpha[me.e] = sums.alpha;
  }
  if constexpr (Sums == kSumsAll) {
    if (a.grad_threshold) a.grad_threshold[me.e] = sums.threshold;
    if (a.grad_subtract) a.grad_subtract[me.e] = sums.subtract;
    if (a.grad_min_v) a.grad_min_v[me.e] = sums.min_v;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    leaky_forward_kernel(const LeakyForwardArgs<scalar_t, acc_t> a) {
  Neuron me;
  if (!this_neuron(a.batch, a.time, a.features, me)) return;
  const int64_t N = a.features;
  const acc_t alpha = a.alpha[me.n];
  acc_t state = a.v0[me.e];
  struct Frame {
    acc_t x;
  };
  scan_time<kForwardChunk, false, Frame>(
      a.time,
      [&](int64_t t) { return Frame{static_cast<acc_t>(a.x[me.base + t * N])}; },
      [&](int64_t t, const Frame& f, const Frame&) {
        state = leaky_forward_step(alpha, state, f.x);
        a.y[me.base + t * N] = static_cast<scalar_t>(state);
      });
  a.y_last[me.e] = state;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    leaky_backward_kernel(const LeakyBackwardArgs<scalar_t, acc_t> a) {
  Neuron me;
  if (!this_neuron(a.batch, a.time, a.features, me)) return;
  const int64_t N = a.features;
  const acc_t alpha = a.alpha[me.n];
  acc_t mu_after = a.g_last[me.e];  // α · μ_{t+1}, and dL/dy_last at t = T
  acc_t sum_alpha = acc_t(0);
  struct Frame {
    acc_t g, y;
  };
  scan_time<kBackwardChunk, true, Frame>(
      a.time,
      [&](int64_t t) {
        const int64_t i = me.base + t * N;
        return Frame{static_cast<acc_t>(a.g[i]), static_cast<acc_t>(a.y[i])};
      },
      [&](int64_t t, const Frame& f, const Frame& before) {
        const acc_t y_before = t > 0 ? before.y : a.v0[me.e];
        a.grad_x[me.base + t * N] =
            static_cast<scalar_t>(leaky_backward_step(alpha, f.g, y_before, mu_after, sum_alpha));
      });
  a.grad_v0[me.e] = mu_after;
  a.grad_alpha[me.e] = sum_alpha;
}

}  // namespace gpu
}  // namespace exodus
