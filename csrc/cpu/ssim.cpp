// Fused SSIM (Wang et al. 2004) on CPU: forward and backward of compgen::ssim_fwd / compgen::ssim_bwd.
//
// Per work item (one N*C plane, or a strip of its rows) the five moments mu_x, mu_y, E[xx], E[yy], E[xy] are
// blurred together with the separable Gaussian: each input row is blurred horizontally into a small ring of k rows
// (stored twice so that any k consecutive rows are contiguous), then the vertical pass over that ring gives one
// output row of all five moments, from which the SSIM row and, when a gradient is wanted, the derivative maps
//   alpha_x = dS/dmu_x, alpha_y = dS/dmu_y, beta_xx = dS/dE[xx] (= dS/dE[yy]), beta_xy = dS/dE[xy]
// are computed in registers. Backward is the transposed ("full") blur of those maps combined with x and y:
//   dx = G^T(w alpha_x) + 2 x G^T(w beta_xx) + y G^T(w beta_xy)   (and symmetrically dy).
// Only "valid" windows are computed here; "same" padding is applied by the Python wrapper.
// float32 accumulates in float32, float64 in float64; float16 / bfloat16 inputs are converted to float32 on entry
// (as the CUDA kernels accumulate them in float32): the SSIM value / map and the derivative maps are float32, the
// gradients are converted back to the input dtype. Inputs of any layout (channels_last, views) are read as
// contiguous NCHW planes; gradients are returned contiguous, as the CUDA kernels return them (and as the fake
// kernels in pycompgen/_ops/ssim.py declare). Hot loops are compiled for AVX-512/AVX2 and picked at run time.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace compgen {
namespace {

enum Reduction : int64_t { kMean = 0, kNone = 1, kMap = 2 };

template <typename T>
std::vector<T> gaussian_window(int64_t k, double sigma) {
  std::vector<double> g(k);
  double s = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    const double c = double(i - k / 2);
    g[i] = std::exp(-(c * c) / (2.0 * sigma * sigma));
    s += g[i];
  }
  std::vector<T> out(k);
  for (int64_t i = 0; i < k; ++i) out[i] = T(g[i] / s);
  return out;
}

template <typename T> struct Block { static constexpr int value = 16; };
template <> struct Block<double> { static constexpr int value = 8; };

// VB-byte vectors (GCC/Clang vector extensions): 64 (zmm) for AVX-512, 32 (ymm) for AVX2, 16 (xmm) otherwise.
template <typename T, int VB> struct Vec { typedef T type __attribute__((vector_size(VB))); };

// dst[s][j] = sum_t g[t] * src[s][j + t * stride] for j in [0, n), NS streams at once, accumulators in registers.
template <int NS, typename T, int VB>
inline __attribute__((always_inline)) void fir(const T* const* src, ptrdiff_t stride, T* const* dst, const T* g,
                                               int64_t taps, int64_t n) {
  using V = typename Vec<T, VB>::type;
  constexpr int B = VB / sizeof(T);
  int64_t j = 0;
  for (; j + B <= n; j += B) {
    V acc[NS];
    for (int s = 0; s < NS; ++s) acc[s] = V{} ;
    for (int64_t t = 0; t < taps; ++t) {
      const V gt = V{} + g[t];
      for (int s = 0; s < NS; ++s) {
        V v;
        std::memcpy(&v, src[s] + j + t * stride, sizeof(V));
        acc[s] += gt * v;
      }
    }
    for (int s = 0; s < NS; ++s) std::memcpy(dst[s] + j, &acc[s], sizeof(V));
  }
  for (; j < n; ++j) {
    for (int s = 0; s < NS; ++s) {
      T a = T(0);
      for (int64_t t = 0; t < taps; ++t) a += g[t] * src[s][j + t * stride];
      dst[s][j] = a;
    }
  }
}

// Output columns per forward chunk: 2k rows x 5 moments of the chunk stay in L1/L2.
template <typename T> struct ChunkCols { static constexpr int64_t value = 64; };
template <> struct ChunkCols<double> { static constexpr int64_t value = 32; };

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

