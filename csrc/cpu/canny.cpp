// Canny edge maps on the CPU: batched, one image per task (at::parallel_for / OpenMP).
// Pipeline per image (integer arithmetic, so the result equals OpenCV's cv2.Canny on the quantised image):
//   quantise [0,1] -> u8 (round(v*255); RGB -> luma with OpenCV's fixed-point RGB2GRAY weights, Q15)
//   -> optional Gaussian blur (integer weights, reflect-101 border)
//   -> Sobel 3x3 (replicated border) -> magnitude |dx|+|dy| or dx^2+dy^2
//   -> non-maximum suppression in 4 sectors (Q15 tan 22.5 deg) -> hysteresis, 8-connected.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "../cuda/canny_kernel.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CG_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CG_TARGET_CLONES
#endif

namespace compgen {
namespace canny {
namespace {

struct Workspace {
  std::vector<uint8_t> gray;    // H*W
  std::vector<uint16_t> tmp;    // H*W, horizontal blur pass (8 fractional bits)
  std::vector<uint8_t> padded;  // (H+2)*(W+2), replicated border for Sobel
  std::vector<int16_t> dx, dy;  // H*W
  std::vector<int32_t> mag;     // (H+2)*(W+2), zero border
  std::vector<uint8_t> map;     // (H+2)*(W+2): 0 candidate, 1 not an edge, 2 edge
  std::vector<int32_t> stack;  // H*W: hysteresis stack
  void resize(int h, int w) {
    const size_t hw = static_cast<size_t>(h) * w, pp = static_cast<size_t>(h + 2) * (w + 2);
    gray.resize(hw);
    tmp.resize(hw);
    padded.resize(pp);
    dx.resize(hw);
    dy.resize(hw);
    mag.resize(pp);
    map.resize(pp);
    stack.resize(hw);
  }
};

// round(clamp(v, 0, 1) * 255), ties to even (as torch.round): adding 2^23 (2^52) rounds in the FPU's default mode.
// (The product is rounded before the addition: no FMA in the targets built here.)
inline uint8_t quantise(float v) {
  // Clamp on the bit pattern (integer min/max vectorise; float selects do not under -ftrapping-math): negative
  // floats are negative int32, positive floats are ordered as their bits.
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  i = i < 0 ? 0 : i;
  i = i > 0x3F800000 ? 0x3F800000 : i;
  std::memcpy(&v, &i, sizeof v);
  return static_cast<uint8_t>(static_cast<int32_t>((v * 255.f + 8388608.f) - 8388608.f));
}
inline uint8_t quantise(double v) {
  v = v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
  return static_cast<uint8_t>(static_cast<int32_t>((v * 255.0 + 4503599627370496.0) - 4503599627370496.0));
}

inline uint32_t nonfinite_bit(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x7F800000u) == 0x7F800000u;
}

// float32 fast paths (vectorised; the NaN/Inf test is an integer OR so it does not block vectorisation).
CG_TARGET_CLONES bool gray1_f32(const float* __restrict in, size_t hw, uint8_t* __restrict gray) {
  uint32_t bad = 0;
  for (size_t i = 0; i < hw; ++i) {
    bad |= nonfinite_bit(in[i]);
    gray[i] = quantise(in[i]);
  }
  return bad == 0;
}

CG_TARGET_CLONES bool gray3_f32(const float* __restrict r, const float* __restrict g, const float* __restrict b,
                                size_t hw, uint8_t* __restrict gray) {
  uint32_t bad = 0;
  for (size_t i = 0; i < hw; ++i) {
    bad |= nonfinite_bit(r[i]) | nonfinite_bit(g[i]) | nonfinite_bit(b[i]);
    const int32_t y = quantise(r[i]) * kLumaR + quantise(g[i]) * kLumaG + quantise(b[i]) * kLumaB + (1 << 14);
    gray[i] = static_cast<uint8_t>(y >> 15);
  }
  return bad == 0;
}

// Input image n -> gray u8. Returns false if it holds NaN/Inf.
template <typename scalar_t>
bool to_gray(const scalar_t* in, int c, size_t hw, uint8_t* gray) {
  if constexpr (std::is_same<scalar_t, float>::value)
    return c == 1 ? gray1_f32(in, hw, gray) : gray3_f32(in, in + hw, in + 2 * hw, hw, gray);
  using acc_t = typename std::conditional<std::is_same<scalar_t, double>::value, double, float>::type;
  bool finite = true;
  if (c == 1) {
    for (size_t i = 0; i < hw; ++i) {
      const acc_t v = static_cast<acc_t>(in[i]);
      finite &= std::isfinite(v);
      gray[i] = quantise(v);
    }
  } else {
    const scalar_t *r = in, *g = in + hw, *b = in + 2 * hw;
    for (size_t i = 0; i < hw; ++i) {
      const acc_t vr = static_cast<acc_t>(r[i]), vg = static_cast<acc_t>(g[i]), vb = static_cast<acc_t>(b[i]);
      finite &= std::isfinite(vr) && std::isfinite(vg) && std::isfinite(vb);
      const int32_t y = quantise(vr) * kLumaR + quantise(vg) * kLumaG + quantise(vb) * kLumaB + (1 << 14);
      gray[i] = static_cast<uint8_t>(y >> 15);
    }
  }
  return finite;
}

void blur(uint8_t* gray, uint16_t* tmp, int h, int w, int r, const int32_t* wt) {
  // Horizontal pass: u8 * Q14 -> rounded to Q8 (fits 16 bits).
  std::vector<int> xi(static_cast<size_t>(w) + 2 * r);
  for (int x = -r; x < w + r; ++x) xi[x + r] = reflect101(x, w);
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = gray + static_cast<size_t>(y) * w;
    uint16_t* out = tmp + static_cast<size_t>(y) * w;
    for (int x = 0; x < w; ++x) {
      int32_t s = wt[0] * row[x];
      for (int k = 1; k <= r; ++k) s += wt[k] * (row[xi[x + r - k]] + row[xi[x + r + k]]);
      out[x] = static_cast<uint16_t>((s + (1 << 5)) >> 6);
    }
  }
  // Vertical pass: Q8 * Q14 -> Q22 (< 2^31), rounded to u8.
  std::vector<int32_t> acc(w);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) acc[x] = wt[0] * tmp[static_cast<size_t>(y) * w + x];
    for (int k = 1; k <= r; ++k) {
      const uint16_t* a = tmp + static_cast<size_t>(reflect101(y - k, h)) * w;
      const uint16_t* b = tmp + static_cast<size_t>(reflect101(y + k, h)) * w;
      for (int x = 0; x < w; ++x) acc[x] += wt[k] * (a[x] + b[x]);
    }
    uint8_t* out = gray + static_cast<size_t>(y) * w;
    for (int x = 0; x < w; ++x) out[x] = static_cast<uint8_t>((acc[x] + (1 << 21)) >> 22);
  }
}

