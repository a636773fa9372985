// The CPU ops of LIF and the leaky integrator: ops.h's entry points over the CPU runner (cpu_runner.h). Each neuron
// model is its own translation unit, so the build compiles them in parallel.
#include <torch/library.h>

#include "cpu_runner.h"

namespace exodus {

TORCH_LIBRARY_IMPL(exodus_lightning, CPU, m) { register_lif_ops<cpu::CpuRunner>(m); }

}  // namespace exodus
