/* CPU kernels against simple references on fresh random inputs.

   Integer kernels (ternary and int8 dot products, the quantizer) must match
   exactly, and every SIMD version compiled in must give the scalar version's
   int32 results bit for bit.  Float kernels are held to error bounds derived
   below.  Outputs are poisoned before every call, so a kernel that skips an
   element fails. */
#define _POSIX_C_SOURCE 200809L  /* nanosleep */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "test.h"

#include <math.h>
#include <time.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {  /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rnd_float(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 40) * (1.0 / 16777216.0)); }

#define POISON_I32 ((int32_t)0x7f7f7f7f)

/* ---- the quantizer ---- */

/* Natural-order reference: value j of block b goes to 64b + 16(j%4) + (j%64)/4. */
static void ref_quantize(const float *x, int n, int8_t *q, float *scale, int32_t *sum) {
    float amax = 0.0f, s;
    int j;
    *sum = 0;
    for (j = 0; j < n; j++) if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
    s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    for (j = 0; j < n; j++) {
        float v = nearbyintf(x[j] * s);  /* round half to even, as torch.round */
        int iv = v != v ? -128 : v > 127 ? 127 : v < -128 ? -128 : (int)v;  /* NaN: -128 by our convention */
        int b = j / 64, i = (j % 64) / 4, p = j % 4;
        q[64 * b + 16 * p + i] = (int8_t)iv;
        *sum += iv;
    }
    *scale = s;
}

static void test_quantize(void) {
    TEST("quantize matches the reference and rounds half to even") {
        int trial;
        for (trial = 0; trial < 200; trial++) {
            int n = 64 * (int)(1 + rnd() % 40), j;
            float *x = (float *)malloc((size_t)n * sizeof *x), s1, s2;
            int8_t *q1 = (int8_t *)malloc((size_t)n), *q2 = (int8_t *)malloc((size_t)n);
            int32_t sum1, sum2;
            float range = trial % 10 == 0 ? 1e-7f : rnd_float(0.01f, 100.0f);
            for (j = 0; j < n; j++) x[j] = rnd_float(-range, range);
            if (trial % 3 == 0) x[rnd_int(0, n - 1)] = trial % 2 ? -range * 2 : range * 2; /* a clear absmax */
            if (trial % 7 == 1) x[rnd_int(0, n - 1)] = NAN;  /* ignored by the absmax, quantized to -128 */
            ref_quantize(x, n, q2, &s2, &sum2);
            memset(q1, 0x55, (size_t)n);
            s1 = -1; sum1 = POISON_I32;
            bitnet__quantize_scalar(x, n, q1, &s1, &sum1);
            CHECK(memcmp(q1, q2, (size_t)n) == 0 && s1 == s2 && sum1 == sum2);
            memset(q1, 0x55, (size_t)n);  /* the dispatched (SIMD) version gives the same bytes */
            s1 = -1; sum1 = POISON_I32;
            bitnet__quantize(x, n, q1, &s1, &sum1);
            CHECK(memcmp(q1, q2, (size_t)n) == 0 && s1 == s2 && sum1 == sum2);
            free(x); free(q1); free(q2);
        }
        {
            /* absmax 127 gives scale 1: halves must round to even */
            float x[64] = {127.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 1.5f};
            int8_t q[64];
            float s;
            int32_t sum;
            bitnet__quantize(x, 64, q, &s, &sum);
            CHECK(s == 1.0f);
            /* value j sits at 16*(j%4) + j/4 */
            CHECK(q[0] == 127 && q[16] == 2 && q[32] == 4 && q[48] == -2);
            CHECK(q[1] == -4 && q[17] == 0 && q[33] == 0 && q[49] == 2);
            CHECK(sum == 127 + 2 + 4 - 2 - 4 + 0 + 0 + 2);
        }
    }
}

/* RMSNorm + quantization (bitnet__norm_quantize_row), natural order: the int8
   values from w x and fl(127 / max|w x|), the scale from the RMS. */
