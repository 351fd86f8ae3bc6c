// Canny edge maps: parameters shared by the CPU kernel (csrc/cpu/canny.cpp) and the CUDA launcher, and the
// declarations of the CUDA launch functions (csrc/cuda/canny_kernel.cu). Plain C++: no torch, no CUDA headers.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define CANNY_HD __host__ __device__ inline
#else
#define CANNY_HD inline
#endif

namespace compgen {
namespace canny {

// Gaussian pre-blur: integer weights with kBlurBits fractional bits summing to exactly 1 << kBlurBits.
// Kernel size as OpenCV picks it for 8-bit images: round(6 sigma + 1) | 1; border reflect-101 (OpenCV's default).
constexpr int kBlurBits = 14;
constexpr int kMaxBlurRadius = 32;
constexpr double kMaxBlurSigma = 10.0;

// Fills w[0..r] (w[k] is the weight at distance k) and returns the radius r (0: no blur).
inline int gaussian_weights(double sigma, int32_t* w) {
  if (!(sigma > 0.0)) return 0;
  int ksize = static_cast<int>(std::lround(sigma * 6.0 + 1.0)) | 1;
  int r = ksize / 2;
  if (r > kMaxBlurRadius) r = kMaxBlurRadius;
  if (r == 0) return 0;
  double g[kMaxBlurRadius + 1];
  double sum = 0.0;
  for (int k = 0; k <= r; ++k) {
    g[k] = std::exp(-0.5 * (k * k) / (sigma * sigma));
    sum += (k == 0 ? 1.0 : 2.0) * g[k];
  }
  const double one = static_cast<double>(1 << kBlurBits);
  int32_t total = 0;
  for (int k = r; k >= 0; --k) {
    w[k] = static_cast<int32_t>(std::lround(g[k] / sum * one));
    total += (k == 0 ? 1 : 2) * w[k];
  }
  w[0] += (1 << kBlurBits) - total;  // exact normalisation, absorbed by the centre tap
  return r;
}

// Reflect-101 border index (OpenCV BORDER_REFLECT_101), valid for any offset.
CANNY_HD int reflect101(int i, int n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
  }
  return i;
}

// Integer thresholds on the Sobel magnitude, as OpenCV derives them from thresholds in 0..255 units:
// L2 compares squared magnitudes (threshold clipped at 32767, then squared), both are floored.
inline void int_thresholds(double low, double high, bool l2, int64_t* lo, int64_t* hi) {
  if (l2) {
    low = std::fmin(32767.0, low);
    high = std::fmin(32767.0, high);
    if (low > 0) low *= low;
    if (high > 0) high *= high;
  }
  *lo = static_cast<int64_t>(std::floor(low));
  *hi = static_cast<int64_t>(std::floor(high));
}

// RGB -> luma as OpenCV's cv2.cvtColor(u8, COLOR_RGB2GRAY): 0.299, 0.587, 0.114 in Q15, rounded.
constexpr int kLumaR = 9798, kLumaG = 19235, kLumaB = 3735;

// tan(22.5 deg) in Q15 fixed point: sectors of the gradient direction for non-maximum suppression.
constexpr int kShift = 15;
constexpr int kTg22 = 13573;

// Input element types of the CUDA kernels.
enum class DType { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

struct Params {
  int n, c, h, w;          // input N x C x H x W (C = 1 or 3, RGB), output N x 1 x H x W
  int low, high;           // integer thresholds on the magnitude (int_thresholds, clipped to int range)
  bool l2;
  int blur_radius;         // 0: no blur
  int32_t blur_w[kMaxBlurRadius + 1];
};

// Per-image status bits written by the CUDA kernels (an image with any bit set comes out all NaN).
constexpr int kStatusNonFinite = 1;  // the image holds NaN/Inf
constexpr int kStatusBound = 2;      // a hysteresis (union-find) loop hit its iteration bound (never expected)

// CUDA launchers (csrc/cuda/canny_kernel.cu). Images whose whole pipeline fits one block's shared memory (e.g.
// 64x64 and 128x128) run fused, one block per image; larger ones run one kernel per stage over global scratch.
// Hysteresis is a union-find labelling in a fixed number of passes: no host synchronisation in either path.
// scratch_bytes(p): device scratch launch() needs (0 for the fused path).
size_t scratch_bytes(const Params& p);
// in/out: contiguous device tensors of dtype dt (in N x C x H x W, out N x 1 x H x W); scratch: scratch_bytes(p)
// bytes; status: N device ints, zero on entry, OR-ed with kStatus* bits per image. Returns a cudaError_t as int.
int launch(const Params& p, DType dt, const void* in, void* out, void* scratch, int* status, void* stream);

}  // namespace canny
}  // namespace compgen
