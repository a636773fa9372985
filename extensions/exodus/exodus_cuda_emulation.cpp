// The CUDA ops run on the host: cuda_kernels.cuh and ops.h compiled by the host compiler
// through cuda_emulation.h, registered for CPU tensors under the op namespace
// exodus_lightning_cuda_emulation (schemas defined in exodus_lightning/ops/_library.py). Tests
// compare them with the reference on machines without a GPU; nothing else uses them.
// Torch's headers first: cuda_emulation.h defines CUDA's keywords as macros.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "cuda_emulation.h"
#include "kernel_runner.h"
#include "ops.h"

namespace exodus {
namespace {

struct EmulatedLauncher {
  struct NoGuard {};
  static NoGuard guard(const at::Tensor&) { return {}; }

  template <typename Args>
  static void launch(void (*kernel)(Args), unsigned int blocks, const Args& args) {
    emulation::launch(kernel, blocks, gpu::kThreads, args);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(exodus_lightning_cuda_emulation, CPU, m) {
  register_ops<gpu::KernelRunner<EmulatedLauncher>>(m);
}

}  // namespace exodus
