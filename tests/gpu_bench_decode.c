/* End-to-end decode benchmark on the GPU (run by tests/gpu.sh).

   usage: gpu_bench_decode MODEL.gguf [runs [fused step variant [rates | profile]]]

   Batch-1 decode of the model (a random-weight 2B4T file in gpu.sh) at context
   positions 128, 1024 and 4000, with the bf16 LM head and with the int8 one:
     api      tokens/s of bitnet_eval_sample with a greedy sampler: one step and one
              4-byte copy back per token, as an application runs it
     graph    tokens/s of back-to-back graph replays (the next token is fed on the
              device, the host waits only at the end): the GPU's own rate
   each the median of `runs` runs of 64 tokens.  Then the time of one step split
   into its kernels (run one by one, without overlap, so the parts add up to more
   than a replay), GPU memory, and load times.  With `rates` only the first table
   (for comparing builds of one source: compiler flags, quick A/B runs); with
   `profile` that table and the fused step's profile (bf16 head).  With
   BITNET_STAMPS_DIR set, every block's raw timestamps of the profiled steps go
   there as stamps_{bf16,int8}_POS.bin (tests/stamps.py reads them). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define STEPS 64

static void die(const char *what, const bitnet_error *err);

/* Graph tokens/s of the step as it is captured now at position pos (after a
   prefill of pos tokens): the median of `runs` runs of STEPS back-to-back replays. */
static double graph_rate(bitnet_context *ctx, void *dev, const bitnet_token *prefill, int pos, int runs) {
    double graph[16], t0;
    bitnet_error err;
    bitnet_token next;
    int r, i;
    if (ctx->n_past >= pos) { /* the cache holds the prompt already */
        if (bitnet_context_truncate(ctx, pos, &err) != BITNET_OK) die("truncate", &err);
    } else {
        bitnet_context_reset(ctx);
        if (bitnet_eval(ctx, prefill, pos, 0, &err) != BITNET_OK) die("prefill", &err);
    }
    for (r = 0; r < runs && r < 16; r++) {
        if (bitnet__cuda_decode(dev, prefill[pos], pos, &next, &err) != BITNET_OK) die("decode", &err);
        t0 = now();
        for (i = 1; i <= STEPS; i++)
            if (bitnet__cuda_decode(dev, -1, pos + i, i == STEPS ? &next : NULL, &err) != BITNET_OK) die("decode", &err);
        graph[r] = STEPS / (now() - t0);
    }
    ctx->n_past = pos + STEPS + 1;   /* what the replays wrote */
    qsort(graph, (size_t)r, sizeof *graph, cmp_double);
    return graph[r / 2];
}

static void die(const char *what, const bitnet_error *err) {
    fprintf(stderr, "gpu_bench_decode: %s: %s\n", what, err->message);
    exit(1);
}

/* Every block of one fused step (stamps from bitnet__cuda_profile_fused, 6 per
   phase: start, normalized, weights here, dots, epilogue, at the barrier): per
   kind of phase, added up over the layers, how long blocks are busy before they
   arrive, how far apart their arrivals are, how long the barrier takes from the
   last arrival to the first departure, and where the last block to arrive spent
   its time.  Tiles: the last block's share of the phase's matrix (16 rows each),
   as bitnet__fused_tiles splits them. */
