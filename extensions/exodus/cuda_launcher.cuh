// The Launcher (kernel_runner.h) of the real CUDA ops: the scan kernels of cuda_kernels.cuh
// launched on the current stream of the inputs' device. Included by each CUDA translation unit
// (exodus_cuda*.cu, one per neuron model, compiled in parallel like the CPU's exodus_cpu*.cpp).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "kernel_runner.h"
#include "ops.h"

namespace exodus {
namespace gpu {

struct CudaLauncher {
  // The device of the tensor the op dispatched on; none for a CPU tensor among CUDA ones, so
  // the argument checks that follow name it instead of the guard failing first.
  static c10::cuda::OptionalCUDAGuard guard(const at::Tensor& like) {
    return c10::cuda::OptionalCUDAGuard(
        like.is_cuda() ? c10::optional<c10::Device>(like.device()) : c10::nullopt);
  }

  template <typename Args>
  static void launch(void (*kernel)(Args), unsigned int blocks, const Args& args) {
    kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

using CudaRunner = KernelRunner<CudaLauncher>;

}  // namespace gpu
}  // namespace exodus
