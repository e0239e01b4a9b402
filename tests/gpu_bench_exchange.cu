/* One phase boundary of the fused step, two ways: what would self-validating
   data save against the grid barrier?

   In the fused step (bitnet_cuda.cu) every block writes its slice of a vector
   (its rows' outputs), all blocks meet at a grid barrier (thread 0: a release add
   that sm_90 compiles to MEMBAR.ALL.GPU + RED, polls, an acquire), then every
   block reads the whole vector from L2.  The alternative: each value travels with
   a tag (the round it belongs to) in one 8-byte word, stored and loaded as single
   64-bit accesses, so a reader that sees the right tag has the right value; no
   fence, no counter, no barrier: every thread polls its own words until their
   tags are current.  Double buffers by round parity keep a fast block from
   overwriting what a slow one still reads (to write round r + 2 a block must have
   read all of round r + 1, which every block writes only after reading round r).

   Grid: one block per SM, 256 threads, R rounds a launch.  A round: every block
   writes its share of n values (n / blocks each), the exchange, every thread loads
   the whole vector (as the fused step's normalization does) and checks it.
   Optionally warp 1 keeps a bulk copy of 64 KB in flight from memory each round,
   as the step's weight copies are.  Prints cycles per round (the slowest block,
   median of 11 launches) and stops on a wrong value.  (On an H200 the tagged
   way measured 3.6-6 times slower than the barrier: tests/PERF.md, fourteenth
   session.)
   usage: gpu_bench_exchange */
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gpu_check.h"

#define ROUNDS 64
#define MAX_N 6912
#define COPY_BYTES (64 * 1024)

enum { WAY_BARRIER = 0, WAY_TAGGED = 1 };

struct exchange_args {
    int n;                          /* values in the vector: a multiple of 4 */
    float *plain;                   /* [2][n]: the barrier way */
    unsigned long long *tagged;     /* [2][n]: the tagged way, (tag << 32) | float bits */
    unsigned *count;                /* the barrier's arrivals: zero before the launch */
    unsigned tag_base;              /* this launch's first tag (never 0) */
    int copies;                     /* a bulk copy in flight each round */
    const unsigned char *src;       /* the copies' source */
    size_t src_bytes;               /* a multiple of COPY_BYTES */
    long long *cycles;              /* per block */
    int *bad;                       /* per block: wrong values seen */
};

__device__ __forceinline__ float value_of(int round, int i) { return (float)(round * 7919 + i) * 0.5f; }

template <int WAY>
__global__ void __launch_bounds__(256, 1) exchange_kernel(const exchange_args a) {
    /* (Hopper's bulk copies: nothing below sm_90, which main skips) */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) unsigned char copy_buf[];
    __shared__ __align__(8) unsigned long long bar;
    const int tid = threadIdx.x, T = blockDim.x, n = a.n;
    const int i0 = (int)((long long)n * blockIdx.x / gridDim.x), i1 = (int)((long long)n * (blockIdx.x + 1) / gridDim.x);
    const unsigned b = (unsigned)__cvta_generic_to_shared(&bar);
    unsigned target = 0;
    int bad = 0;
    if (tid == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(b) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    const long long t0 = clock64();
    for (int r = 0; r < ROUNDS; r++) {
        const int par = r & 1;
        const unsigned tag = a.tag_base + (unsigned)r;
        if (a.copies && tid == 32) {
            const size_t off = ((size_t)r * gridDim.x + blockIdx.x) * COPY_BYTES % a.src_bytes;
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"((unsigned)COPY_BYTES) : "memory");
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                             (unsigned)__cvta_generic_to_shared(copy_buf)),
                         "l"(a.src + off), "r"((unsigned)COPY_BYTES), "r"(b)
                         : "memory");
        }
        /* this block's share */
        for (int i = i0 + tid; i < i1; i += T) {
            const float v = value_of(r, i);
            if (WAY == WAY_BARRIER) {
                __stcg(a.plain + (size_t)par * n + i, v);
            } else {
                const unsigned long long w = ((unsigned long long)tag << 32) | __float_as_uint(v);
                asm volatile("st.relaxed.gpu.global.b64 [%0], %1;" ::"l"(a.tagged + (size_t)par * n + i), "l"(w) : "memory");
            }
        }
        /* the exchange, and the whole vector loaded by every block (4 values a thread
           a round of loads, all loads of a thread out before the first use) */
        float sum = 0.0f;
        if (WAY == WAY_BARRIER) {
            target += gridDim.x;
            __syncthreads();
            if (tid == 0) {
                unsigned seen;
                asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(a.count) : "memory");
                do {
                    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(a.count) : "memory");
                } while ((int)(seen - target) < 0);
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(a.count) : "memory");
            }
            __syncthreads();
            float4 v[MAX_N / 4 / 256 + 1];
