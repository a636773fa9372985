// Runs CUDA kernels on the host: what a CUDA file needs from the language (__global__,
// threadIdx/blockIdx/blockDim/gridDim, a launch), written so the same kernel bodies compile with
// g++ and run as loops over the grid. Tests on machines without a GPU use it to check the CUDA
// kernels' own indexing, chunking and variants against the reference (exodus_cuda_emulation.cpp).
//
// Only for kernels that use no shared memory, barriers or warp operations: every thread of the
// emulated grid runs to completion, one after another.
#pragma once

#if defined(__CUDACC__)
#error "cuda_emulation.h is for host compilers; nvcc has the real thing"
#endif

#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace exodus {
namespace emulation {

// CUDA's uint3 / dim3 for the built-in index variables (unsigned, as on the device, so index
// arithmetic overflows the same way).
struct Dim3 {
  unsigned int x = 1, y = 1, z = 1;
};

inline thread_local Dim3 threadIdx, blockIdx, blockDim, gridDim;

// kernel<<<blocks, threads>>>(args...) as loops over the one-dimensional grid.
template <typename Kernel, typename... Args>
void launch(Kernel kernel, unsigned int blocks, unsigned int threads, const Args&... args) {
  gridDim = Dim3{blocks, 1, 1};
  blockDim = Dim3{threads, 1, 1};
  for (unsigned int b = 0; b < blocks; ++b) {
    blockIdx = Dim3{b, 0, 0};
    for (unsigned int t = 0; t < threads; ++t) {
      threadIdx = Dim3{t, 0, 0};
      kernel(args...);
    }
  }
}

}  // namespace emulation

using emulation::blockDim;
using emulation::blockIdx;
using emulation::gridDim;
using emulation::threadIdx;

}  // namespace exodus