static void ref_norm_quantize(const float *x, const float *w, int n, float eps, int8_t *q, float *scale, int32_t *sum) {
    double ss = 0;
    float m = 0, inv_rms, amax, f;
    int j;
    for (j = 0; j < n; j++) ss += (double)x[j] * x[j];
    inv_rms = 1.0f / sqrtf((float)(ss / n) + eps);
    for (j = 0; j < n; j++) if (fabsf(w[j] * x[j]) > m) m = fabsf(w[j] * x[j]);
    amax = inv_rms * m;
    *scale = amax >= 1e-5f ? 127.0f / amax : 127.0f / 1e-5f;
    f = amax >= 1e-5f ? 127.0f / m : inv_rms * (127.0f / 1e-5f);
    *sum = 0;
    for (j = 0; j < n; j++) {
        float v = nearbyintf(w[j] * x[j] * f);
        int iv = v != v ? -128 : v > 127 ? 127 : v < -128 ? -128 : (int)v;
        q[64 * (j / 64) + 16 * (j % 4) + (j % 64) / 4] = (int8_t)iv;
        *sum += iv;
    }
}

static void test_norm_quantize(void) {
    TEST("RMSNorm + quantization matches the reference, and transformers' rounding within one step") {
        int trial, far = 0, differ = 0, total = 0;
        for (trial = 0; trial < 300; trial++) {
            int n = 64 * (int)(1 + rnd() % 110), j, kind = trial % 6;
            float *x = (float *)malloc((size_t)n * sizeof *x), *w = (float *)malloc((size_t)n * sizeof *w);
            float *tmp = (float *)malloc((size_t)n * sizeof *tmp), *y = (float *)malloc((size_t)n * sizeof *y), s1, s2, s_hf;
            int8_t *q1 = (int8_t *)malloc((size_t)n), *q2 = (int8_t *)malloc((size_t)n), *q_hf = (int8_t *)malloc((size_t)n);
            int32_t sum1, sum2, sum_hf;
            float range = rnd_float(0.01f, 100.0f);
            for (j = 0; j < n; j++) {
                x[j] = kind == 3 ? 0.0f : rnd_float(-range, range);
                w[j] = kind == 4 ? rnd_float(-1e-9f, 1e-9f) : rnd_float(-3.0f, 3.0f);  /* kind 4: below the 1e-5 floor */
            }
            if (kind == 1) x[rnd_int(0, n - 1)] = range * 5;   /* a clear absmax */
            if (kind == 2) x[rnd_int(0, n - 1)] = NAN;         /* every value -128, as the CPU's rmsnorm + quantize give */
            if (kind == 5) w[rnd_int(0, n - 1)] = 0.0f;
            if (kind == 0 && trial % 12 == 0) {
                /* values whose w x f sit at a rounding boundary k + 1/2 to the last
                   bit: any other multiplier f rounds some of them the other way */
                const float f = 127.0f / range;
                for (j = 0; j < n; j++) {
                    w[j] = 1.0f;
                    x[j] = ((float)rnd_int(-127, 126) + 0.5f) / f;
                }
                x[0] = range;
            }
            ref_norm_quantize(x, w, n, 1e-5f, q2, &s2, &sum2);
            memset(q1, 0x55, (size_t)n);
            s1 = -1; sum1 = POISON_I32;
            bitnet__norm_quantize_row(x, w, n, 1e-5f, tmp, q1, &s1, &sum1);
            CHECKF(memcmp(q1, q2, (size_t)n) == 0 && s1 == s2 && sum1 == sum2, "trial %d, n %d", trial, n);
            /* transformers' order: y = w (x inv_rms), then its own absmax */
            bitnet__rmsnorm(x, w, n, 1e-5f, y);
            bitnet__quantize_scalar(y, n, q_hf, &s_hf, &sum_hf);
            if (kind != 2 && kind != 4 && trial % 12 != 0) {
                CHECKF(fabsf(s1 - s_hf) <= 4e-7f * s_hf, "trial %d: scale %.9g vs %.9g", trial, s1, s_hf);
                for (j = 0; j < n; j++) {
                    far += abs(q1[j] - q_hf[j]) > 1;
                    differ += q1[j] != q_hf[j];
                }
                total += n;
            }
            free(x); free(w); free(tmp); free(y); free(q1); free(q2); free(q_hf);
        }
        CHECKF(far == 0 && differ * 1000 < total, "%d of %d values differ from transformers' rounding, %d by more than one", differ, total,
               far);
    }
}

/* ---- ternary x int8 ---- */

