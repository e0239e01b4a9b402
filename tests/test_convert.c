/* The converter (bitnet_convert_hf): what it writes, and what it refuses.

   - The Hugging Face fixtures (tests/fixtures/, see make_fixtures.py): metadata,
     tensor types and shapes, embeddings and norms against the checkpoint's bytes,
     packed ternary values against an independent unpacking of the safetensors
     bytes, online ternarization against the packed checkpoint transformers'
     WeightQuant made from the same master weights, and every scale against the
     one make_fixtures recorded.
   - Small checkpoints written here: WeightQuant's ties (round half to even) and
     its absmean floor, bitlinear's reciprocal scale, offline float weights, F16
     embeddings, progress and cancelling.
   - Broken inputs, each rejected with the right code and a message naming the
     field or tensor, leaving no output file: config fields, missing and misshapen
     tensors, wrong dtypes, corrupt and truncated safetensors, inconsistent shard
     indexes, tokenizer mismatches. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, opendir */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <unistd.h>

#define FIXTURES "tests/fixtures/"

/* ---- files ---- */

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = (uint8_t *)malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
        if (buf) { buf[n] = 0; *size = (size_t)n; }
    }
    fclose(f);
    return buf;
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = 0;
    return ok;
}

static int exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static void copy_file(const char *from, const char *to) {
    size_t n = 0;
    uint8_t *d = read_file(from, &n);
    CHECKF(d && write_file(to, d, n), "copying %s to %s", from, to);
    free(d);
}

static char work_dir[512];

