/* End-to-end against Hugging Face transformers: each checkpoint in tests/fixtures/
   (tiny random BitNet models in the official layouts, made by make_fixtures.py) is
   converted with bitnet_convert_hf, loaded, and evaluated on the CPU; the logits of
   every prompt position and of each step of a 24-token greedy continuation must
   match what transformers 5.17 computed, and the greedy tokens must be identical.

   Tolerances.  Every int8 rounding decision either agrees with transformers' or it
   does not, so the logits come in two kinds of position:
   - "clean" positions, where every decision agreed: only float rounding separates
     the two, and transformers' float32 and float64 runs of the same model differ by
     2e-7 to 5e-7 relative L2 (tests/fixtures/make_fixtures.log).  We allow 1e-3,
     a thousand times more, for a CPU that sums in another order or uses another
     expf, and still five times below the smallest deliberate bug (below).
   - positions after a flipped decision: a value within float noise of a rounding
     tie rounds the other way, and the difference grows through every later
     quantization of that token and of the tokens attending to it.  make_fixtures
     skips models with any activation within five mean float32 errors of a tie, so
     this should not happen here, but a somewhat noisier CPU could still flip one
     late in a sequence.  Such positions moved by up to 8e-2 relative L2 and 0.94
     in absolute logit (0.27 of the logits' standard deviation) in the fixture
     calibration runs with injected noise.  We allow one in eight positions to be
     of this kind, bounded by 0.25 relative L2 and 0.5 standard deviations.
   What the bugs this test must catch do, on these fixtures (calibration.json,
   relative L2 per position): skipping activation quantization 4.4e-2 to 5.5e-2
   median and no clean position at all; dropping a norm 0.5 to 1.3 median;
   rotating adjacent pairs instead of the two halves of each head (RoPE halves
   swapped) 0.39 to 0.75 median.  So: at least 7/8 of the positions clean, every
   position within 0.25 and 0.5 standard deviations, argmax agreeing at every clean
   position, and every greedy token identical. */
#define _POSIX_C_SOURCE 200809L /* getpid */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

#define FIXTURES "tests/fixtures/"
#define MAX_TOKENS 64

typedef struct reference {
    int n_vocab, n_prompt, n_greedy;
    bitnet_token prompt[MAX_TOKENS], greedy[MAX_TOKENS];
    float *logits;         /* [n_prompt][n_vocab] */
    float *greedy_logits;  /* [n_greedy][n_vocab]: step j's logits chose greedy[j] */
} reference;

static int read_ids(const char *line, bitnet_token *ids, int max) {
    int n = 0, used;
    long v;
    while (n < max && sscanf(line, "%ld%n", &v, &used) == 1) {
        ids[n++] = (bitnet_token)v;
        line += used;
    }
    return n;
}

/* Reads n float32 little-endian values. */
static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    unsigned char *raw = (unsigned char *)malloc(n * 4);
    float *out = (float *)malloc(n * sizeof *out);
    size_t i, got = 0;
    if (f && raw && out) got = fread(raw, 4, n, f);
    if (f) {
        if (fgetc(f) != EOF) got = 0; /* longer than expected */
        fclose(f);
    }
    if (got != n) {
        free(raw);
        free(out);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 | (uint32_t)raw[4 * i + 2] << 16 |
                     (uint32_t)raw[4 * i + 3] << 24;
        memcpy(&out[i], &u, 4);
    }
    free(raw);
    return out;
}