template <typename T>
struct FwdArgs {
  const T* x; const T* y; const T* g;
  int64_t H, W, k, Ho, Wo, strips, rows_per;
  T c1, c2;
  T* map;      // SSIM map (N*C*Ho*Wo) or nullptr
  T* dmaps;    // nd derivative maps, each N*C*Ho*Wo, or nullptr
  int nd;      // 0, 3 or 4 maps: [alpha_x?][alpha_y?] beta_xx beta_xy
  bool gx, gy;
  int64_t plane_numel_out;  // Ho*Wo
  int64_t map_stride;       // N*C*Ho*Wo
  double* item_sum;
};

template <int VB, typename T>
inline __attribute__((always_inline)) void fwd_item(const FwdArgs<T>& a, int64_t item, T* scratch) {
  constexpr int B = Block<T>::value;
  const int64_t plane = item / a.strips, strip = item % a.strips;
  const int64_t i0 = strip * a.rows_per, i1 = std::min(a.Ho, i0 + a.rows_per);
  if (i0 >= i1) { a.item_sum[item] = 0.0; return; }
  const int64_t k = a.k, W = a.W, Wo = a.Wo;
  const int64_t Wop = ChunkCols<T>::value;  // output columns per chunk (the ring stays in L1)
  const int64_t Wip = Wop + k;              // padded input row
  // scratch layout: 5 input rows (Wip), 5 rings (2k*Wop), 5 vertical rows (Wop), 5 output rows (Wop)
  T* in[5]; T* ring[5]; T* vr[5]; T* ob[5];
  T* p = scratch;
  for (int s = 0; s < 5; ++s) { in[s] = p; p += Wip; }
  for (int s = 0; s < 5; ++s) { ring[s] = p; p += 2 * k * Wop; }
  for (int s = 0; s < 5; ++s) { vr[s] = p; p += Wop; }
  for (int s = 0; s < 5; ++s) { ob[s] = p; p += Wop; }

  const T c1 = a.c1, c2 = a.c2;
  double total = 0.0;
  for (int64_t c0 = 0; c0 < Wo; c0 += Wop) {
  const int64_t cw = std::min(Wop, Wo - c0), nin = cw + k - 1, nb = round_up(cw, B);
  for (int s = 0; s < 5; ++s) std::fill(in[s] + nin, in[s] + Wip, T(0));
  const T* xp = a.x + plane * a.H * W + c0;
  const T* yp = a.y + plane * a.H * W + c0;
  for (int64_t r = i0; r < i1 + k - 1; ++r) {
    const T* xr = xp + r * W;
    const T* yr = yp + r * W;
    T* bx = in[0]; T* by = in[1]; T* bxx = in[2]; T* byy = in[3]; T* bxy = in[4];
    for (int64_t j = 0; j < nin; ++j) {
      const T u = xr[j], v = yr[j];
      bx[j] = u; by[j] = v; bxx[j] = u * u; byy[j] = v * v; bxy[j] = u * v;
    }
    const int64_t slot = r % k;
    T* hd[5];
    for (int s = 0; s < 5; ++s) hd[s] = ring[s] + slot * Wop;
    fir<5, T, VB>(in, 1, hd, a.g, k, nb);
    for (int s = 0; s < 5; ++s) std::memcpy(ring[s] + (slot + k) * Wop, hd[s], sizeof(T) * nb);
    if (r < i0 + k - 1) continue;
    const int64_t i = r - k + 1;
    const T* vs[5];
    for (int s = 0; s < 5; ++s) vs[s] = ring[s] + (i % k) * Wop;
    fir<5, T, VB>(vs, Wop, vr, a.g, k, nb);
    const T* mx = vr[0]; const T* my = vr[1]; const T* exx = vr[2]; const T* eyy = vr[3]; const T* exy = vr[4];
    const int64_t off = plane * a.plane_numel_out + i * Wo + c0;
    // Branch-free vector loops into L1 row buffers, then copies of the rows that are wanted.
    T* S_ = ob[0]; T* ax_ = ob[1]; T* ay_ = ob[2]; T* bxx_ = ob[3]; T* bxy_ = ob[4];
    T rowsum = T(0);
    if (a.nd == 0) {
#pragma omp simd reduction(+ : rowsum)
      for (int64_t j = 0; j < cw; ++j) {
        const T mxx = mx[j] * mx[j], myy = my[j] * my[j], mxy = mx[j] * my[j];
        const T A1 = 2 * mxy + c1, A2 = 2 * (exy[j] - mxy) + c2;
        const T B1 = mxx + myy + c1, B2 = (exx[j] - mxx) + (eyy[j] - myy) + c2;
        const T S = (A1 * A2) / (B1 * B2);
        rowsum += S;
        S_[j] = S;
      }
    } else {
#pragma omp simd reduction(+ : rowsum)
      for (int64_t j = 0; j < cw; ++j) {
        const T ux = mx[j], uy = my[j];
        const T mxx = ux * ux, myy = uy * uy, mxy = ux * uy;
        const T A1 = 2 * mxy + c1, A2 = 2 * (exy[j] - mxy) + c2;
        const T B1 = mxx + myy + c1, B2 = (exx[j] - mxx) + (eyy[j] - myy) + c2;
        const T iB1 = T(1) / B1, iB2 = T(1) / B2;
        const T D = iB1 * iB2;
        const T S = A1 * A2 * D;
        rowsum += S;
        S_[j] = S;
        const T P = 2 * (A2 - A1) * D;
        const T Q = 2 * S * (iB2 - iB1);
        ax_[j] = uy * P + ux * Q;
        ay_[j] = ux * P + uy * Q;
        bxx_[j] = -S * iB2;
        bxy_[j] = 2 * A1 * D;
      }
      int d = 0;
      if (a.gx) std::memcpy(a.dmaps + (d++) * a.map_stride + off, ax_, sizeof(T) * cw);
      if (a.gy) std::memcpy(a.dmaps + (d++) * a.map_stride + off, ay_, sizeof(T) * cw);
      std::memcpy(a.dmaps + (d++) * a.map_stride + off, bxx_, sizeof(T) * cw);
      std::memcpy(a.dmaps + d * a.map_stride + off, bxy_, sizeof(T) * cw);
    }
    if (a.map) std::memcpy(a.map + off, S_, sizeof(T) * cw);
    total += double(rowsum);
  }
  }
  a.item_sum[item] = total;
}

