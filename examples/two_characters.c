/* two_characters - one model shared by several contexts at once: two characters
   of a game talk to each other, each with its own persona and conversation.

   usage: two_characters -m model.gguf [-r ROUNDS] [-n TOKENS] [-t THREADS] [--seed N]

   The model is loaded once: its weights are read-only, so any number of contexts
   can use it, from any threads.  Each character has a context of its own (its
   KV cache holds its side of the conversation) and a sampler of its own.  Their
   opening lines are generated at the same time on two threads; then they take
   turns, each hearing the other's last line as a user message.
*/
#define _POSIX_C_SOURCE 200809L
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct character {
    const char *name, *persona;
    bitnet_model *model;
    bitnet_context *ctx;
    bitnet_sampler *sampler;
    bitnet_chat_format format;
    int max_tokens;       /* most tokens per line */
    int started;          /* the system prompt and <|begin_of_text|> are in the KV cache */
    const char *heard;    /* what it answers */
    char line[4096];      /* what it said last */
    bitnet_error err;
    int failed;
    int out_of_room;      /* its context cannot hold another exchange */
} character;

/* Evaluates what the character heard and generates its answer into c->line.
   A thread function: the two characters speak at once at the start. */
static void *speak(void *arg) {
    character *c = (character *)arg;
    bitnet_chat_message msgs[2];
    bitnet_token tokens[2048], token;
    bitnet_decoder decoder;
    size_t len = 0;
    int n_msgs = 0, flags = BITNET_CHAT_ADD_ASSISTANT, n, i;

    /* only the new messages: the earlier ones are in this character's KV cache */
    if (!c->started) {
        msgs[n_msgs].role = "system";
        msgs[n_msgs++].content = c->persona;
        flags |= BITNET_CHAT_BEGIN;
    } else {
        flags |= BITNET_CHAT_CLOSE_REPLY; /* the <|eot_id|> that ended its last line */
    }
    msgs[n_msgs].role = "user";
    msgs[n_msgs++].content = c->heard;
    n = bitnet_chat_tokenize(c->model, c->format, msgs, n_msgs, flags, tokens, 2048, &c->err);
    if (n < 0) { c->failed = 1; return NULL; }
    if (bitnet_n_past(c->ctx) + n + c->max_tokens > bitnet_n_ctx(c->ctx)) {
        c->out_of_room = 1;
        return NULL;
    }
    if (bitnet_eval(c->ctx, tokens, n, 0, &c->err) != BITNET_OK) { c->failed = 1; return NULL; }
    c->started = 1;

    bitnet_decoder_init(&decoder, c->model, 0);
    token = bitnet_sampler_sample(c->sampler, bitnet_logits(c->ctx, -1), bitnet_model_hparams(c->model)->n_vocab);
    for (i = 0; i < c->max_tokens && !bitnet_token_is_eog(c->model, token); i++) {
        n = bitnet_decoder_push(&decoder, token, c->line + len, sizeof c->line - 1 - len);
        if (n > 0 && (size_t)n <= sizeof c->line - 1 - len) len += (size_t)n;
        /* every token shown is evaluated, so the line is all in the KV cache */
        if (bitnet_eval_sample(c->ctx, token, c->sampler, &token, &c->err) != BITNET_OK) { c->failed = 1; break; }
    }
    c->line[len] = 0;
    return NULL;
}

static int usage(FILE *f, int status) {
    fprintf(f, "usage: two_characters -m model.gguf [-r ROUNDS] [-n TOKENS] [-t THREADS] [--seed N]\n");
    return status;
}

static void say(const character *c) { printf("%s: %s\n\n", c->name, c->line); fflush(stdout); }

