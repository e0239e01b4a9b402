/* What does the grid barrier's release wait for?

   The fused step's barrier arrival (bitnet__grid_arrive) is thread 0's
   red.release.gpu, which sm_90 compiles to MEMBAR.ALL.GPU + RED.  Timestamps in
   the step (tests/PERF.md, thirteenth session) show that fence taking up to 1.4 us
   while the block's weight copies for the next layer are in flight.  This
   benchmark times the release alone, in every block of a grid of one block per SM
   (all at once, as in the step), R rounds each:
     1. a copy of `bytes` is requested from a source that rotates over a buffer
        four times the L2, so that it comes from memory:
          none       no copy;
          bulk       one cp.async.bulk into shared memory (TMA) by warp 1's lane 0,
                     completing on an mbarrier (what the fused step does);
          l2         cp.async.bulk.prefetch.L2 (no shared-memory destination);
          per-thread cp.async of 16 bytes by every thread of warps 1-7;
     2. every thread stores one float (the block's outputs);
     3. thread 0 waits `delay` cycles;
     4. __syncthreads, then thread 0 times its release:
          red.release    red.release.gpu (the fused step's arrival);
          fence + red    fence.acq_rel.gpu, then a relaxed red;
          st.release     st.release.gpu of a flag;
          membar.cta     fence.acq_rel.cta (a CTA-scope fence: not enough for
                         the barrier, for comparison);
          relaxed red    red.relaxed.gpu alone (no ordering: the floor);
     5. every thread waits for its copy, __syncthreads.
   Prints the release's cycles (median and 90th percentile over blocks and rounds,
   the first two rounds left out) and, for bulk copies, the cycles from the
   request to the copy's completion seen after the release.  A second table has
   bulk copies in the odd blocks only: do the even blocks' releases wait for the
   copies of other SMs, or only for their own?
   usage: gpu_bench_fence */
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gpu_check.h"

enum { COPY_NONE = 0, COPY_BULK = 1, COPY_L2 = 2, COPY_PER_THREAD = 3 };
enum { REL_RED_RELEASE = 0, REL_FENCE_RED = 1, REL_ST_RELEASE = 2, REL_MEMBAR_CTA = 3, REL_RELAXED = 4, N_REL = 5 };
#define ROUNDS 34
#define SKIP 2

struct fence_args {
    const unsigned char *src;   /* the copies' source */
    size_t src_bytes;           /* its size: a multiple of bytes */
    unsigned bytes;             /* per copy: a multiple of 16 * 224 for per-thread copies */
    int copy, release;
    int odd_only;               /* copies in odd blocks only (the even ones time their release beside them) */
    long long delay;
    unsigned *counters;         /* 32 words per block: the release's target */
    float *out;                 /* 256 floats per block */
    long long *release_cycles;  /* [blocks][ROUNDS] */
    long long *copy_cycles;     /* [blocks][ROUNDS]: request to completion (bulk) */
};

__device__ __forceinline__ void release_op(int mode, unsigned *counter) {
    switch (mode) {
    case REL_RED_RELEASE: asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory"); break;
    case REL_FENCE_RED: asm volatile("fence.acq_rel.gpu;\n\tred.relaxed.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory"); break;
    case REL_ST_RELEASE: asm volatile("st.release.gpu.global.u32 [%0], 1;" ::"l"(counter + 1) : "memory"); break;
    case REL_MEMBAR_CTA: asm volatile("fence.acq_rel.cta;\n\tred.relaxed.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory"); break;
    default: asm volatile("red.relaxed.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory"); break;
    }
}

