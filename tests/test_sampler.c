/* Sampler: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeding,
   and the candidate path the GPU uses against the full path. */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "test.h"
#include <math.h>

static bitnet_sampler *make(float temp, int top_k, float top_p, float min_p, float pen, uint64_t seed) {
    bitnet_sampler_params p = bitnet_sampler_default_params();
    p.temperature = temp; p.top_k = top_k; p.top_p = top_p; p.min_p = min_p;
    p.repeat_penalty = pen; p.seed = seed;
    return bitnet_sampler_create(&p, NULL);
}

static uint64_t rng_state = 12345;
static float frand(void) { /* uniform in [0, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0));
}

/* Reference: the kept set in rank order, from a direct (sort everything) reading of the rules. */
static int kept_set(const float *logits, int n, float temp, int top_k, float top_p, float min_p, int *keep, double *prob) {
    int i, j, m = 0, cut;
    double z = 0, cum = 0, p0;
    int *ord = (int *)malloc((size_t)n * sizeof *ord);
    for (i = 0; i < n; i++) ord[i] = i;
    for (i = 1; i < n; i++) { /* insertion sort by (value desc, id asc) */
        int x = ord[i];
        j = i - 1;
        while (j >= 0 && (logits[ord[j]] < logits[x] || (logits[ord[j]] == logits[x] && ord[j] > x))) { ord[j + 1] = ord[j]; j--; }
        ord[j + 1] = x;
    }
    m = top_k > 0 && top_k < n ? top_k : n;
    for (i = 0; i < m; i++) z += exp((logits[ord[i]] - logits[ord[0]]) / temp);
    p0 = 1.0 / z;
    cut = m;
    for (i = 0; i < m; i++) {
        double p = exp((logits[ord[i]] - logits[ord[0]]) / temp) / z;
        if (min_p > 0 && p < min_p * p0) { cut = i; break; }
        cum += p;
        if (top_p < 1 && cum >= top_p) { cut = i + 1; break; }
    }
    for (i = 0; i < cut; i++) { keep[i] = ord[i]; prob[i] = exp((logits[ord[i]] - logits[ord[0]]) / temp) / z; }
    free(ord);
    return cut;
}

int main(void) {
    TEST("greedy picks the argmax, ties go to the lower id") {
        float l[6] = {0.1f, 3.0f, -2.0f, 3.0f, 2.9f, NAN};
        bitnet_sampler *s = make(0, 0, 1, 0, 1, 1);
        CHECK(bitnet_sampler_sample(s, l, 6) == 1);
        l[1] = 2.0f;
        CHECK(bitnet_sampler_sample(s, l, 6) == 3);
        bitnet_sampler_free(s);
    }
    TEST("invalid parameters are rejected with a message") {
        bitnet_sampler_params p = bitnet_sampler_default_params();
        bitnet_error err;
        p.top_p = 0;
        CHECK(bitnet_sampler_create(&p, &err) == NULL && err.code == BITNET_E_ARG && strstr(err.message, "top_p"));
        p = bitnet_sampler_default_params(); p.top_k = -1;
        CHECK(bitnet_sampler_create(&p, &err) == NULL && strstr(err.message, "top_k"));
        p = bitnet_sampler_default_params(); p.repeat_penalty = 0;
        CHECK(bitnet_sampler_create(&p, &err) == NULL && strstr(err.message, "repeat_penalty"));
        p = bitnet_sampler_default_params(); p.temperature = NAN;
        CHECK(bitnet_sampler_create(&p, &err) == NULL && strstr(err.message, "temperature"));
        p = bitnet_sampler_default_params(); p.min_p = 1.5f;
        CHECK(bitnet_sampler_create(&p, &err) == NULL && strstr(err.message, "min_p"));
        CHECK(bitnet_sampler_sample(NULL, NULL, 3) == -1);
        bitnet_sampler_free(NULL);
    }
    TEST("the same seed reproduces a sequence, another seed does not") {
        float l[50];
        int i, same = 1, differ = 0;
        bitnet_sampler *a = make(1.0f, 0, 1, 0, 1, 42), *b = make(1.0f, 0, 1, 0, 1, 42), *c = make(1.0f, 0, 1, 0, 1, 43);
        for (i = 0; i < 50; i++) l[i] = frand() * 2;
        for (i = 0; i < 200; i++) {
            bitnet_token x = bitnet_sampler_sample(a, l, 50), y = bitnet_sampler_sample(b, l, 50), z = bitnet_sampler_sample(c, l, 50);
            same &= x == y;
            differ |= x != z;
        }
        CHECK(same);
        CHECK(differ);
        bitnet_sampler_reset(a);
        bitnet_sampler_reset(c);
        /* after reset a replays b's first draws */
        {
            bitnet_sampler *d = make(1.0f, 0, 1, 0, 1, 42);
            for (i = 0; i < 20; i++) CHECK(bitnet_sampler_sample(a, l, 50) == bitnet_sampler_sample(d, l, 50));
            bitnet_sampler_free(d);
        }
        bitnet_sampler_free(a); bitnet_sampler_free(b); bitnet_sampler_free(c);
    }
    TEST("sample frequencies follow the kept distribution (temperature, top-k, top-p, min-p)") {
        static const struct { float temp; int k; float p, minp; } cfg[] = {
            {1.0f, 0, 1.0f, 0}, {0.5f, 0, 1.0f, 0}, {1.5f, 5, 1.0f, 0}, {1.0f, 0, 0.7f, 0}, {1.0f, 0, 1.0f, 0.3f},
            {0.8f, 6, 0.9f, 0.05f}};
        int ci;
        for (ci = 0; ci < (int)(sizeof cfg / sizeof cfg[0]); ci++) {
            enum { N = 12, DRAWS = 60000 };
            float l[N];
            int keep[N], count[N] = {0}, i, m, outside = 0;
            double prob[N], kept = 0, chi = 0;
            bitnet_sampler *s = make(cfg[ci].temp, cfg[ci].k, cfg[ci].p, cfg[ci].minp, 1, 7 + (uint64_t)ci);
            for (i = 0; i < N; i++) l[i] = frand() * 4 - 2;
            m = kept_set(l, N, cfg[ci].temp, cfg[ci].k, cfg[ci].p, cfg[ci].minp, keep, prob);
            for (i = 0; i < m; i++) kept += prob[i];
            for (i = 0; i < DRAWS; i++) count[bitnet_sampler_sample(s, l, N)]++;
            for (i = 0; i < N; i++) {
                int j, in = 0;
                for (j = 0; j < m; j++) if (keep[j] == i) {
                    double e = DRAWS * prob[j] / kept;
                    chi += (count[i] - e) * (count[i] - e) / e;
                    in = 1;
                }
                if (!in) outside += count[i];
            }
            /* chi-square with at most 11 degrees of freedom: 40 is far beyond p = 1e-4 */
            CHECKF(outside == 0 && chi < 40, "config %d: %d draws outside the kept set, chi2 %.1f over %d kept", ci, outside, chi, m);
            bitnet_sampler_free(s);
        }
    }
    TEST("top-k 1 and min-p 1 are greedy") {
        float l[8] = {0.3f, 0.1f, 0.9f, 0.89f, -1, 0, 0.2f, 0.5f};
        int i;
        bitnet_sampler *a = make(1.0f, 1, 1, 0, 1, 3), *b = make(1.0f, 0, 1, 1.0f, 1, 3);
        for (i = 0; i < 100; i++) CHECK(bitnet_sampler_sample(a, l, 8) == 2 && bitnet_sampler_sample(b, l, 8) == 2);
        bitnet_sampler_free(a); bitnet_sampler_free(b);
    }
    TEST("repetition penalty divides positive and multiplies negative logits of recent tokens") {
        float l[4] = {2.0f, 1.5f, -1.0f, -1.2f};
        bitnet_sampler *s = make(0, 0, 1, 0, 2.0f, 1);
        CHECK(bitnet_sampler_sample(s, l, 4) == 0); /* 0 is now in the history: 2.0 / 2 < 1.5 */
        CHECK(bitnet_sampler_sample(s, l, 4) == 1); /* 1 too: 1.0 vs 0.75 */
        CHECK(bitnet_sampler_sample(s, l, 4) == 0);
        bitnet_sampler_free(s);
        s = make(0, 0, 1, 0, 3.0f, 1);
        {
            float m[3] = {-1.0f, -1.1f, -5.0f};
            bitnet_sampler_accept(s, 0);            /* -1 * 3 = -3 < -1.1 */
            CHECK(bitnet_sampler_sample(s, m, 3) == 1);
        }
        bitnet_sampler_free(s);
    }
    TEST("the GPU candidate path gives the same tokens as the full path") {
        enum { N = 3000 };
        static float l[N];
        int trial, agreed = 0, decided = 0;
        for (trial = 0; trial < 300; trial++) {
            float temp = 0.3f + frand() * 1.5f, top_p = trial % 3 ? 0.5f + frand() * 0.5f : 1.0f;
            int top_k = trial % 4 == 0 ? 0 : 1 + (int)(frand() * 60), c = trial % 5 == 0 ? 8 : 256, i, step;
            float min_p = trial % 2 ? frand() * 0.2f : 0;
            bitnet_sampler *a = make(temp, top_k, top_p, min_p, 1.3f, (uint64_t)trial), *b = make(temp, top_k, top_p, min_p, 1.3f, (uint64_t)trial);
            for (i = 0; i < N; i++) l[i] = frand() * 12 - 6;
            for (step = 0; step < 4; step++) {
                static float pl[N];
                int ids[256], idx[N], pen[64], np, j;
                float vals[256];
                double lse = 0, mx = -1e30;
                bitnet_token full, fast;
                /* what the GPU would compute: penalized logits, top c, log-sum-exp of logits/T */
                memcpy(pl, l, sizeof pl);
                np = bitnet__sampler_penalty_tokens(b, pen, 64);
                for (j = 0; j < np; j++) pl[pen[j]] = bitnet__penalize(l[pen[j]], 1.3f);
                for (j = 0; j < N; j++) { idx[j] = j; if (pl[j] / temp > mx) mx = pl[j] / temp; }
                for (j = 0; j < N; j++) lse += exp(pl[j] / temp - mx);
                lse = mx + log(lse);
                bitnet__select_top(pl, idx, N, c);
                for (j = 0; j < c; j++) { ids[j] = idx[j]; vals[j] = pl[idx[j]]; }
                full = bitnet_sampler_sample(a, l, N);
                if (bitnet__sampler_finish(b, ids, vals, c, N, lse, &fast)) decided++;
                else fast = bitnet_sampler_sample(b, l, N);
                agreed += full == fast;
                CHECKF(full == fast, "trial %d step %d: full path %d, candidate path %d", trial, step, full, fast);
            }
            bitnet_sampler_free(a); bitnet_sampler_free(b);
        }
        CHECKF(decided > 600, "the candidates settled only %d of 1200 samples", decided);
        (void)agreed;
    }
    TEST("a 128256-token vocabulary samples without sorting everything") {
        static float l[128256];
        int i;
        bitnet_sampler *s = make(1.0f, 0, 0.95f, 0, 1, 9);
        for (i = 0; i < 128256; i++) l[i] = frand() * 20;
        for (i = 0; i < 50; i++) {
            bitnet_token t = bitnet_sampler_sample(s, l, 128256);
            CHECK(t >= 0 && t < 128256);
        }
        bitnet_sampler_free(s);
        /* a flat distribution with no top-k: the ranking is sorted as far as the draw
           needs, which is most of the vocabulary (quadratic sorting would take minutes) */
        s = make(1.0f, 0, 1.0f, 0.05f, 1, 10);
        for (i = 0; i < 128256; i++) l[i] = 0.5f;
        for (i = 0; i < 5; i++) {
            bitnet_token t = bitnet_sampler_sample(s, l, 128256);
            CHECK(t >= 0 && t < 128256);
        }
        bitnet_sampler_free(s);
    }
    return TEST_EXIT();
}
