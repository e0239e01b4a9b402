/* bitnet.h - BitNet b1.58 inference in one C header.          public domain-style, see end of file

   Runs BitNet b1.58 language models (ternary weights, 8-bit activations; reference
   model: microsoft/bitnet-b1.58-2B-4T) on the CPU, and on NVIDIA GPUs together with
   bitnet_cuda.cu.  No dependency beyond libc and pthreads (and the CUDA runtime for
   the GPU backend).

   BUILD
      In exactly one C or C++ file:

         #define BITNET_IMPLEMENTATION
         #include "bitnet.h"

      and link with -lpthread -lm.  For the GPU backend also compile bitnet_cuda.cu
      with nvcc, define BITNET_CUDA before the include above and link with -lcudart:

         nvcc -O3 -c bitnet_cuda.cu -gencode=arch=compute_90,code=sm_90 \
              -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_75,code=sm_75
         cc -O2 -march=native -DBITNET_CUDA app.c bitnet_cuda.o -lcudart -lpthread -lm

   USAGE
      bitnet_error err;
      bitnet_model *model = bitnet_model_load("model.gguf", NULL, &err);
      if (!model) { fprintf(stderr, "%s\n", err.message); return 1; }
      bitnet_context *ctx = bitnet_context_create(model, NULL, &err);
      bitnet_sampler *smp = bitnet_sampler_create(NULL, &err);

      bitnet_token toks[256];
      int n = bitnet_tokenize(model, "The capital of France is", -1,
                              BITNET_TOKENIZE_ADD_BOS, toks, 256, &err);
      bitnet_eval(ctx, toks, n, 0, &err);                  // prompt
      bitnet_token t = bitnet_sampler_sample(smp, bitnet_logits(ctx, -1),
                                             bitnet_model_hparams(model)->n_vocab);
      for (int i = 0; i < 32 && !bitnet_token_is_eog(model, t); i++) {
          char piece[256];
          int len = bitnet_token_to_piece(model, t, piece, sizeof piece);
          fwrite(piece, 1, len, stdout);
          bitnet_eval_sample(ctx, t, smp, &t, &err);       // one decode step
      }
      bitnet_sampler_free(smp); bitnet_context_free(ctx); bitnet_model_free(model);

      Every function that can fail takes a `bitnet_error *` last (it may be NULL) and
      reports failure through its return value: a negative `BITNET_E_*` code or NULL.
      The message says what went wrong and where.

   THREAD SAFETY
      A loaded model is immutable: any number of threads may use one model at once,
      and many contexts may share one model.  A context or a sampler must be used by
      one thread at a time.  There is no global mutable state.

   OPTIONS (define before the #include that has BITNET_IMPLEMENTATION)
      BITNET_STATIC             make every function static (private to that file)
      BITNET_MALLOC/BITNET_FREE/BITNET_REALLOC   replace the allocator
      BITNET_ASSERT(x)          replace assert() for internal invariants
      BITNET_NO_SIMD            use only the portable scalar kernels
      BITNET_NO_THREADS         no pthreads: every context runs on the calling thread
      BITNET_CUDA               enable the CUDA backend (link bitnet_cuda.cu)

   MODEL FILE FORMAT: see the section "GGUF model file" below.
*/
#ifndef BITNET_H
#define BITNET_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define BITNET__UNUSED __attribute__((unused))
#else
#define BITNET__UNUSED
#endif

#ifdef BITNET_STATIC
#define BITNET_API static BITNET__UNUSED
#else
#ifdef __cplusplus
#define BITNET_API extern "C"
#else
#define BITNET_API extern
#endif
#endif

/* ---------------------------------------------------------------------------
   Errors
   ------------------------------------------------------------------------- */
enum {
    BITNET_OK                 =  0,
    BITNET_E_ARG              = -1,  /* invalid argument (NULL, out of range, bad flag) */
    BITNET_E_IO               = -2,  /* a file could not be opened, read or written */
    BITNET_E_FORMAT           = -3,  /* malformed or inconsistent input (file, JSON, ...) */
    BITNET_E_UNSUPPORTED      = -4,  /* well-formed, but not something this library runs */
    BITNET_E_NOMEM            = -5,  /* out of memory (host or device) */
    BITNET_E_CONTEXT_FULL     = -6,  /* the tokens do not fit in the context */
    BITNET_E_BUFFER_TOO_SMALL = -7,  /* an output buffer is too small; err->needed says how big */
    BITNET_E_BACKEND          = -8,  /* the GPU backend failed (no device, launch error, ...) */
    BITNET_E_CANCELLED        = -9   /* a progress callback asked to stop */
};

typedef struct bitnet_error {
    int code;             /* BITNET_OK or a BITNET_E_* value */
    size_t needed;        /* with BITNET_E_BUFFER_TOO_SMALL: the size that is needed */
    char message[256];    /* human-readable, one line, no trailing newline */
} bitnet_error;

BITNET_API const char *bitnet_status_string(int code);

/* ---------------------------------------------------------------------------
   Model
   ------------------------------------------------------------------------- */
typedef int32_t bitnet_token;
typedef struct bitnet_model   bitnet_model;
typedef struct bitnet_context bitnet_context;
typedef struct bitnet_sampler bitnet_sampler;

typedef struct bitnet_hparams {
    int n_vocab;          /* rows of the token embedding */
    int n_embd;           /* hidden size */
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;         /* n_embd / n_head */
    int n_ff;             /* FFN (intermediate) size */
    int n_ctx_train;      /* maximum context length the model was trained for */
    float rope_theta;
    float rms_eps;
    int tied_embeddings;  /* 1: the LM head is the token embedding */
    bitnet_token bos;     /* -1 where the model has none */
    bitnet_token eos;
    bitnet_token eot;     /* end of turn (<|eot_id|>), -1 where none */
} bitnet_hparams;

typedef struct bitnet_model_params {
    int use_mmap;         /* 1 (default): map the file; 0: read it into memory */
} bitnet_model_params;

BITNET_API bitnet_model_params bitnet_model_default_params(void);

/* Loads and validates a model file.  Returns NULL on failure (err says why). */
BITNET_API bitnet_model *bitnet_model_load(const char *path, const bitnet_model_params *params,
                                           bitnet_error *err);
/* Same, from a buffer the caller keeps alive and unchanged until bitnet_model_free. */
BITNET_API bitnet_model *bitnet_model_load_from_memory(const void *data, size_t size,
                                                       bitnet_error *err);
BITNET_API void bitnet_model_free(bitnet_model *model);
BITNET_API const bitnet_hparams *bitnet_model_hparams(const bitnet_model *model);
/* Writes a one-line description ("bitnet 2.4B, 30 layers, ...") like snprintf. */
BITNET_API int bitnet_model_describe(const bitnet_model *model, char *buf, size_t size);

/* ---------------------------------------------------------------------------
   Context: a KV cache, scratch buffers, threads and a backend
   ------------------------------------------------------------------------- */
typedef enum bitnet_backend {
    BITNET_BACKEND_AUTO = 0,  /* CUDA when compiled in and a device is present, else CPU */
    BITNET_BACKEND_CPU  = 1,
    BITNET_BACKEND_CUDA = 2
} bitnet_backend;

typedef struct bitnet_context_params {
    int n_ctx;            /* KV cache length in tokens; 0 = min(4096, model maximum) */
    int n_threads;        /* CPU threads; 0 = all online cores */
    bitnet_backend backend;
    int cuda_device;      /* CUDA device ordinal */
    int lm_head_int8;     /* CUDA: int8 per-row LM head instead of bf16 (faster, approximate) */
} bitnet_context_params;

BITNET_API bitnet_context_params bitnet_context_default_params(void);
BITNET_API bitnet_context *bitnet_context_create(bitnet_model *model,
                                                 const bitnet_context_params *params,
                                                 bitnet_error *err);
BITNET_API void bitnet_context_free(bitnet_context *ctx);
BITNET_API bitnet_backend bitnet_context_backend(const bitnet_context *ctx);
BITNET_API int bitnet_n_ctx(const bitnet_context *ctx);
/* Number of positions in the KV cache (tokens evaluated so far). */
BITNET_API int bitnet_n_past(const bitnet_context *ctx);

#define BITNET_EVAL_ALL_LOGITS 1  /* keep the logits of every token of the batch */

/* Evaluates n_tokens tokens at positions n_past .. n_past+n_tokens-1.  On error the
   context is unchanged (n_past stays where it was). */
BITNET_API int bitnet_eval(bitnet_context *ctx, const bitnet_token *tokens, int n_tokens,
                           int flags, bitnet_error *err);
/* Logits (n_vocab floats) of token i of the last batch; i = -1: the last token.
   Only the last token has logits unless BITNET_EVAL_ALL_LOGITS was given.
   NULL if there are none.  Valid until the next eval or truncate. */
BITNET_API const float *bitnet_logits(bitnet_context *ctx, int i);
/* Evaluates one token and samples the next with `sampler`.  On a CUDA context the
   logits stay on the GPU and only the token id comes back (when the sampler allows
   it); bitnet_logits(ctx, -1) still works afterwards (it copies on demand). */
BITNET_API int bitnet_eval_sample(bitnet_context *ctx, bitnet_token token,
                                  bitnet_sampler *sampler, bitnet_token *next,
                                  bitnet_error *err);
/* Drops every position >= n_keep from the KV cache (0 <= n_keep <= n_past). */
BITNET_API int bitnet_context_truncate(bitnet_context *ctx, int n_keep, bitnet_error *err);
BITNET_API void bitnet_context_reset(bitnet_context *ctx);

/* ---------------------------------------------------------------------------
   Sampler
   ------------------------------------------------------------------------- */
typedef struct bitnet_sampler_params {
    float temperature;     /* <= 0: greedy (argmax) */
    int   top_k;           /* keep the k most likely tokens; 0 = off */
    float top_p;           /* nucleus: smallest set with probability >= top_p; 1 = off */
    float min_p;           /* drop tokens below min_p * p(best); 0 = off */
    float repeat_penalty;  /* divide positive / multiply negative logits of recent tokens; 1 = off */
    int   repeat_last_n;   /* how many recent tokens the penalty looks at */
    uint64_t seed;         /* the same seed gives the same samples */
} bitnet_sampler_params;

BITNET_API bitnet_sampler_params bitnet_sampler_default_params(void);
/* params NULL: defaults.  The sampler works for any vocabulary size. */
BITNET_API bitnet_sampler *bitnet_sampler_create(const bitnet_sampler_params *params,
                                                 bitnet_error *err);
BITNET_API void bitnet_sampler_free(bitnet_sampler *sampler);
/* Picks a token from n_vocab logits (not modified) and records it in the history. */
BITNET_API bitnet_token bitnet_sampler_sample(bitnet_sampler *sampler, const float *logits,
                                              int n_vocab);
/* Adds a token (e.g. of the prompt) to the history the repetition penalty sees. */
BITNET_API void bitnet_sampler_accept(bitnet_sampler *sampler, bitnet_token token);
/* Forgets the history and reseeds. */
BITNET_API void bitnet_sampler_reset(bitnet_sampler *sampler);
BITNET_API const bitnet_sampler_params *bitnet_sampler_get_params(const bitnet_sampler *s);

/* ---------------------------------------------------------------------------
   Tokenizer and chat template          (filled in by the tokenizer section)
   ------------------------------------------------------------------------- */
#define BITNET_TOKENIZE_ADD_BOS  1  /* prepend the BOS token */
#define BITNET_TOKENIZE_SPECIAL  2  /* recognise special-token text such as <|eot_id|> */

/* Tokenizes len bytes of text (len < 0: NUL-terminated).  Returns the number of
   tokens, or a negative code: BITNET_E_BUFFER_TOO_SMALL when more than max_tokens
   are needed (err->needed tells how many). */
BITNET_API int bitnet_tokenize(const bitnet_model *model, const char *text, ptrdiff_t len,
                               int flags, bitnet_token *out, int max_tokens,
                               bitnet_error *err);
/* Writes the bytes of one token (no NUL); special tokens give their text.  Returns
   the byte count (which may exceed size: then nothing was written), or < 0. */
BITNET_API int bitnet_token_to_piece(const bitnet_model *model, bitnet_token token,
                                     char *buf, size_t size);
/* 1 for end-of-generation tokens (end of text, end of turn). */
BITNET_API int bitnet_token_is_eog(const bitnet_model *model, bitnet_token token);

/* ---------------------------------------------------------------------------
   Host-side packing for the GPU kernels (layout documented at the implementation)
   ------------------------------------------------------------------------- */
/* Bytes of the packed form of an n x k ternary matrix (n % 16 == 0, k % 32 == 0). */
BITNET_API size_t bitnet_gpu_packed_size(int n, int k);
/* w: n x k row-major values in {-1, 0, 1}.  Returns BITNET_OK or BITNET_E_ARG. */
BITNET_API int bitnet_gpu_pack(const int8_t *w, int n, int k, uint8_t *packed);
BITNET_API int bitnet_gpu_unpack(const uint8_t *packed, int n, int k, int8_t *w);

/* ---------------------------------------------------------------------------
   Converter: Hugging Face checkpoint directory -> model file
   ------------------------------------------------------------------------- */
typedef struct bitnet_convert_params {
    /* Called now and then with the fraction done (0..1) and a short status text;
       return nonzero to cancel.  May be NULL. */
    int (*progress)(float fraction, const char *what, void *user);
    void *progress_user;
} bitnet_convert_params;

BITNET_API int bitnet_convert_hf(const char *hf_dir, const char *out_path,
                                 const bitnet_convert_params *params, bitnet_error *err);

/* Writes a model file with random ternary weights of the given shape (for
   benchmarks and tests).  Needs only the shape fields of hp; the vocabulary is
   synthetic unless tokenizer_json names a Hugging Face tokenizer.json to embed. */
BITNET_API int bitnet_write_random_model(const char *out_path, const bitnet_hparams *hp,
                                         uint64_t seed, const char *tokenizer_json,
                                         bitnet_error *err);

#endif /* BITNET_H */

/* ---------------------------------------------------------------------------
   Internal: the C ABI between this header and bitnet_cuda.cu (not for users).
   The header packs the weights on the host ("Host-side packing for the GPU
   kernels") and hands plain pointers to bitnet_cuda.cu, which uploads them and
   runs the decode step.  Errors come back as BITNET_E_* codes, message in err.
   ------------------------------------------------------------------------- */
#if (defined(BITNET_CUDA) && defined(BITNET_IMPLEMENTATION)) || defined(BITNET_CUDA_SOURCE)
#ifndef BITNET__CUDA_ABI_H
#define BITNET__CUDA_ABI_H
#ifdef __cplusplus
#define BITNET__CUDA_FN extern "C"
#else
#define BITNET__CUDA_FN extern
#endif

typedef struct bitnet__cuda_shape {
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
    int relu2;                /* FFN activation: 1 ReLU^2, 0 SiLU */
    int embd_f16;             /* element type of the embedding and LM head: 0 bf16, 1 f16 */
    int tied;                 /* the LM head is the token embedding */
    float rms_eps;
} bitnet__cuda_shape;

/* One layer in host memory, the matrices already in the GPU layout:
     qkv      n_embd + 2 kv_dim rows: per head (q heads, k heads, v heads) and per
              16-row tile j, dims 8j..8j+7 then their RoPE partners half + 8j..
     gate_up  2 n_ff rows: per tile t, gate rows 8t..8t+7 then up rows 8t..8t+7 */
typedef struct bitnet__cuda_layer {
    const float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm;
    const uint8_t *qkv, *wo, *gate_up, *down;
    float q_scale, k_scale, v_scale, o_scale, gate_scale, up_scale, down_scale;
} bitnet__cuda_layer;

/* Checks the shape and the device, uploads the embedding (and the untied LM head),
   the final norm and the RoPE frequencies (head_dim / 2 floats); the layers follow
   with bitnet__cuda_model_set_layer. */
BITNET__CUDA_FN int bitnet__cuda_model_create(const bitnet__cuda_shape *shape, int device, const void *tok_embd,
                                              const void *output, const float *output_norm, const float *rope_inv_freq,
                                              void **out, bitnet_error *err);
BITNET__CUDA_FN int bitnet__cuda_model_set_layer(void *model, int layer, const bitnet__cuda_layer *w, bitnet_error *err);
BITNET__CUDA_FN void bitnet__cuda_model_free(void *model);
/* Bytes of device memory the model holds; the device it is on. */
BITNET__CUDA_FN size_t bitnet__cuda_model_bytes(const void *model);
BITNET__CUDA_FN int bitnet__cuda_model_device(const void *model);
/* Number of CUDA devices (0 when there is no driver or no device). */
BITNET__CUDA_FN int bitnet__cuda_device_count(void);
/* A context: KV cache for n_ctx positions, buffers, the captured decode step.  The
   int8 LM head is built on the device the first time a context asks for it. */
