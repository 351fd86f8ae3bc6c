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
}
