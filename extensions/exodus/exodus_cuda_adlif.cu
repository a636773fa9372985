// The CUDA ops of SE-adLIF's adaptive LIF (adLIF): ops.h's entry points over the CUDA runner
// (cuda_launcher.cuh). Each neuron model is its own translation unit, so the build compiles them
// in parallel.
#include "cuda_launcher.cuh"

namespace exodus {

TORCH_LIBRARY_IMPL(exodus_lightning, CUDA, m) { register_adlif_ops<gpu::CudaRunner>(m); }

}  // namespace exodus
