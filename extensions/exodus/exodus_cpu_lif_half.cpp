// LIF's reverse CPU scans of float16 and bfloat16 inputs (every surrogate and variant), compiled
// beside exodus_cpu.cpp, which declares them extern: about half of LIF's CPU code.
#include "cpu_runner.h"

namespace exodus {

template void lif_backward_typed<cpu::CpuRunner, at::Half>(const LifBackwardCall&);
template void lif_backward_typed<cpu::CpuRunner, at::BFloat16>(const LifBackwardCall&);

}  // namespace exodus
