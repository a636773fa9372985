// The CPU scan driver: walks a scan policy (lif_step.h, leaky_step.h; the contract is in
// docs/adding_a_neuron_model.md) over every (batch row, block of features), in parallel, with
// the time loop outside and a contiguous loop over the features of a block inside: the natural
// (batch, time, features) layout, so no transpose is needed.
//
// The feature loop is vectorised by the compiler: each feature is an independent neuron, the
// policy's steps are branch-free, the per-neuron structs live in one stack array per word
// (structure of arrays, so every word is a unit-stride vector load), `GCC ivdep` states that
// the outputs written at step t never alias the inputs read at step t, and the build adds
// -fno-trapping-math and the CPU's vector ISA. (No `omp simd`: it privatises the per-neuron
// structs into arrays and then gives up on them.)
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace exodus {
namespace cpu {

// Features handled together by one task, at most: long rows (8 kB of float32) keep the
// prefetcher and the TLB busy with few page switches per element; the per-neuron structs of a
// block live in stack arrays of this size.
constexpr int64_t kBlock = 2048;
// At least this many: shorter rows waste the vector lanes and the prefetcher.
constexpr int64_t kMinBlock = 64;

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

// A block's copy of one per-neuron struct S (made of acc_t words only), one array per word.
template <typename S, typename T>
struct BlockOf {
  static_assert(sizeof(S) % sizeof(T) == 0 && std::is_trivially_copyable<S>::value,
                "per-neuron structs of a scan hold acc_t words only");
  static constexpr int kWords = static_cast<int>(sizeof(S) / sizeof(T));
  T words[kWords][kBlock];

  // Word k of a struct is its k-th acc_t member: read and written through a T pointer, which
  // the compiler turns back into scalars (a memcpy through a local array would not be, and
  // keeps the loop scalar).
  S get(int64_t i) const {
    S s;
    T* w = reinterpret_cast<T*>(&s);
#pragma GCC unroll 16
    for (int k = 0; k < kWords; ++k) w[k] = words[k][i];
    return s;
  }
  void set(int64_t i, const S& s) {
    const T* w = reinterpret_cast<const T*>(&s);
#pragma GCC unroll 16
    for (int k = 0; k < kWords; ++k) words[k][i] = w[k];
  }
};

// Runs policy P over features [n0, n1) of batch row b, for all T steps (forward, or backward in
// time when P::kReverse). A reverse step sees the frame of t−1 as `before`; the step at t = 0
// runs as step<true> and must not use it.
template <typename P>
void scan_block(const typename P::Args& a, int64_t b, int64_t n0, int64_t n1) {
  using acc_t = typename P::acc_t;
  using Consts = typename P::Consts;
  using Carry = typename P::Carry;
  using Frame = typename P::Frame;
  const int64_t T = a.time, N = a.features, len = n1 - n0, e0 = b * N + n0;
  BlockOf<Consts, acc_t> consts;
  BlockOf<Carry, acc_t> carry;
  const int64_t first_row = (b * T + (P::kReverse ? T - 1 : 0)) * N + n0;
  for (int64_t i = 0; i < len; ++i) {
    const Consts k = P::consts(a, n0 + i);
    consts.set(i, k);
    carry.set(i, P::start(a, k, e0 + i, first_row + i));
  }
  // One step over the block; AtStart is a compile-time flag: a uniform select in the loop
  // would keep it scalar.
  const auto walk = [&](int64_t t, auto at_start) {
    constexpr bool AtStart = decltype(at_start)::value;
    const int64_t row = (b * T + t) * N + n0;
#pragma GCC ivdep
    for (int64_t i = 0; i < len; ++i) {
      const Consts k = consts.get(i);
      Carry c = carry.get(i);
      const Frame now = P::load(a, row + i);
      // The reverse steps' frame of t−1: the compiler drops the loads the step does not use.
      const Frame before = P::kReverse && !AtStart ? P::load(a, row + i - N) : now;
      P::template step<AtStart>(a, k, c, now, before, row + i, e0 + i);
      carry.set(i, c);
    }
  };
  if constexpr (P::kReverse) {
    for (int64_t t = T - 1; t > 0; --t) walk(t, std::false_type());
    walk(0, std::true_type());
  } else {
    for (int64_t t = 0; t < T; ++t) walk(t, std::false_type());
  }
  for (int64_t i = 0; i < len; ++i) P::finish(a, consts.get(i), carry.get(i), e0 + i);
}

}  // namespace cpu
}  // namespace exodus
