/* minimal - the smallest complete program: load a model and continue a prompt.

   Copy bitnet.h next to this file and build it with
       cc -O2 -march=native minimal.c -o minimal -lpthread -lm
   (for NVIDIA GPUs also compile bitnet_cuda.cu: see the README), then run
       ./minimal model.gguf "The capital of France is"
*/
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include <stdio.h>

int main(int argc, char **argv) {
    bitnet_error err;
    bitnet_model *model = NULL;
    bitnet_context *ctx = NULL;
    bitnet_sampler *sampler = NULL;
    bitnet_decoder decoder;
    bitnet_token prompt[1024], token;
    char text[1024];
    int n, i, status = 1;

    if (argc != 3) { fprintf(stderr, "usage: %s model.gguf \"prompt\"\n", argv[0]); return 2; }
    if (!(model = bitnet_model_load(argv[1], NULL, &err)) ||        /* memory-maps the file */
        !(ctx = bitnet_context_create(model, NULL, &err)) ||        /* GPU if there is one, else CPU */
        !(sampler = bitnet_sampler_create(NULL, &err)))             /* temperature 0.8, top-k 40, ... */
        goto fail;

    n = bitnet_tokenize(model, argv[2], -1, BITNET_TOKENIZE_ADD_BOS, prompt, 1024, &err);
    if (n < 0 || bitnet_eval(ctx, prompt, n, 0, &err) != BITNET_OK) goto fail;
    token = bitnet_sampler_sample(sampler, bitnet_logits(ctx, -1), bitnet_model_hparams(model)->n_vocab);

    printf("%s", argv[2]);
    bitnet_decoder_init(&decoder, model, 0);                        /* prints whole UTF-8 characters */
    for (i = 0; i < 100 && !bitnet_token_is_eog(model, token); i++) {
        n = bitnet_decoder_push(&decoder, token, text, sizeof text);
        if (n > 0 && n <= (int)sizeof text) fwrite(text, 1, (size_t)n, stdout);
        fflush(stdout);
        if (bitnet_eval_sample(ctx, token, sampler, &token, &err) != BITNET_OK) goto fail;
    }
    printf("\n");
    status = 0;
fail:
    if (status) fprintf(stderr, "error: %s\n", err.message);
    bitnet_sampler_free(sampler);
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return status;
}
