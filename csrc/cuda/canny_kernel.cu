// Canny edge maps on CUDA (same integer pipeline as csrc/cpu/canny.cpp, so the same result as cv2.Canny).
// Small images (the whole pipeline fits one block's shared memory, e.g. 64x64, 128x128): one fused kernel, one
// block per image: quantise/luma -> blur -> Sobel magnitude -> NMS -> hysteresis iterated in shared memory until
// nothing changes. Larger images: one kernel per stage over global scratch, then hysteresis on 32x32 tiles (each
// iterated to convergence in shared memory) repeated by the host until no tile changes.
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
// Fused path: one block per image, everything in shared memory.
// Layout: mag int32 [(H+2)(W+2)] | tmp uint16 [H W] (blur only) | gray u8 [H W] | map u8 [(H+2)(W+2)].
__host__ __device__ inline size_t fused_bytes(int h, int w, int blur_radius) {
  const size_t hw = static_cast<size_t>(h) * w, pp = static_cast<size_t>(h + 2) * (w + 2);
  return 4 * pp + (blur_radius > 0 ? round_up(2 * hw, 4) : 0) + round_up(hw, 4) + round_up(pp, 4);
}

template <typename T>
__global__ void __launch_bounds__(1024) canny_fused(const T* __restrict__ in, T* __restrict__ out, Params p,
                                                    int* bad_flag) {
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
  if (__syncthreads_or(bad) && tid == 0) atomicOr(bad_flag, 1);

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

  // Hysteresis: candidates next to an edge become edges, until no pixel changes (monotone, so the in-place
  // updates of concurrent threads only speed up convergence).
  volatile uint8_t* vm = map;
  int changed;
  do {
    changed = 0;
    for (int i = tid; i < hw; i += nt) {
      const int j = (i / w + 1) * pw + i % w + 1;
      if (vm[j] == 0 &&
          (vm[j - pw - 1] == 2 || vm[j - pw] == 2 || vm[j - pw + 1] == 2 || vm[j - 1] == 2 || vm[j + 1] == 2 ||
           vm[j + pw - 1] == 2 || vm[j + pw] == 2 || vm[j + pw + 1] == 2)) {
        vm[j] = 2;
        changed = 1;
      }
    }
    changed = __syncthreads_or(changed);
  } while (changed);

  T* dst = out + img * static_cast<int64_t>(hw);
  for (int i = tid; i < hw; i += nt) dst[i] = from_bit<T>(vm[(i / w + 1) * pw + i % w + 1] == 2 ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-kernel path for large images. Scratch: gray u8 [N H W] | tmp u16 [N H W] (blur) | mag int32 [N H W] |
// map u8 [N (H+2)(W+2)] | changed int.
struct Scratch {
  uint8_t* gray;
  uint16_t* tmp;
  int32_t* mag;
  uint8_t* map;
  int* changed;
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
  const size_t o_changed = off;
  off += 256;
  if (s != nullptr) {
    unsigned char* b = static_cast<unsigned char*>(base);
    s->gray = b + o_gray;
    s->tmp = reinterpret_cast<uint16_t*>(b + o_tmp);
    s->mag = reinterpret_cast<int32_t*>(b + o_mag);
    s->map = b + o_map;
    s->changed = reinterpret_cast<int*>(b + o_changed);
  }
  return off;
}

template <typename T>
__global__ void k_gray(const T* __restrict__ in, Params p, uint8_t* __restrict__ gray, int* bad_flag) {
  const int64_t hw = static_cast<int64_t>(p.h) * p.w, total = hw * p.n;
  bool bad = false;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = t / hw, i = t % hw;
    gray[t] = gray_px(in + img * p.c * hw, p.c, hw, i, bad);
  }
  if (bad) atomicOr(bad_flag, 1);
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

constexpr int kTile = 32;

// One round of tiled hysteresis: each block loads a 32x32 tile of the padded map with a 1-pixel halo, grows edges
// inside the tile until it converges, writes the tile back and flags `changed` if it promoted any pixel.
__global__ void __launch_bounds__(256) k_hyst_tile(Params p, int img0, uint8_t* __restrict__ map,
                                                   int* changed_flag) {
  __shared__ uint8_t s[(kTile + 2) * (kTile + 2)];
  const int h = p.h, w = p.w, pw = w + 2;
  const int64_t pp = static_cast<int64_t>(h + 2) * pw;
  uint8_t* m = map + (img0 + static_cast<int64_t>(blockIdx.z)) * pp;
  const int y0 = blockIdx.y * kTile, x0 = blockIdx.x * kTile;  // image coordinates of the tile's corner
  const int tid = threadIdx.x, nt = blockDim.x;
  constexpr int S = kTile + 2;
  for (int i = tid; i < S * S; i += nt) {
    const int y = y0 - 1 + i / S, x = x0 - 1 + i % S;  // image coordinates, -1..h / -1..w are the map's border
    s[i] = (y >= -1 && y <= h && x >= -1 && x <= w) ? m[(y + 1) * pw + (x + 1)] : 1;
  }
  __syncthreads();
  volatile uint8_t* vs = s;
  int any = 0, changed;
  do {
    changed = 0;
    for (int i = tid; i < kTile * kTile; i += nt) {
      const int ty = i / kTile, tx = i % kTile;
      if (y0 + ty >= h || x0 + tx >= w) continue;
      const int j = (ty + 1) * S + tx + 1;
      if (vs[j] == 0 &&
          (vs[j - S - 1] == 2 || vs[j - S] == 2 || vs[j - S + 1] == 2 || vs[j - 1] == 2 || vs[j + 1] == 2 ||
           vs[j + S - 1] == 2 || vs[j + S] == 2 || vs[j + S + 1] == 2)) {
        vs[j] = 2;
        changed = 1;
      }
    }
    changed = __syncthreads_or(changed);
    any |= changed;
  } while (changed);
  if (!any) return;
  for (int i = tid; i < kTile * kTile; i += nt) {
    const int ty = i / kTile, tx = i % kTile;
    if (y0 + ty >= h || x0 + tx >= w) continue;
    if (vs[(ty + 1) * S + tx + 1] == 2) m[(y0 + ty + 1) * pw + (x0 + tx + 1)] = 2;
  }
  if (tid == 0) atomicOr(changed_flag, 1);
}

template <typename T>
__global__ void k_out(Params p, const uint8_t* __restrict__ map, T* __restrict__ out) {
  const int pw = p.w + 2;
  const int64_t hw = static_cast<int64_t>(p.h) * p.w, pp = static_cast<int64_t>(p.h + 2) * pw, total = hw * p.n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = t / hw;
    const int i = static_cast<int>(t % hw);
    out[t] = from_bit<T>(map[img * pp + (i / p.w + 1) * pw + i % p.w + 1] == 2 ? 1 : 0);
  }
}

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
int run(const Params& p, const void* in_v, void* out_v, void* scratch, int* bad_flag, cudaStream_t stream) {
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
    canny_fused<T><<<p.n, threads, smem, stream>>>(in, out, p, bad_flag);
    return static_cast<int>(cudaGetLastError());
  }
  Scratch s;
  tiled_bytes(p, &s, scratch);
  const int threads = 256;
  const int64_t total = hw * p.n;
  const int64_t total_pp = static_cast<int64_t>(p.h + 2) * (p.w + 2) * p.n;
  k_gray<T><<<grid_for(total, threads), threads, 0, stream>>>(in, p, s.gray, bad_flag);
  if (p.blur_radius > 0) {
    k_blur_h<<<grid_for(total, threads), threads, 0, stream>>>(p, s.gray, s.tmp);
    k_blur_v<<<grid_for(total, threads), threads, 0, stream>>>(p, s.tmp, s.gray);
  }
  k_mag<<<grid_for(total, threads), threads, 0, stream>>>(p, s.gray, s.mag);
  k_nms<<<grid_for(total_pp, threads), threads, 0, stream>>>(p, s.gray, s.mag, s.map);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return static_cast<int>(e);
  const dim3 tiles((p.w + kTile - 1) / kTile, (p.h + kTile - 1) / kTile, 1);
  // Every round but the last promotes at least one pixel, so this terminates; paths that cross k tile borders
  // need about k rounds.
  for (;;) {
    int changed = 0;
    cudaMemsetAsync(s.changed, 0, sizeof(int), stream);
    for (int img0 = 0; img0 < p.n; img0 += 65535) {  // gridDim.z limit
      const dim3 grid(tiles.x, tiles.y, p.n - img0 < 65535 ? p.n - img0 : 65535);
      k_hyst_tile<<<grid, 256, 0, stream>>>(p, img0, s.map, s.changed);
    }
    cudaMemcpyAsync(&changed, s.changed, sizeof(int), cudaMemcpyDeviceToHost, stream);
    e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) return static_cast<int>(e);
    if (!changed) break;
  }
  k_out<T><<<grid_for(total, threads), threads, 0, stream>>>(p, s.map, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

size_t scratch_bytes(const Params& p) {
  if (p.n == 0 || p.h == 0 || p.w == 0) return 0;
  if (fused_bytes(p.h, p.w, p.blur_radius) <= max_smem()) return 0;
  return tiled_bytes(p, nullptr, nullptr);
}

int launch(const Params& p, DType dt, const void* in, void* out, void* scratch, int* bad_flag, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dt) {
    case DType::kFloat32:
      return run<float>(p, in, out, scratch, bad_flag, s);
    case DType::kFloat64:
      return run<double>(p, in, out, scratch, bad_flag, s);
    case DType::kFloat16:
      return run<__half>(p, in, out, scratch, bad_flag, s);
    case DType::kBFloat16:
      return run<__nv_bfloat16>(p, in, out, scratch, bad_flag, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace canny
}  // namespace compgen