BITNET__CUDA_FN int bitnet__cuda_context_create(void *model, int n_ctx, int lm_head_int8, void **out, bitnet_error *err);
BITNET__CUDA_FN void bitnet__cuda_context_free(void *ctx);
BITNET__CUDA_FN size_t bitnet__cuda_context_bytes(const void *ctx);
/* Runs one decode step: token at position pos (0 <= pos < n_ctx; the cache holds
   positions 0 .. pos - 1).  next: where to store the argmax of the logits, or NULL
   (then the call may return before the GPU is done). */
BITNET__CUDA_FN int bitnet__cuda_decode(void *ctx, bitnet_token token, int pos, bitnet_token *next, bitnet_error *err);
/* Copies the logits of the last step (n_vocab floats) to host memory. */
BITNET__CUDA_FN int bitnet__cuda_get_logits(void *ctx, float *dst, bitnet_error *err);
#endif
#endif

/* ===========================================================================
   ===========================================================================
                               IMPLEMENTATION
   ===========================================================================
   =========================================================================== */
#ifdef BITNET_IMPLEMENTATION
#ifndef BITNET_IMPLEMENTATION_DONE
#define BITNET_IMPLEMENTATION_DONE

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(BITNET_MALLOC) && defined(BITNET_FREE) && defined(BITNET_REALLOC)
#elif !defined(BITNET_MALLOC) && !defined(BITNET_FREE) && !defined(BITNET_REALLOC)
#define BITNET_MALLOC(sz)       malloc(sz)
#define BITNET_REALLOC(p, sz)   realloc(p, sz)
#define BITNET_FREE(p)          free(p)
#else
#error "define all or none of BITNET_MALLOC, BITNET_FREE and BITNET_REALLOC"
#endif

#ifndef BITNET_ASSERT
#include <assert.h>
#define BITNET_ASSERT(x) assert(x)
#endif

#if !defined(_WIN32)
#define BITNET__HAVE_MMAP 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#ifndef BITNET_NO_THREADS
#include <pthread.h>
#endif

/* Internal functions are static; BITNET__ names and types are private. */
#define BITNET__FN static BITNET__UNUSED

/* ===========================================================================
   Utilities: errors, allocation, half floats, files
   =========================================================================== */

BITNET_API const char *bitnet_status_string(int code) {
    switch (code) {
    case BITNET_OK:                 return "ok";
    case BITNET_E_ARG:              return "invalid argument";
    case BITNET_E_IO:               return "input/output error";
    case BITNET_E_FORMAT:           return "malformed input";
    case BITNET_E_UNSUPPORTED:      return "unsupported";
    case BITNET_E_NOMEM:            return "out of memory";
    case BITNET_E_CONTEXT_FULL:     return "context full";
    case BITNET_E_BUFFER_TOO_SMALL: return "buffer too small";
    case BITNET_E_BACKEND:          return "backend failure";
    case BITNET_E_CANCELLED:        return "cancelled";
    default:                        return "unknown error";
    }
}

#if defined(__GNUC__) || defined(__clang__)
#define BITNET__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BITNET__PRINTF(a, b)
#endif

