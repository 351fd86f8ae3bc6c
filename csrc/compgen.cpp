// Op schemas of the compgen library; CPU and CUDA implementations register under them
// (csrc/cpu/*.cpp, csrc/cuda/*_cuda.cpp). Autograd and fake kernels are registered from Python (pycompgen/ops.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Empty module: importing pycompgen._C loads this library, whose static initialisers register the ops.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(compgen, m) {
  // Schemas are added per op below.
  // Fused SSIM: valid windows; reduction 0 mean, 1 none (per image), 2 map; loss -> 0.5*(1-SSIM).
  // Second output: derivative maps [alpha_x?, alpha_y?, beta_xx, beta_xy] for ssim_bwd (empty without grad).
  m.def("ssim_fwd(Tensor x, Tensor y, int window_size, float sigma, float c1, float c2, int reduction, bool loss, "
        "bool grad_x, bool grad_y) -> (Tensor, Tensor)");
  m.def("ssim_bwd(Tensor grad, Tensor x, Tensor y, Tensor dmaps, int window_size, float sigma, int reduction, "
        "bool loss, bool grad_x, bool grad_y) -> (Tensor, Tensor)");
  // Canny edge maps: img N x {1,3} x H x W in [0,1]; thresholds in OpenCV units / 255; blur_sigma 0 = no blur.
  m.def("canny(Tensor img, float low, float high, float blur_sigma, bool l2_gradient) -> Tensor");
  // AWGN channel: z + sigma_i * noise (sigma (N,) float64 per image, seed (2,) int64 Philox key), divided by
  // max(1, sigma_i) when normalize.
  m.def("awgn(Tensor z, Tensor sigma, Tensor seed, bool normalize) -> Tensor");
}
