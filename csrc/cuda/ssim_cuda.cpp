// Tensor-facing CUDA launcher of the fused SSIM kernels (compiled only in CUDA builds).
// Same contract as csrc/cpu/ssim.cpp; the kernels themselves live in ssim_kernel.cu (CUDA headers only).
// No host synchronisation: NaN/Inf in x or y propagate into the result (pycompgen/_ops/ssim.py checks them
// eagerly only with PYCOMPGEN_CHECK_FINITE=1). Outputs: SSIM value / map in the accumulation type (float32 for
// float16 / bfloat16 / float32 inputs, float64 for float64), gradients contiguous (N, C, H, W) in the input dtype.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <cmath>

#include "ssim_kernel.h"

namespace compgen {

// Shared with the CPU kernel (csrc/cpu/ssim.cpp): checks of ssim_bwd's grad and saved maps.
void ssim_check_bwd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& dmaps, int64_t k,
                    int64_t reduction, bool grad_x, bool grad_y);

namespace {

enum Reduction : int64_t { kMean = 0, kNone = 1, kMap = 2 };

cuda::DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return cuda::DType::Float32;
    case at::kHalf: return cuda::DType::Float16;
    case at::kBFloat16: return cuda::DType::BFloat16;
    case at::kDouble: return cuda::DType::Float64;
    default: TORCH_CHECK(false, "compgen::ssim: CUDA supports float32, float16, bfloat16 and float64, got ", t);
  }
}

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

void check_inputs(const at::Tensor& x, const at::Tensor& y, int64_t k) {
  TORCH_CHECK(x.dim() == 4 && y.dim() == 4, "compgen::ssim: x and y must be 4-D (N, C, H, W), got shapes ",
              x.sizes(), " and ", y.sizes());
  TORCH_CHECK(x.sizes() == y.sizes(), "compgen::ssim: x and y must have the same shape, got ", x.sizes(), " and ",
              y.sizes());
  TORCH_CHECK(x.scalar_type() == y.scalar_type(), "compgen::ssim: x and y must have the same dtype, got ",
              x.scalar_type(), " and ", y.scalar_type());
  TORCH_CHECK(x.is_cuda() && x.device() == y.device(),
              "compgen::ssim: x and y must be CUDA tensors on the same device, got ", x.device(), " and ",
              y.device());
  TORCH_CHECK(k >= 1 && k % 2 == 1, "compgen::ssim: window_size must be a positive odd integer, got ", k);
  TORCH_CHECK(x.size(2) >= k && x.size(3) >= k, "compgen::ssim: window_size ", k, " is larger than the image (",
              x.size(2), "x", x.size(3), ")");
  to_dtype(x.scalar_type());
}

void check_smem(size_t need) {
  int limit = 0;
  cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, c10::cuda::current_device());
  TORCH_CHECK(need <= size_t(limit), "compgen::ssim: window_size too large for the CUDA kernel (", need,
              " bytes of shared memory needed, the device allows ", limit, ")");
}

void check_launch(int err) {
  TORCH_CHECK(err == 0, "compgen::ssim: CUDA kernel launch failed: ", cudaGetErrorString(cudaError_t(err)));
}