/* Records an error and returns its code, so failures read `return bitnet__fail(...)`. */
BITNET__FN int bitnet__fail(bitnet_error *err, int code, const char *fmt, ...) BITNET__PRINTF(3, 4);
BITNET__FN int bitnet__fail(bitnet_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        err->needed = 0;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

BITNET__FN void bitnet__ok(bitnet_error *err) {
    if (err) { err->code = BITNET_OK; err->needed = 0; err->message[0] = 0; }
}

BITNET__FN void *bitnet__calloc(size_t n, size_t size) {
    void *p;
    size_t bytes;
    if (size && n > SIZE_MAX / size) return NULL;
    bytes = n * size;
    p = BITNET_MALLOC(bytes > 0 ? bytes : 1);
    if (p) memset(p, 0, n * size);
    return p;
}

BITNET__FN char *bitnet__strndup(const char *s, size_t n) {
    char *d = (char *)BITNET_MALLOC(n + 1);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}

BITNET__FN float bitnet__bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, NaN stays NaN (as torch does). */
BITNET__FN uint16_t bitnet__f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

BITNET__FN float bitnet__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    float f;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

BITNET__FN uint16_t bitnet__f32_to_f16(float f) {
    uint32_t u, sign, man;
    int exp;
    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000;
    exp = (int)((u >> 23) & 0xff) - 127 + 15;
    man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        uint32_t shift, half, r;
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        shift = (uint32_t)(14 - exp);
        half = 1u << (shift - 1);
        r = man >> shift;
        if ((man & ((1u << shift) - 1)) > half || ((man & ((1u << shift) - 1)) == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    } else {
        uint32_t r = ((uint32_t)exp << 10) | (man >> 13);
        uint32_t rest = man & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
}

/* A whole file, mapped or read into memory. */
typedef struct bitnet__file {
    uint8_t *data;
    size_t size;
    int mapped;
} bitnet__file;

BITNET__FN int bitnet__file_open(bitnet__file *f, const char *path, int use_mmap, bitnet_error *err) {
    FILE *fp;
    long long size;
    memset(f, 0, sizeof *f);
#ifdef BITNET__HAVE_MMAP
    if (use_mmap) {
        struct stat st;
        int fd = open(path, O_RDONLY);
        if (fd < 0) return bitnet__fail(err, BITNET_E_IO, "cannot open '%s': %s", path, strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return bitnet__fail(err, BITNET_E_IO, "'%s' is not a regular file", path);
        }
        if (st.st_size == 0) {
            close(fd);
            return bitnet__fail(err, BITNET_E_FORMAT, "'%s' is empty", path);
        }
        f->size = (size_t)st.st_size;
        f->data = (uint8_t *)mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (f->data != (uint8_t *)MAP_FAILED) { f->mapped = 1; return BITNET_OK; }
        f->data = NULL; /* fall back to reading */
    }
#else
    (void)use_mmap;
#endif
    fp = fopen(path, "rb");
    if (!fp) return bitnet__fail(err, BITNET_E_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0 || (size = (long long)ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return bitnet__fail(err, BITNET_E_IO, "cannot read '%s'", path);
    }
    if (size == 0) { fclose(fp); return bitnet__fail(err, BITNET_E_FORMAT, "'%s' is empty", path); }
    if ((unsigned long long)size > (unsigned long long)SIZE_MAX) {
        fclose(fp);
        return bitnet__fail(err, BITNET_E_NOMEM, "'%s' is too large for this machine", path);
    }
    f->size = (size_t)size;
    f->data = (uint8_t *)BITNET_MALLOC(f->size);
    if (!f->data) {
        fclose(fp);
        return bitnet__fail(err, BITNET_E_NOMEM, "cannot allocate %zu bytes for '%s'", f->size, path);
    }
    if (fread(f->data, 1, f->size, fp) != f->size) {
        fclose(fp);
        BITNET_FREE(f->data);
        f->data = NULL;
        return bitnet__fail(err, BITNET_E_IO, "short read from '%s'", path);
    }
    fclose(fp);
    return BITNET_OK;
}

BITNET__FN void bitnet__file_close(bitnet__file *f) {
    if (!f->data) return;
#ifdef BITNET__HAVE_MMAP
    if (f->mapped) munmap(f->data, f->size);
    else
#endif
        BITNET_FREE(f->data);
    f->data = NULL;
}

/* Reads a whole (small) file into a NUL-terminated buffer. */
BITNET__FN char *bitnet__read_text_file(const char *path, size_t *len, bitnet_error *err) {
    bitnet__file f;
    char *s;
    if (bitnet__file_open(&f, path, 0, err) != BITNET_OK) return NULL;
    s = (char *)BITNET_REALLOC(f.data, f.size + 1);
    if (!s) {
        bitnet__file_close(&f);
        bitnet__fail(err, BITNET_E_NOMEM, "out of memory reading '%s'", path);
        return NULL;
    }
    s[f.size] = 0;
    if (len) *len = f.size;
    return s;
}

/* ===========================================================================
   GGUF model file
   ===========================================================================
   The container is GGUF v3 (little-endian), as llama.cpp defines it:

     u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
     n_kv x  { string key | u32 value_type | value }
     n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
     padding to general.alignment (default 32)
     tensor data; each tensor at data_start + offset, offset % alignment == 0

   string = u64 length + bytes (no NUL).  Arrays = u32 element type + u64 count +
   elements (arrays of arrays are rejected).  ne[0] is the fastest-varying
   dimension: a weight matrix of out x in features has ne = {in, out}.

   Conventions (llama.cpp's for the "bitnet" architecture, so that GGUF tools and
   llama.cpp read our files):
     general.architecture = "bitnet"
     bitnet.context_length, bitnet.embedding_length, bitnet.block_count,
     bitnet.feed_forward_length, bitnet.attention.head_count,
     bitnet.attention.head_count_kv, bitnet.rope.dimension_count (u32)
     bitnet.rope.freq_base, bitnet.attention.layer_norm_rms_epsilon (f32)
     bitnet.vocab_size (u32), bitnet.hidden_activation (string: "relu2" or "silu";
     absent means "silu", as in llama.cpp)
     tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre, tokenizer.ggml.tokens,
     tokenizer.ggml.token_type, tokenizer.ggml.merges, tokenizer.ggml.bos_token_id,
     tokenizer.ggml.eos_token_id, tokenizer.ggml.eot_token_id, tokenizer.chat_template
   Tensors:
     token_embd.weight            BF16 (F16, F32 accepted)   {n_embd, n_vocab}
     output.weight (untied only)  BF16 (F16, F32 accepted)   {n_embd, n_vocab}
     output_norm.weight           F32                        {n_embd}
     blk.N.attn_norm.weight, blk.N.attn_sub_norm.weight, blk.N.ffn_norm.weight: F32 {n_embd}
     blk.N.ffn_sub_norm.weight    F32                        {n_ff}
     blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight
                                  Q2_0 (ggml type 42)
     blk.N.{...}.scale            F32 {1}: the per-tensor weight scale (multiplied)
   Ternary weights use llama.cpp's Q2_0: blocks of 64 values along a row, each an
   f16 scale d followed by 16 bytes; value j of a block is
   ((qs[j/4] >> 2*(j%4)) & 3) - 1, times d.  We write d = 1 and keep the per-tensor
   scale in the .scale tensor, so the integer dot products stay exact; on loading,
   a d that is the same across a tensor is folded into its scale.  Q/K rows are in
   Hugging Face order: RoPE rotates the two halves of each head (NEOX style), which
   is what llama.cpp uses for this architecture.
*/

enum {
    BITNET__GGUF_U8 = 0, BITNET__GGUF_I8, BITNET__GGUF_U16, BITNET__GGUF_I16,
    BITNET__GGUF_U32, BITNET__GGUF_I32, BITNET__GGUF_F32, BITNET__GGUF_BOOL,
    BITNET__GGUF_STRING, BITNET__GGUF_ARRAY, BITNET__GGUF_U64, BITNET__GGUF_I64,
    BITNET__GGUF_F64, BITNET__GGUF_NTYPES
};

enum {
    BITNET__TYPE_F32 = 0, BITNET__TYPE_F16 = 1, BITNET__TYPE_BF16 = 30,
    BITNET__TYPE_TQ1_0 = 34, BITNET__TYPE_TQ2_0 = 35, BITNET__TYPE_Q2_0 = 42
};

#define BITNET__QK2_0 64
#define BITNET__Q2_0_BYTES 18
#define BITNET__GGUF_MAX_DIMS 4

/* Block size and bytes per block of every ggml tensor type (0 = unknown id). */
BITNET__FN int bitnet__ggml_type_info(uint32_t type, uint32_t *block, uint32_t *bytes, const char **name) {
    static const struct { uint16_t block, bytes; const char *name; } t[] = {
        {1, 4, "F32"}, {1, 2, "F16"}, {32, 18, "Q4_0"}, {32, 20, "Q4_1"}, {0, 0, 0}, {0, 0, 0},
        {32, 22, "Q5_0"}, {32, 24, "Q5_1"}, {32, 34, "Q8_0"}, {32, 36, "Q8_1"},
        {256, 84, "Q2_K"}, {256, 110, "Q3_K"}, {256, 144, "Q4_K"}, {256, 176, "Q5_K"},
        {256, 210, "Q6_K"}, {256, 292, "Q8_K"}, {256, 66, "IQ2_XXS"}, {256, 74, "IQ2_XS"},
        {256, 98, "IQ3_XXS"}, {256, 50, "IQ1_S"}, {32, 18, "IQ4_NL"}, {256, 110, "IQ3_S"},
        {256, 82, "IQ2_S"}, {256, 136, "IQ4_XS"}, {1, 1, "I8"}, {1, 2, "I16"}, {1, 4, "I32"},
        {1, 8, "I64"}, {1, 8, "F64"}, {256, 56, "IQ1_M"}, {1, 2, "BF16"}, {0, 0, 0}, {0, 0, 0},
        {0, 0, 0}, {256, 54, "TQ1_0"}, {256, 66, "TQ2_0"}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
        {32, 17, "MXFP4"}, {64, 36, "NVFP4"}, {128, 18, "Q1_0"}, {64, 18, "Q2_0"}
    };
    if (type >= sizeof t / sizeof t[0] || !t[type].block) return 0;
    if (block) *block = t[type].block;
    if (bytes) *bytes = t[type].bytes;
    if (name) *name = t[type].name;
    return 1;
}

BITNET__FN const char *bitnet__ggml_type_name(uint32_t type) {
    const char *name = "unknown";
    bitnet__ggml_type_info(type, NULL, NULL, &name);
    return name;
}

typedef struct bitnet__str {
    const char *ptr;      /* not NUL-terminated */
    uint64_t len;
} bitnet__str;

BITNET__FN int bitnet__str_eq(bitnet__str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

typedef struct bitnet__gguf_kv {
    bitnet__str key;
    uint32_t type;            /* BITNET__GGUF_* */
    uint32_t arr_type;        /* element type of an array */
    uint64_t arr_n;           /* element count of an array */
    const uint8_t *arr_data;  /* first element of an array, in the file */
    bitnet__str str;          /* a string value */
    union { uint64_t u; int64_t i; double f; } num; /* a numeric or bool value */
} bitnet__gguf_kv;

typedef struct bitnet__gguf_tensor {
    bitnet__str name;
    uint32_t n_dims;
    uint64_t ne[BITNET__GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint32_t type;
    uint64_t offset;          /* from the start of the data section */
    uint64_t nbytes;
    const uint8_t *data;
} bitnet__gguf_tensor;

typedef struct bitnet__gguf {
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    bitnet__gguf_kv *kv;
    bitnet__gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset;
} bitnet__gguf;

typedef struct bitnet__cursor {
    const uint8_t *p, *end, *base;
    bitnet_error *err;
} bitnet__cursor;

BITNET__FN int bitnet__need(bitnet__cursor *c, uint64_t n, const char *what) {
    if ((uint64_t)(c->end - c->p) < n)
        return bitnet__fail(c->err, BITNET_E_FORMAT,
                            "model file truncated: %s at byte %llu needs %llu bytes, %llu left", what,
                            (unsigned long long)(c->p - c->base), (unsigned long long)n,
                            (unsigned long long)(c->end - c->p));
    return BITNET_OK;
}

BITNET__FN uint64_t bitnet__rd(const uint8_t *p, int n) {
    uint64_t v = 0;
    int i;
    for (i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

BITNET__FN int bitnet__read_u32(bitnet__cursor *c, uint32_t *v, const char *what) {
    if (bitnet__need(c, 4, what)) return BITNET_E_FORMAT;
    *v = (uint32_t)bitnet__rd(c->p, 4);
    c->p += 4;
    return BITNET_OK;
}

BITNET__FN int bitnet__read_u64(bitnet__cursor *c, uint64_t *v, const char *what) {
    if (bitnet__need(c, 8, what)) return BITNET_E_FORMAT;
    *v = bitnet__rd(c->p, 8);
    c->p += 8;
    return BITNET_OK;
}

BITNET__FN int bitnet__read_str(bitnet__cursor *c, bitnet__str *s, const char *what) {
    uint64_t n;
    if (bitnet__read_u64(c, &n, what)) return BITNET_E_FORMAT;
    if (bitnet__need(c, n, what)) return BITNET_E_FORMAT;
    s->ptr = (const char *)c->p;
    s->len = n;
    c->p += n;
    return BITNET_OK;
}

BITNET__FN uint32_t bitnet__gguf_scalar_size(uint32_t type) {
    static const uint8_t sz[BITNET__GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < BITNET__GGUF_NTYPES ? sz[type] : 0;
}

BITNET__FN const char *bitnet__gguf_type_name(uint32_t type) {
    static const char *names[BITNET__GGUF_NTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                     "bool", "string", "array", "u64", "i64", "f64"};
    return type < BITNET__GGUF_NTYPES ? names[type] : "unknown";
}

/* Decodes a scalar of a numeric type into kv->num. */
BITNET__FN void bitnet__gguf_decode_num(bitnet__gguf_kv *kv, const uint8_t *p) {
    uint32_t t = kv->type;
    uint64_t raw = bitnet__rd(p, (int)bitnet__gguf_scalar_size(t));
    switch (t) {
    case BITNET__GGUF_I8:  kv->num.i = (int8_t)raw; break;
    case BITNET__GGUF_I16: kv->num.i = (int16_t)raw; break;
    case BITNET__GGUF_I32: kv->num.i = (int32_t)raw; break;
    case BITNET__GGUF_I64: kv->num.i = (int64_t)raw; break;
    case BITNET__GGUF_F32: { uint32_t u = (uint32_t)raw; float f; memcpy(&f, &u, 4); kv->num.f = f; break; }
    case BITNET__GGUF_F64: { double d; memcpy(&d, &raw, 8); kv->num.f = d; break; }
    default: kv->num.u = raw; break;
    }
}

BITNET__FN void bitnet__gguf_free(bitnet__gguf *g) {
    BITNET_FREE(g->kv);
    BITNET_FREE(g->tensors);
    g->kv = NULL;
    g->tensors = NULL;
}

BITNET__FN int bitnet__cmp_offsets(const void *a, const void *b) {
    const bitnet__gguf_tensor *x = *(const bitnet__gguf_tensor *const *)a;
    const bitnet__gguf_tensor *y = *(const bitnet__gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

BITNET__FN int bitnet__str_cmp(bitnet__str a, bitnet__str b) {
    uint64_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    return c ? c : (a.len < b.len ? -1 : a.len > b.len);
}

BITNET__FN int bitnet__cmp_kv_keys(const void *a, const void *b) {
    return bitnet__str_cmp((*(const bitnet__gguf_kv *const *)a)->key, (*(const bitnet__gguf_kv *const *)b)->key);
}

BITNET__FN int bitnet__cmp_tensor_names(const void *a, const void *b) {
    return bitnet__str_cmp((*(const bitnet__gguf_tensor *const *)a)->name,
                           (*(const bitnet__gguf_tensor *const *)b)->name);
}

/* Parses and validates the whole container: every count, length, type, shape and
   offset is checked against the buffer before anything is used. */
BITNET__FN int bitnet__gguf_parse(bitnet__gguf *g, const uint8_t *data, size_t size, bitnet_error *err) {
    bitnet__cursor c;
    uint32_t magic;
    uint64_t i, data_size;
    void **sorted = NULL;
    int rc = BITNET_E_FORMAT;

    memset(g, 0, sizeof *g);
    g->base = data;
    g->size = size;
    g->alignment = 32;
    c.p = data; c.end = data + size; c.base = data; c.err = err;

    if (bitnet__read_u32(&c, &magic, "magic")) return BITNET_E_FORMAT;
    if (magic != 0x46554747u) /* "GGUF" */
        return bitnet__fail(err, BITNET_E_FORMAT, "not a GGUF model file (bad magic 0x%08x)", magic);
    if (bitnet__read_u32(&c, &g->version, "version")) return BITNET_E_FORMAT;
    if (g->version != 2 && g->version != 3)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "GGUF version %u is not supported (need 2 or 3)", g->version);
    if (bitnet__read_u64(&c, &g->n_tensors, "tensor count") || bitnet__read_u64(&c, &g->n_kv, "key count"))
        return BITNET_E_FORMAT;
    /* every kv takes >= 12 bytes and every tensor info >= 24: bounds the allocations */
    if (g->n_kv > (size - 24) / 12)
        return bitnet__fail(err, BITNET_E_FORMAT, "key count %llu is impossible for a %zu-byte file",
                            (unsigned long long)g->n_kv, size);
    if (g->n_tensors > (size - 24) / 24)
        return bitnet__fail(err, BITNET_E_FORMAT, "tensor count %llu is impossible for a %zu-byte file",
                            (unsigned long long)g->n_tensors, size);
    g->kv = (bitnet__gguf_kv *)bitnet__calloc((size_t)g->n_kv, sizeof *g->kv);
    g->tensors = (bitnet__gguf_tensor *)bitnet__calloc((size_t)g->n_tensors, sizeof *g->tensors);
    if (!g->kv || !g->tensors) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory parsing the model file"); goto fail; }

    for (i = 0; i < g->n_kv; i++) {
        bitnet__gguf_kv *kv = &g->kv[i];
        if (bitnet__read_str(&c, &kv->key, "metadata key")) goto fail;
        if (bitnet__read_u32(&c, &kv->type, "metadata type")) goto fail;
        if (kv->type >= BITNET__GGUF_NTYPES) {
            bitnet__fail(err, BITNET_E_FORMAT, "metadata '%.*s' has unknown type %u", (int)(kv->key.len > 200 ? 200 : kv->key.len),
                         kv->key.ptr, kv->type);
            goto fail;
        }
        if (kv->type == BITNET__GGUF_STRING) {
            if (bitnet__read_str(&c, &kv->str, "metadata string")) goto fail;
        } else if (kv->type == BITNET__GGUF_ARRAY) {
            uint32_t esz;
            if (bitnet__read_u32(&c, &kv->arr_type, "array type") || bitnet__read_u64(&c, &kv->arr_n, "array length"))
                goto fail;
            if (kv->arr_type == BITNET__GGUF_ARRAY || kv->arr_type >= BITNET__GGUF_NTYPES) {
                bitnet__fail(err, BITNET_E_FORMAT, "metadata '%.*s': arrays of type %u are not supported",
                             (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr, kv->arr_type);
                goto fail;
            }
            kv->arr_data = c.p;
            if (kv->arr_type == BITNET__GGUF_STRING) {
                uint64_t j;
                if (kv->arr_n > (uint64_t)(c.end - c.p) / 8) {
                    bitnet__fail(err, BITNET_E_FORMAT, "metadata '%.*s': %llu strings cannot fit in the file",
                                 (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr, (unsigned long long)kv->arr_n);
                    goto fail;
                }
                for (j = 0; j < kv->arr_n; j++) {
                    bitnet__str s;
                    if (bitnet__read_str(&c, &s, "array string")) goto fail;
                }
            } else {
                esz = bitnet__gguf_scalar_size(kv->arr_type);
                if (kv->arr_n > (uint64_t)(c.end - c.p) / esz) {
                    bitnet__fail(err, BITNET_E_FORMAT, "metadata '%.*s': array of %llu elements runs past the end of the file",
                                 (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr, (unsigned long long)kv->arr_n);
                    goto fail;
                }
                c.p += kv->arr_n * esz;
            }
        } else {
            uint32_t sz = bitnet__gguf_scalar_size(kv->type);
            if (bitnet__need(&c, sz, "metadata value")) goto fail;
            bitnet__gguf_decode_num(kv, c.p);
            c.p += sz;
        }
    }

    for (i = 0; i < g->n_tensors; i++) {
        bitnet__gguf_tensor *t = &g->tensors[i];
        uint32_t d, block = 0, bytes = 0;
        uint64_t nelem_rows = 1;
        if (bitnet__read_str(&c, &t->name, "tensor name")) goto fail;
        if (t->name.len == 0 || t->name.len > 255) {
            bitnet__fail(err, BITNET_E_FORMAT, "tensor %llu has a name of %llu bytes (1..255 allowed)",
                         (unsigned long long)i, (unsigned long long)t->name.len);
            goto fail;
        }
        if (bitnet__read_u32(&c, &t->n_dims, "tensor dimension count")) goto fail;
        if (t->n_dims < 1 || t->n_dims > BITNET__GGUF_MAX_DIMS) {
            bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s' has %u dimensions (1..4 allowed)",
                         (int)t->name.len, t->name.ptr, t->n_dims);
            goto fail;
        }
        for (d = 0; d < BITNET__GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (d = 0; d < t->n_dims; d++) {
            if (bitnet__read_u64(&c, &t->ne[d], "tensor shape")) goto fail;
            if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40)) {
                bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s' has an invalid dimension %u of size %llu",
                             (int)t->name.len, t->name.ptr, d, (unsigned long long)t->ne[d]);
                goto fail;
            }
        }
        if (bitnet__read_u32(&c, &t->type, "tensor type") || bitnet__read_u64(&c, &t->offset, "tensor offset"))
            goto fail;
        if (!bitnet__ggml_type_info(t->type, &block, &bytes, NULL)) {
            bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s' has unknown type %u", (int)t->name.len, t->name.ptr, t->type);
            goto fail;
        }
        if (t->ne[0] % block) {
            bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s': row of %llu values is not a multiple of the %s block (%u)",
                         (int)t->name.len, t->name.ptr, (unsigned long long)t->ne[0], bitnet__ggml_type_name(t->type), block);
            goto fail;
        }
        for (d = 1; d < BITNET__GGUF_MAX_DIMS; d++) {
            if (nelem_rows > ((uint64_t)1 << 62) / t->ne[d]) {
                bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s' is impossibly large", (int)t->name.len, t->name.ptr);
                goto fail;
            }
            nelem_rows *= t->ne[d];
        }
        t->nbytes = t->ne[0] / block * bytes;
        if (nelem_rows > ((uint64_t)1 << 62) / t->nbytes) {
            bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s' is impossibly large", (int)t->name.len, t->name.ptr);
            goto fail;
        }
        t->nbytes *= nelem_rows;
    }

    /* general.alignment changes where the data starts, so look for it now */
    for (i = 0; i < g->n_kv; i++) {
        if (bitnet__str_eq(g->kv[i].key, "general.alignment")) {
            if (g->kv[i].type != BITNET__GGUF_U32 || g->kv[i].num.u == 0 || g->kv[i].num.u > 65536 ||
                (g->kv[i].num.u & (g->kv[i].num.u - 1))) {
                bitnet__fail(err, BITNET_E_FORMAT, "general.alignment must be a u32 power of two <= 65536");
                goto fail;
            }
            g->alignment = (uint32_t)g->kv[i].num.u;
        }
    }
    g->data_offset = (uint64_t)(c.p - data);
    g->data_offset = (g->data_offset + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && g->data_offset > size) {
        bitnet__fail(err, BITNET_E_FORMAT, "model file truncated: the tensor data would start at byte %llu of %zu",
                     (unsigned long long)g->data_offset, size);
        goto fail;
    }
    data_size = g->data_offset <= size ? size - g->data_offset : 0;
    for (i = 0; i < g->n_tensors; i++) {
        bitnet__gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment) {
            bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s': offset %llu is not a multiple of the alignment %u",
                         (int)t->name.len, t->name.ptr, (unsigned long long)t->offset, g->alignment);
            goto fail;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s' (%llu bytes at offset %llu) runs past the end of the file (%llu data bytes)",
                         (int)t->name.len, t->name.ptr, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                         (unsigned long long)data_size);
            goto fail;
        }
        t->data = data + g->data_offset + t->offset;
    }

    /* overlapping tensors, duplicate tensor names and duplicate keys */
    {
        size_t n = (size_t)(g->n_tensors > g->n_kv ? g->n_tensors : g->n_kv);
        sorted = (void **)bitnet__calloc(n ? n : 1, sizeof *sorted);
        if (!sorted) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory parsing the model file"); goto fail; }
        for (i = 0; i < g->n_tensors; i++) sorted[i] = &g->tensors[i];
        qsort(sorted, (size_t)g->n_tensors, sizeof *sorted, bitnet__cmp_offsets);
        for (i = 1; i < g->n_tensors; i++) {
            const bitnet__gguf_tensor *a = (const bitnet__gguf_tensor *)sorted[i - 1], *b = (const bitnet__gguf_tensor *)sorted[i];
            if (a->offset + a->nbytes > b->offset) {
                bitnet__fail(err, BITNET_E_FORMAT, "tensors '%.*s' and '%.*s' overlap", (int)a->name.len, a->name.ptr,
                             (int)b->name.len, b->name.ptr);
                goto fail;
            }
        }
        qsort(sorted, (size_t)g->n_tensors, sizeof *sorted, bitnet__cmp_tensor_names);
        for (i = 1; i < g->n_tensors; i++) {
            const bitnet__gguf_tensor *a = (const bitnet__gguf_tensor *)sorted[i - 1], *b = (const bitnet__gguf_tensor *)sorted[i];
            if (bitnet__str_cmp(a->name, b->name) == 0) {
                bitnet__fail(err, BITNET_E_FORMAT, "tensor '%.*s' appears twice", (int)a->name.len, a->name.ptr);
                goto fail;
            }
        }
        for (i = 0; i < g->n_kv; i++) sorted[i] = &g->kv[i];
        qsort(sorted, (size_t)g->n_kv, sizeof *sorted, bitnet__cmp_kv_keys);
        for (i = 1; i < g->n_kv; i++) {
            const bitnet__gguf_kv *a = (const bitnet__gguf_kv *)sorted[i - 1], *b = (const bitnet__gguf_kv *)sorted[i];
            if (bitnet__str_cmp(a->key, b->key) == 0) {
                bitnet__fail(err, BITNET_E_FORMAT, "metadata key '%.*s' appears twice", (int)(a->key.len > 200 ? 200 : a->key.len),
                             a->key.ptr);
                goto fail;
            }
        }
        BITNET_FREE(sorted);
    }
    return BITNET_OK;
fail:
    BITNET_FREE(sorted);
    bitnet__gguf_free(g);
    return rc;
}

BITNET__FN const bitnet__gguf_kv *bitnet__gguf_find(const bitnet__gguf *g, const char *key) {
    uint64_t i;
    for (i = 0; i < g->n_kv; i++)
        if (bitnet__str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

BITNET__FN const bitnet__gguf_tensor *bitnet__gguf_find_tensor(const bitnet__gguf *g, const char *name) {
    uint64_t i;
    for (i = 0; i < g->n_tensors; i++)
        if (bitnet__str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

BITNET__FN int bitnet__gguf_is_int(uint32_t t) {
    return t <= BITNET__GGUF_I32 || t == BITNET__GGUF_U64 || t == BITNET__GGUF_I64;
}

/* Reads an integer key into [lo, hi].  Missing: *v = dflt, or an error if required. */
BITNET__FN int bitnet__gguf_get_int(const bitnet__gguf *g, const char *key, int required, long long dflt,
                                     long long lo, long long hi, long long *v, bitnet_error *err) {
    const bitnet__gguf_kv *kv = bitnet__gguf_find(g, key);
    long long x;
    if (!kv) {
        if (required) return bitnet__fail(err, BITNET_E_FORMAT, "model file lacks the metadata key '%s'", key);
        *v = dflt;
        return BITNET_OK;
    }
    if (!bitnet__gguf_is_int(kv->type))
        return bitnet__fail(err, BITNET_E_FORMAT, "metadata '%s' must be an integer, not %s", key, bitnet__gguf_type_name(kv->type));
    if (kv->type == BITNET__GGUF_I8 || kv->type == BITNET__GGUF_I16 || kv->type == BITNET__GGUF_I32 || kv->type == BITNET__GGUF_I64)
        x = (long long)kv->num.i;
    else if (kv->num.u > (uint64_t)LLONG_MAX)
        return bitnet__fail(err, BITNET_E_FORMAT, "metadata '%s' = %llu is out of range", key, (unsigned long long)kv->num.u);
    else
        x = (long long)kv->num.u;
    if (x < lo || x > hi)
        return bitnet__fail(err, BITNET_E_FORMAT, "metadata '%s' = %lld is out of range [%lld, %lld]", key, x, lo, hi);
    *v = x;
    return BITNET_OK;
}

BITNET__FN int bitnet__gguf_get_float(const bitnet__gguf *g, const char *key, int required, double dflt,
                                       double *v, bitnet_error *err) {
    const bitnet__gguf_kv *kv = bitnet__gguf_find(g, key);
    if (!kv) {
        if (required) return bitnet__fail(err, BITNET_E_FORMAT, "model file lacks the metadata key '%s'", key);
        *v = dflt;
        return BITNET_OK;
    }
    if (kv->type == BITNET__GGUF_F32 || kv->type == BITNET__GGUF_F64) *v = kv->num.f;
    else return bitnet__fail(err, BITNET_E_FORMAT, "metadata '%s' must be a float, not %s", key, bitnet__gguf_type_name(kv->type));
    if (!(*v == *v) || *v > 1e30 || *v < -1e30)
        return bitnet__fail(err, BITNET_E_FORMAT, "metadata '%s' is not a finite number", key);
    return BITNET_OK;
}

/* Returns the string value of key, or NULL (with an error if required or mistyped). */
BITNET__FN int bitnet__gguf_get_str(const bitnet__gguf *g, const char *key, int required, bitnet__str *v,
                                     bitnet_error *err) {
    const bitnet__gguf_kv *kv = bitnet__gguf_find(g, key);
    v->ptr = NULL;
    v->len = 0;
    if (!kv) return required ? bitnet__fail(err, BITNET_E_FORMAT, "model file lacks the metadata key '%s'", key) : BITNET_OK;
    if (kv->type != BITNET__GGUF_STRING)
        return bitnet__fail(err, BITNET_E_FORMAT, "metadata '%s' must be a string, not %s", key, bitnet__gguf_type_name(kv->type));
    *v = kv->str;
    return BITNET_OK;
}

/* Iterates the strings of a (validated) string array: call with *p = kv->arr_data. */
BITNET__FN bitnet__str bitnet__gguf_next_str(const uint8_t **p) {
    bitnet__str s;
    s.len = bitnet__rd(*p, 8);
    s.ptr = (const char *)*p + 8;
    *p += 8 + s.len;
    return s;
}

/* ---- writer ---- */

/* Builds a GGUF file: metadata and tensor infos go to memory, then the header is
   written and tensor data follows in declaration order. */
typedef struct bitnet__gguf_writer {
    uint8_t *kv;               /* serialized key/values */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    uint8_t *ti;               /* serialized tensor infos */
    size_t ti_len, ti_cap;
    uint64_t n_tensors;
    uint64_t *tensor_bytes;    /* size of each declared tensor */
    uint64_t data_len;         /* bytes of tensor data declared so far (aligned) */
    uint64_t next_tensor;      /* index of the next tensor whose data is written */
    uint64_t written;          /* bytes of tensor data written so far */
    FILE *fp;
    int failed;                /* an allocation failed while building */
} bitnet__gguf_writer;

#define BITNET__GGUF_ALIGN 32

BITNET__FN void bitnet__buf_put(bitnet__gguf_writer *w, uint8_t **buf, size_t *len, size_t *cap, const void *src, size_t n) {
    if (w->failed || n == 0) return;
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        uint8_t *nb;
        while (nc < *len + n) nc *= 2;
        nb = (uint8_t *)BITNET_REALLOC(*buf, nc);
        if (!nb) { w->failed = 1; return; }
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, src, n);
    *len += n;
}

BITNET__FN void bitnet__kv_put_le(bitnet__gguf_writer *w, uint64_t v, int n) {
    uint8_t b[8];
    int i;
    for (i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    bitnet__buf_put(w, &w->kv, &w->kv_len, &w->kv_cap, b, (size_t)n);
}

BITNET__FN void bitnet__kv_put_str(bitnet__gguf_writer *w, const char *s, size_t n) {
    bitnet__kv_put_le(w, n, 8);
    bitnet__buf_put(w, &w->kv, &w->kv_len, &w->kv_cap, s, n);
}

BITNET__FN void bitnet__kv_key(bitnet__gguf_writer *w, const char *key, uint32_t type) {
    bitnet__kv_put_str(w, key, strlen(key));
    bitnet__kv_put_le(w, type, 4);
    w->n_kv++;
}

BITNET__FN void bitnet__gguf_add_u32(bitnet__gguf_writer *w, const char *key, uint32_t v) {
    bitnet__kv_key(w, key, BITNET__GGUF_U32);
    bitnet__kv_put_le(w, v, 4);
}

BITNET__FN void bitnet__gguf_add_bool(bitnet__gguf_writer *w, const char *key, int v) {
    bitnet__kv_key(w, key, BITNET__GGUF_BOOL);
    bitnet__kv_put_le(w, v ? 1 : 0, 1);
}

BITNET__FN void bitnet__gguf_add_f32(bitnet__gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    bitnet__kv_key(w, key, BITNET__GGUF_F32);
    bitnet__kv_put_le(w, u, 4);
}

BITNET__FN void bitnet__gguf_add_str(bitnet__gguf_writer *w, const char *key, const char *s, size_t n) {
    bitnet__kv_key(w, key, BITNET__GGUF_STRING);
    bitnet__kv_put_str(w, s, n);
}

/* strs[i] with lens[i] bytes (lens NULL: NUL-terminated). */
BITNET__FN void bitnet__gguf_add_str_array(bitnet__gguf_writer *w, const char *key, const char *const *strs,
                                           const size_t *lens, uint64_t n) {
    uint64_t i;
    bitnet__kv_key(w, key, BITNET__GGUF_ARRAY);
    bitnet__kv_put_le(w, BITNET__GGUF_STRING, 4);
    bitnet__kv_put_le(w, n, 8);
    for (i = 0; i < n; i++) bitnet__kv_put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
}

BITNET__FN void bitnet__gguf_add_i32_array(bitnet__gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    uint64_t i;
    bitnet__kv_key(w, key, BITNET__GGUF_ARRAY);
    bitnet__kv_put_le(w, BITNET__GGUF_I32, 4);
    bitnet__kv_put_le(w, n, 8);
    for (i = 0; i < n; i++) bitnet__kv_put_le(w, (uint32_t)v[i], 4);
}

/* Declares a tensor; ne[0] is the row length.  Its data must later be written in
   declaration order with bitnet__gguf_write_data. */
BITNET__FN void bitnet__gguf_add_tensor(bitnet__gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                        const uint64_t *ne) {
    uint32_t block = 1, bytes = 1;
    uint64_t nbytes, *nb;
    int d;
    bitnet__ggml_type_info(type, &block, &bytes, NULL);
    nbytes = ne[0] / block * bytes;
    for (d = 1; d < n_dims; d++) nbytes *= ne[d];
    {
        uint8_t b[8];
        size_t n = strlen(name);
        int i;
        for (i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
        bitnet__buf_put(w, &w->ti, &w->ti_len, &w->ti_cap, b, 8);
        bitnet__buf_put(w, &w->ti, &w->ti_len, &w->ti_cap, name, n);
        for (i = 0; i < 4; i++) b[i] = (uint8_t)((uint32_t)n_dims >> (8 * i));
        bitnet__buf_put(w, &w->ti, &w->ti_len, &w->ti_cap, b, 4);
        for (d = 0; d < n_dims; d++) {
            for (i = 0; i < 8; i++) b[i] = (uint8_t)(ne[d] >> (8 * i));
            bitnet__buf_put(w, &w->ti, &w->ti_len, &w->ti_cap, b, 8);
        }
        for (i = 0; i < 4; i++) b[i] = (uint8_t)(type >> (8 * i));
        bitnet__buf_put(w, &w->ti, &w->ti_len, &w->ti_cap, b, 4);
        for (i = 0; i < 8; i++) b[i] = (uint8_t)(w->data_len >> (8 * i));
        bitnet__buf_put(w, &w->ti, &w->ti_len, &w->ti_cap, b, 8);
    }
    nb = (uint64_t *)BITNET_REALLOC(w->tensor_bytes, (size_t)(w->n_tensors + 1) * sizeof *nb);
    if (!nb) { w->failed = 1; return; }
    w->tensor_bytes = nb;
    nb[w->n_tensors++] = nbytes;
    w->data_len += (nbytes + BITNET__GGUF_ALIGN - 1) / BITNET__GGUF_ALIGN * BITNET__GGUF_ALIGN;
}

BITNET__FN void bitnet__gguf_writer_free(bitnet__gguf_writer *w) {
    BITNET_FREE(w->kv);
    BITNET_FREE(w->ti);
    BITNET_FREE(w->tensor_bytes);
    if (w->fp) fclose(w->fp);
    memset(w, 0, sizeof *w);
}

BITNET__FN int bitnet__write_zeros(FILE *fp, size_t n) {
    static const uint8_t z[64] = {0};
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        if (fwrite(z, 1, k, fp) != k) return -1;
        n -= k;
    }
    return 0;
}

/* Opens path and writes header, metadata and tensor infos (general.alignment is
   left at its default of 32). */
BITNET__FN int bitnet__gguf_write_header(bitnet__gguf_writer *w, const char *path, bitnet_error *err) {
    uint8_t h[24];
    int i;
    size_t pos;
    if (w->failed) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory building the model file header");
    w->fp = fopen(path, "wb");
    if (!w->fp) return bitnet__fail(err, BITNET_E_IO, "cannot create '%s': %s", path, strerror(errno));
    memcpy(h, "GGUF", 4);
    for (i = 0; i < 4; i++) h[4 + i] = (uint8_t)(3u >> (8 * i));
    for (i = 0; i < 8; i++) h[8 + i] = (uint8_t)(w->n_tensors >> (8 * i));
    for (i = 0; i < 8; i++) h[16 + i] = (uint8_t)(w->n_kv >> (8 * i));
    pos = sizeof h + w->kv_len + w->ti_len;
    if (fwrite(h, 1, sizeof h, w->fp) != sizeof h || fwrite(w->kv, 1, w->kv_len, w->fp) != w->kv_len ||
        fwrite(w->ti, 1, w->ti_len, w->fp) != w->ti_len ||
        bitnet__write_zeros(w->fp, (BITNET__GGUF_ALIGN - pos % BITNET__GGUF_ALIGN) % BITNET__GGUF_ALIGN))
        return bitnet__fail(err, BITNET_E_IO, "cannot write '%s': %s", path, strerror(errno));
    return BITNET_OK;
}

/* Appends n bytes to the current tensor; moves to the next one when it is full. */
BITNET__FN int bitnet__gguf_write_data(bitnet__gguf_writer *w, const void *data, size_t n, bitnet_error *err) {
    if (w->next_tensor >= w->n_tensors || w->written + n > w->tensor_bytes[w->next_tensor])
        return bitnet__fail(err, BITNET_E_ARG, "internal: tensor data does not match the declared tensors");
    if (n && fwrite(data, 1, n, w->fp) != n) return bitnet__fail(err, BITNET_E_IO, "write failed: %s", strerror(errno));
    w->written += n;
    if (w->written == w->tensor_bytes[w->next_tensor]) {
        size_t pad = (size_t)((BITNET__GGUF_ALIGN - w->written % BITNET__GGUF_ALIGN) % BITNET__GGUF_ALIGN);
        if (bitnet__write_zeros(w->fp, pad)) return bitnet__fail(err, BITNET_E_IO, "write failed: %s", strerror(errno));
        w->next_tensor++;
        w->written = 0;
    }
    return BITNET_OK;
}

BITNET__FN int bitnet__gguf_finish(bitnet__gguf_writer *w, const char *path, bitnet_error *err) {
    int bad = w->next_tensor != w->n_tensors;
    int rc = fclose(w->fp);
    w->fp = NULL;
    if (bad) return bitnet__fail(err, BITNET_E_ARG, "internal: %llu tensors declared but %llu written",
                                 (unsigned long long)w->n_tensors, (unsigned long long)w->next_tensor);
    if (rc != 0) return bitnet__fail(err, BITNET_E_IO, "cannot finish writing '%s': %s", path, strerror(errno));
    return BITNET_OK;
}

/* ===========================================================================
   JSON (for config.json, tokenizer.json and safetensors headers)
   =========================================================================== */
/* A small DOM parser.  Nodes and strings live in an arena freed at once.  Strings
   are decoded to UTF-8 (\u escapes included; a lone surrogate becomes U+FFFD) and
   may contain NUL bytes, so they come with a length. */

enum { BITNET__JSON_NULL, BITNET__JSON_FALSE, BITNET__JSON_TRUE, BITNET__JSON_NUMBER,
       BITNET__JSON_STRING, BITNET__JSON_ARRAY, BITNET__JSON_OBJECT };

typedef struct bitnet__json {
    int type;
    double num;
    const char *str;                 /* STRING: bytes (NUL-terminated too) */
    size_t len;                      /* STRING: byte count; ARRAY/OBJECT: item count */
    struct bitnet__json *items;      /* ARRAY/OBJECT: the values */
    const char **keys;               /* OBJECT: the keys (NUL-terminated) */
    size_t *key_lens;
} bitnet__json;

typedef struct bitnet__arena_chunk {
    struct bitnet__arena_chunk *next;
    size_t used, cap;
} bitnet__arena_chunk;

typedef struct bitnet__arena {
    bitnet__arena_chunk *head;
} bitnet__arena;

BITNET__FN void *bitnet__arena_alloc(bitnet__arena *a, size_t n) {
    bitnet__arena_chunk *c = a->head;
    size_t hdr = (sizeof(bitnet__arena_chunk) + 15) & ~(size_t)15;
    n = (n + 15) & ~(size_t)15;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ((size_t)1 << 20) ? n : ((size_t)1 << 20);
        c = (bitnet__arena_chunk *)BITNET_MALLOC(hdr + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    c->used += n;
    return (uint8_t *)c + hdr + c->used - n;
}

BITNET__FN void bitnet__arena_free(bitnet__arena *a) {
    while (a->head) {
        bitnet__arena_chunk *n = a->head->next;
        BITNET_FREE(a->head);
        a->head = n;
    }
}

typedef struct bitnet__json_parser {
    const char *p, *end, *start;
    bitnet__arena *arena;
    bitnet_error *err;
    const char *what;                /* name of the document, for messages */
    int depth;
} bitnet__json_parser;

BITNET__FN int bitnet__json_error(bitnet__json_parser *jp, const char *msg) {
    size_t line = 1;
    const char *q;
    for (q = jp->start; q < jp->p && q < jp->end; q++) line += *q == '\n';
    return bitnet__fail(jp->err, BITNET_E_FORMAT, "%s: %s at line %zu (byte %zu)", jp->what, msg, line,
                        (size_t)(jp->p - jp->start));
}

BITNET__FN void bitnet__json_ws(bitnet__json_parser *jp) {
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r')) jp->p++;
}

BITNET__FN int bitnet__json_hex4(const char *p, unsigned *v) {
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        *v <<= 4;
        if (c >= '0' && c <= '9') *v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') *v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') *v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    return 1;
}

BITNET__FN size_t bitnet__utf8_put(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

BITNET__FN int bitnet__json_string(bitnet__json_parser *jp, const char **out, size_t *out_len) {
    const char *q = ++jp->p; /* after the quote */
    size_t n = 0;
    char *o;
    /* the decoded string is never longer than the source */
    while (q < jp->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= jp->end) return bitnet__json_error(jp, "unterminated string");
    o = (char *)bitnet__arena_alloc(jp->arena, (size_t)(q - jp->p) + 1);
    if (!o) return bitnet__fail(jp->err, BITNET_E_NOMEM, "%s: out of memory", jp->what);
    while (*jp->p != '"') {
        unsigned char c = (unsigned char)*jp->p;
        if (c < 0x20) return bitnet__json_error(jp, "control character in string");
        if (c != '\\') { o[n++] = (char)c; jp->p++; continue; }
        jp->p++;
        switch (*jp->p) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (jp->end - jp->p < 5 || !bitnet__json_hex4(jp->p + 1, &cp)) return bitnet__json_error(jp, "bad \\u escape");
            jp->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && jp->end - jp->p >= 7 && jp->p[1] == '\\' && jp->p[2] == 'u' &&
                bitnet__json_hex4(jp->p + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                jp->p += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
            n += bitnet__utf8_put(o + n, cp);
            break;
        }
        default: return bitnet__json_error(jp, "bad escape in string");
        }
        jp->p++;
    }
    jp->p++;
    o[n] = 0;
    *out = o;
    *out_len = n;
    return BITNET_OK;
}

/* Items are collected in a growable temporary array, then copied to the arena. */
typedef struct bitnet__json_vec {
    bitnet__json *v;
    const char **k;
    size_t *kl;
    size_t n, cap;
} bitnet__json_vec;

BITNET__FN int bitnet__json_value(bitnet__json_parser *jp, bitnet__json *out);

BITNET__FN int bitnet__json_container(bitnet__json_parser *jp, bitnet__json *out, int object) {
    bitnet__json_vec vec;
    int rc = BITNET_OK;
    char close = object ? '}' : ']';
    memset(&vec, 0, sizeof vec);
    if (++jp->depth > 256) return bitnet__json_error(jp, "nesting too deep");
    jp->p++;
    bitnet__json_ws(jp);
    if (jp->p < jp->end && *jp->p == close) jp->p++;
    else for (;;) {
        const char *key = NULL;
        size_t klen = 0;
        if (vec.n == vec.cap) {
            size_t nc = vec.cap ? vec.cap * 2 : 8;
            bitnet__json *nv = (bitnet__json *)BITNET_REALLOC(vec.v, nc * sizeof *nv);
            if (nv) vec.v = nv;
            if (object && nv) {
                const char **nk = (const char **)BITNET_REALLOC((void *)vec.k, nc * sizeof *nk);
                size_t *nl;
                if (nk) vec.k = nk;
                nl = nk ? (size_t *)BITNET_REALLOC(vec.kl, nc * sizeof *nl) : NULL;
                if (nl) vec.kl = nl;
                if (!nk || !nl) nv = NULL;
            }
            if (!nv) { rc = bitnet__fail(jp->err, BITNET_E_NOMEM, "%s: out of memory", jp->what); break; }
            vec.cap = nc;
        }
        if (object) {
            if (jp->p >= jp->end || *jp->p != '"') { rc = bitnet__json_error(jp, "expected a key"); break; }
            if ((rc = bitnet__json_string(jp, &key, &klen))) break;
            bitnet__json_ws(jp);
            if (jp->p >= jp->end || *jp->p != ':') { rc = bitnet__json_error(jp, "expected ':'"); break; }
            jp->p++;
            vec.k[vec.n] = key;
            vec.kl[vec.n] = klen;
        }
        if ((rc = bitnet__json_value(jp, &vec.v[vec.n]))) break;
        vec.n++;
        bitnet__json_ws(jp);
        if (jp->p < jp->end && *jp->p == ',') { jp->p++; bitnet__json_ws(jp); continue; }
        if (jp->p < jp->end && *jp->p == close) { jp->p++; break; }
        rc = bitnet__json_error(jp, object ? "expected ',' or '}'" : "expected ',' or ']'");
        break;
    }
    if (rc == BITNET_OK) {
        out->type = object ? BITNET__JSON_OBJECT : BITNET__JSON_ARRAY;
        out->len = vec.n;
        out->items = (bitnet__json *)bitnet__arena_alloc(jp->arena, vec.n * sizeof *out->items + 1);
        if (object) {
            out->keys = (const char **)bitnet__arena_alloc(jp->arena, vec.n * sizeof *out->keys + 1);
            out->key_lens = (size_t *)bitnet__arena_alloc(jp->arena, vec.n * sizeof *out->key_lens + 1);
        }
        if (!out->items || (object && (!out->keys || !out->key_lens)))
            rc = bitnet__fail(jp->err, BITNET_E_NOMEM, "%s: out of memory", jp->what);
        else if (vec.n) {
            memcpy(out->items, vec.v, vec.n * sizeof *out->items);
            if (object) {
                memcpy((void *)out->keys, (const void *)vec.k, vec.n * sizeof *out->keys);
                memcpy(out->key_lens, vec.kl, vec.n * sizeof *out->key_lens);
            }
        }
    }
    BITNET_FREE(vec.v);
    BITNET_FREE((void *)vec.k);
    BITNET_FREE(vec.kl);
    jp->depth--;
    return rc;
}

BITNET__FN int bitnet__json_value(bitnet__json_parser *jp, bitnet__json *out) {
    memset(out, 0, sizeof *out);
    bitnet__json_ws(jp);
    if (jp->p >= jp->end) return bitnet__json_error(jp, "unexpected end of document");
    switch (*jp->p) {
    case '{': return bitnet__json_container(jp, out, 1);
    case '[': return bitnet__json_container(jp, out, 0);
    case '"': out->type = BITNET__JSON_STRING; return bitnet__json_string(jp, &out->str, &out->len);
    case 't': case 'f': case 'n': {
        static const char *lit[3] = {"true", "false", "null"};
        static const int typ[3] = {BITNET__JSON_TRUE, BITNET__JSON_FALSE, BITNET__JSON_NULL};
        int i;
        for (i = 0; i < 3; i++) {
            size_t n = strlen(lit[i]);
            if ((size_t)(jp->end - jp->p) >= n && memcmp(jp->p, lit[i], n) == 0) {
                jp->p += n;
                out->type = typ[i];
                return BITNET_OK;
            }
        }
        return bitnet__json_error(jp, "invalid literal");
    }
    default: {
        char buf[64];
        size_t n = 0;
        char *endp;
        const char *q = jp->p;
        if (q < jp->end && *q == '-') q++;
        if (q >= jp->end || *q < '0' || *q > '9') return bitnet__json_error(jp, "unexpected character");
        while (q < jp->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-'))
            q++;
        n = (size_t)(q - jp->p);
        if (n >= sizeof buf) return bitnet__json_error(jp, "number too long");
        memcpy(buf, jp->p, n);
        buf[n] = 0;
        out->num = strtod(buf, &endp);
        if (*endp) return bitnet__json_error(jp, "malformed number");
        out->type = BITNET__JSON_NUMBER;
        jp->p = q;
        return BITNET_OK;
    }
    }
}

/* Parses text[0..len) into *root; nodes live in *arena (free with bitnet__arena_free). */
BITNET__FN int bitnet__json_parse(const char *text, size_t len, const char *what, bitnet__arena *arena,
                                  bitnet__json *root, bitnet_error *err) {
    bitnet__json_parser jp;
    int rc;
    jp.p = jp.start = text;
    jp.end = text + len;
    jp.arena = arena;
    jp.err = err;
    jp.what = what;
    jp.depth = 0;
    if ((rc = bitnet__json_value(&jp, root))) return rc;
    bitnet__json_ws(&jp);
    if (jp.p != jp.end) return bitnet__json_error(&jp, "trailing characters after the document");
    return BITNET_OK;
}

/* Member `key` of an object, or NULL. */
BITNET__FN const bitnet__json *bitnet__json_get(const bitnet__json *obj, const char *key) {
    size_t i, n = strlen(key);
    if (!obj || obj->type != BITNET__JSON_OBJECT) return NULL;
    for (i = 0; i < obj->len; i++)
        if (obj->key_lens[i] == n && memcmp(obj->keys[i], key, n) == 0) return &obj->items[i];
    return NULL;
}

/* ===========================================================================
   Model: hyper-parameters, weights, loading
   =========================================================================== */

enum { BITNET__ACT_RELU2 = 0, BITNET__ACT_SILU = 1 };

/* A ternary weight matrix (BitLinear): rows = out features, cols = in features.
   Row r is cols/64 Q2_0 blocks at q + r * row_bytes; the real weight is
   value * scale. */
typedef struct bitnet__qweight {
    const uint8_t *q;
    int rows, cols;
    size_t row_bytes;
    float scale;
} bitnet__qweight;

typedef struct bitnet__layer {
    const float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm;
    bitnet__qweight wq, wk, wv, wo, gate, up, down;
} bitnet__layer;

typedef struct bitnet__tokenizer bitnet__tokenizer;
BITNET__FN int bitnet__tokenizer_load(bitnet_model *model, bitnet_error *err);
BITNET__FN void bitnet__tokenizer_free(bitnet__tokenizer *tok);

struct bitnet_model {
    bitnet_hparams hp;
    int act;                    /* BITNET__ACT_* */
    bitnet__file file;          /* the bytes; not owned when loaded from memory */
    bitnet__gguf gguf;
    const void *tok_embd;       /* [n_vocab][n_embd] of tok_embd_type */
    uint32_t tok_embd_type;     /* BF16, F16 or F32 */
    const void *output;         /* LM head; == tok_embd when tied */
    uint32_t output_type;
    const float *output_norm;
    bitnet__layer *layers;
    bitnet__tokenizer *tokenizer;
    void *cuda;                 /* weights on the GPU, shared by CUDA contexts (bitnet_cuda.cu) */
#ifndef BITNET_NO_THREADS
    pthread_mutex_t cuda_lock;  /* guards the upload of `cuda` */
#endif
};

BITNET_API bitnet_model_params bitnet_model_default_params(void) {
    bitnet_model_params p;
    p.use_mmap = 1;
    return p;
}

BITNET_API const bitnet_hparams *bitnet_model_hparams(const bitnet_model *model) {
    return model ? &model->hp : NULL;
}

/* Finds a tensor and checks its type and shape (ne1 = 0: a 1-D tensor). */
BITNET__FN const bitnet__gguf_tensor *bitnet__model_tensor(const bitnet_model *m, const char *name, int required,
                                                           uint64_t ne0, uint64_t ne1, bitnet_error *err, int *rc) {
    const bitnet__gguf_tensor *t = bitnet__gguf_find_tensor(&m->gguf, name);
    *rc = BITNET_OK;
    if (!t) {
        if (required) *rc = bitnet__fail(err, BITNET_E_FORMAT, "model file lacks the tensor '%s'", name);
        return NULL;
    }
    if (t->ne[0] != ne0 || t->ne[1] != (ne1 ? ne1 : 1) || t->ne[2] != 1 || t->ne[3] != 1 ||
        (ne1 == 0 && t->n_dims != 1)) {
        *rc = bitnet__fail(err, BITNET_E_FORMAT, "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]", name,
                           (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                           (unsigned long long)t->ne[3], (unsigned long long)ne0, (unsigned long long)(ne1 ? ne1 : 1));
        return NULL;
    }
    return t;
}

BITNET__FN int bitnet__bind_norm(bitnet_model *m, const char *name, uint64_t n, const float **out, bitnet_error *err) {
    int rc;
    const bitnet__gguf_tensor *t = bitnet__model_tensor(m, name, 1, n, 0, err, &rc);
    if (!t) return rc;
    if (t->type != BITNET__TYPE_F32)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "tensor '%s' is %s; norm weights must be F32", name,
                            bitnet__ggml_type_name(t->type));
    if (((uintptr_t)t->data & 3) != 0)
        return bitnet__fail(err, BITNET_E_FORMAT, "tensor '%s' is not 4-byte aligned", name);
    *out = (const float *)t->data;
    return BITNET_OK;
}

BITNET__FN int bitnet__bind_embedding(bitnet_model *m, const char *name, int required, const void **out,
                                      uint32_t *type, bitnet_error *err) {
    int rc;
    const bitnet__gguf_tensor *t = bitnet__model_tensor(m, name, required, (uint64_t)m->hp.n_embd,
                                                        (uint64_t)m->hp.n_vocab, err, &rc);
    if (!t) return rc;
    if (t->type != BITNET__TYPE_BF16 && t->type != BITNET__TYPE_F16 && t->type != BITNET__TYPE_F32)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "tensor '%s' is %s; embeddings must be BF16, F16 or F32", name,
                            bitnet__ggml_type_name(t->type));
    *out = t->data;
    *type = t->type;
    return BITNET_OK;
}

/* Binds blk.N.<name>.weight (Q2_0, rows x cols) and its optional .scale. */
BITNET__FN int bitnet__bind_ternary(bitnet_model *m, int layer, const char *base, int rows, int cols,
                                    bitnet__qweight *w, bitnet_error *err) {
    char name[96];
    int rc;
    const bitnet__gguf_tensor *t, *s;
    uint64_t nblocks, i;
    uint16_t d0;
    float scale = 1.0f;

    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, base);
    t = bitnet__model_tensor(m, name, 1, (uint64_t)cols, (uint64_t)rows, err, &rc);
    if (!t) return rc;
    if (t->type != BITNET__TYPE_Q2_0)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "tensor '%s' is %s; ternary weights must be Q2_0", name,
                            bitnet__ggml_type_name(t->type));
    snprintf(name, sizeof name, "blk.%d.%s.scale", layer, base);
    s = bitnet__model_tensor(m, name, 0, 1, 0, err, &rc);
    if (rc) return rc;
    if (s) {
        uint32_t u;
        if (s->type != BITNET__TYPE_F32)
            return bitnet__fail(err, BITNET_E_UNSUPPORTED, "tensor '%s' is %s; scales must be F32", name,
                                bitnet__ggml_type_name(s->type));
        u = (uint32_t)bitnet__rd(s->data, 4);
        memcpy(&scale, &u, 4);
        if (!(scale == scale) || fabsf(scale) > 1e30f)
            return bitnet__fail(err, BITNET_E_FORMAT, "tensor '%s' is not a finite number", name);
    }
    /* Integer dot products need one scale per tensor: fold a common block scale in. */
    nblocks = t->nbytes / BITNET__Q2_0_BYTES;
    d0 = (uint16_t)bitnet__rd(t->data, 2);
    for (i = 1; i < nblocks; i++) {
        const uint8_t *b = t->data + i * BITNET__Q2_0_BYTES;
        if ((uint16_t)(b[0] | (b[1] << 8)) != d0) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", layer, base);
            return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                                "tensor '%s' has different scales per Q2_0 block; only one scale per tensor is supported", name);
        }
    }
    if (!(bitnet__f16_to_f32(d0) == bitnet__f16_to_f32(d0)) || fabsf(bitnet__f16_to_f32(d0)) > 65504.0f) {
        snprintf(name, sizeof name, "blk.%d.%s.weight", layer, base);
        return bitnet__fail(err, BITNET_E_FORMAT, "tensor '%s' has a non-finite block scale", name);
    }
    w->q = t->data;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = (size_t)cols / BITNET__QK2_0 * BITNET__Q2_0_BYTES;
    w->scale = scale * bitnet__f16_to_f32(d0);
    return BITNET_OK;
}

BITNET__FN int bitnet__model_read_hparams(bitnet_model *m, bitnet_error *err) {
    bitnet__gguf *g = &m->gguf;
    bitnet__str arch, act;
    long long v;
    double f;
    bitnet_hparams *hp = &m->hp;
    const bitnet__gguf_tensor *emb;
    int rc;

    if ((rc = bitnet__gguf_get_str(g, "general.architecture", 1, &arch, err))) return rc;
    if (!bitnet__str_eq(arch, "bitnet"))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "architecture '%.*s' is not supported (need 'bitnet')",
                            (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
#define BITNET__GET_INT(key, req, dflt, lo, hi, dst)                                        \
    do {                                                                                    \
        if ((rc = bitnet__gguf_get_int(g, key, req, dflt, lo, hi, &v, err))) return rc;     \
        dst = (int)v;                                                                       \
    } while (0)
    BITNET__GET_INT("bitnet.embedding_length", 1, 0, 1, 1 << 16, hp->n_embd);
    BITNET__GET_INT("bitnet.block_count", 1, 0, 1, 1024, hp->n_layer);
    BITNET__GET_INT("bitnet.feed_forward_length", 1, 0, 1, 1 << 18, hp->n_ff);
    BITNET__GET_INT("bitnet.attention.head_count", 1, 0, 1, 1024, hp->n_head);
    BITNET__GET_INT("bitnet.attention.head_count_kv", 0, hp->n_head, 1, 1024, hp->n_head_kv);
    BITNET__GET_INT("bitnet.context_length", 1, 0, 1, 1 << 24, hp->n_ctx_train);
#undef BITNET__GET_INT
    if (hp->n_embd % hp->n_head)
        return bitnet__fail(err, BITNET_E_FORMAT, "embedding length %d is not a multiple of the head count %d", hp->n_embd, hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim % 2 || hp->head_dim > 512)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "head dimension %d is not supported (even, at most 512)", hp->head_dim);
    if (hp->n_head % hp->n_head_kv)
        return bitnet__fail(err, BITNET_E_FORMAT, "head count %d is not a multiple of the KV head count %d", hp->n_head, hp->n_head_kv);
    if ((rc = bitnet__gguf_get_int(g, "bitnet.rope.dimension_count", 0, hp->head_dim, 1, 1 << 16, &v, err))) return rc;
    if (v != hp->head_dim)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "partial RoPE (bitnet.rope.dimension_count = %lld, head dimension %d) is not supported",
                            v, hp->head_dim);
    if ((rc = bitnet__gguf_get_float(g, "bitnet.rope.freq_base", 0, 10000.0, &f, err))) return rc;
    if (!(f > 0)) return bitnet__fail(err, BITNET_E_FORMAT, "bitnet.rope.freq_base must be positive");
    hp->rope_theta = (float)f;
    if ((rc = bitnet__gguf_get_float(g, "bitnet.attention.layer_norm_rms_epsilon", 1, 0, &f, err))) return rc;
    if (!(f > 0 && f < 1)) return bitnet__fail(err, BITNET_E_FORMAT, "bitnet.attention.layer_norm_rms_epsilon must be in (0, 1)");
    hp->rms_eps = (float)f;
    if ((rc = bitnet__gguf_get_str(g, "bitnet.hidden_activation", 0, &act, err))) return rc;
    if (!act.ptr || bitnet__str_eq(act, "silu")) m->act = BITNET__ACT_SILU;
    else if (bitnet__str_eq(act, "relu2")) m->act = BITNET__ACT_RELU2;
    else
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "FFN activation '%.*s' is not supported (relu2 or silu)",
                            (int)(act.len > 64 ? 64 : act.len), act.ptr);

    emb = bitnet__gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return bitnet__fail(err, BITNET_E_FORMAT, "model file lacks the tensor 'token_embd.weight'");
    if (emb->ne[1] > (1u << 24)) return bitnet__fail(err, BITNET_E_UNSUPPORTED, "vocabulary of %llu tokens is too large",
                                                     (unsigned long long)emb->ne[1]);
    hp->n_vocab = (int)emb->ne[1];
    if ((rc = bitnet__gguf_get_int(g, "bitnet.vocab_size", 0, hp->n_vocab, 1, 1 << 24, &v, err))) return rc;
    if (v != hp->n_vocab)
        return bitnet__fail(err, BITNET_E_FORMAT, "bitnet.vocab_size = %lld but token_embd.weight has %d rows", v, hp->n_vocab);

    if ((rc = bitnet__gguf_get_int(g, "tokenizer.ggml.bos_token_id", 0, -1, -1, hp->n_vocab - 1, &v, err))) return rc;
    hp->bos = (bitnet_token)v;
    if ((rc = bitnet__gguf_get_int(g, "tokenizer.ggml.eos_token_id", 0, -1, -1, hp->n_vocab - 1, &v, err))) return rc;
    hp->eos = (bitnet_token)v;
    if ((rc = bitnet__gguf_get_int(g, "tokenizer.ggml.eot_token_id", 0, -1, -1, hp->n_vocab - 1, &v, err))) return rc;
    hp->eot = (bitnet_token)v;
    return BITNET_OK;
}

BITNET__FN int bitnet__model_bind(bitnet_model *m, bitnet_error *err) {
    const bitnet_hparams *hp = &m->hp;
    int l, rc, kv_dim = hp->n_head_kv * hp->head_dim;
    char name[96];

    if ((rc = bitnet__bind_embedding(m, "token_embd.weight", 1, &m->tok_embd, &m->tok_embd_type, err))) return rc;
    if ((rc = bitnet__bind_embedding(m, "output.weight", 0, &m->output, &m->output_type, err))) return rc;
    m->hp.tied_embeddings = m->output == NULL;
    if (!m->output) { m->output = m->tok_embd; m->output_type = m->tok_embd_type; }
    if ((rc = bitnet__bind_norm(m, "output_norm.weight", (uint64_t)hp->n_embd, &m->output_norm, err))) return rc;
    m->layers = (bitnet__layer *)bitnet__calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    for (l = 0; l < hp->n_layer; l++) {
        bitnet__layer *L = &m->layers[l];
#define BITNET__NORM(field, nm, n)                                                   \
        snprintf(name, sizeof name, "blk.%d." nm ".weight", l);                      \
        if ((rc = bitnet__bind_norm(m, name, (uint64_t)(n), &L->field, err))) return rc;
        BITNET__NORM(attn_norm, "attn_norm", hp->n_embd)
        BITNET__NORM(attn_sub_norm, "attn_sub_norm", hp->n_embd)
        BITNET__NORM(ffn_norm, "ffn_norm", hp->n_embd)
        BITNET__NORM(ffn_sub_norm, "ffn_sub_norm", hp->n_ff)
#undef BITNET__NORM
        if ((rc = bitnet__bind_ternary(m, l, "attn_q", hp->n_embd, hp->n_embd, &L->wq, err)) ||
            (rc = bitnet__bind_ternary(m, l, "attn_k", kv_dim, hp->n_embd, &L->wk, err)) ||
            (rc = bitnet__bind_ternary(m, l, "attn_v", kv_dim, hp->n_embd, &L->wv, err)) ||
            (rc = bitnet__bind_ternary(m, l, "attn_output", hp->n_embd, hp->n_embd, &L->wo, err)) ||
            (rc = bitnet__bind_ternary(m, l, "ffn_gate", hp->n_ff, hp->n_embd, &L->gate, err)) ||
            (rc = bitnet__bind_ternary(m, l, "ffn_up", hp->n_ff, hp->n_embd, &L->up, err)) ||
            (rc = bitnet__bind_ternary(m, l, "ffn_down", hp->n_embd, hp->n_ff, &L->down, err)))
            return rc;
    }
    return BITNET_OK;
}

BITNET__FN bitnet_model *bitnet__model_from_bytes(const uint8_t *data, size_t size, bitnet__file *owned,
                                                  bitnet_error *err) {
    bitnet_model *m = (bitnet_model *)bitnet__calloc(1, sizeof *m);
    if (!m) {
        if (owned) bitnet__file_close(owned);
        bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
        return NULL;
    }
    if (owned) m->file = *owned;
#ifndef BITNET_NO_THREADS
    pthread_mutex_init(&m->cuda_lock, NULL);
#endif
    if (bitnet__gguf_parse(&m->gguf, data, size, err) != BITNET_OK || bitnet__model_read_hparams(m, err) != BITNET_OK ||
        bitnet__model_bind(m, err) != BITNET_OK || bitnet__tokenizer_load(m, err) != BITNET_OK) {
        bitnet_model_free(m);
        return NULL;
    }
    bitnet__ok(err);
    return m;
}

BITNET_API bitnet_model *bitnet_model_load(const char *path, const bitnet_model_params *params, bitnet_error *err) {
    bitnet__file f;
    bitnet_model_params p = params ? *params : bitnet_model_default_params();
    if (!path) { bitnet__fail(err, BITNET_E_ARG, "bitnet_model_load: path is NULL"); return NULL; }
    if (bitnet__file_open(&f, path, p.use_mmap, err) != BITNET_OK) return NULL;
    return bitnet__model_from_bytes(f.data, f.size, &f, err);
}

BITNET_API bitnet_model *bitnet_model_load_from_memory(const void *data, size_t size, bitnet_error *err) {
    if (!data || size == 0) {
        bitnet__fail(err, BITNET_E_ARG, "bitnet_model_load_from_memory: no data");
        return NULL;
    }
    return bitnet__model_from_bytes((const uint8_t *)data, size, NULL, err);
}

BITNET__FN void bitnet__cuda_model_release(bitnet_model *model);

BITNET_API void bitnet_model_free(bitnet_model *m) {
    if (!m) return;
    bitnet__cuda_model_release(m);
    bitnet__tokenizer_free(m->tokenizer);
    BITNET_FREE(m->layers);
    bitnet__gguf_free(&m->gguf);
    bitnet__file_close(&m->file);
#ifndef BITNET_NO_THREADS
    pthread_mutex_destroy(&m->cuda_lock);
#endif
    BITNET_FREE(m);
}

BITNET_API int bitnet_model_describe(const bitnet_model *m, char *buf, size_t size) {
    double params;
    const bitnet_hparams *hp;
    if (!m) return snprintf(buf, size, "(no model)");
    hp = &m->hp;
    params = (double)hp->n_layer * ((double)hp->n_embd * (2.0 * hp->n_embd + 2.0 * hp->n_head_kv * hp->head_dim) +
                                    3.0 * hp->n_embd * hp->n_ff) +
             (double)hp->n_vocab * hp->n_embd * (hp->tied_embeddings ? 1 : 2);
    return snprintf(buf, size, "bitnet %.2fB params: %d layers, dim %d, ffn %d, %d heads / %d kv, vocab %d, %s, %s LM head",
                    params / 1e9, hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->n_head_kv, hp->n_vocab,
                    m->act == BITNET__ACT_RELU2 ? "relu2" : "silu", hp->tied_embeddings ? "tied" : "untied");
}

/* ===========================================================================
   Host-side packing for the GPU kernels
   ===========================================================================
   GPU layout of an n x k ternary matrix (n % 16 == 0, k % 32 == 0), as the W2A8
   GEMV of bitnet_cuda.cu reads it:

     - Rows come in tiles of 16.  Tile t (rows 16t .. 16t+15) is one contiguous
       run of 4k bytes, so a GEMV thread block fetches its whole tile with one
       bulk copy (and any run of columns of it with one more).
     - Inside a tile, columns come in chunks of 16.  Chunk c (columns 16c ..
       16c+15) is 64 bytes: four 16-byte groups, group g holding rows 4g .. 4g+3
       as four little-endian 32-bit words.  A thread that loads one group gets 4
       rows x 16 columns and needs only one 16-byte load of activations for them.
     - A word holds the 16 values of one row in that chunk as 2-bit codes
       (code = value + 1, so -1, 0, 1 -> 0, 1, 2: the same codes as Q2_0) in the
       seed kernel's interleaved order: value j sits at bits 2 * (4 * (j % 4) + j / 4).
       Then (word >> 2s) & 0x03030303 is values 4s .. 4s+3 as four bytes, ready
       for dp4a against four int8 activations; the GEMV subtracts the sum of the
       activations once at the end to undo the +1.

   Byte offset of the word of row r, chunk c:
       ((r / 16) * (k / 16) + c) * 64 + (r % 16) / 4 * 16 + (r % 4) * 4

   This differs from the seed's 16x32 blocks (which the kernel benchmark keeps as
   its baseline) in two ways: a whole 16-row tile is one contiguous copy, and one
   16-byte load carries 4 rows of the same columns (tests/PERF.md has the timings).
*/

/* Q2_0 keeps 16 consecutive codes of a row as a plain little-endian word (value e
   at bits 2e); the GPU word wants value e at bits 2 * (4 * (e % 4) + e / 4).  Seen as
   a 4 x 4 matrix of 2-bit fields (row = e / 4, column = e % 4) that is a transpose,
   done with two delta swaps: the off-diagonal 2 x 2 blocks, then inside each block. */
BITNET__FN uint32_t bitnet__gpu_interleave(uint32_t x) {
    uint32_t t = ((x >> 12) ^ x) & 0x0000f0f0u;
    x ^= t ^ (t << 12);
    t = ((x >> 6) ^ x) & 0x00cc00ccu;
    x ^= t ^ (t << 6);
    return x;
}

BITNET_API size_t bitnet_gpu_packed_size(int n, int k) {
    if (n <= 0 || k <= 0 || n % 16 || k % 32) return 0;
    return (size_t)n * (size_t)k / 4;
}

BITNET__FN size_t bitnet__gpu_word_offset(int r, int c, int k) {
    return ((size_t)(r / 16) * (size_t)(k / 16) + (size_t)c) * 64 + (size_t)(r % 16 / 4 * 16 + r % 4 * 4);
}

BITNET_API int bitnet_gpu_pack(const int8_t *w, int n, int k, uint8_t *packed) {
    int r, c, j;
    if (!w || !packed || !bitnet_gpu_packed_size(n, k)) return BITNET_E_ARG;
    for (r = 0; r < n; r++)
        for (c = 0; c < k / 16; c++) {
            uint32_t nat = 0;
            const int8_t *v = w + (size_t)r * (size_t)k + (size_t)c * 16;
            uint8_t *dst = packed + bitnet__gpu_word_offset(r, c, k);
            for (j = 0; j < 16; j++) {
                if (v[j] < -1 || v[j] > 1) return BITNET_E_ARG;
                nat |= (uint32_t)(v[j] + 1) << (2 * j);
            }
            nat = bitnet__gpu_interleave(nat);
            for (j = 0; j < 4; j++) dst[j] = (uint8_t)(nat >> (8 * j));
        }
    return BITNET_OK;
}

BITNET_API int bitnet_gpu_unpack(const uint8_t *packed, int n, int k, int8_t *w) {
    int r, c, j;
    if (!w || !packed || !bitnet_gpu_packed_size(n, k)) return BITNET_E_ARG;
    for (r = 0; r < n; r++)
        for (c = 0; c < k / 16; c++) {
            const uint8_t *src = packed + bitnet__gpu_word_offset(r, c, k);
            uint32_t word = (uint32_t)src[0] | (uint32_t)src[1] << 8 | (uint32_t)src[2] << 16 | (uint32_t)src[3] << 24;
            uint32_t nat = bitnet__gpu_interleave(word); /* a transpose is its own inverse */
            for (j = 0; j < 16; j++) w[(size_t)r * (size_t)k + (size_t)c * 16 + (size_t)j] = (int8_t)((int)(nat >> (2 * j) & 3) - 1);
        }
    return BITNET_OK;
}

/* Packs one 16-row tile straight from Q2_0 rows (the model file's bytes): rows[i]
   is row i of the tile, k values long (k % 64 == 0).  The upload builds its fused
   matrices (Q/K/V with RoPE pairs, gate/up interleaved) by choosing the rows. */
BITNET__FN void bitnet__gpu_pack_tile_q2(uint8_t *tile, const uint8_t *const rows[16], int k) {
    int i, c;
    for (i = 0; i < 16; i++)
        for (c = 0; c < k / 16; c++) {
            const uint8_t *qs = rows[i] + (size_t)(c / 4) * BITNET__Q2_0_BYTES + 2 + (size_t)(c % 4) * 4;
            uint32_t nat = (uint32_t)qs[0] | (uint32_t)qs[1] << 8 | (uint32_t)qs[2] << 16 | (uint32_t)qs[3] << 24;
            uint32_t word = bitnet__gpu_interleave(nat);
            uint8_t *dst = tile + (size_t)c * 64 + (size_t)(i / 4 * 16 + i % 4 * 4);
            dst[0] = (uint8_t)word; dst[1] = (uint8_t)(word >> 8); dst[2] = (uint8_t)(word >> 16); dst[3] = (uint8_t)(word >> 24);
        }
}

/* The decode step fuses matrices that read the same input, and orders their rows
   so that each 16-row tile carries what its epilogue needs:
     Q/K/V    per head (the q heads, then the k heads, then the v heads) and per
              tile j of the head: dims 8j..8j+7, then their RoPE partners
              head_dim/2 + 8j .. (a rotation never leaves its tile)
     gate/up  tile t: gate rows 8t..8t+7, then up rows 8t..8t+7 (act(gate) * up
              happens in the tile) */
BITNET__FN void bitnet__gpu_pack_qkv(const bitnet_hparams *hp, const bitnet__layer *L, uint8_t *dst) {
    const int hd = hp->head_dim, half = hd / 2, k = hp->n_embd;
    int head, j, i;
    for (head = 0; head < hp->n_head + 2 * hp->n_head_kv; head++) {
        const bitnet__qweight *w = head < hp->n_head ? &L->wq : head < hp->n_head + hp->n_head_kv ? &L->wk : &L->wv;
        int h = head < hp->n_head ? head : head < hp->n_head + hp->n_head_kv ? head - hp->n_head : head - hp->n_head - hp->n_head_kv;
        for (j = 0; j < hd / 16; j++) {
            const uint8_t *rows[16];
            for (i = 0; i < 16; i++) {
                int r = h * hd + (i < 8 ? 8 * j + i : half + 8 * j + i - 8);
                rows[i] = w->q + (size_t)r * w->row_bytes;
            }
            bitnet__gpu_pack_tile_q2(dst, rows, k);
            dst += (size_t)k * 4;
        }
    }
}

BITNET__FN void bitnet__gpu_pack_gate_up(const bitnet__layer *L, uint8_t *dst) {
    const int k = L->gate.cols;
    int t, i;
    for (t = 0; t < L->gate.rows / 8; t++) {
        const uint8_t *rows[16];
        for (i = 0; i < 8; i++) {
            rows[i] = L->gate.q + (size_t)(8 * t + i) * L->gate.row_bytes;
            rows[8 + i] = L->up.q + (size_t)(8 * t + i) * L->up.row_bytes;
        }
        bitnet__gpu_pack_tile_q2(dst, rows, k);
        dst += (size_t)k * 4;
    }
}

/* A whole matrix in its own row order. */
BITNET__FN void bitnet__gpu_pack_matrix(const bitnet__qweight *w, uint8_t *dst) {
    int t, i;
    for (t = 0; t < w->rows / 16; t++) {
        const uint8_t *rows[16];
        for (i = 0; i < 16; i++) rows[i] = w->q + (size_t)(16 * t + i) * w->row_bytes;
        bitnet__gpu_pack_tile_q2(dst + (size_t)t * w->cols * 4, rows, w->cols);
    }
}

/* ===========================================================================
   Neural-net blocks on the CPU: quantization, ternary matvec, norms, RoPE
   =========================================================================== */
/* (CPU section) */

/* ===========================================================================
   Context and forward pass
   =========================================================================== */
/* (CPU section) */

/* ===========================================================================
   Tokenizer: Llama 3 byte-level BPE
   =========================================================================== */
/* (tokenizer section; placeholder until the tokenizer lands: loads nothing, and a
   synthetic byte-level vocabulary for random models) */
struct bitnet__tokenizer { int unused; };
typedef struct bitnet__vocab {
    int n_tokens;
    char **tokens;
} bitnet__vocab;
BITNET__FN void bitnet__vocab_free(bitnet__vocab *v) {
    int i;
    for (i = 0; v->tokens && i < v->n_tokens; i++) BITNET_FREE(v->tokens[i]);
    BITNET_FREE(v->tokens);
    memset(v, 0, sizeof *v);
}
BITNET__FN int bitnet__vocab_synthetic(bitnet__vocab *v, int n_vocab, bitnet_error *err) {
    int i;
    memset(v, 0, sizeof *v);
    v->tokens = (char **)bitnet__calloc((size_t)n_vocab, sizeof *v->tokens);
    if (!v->tokens) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    v->n_tokens = n_vocab;
    for (i = 0; i < n_vocab; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "tok%d", i);
        if (!(v->tokens[i] = bitnet__strndup(buf, strlen(buf)))) { bitnet__vocab_free(v); return bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); }
    }
    return BITNET_OK;
}
BITNET__FN int bitnet__vocab_from_hf(const char *tokenizer_json, const char *tokenizer_config_json, bitnet__vocab *v,
                                     bitnet_error *err) {
    (void)tokenizer_json; (void)tokenizer_config_json;
    memset(v, 0, sizeof *v);
    return bitnet__fail(err, BITNET_E_UNSUPPORTED, "reading tokenizer.json is not available yet");
}
BITNET__FN void bitnet__vocab_write_gguf(bitnet__gguf_writer *w, const bitnet__vocab *v) {
    bitnet__gguf_add_str(w, "tokenizer.ggml.model", "gpt2", 4);
    bitnet__gguf_add_str_array(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, NULL, (uint64_t)v->n_tokens);
}
BITNET__FN int bitnet__tokenizer_load(bitnet_model *model, bitnet_error *err) {
    (void)model; (void)err;
    return BITNET_OK;
}
BITNET__FN void bitnet__tokenizer_free(bitnet__tokenizer *tok) { BITNET_FREE(tok); }

/* ===========================================================================
   Chat template
   =========================================================================== */
/* (tokenizer section) */

/* ===========================================================================
   Sampler
   =========================================================================== */
/* The chain, in transformers' order: repetition penalty (positive logits divided,
   negative multiplied, for each distinct token of the last repeat_last_n), then
   greedy if temperature <= 0, else temperature, top-k, softmax, top-p, min-p, and a
   draw.  Candidates are ranked by probability, ties by lower token id; a draw u in
   [0, 1) picks the first candidate whose cumulative probability exceeds u times the
   kept mass.  Only as many candidates as that needs are ever sorted.

   The GPU backend samples without copying the logits: it applies the penalty,
   returns the best candidates in rank order and the log-sum-exp of the whole
   distribution, and bitnet__sampler_finish decides from those alone or asks for the
   full logits (bitnet_sampler_sample then reuses the same draw, so both paths give
   the same token for the same seed). */

struct bitnet_sampler {
    bitnet_sampler_params p;
    uint64_t rng[4];            /* xoshiro256** */
    bitnet_token *history;      /* ring buffer of the last repeat_last_n tokens */
    int hist_len, hist_pos;
    double pending_u;           /* a draw not yet used (see bitnet__sampler_finish) */
    int has_pending_u;
    float *vals;                /* scratch: penalized, temperature-scaled logits */
    int *rank;                  /* scratch: candidate ids */
    int cap;
};

BITNET_API bitnet_sampler_params bitnet_sampler_default_params(void) {
    bitnet_sampler_params p;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0x5eed;
    return p;
}

BITNET__FN uint64_t bitnet__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

BITNET__FN uint64_t bitnet__rng_next(uint64_t *s) {
    uint64_t r = s[1] * 5, t = s[1] << 17;
    r = ((r << 7) | (r >> 57)) * 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return r;
}

BITNET__FN double bitnet__rng_uniform(uint64_t *s) { return (double)(bitnet__rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

BITNET_API void bitnet_sampler_reset(bitnet_sampler *s) {
    uint64_t x;
    if (!s) return;
    x = s->p.seed;
    s->rng[0] = bitnet__splitmix64(&x); s->rng[1] = bitnet__splitmix64(&x);
    s->rng[2] = bitnet__splitmix64(&x); s->rng[3] = bitnet__splitmix64(&x);
    s->hist_len = s->hist_pos = 0;
    s->has_pending_u = 0;
}

BITNET_API bitnet_sampler *bitnet_sampler_create(const bitnet_sampler_params *params, bitnet_error *err) {
    bitnet_sampler_params p = params ? *params : bitnet_sampler_default_params();
    bitnet_sampler *s;
    if (!(p.temperature == p.temperature) || p.temperature > 1e6f) {
        bitnet__fail(err, BITNET_E_ARG, "sampler: temperature must be a finite number (<= 0 means greedy)");
        return NULL;
    }
    if (p.top_k < 0) { bitnet__fail(err, BITNET_E_ARG, "sampler: top_k must be >= 0 (0 = off), got %d", p.top_k); return NULL; }
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) { bitnet__fail(err, BITNET_E_ARG, "sampler: top_p must be in (0, 1]"); return NULL; }
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) { bitnet__fail(err, BITNET_E_ARG, "sampler: min_p must be in [0, 1]"); return NULL; }
    if (!(p.repeat_penalty > 0.0f && p.repeat_penalty < 1e6f)) {
        bitnet__fail(err, BITNET_E_ARG, "sampler: repeat_penalty must be positive (1 = off)");
        return NULL;
    }
    if (p.repeat_last_n < 0 || p.repeat_last_n > (1 << 20)) {
        bitnet__fail(err, BITNET_E_ARG, "sampler: repeat_last_n must be in [0, 1048576], got %d", p.repeat_last_n);
        return NULL;
    }
    s = (bitnet_sampler *)bitnet__calloc(1, sizeof *s);
    if (s && p.repeat_last_n) s->history = (bitnet_token *)bitnet__calloc((size_t)p.repeat_last_n, sizeof *s->history);
    if (!s || (p.repeat_last_n && !s->history)) {
        if (s) BITNET_FREE(s);
        bitnet__fail(err, BITNET_E_NOMEM, "sampler: out of memory");
        return NULL;
    }
    s->p = p;
    bitnet_sampler_reset(s);
    bitnet__ok(err);
    return s;
}

BITNET_API void bitnet_sampler_free(bitnet_sampler *s) {
    if (!s) return;
    BITNET_FREE(s->history);
    BITNET_FREE(s->vals);
    BITNET_FREE(s->rank);
    BITNET_FREE(s);
}

BITNET_API const bitnet_sampler_params *bitnet_sampler_get_params(const bitnet_sampler *s) { return s ? &s->p : NULL; }

BITNET_API void bitnet_sampler_accept(bitnet_sampler *s, bitnet_token token) {
    if (!s || !s->p.repeat_last_n) return;
    s->history[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->hist_len < s->p.repeat_last_n) s->hist_len++;
}

/* The distinct tokens the repetition penalty applies to (none when it is off).
   Returns how many there are; writes at most max of them. */
BITNET__FN int bitnet__sampler_penalty_tokens(const bitnet_sampler *s, bitnet_token *out, int max) {
    int i, j, n = 0;
    if (s->p.repeat_penalty == 1.0f) return 0;
    for (i = 0; i < s->hist_len; i++) {
        bitnet_token t = s->history[i];
        for (j = 0; j < i && s->history[j] != t; j++) {}
        if (j < i) continue;
        if (n < max) out[n] = t;
        n++;
    }
    return n;
}

BITNET__FN float bitnet__penalize(float logit, float penalty) { return logit > 0 ? logit / penalty : logit * penalty; }

/* Candidate order: higher value first, then lower id.  NaN ranks last. */
BITNET__FN int bitnet__ranks_before(const float *v, int a, int b) {
    float x = v[a], y = v[b];
    if (x != x) return 0;
    if (y != y) return 1;
    return x > y || (x == y && a < b);
}

/* Puts the c best of ids[0..n) first, in rank order (quickselect, then insertion
   sort of the head: c is small in practice). */
BITNET__FN void bitnet__select_top(const float *v, int *ids, int n, int c) {
    int lo = 0, hi = n - 1, i;
    if (c > n) c = n;
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2, pivot, a = lo, b;
        int t = ids[mid]; ids[mid] = ids[hi]; ids[hi] = t;
        pivot = ids[hi];
        for (b = lo; b < hi; b++)
            if (bitnet__ranks_before(v, ids[b], pivot)) { t = ids[a]; ids[a] = ids[b]; ids[b] = t; a++; }
        ids[hi] = ids[a]; ids[a] = pivot;
        if (a == c - 1 || a == c) break;
        if (a < c) lo = a + 1; else hi = a - 1;
    }
    /* heap-free sort of the head: merge-insertion is fine for c up to a few thousand */
    for (i = 1; i < c; i++) {
        int x = ids[i], j = i - 1;
        while (j >= 0 && bitnet__ranks_before(v, x, ids[j])) { ids[j + 1] = ids[j]; j--; }
        ids[j + 1] = x;
    }
}

/* Picks from candidates ids[0..c) (rank order) given their probabilities relative to
   the mass z of the whole kept distribution; returns -1 when c candidates do not
   settle the top-p cut or the draw (the caller widens c). */
BITNET__FN bitnet_token bitnet__sampler_pick(const bitnet_sampler *s, const int *ids, const float *x, int c, int complete,
                                             float xmax, double z, double u) {
    double cum = 0, kept = 0, p0 = 0;
    int j, cut = c;
    /* top-p and min-p keep a prefix of the ranking */
    for (j = 0; j < c; j++) {
        double pj = exp((double)x[ids[j]] - xmax) / z;
        if (j == 0) p0 = pj;
        if (s->p.min_p > 0 && pj < s->p.min_p * p0) { cut = j; break; }
        cum += pj;
        if (s->p.top_p < 1.0f && cum >= s->p.top_p) { cut = j + 1; break; }
    }
    if (cut == c && !complete) {
        /* the cut lies beyond these candidates unless neither filter applies */
        if (s->p.top_p < 1.0f || s->p.min_p > 0) return -1;
        kept = 1.0;                /* everything is kept: the mass is z/z */
    } else {
        kept = 0;
        for (j = 0; j < cut; j++) kept += exp((double)x[ids[j]] - xmax) / z;
    }
    cum = 0;
    for (j = 0; j < cut; j++) {
        cum += exp((double)x[ids[j]] - xmax) / z;
        if (cum > u * kept) return ids[j];
    }
    if (cut < c || complete) return ids[cut > 0 ? cut - 1 : 0]; /* rounding: the last kept one */
    return -1;
}

BITNET__FN void bitnet__sampler_record(bitnet_sampler *s, bitnet_token t) { bitnet_sampler_accept(s, t); }

BITNET__FN double bitnet__sampler_draw(bitnet_sampler *s) {
    if (!s->has_pending_u) { s->pending_u = bitnet__rng_uniform(s->rng); s->has_pending_u = 1; }
    return s->pending_u;
}

BITNET_API bitnet_token bitnet_sampler_sample(bitnet_sampler *s, const float *logits, int n_vocab) {
    bitnet_token pen[1024];
    int i, n_pen, k, c;
    float xmax;
    double z = 0, u;
    float inv_t;
    if (!s || !logits || n_vocab <= 0) return -1;
    if (n_vocab > s->cap) {
        float *v = (float *)BITNET_REALLOC(s->vals, (size_t)n_vocab * sizeof *v);
        int *r;
        if (!v) return -1;
        s->vals = v;
        r = (int *)BITNET_REALLOC(s->rank, (size_t)n_vocab * sizeof *r);
        if (!r) return -1;
        s->rank = r;
        s->cap = n_vocab;
    }
    memcpy(s->vals, logits, (size_t)n_vocab * sizeof *s->vals);
    n_pen = bitnet__sampler_penalty_tokens(s, pen, (int)(sizeof pen / sizeof pen[0]));
    if (n_pen > (int)(sizeof pen / sizeof pen[0])) {   /* a long window: walk the history itself */
        for (i = 0; i < s->hist_len; i++) {
            bitnet_token t = s->history[i];
            int j;
            for (j = 0; j < i && s->history[j] != t; j++) {}
            if (j == i && t >= 0 && t < n_vocab) s->vals[t] = bitnet__penalize(logits[t], s->p.repeat_penalty);
        }
    } else {
        for (i = 0; i < n_pen; i++)
            if (pen[i] >= 0 && pen[i] < n_vocab) s->vals[pen[i]] = bitnet__penalize(logits[pen[i]], s->p.repeat_penalty);
    }
    if (s->p.temperature <= 0) {
        int best = 0;
        for (i = 1; i < n_vocab; i++)
            if (bitnet__ranks_before(s->vals, i, best)) best = i;
        s->has_pending_u = 0;
        bitnet__sampler_record(s, best);
        return best;
    }
    inv_t = 1.0f / s->p.temperature;
    xmax = -INFINITY;
    for (i = 0; i < n_vocab; i++) {
        float x = s->vals[i] * inv_t;
        if (x != x) x = -INFINITY;
        s->vals[i] = x;
        if (x > xmax) xmax = x;
        s->rank[i] = i;
    }
    u = bitnet__sampler_draw(s);
    s->has_pending_u = 0;
    if (xmax == -INFINITY || xmax == INFINITY) { /* degenerate: take the best */
        bitnet__select_top(s->vals, s->rank, n_vocab, 1);
        bitnet__sampler_record(s, s->rank[0]);
        return s->rank[0];
    }
    k = s->p.top_k > 0 && s->p.top_k < n_vocab ? s->p.top_k : n_vocab;
    if (k < n_vocab) {
        bitnet__select_top(s->vals, s->rank, n_vocab, k);
        for (i = 0; i < k; i++) z += exp((double)s->vals[s->rank[i]] - xmax);
        bitnet_token t = bitnet__sampler_pick(s, s->rank, s->vals, k, 1, xmax, z, u);
        bitnet__sampler_record(s, t);
        return t;
    }
    for (i = 0; i < n_vocab; i++) z += exp((double)s->vals[i] - xmax);
    for (c = 64;; c *= 8) {
        bitnet_token t;
        if (c >= n_vocab) c = n_vocab;
        bitnet__select_top(s->vals, s->rank, n_vocab, c);
        t = bitnet__sampler_pick(s, s->rank, s->vals, c, c == n_vocab, xmax, z, u);
        if (t >= 0) { bitnet__sampler_record(s, t); return t; }
    }
}

/* GPU path.  ids/logits: the c best candidates in rank order (ties: lower id first),
   logits with the repetition penalty applied but not the temperature; lse: the
   log-sum-exp over the whole vocabulary of (penalized logit / temperature).  Returns
   1 and the token when the candidates settle the sample (the token is recorded in
   the history), 0 when the full logits are needed: then call bitnet_sampler_sample,
   which uses the same draw. */
BITNET__FN int bitnet__sampler_finish(bitnet_sampler *s, const bitnet_token *ids, const float *logits, int c, int n_vocab,
                                      double lse, bitnet_token *out) {
    float xs[1024];
    int rank[1024], i, k;
    double u, z = 0;
    float xmax;
    if (c <= 0) return 0;
    if (s->p.temperature <= 0) {            /* greedy: the first candidate is the argmax */
        *out = ids[0];
        s->has_pending_u = 0;
        bitnet__sampler_record(s, *out);
        return 1;
    }
    if (c > 1024) c = 1024;
    k = s->p.top_k > 0 && s->p.top_k < n_vocab ? s->p.top_k : n_vocab;
    if (k > c) {
        if (k < n_vocab) return 0;           /* top-k wider than the candidates */
    } else c = k;
    /* pick() indexes values by candidate position */
    for (i = 0; i < c; i++) { xs[i] = logits[i] / s->p.temperature; rank[i] = i; }
    xmax = xs[0];
    if (!(xmax > -INFINITY && xmax < INFINITY)) return 0;
    if (k <= c) for (i = 0; i < c; i++) z += exp((double)xs[i] - xmax);
    else z = exp(lse - xmax);
    u = bitnet__sampler_draw(s);
    {
        bitnet_token t = bitnet__sampler_pick(s, rank, xs, c, k <= c, xmax, z, u);
        if (t < 0) return 0;
        *out = ids[t];
    }
    s->has_pending_u = 0;
    bitnet__sampler_record(s, *out);
    return 1;
}

/* ===========================================================================
   Converter: JSON, safetensors, Hugging Face checkpoint -> model file
   =========================================================================== */
/* (converter section) */

/* ===========================================================================
   Random model writer (benchmarks and tests)
   =========================================================================== */

/* Deterministic generator for weights: the same seed gives the same file. */
typedef struct bitnet__xrng { uint64_t s; } bitnet__xrng;
BITNET__FN uint64_t bitnet__xrng_next(bitnet__xrng *r) {
    r->s ^= r->s << 13; r->s ^= r->s >> 7; r->s ^= r->s << 17;
    return r->s;
}
BITNET__FN float bitnet__xrng_float(bitnet__xrng *r) { /* uniform in [-1, 1) */
    return (float)((double)(bitnet__xrng_next(r) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

BITNET__FN int bitnet__random_check_shape(const bitnet_hparams *hp, bitnet_error *err) {
    if (hp->n_embd <= 0 || hp->n_embd % 64 || hp->n_embd > (1 << 16))
        return bitnet__fail(err, BITNET_E_ARG, "n_embd must be a positive multiple of 64 (Q2_0 rows), got %d", hp->n_embd);
    if (hp->n_ff <= 0 || hp->n_ff % 64 || hp->n_ff > (1 << 18))
        return bitnet__fail(err, BITNET_E_ARG, "n_ff must be a positive multiple of 64 (Q2_0 rows), got %d", hp->n_ff);
    if (hp->n_layer <= 0 || hp->n_layer > 1024) return bitnet__fail(err, BITNET_E_ARG, "n_layer must be in [1, 1024], got %d", hp->n_layer);
    if (hp->n_head <= 0 || hp->n_embd % hp->n_head || (hp->n_embd / hp->n_head) % 2)
        return bitnet__fail(err, BITNET_E_ARG, "n_head must divide n_embd into an even head dimension");
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv)
        return bitnet__fail(err, BITNET_E_ARG, "n_head_kv must divide n_head");
    if (hp->n_ctx_train <= 0) return bitnet__fail(err, BITNET_E_ARG, "n_ctx_train must be positive");
    if (hp->n_vocab < 0 || hp->n_vocab > (1 << 24)) return bitnet__fail(err, BITNET_E_ARG, "n_vocab out of range");
    return BITNET_OK;
}

/* Writes rows x cols random ternary values as Q2_0 blocks with d = 1. */
BITNET__FN int bitnet__write_random_ternary(bitnet__gguf_writer *w, int rows, int cols, bitnet__xrng *r, bitnet_error *err) {
    size_t row_bytes = (size_t)cols / BITNET__QK2_0 * BITNET__Q2_0_BYTES, rows_per_chunk = ((size_t)1 << 20) / row_bytes + 1;
    uint8_t *buf = (uint8_t *)BITNET_MALLOC(rows_per_chunk * row_bytes);
    int row = 0, rc = BITNET_OK;
    if (!buf) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    while (row < rows && rc == BITNET_OK) {
        size_t n = (size_t)(rows - row) < rows_per_chunk ? (size_t)(rows - row) : rows_per_chunk, b;
        uint64_t x = 0;
        for (b = 0; b < n * row_bytes / BITNET__Q2_0_BYTES; b++) {
            uint8_t *blk = buf + b * BITNET__Q2_0_BYTES;
            int j;
            blk[0] = 0x00; blk[1] = 0x3C; /* f16 1.0 */
            for (j = 0; j < 16; j++) {  /* 8 random bits per 2-bit code: 64 bits per 2 bytes */
                uint8_t byte = 0;
                int v;
                if ((j & 1) == 0) x = bitnet__xrng_next(r);
                for (v = 0; v < 4; v++, x >>= 8) byte |= (uint8_t)((((x & 0xff) * 3) >> 8) << (2 * v));
                blk[2 + j] = byte;
            }
        }
        rc = bitnet__gguf_write_data(w, buf, n * row_bytes, err);
        row += (int)n;
    }
    BITNET_FREE(buf);
    return rc;
}

BITNET__FN int bitnet__write_random_floats(bitnet__gguf_writer *w, size_t n, float center, float spread, int bf16,
                                           bitnet__xrng *r, bitnet_error *err) {
    enum { CHUNK = 1 << 16 };
    float *f = (float *)BITNET_MALLOC(CHUNK * sizeof *f);
    uint16_t *h = (uint16_t *)BITNET_MALLOC(CHUNK * sizeof *h);
    size_t done = 0;
    int rc = BITNET_OK;
    if (!f || !h) rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    while (rc == BITNET_OK && done < n) {
        size_t k = n - done < (size_t)CHUNK ? n - done : (size_t)CHUNK, i;
        for (i = 0; i < k; i++) f[i] = center + spread * bitnet__xrng_float(r);
        if (bf16) {
            for (i = 0; i < k; i++) h[i] = bitnet__f32_to_bf16(f[i]);
            rc = bitnet__gguf_write_data(w, h, k * 2, err);
        } else {
            uint8_t *b = (uint8_t *)f; /* little-endian f32 */
            for (i = 0; i < k; i++) {
                uint32_t u;
                memcpy(&u, &f[i], 4);
                b[4 * i] = (uint8_t)u; b[4 * i + 1] = (uint8_t)(u >> 8); b[4 * i + 2] = (uint8_t)(u >> 16); b[4 * i + 3] = (uint8_t)(u >> 24);
            }
            rc = bitnet__gguf_write_data(w, b, k * 4, err);
        }
        done += k;
    }
    BITNET_FREE(f);
    BITNET_FREE(h);
    return rc;
}

BITNET_API int bitnet_write_random_model(const char *out_path, const bitnet_hparams *hp_in, uint64_t seed,
                                         const char *tokenizer_json, bitnet_error *err) {
    static const char *const proj[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    bitnet_hparams hp;
    bitnet__gguf_writer w;
    bitnet__vocab vocab;
    bitnet__xrng r;
    char name[96], tmp_path[4096];
    int l, i, rc, head_dim, kv_dim;
    uint64_t ne[2];

    if (!out_path || !hp_in) return bitnet__fail(err, BITNET_E_ARG, "bitnet_write_random_model: NULL argument");
    hp = *hp_in;
    if (!hp.n_head_kv) hp.n_head_kv = hp.n_head;
    if (hp.rope_theta <= 0) hp.rope_theta = 500000.0f;
    if (hp.rms_eps <= 0) hp.rms_eps = 1e-5f;
    if ((rc = bitnet__random_check_shape(&hp, err))) return rc;
    if (tokenizer_json) {
        if ((rc = bitnet__vocab_from_hf(tokenizer_json, NULL, &vocab, err))) return rc;
        if (!hp.n_vocab) hp.n_vocab = vocab.n_tokens;
        if (vocab.n_tokens > hp.n_vocab) {
            bitnet__vocab_free(&vocab);
            return bitnet__fail(err, BITNET_E_ARG, "the tokenizer has %d tokens, more than n_vocab %d", vocab.n_tokens, hp.n_vocab);
        }
    } else {
        if (hp.n_vocab < 1) return bitnet__fail(err, BITNET_E_ARG, "n_vocab must be positive");
        if ((rc = bitnet__vocab_synthetic(&vocab, hp.n_vocab, err))) return rc;
    }
    head_dim = hp.n_embd / hp.n_head;
    kv_dim = hp.n_head_kv * head_dim;
    memset(&w, 0, sizeof w);
    bitnet__gguf_add_str(&w, "general.architecture", "bitnet", 6);
    bitnet__gguf_add_str(&w, "general.name", "random bitnet", 13);
    bitnet__gguf_add_u32(&w, "bitnet.context_length", (uint32_t)hp.n_ctx_train);
    bitnet__gguf_add_u32(&w, "bitnet.embedding_length", (uint32_t)hp.n_embd);
    bitnet__gguf_add_u32(&w, "bitnet.block_count", (uint32_t)hp.n_layer);
    bitnet__gguf_add_u32(&w, "bitnet.feed_forward_length", (uint32_t)hp.n_ff);
    bitnet__gguf_add_u32(&w, "bitnet.attention.head_count", (uint32_t)hp.n_head);
    bitnet__gguf_add_u32(&w, "bitnet.attention.head_count_kv", (uint32_t)hp.n_head_kv);
    bitnet__gguf_add_u32(&w, "bitnet.rope.dimension_count", (uint32_t)head_dim);
    bitnet__gguf_add_f32(&w, "bitnet.rope.freq_base", hp.rope_theta);
    bitnet__gguf_add_f32(&w, "bitnet.attention.layer_norm_rms_epsilon", hp.rms_eps);
    bitnet__gguf_add_u32(&w, "bitnet.vocab_size", (uint32_t)hp.n_vocab);
    bitnet__gguf_add_str(&w, "bitnet.hidden_activation", "relu2", 5);
    bitnet__vocab_write_gguf(&w, &vocab);
    bitnet__vocab_free(&vocab);

    ne[0] = (uint64_t)hp.n_embd; ne[1] = (uint64_t)hp.n_vocab;
    bitnet__gguf_add_tensor(&w, "token_embd.weight", BITNET__TYPE_BF16, 2, ne);
    if (!hp.tied_embeddings) bitnet__gguf_add_tensor(&w, "output.weight", BITNET__TYPE_BF16, 2, ne);
    bitnet__gguf_add_tensor(&w, "output_norm.weight", BITNET__TYPE_F32, 1, ne);
    for (l = 0; l < hp.n_layer; l++) {
        for (i = 0; i < 7; i++) {
            int rows = i == 1 || i == 2 ? kv_dim : i == 4 || i == 5 ? hp.n_ff : hp.n_embd;
            ne[0] = (uint64_t)(i == 6 ? hp.n_ff : hp.n_embd); ne[1] = (uint64_t)rows;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, proj[i]);
            bitnet__gguf_add_tensor(&w, name, BITNET__TYPE_Q2_0, 2, ne);
            ne[0] = 1;
            snprintf(name, sizeof name, "blk.%d.%s.scale", l, proj[i]);
            bitnet__gguf_add_tensor(&w, name, BITNET__TYPE_F32, 1, ne);
        }
        ne[0] = (uint64_t)hp.n_embd;
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l); bitnet__gguf_add_tensor(&w, name, BITNET__TYPE_F32, 1, ne);
        snprintf(name, sizeof name, "blk.%d.attn_sub_norm.weight", l); bitnet__gguf_add_tensor(&w, name, BITNET__TYPE_F32, 1, ne);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l); bitnet__gguf_add_tensor(&w, name, BITNET__TYPE_F32, 1, ne);
        ne[0] = (uint64_t)hp.n_ff;
        snprintf(name, sizeof name, "blk.%d.ffn_sub_norm.weight", l); bitnet__gguf_add_tensor(&w, name, BITNET__TYPE_F32, 1, ne);
    }
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path) >= (int)sizeof tmp_path) {
        bitnet__gguf_writer_free(&w);
        return bitnet__fail(err, BITNET_E_ARG, "output path too long");
    }
    if ((rc = bitnet__gguf_write_header(&w, tmp_path, err))) goto fail;

    r.s = seed * 0x9e3779b97f4a7c15ull + 0x1234567;
    if (!r.s) r.s = 1;
    /* Embedding rows of about unit RMS / 10; LM head likewise; norms near 1; each
       projection's scale makes its output about as large as its normalized input. */
    if ((rc = bitnet__write_random_floats(&w, (size_t)hp.n_vocab * (size_t)hp.n_embd, 0, 0.17f, 1, &r, err))) goto fail;
    if (!hp.tied_embeddings && (rc = bitnet__write_random_floats(&w, (size_t)hp.n_vocab * (size_t)hp.n_embd, 0, 0.17f, 1, &r, err)))
        goto fail;
    if ((rc = bitnet__write_random_floats(&w, (size_t)hp.n_embd, 1.0f, 0.2f, 0, &r, err))) goto fail;
    for (l = 0; l < hp.n_layer; l++) {
        for (i = 0; i < 7; i++) {
            int rows = i == 1 || i == 2 ? kv_dim : i == 4 || i == 5 ? hp.n_ff : hp.n_embd, cols = i == 6 ? hp.n_ff : hp.n_embd;
            float scale = (float)(1.0 / sqrt(cols * 2.0 / 3.0)) * (1.0f + 0.25f * bitnet__xrng_float(&r));
            if ((rc = bitnet__write_random_ternary(&w, rows, cols, &r, err))) goto fail;
            if ((rc = bitnet__write_random_floats(&w, 1, scale, 0, 0, &r, err))) goto fail;
        }
        if ((rc = bitnet__write_random_floats(&w, (size_t)hp.n_embd, 1.0f, 0.2f, 0, &r, err)) ||
            (rc = bitnet__write_random_floats(&w, (size_t)hp.n_embd, 1.0f, 0.2f, 0, &r, err)) ||
            (rc = bitnet__write_random_floats(&w, (size_t)hp.n_embd, 1.0f, 0.2f, 0, &r, err)) ||
            (rc = bitnet__write_random_floats(&w, (size_t)hp.n_ff, 1.0f, 0.2f, 0, &r, err)))
            goto fail;
    }
    if ((rc = bitnet__gguf_finish(&w, tmp_path, err))) goto fail;
    bitnet__gguf_writer_free(&w);
    if (rename(tmp_path, out_path) != 0) {
        remove(tmp_path);
        return bitnet__fail(err, BITNET_E_IO, "cannot rename '%s' to '%s': %s", tmp_path, out_path, strerror(errno));
    }
    bitnet__ok(err);
    return BITNET_OK;
