/* GPU kernel tests (run by tests/gpu.sh on a machine with a CUDA device): every
   kernel of bitnet_cuda.cu against a plain CPU reference on fresh random inputs,
   outputs poisoned before each run.
     - the RMSNorm + quantization of a block, each of its ways, identical to the
       CPU's (ties and near-ties of the largest |w x| included)
     - W2A8 GEMV: int32 dot products identical to the CPU's, for every 2B4T shape,
       the seed's shapes and odd shapes at the edges of what is supported; the
       fused RMSNorm + quantization prologue identical to the CPU's quantization;
       the float epilogues (store, QKV with RoPE and the fp16 cache append, gate/up)
     - attention over the cache, one and several slices, against a float64
       reference on the same fp16 cache
     - the LM head (bf16, f16, int8) with its argmax and the position advance
     - the sampling candidates against the CPU sampler's ranking */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
/* (the Makefile builds a deliberately broken copy of the library through this) */
#ifdef GPU_KERNELS_SOURCE
#include GPU_KERNELS_SOURCE
#else
#include "../bitnet_cuda.cu"
#endif
#include "test.h"

#include <vector>

#define CUDA_OK(...)                                                                                    \
    do {                                                                                                \
        cudaError_t e_ = (__VA_ARGS__);                                                                     \
        if (e_ != cudaSuccess) {                                                                        \
            printf("FAIL %s: %s:%d: %s: %s\n", t_name, __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(e_)); \
            exit(1);                                                                                    \
        }                                                                                               \
    } while (0)

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() >> 8) * (1.0f / 16777216.0f); }

