// Syntax-check shim (make cuda-check): see cusparse.h.
#pragma once
typedef struct cublasLtContext* cublasLtHandle_t;
