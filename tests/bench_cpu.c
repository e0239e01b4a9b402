/* bench_cpu - CPU prompt and decode speed on a random model of the full
   BitNet b1.58 2B4T shape, read into memory (no mmap).

   usage: build/bench_cpu [model.gguf] [-r runs] [-t max_threads] [-n decode_tokens]
   Without a model path it uses build/bench-2b4t.gguf, writing it first if it is
   missing (1.2 GB).  Prints, for the BF16 and the int8 LM head and 1..max
   threads, the median over the runs of
     prompt: tokens/s of one 128-token bitnet_eval on an empty context
     decode: tokens/s of n single-token evals after that prompt
   and the floor the memory bandwidth (measured here first) puts on decode.
   Other processes on the machine skew such numbers, so a run counts only if
   the process got its cores: CPU time >= 90% of threads x wall time (idle
   workers spin, so an undisturbed run uses all of them); the table says how
   many runs counted. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE  /* madvise(MADV_HUGEPAGE) for the model buffer */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROMPT 128

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Keeps rate if the run had its cores to itself (see above); returns 1 if kept. */
static int keep_run(double *rates, int *n, double rate, double wall, double cpu, int threads) {
    if (cpu < 0.9 * threads * wall) return 0;
    rates[(*n)++] = rate;
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- memory read bandwidth: each thread sums its own part of a 1 GiB buffer
   in huge pages, as the model's weights are (with 4 KiB pages this VM reads
   ~25% slower, and so would the kernels) ---- */

typedef struct { const uint64_t *p; size_t n; uint64_t sum; } bw_part;

