/* chat - talk with a BitNet b1.58 model in the terminal.

   usage: chat -m model.gguf [-s "system prompt"] [options]     interactive
          chat -m model.gguf -p "question" [options]            one reply on stdout, for scripts

   The conversation uses the model's chat template.  Earlier turns stay in the KV
   cache, so each message evaluates only its own tokens.  When the context is full
   the oldest turns are dropped (the system prompt stays) and what remains is
   evaluated again.  Ctrl-C stops a reply; Ctrl-C twice or Ctrl-D quits.
*/
#define _POSIX_C_SOURCE 200809L
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "common.h"

static void usage(FILE *f) {
    fprintf(f, "usage: chat -m model.gguf [-s SYSTEM] [-p PROMPT] [-n N] [-c N] [-t N] [--temp X] [--top-k N] [--top-p X]\n"
               "            [--min-p X] [--repeat-penalty X] [--seed N] [--device cpu|cuda|auto] [--chat-format F] [-h]\n");
}

static const char *const commands_help =
    "  /reset              forget the conversation (the system prompt stays)\n"
    "  /stats              token counts, speeds and settings\n"
    "  /set NAME VALUE     change a setting: temp, top-k, top-p, min-p, repeat-penalty,\n"
    "                      repeat-last-n, seed, n (most tokens per reply)\n"
    "  /help               this list\n"
    "  /quit               leave (or Ctrl-D, or Ctrl-C twice)\n"
    "  End a line with \\ to continue the message on the next line.\n";

static void help(void) {
    usage(stdout);
    printf("\nTalk with a BitNet b1.58 model, using the chat template stored in the model file.\n\n"
           "  -m, --model FILE     model file (convert one with build/convert; `make model` downloads one)\n"
           "  -s, --system TEXT    system prompt\n"
           "  -p, --prompt TEXT    answer TEXT once: the reply goes to stdout, the timing to stderr\n"
           "  --chat-format F      auto, bitnet (User: ...) or llama3 (header tokens); auto = the model's template\n"
           "  -n, --n-predict N    most tokens per reply, -1 = no limit (default 1024)\n"
           "  -c, --ctx-size N     context length in tokens (default: the model's, at most 4096)\n"
           "  -t, --threads N      CPU threads (default: all cores)\n"
           "  --device D           cpu, cuda or auto (default auto: CUDA when built with it and a GPU is there)\n"
           "  --no-mmap            read the model into memory instead of mapping it\n"
           "  --lm-head-int8       int8 LM head: faster, logits within int8 rounding of the exact ones\n");
    print_sampling_help(stdout);
    printf("  -h, --help           this help\n\nCommands during the chat:\n%s"
           "\nCtrl-C stops a reply.  After each reply a line shows the tokens evaluated for the\n"
           "prompt and generated, and their speeds: earlier turns stay in the KV cache, so the\n"
           "prompt count is the new message only.  When the context is full, the oldest turns\n"
           "are dropped (the system prompt stays) and the rest is evaluated again.\n",
           commands_help);
}

/* ---------------------------------------------------------------------------
   The conversation as tokens
   -------------------------------------------------------------------------
   The conversation is the prefix (<|begin_of_text|> and the system prompt) and
   then one token list per turn: the user's message, the assistant header, the
   reply and the <|eot_id|> that closes it.  The KV cache always holds the first
   n_past of these tokens; the rest (n_pending: the <|eot_id|> closing the last
   reply, or the turns to evaluate again after old ones were dropped) is
   evaluated in front of the next message. */
typedef struct token_list {
    bitnet_token *v;
    int n, cap;
} token_list;

static int list_append(token_list *l, const bitnet_token *tokens, int n) {
    if (n == 0) return 1;
    if (l->n + n > l->cap) {
        int cap = l->cap ? l->cap : 64;
        bitnet_token *v;
        while (cap < l->n + n) cap *= 2;
        if (!(v = (bitnet_token *)realloc(l->v, (size_t)cap * sizeof *v))) return 0;
        l->v = v;
        l->cap = cap;
    }
    memcpy(l->v + l->n, tokens, (size_t)n * sizeof *tokens);
    l->n += n;
    return 1;
}