static int read_reference(const char *name, reference *r) {
    char path[512], line[4096];
    FILE *f;
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, FIXTURES "%s/reference.txt", name);
    if (!(f = fopen(path, "r"))) return 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "n_vocab ", 8)) r->n_vocab = atoi(line + 8);
        else if (!strncmp(line, "prompt ", 7)) r->n_prompt = read_ids(line + 7, r->prompt, MAX_TOKENS);
        else if (!strncmp(line, "greedy ", 7)) r->n_greedy = read_ids(line + 7, r->greedy, MAX_TOKENS);
    }
    fclose(f);
    if (r->n_vocab <= 0 || r->n_prompt <= 0 || r->n_greedy <= 0) return 0;
    snprintf(path, sizeof path, FIXTURES "%s/logits.bin", name);
    r->logits = read_floats(path, (size_t)r->n_prompt * (size_t)r->n_vocab);
    snprintf(path, sizeof path, FIXTURES "%s/greedy_logits.bin", name);
    r->greedy_logits = read_floats(path, (size_t)r->n_greedy * (size_t)r->n_vocab);
    return r->logits && r->greedy_logits;
}

static void free_reference(reference *r) {
    free(r->logits);
    free(r->greedy_logits);
}

static int argmax(const float *x, int n) {
    int i, best = 0;
    for (i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* How one position compares; see the comment at the top for the bounds. */
typedef struct position_check {
    int clean, within_bounds, argmax_agrees;
    double rel, max_abs, ref_std;
} position_check;

static position_check compare_position(const float *got, const float *ref, int n) {
    position_check c;
    double diff2 = 0, ref2 = 0, sum = 0, mean;
    int i;
    c.max_abs = 0;
    for (i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        diff2 += d * d;
        ref2 += (double)ref[i] * ref[i];
        sum += ref[i];
        if (!(fabs(d) <= c.max_abs)) c.max_abs = fabs(d); /* NaN counts as huge */
    }
    mean = sum / n;
    c.ref_std = sqrt(ref2 / n - mean * mean);
    c.rel = sqrt(diff2 / ref2);
    c.clean = c.rel <= 1e-3;
    c.within_bounds = c.rel <= 0.25 && c.max_abs <= 0.5 * c.ref_std;
    c.argmax_agrees = argmax(got, n) == argmax(ref, n);
    return c;
}

/* Checks a run of positions; returns how many were clean. */
static int check_positions(const char *what, const float *got, const float *ref, int n_pos, int n_vocab) {
    int p, clean = 0;
    double worst = 0;
    for (p = 0; p < n_pos; p++) {
        position_check c = compare_position(got + (size_t)p * n_vocab, ref + (size_t)p * n_vocab, n_vocab);
        CHECKF(c.within_bounds, "%s position %d: relative L2 error %.3g, max abs %.3g (bounds 0.25, %.3g)", what, p, c.rel,
               c.max_abs, 0.5 * c.ref_std);
        CHECKF(!c.clean || c.argmax_agrees, "%s position %d: argmax differs at a clean position", what, p);
        clean += c.clean;
        if (c.rel > worst) worst = c.rel;
    }
    CHECKF(8 * clean >= 7 * n_pos, "%s: only %d of %d positions within 1e-3 (worst relative L2 error %.3g)", what, clean,
           n_pos, worst);
    printf("# %s: %d/%d positions clean, worst relative L2 error %.2e\n", what, clean, n_pos, worst);
    return clean;
}

static void temp_model_path(char *buf, size_t size, const char *name) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, size, "%s/bitnet_test_reference_%ld_%s.gguf", dir && *dir ? dir : "/tmp", (long)getpid(), name);
}