template <typename T>
struct BwdArgs {
  const T* x; const T* y; const T* g;  // g reversed taps (for the transposed blur)
  const T* maps; int nm;               // 3 or 4 maps, each N*C*Ho*Wo (already weighted for "map")
  const T* scale;                      // per-plane scale (nullptr: 1)
  int64_t H, W, k, Ho, Wo, strips, rows_per, map_stride;
  bool gx, gy;
  T* dx; T* dy;
};

template <int NM, int VB, typename T>
inline __attribute__((always_inline)) void bwd_item(const BwdArgs<T>& a, int64_t item, T* scratch) {
  constexpr int B = Block<T>::value;
  const int64_t plane = item / a.strips, strip = item % a.strips;
  const int64_t p0 = strip * a.rows_per, p1 = std::min(a.H, p0 + a.rows_per);
  if (p0 >= p1) return;
  const int64_t k = a.k, W = a.W, Wo = a.Wo, Ho = a.Ho;
  const int64_t Wp = round_up(W, B);
  const int64_t Vp = Wp + k;  // padded vertical row: k-1 zeros, Wo values, zeros
  T* vp[NM]; T* hr[NM];
  T* q = scratch;
  for (int s = 0; s < NM; ++s) { vp[s] = q; q += Vp; }
  for (int s = 0; s < NM; ++s) { hr[s] = q; q += Wp; }
  for (int s = 0; s < NM; ++s) std::fill(vp[s], vp[s] + Vp, T(0));
  const T* mp[NM];
  for (int s = 0; s < NM; ++s) mp[s] = a.maps + s * a.map_stride + plane * Ho * Wo;
  const T sc = a.scale ? a.scale[plane] : T(1);
  const T* xp = a.x + plane * a.H * W;
  const T* yp = a.y + plane * a.H * W;
  for (int64_t pr = p0; pr < p1; ++pr) {
    // map rows m = pr-k+1+t for t in [t0, t1]
    const int64_t t0 = std::max<int64_t>(0, k - 1 - pr);
    const int64_t t1 = std::min<int64_t>(k - 1, Ho - 1 - pr + k - 1);
    const T* src[NM]; T* dst[NM];
    for (int s = 0; s < NM; ++s) { src[s] = mp[s] + (pr - k + 1 + t0) * Wo; dst[s] = vp[s] + (k - 1); }
    fir<NM, T, VB>(src, Wo, dst, a.g + t0, t1 - t0 + 1, Wo);
    const T* hs[NM];
    for (int s = 0; s < NM; ++s) hs[s] = vp[s];
    fir<NM, T, VB>(hs, 1, hr, a.g, k, Wp);
    const T* xr = xp + pr * W;
    const T* yr = yp + pr * W;
    if constexpr (NM == 4) {
      T* dxr = a.dx + plane * a.H * W + pr * W;
      T* dyr = a.dy + plane * a.H * W + pr * W;
      const T* hax = hr[0]; const T* hay = hr[1]; const T* hbxx = hr[2]; const T* hbxy = hr[3];
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) {
        dxr[j] = sc * (hax[j] + 2 * xr[j] * hbxx[j] + yr[j] * hbxy[j]);
        dyr[j] = sc * (hay[j] + 2 * yr[j] * hbxx[j] + xr[j] * hbxy[j]);
      }
    } else {
      const T* ur = a.gx ? xr : yr;  // the input whose gradient is computed
      const T* vr = a.gx ? yr : xr;
      T* dr = (a.gx ? a.dx : a.dy) + plane * a.H * W + pr * W;
      const T* ha = hr[0]; const T* hbxx = hr[1]; const T* hbxy = hr[2];
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) dr[j] = sc * (ha[j] + 2 * ur[j] * hbxx[j] + vr[j] * hbxy[j]);
    }
  }
}