typedef struct chat {
    options opt;
    bitnet_model *model;
    bitnet_context *ctx;
    bitnet_sampler *sampler;
    bitnet_chat_format format;
    int n_vocab;
    token_list prefix;
    token_list *turns;
    int n_turns, cap_turns;
    int n_pending;
    /* for /stats */
    long prompt_tokens, reply_tokens, decode_steps, turns_dropped;
    double prompt_seconds, decode_seconds;
} chat;

static int conversation_length(const chat *c) {
    int i, n = c->prefix.n;
    for (i = 0; i < c->n_turns; i++) n += c->turns[i].n;
    return n;
}

static void print_error(const bitnet_error *err) { fprintf(stderr, "chat: %s\n", err->message); }

/* Tokens of messages in the model's chat format, in a new list. */
static int chat_tokens(chat *c, const bitnet_chat_message *msgs, int n_msgs, int flags, token_list *out) {
    bitnet_error err;
    int n = bitnet_chat_tokenize(c->model, c->format, msgs, n_msgs, flags, NULL, 0, &err);
    memset(out, 0, sizeof *out);
    if (n == BITNET_E_BUFFER_TOO_SMALL) {
        if (!(out->v = (bitnet_token *)malloc(err.needed * sizeof *out->v))) return 0;
        out->cap = (int)err.needed;
        n = bitnet_chat_tokenize(c->model, c->format, msgs, n_msgs, flags, out->v, out->cap, &err);
    }
    if (n < 0) { print_error(&err); free(out->v); out->v = NULL; return 0; }
    out->n = n;
    return 1;
}

/* Copies up to max tokens of the turns, from position `from` of the conversation on. */
static int conversation_slice(const chat *c, int from, bitnet_token *out, int max) {
    int i, pos = c->prefix.n, n = 0;
    for (i = 0; i < c->n_turns && n < max; i++) {
        const token_list *t = &c->turns[i];
        int k = from > pos ? from - pos : 0;
        while (k < t->n && n < max) out[n++] = t->v[k++];
        pos += t->n;
    }
    return n;
}

/* Evaluates the pending tokens, in batches so that Ctrl-C is noticed.  Returns 1
   when all are in the KV cache, 0 when interrupted, -1 on an error. */
static int evaluate_pending(chat *c) {
    enum { BATCH = 256 };
    bitnet_token batch[BATCH];
    bitnet_error err;
    while (c->n_pending > 0) {
        double t0 = now_seconds();
        int i, n = conversation_slice(c, conversation_length(c) - c->n_pending, batch, BATCH);
        if (bitnet_eval(c->ctx, batch, n, 0, &err) != BITNET_OK) { print_error(&err); return -1; }
        for (i = 0; i < n; i++) bitnet_sampler_accept(c->sampler, batch[i]);
        c->n_pending -= n;
        c->prompt_tokens += n;
        c->prompt_seconds += now_seconds() - t0;
        if (interrupted && c->n_pending > 0) return 0;
    }
    return 1;
}

static void drop_turn(chat *c, int i) {
    free(c->turns[i].v);
    memmove(c->turns + i, c->turns + i + 1, (size_t)(c->n_turns - i - 1) * sizeof *c->turns);
    c->n_turns--;
}

/* Makes the conversation fit the context with `room` tokens to spare, dropping
   the oldest turns but never the last one.  The KV cache then keeps only the
   prefix: the turns left are evaluated again.  Returns how many turns were
   dropped, or -1 if even the prefix and the last turn do not fit. */
