// The op inventory: every sparse3d native op is declared here, once. Per-family files
// only add implementations (TORCH_LIBRARY_IMPL). Fake kernels and autograd formulas are
// registered from Python (sparse3d/core/), next to each op's torch reference.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(sparse3d, m) {
  // segment reductions (sparse3d/core/segment.py)
  m.def("segment_reduce(Tensor values, Tensor offsets, str reduce) -> (Tensor, Tensor)");
  m.def(
      "segment_reduce_bwd(Tensor v_out, Tensor offsets, Tensor arg, str reduce, int n) "
      "-> Tensor");
}

// `import sparse3d._C` runs the static registrations above; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