#pragma unroll
            for (int j = 0; j < MAX_N / 4 / 256 + 1; j++)
                if ((tid + j * T) * 4 < n) v[j] = __ldcg((const float4 *)(a.plain + (size_t)par * n) + tid + j * T);
#pragma unroll
            for (int j = 0; j < MAX_N / 4 / 256 + 1; j++) {
                const int i = (tid + j * T) * 4;
                if (i < n) {
                    bad += (v[j].x != value_of(r, i)) + (v[j].y != value_of(r, i + 1)) + (v[j].z != value_of(r, i + 2)) + (v[j].w != value_of(r, i + 3));
                    sum += v[j].x + v[j].y + v[j].z + v[j].w;
                }
            }
        } else {
            /* 2 words (16 bytes) a load, all loads out first, then each pair loaded
               again until both its tags are current (each word is valid by itself) */
            constexpr int NP = MAX_N / 2 / 256 + 1;
            const unsigned long long *src = a.tagged + (size_t)par * n;
            unsigned long long w0[NP], w1[NP];
#pragma unroll
            for (int j = 0; j < NP; j++) {
                const int i = (tid + j * T) * 2;
                if (i < n) asm volatile("ld.relaxed.gpu.global.v2.b64 {%0, %1}, [%2];" : "=l"(w0[j]), "=l"(w1[j]) : "l"(src + i) : "memory");
            }
#pragma unroll
            for (int j = 0; j < NP; j++) {
                const int i = (tid + j * T) * 2;
                if (i < n) {
                    while ((unsigned)(w0[j] >> 32) != tag || (unsigned)(w1[j] >> 32) != tag)
                        asm volatile("ld.relaxed.gpu.global.v2.b64 {%0, %1}, [%2];" : "=l"(w0[j]), "=l"(w1[j]) : "l"(src + i) : "memory");
                    const float x0 = __uint_as_float((unsigned)w0[j]), x1 = __uint_as_float((unsigned)w1[j]);
                    bad += (x0 != value_of(r, i)) + (x1 != value_of(r, i + 1));
                    sum += x0 + x1;
                }
            }
        }
        if (sum == -1.0f) bad += 1000000;   /* (keeps the loads: never true for these values) */
        if (a.copies) {
            unsigned done = 0;
            while (!done)
                asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                             : "=r"(done)
                             : "r"(b), "r"((unsigned)par)
                             : "memory");
        }
        __syncthreads();   /* (the fused step's normalization ends with one too) */
    }
    const long long t1 = clock64();
    bad = __syncthreads_count(bad != 0);
    if (tid == 0) {
        a.cycles[blockIdx.x] = t1 - t0;
        a.bad[blockIdx.x] = bad;
    }
#else
    (void)a;
#endif
}

