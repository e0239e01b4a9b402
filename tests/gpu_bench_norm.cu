/* Where the time of one block's RMSNorm + quantization goes (bitnet_cuda.cu,
   bitnet__norm_quantize_block): one block runs it on a vector already in L2, with
   clock64() between the phases.  Prints cycles per phase (median of 21 runs) and
   the SM clock, for n = 2560 and 6912 with 128 and 256 threads.  Then the
   library function's own steps (BITNET__NORM_MARK), in its register and its
   shared-memory ways, run by one block and by one block on every SM at once (as
   the fused step runs it: every block normalizes the same vector).
   usage: gpu_bench_norm */
/* the library's own marks inside bitnet__norm_quantize_block: block 0, thread 0 */
__device__ long long bench_marks[8];
static void *bench_marks_addr(void) {
    void *p = NULL;
    cudaGetSymbolAddress(&p, bench_marks);
    return p;
}
#define BITNET__NORM_MARK(i)                                                      \
    do {                                                                          \
        if (blockIdx.x == 0 && threadIdx.x == 0) bench_marks[i] = clock64();      \
    } while (0)
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "../bitnet_cuda.cu"

#include <algorithm>
#include <vector>

#include "gpu_check.h"

/* The library function's input: the float vector x with its norm weight. */
__device__ bitnet__quant_in bench_input(const float *x, const float *norm) {
    bitnet__quant_in in;
    memset(&in, 0, sizeof in);
    in.x = x;
    in.norm = norm;
    in.eps = 1e-5f;
    return in;
}

/* phases: 0 load x, 1 sum of squares + reduce, 2 inv_rms, 3 norm weights + max + reduce, 4 quantize + sum reduce,
   and the whole function */
__global__ void norm_phases(const float *x, const float *norm, int n, int8_t *q, long long *cycles) {
    __shared__ double red_d[32];
    __shared__ float red_f[32];
    __shared__ int red_i[32];
    const int T = blockDim.x;
    float4 v[BITNET__NQ_REGS];
    long long t[7];
    double ss = 0.0;
    float amax = 0.0f;
    int sum = 0;
    __syncthreads();
    t[0] = clock64();
#pragma unroll
    for (int j = 0; j < BITNET__NQ_REGS; j++) {
        const int i = (threadIdx.x + j * T) * 4;
        if (i < n) v[j] = __ldcg((const float4 *)(x + i));
    }
#pragma unroll
    for (int j = 0; j < BITNET__NQ_REGS; j++)
        if ((threadIdx.x + j * T) * 4 < n) ss += (double)v[j].x;   /* force the loads to land */
    t[1] = clock64();
    ss = 0.0;
#pragma unroll
    for (int j = 0; j < BITNET__NQ_REGS; j++)
        if ((threadIdx.x + j * T) * 4 < n) {
            ss += (double)v[j].x * v[j].x;
            ss += (double)v[j].y * v[j].y;
            ss += (double)v[j].z * v[j].z;
            ss += (double)v[j].w * v[j].w;
        }
    ss = bitnet__block_reduce(ss, bitnet__op_add(), red_d);
    t[2] = clock64();
    const float inv_rms = 1.0f / sqrtf((float)(ss / n) + 1e-5f);
    t[3] = clock64();
#pragma unroll
    for (int j = 0; j < BITNET__NQ_REGS; j++) {
        const int i = (threadIdx.x + j * T) * 4;
        if (i < n) {
            const float4 w = *(const float4 *)(norm + i);
            v[j].x = w.x * (v[j].x * inv_rms);
            v[j].y = w.y * (v[j].y * inv_rms);
            v[j].z = w.z * (v[j].z * inv_rms);
            v[j].w = w.w * (v[j].w * inv_rms);
            amax = fmaxf(fmaxf(amax, fabsf(v[j].x)), fmaxf(fabsf(v[j].y), fmaxf(fabsf(v[j].z), fabsf(v[j].w))));
        }
    }
    amax = bitnet__block_reduce(amax, bitnet__op_max(), red_f);
    t[4] = clock64();
    const float s = 127.0f / fmaxf(amax, 1e-5f);
#pragma unroll
    for (int j = 0; j < BITNET__NQ_REGS; j++) {
        const int i = (threadIdx.x + j * T) * 4;
        if (i < n) {
            int q0 = bitnet__quant1(v[j].x, s), q1 = bitnet__quant1(v[j].y, s), q2 = bitnet__quant1(v[j].z, s), q3 = bitnet__quant1(v[j].w, s);
            *(char4 *)(q + i) = make_char4((signed char)q0, (signed char)q1, (signed char)q2, (signed char)q3);
            sum += q0 + q1 + q2 + q3;
        }
    }
    sum = bitnet__block_reduce(sum, bitnet__op_add(), red_i);
    t[5] = clock64();
    /* the library function as a whole */
    float sc;
    bitnet__norm_quantize_block(bench_input(x, norm), n, q, &sc);
    t[6] = clock64();
    if (threadIdx.x == 0) {
        for (int i = 0; i < 6; i++) cycles[i] = t[i + 1] - t[i];
        cycles[6] = sum + (int)sc;
    }
}