// Instruction-set variants: flatten inlines the kernels above into each target-specific wrapper.
#if defined(__x86_64__) && defined(__GNUC__)
#define CG_X86 1
#define CG_AVX512 "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=512"
template <typename T>
__attribute__((target(CG_AVX512), flatten)) void fwd_item_avx512(const FwdArgs<T>& a, int64_t item, T* s) {
  fwd_item<64, T>(a, item, s);
}
template <typename T>
__attribute__((target("avx2,fma"), flatten)) void fwd_item_avx2(const FwdArgs<T>& a, int64_t item, T* s) {
  fwd_item<32, T>(a, item, s);
}
template <int NM, typename T>
__attribute__((target(CG_AVX512), flatten)) void bwd_item_avx512(const BwdArgs<T>& a, int64_t item, T* s) {
  bwd_item<NM, 64, T>(a, item, s);
}
template <int NM, typename T>
__attribute__((target("avx2,fma"), flatten)) void bwd_item_avx2(const BwdArgs<T>& a, int64_t item, T* s) {
  bwd_item<NM, 32, T>(a, item, s);
}
#endif
template <typename T>
__attribute__((flatten)) void fwd_item_base(const FwdArgs<T>& a, int64_t item, T* s) { fwd_item<16, T>(a, item, s); }
template <int NM, typename T>
__attribute__((flatten)) void bwd_item_base(const BwdArgs<T>& a, int64_t item, T* s) {
  bwd_item<NM, 16, T>(a, item, s);
}

int cpu_isa() {
#ifdef CG_X86
  static const int isa = [] {
    __builtin_cpu_init();
    // COMPGEN_CPU_ISA=base|avx2|avx512 caps the instruction set (benchmarking, bisecting numerical issues).
    const char* cap = std::getenv("COMPGEN_CPU_ISA");
    const int limit = !cap ? 2 : std::strcmp(cap, "base") == 0 ? 0 : std::strcmp(cap, "avx2") == 0 ? 1 : 2;
    if (limit >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
      return 2;
    if (limit >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return isa;
#else
  return 0;
#endif
}

// Split planes into row strips so that both cores have work when N*C is small.
void plan(int64_t planes, int64_t rows, int64_t k, int64_t* strips, int64_t* rows_per) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t s = 1;
  if (planes > 0 && planes < 4 * threads) {
    const int64_t want = (4 * threads + planes - 1) / planes;       // about 4 items per thread
    const int64_t most = rows / std::max<int64_t>(2 * k, 16);        // strips of >= 2k rows (warm-up k-1 rows)
    s = std::max<int64_t>(1, std::min(want, most));
  }
  *strips = s;
  *rows_per = (rows + s - 1) / s;
}

template <typename F>
void parallel_items(int64_t items, int64_t scratch_elems, size_t elem_size, F f) {
  // at::parallel_for uses the same OpenMP pool as ATen; each chunk allocates its scratch once.
  at::parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
    std::vector<unsigned char> buf((scratch_elems + 64) * elem_size);
    void* base = buf.data();
    for (int64_t it = b; it < e; ++it) f(it, base);
  });
}

