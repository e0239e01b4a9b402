/* bitnet_cuda.cu - the CUDA backend of bitnet.h: W2A8 kernels and the whole decode step.
   Same licence as bitnet.h (MIT or public domain, see the end of bitnet.h).

   Compile with nvcc next to the C file that defines BITNET_IMPLEMENTATION and
   BITNET_CUDA (see bitnet.h, BUILD).  Needs only the CUDA runtime.

   HOW A DECODE STEP RUNS
   One step (one token at one position) is captured once in a CUDA graph and
   replayed; the token and the position live in device memory, so a replay needs
   no host work besides a 4-byte copy.  Per layer, five phases:

     1. QKV      the fused Q/K/V projection, RoPE, and the K/V append to the cache
                 (the epilogue).  Layer 0 starts from the token's embedding row.
     2. attention  over the cache, split across the sequence; the last block of a
                 unit (a KV head's query heads, or in the fused step at short
                 contexts fewer of them) combines the splits.
     3. O        the projection and the residual add.
     4. gate/up  the fused gate/up projection and the act(gate) * up epilogue.
     5. down     the projection and the residual add.

   then the LM head (final RMSNorm, bf16 or int8 rows, the logits, their argmax,
   which it also feeds to the next step).  Every BitLinear's input is RMS-
   normalized and quantized to int8 exactly as the CPU path does it.  The layers
   run in one of two ways, which compute the same numbers bit for bit:

   THE FUSED STEP (the default on Hopper)
   bitnet__fused_layers_kernel runs all layers in one cooperative launch of one
   256-thread block per SM, the five phases separated by grid-wide barriers.
   Block b owns the same tiles of each matrix in every layer and keeps them in
   shared memory: its tiles of layer l + 1 are copied in (TMA bulk copies) while
   layer l runs, so a phase finds its weights there.  Every block normalizes and
   quantizes a phase's input itself.  tests/PERF.md has its profile.

   THE KERNEL CHAIN (older GPUs, or where the fused step cannot run)
   A kernel per phase.  Each kernel's last block to finish normalizes and
   quantizes the vector it produced for the next BitLinear (a "tail",
   bitnet__tail), so the next kernel's blocks only copy k bytes of int8.  On
   Hopper every kernel is launched with programmatic dependent launch: it starts
   while its predecessor still runs and fetches its weights into shared memory
   before waiting for the predecessor's results (griddepcontrol.wait); see
   bitnet__launch.  On older GPUs launches simply serialize.
   bitnet__cuda_context_set_overlap picks either for benchmarks and tests.

   SAMPLING
   Greedy decoding ends in the LM head's argmax; sampled decoding runs a few more
   kernels after the step that return the best logits and the log-sum-exp
   (bitnet__cuda_candidates), so that no step copies all the logits to the host.

   THE W2A8 GEMV
   One thread block computes one 16-row tile of W x (layout: bitnet.h, "Host-side
   packing for the GPU kernels"), or a few consecutive tiles where the grid would
   otherwise leave no room for the next kernel's blocks (bitnet__gemv_tiles_per_block).
   A tile is one contiguous run of 4k bytes that the block copies to shared memory
   before it waits for its input.  Thread t takes
   4-row group t % 4 of chunks t / 4, t / 4 + T / 4, ...: one 16-byte weight load and
   one 16-byte activation load feed 16 dp4a.  The 2-bit codes are value + 1, so the
   dot product is sum(code * x) - sum(x), exact in int32; each 2-bit plane of a word
   is used where it sits (masked, not shifted), its sum 4^p times too large, and the
   powers are divided out once per row (bitnet__dot16_planes).

   PRECISION
   The int8 activations are computed exactly as the CPU path computes them, so the
   integer dot products match it bit for bit; the KV cache is fp16 (compile with
   -DBITNET_CUDA_KV_F32 for float32, twice the memory: tests/gpu.sh uses that
   build to check the rest of the path against the CPU to ~1e-7).

   ERRORS
   Every CUDA call is checked; a failure returns a BITNET_E_* code with a message
   in the caller's bitnet_error and leaves the process usable (except after a
   fault that destroys the CUDA context itself, which CUDA reports as such). */
#define BITNET_CUDA_SOURCE
#include "bitnet.h"

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===========================================================================
   Device helpers
   =========================================================================== */

/* Programmatic dependent launch: let the next kernel in the stream start now, and
   wait until the previous kernel has finished and its writes are visible. */
__device__ __forceinline__ void bitnet__pdl_launch_next(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void bitnet__pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* Profiling: the GPU's clock in ns. */
__device__ __forceinline__ unsigned long long bitnet__globaltimer(void) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* 16 bytes global -> shared without a register round trip (cp.async, sm_80+). */
__device__ __forceinline__ void bitnet__copy16_async(void *smem, const void *gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
#else
    *(uint4 *)smem = __ldcs((const uint4 *)gmem);
#endif
}
__device__ __forceinline__ void bitnet__copy_async_commit(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
/* Waits until at most `pending` committed groups of copies are still in flight. */
template <int pending> __device__ __forceinline__ void bitnet__copy_async_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(pending) : "memory");
#endif
}

