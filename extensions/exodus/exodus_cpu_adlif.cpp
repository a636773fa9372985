// The CPU ops of SE-adLIF's adaptive LIF (adLIF): ops.h's entry points over the CPU runner (cpu_runner.h). Each neuron
// model is its own translation unit, so the build compiles them in parallel.
#include <torch/library.h>

#include "cpu_runner.h"

namespace exodus {

TORCH_LIBRARY_IMPL(exodus_lightning, CPU, m) { register_adlif_ops<cpu::CpuRunner>(m); }

}  // namespace exodus
