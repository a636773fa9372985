// The Runner (ops.h) of the CPU ops: the scan policies run by cpu_scan.h's loops, parallel over
// (batch, block of features), with full-size outputs on huge pages. Included by each CPU
// translation unit (exodus_cpu*.cpp, one per neuron model, compiled in parallel).
#pragma once

#include <ATen/ops/empty.h>
#include <torch/library.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstdint>

#include "cpu_scan.h"
#include "ops.h"

namespace exodus {
namespace cpu {

// A full-size output, backed by 2 MB pages where the kernel allows it (transparent huge pages in
// "madvise" mode). Fresh large buffers are mapped anew on every call, and faulting them in 4 kB
// pages costs as much as the whole scan; huge pages need 512x fewer faults.
inline Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
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

struct CpuRunner {
  // The reverse LIF scans take the reset mode as a template argument: a runtime select in the
  // feature loop keeps GCC from vectorising it (3x slower).
  static constexpr bool kFixedReset = true;

  struct NoGuard {};
  static NoGuard guard(const Tensor&) { return {}; }
  static Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return empty_output(sizes, options);
  }
  template <typename P>
  static void run(const typename P::Args& a) {
    cpu::for_each_block(a.batch, a.features, a.time, [&](int64_t b, int64_t n0, int64_t n1) {
      cpu::scan_block<P>(a, b, n0, n1);
    });
  }
};

}  // namespace cpu

}  // namespace exodus