typedef struct {
    bitnet__qweight w;
    uint8_t *q;
    int8_t *wv;          /* [rows][cols] the ternary values, natural order */
    bitnet__acts a;
    int8_t *xv;          /* [n_tok][cols] activations, natural order */
    int n_tok;
} q2_case;

static void q2_case_make(q2_case *c, int rows, int cols, int n_tok) {
    int r, b, j, t, nb = cols / 64;
    c->n_tok = n_tok;
    c->w.rows = rows;
    c->w.cols = cols;
    c->w.row_bytes = (size_t)nb * 18;
    c->w.scale = 1.0f;
    c->q = (uint8_t *)malloc(c->w.row_bytes * rows);
    c->wv = (int8_t *)malloc((size_t)rows * cols);
    for (r = 0; r < rows; r++)
        for (b = 0; b < nb; b++) {
            uint8_t *blk = c->q + r * c->w.row_bytes + b * 18;
            blk[0] = (uint8_t)rnd(); blk[1] = (uint8_t)rnd();  /* d: the kernels must ignore it */
            for (j = 0; j < 16; j++) blk[2 + j] = (uint8_t)rnd();  /* every code, 3 included */
            for (j = 0; j < 64; j++) c->wv[(size_t)r * cols + b * 64 + j] = (int8_t)(((blk[2 + j / 4] >> (2 * (j % 4))) & 3) - 1);
        }
    c->w.q = c->q;
    c->a.stride = (size_t)cols + 64 * rnd_int(0, 2);
    c->a.q = (int8_t *)malloc(c->a.stride * n_tok);
    c->a.scale = (float *)malloc(sizeof(float) * n_tok);
    c->a.sum = (int32_t *)malloc(sizeof(int32_t) * n_tok);
    c->xv = (int8_t *)malloc((size_t)n_tok * cols);
    for (t = 0; t < n_tok; t++) {
        int32_t sum = 0;
        for (j = 0; j < cols; j++) {
            int8_t v = (int8_t)rnd_int(-128, 127);
            c->xv[(size_t)t * cols + j] = v;
            c->a.q[t * c->a.stride + 64 * (j / 64) + 16 * (j % 4) + (j % 64) / 4] = v;
            sum += v;
        }
        c->a.sum[t] = sum;
        c->a.scale[t] = 1.0f;
    }
}

static void q2_case_free(q2_case *c) {
    free(c->q); free(c->wv); free(c->a.q); free(c->a.scale); free(c->a.sum); free(c->xv);
}

typedef void q2_fn(const bitnet__qweight *, int, int, const bitnet__acts *, int, int32_t *);

static int check_q2(const char *name, q2_fn *fn, q2_case *c, int r0, int r1) {
    int n = (r1 - r0) * c->n_tok, i, r, t, bad = 0;
    int32_t *dots = (int32_t *)malloc(sizeof(int32_t) * (n + 1));
    for (i = 0; i <= n; i++) dots[i] = POISON_I32;
    fn(&c->w, r0, r1, &c->a, c->n_tok, dots);
    for (t = 0; t < c->n_tok; t++)
        for (r = r0; r < r1; r++) {
            int32_t want = 0;
            int k;
            for (k = 0; k < c->w.cols; k++) want += c->wv[(size_t)r * c->w.cols + k] * c->xv[(size_t)t * c->w.cols + k];
            if (dots[t * (r1 - r0) + (r - r0)] != want && bad++ < 3)
                printf("  %s: rows %d..%d, %d tokens, cols %d: row %d token %d: got %d want %d\n", name, r0, r1,
                       c->n_tok, c->w.cols, r, t, dots[t * (r1 - r0) + (r - r0)], want);
        }
    if (dots[n] != POISON_I32) { printf("  %s wrote past the end\n", name); bad++; }
    free(dots);
    return bad == 0;
}

