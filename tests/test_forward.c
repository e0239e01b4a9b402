/* The CPU forward pass against a naive reference written here, on random model
   files: prompt and decode, batch against token-by-token, all logits,
   truncate/reset, thread counts, several contexts sharing one model in
   parallel threads, the int8 LM head, and errors (context full, misuse).

   The reference reads the weights straight from the GGUF tensors (not from the
   loader's bindings), evaluates the whole sequence without a KV cache, and
   does everything in double precision except the int8 activation
   quantization, which follows ActQuant's float32 rule.  See ref_tolerance for
   how close the two must be. */
#define _POSIX_C_SOURCE 200809L  /* getpid */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <unistd.h>

/* ---- the reference ---- */

static const bitnet__gguf_tensor *tensor(const bitnet_model *m, const char *fmt, int layer, const char *name) {
    char buf[128];
    snprintf(buf, sizeof buf, fmt, layer, name);
    return bitnet__gguf_find_tensor(&m->gguf, buf);
}

static double f32_le(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element i of a BF16/F16/F32 tensor. */
static double float_at(const bitnet__gguf_tensor *t, size_t i) {
    const uint8_t *p = t->data;
    if (t->type == BITNET__TYPE_F32) return f32_le(p + 4 * i);
    if (t->type == BITNET__TYPE_F16) return bitnet__f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    {
        uint32_t u = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;  /* bf16: the top half of a float */
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
}

static void ref_rmsnorm(const double *x, const bitnet__gguf_tensor *w, int n, double eps, double *out) {
    double ss = 0;
    int i;
    for (i = 0; i < n; i++) ss += x[i] * x[i];
    for (i = 0; i < n; i++) out[i] = float_at(w, (size_t)i) * x[i] / sqrt(ss / n + eps);
}

/* The smallest distance, in quantization steps, between a scaled activation
   and a rounding boundary (k + 1/2) seen so far for each token. */
static double ref_margin[1024];

/* BitLinear: ActQuant in float32 (s = 127 / max|x|, round half to even), then
   the ternary weights: Q2_0 code - 1, times the block's f16 d, times the
   tensor's .scale. */
static void ref_bitlinear(const bitnet_model *m, int layer, const char *name, const double *in, int cols, int rows,
                          double *out, int token) {
    const bitnet__gguf_tensor *w = tensor(m, "blk.%d.%s.weight", layer, name);
    const bitnet__gguf_tensor *sc = tensor(m, "blk.%d.%s.scale", layer, name);
    double scale = sc ? f32_le(sc->data) : 1.0;
    float amax = 0, s;
    int8_t *a = (int8_t *)malloc((size_t)cols);
    int r, j;
    for (j = 0; j < cols; j++) if (fabsf((float)in[j]) > amax) amax = fabsf((float)in[j]);
    s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    for (j = 0; j < cols; j++) {
        float v = nearbyintf((float)in[j] * s), below = floorf((float)in[j] * s);
        if (fabsf(v) < 127 && fabs((double)in[j] * s - below - 0.5) < ref_margin[token])
            ref_margin[token] = fabs((double)in[j] * s - below - 0.5);
        a[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
    }
    for (r = 0; r < rows; r++) {
        double acc = 0;
        for (j = 0; j < cols; j++) {
            const uint8_t *blk = w->data + ((size_t)r * (cols / 64) + j / 64) * 18;
            int code = (blk[2 + (j % 64) / 4] >> (2 * (j % 4))) & 3;
            double d = bitnet__f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
            acc += (code - 1) * d * a[j];
        }
        out[r] = acc * scale / s;
    }
    free(a);
}

/* Logits [n][n_vocab] of tokens at positions 0..n-1. */
static void ref_forward(const bitnet_model *m, const bitnet_token *tokens, int n, double *logits) {
    const bitnet_hparams *hp = &m->hp;
    int D = hp->n_embd, F = hp->n_ff, H = hp->n_head, KV = hp->n_head_kv, hd = hp->head_dim, kvd = KV * hd;
    double eps = hp->rms_eps;
    double *x = (double *)calloc((size_t)n * D, sizeof(double)), *h = (double *)malloc(sizeof(double) * (D > F ? D : F));
    double *q = (double *)malloc(sizeof(double) * n * D), *k = (double *)malloc(sizeof(double) * n * kvd);
    double *v = (double *)malloc(sizeof(double) * n * kvd), *att = (double *)malloc(sizeof(double) * D);
    double *g = (double *)malloc(sizeof(double) * F), *u = (double *)malloc(sizeof(double) * F);
    double *o = (double *)malloc(sizeof(double) * D), *p = (double *)malloc(sizeof(double) * n);
    const bitnet__gguf_tensor *emb = bitnet__gguf_find_tensor(&m->gguf, "token_embd.weight");
    const bitnet__gguf_tensor *out = bitnet__gguf_find_tensor(&m->gguf, "output.weight");
    int t, l, i, j, hh, s;
    if (!out) out = emb;  /* tied */
    for (t = 0; t < n; t++) ref_margin[t] = 1.0;
    for (t = 0; t < n; t++)
        for (i = 0; i < D; i++) x[(size_t)t * D + i] = float_at(emb, (size_t)tokens[t] * D + i);
    for (l = 0; l < hp->n_layer; l++) {
        for (t = 0; t < n; t++) {
            ref_rmsnorm(x + (size_t)t * D, tensor(m, "blk.%d.%s.weight", l, "attn_norm"), D, eps, h);
            ref_bitlinear(m, l, "attn_q", h, D, D, q + (size_t)t * D, t);
            ref_bitlinear(m, l, "attn_k", h, D, kvd, k + (size_t)t * kvd, t);
            ref_bitlinear(m, l, "attn_v", h, D, kvd, v + (size_t)t * kvd, t);
            /* RoPE, Hugging Face's rotate_half: pairs (i, i + hd/2) */
            for (hh = 0; hh < H + KV; hh++) {
                double *vec = hh < H ? q + (size_t)t * D + hh * hd : k + (size_t)t * kvd + (hh - H) * hd;
                for (i = 0; i < hd / 2; i++) {
                    double ang = t * pow(hp->rope_theta, -2.0 * i / hd), a = vec[i], b = vec[i + hd / 2];
                    vec[i] = a * cos(ang) - b * sin(ang);
                    vec[i + hd / 2] = b * cos(ang) + a * sin(ang);
                }
            }
        }
        for (t = 0; t < n; t++) {
            /* causal attention, query head hh reads KV head hh / (H / KV) */
            for (hh = 0; hh < H; hh++) {
                int kh = hh / (H / KV);
                double mx = -1e300, z = 0;
                for (s = 0; s <= t; s++) {
                    double d = 0;
                    for (i = 0; i < hd; i++) d += q[(size_t)t * D + hh * hd + i] * k[(size_t)s * kvd + kh * hd + i];
                    p[s] = d / sqrt((double)hd);
                    if (p[s] > mx) mx = p[s];
                }
                for (s = 0; s <= t; s++) { p[s] = exp(p[s] - mx); z += p[s]; }
                for (i = 0; i < hd; i++) {
                    double acc = 0;
                    for (s = 0; s <= t; s++) acc += p[s] / z * v[(size_t)s * kvd + kh * hd + i];
                    att[hh * hd + i] = acc;
                }
            }
            ref_rmsnorm(att, tensor(m, "blk.%d.%s.weight", l, "attn_sub_norm"), D, eps, h);
            ref_bitlinear(m, l, "attn_output", h, D, D, o, t);
            for (i = 0; i < D; i++) x[(size_t)t * D + i] += o[i];
            ref_rmsnorm(x + (size_t)t * D, tensor(m, "blk.%d.%s.weight", l, "ffn_norm"), D, eps, h);
            ref_bitlinear(m, l, "ffn_gate", h, D, F, g, t);
            ref_bitlinear(m, l, "ffn_up", h, D, F, u, t);
            for (i = 0; i < F; i++)
                g[i] = (m->act == BITNET__ACT_RELU2 ? (g[i] > 0 ? g[i] * g[i] : 0) : g[i] / (1 + exp(-g[i]))) * u[i];
            ref_rmsnorm(g, tensor(m, "blk.%d.%s.weight", l, "ffn_sub_norm"), F, eps, h);
            ref_bitlinear(m, l, "ffn_down", h, F, D, o, t);
            for (i = 0; i < D; i++) x[(size_t)t * D + i] += o[i];
        }
    }
    for (t = 1; t < n; t++)  /* through the KV cache, every token depends on the earlier ones */
        if (ref_margin[t - 1] < ref_margin[t]) ref_margin[t] = ref_margin[t - 1];
    for (t = 0; t < n; t++) {
        ref_rmsnorm(x + (size_t)t * D, bitnet__gguf_find_tensor(&m->gguf, "output_norm.weight"), D, eps, h);
        for (j = 0; j < hp->n_vocab; j++) {
            double acc = 0;
            for (i = 0; i < D; i++) acc += float_at(out, (size_t)j * D + i) * h[i];
            logits[(size_t)t * hp->n_vocab + j] = acc;
        }
    }
    free(x); free(h); free(q); free(k); free(v); free(att); free(g); free(u); free(o); free(p);
}

/* Tolerance.  Without quantization the two sides would differ by float32
   rounding only: about 1e-6 of the logits' RMS.  But both quantize every
   BitLinear input to int8, and where a scaled activation lies within float
   rounding of a .5 boundary, float32 and double may round it apart.  Such a
   flip changes that layer's output by one weight times one step, which flips
   more elements in later quantizations and, through the KV cache, in later
   tokens: forcing flips moved the logits by 2e-4 to 0.1 of their RMS.  Real
   mistakes (a dropped norm, RoPE on the wrong pairs, a wrong KV head or
   position, ReLU for ReLU^2) moved them by 1 to 10; 126 quantization levels
   instead of 127 by 0.13.  So the reference tracks, per token, the smallest
   margin between a scaled activation and a rounding boundary in that token and
   all earlier ones (ref_margin), and
     margin >= 2e-4 steps (no flip is possible: our float32 error is ~1e-6
       relative, 1.3e-4 steps at most):   |ours - ref| <= 1e-4 * RMS(ref)
     otherwise (a flip may have happened): |ours - ref| <= 0.3 * RMS(ref).
   The first token of every model must get the tight comparison, and the test
   prints how many did. */
#define TIE_MARGIN 2e-4
static double worst_ratio = 0;  /* largest |ours - ref| / RMS(ref) among tight comparisons */
static int n_tight, n_loose;

static int matches_ref(const float *ours, const double *ref, int n_vocab, int token) {
    double ss = 0, worst = 0, rms, tol;
    int j, tight = ref_margin[token] >= TIE_MARGIN;
    for (j = 0; j < n_vocab; j++) {
        double d = fabs(ours[j] - ref[j]);
        ss += ref[j] * ref[j];
        if (!(d <= worst)) worst = d;  /* NaN counts as worst */
    }
    rms = sqrt(ss / n_vocab);
    tol = (tight ? 1e-4 : 0.3) * rms;
    if (tight) {
        n_tight++;
        if (!(worst / rms <= worst_ratio)) worst_ratio = worst / rms;
    } else n_loose++;
    if (worst <= tol) return 1;
    printf("  token %d: |ours - ref| = %.3g of the RMS, allowed %g (smallest rounding margin up to here: %.2g steps)\n",
           token, worst / rms, tol / rms, ref_margin[token]);
    return 0;
}

/* ---- helpers ---- */

static char model_path[256];

static bitnet_model *make_model(int n_embd, int n_ff, int n_head, int n_head_kv, int n_layer, int n_vocab, int n_ctx,
                                int tied, uint64_t seed) {
    bitnet_hparams hp;
    bitnet_error err;
    bitnet_model_params mp = bitnet_model_default_params();
    bitnet_model *m;
    memset(&hp, 0, sizeof hp);
    hp.n_embd = n_embd; hp.n_ff = n_ff; hp.n_head = n_head; hp.n_head_kv = n_head_kv; hp.n_layer = n_layer;
    hp.n_vocab = n_vocab; hp.n_ctx_train = n_ctx; hp.tied_embeddings = tied;
    hp.rope_theta = 10000.0f; hp.rms_eps = 1e-5f;
    snprintf(model_path, sizeof model_path, "/tmp/bitnet_test_forward_%d.gguf", (int)getpid());
    if (bitnet_write_random_model(model_path, &hp, seed, NULL, &err) != BITNET_OK) {
        printf("cannot write the model: %s\n", err.message);
        return NULL;
    }
    mp.use_mmap = 0;
    m = bitnet_model_load(model_path, &mp, &err);
    if (!m) printf("cannot load the model: %s\n", err.message);
    remove(model_path);
    return m;
}

static bitnet_context *make_ctx(bitnet_model *m, int n_ctx, int n_threads, int int8_head) {
    bitnet_context_params cp = bitnet_context_default_params();
    bitnet_error err;
    bitnet_context *ctx;
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    cp.backend = BITNET_BACKEND_CPU;
    cp.lm_head_int8 = int8_head;
    ctx = bitnet_context_create(m, &cp, &err);
    if (!ctx) printf("cannot create a context: %s\n", err.message);
    return ctx;
}

static void random_tokens(bitnet_token *t, int n, int n_vocab, uint64_t seed) {
    int i;
    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (bitnet_token)((seed >> 33) % (uint64_t)n_vocab);
    }
}

/* Evaluates tokens one at a time from an empty context; logits [n][n_vocab]. */
static int eval_one_by_one(bitnet_context *ctx, const bitnet_token *tokens, int n, float *logits) {
    int i, n_vocab = bitnet_model_hparams(ctx->model)->n_vocab;
    bitnet_context_reset(ctx);
    for (i = 0; i < n; i++) {
        const float *l;
        if (bitnet_eval(ctx, tokens + i, 1, 0, NULL) != BITNET_OK || !(l = bitnet_logits(ctx, -1))) return 0;
        memcpy(logits + (size_t)i * n_vocab, l, sizeof(float) * n_vocab);
    }
    return 1;
}

/* Evaluates all tokens in one call with every position's logits. */
static int eval_batch(bitnet_context *ctx, const bitnet_token *tokens, int n, float *logits) {
    int i, n_vocab = bitnet_model_hparams(ctx->model)->n_vocab;
    bitnet_context_reset(ctx);
    if (bitnet_eval(ctx, tokens, n, BITNET_EVAL_ALL_LOGITS, NULL) != BITNET_OK) return 0;
    for (i = 0; i < n; i++) {
        const float *l = bitnet_logits(ctx, i);
        if (!l) return 0;
        memcpy(logits + (size_t)i * n_vocab, l, sizeof(float) * n_vocab);
    }
    return 1;
}

/* ---- several contexts at once ---- */

typedef struct {
    bitnet_model *model;
    const bitnet_token *tokens;
    int n, ok;
    float *logits;
} parallel_run;

static void *run_context(void *arg) {
    parallel_run *r = (parallel_run *)arg;
    bitnet_context *ctx = make_ctx(r->model, 0, 2, 0);
    r->ok = ctx && eval_batch(ctx, r->tokens, r->n, r->logits);
    bitnet_context_free(ctx);
    return NULL;
}

/* ---- tests ---- */

/* One model shape: the reference on a prompt, then every way of evaluating it. */
static void test_model(const char *what, bitnet_model *m, int n, int silu) {
    const bitnet_hparams *hp = bitnet_model_hparams(m);
    int V = hp->n_vocab, i, threads;
    bitnet_token *tokens = (bitnet_token *)malloc(sizeof(bitnet_token) * n);
    double *ref = (double *)malloc(sizeof(double) * n * V);
    float *batch = (float *)malloc(sizeof(float) * n * V), *single = (float *)malloc(sizeof(float) * n * V);
    char name[160];
    if (silu) m->act = BITNET__ACT_SILU;  /* the reference reads m->act too */
    random_tokens(tokens, n, V, (uint64_t)n * 7919u);
    ref_forward(m, tokens, n, ref);

    snprintf(name, sizeof name, "%s: all-logits batch of %d tokens matches the reference", what, n);
    TEST(name) {
        bitnet_context *ctx = make_ctx(m, 0, 1, 0);
        for (i = 0; i < n * V; i++) batch[i] = NAN;
        CHECK(ctx && eval_batch(ctx, tokens, n, batch));
        for (i = 0; i < n; i++) CHECKF(matches_ref(batch + (size_t)i * V, ref + (size_t)i * V, V, i), "position %d", i);
        CHECKF(ref_margin[0] >= TIE_MARGIN, "the first token has a rounding near-tie (margin %g): pick another seed", ref_margin[0]);
        bitnet_context_free(ctx);
    }
    snprintf(name, sizeof name, "%s: token by token equals the batch bit for bit, for 1 to 3 threads", what);
    TEST(name) {
        for (threads = 1; threads <= 3; threads++) {
            bitnet_context *ctx = make_ctx(m, 0, threads, 0);
            float *again = (float *)malloc(sizeof(float) * n * V);
            for (i = 0; i < n * V; i++) single[i] = again[i] = NAN;
            CHECK(ctx && eval_one_by_one(ctx, tokens, n, single));
            CHECKF(memcmp(single, batch, sizeof(float) * n * V) == 0, "%d threads: token by token", threads);
            CHECK(ctx && eval_batch(ctx, tokens, n, again));
            CHECKF(memcmp(again, batch, sizeof(float) * n * V) == 0, "%d threads: batch", threads);
            bitnet_context_free(ctx);
            free(again);
        }
    }
    snprintf(name, sizeof name, "%s: prompt then decode, and last-token logits", what);
    TEST(name) {
        bitnet_context *ctx = make_ctx(m, 0, 2, 0);
        int split = n * 2 / 3;
        const float *l;
        CHECK(ctx != NULL);
        if (ctx) {
            CHECK(bitnet_eval(ctx, tokens, split, 0, NULL) == BITNET_OK);
            CHECK(bitnet_n_past(ctx) == split);
            l = bitnet_logits(ctx, -1);
            CHECK(l && memcmp(l, batch + (size_t)(split - 1) * V, sizeof(float) * V) == 0);
            CHECK(bitnet_logits(ctx, split - 1) == l);
            CHECK(bitnet_logits(ctx, 0) == NULL || split == 1);  /* only the last token has logits */
            for (i = split; i < n; i++) {
                CHECK(bitnet_eval(ctx, tokens + i, 1, 0, NULL) == BITNET_OK);
                l = bitnet_logits(ctx, -1);
                CHECKF(l && memcmp(l, batch + (size_t)i * V, sizeof(float) * V) == 0, "decode position %d", i);
            }
            CHECK(bitnet_n_past(ctx) == n);
        }
        bitnet_context_free(ctx);
    }
    snprintf(name, sizeof name, "%s: truncate and reset, then re-evaluation reproduces the logits", what);
    TEST(name) {
        bitnet_context *ctx = make_ctx(m, 0, 2, 0);
        bitnet_token *other = (bitnet_token *)malloc(sizeof(bitnet_token) * n);
        int keep = n / 2;
        random_tokens(other, n, V, 99);
        CHECK(ctx != NULL);
        if (ctx) {
            /* a different continuation first, then truncate it away */
            CHECK(bitnet_eval(ctx, tokens, keep, 0, NULL) == BITNET_OK);
            CHECK(bitnet_eval(ctx, other, n - keep, BITNET_EVAL_ALL_LOGITS, NULL) == BITNET_OK);
            CHECK(bitnet_context_truncate(ctx, keep, NULL) == BITNET_OK);
            CHECK(bitnet_n_past(ctx) == keep);
            CHECK(bitnet_logits(ctx, -1) == NULL);
            CHECK(bitnet_eval(ctx, tokens + keep, n - keep, BITNET_EVAL_ALL_LOGITS, NULL) == BITNET_OK);
            for (i = keep; i < n; i++) {
                const float *l = bitnet_logits(ctx, i - keep);
                CHECKF(l && memcmp(l, batch + (size_t)i * V, sizeof(float) * V) == 0, "after truncate, position %d", i);
            }
            bitnet_context_reset(ctx);
            CHECK(bitnet_n_past(ctx) == 0);
            CHECK(bitnet_logits(ctx, -1) == NULL);
            CHECK(bitnet_eval(ctx, tokens, n, 0, NULL) == BITNET_OK);
            CHECK(memcmp(bitnet_logits(ctx, -1), batch + (size_t)(n - 1) * V, sizeof(float) * V) == 0);
        }
        bitnet_context_free(ctx);
        free(other);
    }
    free(tokens); free(ref); free(batch); free(single);
}

static void test_reference_models(void) {
    bitnet_model *m[3] = {NULL, NULL, NULL};
    /* GQA (4 query heads on 2 KV heads), tied BF16 embeddings, ReLU^2; untied
       LM head, one KV head per query head, SiLU; a prompt longer than one
       micro-batch (BITNET__UBATCH tokens) */
    TEST("random model files for the reference tests") {
        m[0] = make_model(128, 192, 4, 2, 2, 300, 96, 1, 1);
        m[1] = make_model(64, 128, 2, 2, 1, 280, 96, 0, 2);
        m[2] = make_model(64, 64, 2, 1, 1, 270, 256, 1, 3);
        CHECK(m[0] && m[1] && m[2]);
    }
    if (m[0]) test_model("gqa relu2 tied", m[0], 24, 0);
    if (m[1]) test_model("mha silu untied", m[1], 17, 1);
    if (m[2]) test_model("long prompt", m[2], BITNET__UBATCH * 2 + 9, 0);
    bitnet_model_free(m[0]);
    bitnet_model_free(m[1]);
    bitnet_model_free(m[2]);
    printf("reference comparisons: %d tight (largest |ours - ref| / RMS %.2e, allowed 1e-4), %d loose (after a near-tie)\n",
           n_tight, worst_ratio, n_loose);
}

/* Embedding tables of other types give the same values, so the same logits. */
static void test_embedding_types(void) {
    bitnet_model *m = make_model(64, 128, 2, 1, 1, 270, 64, 1, 4);
    TEST("F32 and F16 embedding tables give the logits of the same values in BF16") {
        int V = 270, D = 64, n = 9, i;
        bitnet_token tokens[9];
        float *want = (float *)malloc(sizeof(float) * n * V), *got = (float *)malloc(sizeof(float) * n * V);
        float *f32 = (float *)malloc(sizeof(float) * V * D), *f16_as_f32 = (float *)malloc(sizeof(float) * V * D);
        uint16_t *f16 = (uint16_t *)malloc(sizeof(uint16_t) * V * D);
        bitnet_context *ctx;
        const void *orig = m ? m->tok_embd : NULL;
        uint32_t orig_type = m ? m->tok_embd_type : 0;
        CHECK(m != NULL);
        if (m) {
            random_tokens(tokens, n, V, 5);
            ctx = make_ctx(m, 0, 2, 0);
            CHECK(ctx && eval_batch(ctx, tokens, n, want));
            /* F32 holds every BF16 value exactly, so everything up to the LM head
               is the same; the SIMD LM head sums BF16 rows in another order
               (even/odd-indexed values), which moves a float32 sum of D products
               by at most D * 2^-24 * sum|w x| <= D * 2^-24 * max|w| * sum|x|. */
            for (i = 0; i < V; i++) bitnet__row_to_f32(orig, orig_type, i, D, f32 + (size_t)i * D);
            m->tok_embd = m->output = f32;
            m->tok_embd_type = m->output_type = BITNET__TYPE_F32;
            CHECK(ctx && eval_batch(ctx, tokens, n, got));
            {
                float wmax = 0, hidden[64];
                int t, j, k, bad = 0;
                for (i = 0; i < V * D; i++) wmax = fmaxf(wmax, fabsf(f32[i]));
                for (t = 0; t < n; t++) {
                    double xsum = 0;
                    bitnet__rmsnorm(ctx->x + (size_t)t * D, m->output_norm, D, m->hp.rms_eps, hidden);
                    for (k = 0; k < D; k++) xsum += fabs(hidden[k]);
                    for (j = 0; j < V; j++)
                        if (fabs(got[t * V + j] - want[t * V + j]) > D * 0x1p-24 * wmax * xsum) bad++;
                }
                CHECKF(bad == 0, "%d logits beyond the summation-order bound", bad);
            }
            /* F16 against the F32 table of the same (F16-rounded) values */
            for (i = 0; i < V * D; i++) {
                f16[i] = bitnet__f32_to_f16(f32[i]);
                f16_as_f32[i] = bitnet__f16_to_f32(f16[i]);
            }
            m->tok_embd = m->output = f16_as_f32;
            CHECK(ctx && eval_batch(ctx, tokens, n, want));
            m->tok_embd = m->output = f16;
            m->tok_embd_type = m->output_type = BITNET__TYPE_F16;
            CHECK(ctx && eval_batch(ctx, tokens, n, got));
            CHECK(memcmp(want, got, sizeof(float) * n * V) == 0);
            m->tok_embd = m->output = orig;
            m->tok_embd_type = m->output_type = orig_type;
            bitnet_context_free(ctx);
        }
        free(want); free(got); free(f32); free(f16_as_f32); free(f16);
    }
    bitnet_model_free(m);
}

/* The int8 LM head: within the bound its two roundings allow. */
static void test_int8_head(void) {
    bitnet_model *m = make_model(128, 128, 2, 1, 1, 500, 64, 1, 5);
    TEST("int8 LM head: logits within the rounding bound of the float head, shared by contexts") {
        int V = 500, D = 128, n = 6, t, j, k;
        bitnet_token tokens[6];
        float *f = (float *)malloc(sizeof(float) * n * V), *q = (float *)malloc(sizeof(float) * n * V);
        float *head = (float *)malloc(sizeof(float) * V * D), hidden[128];
        bitnet_context *cf = m ? make_ctx(m, 0, 2, 0) : NULL, *cq = m ? make_ctx(m, 0, 2, 1) : NULL;
        bitnet_context *cq2 = m ? make_ctx(m, 0, 1, 1) : NULL;
        CHECK(cf && cq && cq2);
        if (cf && cq && cq2) {
            random_tokens(tokens, n, V, 11);
            CHECK(eval_batch(cf, tokens, n, f));
            CHECK(eval_batch(cq, tokens, n, q));
            CHECK(cq->head_q8 == cq2->head_q8 && cq->head_q8 == m->lm_head_q8);  /* built once */
            for (j = 0; j < V; j++) bitnet__row_to_f32(m->output, m->output_type, j, D, head + (size_t)j * D);
            for (t = 0; t < n; t++) {
                /* The final hidden state h is the same in both contexts; recompute it
                   from the float logits' context: bitnet's own rmsnorm of x. */
                float amax_h = 0;
                bitnet__rmsnorm(cf->x + (size_t)t * D, m->output_norm, D, m->hp.rms_eps, hidden);
                for (k = 0; k < D; k++) amax_h = fmaxf(amax_h, fabsf(hidden[k]));
                for (j = 0; j < V; j++) {
                    /* w = sw (wq + ew), h = (hq + eh) / sh with |ew|, |eh| <= 1/2, so
                       |w.h - sw/sh wq.hq| <= sum(|w| / (2 sh) + sw |h| / 2 + sw / (4 sh)) */
                    double sw = 0, bound = 0, sh = 127.0 / amax_h;
                    for (k = 0; k < D; k++) sw = fmax(sw, fabs(head[(size_t)j * D + k]));
                    sw /= 127.0;
                    for (k = 0; k < D; k++)
                        bound += fabs(head[(size_t)j * D + k]) / (2 * sh) + sw * fabs(hidden[k]) / 2 + sw / (4 * sh);
                    CHECKF(fabs(q[(size_t)t * V + j] - f[(size_t)t * V + j]) <= bound * 1.001 + 1e-6,
                           "token %d row %d: %g vs %g (bound %g)", t, j, q[(size_t)t * V + j], f[(size_t)t * V + j], bound);
                }
            }
        }
        bitnet_context_free(cf); bitnet_context_free(cq); bitnet_context_free(cq2);
        free(f); free(q); free(head);
    }
    bitnet_model_free(m);
}

static void test_parallel_contexts(void) {
    bitnet_model *m = make_model(64, 128, 2, 1, 2, 280, 64, 1, 6);
    TEST("three contexts on one model in parallel threads give their sequential logits") {
        enum { N_CTX = 3, LEN = 20 };
        int V = 280, i;
        bitnet_token tokens[N_CTX][LEN];
        parallel_run runs[N_CTX];
        pthread_t threads[N_CTX];
        float *want = (float *)malloc(sizeof(float) * LEN * V);
        CHECK(m != NULL);
        for (i = 0; m && i < N_CTX; i++) {
            random_tokens(tokens[i], LEN, V, 100 + i);
            runs[i].model = m; runs[i].tokens = tokens[i]; runs[i].n = LEN; runs[i].ok = 0;
            runs[i].logits = (float *)malloc(sizeof(float) * LEN * V);
            CHECK(pthread_create(&threads[i], NULL, run_context, &runs[i]) == 0);
        }
        for (i = 0; m && i < N_CTX; i++) {
            bitnet_context *ctx = make_ctx(m, 0, 1, 0);
            pthread_join(threads[i], NULL);
            CHECK(runs[i].ok);
            CHECK(ctx && eval_batch(ctx, tokens[i], LEN, want));
            CHECKF(memcmp(want, runs[i].logits, sizeof(float) * LEN * V) == 0, "context %d", i);
            bitnet_context_free(ctx);
            free(runs[i].logits);
        }
        free(want);
    }
    bitnet_model_free(m);
}

static void test_errors(void) {
    bitnet_model *m = make_model(64, 64, 2, 1, 1, 260, 32, 1, 7);
    TEST("context full: an error with a message, and the context is unchanged") {
        bitnet_context *ctx = m ? make_ctx(m, 16, 2, 0) : NULL;
        bitnet_token t[20];
        bitnet_error err;
        float before[260];
        int i;
        for (i = 0; i < 20; i++) t[i] = i;
        CHECK(ctx && bitnet_n_ctx(ctx) == 16);
        if (ctx) {
            CHECK(bitnet_eval(ctx, t, 10, 0, &err) == BITNET_OK && err.code == BITNET_OK);
            memcpy(before, bitnet_logits(ctx, -1), sizeof before);
            CHECK(bitnet_eval(ctx, t, 7, 0, &err) == BITNET_E_CONTEXT_FULL);
            CHECK(err.code == BITNET_E_CONTEXT_FULL && strstr(err.message, "context") != NULL);
            CHECK(bitnet_n_past(ctx) == 10);
            CHECK(memcmp(before, bitnet_logits(ctx, -1), sizeof before) == 0);
            CHECK(bitnet_eval(ctx, t, 6, 0, &err) == BITNET_OK && bitnet_n_past(ctx) == 16);
            CHECK(bitnet_eval(ctx, t, 1, 0, &err) == BITNET_E_CONTEXT_FULL);
            CHECK(bitnet_context_truncate(ctx, 15, &err) == BITNET_OK);
            CHECK(bitnet_eval(ctx, t, 1, 0, &err) == BITNET_OK);
            CHECK(bitnet_eval(ctx, t, 20, 0, &err) == BITNET_E_CONTEXT_FULL);  /* longer than the whole context */
        }
        bitnet_context_free(ctx);
    }
    TEST("context creation checks its parameters") {
        bitnet_context_params cp = bitnet_context_default_params();
        bitnet_error err;
        bitnet_context *ctx;
        CHECK(bitnet_context_create(NULL, NULL, &err) == NULL && err.code == BITNET_E_ARG);
        cp.n_ctx = 33;  /* the model was trained for 32 */
        CHECK(bitnet_context_create(m, &cp, &err) == NULL && err.code == BITNET_E_ARG);
        cp.n_ctx = -1;
        CHECK(bitnet_context_create(m, &cp, &err) == NULL && err.code == BITNET_E_ARG);
        cp.n_ctx = 0;
        cp.n_threads = -2;
        CHECK(bitnet_context_create(m, &cp, &err) == NULL && err.code == BITNET_E_ARG);
        cp.n_threads = 1;
        cp.backend = (bitnet_backend)7;
        CHECK(bitnet_context_create(m, &cp, &err) == NULL && err.code == BITNET_E_ARG);
#ifndef BITNET_CUDA
        cp.backend = BITNET_BACKEND_CUDA;
        CHECK(bitnet_context_create(m, &cp, &err) == NULL && err.code == BITNET_E_UNSUPPORTED);
#endif
        cp.backend = BITNET_BACKEND_AUTO;
        ctx = bitnet_context_create(m, &cp, &err);
        CHECK(ctx && err.code == BITNET_OK);
        CHECK(bitnet_n_ctx(ctx) == 32);  /* 0: min(4096, the model's 32) */
        CHECK(bitnet_context_backend(ctx) == BITNET_BACKEND_CPU);
        bitnet_context_free(ctx);
        ctx = bitnet_context_create(m, NULL, &err);  /* defaults: all cores */
        CHECK(ctx && bitnet_n_past(ctx) == 0);
        bitnet_context_free(ctx);
    }
    TEST("misuse is an error, never a crash") {
        bitnet_context *ctx = m ? make_ctx(m, 0, 1, 0) : NULL;
        bitnet_error err;
        bitnet_token t[2] = {1, 2}, bad[2] = {3, 260}, neg = -1, next = 0;
        bitnet_sampler *s = bitnet_sampler_create(NULL, NULL);
        CHECK(ctx != NULL);
        CHECK(bitnet_eval(NULL, t, 1, 0, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval(ctx, NULL, 1, 0, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval(ctx, t, 0, 0, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval(ctx, t, -3, 0, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval(ctx, t, 1, 0x100, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval(ctx, bad, 2, 0, &err) == BITNET_E_ARG && strstr(err.message, "260"));
        CHECK(bitnet_eval(ctx, &neg, 1, 0, &err) == BITNET_E_ARG);
        CHECK(bitnet_n_past(ctx) == 0);
        CHECK(bitnet_logits(ctx, -1) == NULL);
        CHECK(bitnet_logits(NULL, -1) == NULL);
        CHECK(bitnet_eval(ctx, t, 2, 0, NULL) == BITNET_OK);  /* err may be NULL */
        CHECK(bitnet_logits(ctx, 2) == NULL && bitnet_logits(ctx, -2) == NULL);
        CHECK(bitnet_context_truncate(ctx, 3, &err) == BITNET_E_ARG);
        CHECK(bitnet_context_truncate(ctx, -1, &err) == BITNET_E_ARG);
        CHECK(bitnet_context_truncate(NULL, 0, &err) == BITNET_E_ARG);
        CHECK(bitnet_n_past(ctx) == 2);
        CHECK(bitnet_eval_sample(ctx, 1, NULL, &next, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval_sample(ctx, 1, s, NULL, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval_sample(NULL, 1, s, &next, &err) == BITNET_E_ARG);
        CHECK(bitnet_eval_sample(ctx, 260, s, &next, &err) == BITNET_E_ARG);
        CHECK(bitnet_n_past(ctx) == 2);
        CHECK(bitnet_n_ctx(NULL) == 0 && bitnet_n_past(NULL) == 0);
        bitnet_context_reset(NULL);
        bitnet_context_free(NULL);
        bitnet_sampler_free(s);
        bitnet_context_free(ctx);
    }
    TEST("eval_sample evaluates one token and samples from its logits") {
        bitnet_context *ctx = m ? make_ctx(m, 0, 2, 0) : NULL;
        bitnet_sampler_params sp = bitnet_sampler_default_params();
        bitnet_sampler *s;
        bitnet_token next = -1, want;
        const float *l;
        int j;
        sp.temperature = 0;  /* greedy: the argmax */
        s = bitnet_sampler_create(&sp, NULL);
        CHECK(ctx && s);
        if (ctx && s) {
            CHECK(bitnet_eval_sample(ctx, 5, s, &next, NULL) == BITNET_OK);
            CHECK(bitnet_n_past(ctx) == 1);
            l = bitnet_logits(ctx, -1);
            CHECK(l != NULL);
            want = 0;
            for (j = 1; l && j < 260; j++) if (l[j] > l[want]) want = j;
            CHECK(next == want);
        }
        bitnet_sampler_free(s);
        bitnet_context_free(ctx);
    }
    bitnet_model_free(m);
}

int main(void) {
    test_reference_models();
    test_embedding_types();
    test_int8_head();
    test_parallel_contexts();
    test_errors();
    return TEST_EXIT();
}