static int make_room(chat *c, int room, FILE *notices) {
    int n_ctx = bitnet_n_ctx(c->ctx), length = conversation_length(c), dropped = 0, dropped_tokens = 0;
    int in_cache = bitnet_n_past(c->ctx) - c->prefix.n, again;
    bitnet_error err;
    if (length + room <= n_ctx) return 0;
    if (c->n_turns == 0 || c->prefix.n + c->turns[c->n_turns - 1].n + room > n_ctx) return -1;
    while (length + room > n_ctx) {
        length -= c->turns[0].n;
        dropped_tokens += c->turns[0].n;
        drop_turn(c, 0);
        dropped++;
    }
    if (bitnet_context_truncate(c->ctx, c->prefix.n, &err) != BITNET_OK) { print_error(&err); return -1; }
    c->n_pending = length - c->prefix.n;
    c->turns_dropped += dropped;
    /* the turns after the dropped ones move to new positions: evaluate them again */
    again = in_cache - dropped_tokens;
    fprintf(notices, "\n[context full: dropped the oldest %d turn%s (%d tokens)", dropped, dropped == 1 ? "" : "s",
            dropped_tokens);
    if (again > 0) fprintf(notices, "; the %d tokens after %s are evaluated again", again, dropped == 1 ? "it" : "them");
    fprintf(notices, "]\n");
    return dropped;
}

/* Takes the last turn back out after an interrupted or failed prompt. */
static void undo_last_turn(chat *c) {
    bitnet_error err;
    int length;
    drop_turn(c, c->n_turns - 1);
    length = conversation_length(c);
    if (bitnet_n_past(c->ctx) > length) bitnet_context_truncate(c->ctx, length, &err);
    c->n_pending = length - bitnet_n_past(c->ctx);
}

/* ---------------------------------------------------------------------------
   One reply
   ------------------------------------------------------------------------- */
typedef enum { END_OF_TURN, INTERRUPTED, LENGTH_LIMIT, CONTEXT_FULL, FAILED } reply_end;

/* Answers a message: evaluates its tokens after the conversation so far and
   streams the reply to `out`.  Notices and the statistics line go to `info`.
   Returns the reason the reply ended. */