static void make_work_dir(void) {
    const char *t = getenv("TMPDIR");
    snprintf(work_dir, sizeof work_dir, "%s/bitnet_test_convert_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(work_dir)) { perror("mkdtemp"); exit(1); }
}

static void remove_work_dir(void) {
    DIR *d = opendir(work_dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", work_dir, e->d_name);
        remove(p);
    }
    if (d) closedir(d);
    rmdir(work_dir);
}

static const char *in_work(const char *name) {
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", work_dir, name);
    return p[k];
}

/* ---- reading a model file back ---- */

typedef struct gguf_file {
    uint8_t *data;
    size_t size;
    bitnet__gguf g;
    int ok;
} gguf_file;

static void gguf_open(gguf_file *f, const char *path) {
    bitnet_error err;
    memset(f, 0, sizeof *f);
    f->data = read_file(path, &f->size);
    f->ok = f->data && bitnet__gguf_parse(&f->g, f->data, f->size, &err) == BITNET_OK;
    CHECKF(f->ok, "cannot parse %s", path);
}

static void gguf_close(gguf_file *f) {
    if (f->ok) bitnet__gguf_free(&f->g);
    free(f->data);
}

static long long meta_int(const gguf_file *f, const char *key) {
    const bitnet__gguf_kv *kv = bitnet__gguf_find(&f->g, key);
    if (!kv || kv->type == BITNET__GGUF_STRING || kv->type == BITNET__GGUF_ARRAY || kv->type == BITNET__GGUF_F32) return -999;
    return (long long)kv->num.i;
}

static double meta_f32(const gguf_file *f, const char *key) {
    const bitnet__gguf_kv *kv = bitnet__gguf_find(&f->g, key);
    return kv && kv->type == BITNET__GGUF_F32 ? kv->num.f : -999;
}

static int meta_str_is(const gguf_file *f, const char *key, const char *want) {
    const bitnet__gguf_kv *kv = bitnet__gguf_find(&f->g, key);
    return kv && kv->type == BITNET__GGUF_STRING && bitnet__str_eq(kv->str, want);
}

static const bitnet__gguf_tensor *tensor(const gguf_file *f, const char *name) {
    return f->ok ? bitnet__gguf_find_tensor(&f->g, name) : NULL;
}

static float f32_at(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Ternary value j of row r of a Q2_0 tensor, or 99 where the block is not d = 1
   or the code is 3. */
static int q2_value(const bitnet__gguf_tensor *t, uint64_t r, uint64_t j) {
    const uint8_t *blk = t->data + (r * (t->ne[0] / 64) + j / 64) * 18;
    int code = (blk[2 + (j % 64) / 4] >> (2 * (j % 4))) & 3;
    if (blk[0] != 0x00 || blk[1] != 0x3C || code == 3) return 99;
    return code - 1;
}

/* ---- reading a safetensors file independently of the converter ---- */

typedef struct st_view {
    uint8_t *data;
    size_t size;
    bitnet__arena arena;
    bitnet__json root;
    uint64_t data_start;
} st_view;

static int st_view_open(st_view *v, const char *path) {
    bitnet_error err;
    uint64_t n;
    memset(v, 0, sizeof *v);
    if (!(v->data = read_file(path, &v->size)) || v->size < 8) return 0;
    n = bitnet__rd(v->data, 8);
    v->data_start = 8 + n;
    return n <= v->size - 8 && bitnet__json_parse((const char *)v->data + 8, (size_t)n, path, &v->arena, &v->root, &err) == BITNET_OK;
}

static void st_view_close(st_view *v) {
    bitnet__arena_free(&v->arena);
    free(v->data);
}

/* Bytes of a tensor, or NULL. */
static const uint8_t *st_view_tensor(const st_view *v, const char *name, uint64_t *nbytes) {
    const bitnet__json *t = bitnet__json_get(&v->root, name), *o = bitnet__json_get(t, "data_offsets");
    if (!o || o->len != 2) return NULL;
    *nbytes = (uint64_t)o->items[1].num - (uint64_t)o->items[0].num;
    return v->data + v->data_start + (uint64_t)o->items[0].num;
}

/* ---- the fixtures ---- */

typedef struct fixture {
    const char *name, *shard;    /* shard: the file holding the layer tensors we unpack */
    int tied, packed, bf16, layers;
    double theta, eps;
} fixture;

static const fixture fixtures[4] = {
    {"bf16_online_tied", "model.safetensors", 1, 0, 1, 2, 500000.0, 1e-5},
    {"packed_bitlinear_tied", "model.safetensors", 1, 1, 1, 2, 500000.0, 1e-5},
    {"f32_online_untied_sharded", NULL, 0, 0, 0, 2, 10000.0, 1e-6},
    {"packed_autobitlinear_untied", "model.safetensors", 0, 1, 0, 2, 10000.0, 1e-6},
};

static const char *const proj_hf[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
static const char *const proj_gg[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

static void convert_fixture(const fixture *fx, gguf_file *out) {
    char dir[256];
    bitnet_error err;
    int rc;
    snprintf(dir, sizeof dir, FIXTURES "%s", fx->name);
    rc = bitnet_convert_hf(dir, in_work(fx->name), NULL, &err);
    CHECKF(rc == BITNET_OK, "%s: %s", fx->name, err.message);
    gguf_open(out, in_work(fx->name));
}

/* The scale make_fixtures recorded for blk.L.NAME (from transformers' own numbers). */
static int recorded_scale(const fixture *fx, const char *gg_name, float *out) {
    char path[256], line[256], want[128];
    FILE *f;
    int found = 0;
    snprintf(path, sizeof path, FIXTURES "%s/reference.txt", fx->name);
    snprintf(want, sizeof want, "scale %s ", gg_name);
    if (!(f = fopen(path, "r"))) return 0;
    while (!found && fgets(line, sizeof line, f))
        if (!strncmp(line, want, strlen(want))) {
            *out = (float)strtod(line + strlen(want), NULL);
            found = 1;
        }
    fclose(f);
    return found;
}

static int ulps_apart(float a, float b) {
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x > y ? x - y : y - x;
}

static void check_fixture_metadata(const fixture *fx, const gguf_file *m) {
    const bitnet__gguf_kv *toks = bitnet__gguf_find(&m->g, "tokenizer.ggml.tokens");
    CHECK(meta_str_is(m, "general.architecture", "bitnet"));
    CHECK(meta_str_is(m, "general.name", fx->name));
    CHECK(meta_int(m, "bitnet.embedding_length") == 128);
    CHECK(meta_int(m, "bitnet.feed_forward_length") == 256);
    CHECK(meta_int(m, "bitnet.block_count") == fx->layers);
    CHECK(meta_int(m, "bitnet.attention.head_count") == 4);
    CHECK(meta_int(m, "bitnet.attention.head_count_kv") == 2);
    CHECK(meta_int(m, "bitnet.rope.dimension_count") == 32);
    CHECK(meta_int(m, "bitnet.context_length") == 256);
    CHECK(meta_int(m, "bitnet.vocab_size") == 384);
    CHECK(meta_f32(m, "bitnet.rope.freq_base") == (float)fx->theta);
    CHECK(meta_f32(m, "bitnet.attention.layer_norm_rms_epsilon") == (float)fx->eps);
    CHECK(meta_str_is(m, "bitnet.hidden_activation", "relu2"));
    CHECK(meta_str_is(m, "tokenizer.ggml.model", "gpt2"));
    CHECK(toks && toks->arr_n == 384);
    CHECK(meta_int(m, "tokenizer.ggml.bos_token_id") == 374);
    CHECK(meta_int(m, "tokenizer.ggml.eos_token_id") == 383); /* tokenizer_config.json: eos_token <|eot_id|> */
    CHECK(meta_int(m, "tokenizer.ggml.eot_token_id") == 383);
    CHECK(bitnet__gguf_find(&m->g, "tokenizer.chat_template") != NULL);
}

/* Embeddings byte for byte, norms value for value. */
static void check_fixture_floats(const fixture *fx, const gguf_file *m) {
    char path[256], name[128], gname[128];
    st_view v[2];
    int n_views = fx->shard ? 1 : 2, i, l, k;
    static const char *const norm_hf[4] = {"input_layernorm", "self_attn.attn_sub_norm", "post_attention_layernorm",
                                           "mlp.ffn_sub_norm"};
    static const char *const norm_gg[4] = {"attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"};
    for (i = 0; i < n_views; i++) {
        if (fx->shard) snprintf(path, sizeof path, FIXTURES "%s/%s", fx->name, fx->shard);
        else snprintf(path, sizeof path, FIXTURES "%s/model-%05d-of-00002.safetensors", fx->name, i + 1);
        CHECKF(st_view_open(&v[i], path), "cannot read %s", path);
    }
    for (l = -1; l < fx->layers; l++)
        for (k = 0; k < (l < 0 ? 3 : 4); k++) {
            const bitnet__gguf_tensor *t;
            const uint8_t *src = NULL;
            uint64_t nb = 0, e;
            int is_bf16;
            if (l < 0) { /* the model-wide tensors */
                static const char *const hf[3] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"};
                static const char *const gg[3] = {"token_embd.weight", "output.weight", "output_norm.weight"};
                if (k == 1 && fx->tied) { CHECK(tensor(m, "output.weight") == NULL); continue; }
                snprintf(name, sizeof name, "%s", hf[k]);
                snprintf(gname, sizeof gname, "%s", gg[k]);
            } else {
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, norm_hf[k]);
                snprintf(gname, sizeof gname, "blk.%d.%s.weight", l, norm_gg[k]);
            }
            for (i = 0; i < n_views && !src; i++) src = st_view_tensor(&v[i], name, &nb);
            t = tensor(m, gname);
            CHECKF(src && t, "%s / %s", name, gname);
            if (!src || !t) continue;
            is_bf16 = fx->bf16;
            if (l < 0 && k < 2) { /* embeddings keep the checkpoint's dtype and bytes */
                CHECKF(t->type == (uint32_t)(is_bf16 ? BITNET__TYPE_BF16 : BITNET__TYPE_F32), "%s type %u", gname, t->type);
                CHECK(t->ne[0] == 128 && t->ne[1] == 384 && t->nbytes == nb && memcmp(t->data, src, (size_t)nb) == 0);
                continue;
            }
            CHECKF(t->type == BITNET__TYPE_F32 && t->n_dims == 1, "%s", gname);
            for (e = 0; e < t->ne[0] && t->type == BITNET__TYPE_F32; e++) {
                float want = is_bf16 ? bitnet__bf16_to_f32((uint16_t)bitnet__rd(src + 2 * e, 2)) : f32_at(src + 4 * e);
                if (f32_at(t->data + 4 * e) != want) { CHECKF(0, "%s[%llu]", gname, (unsigned long long)e); break; }
            }
        }
    for (i = 0; i < n_views; i++) st_view_close(&v[i]);
}

/* Packed fixtures: every ternary value against the uint8 codes in the checkpoint
   (value (i*rows/4 + r, c) = bits 2i..2i+1 of byte (r, c), minus one), unpacked
   here without the converter's code; and scales equal to those recorded. */
static void check_fixture_packed(const fixture *fx, const gguf_file *m) {
    char path[256], name[128];
    st_view v;
    int l, k;
    snprintf(path, sizeof path, FIXTURES "%s/%s", fx->name, fx->shard);
    CHECKF(st_view_open(&v, path), "cannot read %s", path);
    for (l = 0; l < fx->layers; l++)
        for (k = 0; k < 7; k++) {
            const bitnet__gguf_tensor *t, *s;
            const uint8_t *src;
            uint64_t nb = 0, r, c, bad = 0, rows, cols;
            float want;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, proj_hf[k]);
            src = st_view_tensor(&v, name, &nb);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, proj_gg[k]);
            t = tensor(m, name);
            CHECKF(src && t && t->type == BITNET__TYPE_Q2_0, "%s", name);
            if (!src || !t) continue;
            cols = t->ne[0];
            rows = t->ne[1];
            CHECK(nb == rows / 4 * cols);
            for (r = 0; r < rows; r++)
                for (c = 0; c < cols; c++) {
                    int want_v = ((src[(r % (rows / 4)) * cols + c] >> (2 * (r / (rows / 4)))) & 3) - 1;
                    bad += q2_value(t, r, c) != want_v;
                }
            CHECKF(bad == 0, "%s: %llu ternary values differ from the checkpoint", name, (unsigned long long)bad);
            snprintf(name, sizeof name, "blk.%d.%s.scale", l, proj_gg[k]);
            s = tensor(m, name);
            CHECKF(s && s->type == BITNET__TYPE_F32 && s->n_dims == 1 && s->ne[0] == 1, "%s", name);
            snprintf(name, sizeof name, "blk.%d.%s", l, proj_gg[k]);
            CHECKF(recorded_scale(fx, name, &want), "no recorded scale for %s", name);
            if (s) CHECKF(f32_at(s->data) == want, "%s.scale = %a, recorded %a", name, (double)f32_at(s->data), (double)want);
        }
    st_view_close(&v);
}

/* Online fixtures: the ternary values must be those transformers' WeightQuant gave
   (which make_fixtures packed into the sibling packed fixture), the scales within
   an ulp of the recorded ones (our absmean sums in double, torch's in float32). */
static void check_fixture_online(const fixture *fx, const gguf_file *m, const gguf_file *packed) {
    char name[128];
    int l, k;
    for (l = 0; l < fx->layers; l++)
        for (k = 0; k < 7; k++) {
            const bitnet__gguf_tensor *a, *b, *s;
            float want;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, proj_gg[k]);
            a = tensor(m, name);
            b = tensor(packed, name);
            CHECKF(a && b && a->type == BITNET__TYPE_Q2_0 && a->nbytes == b->nbytes, "%s", name);
            if (a && b) CHECKF(memcmp(a->data, b->data, (size_t)a->nbytes) == 0, "%s: ternary values differ from WeightQuant's", name);
            snprintf(name, sizeof name, "blk.%d.%s.scale", l, proj_gg[k]);
            s = tensor(m, name);
            snprintf(name, sizeof name, "blk.%d.%s", l, proj_gg[k]);
            CHECKF(s && recorded_scale(fx, name, &want), "%s", name);
            if (s) CHECKF(ulps_apart(f32_at(s->data), want) <= 1, "%s.scale = %a, recorded %a", name, (double)f32_at(s->data), (double)want);
        }
}