static void test_ternary_dots(void) {
    TEST("ternary dot products: scalar and SIMD equal the naive integer reference") {
        static const int rows_list[] = {1, 3, 4, 5, 8, 17, 33};
        static const int toks_list[] = {1, 2, 3, 4, 5, 7, 8, 9};
        int trial;
        for (trial = 0; trial < 60; trial++) {
            q2_case c;
            int rows = rows_list[trial % 7], cols = 64 * rnd_int(1, 12), n_tok = toks_list[trial % 8];
            int r0 = rnd_int(0, rows - 1), r1 = rnd_int(r0 + 1, rows);
            q2_case_make(&c, rows, cols, n_tok);
            CHECK(check_q2("scalar", bitnet__q2_dots_scalar, &c, 0, rows));
            CHECK(check_q2("scalar", bitnet__q2_dots_scalar, &c, r0, r1));
#ifdef BITNET__AVX2
            CHECK(check_q2("avx2", bitnet__q2_dots_avx2, &c, 0, rows));
            CHECK(check_q2("avx2", bitnet__q2_dots_avx2, &c, r0, r1));
#endif
#ifdef BITNET__AVX512
            CHECK(check_q2("avx512", bitnet__q2_dots_avx512, &c, 0, rows));
            CHECK(check_q2("avx512", bitnet__q2_dots_avx512, &c, r0, r1));
#endif
            q2_case_free(&c);
        }
        printf("SIMD kernels tested:%s%s\n",
#ifdef BITNET__AVX2
               " avx2",
#else
               "",
#endif
#ifdef BITNET__AVX512
               " avx512-vnni"
#else
               ""
#endif
        );
    }
}

static void test_ternary_extremes(void) {
    TEST("ternary dot products: extreme activations do not overflow or saturate") {
        q2_case c;
        int r, b, j, t;
        q2_case_make(&c, 8, 64 * 8, 5);
        for (r = 0; r < 8; r++)      /* rows of all codes 2 (+1), 0 (-1) or 3 (+2, the largest code) */
            for (b = 0; b < 8; b++)
                for (j = 0; j < 16; j++) {
                    c.q[r * c.w.row_bytes + b * 18 + 2 + j] = r % 3 == 0 ? 0xaa : r % 3 == 1 ? 0x00 : 0xff;
                    memset(c.wv + (size_t)r * c.w.cols + b * 64, r % 3 == 0 ? 1 : r % 3 == 1 ? -1 : 2, 64);
                }
        for (t = 0; t < 5; t++) {
            int8_t v = t % 2 ? -128 : 127;
            memset(c.a.q + t * c.a.stride, v, (size_t)c.w.cols);
            memset(c.xv + (size_t)t * c.w.cols, v, (size_t)c.w.cols);
            c.a.sum[t] = v * c.w.cols;
        }
        for (t = -1; t < 2; t++) {  /* all five tokens (the prompt kernels), then tokens 0 and 1 alone (decode) */
            q2_case one = c;
            if (t >= 0) {
                one.n_tok = 1;
                one.a.q = c.a.q + t * c.a.stride;
                one.a.sum = c.a.sum + t;
                one.xv = c.xv + (size_t)t * c.w.cols;
            }
            CHECK(check_q2("scalar", bitnet__q2_dots_scalar, &one, 0, 8));
#ifdef BITNET__AVX2
            CHECK(check_q2("avx2", bitnet__q2_dots_avx2, &one, 0, 8));
#endif
#ifdef BITNET__AVX512
            CHECK(check_q2("avx512", bitnet__q2_dots_avx512, &one, 0, 8));
#endif
        }
        q2_case_free(&c);
    }
}

/* ---- int8 LM head ---- */

typedef void q8_fn(const bitnet__lm_head_q8 *, int, int, int, const bitnet__acts *, int, int32_t *);