/* Hint: bring [p, p + bytes) into L2 (whole 128-byte lines, spread over the block). */
__device__ __forceinline__ void bitnet__prefetch_l2(const void *p, size_t bytes) {
    const char *c = (const char *)p;
    for (size_t off = (size_t)threadIdx.x * 128; off < bytes; off += (size_t)blockDim.x * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

struct bitnet__op_add {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct bitnet__op_max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/* Reduces v over the block (blockDim.x a multiple of 32, at most 1024); every
   thread gets the result.  The order of the operations is fixed, so the result
   is the same on every run.  scratch: 32 elements of shared memory. */
template <typename T, typename Op>
__device__ T bitnet__block_reduce(T v, Op op, T *scratch) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    for (int o = 16; o; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads(); /* an earlier reduction may still read scratch */
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[0];
    for (int w = 1; w < n_warps; w++) v = op(v, scratch[w]);
    return v;
}

/* Bytes per element of a BITNET__TABLE_* type (bitnet.h). */
__host__ __device__ __forceinline__ size_t bitnet__table_elem(int type) { return type == BITNET__TABLE_F32 ? 4 : 2; }

/* Element i of a bf16, f16 or f32 vector as a float (exact). */
__device__ __forceinline__ float bitnet__table_float(const void *p, size_t i, int type) {
    if (type == BITNET__TABLE_F32) return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return type == BITNET__TABLE_F16 ? __half2float(__ushort_as_half(h)) : __uint_as_float((uint32_t)h << 16);
}

/* The KV cache holds fp16.  Built with -DBITNET_CUDA_KV_F32 it holds float32
   instead (twice the memory and attention traffic): tests/gpu.sh uses that build
   to show that the rest of the GPU path matches the CPU's float32 cache closely. */
#ifdef BITNET_CUDA_KV_F32
typedef float bitnet__kv;
typedef float4 bitnet__kv4;   /* 4 consecutive cache elements, as loaded */
typedef float2 bitnet__kv2;
__device__ __forceinline__ bitnet__kv bitnet__to_cache(float v) { return v; }
__device__ __forceinline__ float4 bitnet__kv4_float(bitnet__kv4 v) { return v; }
__device__ __forceinline__ float2 bitnet__kv2_float(bitnet__kv2 v) { return v; }
#else
typedef __half bitnet__kv;
typedef uint2 bitnet__kv4;
typedef __half2 bitnet__kv2;
/* Saturating: a value beyond the fp16 range becomes +-65504 instead of infinity
   (which would turn the attention into NaN). */
__device__ __forceinline__ bitnet__kv bitnet__to_cache(float v) { return __float2half_rn(fminf(fmaxf(v, -65504.0f), 65504.0f)); }
__device__ __forceinline__ float4 bitnet__kv4_float(bitnet__kv4 v) {
    const float2 a = __half22float2(*(const __half2 *)&v.x), b = __half22float2(*(const __half2 *)&v.y);
    return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float2 bitnet__kv2_float(bitnet__kv2 v) { return __half22float2(v); }
#endif

/* ===========================================================================
   Quantization of a BitLinear input, in a thread block
   ===========================================================================
   As the CPU path computes it (bitnet.h, bitnet__norm_quantize_row), so that the
   int8 activations come out identical for identical input:
     M = max |fl(w x)| (NaN skipped),  inv_rms = 1 / sqrtf((float)(sum of x^2 in double / n) + eps)
     inv_rms M >= 1e-5:  s = 127 / (inv_rms M),  q = clamp(rint(fl(w x) fl(127 / M)))
     otherwise:          s = 127 / 1e-5,         q = clamp(rint(fl(w x) fl(inv_rms 127e5)))
   The int8 values depend on the products w x and their max only, which is exact in
   any order: so the statistics can be gathered by whoever produced the vector
   (bitnet__quantize_parts_block), and the sum of squares, whose order differs from
   the CPU's, moves the scale by a rounding at most.
   x is a float vector or (embed) the current token's row of a bf16/f16/f32
   table.  Writes q to shared memory (natural order) and returns s. */
struct bitnet__quant_in {
    const float *x;            /* n floats, or NULL: read the table row */
    const void *table;         /* rows of n, of type table_type (BITNET__TABLE_*) */
    int table_type;
    const int *tokens, *pos;   /* device: the row is tokens[*pos] */
    const float *norm;         /* RMSNorm weight, n floats (the GEMV stages it in shared memory) */
    float eps;
    float *copy_to;            /* or NULL: where the input is stored as loaded (the residual stream) */
};

__device__ __forceinline__ float4 bitnet__load_in4(const bitnet__quant_in &in, const void *row, int i) {
    if (in.x) return __ldcg((const float4 *)(in.x + i));
    if (in.table_type == BITNET__TABLE_F32) return *(const float4 *)((const float *)row + i);
    uint2 raw = *(const uint2 *)((const uint16_t *)row + i);
    float4 v;
    if (in.table_type == BITNET__TABLE_F16) {
        v.x = __half2float(__ushort_as_half((uint16_t)raw.x)); v.y = __half2float(__ushort_as_half((uint16_t)(raw.x >> 16)));
        v.z = __half2float(__ushort_as_half((uint16_t)raw.y)); v.w = __half2float(__ushort_as_half((uint16_t)(raw.y >> 16)));
    } else {
        v.x = __uint_as_float(raw.x << 16); v.y = __uint_as_float(raw.x & 0xffff0000u);
        v.z = __uint_as_float(raw.y << 16); v.w = __uint_as_float(raw.y & 0xffff0000u);
    }
    return v;
}

/* clamp(rint(v f)) as the CPU computes it, without a conversion instruction (they
   run at a quarter of the rate of a multiply or an add, and quantizing a vector
   took two per value: tests/gpu_bench_norm.cu): clamped to [-128, 127] first (a
   NaN becomes -128, as through rintf), adding 1.5 * 2^23 rounds to an integer,
   ties to even, which then sits in the low bits: the low byte is the int8. */
__device__ __forceinline__ unsigned bitnet__quant_bits(float v, float f) {
    const float c = fminf(fmaxf(__fmul_rn(v, f), -128.0f), 127.0f);
    return __float_as_uint(__fadd_rn(c, 12582912.0f));
}
__device__ __forceinline__ int bitnet__quant1(float v, float f) { return (int)bitnet__quant_bits(v, f) - 0x4B400000; }

/* The multiplier f of the int8 values and the scale s, from the sum of squares and
   M = max |w x| (above). */
__device__ __forceinline__ float bitnet__quant_factor(double ss, float m, int n, float eps, float *scale) {
    const float inv_rms = 1.0f / sqrtf((float)(ss / n) + eps), amax = __fmul_rn(inv_rms, m);
    if (amax >= 1e-5f) {
        *scale = 127.0f / amax;
        return 127.0f / m;
    }
    *scale = 127.0f / 1e-5f;   /* (a NaN lands here too: every value -128, as on the CPU) */
    return __fmul_rn(inv_rms, 127.0f / 1e-5f);
}

#define BITNET__NQ_REGS 3   /* float4 of the input per thread per round, in registers */

/* w x, element by element (rounded once, as the CPU's product) */
__device__ __forceinline__ float4 bitnet__mul4(float4 x, float4 w) {
    return make_float4(__fmul_rn(w.x, x.x), __fmul_rn(w.y, x.y), __fmul_rn(w.z, x.z), __fmul_rn(w.w, x.w));
}
/* The statistics of four elements: the sum of squares of x (in order) and the max |w x| */
__device__ __forceinline__ void bitnet__norm_stats4(float4 x, float4 wx, double &ss, float &m) {
    ss += (double)x.x * x.x;
    ss += (double)x.y * x.y;
    ss += (double)x.z * x.z;
    ss += (double)x.w * x.w;
    m = fmaxf(m, fmaxf(fmaxf(fabsf(wx.x), fabsf(wx.y)), fmaxf(fabsf(wx.z), fabsf(wx.w))));   /* fmaxf skips a NaN */
}
/* and q = clamp(rint(v f)): the low bytes of four bitnet__quant_bits. */
__device__ __forceinline__ void bitnet__quant4(int8_t *q, float4 v, float f) {
    const unsigned lo = __byte_perm(bitnet__quant_bits(v.x, f), bitnet__quant_bits(v.y, f), 0x0040);
    const unsigned hi = __byte_perm(bitnet__quant_bits(v.z, f), bitnet__quant_bits(v.w, f), 0x0040);
    *(unsigned *)q = __byte_perm(lo, hi, 0x5410);
}

#define BITNET__NQ_W 6       /* float4 of an unstaged norm weight per thread in flight, staged input (8: 80 registers, a GEMV block too many for one wave of 864) */

/* (tests/gpu_bench_norm.cu defines this to take a timestamp between the steps) */
#ifndef BITNET__NORM_MARK
#define BITNET__NORM_MARK(i) ((void)0)
#endif

/* n % 4 == 0.  Latency is everything here (the whole phase waits for it): a
   block-wide reduction costs hundreds of cycles (tests/PERF.md), so there is one,
   of the sum of squares and M together.
   x is read through L2 (other blocks of the kernel may just have written it).
   The passes over the vector each wait for their loads, so the vector must come
   from far away only once:
   - stage (shared memory for n floats, float vectors only): x is
     copied there with cp.async, all at once, and the passes read it there; the
     first pass loads the norm weight in batches of NQ_W float4 per thread (the
     callers have it pulled into L2 beforehand, bitnet__prefetch_l2, or in shared
     memory);
   - otherwise rounds of NQ_REGS float4 per thread whose loads are all
     issued at once: a one-round vector stays in registers, a longer one is read
     again in the second pass (one L2 round trip per round and pass).
   THREADS: blockDim.x where the caller knows it at compile time (0: not). */
template <int NQ_W = BITNET__NQ_W, int NQ_REGS = BITNET__NQ_REGS, int THREADS = 0>
__device__ __forceinline__ void bitnet__norm_quantize_block(const bitnet__quant_in &in, int n, int8_t *q, float *scale_out, float *stage = NULL) {
    __shared__ double red_d[32];
    __shared__ float red_m[32];
    const void *row = in.x ? NULL
                           : (const void *)((const uint8_t *)in.table +
                                            (size_t)in.tokens[*in.pos] * (size_t)n * bitnet__table_elem(in.table_type));
    const int T = THREADS ? THREADS : blockDim.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bool staged = stage && in.x;   /* (copy_to is for embedding rows: the register path) */
    const int round = staged ? n : NQ_REGS * 4 * T;
    const bool one_round = !staged && n <= round;
    const float *xs = staged ? stage : NULL, *ws = in.norm;
    float4 v[NQ_REGS], wr[NQ_REGS];   /* a one-round vector and its norm weight stay in registers */
    double ss = 0.0;
    float m = 0.0f;
    BITNET__NORM_MARK(0);
    if (staged) {
        for (int i = threadIdx.x * 4; i < n; i += T * 4) bitnet__copy16_async(stage + i, in.x + i);
        bitnet__copy_async_commit();
        bitnet__copy_async_wait<0>();
        __syncthreads();
        /* the weight: NQ_W float4 loads in flight per thread (the quantization's
           pass finds it in L1) */
        for (int base = threadIdx.x * 4; base < n; base += T * 4 * NQ_W) {
            float4 wv[NQ_W];
#pragma unroll
            for (int j = 0; j < NQ_W; j++)
                if (base + j * T * 4 < n) wv[j] = *(const float4 *)(ws + base + j * T * 4);
#pragma unroll
            for (int j = 0; j < NQ_W; j++) {
                const int i = base + j * T * 4;
                if (i < n) {
                    const float4 x = *(const float4 *)(xs + i);
                    bitnet__norm_stats4(x, bitnet__mul4(x, wv[j]), ss, m);
                }
            }
        }
    } else {
        for (int base = 0; base < n; base += round) {
            float4 *w = wr;
#pragma unroll
            for (int j = 0; j < NQ_REGS; j++) {
                const int i = base + (threadIdx.x + j * T) * 4;
                if (i < n) {
                    v[j] = bitnet__load_in4(in, row, i);
                    w[j] = *(const float4 *)(in.norm + i);
                }
            }
#pragma unroll
            for (int j = 0; j < NQ_REGS; j++) {
                const int i = base + (threadIdx.x + j * T) * 4;
                if (i < n) {
                    bitnet__norm_stats4(v[j], bitnet__mul4(v[j], w[j]), ss, m);
                    if (in.copy_to) *(float4 *)(in.copy_to + i) = v[j];
                }
            }
        }
    }
    BITNET__NORM_MARK(2);
    /* one reduction for both */
    for (int o = 16; o; o >>= 1) {
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    }
    BITNET__NORM_MARK(3);
    if (lane == 0) {
        red_d[warp] = ss;
        red_m[warp] = m;
    }
    __syncthreads();
    ss = red_d[0];
    m = red_m[0];
    for (int w = 1; w < (T >> 5); w++) {
        ss += red_d[w];
        m = fmaxf(m, red_m[w]);
    }
    BITNET__NORM_MARK(4);
    float s;
    const float f = bitnet__quant_factor(ss, m, n, in.eps, &s);
    BITNET__NORM_MARK(5);
    if (staged) {
        for (int i = threadIdx.x * 4; i < n; i += T * 4) bitnet__quant4(q + i, bitnet__mul4(*(const float4 *)(xs + i), *(const float4 *)(ws + i)), f);
    } else {
        for (int base = 0; base < n; base += round) {
#pragma unroll
            for (int j = 0; j < NQ_REGS; j++) {
                const int i = base + (threadIdx.x + j * T) * 4;
                if (i < n)
                    bitnet__quant4(q + i,
                                   bitnet__mul4(one_round ? v[j] : bitnet__load_in4(in, row, i), one_round ? wr[j] : *(const float4 *)(in.norm + i)),
                                   f);
            }
        }
    }
    *scale_out = s;
    BITNET__NORM_MARK(7);
}

/* The statistics of a slice of a BitLinear input, published by the block that
   produced the slice: the sum of squares of x and the max |w x| (bitnet__fused_gemv). */
struct __align__(16) bitnet__norm_part {
    double ss;
    float m, unused;
};

/* The quantization of a vector whose producers stored w x (the products with the
   norm weight, not x) and each published a bitnet__norm_part: no block-wide
   reduction of the elements and half the bytes of x and w.  The int8 values need
   only the max |w x| of the whole vector (127 / max |w x| is the multiplier, the RMS
   enters the scale only), which the producers also fold into *max_bits (float
   bits, atomicMax): warps 1.. load w x and that word and quantize at once, while
   warp 0 adds up the n_parts statistics for the scale, which the dot products do
   not wait for.  Where the statistics' multiplier is not 127 / max |w x| (max |y|
   below transformers' floor, zeros, a NaN), every thread quantizes again with it
   after the __syncthreads.  The same arithmetic as bitnet__norm_quantize_block (and
   the CPU).  stage: shared memory for n floats (w x is copied there with cp.async,
   each thread quantizing what it copied, for vectors longer than a round of NQ_REGS
   float4 per thread), or NULL (rounds of registers).  q is complete after the
   caller's next __syncthreads.  stamps: NULL, or where thread 0 (and 32) leave
   timestamps [6..9] (BITNET__FUSED_MARKS). */
template <int NQ_REGS, int THREADS>
__device__ __forceinline__ void bitnet__quantize_parts_block(const float *wx, int n, const bitnet__norm_part *parts, int n_parts,
                                                             const unsigned *max_bits, float eps, int8_t *q, float *scale_out, float *stage,
                                                             unsigned long long *stamps = NULL) {
    constexpr int DATA = THREADS - 32;   /* the threads that hold w x */
    constexpr int ROUND = NQ_REGS * 4 * DATA;
    __shared__ float2 factor_scale;
    const int t = (int)threadIdx.x - 32;
    if (stamps && threadIdx.x == 0) stamps[6] = bitnet__globaltimer();
    BITNET__NORM_MARK(0);
    /* the data threads' multiplier from the max word.  Warp 0 neither loads nor
       divides by it: a division waits for its operand, and warp 0's statistics
       loads then went out a round trip late (its factor came 0.55 us after the
       quantization, tests/PERF.md, fifteenth and eighteenth sessions) */
    float f_fast = 0.0f;
    if (t >= 0) {
        const unsigned max_word = __ldcg(max_bits);
        if (stage) {
            for (int i = t * 4; i < n; i += DATA * 4) bitnet__copy16_async(stage + i, wx + i);
            bitnet__copy_async_commit();
            bitnet__copy_async_wait<0>();
            f_fast = 127.0f / __uint_as_float(max_word);
            for (int i = t * 4; i < n; i += DATA * 4) bitnet__quant4(q + i, *(const float4 *)(stage + i), f_fast);
        } else {
            float4 v[NQ_REGS];
#pragma unroll
            for (int j = 0; j < NQ_REGS; j++) {
                const int i = (t + j * DATA) * 4;
                if (i < n) v[j] = __ldcg((const float4 *)(wx + i));
            }
            f_fast = 127.0f / __uint_as_float(max_word);
            for (int base = 0; base < n; base += ROUND) {
#pragma unroll
                for (int j = 0; j < NQ_REGS; j++) {
                    const int i = base + (t + j * DATA) * 4;
                    if (i < n) bitnet__quant4(q + i, base ? __ldcg((const float4 *)(wx + i)) : v[j], f_fast);
                }
            }
        }
        if (stamps && t == 0) stamps[7] = bitnet__globaltimer();
    } else {
        double ss = 0.0;
        float m = 0.0f;
        for (int base = 0; base < n_parts; base += 32 * 8) {
            double2 p[8];   /* all loads out before the first add */
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const int i = base + threadIdx.x + 32 * u;
                p[u] = i < n_parts ? __ldcg((const double2 *)(parts + i)) : make_double2(0.0, 0.0);
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
                ss += p[u].x;
                m = fmaxf(m, __uint_as_float((unsigned)__double_as_longlong(p[u].y)));
            }
        }
        for (int o = 16; o; o >>= 1) {
            ss += __shfl_xor_sync(0xffffffffu, ss, o);
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        }
        if (threadIdx.x == 0) {
            float s;
            const float f = bitnet__quant_factor(ss, m, n, eps, &s);
            factor_scale = make_float2(f, s);
            if (stamps) stamps[8] = bitnet__globaltimer();
        }
        BITNET__NORM_MARK(4);
    }
    __syncthreads();
    if (stamps && threadIdx.x == 0) stamps[9] = bitnet__globaltimer();
    const float f = factor_scale.x;
    if (t >= 0 && __float_as_uint(f) != __float_as_uint(f_fast)) {   /* the same in every data thread */
        for (int i = t * 4; i < n; i += DATA * 4)
            bitnet__quant4(q + i, stage ? *(const float4 *)(stage + i) : __ldcg((const float4 *)(wx + i)), f);
    }
    *scale_out = factor_scale.y;
    BITNET__NORM_MARK(7);
}

/* The next BitLinear's input, normalized and quantized once, by the last block of
   the kernel that produces the vector (so the next kernel's blocks only copy k
   bytes of int8 before their dot products). */
struct bitnet__tail {
    bitnet__quant_in in;       /* in.x: the vector this kernel writes; in.norm: the next layer's norm */
    int n;
    int8_t *q;                 /* NULL: no tail */
    float *scale;
    unsigned *counter;         /* zero between kernels */
    int staged;                /* the kernel's dynamic shared memory holds n floats: stage x there */
};

/* Whether this block is the last of n to arrive at *counter (all threads call
   it, after their writes that the last block will read).  One thread's
   acquire-release add after the block's barrier publishes the block's writes and,
   in the last block, makes everyone's visible; the last block reads them through
   L2 (ld.cg, cp.async.cg).  A __threadfence() in every thread (a sequentially
   consistent fence per warp) did the same at a higher price. */
__device__ __forceinline__ bool bitnet__arrive_last(unsigned *counter, unsigned n) {
    __shared__ int last;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned prev;
        asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], 1;" : "=r"(prev) : "l"(counter) : "memory");
        last = prev == n - 1;
    }
    __syncthreads();
    return last;
}

/* Every block calls this (with all its threads) once its outputs are written;
   the n_blocks-th to arrive does the work. */
__device__ void bitnet__run_tail(const bitnet__tail &t, unsigned n_blocks, float *stage) {
    if (!t.q || !bitnet__arrive_last(t.counter, n_blocks)) return;
    float s;
    bitnet__norm_quantize_block(t.in, t.n, t.q, &s, t.staged ? stage : NULL);
    if (threadIdx.x == 0) {
        *t.scale = s;
        *t.counter = 0;
    }
}

/* ===========================================================================
   W2A8 GEMV: y = W x for one or a few 16-row tiles per block, with fused
   prologues and epilogues
   =========================================================================== */
enum {
    BITNET__IN_INT8 = 0,   /* x already quantized: int8 in global memory, its scale and sum */
    BITNET__IN_NORM = 1,   /* RMSNorm + quantize a float vector */
    BITNET__IN_EMBED = 2   /* RMSNorm + quantize an embedding row; block 0 also stores it as the residual */
};
enum {
    BITNET__OUT_I32 = 0,   /* the exact int32 dot products (tests) */
    BITNET__OUT_F32 = 1,   /* y = dot * w_scale / x_scale */
    BITNET__OUT_ADD = 2,   /* y += ... (residual add) */
    BITNET__OUT_QKV = 3,   /* RoPE, then q to a buffer and k, v to the cache */
    BITNET__OUT_GATEUP = 4 /* act(gate) * up */
};

struct bitnet__gemv_args {
    const uint8_t *w;          /* n / 16 tiles of 4k bytes */
    int n, k;
    /* input */
    bitnet__quant_in in;       /* IN_NORM, IN_EMBED */
    float *residual;           /* IN_EMBED: where block 0 stores the embedding row */
    const int8_t *xq;          /* IN_INT8: k values and their scale */
    const float *xq_scale;
    /* output */
    float w_scale[3];          /* QKV: q, k, v; GATEUP: gate, up; else [0] */
    float *y;                  /* F32 / ADD: n floats; GATEUP: n / 2; QKV: the q buffer */
    int *y_i32;
    /* QKV epilogue */
    bitnet__kv *k_cache, *v_cache; /* this layer: [n_head_kv][n_ctx][head_dim] */
    const int *pos;
    const float *inv_freq;     /* head_dim / 2 RoPE frequencies */
    const float2 *rope;        /* or NULL: (cos, sin) of the angles at *pos, computed already */
    int n_ctx, head_dim, n_head, n_head_kv;
    /* GATEUP epilogue */
    int relu2;
    int late_launch;           /* let the next kernel start only after our wait (see bitnet__launch) */
    int tiles_per_block;       /* consecutive tiles a block takes, 0 or 1 for one (bitnet__gemv_tiles_per_block) */
    bitnet__tail tail;         /* ADD / GATEUP: quantize the finished output for the next GEMV */
};

/* dp4a of four unsigned bytes with four signed ones */
__device__ __forceinline__ int bitnet__dp4a_us(unsigned a, int b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* One interleaved word holds 16 two-bit codes of a row: byte j, bits 2p..2p+1 is
   the code of activation 4p + j of the 16.  Plane p is used where it sits (masked,
   not shifted: one instruction fewer per dp4a), so plane p's sum comes out 4^p
   times too large, exactly; acc[p] keeps plane p's sum and bitnet__planes_sum
   divides the powers out. */
__device__ __forceinline__ void bitnet__dot16_planes(uint32_t w, int4 x, int *acc) {
    acc[0] = bitnet__dp4a_us(w & 0x03030303u, x.x, acc[0]);
    acc[1] = bitnet__dp4a_us(w & 0x0c0c0c0cu, x.y, acc[1]);
    acc[2] = bitnet__dp4a_us(w & 0x30303030u, x.z, acc[2]);
    acc[3] = bitnet__dp4a_us(w & 0xc0c0c0c0u, x.w, acc[3]);
}
__device__ __forceinline__ int bitnet__planes_sum(const int *acc) { return acc[0] + (acc[1] >> 2) + (acc[2] >> 4) + (acc[3] >> 6); }

/* The exact dot products of n_tiles consecutive 16-row tiles (in shared memory,
   4k bytes each) with the k int8 activations xq: dots[16 t + r].  All threads of
   the block call it.  The warps split into n_tiles groups (a round per blockDim / 32
   tiles); in a tile's group, lane -> (4-row group g = lane % 4, chunks c, c + 8 W,
   ... of 16 activations each): one 16-byte weight load and one 16-byte activation
   load feed 16 dp4a.  The codes are value + 1, so each row's dot product needs the
   activations' sum taken off; every lane adds up the activations of its chunks
   too, which counts each chunk 4 times (once per row group).
   part: [blockDim / 32][17] ints of shared memory. */
__device__ void bitnet__tiles_dot(const uint8_t *tiles, int n_tiles, int k, const int8_t *xq, int *dots, int (*part)[17]) {
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, n_warps = blockDim.x >> 5, n_chunks = k / 16, g = lane & 3;
    const int4 *tx = (const int4 *)xq;
    for (int first = 0; first < n_tiles; first += n_warps) {
        /* tiles this round; warps per tile, a power of two (shifts, not the
           integer divisions that were a chain of ~100 cycles in every phase) */
        const int nt = min(n_tiles - first, n_warps);
        const int shift = max(31 - __clz(n_warps) - (nt > 1 ? 32 - __clz(nt - 1) : 0), 0), wpt = 1 << shift;
        const int t = warp >> shift, sub = warp & (wpt - 1);
        int acc[4][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}, acc_x = 0;   /* [row][plane] */
        if (t < nt) {
            const uint4 *tw = (const uint4 *)(tiles + (size_t)(first + t) * k * 4);
#pragma unroll 4
            for (int c = sub * 8 + (lane >> 2); c < n_chunks; c += wpt * 8) {
                uint4 w = tw[c * 4 + g];
                int4 x = tx[c];
                bitnet__dot16_planes(w.x, x, acc[0]);
                bitnet__dot16_planes(w.y, x, acc[1]);
                bitnet__dot16_planes(w.z, x, acc[2]);
                bitnet__dot16_planes(w.w, x, acc[3]);
                acc_x = __dp4a(x.x, 0x01010101, __dp4a(x.y, 0x01010101, __dp4a(x.z, 0x01010101, __dp4a(x.w, 0x01010101, acc_x))));
            }
        }
        int acc0 = bitnet__planes_sum(acc[0]), acc1 = bitnet__planes_sum(acc[1]), acc2 = bitnet__planes_sum(acc[2]),
            acc3 = bitnet__planes_sum(acc[3]);
        /* lanes with the same g (lane % 4) hold the same rows */
        for (int o = 4; o < 32; o <<= 1) {
            acc0 += __shfl_xor_sync(0xffffffffu, acc0, o);
            acc1 += __shfl_xor_sync(0xffffffffu, acc1, o);
            acc2 += __shfl_xor_sync(0xffffffffu, acc2, o);
            acc3 += __shfl_xor_sync(0xffffffffu, acc3, o);
        }
        for (int o = 1; o < 32; o <<= 1) acc_x += __shfl_xor_sync(0xffffffffu, acc_x, o);
        if (lane < 4) {
            int *p = part[warp] + 4 * g;
            p[0] = acc0; p[1] = acc1; p[2] = acc2; p[3] = acc3;
            if (g == 0) part[warp][16] = acc_x;
        }
        __syncthreads();
        if (tid < nt * 16) {
            const int tt = tid >> 4, r = tid & 15;
            int d = 0, x4 = 0;
            for (int w = tt * wpt; w < (tt + 1) * wpt; w++) {
                d += part[w][r];
                x4 += part[w][16];
            }
            dots[(first + tt) * 16 + r] = d - x4 / 4;
        }
        __syncthreads();
    }
}

/* act(gate) * up of a gate/up tile's row r < 8: tile rows 0-7 are gate rows
   8t..8t+7, rows 8-15 the matching up rows. */
__device__ __forceinline__ float bitnet__gateup_value(const bitnet__gemv_args &a, int r, const int *dots, float x_scale) {
    float g = (float)dots[r] * (a.w_scale[0] / x_scale);
    float u = (float)dots[r + 8] * (a.w_scale[1] / x_scale);
    float act = a.relu2 ? (g > 0.0f ? __fmul_rn(g, g) : 0.0f) : g / (1.0f + expf(-g));
    return __fmul_rn(act, u);
}

/* Row r (0..15) of tile `tile`: its exact dot product dots[r] becomes the output
   (the QKV and GATEUP epilogues pair row r with row r + 8 and use r < 8 only). */
template <int OUT>
__device__ __forceinline__ void bitnet__gemv_epilogue(const bitnet__gemv_args &a, int tile, int r, const int *dots, float x_scale) {
    const int row0 = tile * 16;
    if (OUT == BITNET__OUT_I32) {
        a.y_i32[row0 + r] = dots[r];
    } else if (OUT == BITNET__OUT_F32 || OUT == BITNET__OUT_ADD) {
        /* rounded as the CPU rounds it (no fused multiply-add) */
        float v = __fmul_rn((float)dots[r], a.w_scale[0] / x_scale);
        if (OUT == BITNET__OUT_ADD) a.y[row0 + r] = __fadd_rn(__ldcg(a.y + row0 + r), v);
        else a.y[row0 + r] = v;
    } else if (OUT == BITNET__OUT_GATEUP) {
        if (r < 8) a.y[tile * 8 + r] = bitnet__gateup_value(a, r, dots, x_scale);
    } else if (OUT == BITNET__OUT_QKV) {
        /* tile rows 0-7: dims 8j..8j+7 of one head, rows 8-15: their RoPE partners
           half + 8j..; heads: n_head q, then n_head_kv k, then n_head_kv v */
        if (r < 8) {
            const int tiles_per_head = a.head_dim / 16, half = a.head_dim / 2;
            int head, i;
            if ((tiles_per_head & (tiles_per_head - 1)) == 0) {   /* (shifts where they do: a division is ~100 cycles of latency) */
                const int sh = 31 - __clz(tiles_per_head);
                head = tile >> sh;
                i = (tile & (tiles_per_head - 1)) * 8 + r;
            } else {
                head = tile / tiles_per_head;
                i = (tile % tiles_per_head) * 8 + r;
            }
            const int pos = *a.pos;
            const int part_id = head < a.n_head ? 0 : head < a.n_head + a.n_head_kv ? 1 : 2;
            /* (no dynamic index into a.w_scale: that would put the arguments in local memory) */
            const float f = (part_id == 0 ? a.w_scale[0] : part_id == 1 ? a.w_scale[1] : a.w_scale[2]) / x_scale;
            float x0 = (float)dots[r] * f, x1 = (float)dots[r + 8] * f;
            if (part_id < 2) {
                /* as the CPU: angle = pos * inv_freq, products rounded separately */
                float sn, cs;
                if (a.rope) {
                    cs = a.rope[i].x;
                    sn = a.rope[i].y;
                } else {
                    sincosf((float)pos * a.inv_freq[i], &sn, &cs);
                }
                float r0 = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
                float r1 = __fadd_rn(__fmul_rn(x1, cs), __fmul_rn(x0, sn));
                x0 = r0;
                x1 = r1;
            }
            if (part_id == 0) {
                a.y[(size_t)head * a.head_dim + i] = x0;
                a.y[(size_t)head * a.head_dim + i + half] = x1;
            } else {
                const int kvh = head - a.n_head - (part_id == 2 ? a.n_head_kv : 0);
                bitnet__kv *cache = (part_id == 1 ? a.k_cache : a.v_cache) + ((size_t)kvh * a.n_ctx + pos) * a.head_dim;
                cache[i] = bitnet__to_cache(x0);
                cache[i + half] = bitnet__to_cache(x1);
            }
        }
    }
}

/* A block takes one tile, or up to BITNET__GEMV_MAX_TILES consecutive ones where a
   GEMV has more tiles than the GPU can hold blocks of two calls at once: with late
   programmatic dependent launch the next kernel's blocks fetch their weights while
   this one computes, but only if they are resident (bitnet__gemv_tiles_per_block;
   tests/PERF.md, ninth session). */
#define BITNET__GEMV_MAX_TILES 8
#define BITNET__GEMV_MULTI_SMEM (48 * 1024)   /* a multi-tile block's shared memory: within the default limit on every GPU */

/* Shared memory of one GEMV block: its tiles (4k bytes each), the activations (k),
   for a norm prologue the norm weight (4k), and with several tiles their dot
   products (one tile's are static: a static array sized for 8 tiles measured 3-5%
   slower on one-tile shapes with k > 4096, tests/PERF.md). */
static size_t bitnet__gemv_smem(int k, int in, int tiles = 1) {
    return (size_t)k * (4 * (size_t)tiles + (in == BITNET__IN_INT8 ? 1 : 5)) + (tiles > 1 ? 64 * (size_t)tiles : 0);
}

/* Tiles per block for an n x k GEMV on n_sm SMs launched with late programmatic
   dependent launch: one while the grid fits two blocks per SM; else as many as
   bring it there (a block of this call and one of the next then share each SM),
   within BITNET__GEMV_MULTI_SMEM.  Without late launch, one: with nothing to
   overlap, fewer and longer blocks measured 6-10% slower, and the kernel chain
   with early launch 2% slower (tests/PERF.md, ninth session). */
static int bitnet__gemv_tiles_per_block(int n, int k, int in, int n_sm, int late_launch) {
    const int n_tiles = n / 16, fit = 2 * n_sm;
    if (!late_launch || n_sm <= 0 || n_tiles <= fit) return 1;
    int t = (n_tiles + fit - 1) / fit;
    if (t > BITNET__GEMV_MAX_TILES) t = BITNET__GEMV_MAX_TILES;
    while (t > 1 && bitnet__gemv_smem(k, in, t) > BITNET__GEMV_MULTI_SMEM) t--;
    return t;
}

template <int IN, int OUT>
__global__ void __launch_bounds__(256) bitnet__gemv_kernel(const bitnet__gemv_args a) {
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ int part[8][17];     /* per warp: the partial sums of the 16 rows, 4 x the activations' sum */
    __shared__ int dots1[16];
    __shared__ float x_scale;
    const int tpb = a.tiles_per_block > 1 ? a.tiles_per_block : 1, t0 = blockIdx.x * tpb, nt = min(tpb, a.n / 16 - t0);
    uint8_t *tile = smem;
    int8_t *xq = (int8_t *)(smem + (size_t)a.k * 4 * tpb);
    float *norm = (float *)(smem + (size_t)a.k * (4 * tpb + 1));
    int *dots = nt == 1 ? dots1 : (int *)(smem + (size_t)a.k * (4 * tpb + (IN == BITNET__IN_INT8 ? 1 : 5)));
    const int tid = threadIdx.x, n_chunks = a.k / 16;
    const uint8_t *gtile = a.w + (size_t)t0 * (size_t)a.k * 4;

    if (!a.late_launch) bitnet__pdl_launch_next();
    /* 1. the weights depend on nothing earlier: fetch them before waiting (the norm
       weight first, as it is needed first) */
    if (IN != BITNET__IN_INT8) {
        for (int i = tid; i < a.k / 4; i += blockDim.x) bitnet__copy16_async(norm + 4 * i, a.in.norm + 4 * i);
        bitnet__copy_async_commit();
    }
    for (int i = tid; i < nt * (a.k / 4); i += blockDim.x) bitnet__copy16_async(tile + (size_t)i * 16, gtile + (size_t)i * 16);
    bitnet__copy_async_commit();
    if (a.tail.q && blockIdx.x == 0) bitnet__prefetch_l2(a.tail.in.norm, (size_t)a.tail.n * 4);   /* for whichever block runs the tail */
    bitnet__pdl_wait();
    if (a.late_launch) bitnet__pdl_launch_next();

    /* 2. the activations */
    if (IN == BITNET__IN_INT8) {
        int4 v[BITNET__NQ_REGS];
#pragma unroll
        for (int j = 0; j < BITNET__NQ_REGS; j++)
            if (tid + j * (int)blockDim.x < n_chunks) v[j] = ((const int4 *)a.xq)[tid + j * blockDim.x];
#pragma unroll
        for (int j = 0; j < BITNET__NQ_REGS; j++)
            if (tid + j * (int)blockDim.x < n_chunks) ((int4 *)xq)[tid + j * blockDim.x] = v[j];
        for (int i = tid + BITNET__NQ_REGS * blockDim.x; i < n_chunks; i += blockDim.x) ((int4 *)xq)[i] = ((const int4 *)a.xq)[i];
        if (tid == 0) x_scale = *a.xq_scale;
    } else {
        float s;
        bitnet__quant_in in = a.in;
        in.norm = norm;
        if (IN == BITNET__IN_EMBED && blockIdx.x == 0) in.copy_to = a.residual;
        bitnet__copy_async_wait<1>();
        __syncthreads();
        bitnet__norm_quantize_block(in, a.k, xq, &s);
        if (tid == 0) x_scale = s;
    }
    bitnet__copy_async_wait<0>();
    __syncthreads();

    /* 3. the dot products and 4. the epilogue */
    if (nt == 1) {
        bitnet__tiles_dot(tile, 1, a.k, xq, dots, part);
        if (tid < 16) bitnet__gemv_epilogue<OUT>(a, t0, tid, dots, x_scale);
    } else {
        bitnet__tiles_dot(tile, nt, a.k, xq, dots, part);
        for (int i = tid; i < nt * 16; i += blockDim.x) bitnet__gemv_epilogue<OUT>(a, t0 + (i >> 4), i & 15, dots + (i & ~15), x_scale);
    }
    bitnet__run_tail(a.tail, gridDim.x, (float *)smem);
}

/* ===========================================================================
   Attention over the KV cache (one new token)
   ===========================================================================
   Grid: (n_head / U, max_splits) blocks of 256 threads.  Block (u, s) takes U
   query heads u U .. u U + U - 1 of one KV head (U = unit_heads: the whole group
   of G = n_head / n_head_kv, so that each K/V row is read once for all G, or a
   divisor of G where that leaves SMs idle: the fused step at short contexts) and
   a slice of the n = pos + 1 positions.  The slices: at least 64
   positions each (the fused step: 32 at short contexts, bitnet__launch_fused), at
   most gridDim.y of them, so short contexts use few blocks and
   long ones spread over many; a slice is at most 256 positions (one per thread).
   Several slices leave partial results (max, sum of exponentials, weighted sum of
   V); the last block of the unit to finish combines them, as flash-decoding does,
   and the last unit to finish quantizes the output for the O projection.  (In the
   fused step above 8 slices, every slice block of the unit combines a share of
   them once the unit's slices are all in: the last block alone took rounds of 8.)
   The cache rows of the slice, except the newest, do not depend on the previous
   kernel, so they are pulled into L2 before the wait. */
#define BITNET__ATT_THREADS 256
#define BITNET__ATT_MAX_GROUP 8   /* query heads per KV head */
#define BITNET__ATT_MAX_DIM 256
#define BITNET__ATT_MIN_CHUNK 64  /* positions per slice at least, by default */
#ifndef BITNET__ATT_SPREAD_ROUND
#define BITNET__ATT_SPREAD_ROUND 32  /* slices' partials a thread requests at once in the spread combining */
#endif
#define BITNET__ATT_SHORT_CHUNK 32  /* the fused step's default while that still gives every query head and slice a block */

struct bitnet__attn_args {
    const float *q;                  /* n_head x head_dim, after RoPE */
    const bitnet__kv *k_cache, *v_cache; /* this layer: [n_head_kv][n_ctx][head_dim] */
    float *out;                      /* n_head x head_dim */
    float *part_o;                   /* [n_head / unit_heads][gridDim.y][unit_heads][head_dim] */
    float2 *part_ml;                 /* [n_head / unit_heads][gridDim.y][unit_heads]: (max, sum) */
    unsigned *counters;              /* [n_head / unit_heads], zero between launches */
    const int *pos;
    int n_ctx, head_dim, n_head, n_head_kv;
    int unit_heads;                  /* query heads a block takes: G = n_head / n_head_kv, or a divisor of G (0: G) */
    float scale;                     /* 1 / sqrt(head_dim) */
    int min_chunk;                   /* positions per slice at least (<= BITNET__ATT_THREADS) */
    int late_launch;
    bitnet__tail tail;               /* the output, quantized for the O projection */
    unsigned long long *stamps;      /* profiling (the fused step): NULL, or where [1..3] get timestamps */
    unsigned count_target;           /* the fused step: what a unit's counter reaches once this layer's slices are in (it grows through the launch), or 0 */
};

__device__ __forceinline__ void bitnet__att_stamp(const bitnet__attn_args &a, int i) {
    if (a.stamps && threadIdx.x == 0) a.stamps[i] = bitnet__globaltimer();
}

/* The slicing of n positions over at most max_splits blocks, slices of at least
   min_chunk positions. */
__device__ __forceinline__ void bitnet__att_slices(int n, int max_splits, int min_chunk, int *chunk, int *splits) {
    int s0 = (n + min_chunk - 1) / min_chunk;
    if (s0 > max_splits) s0 = max_splits;
    *chunk = (n + s0 - 1) / s0;
    *splits = (n + *chunk - 1) / *chunk;
}

/* Slice `split` of n positions in slices of chunk: [p0, p0 + np). */
__device__ __forceinline__ void bitnet__att_slice_range(int split, int chunk, int n, int *p0, int *np) {
    *p0 = split * chunk;
    *np = min(n, *p0 + chunk) - *p0;
}

/* The slice [p0, p0 + np) of block `split`, or false when the context needs fewer
   slices than that. */
__device__ __forceinline__ bool bitnet__att_slice(const bitnet__attn_args &a, int split, int max_splits, int *p0, int *np, int *splits) {
    const int n = *a.pos + 1;
    int chunk;
    bitnet__att_slices(n, max_splits, a.min_chunk, &chunk, splits);
    if (split >= *splits) return false;
    bitnet__att_slice_range(split, chunk, n, p0, np);
    return true;
}

/* Pulls the slice's cache rows into L2, all but the newest (which the QKV step
   writes). */
__device__ __forceinline__ void bitnet__att_prefetch(const bitnet__attn_args &a, int h, int p0, int np) {
    const int n = *a.pos + 1, hd = a.head_dim;
    const size_t head_off = (size_t)h * a.n_ctx * hd, bytes = (size_t)(np - (p0 + np == n)) * hd * sizeof(bitnet__kv);
    bitnet__prefetch_l2(a.k_cache + head_off + (size_t)p0 * hd, bytes);
    bitnet__prefetch_l2(a.v_cache + head_off + (size_t)p0 * hd, bytes);
}

/* Shared memory of bitnet__att_block, in floats: s_q (G head_dim), s_w (G x
   BITNET__ATT_THREADS), s_red (512 G). */
static size_t bitnet__att_smem_floats(int group, int head_dim) { return (size_t)group * (head_dim + BITNET__ATT_THREADS + 512); }

/* Key row pl of the slice (positions p0 + pl), this thread's quarter of it
   (4 dims of every 16), into registers; nothing past the slice's end. */
template <int MD>
__device__ __forceinline__ void bitnet__att_load_k(bitnet__kv4 *kr, const bitnet__kv *K, int p0, int pl, int np, int quarter, int hd) {
    const bitnet__kv4 *krow = (const bitnet__kv4 *)(K + (size_t)(p0 + pl) * hd);
#pragma unroll
    for (int jj = 0; jj < MD / 16; jj++)
        if (pl < np && quarter + 4 * jj < hd / 4) kr[jj] = __ldcg(krow + quarter + 4 * jj);
}

/* Dim pair dp of the value rows pl, pl + PG, ... (16 of them) of the slice. */
__device__ __forceinline__ void bitnet__att_load_v(bitnet__kv2 *vr, const bitnet__kv *V, int p0, int pl, int np, int PG, int dp, int hd) {
    const bitnet__kv2 *v = (const bitnet__kv2 *)(V + (size_t)(p0 + pl) * hd) + dp;
    const size_t stride = (size_t)PG * hd / 2;
#pragma unroll
    for (int u = 0; u < 16; u++)
        if (pl + u * PG < np) vr[u] = __ldcg(v + u * stride);
}

/* A block's share of the attention (MG, MD: the largest group and head dimension
   the code is unrolled for): unit h (query heads h U .. h U + U - 1, U =
   a.unit_heads) of KV head kvh, slice `split` (positions p0 .. p0 + np - 1) of
   `splits`; max_splits is the partials' stride.  All threads.
   Few warps run it, so it is a chain of latencies more than work: every load
   that does not depend on the one before is in flight with it (EARLY, the fused
   step: the first rows of K and V go out before q, which other blocks have just
   written, and each round of rows requests the next round's; the attention
   kernel of the chain loads each round's rows as it comes, with fewer registers),
   and the combining of the slices loads every slice's statistics and its first
   partials at once. */
/* One thread waits until *count reaches target (the counter only grows during a
   launch): polled with relaxed loads, since an acquire load is compiled with an
   invalidation of the whole L1 after it (CCTL.IVALL), which in the loop ran once
   per poll (ncu); then one acquire load, which makes the writes released before
   the count visible. */
__device__ __forceinline__ void bitnet__poll_acquire(const unsigned *count, unsigned target) {
    unsigned seen;
    do {
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(count) : "memory");
    } while ((int)(seen - target) < 0);
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(count) : "memory");
}