static void test_fixtures(void) {
    gguf_file m[4];
    int i;
    for (i = 0; i < 4; i++) convert_fixture(&fixtures[i], &m[i]);
    TEST("convert fixtures: metadata") for (i = 0; i < 4; i++) if (m[i].ok) check_fixture_metadata(&fixtures[i], &m[i]);
    TEST("convert fixtures: embeddings and norms") for (i = 0; i < 4; i++) if (m[i].ok) check_fixture_floats(&fixtures[i], &m[i]);
    TEST("convert fixtures: packed ternary values and scales") {
        if (m[1].ok) check_fixture_packed(&fixtures[1], &m[1]);
        if (m[3].ok) check_fixture_packed(&fixtures[3], &m[3]);
    }
    TEST("convert fixtures: online ternarization matches WeightQuant") {
        if (m[0].ok && m[1].ok) check_fixture_online(&fixtures[0], &m[0], &m[1]);
        if (m[2].ok && m[3].ok) check_fixture_online(&fixtures[2], &m[2], &m[3]);
    }
    TEST("convert fixtures: the output loads") {
        for (i = 0; i < 4; i++) {
            bitnet_error err;
            bitnet_model *model = bitnet_model_load(in_work(fixtures[i].name), NULL, &err);
            CHECKF(model != NULL, "%s: %s", fixtures[i].name, err.message);
            if (model) CHECK(bitnet_model_hparams(model)->tied_embeddings == fixtures[i].tied);
            bitnet_model_free(model);
        }
    }
    for (i = 0; i < 4; i++) {
        gguf_close(&m[i]);
        remove(in_work(fixtures[i].name));
    }
}

/* ---- small checkpoints written here ---- */

#define D 64   /* hidden size */
#define FF 64  /* intermediate size */
#define KV 32  /* one KV head of 32 */
#define V 384  /* the fixtures' tokenizer */

typedef struct spec {
    char name[96];
    char dtype[8];
    int n_dims;
    uint64_t shape[2];
    uint8_t *data;
    size_t nbytes;
} spec;

typedef struct ckpt {
    spec t[80];
    int n;
} ckpt;

static size_t dtype_size(const char *dt) {
    return !strcmp(dt, "F32") || !strcmp(dt, "I32") ? 4 : !strcmp(dt, "BF16") || !strcmp(dt, "F16") ? 2 : 1;
}

static spec *add(ckpt *c, const char *name, const char *dtype, int n_dims, uint64_t d0, uint64_t d1) {
    spec *s = &c->t[c->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->dtype, sizeof s->dtype, "%s", dtype);
    s->n_dims = n_dims;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->nbytes = (size_t)d0 * (n_dims > 1 ? (size_t)d1 : 1) * dtype_size(dtype);
    s->data = (uint8_t *)calloc(s->nbytes ? s->nbytes : 1, 1);
    return s;
}

static spec *find(ckpt *c, const char *name) {
    int i;
    for (i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name)) return &c->t[i];
    return NULL;
}

static void drop(ckpt *c, const char *name) {
    spec *s = find(c, name);
    if (!s) return;
    free(s->data);
    *s = c->t[--c->n];
}

static void free_ckpt(ckpt *c) {
    int i;
    for (i = 0; i < c->n; i++) free(c->t[i].data);
    c->n = 0;
}

