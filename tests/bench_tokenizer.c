/* Tokenizer benchmark: encode and decode MB/s on one core (median of many runs)
   with the real Llama 3 vocabulary, on the corpus (case by case) and on an English
   text (one call), next to the npm peers measured in the same run
   (tests/bench_tokenizer_peers.js, when node and tests/fetch_peers.sh's cache exist).

     make build/bench_tokenizer && build/bench_tokenizer [ENGLISH_TEXT_FILE]

   The English text defaults to the license texts of /usr/share/common-licenses
   (every Debian system has them), concatenated into build/bench_english.txt. */
#define _GNU_SOURCE
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "tokenizer_util.h"
#include <sched.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct input {
    const char *name;
    int n;
    const char **text;
    size_t *len;
    size_t bytes;
} input;

/* Median seconds of the statements over at least 5 runs and 2 seconds. */
#define MEDIAN_TIME(result, ...)                                                   \
    do {                                                                           \
        double times_[1000], start_ = now();                                       \
        int runs_ = 0;                                                             \
        while (runs_ < 1000 && (runs_ < 5 || now() - start_ < 2.0)) {              \
            double t0_ = now();                                                    \
            __VA_ARGS__;                                                           \
            times_[runs_++] = now() - t0_;                                         \
        }                                                                          \
        qsort(times_, (size_t)runs_, sizeof times_[0], cmp_double);                \
        result = times_[runs_ / 2];                                                \
    } while (0)

int main(int argc, char **argv) {
    tok_model tm;
    bitnet_error err;
    input in[2];
    const char *english = argc > 1 ? argv[1] : "build/bench_english.txt";
    char *corpus_text, *english_text, cmd[4096], line[256];
    size_t clen, elen, i;
    bitnet__arena arena;
    bitnet__json root;
    const bitnet__json *cases;
    double ours[2][2];
    int k;
    FILE *p;
    cpu_set_t one;

    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one); /* one core */
    memset(&tm, 0, sizeof tm);
    if (tok_llama3_open(&tm, "build/bench_vocab.gguf", &err) != 1) {
        fprintf(stderr, "bench_tokenizer: the Llama 3 tokenizer.json is not there (run tests/fetch_peers.sh)\n");
        return 1;
    }
    if (argc <= 1 && system("cat /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/Artistic "
                            "/usr/share/common-licenses/GFDL-1.3 /usr/share/common-licenses/GPL-2 /usr/share/common-licenses/GPL-3 "
                            "/usr/share/common-licenses/LGPL-2.1 /usr/share/common-licenses/LGPL-3 /usr/share/common-licenses/MPL-1.1 "
                            "/usr/share/common-licenses/MPL-2.0 > build/bench_english.txt") != 0) {
        fprintf(stderr, "bench_tokenizer: cannot make build/bench_english.txt; give a text file\n");
        return 1;
    }
    corpus_text = bitnet__read_text_file("tests/fixtures/tokenizer_corpus.json", &clen, &err);
    english_text = bitnet__read_text_file(english, &elen, &err);
    memset(&arena, 0, sizeof arena);
    if (!corpus_text || !english_text || bitnet__json_parse(corpus_text, clen, "corpus", &arena, &root, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.message);
        return 1;
    }
    cases = bitnet__json_get(&root, "cases");
    in[0].name = "corpus";
    in[0].n = (int)cases->len;
    in[0].text = (const char **)malloc(cases->len * sizeof *in[0].text);
    in[0].len = (size_t *)malloc(cases->len * sizeof *in[0].len);
    in[0].bytes = 0;
    for (i = 0; i < cases->len; i++) {
        const bitnet__json *t = bitnet__json_get(&cases->items[i], "text");
        in[0].text[i] = t->str;
        in[0].len[i] = t->len;
        in[0].bytes += t->len;
    }
    in[1].name = "english";
    in[1].n = 1;
    in[1].text = (const char **)&english_text;
    in[1].len = &elen;
    in[1].bytes = elen;

    for (k = 0; k < 2; k++) {
        size_t cap = in[k].bytes + 16, total = 0;
        bitnet_token *toks = (bitnet_token *)malloc(cap * sizeof *toks);
        int *counts = (int *)malloc((size_t)in[k].n * sizeof *counts);
        char *out = (char *)malloc(in[k].bytes + 16);
        double te, td;
        MEDIAN_TIME(te, {
            size_t at = 0;
            int j;
            for (j = 0; j < in[k].n; j++) {
                counts[j] = bitnet_tokenize(&tm.m, in[k].text[j], (ptrdiff_t)in[k].len[j], BITNET_TOKENIZE_SPECIAL, toks + at,
                                            (int)(cap - at), &err);
                at += (size_t)counts[j];
            }
            total = at;
        });
        MEDIAN_TIME(td, {
            size_t at = 0, o = 0;
            int j;
            for (j = 0; j < in[k].n; j++) {
                o += (size_t)bitnet_detokenize(&tm.m, toks + at, counts[j], BITNET_DETOKENIZE_SPECIAL, out + o, in[k].bytes + 16 - o, &err);
                at += (size_t)counts[j];
            }
            if (o != in[k].bytes) { fprintf(stderr, "decode gave %zu bytes, not %zu\n", o, in[k].bytes); exit(1); }
        });
        ours[k][0] = (double)in[k].bytes / te / 1e6;
        ours[k][1] = (double)in[k].bytes / td / 1e6;
        printf("%s: %d texts, %zu bytes, %zu tokens\n", in[k].name, in[k].n, in[k].bytes, total);
        free(toks);
        free(counts);
        free(out);
    }

    printf("\n%-8s %-22s %12s %12s %14s %14s\n", "input", "tokenizer", "encode MB/s", "decode MB/s", "bitnet.h/it enc", "bitnet.h/it dec");
    for (k = 0; k < 2; k++) printf("%-8s %-22s %12.2f %12.2f\n", in[k].name, "bitnet.h", ours[k][0], ours[k][1]);
    snprintf(cmd, sizeof cmd,
             "nm=$(tests/fetch_peers.sh 2>/dev/null) && command -v node >/dev/null && "
             "NODE_PATH=$nm $(command -v taskset >/dev/null && echo taskset -c 0) node tests/bench_tokenizer_peers.js "
             "tests/fixtures/tokenizer_corpus.json %s",
             english);
    p = popen(cmd, "r");
    while (p && fgets(line, sizeof line, p)) {
        char peer[64], which[32];
        double e, d;
        if (sscanf(line, "%63s %31s %lf %lf", peer, which, &e, &d) != 4) continue;
        k = strcmp(which, "corpus") == 0 ? 0 : 1;
        printf("%-8s %-22s %12.2f %12.2f %14.1fx %14.1fx\n", which, peer, e, d, ours[k][0] / e, ours[k][1] / d);
    }
    if (!p || pclose(p) != 0) printf("(peers not measured: node or tests/fetch_peers.sh's cache missing)\n");
    printf("\none core (sched_setaffinity / taskset), median of >= 5 runs and >= 2 s; special tokens parsed; MB = 1e6 bytes\n");
    bitnet__arena_free(&arena);
    free(in[0].text);
    free(in[0].len);
    BITNET_FREE(corpus_text);
    BITNET_FREE(english_text);
    tok_model_close(&tm);
    return 0;
}