void check_inputs(const at::Tensor& x, const at::Tensor& y, int64_t k) {
  TORCH_CHECK(x.dim() == 4 && y.dim() == 4, "compgen::ssim: x and y must be 4-D (N, C, H, W), got shapes ",
              x.sizes(), " and ", y.sizes());
  TORCH_CHECK(x.sizes() == y.sizes(), "compgen::ssim: x and y must have the same shape, got ", x.sizes(), " and ",
              y.sizes());
  TORCH_CHECK(x.scalar_type() == y.scalar_type(), "compgen::ssim: x and y must have the same dtype, got ",
              x.scalar_type(), " and ", y.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && y.device().is_cpu(), "compgen::ssim: expected CPU tensors, got ", x.device(),
              " and ", y.device());
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
              "compgen::ssim: supports float32, float64, float16 and bfloat16, got ", t);
  TORCH_CHECK(k >= 1 && k % 2 == 1, "compgen::ssim: window_size must be a positive odd integer, got ", k);
  TORCH_CHECK(x.size(2) >= k && x.size(3) >= k, "compgen::ssim: window_size ", k, " is larger than the image (",
              x.size(2), "x", x.size(3), ")");
}

// Accumulation (and output) type of an input dtype: float64 for float64, float32 otherwise.
at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// x in the accumulation type as contiguous NCHW (no copy when it already is).
at::Tensor as_acc(const at::Tensor& x) {
  const auto acc = acc_type(x.scalar_type());
  // (Tensor::to aliases a same-dtype view whose suggested format is Contiguous, e.g. a transpose: no .to there.)
  if (x.scalar_type() == acc) return x.contiguous();
  return x.to(acc, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous);
}

}  // namespace

// Checks of ssim_bwd's grad and saved derivative maps (shared with the CUDA launcher, csrc/cuda/ssim_cuda.cpp).
void ssim_check_bwd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& dmaps, int64_t k,
                    int64_t reduction, bool grad_x, bool grad_y) {
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "compgen::ssim_bwd: bad reduction code ", reduction);
  const int64_t N = x.size(0), C = x.size(1), Ho = x.size(2) - k + 1, Wo = x.size(3) - k + 1;
  const auto acc = acc_type(x.scalar_type());
  TORCH_CHECK(grad.device() == x.device() && dmaps.device() == x.device(),
              "compgen::ssim_bwd: grad, x and dmaps must be on the same device, got ", grad.device(), ", ",
              x.device(), " and ", dmaps.device());
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), "compgen::ssim_bwd: grad must be floating-point, got ",
              grad.scalar_type());
  if (reduction == kMean) {
    TORCH_CHECK(grad.numel() == 1, "compgen::ssim_bwd: grad of reduction 'mean' must have one element, got shape ",
                grad.sizes());
  } else if (reduction == kNone) {
    TORCH_CHECK(grad.dim() == 1 && grad.size(0) == N, "compgen::ssim_bwd: grad of reduction 'none' must have shape (",
                N, ",), got ", grad.sizes());
  } else {
    TORCH_CHECK(grad.dim() == 4 && grad.size(0) == N && grad.size(1) == C && grad.size(2) == Ho &&
                    grad.size(3) == Wo,
                "compgen::ssim_bwd: grad of reduction 'map' must have shape (", N, ", ", C, ", ", Ho, ", ", Wo,
                "), got ", grad.sizes());
  }
  if (!(grad_x || grad_y)) return;
  const int64_t nm = int64_t(grad_x) + int64_t(grad_y) + 2;
  TORCH_CHECK(dmaps.dim() == 5 && dmaps.size(0) == nm && dmaps.size(1) == N && dmaps.size(2) == C &&
                  dmaps.size(3) == Ho && dmaps.size(4) == Wo && dmaps.scalar_type() == acc,
              "compgen::ssim_bwd: saved derivative maps have shape ", dmaps.sizes(), " and dtype ",
              dmaps.scalar_type(), ", expected [", nm, ", ", N, ", ", C, ", ", Ho, ", ", Wo, "] ", acc);
}

