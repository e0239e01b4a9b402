/* common.h - what the command-line examples (chat, generate) share: the flags
   llama.cpp users know, loading a model into a context, a clock, Ctrl-C, and
   writing generated text as valid UTF-8.  Include it after bitnet.h. */
#ifndef BITNET_EXAMPLES_COMMON_H
#define BITNET_EXAMPLES_COMMON_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
   Options
   ------------------------------------------------------------------------- */
typedef struct options {
    const char *model_path;
    const char *prompt;          /* -p */
    const char *system;          /* -s (chat) */
    int n_predict;               /* -n: most tokens per reply; -1 = until the context is full */
    int n_ctx;                   /* -c: 0 = the library's default */
    int n_threads;               /* -t: 0 = all cores */
    int use_mmap;
    int lm_head_int8;            /* --lm-head-int8: faster, approximate logits */
    bitnet_backend backend;
    bitnet_sampler_params sampling;
} options;

static void options_init(options *o, int n_predict) {
    memset(o, 0, sizeof *o);
    o->n_predict = n_predict;
    o->use_mmap = 1;
    o->backend = BITNET_BACKEND_AUTO;
    o->sampling = bitnet_sampler_default_params();
    /* a different conversation every run unless --seed fixes it */
    o->sampling.seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
}

static const char *const sampling_help =
    "  --temp X             temperature, 0 = always the most likely token (default %.2f)\n"
    "  --top-k N            keep the N most likely tokens, 0 = all (default %d)\n"
    "  --top-p X            keep the most likely tokens up to probability X, 1 = all (default %.2f)\n"
    "  --min-p X            drop tokens less likely than X times the best one (default %.2f)\n"
    "  --repeat-penalty X   penalise the last --repeat-last-n tokens, 1 = off (default %.2f)\n"
    "  --repeat-last-n N    (default %d)\n"
    "  --seed N             random seed, for reproducible output (default: a new one each run)\n";

static void print_sampling_help(FILE *f) {
    bitnet_sampler_params d = bitnet_sampler_default_params();
    fprintf(f, sampling_help, d.temperature, d.top_k, d.top_p, d.min_p, d.repeat_penalty, d.repeat_last_n);
}

