// The arguments of each op's kernels, one struct per op passed by value (mamba's style), filled
// by op_calls.h and read by the CPU loops and the CUDA kernels alike. Sizes are (batch B,
// time T, features N); tensors are contiguous in the natural (B, T, N) layout.
#pragma once

#include <cstdint>

namespace exodus {

// Which parameter sums a backward kernel keeps (the others are dead code the compiler
// drops; on the CPU the variants also keep the loops from spilling registers).
enum Sums : int { kSumsNone = 0, kSumsAlpha = 1, kSumsAll = 2 };

template <typename scalar_t, typename acc_t>
struct LifForwardArgs {
  const scalar_t* x;                                  // (B, T, N)
  const acc_t* v0;                                    // (B, N)
  const acc_t *alpha, *threshold, *subtract, *min_v;  // (N,)
  scalar_t* spikes;                                   // (B, T, N)
  acc_t* v_mem;                                       // (B, T, N)
  acc_t* v_last;                                      // (B, N)
  int64_t batch, time, features;
  int max_spikes, reset;
};

template <typename scalar_t, typename acc_t>
struct LifBackwardArgs {
  const scalar_t* g;                                  // (B, T, N) dL/dspikes, or null (zeros)
  const acc_t* h;                                     // (B, T, N) dL/dv_mem, or null (zeros)
  const acc_t* g_last;                                // (B, N) dL/dv_last
  const acc_t* v;                                     // (B, T, N) pre-reset membrane
  const acc_t* sigma;                                 // (B, T, N) given surrogate, or null
  const acc_t* v0;                                    // (B, N)
  const acc_t *alpha, *threshold, *subtract, *min_v;  // (N,)
  scalar_t* grad_x;                                   // (B, T, N)
  acc_t* grad_v0;                                     // (B, N)
  // (B, N) each; null when not wanted
  acc_t *grad_alpha, *grad_threshold, *grad_subtract, *grad_min_v;
  int64_t batch, time, features;
  int max_spikes, reset, gradient;
  acc_t p0, p1;  // surrogate parameters
};

template <typename scalar_t, typename acc_t>
struct LeakyForwardArgs {
  const scalar_t* x;   // (B, T, N)
  const acc_t* v0;     // (B, N)
  const acc_t* alpha;  // (N,)
  scalar_t* y;         // (B, T, N)
  acc_t* y_last;       // (B, N)
  int64_t batch, time, features;
};

template <typename scalar_t, typename acc_t>
struct LeakyBackwardArgs {
  const scalar_t* g;      // (B, T, N)
  const acc_t* g_last;    // (B, N)
  const scalar_t* y;      // (B, T, N)
  const acc_t* v0;        // (B, N)
  const acc_t* alpha;     // (N,)
  scalar_t* grad_x;       // (B, T, N)
  acc_t* grad_v0;         // (B, N)
  acc_t* grad_alpha;      // (B, N)
  int64_t batch, time, features;
};

}  // namespace exodus
