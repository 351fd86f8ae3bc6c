# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# Build against the installed torch: no build isolation (an isolated build would download a CUDA torch).
PIP_INSTALL := $(PIP) install --disable-pip-version-check

.PHONY: install deps test demo bench check-cuda cmake-test clean

deps:
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -r requirements-test.txt

install: deps
	$(PIP_INSTALL) --no-build-isolation -e .

test: install
	$(PYTHON) -m pytest -q tests

demo: install
	$(PYTHON) tune/search.py
	$(PYTHON) tools/demo_pretrained.py

bench: install
	$(PYTHON) bench/ops.py

# Compile-check every CUDA kernel for sm_80 and sm_90 (needs nvcc, no GPU).
check-cuda:
	bash tools/check_cuda.sh

cmake-test: install
	bash tools/cmake_test.sh

clean:
	rm -rf build pycompgen/*.so *.egg-info