static reply_end reply(chat *c, const char *message, FILE *out, FILE *info) {
    bitnet_chat_message msg;
    token_list turn, close;
    bitnet_decoder dec;
    bitnet_error err;
    bitnet_token token;
    reply_end end = END_OF_TURN;
    long prompt0 = c->prompt_tokens, steps0 = c->decode_steps;
    double prompt_s0 = c->prompt_seconds, decode_s0 = c->decode_seconds;
    int n_ctx = bitnet_n_ctx(c->ctx), n_generated = 0, room, rc;

    msg.role = "user";
    msg.content = message;
    if (!chat_tokens(c, &msg, 1, BITNET_CHAT_ADD_ASSISTANT, &turn)) return FAILED;
    if (c->n_turns == c->cap_turns) {
        int cap = c->cap_turns ? 2 * c->cap_turns : 16;
        token_list *t = (token_list *)realloc(c->turns, (size_t)cap * sizeof *t);
        if (!t) { free(turn.v); fprintf(stderr, "chat: out of memory\n"); return FAILED; }
        c->turns = t;
        c->cap_turns = cap;
    }
    c->turns[c->n_turns++] = turn;
    c->n_pending += turn.n;

    /* leave room for a reply of reasonable length before it starts */
    room = c->opt.n_predict > 0 && c->opt.n_predict < n_ctx / 4 ? c->opt.n_predict : n_ctx / 4;
    if (make_room(c, room, info) < 0 && make_room(c, 1, info) < 0) {
        fprintf(info, "[this message is %d tokens: too long for a context of %d tokens%s]\n", turn.n, n_ctx,
                c->prefix.n > 1 ? " with this system prompt" : "");
        undo_last_turn(c);
        return FAILED;
    }
    if ((rc = evaluate_pending(c)) <= 0) {
        if (rc == 0) fprintf(info, "\n[interrupted]\n");
        undo_last_turn(c);
        return rc == 0 ? INTERRUPTED : FAILED;
    }

    /* Each token shown is evaluated at once (while the next one is sampled), so
       the KV cache holds the whole reply.  A token sampled after the reply has
       to stop is dropped unseen. */
    bitnet_decoder_init(&dec, c->model, 0);
    token = bitnet_sampler_sample(c->sampler, bitnet_logits(c->ctx, -1), c->n_vocab);
    for (;;) {
        double t0;
        if (bitnet_token_is_eog(c->model, token)) break;
        if (interrupted) { end = INTERRUPTED; break; }
        if (c->opt.n_predict > 0 && n_generated >= c->opt.n_predict) { end = LENGTH_LIMIT; break; }
        if (bitnet_n_past(c->ctx) + 1 > n_ctx) {
            /* full in the middle of a reply: drop old turns, evaluate the rest again, go on */
            if (make_room(c, n_ctx / 4, info) < 0 && make_room(c, 1, info) < 0) { end = CONTEXT_FULL; break; }
            if ((rc = evaluate_pending(c)) <= 0) { end = rc == 0 ? INTERRUPTED : FAILED; break; }
            continue;
        }
        show_token(&dec, token, out);
        if (!list_append(&c->turns[c->n_turns - 1], &token, 1)) { fprintf(stderr, "chat: out of memory\n"); end = FAILED; break; }
        n_generated++;
        t0 = now_seconds();
        if (bitnet_eval_sample(c->ctx, token, c->sampler, &token, &err) != BITNET_OK) {
            print_error(&err);
            c->n_pending = 1;
            end = FAILED;
            break;
        }
        c->decode_seconds += now_seconds() - t0;
        c->decode_steps++;
    }
    flush_decoder(&dec, out);

    /* close the turn with the end-of-turn token, evaluated with the next message */
    if (chat_tokens(c, NULL, 0, BITNET_CHAT_CLOSE_REPLY, &close)) {
        if (list_append(&c->turns[c->n_turns - 1], close.v, close.n)) c->n_pending += close.n;
        free(close.v);
    }
    c->reply_tokens += n_generated;

    fprintf(out, "\n");
    fflush(out);
    if (end == INTERRUPTED) fprintf(info, "[interrupted]\n");
    if (end == LENGTH_LIMIT) fprintf(info, "[reply cut at the limit of %d tokens (-n)]\n", c->opt.n_predict);
    if (end == CONTEXT_FULL) fprintf(info, "[context full: reply cut; this turn is dropped with the next message]\n");
    {
        long prompt = c->prompt_tokens - prompt0, steps = c->decode_steps - steps0;
        double prompt_s = c->prompt_seconds - prompt_s0, decode_s = c->decode_seconds - decode_s0;
        fprintf(info, "[prompt %ld tokens, %.1f tokens/s | reply %d tokens, %.1f tokens/s | context %d/%d]\n", prompt,
                prompt_s > 0 ? prompt / prompt_s : 0.0, n_generated, decode_s > 0 ? steps / decode_s : 0.0,
                bitnet_n_past(c->ctx), n_ctx);
        fflush(info);
    }
    return end;
}

/* ---------------------------------------------------------------------------
   Commands
   ------------------------------------------------------------------------- */
static void reset(chat *c) {
    bitnet_error err;
    while (c->n_turns > 0) drop_turn(c, c->n_turns - 1);
    bitnet_context_truncate(c->ctx, c->prefix.n, &err);
    c->n_pending = 0;
    bitnet_sampler_reset(c->sampler);
}

static void show_settings(const chat *c) {
    const bitnet_sampler_params *p = &c->opt.sampling;
    printf("temp %.2f, top-k %d, top-p %.2f, min-p %.2f, repeat-penalty %.2f, repeat-last-n %d, seed %llu, n %d\n",
           p->temperature, p->top_k, p->top_p, p->min_p, p->repeat_penalty, p->repeat_last_n,
           (unsigned long long)p->seed, c->opt.n_predict);
}

static void show_stats(const chat *c) {
    printf("conversation: %d turn%s, %d tokens in the context of %d (prefix %d: <|begin_of_text|> and system prompt)\n",
           c->n_turns, c->n_turns == 1 ? "" : "s", bitnet_n_past(c->ctx), bitnet_n_ctx(c->ctx), c->prefix.n);
    printf("evaluated: %ld prompt tokens, %.1f tokens/s; generated %ld tokens, %.1f tokens/s\n", c->prompt_tokens,
           c->prompt_seconds > 0 ? c->prompt_tokens / c->prompt_seconds : 0.0, c->reply_tokens,
           c->decode_seconds > 0 ? c->decode_steps / c->decode_seconds : 0.0);
    printf("turns dropped to make room: %ld\n", c->turns_dropped);
    printf("backend: %s\n", backend_name(bitnet_context_backend(c->ctx)));
    show_settings(c);
}