/* The combining's weights (s_f: the slices' (max, sum), splits x G): warp g takes
   query head g, lane s slice s (and s + 32, ...): the max of the slices' maxima,
   each slice's weight exp(m_s - m) in place of its max, and the weighted sum of
   the slices' sums in s_l[g], in a fixed order. */
__device__ __forceinline__ void bitnet__att_slice_weights(float2 *s_f, float *s_l, int splits, int G, int warp, int lane) {
    if (warp < G) {
        float m = -INFINITY, l = 0.0f;
        for (int s = lane; s < splits; s += 32) m = fmaxf(m, s_f[s * G + warp].x);
        for (int off = 16; off; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        for (int s = lane; s < splits; s += 32) {
            const float2 v = s_f[s * G + warp];
            const float f = expf(v.x - m);
            l += v.y * f;
            s_f[s * G + warp].x = f;
        }
        for (int off = 16; off; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
        if (lane == 0) s_l[warp] = l;
    }
}

template <int MG, int MD, bool EARLY>
__device__ __forceinline__ void bitnet__att_block_t(const bitnet__attn_args &a, int h, int kvh, int split, int splits, int max_splits, int p0,
                                                    int np, float *s_q, float *s_w, float *s_red) {
    __shared__ float s_m[MG], s_l[MG];
    const int tid = threadIdx.x, hd = a.head_dim;
    const int G = a.unit_heads > 0 ? a.unit_heads : a.n_head / a.n_head_kv;   /* (this unit's query heads) */
    const size_t head_off = (size_t)kvh * a.n_ctx * hd;
    const bitnet__kv *K = a.k_cache + head_off, *V = a.v_cache + head_off;
    /* scores: 4 threads per position, each 4 dims of every 16; V: thread ->
       (dim pair dp, position group pg of PG), 16 rows in flight per thread */
    const int quarter = tid & 3, k_step = blockDim.x >> 2;
    const int pairs = hd / 2, PG = blockDim.x / pairs, dp = tid % pairs, pg = tid / pairs, v_step = 16 * PG;
    bitnet__kv4 kr[MD / 16];
    bitnet__kv2 vr[16];
    {
        const float4 *gq = (const float4 *)(a.q + (size_t)h * G * hd);
        float4 qv[2];   /* G * head_dim <= 2048 floats: at most 2 float4 per thread */
#pragma unroll
        for (int j = 0; j < 2; j++)
            if (tid + j * BITNET__ATT_THREADS < G * hd / 4) qv[j] = __ldcg(gq + tid + j * BITNET__ATT_THREADS);
        if (EARLY) {
            bitnet__att_load_k<MD>(kr, K, p0, tid >> 2, np, quarter, hd);
            bitnet__att_load_v(vr, V, p0, pg, np, PG, dp, hd);
        }
#pragma unroll
        for (int j = 0; j < 2; j++)
            if (tid + j * BITNET__ATT_THREADS < G * hd / 4) ((float4 *)s_q)[tid + j * BITNET__ATT_THREADS] = qv[j];
    }
    __syncthreads();
    bitnet__att_stamp(a, 1);

    /* scores (whole warps go round the loop together: the shuffles need every lane) */
    for (int base = 0; base < np; base += k_step) {
        const int pl = base + (tid >> 2);
        const bool active = pl < np;
        float acc[MG];
        bitnet__kv4 kn[MD / 16];
        if (!EARLY) bitnet__att_load_k<MD>(kr, K, p0, pl, np, quarter, hd);
        else if (base + k_step < np) bitnet__att_load_k<MD>(kn, K, p0, pl + k_step, np, quarter, hd);
#pragma unroll
        for (int g = 0; g < MG; g++) acc[g] = 0.0f;
#pragma unroll
        for (int jj = 0; jj < MD / 16; jj++) {
            const int j = quarter + 4 * jj;
            if (active && j < hd / 4) {
                const float4 kv = bitnet__kv4_float(kr[jj]);
#pragma unroll
                for (int g = 0; g < MG; g++) {
                    if (g < G) {
                        float4 qv = *(const float4 *)(s_q + g * hd + 4 * j);
                        acc[g] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < MG; g++) {
            acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 1);
            acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 2);
            if (g < G && active && quarter == 0) s_w[g * BITNET__ATT_THREADS + pl] = acc[g] * a.scale;
        }
        if (EARLY) {
#pragma unroll
            for (int jj = 0; jj < MD / 16; jj++) kr[jj] = kn[jj];
        }
    }
    __syncthreads();
    bitnet__att_stamp(a, 2);

    /* softmax pieces: warp g takes query head g */
    {
        const int warp = tid >> 5, lane = tid & 31;
        if (warp < G) {
            float m = -INFINITY, l = 0.0f;
            for (int p = lane; p < np; p += 32) m = fmaxf(m, s_w[warp * BITNET__ATT_THREADS + p]);
            for (int o = 16; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            for (int p = lane; p < np; p += 32) {
                float e = expf(s_w[warp * BITNET__ATT_THREADS + p] - m);
                s_w[warp * BITNET__ATT_THREADS + p] = e;
                l += e;
            }
            for (int o = 16; o; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
            if (lane == 0) { s_m[warp] = m; s_l[warp] = l; }
        }
    }
    __syncthreads();

    /* weighted sum of V */
    {
        float2 acc[MG];
#pragma unroll
        for (int g = 0; g < MG; g++) acc[g] = make_float2(0.0f, 0.0f);
        for (int base = pg; base < np; base += v_step) {
            bitnet__kv2 vn[16];
            if (!EARLY) bitnet__att_load_v(vr, V, p0, base, np, PG, dp, hd);
            else if (base + v_step < np) bitnet__att_load_v(vn, V, p0, base + v_step, np, PG, dp, hd);
#pragma unroll
            for (int u = 0; u < 16; u++) {
                const int pl = base + u * PG;
                if (pl < np) {
                    float2 v = bitnet__kv2_float(vr[u]);
#pragma unroll
                    for (int g = 0; g < MG; g++) {
                        if (g < G) {
                            float w = s_w[g * BITNET__ATT_THREADS + pl];
                            acc[g].x += w * v.x;
                            acc[g].y += w * v.y;
                        }
                    }
                }
            }
            if (EARLY) {
#pragma unroll
                for (int u = 0; u < 16; u++) vr[u] = vn[u];
            }
        }
#pragma unroll
        for (int g = 0; g < MG; g++)
            if (g < G) *(float2 *)(s_red + ((size_t)pg * G + g) * hd + 2 * dp) = acc[g];
        __syncthreads();
        for (int i = tid; i < G * hd; i += blockDim.x) {
            const int g = i / hd;
            float o = 0.0f;
            for (int p = 0; p < PG; p++) o += s_red[(size_t)p * G * hd + i];
            if (splits == 1) a.out[(size_t)h * G * hd + i] = o / s_l[g];
            else a.part_o[(((size_t)h * max_splits + split) * G) * hd + i] = o;
        }
        if (splits > 1 && tid < G) a.part_ml[((size_t)h * max_splits + split) * G + tid] = make_float2(s_m[tid], s_l[tid]);
    }
    bitnet__att_stamp(a, 3);
    if (splits == 1) {
        bitnet__run_tail(a.tail, (unsigned)(a.n_head / G), s_red);
        return;
    }

    if (EARLY && a.count_target && splits > 8 && splits <= 256) {   /* (up to 8 slices the last block loads them in one round) */
        /* the fused step: every slice block of the unit waits for the others (its
           counter grows by the slices every layer) and combines its share of the
           outputs, every partial loaded once; the arithmetic and its order are
           the last block's below */
        const int warp = tid >> 5, lane = tid & 31, per = (G * hd + splits - 1) / splits, i0 = split * per;
        const int i1 = min(G * hd, i0 + per);
        const float2 *ml = a.part_ml + (size_t)h * max_splits * G;
        const float *po = a.part_o + (size_t)h * max_splits * G * hd;
        float2 *s_f = (float2 *)s_red;   /* [splits][G] */
        __syncthreads();
        if (tid == 0) {
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(a.counters + h) : "memory");
            bitnet__poll_acquire(a.counters + h, a.count_target);
        }
        __syncthreads();
        /* (a block's share is at most one output a thread: per <= blockDim.x) the
           first SR slices' partials of it requested with the statistics, one round
           trip for both (in rounds of 8 after the statistics the combining took
           4.3 us a layer at 4000, tests/PERF.md, twentieth session) */
        constexpr int SR = BITNET__ATT_SPREAD_ROUND;
        static_assert((MG * MD + 8) / 9 <= BITNET__ATT_THREADS, "more than 8 slices: at most one output a thread");
        const int i = i0 + tid;
        const bool mine = i < i1;
        float pv[SR];
#pragma unroll
        for (int u = 0; u < SR; u++) pv[u] = mine && u < splits ? __ldcg(po + (size_t)u * G * hd + i) : 0.0f;
        for (int k = tid; k < splits * G; k += blockDim.x) s_f[k] = __ldcg(ml + k);
        __syncthreads();
        bitnet__att_slice_weights(s_f, s_l, splits, G, warp, lane);
        __syncthreads();
        if (mine) {
            const int g = i / hd;
            float o = 0.0f;
            for (int s = 0; s < splits; s += SR) {
                if (s > 0) {
#pragma unroll
                    for (int u = 0; u < SR; u++) pv[u] = s + u < splits ? __ldcg(po + (size_t)(s + u) * G * hd + i) : 0.0f;
                }
#pragma unroll
                for (int u = 0; u < SR; u++)
                    if (s + u < splits) o += pv[u] * s_f[(s + u) * G + g].x;
            }
            a.out[(size_t)h * G * hd + i] = o / s_l[g];
        }
        __syncthreads();   /* (s_red is reused) */
        return;
    }
    /* the last block of this head to finish combines the slices */
    if (!bitnet__arrive_last(&a.counters[h], (unsigned)splits)) return;
    if (splits <= 256) {
        /* each query head's max of the slices' maxima, each slice's weight
           exp(m_s - m) and the weighted sum of the slices' sums (warp g, in a
           fixed order) from their (m, l) in shared memory, loaded while this
           thread's first partials are in flight; then each output's weighted
           partials, U slices' loads in flight at a time */
        constexpr int NI = (MG * MD + BITNET__ATT_THREADS - 1) / BITNET__ATT_THREADS, U = NI >= 4 ? 4 : 16 / NI;
        const int warp = tid >> 5, lane = tid & 31;
        const float2 *ml = a.part_ml + (size_t)h * max_splits * G;
        const float *po = a.part_o + (size_t)h * max_splits * G * hd;
        float2 *s_f = (float2 *)s_red;   /* [splits][G] */
        float o[NI], pv[NI][U];
#pragma unroll
        for (int n = 0; n < NI; n++) {
            const int i = tid + n * BITNET__ATT_THREADS;
            o[n] = 0.0f;
#pragma unroll
            for (int u = 0; u < U; u++) pv[n][u] = i < G * hd && u < splits ? __ldcg(po + (size_t)u * G * hd + i) : 0.0f;
        }
        for (int i = tid; i < splits * G; i += blockDim.x) s_f[i] = __ldcg(ml + i);
        __syncthreads();
        bitnet__att_slice_weights(s_f, s_l, splits, G, warp, lane);
        __syncthreads();
        for (int s = 0; s < splits; s += U) {
            if (s > 0) {
#pragma unroll
                for (int n = 0; n < NI; n++) {
                    const int i = tid + n * BITNET__ATT_THREADS;
#pragma unroll
                    for (int u = 0; u < U; u++) pv[n][u] = i < G * hd && s + u < splits ? __ldcg(po + (size_t)(s + u) * G * hd + i) : 0.0f;
                }
            }
#pragma unroll
            for (int n = 0; n < NI; n++) {
                const int i = tid + n * BITNET__ATT_THREADS, g = i / hd;
#pragma unroll
                for (int u = 0; u < U; u++)
                    if (i < G * hd && s + u < splits) o[n] += pv[n][u] * s_f[(s + u) * G + g].x;
            }
        }
#pragma unroll
        for (int n = 0; n < NI; n++) {
            const int i = tid + n * BITNET__ATT_THREADS;
            if (i < G * hd) a.out[(size_t)h * G * hd + i] = o[n] / s_l[i / hd];
        }
        /* (s_red is the tail's stage next) */
        __syncthreads();
    } else {
        /* more slices than shared memory holds: one pass, the running max
           rescaling the sums as it grows, 8 slices in flight per thread */
        for (int i = tid; i < G * hd; i += blockDim.x) {
            const int g = i / hd;
            const float2 *ml = a.part_ml + (size_t)h * max_splits * G + g;
            const float *po = a.part_o + (size_t)h * max_splits * G * hd + i;
            float m = -INFINITY, l = 0.0f, o = 0.0f;
            for (int base = 0; base < splits; base += 8) {
                float2 mlv[8];
                float ov[8];
#pragma unroll
                for (int u = 0; u < 8; u++)
                    if (base + u < splits) {
                        mlv[u] = __ldcg(ml + (size_t)(base + u) * G);
                        ov[u] = __ldcg(po + (size_t)(base + u) * G * hd);
                    }
#pragma unroll
                for (int u = 0; u < 8; u++)
                    if (base + u < splits) {
                        const float m_new = fmaxf(m, mlv[u].x), f_old = expf(m - m_new), f = expf(mlv[u].x - m_new);
                        l = l * f_old + mlv[u].y * f;
                        o = o * f_old + ov[u] * f;
                        m = m_new;
                    }
            }
            a.out[(size_t)h * G * hd + i] = o / l;
        }
    }
    if (tid == 0) a.counters[h] = 0;
    bitnet__run_tail(a.tail, (unsigned)(a.n_head / G), s_red);
}

/* The attention kernel and the fused step come in two instances: unrolled for
   groups of up to 4 query heads and head dimensions up to 128 (2B4T: 4, 128; a
   quarter of the general instance's guarded iterations and far fewer registers),
   and the general one; bitnet__att_small says which a shape takes. */
static bool bitnet__att_small(int n_head, int n_head_kv, int head_dim) { return n_head <= 4 * n_head_kv && head_dim <= 128; }

template <int MG, int MD>
__global__ void __launch_bounds__(BITNET__ATT_THREADS) bitnet__attention_kernel(const bitnet__attn_args a) {
    __shared__ __align__(16) float s_q[BITNET__ATT_MAX_GROUP * BITNET__ATT_MAX_DIM];
    __shared__ float s_w[BITNET__ATT_MAX_GROUP * BITNET__ATT_THREADS];  /* scores, then weights */
    __shared__ __align__(16) float s_red[BITNET__ATT_MAX_GROUP * 512];             /* [PG][G][head_dim] */
    int p0 = 0, np = 0, splits = 0;
    if (!a.late_launch) bitnet__pdl_launch_next();
    /* the position is written before the graph starts, so it can be read now */
    const bool mine = bitnet__att_slice(a, blockIdx.y, gridDim.y, &p0, &np, &splits);
    const int group = a.n_head / a.n_head_kv, unit_heads = a.unit_heads > 0 ? a.unit_heads : group;
    const int kvh = (int)blockIdx.x * unit_heads / group;
    if (mine) bitnet__att_prefetch(a, kvh, p0, np);
    if (a.tail.q && blockIdx.x == 0 && blockIdx.y == 0) bitnet__prefetch_l2(a.tail.in.norm, (size_t)a.tail.n * 4);
    bitnet__pdl_wait();
    if (a.late_launch) bitnet__pdl_launch_next();
    if (mine) bitnet__att_block_t<MG, MD, false>(a, blockIdx.x, kvh, blockIdx.y, splits, gridDim.y, p0, np, s_q, s_w, s_red);
}
typedef void (*bitnet__attention_fn)(const bitnet__attn_args);
static bitnet__attention_fn bitnet__attention_kernel_for(int n_head, int n_head_kv, int head_dim) {
    return bitnet__att_small(n_head, n_head_kv, head_dim) ? bitnet__attention_kernel<4, 128>
                                                          : bitnet__attention_kernel<BITNET__ATT_MAX_GROUP, BITNET__ATT_MAX_DIM>;
}

/* ===========================================================================
   LM head: final RMSNorm, logits, argmax
   ===========================================================================
   A warp takes one vocabulary row at a time (16-byte loads, rows spread over the
   grid); the normed hidden state sits in shared memory, as floats (bf16/f16 head)
   or quantized to int8 (int8 head: dp4a, scaled per row).  Each block keeps its
   best (logit, id); the last block to finish picks the token, so only its id need
   ever reach the host, and advances the step's position. */
#define BITNET__HEAD_THREADS 256

struct bitnet__head_args {
    const void *w;              /* rows of k of type w_type (BITNET__TABLE_*), or NULL */
    int w_type;
    const int8_t *w8;           /* int8 rows of k, or NULL */
    const float *w8_scale;      /* per row: real value = q * scale */
    int n_vocab, k;
    const float *x;             /* the residual stream */
    const float *norm;
    float eps;
    float *logits;
    float2 *block_best;         /* per block: (logit, id as float bits) */
    unsigned *counter;          /* zero between launches */
    int *token;                 /* the argmax */
    int *tokens, *pos;          /* the step's input: feed the argmax to the next step */
    int n_ctx;
    int late_launch;
};

/* The sampler's candidate order: higher logit first, then lower id; NaN last. */
__device__ __forceinline__ bool bitnet__ranks_before(float v, int i, float bv, int bi) {
    if (v != v) return false;
    if (bv != bv) return true;
    return v > bv || (v == bv && i < bi);
}

template <int INT8>
__global__ void __launch_bounds__(BITNET__HEAD_THREADS) bitnet__head_kernel(const bitnet__head_args a) {
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ double red_d[32];
    __shared__ float red_f[32];
    __shared__ float best_v[BITNET__HEAD_THREADS / 32];
    __shared__ int best_i[BITNET__HEAD_THREADS / 32];
    __shared__ int s_last;
    float *hidden = (float *)smem;               /* k floats (bf16/f16/f32 head) */
    int8_t *hq = (int8_t *)smem;                 /* k int8 (int8 head) */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, n_warps = blockDim.x >> 5;
    const int k = a.k;
    if (!a.late_launch) bitnet__pdl_launch_next();
    bitnet__pdl_wait();
    if (a.late_launch) bitnet__pdl_launch_next();

    /* RMSNorm (and for the int8 head, quantization), as the CPU computes them */
    double ss = 0.0;
    for (int i = tid; i < k; i += blockDim.x) ss += (double)a.x[i] * a.x[i];
    ss = bitnet__block_reduce(ss, bitnet__op_add(), red_d);
    const float inv_rms = 1.0f / sqrtf((float)(ss / k) + a.eps);
    float x_scale = 1.0f;
    if (!INT8) {
        for (int i = tid; i < k; i += blockDim.x) hidden[i] = a.norm[i] * (a.x[i] * inv_rms);
    } else {
        float amax = 0.0f;
        for (int i = tid; i < k; i += blockDim.x) amax = fmaxf(amax, fabsf(a.norm[i] * (a.x[i] * inv_rms)));
        amax = bitnet__block_reduce(amax, bitnet__op_max(), red_f);
        x_scale = 127.0f / fmaxf(amax, 1e-5f);
        for (int i = tid; i < k; i += blockDim.x) hq[i] = (int8_t)bitnet__quant1(a.norm[i] * (a.x[i] * inv_rms), x_scale);
    }
    __syncthreads();

    float bv = -INFINITY;
    int bi = 0x7fffffff;
    bool have = false;
    /* a warp takes two rows at a time, each lane keeping 4 loads of each in flight */
    const int f32 = !INT8 && a.w_type == BITNET__TABLE_F32;
    const int n_vec = INT8 ? k / 16 : f32 ? k / 4 : k / 8;   /* 16-byte vectors per row */
    for (int r0 = (blockIdx.x * n_warps + warp) * 2; r0 < a.n_vocab; r0 += gridDim.x * n_warps * 2) {
        const bool two = r0 + 1 < a.n_vocab;
        const uint4 *row0 = (const uint4 *)(INT8 ? (const void *)(a.w8 + (size_t)r0 * k)
                                                 : (const void *)((const uint8_t *)a.w + (size_t)r0 * k * (f32 ? 4 : 2)));
        const uint4 *row1 = row0 + n_vec;
        float facc[2] = {0.0f, 0.0f};
        int iacc[2] = {0, 0};
        for (int base = lane; base < n_vec; base += 4 * 32) {
            uint4 wv[2][4];
#pragma unroll
            for (int u = 0; u < 4; u++)
                if (base + 32 * u < n_vec) {
                    wv[0][u] = __ldcs(row0 + base + 32 * u);
                    if (two) wv[1][u] = __ldcs(row1 + base + 32 * u);
                }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int i = base + 32 * u;
                if (i >= n_vec) continue;
                if (!INT8 && f32) {
                    const float4 h = *(const float4 *)(hidden + 4 * i);
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) {
                        const uint4 w = wv[rr][u];
                        facc[rr] += __uint_as_float(w.x) * h.x + __uint_as_float(w.y) * h.y + __uint_as_float(w.z) * h.z +
                                    __uint_as_float(w.w) * h.w;
                    }
                } else if (!INT8) {
                    const float4 h0 = *(const float4 *)(hidden + 8 * i), h1 = *(const float4 *)(hidden + 8 * i + 4);
                    const float hs[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) {
                        const uint32_t ws[4] = {wv[rr][u].x, wv[rr][u].y, wv[rr][u].z, wv[rr][u].w};
#pragma unroll
                        for (int j = 0; j < 4; j++) {
                            float lo, hi;
                            if (a.w_type == BITNET__TABLE_F16) {
                                const float2 f = __half22float2(*(const __half2 *)&ws[j]);
                                lo = f.x;
                                hi = f.y;
                            } else {
                                lo = __uint_as_float(ws[j] << 16);
                                hi = __uint_as_float(ws[j] & 0xffff0000u);
                            }
                            facc[rr] += lo * hs[2 * j] + hi * hs[2 * j + 1];
                        }
                    }
                } else {
                    const int4 x = ((const int4 *)hq)[i];
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) {
                        iacc[rr] = __dp4a((int)wv[rr][u].x, x.x, iacc[rr]);
                        iacc[rr] = __dp4a((int)wv[rr][u].y, x.y, iacc[rr]);
                        iacc[rr] = __dp4a((int)wv[rr][u].z, x.z, iacc[rr]);
                        iacc[rr] = __dp4a((int)wv[rr][u].w, x.w, iacc[rr]);
                    }
                }
            }
        }
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            const int r = r0 + rr;
            float logit;
            if (!INT8) {
                for (int o = 16; o; o >>= 1) facc[rr] += __shfl_xor_sync(0xffffffffu, facc[rr], o);
                logit = facc[rr];
            } else {
                for (int o = 16; o; o >>= 1) iacc[rr] += __shfl_xor_sync(0xffffffffu, iacc[rr], o);
                logit = r < a.n_vocab ? (float)iacc[rr] * (a.w8_scale[r] * (1.0f / x_scale)) : 0.0f;
            }
            if (r >= a.n_vocab) break;
            if (lane == 0) a.logits[r] = logit;
            if (!have || bitnet__ranks_before(logit, r, bv, bi)) { bv = logit; bi = r; have = true; }
        }
    }
    if (lane == 0) { best_v[warp] = bv; best_i[warp] = have ? bi : 0x7fffffff; }
    __syncthreads();
    if (tid == 0) {
        float v = best_v[0];
        int i = best_i[0];
        for (int w = 1; w < n_warps; w++)
            if (best_i[w] != 0x7fffffff && (i == 0x7fffffff || bitnet__ranks_before(best_v[w], best_i[w], v, i))) {
                v = best_v[w];
                i = best_i[w];
            }
        a.block_best[blockIdx.x] = make_float2(v, __int_as_float(i));
        __threadfence();
        s_last = atomicAdd(a.counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!s_last) return;
    /* the whole last block reduces the blocks' bests (one thread reading them one
       after another would take a memory round trip per block) */
    __threadfence();
    float v = 0.0f;
    int i = 0x7fffffff;
    for (unsigned b = tid; b < gridDim.x; b += blockDim.x) {
        const float2 e = __ldcg(a.block_best + b);
        const int ei = __float_as_int(e.y);
        if (ei != 0x7fffffff && (i == 0x7fffffff || bitnet__ranks_before(e.x, ei, v, i))) { v = e.x; i = ei; }
    }
    for (int o = 16; o; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (oi != 0x7fffffff && (i == 0x7fffffff || bitnet__ranks_before(ov, oi, v, i))) { v = ov; i = oi; }
    }
    __syncthreads();
    if (lane == 0) { best_v[warp] = v; best_i[warp] = i; }
    __syncthreads();
    if (tid != 0) return;
    for (int w = 1; w < n_warps; w++)
        if (best_i[w] != 0x7fffffff && (i == 0x7fffffff || bitnet__ranks_before(best_v[w], best_i[w], v, i))) {
            v = best_v[w];
            i = best_i[w];
        }
    *a.token = i;
    *a.counter = 0;
    /* The next step, unless the host says otherwise, eats this token at pos + 1:
       back-to-back replays then need no host work at all. */
    const int pos = *a.pos;
    if (pos + 1 < a.n_ctx) a.tokens[pos + 1] = i;
    *a.pos = pos + 1;
}

/* The int8 LM head, once per model: per row, s = 127 / max|w|, q = clamp(rint(w s),
   -127, 127), scale = max|w| / 127 (as the CPU path builds it).  A warp per row. */
__global__ void bitnet__head_int8_build_kernel(const void *w, int w_type, int n_vocab, int k, int8_t *q, float *scale) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= n_vocab) return;
    const void *row = (const uint8_t *)w + (size_t)r * k * bitnet__table_elem(w_type);
    float amax = 0.0f;
    for (int i = lane; i < k; i += 32) amax = fmaxf(amax, fabsf(bitnet__table_float(row, i, w_type)));
    for (int o = 16; o; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float s = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = lane; i < k; i += 32)
        q[(size_t)r * k + i] = (int8_t)fminf(fmaxf(rintf(bitnet__table_float(row, i, w_type) * s), -127.0f), 127.0f);
    if (lane == 0) scale[r] = amax / 127.0f;
}

