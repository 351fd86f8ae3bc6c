// Launch functions of the fused SSIM CUDA kernels (csrc/cuda/ssim_kernel.cu). Plain C++ declarations on raw
// pointers, sizes and a cudaStream_t, so that the kernels compile with CUDA headers only (no torch headers).
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace compgen {
namespace cuda {

enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2, Float64 = 3 };

// Number of output tiles per plane of the forward kernel (size of the per-plane partial-sum array).
int64_t ssim_fwd_tiles(int64_t Ho, int64_t Wo);

// Shared memory (bytes) the kernels need for window size k; the launcher checks it against the device limit.
size_t ssim_fwd_smem(int k, DType acc);
size_t ssim_bwd_smem(int k, int nm, DType acc);

// Forward on `planes` contiguous H x W planes of x and y (dtype dt), valid windows of size k.
//   map:     planes x Ho x Wo SSIM map (or 0.5*(1-SSIM) when loss_map) in the accumulation type (float, double
//            for Float64), or nullptr
//   dmaps:   nd = (gx + gy + 2) maps, each planes x Ho x Wo, accumulation type (float, double for Float64),
//            [alpha_x if gx][alpha_y if gy] beta_xx beta_xy; nullptr when no gradient is wanted
//   partial: planes x ssim_fwd_tiles(Ho, Wo) sums of the SSIM map, accumulation type
// Returns the cudaError_t of the launch.
int ssim_fwd_launch(DType dt, const void* x, const void* y, int64_t planes, int64_t H, int64_t W, int k,
                    double sigma, double c1, double c2, void* map, bool loss_map, void* dmaps, bool gx, bool gy,
                    void* partial, cudaStream_t stream);

// Backward: dx / dy (dt, planes x H x W; nullptr when not wanted) from the saved derivative maps.
//   wmap:  per-pixel upstream gradient (accumulation type, planes x Ho x Wo, reduction "map") or nullptr
//   scale: per-plane factor (accumulation type, planes) or nullptr; wmul multiplies every weight (loss: -0.5)
int ssim_bwd_launch(DType dt, const void* x, const void* y, const void* dmaps, const void* wmap, double wmul,
                    const void* scale, int64_t planes, int64_t H, int64_t W, int k, double sigma, void* dx, void* dy,
                    cudaStream_t stream);

}  // namespace cuda
}  // namespace compgen
