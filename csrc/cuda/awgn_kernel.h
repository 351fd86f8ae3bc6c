// AWGN channel: counter-based normal generator shared by the CPU kernel (csrc/cpu/awgn.cpp) and the CUDA kernel
// (csrc/cuda/awgn_kernel.cu), and the CUDA launch declarations. Plain C++ (host/device qualifiers under nvcc).
//
// Element i of a call with key (k0, k1) gets a normal from Philox4x32-10 (Salmon et al. 2011) at counter
// (i / 4, 0, 0) lane i % 4, turned into normals by Box-Muller: the noise depends only on (key, i), so it is the
// same for any thread count or launch configuration. log/sin/cos are branch-free float polynomials (Cephes), so
// loops over elements vectorise and the CPU and CUDA kernels draw the same noise up to rounding.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define CG_HD __host__ __device__ __forceinline__
#else
#define CG_HD inline
#endif

namespace compgen {
namespace awgn {

CG_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Philox4x32-10 of counter (c0, c1, 0, 0) under key (k0, k1): four independent uniform 32-bit words.
CG_HD void philox(uint32_t c0, uint32_t c1, uint32_t k0, uint32_t k1, uint32_t out[4]) {
  uint32_t x0 = c0, x1 = c1, x2 = 0, x3 = 0;
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(0xD2511F53u, x0, &hi0);
    const uint32_t lo1 = mulhilo(0xCD9E8D57u, x2, &hi1);
    x0 = hi1 ^ x1 ^ k0;
    x1 = lo1;
    x2 = hi0 ^ x3 ^ k1;
    x3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
}

CG_HD float as_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

CG_HD uint32_t as_uint(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// Natural log of u in (0, 1] (normal floats), relative error ~1e-7. Integer selects only (no float branches), so
// loops over it vectorise.
CG_HD float log_approx(float u) {
  const uint32_t bits = as_uint(u);
  const uint32_t mant = bits & 0x007FFFFFu;
  const uint32_t big = mant > 0x003504F3u ? 1u : 0u;  // mantissa > sqrt(2): use m/2 in [sqrt(1/2), 1)
  const int e = static_cast<int>(bits >> 23) - 127 + static_cast<int>(big);
  const float m = as_float(mant | (0x3F800000u - (big << 23)));
  const float x = m - 1.0f, z = x * x;
  float y = 7.0376836292e-2f;
  y = y * x - 1.1514610310e-1f;
  y = y * x + 1.1676998740e-1f;
  y = y * x - 1.2420140846e-1f;
  y = y * x + 1.4249322787e-1f;
  y = y * x - 1.6668057665e-1f;
  y = y * x + 2.0000714765e-1f;
  y = y * x - 2.4999993993e-1f;
  y = y * x + 3.3333331174e-1f;
  y = y * x * z - 0.5f * z;
  return x + y + static_cast<float>(e) * 0.693147180559945f;
}

// sqrt(x) for x >= 0 by an inverse-sqrt bit estimate and three Newton steps (~1 ulp; sqrt(0) = 0): unlike the
// libm call (errno on negative input) it vectorises without -fno-math-errno, and is the same on host and device.
CG_HD float sqrt_approx(float x) {
  float y = as_float(0x5F3759DFu - (as_uint(x) >> 1));
  const float h = 0.5f * x;
  y = y * (1.5f - h * y * y);
  y = y * (1.5f - h * y * y);
  y = y * (1.5f - h * y * y);
  return x * y;
}

// Two standard normals from two uniform words (Box-Muller). The angle 2 pi b/2^32 is split into its quadrant
// (top 2 bits) and an offset in [-pi/4, pi/4] where the sin/cos polynomials are accurate.
CG_HD void box_muller(uint32_t a, uint32_t b, float* n0, float* n1) {
  const float u = static_cast<float>(static_cast<int32_t>((a >> 8) + 1u)) * 5.9604644775390625e-8f;  // (0, 1]
  const float r2 = as_float(as_uint(-2.0f * log_approx(u)) & 0x7FFFFFFFu);  // |.|: guards rounding at u = 1
  const float rad = sqrt_approx(r2);
  const uint32_t q = b >> 30;
  const float t = static_cast<float>(static_cast<int32_t>(b & 0x3FFFFFFFu)) * 9.3132257461547852e-10f;  // [0,1]
  const float x = t * 1.57079632679f - 0.785398163397f;
  const float z = x * x;
  const float s0 = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * x + x;
  const float c0 = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z -
                   0.5f * z + 1.0f;
  const uint32_t sn = as_uint((s0 + c0) * 0.70710678118f);  // sin(x + pi/4)
  const uint32_t cs = as_uint((c0 - s0) * 0.70710678118f);  // cos(x + pi/4)
  // Rotate by q quarter turns: q & 1 swaps (sin, cos) -> (cos, -sin); q & 2 negates both.
  const uint32_t odd = q & 1u;
  const uint32_t flip = (q & 2u) << 30;
  const uint32_t sv = (odd ? cs : sn) ^ flip;
  const uint32_t cv = (odd ? (sn ^ 0x80000000u) : cs) ^ flip;
  *n0 = rad * as_float(cv);
  *n1 = rad * as_float(sv);
}

// Four normals for counter group g (elements 4g .. 4g+3).
CG_HD void normals4(uint64_t g, uint32_t k0, uint32_t k1, float out[4]) {
  uint32_t r[4];
  philox(static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32), k0, k1, r);
  box_muller(r[0], r[1], &out[0], &out[1]);
  box_muller(r[2], r[3], &out[2], &out[3]);
}

// CUDA launcher (csrc/cuda/awgn_kernel.cu). z/out: device pointers to contiguous data of dtype code 0 float32,
// 1 float64, 2 float16, 3 bfloat16; n images of per_image elements; sigma: n doubles; seed: 2 int64 (the Philox
// key), all on the device (no host synchronisation). out = (z + sigma_i * noise) / (normalize ? max(1, sigma_i) : 1);
// sigma_i == 0 copies z exactly. Returns a cudaError_t value as int (0 = success).
int launch_awgn(int dtype, const void* z, void* out, int64_t n, int64_t per_image, const double* sigma,
                const int64_t* seed, bool normalize, void* stream);

}  // namespace awgn
}  // namespace compgen