__global__ void __launch_bounds__(256, 1) fence_kernel(const fence_args a) {
    /* (Hopper's bulk copies and mbarriers: nothing below sm_90, which main skips) */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) unsigned char buf[];
    __shared__ __align__(8) unsigned long long bar;
    __shared__ long long t_request;
    const int tid = threadIdx.x;
    const unsigned b = (unsigned)__cvta_generic_to_shared(&bar);
    if (tid == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(b) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    const int copy = a.odd_only && !(blockIdx.x & 1) ? COPY_NONE : a.copy;
    for (int r = 0; r < ROUNDS; r++) {
        const size_t off = ((size_t)r * gridDim.x + blockIdx.x) * a.bytes % a.src_bytes;
        const unsigned char *src = a.src + off;
        /* 1. the copy */
        if (copy == COPY_BULK && tid == 32) {
            t_request = clock64();
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(a.bytes) : "memory");
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                             (unsigned)__cvta_generic_to_shared(buf)),
                         "l"(src), "r"(a.bytes), "r"(b)
                         : "memory");
        }
        if (copy == COPY_L2 && tid == 32) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(a.bytes) : "memory");
        if (copy == COPY_PER_THREAD && tid >= 32) {
            for (unsigned i = (unsigned)(tid - 32) * 16; i < a.bytes; i += (blockDim.x - 32) * 16)
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((unsigned)__cvta_generic_to_shared(buf + i)), "l"(src + i) : "memory");
            asm volatile("cp.async.commit_group;" ::: "memory");
        }
        /* 2. the block's outputs */
        a.out[(size_t)blockIdx.x * blockDim.x + tid] = (float)(r + tid);
        /* 3, 4. the release */
        if (tid == 0) {
            const long long start = clock64();
            while (clock64() - start < a.delay) {
            }
        }
        __syncthreads();
        if (tid == 0) {
            const long long t0 = clock64();
            release_op(a.release, a.counters + 32 * blockIdx.x);
            const long long t1 = clock64();
            a.release_cycles[(size_t)blockIdx.x * ROUNDS + r] = t1 - t0;
        }
        /* 5. the copy lands */
        if (copy == COPY_BULK) {
            unsigned done = 0;
            while (!done)
                asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                             : "=r"(done)
                             : "r"(b), "r"((unsigned)(r & 1))
                             : "memory");
            if (tid == 0) a.copy_cycles[(size_t)blockIdx.x * ROUNDS + r] = clock64() - t_request;
        }
        if (copy == COPY_PER_THREAD) asm volatile("cp.async.wait_group 0;" ::: "memory");
        __syncthreads();
    }
#else
    (void)a;
#endif
}

static long long percentile(std::vector<long long> v, double q) {
    std::sort(v.begin(), v.end());
    return v[(size_t)(q * (double)(v.size() - 1))];
}

/* One launch of a (all blocks, ROUNDS rounds): the release's and the copy's
   cycles, [blocks][ROUNDS] each. */
static void run_fence(const fence_args &a, int blocks, size_t smem, std::vector<long long> *rel, std::vector<long long> *cop) {
    rel->assign((size_t)blocks * ROUNDS, 0);
    cop->assign((size_t)blocks * ROUNDS, 0);
    CK(cudaMemset(a.copy_cycles, 0, cop->size() * sizeof(long long)));
    fence_kernel<<<blocks, 256, smem>>>(a);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(rel->data(), a.release_cycles, rel->size() * sizeof(long long), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(cop->data(), a.copy_cycles, cop->size() * sizeof(long long), cudaMemcpyDeviceToHost));
}