fail:
    bitnet__gguf_writer_free(&w);
    remove(tmp_path);
    return rc;
}

/* ===========================================================================
   CUDA backend glue (bitnet_cuda.cu)
   =========================================================================== */
/* The header's half of the CUDA backend: it packs each layer's ternary matrices
   into the GPU layout on the host (one layer at a time, so the host needs only one
   layer's worth of scratch) and hands them to bitnet_cuda.cu, which keeps the
   uploaded model in model->cuda for every CUDA context of the model. */
#ifdef BITNET_CUDA

BITNET__FN int bitnet__cuda_model_upload(bitnet_model *m, int device, bitnet_error *err) {
    const bitnet_hparams *hp = &m->hp;
    bitnet__cuda_shape shape;
    float *inv_freq;
    uint8_t *scratch;
    size_t e = (size_t)hp->n_embd, f = (size_t)hp->n_ff, kv = (size_t)hp->n_head_kv * hp->head_dim;
    size_t qkv_bytes = (e + 2 * kv) * e / 4, wo_bytes = e * e / 4, gu_bytes = 2 * f * e / 4;
    int i, l, rc;
    void *cm = NULL;
    if (m->tok_embd_type == BITNET__TYPE_F32 || m->output_type == BITNET__TYPE_F32 || m->tok_embd_type != m->output_type)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "CUDA backend: the embedding and LM head must both be BF16 or both F16 (file has %s / %s)",
                            bitnet__ggml_type_name(m->tok_embd_type), bitnet__ggml_type_name(m->output_type));
    if (hp->head_dim % 16 || hp->n_ff % 16)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "CUDA backend: head dimension %d and FFN size %d must be multiples of 16",
                            hp->head_dim, hp->n_ff);
    memset(&shape, 0, sizeof shape);
    shape.n_layer = hp->n_layer;
    shape.n_embd = hp->n_embd;
    shape.n_ff = hp->n_ff;
    shape.n_head = hp->n_head;
    shape.n_head_kv = hp->n_head_kv;
    shape.head_dim = hp->head_dim;
    shape.n_vocab = hp->n_vocab;
    shape.relu2 = m->act == BITNET__ACT_RELU2;
    shape.embd_f16 = m->tok_embd_type == BITNET__TYPE_F16;
    shape.tied = hp->tied_embeddings;
    shape.rms_eps = hp->rms_eps;
    inv_freq = (float *)bitnet__calloc((size_t)hp->head_dim / 2, sizeof(float));
    scratch = (uint8_t *)BITNET_MALLOC(qkv_bytes + wo_bytes + 2 * gu_bytes);
    if (!inv_freq || !scratch) {
        BITNET_FREE(inv_freq);
        BITNET_FREE(scratch);
        return bitnet__fail(err, BITNET_E_NOMEM, "out of memory for packing a layer for the GPU");
    }
    /* the CPU path's RoPE frequencies, bit for bit */
    for (i = 0; i < hp->head_dim / 2; i++) inv_freq[i] = 1.0f / powf(hp->rope_theta, (float)(2 * i) / (float)hp->head_dim);
    rc = bitnet__cuda_model_create(&shape, device, m->tok_embd, m->output, m->output_norm, inv_freq, &cm, err);
    for (l = 0; rc == BITNET_OK && l < hp->n_layer; l++) {
        const bitnet__layer *L = &m->layers[l];
        bitnet__cuda_layer cl;
        cl.attn_norm = L->attn_norm;
        cl.attn_sub_norm = L->attn_sub_norm;
        cl.ffn_norm = L->ffn_norm;
        cl.ffn_sub_norm = L->ffn_sub_norm;
        cl.qkv = scratch;
        cl.wo = scratch + qkv_bytes;
        cl.gate_up = scratch + qkv_bytes + wo_bytes;
        cl.down = scratch + qkv_bytes + wo_bytes + gu_bytes;
        bitnet__gpu_pack_qkv(hp, L, (uint8_t *)cl.qkv);
        bitnet__gpu_pack_matrix(&L->wo, (uint8_t *)cl.wo);
        bitnet__gpu_pack_gate_up(L, (uint8_t *)cl.gate_up);
        bitnet__gpu_pack_matrix(&L->down, (uint8_t *)cl.down);
        cl.q_scale = L->wq.scale;
        cl.k_scale = L->wk.scale;
        cl.v_scale = L->wv.scale;
        cl.o_scale = L->wo.scale;
        cl.gate_scale = L->gate.scale;
        cl.up_scale = L->up.scale;
        cl.down_scale = L->down.scale;
        rc = bitnet__cuda_model_set_layer(cm, l, &cl, err);
    }
    BITNET_FREE(inv_freq);
    BITNET_FREE(scratch);
    if (rc != BITNET_OK) {
        bitnet__cuda_model_free(cm);
        return rc;
    }
    m->cuda = cm;
    return BITNET_OK;
}

/* The model on `device`, uploaded by the first CUDA context that needs it.  Call
   with model->cuda_lock held. */
BITNET__FN int bitnet__cuda_model_get(bitnet_model *m, int device, bitnet_error *err) {
    if (!m->cuda) return bitnet__cuda_model_upload(m, device, err);
    if (bitnet__cuda_model_device(m->cuda) != device)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "CUDA backend: the model is already on CUDA device %d; one model serves one device",
                            bitnet__cuda_model_device(m->cuda));
    return BITNET_OK;
}

BITNET__FN void bitnet__cuda_model_release(bitnet_model *model) {
    if (model->cuda) bitnet__cuda_model_free(model->cuda);
    model->cuda = NULL;
}

#else
BITNET__FN void bitnet__cuda_model_release(bitnet_model *model) { (void)model; }
#endif

#endif /* BITNET_IMPLEMENTATION_DONE */
#endif /* BITNET_IMPLEMENTATION */