static void set_option(chat *c, char *args) {
    char *name = strtok(args, " \t"), *value = strtok(NULL, " \t"), msg[160];
    bitnet_sampler_params p = c->opt.sampling;
    bitnet_sampler *s;
    bitnet_error err;
    int rc;
    if (!name) { show_settings(c); return; }
    if (!value || strtok(NULL, " \t")) { printf("usage: /set NAME VALUE (for example /set temp 0.7)\n"); return; }
    if (!strcmp(name, "n")) {
        int n;
        if (parse_int(value, -1, 1 << 30, &n, msg, sizeof msg) && n != 0) c->opt.n_predict = n;
        else printf("/set n expects a number of tokens (or -1: no limit), got '%s'\n", value);
        return;
    }
    if ((rc = set_sampling_option(&p, name, value, msg, sizeof msg)) < 0) {
        printf("unknown setting '%s': temp, top-k, top-p, min-p, repeat-penalty, repeat-last-n, seed, n\n", name);
        return;
    }
    if (rc == 0) { printf("/set %s %s\n", name, msg); return; }
    if (!(s = bitnet_sampler_create(&p, &err))) { printf("/set %s: %s\n", name, err.message); return; }
    bitnet_sampler_free(c->sampler);
    c->sampler = s;
    c->opt.sampling = p;
}

/* Runs a /command.  Returns 0 to quit. */
static int command(chat *c, char *line) {
    char *name = strtok(line, " \t"), *rest = strtok(NULL, "");
    if (!strcmp(name, "/quit") || !strcmp(name, "/exit")) return 0;
    if (!strcmp(name, "/reset")) { reset(c); printf("[conversation forgotten%s]\n", c->opt.system ? "; the system prompt stays" : ""); }
    else if (!strcmp(name, "/stats")) show_stats(c);
    else if (!strcmp(name, "/set")) set_option(c, rest ? rest : (char *)"");
    else if (!strcmp(name, "/help")) printf("%s", commands_help);
    else printf("unknown command '%s' (/help lists them)\n", name);
    return 1;
}

/* ---------------------------------------------------------------------------
   The prompt
   ------------------------------------------------------------------------- */
/* Reads one message; a line ending in '\' continues on the next.  Returns 1 with
   the message in *buf, 0 at the end of input, -1 when Ctrl-C interrupted it. */
static int read_message(char **buf, size_t *cap) {
    size_t len = 0;
    for (;;) {
        int ch = getchar();
        if (ch == EOF) {
            if (interrupted) { clearerr(stdin); return -1; }
            if (ferror(stdin) && errno == EINTR) { clearerr(stdin); continue; }
            if (len == 0) return 0;
            ch = '\n';
        }
        if (len + 2 > *cap) {
            size_t n = *cap ? 2 * *cap : 256;
            char *b = (char *)realloc(*buf, n);
            if (!b) return 0;
            *buf = b;
            *cap = n;
        }
        if (ch == '\n') {
            if (len > 0 && (*buf)[len - 1] == '\\') {
                (*buf)[len - 1] = '\n';
                printf(". ");
                fflush(stdout);
                continue;
            }
            (*buf)[len] = 0;
            return 1;
        }
        (*buf)[len++] = (char)ch;
    }
}