// Sobel derivatives and magnitude of one row from three rows of the replicated-border image.
CG_TARGET_CLONES void sobel_row(const uint8_t* __restrict r0, const uint8_t* __restrict r1,
                                const uint8_t* __restrict r2, int w, bool l2, int16_t* __restrict ox,
                                int16_t* __restrict oy, int32_t* __restrict om) {
  if (l2) {
    for (int x = 0; x < w; ++x) {
      const int32_t gx = (r0[x + 2] - r0[x]) + 2 * (r1[x + 2] - r1[x]) + (r2[x + 2] - r2[x]);
      const int32_t gy = (r2[x] + 2 * r2[x + 1] + r2[x + 2]) - (r0[x] + 2 * r0[x + 1] + r0[x + 2]);
      ox[x] = static_cast<int16_t>(gx);
      oy[x] = static_cast<int16_t>(gy);
      om[x] = gx * gx + gy * gy;
    }
  } else {
    for (int x = 0; x < w; ++x) {
      const int32_t gx = (r0[x + 2] - r0[x]) + 2 * (r1[x + 2] - r1[x]) + (r2[x + 2] - r2[x]);
      const int32_t gy = (r2[x] + 2 * r2[x + 1] + r2[x + 2]) - (r0[x] + 2 * r0[x + 1] + r0[x + 2]);
      ox[x] = static_cast<int16_t>(gx);
      oy[x] = static_cast<int16_t>(gy);
      om[x] = (gx < 0 ? -gx : gx) + (gy < 0 ? -gy : gy);
    }
  }
}

