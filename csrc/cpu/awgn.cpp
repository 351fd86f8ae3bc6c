// AWGN channel on the CPU: out = (z + sigma_i * n) / max(1, sigma_i) (or without the division), one read of z and
// one write, noise from the counter-based generator in csrc/cuda/awgn_kernel.h (deterministic for any thread count).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../cuda/awgn_kernel.h"

namespace compgen {
namespace awgn {
namespace {

constexpr int64_t kBlockGroups = 128;  // 512 normals generated per block, then applied

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CG_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CG_TARGET_CLONES
#endif

// Normals of groups g0 .. g0+ng-1 (ng <= kBlockGroups) into out[0 .. 4*ng): element 4b+k is lane k of group
// g0+b. Structure-of-arrays passes so that each loop vectorises (AVX2 clone where the CPU has it).
CG_TARGET_CLONES void generate(uint64_t g0, int64_t ng, uint32_t k0, uint32_t k1, float* __restrict out) {
  alignas(64) uint32_t r0[kBlockGroups], r1[kBlockGroups], r2[kBlockGroups], r3[kBlockGroups];
  alignas(64) float n0[kBlockGroups], n1[kBlockGroups], n2[kBlockGroups], n3[kBlockGroups];
  for (int64_t b = 0; b < ng; ++b) {
    uint32_t r[4];
    const uint64_t g = g0 + static_cast<uint64_t>(b);
    philox(static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32), k0, k1, r);
    r0[b] = r[0];
    r1[b] = r[1];
    r2[b] = r[2];
    r3[b] = r[3];
  }
  for (int64_t b = 0; b < ng; ++b) {
    box_muller(r0[b], r1[b], &n0[b], &n1[b]);
    box_muller(r2[b], r3[b], &n2[b], &n3[b]);
  }
  for (int64_t b = 0; b < ng; ++b) {
    out[4 * b] = n0[b];
    out[4 * b + 1] = n1[b];
    out[4 * b + 2] = n2[b];
    out[4 * b + 3] = n3[b];
  }
}

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

// 1 if v is NaN/Inf (integer result: an OR-reduction of it does not stop vectorisation).
inline uint32_t nonfinite(float v) { return (as_uint(v) & 0x7F800000u) == 0x7F800000u; }
inline uint32_t nonfinite(double v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x7FF0000000000000ull) == 0x7FF0000000000000ull;
}

// out[i] = (z[i] + s * n[i]) / d for i < len; returns true if z holds NaN/Inf.
template <typename scalar_t>
bool apply(const scalar_t* __restrict z, scalar_t* __restrict out, const float* __restrict n, int64_t len,
           double sigma, double denom) {
  using acc_t = typename Acc<scalar_t>::type;
  uint32_t bad = 0;
  if (sigma == 0.0) {  // infinite PSNR: exact identity
    for (int64_t i = 0; i < len; ++i) {
      bad |= nonfinite(static_cast<acc_t>(z[i]));
      out[i] = z[i];
    }
    return bad != 0;
  }
  const acc_t s = static_cast<acc_t>(sigma), d = static_cast<acc_t>(denom);
  if (denom == 1.0) {
    for (int64_t i = 0; i < len; ++i) {
      const acc_t v = static_cast<acc_t>(z[i]);
      bad |= nonfinite(v);
      out[i] = static_cast<scalar_t>(v + s * static_cast<acc_t>(n[i]));
    }
  } else {
    for (int64_t i = 0; i < len; ++i) {
      const acc_t v = static_cast<acc_t>(z[i]);
      bad |= nonfinite(v);
      out[i] = static_cast<scalar_t>((v + s * static_cast<acc_t>(n[i])) / d);
    }
  }
  return bad != 0;
}

}  // namespace

