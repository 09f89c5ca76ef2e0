# The two commands of the README:
#   make demo   set everything up, make the synthetic default data, reconstruct one object from 4 views
#   make test   set everything up and run the test suite
# `make build` recompiles sparse3d._C incrementally after editing cuda/.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup build test test-cuda demo screenshots cuda-check clean

setup: $(STAMP)

# torch comes first, from the machine's CPU wheel; every later install is held to it by
# constraints.txt, and the package builds against it (--no-build-isolation).
$(STAMP): pyproject.toml setup.py constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0 "setuptools>=77" wheel ninja
	$(PIP) install -q -c constraints.txt --no-build-isolation -e '.[test]'
	# Only the example meshes inside the pyvista wheel are used (read with plyfile), so
	# its VTK dependency is not installed.
	$(PIP) install -q --no-deps pyvista==0.49.1
	# open3d's Linux wheel (the mesh extra, in the test extra) links the system library
	# libusb-1.0, which a bare Debian lacks; without it `import open3d` fails.
	@ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so\.0' || \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null; }; } || \
	  echo "warning: libusb-1.0 is missing and could not be installed (apt-get install libusb-1.0-0); open3d will not import"
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	mkdir -p build && touch $(NATIVE_STAMP)  # the editable install has just built sparse3d._C
	touch $(STAMP)

# Rebuilds sparse3d._C (incrementally, with ninja) when a native source changed; the lock
# serialises concurrent builds that share build/.
NATIVE_SOURCES := $(wildcard cuda/include/sparse3d/* cuda/glue/* cuda/cpu/* cuda/gpu/*)
NATIVE_STAMP := build/.native-built

build: setup $(NATIVE_STAMP)

$(NATIVE_STAMP): $(NATIVE_SOURCES) setup.py
	flock /tmp/sparse3d-build.lock $(PY) setup.py -q build_ext --inplace
	touch $(NATIVE_STAMP)

# The viewer's browser tests drive Debian's chromium through Playwright for Python (which
# cannot download its own browsers here); without it they fail, they do not skip.
BROWSER_STAMP := $(VENV)/.browser

$(BROWSER_STAMP): $(STAMP)
	@command -v chromium >/dev/null || \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } || \
	  echo "warning: chromium is missing and could not be installed (apt-get install chromium); the browser tests will fail"
	@command -v chromium >/dev/null && touch $@ || true

test: build $(BROWSER_STAMP)
	$(PY) -m pytest -q

# The CUDA half of the suite on a GPU machine: every test marked `cuda` (each op's CUDA
# kernel against its CPU kernel and torch reference, the gsplat and spconv GPU backends
# against ours). SPARSE3D_REQUIRE_CUDA=1 makes it fail, not skip: without a CUDA device, a
# CUDA build of torch, or the extension's CUDA kernels the run refuses to start, and a cuda
# test that skips (no gsplat, spconv's CPU-only build) counts as failed (tests/conftest.py).
test-cuda: build
	SPARSE3D_REQUIRE_CUDA=1 $(PY) -m pytest -q -m cuda

# The README's pictures of the viewer, taken by its browser tests.
screenshots: build $(BROWSER_STAMP)
	SPARSE3D_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/viewer/test_browser.py

# The main job on the embedded default data: the synthetic objects, `gaussianobject` on
# one of them from 4 views.
DEMO_DATA := data/objects
DEMO_RUN := outputs/torus/gaussianobject

demo: build
	@test -f $(DEMO_DATA)/torus/transforms.json || $(VENV)/bin/sparse3d-data objects $(DEMO_DATA)
	$(VENV)/bin/sparse3d-train method=gaussianobject data=$(DEMO_DATA)/torus output=$(DEMO_RUN)
	$(VENV)/bin/sparse3d-eval run=$(DEMO_RUN)
	@echo "results: $(DEMO_RUN)  (eval.json, point_cloud.ply, renders/, orbit.png; stages: hull.ply coarse/ loo/ repair_model/)"
	@echo "mesh:    $(VENV)/bin/sparse3d-export mesh run=$(DEMO_RUN)"
	@echo "figure:  the PSNR above is the GaussianObject protocol (render over white, unmasked, against the"
	@echo "         masked ground truth) over 16 held-out ring views of a torus reconstructed from 4 views at"
	@echo "         128 px; the README's table gives the expected value and the 4-view splat baseline."
	@echo "viewer:  $(VENV)/bin/sparse3d-view run=$(DEMO_RUN)   then open http://127.0.0.1:8080"

# Compiles every .cu file on its own, as CI does, so CUDA sources cannot rot unseen on a
# machine without a GPU (no CUDA build of torch is needed: .cu files include only cuda/).
# Then syntax-checks each file of the CUDA glue (cuda/gpu/*_glue.cpp) against the CUDA
# headers that the CPU torch wheel ships; cuda/check/ declares the cuBLAS / cuSPARSE /
# cuSOLVER handle types those headers name, which this machine's toolkit lacks.
CUDA_HOME ?= /usr/local/cuda

cuda-check: $(STAMP)
	@set -e; mkdir -p build/cuda-check; for f in cuda/gpu/*.cu; do \
	  echo "nvcc -c $$f"; \
	  nvcc -c -std=c++17 -O3 --expt-relaxed-constexpr -Icuda/include $$f -o build/cuda-check/$$(basename $$f).o; \
	done
	@set -e; torch_includes=$$($(PY) -c "import sysconfig, torch.utils.cpp_extension as e; \
	  print(' '.join('-I' + p for p in e.include_paths() + [sysconfig.get_paths()['include']]))"); \
	for f in cuda/gpu/*.cpp; do \
	  echo "g++ -fsyntax-only $$f"; \
	  g++ -std=c++17 -fsyntax-only -w -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE -Icuda/include -Icuda/gpu -I$(CUDA_HOME)/include -idirafter cuda/check \
	    $$torch_includes $$f; \
	done

clean:
	rm -rf build $(VENV) sparse3d/_C*.so