// Non-maximum suppression of one row, branch-free so that it vectorises: map value 0 (candidate), 1 (not an
// edge) or 2 (strong edge). Sector of the gradient: |dy| < tan(22.5)|dx| horizontal, > tan(67.5)|dx| vertical,
// else the diagonal given by the signs. Ties as OpenCV: the left/upper neighbour must be strictly smaller, the
// right/lower one smaller or equal (diagonals: both strictly), so a plateau keeps one pixel.
CG_TARGET_CLONES void nms_row(const int32_t* __restrict m0, const int32_t* __restrict mp,
                              const int32_t* __restrict mn, const int16_t* __restrict gxr,
                              const int16_t* __restrict gyr, int w, int32_t low, int32_t high,
                              uint8_t* __restrict out) {
  for (int x = 0; x < w; ++x) {
    const int32_t m = m0[x];
    const int32_t xs = gxr[x], ys = gyr[x];
    const int32_t ax = xs < 0 ? -xs : xs;
    const int32_t ay = (ys < 0 ? -ys : ys) << kShift;
    const int32_t tg22x = ax * kTg22;
    const int32_t tg67x = tg22x + (ax << (kShift + 1));
    const bool horiz = ay < tg22x;
    const bool vert = !horiz && ay > tg67x;
    const bool diag = !horiz && !vert;
    const bool pos = (xs ^ ys) >= 0;  // diagonal through up-left and down-right
    const int32_t a = horiz ? m0[x - 1] : (vert ? mp[x] : (pos ? mp[x - 1] : mp[x + 1]));
    const int32_t b = horiz ? m0[x + 1] : (vert ? mn[x] : (pos ? mn[x + 1] : mn[x - 1]));
    const bool peak = (m > a) & ((m > b) | ((m == b) & !diag)) & (m > low);
    out[x] = static_cast<uint8_t>(peak ? (m > high ? 2 : 0) : 1);
  }
}

// One image: in -> out (H*W values in {0,1}). Returns false if the input holds NaN/Inf.
template <typename scalar_t>
bool canny_one(const scalar_t* in, scalar_t* out, const Params& p, Workspace& ws) {
  const int h = p.h, w = p.w, pw = w + 2;
  const size_t hw = static_cast<size_t>(h) * w;
  if (!to_gray(in, p.c, hw, ws.gray.data())) return false;
  if (p.blur_radius > 0) blur(ws.gray.data(), ws.tmp.data(), h, w, p.blur_radius, p.blur_w);

  // Replicated border for Sobel.
  uint8_t* pad = ws.padded.data();
  for (int y = -1; y <= h; ++y) {
    const uint8_t* src = ws.gray.data() + static_cast<size_t>(std::min(std::max(y, 0), h - 1)) * w;
    uint8_t* dst = pad + static_cast<size_t>(y + 1) * pw;
    dst[0] = src[0];
    std::copy(src, src + w, dst + 1);
    dst[w + 1] = src[w - 1];
  }
  int32_t* mag = ws.mag.data();
  std::fill(mag, mag + pw, 0);
  std::fill(mag + static_cast<size_t>(h + 1) * pw, mag + static_cast<size_t>(h + 2) * pw, 0);
  for (int y = 1; y <= h; ++y) mag[static_cast<size_t>(y) * pw] = mag[static_cast<size_t>(y) * pw + w + 1] = 0;
  for (int y = 0; y < h; ++y) {
    const uint8_t* r0 = pad + static_cast<size_t>(y) * pw;
    sobel_row(r0, r0 + pw, r0 + 2 * pw, w, p.l2, ws.dx.data() + static_cast<size_t>(y) * w,
              ws.dy.data() + static_cast<size_t>(y) * w, mag + static_cast<size_t>(y + 1) * pw + 1);
  }

  // Non-maximum suppression (nms_row), then the strong pixels seed the hysteresis stack.
  uint8_t* map = ws.map.data();
  std::fill(map, map + pw, 1);
  std::fill(map + static_cast<size_t>(h + 1) * pw, map + static_cast<size_t>(h + 2) * pw, 1);
  // Each pixel enters the stack at most once (it is marked 2 when pushed): H*W entries suffice.
  int32_t* const stack = ws.stack.data();
  int32_t* top = stack;
  for (int y = 0; y < h; ++y) {
    const int32_t* m0 = mag + static_cast<size_t>(y + 1) * pw + 1;
    uint8_t* mrow = map + static_cast<size_t>(y + 1) * pw + 1;
    mrow[-1] = mrow[w] = 1;
    nms_row(m0, m0 - pw, m0 + pw, ws.dx.data() + static_cast<size_t>(y) * w, ws.dy.data() + static_cast<size_t>(y) * w,
            w, p.low, p.high, mrow);
    // Strong pixels: map values are 0, 1 or 2, so bit 1 marks them; test 8 at a time.
    const int32_t base = (y + 1) * pw + 1;
    int x = 0;
    for (; x + 8 <= w; x += 8) {
      uint64_t word;
      std::memcpy(&word, mrow + x, sizeof word);
      if (word & 0x0202020202020202ull)
        for (int k = x; k < x + 8; ++k)
          if (mrow[k] == 2) *top++ = base + k;
    }
    for (; x < w; ++x)
      if (mrow[x] == 2) *top++ = base + x;
  }

  // Hysteresis: grow edges from the strong pixels through 8-connected candidates. Bounded: a pixel is pushed only
  // when it turns 2 (or is 2 from the start), so there are at most H*W pops and the stack never overflows.
  const int32_t nb[8] = {-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1};
  while (top != stack) {
    const int32_t i = *--top;
    for (int k = 0; k < 8; ++k) {
      const int32_t j = i + nb[k];
      if (map[j] == 0) {
        map[j] = 2;
        *top++ = j;
      }
    }
  }

  for (int y = 0; y < h; ++y) {
    const uint8_t* mrow = map + static_cast<size_t>(y + 1) * pw + 1;
    scalar_t* o = out + static_cast<size_t>(y) * w;
    for (int x = 0; x < w; ++x) o[x] = static_cast<scalar_t>(mrow[x] >> 1);
  }
  return true;
}

}  // namespace