/* The library function as the fused step instantiates it (256 threads), its marks
   in bench_marks; STAGED: the input is staged in shared memory (the norm weight in
   shared memory too here).  PARTS: the fused step's quantization from w x and its
   producers' statistics (bitnet__quantize_parts_block, one per block of the grid),
   staged past 3072 values as the fused step's down phase does it. */
template <bool STAGED, bool PARTS>
__global__ void norm_marked(const float *x, const float *norm, int n, const bitnet__norm_part *parts, const unsigned *max_bits, float *scale) {
    extern __shared__ __align__(16) float st[];   /* n: the stage, n: the weight, n / 4: q */
    int8_t *q = (int8_t *)(st + 2 * n);
    bitnet__quant_in in = bench_input(x, norm);
    float sc;
    if (PARTS) {
        bitnet__quantize_parts_block<BITNET__NQ_REGS, 256>(x, n, parts, gridDim.x, max_bits, 1e-5f, q, &sc, STAGED ? st : NULL);
    } else if (STAGED) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) st[n + i] = norm[i];
        __syncthreads();
        in.norm = st + n;
        bitnet__norm_quantize_block<1, BITNET__NQ_REGS, 256>(in, n, q, &sc, st);
    } else {
        bitnet__norm_quantize_block<1, BITNET__NQ_REGS, 256>(in, n, q, &sc);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) *scale = sc + q[0];
}