/* Parses a whole-string number in [lo, hi]; on failure writes why into msg. */
static int parse_double(const char *s, double lo, double hi, double *out, char *msg, size_t size) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) {
        snprintf(msg, size, "expects a number from %g to %g, got '%s'", lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_int(const char *s, long lo, long hi, int *out, char *msg, size_t size) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        snprintf(msg, size, "expects a whole number from %ld to %ld, got '%s'", lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static const char *const sampling_option_names[] = {"temp", "top-k", "top-p", "min-p", "repeat-penalty",
                                                    "repeat-last-n", "seed"};

static int is_sampling_option(const char *name) {
    size_t i;
    for (i = 0; i < sizeof sampling_option_names / sizeof *sampling_option_names; i++)
        if (!strcmp(name, sampling_option_names[i])) return 1;
    return 0;
}

/* Sets one sampling option by name ("temp", "top-k", ...): shared by the flags
   (--temp 0.7) and chat's /set command (/set temp 0.7).  Returns 1 if set, 0 with
   a message in msg if the value is bad, -1 if there is no such option. */
static int set_sampling_option(bitnet_sampler_params *p, const char *name, const char *value, char *msg,
                               size_t size) {
    double d;
    int ok;
    if (!strcmp(name, "temp")) {
        if ((ok = parse_double(value, 0, 100, &d, msg, size))) p->temperature = (float)d;
    } else if (!strcmp(name, "top-k")) {
        ok = parse_int(value, 0, 1 << 30, &p->top_k, msg, size);
    } else if (!strcmp(name, "top-p")) {
        if ((ok = parse_double(value, 0, 1, &d, msg, size))) p->top_p = (float)d;
    } else if (!strcmp(name, "min-p")) {
        if ((ok = parse_double(value, 0, 1, &d, msg, size))) p->min_p = (float)d;
    } else if (!strcmp(name, "repeat-penalty")) {
        if ((ok = parse_double(value, 0.01, 100, &d, msg, size))) p->repeat_penalty = (float)d;
    } else if (!strcmp(name, "repeat-last-n")) {
        ok = parse_int(value, 0, 1 << 20, &p->repeat_last_n, msg, size);
    } else if (!strcmp(name, "seed")) {
        char *end;
        unsigned long long v;
        errno = 0;
        v = strtoull(value, &end, 10);
        ok = *value && *value != '-' && !*end && !errno;
        if (ok) p->seed = (uint64_t)v;
        else snprintf(msg, size, "expects a whole number from 0 to %llu, got '%s'", (unsigned long long)UINT64_MAX, value);
    } else {
        return -1;
    }
    return ok;
}

/* Parses the flags every example takes.  *i is the index of the flag; a flag
   with a value advances it.  Returns 1 if consumed, 0 if the flag is not one of
   these, -1 after printing what is wrong with it. */
static int parse_common_flag(const char *prog, int argc, char **argv, int *i, options *o) {
    const char *flag = argv[*i], *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    char msg[160];
    int ok = 1;
    if (!strcmp(flag, "--no-mmap")) { o->use_mmap = 0; return 1; }
    if (!strcmp(flag, "--lm-head-int8")) { o->lm_head_int8 = 1; return 1; }
    if (!(flag[0] == '-' && flag[1])) return 0;
    if (!strcmp(flag, "-m") || !strcmp(flag, "--model") || !strcmp(flag, "-p") || !strcmp(flag, "--prompt") ||
        !strcmp(flag, "-n") || !strcmp(flag, "--n-predict") || !strcmp(flag, "-c") || !strcmp(flag, "--ctx-size") ||
        !strcmp(flag, "-t") || !strcmp(flag, "--threads") || !strcmp(flag, "--device") ||
        (flag[1] == '-' && is_sampling_option(flag + 2))) {
        if (!value) { fprintf(stderr, "%s: %s needs a value\n", prog, flag); return -1; }
    } else {
        return 0;
    }
    ++*i;
    if (!strcmp(flag, "-m") || !strcmp(flag, "--model")) o->model_path = value;
    else if (!strcmp(flag, "-p") || !strcmp(flag, "--prompt")) o->prompt = value;
    else if (!strcmp(flag, "-n") || !strcmp(flag, "--n-predict")) {
        ok = parse_int(value, -1, 1 << 30, &o->n_predict, msg, sizeof msg) && o->n_predict != 0;
        if (!ok) snprintf(msg, sizeof msg, "expects a number of tokens (or -1: no limit), got '%s'", value);
    } else if (!strcmp(flag, "-c") || !strcmp(flag, "--ctx-size")) ok = parse_int(value, 0, 1 << 24, &o->n_ctx, msg, sizeof msg);
    else if (!strcmp(flag, "-t") || !strcmp(flag, "--threads")) ok = parse_int(value, 0, 1024, &o->n_threads, msg, sizeof msg);
    else if (!strcmp(flag, "--device")) {
        if (!strcmp(value, "cpu")) o->backend = BITNET_BACKEND_CPU;
        else if (!strcmp(value, "cuda")) o->backend = BITNET_BACKEND_CUDA;
        else if (!strcmp(value, "auto")) o->backend = BITNET_BACKEND_AUTO;
        else { ok = 0; snprintf(msg, sizeof msg, "expects cpu, cuda or auto, got '%s'", value); }
    } else ok = set_sampling_option(&o->sampling, flag + 2, value, msg, sizeof msg);
    if (!ok) { fprintf(stderr, "%s: %s %s\n", prog, flag, msg); return -1; }
    return 1;
}

/* ---------------------------------------------------------------------------
   Model, context, sampler
   ------------------------------------------------------------------------- */
static const char *backend_name(bitnet_backend b) {
    return b == BITNET_BACKEND_CUDA ? "CUDA" : b == BITNET_BACKEND_CPU ? "CPU" : "auto";
}

/* Loads the model and creates a context and a sampler; prints what went wrong. */
static int open_model(const char *prog, const options *o, bitnet_model **model, bitnet_context **ctx,
                      bitnet_sampler **sampler) {
    bitnet_model_params mp = bitnet_model_default_params();
    bitnet_context_params cp = bitnet_context_default_params();
    bitnet_error err;
    char desc[256];
    mp.use_mmap = o->use_mmap;
    *ctx = NULL;
    *sampler = NULL;
    if (!(*model = bitnet_model_load(o->model_path, &mp, &err))) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return 0;
    }
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads;
    cp.backend = o->backend;
    cp.lm_head_int8 = o->lm_head_int8;
    if (!(*ctx = bitnet_context_create(*model, &cp, &err)) || !(*sampler = bitnet_sampler_create(&o->sampling, &err))) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        bitnet_context_free(*ctx);
        bitnet_model_free(*model);
        return 0;
    }
    bitnet_model_describe(*model, desc, sizeof desc);
    fprintf(stderr, "%s: %s | %s backend | context %d tokens\n", prog, desc,
            backend_name(bitnet_context_backend(*ctx)), bitnet_n_ctx(*ctx));
    return 1;
}

/* ---------------------------------------------------------------------------
   Time, Ctrl-C, output
   ------------------------------------------------------------------------- */
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Set by Ctrl-C; the programs poll it between tokens. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

/* Ctrl-C sets `interrupted` instead of killing the program.  Without SA_RESTART
   it also makes a blocking read return (EINTR), so a prompt can notice it. */
static void catch_ctrl_c(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

/* Writes text that the streaming decoder produced.  The decoder never splits a
   character, but a model can generate bytes that are no UTF-8 at all: each of
   those is written as U+FFFD, so the terminal always gets valid UTF-8. */
static void write_utf8(FILE *f, const char *text, int n) {
    const unsigned char *s = (const unsigned char *)text;
    int i = 0;
    while (i < n) {
        int len = s[i] < 0x80 ? 1 : (s[i] & 0xe0) == 0xc0 ? 2 : (s[i] & 0xf0) == 0xe0 ? 3 : (s[i] & 0xf8) == 0xf0 ? 4 : 0;
        uint32_t cp = len == 1 ? s[i] : len == 2 ? s[i] & 0x1fu : len == 3 ? s[i] & 0x0fu : s[i] & 0x07u;
        int k, ok = len > 0 && i + len <= n;
        for (k = 1; ok && k < len; k++) {
            ok = (s[i + k] & 0xc0) == 0x80;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        /* overlong forms, surrogates and values past U+10FFFF are not UTF-8 either */
        if (ok && len > 1) ok = cp >= (len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u) && cp <= 0x10ffff &&
                                !(cp >= 0xd800 && cp <= 0xdfff);
        if (ok) fwrite(s + i, 1, (size_t)len, f);
        else fputs("\xef\xbf\xbd", f);
        i += ok ? len : 1;
    }
}

/* Shows a generated token: the decoder releases text once it completes a character. */
static void show_token(bitnet_decoder *dec, bitnet_token token, FILE *out) {
    char text[256], *big;
    int n = bitnet_decoder_push(dec, token, text, sizeof text);
    if (n > (int)sizeof text && (big = (char *)malloc((size_t)n))) {
        n = bitnet_decoder_push(dec, token, big, (size_t)n);
        write_utf8(out, big, n);
        free(big);
    } else if (n > 0 && n <= (int)sizeof text) {
        write_utf8(out, text, n);
    }
    fflush(out);
}

/* Writes what the decoder still holds back at the end (an unfinished character). */
static void flush_decoder(bitnet_decoder *dec, FILE *out) {
    char rest[8];
    int n = bitnet_decoder_flush(dec, rest, sizeof rest);
    if (n > 0 && n <= (int)sizeof rest) write_utf8(out, rest, n);
    fflush(out);
}

#endif