// Shared argument checks (CPU and CUDA).
void check_args(const at::Tensor& z, const at::Tensor& sigma, const at::Tensor& seed) {
  TORCH_CHECK_VALUE(z.dim() >= 1, "awgn: z must have a batch dimension (N, ...), got a 0-D tensor");
  TORCH_CHECK_VALUE(at::isFloatingType(z.scalar_type()), "awgn: z must be a floating-point tensor, got ",
                    z.scalar_type());
  TORCH_CHECK_VALUE(sigma.dim() == 1 && sigma.size(0) == z.size(0) && sigma.scalar_type() == at::kDouble,
                    "awgn: sigma must be a float64 tensor of shape (N,) = (", z.size(0), ",), got ",
                    sigma.scalar_type(), " ", sigma.sizes());
  TORCH_CHECK_VALUE(seed.dim() == 1 && seed.size(0) == 2 && seed.scalar_type() == at::kLong,
                    "awgn: seed must be an int64 tensor of shape (2,), got ", seed.scalar_type(), " ", seed.sizes());
  TORCH_CHECK_VALUE(sigma.device() == z.device() && seed.device() == z.device(),
                    "awgn: z, sigma and seed must be on the same device, got ", z.device(), ", ", sigma.device(),
                    ", ", seed.device());
}

namespace {

at::Tensor awgn_cpu(const at::Tensor& z_in, const at::Tensor& sigma_in, const at::Tensor& seed_in, bool normalize) {
  check_args(z_in, sigma_in, seed_in);
  const at::Tensor z = z_in.contiguous();
  const at::Tensor sigma = sigma_in.contiguous();
  const int64_t n = z.size(0);
  at::Tensor out = at::empty_like(z, at::MemoryFormat::Contiguous);
  const double* sg = sigma.const_data_ptr<double>();
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK_VALUE(std::isfinite(sg[i]) && sg[i] >= 0.0, "awgn: sigma of image ", i,
                      " must be finite and >= 0, got ", sg[i], " (check psnr_db and peak)");
  const int64_t numel = z.numel();
  if (numel == 0) return out;
  const int64_t per_image = numel / n;
  const int64_t* sd = seed_in.const_data_ptr<int64_t>();
  const uint32_t k0 = static_cast<uint32_t>(sd[0]), k1 = static_cast<uint32_t>(sd[1]);
  const int64_t groups = (numel + 3) / 4;
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "awgn_cpu", [&] {
    const scalar_t* zp = z.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, groups, 2048, [&](int64_t gb, int64_t ge) {
      alignas(64) float noise[4 * kBlockGroups];
      bool local_bad = false;
      for (int64_t g = gb; g < ge; g += kBlockGroups) {
        const int64_t ng = std::min(kBlockGroups, ge - g);
        int64_t e = 4 * g;
        const int64_t e1 = std::min(4 * (g + ng), numel);
        // Images whose sigma is 0 need no noise; skip generation when the whole block is such.
        const int64_t first = e / per_image, last = (e1 - 1) / per_image;
        bool any_noise = false;
        for (int64_t i = first; i <= last; ++i) any_noise |= sg[i] != 0.0;
        if (any_noise) generate(static_cast<uint64_t>(g), ng, k0, k1, noise);
        while (e < e1) {
          const int64_t img = e / per_image;
          const int64_t seg_end = std::min(e1, (img + 1) * per_image);
          const double s = sg[img];
          const double d = normalize ? std::max(1.0, s) : 1.0;
          local_bad |= apply<scalar_t>(zp + e, op + e, noise + (e - 4 * g), seg_end - e, s, d);
          e = seg_end;
        }
      }
      if (local_bad) bad.store(true);
    });
  });
  TORCH_CHECK_VALUE(!bad.load(), "awgn: z contains NaN or Inf");
  return out;
}

}  // namespace
}  // namespace awgn
}  // namespace compgen

TORCH_LIBRARY_IMPL(compgen, CPU, m) { m.impl("awgn", &compgen::awgn::awgn_cpu); }
