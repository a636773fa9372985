// Function qualifiers of the code shared by the CPU loops and the CUDA kernels.
#pragma once

// EXODUS_HD: host and device code; EXODUS_DEVICE: kernel helpers (host code only when the CUDA
// kernels run under cuda_emulation.h).
#if defined(__CUDACC__)
#define EXODUS_HD __host__ __device__ __forceinline__
#define EXODUS_DEVICE __device__ __forceinline__
#else
#define EXODUS_HD inline
#define EXODUS_DEVICE inline
#endif
