// Syntax-check shim (make cuda-check): see cusparse.h.
#pragma once
typedef int cusolverStatus_t;
