#!/usr/bin/env bash
# CMake build of csrc/ (same csrc/SOURCES as setup.py) against the Python env's libtorch, then ctest
# (the C++ dispatcher test csrc/test/test_ops.cpp and a Python load of the built library). `make cmake-test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BUILD=${BUILD_DIR:-build/cmake}
JOBS=${JOBS:-2}
command -v cmake >/dev/null || { echo "cmake-test: cmake not found"; exit 1; }
mkdir -p "$BUILD"
gen=()
command -v ninja >/dev/null && [ ! -f "$BUILD/CMakeCache.txt" ] && gen=(-G Ninja)
cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$(command -v "$PYTHON")" >"$BUILD/configure.log" 2>&1 \
  || { cat "$BUILD/configure.log"; echo "cmake-test: configure failed"; exit 1; }
cmake --build "$BUILD" -j "$JOBS"
ctest --test-dir "$BUILD" --output-on-failure
