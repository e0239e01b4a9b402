/* Kernel benchmark: the W2A8 GEMV of bitnet_cuda.cu against a re-implementation of
   the seed kernel's design and cuBLAS bf16, every row measured in this run.

   Each number is microseconds per call: the median of 9 replays of a CUDA graph of
   200 back-to-back calls (after a warm-up replay), the calls rotating over copies of
   the weights that together exceed twice the L2, so every call reads its weights
   from device memory.  GB/s counts the weight bytes (the activations are a few KB);
   % is of the device-to-device copy bandwidth measured at the start of the run
   (bytes read + written).

   Columns:
     tiles       16-row tiles a block takes with late launch, as the library
                 chooses for this GPU (bitnet__gemv_tiles_per_block: more than one
                 where the grid would not leave room for the next call's blocks;
                 early and serial take one, as the library does)
     early       int8 input, float output, programmatic dependent launch with the
                 next call launched at the start of this one (it fetches its tiles
                 while this one still runs; see bitnet_cuda.cu, bitnet__launch)
     late        the same, the next call launched once this one has its input
     late 1      late with one tile a block whatever the shape (the library before
                 it took several)
     serial      the same as late without programmatic dependent launch
     tail        the decode step's variant: residual add into a float output that
                 the last block then RMS-normalizes and quantizes for the next GEMV
                 (bitnet__tail), late launch; the output staged in shared memory
                 where its 4N bytes fit (N <= 12800 here), as in the decode step
     seed        the seed's design, re-implemented here: 16x32 blocks of 128 bytes,
                 a warp reads one block per step with 4-byte loads, the 16-value
                 interleave decoded with shifts and masks, dp4a, activations staged
                 in shared memory, one 16-row block per thread block, no PDL
     cublas      cublasGemmEx, bf16 weights and activations, fp32 accumulation
   Then: tiles a block swept for the large shapes; the LM head kernel alone; and
   the floor of a call in this harness, an empty kernel of 132 blocks that only
   waits for the previous call (programmatic dependent launch) and stores a word.
   usage: gpu_bench_gemv [rounds]     (prints markdown tables) */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "../bitnet_cuda.cu"

#include <algorithm>
#include <cublas_v2.h>
#include <vector>

#include "gpu_check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* ---- the seed's design ----
   Block (i, j) (rows 16i.., columns 32j..) is 128 bytes at ((i * K/32) + j) * 128;
   inside it, word (h * 16 + r) holds row r's 16 values of column half h, in the
   16-value interleave. */
static void seed_pack(const int8_t *w, int n, int k, uint8_t *out) {
    for (int r = 0; r < n; r++)
        for (int c16 = 0; c16 < k / 16; c16++) {
            uint32_t word = 0;
            for (int j = 0; j < 16; j++) word |= (uint32_t)(w[(size_t)r * k + c16 * 16 + j] + 1) << (2 * (4 * (j % 4) + j / 4));
            size_t blk = (size_t)(r / 16) * (k / 32) + c16 / 2;
            memcpy(out + blk * 128 + (size_t)((c16 % 2) * 16 + r % 16) * 4, &word, 4);
        }
}

/* dot of 16 two-bit codes (one interleaved word) with 16 int8 activations, the
   seed's way: each 2-bit plane shifted down and masked */
__device__ __forceinline__ int seed_dot16(uint32_t w, int4 x, int acc) {
    acc = __dp4a((int)(w & 0x03030303u), x.x, acc);
    acc = __dp4a((int)((w >> 2) & 0x03030303u), x.y, acc);
    acc = __dp4a((int)((w >> 4) & 0x03030303u), x.z, acc);
    acc = __dp4a((int)((w >> 6) & 0x03030303u), x.w, acc);
    return acc;
}

__global__ void __launch_bounds__(128) seed_gemv_kernel(const uint8_t *w, const int8_t *x, const float *x_scale, const int *x_sum,
                                                        float w_scale, int k, float *y) {
    extern __shared__ __align__(16) int8_t sx[];
    __shared__ int part[4][16];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, row = lane & 15, half = lane >> 4;
    for (int i = tid; i < k / 16; i += blockDim.x) ((int4 *)sx)[i] = ((const int4 *)x)[i];
    __syncthreads();
    const uint32_t *blocks = (const uint32_t *)(w + (size_t)blockIdx.x * (k / 32) * 128);
    int acc = 0;
#pragma unroll 4
    for (int j = warp; j < k / 32; j += 4) {
        uint32_t word = blocks[(size_t)j * 32 + half * 16 + row];
        acc = seed_dot16(word, ((const int4 *)sx)[j * 2 + half], acc);
    }
    acc += __shfl_xor_sync(0xffffffffu, acc, 16);
    if (lane < 16) part[warp][lane] = acc;
    __syncthreads();
    if (tid < 16) {
        int d = part[0][tid] + part[1][tid] + part[2][tid] + part[3][tid] - *x_sum;
        y[blockIdx.x * 16 + tid] = (float)d * (w_scale / *x_scale);
    }
}

