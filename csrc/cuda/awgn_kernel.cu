// AWGN channel on CUDA: one thread per 4 consecutive elements (one Philox call), one read of z, one write.
// CUDA headers only (raw pointers, sizes, a cudaStream_t): the tensor-facing launcher is awgn_cuda.cpp.
// sigma is validated here, not on the host (that would synchronise): an image whose sigma is NaN, infinite or
// negative (a NaN / -inf PSNR, an all-zero image with peak=None) comes out all NaN.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "awgn_kernel.h"

namespace compgen {
namespace awgn {
namespace {

template <typename T>
struct Num {
  using acc = float;
  __device__ static float load(T v) { return static_cast<float>(v); }
  __device__ static T store(float v) { return static_cast<T>(v); }
};
template <>
struct Num<double> {
  using acc = double;
  __device__ static double load(double v) { return v; }
  __device__ static double store(double v) { return v; }
};
template <>
struct Num<__half> {
  using acc = float;
  __device__ static float load(__half v) { return __half2float(v); }
  __device__ static __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Num<__nv_bfloat16> {
  using acc = float;
  __device__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

// Four elements moved with one vector load/store when aligned.
template <typename T>
struct alignas(4 * sizeof(T) < 16 ? 4 * sizeof(T) : 16) Vec4 {
  T v[4];
};

template <typename T>
__global__ void __launch_bounds__(256) awgn_kernel(const T* __restrict__ z, T* __restrict__ out, int64_t numel,
                                                   int64_t per_image, const double* __restrict__ sigma,
                                                   const int64_t* __restrict__ seed, bool normalize, bool aligned) {
  using acc_t = typename Num<T>::acc;
  const uint32_t k0 = static_cast<uint32_t>(seed[0]), k1 = static_cast<uint32_t>(seed[1]);
  const int64_t groups = (numel + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    const int64_t e = 4 * g;
    const int cnt = numel - e < 4 ? static_cast<int>(numel - e) : 4;
    Vec4<T> in;
    if (aligned && cnt == 4) {
      in = *reinterpret_cast<const Vec4<T>*>(z + e);
    } else {
      for (int k = 0; k < cnt; ++k) in.v[k] = z[e + k];
    }
    float nv[4];
    normals4(static_cast<uint64_t>(g), k0, k1, nv);
    int64_t img = e / per_image;
    int64_t next = (img + 1) * per_image;
    Vec4<T> o;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (k < cnt) {
        while (e + k >= next) {  // an image boundary inside the group
          ++img;
          next += per_image;
        }
        const double s = sigma[img];
        if (s == 0.0) {
          o.v[k] = in.v[k];  // infinite PSNR: exact identity
        } else if (!(s > 0.0 && s <= 1.7976931348623157e308)) {
          o.v[k] = Num<T>::store(static_cast<acc_t>(CUDART_NAN));  // invalid sigma (NaN, inf, < 0)
        } else {
          const acc_t v = Num<T>::load(in.v[k]) + static_cast<acc_t>(s) * static_cast<acc_t>(nv[k]);
          const acc_t d = (normalize && s > 1.0) ? static_cast<acc_t>(s) : acc_t(1);
          o.v[k] = Num<T>::store(v / d);
        }
      }
    }
    if (aligned && cnt == 4) {
      *reinterpret_cast<Vec4<T>*>(out + e) = o;
    } else {
      for (int k = 0; k < cnt; ++k) out[e + k] = o.v[k];
    }
  }
}

template <typename T>
int run(const void* z, void* out, int64_t n, int64_t per_image, const double* sigma, const int64_t* seed,
        bool normalize, cudaStream_t stream) {
  const int64_t numel = n * per_image;
  if (numel == 0) return 0;
  const int64_t groups = (numel + 3) / 4;
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int threads = 256;
  int64_t blocks = (groups + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sms > 0 ? sms : 80) * 16;
  if (blocks > cap) blocks = cap;
  const size_t align = alignof(Vec4<T>);
  const bool aligned = reinterpret_cast<uintptr_t>(z) % align == 0 && reinterpret_cast<uintptr_t>(out) % align == 0;
  awgn_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      static_cast<const T*>(z), static_cast<T*>(out), numel, per_image, sigma, seed, normalize, aligned);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_awgn(int dtype, const void* z, void* out, int64_t n, int64_t per_image, const double* sigma,
                const int64_t* seed, bool normalize, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 0:
      return run<float>(z, out, n, per_image, sigma, seed, normalize, s);
    case 1:
      return run<double>(z, out, n, per_image, sigma, seed, normalize, s);
    case 2:
      return run<__half>(z, out, n, per_image, sigma, seed, normalize, s);
    case 3:
      return run<__nv_bfloat16>(z, out, n, per_image, sigma, seed, normalize, s);
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
}

}  // namespace awgn
}  // namespace compgen