static void set_float(spec *s, size_t i, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if (!strcmp(s->dtype, "F32")) { s->data[4 * i] = (uint8_t)u; s->data[4 * i + 1] = (uint8_t)(u >> 8); s->data[4 * i + 2] = (uint8_t)(u >> 16); s->data[4 * i + 3] = (uint8_t)(u >> 24); }
    else {
        uint16_t h = !strcmp(s->dtype, "F16") ? bitnet__f32_to_f16(f) : bitnet__f32_to_bf16(f);
        s->data[2 * i] = (uint8_t)h;
        s->data[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

static uint32_t rng_next(uint32_t *s) {
    *s ^= *s << 13; *s ^= *s >> 17; *s ^= *s << 5;
    return *s;
}

static void fill_random(spec *s, uint32_t seed, float lo, float hi) {
    size_t i, n = s->nbytes / dtype_size(s->dtype);
    for (i = 0; i < n; i++) set_float(s, i, lo + (hi - lo) * (float)(rng_next(&seed) % 100000) / 100000.0f);
}

/* A 1-layer (or n_layer) model: float master weights or packed ones. */
static void make_model(ckpt *c, int n_layer, int packed) {
    static const int rows[7] = {D, KV, KV, D, FF, FF, D}, cols[7] = {D, D, D, D, D, D, FF};
    char name[128];
    int l, k;
    uint32_t seed = 7;
    c->n = 0;
    fill_random(add(c, "model.embed_tokens.weight", "BF16", 2, V, D), 1, -0.1f, 0.1f);
    fill_random(add(c, "model.norm.weight", "BF16", 1, D, 0), 2, 0.5f, 1.5f);
    for (l = 0; l < n_layer; l++) {
        static const char *const norms[4] = {"input_layernorm", "post_attention_layernorm", "self_attn.attn_sub_norm", "mlp.ffn_sub_norm"};
        for (k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, norms[k]);
            fill_random(add(c, name, "BF16", 1, k == 3 ? FF : D, 0), (uint32_t)(10 + k), 0.5f, 1.5f);
        }
        for (k = 0; k < 7; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, proj_hf[k]);
            if (packed) {
                spec *s = add(c, name, "U8", 2, (uint64_t)rows[k] / 4, (uint64_t)cols[k]);
                size_t i;
                for (i = 0; i < s->nbytes; i++) {
                    int b;
                    for (b = 0; b < 4; b++) s->data[i] |= (uint8_t)((rng_next(&seed) % 3) << (2 * b));
                }
                snprintf(name, sizeof name, "model.layers.%d.%s.weight_scale", l, proj_hf[k]);
                set_float(add(c, name, "BF16", 1, 1, 0), 0, 0.5f + (float)k);
            } else {
                fill_random(add(c, name, "BF16", 2, (uint64_t)rows[k], (uint64_t)cols[k]), (uint32_t)(100 + k), -0.3f, 0.3f);
            }
        }
    }
}

/* safetensors: header JSON listing tensors [first, first + count) of c, then their bytes. */
static void write_st(const char *path, const ckpt *c, int first, int count) {
    size_t cap = 65536, len = 0, off = 0, pad;
    char *h = (char *)malloc(cap);
    uint8_t n8[8];
    FILE *f;
    int i, b;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (i = first; i < first + count; i++) {
        const spec *s = &c->t[i];
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", s->name, s->dtype);
        for (b = 0; b < s->n_dims; b++) len += (size_t)snprintf(h + len, cap - len, "%s%llu", b ? "," : "", (unsigned long long)s->shape[b]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + s->nbytes);
        off += s->nbytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    for (pad = len; pad % 8; pad++) h[pad] = ' ';
    for (b = 0; b < 8; b++) n8[b] = (uint8_t)((uint64_t)pad >> (8 * b));
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(n8, 1, 8, f);
        fwrite(h, 1, pad, f);
        for (i = first; i < first + count; i++) fwrite(c->t[i].data, 1, c->t[i].nbytes, f);
        fclose(f);
    }
    free(h);
}

/* config.json: the defaults of a model made by make_model, with fields replaced
   ("key", "json value"), removed ("key", NULL) or added. */
typedef struct field { const char *key, *value; } field;

static void write_config(const char *quant, const field *over, int n_over) {
    static const field base[] = {
        {"architectures", "[\"BitNetForCausalLM\"]"}, {"model_type", "\"bitnet\""}, {"hidden_size", "64"},
        {"intermediate_size", "64"}, {"num_hidden_layers", "1"}, {"num_attention_heads", "2"},
        {"num_key_value_heads", "1"}, {"vocab_size", "384"}, {"max_position_embeddings", "128"},
        {"rms_norm_eps", "1e-05"}, {"rope_theta", "10000.0"}, {"hidden_act", "\"relu2\""},
        {"tie_word_embeddings", "true"}, {"bos_token_id", "374"}, {"eos_token_id", "383"}, {"quantization_config", NULL}};
    char text[8192];
    size_t len = 0, i;
    int j, first = 1;
    len += (size_t)snprintf(text + len, sizeof text - len, "{");
    for (i = 0; i < sizeof base / sizeof base[0]; i++) {
        const char *value = base[i].value ? base[i].value : quant;
        for (j = 0; j < n_over; j++)
            if (!strcmp(over[j].key, base[i].key)) value = over[j].value;
        if (!value) continue;
        len += (size_t)snprintf(text + len, sizeof text - len, "%s\n  \"%s\": %s", first ? "" : ",", base[i].key, value);
        first = 0;
    }
    for (j = 0; j < n_over; j++) {
        int known = 0;
        for (i = 0; i < sizeof base / sizeof base[0]; i++) known |= !strcmp(over[j].key, base[i].key);
        if (!known && over[j].value)
            len += (size_t)snprintf(text + len, sizeof text - len, ",\n  \"%s\": %s", over[j].key, over[j].value);
    }
    len += (size_t)snprintf(text + len, sizeof text - len, "\n}\n");
    CHECK(write_file(in_work("config.json"), text, len));
}

#define ONLINE "{\"quant_method\": \"bitnet\", \"linear_class\": \"autobitlinear\", \"quantization_mode\": \"online\"}"
#define BITLINEAR "{\"quant_method\": \"bitnet\", \"linear_class\": \"bitlinear\", \"quantization_mode\": \"offline\"}"
#define AUTO_OFFLINE "{\"quant_method\": \"bitnet\", \"linear_class\": \"autobitlinear\", \"quantization_mode\": \"offline\"}"

/* A fresh work directory with a checkpoint, a config and the fixtures' tokenizer. */
static void setup(const ckpt *c, const char *quant, const field *over, int n_over) {
    make_work_dir();
    write_st(in_work("model.safetensors"), c, 0, c->n);
    write_config(quant, over, n_over);
    copy_file(FIXTURES "bf16_online_tied/tokenizer.json", in_work("tokenizer.json"));
    copy_file(FIXTURES "bf16_online_tied/tokenizer_config.json", in_work("tokenizer_config.json"));
}

static int convert_here(bitnet_error *err) {
    return bitnet_convert_hf(work_dir, in_work("out.gguf"), NULL, err);
}

/* Converting the work directory must fail with code and a message containing needle,
   leaving neither the output nor its temporary file. */
static void expect_failure(const char *what, int code, const char *needle) {
    bitnet_error err;
    int rc = convert_here(&err);
    CHECKF(rc == code, "%s: got %d (%s), expected %d", what, rc, err.message, code);
    CHECKF(rc != BITNET_OK && strstr(err.message, needle), "%s: message '%s' does not mention '%s'", what, err.message, needle);
    CHECKF(!exists(in_work("out.gguf")) && !exists(in_work("out.gguf.tmp")), "%s: left an output file", what);
}

static void config_case(const char *what, int packed, const char *quant, const field *over, int n_over, int code,
                        const char *needle) {
    ckpt c;
    make_model(&c, 1, packed);
    setup(&c, quant, over, n_over);
    expect_failure(what, code, needle);
    remove_work_dir();
    free_ckpt(&c);
}

static void test_bad_configs(void) {
    static const struct { const char *what, *key, *value; int code; const char *needle; } cases[] = {
        {"model_type llama", "model_type", "\"llama\"", BITNET_E_UNSUPPORTED, "model_type"},
        {"architectures", "architectures", "[\"LlamaForCausalLM\"]", BITNET_E_UNSUPPORTED, "architectures"},
        {"hidden_act gelu", "hidden_act", "\"gelu\"", BITNET_E_UNSUPPORTED, "hidden_act"},
        {"rope_scaling", "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}", BITNET_E_UNSUPPORTED, "rope_scaling"},
        {"rope_scaling not an object", "rope_scaling", "2.0", BITNET_E_FORMAT, "rope_scaling"},
        {"rope_parameters yarn", "rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 10000.0}", BITNET_E_UNSUPPORTED, "rope_type"},
        {"partial rotary", "partial_rotary_factor", "0.5", BITNET_E_UNSUPPORTED, "partial_rotary_factor"},
        {"attention_bias", "attention_bias", "true", BITNET_E_UNSUPPORTED, "attention_bias"},
        {"head_dim", "head_dim", "16", BITNET_E_UNSUPPORTED, "head_dim"},
        {"hidden_size missing", "hidden_size", NULL, BITNET_E_FORMAT, "hidden_size"},
        {"hidden_size a string", "hidden_size", "\"64\"", BITNET_E_FORMAT, "hidden_size"},
        {"hidden_size not a multiple of 64", "hidden_size", "96", BITNET_E_UNSUPPORTED, "hidden_size"},
        {"num_key_value_heads", "num_key_value_heads", "3", BITNET_E_FORMAT, "num_key_value_heads"},
        {"rms_norm_eps negative", "rms_norm_eps", "-1", BITNET_E_FORMAT, "rms_norm_eps"},
        {"no quantization_config", "quantization_config", NULL, BITNET_E_UNSUPPORTED, "quantization_config"},
        {"quant_method", "quantization_config", "{\"quant_method\": \"gptq\"}", BITNET_E_UNSUPPORTED, "quant_method"},
        {"linear_class", "quantization_config", "{\"quant_method\": \"bitnet\", \"linear_class\": \"fp8linear\"}", BITNET_E_UNSUPPORTED, "linear_class"},
        {"quantization_mode", "quantization_config", "{\"quant_method\": \"bitnet\", \"quantization_mode\": \"later\"}", BITNET_E_UNSUPPORTED, "quantization_mode"},
        {"use_rms_norm", "quantization_config", "{\"quant_method\": \"bitnet\", \"use_rms_norm\": true}", BITNET_E_UNSUPPORTED, "use_rms_norm"},
        {"modules_to_not_convert", "quantization_config", "{\"quant_method\": \"bitnet\", \"modules_to_not_convert\": [\"lm_head\", \"mlp.down_proj\"]}",
         BITNET_E_UNSUPPORTED, "modules_to_not_convert"},
        {"vocab_size", "vocab_size", "400", BITNET_E_FORMAT, "vocab_size"},
        {"num_hidden_layers too many", "num_hidden_layers", "2", BITNET_E_FORMAT, "model.layers.1."},
        {"untied without lm_head", "tie_word_embeddings", "false", BITNET_E_FORMAT, "lm_head"},
        {"eos_token_id", "eos_token_id", "\"x\"", BITNET_E_FORMAT, "eos_token_id"},
    };
    size_t i;
    TEST("convert rejects bad config fields, naming them") {
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            field f;
            f.key = cases[i].key;
            f.value = cases[i].value;
            config_case(cases[i].what, 1, BITLINEAR, &f, 1, cases[i].code, cases[i].needle);
        }
        config_case("bitlinear with float weights", 0, ONLINE,
                    (const field[]){{"quantization_config", BITLINEAR}}, 1, BITNET_E_FORMAT, "linear_class");
        config_case("online with packed weights", 1, AUTO_OFFLINE,
                    (const field[]){{"quantization_config", ONLINE}}, 1, BITNET_E_FORMAT, "online");
    }
    TEST("convert rejects a config.json that is missing or not JSON") {
        bitnet_error err;
        ckpt c;
        CHECK(bitnet_convert_hf("/nonexistent/bitnet", "/tmp/never.gguf", NULL, &err) == BITNET_E_IO && strstr(err.message, "config.json"));
        make_model(&c, 1, 1);
        setup(&c, BITLINEAR, NULL, 0);
        CHECK(write_file(in_work("config.json"), "{\"hidden_size\": 64,", 19));
        expect_failure("truncated config.json", BITNET_E_FORMAT, "config.json");
        CHECK(write_file(in_work("config.json"), "[1, 2]", 6));
        expect_failure("config.json not an object", BITNET_E_FORMAT, "config.json");
        remove_work_dir();
        free_ckpt(&c);
    }
}