static void test_int8_head_dots(void) {
    TEST("int8 LM head dot products: scalar and SIMD equal the naive reference") {
        int trial;
        for (trial = 0; trial < 40; trial++) {
            int rows = rnd_int(1, 40), n = 64 * rnd_int(1, 10), n_tok = trial % 3 ? 1 : rnd_int(2, 9), r, t, k, f;
            int r0 = rnd_int(0, rows - 1), r1 = rnd_int(r0 + 1, rows);
            bitnet__lm_head_q8 h;
            bitnet__acts a;
            int32_t *dots = (int32_t *)malloc(sizeof(int32_t) * ((size_t)rows * n_tok + 1));
            q8_fn *fns[3];
            const char *names[3];
            int n_fns = 0;
            fns[n_fns] = bitnet__q8_dots_scalar; names[n_fns++] = "scalar";
#ifdef BITNET__AVX2
            fns[n_fns] = bitnet__q8_dots_avx2; names[n_fns++] = "avx2";
#endif
#ifdef BITNET__AVX512
            fns[n_fns] = bitnet__q8_dots_avx512; names[n_fns++] = "avx512";
#endif
            h.q = (int8_t *)malloc((size_t)rows * n);
            h.scale = (float *)malloc(sizeof(float) * rows);
            h.sum = (int32_t *)malloc(sizeof(int32_t) * rows);
            for (r = 0; r < rows; r++) {
                h.sum[r] = 0;
                for (k = 0; k < n; k++) {  /* rows hold -127..127: the builder never makes -128 */
                    h.q[(size_t)r * n + k] = (int8_t)(trial == 0 ? (r % 2 ? -127 : 127) : rnd_int(-127, 127));
                    h.sum[r] += h.q[(size_t)r * n + k];
                }
            }
            a.stride = (size_t)n;
            a.q = (int8_t *)malloc((size_t)n * n_tok);
            for (k = 0; k < n * n_tok; k++) a.q[k] = (int8_t)(trial == 0 ? -128 : rnd_int(-128, 127));
            a.scale = NULL; a.sum = NULL;
            for (f = 0; f < n_fns; f++) {
                int bad = 0;
                for (k = 0; k <= rows * n_tok; k++) dots[k] = POISON_I32;
                fns[f](&h, n, r0, r1, &a, n_tok, dots);
                for (t = 0; t < n_tok; t++)
                    for (r = r0; r < r1; r++) {
                        int32_t want = 0;
                        for (k = 0; k < n; k++) want += h.q[(size_t)r * n + k] * a.q[(size_t)t * n + k];
                        if (dots[t * (r1 - r0) + (r - r0)] != want) bad++;
                    }
                CHECKF(bad == 0 && dots[(r1 - r0) * n_tok] == POISON_I32, "%s: %d wrong of %d", names[f], bad, (r1 - r0) * n_tok);
            }
            free(h.q); free(h.scale); free(h.sum); free(a.q); free(dots);
        }
    }
}

static void test_int8_head_rows(void) {
    TEST("int8 LM head rows: per-row absmax quantization in the activation order") {
        int rows = 5, n = 128, r, k;
        float *m = (float *)malloc(sizeof(float) * rows * n), tmp[128];
        bitnet__lm_head_q8 h;
        h.q = (int8_t *)malloc((size_t)rows * n);
        h.scale = (float *)malloc(sizeof(float) * rows);
        h.sum = (int32_t *)malloc(sizeof(int32_t) * rows);
        for (k = 0; k < rows * n; k++) m[k] = rnd_float(-3, 3);
        for (k = 0; k < n; k++) m[3 * n + k] = 0.0f;  /* an all-zero row */
        bitnet__lm_head_q8_rows(&h, m, BITNET__TYPE_F32, n, 0, rows, tmp);
        for (r = 0; r < rows; r++) {
            float amax = 0;
            int32_t sum = 0;
            for (k = 0; k < n; k++) amax = fmaxf(amax, fabsf(m[r * n + k]));
            CHECK(h.scale[r] == amax / 127.0f);
            for (k = 0; k < n; k++) {
                int8_t q = h.q[(size_t)r * n + 64 * (k / 64) + 16 * (k % 4) + (k % 64) / 4];
                /* the dequantized value is within half a step of the original */
                CHECK(fabsf(q * h.scale[r] - m[r * n + k]) <= 0.5f * h.scale[r] * 1.0001f + 1e-30f);
                CHECK(q != -128);
                sum += q;
            }
            CHECK(sum == h.sum[r]);
        }
        free(m); free(h.q); free(h.scale); free(h.sum);
    }
}

/* ---- float kernels ----
   Float sums are checked against double-precision references.  A float32 sum
   of n products, in any order, with or without FMA, is within
   n * 2^-24 * sum|a_i b_i| of the exact value (the standard gamma_n bound, to
   first order), so that is the tolerance. */

static int close_to(double got, double want, double abs_sum, int n) {
    return fabs(got - want) <= (n + 2) * 5.97e-8 * abs_sum + 1e-30;
}