// Shared argument checks (CPU and CUDA): returns the kernel parameters.
Params make_params(const at::Tensor& img, double low, double high, double blur_sigma, bool l2_gradient) {
  TORCH_CHECK_VALUE(img.dim() == 4, "canny: img must be N x C x H x W (4-D), got ", img.dim(), "-D shape ",
                    img.sizes());
  TORCH_CHECK_VALUE(img.size(1) == 1 || img.size(1) == 3, "canny: img must have 1 (gray) or 3 (RGB) channels, got ",
                    img.size(1));
  TORCH_CHECK_VALUE(at::isFloatingType(img.scalar_type()),
                    "canny: img must be a floating-point tensor with values in [0, 1], got ", img.scalar_type());
  TORCH_CHECK_VALUE(std::isfinite(low) && std::isfinite(high), "canny: thresholds must be finite, got low=", low,
                    " high=", high);
  TORCH_CHECK_VALUE(low >= 0 && high >= 0, "canny: thresholds must be >= 0, got low=", low, " high=", high);
  TORCH_CHECK_VALUE(low <= high, "canny: low threshold must be <= high threshold, got low=", low, " high=", high);
  TORCH_CHECK_VALUE(std::isfinite(blur_sigma) && blur_sigma >= 0 && blur_sigma <= kMaxBlurSigma,
                    "canny: blur_sigma must be in [0, ", kMaxBlurSigma, "] (0: no blur), got ", blur_sigma);
  TORCH_CHECK_VALUE(img.size(2) < (1 << 15) && img.size(3) < (1 << 15) &&
                        img.size(2) * img.size(3) < (int64_t(1) << 30),
                    "canny: image too large: ", img.sizes());
  Params p{};
  p.n = static_cast<int>(img.size(0));
  p.c = static_cast<int>(img.size(1));
  p.h = static_cast<int>(img.size(2));
  p.w = static_cast<int>(img.size(3));
  int64_t lo, hi;
  int_thresholds(low * 255.0, high * 255.0, l2_gradient, &lo, &hi);
  const int64_t imax = std::numeric_limits<int32_t>::max();
  p.low = static_cast<int>(std::min(lo, imax));
  p.high = static_cast<int>(std::min(hi, imax));
  p.l2 = l2_gradient;
  p.blur_radius = gaussian_weights(blur_sigma, p.blur_w);
  return p;
}

at::Tensor canny_cpu(const at::Tensor& img_in, double low, double high, double blur_sigma, bool l2_gradient) {
  const Params p = make_params(img_in, low, high, blur_sigma, l2_gradient);
  TORCH_CHECK(img_in.device().is_cpu(), "canny: expected a CPU tensor, got ", img_in.device());
  const at::Tensor img = img_in.contiguous();
  at::Tensor out = at::empty({p.n, 1, p.h, p.w}, img.options());
  if (out.numel() == 0) return out;
  std::atomic<bool> finite{true};
  const size_t in_stride = static_cast<size_t>(p.c) * p.h * p.w, out_stride = static_cast<size_t>(p.h) * p.w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, img.scalar_type(), "canny_cpu", [&] {
    const scalar_t* in = img.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, p.n, 1, [&](int64_t begin, int64_t end) {
      Workspace ws;
      ws.resize(p.h, p.w);
      for (int64_t i = begin; i < end; ++i)
        if (!canny_one(in + i * in_stride, o + i * out_stride, p, ws)) finite.store(false);
    });
  });
  TORCH_CHECK_VALUE(finite.load(), "canny: img contains NaN or Inf");
  return out;
}

}  // namespace canny
}  // namespace compgen

TORCH_LIBRARY_IMPL(compgen, CPU, m) { m.impl("canny", &compgen::canny::canny_cpu); }
