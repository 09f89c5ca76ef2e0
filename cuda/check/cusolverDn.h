// Syntax-check shim (make cuda-check): see cusparse.h.
#pragma once
#include <cusolver_common.h>
typedef struct cusolverDnContext* cusolverDnHandle_t;
