"""Builds pycompgen._C: C++ CPU kernels always, CUDA kernels when torch has CUDA (or FORCE_CUDA=1).

Install against the already-installed torch, without build isolation:
    python -m pip install --no-build-isolation -e .
"""
import os
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def read_sources():
    """Parse csrc/SOURCES, the source list shared with CMakeLists.txt."""
    kinds = {"cpp": [], "cuda_cpp": [], "cu": []}
    for line in (ROOT / "csrc" / "SOURCES").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, path = line.split()
        if kind not in kinds:
            raise ValueError(f"csrc/SOURCES: unknown source kind {kind!r} for {path}")
        kinds[kind].append(path)
    return kinds


def read_nvcc_flags():
    """Parse csrc/NVCC_FLAGS, the nvcc flags shared with CMakeLists.txt and tools/check_cuda.sh."""
    flags = []
    for line in (ROOT / "csrc" / "NVCC_FLAGS").read_text().splitlines():
        flags += line.split("#", 1)[0].split()
    return flags


def extensions():
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension, CUDA_HOME

    src = read_sources()
    force = os.environ.get("FORCE_CUDA", "0") == "1"
    with_cuda = (torch.cuda.is_available() or force) and CUDA_HOME is not None and torch.version.cuda is not None
    if force and not with_cuda:
        raise RuntimeError(
            "FORCE_CUDA=1 but the installed torch has no CUDA build (torch.version.cuda is None) or CUDA_HOME "
            "is unset; install a CUDA build of torch to build the CUDA kernels")
    cxx = ["-O3", "-std=c++17", "-fopenmp", "-DPy_LIMITED_API=0x03090000"]
    if with_cuda:
        print("pycompgen: building _C with CPU and CUDA kernels")
        return [CUDAExtension(
            "pycompgen._C",
            src["cpp"] + src["cuda_cpp"] + src["cu"],
            extra_compile_args={"cxx": cxx + ["-DWITH_CUDA"],
                                "nvcc": read_nvcc_flags()},  # CUDAExtension prepends torch's COMMON_NVCC_FLAGS
            extra_link_args=["-fopenmp"],
            py_limited_api=True,
        )]
    print("pycompgen: building _C with CPU kernels only (torch has no CUDA; set FORCE_CUDA=1 with a CUDA torch)")
    return [CppExtension("pycompgen._C", src["cpp"], extra_compile_args={"cxx": cxx},
                         extra_link_args=["-fopenmp"], py_limited_api=True)]


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension
    return BuildExtension.with_options(use_ninja=True)


setup(
    name="pycompgen",
    version="0.1.0",
    description="Compression and generation of faces from edge maps (Compgen), with Ray training and MLflow tracking",
    packages=find_packages(include=["pycompgen", "pycompgen.*"]),
    package_data={"pycompgen.zoo": ["manifest.json", "cards/*.md", "weights/*/*.pt"]},  # the pretrained model zoo
    python_requires=">=3.10",
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext_class()},
    entry_points={"console_scripts": ["pycompgen=pycompgen.cli:main", "compgen=pycompgen.cli:main"]},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