/* A checkpoint change, and what the converter must say. */
static void tensor_case(const char *what, int packed, void (*change)(ckpt *), int code, const char *needle) {
    ckpt c;
    make_model(&c, 1, packed);
    change(&c);
    setup(&c, packed ? BITLINEAR : ONLINE, NULL, 0);
    expect_failure(what, code, needle);
    remove_work_dir();
    free_ckpt(&c);
}

static void drop_sub_norm(ckpt *c) { drop(c, "model.layers.0.mlp.ffn_sub_norm.weight"); }
static void drop_scale(ckpt *c) { drop(c, "model.layers.0.self_attn.k_proj.weight_scale"); }
static void drop_embedding(ckpt *c) { drop(c, "model.embed_tokens.weight"); }
static void wrong_shape(ckpt *c) {
    spec *s = find(c, "model.layers.0.self_attn.q_proj.weight");
    s->shape[0] = 32;
    s->shape[1] = 128;
}
static void norm_as_u8(ckpt *c) {
    spec *s = find(c, "model.layers.0.input_layernorm.weight");
    if (!s) return;
    strcpy(s->dtype, "U8");
    s->shape[0] = s->nbytes;
}
static void weights_as_i32(ckpt *c) {
    spec *s = find(c, "model.layers.0.mlp.up_proj.weight");
    if (!s) return;
    strcpy(s->dtype, "I32");
    s->shape[1] /= 4;
}
static void two_scales(ckpt *c) {
    spec *s = find(c, "model.layers.0.mlp.gate_proj.weight_scale");
    free(s->data);
    s->data = (uint8_t *)calloc(4, 1);
    s->nbytes = 4;
    s->shape[0] = 2;
}
static void code_three(ckpt *c) { find(c, "model.layers.0.mlp.down_proj.weight")->data[77] |= 0xc0; }
static void nan_weight(ckpt *c) { set_float(find(c, "model.layers.0.self_attn.v_proj.weight"), 5, NAN); }
static void extra_layer(ckpt *c) {
    spec *s = add(c, "model.layers.1.input_layernorm.weight", "BF16", 1, D, 0);
    fill_random(s, 3, 0.5f, 1.5f);
}

