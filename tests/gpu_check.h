/* CK(call): a CUDA runtime call that must succeed, else the program stops with
   where and why (the GPU benchmarks; the tests report failures through test.h). */
#ifndef GPU_CHECK_H
#define GPU_CHECK_H
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CK(...)                                                                                                 \
    do {                                                                                                        \
        cudaError_t e_ = (__VA_ARGS__);                                                                         \
        if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(e_)); exit(1); } \
    } while (0)

#endif
