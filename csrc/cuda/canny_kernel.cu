// Canny edge maps on CUDA (same integer pipeline as csrc/cpu/canny.cpp, so the same result as cv2.Canny).
// Small images (the whole pipeline fits one block's shared memory, e.g. 64x64, 128x128): one fused kernel, one
// block per image, everything in shared memory. Larger images: one kernel per stage over global scratch.
// Hysteresis is a connected-component labelling of the candidate + strong pixels (8-connectivity) by union-find
// (Playne & Hawick 2018): link each pixel with its earlier neighbours (atomicMin on the roots), flatten, flag the
// roots of strong pixels; edges are the pixels whose root is flagged. That is exactly OpenCV's stack-based growth
// from the strong pixels, in a fixed number of passes: no iteration to convergence, no host synchronisation.
// Every union-find loop is bounded (a find by H*W steps, a union by 2*H*W+2 rounds: the roots decrease strictly);
// exceeding a bound, which the algorithm rules out, marks the image failed instead of hanging. Per-image status
// bits (kStatusNonFinite, kStatusBound) go to `status`; such an image's output is all NaN.
// CUDA headers only (raw pointers, sizes, a cudaStream_t): the tensor-facing launcher is canny_cuda.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "canny_kernel.h"

namespace compgen {
namespace canny {
namespace {

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_bit(int b);
template <>
__device__ __forceinline__ float from_bit<float>(int b) { return static_cast<float>(b); }
template <>
__device__ __forceinline__ double from_bit<double>(int b) { return static_cast<double>(b); }
template <>
__device__ __forceinline__ __half from_bit<__half>(int b) { return __int2half_rn(b); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_bit<__nv_bfloat16>(int b) { return __int2bfloat16_rn(b); }

template <typename T>
__device__ __forceinline__ T nan_of();
template <>
__device__ __forceinline__ float nan_of<float>() { return __int_as_float(0x7fc00000); }
template <>
__device__ __forceinline__ double nan_of<double>() { return __longlong_as_double(0x7ff8000000000000LL); }
template <>
__device__ __forceinline__ __half nan_of<__half>() { return __ushort_as_half(static_cast<unsigned short>(0x7e00)); }
template <>
__device__ __forceinline__ __nv_bfloat16 nan_of<__nv_bfloat16>() {
  return __ushort_as_bfloat16(static_cast<unsigned short>(0x7fc0));
}

// round(clamp(v, 0, 1) * 255), ties to even (as torch.round and the CPU kernel).
__device__ __forceinline__ int quantise(float v) { return __float2int_rn(fminf(fmaxf(v, 0.f), 1.f) * 255.f); }
__device__ __forceinline__ int quantise(double v) { return __double2int_rn(fmin(fmax(v, 0.0), 1.0) * 255.0); }

// Gray level of pixel i of one image (in points at the image's first channel); sets bad on NaN/Inf.
template <typename T>
__device__ __forceinline__ uint8_t gray_px(const T* __restrict__ in, int c, int64_t hw, int64_t i, bool& bad) {
  if (c == 1) {
    const auto v = to_acc(in[i]);
    bad |= !isfinite(v);
    return static_cast<uint8_t>(quantise(v));
  }
  const auto r = to_acc(in[i]), g = to_acc(in[i + hw]), b = to_acc(in[i + 2 * hw]);
  bad |= !(isfinite(r) && isfinite(g) && isfinite(b));
  return static_cast<uint8_t>((quantise(r) * kLumaR + quantise(g) * kLumaG + quantise(b) * kLumaB + (1 << 14)) >> 15);
}

// Sobel derivatives at (y, x) of a gray image, replicated border.
__device__ __forceinline__ void sobel(const uint8_t* g, int h, int w, int y, int x, int& gx, int& gy) {
  const int y0 = y > 0 ? y - 1 : 0, y2 = y < h - 1 ? y + 1 : h - 1;
  const int x0 = x > 0 ? x - 1 : 0, x2 = x < w - 1 ? x + 1 : w - 1;
  const uint8_t* r0 = g + y0 * w;
  const uint8_t* r1 = g + y * w;
  const uint8_t* r2 = g + y2 * w;
  gx = (r0[x2] - r0[x0]) + 2 * (r1[x2] - r1[x0]) + (r2[x2] - r2[x0]);
  gy = (r2[x0] + 2 * r2[x] + r2[x2]) - (r0[x0] + 2 * r0[x] + r0[x2]);
}

__device__ __forceinline__ int magnitude(int gx, int gy, bool l2) {
  return l2 ? gx * gx + gy * gy : abs(gx) + abs(gy);
}

// Map value of a pixel with magnitude m: 0 candidate, 1 not an edge, 2 strong edge. mag_at(dy, dx) returns the
// neighbour's magnitude (0 outside the image). Same comparisons as OpenCV: strict towards left/up, >= towards
// right/down on the axes, strict on both diagonals.
template <typename MagAt>
__device__ __forceinline__ uint8_t nms(int m, int gx, int gy, const Params& p, MagAt mag_at) {
  if (m <= p.low) return 1;
  const int ax = abs(gx), ay = abs(gy) << kShift;
  const int tg22x = ax * kTg22;
  bool peak;
  if (ay < tg22x) {
    peak = m > mag_at(0, -1) && m >= mag_at(0, 1);
  } else {
    const int tg67x = tg22x + (ax << (kShift + 1));
    if (ay > tg67x) {
      peak = m > mag_at(-1, 0) && m >= mag_at(1, 0);
    } else {
      const int s = (gx ^ gy) < 0 ? -1 : 1;
      peak = m > mag_at(-1, -s) && m > mag_at(1, s);
    }
  }
  if (!peak) return 1;
  return m > p.high ? 2 : 0;
}

__device__ __forceinline__ int blur_h(const uint8_t* g, int w, int y, int x, const Params& p) {
  const uint8_t* row = g + y * w;
  int s = p.blur_w[0] * row[x];
  for (int k = 1; k <= p.blur_radius; ++k) s += p.blur_w[k] * (row[reflect101(x - k, w)] + row[reflect101(x + k, w)]);
  return (s + (1 << 5)) >> 6;
}

__device__ __forceinline__ int blur_v(const uint16_t* t, int h, int w, int y, int x, const Params& p) {
  int s = p.blur_w[0] * t[y * w + x];
  for (int k = 1; k <= p.blur_radius; ++k)
    s += p.blur_w[k] * (t[reflect101(y - k, h) * w + x] + t[reflect101(y + k, h) * w + x]);
  return (s + (1 << 21)) >> 22;
}

__host__ __device__ inline size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// ---------------------------------------------------------------------------------------------------------------
// Union-find on one image's labels L (int per pixel, index y*w+x; shared or global memory). Labels only decrease
// and L[i] <= i, so a find follows a strictly decreasing chain (at most hw steps) and a union ends after at most
// 2*hw+2 rounds (each failed atomicMin strictly lowers one of the two roots). `fail` is set if a bound is hit.
constexpr int kRootFlag = 1 << 30;  // set on a root with a strong pixel in its component (labels < 2^30)
constexpr int kLabelMask = kRootFlag - 1;

__device__ __forceinline__ int uf_find(int* L, int i, int hw, bool& fail) {
  const volatile int* vl = L;  // other threads link roots concurrently: always re-read
  int r = vl[i];
  for (int steps = 0; r != i; ++steps) {
    if (steps > hw) {
      fail = true;
      return i;
    }
    i = r;
    r = vl[i];
  }
  return i;
}

__device__ __forceinline__ void uf_union(int* L, int a, int b, int hw, bool& fail) {
  for (int round = 0; round <= 2 * hw + 2; ++round) {
    a = uf_find(L, a, hw, fail);
    b = uf_find(L, b, hw, fail);
    if (a == b || fail) return;
    if (a > b) {
      const int t = a;
      a = b;
      b = t;
    }
    const int old = atomicMin(&L[b], a);  // link the larger root under the smaller one
    if (old == b) return;
    b = old;  // b was linked meanwhile: continue with its new parent
  }
  fail = true;
}

// Union pass for pixel i (padded map index j, 0 candidate / 1 none / 2 strong; the map's border is 1): link i with
// its foreground neighbours left, up-left, up and up-right (the other four link to i from their side).
__device__ __forceinline__ void uf_link(int* L, const uint8_t* map, int i, int j, int w, int pw, int hw,
                                        bool& fail) {
  if (map[j] == 1) return;
  if (map[j - 1] != 1) uf_union(L, i, i - 1, hw, fail);
  if (map[j - pw - 1] != 1) uf_union(L, i, i - w - 1, hw, fail);
  if (map[j - pw] != 1) uf_union(L, i, i - w, hw, fail);
  if (map[j - pw + 1] != 1) uf_union(L, i, i - w + 1, hw, fail);
}

// ---------------------------------------------------------------------------------------------------------------
// Fused path: one block per image, everything in shared memory.
// Layout: mag int32 [(H+2)(W+2)] | tmp uint16 [H W] (blur only) | gray u8 [H W] | map u8 [(H+2)(W+2)].
__host__ __device__ inline size_t fused_bytes(int h, int w, int blur_radius) {
  const size_t hw = static_cast<size_t>(h) * w, pp = static_cast<size_t>(h + 2) * (w + 2);
  return 4 * pp + (blur_radius > 0 ? round_up(2 * hw, 4) : 0) + round_up(hw, 4) + round_up(pp, 4);
}

template <typename T>
__global__ void __launch_bounds__(1024) canny_fused(const T* __restrict__ in, T* __restrict__ out, Params p,
                                                    int* __restrict__ status) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int h = p.h, w = p.w, pw = w + 2;
  const int hw = h * w, pp = (h + 2) * pw;
  int32_t* mag = reinterpret_cast<int32_t*>(smem);
  uint16_t* tmp = reinterpret_cast<uint16_t*>(smem + 4 * static_cast<size_t>(pp));
  uint8_t* gray = reinterpret_cast<uint8_t*>(tmp) + (p.blur_radius > 0 ? round_up(2 * static_cast<size_t>(hw), 4) : 0);
  uint8_t* map = gray + round_up(static_cast<size_t>(hw), 4);
  const int64_t img = blockIdx.x;
  const T* src = in + img * p.c * static_cast<int64_t>(hw);
  const int tid = threadIdx.x, nt = blockDim.x;

  bool bad = false;
  for (int i = tid; i < hw; i += nt) gray[i] = gray_px(src, p.c, hw, i, bad);
  const int nonfinite = __syncthreads_or(bad);

  if (p.blur_radius > 0) {
    for (int i = tid; i < hw; i += nt) tmp[i] = static_cast<uint16_t>(blur_h(gray, w, i / w, i % w, p));
    __syncthreads();
    for (int i = tid; i < hw; i += nt) gray[i] = static_cast<uint8_t>(blur_v(tmp, h, w, i / w, i % w, p));
    __syncthreads();
  }

  for (int i = tid; i < pp; i += nt) {
    const int y = i / pw - 1, x = i % pw - 1;
    int m = 0;
    if (y >= 0 && y < h && x >= 0 && x < w) {
      int gx, gy;
      sobel(gray, h, w, y, x, gx, gy);
      m = magnitude(gx, gy, p.l2);
    }
    mag[i] = m;
  }
  __syncthreads();

  for (int i = tid; i < pp; i += nt) {
    const int y = i / pw - 1, x = i % pw - 1;
    uint8_t v = 1;
    if (y >= 0 && y < h && x >= 0 && x < w) {
      int gx, gy;
      sobel(gray, h, w, y, x, gx, gy);
      v = nms(mag[i], gx, gy, p, [&](int dy, int dx) { return mag[i + dy * pw + dx]; });
    }
    map[i] = v;
  }
  __syncthreads();

  // Hysteresis: connected components of the foreground (map != 1) by union-find in shared memory; the
  // magnitudes are no longer needed, their first hw ints hold the labels.
  int* L = mag;
  for (int i = tid; i < hw; i += nt) L[i] = i;
  __syncthreads();
  bool fail = false;
  for (int i = tid; i < hw; i += nt) uf_link(L, map, i, (i / w + 1) * pw + i % w + 1, w, pw, hw, fail);
  __syncthreads();
  for (int i = tid; i < hw; i += nt)
    if (map[(i / w + 1) * pw + i % w + 1] != 1) L[i] = uf_find(L, i, hw, fail);  // flatten: L[i] = root
  __syncthreads();
  for (int i = tid; i < hw; i += nt)
    if (map[(i / w + 1) * pw + i % w + 1] == 2) atomicOr(&L[L[i] & kLabelMask], kRootFlag);
  const int failed = __syncthreads_or(fail);
  if (tid == 0 && (nonfinite || failed))
    atomicOr(&status[img], (nonfinite ? kStatusNonFinite : 0) | (failed ? kStatusBound : 0));

  T* dst = out + img * static_cast<int64_t>(hw);
  if (nonfinite || failed) {
    for (int i = tid; i < hw; i += nt) dst[i] = nan_of<T>();
    return;
  }
  for (int i = tid; i < hw; i += nt) {
    const bool edge = map[(i / w + 1) * pw + i % w + 1] != 1 && (L[L[i] & kLabelMask] & kRootFlag);
    dst[i] = from_bit<T>(edge ? 1 : 0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-kernel path for large images. Scratch: gray u8 [N H W] | tmp u16 [N H W] (blur) | mag int32 [N H W]
// (after non-maximum suppression: the union-find labels) | map u8 [N (H+2)(W+2)].
struct Scratch {
  uint8_t* gray;
  uint16_t* tmp;
  int32_t* mag;
  uint8_t* map;
};

__host__ __device__ inline size_t tiled_bytes(const Params& p, Scratch* s, void* base) {
  const size_t hw = static_cast<size_t>(p.h) * p.w, n = static_cast<size_t>(p.n);
  const size_t pp = static_cast<size_t>(p.h + 2) * (p.w + 2);
  size_t off = 0;
  const size_t o_gray = off;
  off = round_up(off + n * hw, 256);
  const size_t o_tmp = off;
  if (p.blur_radius > 0) off = round_up(off + 2 * n * hw, 256);
  const size_t o_mag = off;
  off = round_up(off + 4 * n * hw, 256);
  const size_t o_map = off;
  off = round_up(off + n * pp, 256);
  if (s != nullptr) {
    unsigned char* b = static_cast<unsigned char*>(base);
    s->gray = b + o_gray;
    s->tmp = reinterpret_cast<uint16_t*>(b + o_tmp);
    s->mag = reinterpret_cast<int32_t*>(b + o_mag);
    s->map = b + o_map;
  }
  return off;
}

template <typename T>
__global__ void k_gray(const T* __restrict__ in, Params p, uint8_t* __restrict__ gray, int* __restrict__ status) {
  const int64_t hw = static_cast<int64_t>(p.h) * p.w, total = hw * p.n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = t / hw, i = t % hw;
    bool bad = false;
    gray[t] = gray_px(in + img * p.c * hw, p.c, hw, i, bad);
    if (bad) atomicOr(&status[img], kStatusNonFinite);
  }
}

__global__ void k_blur_h(Params p, const uint8_t* __restrict__ gray, uint16_t* __restrict__ tmp) {
  const int64_t hw = static_cast<int64_t>(p.h) * p.w, total = hw * p.n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    tmp[t] = static_cast<uint16_t>(blur_h(gray + img * hw, p.w, i / p.w, i % p.w, p));
  }
}

__global__ void k_blur_v(Params p, const uint16_t* __restrict__ tmp, uint8_t* __restrict__ gray) {
  const int64_t hw = static_cast<int64_t>(p.h) * p.w, total = hw * p.n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    gray[t] = static_cast<uint8_t>(blur_v(tmp + img * hw, p.h, p.w, i / p.w, i % p.w, p));
  }
}

__global__ void k_mag(Params p, const uint8_t* __restrict__ gray, int32_t* __restrict__ mag) {
  const int64_t hw = static_cast<int64_t>(p.h) * p.w, total = hw * p.n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    int gx, gy;
    sobel(gray + img * hw, p.h, p.w, i / p.w, i % p.w, gx, gy);
    mag[t] = magnitude(gx, gy, p.l2);
  }
}

__global__ void k_nms(Params p, const uint8_t* __restrict__ gray, const int32_t* __restrict__ mag,
                      uint8_t* __restrict__ map) {
  const int h = p.h, w = p.w, pw = w + 2;
  const int64_t hw = static_cast<int64_t>(h) * w, pp = static_cast<int64_t>(h + 2) * pw, total = pp * p.n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = t / pp;
    const int i = static_cast<int>(t % pp);
    const int y = i / pw - 1, x = i % pw - 1;
    uint8_t v = 1;
    if (y >= 0 && y < h && x >= 0 && x < w) {
      const int32_t* m = mag + img * hw;
      int gx, gy;
      sobel(gray + img * hw, h, w, y, x, gx, gy);
      v = nms(m[y * w + x], gx, gy, p, [&](int dy, int dx) {
        const int yy = y + dy, xx = x + dx;
        return (yy >= 0 && yy < h && xx >= 0 && xx < w) ? m[yy * w + xx] : 0;
      });
    }
    map[t] = v;
  }
}

// Hysteresis passes of the multi-kernel path, one thread per pixel (grid-stride); labels L = the mag scratch.
#define CG_PIXELS(t, total)                                                                    \
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < (total); \
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void k_label_init(Params p, int32_t* __restrict__ L) {
  const int64_t hw = static_cast<int64_t>(p.h) * p.w;
  CG_PIXELS(t, hw * p.n) L[t] = static_cast<int32_t>(t % hw);
}

__global__ void k_label_link(Params p, const uint8_t* __restrict__ map, int32_t* L, int* __restrict__ status) {
  const int w = p.w, pw = w + 2, hw = p.h * p.w;
  const int64_t pp = static_cast<int64_t>(p.h + 2) * pw;
  CG_PIXELS(t, static_cast<int64_t>(hw) * p.n) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    bool fail = false;
    uf_link(L + img * hw, map + img * pp, i, (i / w + 1) * pw + i % w + 1, w, pw, hw, fail);
    if (fail) atomicOr(&status[img], kStatusBound);
  }
}

