/* logits - evaluates a token id sequence and writes the logits of every position,
   so that outputs can be compared with other implementations.

   usage: logits -m model.gguf -o out.bin [-t threads] [--no-mmap] [--backend cpu|cuda|auto]
                 [--int8-head] [-f ids.txt | -] [id id ...]

   Token ids come from the command line, from a file (-f FILE) or from standard
   input (-f - or a lone -), separated by spaces, commas or newlines.

   Output file layout: no header; float32, little-endian, row-major
   [n_tokens][n_vocab]: the n_vocab logits of token 0 (predicting token 1), then
   those of token 1, and so on.  n_vocab is printed on stderr (and is the
   model's bitnet.vocab_size), so n_tokens = file size / (4 * n_vocab).
   Positions start at 0; no BOS is added.
*/
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 256  /* tokens per bitnet_eval call: bounds the logits kept in memory */

static void usage(FILE *f) {
    fprintf(f,
            "usage: logits -m model.gguf -o out.bin [-t threads] [--no-mmap] [--backend cpu|cuda|auto]\n"
            "              [--int8-head] [-f ids.txt | -] [id id ...]\n"
            "Writes float32 little-endian logits, row-major [n_tokens][n_vocab], no header.\n");
}

/* Appends the ids in text to *ids; returns 0 on a malformed id. */
static int parse_ids(const char *text, bitnet_token **ids, int *n, int *cap) {
    const char *p = text;
    for (;;) {
        char *end;
        long v;
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\r' || *p == '\t') p++;
        if (!*p) return 1;
        v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff) {
            fprintf(stderr, "logits: '%.20s' is not a token id\n", p);
            return 0;
        }
        if (*n == *cap) {
            bitnet_token *t;
            *cap = *cap ? *cap * 2 : 256;
            t = (bitnet_token *)realloc(*ids, sizeof(bitnet_token) * (size_t)*cap);
            if (!t) { fprintf(stderr, "logits: out of memory\n"); return 0; }
            *ids = t;
        }
        (*ids)[(*n)++] = (bitnet_token)v;
        p = end;
    }
}

static char *read_stream(FILE *f) {
    size_t len = 0, cap = 4096, got;
    char *s = (char *)malloc(cap);
    while (s && (got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            char *t = (char *)realloc(s, cap * 2);
            if (!t) { free(s); return NULL; }
            s = t;
            cap *= 2;
        }
    }
    if (s) s[len] = 0;
    return s;
}

/* float32 little-endian, whatever the host byte order */
static int write_floats(FILE *f, const float *v, size_t n) {
    unsigned char buf[4096];
    size_t i = 0;
    while (i < n) {
        size_t k = 0;
        for (; i < n && k + 4 <= sizeof buf; i++, k += 4) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            buf[k] = (unsigned char)u; buf[k + 1] = (unsigned char)(u >> 8);
            buf[k + 2] = (unsigned char)(u >> 16); buf[k + 3] = (unsigned char)(u >> 24);
        }
        if (fwrite(buf, 1, k, f) != k) return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL, *ids_path = NULL;
    bitnet_model_params mp = bitnet_model_default_params();
    bitnet_context_params cp = bitnet_context_default_params();
    bitnet_token *ids = NULL;
    int n_ids = 0, cap = 0, i, done, n_vocab, rc = 1;
    bitnet_error err;
    bitnet_model *model = NULL;
    bitnet_context *ctx = NULL;
    FILE *out = NULL;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--no-mmap")) mp.use_mmap = 0;
        else if (!strcmp(a, "--int8-head")) cp.lm_head_int8 = 1;
        else if (!strcmp(a, "-")) ids_path = "-";
        else if ((!strcmp(a, "-m") || !strcmp(a, "-o") || !strcmp(a, "-t") || !strcmp(a, "-f") || !strcmp(a, "--backend")) &&
                 i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(a, "-m")) model_path = v;
            else if (!strcmp(a, "-o")) out_path = v;
            else if (!strcmp(a, "-f")) ids_path = v;
            else if (!strcmp(a, "-t")) {
                char *end;
                long t = strtol(v, &end, 10);
                if (!*v || *end || t < 0 || t > 256) { fprintf(stderr, "logits: -t expects 0..256 threads, got '%s'\n", v); return 2; }
                cp.n_threads = (int)t;
            } else if (!strcmp(v, "cpu")) cp.backend = BITNET_BACKEND_CPU;
            else if (!strcmp(v, "cuda")) cp.backend = BITNET_BACKEND_CUDA;
            else if (!strcmp(v, "auto")) cp.backend = BITNET_BACKEND_AUTO;
            else { fprintf(stderr, "logits: unknown backend '%s' (cpu, cuda or auto)\n", v); return 2; }
        } else if (a[0] >= '0' && a[0] <= '9') {
            if (!parse_ids(a, &ids, &n_ids, &cap)) goto done;
        } else {
            fprintf(stderr, "logits: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !out_path) { usage(stderr); return 2; }
    if (ids_path) {
        FILE *f = strcmp(ids_path, "-") ? fopen(ids_path, "rb") : stdin;
        char *text;
        if (!f) { fprintf(stderr, "logits: cannot open '%s'\n", ids_path); goto done; }
        text = read_stream(f);
        if (f != stdin) fclose(f);
        if (!text) { fprintf(stderr, "logits: cannot read '%s'\n", ids_path); goto done; }
        i = parse_ids(text, &ids, &n_ids, &cap);
        free(text);
        if (!i) goto done;
    }
    if (n_ids == 0) { fprintf(stderr, "logits: no token ids given\n"); goto done; }

    if (!(model = bitnet_model_load(model_path, &mp, &err))) { fprintf(stderr, "logits: %s\n", err.message); goto done; }
    n_vocab = bitnet_model_hparams(model)->n_vocab;
    if (n_ids > bitnet_model_hparams(model)->n_ctx_train) {
        fprintf(stderr, "logits: %d tokens are more than the model's context of %d\n", n_ids,
                bitnet_model_hparams(model)->n_ctx_train);
        goto done;
    }
    cp.n_ctx = n_ids;
    if (!(ctx = bitnet_context_create(model, &cp, &err))) { fprintf(stderr, "logits: %s\n", err.message); goto done; }
    if (!(out = fopen(out_path, "wb"))) { fprintf(stderr, "logits: cannot create '%s'\n", out_path); goto done; }
    for (done = 0; done < n_ids; done += CHUNK) {
        int n = n_ids - done < CHUNK ? n_ids - done : CHUNK, t;
        if (bitnet_eval(ctx, ids + done, n, BITNET_EVAL_ALL_LOGITS, &err) != BITNET_OK) {
            fprintf(stderr, "logits: %s\n", err.message);
            goto done;
        }
        for (t = 0; t < n; t++)
            if (!write_floats(out, bitnet_logits(ctx, t), (size_t)n_vocab)) {
                fprintf(stderr, "logits: cannot write '%s'\n", out_path);
                goto done;
            }
    }
    if (fclose(out) != 0) { out = NULL; fprintf(stderr, "logits: cannot write '%s'\n", out_path); goto done; }
    out = NULL;
    fprintf(stderr, "logits: wrote %d x %d float32 to %s\n", n_ids, n_vocab, out_path);
    rc = 0;
done:
    if (out) {  /* do not leave a partial file behind */
        fclose(out);
        remove(out_path);
    }
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    free(ids);
    return rc;
}
