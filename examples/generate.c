/* generate - plain text completion: the prompt, then what the model writes after it.

   usage: generate -m model.gguf -p "Once upon a time" [-n 256] [options]
          generate -m model.gguf -f prompt.txt            (-f - reads the prompt from stdin)

   The completion streams to stdout as it is generated; a timing line goes to
   stderr at the end.  Stops at the end of text, after -n tokens, when the
   context is full, or at Ctrl-C.
*/
#define _POSIX_C_SOURCE 200809L
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "common.h"

static void usage(FILE *f) {
    fprintf(f, "usage: generate -m model.gguf (-p PROMPT | -f FILE) [-n N] [-c N] [-t N] [--temp X] [--top-k N]\n"
               "                [--top-p X] [--min-p X] [--repeat-penalty X] [--seed N] [--device cpu|cuda|auto] [-h]\n");
}

static void help(void) {
    usage(stdout);
    printf("\nCompletes a prompt with a BitNet b1.58 model (no chat template).\n\n"
           "  -m, --model FILE     model file\n"
           "  -p, --prompt TEXT    the text to continue\n"
           "  -f, --file FILE      read the prompt from FILE (- for stdin)\n"
           "  -n, --n-predict N    most tokens to generate, -1 = until the end of text or context (default 256)\n"
           "  -c, --ctx-size N     context length in tokens (default: the model's, at most 4096)\n"
           "  -t, --threads N      CPU threads (default: all cores)\n"
           "  --device D           cpu, cuda or auto (default auto)\n"
           "  --no-mmap            read the model into memory instead of mapping it\n"
           "  --lm-head-int8       int8 LM head: faster, logits within int8 rounding of the exact ones\n");
    print_sampling_help(stdout);
    printf("  -h, --help           this help\n");
}

/* The whole of a file (or stdin for "-") as a string. */
static char *read_all(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    char *buf = NULL, *b;
    size_t len = 0, cap = 0, n;
    if (!f) return NULL;
    do {
        if (len + 4096 + 1 > cap) {
            cap = 2 * cap + 4096 + 1;
            if (!(b = (char *)realloc(buf, cap))) { free(buf); buf = NULL; break; }
            buf = b;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    if (buf && ferror(f)) { free(buf); buf = NULL; }
    if (buf) buf[len] = 0;
    if (f != stdin) fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    options opt;
    const char *prompt_file = NULL;
    char *prompt_text = NULL;
    bitnet_model *model;
    bitnet_context *ctx;
    bitnet_sampler *sampler;
    bitnet_decoder dec;
    bitnet_error err;
    bitnet_token *tokens = NULL, token;
    int i, n, n_ctx, n_generated = 0, steps = 0, status = 0;
    double t_start, t_prompt = 0, t_decode = 0;
    const char *stop = "end of text";

    options_init(&opt, 256);
    for (i = 1; i < argc; i++) {
        int rc;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { help(); return 0; }
        if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) {
            if (i + 1 >= argc) { fprintf(stderr, "generate: %s needs a value\n", argv[i]); usage(stderr); return 2; }
            prompt_file = argv[++i];
            continue;
        }
        if ((rc = parse_common_flag("generate", argc, argv, &i, &opt)) == 1) continue;
        if (rc == 0) fprintf(stderr, "generate: unknown option '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (!opt.model_path) { fprintf(stderr, "generate: no model given (-m model.gguf)\n"); usage(stderr); return 2; }
    if (!opt.prompt == !prompt_file) { fprintf(stderr, "generate: give a prompt with -p or -f (one of them)\n"); usage(stderr); return 2; }
    if (prompt_file && !(opt.prompt = prompt_text = read_all(prompt_file))) {
        fprintf(stderr, "generate: cannot read '%s': %s\n", prompt_file, strerror(errno));
        return 1;
    }
    if (!open_model("generate", &opt, &model, &ctx, &sampler)) { free(prompt_text); return 1; }
    catch_ctrl_c();
    n_ctx = bitnet_n_ctx(ctx);

    /* the prompt: tokenize (asking again when the buffer is too small), evaluate */
    n = bitnet_tokenize(model, opt.prompt, -1, BITNET_TOKENIZE_ADD_BOS, NULL, 0, &err);
    if (n == BITNET_E_BUFFER_TOO_SMALL && (tokens = (bitnet_token *)malloc(err.needed * sizeof *tokens)))
        n = bitnet_tokenize(model, opt.prompt, -1, BITNET_TOKENIZE_ADD_BOS, tokens, (int)err.needed, &err);
    if (n < 0) { fprintf(stderr, "generate: %s\n", err.message); status = 1; goto done; }
    if (n >= n_ctx) {
        fprintf(stderr, "generate: the prompt is %d tokens: it does not fit a context of %d (-c)\n", n, n_ctx);
        status = 1;
        goto done;
    }
    fputs(opt.prompt, stdout);
    fflush(stdout);
    t_start = now_seconds();
    if (bitnet_eval(ctx, tokens, n, 0, &err) != BITNET_OK) { fprintf(stderr, "\ngenerate: %s\n", err.message); status = 1; goto done; }
    t_prompt = now_seconds() - t_start;
    for (i = 0; i < n; i++) bitnet_sampler_accept(sampler, tokens[i]);

    /* the completion: show each token, then evaluate it while sampling the next */
    bitnet_decoder_init(&dec, model, 0);
    token = bitnet_sampler_sample(sampler, bitnet_logits(ctx, -1), bitnet_model_hparams(model)->n_vocab);
    for (;;) {
        double t0;
        if (bitnet_token_is_eog(model, token)) break;
        show_token(&dec, token, stdout);
        n_generated++;
        if (interrupted) { stop = "Ctrl-C"; break; }
        if (opt.n_predict > 0 && n_generated >= opt.n_predict) { stop = "-n limit"; break; }
        if (bitnet_n_past(ctx) >= n_ctx) { stop = "context full"; break; }
        t0 = now_seconds();
        if (bitnet_eval_sample(ctx, token, sampler, &token, &err) != BITNET_OK) {
            fprintf(stderr, "\ngenerate: %s\n", err.message);
            status = 1;
            break;
        }
        t_decode += now_seconds() - t0;
        steps++;
    }
    flush_decoder(&dec, stdout);
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "[prompt %d tokens, %.1f tokens/s | generated %d tokens, %.1f tokens/s | stopped: %s]\n", n,
            t_prompt > 0 ? n / t_prompt : 0.0, n_generated, t_decode > 0 ? steps / t_decode : 0.0, stop);

done:
    free(tokens);
    free(prompt_text);
    bitnet_sampler_free(sampler);
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return status;
}
