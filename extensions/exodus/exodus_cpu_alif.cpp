// The CPU ops of the adaptive LIF (ALIF): ops.h's entry points over the CPU runner (cpu_runner.h). Each neuron
// model is its own translation unit, so the build compiles them in parallel.
#include <torch/library.h>

#include "cpu_runner.h"

namespace exodus {

TORCH_LIBRARY_IMPL(exodus_lightning, CPU, m) { register_alif_ops<cpu::CpuRunner>(m); }

}  // namespace exodus
