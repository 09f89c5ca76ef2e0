// Syntax-check shim (make cuda-check): torch's CUDA headers name this library's types, but
// the CI toolkit ships no cuBLAS / cuSPARSE / cuSOLVER headers. Searched after the real
// include directories (-idirafter), so a full toolkit's headers win; never used to build.
#pragma once
typedef struct cusparseContext* cusparseHandle_t;
typedef int cusparseStatus_t;