static void *bw_read(void *arg) {
    bw_part *b = (bw_part *)arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i;
    for (i = 0; i + 4 <= b->n; i += 4) { s0 += b->p[i]; s1 ^= b->p[i + 1]; s2 += b->p[i + 2]; s3 ^= b->p[i + 3]; }
    b->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* Best of several passes, GB/s. */
static double bandwidth(int n_threads) {
    size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *buf = (uint64_t *)malloc(bytes);
    double best = 0;
    int rep, t;
    if (!buf) return 0;
    bitnet__advise_huge_pages(buf, bytes);
    memset(buf, 1, bytes);
    for (rep = 0; rep < 5; rep++) {
        pthread_t th[64];
        bw_part parts[64];
        double t0 = now(), dt;
        for (t = 0; t < n_threads; t++) {
            parts[t].p = buf + n / n_threads * t;
            parts[t].n = n / n_threads;
            pthread_create(&th[t], NULL, bw_read, &parts[t]);
        }
        for (t = 0; t < n_threads; t++) pthread_join(th[t], NULL);
        dt = now() - t0;
        if (bytes / dt / 1e9 > best) best = bytes / dt / 1e9;
    }
    free(buf);
    return best;
}

/* ---- compute speed of one core: the prompt kernel on cache-resident data, GMAC/s.
   This VM's cores change speed with its neighbours' load; printed at the start
   and the end so the table can be read against it. */
static double compute_probe(void) {
    enum { ROWS = 256, COLS = 2560, TOK = 16 };
    static uint8_t q[ROWS * COLS / 64 * 18];
    static int8_t x[TOK * COLS];
    static float scale[TOK];
    static int32_t sum[TOK], dots[ROWS * TOK];
    bitnet__qweight w;
    bitnet__acts a;
    double best = 0;
    int i, rep;
    for (i = 0; i < (int)sizeof q; i++) q[i] = (uint8_t)(i * 2654435761u >> 13);
    for (i = 0; i < (int)sizeof x; i++) x[i] = (int8_t)(i * 7);
    w.q = q; w.rows = ROWS; w.cols = COLS; w.row_bytes = COLS / 64 * 18; w.scale = 1;
    a.q = x; a.stride = COLS; a.scale = scale; a.sum = sum;
    for (rep = 0; rep < 20; rep++) {
        double t0 = now();
        for (i = 0; i < 10; i++) bitnet__q2_dots(&w, 0, ROWS, &a, TOK, dots);
        t0 = 10.0 * ROWS * COLS * TOK / (now() - t0) / 1e9;
        if (t0 > best) best = t0;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *path = "build/bench-2b4t.gguf";
    int runs = 5, max_threads = 2, n_decode = 32, i, int8, threads;
    bitnet_model_params mp = bitnet_model_default_params();
    bitnet_model *model;
    bitnet_error err;
    const bitnet_hparams *hp;
    double ternary_bytes = 0, bw[65];
    bitnet_token prompt[PROMPT];
    char desc[256];
    FILE *f;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) max_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (argv[i][0] != '-') path = argv[i];
        else { fprintf(stderr, "usage: bench_cpu [model.gguf] [-r runs] [-t max_threads] [-n decode_tokens]\n"); return 2; }
    }
    if (runs < 1 || runs > 1000 || max_threads < 1 || max_threads > 64 || n_decode < 1 || n_decode > 1024) {
        fprintf(stderr, "bench_cpu: runs 1..1000, threads 1..64, decode tokens 1..1024\n");
        return 2;
    }
    if ((f = fopen(path, "rb")) != NULL) fclose(f);
    else {
        bitnet_hparams shape;
        memset(&shape, 0, sizeof shape);
        shape.n_layer = 30; shape.n_embd = 2560; shape.n_ff = 6912; shape.n_head = 20; shape.n_head_kv = 5;
        shape.n_vocab = 128256; shape.n_ctx_train = 4096; shape.rope_theta = 500000.0f; shape.rms_eps = 1e-5f;
        shape.tied_embeddings = 1;
        fprintf(stderr, "bench_cpu: writing %s (2B4T shape, random weights)...\n", path);
        if (bitnet_write_random_model(path, &shape, 1, NULL, &err) != BITNET_OK) {
            fprintf(stderr, "bench_cpu: %s\n", err.message);
            return 1;
        }
    }
    mp.use_mmap = 0;
    if (!(model = bitnet_model_load(path, &mp, &err))) { fprintf(stderr, "bench_cpu: %s\n", err.message); return 1; }
    hp = bitnet_model_hparams(model);
    bitnet_model_describe(model, desc, sizeof desc);
    for (i = 0; i < hp->n_layer; i++) {
        const bitnet__layer *L = &model->layers[i];
        const bitnet__qweight *w[7];
        int k;
        w[0] = &L->wq; w[1] = &L->wk; w[2] = &L->wv; w[3] = &L->wo; w[4] = &L->gate; w[5] = &L->up; w[6] = &L->down;
        for (k = 0; k < 7; k++) ternary_bytes += (double)w[k]->rows * (double)w[k]->row_bytes;
    }
    for (i = 0; i < PROMPT; i++) prompt[i] = (bitnet_token)((i * 7919 + 13) % hp->n_vocab);

    printf("model: %s\n", desc);
    printf("SIMD: %s; runs: %d (median); prompt %d tokens; decode %d tokens after the prompt\n",
#if defined(BITNET__AVX512)
           "AVX-512 VNNI",
#elif defined(BITNET__AVX2)
           "AVX2",
#else
           "scalar",
#endif
           runs, PROMPT, n_decode);
    printf("compute probe (prompt kernel, cache-resident, 1 core): %.0f GMAC/s\n", compute_probe());
    for (threads = 1; threads <= max_threads; threads++) bw[threads] = bandwidth(threads);
    printf("memory read bandwidth:");
    for (threads = 1; threads <= max_threads; threads++) printf(" %.1f GB/s (%d thread%s)", bw[threads], threads, threads > 1 ? "s" : "");
    printf("\nbytes per decoded token: %.0f MB ternary (Q2_0, 2.25 bits) + %.0f MB BF16 or %.0f MB int8 LM head\n\n",
           ternary_bytes / 1e6, (double)hp->n_vocab * hp->n_embd * 2 / 1e6, (double)hp->n_vocab * hp->n_embd / 1e6);
    printf("| LM head | threads | prompt-%d tok/s | decode tok/s | decode ms/token | bandwidth floor tok/s | undisturbed runs |\n", PROMPT);
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    for (int8 = 0; int8 <= 1; int8++) {
        double head_bytes = (double)hp->n_vocab * hp->n_embd * (int8 ? 1 : 2);
        for (threads = 1; threads <= max_threads; threads++) {
            bitnet_context_params cp = bitnet_context_default_params();
            bitnet_context *ctx;
            double *pp = (double *)malloc(sizeof(double) * runs * 2), *tg = (double *)malloc(sizeof(double) * runs * 2);
            double *pp_all = pp + runs, *tg_all = tg + runs;
            int r, k, n_pp = 0, n_tg = 0;
            cp.n_ctx = PROMPT + n_decode;
            cp.n_threads = threads;
            cp.backend = BITNET_BACKEND_CPU;
            cp.lm_head_int8 = int8;
            if (!(ctx = bitnet_context_create(model, &cp, &err))) { fprintf(stderr, "bench_cpu: %s\n", err.message); return 1; }
            bitnet_eval(ctx, prompt, PROMPT, 0, NULL);  /* warm-up */
            for (r = 0; r < runs; r++) {
                double t0, c0;
                bitnet_context_reset(ctx);
                t0 = now();
                c0 = cpu_now();
                if (bitnet_eval(ctx, prompt, PROMPT, 0, &err) != BITNET_OK) { fprintf(stderr, "bench_cpu: %s\n", err.message); return 1; }
                pp_all[r] = PROMPT / (now() - t0);
                keep_run(pp, &n_pp, pp_all[r], now() - t0, cpu_now() - c0, threads);
                t0 = now();
                c0 = cpu_now();
                for (k = 0; k < n_decode; k++) {
                    bitnet_token t = (bitnet_token)((k * 31 + 7) % hp->n_vocab);
                    if (bitnet_eval(ctx, &t, 1, 0, &err) != BITNET_OK) { fprintf(stderr, "bench_cpu: %s\n", err.message); return 1; }
                }
                tg_all[r] = n_decode / (now() - t0);
                keep_run(tg, &n_tg, tg_all[r], now() - t0, cpu_now() - c0, threads);
            }
            {
                /* with no undisturbed run, the median of all (marked *) */
                double p = n_pp ? median(pp, n_pp) : median(pp_all, runs), d = n_tg ? median(tg, n_tg) : median(tg_all, runs);
                printf("| %s | %d | %.1f%s | %.2f%s | %.1f | %.1f | %d+%d of %d+%d |\n", int8 ? "int8" : "BF16", threads, p,
                       n_pp ? "" : "*", d, n_tg ? "" : "*", 1000.0 / d, bw[threads] * 1e9 / (ternary_bytes + head_bytes), n_pp,
                       n_tg, runs, runs);
                fflush(stdout);
            }
            bitnet_context_free(ctx);
            free(pp);
            free(tg);
        }
    }
    printf("\ncompute probe at the end: %.0f GMAC/s; memory read bandwidth at the end:", compute_probe());
    for (threads = 1; threads <= max_threads; threads++) printf(" %.1f GB/s (%d)", bandwidth(threads), threads);
    printf("\n");
    bitnet_model_free(model);
    return 0;
}