std::tuple<at::Tensor, at::Tensor> ssim_fwd_cuda(const at::Tensor& x_, const at::Tensor& y_, int64_t k, double sigma,
                                                 double c1, double c2, int64_t reduction, bool loss, bool grad_x,
                                                 bool grad_y) {
  check_inputs(x_, y_, k);
  TORCH_CHECK(sigma > 0, "compgen::ssim: sigma must be positive, got ", sigma);
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "compgen::ssim: bad reduction code ", reduction);
  c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor x = x_.contiguous(), y = y_.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = H - k + 1, Wo = W - k + 1, planes = N * C;
  const bool any_grad = grad_x || grad_y;
  const int64_t nd = any_grad ? int64_t(grad_x) + int64_t(grad_y) + 2 : 0;
  const auto acc = acc_type(x.scalar_type());
  at::Tensor map = reduction == kMap ? at::empty({N, C, Ho, Wo}, x.options().dtype(acc)) : at::Tensor();
  at::Tensor dmaps = at::empty({nd, N, C, Ho, Wo}, x.options().dtype(acc));
  const int64_t tiles = cuda::ssim_fwd_tiles(Ho, Wo);
  at::Tensor partial = at::empty({planes, tiles}, x.options().dtype(acc));
  if (planes > 0) {
    check_smem(cuda::ssim_fwd_smem(int(k), to_dtype(acc)));
    check_launch(cuda::ssim_fwd_launch(to_dtype(x.scalar_type()), x.data_ptr(), y.data_ptr(), planes, H, W, int(k),
                                       sigma, c1, c2, map.defined() ? map.data_ptr() : nullptr, loss,
                                       nd ? dmaps.data_ptr() : nullptr, grad_x, grad_y, partial.data_ptr(),
                                       c10::cuda::getCurrentCUDAStream().stream()));
  }
  if (reduction == kMap) return {map, dmaps};
  // Deterministic reduction of the per-tile partial sums in float64.
  at::Tensor plane_sum = partial.to(at::kDouble).sum(1);
  at::Tensor v = reduction == kMean ? plane_sum.sum() / double(planes * Ho * Wo)
                                    : plane_sum.view({N, C}).sum(1) / double(C * Ho * Wo);
  if (reduction == kMean && planes == 0) v = at::full({}, NAN, v.options());
  if (loss) v = (1.0 - v) * 0.5;
  return {v.to(acc), dmaps};
}

std::tuple<at::Tensor, at::Tensor> ssim_bwd_cuda(const at::Tensor& grad, const at::Tensor& x_, const at::Tensor& y_,
                                                 const at::Tensor& dmaps_, int64_t k, double sigma,
                                                 int64_t reduction, bool loss, bool grad_x, bool grad_y) {
  check_inputs(x_, y_, k);
  // grad and dmaps are read by the kernel through raw pointers: they must live on x's GPU.
  TORCH_CHECK(grad.is_cuda() && grad.device() == x_.device(), "compgen::ssim_bwd: grad must be a CUDA tensor on ",
              x_.device(), " like x, got ", grad.device());
  TORCH_CHECK(dmaps_.is_cuda() && dmaps_.device() == x_.device(),
              "compgen::ssim_bwd: dmaps must be a CUDA tensor on ", x_.device(), " like x, got ", dmaps_.device());
  ssim_check_bwd(grad, x_, dmaps_, k, reduction, grad_x, grad_y);
  c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor x = x_.contiguous(), y = y_.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = H - k + 1, Wo = W - k + 1, planes = N * C;
  const int64_t nm = int64_t(grad_x) + int64_t(grad_y) + 2;
  at::Tensor dx = grad_x ? at::empty_like(x) : at::empty({0}, x.options());
  at::Tensor dy = grad_y ? at::empty_like(y) : at::empty({0}, y.options());
  if (!(grad_x || grad_y) || planes == 0) return {dx, dy};
  const auto acc = acc_type(x.scalar_type());
  const at::Tensor dmaps = dmaps_.contiguous();
  const double lsign = loss ? -0.5 : 1.0;
  at::Tensor wmap, scale;
  if (reduction == kMap) {
    wmap = grad.to(acc).contiguous();
  } else if (reduction == kMean) {
    scale = (grad.to(at::kDouble) / double(planes * Ho * Wo)).reshape({1}).expand({planes});
  } else {
    scale = (grad.to(at::kDouble) / double(C * Ho * Wo)).reshape({N, 1}).expand({N, C}).reshape({planes});
  }
  if (scale.defined()) scale = scale.to(acc).contiguous();
  check_smem(cuda::ssim_bwd_smem(int(k), int(nm), to_dtype(acc)));
  check_launch(cuda::ssim_bwd_launch(to_dtype(x.scalar_type()), x.data_ptr(), y.data_ptr(), dmaps.data_ptr(),
                                     wmap.defined() ? wmap.data_ptr() : nullptr, lsign,
                                     scale.defined() ? scale.data_ptr() : nullptr, planes, H, W, int(k), sigma,
                                     grad_x ? dx.data_ptr() : nullptr, grad_y ? dy.data_ptr() : nullptr,
                                     c10::cuda::getCurrentCUDAStream().stream()));
  return {dx, dy};
}

}  // namespace

TORCH_LIBRARY_IMPL(compgen, CUDA, m) {
  m.impl("ssim_fwd", &ssim_fwd_cuda);
  m.impl("ssim_bwd", &ssim_bwd_cuda);
}

}  // namespace compgen
