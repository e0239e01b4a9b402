/* random_model - writes a model file with random ternary weights, for benchmarks and tests.

   usage: random_model -o out.gguf [--shape 2b4t|tiny] [options]
     --layers N --dim N --ffn N --heads N --kv-heads N --vocab N --ctx N
     --untied            separate LM head (default: tied to the embedding, as 2B4T)
     --seed N            the same seed gives the same file
     --tokenizer FILE    embed this Hugging Face tokenizer.json (default: a synthetic vocabulary)
*/
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: random_model -o out.gguf [--shape 2b4t|tiny] [--layers N] [--dim N] [--ffn N] [--heads N]\n"
               "                    [--kv-heads N] [--vocab N] [--ctx N] [--untied] [--seed N] [--tokenizer tokenizer.json]\n");
}

static int parse_int(const char *flag, const char *s, long lo, long hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "random_model: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int main(int argc, char **argv) {
    bitnet_hparams hp;
    bitnet_error err;
    const char *out = NULL, *tokenizer = NULL;
    unsigned long long seed = 1;
    int i;
    memset(&hp, 0, sizeof hp);
    /* BitNet b1.58 2B4T */
    hp.n_layer = 30; hp.n_embd = 2560; hp.n_ff = 6912; hp.n_head = 20; hp.n_head_kv = 5;
    hp.n_vocab = 128256; hp.n_ctx_train = 4096; hp.rope_theta = 500000.0f; hp.rms_eps = 1e-5f; hp.tied_embeddings = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--untied")) { hp.tied_embeddings = 0; continue; }
        if (!v) { fprintf(stderr, "random_model: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
        i++;
        if (!strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--tokenizer")) tokenizer = v;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--shape")) {
            if (!strcmp(v, "tiny")) { hp.n_layer = 2; hp.n_embd = 128; hp.n_ff = 256; hp.n_head = 4; hp.n_head_kv = 2; hp.n_vocab = 512; hp.n_ctx_train = 256; }
            else if (strcmp(v, "2b4t")) { fprintf(stderr, "random_model: unknown shape '%s' (2b4t or tiny)\n", v); return 2; }
        }
        else if (!strcmp(a, "--layers")) ok = parse_int(a, v, 1, 1024, &hp.n_layer);
        else if (!strcmp(a, "--dim")) ok = parse_int(a, v, 64, 65536, &hp.n_embd);
        else if (!strcmp(a, "--ffn")) ok = parse_int(a, v, 64, 262144, &hp.n_ff);
        else if (!strcmp(a, "--heads")) ok = parse_int(a, v, 1, 1024, &hp.n_head);
        else if (!strcmp(a, "--kv-heads")) ok = parse_int(a, v, 1, 1024, &hp.n_head_kv);
        else if (!strcmp(a, "--vocab")) ok = parse_int(a, v, 0, 1 << 24, &hp.n_vocab);
        else if (!strcmp(a, "--ctx")) ok = parse_int(a, v, 1, 1 << 24, &hp.n_ctx_train);
        else { fprintf(stderr, "random_model: unknown option '%s'\n", a); usage(stderr); return 2; }
        if (!ok) return 2;
    }
    if (!out) { fprintf(stderr, "random_model: -o out.gguf is required\n"); usage(stderr); return 2; }
    if (bitnet_write_random_model(out, &hp, seed, tokenizer, &err) != BITNET_OK) {
        fprintf(stderr, "random_model: %s\n", err.message);
        return 1;
    }
    {
        bitnet_model *m = bitnet_model_load(out, NULL, &err);
        char desc[256];
        if (!m) { fprintf(stderr, "random_model: wrote '%s' but cannot load it: %s\n", out, err.message); return 1; }
        bitnet_model_describe(m, desc, sizeof desc);
        printf("wrote %s: %s\n", out, desc);
        bitnet_model_free(m);
    }
    return 0;
}