__global__ void k_label_flatten(Params p, const uint8_t* __restrict__ map, int32_t* L, int* __restrict__ status) {
  const int w = p.w, pw = w + 2, hw = p.h * p.w;
  const int64_t pp = static_cast<int64_t>(p.h + 2) * pw;
  CG_PIXELS(t, static_cast<int64_t>(hw) * p.n) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    if (map[img * pp + (i / w + 1) * pw + i % w + 1] == 1) continue;
    bool fail = false;
    int32_t* Li = L + img * hw;
    Li[i] = uf_find(Li, i, hw, fail);
    if (fail) atomicOr(&status[img], kStatusBound);
  }
}

__global__ void k_label_mark(Params p, const uint8_t* __restrict__ map, int32_t* L) {
  const int w = p.w, pw = w + 2, hw = p.h * p.w;
  const int64_t pp = static_cast<int64_t>(p.h + 2) * pw;
  CG_PIXELS(t, static_cast<int64_t>(hw) * p.n) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    if (map[img * pp + (i / w + 1) * pw + i % w + 1] != 2) continue;
    int32_t* Li = L + img * hw;
    atomicOr(&Li[Li[i] & kLabelMask], kRootFlag);
  }
}

template <typename T>
__global__ void k_out(Params p, const uint8_t* __restrict__ map, const int32_t* __restrict__ L,
                      const int* __restrict__ status, T* __restrict__ out) {
  const int w = p.w, pw = w + 2, hw = p.h * p.w;
  const int64_t pp = static_cast<int64_t>(p.h + 2) * pw;
  CG_PIXELS(t, static_cast<int64_t>(hw) * p.n) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    if (status[img] != 0) {
      out[t] = nan_of<T>();
      continue;
    }
    const int32_t* Li = L + img * hw;
    const bool edge = map[img * pp + (i / w + 1) * pw + i % w + 1] != 1 && (Li[Li[i] & kLabelMask] & kRootFlag);
    out[t] = from_bit<T>(edge ? 1 : 0);
  }
}
#undef CG_PIXELS