static void fill_row(uint8_t *dst, uint32_t type, const float *v, int n) {
    int k;
    for (k = 0; k < n; k++) {
        if (type == BITNET__TYPE_F32) memcpy(dst + 4 * k, &v[k], 4);
        else {
            uint16_t h = type == BITNET__TYPE_BF16 ? bitnet__f32_to_bf16(v[k]) : bitnet__f32_to_f16(v[k]);
            dst[2 * k] = (uint8_t)h; dst[2 * k + 1] = (uint8_t)(h >> 8);
        }
    }
}

/* Runs float LM head kernel f (0 scalar, 1 AVX2, 2 AVX-512) on hidden states x
   in natural order (the SIMD kernels get BF16 rows' reordered copy, as the
   forward pass gives them); 0 if that kernel is not compiled in. */
static int head_kernel(int f, const void *head, uint32_t type, int n, int r0, int r1, const float *x, int n_tok,
                       float *out, size_t stride, float *tmp) {
    float *xp = (float *)malloc(sizeof(float) * n * n_tok);
    int t, ran = 0;
    memcpy(xp, x, sizeof(float) * n * n_tok);
    if (f > 0 && type == BITNET__TYPE_BF16)
        for (t = 0; t < n_tok; t++) bitnet__head_permute(xp + (size_t)t * n, n);
    if (f == 0) { bitnet__head_dots_scalar(head, type, n, r0, r1, xp, n_tok, out, stride, tmp); ran = 1; }
#ifdef BITNET__AVX2
    if (f == 1) { bitnet__head_dots_avx2(head, type, n, r0, r1, xp, n_tok, out, stride); ran = 1; }
#endif
#ifdef BITNET__AVX512
    if (f == 2) { bitnet__head_dots_avx512(head, type, n, r0, r1, xp, n_tok, out, stride); ran = 1; }
#endif
    free(xp);
    return ran;
}

static void test_float_head_dots(void) {
    TEST("LM head float dot products (BF16, F16, F32): scalar and SIMD within the float32 bound") {
        static const uint32_t types[3] = {BITNET__TYPE_BF16, BITNET__TYPE_F16, BITNET__TYPE_F32};
        int trial;
        for (trial = 0; trial < 30; trial++) {
            uint32_t type = types[trial % 3];
            int rows = rnd_int(1, 20), n = 64 * rnd_int(1, 8), n_tok = rnd_int(1, 7), r, t, k, f;
            int r0 = rnd_int(0, rows - 1), r1 = rnd_int(r0 + 1, rows), es = type == BITNET__TYPE_F32 ? 4 : 2;
            float *vals = (float *)malloc(sizeof(float) * rows * n), *x = (float *)malloc(sizeof(float) * n * n_tok);
            float *exact = (float *)malloc(sizeof(float) * rows * n), *tmp = (float *)malloc(sizeof(float) * n);
            /* one byte of offset: rows need not be aligned */
            uint8_t *buf = (uint8_t *)malloc((size_t)rows * n * es + 1), *head = buf + 1;
            size_t stride = (size_t)(r1 - r0) + 3;
            float *out = (float *)malloc(sizeof(float) * stride * n_tok);
            for (k = 0; k < rows * n; k++) vals[k] = rnd_float(-1, 1);
            for (k = 0; k < n * n_tok; k++) x[k] = rnd_float(-2, 2);
            for (r = 0; r < rows; r++) {
                fill_row(head + (size_t)r * n * es, type, vals + r * n, n);
                bitnet__row_to_f32(head, type, r, n, exact + r * n);  /* the values as stored */
            }
            for (k = 0; k < n; k++) {  /* stored values round-trip within the type's precision */
                float v = vals[k], e = exact[k];
                CHECK(type == BITNET__TYPE_F32 ? e == v : fabsf(e - v) <= fabsf(v) * (type == BITNET__TYPE_BF16 ? 0x1p-8f : 0x1p-11f) + 1e-7f);
            }
            for (f = 0; f < 3; f++) {
                for (k = 0; k < (int)(stride * n_tok); k++) out[k] = NAN;
                if (!head_kernel(f, head, type, n, r0, r1, x, n_tok, out, stride, tmp)) continue;
                for (t = 0; t < n_tok; t++)
                    for (r = r0; r < r1; r++) {
                        double want = 0, abs_sum = 0;
                        for (k = 0; k < n; k++) {
                            want += (double)exact[r * n + k] * x[t * n + k];
                            abs_sum += fabs((double)exact[r * n + k] * x[t * n + k]);
                        }
                        CHECKF(close_to(out[t * stride + (r - r0)], want, abs_sum, n), "kernel %d type %u row %d token %d: %g vs %g",
                               f, type, r, t, out[t * stride + (r - r0)], want);
                    }
                for (t = 0; t < n_tok; t++)  /* nothing written past row r1 */
                    for (k = r1 - r0; k < (int)stride; k++) CHECK(out[t * stride + k] != out[t * stride + k]);
            }
            for (f = 0; f < 3; f++) {
                /* every token's sum comes out the same whether it is evaluated alone or in a batch */
                float *one = (float *)malloc(sizeof(float) * (r1 - r0));
                if (!head_kernel(f, head, type, n, r0, r1, x, n_tok, out, stride, tmp)) { free(one); continue; }
                for (t = 0; t < n_tok; t++) {
                    head_kernel(f, head, type, n, r0, r1, x + (size_t)t * n, 1, one, (size_t)(r1 - r0), tmp);
                    CHECKF(memcmp(one, out + t * stride, sizeof(float) * (r1 - r0)) == 0, "kernel %d: token %d alone != in a batch", f, t);
                }
                free(one);
            }
            free(vals); free(x); free(exact); free(tmp); free(buf); free(out);
        }
    }
}