int main(void) {
    gpu_hopper g;
    if (!gpu_hopper_or_skip("gpu_bench_fence", "bulk copies", &g)) return 0;
    const int n_sm = g.n_sm, l2 = g.l2_bytes;
    printf("# the barrier's release against weight copies in flight: %s, %d SMs, SM clock up to %.0f MHz\n\n", g.prop.name, n_sm, g.clock_khz / 1000.0);
    const int blocks = n_sm;
    const unsigned max_bytes = 64 * 224 * 16;   /* 229,376: above the largest copy below */
    const size_t src_bytes = (size_t)4 * l2 / max_bytes * max_bytes + max_bytes;
    unsigned char *src;
    unsigned *counters;
    float *out;
    long long *rel, *cop;
    CK(cudaMalloc(&src, src_bytes));
    CK(cudaMemset(src, 1, src_bytes));
    CK(cudaMalloc(&counters, (size_t)blocks * 32 * sizeof(unsigned)));
    CK(cudaMemset(counters, 0, (size_t)blocks * 32 * sizeof(unsigned)));
    CK(cudaMalloc(&out, (size_t)blocks * 256 * sizeof(float)));
    CK(cudaMalloc(&rel, (size_t)blocks * ROUNDS * sizeof(long long)));
    CK(cudaMalloc(&cop, (size_t)blocks * ROUNDS * sizeof(long long)));
    const size_t smem = 140 * 1024;   /* (the largest copy: 143,360 bytes) */
    CK(cudaFuncSetAttribute(fence_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    fence_args base;   /* what every launch shares */
    memset(&base, 0, sizeof base);
    base.src = src;
    base.src_bytes = src_bytes - max_bytes;
    base.counters = counters;
    base.out = out;
    base.release_cycles = rel;
    base.copy_cycles = cop;
    static const char *copies[4] = {"none", "bulk", "l2", "per-thread"};
    static const char *releases[N_REL] = {"red.release", "fence + red", "st.release", "membar.cta", "relaxed red"};
    printf("| copy in flight | bytes a block | delay (cycles) | release | cycles: median | 90th pct | copy landed after: median |\n"
           "|---|---:|---:|---|---:|---:|---:|\n");
    for (int copy = 0; copy < 4; copy++) {
        const std::vector<unsigned> sizes = copy == COPY_NONE ? std::vector<unsigned>{0} : std::vector<unsigned>{14336, 71680};
        for (unsigned bytes : sizes) {
            const std::vector<long long> delays = copy == COPY_BULK && bytes == 71680 ? std::vector<long long>{0, 1000, 4000, 16000}
                                                                                      : std::vector<long long>{0};
            for (long long delay : delays)
                for (int release = 0; release < N_REL; release++) {
                    fence_args a = base;
                    a.bytes = bytes ? bytes : 16;
                    a.copy = copy;
                    a.release = release;
                    a.delay = delay;
                    std::vector<long long> r, c, rk, ck;
                    run_fence(a, blocks, smem, &r, &c);
                    for (int bl = 0; bl < blocks; bl++)
                        for (int k = SKIP; k < ROUNDS; k++) {
                            rk.push_back(r[(size_t)bl * ROUNDS + k]);
                            ck.push_back(c[(size_t)bl * ROUNDS + k]);
                        }
                    printf("| %s | %u | %lld | %s | %lld | %lld |", copies[copy], bytes, delay, releases[release], percentile(rk, 0.5),
                           percentile(rk, 0.9));
                    if (copy == COPY_BULK) printf(" %lld |\n", percentile(ck, 0.5));
                    else printf(" |\n");
                }
        }
    }
    /* Does the release wait for the block's own copies or for the traffic of all? */
    printf("\n| bulk copies in odd blocks only | bytes | release | even blocks (no copy): median | 90th pct | odd blocks (copy): median | 90th pct |\n"
           "|---|---:|---|---:|---:|---:|---:|\n");
    for (unsigned bytes : {14336u, 71680u, 143360u})
        for (int release = 0; release < 2; release++) {
            fence_args a = base;
            a.bytes = bytes;
            a.copy = COPY_BULK;
            a.odd_only = 1;
            a.release = release;
            std::vector<long long> r, c, even, odd;
            run_fence(a, blocks, smem, &r, &c);
            for (int bl = 0; bl < blocks; bl++)
                for (int k = SKIP; k < ROUNDS; k++) (bl & 1 ? odd : even).push_back(r[(size_t)bl * ROUNDS + k]);
            printf("| bulk | %u | %s | %lld | %lld | %lld | %lld |\n", bytes, releases[release], percentile(even, 0.5), percentile(even, 0.9),
                   percentile(odd, 0.5), percentile(odd, 0.9));
        }
    CK(cudaFree(src));
    CK(cudaFree(counters));
    CK(cudaFree(out));
    CK(cudaFree(rel));
    CK(cudaFree(cop));
    return 0;
}