namespace {

std::tuple<at::Tensor, at::Tensor> ssim_fwd_cpu(const at::Tensor& x_, const at::Tensor& y_, int64_t k, double sigma,
                                                double c1, double c2, int64_t reduction, bool loss, bool grad_x,
                                                bool grad_y) {
  check_inputs(x_, y_, k);
  TORCH_CHECK(sigma > 0, "compgen::ssim: sigma must be positive, got ", sigma);
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "compgen::ssim: bad reduction code ", reduction);
  const at::Tensor x = as_acc(x_), y = as_acc(y_);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = H - k + 1, Wo = W - k + 1, planes = N * C;
  const bool any_grad = grad_x || grad_y;
  const int nd = any_grad ? int(grad_x) + int(grad_y) + 2 : 0;
  at::Tensor map = reduction == kMap ? at::empty({N, C, Ho, Wo}, x.options()) : at::Tensor();
  at::Tensor dmaps = at::empty({nd, N, C, Ho, Wo}, x.options());
  int64_t strips, rows_per;
  plan(planes, Ho, k, &strips, &rows_per);
  const int64_t items = planes * strips;
  at::Tensor sums = at::empty({std::max<int64_t>(items, 1)}, x.options().dtype(at::kDouble));
  if (items > 0) AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "compgen_ssim_fwd_cpu", [&] {
    using T = scalar_t;
    const std::vector<T> g = gaussian_window<T>(k, sigma);
    FwdArgs<T> a;
    a.x = x.data_ptr<T>(); a.y = y.data_ptr<T>(); a.g = g.data();
    a.H = H; a.W = W; a.k = k; a.Ho = Ho; a.Wo = Wo; a.strips = strips; a.rows_per = rows_per;
    a.c1 = T(c1); a.c2 = T(c2);
    a.map = map.defined() ? map.data_ptr<T>() : nullptr;
    a.dmaps = nd ? dmaps.data_ptr<T>() : nullptr;
    a.nd = nd; a.gx = grad_x; a.gy = grad_y;
    a.plane_numel_out = Ho * Wo; a.map_stride = planes * Ho * Wo;
    a.item_sum = sums.data_ptr<double>();
    const int64_t Wop = ChunkCols<T>::value;
    const int64_t scratch = 5 * (Wop + k) + 5 * 2 * k * Wop + 10 * Wop;
    const int isa = cpu_isa();
    parallel_items(items, scratch, sizeof(T), [&](int64_t it, void* buf) {
      T* s = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(buf) + 63) & ~uintptr_t(63));
#ifdef CG_X86
      if (isa == 2) return fwd_item_avx512<T>(a, it, s);
      if (isa == 1) return fwd_item_avx2<T>(a, it, s);
#endif
      (void)isa;
      fwd_item_base<T>(a, it, s);
    });
  });
  // Per-plane sums (fixed order: deterministic), then the reduction; NaN/Inf in the inputs make the sums non-finite.
  at::Tensor plane_sum = sums.narrow(0, 0, items).view({planes, strips}).sum(1);
  if (planes > 0 && !std::isfinite(plane_sum.sum().item<double>())) {
    TORCH_CHECK(at::isfinite(x).all().item<bool>(), "compgen::ssim: x contains NaN or Inf");
    TORCH_CHECK(at::isfinite(y).all().item<bool>(), "compgen::ssim: y contains NaN or Inf");
  }
  at::Tensor out;
  if (reduction == kMap) {
    out = loss ? (1.0 - map) * 0.5 : map;
  } else {
    at::Tensor v = reduction == kMean ? plane_sum.sum() / double(planes * Ho * Wo)
                                      : plane_sum.view({N, C}).sum(1) / double(C * Ho * Wo);
    if (reduction == kMean && planes == 0) v = at::full({}, NAN, v.options());
    if (loss) v = (1.0 - v) * 0.5;
    out = v.to(x.scalar_type());
  }
  return {out, dmaps};
}

