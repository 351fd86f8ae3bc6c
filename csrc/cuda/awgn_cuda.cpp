// Tensor-facing CUDA launcher of the AWGN channel (compiled only in CUDA builds); kernel in awgn_kernel.cu.
// No host synchronisation: sigma and the Philox key are read by the kernel from device memory, and sigma is
// validated there (an image with a NaN, infinite or negative sigma comes out NaN; the CPU kernel raises instead).
// NaN/Inf in z propagate (scanning z would need a second pass and a synchronisation); pycompgen.ops.awgn checks
// both eagerly with PYCOMPGEN_CHECK_FINITE=1.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include <cuda_runtime.h>

#include "awgn_kernel.h"

namespace compgen {
namespace awgn {

void check_args(const at::Tensor& z, const at::Tensor& sigma, const at::Tensor& seed);  // csrc/cpu/awgn.cpp

namespace {

int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return 0;
    case at::kDouble:
      return 1;
    case at::kHalf:
      return 2;
    case at::kBFloat16:
      return 3;
    default:
      TORCH_CHECK_VALUE(false, "awgn: unsupported dtype ", t, " (float32, float64, float16, bfloat16)");
  }
  return -1;
}

at::Tensor awgn_cuda(const at::Tensor& z_in, const at::Tensor& sigma_in, const at::Tensor& seed_in, bool normalize) {
  check_args(z_in, sigma_in, seed_in);
  // check_args has checked that sigma and seed are on z's device: the kernel reads them through raw pointers.
  TORCH_CHECK_VALUE(z_in.is_cuda(), "awgn: expected CUDA tensors, got z on ", z_in.device());
  const c10::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous();
  const at::Tensor sigma = sigma_in.contiguous();
  const at::Tensor seed = seed_in.contiguous();
  at::Tensor out = at::empty_like(z, at::MemoryFormat::Contiguous);
  if (z.numel() == 0) return out;
  const int64_t n = z.size(0);
  const int err = launch_awgn(dtype_code(z.scalar_type()), z.const_data_ptr(), out.mutable_data_ptr(), n,
                              z.numel() / n, sigma.const_data_ptr<double>(), seed.const_data_ptr<int64_t>(),
                              normalize, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "awgn: CUDA kernel launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
  return out;
}

}  // namespace
}  // namespace awgn
}  // namespace compgen

TORCH_LIBRARY_IMPL(compgen, CUDA, m) { m.impl("awgn", &compgen::awgn::awgn_cuda); }