int main(void) {
    gpu_hopper g;
    if (!gpu_hopper_or_skip("gpu_bench_exchange", "bulk copies", &g)) return 0;
    const int n_sm = g.n_sm, l2 = g.l2_bytes;
    printf("# a phase boundary of the fused step, barrier or tagged values: %s, %d SMs, SM clock up to %.0f MHz, %d rounds a launch\n\n",
           g.prop.name, n_sm, g.clock_khz / 1000.0, ROUNDS);
    const int blocks = n_sm;
    const size_t src_bytes = ((size_t)4 * l2 / COPY_BYTES + 1) * COPY_BYTES;
    float *plain;
    unsigned long long *tagged;
    unsigned *count;
    unsigned char *src;
    long long *cycles;
    int *bad;
    CK(cudaMalloc(&plain, 2 * MAX_N * sizeof(float)));
    CK(cudaMalloc(&tagged, 2 * MAX_N * sizeof(unsigned long long)));
    CK(cudaMemset(tagged, 0, 2 * MAX_N * sizeof(unsigned long long)));
    CK(cudaMalloc(&count, sizeof(unsigned)));
    CK(cudaMalloc(&src, src_bytes));
    CK(cudaMemset(src, 1, src_bytes));
    CK(cudaMalloc(&cycles, blocks * sizeof(long long)));
    CK(cudaMalloc(&bad, blocks * sizeof(int)));
    const size_t smem = COPY_BYTES;
    CK(cudaFuncSetAttribute(exchange_kernel<WAY_BARRIER>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    CK(cudaFuncSetAttribute(exchange_kernel<WAY_TAGGED>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    unsigned tag_base = 1;
    printf("| way | n | 64 KB copy in flight | cycles a round (slowest block, median of 11) |\n|---|---:|---|---:|\n");
    for (int n : {2560, 6912})
        for (int copies = 0; copies < 2; copies++)
            for (int way = 0; way < 2; way++) {
                std::vector<long long> worst;
                for (int run = 0; run < 11; run++) {
                    exchange_args a;
                    memset(&a, 0, sizeof a);
                    a.n = n;
                    a.plain = plain;
                    a.tagged = tagged;
                    a.count = count;
                    a.tag_base = tag_base;
                    a.copies = copies;
                    a.src = src;
                    a.src_bytes = src_bytes;
                    a.cycles = cycles;
                    a.bad = bad;
                    tag_base += ROUNDS;
                    CK(cudaMemset(count, 0, sizeof(unsigned)));
                    CK(cudaMemset(bad, 0xff, blocks * sizeof(int)));
                    /* (one block per SM, all resident: a cooperative launch guarantees it) */
                    void *params[1] = {&a};
                    CK(cudaLaunchCooperativeKernel(way == WAY_BARRIER ? (const void *)exchange_kernel<WAY_BARRIER> : (const void *)exchange_kernel<WAY_TAGGED>,
                                                   dim3((unsigned)blocks), dim3(256), params, smem, 0));
                    CK(cudaDeviceSynchronize());
                    std::vector<long long> c(blocks);
                    std::vector<int> w(blocks);
                    CK(cudaMemcpy(c.data(), cycles, blocks * sizeof(long long), cudaMemcpyDeviceToHost));
                    CK(cudaMemcpy(w.data(), bad, blocks * sizeof(int), cudaMemcpyDeviceToHost));
                    for (int i = 0; i < blocks; i++)
                        if (w[i] != 0) {
                            printf("WRONG: block %d saw %d wrong values (%s, n = %d)\n", i, w[i], way ? "tagged" : "barrier", n);
                            return 1;
                        }
                    worst.push_back(*std::max_element(c.begin(), c.end()));
                }
                std::sort(worst.begin(), worst.end());
                printf("| %s | %d | %s | %lld |\n", way ? "tagged values" : "grid barrier", n, copies ? "yes" : "no", worst[5] / ROUNDS);
            }
    CK(cudaFree(plain));
    CK(cudaFree(tagged));
    CK(cudaFree(count));
    CK(cudaFree(src));
    CK(cudaFree(cycles));
    CK(cudaFree(bad));
    return 0;
}