int main(int argc, char **argv) {
    static const char *const names[2] = {"Mira", "Tomas"};
    static const char *const personas[2] = {
        "You are Mira, the village blacksmith in a fantasy game. You are gruff but kind. "
        "Answer in one or two short sentences.",
        "You are Tomas, a cheerful travelling merchant in a fantasy game who loves to haggle. "
        "Answer in one or two short sentences."};
    static const char *const opening_scenes[2] = {
        "A travelling merchant called Tomas walks up to your forge. Greet him.",
        "You reach the village forge, where Mira the blacksmith is at work. Greet her."};
    character chars[2];
    bitnet_context_params cp = bitnet_context_default_params();
    bitnet_sampler_params sp = bitnet_sampler_default_params();
    bitnet_error err;
    bitnet_model *model;
    pthread_t threads[2];
    const char *model_path = NULL;
    int rounds = 3, max_tokens = 60, i, k, status = 0;

    for (i = 1; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[++i] : "";
        int ok = *value != 0;
        if (!strcmp(flag, "-h") || !strcmp(flag, "--help")) return usage(stdout, 0);
        else if (!strcmp(flag, "-m")) model_path = value;
        else if (!strcmp(flag, "-r")) ok = (rounds = atoi(value)) > 0;
        else if (!strcmp(flag, "-n")) ok = (max_tokens = atoi(value)) > 0;
        else if (!strcmp(flag, "-t")) ok = (cp.n_threads = atoi(value)) >= 0;
        else if (!strcmp(flag, "--seed")) sp.seed = strtoull(value, NULL, 10);
        else ok = 0;
        if (!ok) { fprintf(stderr, "two_characters: bad option or value: %s %s\n", flag, value); return usage(stderr, 2); }
    }
    if (!model_path) return usage(stderr, 2);

    /* one model, loaded once */
    if (!(model = bitnet_model_load(model_path, NULL, &err))) { fprintf(stderr, "two_characters: %s\n", err.message); return 1; }
    memset(chars, 0, sizeof chars);
    for (k = 0; k < 2; k++) {
        chars[k].name = names[k];
        chars[k].persona = personas[k];
        chars[k].model = model;
        /* the model's chat template, or BitNet b1.58's for a model file without one */
        chars[k].format = bitnet_chat_format_detect(model);
        if (chars[k].format == BITNET_CHAT_FORMAT_AUTO) chars[k].format = BITNET_CHAT_FORMAT_BITNET;
        chars[k].max_tokens = max_tokens;
        chars[k].heard = opening_scenes[k];
        sp.seed += 1; /* they should not say the same things */
        if (!(chars[k].ctx = bitnet_context_create(model, &cp, &err)) || !(chars[k].sampler = bitnet_sampler_create(&sp, &err))) {
            fprintf(stderr, "two_characters: %s\n", err.message);
            status = 1;
        }
    }

    /* both open at the same time, each on its own thread and context */
    if (status == 0) {
        int started[2];
        for (k = 0; k < 2; k++) started[k] = pthread_create(&threads[k], NULL, speak, &chars[k]) == 0;
        for (k = 0; k < 2; k++) {
            if (started[k]) pthread_join(threads[k], NULL);
            else speak(&chars[k]); /* no thread to be had: one after the other then */
        }
        for (k = 0; k < 2; k++) if (!chars[k].failed && !chars[k].out_of_room) say(&chars[k]);
    }
    /* then they take turns: each answers the other's last line */
    for (i = 0; status == 0 && i < 2 * rounds; i++) {
        character *speaker = &chars[i % 2], *listener = &chars[1 - i % 2];
        if (chars[0].failed || chars[1].failed) break;
        if (chars[0].out_of_room || chars[1].out_of_room) {
            printf("(The scene ends here: %s's context is full.)\n", chars[chars[1].out_of_room].name);
            break;
        }
        speaker->heard = listener->line;
        speak(speaker);
        if (!speaker->failed && !speaker->out_of_room) say(speaker);
    }
    for (k = 0; k < 2; k++) {
        if (chars[k].failed) { fprintf(stderr, "two_characters: %s\n", chars[k].err.message); status = 1; }
        bitnet_sampler_free(chars[k].sampler);
        bitnet_context_free(chars[k].ctx);
    }
    bitnet_model_free(model);
    return status;
}