/* ===========================================================================
   Sampling candidates: the best logits and the log-sum-exp, on the device
   ===========================================================================
   A sampled step needs only the best few logits in rank order and the softmax's
   normalization (bitnet.h, bitnet__sampler_finish), so BITNET__CUDA_CANDIDATES ids
   and logits and one double cross to the host instead of n_vocab floats.  Every
   logit, after the repetition penalty, becomes a 64-bit key that sorts in the
   sampler's rank order: the high half is the logit's bits made monotonic (NaN
   lowest, -0 as +0), the low half the complement of the id (ties to the lower id).
   Each block of the first kernel sorts 4096 keys in shared memory (bitonic) and
   keeps its best C; rounds of the second kernel do the same over the survivors
   until one block is left, which also combines the first kernel's log-sum-exp
   partials.  Padding keys are 0, below every real key. */
#define BITNET__SORT_N 4096
#define BITNET__SORT_THREADS 1024
#define BITNET__CAND BITNET__CUDA_CANDIDATES

typedef unsigned long long bitnet__key;

struct bitnet__cand_out {      /* what the host gets back */
    double lse;                /* log of the sum over the vocabulary of exp(penalized logit * inv_temp) */
    int ids[BITNET__CAND];     /* rank order */
    float logits[BITNET__CAND];/* penalized, not scaled by the temperature */
};

__device__ __forceinline__ bitnet__key bitnet__rank_key(float v, int id) {
    unsigned u = 0;            /* NaN ranks last */
    if (v == v) {
        u = __float_as_uint(v == 0.0f ? 0.0f : v);
        u = u & 0x80000000u ? ~u : u | 0x80000000u;
    }
    return (bitnet__key)u << 32 | (0xffffffffu - (unsigned)id);
}
__device__ __forceinline__ float bitnet__key_logit(bitnet__key k) {
    const unsigned u = (unsigned)(k >> 32);
    if (!u) return __uint_as_float(0x7fc00000u);
    return __uint_as_float(u & 0x80000000u ? u & 0x7fffffffu : ~u);
}
__device__ __forceinline__ int bitnet__key_id(bitnet__key k) { return (int)(0xffffffffu - (unsigned)k); }

/* Sorts BITNET__SORT_N keys in shared memory, best first (the whole block). */
__device__ void bitnet__sort_keys(bitnet__key *k) {
    for (int size = 2; size <= BITNET__SORT_N; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int t = threadIdx.x; t < BITNET__SORT_N / 2; t += blockDim.x) {
                /* pairs (i, i + stride); runs of `size` alternate direction, the last
                   stage (size = SORT_N) runs all descending */
                const int i = 2 * t - (t & (stride - 1)), j = i + stride;
                const bitnet__key x = k[i], y = k[j];
                if ((x < y) == ((i & size) == 0)) { k[i] = y; k[j] = x; }
            }
        }
    __syncthreads();
}

struct bitnet__cand_args {
    const float *logits;
    int n_vocab;
    const int *pen;            /* n_pen distinct token ids; ids outside the vocabulary are ignored */
    int n_pen;
    float penalty;             /* positive logits divided by it, negative ones multiplied */
    float inv_temp;
    const bitnet__key *keys_in;/* the rounds after the first: the survivors so far */
    int n_keys_in;
    bitnet__key *keys_out;     /* per block: its best C keys */
    double2 *lse_part;         /* per first-round block: (max x, sum of exp(x - max)), x = logit * inv_temp */
    int n_lse_part;
    bitnet__cand_out *out;     /* written by the last round (one block) */
};

__global__ void __launch_bounds__(BITNET__SORT_THREADS) bitnet__cand_first_kernel(const bitnet__cand_args a) {
    __shared__ bitnet__key keys[BITNET__SORT_N];
    __shared__ float red_f[32];
    __shared__ double red_d[32];
    const int base = blockIdx.x * BITNET__SORT_N;
    for (int j = threadIdx.x; j < BITNET__SORT_N; j += blockDim.x)
        keys[j] = base + j < a.n_vocab ? bitnet__rank_key(a.logits[base + j], base + j) : 0;
    __syncthreads();
    /* the repetition penalty, as bitnet__penalize computes it */
    for (int j = threadIdx.x; j < a.n_pen; j += blockDim.x) {
        const int t = a.pen[j];
        if (t >= base && t < base + BITNET__SORT_N && t < a.n_vocab) {
            const float v = a.logits[t];
            keys[t - base] = bitnet__rank_key(v > 0.0f ? __fdiv_rn(v, a.penalty) : __fmul_rn(v, a.penalty), t);
        }
    }
    __syncthreads();
    /* log-sum-exp of the block's x = logit * inv_temp (rounded as the CPU rounds it),
       NaN counting as -infinity */
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < BITNET__SORT_N; j += blockDim.x) {
        const float x = __fmul_rn(bitnet__key_logit(keys[j]), a.inv_temp);
        if (x == x) mx = fmaxf(mx, x);
    }
    mx = bitnet__block_reduce(mx, bitnet__op_max(), red_f);
    double sum = 0.0;
    if (mx > -INFINITY)
        for (int j = threadIdx.x; j < BITNET__SORT_N; j += blockDim.x) {
            const float x = __fmul_rn(bitnet__key_logit(keys[j]), a.inv_temp);
            if (x == x) sum += exp((double)x - (double)mx);
        }
    sum = bitnet__block_reduce(sum, bitnet__op_add(), red_d);
    if (threadIdx.x == 0) a.lse_part[blockIdx.x] = make_double2((double)mx, sum);
    bitnet__sort_keys(keys);
    for (int j = threadIdx.x; j < BITNET__CAND; j += blockDim.x) a.keys_out[(size_t)blockIdx.x * BITNET__CAND + j] = keys[j];
}

__global__ void __launch_bounds__(BITNET__SORT_THREADS) bitnet__cand_merge_kernel(const bitnet__cand_args a) {
    __shared__ bitnet__key keys[BITNET__SORT_N];
    const int base = blockIdx.x * BITNET__SORT_N;
    for (int j = threadIdx.x; j < BITNET__SORT_N; j += blockDim.x) keys[j] = base + j < a.n_keys_in ? a.keys_in[base + j] : 0;
    bitnet__sort_keys(keys);
    if (gridDim.x > 1) {
        for (int j = threadIdx.x; j < BITNET__CAND; j += blockDim.x) a.keys_out[(size_t)blockIdx.x * BITNET__CAND + j] = keys[j];
        return;
    }
    for (int j = threadIdx.x; j < BITNET__CAND; j += blockDim.x) {
        a.out->ids[j] = bitnet__key_id(keys[j]);
        a.out->logits[j] = bitnet__key_logit(keys[j]);
    }
    if (threadIdx.x == 0) {
        double m = -INFINITY, sum = 0.0;
        for (int b = 0; b < a.n_lse_part; b++) m = fmax(m, a.lse_part[b].x);
        if (m > -INFINITY)
            for (int b = 0; b < a.n_lse_part; b++)
                if (a.lse_part[b].x > -INFINITY) sum += a.lse_part[b].y * exp(a.lse_part[b].x - m);
        a.out->lse = m + log(sum);
    }
}

/* Blocks of the first kernel for a vocabulary; each scratch key buffer holds that
   many times BITNET__CAND keys, lse_part that many entries. */
static int bitnet__cand_blocks(int n_vocab) { return (n_vocab + BITNET__SORT_N - 1) / BITNET__SORT_N; }

/* Enqueues the candidates of n_vocab device logits into *out (device).  pen: n_pen
   device token ids. */
static cudaError_t bitnet__enqueue_candidates(const float *logits, int n_vocab, const int *pen, int n_pen, float penalty, float inv_temp,
                                              bitnet__key *keys[2], double2 *lse_part, bitnet__cand_out *out, cudaStream_t st) {
    bitnet__cand_args a;
    int blocks = bitnet__cand_blocks(n_vocab), cur = 0, n_keys;
    memset(&a, 0, sizeof a);
    a.logits = logits;
    a.n_vocab = n_vocab;
    a.pen = pen;
    a.n_pen = n_pen;
    a.penalty = penalty;
    a.inv_temp = inv_temp;
    a.keys_out = keys[0];
    a.lse_part = lse_part;
    a.n_lse_part = blocks;
    a.out = out;
    bitnet__cand_first_kernel<<<blocks, BITNET__SORT_THREADS, 0, st>>>(a);
    cudaError_t e = cudaGetLastError();
    for (n_keys = blocks * BITNET__CAND; e == cudaSuccess; n_keys = blocks * BITNET__CAND) {
        blocks = (n_keys + BITNET__SORT_N - 1) / BITNET__SORT_N;
        a.keys_in = keys[cur];
        a.n_keys_in = n_keys;
        a.keys_out = keys[cur ^ 1];
        bitnet__cand_merge_kernel<<<blocks, BITNET__SORT_THREADS, 0, st>>>(a);
        e = cudaGetLastError();
        cur ^= 1;
        if (blocks == 1) break;
    }
    return e;
}

struct bitnet__cuda_layer_dev {
    uint8_t *qkv, *wo, *gate_up, *down;
    float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm;
    float q_scale, k_scale, v_scale, o_scale, gate_scale, up_scale, down_scale;
};

/* ===========================================================================
   The fused decode step: every layer in one persistent kernel
   ===========================================================================
   The kernel chain above pays a kernel boundary (~2 us of launch and drain, plus
   the next kernel's wait for its input) five times a layer, and each GEMV block
   fetches its 16-row tile only once it has been launched.  Here one cooperative
   launch of as many 256-thread blocks as fit on the GPU at once runs all layers;
   a grid-wide barrier (bitnet__grid_arrive, bitnet__grid_wait) separates the five phases of a layer
   (QKV; attention; O; gate/up; down).  Block b owns the same contiguous range of
   16-row tiles of each matrix in every layer (bitnet__fused_tiles), one
   contiguous run of bytes, and keeps it in shared memory: as soon as a phase has
   used its tiles of layer l, the block starts copying (bitnet__fused_fetch) its
   tiles of the same matrix of layer l + 1 into the same place.  So the weights stream from
   memory a whole layer ahead, during the barriers and the latency-bound parts,
   and a phase finds them in shared memory.  Each phase quantizes its input
   vector itself, in every block, with the arithmetic of the chain and the CPU:
   the int8 values are those of the chain, bit for bit.  O, gate/up and down
   store their outputs times the next norm weight (w x) and publish each block's
   sum of squares and max |w x| with its barrier arrival (the max also folded into
   one word per vector), so the next phase needs no block-wide reduction and
   quantizes without waiting for the sum (bitnet__quantize_parts_block); layer 0's QKV and O
   (whose input attention writes) gather the statistics themselves
   (bitnet__norm_quantize_block).  Attention runs as the chain's
   bitnet__att_block_t, one (KV head, slice) unit per block.  The LM head stays a
   separate kernel (it streams the head at ~95% of copy bandwidth already).

   Needs: cooperative launch, and shared memory for one block's tiles of the four
   matrices (bitnet__fused_plan); otherwise the context runs the kernel chain. */
#define BITNET__FUSED_THREADS 256
/* Timestamps per phase when profiled: start, normalized, weights here, dots,
   epilogue, arrival; then, in a phase whose input comes with its producers'
   statistics, inside bitnet__quantize_parts_block: entry, warp 1 done quantizing,
   warp 0's factor, after the __syncthreads (attention: q, scores, V at 1-3). */
#define BITNET__FUSED_MARKS 10

/* What changes from layer to layer (the rest is in the kernel's parameters); the
   whole table sits in shared memory during the step. */
struct __align__(16) bitnet__fused_layer {
    const uint8_t *w[4];       /* QKV, O, gate/up, down */
    const float *norm[4];      /* attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm */
    float scale[8];            /* q, k, v, o, gate, up, down (and padding) */
};

struct bitnet__fused_args {
    const bitnet__fused_layer *layers;     /* device, n_layer */
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, relu2;
    float eps, att_scale;
    const void *tok_embd;
    int embd_type;
    const int *tokens, *pos;
    const float *inv_freq;
    float *x, *q, *att;                    /* residual stream, queries, attention output */
    float *ffn;                            /* ffn_sub_norm * act(gate) * up */
    float *xw;                             /* the next norm weight * x (ffn_norm after O, the next attn_norm after down) */
    bitnet__norm_part *norm_parts;         /* [3][gridDim.x]: each block's statistics of what it produced, after O, gate/up, down */
    unsigned *norm_max;                    /* [n_layer][3]: the max |w x| of what O, gate/up, down produced (float bits); zeroed at the start */
    bitnet__kv *k_cache, *v_cache;         /* [n_layer][n_head_kv][n_ctx][head_dim] */
    int n_ctx;
    int att_splits;                        /* slices per KV head at most (the partials' stride) */
    int att_chunk;                         /* positions per slice at least */
    int att_short;                         /* up to this many positions, BITNET__ATT_SHORT_CHUNK instead */
    float *part_o;
    float2 *part_ml;
    unsigned *att_counters;                /* n_head, zero between launches */
    int variant;                           /* diagnostics: BITNET__FUSED_* bits */
    int down_stage;                        /* down's input (w x) staged in gate/up's region */
    unsigned *barrier;                     /* [0] arrivals, [1] departures; zero between launches */
    unsigned long long *prof;              /* NULL, or per block BITNET__FUSED_MARKS timestamps per phase and one at the end (ns) */
    unsigned smem_w[4];                    /* the four tile regions: QKV, O, gate/up, down */
    unsigned smem_dots, smem_scratch;      /* the dot products; the int8 input or attention's scratch */
    unsigned smem_layers, smem_freq;       /* the layer table; (cos, sin) of the RoPE angles at the position */
    unsigned smem_resid;                   /* this block's rows of the residual stream (O and down split the rows alike) */
};

