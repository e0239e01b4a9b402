/* convert - turns a Hugging Face BitNet b1.58 checkpoint directory into one model file.

     build/convert [-q] HF_DIR OUT.gguf

   HF_DIR holds config.json, model.safetensors (or model-0000N-of-0000M.safetensors
   and model.safetensors.index.json), tokenizer.json and tokenizer_config.json, as
   microsoft/bitnet-b1.58-2B-4T and microsoft/bitnet-b1.58-2B-4T-bf16 ship them.
   A progress bar goes to stderr when it is a terminal; at the end the model file
   is loaded back and described.  Exit status: 0 done, 1 failed, 2 bad usage. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno, isatty */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Redraws one line: a 30-character bar, the percentage and the tensor at hand. */
static int draw_progress(float fraction, const char *what, void *user) {
    int *last_permille = (int *)user, permille = (int)(fraction * 1000), i;
    char bar[31];
    if (permille == *last_permille && fraction < 1) return 0;
    *last_permille = permille;
    for (i = 0; i < 30; i++) bar[i] = i < (int)(fraction * 30) ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %5.1f%%  %-32.32s", bar, 100.0 * fraction, what);
    fflush(stderr);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: convert [-q] HF_DIR OUT.gguf\n"
            "Converts a Hugging Face BitNet b1.58 checkpoint directory (config.json, model.safetensors\n"
            "or its shards with model.safetensors.index.json, tokenizer.json, tokenizer_config.json)\n"
            "into one model file for bitnet.h.\n"
            "  -q, --quiet   no progress bar\n"
            "  -h, --help    this text\n");
}

int main(int argc, char **argv) {
    bitnet_convert_params params;
    bitnet_error err;
    bitnet_model_params mp = bitnet_model_default_params();
    bitnet_model *model;
    const char *paths[2];
    int n_paths = 0, quiet = 0, last_permille = -1, i;
    struct stat st;
    char desc[256];
    double t0;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "convert: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (n_paths < 2) paths[n_paths++] = argv[i];
        else { usage(stderr); return 2; }
    }
    if (n_paths != 2) { usage(stderr); return 2; }

    memset(&params, 0, sizeof params);
    if (!quiet && isatty(fileno(stderr))) {
        params.progress = draw_progress;
        params.progress_user = &last_permille;
    }
    t0 = now_seconds();
    if (bitnet_convert_hf(paths[0], paths[1], &params, &err) != BITNET_OK) {
        if (params.progress) fputc('\n', stderr);
        fprintf(stderr, "convert: %s\n", err.message);
        return 1;
    }
    if (params.progress) fputc('\n', stderr);

    /* read the result back: proves it loads and says what it holds */
    model = bitnet_model_load(paths[1], &mp, &err);
    if (!model) {
        fprintf(stderr, "convert: wrote %s, but it does not load: %s\n", paths[1], err.message);
        return 1;
    }
    bitnet_model_describe(model, desc, sizeof desc);
    bitnet_model_free(model);
    if (stat(paths[1], &st) != 0) st.st_size = 0;
    printf("wrote %s (%.1f MB) in %.1f s\n%s\n", paths[1], (double)st.st_size / 1e6, now_seconds() - t0, desc);
    return 0;
}
