/* tokenize: text -> token ids, and back, with a model file's tokenizer.

     tokenize MODEL.gguf [options] [TEXT]     ids of TEXT (or of stdin / --file)
     tokenize MODEL.gguf --decode [IDS]       text of the ids (or of stdin / --file)

   Options:
     --file PATH     read the input from PATH ("-" is stdin) instead of TEXT
     --bos           prepend the BOS token
     --special       recognise special-token text (<|eot_id|> ...) in the input
     --show-special  (--decode) print the text of control tokens too
     --pieces        one line per token: id, then its bytes in C escapes
     --count         print only the number of tokens
     --hf DIR        use DIR/tokenizer.json (and tokenizer_config.json) instead of
                     a model file: checks against other tokenizers need no model
   Ids are printed space-separated on one line; --decode reads ids separated by
   spaces, commas, brackets or newlines and writes the bytes exactly. */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    fprintf(stderr, "usage: tokenize (MODEL.gguf | --hf DIR) [--file PATH] [--bos] [--special] [--pieces] [--count] [TEXT]\n"
                    "       tokenize (MODEL.gguf | --hf DIR) --decode [--show-special] [--file PATH] [IDS]\n");
    exit(2);
}

/* The whole input: TEXT, a file, or stdin (binary-safe, any size). */
static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0, k;
    char *buf = (char *)malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = (char *)realloc(buf, cap *= 2);
            if (!nb) { free(buf); return NULL; }
            buf = nb;
        }
    }
    *len = n;
    return buf;
}

/* A model that is only a Hugging Face tokenizer.  This reaches into the library's
   internals (bitnet__*), which only a tool built with the implementation can do:
   checks against other tokenizers then need no model file. */
static bitnet_model *load_hf(const char *dir, bitnet_error *err) {
    char a[4096], b[4096];
    bitnet__vocab v;
    bitnet_model *m;
    FILE *probe;
    snprintf(a, sizeof a, "%s/tokenizer.json", dir);
    snprintf(b, sizeof b, "%s/tokenizer_config.json", dir);
    probe = fopen(b, "rb");
    if (probe) fclose(probe);
    if (bitnet__vocab_from_hf(a, probe ? b : NULL, &v, err)) return NULL;
    m = (bitnet_model *)calloc(1, sizeof *m);
    if (m && bitnet__tokenizer_from_vocab(&v, &m->tokenizer, err) == 0) {
        m->hp.n_vocab = v.n_tokens;
        m->hp.bos = v.bos;
        m->hp.eos = v.eos;
        m->hp.eot = v.eot;
    } else {
        free(m);
        m = NULL;
    }
    bitnet__vocab_free(&v);
    return m;
}

static void free_model(bitnet_model *m, int hf) {
    if (!hf) { bitnet_model_free(m); return; }
    bitnet__tokenizer_free(m->tokenizer);
    free(m);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *hf = NULL, *file = NULL, *text = NULL;
    int decode = 0, flags = 0, dflags = 0, pieces = 0, count = 0, i, n;
    bitnet_error err;
    bitnet_model *model;
    char *input = NULL;
    size_t len = 0;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--bos")) flags |= BITNET_TOKENIZE_ADD_BOS;
        else if (!strcmp(argv[i], "--special")) flags |= BITNET_TOKENIZE_SPECIAL;
        else if (!strcmp(argv[i], "--show-special")) dflags |= BITNET_DETOKENIZE_SPECIAL;
        else if (!strcmp(argv[i], "--pieces")) pieces = 1;
        else if (!strcmp(argv[i], "--count")) count = 1;
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--hf") && i + 1 < argc) hf = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-') usage();
        else if (!model_path && !hf) model_path = argv[i];
        else if (!text) text = argv[i];
        else usage();
    }
    if (!model_path && !hf) usage();
    if (hf) model = load_hf(hf, &err);
    else {
        bitnet_model_params p = bitnet_model_default_params();
        model = bitnet_model_load(model_path, &p, &err);
    }
    if (!model) { fprintf(stderr, "tokenize: %s\n", err.message); return 1; }

    if (text) { input = (char *)malloc(strlen(text) + 1); strcpy(input, text); len = strlen(text); }
    else {
        FILE *f = !file || !strcmp(file, "-") ? stdin : fopen(file, "rb");
        if (!f) { fprintf(stderr, "tokenize: cannot open '%s'\n", file); free_model(model, hf != NULL); return 1; }
        input = read_all(f, &len);
        if (f != stdin) fclose(f);
        if (!input) { fprintf(stderr, "tokenize: out of memory\n"); free_model(model, hf != NULL); return 1; }
    }

    if (!decode) {
        /* at most one token per byte, plus the BOS */
        bitnet_token *toks = (bitnet_token *)malloc((len + 1) * sizeof *toks);
        n = toks ? bitnet_tokenize(model, input, (ptrdiff_t)len, flags, toks, (int)(len + 1), &err) : BITNET_E_NOMEM;
        if (n < 0) { fprintf(stderr, "tokenize: %s\n", toks ? err.message : "out of memory"); free(toks); free(input); free_model(model, hf != NULL); return 1; }
        if (count) printf("%d\n", n);
        else if (pieces) {
            for (i = 0; i < n; i++) {
                char piece[1024];
                int k = bitnet_token_to_piece(model, toks[i], piece, sizeof piece), j;
                printf("%d\t", toks[i]);
                for (j = 0; j < k && j < (int)sizeof piece; j++) {
                    unsigned char c = (unsigned char)piece[j];
                    if (c == '\\') printf("\\\\");
                    else if (c >= 0x20 && c < 0x7f) putchar(c);
                    else printf("\\x%02x", c);
                }
                putchar('\n');
            }
        } else {
            for (i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
            putchar('\n');
        }
        free(toks);
    } else {
        size_t cap = 1024, nt = 0, k;
        bitnet_token *toks = (bitnet_token *)malloc(cap * sizeof *toks);
        char *p = input, *end = input + len, *out;
        while (p < end) {
            char *e;
            long v;
            if (strchr(" \t\r\n,[]", *p)) { p++; continue; }
            v = strtol(p, &e, 10);
            if (e == p) { fprintf(stderr, "tokenize: '%c' is not part of a token id\n", *p); return 1; }
            if (nt == cap) toks = (bitnet_token *)realloc(toks, (cap *= 2) * sizeof *toks);
            toks[nt++] = (bitnet_token)v;
            p = e;
        }
        n = bitnet_detokenize(model, toks, (int)nt, dflags, NULL, 0, &err);
        k = n == BITNET_E_BUFFER_TOO_SMALL ? err.needed : 0;
        out = (char *)malloc(k + 1);
        n = n == 0 ? 0 : bitnet_detokenize(model, toks, (int)nt, dflags, out, k, &err);
        if (n < 0) { fprintf(stderr, "tokenize: %s\n", err.message); return 1; }
        fwrite(out, 1, (size_t)n, stdout);
        free(out);
        free(toks);
    }
    free(input);
    free_model(model, hf != NULL);
    return 0;
}
