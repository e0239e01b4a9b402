/* Model files: the loader must reject every malformed or inconsistent file with a
   specific error, never read out of bounds (run under ASan too), never leak. */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "test.h"

static uint8_t *good;      /* a valid tiny model file */
static size_t good_size;

static void put_le(uint8_t *p, uint64_t v, int n) { int i; for (i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* Loads a copy of buf (so ASan sees the exact end) and returns the error code. */
static int load_code(const uint8_t *buf, size_t size, bitnet_error *err) {
    uint8_t *copy = (uint8_t *)malloc(size ? size : 1);
    bitnet_model *m;
    int code;
    memcpy(copy, buf, size);
    m = bitnet_model_load_from_memory(copy, size, err);
    code = m ? BITNET_OK : err->code;
    bitnet_model_free(m);
    free(copy);
    return code;
}

/* Byte offsets of the parts of a parsed file, for surgical corruption. */
static const uint8_t *kv_value(const bitnet__gguf *g, const char *key) {
    const bitnet__gguf_kv *kv = bitnet__gguf_find(g, key);
    return kv ? (const uint8_t *)kv->key.ptr + kv->key.len + 4 : NULL; /* after the type */
}
static size_t tensor_info(const bitnet__gguf *g, const char *name, int field) {
    const bitnet__gguf_tensor *t = bitnet__gguf_find_tensor(g, name);
    const uint8_t *p = (const uint8_t *)t->name.ptr + t->name.len; /* n_dims */
    if (field == 0) return (size_t)(p - g->base);                  /* n_dims */
    if (field == 1) return (size_t)(p + 4 - g->base);              /* ne[0] */
    if (field == 2) return (size_t)(p + 4 + 8 * t->n_dims - g->base);      /* type */
    return (size_t)(p + 4 + 8 * t->n_dims + 4 - g->base);                  /* offset */
}

static int expect(const uint8_t *buf, size_t size, int code, const char *needle) {
    bitnet_error err;
    int got = load_code(buf, size, &err);
    if (got != code || (needle && !strstr(err.message, needle))) {
        printf("    got code %d (%s), wanted %d with '%s'\n", got, got ? err.message : "", code, needle ? needle : "");
        return 0;
    }
    return 1;
}

int main(void) {
    bitnet_hparams hp;
    bitnet_error err;
    bitnet__gguf g;
    uint8_t *b;
    const char *path = "build/test_gguf_tiny.gguf";
    FILE *f;

    memset(&hp, 0, sizeof hp);
    hp.n_layer = 2; hp.n_embd = 128; hp.n_ff = 192; hp.n_head = 4; hp.n_head_kv = 2; hp.n_vocab = 300; hp.n_ctx_train = 64;
    hp.tied_embeddings = 1;
    if (bitnet_write_random_model(path, &hp, 7, NULL, &err) != BITNET_OK) { printf("FAIL setup: %s\n", err.message); return 1; }
    f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    good_size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    good = (uint8_t *)malloc(good_size);
    if (fread(good, 1, good_size, f) != good_size) return 1;
    fclose(f);
    b = (uint8_t *)malloc(good_size);
    if (bitnet__gguf_parse(&g, good, good_size, &err) != BITNET_OK) { printf("FAIL setup parse: %s\n", err.message); return 1; }

    TEST("a valid file loads, from a path (mapped and read) and from memory") {
        bitnet_model_params p = bitnet_model_default_params();
        bitnet_model *m = bitnet_model_load(path, &p, &err);
        CHECK(m && bitnet_model_hparams(m)->n_vocab == 300 && bitnet_model_hparams(m)->n_ff == 192);
        bitnet_model_free(m);
        p.use_mmap = 0;
        m = bitnet_model_load(path, &p, &err);
        CHECK(m != NULL);
        bitnet_model_free(m);
        CHECK(expect(good, good_size, BITNET_OK, NULL));
    }
    TEST("missing files, directories, empty files and NULL arguments") {
        CHECK(bitnet_model_load("build/no-such-file.gguf", NULL, &err) == NULL && err.code == BITNET_E_IO && strstr(err.message, "no-such-file"));
        CHECK(bitnet_model_load("build", NULL, &err) == NULL && err.code != BITNET_OK);
        CHECK(bitnet_model_load(NULL, NULL, &err) == NULL && err.code == BITNET_E_ARG);
        CHECK(bitnet_model_load_from_memory(NULL, 10, &err) == NULL && err.code == BITNET_E_ARG);
        CHECK(bitnet_model_load_from_memory(good, 0, &err) == NULL && err.code == BITNET_E_ARG);
        f = fopen("build/test_gguf_empty.gguf", "wb"); fclose(f);
        CHECK(bitnet_model_load("build/test_gguf_empty.gguf", NULL, &err) == NULL && err.code == BITNET_E_FORMAT);
        CHECK(bitnet_model_load("build/no-such-file.gguf", NULL, NULL) == NULL); /* err may be NULL */
    }
    TEST("every truncation is rejected") {
        size_t cut, bad = 0, step;
        for (cut = 0; cut < good_size; cut += step) {
            bitnet_error e;
            int code = load_code(good, cut, &e);
            if (code != (cut ? BITNET_E_FORMAT : BITNET_E_ARG)) bad++;
            step = cut < g.data_offset + 64 ? 1 : 97;
        }
        CHECKF(bad == 0, "%zu truncated files were not rejected as malformed", bad);
        CHECK(expect(good, good_size - 1, BITNET_E_FORMAT, "past the end"));
    }
    TEST("bad magic and unsupported versions") {
        memcpy(b, good, good_size); b[0] = 'X';
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "magic"));
        memcpy(b, good, good_size); put_le(b + 4, 1, 4);
        CHECK(expect(b, good_size, BITNET_E_UNSUPPORTED, "version 1"));
        memcpy(b, good, good_size); put_le(b + 4, 0xffffffffu, 4);
        CHECK(expect(b, good_size, BITNET_E_UNSUPPORTED, "version"));
    }
    TEST("absurd counts, string lengths and array lengths") {
        memcpy(b, good, good_size); put_le(b + 8, (uint64_t)1 << 62, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "tensor count"));
        memcpy(b, good, good_size); put_le(b + 16, ~(uint64_t)0, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "key count"));
        memcpy(b, good, good_size); put_le(b + 24, ~(uint64_t)0 - 3, 8); /* first key's length */
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "truncated"));
        {   /* the token array claims more strings than could fit */
            const bitnet__gguf_kv *kv = bitnet__gguf_find(&g, "tokenizer.ggml.tokens");
            size_t at = (size_t)(kv->arr_data - good) - 8;
            memcpy(b, good, good_size); put_le(b + at, (uint64_t)1 << 60, 8);
            CHECK(expect(b, good_size, BITNET_E_FORMAT, "tokenizer.ggml.tokens"));
            memcpy(b, good, good_size); put_le(b + at - 4, BITNET__GGUF_ARRAY, 4);
            CHECK(expect(b, good_size, BITNET_E_FORMAT, "arrays of type"));
            memcpy(b, good, good_size); put_le(b + at - 4, 99, 4);
            CHECK(expect(b, good_size, BITNET_E_FORMAT, NULL));
        }
        {   /* a value type that does not exist */
            const bitnet__gguf_kv *kv = bitnet__gguf_find(&g, "bitnet.block_count");
            size_t at = (size_t)((const uint8_t *)kv->key.ptr + kv->key.len - good);
            memcpy(b, good, good_size); put_le(b + at, 13, 4);
            CHECK(expect(b, good_size, BITNET_E_FORMAT, "unknown type"));
        }
    }
    TEST("absurd dimensions, dimension counts and tensor types") {
        size_t at = tensor_info(&g, "blk.0.attn_q.weight", 1);
        memcpy(b, good, good_size); put_le(b + at, 0, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "dimension"));
        memcpy(b, good, good_size); put_le(b + at, (uint64_t)1 << 50, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "dimension"));
        memcpy(b, good, good_size); put_le(b + at, 100, 8);  /* not a multiple of the Q2_0 block */
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "block"));
        at = tensor_info(&g, "blk.0.attn_q.weight", 0);
        memcpy(b, good, good_size); put_le(b + at, 0, 4);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "dimensions"));
        memcpy(b, good, good_size); put_le(b + at, 9, 4);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "dimensions"));
        at = tensor_info(&g, "blk.0.attn_q.weight", 2);
        memcpy(b, good, good_size); put_le(b + at, 77, 4);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "unknown type"));
        memcpy(b, good, good_size); put_le(b + at, BITNET__TYPE_TQ2_0, 4);  /* valid ggml type, wrong here */
        CHECK(expect(b, good_size, BITNET_E_FORMAT, NULL) || expect(b, good_size, BITNET_E_UNSUPPORTED, "Q2_0"));
        at = tensor_info(&g, "blk.1.attn_norm.weight", 2);
        memcpy(b, good, good_size); put_le(b + at, BITNET__TYPE_F16, 4);
        CHECK(expect(b, good_size, BITNET_E_UNSUPPORTED, "F32"));
    }
    TEST("bad offsets: misaligned, past the end, overlapping") {
        size_t at = tensor_info(&g, "blk.1.ffn_up.weight", 3);
        const bitnet__gguf_tensor *prev = bitnet__gguf_find_tensor(&g, "blk.1.ffn_gate.weight");
        memcpy(b, good, good_size); put_le(b + at, bitnet__rd(good + at, 8) + 1, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "alignment"));
        memcpy(b, good, good_size); put_le(b + at, (uint64_t)good_size, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "past the end"));
        memcpy(b, good, good_size); put_le(b + at, ~(uint64_t)0 - 31, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "past the end"));
        memcpy(b, good, good_size); put_le(b + at, prev->offset, 8);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "overlap"));
    }
    TEST("duplicate tensors and keys, missing tensors and keys, wrong shapes") {
        const bitnet__gguf_tensor *t = bitnet__gguf_find_tensor(&g, "blk.1.attn_v.weight");
        size_t at = (size_t)((const uint8_t *)t->name.ptr - good);
        memcpy(b, good, good_size); memcpy(b + at, "blk.1.attn_k.weight", t->name.len); /* same length */
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "twice"));
        memcpy(b, good, good_size); b[at + 6] = 'X'; /* blk.1.Xttn_v: attn_v is missing */
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "lacks the tensor 'blk.1.attn_v.weight'"));
        {
            const bitnet__gguf_kv *kv = bitnet__gguf_find(&g, "bitnet.context_length");
            at = (size_t)((const uint8_t *)kv->key.ptr - good);
            memcpy(b, good, good_size); memcpy(b + at, "bitnet.rope.freq_base", 21); /* same length */
            CHECK(expect(b, good_size, BITNET_E_FORMAT, "twice"));
            memcpy(b, good, good_size); b[at + 7] = 'X';
            CHECK(expect(b, good_size, BITNET_E_FORMAT, "bitnet.context_length"));
        }
        at = tensor_info(&g, "blk.0.attn_k.weight", 1) + 8; /* ne[1]: rows */
        memcpy(b, good, good_size); put_le(b + at, 32, 8);  /* half the rows: also shrinks the size */
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "shape"));
    }
    TEST("hyper-parameters out of range or inconsistent") {
        static const struct { const char *key; uint64_t value; int code; const char *needle; } cases[] = {
            {"bitnet.attention.head_count", 3, BITNET_E_FORMAT, "multiple of the head count"},
            {"bitnet.attention.head_count", 0, BITNET_E_FORMAT, "out of range"},
            {"bitnet.attention.head_count_kv", 3, BITNET_E_FORMAT, "KV head count"},
            {"bitnet.block_count", 3, BITNET_E_FORMAT, "lacks the tensor 'blk.2"},
            {"bitnet.block_count", 5000, BITNET_E_FORMAT, "out of range"},
            {"bitnet.embedding_length", 256, BITNET_E_UNSUPPORTED, "partial RoPE"},
            {"bitnet.embedding_length", 130, BITNET_E_FORMAT, "multiple of the head count"},
            {"bitnet.feed_forward_length", 128, BITNET_E_FORMAT, "shape"},
            {"bitnet.vocab_size", 301, BITNET_E_FORMAT, "bitnet.vocab_size"},
            {"bitnet.rope.dimension_count", 16, BITNET_E_UNSUPPORTED, "partial RoPE"},
            {"bitnet.context_length", 0, BITNET_E_FORMAT, "out of range"},
        };
        size_t i;
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const uint8_t *v = kv_value(&g, cases[i].key);
            memcpy(b, good, good_size); put_le(b + (v - good), cases[i].value, 4);
            CHECKF(expect(b, good_size, cases[i].code, cases[i].needle), "%s = %llu", cases[i].key, (unsigned long long)cases[i].value);
        }
        {   /* a float key with an integer type, NaN epsilon, unknown architecture and activation */
            const bitnet__gguf_kv *kv = bitnet__gguf_find(&g, "bitnet.attention.layer_norm_rms_epsilon");
            size_t at = (size_t)((const uint8_t *)kv->key.ptr + kv->key.len - good);
            memcpy(b, good, good_size); put_le(b + at, BITNET__GGUF_U32, 4);
            CHECK(expect(b, good_size, BITNET_E_FORMAT, "must be a float"));
            memcpy(b, good, good_size); put_le(b + at + 4, 0x7fc00000u, 4);
            CHECK(expect(b, good_size, BITNET_E_FORMAT, "finite"));
            kv = bitnet__gguf_find(&g, "general.architecture");
            at = (size_t)(kv->str.ptr - (const char *)good);
            memcpy(b, good, good_size); b[at] = 'B';
            CHECK(expect(b, good_size, BITNET_E_UNSUPPORTED, "Bitnet"));
            kv = bitnet__gguf_find(&g, "bitnet.hidden_activation");
            at = (size_t)(kv->str.ptr - (const char *)good);
            memcpy(b, good, good_size); memcpy(b + at, "gelu2", 5);
            CHECK(expect(b, good_size, BITNET_E_UNSUPPORTED, "gelu2"));
        }
    }
    TEST("ternary tensors with varying block scales or a non-finite scale") {
        const bitnet__gguf_tensor *t = bitnet__gguf_find_tensor(&g, "blk.0.ffn_down.weight");
        const bitnet__gguf_tensor *s = bitnet__gguf_find_tensor(&g, "blk.0.ffn_down.scale");
        size_t at = (size_t)(t->data - good) + 18;           /* second block's d */
        memcpy(b, good, good_size); put_le(b + at, 0x4000, 2); /* 2.0 */
        CHECK(expect(b, good_size, BITNET_E_UNSUPPORTED, "different scales"));
        memcpy(b, good, good_size); put_le(b + (s->data - good), 0x7f800000u, 4);
        CHECK(expect(b, good_size, BITNET_E_FORMAT, "finite"));
        {   /* a common block scale is folded into the tensor scale */
            bitnet_model *m;
            float before, after;
            size_t i, nb = t->nbytes / 18;
            memcpy(b, good, good_size);
            m = bitnet_model_load_from_memory(b, good_size, &err);
            before = m->layers[0].down.scale;
            bitnet_model_free(m);
            for (i = 0; i < nb; i++) put_le(b + (t->data - good) + 18 * i, 0x4000, 2);
            m = bitnet_model_load_from_memory(b, good_size, &err);
            CHECK(m != NULL);
            after = m ? m->layers[0].down.scale : 0;
            CHECKF(after == 2.0f * before, "scale %g, expected %g", after, 2.0f * before);
            bitnet_model_free(m);
        }
    }
    TEST("random corruption of the header never crashes") {
        uint64_t x = 99;
        int i, accepted = 0;
        for (i = 0; i < 3000; i++) {
            int k, flips = 1 + i % 4;
            memcpy(b, good, good_size);
            for (k = 0; k < flips; k++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                b[(x >> 33) % g.data_offset] ^= (uint8_t)(1u << ((x >> 20) & 7));
            }
            accepted += load_code(b, good_size, &err) == BITNET_OK;
        }
        /* most flips land in strings (token text) that need not be rejected */
        CHECKF(accepted < 3000, "all %d corrupted files were accepted", accepted);
    }
    bitnet__gguf_free(&g);
    free(b);
    free(good);
    return TEST_EXIT();
}
