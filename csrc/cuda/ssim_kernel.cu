// Fused SSIM CUDA kernels (CUDA headers only; tensor-facing launcher in ssim_cuda.cpp).
//
// Forward: one block per (plane, TH x TW output tile). The block stages the (TH+k-1) x (TW+k-1) input region of
// x and y in shared memory, blurs the five moments horizontally into shared rows, then each thread blurs one
// output pixel vertically, computes SSIM and (when a gradient is wanted) the derivative maps
//   alpha_x = dS/dmu_x, alpha_y = dS/dmu_y, beta_xx = dS/dE[xx] = dS/dE[yy], beta_xy = dS/dE[xy],
// and the block writes one partial sum of the map (reduced deterministically by the launcher).
// Backward: one block per (plane, TH x TW input tile): stage the (weighted) derivative maps of the tile's
// (TH+k-1) x (TW+k-1) footprint, transposed blur (vertical, then horizontal), combine with x and y:
//   dx = G^T alpha_x + 2 x G^T beta_xx + y G^T beta_xy,   dy = G^T alpha_y + 2 y G^T beta_xx + x G^T beta_xy.
// float16 / bfloat16 / float32 accumulate in float32, float64 in float64; the SSIM map, the derivative maps and the
// per-pixel upstream gradient are in the accumulation type, x, y, dx and dy in the input type.
#include "ssim_kernel.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

namespace compgen {
namespace cuda {
namespace {

constexpr int TH = 16;        // tile rows
constexpr int TW = 32;        // tile columns
constexpr int NTHREADS = 256;

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <typename T> __device__ __forceinline__ T from_acc(double v);
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

// Normalised Gaussian taps into shared memory (computed in double, as the CPU kernel does).
template <typename A>
__device__ void load_window(A* gs, int k, double sigma) {
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int t = 0; t < k; ++t) {
      const double c = double(t - k / 2);
      s += exp(-(c * c) / (2.0 * sigma * sigma));
    }
    for (int t = 0; t < k; ++t) {
      const double c = double(t - k / 2);
      gs[t] = A(exp(-(c * c) / (2.0 * sigma * sigma)) / s);
    }
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(NTHREADS)
ssim_fwd_kernel(const T* __restrict__ x, const T* __restrict__ y, int64_t H, int64_t W, int k, double sigma, A c1,
                A c2, int64_t tiles_x, int64_t tiles, A* __restrict__ map, bool loss_map, A* __restrict__ dmaps,
                bool gx, bool gy, A* __restrict__ partial) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sm = reinterpret_cast<A*>(smem_raw);
  const int RH = TH + k - 1, RW = TW + k - 1;
  A* sx = sm;
  A* sy = sx + RH * RW;
  A* hb = sy + RH * RW;          // 5 x RH x TW horizontal blurs
  A* red = hb + 5 * RH * TW;     // NTHREADS
  A* gs = red + NTHREADS;        // k taps

  const int64_t plane = blockIdx.x / tiles;
  const int64_t tile = blockIdx.x % tiles;
  const int64_t i0 = (tile / tiles_x) * TH, j0 = (tile % tiles_x) * TW;
  const int64_t Ho = H - k + 1, Wo = W - k + 1;
  const int tid = threadIdx.x;
  const T* xp = x + plane * H * W;
  const T* yp = y + plane * H * W;