static void test_bad_tensors(void) {
    TEST("convert rejects missing, misshapen and mistyped tensors, naming them") {
        tensor_case("missing norm", 1, drop_sub_norm, BITNET_E_FORMAT, "model.layers.0.mlp.ffn_sub_norm.weight");
        tensor_case("missing weight_scale", 1, drop_scale, BITNET_E_FORMAT, "model.layers.0.self_attn.k_proj.weight_scale");
        tensor_case("missing embedding", 0, drop_embedding, BITNET_E_FORMAT, "model.embed_tokens.weight");
        tensor_case("wrong shape", 1, wrong_shape, BITNET_E_FORMAT, "model.layers.0.self_attn.q_proj.weight");
        tensor_case("norm as U8", 1, norm_as_u8, BITNET_E_FORMAT, "model.layers.0.input_layernorm.weight");
        tensor_case("weights as I32", 1, weights_as_i32, BITNET_E_FORMAT, "model.layers.0.mlp.up_proj.weight");
        tensor_case("weight_scale of two values", 1, two_scales, BITNET_E_FORMAT, "gate_proj.weight_scale");
        tensor_case("packed code 3", 1, code_three, BITNET_E_FORMAT, "code 3");
        tensor_case("NaN master weight", 0, nan_weight, BITNET_E_FORMAT, "v_proj.weight");
        tensor_case("a layer the config does not have", 1, extra_layer, BITNET_E_FORMAT, "num_hidden_layers");
    }
    TEST("convert rejects offline float weights that are not ternary") {
        ckpt c;
        make_model(&c, 1, 0);
        setup(&c, AUTO_OFFLINE, NULL, 0);
        expect_failure("offline float weights without weight_scale", BITNET_E_FORMAT, "weight_scale");
        remove_work_dir();
        {
            int k;
            char name[128];
            for (k = 0; k < 7; k++) {
                snprintf(name, sizeof name, "model.layers.0.%s.weight_scale", proj_hf[k]);
                set_float(add(&c, name, "F32", 1, 1, 0), 0, 1.0f);
            }
        }
        setup(&c, AUTO_OFFLINE, NULL, 0);
        expect_failure("offline float weights that are not -1, 0, 1", BITNET_E_FORMAT, "-1, 0 or 1");
        remove_work_dir();
        free_ckpt(&c);
    }
}

/* ---- corrupt safetensors ---- */

static void write_raw_st(const char *path, const char *header, const uint8_t *data, size_t n) {
    size_t hl = strlen(header), i;
    uint8_t *buf = (uint8_t *)malloc(8 + hl + n + 1);
    for (i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (n) memcpy(buf + 8 + hl, data, n);
    CHECK(write_file(path, buf, 8 + hl + n));
    free(buf);
}

static void test_bad_safetensors(void) {
    TEST("convert rejects corrupt safetensors headers") {
        static const struct { const char *what, *header; const char *needle; } cases[] = {
            {"not JSON", "{\"a\": ", "model.safetensors"},
            {"not an object", "[1, 2, 3]", "not a JSON object"},
            {"unknown dtype", "{\"t\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 2]}}", "dtype"},
            {"no shape", "{\"t\": {\"dtype\": \"U8\", \"data_offsets\": [0, 2]}}", "shape"},
            {"negative dim", "{\"t\": {\"dtype\": \"U8\", \"shape\": [-2], \"data_offsets\": [0, 2]}}", "shape"},
            {"fractional offset", "{\"t\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0.5, 2]}}", "data_offsets"},
            {"reversed offsets", "{\"t\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [2, 1]}}", "data_offsets"},
            {"fewer bytes than the shape", "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", "needs 8 bytes"},
            {"more bytes than the shape", "{\"t\": {\"dtype\": \"BF16\", \"shape\": [1, 3], \"data_offsets\": [0, 8]}}", "needs 6 bytes"},
            {"past the end", "{\"t\": {\"dtype\": \"U8\", \"shape\": [64], \"data_offsets\": [0, 64]}}", "data section"},
            {"overlap", "{\"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
                        " \"b\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [4, 12]}}", "overlap"},
            {"huge shape", "{\"t\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 16]}}",
             "impossibly large"},
        };
        static const uint8_t data[16] = {0};
        size_t i;
        ckpt c;
        make_model(&c, 1, 1);
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            setup(&c, BITLINEAR, NULL, 0);
            write_raw_st(in_work("model.safetensors"), cases[i].header, data, sizeof data);
            expect_failure(cases[i].what, BITNET_E_FORMAT, cases[i].needle);
            remove_work_dir();
        }
        setup(&c, BITLINEAR, NULL, 0);
        {
            uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
            CHECK(write_file(in_work("model.safetensors"), big, sizeof big));
            expect_failure("header length past the end", BITNET_E_FORMAT, "header length");
            CHECK(write_file(in_work("model.safetensors"), big, 5));
            expect_failure("shorter than 8 bytes", BITNET_E_FORMAT, "too short");
        }
        remove_work_dir();
        free_ckpt(&c);
    }
    TEST("convert rejects a checkpoint truncated anywhere") {
        ckpt c;
        uint8_t *whole;
        size_t size = 0, cut, tried = 0;
        int all_failed = 1;
        make_model(&c, 1, 1);
        setup(&c, BITLINEAR, NULL, 0);
        whole = read_file(in_work("model.safetensors"), &size);
        CHECK(whole != NULL);
        for (cut = 0; whole && cut < size; cut += cut < 4096 ? 37 : 1531) {
            bitnet_error err;
            int rc;
            CHECK(write_file(in_work("model.safetensors"), whole, cut));
            rc = convert_here(&err);
            tried++;
            if (rc == BITNET_OK || (rc != BITNET_E_FORMAT && rc != BITNET_E_IO)) {
                all_failed = 0;
                CHECKF(0, "truncated at %zu of %zu: rc %d (%s)", cut, size, rc, err.message);
            }
            CHECK(!exists(in_work("out.gguf")) && !exists(in_work("out.gguf.tmp")));
        }
        CHECK(all_failed && tried > 100);
        free(whole);
        remove_work_dir();
        free_ckpt(&c);
    }
}

/* ---- shards ---- */

static void write_index(const char *body) {
    CHECK(write_file(in_work("model.safetensors.index.json"), body, strlen(body)));
}

/* Splits the checkpoint in two shards and writes an index of the first n tensors
   in shard 1 and the rest in shard 2, with one entry optionally redirected. */