static void test_float_blocks(void) {
    TEST("rmsnorm, dot, axpy, RoPE and attention against double-precision references") {
        int trial;
        for (trial = 0; trial < 50; trial++) {
            int n = rnd_int(1, 300), k;
            float *a = (float *)malloc(sizeof(float) * n), *b = (float *)malloc(sizeof(float) * n);
            float *w = (float *)malloc(sizeof(float) * n), *out = (float *)malloc(sizeof(float) * n);
            double ss = 0, dot = 0, abs_dot = 0, inv;
            for (k = 0; k < n; k++) { a[k] = rnd_float(-3, 3); b[k] = rnd_float(-3, 3); w[k] = rnd_float(0.5f, 1.5f); }
            for (k = 0; k < n; k++) { ss += (double)a[k] * a[k]; dot += (double)a[k] * b[k]; abs_dot += fabs((double)a[k] * b[k]); }
            CHECK(close_to(bitnet__dot_f32(a, b, n), dot, abs_dot, n));
            inv = 1.0 / sqrt(ss / n + 1e-5);
            for (k = 0; k < n; k++) out[k] = NAN;
            bitnet__rmsnorm(a, w, n, 1e-5f, out);
            /* a few float roundings of the scale and the two products: 1e-6 relative */
            for (k = 0; k < n; k++) CHECK(fabs(out[k] - w[k] * a[k] * inv) <= 1e-6 * fabs(w[k] * a[k] * inv) + 1e-30);
            memcpy(out, b, sizeof(float) * n);
            bitnet__axpy_f32(0.75f, a, out, n);
            for (k = 0; k < n; k++) CHECK(fabs(out[k] - (b[k] + 0.75 * a[k])) <= 1e-6 * (fabs(b[k]) + fabs(0.75 * a[k])));
            free(a); free(b); free(w); free(out);
        }
        {
            /* RoPE: pairs (i, i + half) of each head rotate by pos * theta^(-2i/d) */
            int hd = 16, n_heads = 3, half = 8, pos = 37, h, i;
            float v[48], orig[48], inv_freq[8], c[8], s[8];
            for (i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / hd);
            for (i = 0; i < 48; i++) orig[i] = v[i] = rnd_float(-1, 1);
            bitnet__rope_angles(inv_freq, half, pos, c, s);
            bitnet__rope(v, n_heads, hd, c, s);
            for (h = 0; h < n_heads; h++)
                for (i = 0; i < half; i++) {
                    double ang = pos * pow(10000.0, -2.0 * i / hd), x0 = orig[h * hd + i], x1 = orig[h * hd + i + half];
                    /* the angle is rounded to float32 as in the reference: |pos * ulp| */
                    double tol = 1e-6 + 2.0 * fabs(ang) * 1.2e-7;
                    CHECK(fabs(v[h * hd + i] - (x0 * cos(ang) - x1 * sin(ang))) <= tol);
                    CHECK(fabs(v[h * hd + i + half] - (x1 * cos(ang) + x0 * sin(ang))) <= tol);
                }
        }
        for (trial = 0; trial < 20; trial++) {
            int hd = 2 * rnd_int(1, 80), n = rnd_int(1, 50), p, i;
            float *q = (float *)malloc(sizeof(float) * hd), *keys = (float *)malloc(sizeof(float) * hd * n);
            float *vals = (float *)malloc(sizeof(float) * hd * n), *scores = (float *)malloc(sizeof(float) * n);
            float *out = (float *)malloc(sizeof(float) * hd);
            double *pr = (double *)malloc(sizeof(double) * n), mx = -1e300, z = 0;
            for (i = 0; i < hd; i++) q[i] = rnd_float(-2, 2);
            for (i = 0; i < hd * n; i++) { keys[i] = rnd_float(-2, 2); vals[i] = rnd_float(-1, 1); }
            for (p = 0; p < n; p++) {
                double d = 0;
                for (i = 0; i < hd; i++) d += (double)q[i] * keys[p * hd + i];
                pr[p] = d / sqrt((double)hd);
                if (pr[p] > mx) mx = pr[p];
            }
            for (p = 0; p < n; p++) { pr[p] = exp(pr[p] - mx); z += pr[p]; }
            for (i = 0; i < hd; i++) out[i] = NAN;
            bitnet__attend(q, keys, vals, n, hd, scores, out);
            for (i = 0; i < hd; i++) {
                double want = 0;
                for (p = 0; p < n; p++) want += pr[p] / z * vals[p * hd + i];
                /* scores: |q.k| <= 4 hd, each rounded within hd * 2^-24 relative, then exp
                   amplifies absolute errors; 1e-4 covers that with room to spare */
                CHECKF(fabs(out[i] - want) <= 1e-4, "attention head_dim %d n %d: %g vs %g", hd, n, out[i], want);
            }
            free(q); free(keys); free(vals); free(scores); free(out); free(pr);
        }
    }
}