std::tuple<at::Tensor, at::Tensor> ssim_bwd_cpu(const at::Tensor& grad, const at::Tensor& x_, const at::Tensor& y_,
                                                const at::Tensor& dmaps_, int64_t k, double sigma, int64_t reduction,
                                                bool loss, bool grad_x, bool grad_y) {
  check_inputs(x_, y_, k);
  ssim_check_bwd(grad, x_, dmaps_, k, reduction, grad_x, grad_y);
  const at::ScalarType dt = x_.scalar_type();
  const int64_t N = x_.size(0), C = x_.size(1), H = x_.size(2), W = x_.size(3);
  const int64_t Ho = H - k + 1, Wo = W - k + 1, planes = N * C;
  const int nm = int(grad_x) + int(grad_y) + 2;
  const auto empty_grad = [&] { return at::empty({0}, x_.options()); };
  if (!(grad_x || grad_y) || planes == 0) {
    const auto full = [&] { return at::empty({N, C, H, W}, x_.options()); };
    return {grad_x ? full() : empty_grad(), grad_y ? full() : empty_grad()};
  }
  const at::Tensor x = as_acc(x_), y = as_acc(y_);
  at::Tensor dx = grad_x ? at::empty_like(x) : empty_grad();
  at::Tensor dy = grad_y ? at::empty_like(y) : empty_grad();
  const double lsign = loss ? -0.5 : 1.0;
  at::Tensor maps, scale;
  if (reduction == kMap) {
    maps = (dmaps_ * (grad.to(x.scalar_type()) * lsign).unsqueeze(0)).contiguous();
  } else {
    maps = dmaps_.contiguous();
    if (reduction == kMean) {
      scale = (grad.to(at::kDouble) * (lsign / double(planes * Ho * Wo))).reshape({1}).expand({planes});
    } else {
      scale = (grad.to(at::kDouble) * (lsign / double(C * Ho * Wo))).reshape({N, 1}).expand({N, C}).reshape({planes});
    }
    scale = scale.to(x.scalar_type()).contiguous();
  }
  int64_t strips, rows_per;
  plan(planes, H, k, &strips, &rows_per);
  const int64_t items = planes * strips;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "compgen_ssim_bwd_cpu", [&] {
    using T = scalar_t;
    constexpr int Bk = Block<T>::value;
    std::vector<T> g = gaussian_window<T>(k, sigma);
    std::reverse(g.begin(), g.end());
    BwdArgs<T> a;
    a.x = x.data_ptr<T>(); a.y = y.data_ptr<T>(); a.g = g.data();
    a.maps = maps.data_ptr<T>(); a.nm = nm;
    a.scale = scale.defined() ? scale.data_ptr<T>() : nullptr;
    a.H = H; a.W = W; a.k = k; a.Ho = Ho; a.Wo = Wo; a.strips = strips; a.rows_per = rows_per;
    a.map_stride = planes * Ho * Wo;
    a.gx = grad_x; a.gy = grad_y;
    a.dx = grad_x ? dx.data_ptr<T>() : nullptr;
    a.dy = grad_y ? dy.data_ptr<T>() : nullptr;
    const int64_t Wp = round_up(W, Bk);
    const int64_t scratch = 4 * (Wp + k) + 4 * Wp;
    const int isa = cpu_isa();
    parallel_items(items, scratch, sizeof(T), [&](int64_t it, void* buf) {
      T* s = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(buf) + 63) & ~uintptr_t(63));
      (void)isa;
      if (nm == 4) {
#ifdef CG_X86
        if (isa == 2) return bwd_item_avx512<4, T>(a, it, s);
        if (isa == 1) return bwd_item_avx2<4, T>(a, it, s);
#endif
        return bwd_item_base<4, T>(a, it, s);
      }
#ifdef CG_X86
      if (isa == 2) return bwd_item_avx512<3, T>(a, it, s);
      if (isa == 1) return bwd_item_avx2<3, T>(a, it, s);
#endif
      bwd_item_base<3, T>(a, it, s);
    });
  });
  if (dt != x.scalar_type()) {  // float16 / bfloat16: gradients back in the input dtype
    if (grad_x) dx = dx.to(dt);
    if (grad_y) dy = dy.to(dt);
  }
  return {dx, dy};
}

}  // namespace

TORCH_LIBRARY_IMPL(compgen, CPU, m) {
  m.impl("ssim_fwd", &ssim_fwd_cpu);
  m.impl("ssim_bwd", &ssim_bwd_cpu);
}

}  // namespace compgen