static void print_spread(const bitnet_hparams *hp, const unsigned long long *t, int n_blocks, int n_stamps, int pos) {
    static const char *phases[5] = {"QKV + RoPE + KV append", "attention", "O + residual", "gate/up + ReLU^2", "down + residual"};
    const int n_layer = hp->n_layer, M = (n_stamps - 1) / (5 * n_layer);   /* stamps per phase */
    double busy_mean[5] = {0}, busy_max[5] = {0}, spread[5] = {0}, latency[5] = {0}, late[5][6] = {{0}};
    int late_most[5] = {0}, counted[5] = {0}, ph, b, j;
    unsigned long long tick = ~0ull;
    for (ph = 0; ph + 1 < 5 * n_layer; ph++) {
        const int k = ph % 5, m = k == 0 ? 0 : k - 1;
        unsigned long long first_start = ~0ull, last_arrival = 0, first_arrival = ~0ull, first_depart = ~0ull;
        double sum = 0, mx = 0;
        int last = 0;
        for (b = 0; b < n_blocks; b++) {
            const unsigned long long *p = t + (size_t)b * n_stamps + M * ph;
            for (j = 1; j <= M; j++)
                if (p[j] > p[j - 1] && p[j] - p[j - 1] < tick) tick = p[j] - p[j - 1];
            if (p[0] < first_start) first_start = p[0];
            if (p[5] > last_arrival) last_arrival = p[5], last = b;
            if (p[5] < first_arrival) first_arrival = p[5];
            if (p[M] < first_depart) first_depart = p[M];
            sum += (double)(p[5] - p[0]);
            if ((double)(p[5] - p[0]) > mx) mx = (double)(p[5] - p[0]);
        }
        busy_max[k] += mx * 1e-3;
        busy_mean[k] += sum / n_blocks * 1e-3;
        spread[k] += (double)(last_arrival - first_arrival) * 1e-3;
        latency[k] += ((double)first_depart - (double)last_arrival) * 1e-3;
        {
            const unsigned long long *p = t + (size_t)last * n_stamps + M * ph;
            late[k][0] += (double)(p[0] - first_start) * 1e-3;
            for (j = 0; j < 5; j++) late[k][j + 1] += (double)(p[j + 1] - p[j]) * 1e-3;
        }
        if (k != 1) {
            const int rows = m == 0 ? hp->n_embd + 2 * hp->n_head_kv * hp->head_dim : m == 2 ? 2 * hp->n_ff : hp->n_embd;
            const int n_tiles = rows / 16;
            const int t0 = (int)((long long)n_tiles * last / n_blocks), t1 = (int)((long long)n_tiles * (last + 1) / n_blocks);
            late_most[k] += t1 - t0 > n_tiles / n_blocks;
        }
        counted[k]++;
    }
    printf("\nposition %d: every block of one fused step, us summed over the layers (globaltimer tick seen: %llu ns).\n"
           "busy: from leaving the last barrier to arriving at the next; spread: first to last arrival; barrier: last arrival to first\n"
           "departure; the last block to arrive: its late start, then its normalize / weights / dots / epilogue / in-block wait\n"
           "(attention's columns: loading q / scores / softmax, V and partials / combining the slices)\n\n"
           "| phase | busy mean | busy max | arrival spread | barrier | last block: late start | normalize | weights | dots | epilogue | in-block wait | last block has the most tiles |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
           pos, tick);
    for (j = 0; j < 5; j++) {
        printf("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |", phases[j], busy_mean[j], busy_max[j], spread[j],
               latency[j], late[j][0], late[j][1], late[j][2], late[j][3], late[j][4], late[j][5]);
        if (j == 1) printf(" |\n");
        else printf(" %d of %d |\n", late_most[j], counted[j]);
    }
    if (M >= 10) {
        /* inside the normalization of the phases whose input comes with its
           producers' statistics (stamps 6-9; layer 0's QKV and every O gather
           their own) */
        static const int ks[3] = {0, 3, 4};
        int ki;
        printf("\nposition %d: inside the normalization from the producers' statistics, us summed over the layers, mean over blocks / slowest block\n\n"
               "| phase | start to entry | entry to warp 1 quantized | entry to warp 0's scale | entry to the __syncthreads | normalize (start to normalized) |\n"
               "|---|---:|---:|---:|---:|---:|\n", pos);
        for (ki = 0; ki < 3; ki++) {
            const int k = ks[ki];
            double mean[5] = {0}, mxs[5] = {0};
            int l;
            for (l = 0; l < n_layer; l++) {
                const int ph = 5 * l + k;
                double mx[5] = {0};
                if (ph + 1 >= 5 * n_layer || (l == 0 && k == 0)) continue;
                for (b = 0; b < n_blocks; b++) {
                    const unsigned long long *p = t + (size_t)b * n_stamps + M * ph;
                    const double d[5] = {(double)(p[6] - p[0]), (double)(p[7] - p[6]), (double)(p[8] - p[6]), (double)(p[9] - p[6]),
                                         (double)(p[1] - p[0])};
                    for (j = 0; j < 5; j++) {
                        mean[j] += d[j] / n_blocks * 1e-3;
                        if (d[j] > mx[j]) mx[j] = d[j];
                    }
                }
                for (j = 0; j < 5; j++) mxs[j] += mx[j] * 1e-3;
            }
            printf("| %s |", phases[k]);
            for (j = 0; j < 5; j++) printf(" %.1f / %.1f |", mean[j], mxs[j]);
            printf("\n");
        }
    }
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : NULL;
    const int runs = argc > 2 ? atoi(argv[2]) : 5;
    const int variant = argc > 3 ? atoi(argv[3]) : 0;   /* the fused step's variant the tables take as default */
    const int rates_only = argc > 4 && strcmp(argv[4], "rates") == 0, profile_only = argc > 4 && strcmp(argv[4], "profile") == 0;
    const char *stamps_dir = getenv("BITNET_STAMPS_DIR");
    static const int positions[] = {128, 1024, 4000};
    bitnet_model_params mp = bitnet_model_default_params();
    bitnet_error err;
    bitnet_model *model;
    size_t free0, free1, total;
    double t0, t_load, t_upload = 0;
    int head, pi, r, i;
    char desc[256];
    struct cudaDeviceProp prop;

    if (!path) {
        fprintf(stderr, "usage: gpu_bench_decode MODEL.gguf [runs [fused step variant [rates | profile]]]\n");
        return 2;
    }
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        printf("SKIP gpu_bench_decode: no CUDA device\n");
        return 0;
    }
    cudaMemGetInfo(&free0, &total);
    mp.use_mmap = 0;
    t0 = now();
    model = bitnet_model_load(path, &mp, &err);
    if (!model) die("load", &err);
    t_load = now() - t0;
    bitnet_model_describe(model, desc, sizeof desc);
    printf("# decode, batch 1: %s\n# %s\n", prop.name, desc);
    if (variant) printf("# the fused step's variant %d throughout (a diagnostic)\n", variant);
    printf("\n");
    printf("| LM head | position | api tokens/s | graph tokens/s | graph ms/token |\n|---|---:|---:|---:|---:|\n");
    for (head = 0; head < 2; head++) {
        bitnet_context_params cp = bitnet_context_default_params();
        bitnet_context *ctx;
        bitnet_sampler_params sp = bitnet_sampler_default_params();
        bitnet_sampler *smp;
        bitnet_token *prefill = (bitnet_token *)malloc(4096 * sizeof *prefill);
        bitnet__cuda_glue *g;
        cp.backend = BITNET_BACKEND_CUDA;
        cp.n_ctx = 4096;
        cp.lm_head_int8 = head;
        t0 = now();
        ctx = bitnet_context_create(model, &cp, &err);
        if (!ctx) die("context", &err);
        if (head == 0) t_upload = now() - t0;
        g = (bitnet__cuda_glue *)ctx->cuda;
        if (variant && bitnet__cuda_context_set_fused_variant(g->dev, variant, &err) != BITNET_OK) die("variant", &err);
        sp.temperature = 0;
        smp = bitnet_sampler_create(&sp, &err);
        for (i = 0; i < 4096; i++) prefill[i] = (bitnet_token)((i * 2654435761u) % (unsigned)model->hp.n_vocab);
        for (pi = 0; pi < 3; pi++) {
            const int pos = positions[pi];
            double api[16], graph[16];
            bitnet_context_reset(ctx);
            if (bitnet_eval(ctx, prefill, pos, 0, &err) != BITNET_OK) die("prefill", &err);
            for (r = 0; r < runs && r < 16; r++) {
                bitnet_token t = prefill[pos], next;
                if (bitnet_context_truncate(ctx, pos, &err) != BITNET_OK) die("truncate", &err);
                /* warm: the first step after a jump synchronizes */
                if (bitnet_eval_sample(ctx, t, smp, &next, &err) != BITNET_OK) die("eval_sample", &err);
                t = next;
                t0 = now();
                for (i = 0; i < STEPS; i++) {
                    if (bitnet_eval_sample(ctx, t, smp, &next, &err) != BITNET_OK) die("eval_sample", &err);
                    t = next;
                }
                api[r] = STEPS / (now() - t0);
                if (bitnet_context_truncate(ctx, pos, &err) != BITNET_OK) die("truncate", &err);
                if (bitnet__cuda_decode(g->dev, prefill[pos], pos, &next, &err) != BITNET_OK) die("decode", &err);
                t0 = now();
                /* each step eats the argmax the step before left on the device */
                for (i = 1; i <= STEPS; i++)
                    if (bitnet__cuda_decode(g->dev, -1, pos + i, i == STEPS ? &next : NULL, &err) != BITNET_OK) die("decode", &err);
                graph[r] = STEPS / (now() - t0);
                ctx->n_past = pos + STEPS + 1;
            }
            qsort(api, (size_t)r, sizeof *api, cmp_double);
            qsort(graph, (size_t)r, sizeof *graph, cmp_double);
            printf("| %s | %d | %.0f | %.0f | %.3f |\n", head ? "int8" : "bf16", pos, api[r / 2], graph[r / 2], 1000.0 / graph[r / 2]);
            fflush(stdout);
        }
        if (rates_only || (profile_only && head == 1)) {
            bitnet_sampler_free(smp);
            bitnet_context_free(ctx);
            free(prefill);
            continue;
        }
        if (head == 0 && !profile_only) {
            /* the step modes (bitnet_cuda.cu): the kernel chain with its kernels
               overlapping in three ways (bitnet__launch), the fused step; at 128 */
            static const char *modes[12] = {"kernel chain, no overlap", "kernel chain, early launch", "kernel chain, late launch",
                                            "fused step (default)", "fused, fenced barrier", "fused, per-thread copies",
                                            "fused, fenced barrier, per-thread copies", "fused, down's input in registers",
                                            "fused, gate/up's next tiles requested at attention", "fused, gate/up's next tiles requested at O",
                                            "fused, attention units of whole KV groups", "fused, next tiles requested after the barrier arrival"};
            static const int variants[12] = {0, 0, 0, 0, 1, 2, 3, 4, 8, 16, 32, 64};
            int mode;
            printf("\n| step mode | graph tokens/s at 128 |\n|---|---:|\n");
            for (mode = 0; mode < 12; mode++) {
                const int step_mode = mode < 3 ? mode : 3;
                if (bitnet__cuda_context_set_overlap(g->dev, step_mode, &err) != step_mode) die("overlap", &err);
                if (step_mode == 3 && bitnet__cuda_context_set_fused_variant(g->dev, variants[mode], &err) != BITNET_OK)
                    die("variant", &err);
                printf("| %s | %.0f |\n", modes[mode], graph_rate(ctx, g->dev, prefill, 128, runs));
            }
            if (bitnet__cuda_context_set_fused_variant(g->dev, variant, &err) != BITNET_OK) die("variant", &err);
            if (bitnet__cuda_context_set_overlap(g->dev, 3, &err) < 0) die("overlap", &err);   /* the default again */
            /* the kernel chain against the fused step by position */
            {
                static const int at[4] = {128, 1024, 2048, 4000};
                int a;
                printf("\n| position | kernel chain tokens/s | fused step tokens/s |\n|---:|---:|---:|\n");
                for (a = 0; a < 4; a++) {
                    double rate[2];
                    for (mode = 0; mode < 2; mode++) {
                        if (bitnet__cuda_context_set_overlap(g->dev, mode ? 3 : 2, &err) != (mode ? 3 : 2)) die("overlap", &err);
                        rate[mode] = graph_rate(ctx, g->dev, prefill, at[a], runs);
                    }
                    printf("| %d | %.0f | %.0f |\n", at[a], rate[0], rate[1]);
                }
                if (bitnet__cuda_context_set_overlap(g->dev, 3, &err) < 0) die("overlap", &err);   /* the default again */
            }
            /* the fused step's attention units: the default (the fewest query
               heads a unit that leave no unit without a block) against whole KV
               groups at every position */
            {
                static const int at[6] = {128, 256, 384, 512, 1024, 4000};
                int a;
                printf("\n| position | fused, default units tokens/s | fused, units of whole KV groups tokens/s |\n|---:|---:|---:|\n");
                for (a = 0; a < 6; a++) {
                    double rate[2];
                    for (mode = 0; mode < 2; mode++) {
                        if (bitnet__cuda_context_set_fused_variant(g->dev, mode ? variant | 32 : variant, &err) != BITNET_OK) die("variant", &err);
                        rate[mode] = graph_rate(ctx, g->dev, prefill, at[a], runs);
                    }
                    printf("| %d | %.0f | %.0f |\n", at[a], rate[0], rate[1]);
                    fflush(stdout);
                }
                if (bitnet__cuda_context_set_fused_variant(g->dev, variant, &err) != BITNET_OK) die("variant", &err);
            }
            /* attention slices: the shortest slice (one block per slice, the last
               of a head combines them) against the position, both step modes */
            {
                static const int at[3] = {128, 1024, 4000}, chunks[6] = {16, 32, 64, 128, 256, 0};
                int a, ci;
                printf("\n| step mode | position | least positions per attention slice: 16 | 32 | 64 | 128 | 256 | default |\n"
                       "|---|---:|---:|---:|---:|---:|---:|---:|\n");
                for (a = 0; a < 3; a++)
                    for (mode = 0; mode < 2; mode++) {
                        printf("| %s | %d |", mode ? "fused" : "chain", at[a]);
                        if (bitnet__cuda_context_set_overlap(g->dev, mode ? 3 : 2, &err) != (mode ? 3 : 2)) die("overlap", &err);
                        for (ci = 0; ci < 6; ci++) {
                            if (bitnet__cuda_context_set_att_chunk(g->dev, chunks[ci], &err) != BITNET_OK) die("att chunk", &err);
                            printf(" %.0f |", graph_rate(ctx, g->dev, prefill, at[a], runs));
                        }
                        printf("\n");
                        fflush(stdout);
                    }
                if (bitnet__cuda_context_set_att_chunk(g->dev, 0, &err) != BITNET_OK) die("att chunk", &err);   /* the default again */
                if (bitnet__cuda_context_set_overlap(g->dev, 3, &err) < 0) die("overlap", &err);   /* the default again */
            }
        }
        /* one fused step, phase by phase as block 0 sees them */
        {
            static const char *phases[5] = {"QKV + RoPE + KV append", "attention", "O + residual", "gate/up + ReLU^2", "down + residual"};
            static const int at[2] = {128, 4000};
            double us[2][26];
            unsigned long long *stamps[2] = {NULL, NULL};
            int a, k, n_blocks = 0, n_stamps = 0;
            for (a = 0; a < 2; a++)
                if (bitnet__cuda_profile_fused(g->dev, at[a], us[a], &stamps[a], &n_blocks, &n_stamps, &err) != BITNET_OK) die("profile", &err);
            printf("\n%s LM head, one fused step phase by phase as block 0 sees it, us summed over the layers (pos 128 / pos 4000):\n\n"
                   "| phase | normalize input | wait for weights | dot products | epilogue + next copies | wait at barrier | sum |\n"
                   "|---|---:|---:|---:|---:|---:|---:|\n",
                   head ? "int8" : "bf16");
            for (k = 0; k < 5; k++) {
                const double *u0 = us[0] + 5 * k, *u1 = us[1] + 5 * k;
                printf("| %s | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f |\n", phases[k], u0[0], u1[0], u0[1],
                       u1[1], u0[2], u1[2], u0[3], u1[3], u0[4], u1[4], u0[0] + u0[1] + u0[2] + u0[3] + u0[4], u1[0] + u1[1] + u1[2] + u1[3] + u1[4]);
            }
            printf("| LM head + argmax (own kernel) | | | | | | %.1f / %.1f |\n", us[0][25], us[1][25]);
            for (a = 0; a < 2; a++) {
                print_spread(&model->hp, stamps[a], n_blocks, n_stamps, at[a]);
                if (stamps_dir) {
                    /* every block's raw timestamps, for tests/stamps.py */
                    char fn[512];
                    FILE *f;
                    snprintf(fn, sizeof fn, "%s/stamps_%s_%d.bin", stamps_dir, head ? "int8" : "bf16", at[a]);
                    if ((f = fopen(fn, "wb")) != NULL) {
                        fwrite(&n_blocks, sizeof n_blocks, 1, f);
                        fwrite(&n_stamps, sizeof n_stamps, 1, f);
                        fwrite(stamps[a], sizeof *stamps[a], (size_t)n_blocks * n_stamps, f);
                        fclose(f);
                    }
                }
                free(stamps[a]);
            }
        }
        /* one step of the kernel chain kernel by kernel, at the last position */
        if (!profile_only) {
            static const char *parts[6] = {"QKV + RoPE + KV append", "attention", "O + residual", "gate/up + ReLU^2",
                                           "down + residual", "LM head + argmax"};
            static const int at[2] = {128, 4000};
            double us[2][6], tot[2] = {0, 0};
            int a, k;
            for (a = 0; a < 2; a++) {
                if (bitnet__cuda_profile_step(g->dev, at[a], us[a], &err) != BITNET_OK) die("profile", &err);
                if (bitnet__cuda_profile_step(g->dev, at[a], us[a], &err) != BITNET_OK) die("profile", &err);
                for (k = 0; k < 6; k++) tot[a] += us[a][k];
            }
            printf("\n%s LM head, one step of the kernel chain kernel by kernel (no overlap), us:\n\n| part | pos 128 | pos 4000 |\n|---|---:|---:|\n",
                   head ? "int8" : "bf16");
            for (k = 0; k < 6; k++) printf("| %s | %.1f | %.1f |\n", parts[k], us[0][k], us[1][k]);
            printf("| sum | %.1f | %.1f |\n\n", tot[0], tot[1]);
            printf("| LM head | position | api tokens/s | graph tokens/s | graph ms/token |\n|---|---:|---:|---:|---:|\n");
            ctx->n_past = 0;
        }
        if (head == 1) {
            cudaMemGetInfo(&free1, &total);
            printf("\nGPU memory: model %.0f MiB (+ int8 LM head), context (4096 positions) %.0f MiB; device memory in use %.0f MiB\n",
                   (double)bitnet__cuda_model_bytes(model->cuda) / 1048576.0, (double)bitnet__cuda_context_bytes(g->dev) / 1048576.0,
                   (double)(free0 - free1) / 1048576.0);
        }
        bitnet_sampler_free(smp);
        bitnet_context_free(ctx);
        free(prefill);
    }
    printf("load: %.2f s reading the file, %.2f s packing + upload + first context\n", t_load, t_upload);
    bitnet_model_free(model);
    return 0;
}
