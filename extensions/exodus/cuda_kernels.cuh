// The CUDA scan driver: one thread per (batch, feature) element, walking a scan policy
// (lif_step.h, leaky_step.h; the contract is in docs/adding_a_neuron_model.md) over time.
//
// Neighbouring threads handle neighbouring features, so each load and store of a time step is
// coalesced in the natural (batch, time, features) layout, and the work per element is O(T).
// The scan is a serial dependency per thread, so the kernel hides memory latency by loading the
// frames of the next K time steps into registers before computing the current ones
// (scan_time).
//
// This file uses no CUDA runtime API: exodus_cuda*.cu compile it with nvcc, and
// exodus_cuda_emulation.cpp compiles it with the host compiler through cuda_emulation.h, so the
// test suite runs these very kernels on machines without a GPU.
#pragma once

#include <cstdint>

#include "qualifiers.h"

namespace exodus {
namespace gpu {

// Threads per block: small blocks spread a modest number of neurons (65k at (32, ·, 2048)) over
// all 132 multiprocessors of an H100/H200 with little imbalance, and still fill an SM.
constexpr int kThreads = 64;
// Time steps loaded ahead per thread (registers): forward scans read about one value per step,
// reverse scans two or three, so their chunk is shorter to keep the register count in check.
constexpr int kForwardChunk = 16;
constexpr int kReverseChunk = 8;

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
// forward, t − 1 backward; undefined for the last one). load(t) reads a step's frame; frames
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

// Runs policy P for the neuron of this thread over all T steps (T ≥ 1). A reverse step sees the
// frame of t−1 as `before`; the step at t = 0 runs as step<true> and must not use it.
template <typename P>
__global__ void __launch_bounds__(kThreads) scan_kernel(const typename P::Args a) {
  using Frame = typename P::Frame;
  Neuron me;
  if (!this_neuron(a.batch, a.time, a.features, me)) return;
  const int64_t N = a.features, T = a.time;
  const typename P::Consts k = P::consts(a, me.n);
  typename P::Carry c = P::start(a, k, me.e, me.base + (P::kReverse ? T - 1 : 0) * N);
  scan_time<P::kReverse ? kReverseChunk : kForwardChunk, P::kReverse, Frame>(
      T, [&](int64_t t) { return P::load(a, me.base + t * N); },
      [&](int64_t t, const Frame& now, const Frame& after) {
        const int64_t i = me.base + t * N;
        if (P::kReverse && t == 0) {
          P::template step<true>(a, k, c, now, after, i, me.e);
        } else {
          P::template step<false>(a, k, c, now, after, i, me.e);
        }
      });
  P::finish(a, k, c, me.e);
}

}  // namespace gpu
}  // namespace exodus
