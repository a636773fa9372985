// The CPU ops of LIF and the leaky integrator: ops.h's entry points over the CPU runner
// (cpu_runner.h). Each neuron model is its own translation unit, so the build compiles them in
// parallel; LIF's reverse scans of half inputs are a file of their own (exodus_cpu_lif_half.cpp),
// else this file alone would take most of the build.
#include <torch/library.h>

#include "cpu_runner.h"

namespace exodus {

extern template void lif_backward_typed<cpu::CpuRunner, at::Half>(const LifBackwardCall&);
extern template void lif_backward_typed<cpu::CpuRunner, at::BFloat16>(const LifBackwardCall&);

TORCH_LIBRARY_IMPL(exodus_lightning, CPU, m) { register_lif_ops<cpu::CpuRunner>(m); }

}  // namespace exodus