/* Diagnostic variants of the fused step (bitnet__cuda_context_set_fused_variant):
   FENCE: the barrier fences with __threadfence() around a relaxed atomic instead
   of a release add and acquire loads; PER_THREAD_COPIES: cp.async by every
   thread instead of bulk copies on Hopper; GATE_UP_AT_ATTENTION, GATE_UP_AT_O:
   gate/up's tiles of the next layer (8.8 MB for 2B4T) requested at the start of
   that layer's attention or O phase instead of during down (with down's staged
   input); GROUPED_ATTENTION: every attention unit a whole KV group, as before the
   thirteenth session, at every position; COPIES_AFTER_ARRIVAL: a GEMV phase
   requests its next tiles after its barrier arrival instead of before it (the
   arrival's fence then waits less, the next one more: slower, tests/PERF.md).
   (Two blocks per SM, 128 registers a thread, measured half as fast and
   is gone: tests/PERF.md.) */
enum {
    BITNET__FUSED_FENCE = 1,
    BITNET__FUSED_PER_THREAD_COPIES = 2,
    BITNET__FUSED_DOWN_IN_REGISTERS = 4,
    BITNET__FUSED_GATE_UP_AT_ATTENTION = 8,
    BITNET__FUSED_GATE_UP_AT_O = 16,
    BITNET__FUSED_GROUPED_ATTENTION = 32,
    BITNET__FUSED_COPIES_AFTER_ARRIVAL = 64
};

/* The normalization's input per thread in registers, in float4: 3 is one round for
   3072 values (down's 6912 are staged in shared memory instead). */
#ifndef BITNET__FUSED_NQ_REGS
#define BITNET__FUSED_NQ_REGS 3   /* 7 (one round for 6912) spilled and measured 6% slower (tests/PERF.md) */
#endif

/* Block b's tiles of a matrix of n_tiles: [t0, t1); at most ceil(n_tiles / blocks). */
__host__ __device__ __forceinline__ void bitnet__fused_tiles(int n_tiles, int b, int blocks, int *t0, int *t1) {
    *t0 = (int)((long long)n_tiles * b / blocks);
    *t1 = (int)((long long)n_tiles * (b + 1) / blocks);
}

/* Matrix m (0 QKV, 1 O, 2 gate/up, 3 down) of a layer: tiles and row length. */
__host__ __device__ __forceinline__ void bitnet__fused_matrix(int m, int n_embd, int n_ff, int n_head_kv, int head_dim, int *n_tiles,
                                                              int *k) {
    const int rows = m == 0 ? n_embd + 2 * n_head_kv * head_dim : m == 2 ? 2 * n_ff : n_embd;
    *n_tiles = rows / 16;
    *k = m == 3 ? n_ff : n_embd;
}

/* A grid-wide barrier in two calls (all threads call both): every block arrives,
   then waits for all gridDim.x of them; *target counts the arrivals that complete
   this barrier (the counter only grows during a launch).  Thread 0's release add,
   after the block's __syncthreads, publishes the block's writes; its acquire
   load, before the next __syncthreads, makes every block's visible (cross-block
   data is read with ld.cg, past L1, as well).  publish: where thread 0 stores the
   block's statistics (the sum of warp_parts), before its arrival, and folds their
   max |w x| into *publish_max.  The release's fence (MEMBAR.ALL.GPU) takes
   longer while the block's weight copies are in flight (tests/PERF.md,
   thirteenth session). */
__device__ __forceinline__ void bitnet__grid_arrive(unsigned *count, unsigned *target, int fence, const bitnet__norm_part *warp_parts = NULL,
                                                    bitnet__norm_part *publish = NULL, unsigned *publish_max = NULL,
                                                    unsigned long long *arrival = NULL) {
    *target += gridDim.x;
    __syncthreads();
    if (threadIdx.x == 0) {
        if (arrival) *arrival = bitnet__globaltimer();   /* profiling: the whole block is here */
        if (publish) {
            /* the block's statistics of its outputs (bitnet__fused_gemv), out with the arrival */
            /* (a tree in a fixed order: every load out before the first add) */
            constexpr int W = BITNET__FUSED_THREADS / 32;
            double ss[W];
            float m[W];
#pragma unroll
            for (int w = 0; w < W; w++) {
                ss[w] = warp_parts[w].ss;
                m[w] = warp_parts[w].m;
            }
#pragma unroll
            for (int step = 1; step < W; step *= 2) {
#pragma unroll
                for (int w = 0; w + step < W; w += 2 * step) {
                    ss[w] += ss[w + step];
                    m[w] = fmaxf(m[w], m[w + step]);
                }
            }
            __stcg((double2 *)publish, make_double2(ss[0], __longlong_as_double((long long)__float_as_uint(m[0]))));
            atomicMax(publish_max, __float_as_uint(m[0]));   /* (m >= 0: the bits order as the floats) */
        }
        if (fence) {
            __threadfence();
            atomicAdd(count, 1u);
        } else {
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(count) : "memory");
        }
    }
}

__device__ __forceinline__ void bitnet__grid_wait(unsigned *count, unsigned target, int fence) {
    if (threadIdx.x == 0) {
        if (fence) {
            unsigned seen;
            do {
                seen = *(volatile unsigned *)count;
            } while ((int)(seen - target) < 0);
            __threadfence();
        } else {
            bitnet__poll_acquire(count, target);
        }
    }
    __syncthreads();
}

/* The weight copies.  On Hopper one thread starts each as one bulk copy (the
   copy engine, TMA) that signals an mbarrier per tile region when its bytes have
   landed; a phase waits on its region's barrier with the parity of the layer.
   Elsewhere, and in the PER_THREAD_COPIES variant, every thread but warp 0's
   copies 16-byte pieces with cp.async and a phase waits for the commit group of
   four groups ago (the copies go out in the same order as the phases).  The
   per-thread copies queue in the SM's load path ahead of the phase's own loads,
   which the bulk copies do not (tests/PERF.md). */
__device__ __forceinline__ bool bitnet__fused_bulk(const bitnet__fused_args &a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    return !(a.variant & BITNET__FUSED_PER_THREAD_COPIES);
#else
    (void)a;
    return false;
#endif
}

/* Whether down's input (w x) is staged in gate/up's free tile region (whose next
   copy then waits until it is read) instead of being read in rounds of registers. */
__device__ __forceinline__ bool bitnet__fused_down_staged(const bitnet__fused_args &a) {
    return a.down_stage && bitnet__fused_bulk(a) && !(a.variant & BITNET__FUSED_DOWN_IN_REGISTERS);
}

__device__ __forceinline__ void bitnet__fused_bars_init(unsigned long long *bars) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0) {
        for (int m = 0; m < 4; m++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"((unsigned)__cvta_generic_to_shared(bars + m)) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
#else
    (void)bars;
#endif
    __syncthreads();
}

/* Starts the copy of this block's tiles of matrix m of layer l into their region
   (all threads call it, after a __syncthreads that ends the region's reads).
   mtx[m]: this block's tiles of matrix m, [x, y), and its row length z
   (computed once at the kernel's start). */
__device__ void bitnet__fused_fetch(const bitnet__fused_args &a, int l, int m, uint8_t *smem, unsigned long long *bars, const int4 *mtx) {
    const uint8_t *src = NULL;
    uint8_t *dst = smem + a.smem_w[m];
    size_t bytes = 0;
    if (l < a.n_layer) {
        const int4 t = mtx[m];
        src = ((const bitnet__fused_layer *)(smem + a.smem_layers))[l].w[m] + (size_t)t.x * t.z * 4;
        bytes = (size_t)(t.y - t.x) * t.z * 4;
    }
    if (bitnet__fused_bulk(a)) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        if (threadIdx.x == 32 && l < a.n_layer) {
            const unsigned bar = (unsigned)__cvta_generic_to_shared(bars + m), d = (unsigned)__cvta_generic_to_shared(dst);
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");   /* after the generic reads of the region */
            asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"((unsigned)bytes) : "memory");
            if (bytes)
                asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(d), "l"(src),
                             "r"((unsigned)bytes), "r"(bar)
                             : "memory");
        }
#endif
        return;
    }
    (void)bars;
    if (threadIdx.x >= 32)
        for (size_t i = (size_t)(threadIdx.x - 32) * 16; i < bytes; i += (size_t)(blockDim.x - 32) * 16) bitnet__copy16_async(dst + i, src + i);
    bitnet__copy_async_commit();   /* one group per call, empty past the last layer */
}

/* Waits until this block's tiles of matrix m of layer l have landed (all threads;
   a __syncthreads follows). */
__device__ __forceinline__ void bitnet__fused_fetch_wait(const bitnet__fused_args &a, int l, int m, unsigned long long *bars) {
    if (bitnet__fused_bulk(a)) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        const unsigned bar = (unsigned)__cvta_generic_to_shared(bars + m);
        unsigned done = 0;
        while (!done)
            asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                         : "=r"(done)
                         : "r"(bar), "r"((unsigned)(l & 1))
                         : "memory");
#endif
        return;
    }
    (void)m;
    (void)bars;
    bitnet__copy_async_wait<3>();
}

/* The four norm weights of layer l into L2 (one of the last four blocks each):
   every block reads them at the start of a phase. */
__device__ __forceinline__ void bitnet__fused_norms_to_l2(const bitnet__fused_args &a, int l, const uint8_t *smem) {
    const int m = (int)gridDim.x - 1 - (int)blockIdx.x;
    if (l < a.n_layer && m >= 0 && m < 4)
        bitnet__prefetch_l2(((const bitnet__fused_layer *)(smem + a.smem_layers))[l].norm[m], (size_t)(m == 3 ? a.n_ff : a.n_embd) * 4);
}

/* Where this block's timestamp i goes when profiled (a row of
   5 BITNET__FUSED_MARKS n_layer + 1 per block), or NULL.  PROF: the instance
   that may be profiled (a.prof checked at run time); the others have no
   profiling code at all. */
template <bool PROF>
__device__ __forceinline__ unsigned long long *bitnet__fused_stamp(const bitnet__fused_args &a, int i) {
    return PROF && a.prof ? a.prof + (size_t)blockIdx.x * (5 * BITNET__FUSED_MARKS * a.n_layer + 1) + i : NULL;
}

template <bool PROF>
__device__ __forceinline__ void bitnet__fused_mark(const bitnet__fused_args &a, int i) {
    if (PROF && a.prof && threadIdx.x == 0) *bitnet__fused_stamp<PROF>(a, i) = bitnet__globaltimer();
}

/* The arguments of phase m's epilogue in layer l (the pointers the epilogue reads
   through point to shared memory where they can). */
__device__ __forceinline__ bitnet__gemv_args bitnet__fused_gemv_args(const bitnet__fused_args &a, const bitnet__fused_layer &L, int l, int m,
                                                                     const int *pos, const float *freq) {
    bitnet__gemv_args g;
    const size_t layer_cache = (size_t)a.n_head_kv * a.n_ctx * a.head_dim;
    memset(&g, 0, sizeof g);
    g.w_scale[0] = L.scale[m == 0 ? 0 : m == 1 ? 3 : m == 2 ? 4 : 6];
    g.w_scale[1] = L.scale[m == 0 ? 1 : 5];
    g.w_scale[2] = L.scale[2];
    g.y = m == 0 ? a.q : m == 2 ? a.ffn : a.x;
    g.k_cache = a.k_cache + (size_t)l * layer_cache;
    g.v_cache = a.v_cache + (size_t)l * layer_cache;
    g.pos = pos;
    g.rope = (const float2 *)freq;
    g.n_ctx = a.n_ctx;
    g.head_dim = a.head_dim;
    g.n_head = a.n_head;
    g.n_head_kv = a.n_head_kv;
    g.relu2 = a.relu2;
    return g;
}

/* What GEMV phase m of layer l needs before its input is there, none of it
   written by other blocks: the norm weight its outputs are multiplied by, and
   this thread's first weight of it.  The step computes it between the barrier's
   arrival and its wait, so that the phase's first loads go out as soon as the
   barrier ends (computed after it, this path was 3.6% of the warps' samples, ncu,
   fifteenth session). */
struct bitnet__fused_prep {
    const float *next_norm;   /* O, gate/up, down: the norm weight that comes next (or NULL) */
    float first_norm;         /* this thread's first weight of it */
};

__device__ __forceinline__ bitnet__fused_prep bitnet__fused_gemv_prep(const bitnet__fused_args &a, int l, int m, const uint8_t *smem,
                                                                      const int4 *mtx) {
    const bitnet__fused_layer *layers = (const bitnet__fused_layer *)(smem + a.smem_layers);
    bitnet__fused_prep r;
    const int4 tiles = mtx[m];
    /* O, gate/up and down also store their outputs times the norm weight that
       comes next (w x) and gather the statistics of what they stored; the weight
       of this thread's first output is loaded now (loaded in the epilogue it cost
       1-2 us a layer) */
    r.next_norm = m == 1 ? layers[l].norm[2] : m == 2 ? layers[l].norm[3] : m == 3 && l + 1 < a.n_layer ? layers[l + 1].norm[0] : NULL;
    r.first_norm = 0.0f;
    if (r.next_norm && (int)threadIdx.x < (tiles.y - tiles.x) * 16 && (m != 2 || (threadIdx.x & 15) < 8)) {
        /* (volatile: the compiler may not sink it to its use) */
        const float *p = r.next_norm + (m == 2 ? (tiles.x + (threadIdx.x >> 4)) * 8 + (threadIdx.x & 7) : tiles.x * 16 + threadIdx.x);
        asm volatile("ld.global.nc.f32 %0, [%1];" : "=f"(r.first_norm) : "l"(p));
    }
    return r;
}

/* One GEMV phase of layer l: normalize and quantize the input, then this block's
   tiles of matrix m (in shared memory once their copy has landed) times it, the
   epilogue of each row, and the copy of the next layer's tiles into the freed
   space.  One body for the four matrices (the epilogue is picked per row): the
   step's code must fit the SM's instruction cache, and four inlined copies of it
   did not (ncu: a quarter of the warps' time stalled on instruction fetch). */
template <bool PROF>
__device__ __forceinline__ void bitnet__fused_gemv(const bitnet__fused_args &a, int l, int m, uint8_t *smem, unsigned long long *bars,
                                                   int (*part)[17], const int *pos, const float *freq, const int4 *mtx,
                                                   bitnet__norm_part *warp_parts, const bitnet__fused_prep &pr) {
    const bitnet__fused_layer &L = ((const bitnet__fused_layer *)(smem + a.smem_layers))[l];
    const int mark = BITNET__FUSED_MARKS * (5 * l + m + (m > 0));
    const int4 tiles = mtx[m];
    const int t0 = tiles.x, t1 = tiles.y, k = tiles.z;
    float x_scale;
    int8_t *xq = (int8_t *)(smem + a.smem_scratch);
    int *dots = (int *)(smem + a.smem_dots);
    /* down's long input is staged in gate/up's tile region, whose next copy waits
       until then (see bitnet__fused_plan) */
    const bool stage = m == 3 && bitnet__fused_down_staged(a);
    const float *next_norm = pr.next_norm;
    const float first_norm = pr.first_norm;
    if ((l == 0 && m == 0) || m == 1) {
        /* layer 0's embedding row and the attention output: every block gathers
           the statistics itself */
        const bool embed = m == 0;
        bitnet__quant_in in;
        memset(&in, 0, sizeof in);
        in.x = embed ? NULL : a.att;
        in.table = a.tok_embd;
        in.table_type = a.embd_type;
        in.tokens = a.tokens;
        in.pos = pos;
        in.norm = L.norm[m];
        in.eps = a.eps;
        if (embed && blockIdx.x == 0) in.copy_to = a.x;
        bitnet__norm_quantize_block<1, BITNET__FUSED_NQ_REGS, BITNET__FUSED_THREADS>(in, k, xq, &x_scale);
    } else {
        /* the producers (the phase before) stored w x and their statistics */
        const int region = m == 0 ? 2 : m - 2;
        bitnet__quantize_parts_block<BITNET__FUSED_NQ_REGS, BITNET__FUSED_THREADS>(
            m == 3 ? a.ffn : a.xw, k, a.norm_parts + region * gridDim.x, gridDim.x, a.norm_max + 3 * (m == 0 ? l - 1 : l) + region, a.eps, xq,
            &x_scale, stage ? (float *)(smem + a.smem_w[2]) : NULL, bitnet__fused_stamp<PROF>(a, mark));
    }
    bitnet__fused_mark<PROF>(a, mark + 1);
    bitnet__fused_fetch_wait(a, l, m, bars);
    __syncthreads();
    if (stage && !(a.variant & (BITNET__FUSED_GATE_UP_AT_ATTENTION | BITNET__FUSED_GATE_UP_AT_O)))
        bitnet__fused_fetch(a, l + 1, 2, smem, bars, mtx);
    bitnet__fused_mark<PROF>(a, mark + 2);
    bitnet__tiles_dot(smem + a.smem_w[m], t1 - t0, k, xq, dots, part);
    bitnet__fused_mark<PROF>(a, mark + 3);
    {
        const bitnet__gemv_args g = bitnet__fused_gemv_args(a, L, l, m, pos, freq);
        /* the statistics: the sum of squares of x and the max |w x| (bitnet__quantize_parts_block) */
        double ss = 0.0;
        float mx = 0.0f;
        for (int j = threadIdx.x; j < (t1 - t0) * 16; j += blockDim.x) {
            const int tile = t0 + (j >> 4), r = j & 15;
            const int *d = dots + (j & ~15);
            if (m == 0) {
                bitnet__gemv_epilogue<BITNET__OUT_QKV>(g, tile, r, d, x_scale);
            } else if (m == 2) {
                if (r < 8) {
                    const int i = tile * 8 + r;
                    const float h = bitnet__gateup_value(g, r, d, x_scale);
                    const float wh = __fmul_rn(j == (int)threadIdx.x ? first_norm : __ldg(next_norm + i), h);
                    a.ffn[i] = wh;
                    ss += (double)h * h;
                    mx = fmaxf(mx, fabsf(wh));
                }
            } else {
                /* the residual add of OUT_ADD, its old value from this block's copy
                   of its rows (from memory only in layer 0's O: block 0 stored
                   the embedding row) */
                float *resid = (float *)(smem + a.smem_resid);
                const int i = tile * 16 + r;
                const float v = __fmul_rn((float)d[r], g.w_scale[0] / x_scale);
                const float y = __fadd_rn(l == 0 && m == 1 ? __ldcg(a.x + i) : resid[j], v);
                a.x[i] = y;
                resid[j] = y;
                if (next_norm) {
                    const float wy = __fmul_rn(j == (int)threadIdx.x ? first_norm : __ldg(next_norm + i), y);
                    a.xw[i] = wy;
                    ss += (double)y * y;
                    mx = fmaxf(mx, fabsf(wy));
                }
            }
        }
        if (m > 0) {
            /* each warp's sums, by its lane 0 through shared memory, in a fixed order:
               a tree of warp shuffles here measured ~0.6 us a phase slower
               (tests/PERF.md, tenth session) */
            __shared__ double lane_ss[BITNET__FUSED_THREADS];
            __shared__ float lane_mx[BITNET__FUSED_THREADS];
            const int warp = threadIdx.x >> 5;
            lane_ss[threadIdx.x] = ss;
            lane_mx[threadIdx.x] = mx;
            __syncwarp();
            if ((threadIdx.x & 31) == 0) {   /* (zeros from lanes and warps without rows) */
                /* four chains of adds (lanes i mod 4), combined in a fixed order:
                   one chain of 31 dependent loads and adds took longer */
                double part_ss[4] = {ss, 0.0, 0.0, 0.0};
#pragma unroll
                for (int i = 1; i < 32; i++) {
                    part_ss[i & 3] += lane_ss[threadIdx.x + i];
                    mx = fmaxf(mx, lane_mx[threadIdx.x + i]);
                }
                ss = (part_ss[0] + part_ss[1]) + (part_ss[2] + part_ss[3]);
                warp_parts[warp].ss = ss;
                warp_parts[warp].m = mx;
            }
        }
    }
    if (!(a.variant & BITNET__FUSED_COPIES_AFTER_ARRIVAL) && !(m == 2 && bitnet__fused_down_staged(a)))
        bitnet__fused_fetch(a, l + 1, m, smem, bars, mtx);   /* the region's reads ended at tiles_dot's last __syncthreads */
    bitnet__fused_mark<PROF>(a, mark + 4);
}

/* Attention unit u of the step (u < n_unit_heads x splits): its unit of query
   heads, their KV head, its slice and the slice's positions [p0, p0 + np) of n.
   Divisions only where a unit is less than a KV group (each is ~100 cycles of
   latency in the phase's chain). */
__device__ __forceinline__ void bitnet__fused_unit(int u, int n_unit_heads, int kv_units, int chunk, int n, int *uh, int *kvh, int *split,
                                                   int *p0, int *np) {
    *split = u / n_unit_heads;
    *uh = u - *split * n_unit_heads;
    *kvh = kv_units == 1 ? *uh : *uh / kv_units;
    bitnet__att_slice_range(*split, chunk, n, p0, np);
}

/* One block per SM: all the registers a thread may have (the kernel is large).
   PROF: the instance that leaves timestamps when a.prof is set; the 2B4T-sized
   instance also comes without, for every step that is not profiled (the marks'
   checks and stamp addresses took ~3% of the warps' samples, ncu, fifteenth
   session). */
