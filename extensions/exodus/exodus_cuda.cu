// The CUDA ops of LIF and the leaky integrator: ops.h's entry points over the CUDA runner
// (cuda_launcher.cuh). Each neuron model is its own translation unit, so the build compiles them
// in parallel (one nvcc process per file; a single file of all 244 kernels took 138 s of CPU).
#include "cuda_launcher.cuh"

namespace exodus {

TORCH_LIBRARY_IMPL(exodus_lightning, CUDA, m) { register_lif_ops<gpu::CudaRunner>(m); }

}  // namespace exodus