/* the floor of a dependent call: wait for the previous kernel, store one word */
struct empty_args { int *out; int late; };
__global__ void empty_call_kernel(const empty_args a) {
    if (!a.late) bitnet__pdl_launch_next();
    bitnet__pdl_wait();
    if (a.late) bitnet__pdl_launch_next();
    if (threadIdx.x == 0) a.out[blockIdx.x] = (int)blockIdx.x;
}

/* ---- timing ---- */
static const int CALLS = 200;

template <typename F> static double time_graph(F enqueue, cudaStream_t st, int rounds) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < CALLS; i++) CK(enqueue(i));
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaGraphLaunch(ge, st));
    CK(cudaStreamSynchronize(st));
    std::vector<double> t;
    for (int r = 0; r < rounds; r++) {
        float ms;
        CK(cudaEventRecord(a, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1000.0 / CALLS);
    }
    std::sort(t.begin(), t.end());
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return t[t.size() / 2];
}

static double copy_bandwidth(cudaStream_t st) {
    const size_t bytes = (size_t)1 << 30;
    void *src, *dst;
    CK(cudaMalloc(&src, bytes));
    CK(cudaMalloc(&dst, bytes));
    CK(cudaMemset(src, 1, bytes));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<double> t;
    for (int r = 0; r < 11; r++) {
        float ms;
        CK(cudaEventRecord(a, st));
        CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms, a, b));
        if (r) t.push_back(2.0 * bytes / (ms * 1e-3) / 1e9);
    }
    std::sort(t.begin(), t.end());
    CK(cudaFree(src));
    CK(cudaFree(dst));
    return t[t.size() / 2];
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 9;
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP gpu_bench_gemv: no CUDA device\n");
        return 0;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cublasHandle_t blas;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(blas, st) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cuBLAS unavailable\n");
        return 1;
    }
    CK(bitnet__kernels_prepare(10240, 2560));
    CK(cudaFuncSetAttribute(bitnet__gemv_kernel<BITNET__IN_INT8, BITNET__OUT_F32>, cudaFuncAttributeMaxDynamicSharedMemorySize, 9 * 10240));
    const double copy_bw = copy_bandwidth(st);
    printf("# W2A8 GEMV, M = 1: %s, %d SMs, L2 %d MB, copy bandwidth %.0f GB/s (read + write)\n\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize >> 20, copy_bw);
    printf("| N x K | floor us | tiles | early | late | late 1 | serial | tail | seed | cublas bf16 | best GB/s | best %% copy | best / seed |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    struct sweep_row { int n, k, tiles; double early, late; };
    std::vector<sweep_row> sweep;
    static const int shapes[][2] = {{2560, 2560}, {3840, 2560}, {13824, 2560}, {2560, 6912},
                                    {3200, 3200}, {4800, 3200}, {3200, 10240}, {20480, 3200}};
    for (auto &sh : shapes) {
        const int n = sh[0], k = sh[1];
        const size_t wbytes = (size_t)n * k / 4, bbytes = (size_t)n * k * 2;
        const size_t rot_bytes = (size_t)prop.l2CacheSize * 5 / 2;
        const int nbuf = (int)std::max<size_t>(2, (rot_bytes + wbytes - 1) / wbytes);
        const int nbuf_bf16 = (int)std::max<size_t>(2, (rot_bytes + bbytes - 1) / bbytes);
        std::vector<int8_t> w((size_t)n * k), xq(k);
        std::vector<uint8_t> packed(wbytes), seed(wbytes);
        std::vector<uint16_t> wb((size_t)n * k), xb(k);
        for (size_t i = 0; i < w.size(); i++) { w[i] = (int8_t)((int)(rnd() % 3) - 1); wb[i] = bitnet__f32_to_bf16((float)w[i] * 0.7f); }
        int sum = 0;
        for (int i = 0; i < k; i++) {
            xq[i] = (int8_t)(rnd() & 0xff); sum += xq[i];
            xb[i] = bitnet__f32_to_bf16((float)xq[i] / 64.0f);
        }
        bitnet_gpu_pack(w.data(), n, k, packed.data());
        seed_pack(w.data(), n, k, seed.data());
        uint8_t *d_w, *d_seed;
        uint16_t *d_wb, *d_xb, *d_yb;
        int8_t *d_xq;
        float *d_xs, *d_y, *d_ny, *d_ty, *d_tqs;
        int *d_sum;
        int8_t *d_tq;
        unsigned *d_cnt;
        const float one = 1.0f;
        CK(cudaMalloc(&d_w, wbytes * nbuf));
        CK(cudaMalloc(&d_seed, wbytes * nbuf));
        CK(cudaMalloc(&d_wb, bbytes * nbuf_bf16));
        for (int b = 0; b < nbuf; b++) {
            CK(cudaMemcpy(d_w + wbytes * b, packed.data(), wbytes, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(d_seed + wbytes * b, seed.data(), wbytes, cudaMemcpyHostToDevice));
        }
        for (int b = 0; b < nbuf_bf16; b++) CK(cudaMemcpy((uint8_t *)d_wb + bbytes * b, wb.data(), bbytes, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&d_xb, (size_t)k * 2));
        CK(cudaMalloc(&d_yb, (size_t)n * 2));
        CK(cudaMalloc(&d_xq, (size_t)k));
        CK(cudaMalloc(&d_xs, 4));
        CK(cudaMalloc(&d_sum, 4));
        CK(cudaMalloc(&d_y, (size_t)n * 4));
        CK(cudaMalloc(&d_ny, (size_t)n * 4));
        CK(cudaMalloc(&d_ty, (size_t)n * 4));
        CK(cudaMalloc(&d_tq, (size_t)n));
        CK(cudaMalloc(&d_tqs, 4));
        CK(cudaMalloc(&d_cnt, 4));
        CK(cudaMemset(d_cnt, 0, 4));
        {
            std::vector<float> ones(n, 1.0f), y0(n);
            for (int i = 0; i < n; i++) y0[i] = (float)(int)(rnd() % 200) - 100.0f;
            CK(cudaMemcpy(d_ny, ones.data(), (size_t)n * 4, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(d_ty, y0.data(), (size_t)n * 4, cudaMemcpyHostToDevice));
        }
        CK(cudaMemcpy(d_xb, xb.data(), (size_t)k * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d_xq, xq.data(), (size_t)k, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d_xs, &one, 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d_sum, &sum, 4, cudaMemcpyHostToDevice));

        bitnet__gemv_args a;
        memset(&a, 0, sizeof a);
        a.n = n; a.k = k; a.xq = d_xq; a.xq_scale = d_xs; a.w_scale[0] = 1.0f; a.y = d_y;
        const int tpb = bitnet__gemv_tiles_per_block(n, k, BITNET__IN_INT8, prop.multiProcessorCount, 1);
        auto ours = [&](int pdl, int tail, int tiles) {
            return time_graph([&](int i) {
                bitnet__gemv_args c = a;
                c.w = d_w + wbytes * (i % nbuf);
                c.late_launch = pdl == 2;
                c.tiles_per_block = tiles;
                if (!tail) return bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_F32>(c, st, pdl);
                c.y = d_ty;
                c.tail.in.x = d_ty; c.tail.in.norm = d_ny; c.tail.in.eps = 1e-5f; c.tail.n = n;
                c.tail.q = d_tq; c.tail.scale = d_tqs; c.tail.counter = d_cnt;
                c.tail.staged = n <= 12800;   /* within kernels_prepare's 5 x 10240 bytes */
                return bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_ADD>(c, st, pdl);
            }, st, rounds);
        };
        const double t_early = ours(1, 0, 1), t_late = ours(2, 0, tpb), t_late1 = tpb > 1 ? ours(2, 0, 1) : t_late, t_serial = ours(0, 0, 1),
                     t_norm = ours(2, 1, tpb);
        if (n / 16 > 2 * prop.multiProcessorCount)
            for (int t = 1; t <= BITNET__GEMV_MAX_TILES; t++)
                if (bitnet__gemv_smem(k, BITNET__IN_INT8, t) <= 9 * 10240) sweep.push_back({n, k, t, ours(1, 0, t), ours(2, 0, t)});
        const double t_ours = std::min(t_early, t_late);
        const double t_seed = time_graph([&](int i) {
            seed_gemv_kernel<<<n / 16, 128, (size_t)k, st>>>(d_seed + wbytes * (i % nbuf), d_xq, d_xs, d_sum, 1.0f, k, d_y);
            return cudaGetLastError();
        }, st, rounds);
        const double t_blas = time_graph([&](int i) {
            const float alpha = 1.0f, beta = 0.0f;
            cublasStatus_t s = cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, n, 1, k, &alpha, (const uint8_t *)d_wb + bbytes * (i % nbuf_bf16),
                                            CUDA_R_16BF, k, d_xb, CUDA_R_16BF, k, &beta, d_yb, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT);
            return s == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorUnknown;
        }, st, rounds);
        const double floor_us = wbytes / (copy_bw * 1e9) * 1e6;
        printf("| %d x %d | %.2f | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f%% | %.2f |\n", n, k, floor_us, tpb, t_early, t_late,
               t_late1, t_serial, t_norm, t_seed,
               t_blas, wbytes / (t_ours * 1e-6) / 1e9, 100.0 * wbytes / (t_ours * 1e-6) / 1e9 / copy_bw, t_ours / t_seed);
        fflush(stdout);
        CK(cudaFree(d_w)); CK(cudaFree(d_seed)); CK(cudaFree(d_wb)); CK(cudaFree(d_xb)); CK(cudaFree(d_yb)); CK(cudaFree(d_xq));
        CK(cudaFree(d_xs)); CK(cudaFree(d_sum)); CK(cudaFree(d_y));
        CK(cudaFree(d_ny)); CK(cudaFree(d_ty)); CK(cudaFree(d_tq)); CK(cudaFree(d_tqs)); CK(cudaFree(d_cnt));
    }
    printf("\n# Tiles a block (int8 input, float output; us per call, early / late launch)\n\n| N x K | tiles | blocks | early | late |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (auto &r : sweep)
        printf("| %d x %d | %d | %d | %.2f | %.2f |\n", r.n, r.k, r.tiles, (r.n / 16 + r.tiles - 1) / r.tiles, r.early, r.late);
    {
        int *d_out;
        const int blocks = prop.multiProcessorCount;
        CK(cudaMalloc(&d_out, (size_t)blocks * 4));
        printf("\n# An empty dependent call (%d blocks of 128 threads: wait for the previous call, store a word), us per call\n\n", blocks);
        printf("| launch | us |\n|---|---:|\n");
        for (int pdl = 0; pdl < 3; pdl++) {
            const double t = time_graph([&](int) {
                const empty_args e = {d_out, pdl == 2};
                return bitnet__launch(empty_call_kernel, dim3((unsigned)blocks), dim3(128), 0, st, pdl, e);
            }, st, rounds);
            printf("| %s | %.2f |\n", pdl == 0 ? "serial" : pdl == 1 ? "early" : "late", t);
        }
        CK(cudaFree(d_out));
    }
    /* the LM head kernel of bitnet_cuda.cu alone (128256 x 2560, bf16 and int8
       rows, with its RMSNorm prologue and argmax), for several grid sizes */
    {
        const int n_vocab = 128256, k = 2560, n_ctx = 8;
        const size_t bytes16 = (size_t)n_vocab * k * 2;
        uint16_t *d_w;
        int8_t *d_w8;
        float *d_w8s, *d_x, *d_norm, *d_logits;
        float2 *d_best;
        unsigned *d_cnt;
        int *d_tok, *d_toks, *d_pos;
        std::vector<uint16_t> hw((size_t)k * 1024);
        std::vector<float> hx(k, 0.5f), hs(n_vocab, 0.01f);
        for (auto &v : hw) v = bitnet__f32_to_bf16((float)((int)(rnd() % 200) - 100) / 1000.0f);
        CK(cudaMalloc(&d_w, bytes16)); CK(cudaMalloc(&d_w8, bytes16 / 2)); CK(cudaMalloc(&d_w8s, (size_t)n_vocab * 4));
        for (int r = 0; r < n_vocab; r += 1024)
            CK(cudaMemcpy(d_w + (size_t)r * k, hw.data(), (size_t)std::min(1024, n_vocab - r) * k * 2, cudaMemcpyHostToDevice));
        CK(cudaMemset(d_w8, 3, bytes16 / 2));
        CK(cudaMalloc(&d_x, (size_t)k * 4)); CK(cudaMalloc(&d_norm, (size_t)k * 4)); CK(cudaMalloc(&d_logits, (size_t)n_vocab * 4));
        CK(cudaMemcpy(d_x, hx.data(), (size_t)k * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d_norm, hx.data(), (size_t)k * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d_w8s, hs.data(), (size_t)n_vocab * 4, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&d_best, 65536 * sizeof(float2))); CK(cudaMalloc(&d_cnt, 4)); CK(cudaMemset(d_cnt, 0, 4));
        CK(cudaMalloc(&d_tok, 4)); CK(cudaMalloc(&d_toks, n_ctx * 4)); CK(cudaMalloc(&d_pos, 4)); CK(cudaMemset(d_pos, 0, 4));
        printf("\n# LM head kernel alone, %d x %d, with its norm prologue and argmax\n\n", n_vocab, k);
        printf("| rows | blocks / SM | us | GB/s | %% copy |\n|---|---:|---:|---:|---:|\n");
        for (int int8 = 0; int8 < 2; int8++)
            for (int per_sm : {2, 4, 8, 16}) {
                bitnet__head_args h;
                memset(&h, 0, sizeof h);
                h.w = int8 ? NULL : d_w; h.w8 = d_w8; h.w8_scale = d_w8s; h.n_vocab = n_vocab; h.k = k; h.x = d_x; h.norm = d_norm;
                h.eps = 1e-5f; h.logits = d_logits; h.block_best = d_best; h.counter = d_cnt; h.token = d_tok; h.tokens = d_toks;
                h.pos = d_pos; h.n_ctx = n_ctx; h.late_launch = 1;
                const unsigned blocks = (unsigned)(per_sm * prop.multiProcessorCount);
                const double t = time_graph([&](int) {
                    return int8 ? bitnet__launch(bitnet__head_kernel<1>, dim3(blocks), dim3(BITNET__HEAD_THREADS), (size_t)k, st, 2, h)
                                : bitnet__launch(bitnet__head_kernel<0>, dim3(blocks), dim3(BITNET__HEAD_THREADS), (size_t)k * 4, st, 2, h);
                }, st, rounds);
                const double b = int8 ? bytes16 / 2 : bytes16;
                printf("| %s | %d | %.1f | %.0f | %.0f%% |\n", int8 ? "int8" : "bf16", per_sm, t, b / (t * 1e-6) / 1e9, 100.0 * b / (t * 1e-6) / 1e9 / copy_bw);
            }
        CK(cudaFree(d_w)); CK(cudaFree(d_w8)); CK(cudaFree(d_w8s)); CK(cudaFree(d_x)); CK(cudaFree(d_norm)); CK(cudaFree(d_logits));
        CK(cudaFree(d_best)); CK(cudaFree(d_cnt)); CK(cudaFree(d_tok)); CK(cudaFree(d_toks)); CK(cudaFree(d_pos));
    }
    /* a sanity check that the seed re-implementation computes the same thing */
    {
        const int n = 64, k = 256;
        std::vector<int8_t> w((size_t)n * k), xq(k);
        std::vector<uint8_t> seed((size_t)n * k / 4);
        int sum = 0, bad = 0;
        for (auto &v : w) v = (int8_t)((int)(rnd() % 3) - 1);
        for (auto &v : xq) { v = (int8_t)(rnd() & 0xff); sum += v; }
        seed_pack(w.data(), n, k, seed.data());
        uint8_t *d_w; int8_t *d_x; float *d_xs, *d_y; int *d_sum;
        const float one = 1.0f;
        CK(cudaMalloc(&d_w, seed.size())); CK(cudaMalloc(&d_x, (size_t)k)); CK(cudaMalloc(&d_xs, 4)); CK(cudaMalloc(&d_sum, 4));
        CK(cudaMalloc(&d_y, (size_t)n * 4));
        CK(cudaMemcpy(d_w, seed.data(), seed.size(), cudaMemcpyHostToDevice)); CK(cudaMemcpy(d_x, xq.data(), (size_t)k, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d_xs, &one, 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(d_sum, &sum, 4, cudaMemcpyHostToDevice));
        seed_gemv_kernel<<<n / 16, 128, (size_t)k>>>(d_w, d_x, d_xs, d_sum, 1.0f, k, d_y);
        CK(cudaDeviceSynchronize());
        std::vector<float> y(n);
        CK(cudaMemcpy(y.data(), d_y, (size_t)n * 4, cudaMemcpyDeviceToHost));
        for (int r = 0; r < n; r++) {
            int acc = 0;
            for (int c = 0; c < k; c++) acc += w[(size_t)r * k + c] * xq[c];
            bad += y[r] != (float)acc;
        }
        printf("\nseed re-implementation check: %s\n", bad ? "WRONG RESULTS" : "matches the CPU");
    }
    cublasDestroy(blas);
    return 0;
}