template <int MG, int MD, bool PROF>
__global__ void __launch_bounds__(BITNET__FUSED_THREADS, 1) bitnet__fused_layers_kernel(const bitnet__fused_args a) {
    /* 128-byte aligned: the tile regions (multiples of 128 bytes from here) then
       start on 128-byte lines (bitnet__fused_plan).  With the static variables
       leaving the dynamic memory 64 bytes past a line the step ran 2.5% slower,
       80 bytes past ~9% (tests/PERF.md, eighteenth session).  Its own name: the
       other kernels declare theirs 16-byte aligned, and one name with two
       alignments draws a warning (nvcc gives the module's dynamic memory the
       strictest one anyway, so theirs starts on a line too) */
    extern __shared__ __align__(128) uint8_t bitnet__fused_smem[];
    uint8_t *const smem = bitnet__fused_smem;
    __shared__ int part[BITNET__FUSED_THREADS / 32][17];
    __shared__ int s_pos;
    __shared__ unsigned long long bars[4];
    __shared__ int4 mtx[4];
    __shared__ bitnet__norm_part warp_parts[BITNET__FUSED_THREADS / 32];
    float *scratch = (float *)(smem + a.smem_scratch), *freq = (float *)(smem + a.smem_freq);  /* (cos, sin) per dim pair */
    const int fence = a.variant & BITNET__FUSED_FENCE;
    const int G = a.n_head / a.n_head_kv;
    const size_t layer_cache = (size_t)a.n_head_kv * a.n_ctx * a.head_dim;
    unsigned target = 0;
    bitnet__fused_prep prep;
    /* the layer table and the weights of layer 0 start coming; the position and
       the RoPE rotation at it, computed once */
    for (int i = threadIdx.x; i < a.n_layer * (int)sizeof(bitnet__fused_layer) / 16; i += blockDim.x)
        bitnet__copy16_async(smem + a.smem_layers + 16 * i, (const uint8_t *)a.layers + 16 * i);
    bitnet__copy_async_commit();
    bitnet__copy_async_wait<0>();
    __syncthreads();
    bitnet__fused_bars_init(bars);
    if (threadIdx.x < 4) {
        /* this block's tiles of each matrix (the divisions once, not every phase) */
        int n_tiles, k, t0, t1;
        bitnet__fused_matrix(threadIdx.x, a.n_embd, a.n_ff, a.n_head_kv, a.head_dim, &n_tiles, &k);
        bitnet__fused_tiles(n_tiles, blockIdx.x, gridDim.x, &t0, &t1);
        mtx[threadIdx.x] = make_int4(t0, t1, k, 0);
    }
    __syncthreads();
    for (int m = 0; m < 4; m++) bitnet__fused_fetch(a, 0, m, smem, bars, mtx);
    bitnet__fused_norms_to_l2(a, 0, smem);
    if (threadIdx.x == 0) s_pos = *a.pos;
    /* the producers' maxima start from 0 (the first is folded in two barriers later) */
    if (blockIdx.x == 0)
        for (int i = threadIdx.x; i < 3 * a.n_layer; i += blockDim.x) a.norm_max[i] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < a.head_dim / 2; i += blockDim.x) {
        float sn, cs;
        sincosf((float)s_pos * a.inv_freq[i], &sn, &cs);   /* as the QKV epilogue computes them */
        ((float2 *)freq)[i] = make_float2(cs, sn);
    }
    /* attention's units: the fewest query heads a unit (a divisor of the group)
       that still leaves no unit waiting for a block.  At short contexts a block
       per query head and slice puts G times the SMs on the phase, each with 1 / G
       of the work, and reads each K/V row from L2 G times (2B4T at position 128:
       attention's slowest block 205 -> 188 us a step, tests/PERF.md) */
    int unit_heads = G, n_unit_heads, att_splits, att_chunk;
    const int min_chunk = s_pos < a.att_short ? BITNET__ATT_SHORT_CHUNK : a.att_chunk;
    bitnet__att_slices(s_pos + 1, a.att_splits, min_chunk, &att_chunk, &att_splits);
    if (!(a.variant & BITNET__FUSED_GROUPED_ATTENTION))
        for (int u = 1; u < G; u++)
            if (G % u == 0 && a.n_head / u * att_splits <= (int)gridDim.x) {
                unit_heads = u;
                break;
            }
    n_unit_heads = a.n_head / unit_heads;
    /* the units this step has (each with a slice), and per KV head */
    const int n_units = n_unit_heads * att_splits, kv_units = G / unit_heads;
    prep = bitnet__fused_gemv_prep(a, 0, 0, smem, mtx);
    __syncthreads();
    for (int l = 0; l < a.n_layer; l++) {
        bitnet__attn_args at;
        memset(&at, 0, sizeof at);
        at.q = a.q;
        at.k_cache = a.k_cache + (size_t)l * layer_cache;
        at.v_cache = a.v_cache + (size_t)l * layer_cache;
        at.out = a.att;
        at.part_o = a.part_o;
        at.part_ml = a.part_ml;
        at.counters = a.att_counters;
        at.pos = &s_pos;
        at.n_ctx = a.n_ctx;
        at.head_dim = a.head_dim;
        at.n_head = a.n_head;
        at.n_head_kv = a.n_head_kv;
        at.unit_heads = unit_heads;
        at.scale = a.att_scale;
        at.min_chunk = min_chunk;
        at.stamps = bitnet__fused_stamp<PROF>(a, BITNET__FUSED_MARKS * (5 * l + 1));
        /* (spread combining only where every unit has a block of its own: a block
           waiting in its first unit for a slice that is another block's second
           would deadlock) */
        at.count_target = n_units <= (int)gridDim.x ? (unsigned)((l + 1) * att_splits) : 0u;
        /* the phases: 0 QKV, RoPE, K/V append (layer 0 reads the token's embedding
           row; block 0 also stores it as the residual stream); 1 attention; 2 O and
           the residual; 3 gate/up and act(gate) * up; 4 down and the residual.  A
           loop, not unrolled, so that the four GEMV phases run the same code. */
#pragma unroll 1
        for (int p = 0; p < 5; p++) {
            bitnet__fused_mark<PROF>(a, BITNET__FUSED_MARKS * (5 * l + p));
            if (p == 0) {
                /* this block's attention slices of the cache go to L2, a phase early
                   (by the first unit of each KV head); the last four blocks pull the
                   next layer's norm weights there */
                for (int u = blockIdx.x; u < n_units; u += gridDim.x) {
                    int uh, kvh, split, p0, np;
                    bitnet__fused_unit(u, n_unit_heads, kv_units, att_chunk, s_pos + 1, &uh, &kvh, &split, &p0, &np);
                    if (uh == kvh * kv_units) bitnet__att_prefetch(at, kvh, p0, np);
                }
                bitnet__fused_norms_to_l2(a, l + 1, smem);
            }
            if (p == 4 && l == a.n_layer - 1) bitnet__pdl_launch_next();   /* the LM head may get ready */
            if (l > 0 && bitnet__fused_down_staged(a) &&
                ((p == 1 && (a.variant & BITNET__FUSED_GATE_UP_AT_ATTENTION)) || (p == 2 && (a.variant & BITNET__FUSED_GATE_UP_AT_O))))
                bitnet__fused_fetch(a, l, 2, smem, bars, mtx);   /* (the region's last reads, down's, were before the barrier) */
            if (p == 1) {
                for (int u = blockIdx.x; u < n_units; u += gridDim.x) {
                    int uh, kvh, split, p0, np;
                    bitnet__fused_unit(u, n_unit_heads, kv_units, att_chunk, s_pos + 1, &uh, &kvh, &split, &p0, &np);
                    bitnet__att_block_t<MG, MD, true>(at, uh, kvh, split, att_splits, a.att_splits, p0, np, scratch, scratch + G * a.head_dim,
                                                      scratch + G * (a.head_dim + BITNET__ATT_THREADS));
                }
                bitnet__fused_mark<PROF>(a, BITNET__FUSED_MARKS * (5 * l + 1) + 4);
            } else {
                bitnet__fused_gemv<PROF>(a, l, p == 0 ? 0 : p - 1, smem, bars, part, &s_pos, freq, mtx, warp_parts, prep);
            }
            /* the barrier (in the COPIES_AFTER_ARRIVAL variant, a GEMV phase requests
               its matrix's tiles of the next layer between the arrival and the wait) */
            const bool sync = p < 4 || l + 1 < a.n_layer;
            if (sync)
                bitnet__grid_arrive(a.barrier, &target, fence, warp_parts, p >= 2 ? a.norm_parts + (p - 2) * gridDim.x + blockIdx.x : NULL,
                                    p >= 2 ? a.norm_max + 3 * l + p - 2 : NULL, bitnet__fused_stamp<PROF>(a, BITNET__FUSED_MARKS * (5 * l + p) + 5));
            if (p != 1 && (a.variant & BITNET__FUSED_COPIES_AFTER_ARRIVAL) && !(p == 3 && bitnet__fused_down_staged(a)))
                bitnet__fused_fetch(a, l + 1, p == 0 ? 0 : p - 1, smem, bars, mtx);   /* (none after the last layer) */
            if (sync) {
                /* the next GEMV phase's preparation while the barrier completes */
                const int next_l = p == 4 ? l + 1 : l, next_p = p == 4 ? 0 : p + 1;
                if (next_p != 1) prep = bitnet__fused_gemv_prep(a, next_l, next_p == 0 ? 0 : next_p - 1, smem, mtx);
                bitnet__grid_wait(a.barrier, target, fence);
            }
        }
    }
    bitnet__fused_mark<PROF>(a, BITNET__FUSED_MARKS * 5 * a.n_layer);
    /* the last block out resets the barrier for the next launch (every block has
       left its last wait once it counts itself out) */
    bitnet__copy_async_wait<0>();
    if (threadIdx.x == 0 && atomicAdd(a.barrier + 1, 1u) == gridDim.x - 1) {
        a.barrier[0] = 0;
        a.barrier[1] = 0;
        for (int h = 0; h < a.n_head; h++) a.att_counters[h] = 0;   /* (the units' counters grew through the launch) */
    }
}

typedef void (*bitnet__fused_fn)(const bitnet__fused_args);
static bitnet__fused_fn bitnet__fused_kernel_for(const bitnet__cuda_shape *s, bool prof) {
    if (!bitnet__att_small(s->n_head, s->n_head_kv, s->head_dim))
        return bitnet__fused_layers_kernel<BITNET__ATT_MAX_GROUP, BITNET__ATT_MAX_DIM, true>;
    return prof ? bitnet__fused_layers_kernel<4, 128, true> : bitnet__fused_layers_kernel<4, 128, false>;
}

/* ===========================================================================
   Host side: errors, launches
   =========================================================================== */