template <typename T> static T *dev_upload(const T *h, size_t n) {
    T *d;
    CUDA_OK(cudaMalloc(&d, n * sizeof(T) + 16));
    CUDA_OK(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static T *dev_poisoned(size_t n) {
    T *d;
    CUDA_OK(cudaMalloc(&d, n * sizeof(T) + 16));
    CUDA_OK(cudaMemset(d, 0xA5, n * sizeof(T) + 16));
    return d;
}
template <typename T> static std::vector<T> dev_download(const T *d, size_t n) {
    std::vector<T> h(n);
    CUDA_OK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

/* The CPU's quantization of a BitLinear input (bitnet__norm_quantize_row), in
   natural order: the int8 values from w x and fl(127 / max|w x|), the scale from
   the RMS. */
static float ref_norm_quantize(const float *x, const float *norm, int n, float eps, int8_t *q, int *sum) {
    double ss = 0.0;
    float m = 0.0f, s, f;
    for (int i = 0; i < n; i++) {
        ss += (double)x[i] * x[i];
        if (fabsf(norm[i] * x[i]) > m) m = fabsf(norm[i] * x[i]);
    }
    const float inv_rms = 1.0f / sqrtf((float)(ss / n) + eps), amax = inv_rms * m;
    s = amax >= 1e-5f ? 127.0f / amax : 127.0f / 1e-5f;
    f = amax >= 1e-5f ? 127.0f / m : inv_rms * (127.0f / 1e-5f);
    *sum = 0;
    for (int i = 0; i < n; i++) {
        q[i] = (int8_t)fminf(fmaxf(rintf(norm[i] * x[i] * f), -128.0f), 127.0f);   /* (NaN: -128) */
        *sum += q[i];
    }
    return s;
}

/* ---- the quantization of a block (bitnet__norm_quantize_block, bitnet__quantize_parts_block) ---- */

/* The library functions on one block: q (natural order) and s out.  WAY 0: the
   fused step's instance (256 threads known at compile time); 1: the GEMV
   prologue's (blockDim at run time, 128 threads, rounds of registers past 1536
   values); 2: from w x and producers' statistics (n_parts of them), the fused
   step's instance, staged past 3072 values; 3: the input staged in shared memory (a tail's way). */
template <int WAY>
__global__ void norm_kernel(bitnet__quant_in in, int n, const float *wx, const bitnet__norm_part *parts, int n_parts,
                            const unsigned *max_bits, int8_t *q_out, float *s_out) {
    extern __shared__ __align__(16) uint8_t sm[];   /* WAY 2, 3: n floats of input (and room for n more); then n bytes of q */
    float *stage = (float *)sm;
    int8_t *q = (int8_t *)(sm + (WAY >= 2 ? (size_t)n * 8 : 0));
    float s;
    if (WAY == 0) bitnet__norm_quantize_block<1, BITNET__NQ_REGS, 256>(in, n, q, &s);
    if (WAY == 1) bitnet__norm_quantize_block(in, n, q, &s);
    if (WAY == 2)
        bitnet__quantize_parts_block<BITNET__NQ_REGS, 256>(wx, n, parts, n_parts, max_bits, in.eps, q, &s,
                                                           n > BITNET__NQ_REGS * 4 * 256 ? stage : NULL);
    if (WAY == 3) bitnet__norm_quantize_block(in, n, q, &s, stage);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) q_out[i] = q[i];
    if (threadIdx.x == 0) *s_out = s;
}

/* Runs norm_kernel<WAY> on one block. */
template <int WAY>
static void run_norm_kernel(const bitnet__quant_in &in, int n, const float *wx, const bitnet__norm_part *parts, int n_parts,
                            const unsigned *max_bits, int8_t *d_q, float *d_s, size_t smem, int threads) {
    CUDA_OK(cudaFuncSetAttribute(norm_kernel<WAY>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    norm_kernel<WAY><<<1, threads, smem>>>(in, n, wx, parts, n_parts, max_bits, d_q, d_s);
}

/* Inputs: 0 random with a few large entries; 1 the largest |w x| twice (the same x
   and w at another index); 2 values whose w x f sit at a rounding boundary
   (k + 1/2, to the last bit) for f = fl(127 / max|w x|): any other multiplier
   rounds some of them the other way; 3 zeros; 4 a NaN; 5 norm weights so small
   that max|y| < 1e-5 (transformers' floor).  with_copy: the input is also copied
   out as loaded (the residual stream).  The statistics for WAY 2 come in slices
   of random lengths, as the fused step's producers publish them. */
static void norm_case(int n, int kind, bool with_copy) {
    std::vector<float> x(n), w(n);
    const float spread = frand(0.01f, 100.0f);
    for (int i = 0; i < n; i++) {
        x[i] = kind == 3 ? 0.0f : frand(-1.0f, 1.0f) * spread * (rnd() % 97 == 0 ? 30.0f : 1.0f);
        w[i] = kind == 5 ? frand(-1e-9f, 1e-9f) : frand(0.2f, 2.0f) * (rnd() % 5 == 0 ? -1.0f : 1.0f);
    }
    if (kind == 1 && n > 1) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (fabsf(w[i] * x[i]) > fabsf(w[best] * x[best])) best = i;
        const int b = (best + 1 + (int)(rnd() % (n - 1))) % n;
        x[b] = x[best]; w[b] = w[best];
    }
    if (kind == 2) {
        const float f = 127.0f / spread;
        for (int i = 0; i < n; i++) {
            w[i] = 1.0f;
            x[i] = ((float)((int)(rnd() % 254) - 127) + 0.5f) / f;   /* |x| < spread */
        }
        x[rnd() % n] = spread;
    }
    if (kind == 4) x[rnd() % n] = NAN;
    std::vector<int8_t> want(n);
    int want_sum;
    const float want_s = ref_norm_quantize(x.data(), w.data(), n, 1e-5f, want.data(), &want_sum);
    /* what the fused step's producers store and publish */
    std::vector<float> wx(n);
    std::vector<bitnet__norm_part> parts;
    unsigned max_bits = 0;   /* the slices' max |w x|, as the producers fold it (atomicMax of the float bits) */
    for (int i = 0; i < n; i++) wx[i] = w[i] * x[i];
    for (int lo = 0; lo < n;) {
        const int hi = rnd() % 8 == 0 ? lo : std::min(n, lo + 1 + (int)(rnd() % 300));   /* (some empty slices: blocks without rows) */
        bitnet__norm_part p;
        memset(&p, 0, sizeof p);
        for (int i = lo; i < hi; i++) {
            p.ss += (double)x[i] * x[i];
            if (fabsf(wx[i]) > p.m) p.m = fabsf(wx[i]);
        }
        parts.push_back(p);
        unsigned bits;
        memcpy(&bits, &p.m, 4);
        max_bits = std::max(max_bits, bits);
        lo = hi;
    }

    float *d_x = dev_upload(x.data(), (size_t)n), *d_w = dev_upload(w.data(), (size_t)n), *d_s = dev_poisoned<float>(1);
    float *d_wx = dev_upload(wx.data(), (size_t)n), *d_copy = dev_poisoned<float>((size_t)n);
    bitnet__norm_part *d_parts = dev_upload(parts.data(), parts.size());
    /* way 4: way 2 told a max |w x| one float above the true one (as if a producer
       had folded in a stale value): its own statistics must catch it */
    const unsigned wrong_bits = max_bits + 1;
    unsigned *d_max = dev_upload(&max_bits, 1), *d_wrong_max = dev_upload(&wrong_bits, 1);
    int8_t *d_q = dev_poisoned<int8_t>((size_t)n);
    bitnet__quant_in in;
    memset(&in, 0, sizeof in);
    in.x = d_x;
    in.norm = d_w;
    in.eps = 1e-5f;
    if (with_copy) in.copy_to = d_copy;
    for (int way = 0; way < 5; way++) {
        if (with_copy && way >= 2) continue;   /* (copies are made in the register path) */
        if (way == 0 && n > BITNET__NQ_REGS * 4 * 256) continue;   /* (the fused step stages longer inputs) */
        const size_t smem = way >= 2 ? (size_t)n * 9 : (size_t)n;
        const int threads = way == 0 || way == 2 || way == 4 ? 256 : 128;
        CUDA_OK(cudaMemset(d_q, 0xA5, (size_t)n));
        CUDA_OK(cudaMemset(d_s, 0xA5, 4));
        CUDA_OK(cudaMemset(d_copy, 0xA5, (size_t)n * 4));
        static void (*const run[4])(const bitnet__quant_in &, int, const float *, const bitnet__norm_part *, int, const unsigned *, int8_t *,
                                    float *, size_t, int) = {run_norm_kernel<0>, run_norm_kernel<1>, run_norm_kernel<2>, run_norm_kernel<3>};
        run[way == 4 ? 2 : way](in, n, d_wx, d_parts, (int)parts.size(), way == 4 ? d_wrong_max : d_max, d_q, d_s, smem, threads);
        CUDA_OK(cudaGetLastError());
        CUDA_OK(cudaDeviceSynchronize());
        std::vector<int8_t> got = dev_download(d_q, (size_t)n);
        std::vector<float> got_s = dev_download(d_s, 1);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += got[i] != want[i];
        /* the scale: exact, but where the slices' sums of squares add up in another
           order than the CPU's (WAY 2, way 4) within a rounding of inv_rms */
        const bool scale_ok = way == 2 || way == 4 ? fabsf(got_s[0] - want_s) <= 2.5e-7f * want_s || (want_s != want_s && got_s[0] != got_s[0])
                                       : memcmp(&got_s[0], &want_s, 4) == 0;
        CHECKF(bad == 0 && scale_ok, "norm n=%d input %d%s way %d: %d of %d values differ, scale %.9g (want %.9g)", n, kind,
               with_copy ? " +copy" : "", way, bad, n, got_s[0], want_s);
        if (with_copy) {
            std::vector<float> copy = dev_download(d_copy, (size_t)n);
            int wrong = 0;
            for (int i = 0; i < n; i++) wrong += memcmp(&copy[i], &x[i], 4) != 0;
            CHECKF(wrong == 0, "norm n=%d way %d: %d elements of the copied input wrong", n, way, wrong);
        }
    }
    cudaFree(d_x); cudaFree(d_w); cudaFree(d_s); cudaFree(d_wx); cudaFree(d_copy); cudaFree(d_parts); cudaFree(d_max); cudaFree(d_wrong_max); cudaFree(d_q);
}

static void ref_dots(const int8_t *w, const int8_t *x, int n, int k, int *out) {
    for (int r = 0; r < n; r++) {
        int acc = 0;
        for (int c = 0; c < k; c++) acc += w[(size_t)r * k + c] * x[c];
        out[r] = acc;
    }
}

/* The library raises the shared memory limit only of the kernels it launches;
   these tests also launch the int32/float-output and norm-prologue variants. */
static const int MAX_NORM_K = 24576;   /* 9k bytes of shared memory must fit */
static void prepare_test_kernels(void) {
    CUDA_OK(cudaFuncSetAttribute(bitnet__gemv_kernel<BITNET__IN_INT8, BITNET__OUT_I32>, cudaFuncAttributeMaxDynamicSharedMemorySize, 5 * 32768));
    CUDA_OK(cudaFuncSetAttribute(bitnet__gemv_kernel<BITNET__IN_INT8, BITNET__OUT_F32>, cudaFuncAttributeMaxDynamicSharedMemorySize, 5 * 32768));
    CUDA_OK(cudaFuncSetAttribute(bitnet__gemv_kernel<BITNET__IN_NORM, BITNET__OUT_I32>, cudaFuncAttributeMaxDynamicSharedMemorySize, 9 * MAX_NORM_K));
    CUDA_OK(bitnet__kernels_prepare(16384, 4096));
}

static void random_ternary(int8_t *w, size_t n) {
    for (size_t i = 0; i < n; i++) w[i] = (int8_t)((int)(rnd() % 3) - 1);
}

/* One GEMV shape: int8 input (exact dots and the F32 store), float input (the
   fused norm + quantization); tpb tiles per block. */
static void gemv_case(int n, int k, int tpb = 1) {
    std::vector<int8_t> w((size_t)n * k), xq(k), xq2(k);
    std::vector<uint8_t> packed((size_t)n * k / 4);
    std::vector<float> x(k), norm(k), yref(n);
    std::vector<int> ref(n), ref2(n);
    random_ternary(w.data(), w.size());
    CHECK(bitnet_gpu_pack(w.data(), n, k, packed.data()) == BITNET_OK);
    for (int i = 0; i < k; i++) xq[i] = (int8_t)(rnd() & 0xff);
    const float x_scale = frand(0.5f, 40.0f), w_scale = frand(0.2f, 3.0f);
    ref_dots(w.data(), xq.data(), n, k, ref.data());
    for (int r = 0; r < n; r++) yref[r] = (float)ref[r] * (w_scale / x_scale);
    /* a float input with a few large entries, as residual streams have */
    const float spread = frand(0.01f, 100.0f);
    for (int i = 0; i < k; i++) { x[i] = frand(-1.0f, 1.0f) * spread * (rnd() % 97 == 0 ? 30.0f : 1.0f); norm[i] = frand(0.2f, 2.0f); }
    int sum2;
    ref_norm_quantize(x.data(), norm.data(), k, 1e-5f, xq2.data(), &sum2);
    ref_dots(w.data(), xq2.data(), n, k, ref2.data());

    uint8_t *d_w = dev_upload(packed.data(), packed.size());
    int8_t *d_xq = dev_upload(xq.data(), (size_t)k);
    float *d_xs = dev_upload(&x_scale, 1), *d_x = dev_upload(x.data(), (size_t)k), *d_norm = dev_upload(norm.data(), (size_t)k);
    int *d_i32 = dev_poisoned<int>((size_t)n);
    float *d_y = dev_poisoned<float>((size_t)n);
    bitnet__gemv_args a;
    memset(&a, 0, sizeof a);
    a.w = d_w; a.n = n; a.k = k;
    a.xq = d_xq; a.xq_scale = d_xs;
    a.w_scale[0] = w_scale;
    a.y = d_y; a.y_i32 = d_i32; a.tiles_per_block = tpb;
    CUDA_OK(bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_I32>(a, 0, 0));
    CUDA_OK(bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_F32>(a, 0, 0));
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<int> got = dev_download(d_i32, (size_t)n);
    std::vector<float> goty = dev_download(d_y, (size_t)n);
    int bad = 0;
    for (int r = 0; r < n; r++) bad += got[r] != ref[r];
    CHECKF(bad == 0, "%dx%d, %d tiles a block, int8 input: %d of %d dot products differ (row 0: got %d, want %d)", n, k, tpb, bad, n, got[0],
           ref[0]);
    CHECKF(memcmp(goty.data(), yref.data(), (size_t)n * 4) == 0, "%dx%d, %d tiles a block: scaled outputs differ from the CPU's", n, k, tpb);

    if (k > MAX_NORM_K) goto done;
    CUDA_OK(cudaMemset(d_i32, 0xA5, (size_t)n * 4));
    a.in.x = d_x; a.in.norm = d_norm; a.in.eps = 1e-5f;
    CUDA_OK(bitnet__launch_gemv<BITNET__IN_NORM, BITNET__OUT_I32>(a, 0, 0));
    CUDA_OK(cudaDeviceSynchronize());
    got = dev_download(d_i32, (size_t)n);
    bad = 0;
    for (int r = 0; r < n; r++) bad += got[r] != ref2[r];
    CHECKF(bad == 0, "%dx%d, %d tiles a block, norm+quantize input: %d of %d dot products differ", n, k, tpb, bad, n);
done:
    cudaFree(d_w); cudaFree(d_xq); cudaFree(d_xs); cudaFree(d_x); cudaFree(d_norm); cudaFree(d_i32); cudaFree(d_y);
}

/* The tail: a residual-add GEMV (or gate/up) whose last block quantizes the
   finished vector for the next GEMV, exactly as the CPU quantizes it. */
static void tail_case(int n, int k, int gate_up, int staged, int tpb = 1) {
    std::vector<int8_t> w((size_t)n * k), xq(k);
    std::vector<uint8_t> packed((size_t)n * k / 4);
    const int n_out = gate_up ? n / 2 : n;
    std::vector<float> y0(n_out), y(n_out), norm(n_out);
    std::vector<int> dots(n);
    random_ternary(w.data(), w.size());
    CHECK(bitnet_gpu_pack(w.data(), n, k, packed.data()) == BITNET_OK);
    for (int i = 0; i < k; i++) xq[i] = (int8_t)(rnd() & 0xff);
    for (int i = 0; i < n_out; i++) { y0[i] = frand(-50.0f, 50.0f); norm[i] = frand(0.2f, 2.0f); }
    const float x_scale = frand(20.0f, 60.0f), ws = frand(0.5f, 2.0f);
    ref_dots(w.data(), xq.data(), n, k, dots.data());
    for (int i = 0; i < n_out; i++) {
        if (gate_up) {
            /* gate rows 8t..8t+7 at tile rows 0-7, up at 8-15: here the packed rows
               are taken as they come, so row 16t + j is gate, 16t + 8 + j up */
            float g = (float)dots[16 * (i / 8) + i % 8] * (ws / x_scale), u = (float)dots[16 * (i / 8) + 8 + i % 8] * (ws / x_scale);
            float act = g > 0.0f ? g * g : 0.0f;
            y[i] = act * u;
        } else {
            volatile float v = (float)dots[i] * (ws / x_scale);   /* no contraction into an FMA */
            y[i] = y0[i] + v;
        }
    }
    std::vector<int8_t> want(n_out);
    int want_sum;
    const float want_scale = ref_norm_quantize(y.data(), norm.data(), n_out, 1e-5f, want.data(), &want_sum);

    uint8_t *d_w = dev_upload(packed.data(), packed.size());
    int8_t *d_xq = dev_upload(xq.data(), (size_t)k), *d_q = dev_poisoned<int8_t>((size_t)n_out);
    float *d_xs = dev_upload(&x_scale, 1), *d_y = dev_upload(y0.data(), (size_t)n_out), *d_norm = dev_upload(norm.data(), (size_t)n_out);
    float *d_qs = dev_poisoned<float>(1);
    unsigned *d_cnt;
    CUDA_OK(cudaMalloc(&d_cnt, 4));
    CUDA_OK(cudaMemset(d_cnt, 0, 4));
    bitnet__gemv_args a;
    memset(&a, 0, sizeof a);
    a.w = d_w; a.n = n; a.k = k;
    a.xq = d_xq; a.xq_scale = d_xs;
    a.w_scale[0] = ws; a.w_scale[1] = ws; a.y = d_y; a.relu2 = 1;
    a.tail.in.x = d_y; a.tail.in.norm = d_norm; a.tail.in.eps = 1e-5f; a.tail.n = n_out;
    a.tail.q = d_q; a.tail.scale = d_qs; a.tail.counter = d_cnt; a.tail.staged = staged;
    a.tiles_per_block = tpb;
    if (gate_up) CUDA_OK(bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_GATEUP>(a, 0, 0));
    else CUDA_OK(bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_ADD>(a, 0, 0));
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<int8_t> got = dev_download(d_q, (size_t)n_out);
    std::vector<float> goty = dev_download(d_y, (size_t)n_out);
    float got_scale;
    unsigned cnt;
    CUDA_OK(cudaMemcpy(&got_scale, d_qs, 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(&cnt, d_cnt, 4, cudaMemcpyDeviceToHost));
    CHECKF(memcmp(goty.data(), y.data(), (size_t)n_out * 4) == 0, "tail %d x %d, %d tiles a block: outputs differ", n, k, tpb);
    int bad = 0;
    for (int i = 0; i < n_out; i++) bad += got[i] != want[i];
    CHECKF(bad == 0 && got_scale == want_scale && cnt == 0,
           "tail %d x %d (%s, %s, %d tiles a block): %d of %d values differ, scale %g vs %g, counter %u", n, k, gate_up ? "gate/up" : "add",
           staged ? "staged" : "registers", tpb, bad, n_out, got_scale, want_scale, cnt);
    cudaFree(d_w); cudaFree(d_xq); cudaFree(d_q); cudaFree(d_xs); cudaFree(d_y); cudaFree(d_norm); cudaFree(d_qs); cudaFree(d_cnt);
}

/* Row order of the fused QKV matrix (bitnet.h, bitnet__cuda_layer): fused row f
   -> natural row (q heads, then k heads, then v heads, head_dim rows each). */
static int qkv_natural_row(int f, int head_dim) {
    int tile = f / 16, lr = f % 16, tph = head_dim / 16, head = tile / tph, j = tile % tph;
    return head * head_dim + (lr < 8 ? 8 * j + lr : head_dim / 2 + 8 * j + lr - 8);
}
static int gate_up_natural_row(int f, int n_ff) {
    int tile = f / 16, lr = f % 16;
    return lr < 8 ? 8 * tile + lr : n_ff + 8 * tile + lr - 8;   /* rows >= n_ff: up */
}

static void qkv_case(int n_head, int n_kv, int hd, int k, int pos, int n_ctx, int tpb = 1) {
    const int n = (n_head + 2 * n_kv) * hd, half = hd / 2;
    std::vector<int8_t> w((size_t)n * k), wf((size_t)n * k), xq(k);
    std::vector<uint8_t> packed((size_t)n * k / 4);
    std::vector<float> inv_freq(half);
    std::vector<int> dots(n);
    random_ternary(w.data(), w.size());
    for (int f = 0; f < n; f++) memcpy(&wf[(size_t)f * k], &w[(size_t)qkv_natural_row(f, hd) * k], (size_t)k);
    CHECK(bitnet_gpu_pack(wf.data(), n, k, packed.data()) == BITNET_OK);
    for (int i = 0; i < k; i++) xq[i] = (int8_t)(rnd() & 0xff);
    const float x_scale = frand(1.0f, 20.0f), sc[3] = {frand(0.5f, 2.0f), frand(0.5f, 2.0f), frand(0.5f, 2.0f)};
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(500000.0f, (float)(2 * i) / (float)hd);
    ref_dots(w.data(), xq.data(), n, k, dots.data());

    uint8_t *d_w = dev_upload(packed.data(), packed.size());
    int8_t *d_xq = dev_upload(xq.data(), (size_t)k);
    float *d_xs = dev_upload(&x_scale, 1), *d_if = dev_upload(inv_freq.data(), (size_t)half), *d_q = dev_poisoned<float>((size_t)n_head * hd);
    int *d_pos = dev_upload(&pos, 1);
    const size_t cache = (size_t)n_kv * n_ctx * hd;
    __half *d_k = dev_poisoned<__half>(cache), *d_v = dev_poisoned<__half>(cache);
    bitnet__gemv_args a;
    memset(&a, 0, sizeof a);
    a.w = d_w; a.n = n; a.k = k;
    a.xq = d_xq; a.xq_scale = d_xs;
    a.w_scale[0] = sc[0]; a.w_scale[1] = sc[1]; a.w_scale[2] = sc[2];
    a.y = d_q; a.k_cache = d_k; a.v_cache = d_v; a.pos = d_pos; a.inv_freq = d_if;
    a.n_ctx = n_ctx; a.head_dim = hd; a.n_head = n_head; a.n_head_kv = n_kv; a.tiles_per_block = tpb;
    CUDA_OK(bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_QKV>(a, 0, 0));
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> q = dev_download(d_q, (size_t)n_head * hd);
    std::vector<__half> kc = dev_download(d_k, cache), vc = dev_download(d_v, cache);
    double max_err = 0;
    int bad_cache = 0;
    for (int head = 0; head < n_head + 2 * n_kv; head++) {
        int part = head < n_head ? 0 : head < n_head + n_kv ? 1 : 2;
        for (int i = 0; i < half; i++) {
            float x0 = (float)dots[head * hd + i] * (sc[part] / x_scale), x1 = (float)dots[head * hd + i + half] * (sc[part] / x_scale);
            double y0 = x0, y1 = x1;
            if (part < 2) {
                double ang = (double)((float)pos * inv_freq[i]);
                y0 = x0 * cos(ang) - x1 * sin(ang);
                y1 = x1 * cos(ang) + x0 * sin(ang);
            }
            /* relative to the pair's length: a rotation can cancel one component */
            const double len = sqrt((double)x0 * x0 + (double)x1 * x1) + 1e-6;
            if (part == 0) {
                max_err = fmax(max_err, fabs(q[head * hd + i] - y0) / len);
                max_err = fmax(max_err, fabs(q[head * hd + i + half] - y1) / len);
            } else {
                int kvh = head - n_head - (part == 2 ? n_kv : 0);
                const __half *c = (part == 1 ? kc.data() : vc.data()) + ((size_t)kvh * n_ctx + pos) * hd;
                /* fp16 keeps 11 bits: allow its rounding */
                bad_cache += fabs(__half2float(c[i]) - y0) > fabs(y0) * 1e-3 + len * 1e-5;
                bad_cache += fabs(__half2float(c[i + half]) - y1) > fabs(y1) * 1e-3 + len * 1e-5;
            }
        }
    }
    CHECKF(max_err < 1e-5, "QKV %d/%d heads, head_dim %d, pos %d, %d tiles a block: q relative error %.3g", n_head, n_kv, hd, pos, tpb, max_err);
    CHECKF(bad_cache == 0, "QKV %d/%d heads, head_dim %d, pos %d, %d tiles a block: %d cache values wrong", n_head, n_kv, hd, pos, tpb,
           bad_cache);
    /* other positions of the cache stay untouched */
    int touched = 0;
    for (size_t i = 0; i < cache; i++) {
        size_t p = i / hd % n_ctx;
        if ((int)p != pos) touched += __half_as_ushort(kc[i]) != 0xA5A5 || __half_as_ushort(vc[i]) != 0xA5A5;
    }
    CHECKF(touched == 0, "QKV wrote %d cache values outside position %d", touched, pos);
    cudaFree(d_w); cudaFree(d_xq); cudaFree(d_xs); cudaFree(d_if); cudaFree(d_q); cudaFree(d_pos); cudaFree(d_k); cudaFree(d_v);
}

static void gate_up_case(int n_ff, int k, int relu2, int tpb = 1) {
    const int n = 2 * n_ff;
    std::vector<int8_t> w((size_t)n * k), wf((size_t)n * k), xq(k);
    std::vector<uint8_t> packed((size_t)n * k / 4);
    std::vector<int> dots(n);
    random_ternary(w.data(), w.size());
    for (int f = 0; f < n; f++) memcpy(&wf[(size_t)f * k], &w[(size_t)gate_up_natural_row(f, n_ff) * k], (size_t)k);
    CHECK(bitnet_gpu_pack(wf.data(), n, k, packed.data()) == BITNET_OK);
    for (int i = 0; i < k; i++) xq[i] = (int8_t)(rnd() & 0xff);
    const float x_scale = frand(20.0f, 200.0f), sg = frand(0.5f, 2.0f), su = frand(0.5f, 2.0f);
    ref_dots(w.data(), xq.data(), n, k, dots.data());
    uint8_t *d_w = dev_upload(packed.data(), packed.size());
    int8_t *d_xq = dev_upload(xq.data(), (size_t)k);
    float *d_xs = dev_upload(&x_scale, 1), *d_y = dev_poisoned<float>((size_t)n_ff);
    bitnet__gemv_args a;
    memset(&a, 0, sizeof a);
    a.w = d_w; a.n = n; a.k = k;
    a.xq = d_xq; a.xq_scale = d_xs;
    a.w_scale[0] = sg; a.w_scale[1] = su; a.y = d_y; a.relu2 = relu2; a.tiles_per_block = tpb;
    CUDA_OK(bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_GATEUP>(a, 0, 0));
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> y = dev_download(d_y, (size_t)n_ff);
    int bad = 0;
    for (int i = 0; i < n_ff; i++) {
        float g = (float)dots[i] * (sg / x_scale), u = (float)dots[n_ff + i] * (su / x_scale);
        if (relu2) {
            float act = g > 0.0f ? g * g : 0.0f;
            volatile float want = act * u;   /* no contraction: the kernel rounds each product */
            bad += y[i] != want;
        } else {
            double want = (double)g / (1.0 + exp(-(double)g)) * u;
            bad += fabs(y[i] - want) > 1e-5 * (fabs(want) + 1e-3);
        }
    }
    CHECKF(bad == 0, "gate/up %d x %d (%s, %d tiles a block): %d of %d outputs wrong", n, k, relu2 ? "relu2" : "silu", tpb, bad, n_ff);
    cudaFree(d_w); cudaFree(d_xq); cudaFree(d_xs); cudaFree(d_y);
}

/* Attention at n = pos + 1 positions over a random fp16 cache, unit_heads query
   heads a block (0: the whole group of a KV head). */
static void attention_case(int n_head, int n_kv, int hd, int n_ctx, const std::vector<int> &positions, int unit_heads = 0) {
    const int G = n_head / n_kv, units = n_head / (unit_heads ? unit_heads : G);
    const size_t cache = (size_t)n_kv * n_ctx * hd;
    std::vector<__half> kc(cache), vc(cache);
    std::vector<float> q((size_t)n_head * hd);
    for (size_t i = 0; i < cache; i++) { kc[i] = __float2half(frand(-2.0f, 2.0f)); vc[i] = __float2half(frand(-2.0f, 2.0f)); }
    for (size_t i = 0; i < q.size(); i++) q[i] = frand(-1.5f, 1.5f);
    int splits = (n_ctx + 255) / 256;
    if (splits < 16) splits = (n_ctx + 63) / 64 < 16 ? (n_ctx + 63) / 64 : 16;
    __half *d_k = dev_upload(kc.data(), cache), *d_v = dev_upload(vc.data(), cache);
    float *d_q = dev_upload(q.data(), q.size()), *d_out = dev_poisoned<float>(q.size());
    float *d_po = dev_poisoned<float>((size_t)n_kv * splits * G * hd);
    float2 *d_ml = dev_poisoned<float2>((size_t)n_kv * splits * G);
    unsigned *d_cnt;
    int *d_pos;
    std::vector<float> norm(q.size());
    for (auto &v : norm) v = frand(0.2f, 2.0f);
    float *d_norm = dev_upload(norm.data(), norm.size()), *d_qs = dev_poisoned<float>(1);
    int8_t *d_xq = dev_poisoned<int8_t>(q.size());
    CUDA_OK(cudaMalloc(&d_cnt, (size_t)(units + 1) * 4));
    CUDA_OK(cudaMemset(d_cnt, 0, (size_t)(units + 1) * 4));
    CUDA_OK(cudaMalloc(&d_pos, 4));
    for (int pos : positions) {
        const int n = pos + 1;
        bitnet__attn_args a;
        memset(&a, 0, sizeof a);
        a.q = d_q; a.k_cache = d_k; a.v_cache = d_v; a.out = d_out; a.part_o = d_po; a.part_ml = d_ml; a.counters = d_cnt;
        a.pos = d_pos; a.n_ctx = n_ctx; a.head_dim = hd; a.n_head = n_head; a.n_head_kv = n_kv; a.unit_heads = unit_heads;
        a.scale = 1.0f / sqrtf((float)hd);
        a.min_chunk = pos & 2 ? 256 : 64;   /* one slice up to 256 positions, or several */
        a.tail.in.x = d_out; a.tail.in.norm = d_norm; a.tail.in.eps = 1e-5f; a.tail.n = (int)q.size();
        a.tail.q = d_xq; a.tail.scale = d_qs; a.tail.counter = d_cnt + units;
        a.tail.staged = (pos & 1) && q.size() <= BITNET__ATT_MAX_GROUP * 512;   /* both ways of reading the output again */
        CUDA_OK(cudaMemcpy(d_pos, &pos, 4, cudaMemcpyHostToDevice));
        std::vector<float> first;
        for (int run = 0; run < 2; run++) {
            CUDA_OK(cudaMemset(d_out, 0xA5, q.size() * 4));
            bitnet__attention_kernel_for(n_head, n_kv, hd)<<<dim3((unsigned)units, (unsigned)splits), BITNET__ATT_THREADS>>>(a);
            CUDA_OK(cudaGetLastError());
            CUDA_OK(cudaDeviceSynchronize());
            std::vector<float> out = dev_download(d_out, q.size());
            if (run == 1) {
                CHECKF(memcmp(out.data(), first.data(), out.size() * 4) == 0, "attention n=%d: two runs differ", n);
                break;
            }
            first = out;
            {
                /* the tail quantized exactly this output */
                std::vector<int8_t> want(q.size()), got = dev_download(d_xq, q.size());
                int want_sum;
                float got_scale, want_scale = ref_norm_quantize(out.data(), norm.data(), (int)q.size(), 1e-5f, want.data(), &want_sum);
                CUDA_OK(cudaMemcpy(&got_scale, d_qs, 4, cudaMemcpyDeviceToHost));
                CHECKF(got == want && got_scale == want_scale, "attention n=%d: the tail's quantization differs", n);
            }
            double max_err = 0, max_ref = 0;
            for (int h = 0; h < n_head; h++) {
                const int kvh = h / G;
                std::vector<double> sc(n);
                double m = -1e300, l = 0;
                for (int p = 0; p < n; p++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += (double)q[(size_t)h * hd + i] * __half2float(kc[((size_t)kvh * n_ctx + p) * hd + i]);
                    sc[p] = d / sqrt((double)hd);
                    m = fmax(m, sc[p]);
                }
                for (int p = 0; p < n; p++) { sc[p] = exp(sc[p] - m); l += sc[p]; }
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int p = 0; p < n; p++) o += sc[p] / l * __half2float(vc[((size_t)kvh * n_ctx + p) * hd + i]);
                    max_err = fmax(max_err, fabs(out[(size_t)h * hd + i] - o));
                    max_ref = fmax(max_ref, fabs(o));
                }
            }
            /* float32 sums of up to n terms of size ~1: a few ulp times log n */
            CHECKF(max_err <= 2e-5 * (max_ref + 1e-2), "attention %d/%d heads (%d a block), head_dim %d, n=%d: max error %.3g (max |out| %.3g)",
                   n_head, n_kv, n_head / units, hd, n, max_err, max_ref);
        }
    }
    std::vector<unsigned> cnt = dev_download(d_cnt, (size_t)units + 1);
    int nonzero = 0;
    for (unsigned c : cnt) nonzero += c != 0;
    CHECKF(nonzero == 0, "attention left %d split counters nonzero", nonzero);
    cudaFree(d_k); cudaFree(d_v); cudaFree(d_q); cudaFree(d_out); cudaFree(d_po); cudaFree(d_ml); cudaFree(d_cnt); cudaFree(d_pos);
    cudaFree(d_norm); cudaFree(d_qs); cudaFree(d_xq);
}

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* The LM head over a random table: logits against float64, the int8 head exactly
   against the CPU's int8 arithmetic, the argmax, the feed of the next step. */
static void head_case(int n_vocab, int k, int type, int int8_head) {
    const int f16 = type == BITNET__TABLE_F16, f32 = type == BITNET__TABLE_F32;
    std::vector<uint16_t> table((size_t)n_vocab * k);
    std::vector<float> x(k), norm(k), tf((size_t)n_vocab * k);
    for (size_t i = 0; i < table.size(); i++) {
        float v = frand(-0.1f, 0.1f);
        table[i] = f16 ? __half_as_ushort(__float2half(v)) : f32_to_bf16(v);
        tf[i] = f32 ? v : f16 ? __half2float(__ushort_as_half(table[i])) : bitnet__bf16_to_f32(table[i]);
    }
    for (int i = 0; i < k; i++) { x[i] = frand(-3.0f, 3.0f); norm[i] = frand(0.5f, 1.5f); }
    const int pos = 7, n_ctx = 16;
    /* hidden state as the CPU computes it */
    double ss = 0;
    for (int i = 0; i < k; i++) ss += (double)x[i] * x[i];
    const float inv_rms = 1.0f / sqrtf((float)(ss / k) + 1e-5f);
    std::vector<float> hidden(k);
    for (int i = 0; i < k; i++) hidden[i] = norm[i] * (x[i] * inv_rms);

    void *d_table = f32 ? (void *)dev_upload(tf.data(), tf.size()) : (void *)dev_upload(table.data(), table.size());
    float *d_x = dev_upload(x.data(), (size_t)k), *d_norm = dev_upload(norm.data(), (size_t)k);
    float *d_logits = dev_poisoned<float>((size_t)n_vocab);
    int8_t *d_w8 = NULL;
    float *d_w8s = NULL;
    if (int8_head) {
        CUDA_OK(cudaMalloc(&d_w8, (size_t)n_vocab * k));
        CUDA_OK(cudaMalloc(&d_w8s, (size_t)n_vocab * 4));
        bitnet__head_int8_build_kernel<<<(n_vocab + 7) / 8, 256>>>(d_table, type, n_vocab, k, d_w8, d_w8s);
        CUDA_OK(cudaGetLastError());
    }
    int per_sm = 0, n_sm = 0;
    CUDA_OK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    CUDA_OK(int8_head ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, bitnet__head_kernel<1>, BITNET__HEAD_THREADS, (size_t)k)
                      : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, bitnet__head_kernel<0>, BITNET__HEAD_THREADS, (size_t)k * 4));
    int blocks = per_sm * n_sm;
    if (blocks > (n_vocab + 7) / 8) blocks = (n_vocab + 7) / 8;
    float2 *d_best = dev_poisoned<float2>((size_t)blocks);
    unsigned *d_cnt;
    int *d_tok = dev_poisoned<int>(1), *d_pos = dev_upload(&pos, 1), *d_tokens = dev_poisoned<int>((size_t)n_ctx);
    CUDA_OK(cudaMalloc(&d_cnt, 4));
    CUDA_OK(cudaMemset(d_cnt, 0, 4));
    bitnet__head_args a;
    memset(&a, 0, sizeof a);
    a.w = int8_head ? NULL : d_table; a.w_type = type; a.w8 = d_w8; a.w8_scale = d_w8s;
    a.n_vocab = n_vocab; a.k = k; a.x = d_x; a.norm = d_norm; a.eps = 1e-5f; a.logits = d_logits;
    a.block_best = d_best; a.counter = d_cnt; a.token = d_tok; a.tokens = d_tokens; a.pos = d_pos; a.n_ctx = n_ctx;
    if (int8_head) bitnet__head_kernel<1><<<blocks, BITNET__HEAD_THREADS, (size_t)k>>>(a);
    else bitnet__head_kernel<0><<<blocks, BITNET__HEAD_THREADS, (size_t)k * 4>>>(a);
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> logits = dev_download(d_logits, (size_t)n_vocab);
    int tok, new_pos, fed;
    CUDA_OK(cudaMemcpy(&tok, d_tok, 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(&new_pos, d_pos, 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(&fed, d_tokens + pos + 1, 4, cudaMemcpyDeviceToHost));
    int bad = 0;
    if (!int8_head) {
        double max_err = 0, max_ref = 0;
        for (int r = 0; r < n_vocab; r++) {
            double d = 0;
            for (int i = 0; i < k; i++) d += (double)tf[(size_t)r * k + i] * hidden[i];
            max_err = fmax(max_err, fabs(logits[r] - d));
            max_ref = fmax(max_ref, fabs(d));
        }
        CHECKF(max_err <= 1e-5 * (max_ref + 1e-3), "LM head %s %d x %d: max error %.3g (max |logit| %.3g)", f32 ? "f32" : f16 ? "f16" : "bf16", n_vocab,
               k, max_err, max_ref);
    } else {
        /* the CPU's int8 head and activation quantization, exactly */
        std::vector<int8_t> hq(k);
        float amax = 0.0f;
        for (int i = 0; i < k; i++) amax = fmaxf(amax, fabsf(hidden[i]));
        const float xs = 127.0f / fmaxf(amax, 1e-5f);
        for (int i = 0; i < k; i++) hq[i] = (int8_t)fminf(fmaxf(rintf(hidden[i] * xs), -128.0f), 127.0f);
        for (int r = 0; r < n_vocab; r++) {
            float ra = 0.0f;
            for (int i = 0; i < k; i++) ra = fmaxf(ra, fabsf(tf[(size_t)r * k + i]));
            const float s = ra > 0.0f ? 127.0f / ra : 0.0f;
            int acc = 0;
            for (int i = 0; i < k; i++) acc += (int)fminf(fmaxf(rintf(tf[(size_t)r * k + i] * s), -127.0f), 127.0f) * hq[i];
            float want = (float)acc * ((ra / 127.0f) * (1.0f / xs));
            bad += logits[r] != want;
        }
        CHECKF(bad == 0, "int8 LM head %d x %d: %d of %d logits differ from the CPU's", n_vocab, k, bad, n_vocab);
    }
    int best = 0;
    for (int r = 1; r < n_vocab; r++)
        if (logits[r] > logits[best]) best = r;
    CHECKF(tok == best, "LM head argmax %d, want %d", tok, best);
    CHECKF(new_pos == pos + 1 && fed == best, "LM head: position %d (want %d), fed token %d (want %d)", new_pos, pos + 1, fed, best);
    cudaFree(d_table); cudaFree(d_x); cudaFree(d_norm); cudaFree(d_logits); cudaFree(d_w8); cudaFree(d_w8s); cudaFree(d_best);
    cudaFree(d_cnt); cudaFree(d_tok); cudaFree(d_pos); cudaFree(d_tokens);
}

/* Sampling candidates: the best logits after the repetition penalty, in the CPU
   sampler's rank order (bitnet__select_top on the same penalized values), and the
   log-sum-exp.  The logits have ties (a few levels), NaN, infinities and both
   zeros; some penalized ids lie outside the vocabulary. */
static void candidates_case(int n_vocab, int n_pen, float penalty, float temperature) {
    std::vector<float> logits(n_vocab), vals(n_vocab);
    std::vector<int> pen, ids(n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        const uint32_t r = rnd() % 100;
        logits[i] = r < 30 ? (float)(int)(rnd() % 8) * 0.5f - 1.0f           /* ties */
                  : r < 31 ? (rnd() & 1 ? -0.0f : 0.0f)
                  : r < 32 ? (rnd() & 1 ? -INFINITY : NAN)
                  : frand(-12.0f, 12.0f);
    }
    std::vector<char> taken(n_vocab, 0);
    for (int j = 0; j < n_pen; j++) {
        int t;
        if (j % 17 == 5) t = j % 2 ? n_vocab + j : -1 - j;   /* outside: ignored */
        else
            do t = (int)(rnd() % (uint32_t)n_vocab);
            while (taken[t]);
        if (t >= 0 && t < n_vocab) taken[t] = 1;
        pen.push_back(t);
    }
    /* the CPU sampler's view */
    vals = logits;
    for (int t : pen)
        if (t >= 0 && t < n_vocab) vals[t] = bitnet__penalize(logits[t], penalty);
    for (int i = 0; i < n_vocab; i++) ids[i] = i;
    const int c = n_vocab < BITNET__CAND ? n_vocab : BITNET__CAND;
    bitnet__select_top(vals.data(), ids.data(), n_vocab, c);
    const float inv_t = 1.0f / temperature;
    double xmax = -INFINITY, z = 0;
    for (int i = 0; i < n_vocab; i++) {
        volatile float x = vals[i] * inv_t;
        if (x == x) xmax = fmax(xmax, (double)x);
    }
    for (int i = 0; i < n_vocab; i++) {
        volatile float x = vals[i] * inv_t;
        if (x == x) z += exp((double)x - xmax);
    }
    const double want_lse = xmax + log(z);

    const int blocks = bitnet__cand_blocks(n_vocab);
    float *d_logits = dev_upload(logits.data(), (size_t)n_vocab);
    std::vector<int> pen_dev = pen;
    pen_dev.push_back(0);   /* never empty */
    int *d_pen = dev_upload(pen_dev.data(), pen_dev.size());
    bitnet__key *keys[2] = {dev_poisoned<bitnet__key>((size_t)blocks * BITNET__CAND), dev_poisoned<bitnet__key>((size_t)blocks * BITNET__CAND)};
    double2 *d_lse = dev_poisoned<double2>((size_t)blocks);
    bitnet__cand_out *d_out = dev_poisoned<bitnet__cand_out>(1), out;
    CUDA_OK(bitnet__enqueue_candidates(d_logits, n_vocab, d_pen, n_pen, penalty, inv_t, keys, d_lse, d_out, 0));
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(&out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    int bad = 0, first_bad = -1;
    for (int j = 0; j < c; j++) {
        /* NaN ranks last; among NaNs the CPU's order is unspecified (the GPU's: by id) */
        const float a = out.logits[j], b = vals[ids[j]];
        if ((b == b && out.ids[j] != ids[j]) || !(a == b || (a != a && b != b))) {
            bad++;
            if (first_bad < 0) first_bad = j;
        }
    }
    CHECKF(bad == 0, "candidates, vocabulary %d, %d penalized: %d of %d differ from the CPU's ranking (first at rank %d: id %d, want %d)",
           n_vocab, n_pen, bad, c, first_bad, first_bad >= 0 ? out.ids[first_bad] : 0, first_bad >= 0 ? ids[first_bad] : 0);
    CHECKF(fabs(out.lse - want_lse) <= 1e-12 * fmax(1.0, fabs(want_lse)), "candidates, vocabulary %d: log-sum-exp %.17g, want %.17g", n_vocab,
           out.lse, want_lse);
    cudaFree(d_logits); cudaFree(d_pen); cudaFree(keys[0]); cudaFree(keys[1]); cudaFree(d_lse); cudaFree(d_out);
}

/* Blocks of several consecutive tiles: as many as the library chooses for the
   device's SM count, and splits where the last block is short of tiles. */
static void multi_tile_cases(void) {
    int n_sm = 0;
    CUDA_OK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    static const int s[][2] = {{13824, 2560}, {20480, 3200}, {4800, 3200}, {2560, 6912}};
    for (auto &v : s) {
        const int t = bitnet__gemv_tiles_per_block(v[0], v[1], BITNET__IN_INT8, n_sm, 1);
        gemv_case(v[0], v[1], t > 1 ? t : 2);
    }
    /* the last block short of tiles (n / 16 not a multiple of the tiles a block) */
    static const int e[][3] = {{16 * 7, 2560, 3}, {16 * 9, 64, 8}, {16, 32, 2}, {48, 2080, 2}, {16 * 5, 4096, 2}};
    for (auto &v : e) gemv_case(v[0], v[1], v[2]);
    /* the choice: 4 for the 2B4T gate/up on 132 SMs, 3 where 5 would exceed the shared memory, 1 where one tile does */
    const int t[5] = {bitnet__gemv_tiles_per_block(13824, 2560, BITNET__IN_INT8, 132, 1), bitnet__gemv_tiles_per_block(2560, 2560, BITNET__IN_INT8, 132, 1),
                      bitnet__gemv_tiles_per_block(20480, 3200, BITNET__IN_INT8, 132, 1), bitnet__gemv_tiles_per_block(16 * 1000, 9000, BITNET__IN_INT8, 10, 1),
                      bitnet__gemv_tiles_per_block(13824, 2560, BITNET__IN_INT8, 132, 0)};
    CHECKF(t[0] == 4 && t[1] == 1 && t[2] == 3 && t[3] == 1 && t[4] == 1, "tiles per block: %d %d %d %d %d (want 4 1 3 1 1)", t[0], t[1], t[2], t[3], t[4]);
}

/* every attention case, for the chain's kernel (bitnet__attention) */
static void attention_test(void) {
    TEST("attention: one slice, several slices, GQA") {
        attention_case(20, 5, 128, 4096, {0, 1, 63, 64, 128, 1023, 1024, 3999, 4095});
        attention_case(4, 2, 32, 300, {0, 70, 299});
        attention_case(8, 1, 256, 600, {599});
        attention_case(4, 4, 16, 64, {0, 40, 63});
        attention_case(8, 1, 64, 64, {0, 33, 63});   /* 8 query heads of 64 dimensions per KV head, one slice */
        attention_case(4, 1, 16, 70000, {69999});   /* 274 slices: more than the combine holds in shared memory */
        /* units of fewer query heads than the group (the fused step at short contexts) */
        attention_case(20, 5, 128, 4096, {0, 63, 128, 1024}, 1);
        attention_case(20, 5, 128, 4096, {0, 128, 1024}, 2);
        attention_case(8, 1, 256, 600, {0, 599}, 2);
        attention_case(4, 1, 16, 70000, {69999}, 1);
    }
}

int main(int argc, char **argv) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP gpu_kernels: no CUDA device\n");
        return 0;
    }
    prepare_test_kernels();
    if (argc > 1 && !strcmp(argv[1], "attention")) {   /* (a mutant's run: tests/gpu.sh) */
        attention_test();
        return TEST_EXIT();
    }
    TEST("RMSNorm + quantization of a block: each way, identical to the CPU's") {
        for (int n : {2560, 6912, 1536 + 4, 64, 8}) {
            for (int kind = 0; kind < 6; kind++) norm_case(n, kind, false);
            for (int kind = 0; kind < 3; kind++) norm_case(n, kind, true);
        }
    }
    if (argc > 1 && !strcmp(argv[1], "norm")) return TEST_EXIT();   /* (the mutants' runs: tests/gpu.sh) */
    TEST("W2A8 GEMV: several tiles a block, exact") multi_tile_cases();
    if (argc > 1 && !strcmp(argv[1], "tiles")) return TEST_EXIT();
    TEST("W2A8 GEMV: 2B4T shapes, exact") {
        static const int s[][2] = {{3840, 2560}, {2560, 2560}, {13824, 2560}, {2560, 6912}};
        for (auto &v : s) gemv_case(v[0], v[1]);
    }
    TEST("W2A8 GEMV: the seed's shapes, exact") {
        static const int s[][2] = {{3200, 3200}, {4800, 3200}, {3200, 10240}, {20480, 3200}};
        for (auto &v : s) gemv_case(v[0], v[1]);
    }
    TEST("W2A8 GEMV: edge shapes, exact") {
        /* smallest tile, odd chunk counts, the 128/256-thread switch, a K that needs
           more than 48 KB of shared memory */
        static const int s[][2] = {{16, 32}, {16, 48 + 16}, {32, 96}, {48, 2080}, {112, 4096}, {16, 4128}, {64, 12288}, {16, 32768}, {4096, 32}};
        for (auto &v : s) gemv_case(v[0], v[1]);
    }
    TEST("tails: the next GEMV's input quantized by the last block, exact") {
        for (int staged = 0; staged < 2; staged++) {
            tail_case(2560, 2560, 0, staged);      /* one round of registers */
            tail_case(2560, 6912, 0, staged);
            tail_case(13824, 2560, 1, staged);     /* 6912 values: several rounds with 128 threads */
            tail_case(16, 32, 0, staged);
            tail_case(32, 4096 + 32, 1, staged);
            tail_case(13824, 2560, 1, staged, 4);  /* the decode chain's gate/up on 132 SMs */
            tail_case(16 * 11, 1024, 0, staged, 3);
        }
    }
    TEST("QKV epilogue: RoPE, q buffer, fp16 cache append") {
        qkv_case(20, 5, 128, 2560, 4000, 4096);
        qkv_case(4, 2, 32, 128, 0, 8);
        qkv_case(4, 4, 16, 64, 5, 6);
        qkv_case(8, 1, 256, 256, 77, 100);
        qkv_case(20, 5, 128, 2560, 4000, 4096, 3);
        qkv_case(4, 2, 32, 128, 7, 8, 5);
    }
    TEST("gate/up epilogue") {
        gate_up_case(6912, 2560, 1);
        gate_up_case(64, 96, 1);
        gate_up_case(256, 128, 0);
        gate_up_case(6912, 2560, 1, 4);
        gate_up_case(56, 96, 1, 3);
    }
    attention_test();
    TEST("LM head: bf16 / f16 / f32 logits, argmax, next-step feed") {
        head_case(128256, 2560, BITNET__TABLE_BF16, 0);
        head_case(1000, 128, BITNET__TABLE_F16, 0);
        head_case(333, 64, BITNET__TABLE_BF16, 0);
        head_case(5000, 2560, BITNET__TABLE_F32, 0);
        head_case(333, 96, BITNET__TABLE_F32, 0);
    }
    TEST("sampling candidates: the CPU sampler's ranking, log-sum-exp") {
        candidates_case(128256, 64, 1.3f, 0.8f);   /* three rounds */
        candidates_case(128256, 0, 1.0f, 1.0f);
        candidates_case(300000, 1024, 1.1f, 1.7f); /* 74 blocks: a round of 5 */
        candidates_case(5000, 40, 0.7f, 0.5f);     /* a penalty below 1 raises */
        candidates_case(37, 10, 2.0f, 1.0f);       /* fewer logits than candidates */
        candidates_case(4096, 3, 1.5f, 0.3f);      /* exactly one block */
    }
    TEST("LM head: int8, exact") {
        head_case(128256, 2560, BITNET__TABLE_BF16, 1);
        head_case(1000, 128, BITNET__TABLE_BF16, 1);
        head_case(1000, 128, BITNET__TABLE_F32, 1);   /* built from f32 rows */
    }
    return TEST_EXIT();
}