static int interactive(chat *c) {
    char *line = NULL;
    size_t cap = 0;
    int last_was_ctrl_c = 0;
    printf("Type a message; /help lists the commands; Ctrl-D quits.\n");
    for (;;) {
        int rc;
        char *text;
        printf("> ");
        fflush(stdout);
        interrupted = 0;
        rc = read_message(&line, &cap);
        if (rc == 0) { printf("\n"); break; }
        if (rc < 0) {
            if (last_was_ctrl_c) { printf("\n"); break; }
            printf("\n(Ctrl-C again to quit)\n");
            last_was_ctrl_c = 1;
            continue;
        }
        for (text = line; *text == ' ' || *text == '\t'; text++) {}
        if (!*text) continue;
        last_was_ctrl_c = 0;
        if (text[0] == '/') {
            if (!command(c, text)) break;
            continue;
        }
        interrupted = 0;
        if (reply(c, text, stdout, stdout) == INTERRUPTED) last_was_ctrl_c = 1;
    }
    free(line);
    return 0;
}

/* ---------------------------------------------------------------------------
   main
   ------------------------------------------------------------------------- */
int main(int argc, char **argv) {
    chat c;
    bitnet_chat_message system;
    int i, status = 0;

    memset(&c, 0, sizeof c);
    options_init(&c.opt, 1024);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { help(); return 0; }
        if (!strcmp(a, "-s") || !strcmp(a, "--system") || !strcmp(a, "--system-prompt")) {
            if (i + 1 >= argc) { fprintf(stderr, "chat: %s needs a value\n", a); usage(stderr); return 2; }
            c.opt.system = argv[++i];
            continue;
        }
        if (!strcmp(a, "--chat-format")) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (!strcmp(v, "bitnet")) c.format = BITNET_CHAT_FORMAT_BITNET;
            else if (!strcmp(v, "llama3")) c.format = BITNET_CHAT_FORMAT_LLAMA3;
            else if (strcmp(v, "auto")) {
                fprintf(stderr, "chat: --chat-format expects auto, bitnet or llama3, got '%s'\n", v);
                usage(stderr);
                return 2;
            }
            continue;
        }
        if ((rc = parse_common_flag("chat", argc, argv, &i, &c.opt)) == 1) continue;
        if (rc == 0) fprintf(stderr, "chat: unknown option '%s'\n", a);
        usage(stderr);
        return 2;
    }
    if (!c.opt.model_path) { fprintf(stderr, "chat: no model given (-m model.gguf)\n"); usage(stderr); return 2; }

    if (!open_model("chat", &c.opt, &c.model, &c.ctx, &c.sampler)) return 1;
    c.n_vocab = bitnet_model_hparams(c.model)->n_vocab;
    if (c.format == BITNET_CHAT_FORMAT_AUTO && (c.format = bitnet_chat_format_detect(c.model)) == BITNET_CHAT_FORMAT_AUTO) {
        fprintf(stderr, "chat: the model file names no chat template this library knows; using BitNet b1.58's "
                        "(--chat-format chooses)\n");
        c.format = BITNET_CHAT_FORMAT_BITNET;
    }
    catch_ctrl_c();

    /* the prefix is evaluated once and kept through /reset and dropped turns */
    system.role = "system";
    system.content = c.opt.system;
    if (!chat_tokens(&c, &system, c.opt.system ? 1 : 0, BITNET_CHAT_BEGIN, &c.prefix)) status = 1;
    else if (c.prefix.n >= bitnet_n_ctx(c.ctx)) {
        fprintf(stderr, "chat: the system prompt is %d tokens: it leaves no room in a context of %d\n", c.prefix.n,
                bitnet_n_ctx(c.ctx));
        status = 1;
    } else {
        bitnet_error err;
        if (bitnet_eval(c.ctx, c.prefix.v, c.prefix.n, 0, &err) != BITNET_OK) { print_error(&err); status = 1; }
        for (i = 0; i < c.prefix.n; i++) bitnet_sampler_accept(c.sampler, c.prefix.v[i]);
    }

    if (status == 0) {
        if (c.opt.prompt) status = reply(&c, c.opt.prompt, stdout, stderr) == FAILED;
        else status = interactive(&c);
    }

    while (c.n_turns > 0) drop_turn(&c, c.n_turns - 1);
    free(c.turns);
    free(c.prefix.v);
    bitnet_sampler_free(c.sampler);
    bitnet_context_free(c.ctx);
    bitnet_model_free(c.model);
    return status;
}
