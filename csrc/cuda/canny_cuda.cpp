// Tensor-facing CUDA launcher of the Canny op (compiled only in CUDA builds); kernels in canny_kernel.cu.
// No host synchronisation: the kernels flag an image holding NaN/Inf (or, never expected, a hysteresis loop that
// hit its bound) in a per-image status word and write that image as NaN. Only in debug mode
// (PYCOMPGEN_CHECK_FINITE=1) is the status read back (one synchronisation) and turned into an error.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>
#include <torch/types.h>

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "canny_kernel.h"

namespace compgen {
namespace canny {

Params make_params(const at::Tensor& img, double low, double high, double blur_sigma, bool l2_gradient);  // cpu/

namespace {

// Debug mode of the compiled ops (docs/ops.md "Ops"): same variable and rule as pycompgen/_ops/__init__.py.
bool eager_checks() {
  const char* v = std::getenv("PYCOMPGEN_CHECK_FINITE");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

DType dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      TORCH_CHECK_VALUE(false, "canny: unsupported dtype ", t, " (float32, float64, float16, bfloat16)");
  }
  return DType::kFloat32;
}

at::Tensor canny_cuda(const at::Tensor& img_in, double low, double high, double blur_sigma, bool l2_gradient) {
  const Params p = make_params(img_in, low, high, blur_sigma, l2_gradient);
  TORCH_CHECK_VALUE(img_in.is_cuda(), "canny: expected a CUDA tensor, got ", img_in.device());
  const DType dt = dtype_of(img_in.scalar_type());
  const c10::cuda::CUDAGuard guard(img_in.device());
  const at::Tensor img = img_in.contiguous();
  at::Tensor out = at::empty({p.n, 1, p.h, p.w}, img.options());
  if (out.numel() == 0) return out;
  const size_t scratch_size = scratch_bytes(p);
  at::Tensor scratch = at::empty({static_cast<int64_t>(scratch_size > 0 ? scratch_size : 1)},
                                 img.options().dtype(at::kByte));
  at::Tensor status = at::zeros({p.n}, img.options().dtype(at::kInt));
  const int err = launch(p, dt, img.const_data_ptr(), out.mutable_data_ptr(), scratch.mutable_data_ptr(),
                         status.mutable_data_ptr<int>(), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "canny: CUDA kernel failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
  if (eager_checks()) {
    const int st = status.max().item<int>();  // the one synchronisation, debug mode only
    TORCH_CHECK_VALUE(!(st & kStatusNonFinite), "canny: img contains NaN or Inf");
    TORCH_CHECK(!(st & kStatusBound), "canny: hysteresis exceeded its iteration bound (internal error)");
  }
  return out;
}

}  // namespace
}  // namespace canny
}  // namespace compgen

TORCH_LIBRARY_IMPL(compgen, CUDA, m) { m.impl("canny", &compgen::canny::canny_cuda); }