  load_window(gs, k, sigma);
  for (int idx = tid; idx < RH * RW; idx += NTHREADS) {
    const int r = idx / RW, c = idx % RW;
    const int64_t gi = i0 + r, gj = j0 + c;
    const bool ok = gi < H && gj < W;
    sx[idx] = ok ? to_acc(xp[gi * W + gj]) : A(0);
    sy[idx] = ok ? to_acc(yp[gi * W + gj]) : A(0);
  }
  __syncthreads();
  for (int idx = tid; idx < RH * TW; idx += NTHREADS) {
    const int r = idx / TW, c = idx % TW;
    A m1 = 0, m2 = 0, e11 = 0, e22 = 0, e12 = 0;
    const A* px = sx + r * RW + c;
    const A* py = sy + r * RW + c;
    for (int t = 0; t < k; ++t) {
      const A g = gs[t], a = px[t], b = py[t];
      m1 += g * a; m2 += g * b;
      e11 += g * a * a; e22 += g * b * b; e12 += g * a * b;
    }
    const int o = r * TW + c;
    hb[o] = m1; hb[RH * TW + o] = m2; hb[2 * RH * TW + o] = e11; hb[3 * RH * TW + o] = e22;
    hb[4 * RH * TW + o] = e12;
  }
  __syncthreads();
  A local = 0;
  const int64_t map_stride = int64_t(gridDim.x / tiles) * Ho * Wo;
  for (int idx = tid; idx < TH * TW; idx += NTHREADS) {
    const int r = idx / TW, c = idx % TW;
    const int64_t i = i0 + r, j = j0 + c;
    if (i >= Ho || j >= Wo) continue;
    A mx = 0, my = 0, exx = 0, eyy = 0, exy = 0;
    for (int t = 0; t < k; ++t) {
      const A g = gs[t];
      const int o = (r + t) * TW + c;
      mx += g * hb[o]; my += g * hb[RH * TW + o]; exx += g * hb[2 * RH * TW + o];
      eyy += g * hb[3 * RH * TW + o]; exy += g * hb[4 * RH * TW + o];
    }
    const A mxx = mx * mx, myy = my * my, mxy = mx * my;
    const A A1 = 2 * mxy + c1, A2 = 2 * (exy - mxy) + c2;
    const A B1 = mxx + myy + c1, B2 = (exx - mxx) + (eyy - myy) + c2;
    const A iB1 = A(1) / B1, iB2 = A(1) / B2;
    const A D = iB1 * iB2;
    const A S = A1 * A2 * D;
    local += S;
    const int64_t off = plane * Ho * Wo + i * Wo + j;
    if (map) map[off] = loss_map ? A(0.5) * (A(1) - S) : S;
    if (dmaps) {
      const A P = 2 * (A2 - A1) * D;
      const A Q = 2 * S * (iB2 - iB1);
      int s = 0;
      if (gx) dmaps[(s++) * map_stride + off] = my * P + mx * Q;
      if (gy) dmaps[(s++) * map_stride + off] = mx * P + my * Q;
      dmaps[(s++) * map_stride + off] = -S * iB2;
      dmaps[s * map_stride + off] = 2 * A1 * D;
    }
  }
  red[tid] = local;
  __syncthreads();
  for (int w = NTHREADS / 2; w > 0; w >>= 1) {
    if (tid < w) red[tid] += red[tid + w];
    __syncthreads();
  }
  if (tid == 0) partial[blockIdx.x] = red[0];
}

template <typename T, typename A>
__global__ void __launch_bounds__(NTHREADS)
ssim_bwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const A* __restrict__ dmaps,
                const A* __restrict__ wmap, A wmul, const A* __restrict__ scale, int64_t H, int64_t W, int k,
                double sigma, int64_t tiles_x, int64_t tiles, int nm, T* __restrict__ dx, T* __restrict__ dy) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sm = reinterpret_cast<A*>(smem_raw);
  const int RH = TH + k - 1, RW = TW + k - 1;
  A* ms = sm;                  // nm x RH x RW weighted maps
  A* vb = ms + nm * RH * RW;   // nm x TH x RW vertical transposed blurs
  A* gs = vb + nm * TH * RW;   // k taps

  const int64_t planes = gridDim.x / tiles;
  const int64_t plane = blockIdx.x / tiles;
  const int64_t tile = blockIdx.x % tiles;
  const int64_t p0 = (tile / tiles_x) * TH, q0 = (tile % tiles_x) * TW;
  const int64_t Ho = H - k + 1, Wo = W - k + 1;
  const int64_t map_stride = planes * Ho * Wo;
  const int tid = threadIdx.x;

  load_window(gs, k, sigma);
  // region row r <-> map row p0 - (k-1) + r, column c <-> map column q0 - (k-1) + c
  for (int idx = tid; idx < RH * RW; idx += NTHREADS) {
    const int r = idx / RW, c = idx % RW;
    const int64_t m = p0 - (k - 1) + r, n = q0 - (k - 1) + c;
    const bool ok = m >= 0 && m < Ho && n >= 0 && n < Wo;
    const int64_t off = plane * Ho * Wo + m * Wo + n;
    const A w = ok ? (wmap ? wmap[off] * wmul : wmul) : A(0);
    for (int s = 0; s < nm; ++s) ms[s * RH * RW + idx] = ok ? dmaps[s * map_stride + off] * w : A(0);
  }
  __syncthreads();
  // vertical: output row p = p0 + r takes map rows p - t, i.e. region rows r + k - 1 - t
  for (int idx = tid; idx < TH * RW; idx += NTHREADS) {
    const int r = idx / RW, c = idx % RW;
    for (int s = 0; s < nm; ++s) {
      A v = 0;
      const A* col = ms + s * RH * RW + c;
      for (int t = 0; t < k; ++t) v += gs[t] * col[(r + k - 1 - t) * RW];
      vb[s * TH * RW + idx] = v;
    }
  }
  __syncthreads();
  for (int idx = tid; idx < TH * TW; idx += NTHREADS) {
    const int r = idx / TW, c = idx % TW;
    const int64_t p = p0 + r, q = q0 + c;
    if (p >= H || q >= W) continue;
    A h[4] = {0, 0, 0, 0};
    for (int s = 0; s < nm; ++s) {
      const A* row = vb + s * TH * RW + r * RW + c;
      A v = 0;
      for (int t = 0; t < k; ++t) v += gs[t] * row[k - 1 - t];
      h[s] = v;
    }
    const A sc = scale ? scale[plane] : A(1);
    const int64_t off = plane * H * W + p * W + q;
    const A xv = to_acc(x[off]), yv = to_acc(y[off]);
    if (nm == 4) {
      dx[off] = from_acc<T>(sc * (h[0] + 2 * xv * h[2] + yv * h[3]));
      dy[off] = from_acc<T>(sc * (h[1] + 2 * yv * h[2] + xv * h[3]));
    } else if (dx) {
      dx[off] = from_acc<T>(sc * (h[0] + 2 * xv * h[1] + yv * h[2]));
    } else {
      dy[off] = from_acc<T>(sc * (h[0] + 2 * yv * h[1] + xv * h[2]));
    }
  }
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

size_t acc_size(DType acc) { return acc == DType::Float64 ? sizeof(double) : sizeof(float); }

template <typename T>
int fwd(const void* x, const void* y, int64_t planes, int64_t H, int64_t W, int k, double sigma, double c1, double c2,
        void* map, bool loss_map, void* dmaps, bool gx, bool gy, void* partial, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  const int64_t Ho = H - k + 1, Wo = W - k + 1;
  const int64_t tiles_x = cdiv(Wo, TW), tiles = ssim_fwd_tiles(Ho, Wo);
  const int64_t blocks = planes * tiles;
  if (blocks == 0) return int(cudaSuccess);
  if (blocks > 0x7FFFFFFF) return int(cudaErrorInvalidConfiguration);  // gridDim.x limit
  const size_t smem = ssim_fwd_smem(k, std::is_same<A, double>::value ? DType::Float64 : DType::Float32);
  auto kernel = ssim_fwd_kernel<T, A>;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return int(e);
  }
  kernel<<<dim3(unsigned(blocks)), NTHREADS, smem, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(y), H, W, k, sigma, A(c1), A(c2), tiles_x, tiles,
      static_cast<A*>(map), loss_map, static_cast<A*>(dmaps), gx, gy, static_cast<A*>(partial));
  return int(cudaGetLastError());
}