static int bitnet__cuda_fail(bitnet_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        err->needed = 0;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A failed CUDA call becomes BITNET_E_NOMEM or BITNET_E_BACKEND.  Reading the
   error also clears it, unless it is sticky (a fault that ends the CUDA context). */
static int bitnet__cuda_check(cudaError_t e, bitnet_error *err, const char *what, int line) {
    if (e == cudaSuccess) return BITNET_OK;
    (void)cudaGetLastError();
    return bitnet__cuda_fail(err, e == cudaErrorMemoryAllocation ? BITNET_E_NOMEM : BITNET_E_BACKEND,
                             "CUDA error in %s: %s (bitnet_cuda.cu:%d)", what, cudaGetErrorString(e), line);
}
#define BITNET__CK(call)                                                                 \
    do {                                                                                 \
        if ((rc = bitnet__cuda_check((call), err, #call, __LINE__)) != BITNET_OK) goto fail; \
    } while (0)

/* Makes `device` current for the lifetime of the guard, then restores the caller's. */
struct bitnet__device_guard {
    int prev, changed;
    explicit bitnet__device_guard(int device) : prev(0), changed(0) {
        if (cudaGetDevice(&prev) == cudaSuccess && prev != device) changed = cudaSetDevice(device) == cudaSuccess;
        (void)cudaGetLastError();
    }
    ~bitnet__device_guard() {
        if (changed) cudaSetDevice(prev);
    }
};

/* cudaLaunchKernelEx with programmatic dependent launch when pdl is set.  Every
   kernel lets its successor launch (griddepcontrol.launch_dependents) either at its
   very start (early: the successor, and in turn its successor, may start fetching
   weights while this kernel still waits for its own input) or once its input is
   there (late: at most one kernel runs ahead); the kernels' late_launch field says
   which, tests/gpu_bench_* measure both. */
template <typename Args>
static cudaError_t bitnet__launch(void (*kernel)(Args), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, int pdl,
                                  const Args &args) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1] = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args);
}

static int bitnet__gemv_threads(int k, int tiles) { return k > 4096 || tiles > 1 ? 256 : 128; }

template <int IN, int OUT>
static cudaError_t bitnet__launch_gemv(const bitnet__gemv_args &a, cudaStream_t stream, int pdl) {
    const int tpb = a.tiles_per_block > 1 ? a.tiles_per_block : 1;
    if (tpb > BITNET__GEMV_MAX_TILES) return cudaErrorInvalidValue;
    size_t smem = bitnet__gemv_smem(a.k, IN, tpb);
    if (a.tail.q && a.tail.staged && smem < (size_t)a.tail.n * 4) smem = (size_t)a.tail.n * 4;   /* within what kernels_prepare allows */
    return bitnet__launch(bitnet__gemv_kernel<IN, OUT>, dim3((unsigned)((a.n / 16 + tpb - 1) / tpb)), dim3((unsigned)bitnet__gemv_threads(a.k, tpb)),
                          smem, stream, pdl, a);
}

/* Raises the dynamic shared memory limit of the kernels that need more than the
   default 48 KB for inputs of length k (GEMV) and hidden size n_embd (LM head). */
static cudaError_t bitnet__kernels_prepare(int max_k, int n_embd) {
    cudaError_t e = cudaSuccess;
    int g = (int)bitnet__gemv_smem(max_k, BITNET__IN_INT8), ge = (int)bitnet__gemv_smem(n_embd, BITNET__IN_EMBED), h = n_embd * 4;
#define BITNET__SMEM(kern, bytes) \
    if (e == cudaSuccess && (bytes) > 48 * 1024) e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
    BITNET__SMEM((bitnet__gemv_kernel<BITNET__IN_EMBED, BITNET__OUT_QKV>), ge);
    BITNET__SMEM((bitnet__gemv_kernel<BITNET__IN_INT8, BITNET__OUT_QKV>), g);
    BITNET__SMEM((bitnet__gemv_kernel<BITNET__IN_INT8, BITNET__OUT_ADD>), g);
    BITNET__SMEM((bitnet__gemv_kernel<BITNET__IN_INT8, BITNET__OUT_GATEUP>), g);
    BITNET__SMEM(bitnet__head_kernel<0>, h);
    BITNET__SMEM(bitnet__head_kernel<1>, h);
#undef BITNET__SMEM
    return e;
}

/* ===========================================================================
   The model on the device (shared by all CUDA contexts of a bitnet_model)
   =========================================================================== */
struct bitnet__cuda_model {
    bitnet__cuda_shape shape;
    int device, n_sm, cc;
    size_t max_smem;              /* dynamic shared memory a block may opt in to */
    void *arena;                  /* everything below, one allocation */
    size_t arena_bytes;
    bitnet__cuda_layer_dev *layers;
    void *tok_embd, *output;      /* [n_vocab][n_embd] of shape.embd_type; output == tok_embd when tied */
    float *output_norm, *inv_freq;
    int8_t *head8;                /* int8 LM head, built on first use */
    float *head8_scale;
};

/* Carves aligned pieces out of one allocation (base NULL: only counts). */
struct bitnet__carver {
    uint8_t *base;
    size_t used;
    void *take(size_t bytes) {
        void *p = base ? base + used : NULL;
        used += (bytes + 255) / 256 * 256;
        return p;
    }
};

static size_t bitnet__qkv_rows(const bitnet__cuda_shape *s) { return (size_t)s->n_embd + 2 * (size_t)s->n_head_kv * s->head_dim; }

static void bitnet__model_carve(bitnet__cuda_model *m, bitnet__carver *c) {
    const bitnet__cuda_shape *s = &m->shape;
    const size_t e = (size_t)s->n_embd, f = (size_t)s->n_ff, table = (size_t)s->n_vocab * e * bitnet__table_elem(s->embd_type);
    m->tok_embd = c->take(table);
    m->output = s->tied ? m->tok_embd : c->take(table);
    m->output_norm = (float *)c->take(e * 4);
    m->inv_freq = (float *)c->take((size_t)s->head_dim / 2 * 4);
    for (int l = 0; l < s->n_layer; l++) {
        bitnet__cuda_layer_dev *L = &m->layers[l];
        L->qkv = (uint8_t *)c->take(bitnet__qkv_rows(s) * e / 4);
        L->wo = (uint8_t *)c->take(e * e / 4);
        L->gate_up = (uint8_t *)c->take(2 * f * e / 4);
        L->down = (uint8_t *)c->take(e * f / 4);
        L->attn_norm = (float *)c->take(e * 4);
        L->attn_sub_norm = (float *)c->take(e * 4);
        L->ffn_norm = (float *)c->take(e * 4);
        L->ffn_sub_norm = (float *)c->take(f * 4);
    }
}

extern "C" void bitnet__cuda_model_free(void *model) {
    bitnet__cuda_model *m = (bitnet__cuda_model *)model;
    if (!m) return;
    {
        bitnet__device_guard guard(m->device);
        cudaFree(m->arena);
        cudaFree(m->head8);
        cudaFree(m->head8_scale);
        (void)cudaGetLastError();
    }
    free(m->layers);
    free(m);
}

extern "C" size_t bitnet__cuda_model_bytes(const void *model) {
    const bitnet__cuda_model *m = (const bitnet__cuda_model *)model;
    if (!m) return 0;
    return m->arena_bytes + (m->head8 ? (size_t)m->shape.n_vocab * (m->shape.n_embd + 4) : 0);
}

static int bitnet__check_shape(const bitnet__cuda_shape *s, size_t max_smem, bitnet_error *err) {
    const int hd = s->head_dim;
    if (hd != 16 && hd != 32 && hd != 64 && hd != 128 && hd != 256)
        return bitnet__cuda_fail(err, BITNET_E_UNSUPPORTED, "CUDA backend: head dimension %d is not supported (16, 32, 64, 128 or 256)", hd);
    if (s->n_head % s->n_head_kv || s->n_head / s->n_head_kv > BITNET__ATT_MAX_GROUP)
        return bitnet__cuda_fail(err, BITNET_E_UNSUPPORTED, "CUDA backend: %d query heads per KV head is not supported (at most %d)",
                                 s->n_head / s->n_head_kv, BITNET__ATT_MAX_GROUP);
    if (s->n_embd % 32 || s->n_ff % 32)
        return bitnet__cuda_fail(err, BITNET_E_UNSUPPORTED,
                                 "CUDA backend: the W2A8 GEMV needs matrix widths that are multiples of 32 (embedding %d, FFN %d)",
                                 s->n_embd, s->n_ff);
    if (bitnet__gemv_smem(s->n_embd > s->n_ff ? s->n_embd : s->n_ff, BITNET__IN_INT8) > max_smem ||
        bitnet__gemv_smem(s->n_embd, BITNET__IN_EMBED) > max_smem)
        return bitnet__cuda_fail(err, BITNET_E_UNSUPPORTED,
                                 "CUDA backend: embedding %d / FFN %d too large for this GPU's %zu bytes of shared memory per block",
                                 s->n_embd, s->n_ff, max_smem);
    return BITNET_OK;
}

extern "C" int bitnet__cuda_model_create(const bitnet__cuda_shape *shape, int device, const void *tok_embd, const void *output,
                                         const float *output_norm, const float *rope_inv_freq, void **out, bitnet_error *err) {
    bitnet__cuda_model *m = NULL;
    cudaDeviceProp prop;
    int n_dev = 0, rc = BITNET_OK;
    const size_t table = (size_t)shape->n_vocab * shape->n_embd * bitnet__table_elem(shape->embd_type);
    bitnet__carver carve = {NULL, 0};
    *out = NULL;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0) {
        (void)cudaGetLastError();
        return bitnet__cuda_fail(err, BITNET_E_BACKEND, "CUDA backend: no usable CUDA device (%s)",
                                 e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    }
    if (device < 0 || device >= n_dev)
        return bitnet__cuda_fail(err, BITNET_E_ARG, "CUDA device %d does not exist (%d found)", device, n_dev);
    bitnet__device_guard guard(device);
    if ((rc = bitnet__cuda_check(cudaGetDeviceProperties(&prop, device), err, "cudaGetDeviceProperties", __LINE__))) return rc;
    if (prop.major * 10 + prop.minor < 75)
        return bitnet__cuda_fail(err, BITNET_E_UNSUPPORTED, "CUDA device %d (%s) has compute capability %d.%d; the backend needs 7.5 or newer",
                                 device, prop.name, prop.major, prop.minor);
    if ((rc = bitnet__check_shape(shape, prop.sharedMemPerBlockOptin, err))) return rc;
    m = (bitnet__cuda_model *)calloc(1, sizeof *m);
    if (m) m->layers = (bitnet__cuda_layer_dev *)calloc((size_t)shape->n_layer, sizeof *m->layers);
    if (!m || !m->layers) {
        if (m) free(m);
        return bitnet__cuda_fail(err, BITNET_E_NOMEM, "out of host memory");
    }
    m->shape = *shape;
    m->device = device;
    m->n_sm = prop.multiProcessorCount;
    m->cc = prop.major * 10 + prop.minor;
    m->max_smem = prop.sharedMemPerBlockOptin;
    bitnet__model_carve(m, &carve);
    m->arena_bytes = carve.used;
    BITNET__CK(bitnet__kernels_prepare(shape->n_embd > shape->n_ff ? shape->n_embd : shape->n_ff, shape->n_embd));
    BITNET__CK(cudaMalloc(&m->arena, m->arena_bytes));
    carve.base = (uint8_t *)m->arena;
    carve.used = 0;
    bitnet__model_carve(m, &carve);
    BITNET__CK(cudaMemcpy(m->tok_embd, tok_embd, table, cudaMemcpyHostToDevice));
    if (!shape->tied) BITNET__CK(cudaMemcpy(m->output, output, table, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(m->output_norm, output_norm, (size_t)shape->n_embd * 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(m->inv_freq, rope_inv_freq, (size_t)shape->head_dim / 2 * 4, cudaMemcpyHostToDevice));
    *out = m;
    return BITNET_OK;
fail:
    if (rc == BITNET_E_NOMEM && err)
        snprintf(err->message, sizeof err->message, "CUDA backend: out of device memory for the model (%.0f MiB on %.64s)",
                 (double)m->arena_bytes / 1048576.0, prop.name);
    bitnet__cuda_model_free(m);
    return rc;
}

extern "C" int bitnet__cuda_model_set_layer(void *model, int layer, const bitnet__cuda_layer *w, bitnet_error *err) {
    bitnet__cuda_model *m = (bitnet__cuda_model *)model;
    const bitnet__cuda_shape *s = &m->shape;
    const size_t e = (size_t)s->n_embd, f = (size_t)s->n_ff;
    int rc = BITNET_OK;
    if (layer < 0 || layer >= s->n_layer) return bitnet__cuda_fail(err, BITNET_E_ARG, "layer %d out of range", layer);
    bitnet__device_guard guard(m->device);
    bitnet__cuda_layer_dev *L = &m->layers[layer];
    BITNET__CK(cudaMemcpy(L->qkv, w->qkv, bitnet__qkv_rows(s) * e / 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(L->wo, w->wo, e * e / 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(L->gate_up, w->gate_up, 2 * f * e / 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(L->down, w->down, e * f / 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(L->attn_norm, w->attn_norm, e * 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(L->attn_sub_norm, w->attn_sub_norm, e * 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(L->ffn_norm, w->ffn_norm, e * 4, cudaMemcpyHostToDevice));
    BITNET__CK(cudaMemcpy(L->ffn_sub_norm, w->ffn_sub_norm, f * 4, cudaMemcpyHostToDevice));
    L->q_scale = w->q_scale;
    L->k_scale = w->k_scale;
    L->v_scale = w->v_scale;
    L->o_scale = w->o_scale;
    L->gate_scale = w->gate_scale;
    L->up_scale = w->up_scale;
    L->down_scale = w->down_scale;
fail:
    return rc;
}

/* The int8 LM head, built from the bf16/f16 one on the device. */
static int bitnet__model_build_head8(bitnet__cuda_model *m, bitnet_error *err) {
    const bitnet__cuda_shape *s = &m->shape;
    int rc = BITNET_OK;
    if (m->head8) return BITNET_OK;
    BITNET__CK(cudaMalloc(&m->head8, (size_t)s->n_vocab * s->n_embd));
    BITNET__CK(cudaMalloc(&m->head8_scale, (size_t)s->n_vocab * 4));
    bitnet__head_int8_build_kernel<<<(s->n_vocab + 7) / 8, 256>>>(m->output, s->embd_type, s->n_vocab, s->n_embd, m->head8,
                                                                 m->head8_scale);
    BITNET__CK(cudaGetLastError());
    BITNET__CK(cudaDeviceSynchronize());
    return BITNET_OK;
fail:
    cudaFree(m->head8);
    cudaFree(m->head8_scale);
    m->head8 = NULL;
    m->head8_scale = NULL;
    return rc;
}

/* ===========================================================================
   A context: KV cache, activations, and the decode step as a CUDA graph
   =========================================================================== */
struct bitnet__cuda_ctx {
    bitnet__cuda_model *m;
    int n_ctx, lm_head_int8, pdl;
    int att_splits;             /* gridDim.y of the attention kernel */
    int att_chunk;              /* positions per attention slice at least, or 0: the default (bitnet__att_min_chunk) */
    int head_blocks;            /* blocks of the LM head kernel */
    int fused_blocks;           /* the fused step (0: not possible here): blocks, */
    int fused_splits;           /* attention slices per KV head at most, */
    size_t fused_smem;          /* dynamic shared memory per block */
    unsigned fused_off[9];      /* and its layout (bitnet__fused_args.smem_w, smem_dots, smem_scratch, smem_layers, smem_freq, smem_resid) */
    int fused_variant;          /* diagnostics: BITNET__FUSED_* */
    int fused_stage;            /* bitnet__fused_args.down_stage */
    void *arena;
    size_t arena_bytes;
    bitnet__kv *k_cache, *v_cache;  /* [n_layer][n_head_kv][n_ctx][head_dim] */
    float *x;                   /* residual stream, n_embd */
    float *q, *att;             /* n_embd: queries after RoPE, attention output */
    float *ffn;                 /* n_ff: act(gate) * up (the fused step: times ffn_sub_norm) */
    float *xw;                  /* n_embd: the fused step's norm weight * x */
    bitnet__norm_part *norm_parts;  /* the fused step's statistics, 3 per block */
    unsigned *norm_max;         /* the fused step's max |w x|, 3 per layer */
    float *logits;              /* n_vocab */
    float *part_o;              /* attention partials */
    float2 *part_ml, *head_best;
    int8_t *xq;                 /* the next BitLinear's input (bitnet__tail), max(n_embd, n_ff) */
    float *xq_scale;
    bitnet__fused_layer *d_fused;       /* the fused step's per-layer arguments */
    unsigned *d_barrier;        /* the fused step's grid barrier, 2 */
    unsigned long long *d_prof; /* the fused step's timestamps when profiled */
    unsigned *counters;         /* n_head for attention (a unit's, at most one a query head), 1 for the LM head, 1 for the tails */
    int *d_pos, *d_tokens, *d_next;  /* the step's position, tokens by position, the argmax */
    bitnet__key *cand_keys[2];  /* sampling candidates (bitnet__enqueue_candidates): scratch */
    double2 *cand_lse;
    int *d_pen;                 /* the repetition penalty's tokens, BITNET__CUDA_MAX_PENALTY */
    bitnet__cand_out *d_cand;
    int *h_pinned;              /* host: [0] position, [1] argmax, [2..] tokens by position */
    bitnet__cand_out *h_cand;   /* host, pinned: the candidates, then the penalty's tokens */
    int dev_pos;                /* the position the device will run next (-1: unknown) */
    cudaStream_t stream;
    cudaGraphExec_t graph;
};

static void bitnet__ctx_carve(bitnet__cuda_ctx *c, bitnet__carver *cv) {
    const bitnet__cuda_shape *s = &c->m->shape;
    const size_t cache = (size_t)s->n_layer * s->n_head_kv * c->n_ctx * s->head_dim * sizeof(bitnet__kv);
    const size_t parts = (size_t)s->n_head_kv * (c->att_splits > c->fused_splits ? c->att_splits : c->fused_splits) *
                         (s->n_head / s->n_head_kv);
    c->k_cache = (bitnet__kv *)cv->take(cache);
    c->v_cache = (bitnet__kv *)cv->take(cache);
    c->x = (float *)cv->take((size_t)s->n_embd * 4);
    c->q = (float *)cv->take((size_t)s->n_embd * 4);
    c->att = (float *)cv->take((size_t)s->n_embd * 4);
    c->ffn = (float *)cv->take((size_t)s->n_ff * 4);
    c->xw = (float *)cv->take((size_t)s->n_embd * 4);
    c->norm_parts = (bitnet__norm_part *)cv->take((size_t)3 * c->fused_blocks * sizeof(bitnet__norm_part));
    c->norm_max = (unsigned *)cv->take((size_t)3 * s->n_layer * sizeof(unsigned));
    c->logits = (float *)cv->take((size_t)s->n_vocab * 4);
    c->part_o = (float *)cv->take(parts * s->head_dim * 4);
    c->part_ml = (float2 *)cv->take(parts * sizeof(float2));
    c->head_best = (float2 *)cv->take((size_t)c->head_blocks * sizeof(float2));
    c->xq = (int8_t *)cv->take((size_t)(s->n_embd > s->n_ff ? s->n_embd : s->n_ff));
    c->xq_scale = (float *)cv->take(sizeof(float));
    c->d_fused = (bitnet__fused_layer *)cv->take((size_t)s->n_layer * sizeof(bitnet__fused_layer));
    c->d_barrier = (unsigned *)cv->take(2 * sizeof(unsigned));
    c->d_prof = (unsigned long long *)cv->take(((size_t)5 * BITNET__FUSED_MARKS * s->n_layer + 1) * (size_t)(c->fused_blocks > 0 ? c->fused_blocks : 1) *
                                               sizeof(unsigned long long));
    c->counters = (unsigned *)cv->take(((size_t)s->n_head + 2) * sizeof(unsigned));
    c->d_pos = (int *)cv->take(sizeof(int));
    c->d_next = (int *)cv->take(sizeof(int));
    c->d_tokens = (int *)cv->take((size_t)c->n_ctx * sizeof(int));
    c->cand_keys[0] = (bitnet__key *)cv->take((size_t)bitnet__cand_blocks(s->n_vocab) * BITNET__CAND * sizeof(bitnet__key));
    c->cand_keys[1] = (bitnet__key *)cv->take((size_t)bitnet__cand_blocks(s->n_vocab) * BITNET__CAND * sizeof(bitnet__key));
    c->cand_lse = (double2 *)cv->take((size_t)bitnet__cand_blocks(s->n_vocab) * sizeof(double2));
    c->d_pen = (int *)cv->take(BITNET__CUDA_MAX_PENALTY * sizeof(int));
    c->d_cand = (bitnet__cand_out *)cv->take(sizeof(bitnet__cand_out));
}

/* How kernels overlap (see bitnet__launch): none, early or late launch. */
enum { BITNET__PDL_OFF = 0, BITNET__PDL_EARLY = 1, BITNET__PDL_LATE = 2 };
/* How a step runs: the kernel chain in one of those modes, or the fused step. */
enum { BITNET__STEP_FUSED = 3 };

/* Whether the fused step (bitnet__fused_layers_kernel) can run here, and its
   launch shape: one block per SM, if the shared memory for its tiles fits;
   c->fused_blocks stays 0 when it cannot.  The slices of attention (at most 256
   positions each) are at most one unit per block where the context allows. */
static cudaError_t bitnet__fused_plan(bitnet__cuda_ctx *c) {
    const bitnet__cuda_model *m = c->m;
    const bitnet__cuda_shape *s = &m->shape;
    const int G = s->n_head / s->n_head_kv;
    cudaFuncAttributes fa;
    int coop = 0;
    cudaError_t e;
    c->fused_blocks = 0;
    c->fused_splits = 0;
    if (cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, m->device) != cudaSuccess || !coop) {
        (void)cudaGetLastError();
        return cudaSuccess;
    }
    /* the instance that runs and the one that is profiled (the same for the general shape) */
    const bitnet__fused_fn kernels[2] = {bitnet__fused_kernel_for(s, false), bitnet__fused_kernel_for(s, true)};
    size_t max_dynamic = m->max_smem;
    for (int i = 0; i < 2; i++) {
        if ((e = cudaFuncGetAttributes(&fa, kernels[i])) != cudaSuccess) return e;
        const size_t left = m->max_smem > fa.sharedSizeBytes ? m->max_smem - fa.sharedSizeBytes : 0;   /* past its static shared memory */
        if (left < max_dynamic) max_dynamic = left;
    }
    for (int i = 0; i < 2; i++) {
        if ((e = cudaFuncSetAttribute(kernels[i], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_dynamic)) != cudaSuccess)
            return e;
        if ((e = cudaFuncSetAttribute(kernels[i], cudaFuncAttributePreferredSharedMemoryCarveout, 100)) != cudaSuccess) return e;
    }
    {
        const int blocks = m->n_sm;
        size_t off = 0, scratch;
        int max_tiles = 0, occ = 0;
        for (int mtx = 0; mtx < 4; mtx++) {
            int n_tiles, k;
            bitnet__fused_matrix(mtx, s->n_embd, s->n_ff, s->n_head_kv, s->head_dim, &n_tiles, &k);
            const int tiles = (n_tiles + blocks - 1) / blocks;
            c->fused_off[mtx] = (unsigned)off;
            off += (size_t)tiles * k * 4;
            if (tiles > max_tiles) max_tiles = tiles;
        }
        {
            int n_tiles, k;
            bitnet__fused_matrix(2, s->n_embd, s->n_ff, s->n_head_kv, s->head_dim, &n_tiles, &k);
            const size_t region = (size_t)((n_tiles + blocks - 1) / blocks) * k * 4;
            c->fused_stage = region >= (size_t)s->n_ff * 4;
        }
        /* every region on a 128-byte line, as the tile regions (see the kernel) */
        const auto line = [](size_t bytes) { return (bytes + 127) / 128 * 128; };
        c->fused_off[4] = (unsigned)(off = line(off));
        off += (size_t)max_tiles * 16 * sizeof(int);
        c->fused_off[5] = (unsigned)(off = line(off));
        scratch = bitnet__att_smem_floats(G, s->head_dim) * sizeof(float);
        if (scratch < (size_t)s->n_embd) scratch = (size_t)s->n_embd;
        if (scratch < (size_t)s->n_ff) scratch = (size_t)s->n_ff;
        off += scratch;
        c->fused_off[6] = (unsigned)(off = line(off));
        off += (size_t)s->n_layer * sizeof(bitnet__fused_layer);
        c->fused_off[7] = (unsigned)(off = line(off));
        off += (size_t)s->head_dim / 2 * sizeof(float2);
        c->fused_off[8] = (unsigned)(off = line(off));
        off += (size_t)((s->n_embd / 16 + blocks - 1) / blocks) * 16 * sizeof(float);
        if (off > max_dynamic) return cudaSuccess;
        for (int i = 0; i < 2; i++) {
            if ((e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kernels[i], BITNET__FUSED_THREADS, off)) != cudaSuccess)
                return e;
            if (occ < 1) return cudaSuccess;
        }
        c->fused_blocks = blocks;
        c->fused_smem = off;
        c->fused_splits = blocks / s->n_head_kv;
        if (c->fused_splits < (c->n_ctx + BITNET__ATT_THREADS - 1) / BITNET__ATT_THREADS)
            c->fused_splits = (c->n_ctx + BITNET__ATT_THREADS - 1) / BITNET__ATT_THREADS;
        if (c->fused_splits < 1) c->fused_splits = 1;
    }
    return cudaSuccess;
}

/* The least positions per attention slice: the context's setting, or by default
   BITNET__ATT_MIN_CHUNK (the fused step also shortens it at short contexts,
   bitnet__launch_fused). */
static int bitnet__att_min_chunk(const bitnet__cuda_ctx *c) { return c->att_chunk > 0 ? c->att_chunk : BITNET__ATT_MIN_CHUNK; }

/* One cooperative launch of the fused layers (prof: NULL, or where to leave the
   timestamps of the phases). */
static cudaError_t bitnet__launch_fused(bitnet__cuda_ctx *c, cudaStream_t st, unsigned long long *prof) {
    const bitnet__cuda_model *m = c->m;
    const bitnet__cuda_shape *s = &m->shape;
    bitnet__fused_args a;
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1] = {};
    memset(&a, 0, sizeof a);
    a.layers = c->d_fused;
    a.n_layer = s->n_layer;
    a.n_embd = s->n_embd;
    a.n_ff = s->n_ff;
    a.n_head = s->n_head;
    a.n_head_kv = s->n_head_kv;
    a.head_dim = s->head_dim;
    a.relu2 = s->relu2;
    a.eps = s->rms_eps;
    a.att_scale = 1.0f / sqrtf((float)s->head_dim);
    a.tok_embd = m->tok_embd;
    a.embd_type = s->embd_type;
    a.tokens = c->d_tokens;
    a.pos = c->d_pos;
    a.inv_freq = m->inv_freq;
    a.x = c->x;
    a.q = c->q;
    a.att = c->att;
    a.ffn = c->ffn;
    a.xw = c->xw;
    a.norm_parts = c->norm_parts;
    a.norm_max = c->norm_max;
    a.k_cache = c->k_cache;
    a.v_cache = c->v_cache;
    a.n_ctx = c->n_ctx;
    a.att_splits = c->fused_splits;
    /* the default slices: 32 positions while those still give every query head and
       slice a block of its own (2B4T on 132 SMs: up to 192 positions), else 64.
       Shorter slices at short contexts put more SMs on attention, each with a
       shorter chain (2B4T at 128 on an H200: +0.5%, tests/PERF.md, twentieth
       session); at 1024, where units of single heads no longer fit, they do not
       pay (the slice tables) */
    a.att_chunk = bitnet__att_min_chunk(c);
    const int short_splits = c->fused_splits < c->fused_blocks / s->n_head ? c->fused_splits : c->fused_blocks / s->n_head;
    a.att_short = c->att_chunk > 0 ? 0 : BITNET__ATT_SHORT_CHUNK * short_splits;
    a.part_o = c->part_o;
    a.part_ml = c->part_ml;
    a.att_counters = c->counters;
    a.variant = c->fused_variant;
    a.down_stage = c->fused_stage;
    a.barrier = c->d_barrier;
    a.prof = prof;
    for (int i = 0; i < 4; i++) a.smem_w[i] = c->fused_off[i];
    a.smem_dots = c->fused_off[4];
    a.smem_scratch = c->fused_off[5];
    a.smem_layers = c->fused_off[6];
    a.smem_freq = c->fused_off[7];
    a.smem_resid = c->fused_off[8];
    cfg.gridDim = dim3((unsigned)c->fused_blocks);
    cfg.blockDim = dim3(BITNET__FUSED_THREADS);
    cfg.dynamicSmemBytes = c->fused_smem;
    cfg.stream = st;
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, bitnet__fused_kernel_for(s, prof != NULL), a);
}

/* The fused step's layer table, to the device (once per context). */
static cudaError_t bitnet__fused_upload(bitnet__cuda_ctx *c) {
    const bitnet__cuda_model *m = c->m;
    const bitnet__cuda_shape *s = &m->shape;
    bitnet__fused_layer *h = (bitnet__fused_layer *)calloc((size_t)s->n_layer, sizeof *h);
    cudaError_t e = cudaErrorMemoryAllocation;
    if (h) {
        for (int l = 0; l < s->n_layer; l++) {
            const bitnet__cuda_layer_dev *L = &m->layers[l];
            bitnet__fused_layer *f = &h[l];
            f->w[0] = L->qkv;
            f->w[1] = L->wo;
            f->w[2] = L->gate_up;
            f->w[3] = L->down;
            f->norm[0] = L->attn_norm;
            f->norm[1] = L->attn_sub_norm;
            f->norm[2] = L->ffn_norm;
            f->norm[3] = L->ffn_sub_norm;
            f->scale[0] = L->q_scale;
            f->scale[1] = L->k_scale;
            f->scale[2] = L->v_scale;
            f->scale[3] = L->o_scale;
            f->scale[4] = L->gate_scale;
            f->scale[5] = L->up_scale;
            f->scale[6] = L->down_scale;
        }
        e = cudaMemcpy(c->d_fused, h, (size_t)s->n_layer * sizeof *h, cudaMemcpyHostToDevice);
    }
    free(h);
    return e;
}

static cudaError_t bitnet__enqueue_head(bitnet__cuda_ctx *c, cudaStream_t st, int pdl);

/* Enqueues one decode step (the graph's content).  marks (profiling only): an
   event recorded after each kernel, 5 per layer and 1 for the LM head. */
static cudaError_t bitnet__enqueue_step(bitnet__cuda_ctx *c, cudaStream_t st, int pdl, cudaEvent_t *marks) {
    const int late = pdl == BITNET__PDL_LATE;
    const bitnet__cuda_model *m = c->m;
    const bitnet__cuda_shape *s = &m->shape;
    const size_t layer_cache = (size_t)s->n_head_kv * c->n_ctx * s->head_dim;
    cudaError_t e = cudaSuccess;
    int n_marks = 0;
#define BITNET__MARK() \
    if (e == cudaSuccess && marks) e = cudaEventRecordWithFlags(marks[n_marks++], st, cudaEventRecordExternal)
    if (pdl == BITNET__STEP_FUSED) {
        e = bitnet__launch_fused(c, st, NULL);
        BITNET__MARK();
        if (e == cudaSuccess) e = bitnet__enqueue_head(c, st, m->cc >= 90 ? BITNET__PDL_LATE : BITNET__PDL_OFF);
        BITNET__MARK();
        return e;
    }
    /* Every BitLinear but the first reads the int8 vector c->xq that the kernel
       before it leaves behind (bitnet__tail). */
    bitnet__tail tail;
    memset(&tail, 0, sizeof tail);
    tail.in.eps = s->rms_eps;
    tail.q = c->xq;
    tail.scale = c->xq_scale;
    tail.counter = c->counters + s->n_head + 1;
    tail.staged = 1;   /* the GEMV kernels' shared memory holds 5 max(n_embd, n_ff) bytes (bitnet__kernels_prepare) */
    for (int l = 0; l < s->n_layer && e == cudaSuccess; l++) {
        const bitnet__cuda_layer_dev *L = &m->layers[l];
        bitnet__gemv_args g;
        memset(&g, 0, sizeof g);
        g.late_launch = late;
        g.xq = c->xq;
        g.xq_scale = c->xq_scale;
        /* 1. QKV, RoPE, KV append; layer 0 starts from the token's embedding row */
        g.w = L->qkv;
        g.n = (int)bitnet__qkv_rows(s);
        g.k = s->n_embd;
        g.in.table = m->tok_embd;
        g.in.table_type = s->embd_type;
        g.in.tokens = c->d_tokens;
        g.in.pos = c->d_pos;
        g.in.norm = L->attn_norm;
        g.in.eps = s->rms_eps;
        g.residual = c->x;
        g.w_scale[0] = L->q_scale;
        g.w_scale[1] = L->k_scale;
        g.w_scale[2] = L->v_scale;
        g.y = c->q;
        g.k_cache = c->k_cache + (size_t)l * layer_cache;
        g.v_cache = c->v_cache + (size_t)l * layer_cache;
        g.pos = c->d_pos;
        g.inv_freq = m->inv_freq;
        g.n_ctx = c->n_ctx;
        g.head_dim = s->head_dim;
        g.n_head = s->n_head;
        g.n_head_kv = s->n_head_kv;
        g.tiles_per_block = bitnet__gemv_tiles_per_block(g.n, g.k, l == 0 ? BITNET__IN_EMBED : BITNET__IN_INT8, m->n_sm, late);
        e = l == 0 ? bitnet__launch_gemv<BITNET__IN_EMBED, BITNET__OUT_QKV>(g, st, pdl)
                   : bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_QKV>(g, st, pdl);
        BITNET__MARK();
        /* 2. attention; its output quantized with attn_sub_norm */
        if (e == cudaSuccess) {
            bitnet__attn_args a;
            memset(&a, 0, sizeof a);
            a.q = c->q;
            a.k_cache = g.k_cache;
            a.v_cache = g.v_cache;
            a.out = c->att;
            a.part_o = c->part_o;
            a.part_ml = c->part_ml;
            a.counters = c->counters;
            a.pos = c->d_pos;
            a.n_ctx = c->n_ctx;
            a.head_dim = s->head_dim;
            a.n_head = s->n_head;
            a.n_head_kv = s->n_head_kv;
            a.scale = 1.0f / sqrtf((float)s->head_dim);
            a.min_chunk = bitnet__att_min_chunk(c);
            a.late_launch = late;
            a.tail = tail;
            a.tail.in.x = c->att;
            a.tail.in.norm = L->attn_sub_norm;
            a.tail.n = s->n_embd;
            a.tail.staged = (size_t)s->n_embd * 4 <= sizeof(float) * BITNET__ATT_MAX_GROUP * 512;   /* its s_red */
            e = bitnet__launch(bitnet__attention_kernel_for(s->n_head, s->n_head_kv, s->head_dim), dim3((unsigned)s->n_head_kv, (unsigned)c->att_splits),
                               dim3(BITNET__ATT_THREADS), 0, st, pdl, a);
        }
        BITNET__MARK();
        /* 3. O projection + residual; x quantized with ffn_norm */
        memset(&g, 0, sizeof g);
        g.late_launch = late;
        g.xq = c->xq;
        g.xq_scale = c->xq_scale;
        g.w = L->wo;
        g.n = s->n_embd;
        g.k = s->n_embd;
        g.w_scale[0] = L->o_scale;
        g.y = c->x;
        g.tail = tail;
        g.tail.in.x = c->x;
        g.tail.in.norm = L->ffn_norm;
        g.tail.n = s->n_embd;
        g.tiles_per_block = bitnet__gemv_tiles_per_block(g.n, g.k, BITNET__IN_INT8, m->n_sm, late);
        if (e == cudaSuccess) e = bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_ADD>(g, st, pdl);
        BITNET__MARK();
        /* 4. gate/up, act(gate) * up; that quantized with ffn_sub_norm */
        g.w = L->gate_up;
        g.n = 2 * s->n_ff;
        g.w_scale[0] = L->gate_scale;
        g.w_scale[1] = L->up_scale;
        g.y = c->ffn;
        g.relu2 = s->relu2;
        g.tail.in.x = c->ffn;
        g.tail.in.norm = L->ffn_sub_norm;
        g.tail.n = s->n_ff;
        g.tiles_per_block = bitnet__gemv_tiles_per_block(g.n, g.k, BITNET__IN_INT8, m->n_sm, late);
        if (e == cudaSuccess) e = bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_GATEUP>(g, st, pdl);
        BITNET__MARK();
        /* 5. down projection + residual; x quantized with the next layer's attn_norm
           (the LM head normalizes x itself) */
        g.w = L->down;
        g.n = s->n_embd;
        g.k = s->n_ff;
        g.w_scale[0] = L->down_scale;
        g.w_scale[1] = 0.0f;
        g.y = c->x;
        g.tail.in.x = c->x;
        g.tail.n = s->n_embd;
        if (l + 1 < s->n_layer) g.tail.in.norm = m->layers[l + 1].attn_norm;
        else g.tail.q = NULL;
        g.tiles_per_block = bitnet__gemv_tiles_per_block(g.n, g.k, BITNET__IN_INT8, m->n_sm, late);
        if (e == cudaSuccess) e = bitnet__launch_gemv<BITNET__IN_INT8, BITNET__OUT_ADD>(g, st, pdl);
        BITNET__MARK();
    }
    if (e == cudaSuccess) e = bitnet__enqueue_head(c, st, pdl);
    BITNET__MARK();
#undef BITNET__MARK
    return e;
}

/* The LM head, its argmax and the step's advance, after the layers. */
static cudaError_t bitnet__enqueue_head(bitnet__cuda_ctx *c, cudaStream_t st, int pdl) {
    const bitnet__cuda_model *m = c->m;
    const bitnet__cuda_shape *s = &m->shape;
    const int late = pdl == BITNET__PDL_LATE;
    cudaError_t e;
    bitnet__head_args h;
    memset(&h, 0, sizeof h);
    h.w = c->lm_head_int8 ? NULL : m->output;
    h.w_type = s->embd_type;
    h.w8 = c->lm_head_int8 ? m->head8 : NULL;
    h.w8_scale = m->head8_scale;
    h.n_vocab = s->n_vocab;
    h.k = s->n_embd;
    h.x = c->x;
    h.norm = m->output_norm;
    h.eps = s->rms_eps;
    h.logits = c->logits;
    h.block_best = c->head_best;
    h.counter = c->counters + s->n_head;
    h.token = c->d_next;
    h.tokens = c->d_tokens;
    h.pos = c->d_pos;
    h.n_ctx = c->n_ctx;
    h.late_launch = late;
    e = c->lm_head_int8 ? bitnet__launch(bitnet__head_kernel<1>, dim3((unsigned)c->head_blocks), dim3(BITNET__HEAD_THREADS),
                                         (size_t)s->n_embd, st, pdl, h)
                        : bitnet__launch(bitnet__head_kernel<0>, dim3((unsigned)c->head_blocks), dim3(BITNET__HEAD_THREADS),
                                         (size_t)s->n_embd * 4, st, pdl, h);
    return e;
}

/* Captures the step into c->graph: fused, or the kernel chain with programmatic
   dependent launch in the given mode where the GPU has it (compute capability
   9.0+); if that is not possible or its capture fails, the chain with late launch,
   then without. */
static int bitnet__capture_step(bitnet__cuda_ctx *c, int mode, bitnet_error *err) {
    int rc = BITNET_OK;
    if (c->graph) cudaGraphExecDestroy(c->graph);
    c->graph = NULL;
    const int hopper = c->m->cc >= 90;
    int first = mode;
    if (mode == BITNET__STEP_FUSED && !c->fused_blocks) first = BITNET__PDL_LATE;
    if (first != BITNET__STEP_FUSED && !hopper) first = BITNET__PDL_OFF;
    for (int pdl = first;; pdl = pdl == BITNET__STEP_FUSED && hopper ? BITNET__PDL_LATE : BITNET__PDL_OFF) {
        cudaGraph_t graph = NULL;
        cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
        if (e == cudaSuccess) {
            cudaError_t e2;
            e = bitnet__enqueue_step(c, c->stream, pdl, NULL);
            e2 = cudaStreamEndCapture(c->stream, &graph);
            if (e == cudaSuccess) e = e2;
        }
        if (e == cudaSuccess) e = cudaGraphInstantiate(&c->graph, graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (e == cudaSuccess) {
            c->pdl = pdl;
            return BITNET_OK;
        }
        rc = bitnet__cuda_check(e, err, "capturing the decode step", __LINE__);
        c->graph = NULL;
        if (pdl == BITNET__PDL_OFF) return rc;
    }
}

/* Benchmark diagnostics: recaptures the step in another mode (the chain with 0 no
   overlap, 1 early launch, 2 late launch; 3 fused); returns the mode in effect. */
extern "C" int bitnet__cuda_context_set_overlap(void *ctx, int mode, bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    int rc;
    if (mode < BITNET__PDL_OFF || mode > BITNET__STEP_FUSED) return bitnet__cuda_fail(err, BITNET_E_ARG, "step mode %d", mode);
    bitnet__device_guard guard(c->m->device);
    if ((rc = bitnet__cuda_check(cudaStreamSynchronize(c->stream), err, "cudaStreamSynchronize", __LINE__))) return rc;
    if ((rc = bitnet__capture_step(c, mode, err))) return rc;
    return c->pdl;
}

/* Benchmark diagnostics: attention slices of at least min_positions (1 ..
   BITNET__ATT_THREADS, or 0: the default); recaptures the step. */
extern "C" int bitnet__cuda_context_set_att_chunk(void *ctx, int min_positions, bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    int rc;
    if (min_positions < 0 || min_positions > BITNET__ATT_THREADS)
        return bitnet__cuda_fail(err, BITNET_E_ARG, "attention slices of %d positions (1 .. %d, or 0: the default)", min_positions,
                                 BITNET__ATT_THREADS);
    bitnet__device_guard guard(c->m->device);
    if ((rc = bitnet__cuda_check(cudaStreamSynchronize(c->stream), err, "cudaStreamSynchronize", __LINE__))) return rc;
    c->att_chunk = min_positions;
    return bitnet__capture_step(c, c->pdl, err);
}

extern "C" void bitnet__cuda_context_free(void *ctx) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    if (!c) return;
    {
        bitnet__device_guard guard(c->m->device);
        if (c->stream) cudaStreamSynchronize(c->stream);
        if (c->graph) cudaGraphExecDestroy(c->graph);
        if (c->stream) cudaStreamDestroy(c->stream);
        cudaFree(c->arena);
        cudaFreeHost(c->h_pinned);
        cudaFreeHost(c->h_cand);
        (void)cudaGetLastError();
    }
    free(c);
}

extern "C" size_t bitnet__cuda_context_bytes(const void *ctx) { return ctx ? ((const bitnet__cuda_ctx *)ctx)->arena_bytes : 0; }

extern "C" int bitnet__cuda_context_create(void *model, int n_ctx, int lm_head_int8, void **out, bitnet_error *err) {
    bitnet__cuda_model *m = (bitnet__cuda_model *)model;
    const bitnet__cuda_shape *s = &m->shape;
    bitnet__cuda_ctx *c;
    bitnet__carver carve = {NULL, 0};
    int rc = BITNET_OK, per_sm = 0;
    *out = NULL;
    if (n_ctx <= 0) return bitnet__cuda_fail(err, BITNET_E_ARG, "CUDA context: n_ctx must be positive, got %d", n_ctx);
    bitnet__device_guard guard(m->device);
    c = (bitnet__cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return bitnet__cuda_fail(err, BITNET_E_NOMEM, "out of host memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->lm_head_int8 = lm_head_int8 != 0;
    c->dev_pos = -1;
    /* slices of at most 256 positions, and up to 16 of at least 64 */
    c->att_chunk = 0;   /* the default: 32 or 64 in the fused step (bitnet__launch_fused), 64 in the chain */
    c->att_splits = (n_ctx + 255) / 256;
    if (c->att_splits < 16) c->att_splits = (n_ctx + 63) / 64 < 16 ? (n_ctx + 63) / 64 : 16;
    if (lm_head_int8 && (rc = bitnet__model_build_head8(m, err))) goto fail;
    BITNET__CK(c->lm_head_int8 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, bitnet__head_kernel<1>, BITNET__HEAD_THREADS, (size_t)s->n_embd)
                               : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, bitnet__head_kernel<0>, BITNET__HEAD_THREADS, (size_t)s->n_embd * 4));
    /* one wave of as many blocks as fit (4 per SM on an H100: 94% of the copy
       bandwidth for the bf16 head, tests/PERF.md) */
    c->head_blocks = (per_sm > 0 ? per_sm : 1) * m->n_sm;
    if (c->head_blocks > (s->n_vocab + 7) / 8) c->head_blocks = (s->n_vocab + 7) / 8;
    BITNET__CK(bitnet__fused_plan(c));
    bitnet__ctx_carve(c, &carve);
    c->arena_bytes = carve.used;
    BITNET__CK(cudaMalloc(&c->arena, c->arena_bytes));
    carve.base = (uint8_t *)c->arena;
    carve.used = 0;
    bitnet__ctx_carve(c, &carve);
    /* everything starts defined: counters at zero, an empty cache */
    BITNET__CK(cudaMemset(c->arena, 0, c->arena_bytes));
    if (c->fused_blocks) BITNET__CK(bitnet__fused_upload(c));
    BITNET__CK(cudaMallocHost(&c->h_pinned, ((size_t)n_ctx + 2) * sizeof(int)));
    BITNET__CK(cudaMallocHost(&c->h_cand, sizeof(bitnet__cand_out) + BITNET__CUDA_MAX_PENALTY * sizeof(int)));
    BITNET__CK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    /* the fused step on Hopper, where it measured faster than the kernel chain at
       every position (tests/PERF.md); elsewhere the chain (capture_step falls back
       to it where the fused step cannot run) */
    if ((rc = bitnet__capture_step(c, m->cc >= 90 ? (int)BITNET__STEP_FUSED : (int)BITNET__PDL_LATE, err))) goto fail;
    *out = c;
    return BITNET_OK;
fail:
    if (rc == BITNET_E_NOMEM && err)
        snprintf(err->message, sizeof err->message, "CUDA backend: out of device memory for a context of %d positions (%.0f MiB)", n_ctx,
                 (double)c->arena_bytes / 1048576.0);
    bitnet__cuda_context_free(c);
    return rc;
}

extern "C" int bitnet__cuda_decode(void *ctx, bitnet_token token, int pos, bitnet_token *next, bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    int rc = BITNET_OK;
    if (pos < 0 || pos >= c->n_ctx) return bitnet__cuda_fail(err, BITNET_E_ARG, "CUDA decode: position %d outside 0..%d", pos, c->n_ctx - 1);
    if (token >= c->m->shape.n_vocab || (token < 0 && pos != c->dev_pos))
        return bitnet__cuda_fail(err, BITNET_E_ARG, "CUDA decode: token %d outside the vocabulary", (int)token);
    bitnet__device_guard guard(c->m->device);
    if (pos != c->dev_pos) {
        /* a jump (first step, truncate, reset): the pinned slots may still be in
           flight from earlier steps, so let those finish before reusing them */
        BITNET__CK(cudaStreamSynchronize(c->stream));
        c->h_pinned[0] = pos;
        BITNET__CK(cudaMemcpyAsync(c->d_pos, &c->h_pinned[0], sizeof(int), cudaMemcpyHostToDevice, c->stream));
    }
    c->dev_pos = -1;
    if (token >= 0) {
        c->h_pinned[2 + pos] = token;
        BITNET__CK(cudaMemcpyAsync(c->d_tokens + pos, &c->h_pinned[2 + pos], sizeof(int), cudaMemcpyHostToDevice, c->stream));
    }
    BITNET__CK(cudaGraphLaunch(c->graph, c->stream));
    if (next) {
        BITNET__CK(cudaMemcpyAsync(&c->h_pinned[1], c->d_next, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
        BITNET__CK(cudaStreamSynchronize(c->stream));
        *next = c->h_pinned[1];
    }
    c->dev_pos = pos + 1;
    return BITNET_OK;
fail:
    return rc;
}

extern "C" int bitnet__cuda_get_logits(void *ctx, float *dst, bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    int rc = BITNET_OK;
    bitnet__device_guard guard(c->m->device);
    BITNET__CK(cudaMemcpyAsync(dst, c->logits, (size_t)c->m->shape.n_vocab * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
    BITNET__CK(cudaStreamSynchronize(c->stream));
fail:
    return rc;
}

extern "C" int bitnet__cuda_candidates(void *ctx, const bitnet_token *pen, int n_pen, float penalty, float inv_temp, int *n_cand,
                                       bitnet_token *ids, float *logits, double *lse, bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    const int n_vocab = c->m->shape.n_vocab;
    int *h_pen = (int *)(c->h_cand + 1), rc = BITNET_OK;
    if (n_pen < 0 || n_pen > BITNET__CUDA_MAX_PENALTY)
        return bitnet__cuda_fail(err, BITNET_E_ARG, "CUDA sampling: %d penalized tokens (at most %d)", n_pen, BITNET__CUDA_MAX_PENALTY);
    bitnet__device_guard guard(c->m->device);
    /* the pinned buffers: any earlier copy from them finished (every call ends
       with a synchronize) */
    if (n_pen > 0) {
        memcpy(h_pen, pen, (size_t)n_pen * sizeof(int));
        BITNET__CK(cudaMemcpyAsync(c->d_pen, h_pen, (size_t)n_pen * sizeof(int), cudaMemcpyHostToDevice, c->stream));
    }
    BITNET__CK(bitnet__enqueue_candidates(c->logits, n_vocab, c->d_pen, n_pen, penalty, inv_temp, c->cand_keys, c->cand_lse, c->d_cand,
                                          c->stream));
    BITNET__CK(cudaMemcpyAsync(c->h_cand, c->d_cand, sizeof(bitnet__cand_out), cudaMemcpyDeviceToHost, c->stream));
    BITNET__CK(cudaStreamSynchronize(c->stream));
    *n_cand = n_vocab < BITNET__CAND ? n_vocab : BITNET__CAND;
    memcpy(ids, c->h_cand->ids, (size_t)*n_cand * sizeof(int));
    memcpy(logits, c->h_cand->logits, (size_t)*n_cand * sizeof(float));
    *lse = c->h_cand->lse;
fail:
    return rc;
}

extern "C" int bitnet__cuda_model_device(const void *model) { return ((const bitnet__cuda_model *)model)->device; }

extern "C" int bitnet__cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

/* Diagnostics for the benchmark: runs one step at pos (token 0) kernel after
   kernel, without overlap, as a graph with an event between the kernels, and adds
   up the time of each kind of kernel: us[0] QKV, [1] attention, [2] O, [3] gate/up,
   [4] down, [5] LM head. */
extern "C" int bitnet__cuda_profile_step(void *ctx, int pos, double us[6], bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    const int n_marks = 5 * c->m->shape.n_layer + 1;
    cudaEvent_t *ev = (cudaEvent_t *)calloc((size_t)n_marks + 1, sizeof *ev);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    int rc = BITNET_OK, made = 0;
    if (!ev) return bitnet__cuda_fail(err, BITNET_E_NOMEM, "out of host memory");
    bitnet__device_guard guard(c->m->device);
    for (; made <= n_marks; made++) BITNET__CK(cudaEventCreate(&ev[made]));
    BITNET__CK(cudaStreamSynchronize(c->stream));
    BITNET__CK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    {
        cudaError_t e = cudaEventRecordWithFlags(ev[0], c->stream, cudaEventRecordExternal);
        if (e == cudaSuccess) e = bitnet__enqueue_step(c, c->stream, BITNET__PDL_OFF, ev + 1);
        cudaError_t e2 = cudaStreamEndCapture(c->stream, &graph);
        BITNET__CK(e != cudaSuccess ? e : e2);
    }
    BITNET__CK(cudaGraphInstantiate(&exec, graph, 0));
    for (int rep = 0; rep < 2; rep++) {  /* the first run warms up */
        c->h_pinned[0] = pos;
        c->h_pinned[2 + pos] = 0;
        BITNET__CK(cudaMemcpyAsync(c->d_pos, &c->h_pinned[0], sizeof(int), cudaMemcpyHostToDevice, c->stream));
        BITNET__CK(cudaMemcpyAsync(c->d_tokens + pos, &c->h_pinned[2 + pos], sizeof(int), cudaMemcpyHostToDevice, c->stream));
        BITNET__CK(cudaGraphLaunch(exec, c->stream));
        BITNET__CK(cudaStreamSynchronize(c->stream));
    }
    for (int i = 0; i < 6; i++) us[i] = 0.0;
    for (int i = 0; i < n_marks; i++) {
        float ms;
        BITNET__CK(cudaEventElapsedTime(&ms, ev[i], ev[i + 1]));
        us[i == n_marks - 1 ? 5 : i % 5] += ms * 1000.0;
    }
    c->dev_pos = pos + 1;
fail:
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    for (int i = 0; i < made; i++) cudaEventDestroy(ev[i]);
    free(ev);
    if (rc != BITNET_OK) c->dev_pos = -1;
    return rc;
}

/* Diagnostics for the benchmark: one fused step at pos (token 0), timed by block
   0 inside the kernel and added up over the layers, microseconds: for each phase
   p (QKV, attention, O, gate/up, down) us[5p] normalizing the input, us[5p + 1]
   waiting for the weights' copy, us[5p + 2] the dot products, us[5p + 3] the
   epilogue and next copies (attention: all its work is in us[5p + 3]), us[5p + 4]
   waiting at the barrier after it; us[25] the LM head kernel (events).  stamps:
   NULL, or where to return every block's timestamps (malloc'd, the caller frees
   them): *stamp_blocks rows of *stamps_per_block, BITNET__FUSED_MARKS per phase (start,
   normalized, weights here, dots, epilogue, the whole block at the barrier; 0
   after the last phase) and the end, in ns.  BITNET_E_UNSUPPORTED where the fused
   step cannot run. */
extern "C" int bitnet__cuda_profile_fused(void *ctx, int pos, double us[26], unsigned long long **stamps, int *stamp_blocks, int *stamps_per_block,
                                          bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    const int n_layer = c->m->shape.n_layer, n_stamps1 = 5 * BITNET__FUSED_MARKS * n_layer + 1, n_stamps = n_stamps1 * c->fused_blocks;
    unsigned long long *t = NULL;
    cudaEvent_t ev[2] = {NULL, NULL};
    int rc = BITNET_OK;
    if (!c->fused_blocks) return bitnet__cuda_fail(err, BITNET_E_UNSUPPORTED, "the fused step does not run on this GPU");
    bitnet__device_guard guard(c->m->device);
    if (!(t = (unsigned long long *)malloc((size_t)n_stamps * sizeof *t))) return bitnet__cuda_fail(err, BITNET_E_NOMEM, "out of host memory");
    BITNET__CK(cudaEventCreate(&ev[0]));
    BITNET__CK(cudaEventCreate(&ev[1]));
    BITNET__CK(cudaStreamSynchronize(c->stream));
    for (int rep = 0; rep < 2; rep++) {  /* the first run warms up */
        c->h_pinned[0] = pos;
        c->h_pinned[2 + pos] = 0;
        BITNET__CK(cudaMemcpyAsync(c->d_pos, &c->h_pinned[0], sizeof(int), cudaMemcpyHostToDevice, c->stream));
        BITNET__CK(cudaMemcpyAsync(c->d_tokens + pos, &c->h_pinned[2 + pos], sizeof(int), cudaMemcpyHostToDevice, c->stream));
        BITNET__CK(cudaMemsetAsync(c->d_prof, 0, (size_t)n_stamps * sizeof *t, c->stream));
        BITNET__CK(bitnet__launch_fused(c, c->stream, c->d_prof));
        BITNET__CK(cudaEventRecord(ev[0], c->stream));
        BITNET__CK(bitnet__enqueue_head(c, c->stream, BITNET__PDL_OFF));
        BITNET__CK(cudaEventRecord(ev[1], c->stream));
        BITNET__CK(cudaStreamSynchronize(c->stream));
    }
    BITNET__CK(cudaMemcpy(t, c->d_prof, (size_t)n_stamps * sizeof *t, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 26; i++) us[i] = 0.0;
    for (int ph = 0; ph < 5 * n_layer; ph++) {
        const unsigned long long *p = t + BITNET__FUSED_MARKS * ph, next = p[BITNET__FUSED_MARKS];
        const int k = 5 * (ph % 5);
        if (ph % 5 == 1) {
            us[k + 3] += (double)(p[4] - p[0]) * 1e-3;   /* attention: no input or weights of its own */
        } else {
            for (int j = 0; j < 4; j++) us[k + j] += (double)(p[j + 1] - p[j]) * 1e-3;
        }
        us[k + 4] += (double)(next - p[4]) * 1e-3;
    }
    {
        float ms;
        BITNET__CK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
        us[25] = ms * 1000.0;
    }
    if (stamps) {
        *stamps = t;
        *stamp_blocks = c->fused_blocks;
        *stamps_per_block = n_stamps1;
        t = NULL;
    }
    c->dev_pos = pos + 1;
fail:
    for (int i = 0; i < 2; i++)
        if (ev[i]) cudaEventDestroy(ev[i]);
    free(t);
    if (rc != BITNET_OK) c->dev_pos = -1;
    return rc;
}

/* Benchmark diagnostics: the fused step's variant (BITNET__FUSED_* bits); recaptures
   the step if it is the fused one. */
extern "C" int bitnet__cuda_context_set_fused_variant(void *ctx, int variant, bitnet_error *err) {
    bitnet__cuda_ctx *c = (bitnet__cuda_ctx *)ctx;
    int rc;
    bitnet__device_guard guard(c->m->device);
    if ((rc = bitnet__cuda_check(cudaStreamSynchronize(c->stream), err, "cudaStreamSynchronize", __LINE__))) return rc;
    c->fused_variant = variant;
    return c->pdl == BITNET__STEP_FUSED ? bitnet__capture_step(c, BITNET__STEP_FUSED, err) : BITNET_OK;
}