size_t max_smem() {
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 48 * 1024;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess || v <= 0)
    return 48 * 1024;
  return static_cast<size_t>(v);
}

unsigned grid_for(int64_t total, int threads) {
  int64_t b = (total + threads - 1) / threads;
  const int64_t cap = int64_t(1) << 20;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

template <typename T>
int run(const Params& p, const void* in_v, void* out_v, void* scratch, int* status, cudaStream_t stream) {
  const T* in = static_cast<const T*>(in_v);
  T* out = static_cast<T*>(out_v);
  const int64_t hw = static_cast<int64_t>(p.h) * p.w;
  if (p.n == 0 || hw == 0) return 0;
  const size_t smem = fused_bytes(p.h, p.w, p.blur_radius);
  if (smem <= max_smem()) {
    cudaError_t e = cudaFuncSetAttribute(canny_fused<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    if (e != cudaSuccess) return static_cast<int>(e);
    const int threads = hw >= 2048 ? 1024 : (hw >= 512 ? 512 : 128);
    canny_fused<T><<<p.n, threads, smem, stream>>>(in, out, p, status);
    return static_cast<int>(cudaGetLastError());
  }
  Scratch s;
  tiled_bytes(p, &s, scratch);
  const int threads = 256;
  const int64_t total = hw * p.n;
  const int64_t total_pp = static_cast<int64_t>(p.h + 2) * (p.w + 2) * p.n;
  const unsigned grid = grid_for(total, threads);
  k_gray<T><<<grid, threads, 0, stream>>>(in, p, s.gray, status);
  if (p.blur_radius > 0) {
    k_blur_h<<<grid, threads, 0, stream>>>(p, s.gray, s.tmp);
    k_blur_v<<<grid, threads, 0, stream>>>(p, s.tmp, s.gray);
  }
  k_mag<<<grid, threads, 0, stream>>>(p, s.gray, s.mag);
  k_nms<<<grid_for(total_pp, threads), threads, 0, stream>>>(p, s.gray, s.mag, s.map);
  // Hysteresis: a fixed sequence of passes (no host round trips); the labels overwrite the magnitudes.
  k_label_init<<<grid, threads, 0, stream>>>(p, s.mag);
  k_label_link<<<grid, threads, 0, stream>>>(p, s.map, s.mag, status);
  k_label_flatten<<<grid, threads, 0, stream>>>(p, s.map, s.mag, status);
  k_label_mark<<<grid, threads, 0, stream>>>(p, s.map, s.mag);
  k_out<T><<<grid, threads, 0, stream>>>(p, s.map, s.mag, status, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

size_t scratch_bytes(const Params& p) {
  if (p.n == 0 || p.h == 0 || p.w == 0) return 0;
  if (fused_bytes(p.h, p.w, p.blur_radius) <= max_smem()) return 0;
  return tiled_bytes(p, nullptr, nullptr);
}

int launch(const Params& p, DType dt, const void* in, void* out, void* scratch, int* status, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dt) {
    case DType::kFloat32:
      return run<float>(p, in, out, scratch, status, s);
    case DType::kFloat64:
      return run<double>(p, in, out, scratch, status, s);
    case DType::kFloat16:
      return run<__half>(p, in, out, scratch, status, s);
    case DType::kBFloat16:
      return run<__nv_bfloat16>(p, in, out, scratch, status, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace canny
}  // namespace compgen
