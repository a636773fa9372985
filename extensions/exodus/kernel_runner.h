// The Runner (ops.h) of the CUDA kernels: each scan policy run as scan_kernel<P> over one thread
// per neuron, launched by a Launcher, real (cuda_launcher.cuh) or emulated on the host
// (exodus_cuda_emulation.cpp). A Launcher has
//   static auto guard(const at::Tensor&)       -> an RAII device guard (or nothing)
//   static void launch(kernel, blocks, args)   -> kernel<<<blocks, kThreads>>>(args)
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "cuda_kernels.cuh"

namespace exodus {
namespace gpu {

template <typename Launcher>
struct KernelRunner {
  // One reverse LIF kernel per surrogate and sums, with the reset read at run time: a select
  // costs the GPU little, and fixing the reset would double the CUDA build.
  static constexpr bool kFixedReset = false;

  static auto guard(const at::Tensor& like) { return Launcher::guard(like); }
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return at::empty(sizes, options);
  }
  template <typename P>
  static void run(const typename P::Args& a) {
    const int64_t neurons = a.batch * a.features;
    Launcher::launch(&scan_kernel<P>, static_cast<unsigned int>((neurons + kThreads - 1) / kThreads),
                     a);
  }
};

}  // namespace gpu
}  // namespace exodus