template <typename T>
int bwd(const void* x, const void* y, const void* dmaps, const void* wmap, double wmul, const void* scale,
        int64_t planes, int64_t H, int64_t W, int k, double sigma, void* dx, void* dy, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  const int nm = (dx ? 1 : 0) + (dy ? 1 : 0) + 2;
  if (nm == 2) return int(cudaSuccess);
  const int64_t tiles_x = cdiv(W, TW), tiles = cdiv(H, TH) * tiles_x;
  const int64_t blocks = planes * tiles;
  if (blocks == 0) return int(cudaSuccess);
  if (blocks > 0x7FFFFFFF) return int(cudaErrorInvalidConfiguration);  // gridDim.x limit
  const size_t smem = ssim_bwd_smem(k, nm, std::is_same<A, double>::value ? DType::Float64 : DType::Float32);
  auto kernel = ssim_bwd_kernel<T, A>;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return int(e);
  }
  kernel<<<dim3(unsigned(blocks)), NTHREADS, smem, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const A*>(dmaps), static_cast<const A*>(wmap),
      A(wmul), static_cast<const A*>(scale), H, W, k, sigma, tiles_x, tiles, nm, static_cast<T*>(dx),
      static_cast<T*>(dy));
  return int(cudaGetLastError());
}

}  // namespace

int64_t ssim_fwd_tiles(int64_t Ho, int64_t Wo) { return cdiv(Ho, TH) * cdiv(Wo, TW); }

size_t ssim_fwd_smem(int k, DType acc) {
  const size_t RH = TH + k - 1, RW = TW + k - 1;
  return (2 * RH * RW + 5 * RH * TW + NTHREADS + size_t(k)) * acc_size(acc);
}

size_t ssim_bwd_smem(int k, int nm, DType acc) {
  const size_t RH = TH + k - 1, RW = TW + k - 1;
  return (size_t(nm) * RH * RW + size_t(nm) * TH * RW + size_t(k)) * acc_size(acc);
}

int ssim_fwd_launch(DType dt, const void* x, const void* y, int64_t planes, int64_t H, int64_t W, int k,
                    double sigma, double c1, double c2, void* map, bool loss_map, void* dmaps, bool gx, bool gy,
                    void* partial, cudaStream_t stream) {
#define CG_FWD(T) fwd<T>(x, y, planes, H, W, k, sigma, c1, c2, map, loss_map, dmaps, gx, gy, partial, stream)
  switch (dt) {
    case DType::Float32: return CG_FWD(float);
    case DType::Float16: return CG_FWD(__half);
    case DType::BFloat16: return CG_FWD(__nv_bfloat16);
    case DType::Float64: return CG_FWD(double);
  }
#undef CG_FWD
  return int(cudaErrorInvalidValue);
}

int ssim_bwd_launch(DType dt, const void* x, const void* y, const void* dmaps, const void* wmap, double wmul,
                    const void* scale, int64_t planes, int64_t H, int64_t W, int k, double sigma, void* dx, void* dy,
                    cudaStream_t stream) {
#define CG_BWD(T) bwd<T>(x, y, dmaps, wmap, wmul, scale, planes, H, W, k, sigma, dx, dy, stream)
  switch (dt) {
    case DType::Float32: return CG_BWD(float);
    case DType::Float16: return CG_BWD(__half);
    case DType::BFloat16: return CG_BWD(__nv_bfloat16);
    case DType::Float64: return CG_BWD(double);
  }
#undef CG_BWD
  return int(cudaErrorInvalidValue);
}

}  // namespace cuda
}  // namespace compgen