static void write_shards(const ckpt *c, int split, const char *wrong_name, const char *wrong_file) {
    char *idx = (char *)malloc(65536);
    size_t len = 0;
    int i;
    write_st(in_work("model-00001-of-00002.safetensors"), c, 0, split);
    write_st(in_work("model-00002-of-00002.safetensors"), c, split, c->n - split);
    len += (size_t)snprintf(idx + len, 65536 - len, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (i = 0; i < c->n; i++) {
        const char *file = i < split ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
        if (wrong_name && !strcmp(c->t[i].name, wrong_name)) file = wrong_file;
        len += (size_t)snprintf(idx + len, 65536 - len, "%s\"%s\": \"%s\"", i ? ", " : "", c->t[i].name, file);
    }
    snprintf(idx + len, 65536 - len, "}}");
    write_index(idx);
    free(idx);
}

static void test_shards(void) {
    TEST("convert reads sharded checkpoints and rejects inconsistent indexes") {
        ckpt c;
        bitnet_error err;
        int rc;
        make_model(&c, 1, 1);
        setup(&c, BITLINEAR, NULL, 0);
        remove(in_work("model.safetensors"));
        write_shards(&c, 5, NULL, NULL);
        rc = convert_here(&err);
        CHECKF(rc == BITNET_OK, "sharded: %s", err.message);
        remove(in_work("out.gguf"));

        write_shards(&c, 5, "model.norm.weight", "model-00002-of-00002.safetensors");
        expect_failure("index names the wrong shard", BITNET_E_FORMAT, "model.norm.weight");
        write_shards(&c, 5, "model.norm.weight", "model-00003-of-00002.safetensors");
        expect_failure("index names a missing shard", BITNET_E_IO, "model-00003-of-00002.safetensors");
        write_shards(&c, 5, "model.norm.weight", "../model-00001-of-00002.safetensors");
        expect_failure("index names a path", BITNET_E_FORMAT, "file name");
        write_index("{\"weight_map\": {}}");
        expect_failure("empty weight_map", BITNET_E_FORMAT, "weight_map");
        write_index("{\"weight_map\": ");
        expect_failure("index not JSON", BITNET_E_FORMAT, "model.safetensors.index.json");
        /* the same tensor in both shards */
        write_st(in_work("model-00001-of-00002.safetensors"), &c, 0, 6);
        write_st(in_work("model-00002-of-00002.safetensors"), &c, 5, c.n - 5);
        write_shards(&c, 5, NULL, NULL);
        write_st(in_work("model-00002-of-00002.safetensors"), &c, 0, c.n);
        expect_failure("a tensor in two shards", BITNET_E_FORMAT, "twice");
        remove(in_work("model.safetensors.index.json"));
        expect_failure("no weights at all", BITNET_E_IO, "model.safetensors");
        remove_work_dir();
        free_ckpt(&c);
    }
}

/* ---- conversions of small checkpoints ---- */

static int convert_and_open(gguf_file *m) {
    bitnet_error err;
    int rc = convert_here(&err);
    CHECKF(rc == BITNET_OK, "%s", err.message);
    if (rc == BITNET_OK) gguf_open(m, in_work("out.gguf"));
    else memset(m, 0, sizeof *m);
    return rc == BITNET_OK && m->ok;
}

static void test_small_conversions(void) {
    TEST("convert: WeightQuant ties round half to even, and the absmean floor") {
        ckpt c;
        gguf_file m;
        spec *q, *k;
        size_t i;
        make_model(&c, 1, 0);
        /* |w| cycles 0.5, 1.5, 2.5, 0.25 (mean exactly 1.1875)...: use mean 1 instead:
           values 0.5, 1.5 alternate with signs, so s = 1 and w*s hits the ties exactly */
        q = find(&c, "model.layers.0.self_attn.q_proj.weight");
        for (i = 0; i < (size_t)D * D; i++) set_float(q, i, (i % 4 == 0 ? 0.5f : i % 4 == 1 ? 1.5f : i % 4 == 2 ? -0.5f : -1.5f));
        k = find(&c, "model.layers.0.self_attn.k_proj.weight"); /* all zero: the absmean is floored at 1e-5 */
        memset(k->data, 0, k->nbytes);
        setup(&c, ONLINE, NULL, 0);
        if (convert_and_open(&m)) {
            const bitnet__gguf_tensor *tq = tensor(&m, "blk.0.attn_q.weight"), *sq = tensor(&m, "blk.0.attn_q.scale"),
                                      *tk = tensor(&m, "blk.0.attn_k.weight"), *sk = tensor(&m, "blk.0.attn_k.scale");
            int bad = 0;
            CHECK(tq && sq && tk && sk);
            if (tq && sq && tk && sk) {
                for (i = 0; i < (size_t)D * D; i++) {
                    static const int want[4] = {0, 1, 0, -1}; /* round(0.5) = 0, round(1.5) = 2 -> 1 */
                    bad += q2_value(tq, i / D, i % D) != want[i % 4];
                }
                CHECKF(bad == 0, "%d ties rounded away from even", bad);
                CHECK(f32_at(sq->data) == 1.0f);
                for (i = 0; i < (size_t)KV * D; i++) bad += q2_value(tk, i / D, i % D) != 0;
                CHECK(bad == 0);
                CHECK(f32_at(sk->data) == 1.0f / (1.0f / 1e-5f));
            }
            gguf_close(&m);
        }
        remove_work_dir();
        free_ckpt(&c);
    }
    TEST("convert: online ternarization of random bf16 weights against a direct computation") {
        ckpt c;
        gguf_file m;
        int k, bad = 0;
        make_model(&c, 1, 0);
        setup(&c, ONLINE, NULL, 0);
        if (convert_and_open(&m)) {
            for (k = 0; k < 7; k++) {
                char name[128];
                const spec *w;
                const bitnet__gguf_tensor *t, *s;
                double sum = 0;
                float mean, sc;
                size_t i, n, cols;
                snprintf(name, sizeof name, "model.layers.0.%s.weight", proj_hf[k]);
                w = find(&c, name);
                n = w->nbytes / 2;
                cols = (size_t)w->shape[1];
                for (i = 0; i < n; i++) sum += fabs(bitnet__bf16_to_f32((uint16_t)(w->data[2 * i] | w->data[2 * i + 1] << 8)));
                mean = (float)(sum / (double)n);
                sc = 1.0f / mean;
                snprintf(name, sizeof name, "blk.0.%s.weight", proj_gg[k]);
                t = tensor(&m, name);
                snprintf(name, sizeof name, "blk.0.%s.scale", proj_gg[k]);
                s = tensor(&m, name);
                CHECK(t && s);
                if (!t || !s) continue;
                CHECK(f32_at(s->data) == 1.0f / sc);
                for (i = 0; i < n; i++) {
                    float v = bitnet__bf16_to_f32((uint16_t)(w->data[2 * i] | w->data[2 * i + 1] << 8)) * sc;
                    int want = (int)fmaxf(-1.0f, fminf(1.0f, rintf(v)));
                    bad += q2_value(t, i / cols, i % cols) != want;
                }
            }
            CHECKF(bad == 0, "%d ternary values differ", bad);
            gguf_close(&m);
        }
        remove_work_dir();
        free_ckpt(&c);
    }
    TEST("convert: bitlinear divides by weight_scale, autobitlinear multiplies") {
        ckpt c;
        gguf_file m;
        make_model(&c, 1, 1); /* weight_scale of projection k is 0.5 + k */
        setup(&c, BITLINEAR, NULL, 0);
        if (convert_and_open(&m)) {
            const bitnet__gguf_tensor *s0 = tensor(&m, "blk.0.attn_q.scale"), *s3 = tensor(&m, "blk.0.attn_output.scale");
            CHECK(s0 && s3 && f32_at(s0->data) == 2.0f && f32_at(s3->data) == 1.0f / 3.5f);
            gguf_close(&m);
        }
        remove_work_dir();
        setup(&c, AUTO_OFFLINE, NULL, 0);
        if (convert_and_open(&m)) {
            const bitnet__gguf_tensor *s0 = tensor(&m, "blk.0.attn_q.scale"), *s3 = tensor(&m, "blk.0.attn_output.scale");
            CHECK(s0 && s3 && f32_at(s0->data) == 0.5f && f32_at(s3->data) == 3.5f);
            gguf_close(&m);
        }
        remove_work_dir();
        free_ckpt(&c);
    }
    TEST("convert: offline float ternary weights, F16 embedding, untied head, eos list, RoPE dicts, no tokenizer_config") {
        ckpt c;
        gguf_file m;
        int k;
        make_model(&c, 1, 0);
        for (k = 0; k < 7; k++) {
            char name[128];
            spec *w;
            size_t i;
            snprintf(name, sizeof name, "model.layers.0.%s.weight", proj_hf[k]);
            w = find(&c, name);
            for (i = 0; i < w->nbytes / 2; i++) set_float(w, i, (float)((int)(i % 3) - 1));
            snprintf(name, sizeof name, "model.layers.0.%s.weight_scale", proj_hf[k]);
            set_float(add(&c, name, "F32", 1, 1, 0), 0, 0.25f);
        }
        {
            spec *e = find(&c, "model.embed_tokens.weight");
            strcpy(e->dtype, "F16");
            fill_random(e, 5, -0.2f, 0.2f);
            fill_random(add(&c, "lm_head.weight", "F32", 2, V, D), 6, -0.2f, 0.2f);
        }
        setup(&c, AUTO_OFFLINE,
              (const field[]){{"tie_word_embeddings", "false"}, {"eos_token_id", "[383, 375]"},
                              {"rope_scaling", "{\"rope_type\": \"default\", \"rope_theta\": 123.0}"},
                              {"rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": 4321.0}"}}, 4);
        remove(in_work("tokenizer_config.json"));
        if (convert_and_open(&m)) {
            const bitnet__gguf_tensor *e = tensor(&m, "token_embd.weight"), *o = tensor(&m, "output.weight"),
                                      *w = tensor(&m, "blk.0.ffn_up.weight"), *s = tensor(&m, "blk.0.ffn_up.scale");
            size_t i;
            int bad = 0;
            CHECK(e && e->type == BITNET__TYPE_F16 && o && o->type == BITNET__TYPE_F32);
            CHECK(w && s && f32_at(s->data) == 0.25f);
            for (i = 0; w && i < (size_t)FF * D; i++) bad += q2_value(w, i / D, i % D) != (int)(i % 3) - 1;
            CHECK(bad == 0);
            CHECK(meta_int(&m, "tokenizer.ggml.bos_token_id") == 374); /* <|begin_of_text|> by name */
            CHECK(meta_int(&m, "tokenizer.ggml.eos_token_id") == 375); /* <|end_of_text|> by name, not config.json */
            CHECK(meta_f32(&m, "bitnet.rope.freq_base") == 4321.0f);  /* transformers 5's rope_parameters win */
            gguf_close(&m);
        }
        remove_work_dir();
        free_ckpt(&c);
    }
}

/* ---- progress, cancelling, odd arguments ---- */

typedef struct progress_log {
    int calls, cancel_at, decreasing;
    float last;
} progress_log;

static int on_progress(float fraction, const char *what, void *user) {
    progress_log *p = (progress_log *)user;
    if (fraction < p->last) p->decreasing = 1;
    p->last = fraction;
    if (!what || !*what) p->decreasing = 1;
    return ++p->calls == p->cancel_at;
}

static void test_progress_and_arguments(void) {
    TEST("convert: progress runs from 0 to 1 and can cancel") {
        ckpt c;
        bitnet_error err;
        bitnet_convert_params params;
        progress_log log;
        make_model(&c, 1, 1);
        setup(&c, BITLINEAR, NULL, 0);
        memset(&log, 0, sizeof log);
        params.progress = on_progress;
        params.progress_user = &log;
        CHECK(bitnet_convert_hf(work_dir, in_work("out.gguf"), &params, &err) == BITNET_OK);
        CHECK(log.calls > 10 && !log.decreasing && log.last == 1.0f);
        remove(in_work("out.gguf"));
        memset(&log, 0, sizeof log);
        log.cancel_at = 5;
        CHECK(bitnet_convert_hf(work_dir, in_work("out.gguf"), &params, &err) == BITNET_E_CANCELLED);
        CHECK(!exists(in_work("out.gguf")) && !exists(in_work("out.gguf.tmp")));
        remove_work_dir();
        free_ckpt(&c);
    }
    TEST("convert: NULL arguments, missing tokenizer, an output that cannot be created") {
        ckpt c;
        bitnet_error err;
        CHECK(bitnet_convert_hf(NULL, "x.gguf", NULL, &err) == BITNET_E_ARG);
        CHECK(bitnet_convert_hf(".", NULL, NULL, NULL) == BITNET_E_ARG);
        make_model(&c, 1, 1);
        setup(&c, BITLINEAR, NULL, 0);
        CHECK(bitnet_convert_hf(work_dir, "/nonexistent-dir/out.gguf", NULL, &err) == BITNET_E_IO);
        /* a tokenizer larger than the embedding */
        write_config(BITLINEAR, (const field[]){{"vocab_size", "300"}}, 1);
        find(&c, "model.embed_tokens.weight")->shape[0] = 300;
        find(&c, "model.embed_tokens.weight")->nbytes = 300 * D * 2;
        write_st(in_work("model.safetensors"), &c, 0, c.n);
        expect_failure("tokenizer larger than vocab_size", BITNET_E_FORMAT, "tokens");
        remove(in_work("tokenizer.json"));
        expect_failure("no tokenizer.json", BITNET_E_IO, "tokenizer.json");
        remove_work_dir();
        free_ckpt(&c);
    }
}

int main(void) {
    make_work_dir(); /* for the fixture outputs */
    test_fixtures();
    remove_work_dir();
    test_bad_configs();
    test_bad_tensors();
    test_bad_safetensors();
    test_shards();
    test_small_conversions();
    test_progress_and_arguments();
    return TEST_EXIT();
}