/* Converts, loads, evaluates; compares.  n_threads and use_mmap vary per fixture. */
static void run_fixture(const char *name, int n_threads, int use_mmap) {
    char dir[256], model_path[512], what[320];
    bitnet_error err;
    bitnet_model_params mp = bitnet_model_default_params();
    bitnet_context_params cp = bitnet_context_default_params();
    bitnet_model *model = NULL;
    bitnet_context *ctx = NULL;
    reference ref;
    float *got = NULL;
    bitnet_token poison[5] = {1, 2, 3, 4, 5};
    int j, n_vocab, rc;

    if (!read_reference(name, &ref)) {
        CHECKF(0, "cannot read " FIXTURES "%s (run the tests from the repository root)", name);
        free_reference(&ref);
        return;
    }
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    temp_model_path(model_path, sizeof model_path, name);
    rc = bitnet_convert_hf(dir, model_path, NULL, &err);
    CHECKF(rc == BITNET_OK, "converting %s: %s", name, err.message);
    mp.use_mmap = use_mmap;
    if (rc == BITNET_OK) model = bitnet_model_load(model_path, &mp, &err);
    CHECKF(rc || model, "loading %s: %s", name, err.message);
    if (!model) goto done;
    n_vocab = bitnet_model_hparams(model)->n_vocab;
    CHECK(n_vocab == ref.n_vocab);
    cp.n_threads = n_threads;
    cp.n_ctx = 128;
    cp.backend = BITNET_BACKEND_CPU;
    ctx = bitnet_context_create(model, &cp, &err);
    CHECKF(ctx != NULL, "context: %s", err.message);
    if (!ctx || n_vocab != ref.n_vocab) goto done;

    /* other tokens first, so stale logits cannot pass for the right ones */
    CHECK(bitnet_eval(ctx, poison, 5, BITNET_EVAL_ALL_LOGITS, &err) == BITNET_OK);
    bitnet_context_reset(ctx);

    /* the prompt in one batch, logits of every position */
    got = (float *)malloc((size_t)(ref.n_prompt > ref.n_greedy ? ref.n_prompt : ref.n_greedy) * (size_t)n_vocab * sizeof *got);
    rc = bitnet_eval(ctx, ref.prompt, ref.n_prompt, BITNET_EVAL_ALL_LOGITS, &err);
    CHECKF(rc == BITNET_OK, "eval: %s", err.message);
    if (rc || !got) goto done;
    for (j = 0; j < ref.n_prompt; j++) {
        const float *l = bitnet_logits(ctx, j);
        CHECK(l != NULL);
        if (l) memcpy(got + (size_t)j * n_vocab, l, (size_t)n_vocab * sizeof *got);
    }
    snprintf(what, sizeof what, "%s prompt", name);
    check_positions(what, got, ref.logits, ref.n_prompt, n_vocab);

    /* greedy continuation, one token at a time through the KV cache; the reference
       tokens are fed back, so every step is compared even after a difference */
    for (j = 0; j < ref.n_greedy; j++) {
        const float *l = bitnet_logits(ctx, -1);
        int tok;
        CHECK(l != NULL);
        if (!l) break;
        memcpy(got + (size_t)j * n_vocab, l, (size_t)n_vocab * sizeof *got);
        tok = argmax(l, n_vocab);
        CHECKF(tok == ref.greedy[j], "%s greedy step %d: token %d, transformers chose %d", name, j, tok, ref.greedy[j]);
        if (j + 1 < ref.n_greedy) {
            rc = bitnet_eval(ctx, &ref.greedy[j], 1, 0, &err);
            CHECKF(rc == BITNET_OK, "decode: %s", err.message);
            if (rc) break;
        }
    }
    snprintf(what, sizeof what, "%s greedy steps", name);
    if (j == ref.n_greedy) check_positions(what, got, ref.greedy_logits, ref.n_greedy, n_vocab);
done:
    free(got);
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    remove(model_path);
    free_reference(&ref);
}

int main(void) {
    TEST("reference: bf16 master weights, online ternarization, tied head (2B4T-bf16 layout)") run_fixture("bf16_online_tied", 1, 1);
    TEST("reference: packed weights, bitlinear, bf16 weight_scale, tied head (2B4T layout)") run_fixture("packed_bitlinear_tied", 2, 0);
    TEST("reference: f32 master weights in two shards, untied head, transformers 5 config") run_fixture("f32_online_untied_sharded", 2, 1);
    TEST("reference: packed weights, autobitlinear offline, f32 weight_scale, untied head") run_fixture("packed_autobitlinear_untied", 1, 0);
    return TEST_EXIT();
}