/* ---- thread pool ---- */

typedef struct { int *hits; int n_threads; int bad_thread; int slow_item; } count_job;

static void count_item(void *p, int item, int thread) {
    count_job *job = (count_job *)p;
    if (thread < 0 || thread >= job->n_threads) job->bad_thread = 1;
    if (item == job->slow_item) {  /* long enough for the caller to stop spinning and sleep */
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    __atomic_fetch_add(&job->hits[item], 1, __ATOMIC_SEQ_CST);
}

static void test_thread_pool(void) {
    TEST("thread pool: every item runs exactly once, also after workers or the caller went to sleep") {
        int n_threads;
        for (n_threads = 1; n_threads <= 4; n_threads++) {
            bitnet__pool pool;
            bitnet_error err;
            int round, ok = 1;
            CHECK(bitnet__pool_start(&pool, n_threads, &err) == BITNET_OK);
#ifdef BITNET__THREADS
            CHECK(pool.n_threads == n_threads);
#endif
            for (round = 0; round < 300; round++) {
                int n_items = rnd_int(0, 100), i;
                int hits[100];
                count_job job;
                memset(hits, 0, sizeof hits);
                job.hits = hits; job.n_threads = n_threads; job.bad_thread = 0;
            job.slow_item = round % 10 == 5 ? rnd_int(0, 99) : -1;
                if (round % 100 == 99) {  /* long enough for the workers to sleep */
                    struct timespec ts = {0, 20 * 1000 * 1000};
                    nanosleep(&ts, NULL);
                }
                bitnet__pool_run(&pool, count_item, &job, n_items);
                for (i = 0; i < n_items; i++) if (hits[i] != 1) ok = 0;
                if (job.bad_thread) ok = 0;
            }
            CHECKF(ok, "%d threads", n_threads);
            bitnet__pool_stop(&pool);
        }
    }
}

int main(void) {
    test_quantize();
    test_norm_quantize();
    test_ternary_dots();
    test_ternary_extremes();
    test_int8_head_dots();
    test_int8_head_rows();
    test_float_head_dots();
    test_float_blocks();
    test_thread_pool();
    return TEST_EXIT();
}