static void library_steps(void) {
    int n_sm = 0;
    CK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    printf("\n# bitnet__norm_quantize_block step by step (BITNET__NORM_MARK), cycles of block 0, median of 21\n\n");
    printf("| way | n | blocks | input loaded + first pass | warp reduction | block reduction | multiplier and scale | quantize | total |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int way = 0; way < 3; way++)   /* registers, staged, from producers' statistics */
        for (int n : {2560, 6912}) {
            const bool staged = way == 1 || (way == 2 && n > BITNET__NQ_REGS * 4 * 256);
            if (way == 0 && n > BITNET__NQ_REGS * 4 * 256) continue;
            for (int blocks : {1, n_sm}) {
                std::vector<float> h(n), hw(n);
                for (int i = 0; i < n; i++) {
                    h[i] = (float)((i * 7919) % n) / (float)n * 10.0f - 5.0f + (float)i * 1e-6f;
                    hw[i] = 1.0f + (float)i / (float)n;
                }
                float *x, *w, *sc;
                bitnet__norm_part *parts;
                unsigned *max_bits;
                std::vector<bitnet__norm_part> hp(blocks);
                for (int b = 0; b < blocks; b++) {
                    hp[b].ss = 1000.0 + b;
                    hp[b].m = 3.0f + b * 0.01f;
                    hp[b].unused = 0.0f;
                }
                unsigned h_max;
                memcpy(&h_max, &hp[blocks - 1].m, 4);   /* (the largest) */
                CK(cudaMalloc(&x, n * 4)); CK(cudaMalloc(&w, n * 4)); CK(cudaMalloc(&sc, 4));
                CK(cudaMalloc(&parts, blocks * sizeof(bitnet__norm_part)));
                CK(cudaMalloc(&max_bits, 4));
                CK(cudaMemcpy(max_bits, &h_max, 4, cudaMemcpyHostToDevice));
                CK(cudaMemcpy(parts, hp.data(), blocks * sizeof(bitnet__norm_part), cudaMemcpyHostToDevice));
                CK(cudaMemcpy(x, h.data(), n * 4, cudaMemcpyHostToDevice));
                CK(cudaMemcpy(w, hw.data(), n * 4, cudaMemcpyHostToDevice));
                const size_t smem = (size_t)n * 8 + n;
                void (*kernel)(const float *, const float *, int, const bitnet__norm_part *, const unsigned *, float *) =
                    way == 2 ? (staged ? norm_marked<true, true> : norm_marked<false, true>) : staged ? norm_marked<true, false> : norm_marked<false, false>;
                CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
                std::vector<std::vector<long long>> all(6);
                for (int r = 0; r < 21; r++) {
                    long long c[8];
                    CK(cudaMemset(bench_marks_addr(), 0, sizeof c));
                    kernel<<<blocks, 256, smem>>>(x, w, n, parts, max_bits, sc);
                    CK(cudaGetLastError());
                    CK(cudaMemcpyFromSymbol(c, bench_marks, sizeof c));
                    /* (the statistics' way has marks 0, 4 and 7 only: warp 0's loads and statistics in the first column, the wait for the other warps' quantization and the check in the quantize column) */
                    static const int from[6] = {0, 2, 3, 4, 5, 0}, to[6] = {2, 3, 4, 5, 7, 7};
                    for (int i = 0; i < 6; i++) all[i].push_back(way == 2 && i < 5 ? (i == 0 ? c[4] - c[0] : i == 4 ? c[7] - c[4] : 0) : c[to[i]] - c[from[i]]);
                }
                printf("| %s | %d | %d |", way == 2 ? (staged ? "statistics, staged" : "statistics") : staged ? "staged" : "registers", n, blocks);
                for (int i = 0; i < 6; i++) {
                    std::sort(all[i].begin(), all[i].end());
                    printf(" %lld |", all[i][10]);
                }
                printf("\n");
                CK(cudaFree(x)); CK(cudaFree(w)); CK(cudaFree(sc)); CK(cudaFree(parts)); CK(cudaFree(max_bits));
            }
        }
}

int main(void) {
    int n_dev = 0, clk = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP gpu_bench_norm: no CUDA device\n");
        return 0;
    }
    CK(cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, 0));
    printf("# one block's RMSNorm + quantization, cycles (SM clock up to %.0f MHz)\n\n", clk / 1000.0);
    printf("| n | threads | load x | sum sq + reduce | inv_rms | norm w + max + reduce | quantize + reduce | library function |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int n : {2560, 6912}) {
        for (int T : {128, 256}) {
            if (n > BITNET__NQ_REGS * 4 * T) continue;
            std::vector<float> h(n);
            for (int i = 0; i < n; i++) h[i] = (float)((i * 7919) % 1000) / 100.0f - 5.0f;
            float *x, *w;
            int8_t *q;
            long long *cyc;
            CK(cudaMalloc(&x, n * 4)); CK(cudaMalloc(&w, n * 4)); CK(cudaMalloc(&q, n)); CK(cudaMalloc(&cyc, 8 * 8));
            CK(cudaMemcpy(x, h.data(), n * 4, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(w, h.data(), n * 4, cudaMemcpyHostToDevice));
            std::vector<std::vector<long long>> all(6);
            for (int r = 0; r < 21; r++) {
                long long c[8];
                norm_phases<<<1, T>>>(x, w, n, q, cyc);
                CK(cudaGetLastError());
                CK(cudaMemcpy(c, cyc, sizeof c, cudaMemcpyDeviceToHost));
                for (int i = 0; i < 6; i++) all[i].push_back(c[i]);
            }
            printf("| %d | %d |", n, T);
            for (int i = 0; i < 6; i++) {
                std::sort(all[i].begin(), all[i].end());
                printf(" %lld |", all[i][10]);
            }
            printf("\n");
            CK(cudaFree(x)); CK(cudaFree(w)); CK(cudaFree(q)); CK(cudaFree(cyc));
        }
    }
    library_steps();
    return 0;
}
