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

/* The GPU a Hopper microbenchmark runs on (device 0): false, after a "SKIP
   program: ..." line, where there is none or it is older than compute
   capability 9.0 (needs: what it uses that sm_90 brings). */
struct gpu_hopper {
    cudaDeviceProp prop;
    int n_sm, clock_khz, l2_bytes;
};
static inline bool gpu_hopper_or_skip(const char *program, const char *needs, gpu_hopper *g) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP %s: no CUDA device\n", program);
        return false;
    }
    CK(cudaGetDeviceProperties(&g->prop, 0));
    CK(cudaDeviceGetAttribute(&g->n_sm, cudaDevAttrMultiProcessorCount, 0));
    CK(cudaDeviceGetAttribute(&g->clock_khz, cudaDevAttrClockRate, 0));
    CK(cudaDeviceGetAttribute(&g->l2_bytes, cudaDevAttrL2CacheSize, 0));
    if (g->prop.major < 9) {
        printf("SKIP %s: %s need compute capability 9.0 (%s has %d.%d)\n", program, needs, g->prop.name, g->prop.major, g->prop.minor);
        return false;
    }
    return true;
}

#endif
