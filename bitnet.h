/* bitnet.h - BitNet b1.58 inference in one C header.        MIT or public domain, see end of file

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
         cc -O2 -march=native -DBITNET_CUDA app.c bitnet_cuda.o -lcudart -lstdc++ -lpthread -lm

      `make` in the repository builds every example; `make test` runs the tests.

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

   WHAT IS WHERE (the implementation, in reading order)
      utilities; the GGUF model file (format documented there); JSON; the model
      loader; host-side packing for the GPU (layout documented there); neural-net
      blocks on the CPU; context and forward pass; tokenizer; chat template;
      sampler; converter (bitnet_convert_hf); random model writer; CUDA glue.
      Chat: bitnet_chat_tokenize renders only a turn's new messages, so earlier
      turns stay in the KV cache; bitnet_decoder_* streams whole UTF-8 characters.
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
    int lm_head_int8;     /* int8 per-row LM head instead of bf16: reads half the bytes (faster
                             decode), approximate logits (CPU: see "int8 LM head") */
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
   Tokenizer and chat template
   ------------------------------------------------------------------------- */
/* Llama 3 byte-level BPE, read from the model file.  Any bytes can be encoded:
   invalid UTF-8 is kept byte for byte (see the tokenizer section), embedded NUL
   bytes work when len is given, and decoding gives back exactly the bytes encoded. */
#define BITNET_TOKENIZE_ADD_BOS  1  /* prepend the BOS token */
#define BITNET_TOKENIZE_SPECIAL  2  /* recognise special-token text such as <|eot_id|> */

/* Tokenizes len bytes of text (len < 0: NUL-terminated).  Returns the number of
   tokens, or a negative code: BITNET_E_BUFFER_TOO_SMALL when more than max_tokens
   are needed (err->needed tells how many; out may be NULL with max_tokens 0). */
BITNET_API int bitnet_tokenize(const bitnet_model *model, const char *text, ptrdiff_t len,
                               int flags, bitnet_token *out, int max_tokens,
                               bitnet_error *err);
/* Writes the bytes of one token (no NUL); special tokens give their text.  Returns
   the byte count (which may exceed size: then nothing was written), or < 0. */
BITNET_API int bitnet_token_to_piece(const bitnet_model *model, bitnet_token token,
                                     char *buf, size_t size);
/* 1 for end-of-generation tokens (end of text, end of turn). */
BITNET_API int bitnet_token_is_eog(const bitnet_model *model, bitnet_token token);

#define BITNET_DETOKENIZE_SPECIAL 1 /* show the text of control tokens (hidden by default) */

/* Concatenates the bytes of n_tokens tokens into buf (no NUL).  Returns the byte
   count, or BITNET_E_BUFFER_TOO_SMALL (err->needed) when it exceeds size. */
BITNET_API int bitnet_detokenize(const bitnet_model *model, const bitnet_token *tokens,
                                 int n_tokens, int flags, char *buf, size_t size,
                                 bitnet_error *err);

/* Streaming decoder: turns generated tokens into text that never ends inside a
   UTF-8 character.  The bytes of a character split across tokens are held back
   until it is complete; bytes that can never become valid UTF-8 pass through as
   they are, so all the output together is exactly bitnet_detokenize's.  Plain
   struct, no allocation: put it on the stack. */
typedef struct bitnet_decoder {
    const bitnet_model *model;
    int flags;            /* BITNET_DETOKENIZE_SPECIAL or 0 */
    int n_pending;
    unsigned char pending[4];
} bitnet_decoder;

BITNET_API void bitnet_decoder_init(bitnet_decoder *dec, const bitnet_model *model, int flags);
/* Adds one token and writes the text that is ready (no NUL).  Returns the byte
   count; when it exceeds size nothing was written or consumed (call again with
   a larger buffer: the token's length plus 3 always suffices).  < 0 on a bad token. */
BITNET_API int bitnet_decoder_push(bitnet_decoder *dec, bitnet_token token, char *buf, size_t size);
/* Writes what is still held back (an incomplete character at the end). */
BITNET_API int bitnet_decoder_flush(bitnet_decoder *dec, char *buf, size_t size);

/* Chat formats.  AUTO: the one the model file's chat template names. */
typedef enum bitnet_chat_format {
    BITNET_CHAT_FORMAT_AUTO   = 0,
    BITNET_CHAT_FORMAT_BITNET = 1,  /* BitNet b1.58 2B4T: "User: ...<|eot_id|>Assistant: " */
    BITNET_CHAT_FORMAT_LLAMA3 = 2   /* <|start_header_id|>user<|end_header_id|>\n\n...<|eot_id|> */
} bitnet_chat_format;

typedef struct bitnet_chat_message {
    const char *role;     /* "system", "user", "assistant", ... */
    const char *content;  /* NUL-terminated UTF-8; leading and trailing spaces are trimmed */
} bitnet_chat_message;

#define BITNET_CHAT_BEGIN           1  /* the conversation starts here: <|begin_of_text|> first */
#define BITNET_CHAT_ADD_ASSISTANT   2  /* end with the prompt for the assistant's reply */
#define BITNET_CHAT_CLOSE_REPLY     4  /* start with <|eot_id|>: it ends the reply generated
                                          before, whose <|eot_id|> was sampled but not evaluated */
#define BITNET_CHAT_CONTENT_SPECIAL 8  /* recognise special-token text inside messages */

/* The format the model's chat template names; AUTO when it has none or an unknown one. */
BITNET_API bitnet_chat_format bitnet_chat_format_detect(const bitnet_model *model);
/* Renders messages as text (NUL-terminated).  Returns its length, or
   BITNET_E_BUFFER_TOO_SMALL (err->needed counts the NUL). */
BITNET_API int bitnet_chat_render(const bitnet_model *model, bitnet_chat_format fmt,
                                  const bitnet_chat_message *msgs, int n_msgs, int flags,
                                  char *buf, size_t size, bitnet_error *err);
/* The same as tokens, ready for bitnet_eval.  Multi-turn: keep the KV cache and
   pass only the new messages (flags without BEGIN; with CLOSE_REPLY when the
   previous reply's <|eot_id|> was not evaluated); the tokens are the same as the
   tail of the whole conversation rendered at once. */
BITNET_API int bitnet_chat_tokenize(const bitnet_model *model, bitnet_chat_format fmt,
                                    const bitnet_chat_message *msgs, int n_msgs, int flags,
                                    bitnet_token *out, int max_tokens, bitnet_error *err);

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

/* Converts a Hugging Face BitNet b1.58 checkpoint directory (config.json,
   model.safetensors or model-0000N-of-0000M.safetensors with
   model.safetensors.index.json, tokenizer.json, tokenizer_config.json) into a model
   file: bf16/f16/f32 master weights are ternarized as transformers does, packed
   weights are unpacked (linear_class bitlinear and autobitlinear).  Everything is
   checked before the output is created; anything this library would run
   differently from transformers is an error naming the field or tensor.  Memory
   stays near the size of the largest projection; the file is written as
   out_path + ".tmp" and renamed when complete (removed on failure).  params may be
   NULL.  Returns BITNET_OK or a BITNET_E_* code (BITNET_E_CANCELLED when progress
   asked to stop). */
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

/* Element types of the embedding table and the LM head on the GPU. */
enum { BITNET__TABLE_BF16 = 0, BITNET__TABLE_F16 = 1, BITNET__TABLE_F32 = 2 };

typedef struct bitnet__cuda_shape {
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
    int relu2;                /* FFN activation: 1 ReLU^2, 0 SiLU */
    int embd_type;            /* element type of the embedding and LM head: BITNET__TABLE_* */
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
   positions 0 .. pos - 1).  token -1: the argmax of the step before (which must
   have run at pos - 1), fed on the device.  next: where to store the argmax of the
   logits, or NULL (then the call may return before the GPU is done). */
BITNET__CUDA_FN int bitnet__cuda_decode(void *ctx, bitnet_token token, int pos, bitnet_token *next, bitnet_error *err);
/* Copies the logits of the last step (n_vocab floats) to host memory. */
BITNET__CUDA_FN int bitnet__cuda_get_logits(void *ctx, float *dst, bitnet_error *err);
/* Sampling on the device (bitnet__sampler_finish takes it from there): the last
   step's logits with the repetition penalty applied to the n_pen (at most
   BITNET__CUDA_MAX_PENALTY) distinct tokens pen; stores the n_cand =
   min(BITNET__CUDA_CANDIDATES, n_vocab) best in rank order (higher logit first,
   ties to the lower id, NaN last): their ids and penalized logits, and lse, the
   log-sum-exp over the vocabulary of penalized logit * inv_temp. */
#define BITNET__CUDA_CANDIDATES 256
#define BITNET__CUDA_MAX_PENALTY 1024
BITNET__CUDA_FN int bitnet__cuda_candidates(void *ctx, const bitnet_token *pen, int n_pen, float penalty, float inv_temp, int *n_cand,
                                            bitnet_token *ids, float *logits, double *lse, bitnet_error *err);
/* Benchmark diagnostics: one step at pos, kernel by kernel, microseconds per kind
   of kernel: QKV, attention, O, gate/up, down, LM head. */
BITNET__CUDA_FN int bitnet__cuda_profile_step(void *ctx, int pos, double us[6], bitnet_error *err);
/* The same for the fused step (bitnet_cuda.cu): its five phases, each split into
   five parts, added up over the layers as block 0 sees them, then the LM head,
   and optionally every block's raw timestamps (see bitnet_cuda.cu); and its
   diagnostic variants. */
BITNET__CUDA_FN int bitnet__cuda_profile_fused(void *ctx, int pos, double us[26], unsigned long long **stamps, int *stamp_blocks, int *stamps_per_block,
                                               bitnet_error *err);
BITNET__CUDA_FN int bitnet__cuda_context_set_fused_variant(void *ctx, int variant, bitnet_error *err);
/* Benchmark diagnostics: recaptures the step in another mode: the kernel chain
   with its kernels overlapping in one of three ways (0 none, 1 early launch, 2
   late launch, the default before Hopper; see bitnet_cuda.cu, bitnet__launch) or
   3, the fused step (the default on Hopper); returns the mode in effect or an
   error. */
BITNET__CUDA_FN int bitnet__cuda_context_set_overlap(void *ctx, int mode, bitnet_error *err);
/* Benchmark diagnostics: attention slices of at least min_positions positions
   (1 .. 256, or 0: the default, 64, and in the fused step 32 while those give
   every query head and slice a block); recaptures the step. */
BITNET__CUDA_FN int bitnet__cuda_context_set_att_chunk(void *ctx, int min_positions, bitnet_error *err);
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

/* Asks for transparent huge pages on the 2 MiB-aligned part of a large buffer.
   Every decoded token streams all the weights once; with 4 KiB pages the TLB
   misses (costly page walks, more so in virtual machines) held the kernels to
   ~75% of the memory bandwidth, with 2 MiB pages they reach ~95%.  Only where
   the system headers declare madvise(MADV_HUGEPAGE) (glibc: _DEFAULT_SOURCE,
   the default outside strict ISO modes); it is advice, so failure is ignored. */
BITNET__FN void bitnet__advise_huge_pages(void *p, size_t size) {
#if defined(BITNET__HAVE_MMAP) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1), end = ((uintptr_t)p + size) & ~(huge - 1);
    if (end > start) madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)p;
    (void)size;
#endif
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
        if (f->data != (uint8_t *)MAP_FAILED) {
            f->mapped = 1;
            bitnet__advise_huge_pages(f->data, f->size);
            return BITNET_OK;
        }
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
    bitnet__advise_huge_pages(f->data, f->size);
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
typedef struct bitnet__lm_head_q8 bitnet__lm_head_q8;
BITNET__FN void bitnet__lm_head_q8_free(bitnet__lm_head_q8 *head);

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
    bitnet__lm_head_q8 *lm_head_q8;  /* CPU int8 LM head, built by the first context that asks */
#ifndef BITNET_NO_THREADS
    pthread_mutex_t lm_head_lock;    /* guards the building of `lm_head_q8` */
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
    pthread_mutex_init(&m->lm_head_lock, NULL);
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
    bitnet__lm_head_q8_free(m->lm_head_q8);
    BITNET_FREE(m->layers);
    bitnet__gguf_free(&m->gguf);
    bitnet__file_close(&m->file);
#ifndef BITNET_NO_THREADS
    pthread_mutex_destroy(&m->cuda_lock);
    pthread_mutex_destroy(&m->lm_head_lock);
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

/* The CUDA backend's hooks into the context API (defined in "CUDA backend glue";
   without BITNET_CUDA they only say that the backend is not compiled in). */
BITNET__FN bitnet_context *bitnet__cuda_context_new(bitnet_model *model, const bitnet_context_params *p, bitnet_error *err);
BITNET__FN void bitnet__cuda_context_release(bitnet_context *ctx);
BITNET__FN int bitnet__cuda_eval(bitnet_context *ctx, const bitnet_token *tokens, int n_tokens, int all_logits, bitnet_error *err);
BITNET__FN int bitnet__cuda_logits_to_host(bitnet_context *ctx);
BITNET__FN int bitnet__cuda_eval_sample(bitnet_context *ctx, bitnet_token token, bitnet_sampler *sampler, bitnet_token *next,
                                        bitnet_error *err);

/* ===========================================================================
   Neural-net blocks on the CPU: quantization, ternary matvec, norms, RoPE
   ===========================================================================
   Every BitLinear layer quantizes its input per token to int8 (absmax, as
   BitNet's ActQuant, computed from the RMSNorm's w x: bitnet__norm_quantize_row),
   takes integer dot products with the ternary rows, and
   scales the int32 result back to float.  The dot products are exact, so the
   SIMD kernels must give exactly the scalar kernel's int32 results (tested).

   Activation layout.  A Q2_0 block stores 64 two-bit codes c = w + 1 in 16
   bytes; value j sits in byte j/4 at bit 2*(j%4).  Shifting all 16 bytes right
   by 2p and masking with 3 yields values j = 4i + p (i = 0..15) in one go, so
   the quantizer writes activations "de-interleaved" per 64-block:

       q[64b + 16p + i] = quant(x[64b + 4i + p])

   and a SIMD kernel multiplies code planes with contiguous activation bytes.
   (The SIMD kernels mask plane p in place, which gives 4^p times its codes,
   and divide the powers of 4 out of their sums once per row.)
   The -1 offset of the codes is applied once per token and row:
   sum_j w_j a_j = sum_j c_j a_j - sum_j a_j, with sum_j a_j computed by the
   quantizer.  Codes are 0..2 (3 would mean +2 and is computed consistently by
   every kernel), activations -128..127: the unsigned x signed byte products of
   vpdpbusd / vpmaddubsw fit without saturation.

   Kernels: a portable scalar version that is always compiled, AVX2 (with FMA
   and F16C) and AVX-512 VNNI versions selected from the compiler's target
   macros (-march=native), none of them with BITNET_NO_SIMD.
*/

#if !defined(BITNET_NO_SIMD) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define BITNET__AVX2 1
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define BITNET__AVX512 1
#endif
/* g++ 12 warns, wrongly, that its own AVX-512 intrinsics read an uninitialized
   vector (GCC bug 105593); the warning points into immintrin.h. */
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
/* How far ahead (bytes) the streaming decode kernels prefetch; the hardware
   prefetcher alone left them well below the memory bandwidth.  Measured on
   the 2B4T weights (Zen 4, huge pages): the ternary kernel, which moves
   through memory slowly, wants it far ahead (17.8 -> 22.7 GB/s from 256 to
   4096 bytes), the BF16 LM head near (30.7 GB/s at 256, 25 at 1-8 KiB). */
#ifndef BITNET__PREFETCH_TERNARY
#define BITNET__PREFETCH_TERNARY 4096
#endif
#ifndef BITNET__PREFETCH_HEAD
#define BITNET__PREFETCH_HEAD 256
#endif
#endif

/* Int8 activations of several tokens, as the ternary and int8 kernels read them. */
typedef struct bitnet__acts {
    int8_t *q;        /* token t at q + t * stride, de-interleaved per 64-block */
    size_t stride;
    float *scale;     /* per token: real value = q / scale */
    int32_t *sum;     /* per token: sum of its q values */
} bitnet__acts;

/* Position of value j in the de-interleaved order of its 64-block. */
BITNET__FN int bitnet__deinterleaved(int j) {
    return (j & ~63) + 16 * (j & 3) + ((j & 63) >> 2);
}

/* Clamps to [lo, hi]; NaN gives lo.  (Comparisons rather than fmaxf/fminf,
   which compilers call out of line unless NaN handling is relaxed.) */
BITNET__FN float bitnet__clamp(float v, float lo, float hi) {
    v = v >= lo ? v : lo;
    return v <= hi ? v : hi;
}

/* Per-token absmax quantization, as BitNet's ActQuant computes it in float32:
   s = 127 / max(max|x|, 1e-5), q = clamp(round_half_even(x * s), -128, 127).
   n is a multiple of 64.  A NaN input becomes -128 rather than undefined.
   The _mul kernels do the second half, q = clamp(rint(x * f)), for a given f. */
BITNET__FN float bitnet__abs_max(const float *x, int n) {   /* max |x|; NaN are skipped */
    float amax = 0.0f;
    int j = 0;
#if defined(BITNET__AVX512)
    __m512 m = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), m);  /* NaN: keeps m */
    amax = _mm512_reduce_max_ps(m);
#elif defined(BITNET__AVX2)
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    __m128 h;
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), m);  /* NaN: keeps m */
    h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    amax = _mm_cvtss_f32(h);
#endif
    for (; j < n; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

BITNET__FN float bitnet__absmax_scale(const float *x, int n) {
    float amax = bitnet__abs_max(x, n);
    return 127.0f / (amax > 1e-5f ? amax : 1e-5f);
}

BITNET__FN void bitnet__quantize_mul_scalar(const float *x, int n, float f, int8_t *q, int32_t *sum) {
    int32_t total = 0;
    int j;
    for (j = 0; j < n; j++) {
        int8_t v = (int8_t)bitnet__clamp(rintf(x[j] * f), -128.0f, 127.0f);
        q[bitnet__deinterleaved(j)] = v;
        total += v;
    }
    *sum = total;
}

BITNET__FN void bitnet__quantize_scalar(const float *x, int n, int8_t *q, float *scale, int32_t *sum) {
    *scale = bitnet__absmax_scale(x, n);
    bitnet__quantize_mul_scalar(x, n, *scale, q, sum);
}

#ifdef BITNET__AVX512
/* Gives exactly the scalar version's bytes: vcvtps2dq rounding to nearest even
   is rintf in the default rounding mode, and NaN (INT_MIN) clamps to -128. */
BITNET__FN void bitnet__quantize_mul_avx512(const float *x, int n, float f, int8_t *q, int32_t *sum) {
    const __m512i lo = _mm512_set1_epi32(-128), hi = _mm512_set1_epi32(127);
    /* bytes 0,4,8,12 | 1,5,9,13 | ...: four values of each plane, as one dword each */
    const __m128i planes4 = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512 vs = _mm512_set1_ps(f);
    __m512i total = _mm512_setzero_si512();
    int j, k;
    for (j = 0; j < n; j += 64) {
        __m128i b[4], t0, t1, t2, t3;
        for (k = 0; k < 4; k++) {
            __m512i v = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j + 16 * k), vs),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
            total = _mm512_add_epi32(total, v);
            b[k] = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(v), planes4);
        }
        /* 4x4 transpose of dwords: plane p = dword p of b[0..3] */
        t0 = _mm_unpacklo_epi32(b[0], b[1]);
        t1 = _mm_unpackhi_epi32(b[0], b[1]);
        t2 = _mm_unpacklo_epi32(b[2], b[3]);
        t3 = _mm_unpackhi_epi32(b[2], b[3]);
        _mm_storeu_si128((__m128i *)(q + j), _mm_unpacklo_epi64(t0, t2));
        _mm_storeu_si128((__m128i *)(q + j + 16), _mm_unpackhi_epi64(t0, t2));
        _mm_storeu_si128((__m128i *)(q + j + 32), _mm_unpacklo_epi64(t1, t3));
        _mm_storeu_si128((__m128i *)(q + j + 48), _mm_unpackhi_epi64(t1, t3));
    }
    *sum = _mm512_reduce_add_epi32(total);
}
#endif

BITNET__FN void bitnet__quantize_mul(const float *x, int n, float f, int8_t *q, int32_t *sum) {
#ifdef BITNET__AVX512
    bitnet__quantize_mul_avx512(x, n, f, q, sum);
#else
    bitnet__quantize_mul_scalar(x, n, f, q, sum);
#endif
}

BITNET__FN void bitnet__quantize(const float *x, int n, int8_t *q, float *scale, int32_t *sum) {
    *scale = bitnet__absmax_scale(x, n);
    bitnet__quantize_mul(x, n, *scale, q, sum);
}

/* sum of x[i]^2, accumulated in double */
BITNET__FN double bitnet__sum_squares(const float *x, int n) {
    double sum = 0.0;
    int i = 0;
#if defined(BITNET__AVX512)
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    for (; i + 16 <= n; i += 16) {
        __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        a0 = _mm512_fmadd_pd(lo, lo, a0);
        a1 = _mm512_fmadd_pd(hi, hi, a1);
    }
    sum = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
#elif defined(BITNET__AVX2)
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    __m128d s2;
    for (; i + 8 <= n; i += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    a0 = _mm256_add_pd(a0, a1);
    s2 = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));
    sum = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
#endif
    for (; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

/* out = weight * x / RMS(x); out may be x. */
BITNET__FN void bitnet__rmsnorm(const float *x, const float *weight, int n, float eps, float *out) {
    float inv_rms = 1.0f / sqrtf((float)(bitnet__sum_squares(x, n) / n) + eps);
    int i = 0;
#if defined(BITNET__AVX512)
    __m512 vi = _mm512_set1_ps(inv_rms);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(weight + i), _mm512_mul_ps(_mm512_loadu_ps(x + i), vi)));
#elif defined(BITNET__AVX2)
    __m256 vi = _mm256_set1_ps(inv_rms);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(weight + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vi)));
#endif
    for (; i < n; i++) out[i] = weight[i] * (x[i] * inv_rms);
}

/* RMSNorm then per-token quantization: the input of a BitLinear layer.  In exact
   arithmetic transformers' q = round(y 127 / max|y|) with y = w x inv_rms does not
   depend on inv_rms, so the int8 values are computed without it:
       M = max |w x|,  q = clamp(rint((w x) fl(127 / M))),
   and only the scale uses the RMS: s = 127 / max(inv_rms M, 1e-5).  q then
   depends on nothing but the products w x and their exact max (no sum whose order
   matters), which lets the GPU compute the same bytes from statistics gathered
   anywhere (bitnet_cuda.cu).  Where inv_rms M < 1e-5 (transformers' floor; M = 0
   or a NaN too) q = clamp(rint((w x) fl(inv_rms 127e5))), which is zero for a zero
   vector and -128 everywhere for a NaN one.  Against transformers the rounding
   differs from y's own in the last bit at most (tests/test_reference.c).  tmp:
   n floats for w x, or x itself (then overwritten).  Writes q (de-interleaved),
   *scale and *sum. */
BITNET__FN void bitnet__norm_quantize_row(const float *x, const float *weight, int n, float eps, float *tmp, int8_t *q, float *scale,
                                          int32_t *sum) {
    float inv_rms = 1.0f / sqrtf((float)(bitnet__sum_squares(x, n) / n) + eps), m, amax;
    int i = 0;
#if defined(BITNET__AVX512)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(tmp + i, _mm512_mul_ps(_mm512_loadu_ps(weight + i), _mm512_loadu_ps(x + i)));
#elif defined(BITNET__AVX2)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(tmp + i, _mm256_mul_ps(_mm256_loadu_ps(weight + i), _mm256_loadu_ps(x + i)));
#endif
    for (; i < n; i++) tmp[i] = weight[i] * x[i];
    m = bitnet__abs_max(tmp, n);
    amax = inv_rms * m;
    if (amax >= 1e-5f) {
        *scale = 127.0f / amax;
        bitnet__quantize_mul(tmp, n, 127.0f / m, q, sum);
    } else {
        *scale = 127.0f / 1e-5f;
        bitnet__quantize_mul(tmp, n, inv_rms * (127.0f / 1e-5f), q, sum);
    }
}

/* Row r of a BF16/F16/F32 matrix with n columns, as floats (embedding lookup).
   Reads bytes, so any alignment and host byte order work. */
BITNET__FN void bitnet__row_to_f32(const void *m, uint32_t type, int r, int n, float *out) {
    const uint8_t *p = (const uint8_t *)m + (size_t)r * n * (type == BITNET__TYPE_F32 ? 4 : 2);
    int k;
    if (type == BITNET__TYPE_F32) {
        for (k = 0; k < n; k++, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&out[k], &u, 4);
        }
    } else if (type == BITNET__TYPE_BF16) {
        for (k = 0; k < n; k++, p += 2) out[k] = bitnet__bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    } else {
        for (k = 0; k < n; k++, p += 2) out[k] = bitnet__f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    }
}

/* ---- ternary x int8 dot products ----
   dots[t * (r1 - r0) + (r - r0)] = sum_k w[r][k] * a_t[k] for rows r0 <= r < r1
   and tokens 0 <= t < n_tok. */

BITNET__FN void bitnet__q2_dots_scalar(const bitnet__qweight *w, int r0, int r1, const bitnet__acts *a, int n_tok,
                                       int32_t *dots) {
    int n_blocks = w->cols / BITNET__QK2_0, n_rows = r1 - r0, r, t, b, i;
    for (r = r0; r < r1; r++) {
        const uint8_t *row = w->q + (size_t)r * w->row_bytes;
        for (t = 0; t < n_tok; t++) {
            const int8_t *x = a->q + (size_t)t * a->stride;
            int32_t acc = 0;
            for (b = 0; b < n_blocks; b++) {
                const uint8_t *codes = row + (size_t)b * BITNET__Q2_0_BYTES + 2;  /* skip the f16 d */
                const int8_t *xb = x + (size_t)b * BITNET__QK2_0;
                for (i = 0; i < 16; i++)
                    acc += (codes[i] & 3) * xb[i] + ((codes[i] >> 2) & 3) * xb[16 + i] +
                           ((codes[i] >> 4) & 3) * xb[32 + i] + (codes[i] >> 6) * xb[48 + i];
            }
            dots[(size_t)t * n_rows + (r - r0)] = acc - a->sum[t];
        }
    }
}

#ifdef BITNET__AVX2
/* [sum a, sum b, sum c, sum d] of four vectors of 8 int32. */
BITNET__FN __m128i bitnet__hsum4_avx2(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

BITNET__FN int32_t bitnet__hsum_avx2(__m256i a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

BITNET__FN float bitnet__hsum_ps_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 16 code bytes at p broadcast to both 128-bit halves: lo holds planes 0
   and 1, hi (shifted by 4) planes 2 and 3, each masked in place, so the high
   halves hold 4 times their codes (divided out once per row by
   BITNET__Q2_SCALE_AVX2).  Codes stay <= 12: no vpmaddubsw pair sum exceeds
   2 x 12 x 128. */
#define BITNET__Q2_UNPACK_AVX2(p, lo, hi)                                                         \
    do {                                                                                          \
        __m256i raw_ = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p)));        \
        lo = _mm256_and_si256(raw_, planes);                                                      \
        hi = _mm256_and_si256(_mm256_srli_epi16(raw_, 4), planes);                                \
    } while (0)
#define BITNET__Q2_SCALE_AVX2(acc) _mm256_srav_epi32((acc), shift)

/* Codes x activations of one block, added to the int16 lanes of s16: at most
   2 x 6144 per block, so four blocks fit before BITNET__Q2_WIDEN_AVX2. */
#define BITNET__Q2_DOT_AVX2(s16, lo, hi, x)                                                        \
    s16 = _mm256_add_epi16(s16, _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(x))), \
                                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(x) + 1))))
#define BITNET__Q2_WIDEN_AVX2(acc, s16) acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, ones))

/* One row against one token, blocks in address order. */
BITNET__FN __m256i bitnet__q2_row_avx2(const uint8_t *codes, const int8_t *x, int n_blocks, __m256i planes, __m256i ones) {
    __m256i acc = _mm256_setzero_si256(), lo, hi;
    int b = 0, g;
    while (b < n_blocks) {
        __m256i s16 = _mm256_setzero_si256();
        for (g = 0; g < 4 && b < n_blocks; g++, b++) {
            const uint8_t *wb = codes + (size_t)b * BITNET__Q2_0_BYTES;
            _mm_prefetch((const char *)wb + BITNET__PREFETCH_TERNARY, _MM_HINT_T0);
            BITNET__Q2_UNPACK_AVX2(wb, lo, hi);
            BITNET__Q2_DOT_AVX2(s16, lo, hi, x + (size_t)b * BITNET__QK2_0);
        }
        BITNET__Q2_WIDEN_AVX2(acc, s16);
    }
    return acc;
}

BITNET__FN void bitnet__q2_dots_avx2(const bitnet__qweight *w, int r0, int r1, const bitnet__acts *a, int n_tok,
                                     int32_t *dots) {
    const __m256i planes = _mm256_set_epi32(0x0c0c0c0c, 0x0c0c0c0c, 0x0c0c0c0c, 0x0c0c0c0c, 0x03030303, 0x03030303,
                                            0x03030303, 0x03030303);
    const __m256i shift = _mm256_set_epi32(2, 2, 2, 2, 0, 0, 0, 0), ones = _mm256_set1_epi16(1);
    const int n_blocks = w->cols / BITNET__QK2_0, n_rows = r1 - r0;
    const size_t rb = w->row_bytes;
    int r = r0, t, b, g;
    if (n_tok == 1) {
        /* decode: rows in address order (see the AVX-512 kernel), four summed at once */
        for (; r + 4 <= r1; r += 4) {
            const uint8_t *w0 = w->q + (size_t)r * rb + 2;
            __m256i c0 = BITNET__Q2_SCALE_AVX2(bitnet__q2_row_avx2(w0, a->q, n_blocks, planes, ones));
            __m256i c1 = BITNET__Q2_SCALE_AVX2(bitnet__q2_row_avx2(w0 + rb, a->q, n_blocks, planes, ones));
            __m256i c2 = BITNET__Q2_SCALE_AVX2(bitnet__q2_row_avx2(w0 + 2 * rb, a->q, n_blocks, planes, ones));
            __m256i c3 = BITNET__Q2_SCALE_AVX2(bitnet__q2_row_avx2(w0 + 3 * rb, a->q, n_blocks, planes, ones));
            _mm_storeu_si128((__m128i *)(dots + (r - r0)),
                             _mm_sub_epi32(bitnet__hsum4_avx2(c0, c1, c2, c3), _mm_set1_epi32(a->sum[0])));
        }
    } else {
        /* prompt: each unpacked row block serves four tokens (the last tile
           repeats its final token and drops the extra results) */
        for (; r < r1; r++) {
            const uint8_t *w0 = w->q + (size_t)r * rb + 2;
            for (t = 0; t < n_tok; t += 4) {
                const int8_t *x0 = a->q + (size_t)t * a->stride;
                const int8_t *x1 = t + 1 < n_tok ? x0 + a->stride : x0;
                const int8_t *x2 = t + 2 < n_tok ? x1 + a->stride : x1;
                const int8_t *x3 = t + 3 < n_tok ? x2 + a->stride : x2;
                __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, lo, hi;
                int32_t out[4];
                int tt;
                b = 0;
                while (b < n_blocks) {
                    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
                    for (g = 0; g < 4 && b < n_blocks; g++, b++) {
                        size_t off = (size_t)b * BITNET__QK2_0;
                        BITNET__Q2_UNPACK_AVX2(w0 + (size_t)b * BITNET__Q2_0_BYTES, lo, hi);
                        BITNET__Q2_DOT_AVX2(s0, lo, hi, x0 + off);
                        BITNET__Q2_DOT_AVX2(s1, lo, hi, x1 + off);
                        BITNET__Q2_DOT_AVX2(s2, lo, hi, x2 + off);
                        BITNET__Q2_DOT_AVX2(s3, lo, hi, x3 + off);
                    }
                    BITNET__Q2_WIDEN_AVX2(c0, s0);
                    BITNET__Q2_WIDEN_AVX2(c1, s1);
                    BITNET__Q2_WIDEN_AVX2(c2, s2);
                    BITNET__Q2_WIDEN_AVX2(c3, s3);
                }
                _mm_storeu_si128((__m128i *)out, bitnet__hsum4_avx2(BITNET__Q2_SCALE_AVX2(c0), BITNET__Q2_SCALE_AVX2(c1),
                                                                     BITNET__Q2_SCALE_AVX2(c2), BITNET__Q2_SCALE_AVX2(c3)));
                for (tt = 0; tt < 4 && t + tt < n_tok; tt++)
                    dots[(size_t)(t + tt) * n_rows + (r - r0)] = out[tt] - a->sum[t + tt];
            }
        }
    }
    for (; r < r1; r++)  /* rows left over by the decode tiles */
        dots[r - r0] = bitnet__hsum_avx2(BITNET__Q2_SCALE_AVX2(bitnet__q2_row_avx2(w->q + (size_t)r * rb + 2, a->q,
                                                                                   n_blocks, planes, ones))) - a->sum[0];
}
#undef BITNET__Q2_UNPACK_AVX2
#undef BITNET__Q2_SCALE_AVX2
#undef BITNET__Q2_DOT_AVX2
#undef BITNET__Q2_WIDEN_AVX2
#endif /* BITNET__AVX2 */

#ifdef BITNET__AVX512
/* acc += the dot products of 4-byte groups of u (unsigned) and s (signed).
   g++/gcc 12 copy every accumulator of a _mm512_dpbusd_epi32 loop to another
   register and back each iteration (16 extra moves per block in the prompt
   kernel, a third slower); the same instruction through inline assembly
   keeps them in place.  Clang compiles the intrinsic well. */
#if defined(__GNUC__) && !defined(__clang__)
#define BITNET__DPBUSD(acc, u, s) __asm__("vpdpbusd {%2, %1, %0|%0, %1, %2}" : "+v"(acc) : "v"(u), "vm"(s))
#else
#define BITNET__DPBUSD(acc, u, s) ((acc) = _mm512_dpbusd_epi32((acc), (u), (s)))
#endif

BITNET__FN __m256i bitnet__fold_avx512(__m512i a) {
    return _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
}

/* [sum a, sum b, sum c, sum d] of four vectors of 16 int32. */
BITNET__FN __m128i bitnet__hsum4_avx512(__m512i a, __m512i b, __m512i c, __m512i d) {
    return bitnet__hsum4_avx2(bitnet__fold_avx512(a), bitnet__fold_avx512(b), bitnet__fold_avx512(c),
                              bitnet__fold_avx512(d));
}

/* The 16 code bytes at p broadcast to the four 128-bit lanes, lane p masked
   to the bits of plane p: 4^p times the codes of plane p, matching the
   de-interleaved activations.  Masking without shifting saves an instruction
   per block; the products stay below 2^8 x 2^7 and each lane of an
   accumulator holds a multiple of 4^p, which BITNET__Q2_SCALE_AVX512 divides
   out exactly at the end of a row. */
#define BITNET__Q2_UNPACK_AVX512(p) _mm512_and_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p))), planes)
#define BITNET__Q2_SCALE_AVX512(acc) _mm512_srav_epi32((acc), shift)
#define BITNET__LOAD512(p) _mm512_loadu_si512((const void *)(p))

BITNET__FN void bitnet__q2_dots_avx512(const bitnet__qweight *w, int r0, int r1, const bitnet__acts *a, int n_tok,
                                       int32_t *dots) {
    const __m512i shift = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0);
    const __m512i planes = _mm512_set_epi32(-0x3f3f3f40, -0x3f3f3f40, -0x3f3f3f40, -0x3f3f3f40, 0x30303030, 0x30303030,
                                            0x30303030, 0x30303030, 0x0c0c0c0c, 0x0c0c0c0c, 0x0c0c0c0c, 0x0c0c0c0c,
                                            0x03030303, 0x03030303, 0x03030303, 0x03030303);
    const int n_blocks = w->cols / BITNET__QK2_0, n_rows = r1 - r0;
    const size_t rb = w->row_bytes;
    int r = r0, t, b;
    if (n_tok == 1) {
        /* decode: memory-bound, so walk the weights strictly in address order
           (one row after the other, which the hardware prefetcher follows; rows
           interleaved defeat it), with four accumulators per row so the
           vpdpbusd latency does not limit the loads in flight */
        for (; r + 4 <= r1; r += 4) {
            __m512i c[4];
            int k;
            for (k = 0; k < 4; k++) {
                const uint8_t *row = w->q + (size_t)(r + k) * rb + 2;
                __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
                for (b = 0; b + 4 <= n_blocks; b += 4) {
                    const uint8_t *wb = row + (size_t)b * BITNET__Q2_0_BYTES;
                    const int8_t *x = a->q + (size_t)b * BITNET__QK2_0;
                    _mm_prefetch((const char *)wb + BITNET__PREFETCH_TERNARY, _MM_HINT_T0);
                    _mm_prefetch((const char *)wb + BITNET__PREFETCH_TERNARY + 64, _MM_HINT_T0);
                    BITNET__DPBUSD(s0, BITNET__Q2_UNPACK_AVX512(wb), BITNET__LOAD512(x));
                    BITNET__DPBUSD(s1, BITNET__Q2_UNPACK_AVX512(wb + 18), BITNET__LOAD512(x + 64));
                    BITNET__DPBUSD(s2, BITNET__Q2_UNPACK_AVX512(wb + 36), BITNET__LOAD512(x + 128));
                    BITNET__DPBUSD(s3, BITNET__Q2_UNPACK_AVX512(wb + 54), BITNET__LOAD512(x + 192));
                }
                for (; b < n_blocks; b++)
                    BITNET__DPBUSD(s0, BITNET__Q2_UNPACK_AVX512(row + (size_t)b * BITNET__Q2_0_BYTES),
                                             BITNET__LOAD512(a->q + (size_t)b * BITNET__QK2_0));
                c[k] = BITNET__Q2_SCALE_AVX512(_mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3)));
            }
            _mm_storeu_si128((__m128i *)(dots + (r - r0)),
                             _mm_sub_epi32(bitnet__hsum4_avx512(c[0], c[1], c[2], c[3]), _mm_set1_epi32(a->sum[0])));
        }
    } else {
        /* prompt: 4 rows x 4 tokens, so every unpacked block serves four tokens
           and every activation load four rows (the last token tile repeats its
           final token and drops the extra results).  Token tiles outside, rows
           inside: the tile's activations stay in L1 and the item's rows in L2;
           the first pass prefetches the next row tile from memory. */
        int r_end = r0 + (n_rows & ~3);
        for (t = 0; t < n_tok; t += 4) {
            const int8_t *x0 = a->q + (size_t)t * a->stride;
            const int8_t *x1 = t + 1 < n_tok ? x0 + a->stride : x0;
            const int8_t *x2 = t + 2 < n_tok ? x1 + a->stride : x1;
            const int8_t *x3 = t + 3 < n_tok ? x2 + a->stride : x2;
            for (r = r0; r < r_end; r += 4) {
                const uint8_t *w0 = w->q + (size_t)r * rb + 2;
                __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00,
                        c12 = c00, c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00,
                        c32 = c00, c33 = c00;
                __m128i s[4];
                int tt;
                for (b = 0; b < n_blocks; b++) {
                    const uint8_t *wb = w0 + (size_t)b * BITNET__Q2_0_BYTES;
                    size_t off = (size_t)b * BITNET__QK2_0;
                    __m512i q0, q1, q2, q3, x;
                    if (t == 0) {  /* 2 lines per block cover the next tile (4 x 18 bytes per block) */
                        _mm_prefetch((const char *)wb + 4 * rb + 2 * (size_t)b * BITNET__Q2_0_BYTES, _MM_HINT_T0);
                        _mm_prefetch((const char *)wb + 4 * rb + 2 * (size_t)b * BITNET__Q2_0_BYTES + 64, _MM_HINT_T0);
                    }
                    q0 = BITNET__Q2_UNPACK_AVX512(wb), q1 = BITNET__Q2_UNPACK_AVX512(wb + rb);
                    q2 = BITNET__Q2_UNPACK_AVX512(wb + 2 * rb), q3 = BITNET__Q2_UNPACK_AVX512(wb + 3 * rb);
                    x = BITNET__LOAD512(x0 + off);
                    BITNET__DPBUSD(c00, q0, x); BITNET__DPBUSD(c10, q1, x);
                    BITNET__DPBUSD(c20, q2, x); BITNET__DPBUSD(c30, q3, x);
                    x = BITNET__LOAD512(x1 + off);
                    BITNET__DPBUSD(c01, q0, x); BITNET__DPBUSD(c11, q1, x);
                    BITNET__DPBUSD(c21, q2, x); BITNET__DPBUSD(c31, q3, x);
                    x = BITNET__LOAD512(x2 + off);
                    BITNET__DPBUSD(c02, q0, x); BITNET__DPBUSD(c12, q1, x);
                    BITNET__DPBUSD(c22, q2, x); BITNET__DPBUSD(c32, q3, x);
                    x = BITNET__LOAD512(x3 + off);
                    BITNET__DPBUSD(c03, q0, x); BITNET__DPBUSD(c13, q1, x);
                    BITNET__DPBUSD(c23, q2, x); BITNET__DPBUSD(c33, q3, x);
                }
#define BITNET__S(a, b, c, d) \
    bitnet__hsum4_avx512(BITNET__Q2_SCALE_AVX512(a), BITNET__Q2_SCALE_AVX512(b), BITNET__Q2_SCALE_AVX512(c), BITNET__Q2_SCALE_AVX512(d))
                s[0] = BITNET__S(c00, c10, c20, c30);
                s[1] = BITNET__S(c01, c11, c21, c31);
                s[2] = BITNET__S(c02, c12, c22, c32);
                s[3] = BITNET__S(c03, c13, c23, c33);
#undef BITNET__S
                for (tt = 0; tt < 4 && t + tt < n_tok; tt++)
                    _mm_storeu_si128((__m128i *)(dots + (size_t)(t + tt) * n_rows + (r - r0)),
                                     _mm_sub_epi32(s[tt], _mm_set1_epi32(a->sum[t + tt])));
            }
        }
        r = r_end;
    }
    for (; r < r1; r++) {  /* rows left over by the 4-row tiles */
        const uint8_t *w0 = w->q + (size_t)r * rb + 2;
        for (t = 0; t < n_tok; t++) {
            const int8_t *x = a->q + (size_t)t * a->stride;
            __m512i c = _mm512_setzero_si512();
            for (b = 0; b < n_blocks; b++)
                BITNET__DPBUSD(c, BITNET__Q2_UNPACK_AVX512(w0 + (size_t)b * BITNET__Q2_0_BYTES),
                                        BITNET__LOAD512(x + (size_t)b * BITNET__QK2_0));
            dots[(size_t)t * n_rows + (r - r0)] = _mm512_reduce_add_epi32(BITNET__Q2_SCALE_AVX512(c)) - a->sum[t];
        }
    }
}
#undef BITNET__Q2_UNPACK_AVX512
#undef BITNET__Q2_SCALE_AVX512
#endif /* BITNET__AVX512 */

BITNET__FN void bitnet__q2_dots(const bitnet__qweight *w, int r0, int r1, const bitnet__acts *a, int n_tok,
                                int32_t *dots) {
#if defined(BITNET__AVX512)
    bitnet__q2_dots_avx512(w, r0, r1, a, n_tok, dots);
#elif defined(BITNET__AVX2)
    bitnet__q2_dots_avx2(w, r0, r1, a, n_tok, dots);
#else
    bitnet__q2_dots_scalar(w, r0, r1, a, n_tok, dots);
#endif
}

/* ---- int8 LM head ----
   Optional (bitnet_context_params.lm_head_int8): every row of the LM head is
   quantized once to int8 with its own absmax scale (values in -127..127, in the
   de-interleaved order of the activations), and the final hidden state is
   quantized per token like any BitLinear input.  The LM head then reads half
   the bytes per token (328 instead of 657 MB for 2B4T).  Both roundings move
   the logits: on a random 2B4T-shaped model by at most 6% of the logits'
   standard deviation (4.6% on average), and the argmax changed at 1 of 64
   positions; test_forward checks the bound the two roundings allow. */
struct bitnet__lm_head_q8 {
    int8_t *q;          /* [n_vocab][n_embd] */
    float *scale;       /* per row: real value = q * scale */
    int32_t *sum;       /* per row: sum of q (for the unsigned-activation trick) */
};

/* dots[t * (r1 - r0) + (r - r0)] = sum_k h[r][k] * a_t[k], exactly. */
BITNET__FN void bitnet__q8_dots_scalar(const bitnet__lm_head_q8 *h, int n_embd, int r0, int r1, const bitnet__acts *a,
                                       int n_tok, int32_t *dots) {
    int r, t, k;
    for (r = r0; r < r1; r++) {
        const int8_t *row = h->q + (size_t)r * n_embd;
        for (t = 0; t < n_tok; t++) {
            const int8_t *x = a->q + (size_t)t * a->stride;
            int32_t acc = 0;
            for (k = 0; k < n_embd; k++) acc += row[k] * x[k];
            dots[(size_t)t * (r1 - r0) + (r - r0)] = acc;
        }
    }
}

#ifdef BITNET__AVX2
/* vpmaddubsw needs one unsigned operand: |x| (0..128) times w with x's sign
   (-127..127), so no pair sum exceeds 2 * 128 * 127 and nothing saturates. */
BITNET__FN void bitnet__q8_dots_avx2(const bitnet__lm_head_q8 *h, int n_embd, int r0, int r1, const bitnet__acts *a,
                                     int n_tok, int32_t *dots) {
    const __m256i ones = _mm256_set1_epi16(1);
    int r, t, k;
    for (r = r0; r < r1; r++) {
        const int8_t *row = h->q + (size_t)r * n_embd;
        for (t = 0; t < n_tok; t++) {
            const int8_t *x = a->q + (size_t)t * a->stride;
            __m256i acc = _mm256_setzero_si256();
            for (k = 0; k < n_embd; k += 32) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x + k));
                __m256i wv = _mm256_loadu_si256((const __m256i *)(row + k));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(xv),
                                                                                   _mm256_sign_epi8(wv, xv)), ones));
            }
            dots[(size_t)t * (r1 - r0) + (r - r0)] = bitnet__hsum_avx2(acc);
        }
    }
}
#endif

#ifdef BITNET__AVX512
/* vpdpbusd wants unsigned x signed bytes: use x + 128 (x xor 0x80) and take
   128 * sum(row) back off. */
BITNET__FN void bitnet__q8_dots_avx512(const bitnet__lm_head_q8 *h, int n_embd, int r0, int r1, const bitnet__acts *a,
                                       int n_tok, int32_t *dots) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    int r = r0, t, k;
    if (n_tok == 1) {
        /* decode: rows in address order, two chains each, four rows summed at once */
        const int8_t *x = a->q;
        for (; r + 4 <= r1; r += 4) {
            __m512i c[4];
            int j;
            for (j = 0; j < 4; j++) {
                const int8_t *row = h->q + (size_t)(r + j) * n_embd;
                __m512i s0 = _mm512_setzero_si512(), s1 = s0;
                for (k = 0; k + 128 <= n_embd; k += 128) {
                    _mm_prefetch((const char *)row + k + BITNET__PREFETCH_HEAD, _MM_HINT_T0);
                    _mm_prefetch((const char *)row + k + BITNET__PREFETCH_HEAD + 64, _MM_HINT_T0);
                    BITNET__DPBUSD(s0, _mm512_xor_si512(BITNET__LOAD512(x + k), bias), BITNET__LOAD512(row + k));
                    BITNET__DPBUSD(s1, _mm512_xor_si512(BITNET__LOAD512(x + k + 64), bias), BITNET__LOAD512(row + k + 64));
                }
                if (k < n_embd) BITNET__DPBUSD(s0, _mm512_xor_si512(BITNET__LOAD512(x + k), bias), BITNET__LOAD512(row + k));
                c[j] = _mm512_add_epi32(s0, s1);
            }
            _mm_storeu_si128((__m128i *)(dots + (r - r0)),
                             _mm_sub_epi32(bitnet__hsum4_avx512(c[0], c[1], c[2], c[3]),
                                           _mm_slli_epi32(_mm_loadu_si128((const __m128i *)(h->sum + r)), 7)));
        }
    }
    for (; r < r1; r++) {  /* prompt (all logits), and rows left over by decode */
        const int8_t *row = h->q + (size_t)r * n_embd;
        for (t = 0; t < n_tok; t += 4) {
            const int8_t *x0 = a->q + (size_t)t * a->stride;
            const int8_t *x1 = t + 1 < n_tok ? x0 + a->stride : x0;
            const int8_t *x2 = t + 2 < n_tok ? x1 + a->stride : x1;
            const int8_t *x3 = t + 3 < n_tok ? x2 + a->stride : x2;
            __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
            int32_t out[4];
            int tt;
            for (k = 0; k < n_embd; k += 64) {
                __m512i wv = BITNET__LOAD512(row + k);
                BITNET__DPBUSD(c0, _mm512_xor_si512(BITNET__LOAD512(x0 + k), bias), wv);
                BITNET__DPBUSD(c1, _mm512_xor_si512(BITNET__LOAD512(x1 + k), bias), wv);
                BITNET__DPBUSD(c2, _mm512_xor_si512(BITNET__LOAD512(x2 + k), bias), wv);
                BITNET__DPBUSD(c3, _mm512_xor_si512(BITNET__LOAD512(x3 + k), bias), wv);
            }
            _mm_storeu_si128((__m128i *)out, _mm_sub_epi32(bitnet__hsum4_avx512(c0, c1, c2, c3),
                                                           _mm_set1_epi32(128 * h->sum[r])));
            for (tt = 0; tt < 4 && t + tt < n_tok; tt++) dots[(size_t)(t + tt) * (r1 - r0) + (r - r0)] = out[tt];
        }
    }
}
#endif

BITNET__FN void bitnet__q8_dots(const bitnet__lm_head_q8 *h, int n_embd, int r0, int r1, const bitnet__acts *a,
                                int n_tok, int32_t *dots) {
#if defined(BITNET__AVX512)
    bitnet__q8_dots_avx512(h, n_embd, r0, r1, a, n_tok, dots);
#elif defined(BITNET__AVX2)
    bitnet__q8_dots_avx2(h, n_embd, r0, r1, a, n_tok, dots);
#else
    bitnet__q8_dots_scalar(h, n_embd, r0, r1, a, n_tok, dots);
#endif
}

/* Quantizes rows [r0, r1) of a float LM head (BF16/F16/F32) into h. */
BITNET__FN void bitnet__lm_head_q8_rows(bitnet__lm_head_q8 *h, const void *head, uint32_t type, int n_embd, int r0,
                                        int r1, float *tmp) {
    int r, k;
    for (r = r0; r < r1; r++) {
        float amax = 0.0f, s;
        int32_t sum = 0;
        int8_t *q = h->q + (size_t)r * n_embd;
        bitnet__row_to_f32(head, type, r, n_embd, tmp);
        for (k = 0; k < n_embd; k++) amax = fabsf(tmp[k]) > amax ? fabsf(tmp[k]) : amax;
        s = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (k = 0; k < n_embd; k++) {
            int8_t v = (int8_t)bitnet__clamp(rintf(tmp[k] * s), -127.0f, 127.0f);
            q[bitnet__deinterleaved(k)] = v;
            sum += v;
        }
        h->scale[r] = amax / 127.0f;
        h->sum[r] = sum;
    }
}

/* ---- float dot products: LM head rows (BF16/F16/F32) and attention ---- */

BITNET__FN float bitnet__dot_f32(const float *a, const float *b, int n) {
    int i = 0;
    float sum = 0.0f;
#if defined(BITNET__AVX512)
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#elif defined(BITNET__AVX2)
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    sum = bitnet__hsum_ps_avx2(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* y += alpha * x */
BITNET__FN void bitnet__axpy_f32(float alpha, const float *x, float *y, int n) {
    int i = 0;
#if defined(BITNET__AVX512)
    __m512 va = _mm512_set1_ps(alpha);
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
#elif defined(BITNET__AVX2)
    __m256 va = _mm256_set1_ps(alpha);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += alpha * x[i];
}

/* out[t * out_stride + (r - r0)] = dot(row r of the float LM head, x_t) for rows
   [r0, r1) and n_tok tokens (x_t = x + t * n).  tmp: n floats of scratch. */
BITNET__FN void bitnet__head_dots_scalar(const void *head, uint32_t type, int n, int r0, int r1, const float *x,
                                         int n_tok, float *out, size_t out_stride, float *tmp) {
    int r, t;
    for (r = r0; r < r1; r++) {
        bitnet__row_to_f32(head, type, r, n, tmp);
        for (t = 0; t < n_tok; t++) {
            const float *xt = x + (size_t)t * n;
            float sum = 0.0f;
            int k;
            for (k = 0; k < n; k++) sum += tmp[k] * xt[k];
            out[(size_t)t * out_stride + (r - r0)] = sum;
        }
    }
}

/* A BF16 value is the top half of a float, so 32 of them (64 bytes) become two
   vectors of floats with one shift and one mask of their 32-bit lanes: the
   even-indexed values and the odd-indexed ones.  That is half the work of
   widening each value, which matters in a kernel that must keep up with the
   memory.  The SIMD kernels therefore read the hidden state reordered to
   match, per 32 values: the 16 even-indexed, then the 16 odd-indexed ones
   (bitnet__head_prepare does it once per token). */
BITNET__FN void bitnet__head_permute(float *x, int n) {
    float chunk[32];
    int c, i;
    for (c = 0; c + 32 <= n; c += 32) {
        memcpy(chunk, x + c, sizeof chunk);
        for (i = 0; i < 16; i++) {
            x[c + i] = chunk[2 * i];
            x[c + 16 + i] = chunk[2 * i + 1];
        }
    }
}

/* Puts n hidden-state values into the order bitnet__head_dots reads for this type. */
BITNET__FN void bitnet__head_prepare(uint32_t type, float *x, int n) {
#ifdef BITNET__AVX2
    if (type == BITNET__TYPE_BF16) bitnet__head_permute(x, n);
#else
    (void)type;
    (void)x;
    (void)n;
#endif
}

#ifdef BITNET__AVX512
/* Values k .. k+63 of a row as four vectors of floats, wj to be multiplied
   with x[k + 16j ..] (BF16: in the reordered x).  A macro, so that the four
   vectors stay in registers. */
#define BITNET__LOAD64_AVX512(row, type, k)                                                      \
    do {                                                                                         \
        if ((type) == BITNET__TYPE_BF16) {                                                       \
            const __m512i high_ = _mm512_set1_epi32((int)0xffff0000u);                           \
            __m512i v0_ = BITNET__LOAD512((row) + 2 * (size_t)(k));                                \
            __m512i v1_ = BITNET__LOAD512((row) + 2 * (size_t)(k) + 64);                           \
            w0 = _mm512_castsi512_ps(_mm512_slli_epi32(v0_, 16));                                \
            w1 = _mm512_castsi512_ps(_mm512_and_si512(v0_, high_));                              \
            w2 = _mm512_castsi512_ps(_mm512_slli_epi32(v1_, 16));                                \
            w3 = _mm512_castsi512_ps(_mm512_and_si512(v1_, high_));                              \
        } else if ((type) == BITNET__TYPE_F16) {                                                 \
            w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((row) + 2 * (size_t)(k))));      \
            w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((row) + 2 * (size_t)(k) + 32))); \
            w2 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((row) + 2 * (size_t)(k) + 64))); \
            w3 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((row) + 2 * (size_t)(k) + 96))); \
        } else {                                                                                 \
            const float *f_ = (const float *)(const void *)((row) + 4 * (size_t)(k));            \
            w0 = _mm512_loadu_ps(f_);                                                            \
            w1 = _mm512_loadu_ps(f_ + 16);                                                       \
            w2 = _mm512_loadu_ps(f_ + 32);                                                       \
            w3 = _mm512_loadu_ps(f_ + 48);                                                       \
        }                                                                                        \
    } while (0)

/* Four chains, added as (c0 + c1) + (c2 + c3): the decode and the prompt
   paths sum every token in this same order, so a prompt's logits equal those
   of its tokens evaluated one at a time. */
#define BITNET__HEAD_CHAINS_AVX512(c, xt)                                                        \
    c##0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps((xt) + k), c##0);                                 \
    c##1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps((xt) + k + 16), c##1);                            \
    c##2 = _mm512_fmadd_ps(w2, _mm512_loadu_ps((xt) + k + 32), c##2);                            \
    c##3 = _mm512_fmadd_ps(w3, _mm512_loadu_ps((xt) + k + 48), c##3)
#define BITNET__HEAD_SUM_AVX512(c) _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(c##0, c##1), _mm512_add_ps(c##2, c##3)))

/* n is a multiple of 64 (the embedding length of every model this loads). */
BITNET__FN void bitnet__head_dots_avx512(const void *head, uint32_t type, int n, int r0, int r1, const float *x,
                                         int n_tok, float *out, size_t out_stride) {
    const size_t es = type == BITNET__TYPE_F32 ? 4 : 2, row_bytes = (size_t)n * es;
    int r, t, k;
    for (r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)head + (size_t)r * row_bytes;
        __m512 w0, w1, w2, w3;
        if (n_tok == 1) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (k = 0; k < n; k += 64) {
                size_t line;
                for (line = 0; line < es; line++)  /* 64 values: 2 or 4 cache lines */
                    _mm_prefetch((const char *)row + (size_t)k * es + BITNET__PREFETCH_HEAD + 64 * line, _MM_HINT_T0);
                BITNET__LOAD64_AVX512(row, type, k);
                BITNET__HEAD_CHAINS_AVX512(a, x);
            }
            out[r - r0] = BITNET__HEAD_SUM_AVX512(a);
            continue;
        }
        for (t = 0; t < n_tok; t += 4) {  /* each converted row slice serves four tokens */
            const float *x0 = x + (size_t)t * n;
            const float *x1 = t + 1 < n_tok ? x0 + n : x0;
            const float *x2 = t + 2 < n_tok ? x1 + n : x1;
            const float *x3 = t + 3 < n_tok ? x2 + n : x2;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            __m512 c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
            float sums[4];
            int tt;
            for (k = 0; k < n; k += 64) {
                BITNET__LOAD64_AVX512(row, type, k);
                BITNET__HEAD_CHAINS_AVX512(a, x0);
                BITNET__HEAD_CHAINS_AVX512(b, x1);
                BITNET__HEAD_CHAINS_AVX512(c, x2);
                BITNET__HEAD_CHAINS_AVX512(d, x3);
            }
            sums[0] = BITNET__HEAD_SUM_AVX512(a);
            sums[1] = BITNET__HEAD_SUM_AVX512(b);
            sums[2] = BITNET__HEAD_SUM_AVX512(c);
            sums[3] = BITNET__HEAD_SUM_AVX512(d);
            for (tt = 0; tt < 4 && t + tt < n_tok; tt++) out[(size_t)(t + tt) * out_stride + (r - r0)] = sums[tt];
        }
    }
}
#undef BITNET__LOAD64_AVX512
#undef BITNET__HEAD_CHAINS_AVX512
#undef BITNET__HEAD_SUM_AVX512
#endif

#ifdef BITNET__AVX2
/* Values k .. k+31 of a row as four vectors of floats, wj to be multiplied
   with x[k + 8j ..] (BF16: in the reordered x). */
#define BITNET__LOAD32_AVX2(row, type, k)                                                        \
    do {                                                                                         \
        if ((type) == BITNET__TYPE_BF16) {                                                       \
            const __m256i high_ = _mm256_set1_epi32((int)0xffff0000u);                           \
            __m256i v0_ = _mm256_loadu_si256((const __m256i *)((row) + 2 * (size_t)(k)));         \
            __m256i v1_ = _mm256_loadu_si256((const __m256i *)((row) + 2 * (size_t)(k) + 32));    \
            w0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0_, 16));                                \
            w1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1_, 16));                                \
            w2 = _mm256_castsi256_ps(_mm256_and_si256(v0_, high_));                              \
            w3 = _mm256_castsi256_ps(_mm256_and_si256(v1_, high_));                              \
        } else if ((type) == BITNET__TYPE_F16) {                                                 \
            w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((row) + 2 * (size_t)(k))));      \
            w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((row) + 2 * (size_t)(k) + 16))); \
            w2 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((row) + 2 * (size_t)(k) + 32))); \
            w3 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((row) + 2 * (size_t)(k) + 48))); \
        } else {                                                                                 \
            const float *f_ = (const float *)(const void *)((row) + 4 * (size_t)(k));            \
            w0 = _mm256_loadu_ps(f_);                                                            \
            w1 = _mm256_loadu_ps(f_ + 8);                                                        \
            w2 = _mm256_loadu_ps(f_ + 16);                                                       \
            w3 = _mm256_loadu_ps(f_ + 24);                                                       \
        }                                                                                        \
    } while (0)

/* As for AVX-512: four chains per token, the same order for one token or two. */
#define BITNET__HEAD_CHAINS_AVX2(c, xt)                                                          \
    c##0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps((xt) + k), c##0);                                 \
    c##1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps((xt) + k + 8), c##1);                             \
    c##2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps((xt) + k + 16), c##2);                            \
    c##3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps((xt) + k + 24), c##3)
#define BITNET__HEAD_SUM_AVX2(c) bitnet__hsum_ps_avx2(_mm256_add_ps(_mm256_add_ps(c##0, c##1), _mm256_add_ps(c##2, c##3)))

BITNET__FN void bitnet__head_dots_avx2(const void *head, uint32_t type, int n, int r0, int r1, const float *x,
                                       int n_tok, float *out, size_t out_stride) {
    const size_t row_bytes = (size_t)n * (type == BITNET__TYPE_F32 ? 4 : 2);
    int r, t, k;
    for (r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)head + (size_t)r * row_bytes;
        for (t = 0; t < n_tok; t += 2) {  /* each converted row slice serves two tokens */
            const float *x0 = x + (size_t)t * n, *x1 = t + 1 < n_tok ? x0 + n : x0;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, w0, w1, w2, w3;
            for (k = 0; k < n; k += 32) {
                BITNET__LOAD32_AVX2(row, type, k);
                BITNET__HEAD_CHAINS_AVX2(a, x0);
                if (n_tok > 1) { BITNET__HEAD_CHAINS_AVX2(b, x1); }
            }
            out[(size_t)t * out_stride + (r - r0)] = BITNET__HEAD_SUM_AVX2(a);
            if (t + 1 < n_tok) out[(size_t)(t + 1) * out_stride + (r - r0)] = BITNET__HEAD_SUM_AVX2(b);
        }
    }
}
#undef BITNET__LOAD32_AVX2
#undef BITNET__HEAD_CHAINS_AVX2
#undef BITNET__HEAD_SUM_AVX2
#endif

BITNET__FN void bitnet__head_dots(const void *head, uint32_t type, int n, int r0, int r1, const float *x, int n_tok,
                                  float *out, size_t out_stride, float *tmp) {
#if defined(BITNET__AVX512)
    (void)tmp;
    bitnet__head_dots_avx512(head, type, n, r0, r1, x, n_tok, out, out_stride);
#elif defined(BITNET__AVX2)
    (void)tmp;
    bitnet__head_dots_avx2(head, type, n, r0, r1, x, n_tok, out, out_stride);
#else
    bitnet__head_dots_scalar(head, type, n, r0, r1, x, n_tok, out, out_stride, tmp);
#endif
}

/* ---- attention and RoPE ---- */

/* RoPE angles of one position, as Hugging Face computes them in float32:
   inv_freq_i = 1 / theta^(2i / head_dim), angle = pos * inv_freq_i. */
BITNET__FN void bitnet__rope_angles(const float *inv_freq, int half, int pos, float *cos_out, float *sin_out) {
    int i;
    for (i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        cos_out[i] = cosf(angle);
        sin_out[i] = sinf(angle);
    }
}

/* Rotates the two halves of each head (NEOX style, Hugging Face's rotate_half):
   pairs (i, i + head_dim/2). */
BITNET__FN void bitnet__rope(float *v, int n_heads, int head_dim, const float *cos_, const float *sin_) {
    int h, i, half = head_dim / 2;
    for (h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * head_dim;
        for (i = 0; i < half; i++) {
            float x0 = x[i], x1 = x[i + half];
            x[i] = x0 * cos_[i] - x1 * sin_[i];
            x[i + half] = x1 * cos_[i] + x0 * sin_[i];
        }
    }
}

/* Softmax attention of one query head over n positions of one KV head
   (keys and values: [n][head_dim]).  scores: n floats of scratch. */
BITNET__FN void bitnet__attend(const float *q, const float *keys, const float *values, int n, int head_dim,
                               float *scores, float *out) {
    float scale = 1.0f / sqrtf((float)head_dim), max_score = -INFINITY, sum = 0.0f;
    int p;
    for (p = 0; p < n; p++) {
        scores[p] = bitnet__dot_f32(q, keys + (size_t)p * head_dim, head_dim) * scale;
        max_score = scores[p] > max_score ? scores[p] : max_score;
    }
    for (p = 0; p < n; p++) {
        scores[p] = expf(scores[p] - max_score);
        sum += scores[p];
    }
    memset(out, 0, (size_t)head_dim * sizeof *out);
    for (p = 0; p < n; p++) bitnet__axpy_f32(scores[p] / sum, values + (size_t)p * head_dim, out, head_dim);
}

/* ===========================================================================
   Context and forward pass
   ===========================================================================
   A context holds the KV cache, scratch buffers for one micro-batch of up to
   BITNET__UBATCH tokens, the logits of the last eval and a thread pool.  A
   prompt is evaluated one micro-batch at a time, so the batched kernels reuse
   every weight they load across the micro-batch's tokens.

   Parallel work is split into items (row ranges of a matrix, tokens, heads)
   that the calling thread and the pool's workers take from a shared counter.
   Small per-token steps (norms, quantization, RoPE) are items too, so a
   micro-batch spreads them over the threads; a single token runs them on the
   caller. */

/* ---- thread pool ----
   Workers spin briefly between jobs (a decode step posts ~150 jobs, too many
   for a sleep and wake-up each), then sleep on a condition variable.  The
   caller, once it has no items left, spins a little for the workers to finish
   theirs and then sleeps too: when other processes take cores, a worker may be
   waiting for one, and a spinning caller would hold it (this made decoding
   10x slower on a busy 2-core machine).  Spinners also yield now and then.
   Needs the GCC/Clang atomic builtins; elsewhere, and with BITNET_NO_THREADS,
   every job runs on the calling thread. */
#if !defined(BITNET_NO_THREADS) && (defined(__GNUC__) || defined(__clang__))
#define BITNET__THREADS 1
#include <sched.h>
#define BITNET__ATOMIC_LOAD(p)       __atomic_load_n(p, __ATOMIC_SEQ_CST)
#define BITNET__ATOMIC_STORE(p, v)   __atomic_store_n(p, v, __ATOMIC_SEQ_CST)
#define BITNET__ATOMIC_ADD(p, v)     __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST)
#if defined(__x86_64__) || defined(__i386__)
#define BITNET__PAUSE() __builtin_ia32_pause()
#else
#define BITNET__PAUSE() ((void)0)
#endif
#define BITNET__SPINS (1 << 16)      /* pauses before an idle worker sleeps (~2 ms at 27 ns a pause) */
#define BITNET__WAIT_SPINS (1 << 11) /* pauses before the caller sleeps until the workers finish (~50 us) */
#define BITNET__YIELD_EVERY 1024     /* pauses between sched_yield calls while spinning */
#endif

typedef void (*bitnet__job_fn)(void *job, int item, int thread);
typedef struct bitnet__pool bitnet__pool;

typedef struct bitnet__worker {
    bitnet__pool *pool;
    int index;               /* 1 .. n_threads-1; the caller is thread 0 */
} bitnet__worker;

struct bitnet__pool {
    int n_threads;           /* the calling thread and n_threads - 1 workers */
#ifdef BITNET__THREADS
    pthread_t *threads;
    bitnet__worker *workers;
    int sync_ready;          /* lock, wake and done are initialized */
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* workers wait here for a job */
    pthread_cond_t done;     /* the caller waits here for the workers to finish */
    /* the current job: written by the caller before it bumps `generation` */
    bitnet__job_fn fn;
    void *job;
    int n_items;
    /* touched by several threads: only through the atomic builtins */
    int next_item, n_finished, n_sleeping, caller_sleeping, quit;
    unsigned generation;
#endif
};

#ifdef BITNET__THREADS
BITNET__FN void bitnet__pool_take_items(bitnet__pool *pool, int thread) {
    int item;
    while ((item = BITNET__ATOMIC_ADD(&pool->next_item, 1)) < pool->n_items) pool->fn(pool->job, item, thread);
}

BITNET__FN void *bitnet__worker_main(void *arg) {
    bitnet__worker *self = (bitnet__worker *)arg;
    bitnet__pool *pool = self->pool;
    unsigned seen = 0, generation;
    for (;;) {
        int spins = 0;
        while ((generation = BITNET__ATOMIC_LOAD(&pool->generation)) == seen) {
            if (++spins < BITNET__SPINS) {
                if (spins % BITNET__YIELD_EVERY == 0) sched_yield();
                else BITNET__PAUSE();
                continue;
            }
            /* Sleep.  The caller bumps `generation` before it reads `n_sleeping`,
               and we count ourselves in before we re-read `generation`, so one
               of us sees the other and no wake-up is lost. */
            pthread_mutex_lock(&pool->lock);
            BITNET__ATOMIC_ADD(&pool->n_sleeping, 1);
            while (BITNET__ATOMIC_LOAD(&pool->generation) == seen) pthread_cond_wait(&pool->wake, &pool->lock);
            BITNET__ATOMIC_ADD(&pool->n_sleeping, -1);
            pthread_mutex_unlock(&pool->lock);
            spins = 0;
        }
        seen = generation;
        if (BITNET__ATOMIC_LOAD(&pool->quit)) return NULL;
        bitnet__pool_take_items(pool, self->index);
        /* the last one to finish wakes the caller if it sleeps (the same
           two-sided handshake as above, on n_finished and caller_sleeping) */
        if (BITNET__ATOMIC_ADD(&pool->n_finished, 1) + 1 == pool->n_threads - 1 &&
            BITNET__ATOMIC_LOAD(&pool->caller_sleeping)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}
#endif

BITNET__FN void bitnet__pool_stop(bitnet__pool *pool) {
#ifdef BITNET__THREADS
    int i;
    if (pool->n_threads > 1) {
        BITNET__ATOMIC_STORE(&pool->quit, 1);
        pthread_mutex_lock(&pool->lock);
        BITNET__ATOMIC_ADD(&pool->generation, 1u);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
        for (i = 0; i < pool->n_threads - 1; i++) pthread_join(pool->threads[i], NULL);
    }
    if (pool->sync_ready) {
        pthread_cond_destroy(&pool->done);
        pthread_cond_destroy(&pool->wake);
        pthread_mutex_destroy(&pool->lock);
    }
    BITNET_FREE(pool->threads);
    BITNET_FREE(pool->workers);
#endif
    memset(pool, 0, sizeof *pool);
}

BITNET__FN int bitnet__pool_start(bitnet__pool *pool, int n_threads, bitnet_error *err) {
    memset(pool, 0, sizeof *pool);
    pool->n_threads = 1;
#ifdef BITNET__THREADS
    if (n_threads > 1) {
        int i;
        pool->threads = (pthread_t *)bitnet__calloc((size_t)n_threads - 1, sizeof *pool->threads);
        pool->workers = (bitnet__worker *)bitnet__calloc((size_t)n_threads - 1, sizeof *pool->workers);
        if (!pool->threads || !pool->workers) {
            bitnet__pool_stop(pool);
            return bitnet__fail(err, BITNET_E_NOMEM, "out of memory for %d threads", n_threads);
        }
        if (pthread_mutex_init(&pool->lock, NULL) != 0) {
            bitnet__pool_stop(pool);
            return bitnet__fail(err, BITNET_E_NOMEM, "cannot create a mutex for the thread pool");
        }
        if (pthread_cond_init(&pool->wake, NULL) != 0) {
            pthread_mutex_destroy(&pool->lock);
            bitnet__pool_stop(pool);
            return bitnet__fail(err, BITNET_E_NOMEM, "cannot create a condition variable for the thread pool");
        }
        if (pthread_cond_init(&pool->done, NULL) != 0) {
            pthread_cond_destroy(&pool->wake);
            pthread_mutex_destroy(&pool->lock);
            bitnet__pool_stop(pool);
            return bitnet__fail(err, BITNET_E_NOMEM, "cannot create a condition variable for the thread pool");
        }
        pool->sync_ready = 1;
        for (i = 1; i < n_threads; i++) {
            pool->workers[i - 1].pool = pool;
            pool->workers[i - 1].index = i;
            if (pthread_create(&pool->threads[i - 1], NULL, bitnet__worker_main, &pool->workers[i - 1]) != 0) {
                bitnet__pool_stop(pool);
                return bitnet__fail(err, BITNET_E_NOMEM, "cannot start worker thread %d of %d", i, n_threads - 1);
            }
            pool->n_threads = i + 1;
        }
    }
#else
    (void)n_threads;
    (void)err;
#endif
    return BITNET_OK;
}

/* Runs fn(job, item, thread) for every item in [0, n_items), spread over the
   pool, and returns when all are done. */
BITNET__FN void bitnet__pool_run(bitnet__pool *pool, bitnet__job_fn fn, void *job, int n_items) {
    int item;
#ifdef BITNET__THREADS
    if (pool->n_threads > 1 && n_items > 1) {
        unsigned spins = 0;
        pool->fn = fn;
        pool->job = job;
        pool->n_items = n_items;
        BITNET__ATOMIC_STORE(&pool->next_item, 0);
        BITNET__ATOMIC_STORE(&pool->n_finished, 0);
        BITNET__ATOMIC_ADD(&pool->generation, 1u);
        if (BITNET__ATOMIC_LOAD(&pool->n_sleeping)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_broadcast(&pool->wake);
            pthread_mutex_unlock(&pool->lock);
        }
        bitnet__pool_take_items(pool, 0);
        while (BITNET__ATOMIC_LOAD(&pool->n_finished) < pool->n_threads - 1) {
            if (++spins < BITNET__WAIT_SPINS) {
                if (spins % BITNET__YIELD_EVERY == 0) sched_yield();
                else BITNET__PAUSE();
                continue;
            }
            pthread_mutex_lock(&pool->lock);
            BITNET__ATOMIC_STORE(&pool->caller_sleeping, 1);
            while (BITNET__ATOMIC_LOAD(&pool->n_finished) < pool->n_threads - 1) pthread_cond_wait(&pool->done, &pool->lock);
            BITNET__ATOMIC_STORE(&pool->caller_sleeping, 0);
            pthread_mutex_unlock(&pool->lock);
        }
        return;
    }
#else
    (void)pool;
#endif
    for (item = 0; item < n_items; item++) fn(job, item, 0);
}

/* ---- the context ---- */

#define BITNET__UBATCH 64       /* tokens per forward step: bounds the scratch memory */
#define BITNET__ITEM_ROWS 256   /* at most this many matrix rows per work item */

struct bitnet_context {
    bitnet_model *model;
    bitnet_backend backend;
    void *cuda;                  /* the CUDA backend's per-context state (bitnet_cuda.cu) */
    int n_ctx;                   /* KV cache length in positions */
    int n_past;                  /* positions filled */
    int n_threads;
    const bitnet__lm_head_q8 *head_q8;  /* the model's int8 LM head, NULL: use the float one */
    void *arena;                 /* holds every buffer below */
    float *k_cache, *v_cache;    /* [n_layer][n_head_kv][n_ctx][head_dim] */
    /* one micro-batch */
    float *x;                    /* [UBATCH][n_embd] residual stream */
    float *q, *k, *v;            /* [UBATCH][n_embd], [UBATCH][kv_dim] x 2 */
    float *att;                  /* [UBATCH][n_embd] attention output, later the final hidden states */
    float *gate, *up;            /* [UBATCH][n_ff] */
    bitnet__acts acts;           /* [UBATCH][max(n_embd, n_ff)] the current BitLinear input */
    float *rope_cos, *rope_sin;  /* [UBATCH][head_dim / 2] */
    float *inv_freq;             /* [head_dim / 2] */
    float *thread_f32;           /* per thread: thread_f32_len floats of scratch */
    size_t thread_f32_len;
    int32_t *thread_dots;        /* per thread: BITNET__ITEM_ROWS * UBATCH int32 */
    /* logits of the last eval: n_logits rows of n_vocab, for the last n_logits of n_batch tokens */
    float *logits;
    size_t logits_cap;           /* floats allocated */
    int n_logits, n_batch;
    bitnet__pool pool;
};

BITNET__FN void bitnet__lm_head_q8_free(bitnet__lm_head_q8 *h) {
    if (!h) return;
    BITNET_FREE(h->q);
    BITNET_FREE(h->scale);
    BITNET_FREE(h->sum);
    BITNET_FREE(h);
}

/* ---- jobs: one struct per kind of parallel step ---- */

/* Up to three matrices that read the same activations (Q/K/V, gate/up). */
typedef struct bitnet__matmul_job {
    bitnet_context *ctx;
    int n_mats, n_tok, rows_per_item;
    const bitnet__qweight *w[3];
    float *out[3];              /* token t, row r at out[t * stride + r] */
    size_t stride[3];
    int accumulate;             /* add to out (the residual) instead of storing */
    int first_item[4];          /* items of matrix m: first_item[m] .. first_item[m + 1] - 1 */
} bitnet__matmul_job;

BITNET__FN void bitnet__matmul_item(void *p, int item, int thread) {
    bitnet__matmul_job *job = (bitnet__matmul_job *)p;
    bitnet_context *ctx = job->ctx;
    int32_t *dots = ctx->thread_dots + (size_t)thread * BITNET__ITEM_ROWS * BITNET__UBATCH;
    const bitnet__qweight *w;
    int m = 0, r0, r1, n, t, r;
    while (item >= job->first_item[m + 1]) m++;
    w = job->w[m];
    r0 = (item - job->first_item[m]) * job->rows_per_item;
    r1 = r0 + job->rows_per_item < w->rows ? r0 + job->rows_per_item : w->rows;
    n = r1 - r0;
    bitnet__q2_dots(w, r0, r1, &ctx->acts, job->n_tok, dots);
    for (t = 0; t < job->n_tok; t++) {
        float factor = w->scale / ctx->acts.scale[t], *out = job->out[m] + (size_t)t * job->stride[m] + r0;
        const int32_t *d = dots + (size_t)t * n;
        if (job->accumulate)
            for (r = 0; r < n; r++) out[r] += (float)d[r] * factor;
        else
            for (r = 0; r < n; r++) out[r] = (float)d[r] * factor;
    }
}

/* out_m = W_m . acts (times the scales) for n_mats matrices, in parallel. */
BITNET__FN void bitnet__matmul(bitnet_context *ctx, int n_tok, int n_mats, const bitnet__qweight *const *w,
                               float *const *out, const size_t *stride, int accumulate) {
    bitnet__matmul_job job;
    int m, total_rows = 0, rows;
    job.ctx = ctx;
    job.n_mats = n_mats;
    job.n_tok = n_tok;
    job.accumulate = accumulate;
    for (m = 0; m < n_mats; m++) total_rows += w[m]->rows;
    /* about four items per thread, in whole 16-row tiles */
    rows = (total_rows / (4 * ctx->n_threads) + 15) / 16 * 16;
    job.rows_per_item = rows < 16 ? 16 : rows > BITNET__ITEM_ROWS ? BITNET__ITEM_ROWS : rows;
    job.first_item[0] = 0;
    for (m = 0; m < n_mats; m++) {
        job.w[m] = w[m];
        job.out[m] = out[m];
        job.stride[m] = stride[m];
        job.first_item[m + 1] = job.first_item[m] + (w[m]->rows + job.rows_per_item - 1) / job.rows_per_item;
    }
    bitnet__pool_run(&ctx->pool, bitnet__matmul_item, &job, job.first_item[n_mats]);
}

/* RMSNorm then quantization of one token: the input of a BitLinear layer. */
typedef struct bitnet__norm_job {
    bitnet_context *ctx;
    const float *src;           /* token t at src + t * n */
    const float *weight;
    int n;
} bitnet__norm_job;

BITNET__FN void bitnet__norm_quantize_item(void *p, int t, int thread) {
    bitnet__norm_job *job = (bitnet__norm_job *)p;
    bitnet_context *ctx = job->ctx;
    float *tmp = ctx->thread_f32 + (size_t)thread * ctx->thread_f32_len;
    bitnet__norm_quantize_row(job->src + (size_t)t * job->n, job->weight, job->n, ctx->model->hp.rms_eps, tmp,
                              ctx->acts.q + (size_t)t * ctx->acts.stride, &ctx->acts.scale[t], &ctx->acts.sum[t]);
}

BITNET__FN void bitnet__norm_quantize(bitnet_context *ctx, int n_tok, const float *src, const float *weight, int n) {
    bitnet__norm_job job;
    job.ctx = ctx;
    job.src = src;
    job.weight = weight;
    job.n = n;
    bitnet__pool_run(&ctx->pool, bitnet__norm_quantize_item, &job, n_tok);
}

/* Per-layer steps on single tokens (RoPE and KV store, FFN activation) and on
   (token, head) pairs (attention). */
typedef struct bitnet__layer_job {
    bitnet_context *ctx;
    int layer, pos;             /* position of the micro-batch's first token */
} bitnet__layer_job;

BITNET__FN void bitnet__rope_store_item(void *p, int t, int thread) {
    bitnet__layer_job *job = (bitnet__layer_job *)p;
    bitnet_context *ctx = job->ctx;
    const bitnet_hparams *hp = &ctx->model->hp;
    int hd = hp->head_dim, kv_dim = hp->n_head_kv * hd, h, half = hd / 2;
    float *q = ctx->q + (size_t)t * hp->n_embd, *k = ctx->k + (size_t)t * kv_dim, *v = ctx->v + (size_t)t * kv_dim;
    const float *cos_ = ctx->rope_cos + (size_t)t * half, *sin_ = ctx->rope_sin + (size_t)t * half;
    (void)thread;
    bitnet__rope(q, hp->n_head, hd, cos_, sin_);
    bitnet__rope(k, hp->n_head_kv, hd, cos_, sin_);
    for (h = 0; h < hp->n_head_kv; h++) {
        size_t at = (((size_t)job->layer * hp->n_head_kv + h) * ctx->n_ctx + (size_t)(job->pos + t)) * hd;
        memcpy(ctx->k_cache + at, k + (size_t)h * hd, (size_t)hd * sizeof(float));
        memcpy(ctx->v_cache + at, v + (size_t)h * hd, (size_t)hd * sizeof(float));
    }
}

BITNET__FN void bitnet__attention_item(void *p, int item, int thread) {
    bitnet__layer_job *job = (bitnet__layer_job *)p;
    bitnet_context *ctx = job->ctx;
    const bitnet_hparams *hp = &ctx->model->hp;
    int t = item / hp->n_head, h = item % hp->n_head, hd = hp->head_dim;
    int kv_head = h / (hp->n_head / hp->n_head_kv);
    size_t cache = ((size_t)job->layer * hp->n_head_kv + kv_head) * ctx->n_ctx * hd;
    bitnet__attend(ctx->q + (size_t)t * hp->n_embd + (size_t)h * hd, ctx->k_cache + cache, ctx->v_cache + cache,
                   job->pos + t + 1, hd, ctx->thread_f32 + (size_t)thread * ctx->thread_f32_len,
                   ctx->att + (size_t)t * hp->n_embd + (size_t)h * hd);
}

/* f = act(gate) * up, then ffn_sub_norm and quantization. */
BITNET__FN void bitnet__ffn_item(void *p, int t, int thread) {
    bitnet__layer_job *job = (bitnet__layer_job *)p;
    bitnet_context *ctx = job->ctx;
    const bitnet_model *m = ctx->model;
    int n = m->hp.n_ff, i;
    const float *g = ctx->gate + (size_t)t * n, *u = ctx->up + (size_t)t * n;
    float *f = ctx->thread_f32 + (size_t)thread * ctx->thread_f32_len;
    if (m->act == BITNET__ACT_RELU2) {
        i = 0;
#ifdef BITNET__AVX512
        for (; i + 16 <= n; i += 16) {  /* max(g, 0) is 0 for a NaN g, as the comparison below */
            __m512 r = _mm512_max_ps(_mm512_loadu_ps(g + i), _mm512_setzero_ps());
            _mm512_storeu_ps(f + i, _mm512_mul_ps(_mm512_mul_ps(r, r), _mm512_loadu_ps(u + i)));
        }
#endif
        for (; i < n; i++) f[i] = (g[i] > 0.0f ? g[i] * g[i] : 0.0f) * u[i];
    } else
        for (i = 0; i < n; i++) f[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    bitnet__norm_quantize_row(f, m->layers[job->layer].ffn_sub_norm, n, m->hp.rms_eps, f, ctx->acts.q + (size_t)t * ctx->acts.stride,
                              &ctx->acts.scale[t], &ctx->acts.sum[t]);
}

/* The LM head over vocabulary rows, for n_tok final hidden states. */
typedef struct bitnet__head_job {
    bitnet_context *ctx;
    int n_tok;
    const float *hidden;        /* token t at hidden + t * n_embd */
    float *logits;              /* token t at logits + t * n_vocab */
} bitnet__head_job;

BITNET__FN void bitnet__head_item(void *p, int item, int thread) {
    bitnet__head_job *job = (bitnet__head_job *)p;
    bitnet_context *ctx = job->ctx;
    const bitnet_model *m = ctx->model;
    int n_vocab = m->hp.n_vocab, n_embd = m->hp.n_embd, t, r;
    int r0 = item * BITNET__ITEM_ROWS, r1 = r0 + BITNET__ITEM_ROWS < n_vocab ? r0 + BITNET__ITEM_ROWS : n_vocab;
    if (ctx->head_q8) {
        int32_t *dots = ctx->thread_dots + (size_t)thread * BITNET__ITEM_ROWS * BITNET__UBATCH;
        bitnet__q8_dots(ctx->head_q8, n_embd, r0, r1, &ctx->acts, job->n_tok, dots);
        for (t = 0; t < job->n_tok; t++) {
            float inv_scale = 1.0f / ctx->acts.scale[t], *out = job->logits + (size_t)t * n_vocab;
            for (r = r0; r < r1; r++)
                out[r] = (float)dots[(size_t)t * (r1 - r0) + (r - r0)] * (ctx->head_q8->scale[r] * inv_scale);
        }
    } else {
        bitnet__head_dots(m->output, m->output_type, n_embd, r0, r1, job->hidden, job->n_tok, job->logits + r0,
                          (size_t)n_vocab, ctx->thread_f32 + (size_t)thread * ctx->thread_f32_len);
    }
}

/* Builds the model's int8 LM head, 256 rows per item. */
typedef struct bitnet__q8_build_job {
    bitnet_context *ctx;
    bitnet__lm_head_q8 *head;
} bitnet__q8_build_job;

BITNET__FN void bitnet__q8_build_item(void *p, int item, int thread) {
    bitnet__q8_build_job *job = (bitnet__q8_build_job *)p;
    bitnet_context *ctx = job->ctx;
    const bitnet_model *m = ctx->model;
    int r0 = item * BITNET__ITEM_ROWS, r1 = r0 + BITNET__ITEM_ROWS < m->hp.n_vocab ? r0 + BITNET__ITEM_ROWS : m->hp.n_vocab;
    bitnet__lm_head_q8_rows(job->head, m->output, m->output_type, m->hp.n_embd, r0, r1,
                            ctx->thread_f32 + (size_t)thread * ctx->thread_f32_len);
}

BITNET__FN int bitnet__use_lm_head_q8(bitnet_context *ctx, bitnet_error *err) {
    bitnet_model *m = ctx->model;
    int rc = BITNET_OK;
#ifndef BITNET_NO_THREADS
    pthread_mutex_lock(&m->lm_head_lock);
#endif
    if (!m->lm_head_q8) {
        bitnet__lm_head_q8 *h = (bitnet__lm_head_q8 *)bitnet__calloc(1, sizeof *h);
        if (h) {
            h->q = (int8_t *)BITNET_MALLOC((size_t)m->hp.n_vocab * m->hp.n_embd);
            h->scale = (float *)BITNET_MALLOC((size_t)m->hp.n_vocab * sizeof(float));
            h->sum = (int32_t *)BITNET_MALLOC((size_t)m->hp.n_vocab * sizeof(int32_t));
        }
        if (h && h->q) bitnet__advise_huge_pages(h->q, (size_t)m->hp.n_vocab * m->hp.n_embd);
        if (!h || !h->q || !h->scale || !h->sum) {
            bitnet__lm_head_q8_free(h);
            rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory for the int8 LM head (%zu bytes)",
                              (size_t)m->hp.n_vocab * m->hp.n_embd);
        } else {
            bitnet__q8_build_job job;
            job.ctx = ctx;
            job.head = h;
            bitnet__pool_run(&ctx->pool, bitnet__q8_build_item, &job,
                             (m->hp.n_vocab + BITNET__ITEM_ROWS - 1) / BITNET__ITEM_ROWS);
            m->lm_head_q8 = h;
        }
    }
    ctx->head_q8 = m->lm_head_q8;
#ifndef BITNET_NO_THREADS
    pthread_mutex_unlock(&m->lm_head_lock);
#endif
    return rc;
}

/* ---- the forward pass ---- */

/* Runs n_tok tokens at positions pos.. through the model, filling the KV cache.
   Writes the logits of the last n_out tokens (0, 1 or n_tok) to logits. */
BITNET__FN void bitnet__forward(bitnet_context *ctx, const bitnet_token *tokens, int n_tok, int pos, int n_out,
                                float *logits) {
    const bitnet_model *m = ctx->model;
    const bitnet_hparams *hp = &m->hp;
    const int n_embd = hp->n_embd, kv_dim = hp->n_head_kv * hp->head_dim, half = hp->head_dim / 2;
    int t, l;
    bitnet__layer_job lj;

    for (t = 0; t < n_tok; t++) {
        bitnet__row_to_f32(m->tok_embd, m->tok_embd_type, tokens[t], n_embd, ctx->x + (size_t)t * n_embd);
        bitnet__rope_angles(ctx->inv_freq, half, pos + t, ctx->rope_cos + (size_t)t * half,
                            ctx->rope_sin + (size_t)t * half);
    }
    lj.ctx = ctx;
    lj.pos = pos;
    for (l = 0; l < hp->n_layer; l++) {
        const bitnet__layer *L = &m->layers[l];
        const bitnet__qweight *qkv[3], *gate_up[2], *o = &L->wo, *down = &L->down;
        float *qkv_out[3], *gate_up_out[2], *x = ctx->x;
        size_t qkv_stride[3], gate_up_stride[2], embd_stride = (size_t)n_embd;
        qkv[0] = &L->wq;
        qkv[1] = &L->wk;
        qkv[2] = &L->wv;
        qkv_out[0] = ctx->q;
        qkv_out[1] = ctx->k;
        qkv_out[2] = ctx->v;
        qkv_stride[0] = (size_t)n_embd;
        qkv_stride[1] = qkv_stride[2] = (size_t)kv_dim;
        gate_up[0] = &L->gate;
        gate_up[1] = &L->up;
        gate_up_out[0] = ctx->gate;
        gate_up_out[1] = ctx->up;
        gate_up_stride[0] = gate_up_stride[1] = (size_t)hp->n_ff;
        lj.layer = l;

        /* attention block */
        bitnet__norm_quantize(ctx, n_tok, ctx->x, L->attn_norm, n_embd);
        bitnet__matmul(ctx, n_tok, 3, qkv, qkv_out, qkv_stride, 0);
        bitnet__pool_run(&ctx->pool, bitnet__rope_store_item, &lj, n_tok);
        bitnet__pool_run(&ctx->pool, bitnet__attention_item, &lj, n_tok * hp->n_head);
        bitnet__norm_quantize(ctx, n_tok, ctx->att, L->attn_sub_norm, n_embd);
        bitnet__matmul(ctx, n_tok, 1, &o, &x, &embd_stride, 1);

        /* feed-forward block */
        bitnet__norm_quantize(ctx, n_tok, ctx->x, L->ffn_norm, n_embd);
        bitnet__matmul(ctx, n_tok, 2, gate_up, gate_up_out, gate_up_stride, 0);
        bitnet__pool_run(&ctx->pool, bitnet__ffn_item, &lj, n_tok);
        bitnet__matmul(ctx, n_tok, 1, &down, &x, &embd_stride, 1);
    }

    if (n_out > 0) {
        bitnet__head_job hj;
        int first = n_tok - n_out;
        for (t = 0; t < n_out; t++) {
            float *h = ctx->att + (size_t)t * n_embd;
            bitnet__rmsnorm(ctx->x + (size_t)(first + t) * n_embd, m->output_norm, n_embd, hp->rms_eps, h);
            if (ctx->head_q8)
                bitnet__quantize(h, n_embd, ctx->acts.q + (size_t)t * ctx->acts.stride, &ctx->acts.scale[t],
                                 &ctx->acts.sum[t]);
            else
                bitnet__head_prepare(m->output_type, h, n_embd);
        }
        hj.ctx = ctx;
        hj.n_tok = n_out;
        hj.hidden = ctx->att;
        hj.logits = logits;
        bitnet__pool_run(&ctx->pool, bitnet__head_item, &hj, (hp->n_vocab + BITNET__ITEM_ROWS - 1) / BITNET__ITEM_ROWS);
    }
}

/* ---- public API ---- */

BITNET_API bitnet_context_params bitnet_context_default_params(void) {
    bitnet_context_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_threads = 0;
    p.backend = BITNET_BACKEND_AUTO;
    p.cuda_device = 0;
    p.lm_head_int8 = 0;
    return p;
}

BITNET__FN int bitnet__online_cores(void) {
#if defined(BITNET__HAVE_MMAP) && defined(_SC_NPROCESSORS_ONLN)
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
#else
    return 1;
#endif
}

BITNET_API void bitnet_context_free(bitnet_context *ctx) {
    if (!ctx) return;
    bitnet__cuda_context_release(ctx);
    bitnet__pool_stop(&ctx->pool);
    BITNET_FREE(ctx->arena);
    BITNET_FREE(ctx->logits);
    BITNET_FREE(ctx);
}

BITNET_API bitnet_context *bitnet_context_create(bitnet_model *model, const bitnet_context_params *params,
                                                 bitnet_error *err) {
    bitnet_context_params p = params ? *params : bitnet_context_default_params();
    bitnet_context *ctx;
    const bitnet_hparams *hp;
    size_t kv_dim, cache_len, ub = BITNET__UBATCH, max_n;
    int half, i;

    if (!model) { bitnet__fail(err, BITNET_E_ARG, "bitnet_context_create: model is NULL"); return NULL; }
    hp = &model->hp;
    if (p.n_ctx < 0 || p.n_ctx > hp->n_ctx_train) {
        bitnet__fail(err, BITNET_E_ARG, "n_ctx %d is out of range (0 = default, at most the model's %d)", p.n_ctx,
                     hp->n_ctx_train);
        return NULL;
    }
    if (p.n_threads < 0 || p.n_threads > 256) {
        bitnet__fail(err, BITNET_E_ARG, "n_threads %d is out of range (0 = all cores, at most 256)", p.n_threads);
        return NULL;
    }
    if (p.backend != BITNET_BACKEND_AUTO && p.backend != BITNET_BACKEND_CPU && p.backend != BITNET_BACKEND_CUDA) {
        bitnet__fail(err, BITNET_E_ARG, "unknown backend %d", (int)p.backend);
        return NULL;
    }
    if (p.backend != BITNET_BACKEND_CPU) {
        /* CUDA, or AUTO where the CUDA backend is compiled in and a device works */
        ctx = bitnet__cuda_context_new(model, &p, err);
        if (ctx || p.backend == BITNET_BACKEND_CUDA) return ctx;
    }

    ctx = (bitnet_context *)bitnet__calloc(1, sizeof *ctx);
    if (!ctx) { bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); return NULL; }
    ctx->model = model;
    ctx->backend = BITNET_BACKEND_CPU;
    ctx->n_ctx = p.n_ctx ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
#ifdef BITNET__THREADS
    ctx->n_threads = p.n_threads ? p.n_threads : bitnet__online_cores();
#else
    ctx->n_threads = 1;
#endif
    kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    half = hp->head_dim / 2;
    max_n = (size_t)(hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd);
    cache_len = (size_t)hp->n_layer * kv_dim;
    cache_len = cache_len > SIZE_MAX / (size_t)ctx->n_ctx ? 0 : cache_len * (size_t)ctx->n_ctx;
    ctx->thread_f32_len = max_n > (size_t)ctx->n_ctx ? max_n : (size_t)ctx->n_ctx;

    {
        /* Every buffer in one allocation, each on a 64-byte boundary: the SIMD
           kernels load 64 bytes at a time, and a load across two cache lines
           costs two (misaligned activations made prompts 25% slower). */
        enum { K_CACHE, V_CACHE, X, Q, K, V, ATT, GATE, UP, ACTS, SCALE, SUM, COS, SIN, FREQ, TF32, TDOTS, N_BUF };
        size_t count[N_BUF], elem[N_BUF], offset[N_BUF], total = 0;
        uint8_t *base;
        int b, overflow = cache_len == 0;
        count[K_CACHE] = count[V_CACHE] = cache_len;
        count[X] = count[Q] = count[ATT] = ub * hp->n_embd;
        count[K] = count[V] = ub * kv_dim;
        count[GATE] = count[UP] = ub * hp->n_ff;
        count[ACTS] = ub * max_n;
        count[SCALE] = count[SUM] = ub;
        count[COS] = count[SIN] = ub * half;
        count[FREQ] = (size_t)half;
        count[TF32] = (size_t)ctx->n_threads * ctx->thread_f32_len;
        count[TDOTS] = (size_t)ctx->n_threads * BITNET__ITEM_ROWS * ub;
        for (b = 0; b < N_BUF; b++) {
            elem[b] = b == ACTS ? 1 : 4;  /* int8, or float / int32 */
            if (count[b] > (SIZE_MAX / 2 - total) / elem[b]) overflow = 1;
            offset[b] = total;
            if (!overflow) total += (count[b] * elem[b] + 63) & ~(size_t)63;
        }
        ctx->arena = overflow ? NULL : BITNET_MALLOC(total + 64);
        if (!ctx->arena) {
            bitnet__fail(err, BITNET_E_NOMEM, "out of memory for a context of %d positions (KV cache: %.0f MiB)", ctx->n_ctx,
                         2.0 * (double)hp->n_layer * (double)kv_dim * ctx->n_ctx * 4.0 / 1048576.0);
            bitnet_context_free(ctx);
            return NULL;
        }
        bitnet__advise_huge_pages(ctx->arena, total + 64);  /* the KV cache is streamed too */
        base = (uint8_t *)ctx->arena + ((64 - (uintptr_t)ctx->arena % 64) % 64);
#define BITNET__BUF(type, b) ((type *)(void *)(base + offset[b]))
        ctx->k_cache = BITNET__BUF(float, K_CACHE);
        ctx->v_cache = BITNET__BUF(float, V_CACHE);
        ctx->x = BITNET__BUF(float, X);
        ctx->q = BITNET__BUF(float, Q);
        ctx->k = BITNET__BUF(float, K);
        ctx->v = BITNET__BUF(float, V);
        ctx->att = BITNET__BUF(float, ATT);
        ctx->gate = BITNET__BUF(float, GATE);
        ctx->up = BITNET__BUF(float, UP);
        ctx->acts.q = BITNET__BUF(int8_t, ACTS);
        ctx->acts.stride = max_n;
        ctx->acts.scale = BITNET__BUF(float, SCALE);
        ctx->acts.sum = BITNET__BUF(int32_t, SUM);
        ctx->rope_cos = BITNET__BUF(float, COS);
        ctx->rope_sin = BITNET__BUF(float, SIN);
        ctx->inv_freq = BITNET__BUF(float, FREQ);
        ctx->thread_f32 = BITNET__BUF(float, TF32);
        ctx->thread_dots = BITNET__BUF(int32_t, TDOTS);
#undef BITNET__BUF
    }
    for (i = 0; i < half; i++)
        ctx->inv_freq[i] = 1.0f / powf(hp->rope_theta, (float)(2 * i) / (float)hp->head_dim);
    if (bitnet__pool_start(&ctx->pool, ctx->n_threads, err) != BITNET_OK) {
        bitnet_context_free(ctx);
        return NULL;
    }
    ctx->n_threads = ctx->pool.n_threads;
    if (p.lm_head_int8 && bitnet__use_lm_head_q8(ctx, err) != BITNET_OK) {
        bitnet_context_free(ctx);
        return NULL;
    }
    bitnet__ok(err);
    return ctx;
}

BITNET_API bitnet_backend bitnet_context_backend(const bitnet_context *ctx) {
    return ctx ? ctx->backend : BITNET_BACKEND_AUTO;
}

BITNET_API int bitnet_n_ctx(const bitnet_context *ctx) { return ctx ? ctx->n_ctx : 0; }

BITNET_API int bitnet_n_past(const bitnet_context *ctx) { return ctx ? ctx->n_past : 0; }

BITNET__FN int bitnet__cpu_eval(bitnet_context *ctx, const bitnet_token *tokens, int n_tokens, int all_logits,
                                bitnet_error *err) {
    const int n_vocab = ctx->model->hp.n_vocab;
    const int n_rows = all_logits ? n_tokens : 1;
    size_t need = (size_t)n_rows * (size_t)n_vocab;
    int done;
    if (need > ctx->logits_cap) {
        float *l = need > SIZE_MAX / sizeof(float) ? NULL : (float *)BITNET_REALLOC(ctx->logits, need * sizeof(float));
        if (!l) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory for the logits of %d tokens", n_rows);
        ctx->logits = l;
        ctx->logits_cap = need;
    }
    for (done = 0; done < n_tokens; done += BITNET__UBATCH) {
        int n = n_tokens - done < BITNET__UBATCH ? n_tokens - done : BITNET__UBATCH;
        int n_out = all_logits ? n : done + n == n_tokens ? 1 : 0;
        bitnet__forward(ctx, tokens + done, n, ctx->n_past + done, n_out,
                        all_logits ? ctx->logits + (size_t)done * n_vocab : ctx->logits);
    }
    ctx->n_past += n_tokens;
    ctx->n_batch = n_tokens;
    ctx->n_logits = n_rows;
    return BITNET_OK;
}

BITNET_API int bitnet_eval(bitnet_context *ctx, const bitnet_token *tokens, int n_tokens, int flags,
                           bitnet_error *err) {
    int i, n_vocab, rc;
    if (!ctx) return bitnet__fail(err, BITNET_E_ARG, "bitnet_eval: ctx is NULL");
    if (!tokens || n_tokens <= 0)
        return bitnet__fail(err, BITNET_E_ARG, "bitnet_eval: need at least one token (got %d%s)", n_tokens,
                            tokens ? "" : ", tokens is NULL");
    if (flags & ~BITNET_EVAL_ALL_LOGITS) return bitnet__fail(err, BITNET_E_ARG, "bitnet_eval: unknown flags 0x%x", flags);
    n_vocab = ctx->model->hp.n_vocab;
    for (i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return bitnet__fail(err, BITNET_E_ARG, "bitnet_eval: token %d (index %d) is outside the vocabulary of %d",
                                (int)tokens[i], i, n_vocab);
    if (n_tokens > ctx->n_ctx - ctx->n_past)
        return bitnet__fail(err, BITNET_E_CONTEXT_FULL, "%d tokens do not fit in the context: %d of %d positions are used",
                            n_tokens, ctx->n_past, ctx->n_ctx);
    if (ctx->cuda) rc = bitnet__cuda_eval(ctx, tokens, n_tokens, flags & BITNET_EVAL_ALL_LOGITS, err);
    else rc = bitnet__cpu_eval(ctx, tokens, n_tokens, flags & BITNET_EVAL_ALL_LOGITS, err);
    if (rc != BITNET_OK) return rc;
    bitnet__ok(err);
    return BITNET_OK;
}

BITNET_API const float *bitnet_logits(bitnet_context *ctx, int i) {
    if (!ctx || ctx->n_logits == 0) return NULL;
    if (ctx->cuda && bitnet__cuda_logits_to_host(ctx) != BITNET_OK) return NULL;
    if (i == -1) i = ctx->n_batch - 1;
    if (i < ctx->n_batch - ctx->n_logits || i >= ctx->n_batch) return NULL;
    return ctx->logits + (size_t)(i - (ctx->n_batch - ctx->n_logits)) * ctx->model->hp.n_vocab;
}

BITNET_API int bitnet_eval_sample(bitnet_context *ctx, bitnet_token token, bitnet_sampler *sampler,
                                  bitnet_token *next, bitnet_error *err) {
    int rc;
    if (!sampler || !next)
        return bitnet__fail(err, BITNET_E_ARG, "bitnet_eval_sample: %s is NULL", sampler ? "next" : "sampler");
    if (ctx && ctx->cuda) return bitnet__cuda_eval_sample(ctx, token, sampler, next, err);
    if ((rc = bitnet_eval(ctx, &token, 1, 0, err)) != BITNET_OK) return rc;
    *next = bitnet_sampler_sample(sampler, bitnet_logits(ctx, -1), ctx->model->hp.n_vocab);
    return BITNET_OK;
}

BITNET_API int bitnet_context_truncate(bitnet_context *ctx, int n_keep, bitnet_error *err) {
    if (!ctx) return bitnet__fail(err, BITNET_E_ARG, "bitnet_context_truncate: ctx is NULL");
    if (n_keep < 0 || n_keep > ctx->n_past)
        return bitnet__fail(err, BITNET_E_ARG, "bitnet_context_truncate: n_keep %d is outside 0..%d (the positions used)",
                            n_keep, ctx->n_past);
    /* The cache rows past n_keep are simply overwritten by later evals. */
    ctx->n_past = n_keep;
    ctx->n_logits = 0;
    bitnet__ok(err);
    return BITNET_OK;
}

BITNET_API void bitnet_context_reset(bitnet_context *ctx) {
    if (!ctx) return;
    ctx->n_past = 0;
    ctx->n_logits = 0;
}

/* ===========================================================================
   Tokenizer: Llama 3 byte-level BPE
   ===========================================================================
   The vocabulary is GPT-2-style byte-level BPE, as Llama 3 (and so BitNet b1.58
   2B4T) uses it.  Encoding a text:

     1. Special tokens.  Text of added tokens is cut out first (leftmost, longest
        match).  Control tokens (<|eot_id|> ...) only with BITNET_TOKENIZE_SPECIAL;
        user-defined (non-special added) tokens always, as llama.cpp does.
     2. Pre-tokenization: every stretch of ordinary text is split into pieces by
        the Llama 3 pattern (see bitnet__pretok_next), matched by hand over
        Unicode property tables generated from the UCD by tests/gen_unicode_tables.py.
     3. Each piece is BPE-encoded: a piece that is itself a token is that token
        (tokenizer.json's "ignore_merges", on for Llama 3); otherwise its bytes
        start as single-byte tokens and the pair of adjacent tokens with the
        lowest merge rank is merged until no pair has a rank (a heap keeps that
        O(n log n) in the piece length).

   Invalid UTF-8 never fails: a byte that does not start a complete, shortest-form
   sequence of a scalar value (no surrogates, <= U+10FFFF) is one "character" of
   its own that is neither a letter, a number nor a space (so it groups like
   punctuation), and its byte is encoded by its byte token like any other.
   Decoding gives back exactly the bytes that were encoded, valid or not.

   Unicode: the letter / number / space classes are Unicode 16.0 (the table below is
   generated from the UCD by tests/gen_unicode_tables.py), as in Hugging Face
   tokenizers 0.23, whose split of every code point tests/test_tokenizer.c checks.
   \s is the White_Space property (U+0085 is a space, U+FEFF is not), as in the
   Rust regex engines (Oniguruma in tokenizers, fancy-regex in tiktoken).  The
   JavaScript peers differ there (JavaScript's \s has U+FEFF and lacks U+0085) and
   in the version (node 20 has Unicode 17.0: letters added in 17.0 are letters
   there and "other" here).  Tables from older Unicode data (Debian 12's UCD is
   15.0) make the ~5000 letters and digits added in 15.1 and 16.0 "other".

   Decoding is exact: the bytes that were encoded.  (transformers' decode also
   applies clean_up_tokenization_spaces, which removes spaces before punctuation.)

   Token strings in tokenizer.json and in the model file are in the byte-level
   alphabet: byte b is written as the code point b where b is printable
   (33..126, 161..172, 174..255) and as 256 + k for the k-th other byte, so that
   no token text contains spaces or control characters ("Ġ" is a space).
*/

/* llama.cpp's token types (tokenizer.ggml.token_type). */
enum { BITNET__TOKEN_NORMAL = 1, BITNET__TOKEN_UNKNOWN = 2, BITNET__TOKEN_CONTROL = 3,
       BITNET__TOKEN_USER_DEFINED = 4, BITNET__TOKEN_UNUSED = 5, BITNET__TOKEN_BYTE = 6 };

/* ---- the byte-level alphabet ---- */

BITNET__FN int bitnet__byte_is_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

BITNET__FN unsigned bitnet__byte_to_cp(unsigned b) {
    unsigned i, k = 0;
    if (bitnet__byte_is_printable(b)) return b;
    for (i = 0; i < b; i++) k += !bitnet__byte_is_printable(i);
    return 256 + k;
}

/* The byte a code point of the alphabet stands for, or -1. */
BITNET__FN int bitnet__cp_to_byte(unsigned cp) {
    unsigned b, k = 0;
    if (cp < 256) return bitnet__byte_is_printable(cp) ? (int)cp : -1;
    for (b = 0; b < 256; b++)
        if (!bitnet__byte_is_printable(b) && 256 + k++ == cp) return (int)b;
    return -1;
}

/* Length (1..4) of the valid UTF-8 sequence at s, with its code point in *cp;
   0 when s[0] does not start a complete, shortest-form sequence of a scalar value. */
BITNET__FN int bitnet__utf8_decode(const uint8_t *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xC2 || c > 0xF4) return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x0F) << 12) | ((unsigned)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if (*cp < 0x800 || (*cp >= 0xD800 && *cp < 0xE000)) return 0;
        return 3;
    }
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    *cp = ((c & 0x07) << 18) | ((unsigned)(s[1] & 0x3F) << 12) | ((unsigned)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    if (*cp < 0x10000 || *cp > 0x10FFFF) return 0;
    return 4;
}

/* ---- a string -> id hash map over arrays the caller owns ---- */

BITNET__FN uint64_t bitnet__hash_bytes(const void *data, size_t n) {
    const uint8_t *s = (const uint8_t *)data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xC2B2AE3D27D4EB4Full), w;
    while (n >= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    if (n) {
        w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    }
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/* Open addressing; slot holds id + 1 (0 = empty); keys[id], lens[id] are the strings. */
typedef struct bitnet__strmap {
    int32_t *slot;
    size_t mask;
} bitnet__strmap;

BITNET__FN int bitnet__strmap_init(bitnet__strmap *m, size_t n_keys) {
    size_t cap = 16;
    while (cap < n_keys * 2) cap *= 2;
    m->slot = (int32_t *)bitnet__calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    return m->slot ? BITNET_OK : BITNET_E_NOMEM;
}

BITNET__FN void bitnet__strmap_free(bitnet__strmap *m) {
    BITNET_FREE(m->slot);
    m->slot = NULL;
}

BITNET__FN int32_t bitnet__strmap_find(const bitnet__strmap *m, const char *const *keys, const size_t *lens,
                                       const char *s, size_t n) {
    size_t i = (size_t)bitnet__hash_bytes(s, n) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        int32_t id = m->slot[i] - 1;
        if (id < 0) return -1;
        if (lens[id] == n && memcmp(keys[id], s, n) == 0) return id;
    }
}

/* Inserts id (its key is keys[id]); returns the id already there with that key, or -1. */
BITNET__FN int32_t bitnet__strmap_insert(bitnet__strmap *m, const char *const *keys, const size_t *lens, int32_t id) {
    size_t i = (size_t)bitnet__hash_bytes(keys[id], lens[id]) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        int32_t old = m->slot[i] - 1;
        if (old < 0) { m->slot[i] = id + 1; return -1; }
        if (lens[old] == lens[id] && memcmp(keys[old], keys[id], lens[id]) == 0) return old;
    }
}

/* ---- the vocabulary as the converter reads it and the model file stores it ---- */

/* tokens[i] is token i's text exactly as tokenizer.json gives it (byte-level
   alphabet for model tokens, verbatim for added tokens); merges[i] is merge rank
   i as "left right" (llama.cpp's form).  The arena owns every string. */
typedef struct bitnet__vocab {
    int n_tokens;
    const char **tokens;
    size_t *token_lens;
    int32_t *types;           /* BITNET__TOKEN_* */
    int n_merges;
    const char **merges;
    size_t *merge_lens;
    int bos, eos, eot;        /* -1 when absent */
    int add_bos;
    int ignore_merges;        /* a piece that is a token is that token (Llama 3: yes) */
    const char *chat_template;/* NULL when absent */
    size_t chat_template_len;
    bitnet__arena arena;
} bitnet__vocab;

/* The pre-tokenizer split pattern we implement, as tokenizer.json writes it. */
#define BITNET__LLAMA3_PATTERN                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* llama.cpp's names: the Llama 3 pattern with ignore_merges, and without it. */
#define BITNET__PRE_LLAMA3 "llama-bpe"
#define BITNET__PRE_LLAMA3_MERGES "smaug-bpe"

BITNET__FN void bitnet__vocab_free(bitnet__vocab *v) {
    BITNET_FREE((void *)v->tokens);
    BITNET_FREE(v->token_lens);
    BITNET_FREE(v->types);
    BITNET_FREE((void *)v->merges);
    BITNET_FREE(v->merge_lens);
    bitnet__arena_free(&v->arena);
    memset(v, 0, sizeof *v);
    v->bos = v->eos = v->eot = -1;
}

BITNET__FN const char *bitnet__vocab_strdup(bitnet__vocab *v, const char *s, size_t n) {
    char *d = (char *)bitnet__arena_alloc(&v->arena, n + 1);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}

BITNET__FN int bitnet__vocab_find(const bitnet__vocab *v, const char *text) {
    size_t n = strlen(text);
    int i;
    for (i = v->n_tokens - 1; i >= 0; i--)
        if (v->token_lens[i] == n && memcmp(v->tokens[i], text, n) == 0) return i;
    return -1;
}

/* Sizes the token arrays for n tokens (new ones empty and unused). */
BITNET__FN int bitnet__vocab_resize(bitnet__vocab *v, int n) {
    const char **t = (const char **)BITNET_REALLOC((void *)v->tokens, (size_t)n * sizeof *t);
    size_t *l;
    int32_t *ty;
    int i;
    if (t) v->tokens = t;
    l = t ? (size_t *)BITNET_REALLOC(v->token_lens, (size_t)n * sizeof *l) : NULL;
    if (l) v->token_lens = l;
    ty = l ? (int32_t *)BITNET_REALLOC(v->types, (size_t)n * sizeof *ty) : NULL;
    if (!ty) return BITNET_E_NOMEM;
    v->types = ty;
    for (i = v->n_tokens; i < n; i++) { v->tokens[i] = NULL; v->token_lens[i] = 0; v->types[i] = 0; }
    v->n_tokens = n;
    return BITNET_OK;
}

/* Fills the tokens that are still empty, and up to n_vocab, with "[PADi]" unused
   tokens (the embedding of a model may have more rows than its tokenizer has tokens). */
BITNET__FN int bitnet__vocab_pad(bitnet__vocab *v, int n_vocab, bitnet_error *err) {
    int i;
    if (n_vocab < v->n_tokens)
        return bitnet__fail(err, BITNET_E_FORMAT, "the tokenizer has %d tokens but the model only %d", v->n_tokens, n_vocab);
    if (bitnet__vocab_resize(v, n_vocab)) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    for (i = 0; i < n_vocab; i++) {
        char name[32];
        int n;
        if (v->tokens[i]) continue;
        n = snprintf(name, sizeof name, "[PAD%d]", i);
        if (!(v->tokens[i] = bitnet__vocab_strdup(v, name, (size_t)n))) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
        v->token_lens[i] = (size_t)n;
        v->types[i] = BITNET__TOKEN_UNUSED;
    }
    return BITNET_OK;
}

BITNET__FN int bitnet__vocab_add_merge(bitnet__vocab *v, const char *a, size_t na, const char *b, size_t nb, int *cap) {
    char *m;
    if (v->n_merges == *cap) {
        int nc = *cap ? *cap * 2 : 1024;
        const char **nm = (const char **)BITNET_REALLOC((void *)v->merges, (size_t)nc * sizeof *nm);
        size_t *nl;
        if (nm) v->merges = nm;
        nl = nm ? (size_t *)BITNET_REALLOC(v->merge_lens, (size_t)nc * sizeof *nl) : NULL;
        if (!nl) return BITNET_E_NOMEM;
        v->merge_lens = nl;
        *cap = nc;
    }
    m = (char *)bitnet__arena_alloc(&v->arena, na + nb + 2);
    if (!m) return BITNET_E_NOMEM;
    memcpy(m, a, na);
    m[na] = ' ';
    memcpy(m + na + 1, b, nb);
    m[na + nb + 1] = 0;
    v->merges[v->n_merges] = m;
    v->merge_lens[v->n_merges++] = na + nb + 1;
    return BITNET_OK;
}

/* The content of a special-token entry of tokenizer_config.json: "text" or {"content": "text"}. */
BITNET__FN const bitnet__json *bitnet__hf_token_text(const bitnet__json *j) {
    if (j && j->type == BITNET__JSON_OBJECT) j = bitnet__json_get(j, "content");
    return j && j->type == BITNET__JSON_STRING ? j : NULL;
}

BITNET__FN int bitnet__json_is(const bitnet__json *j, const char *s) {
    return j && j->type == BITNET__JSON_STRING && j->len == strlen(s) && memcmp(j->str, s, j->len) == 0;
}

/* Checks that tokenizer.json's pre-tokenizer is the Llama 3 split + byte level. */
BITNET__FN int bitnet__hf_check_pretokenizer(const bitnet__json *pre, const char *path, bitnet_error *err) {
    const bitnet__json *list = bitnet__json_get(pre, "pretokenizers"), *split, *bl, *pat;
    if (!pre || pre->type != BITNET__JSON_OBJECT)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: pre_tokenizer is missing; only the Llama 3 byte-level pre-tokenizer is supported", path);
    if (!bitnet__json_is(bitnet__json_get(pre, "type"), "Sequence") || !list || list->type != BITNET__JSON_ARRAY || list->len != 2)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                            "%s: pre_tokenizer must be a Sequence of Split (the Llama 3 pattern) and ByteLevel", path);
    split = &list->items[0];
    bl = &list->items[1];
    pat = bitnet__json_get(bitnet__json_get(split, "pattern"), "Regex");
    if (!bitnet__json_is(bitnet__json_get(split, "type"), "Split"))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].type must be Split", path);
    if (!bitnet__json_is(pat, BITNET__LLAMA3_PATTERN))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                            "%s: pre_tokenizer.pretokenizers[0].pattern.Regex is not the Llama 3 split pattern", path);
    if (!bitnet__json_is(bitnet__json_get(split, "behavior"), "Isolated") ||
        (bitnet__json_get(split, "invert") && bitnet__json_get(split, "invert")->type != BITNET__JSON_FALSE))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                            "%s: pre_tokenizer.pretokenizers[0] must have behavior Isolated and invert false", path);
    if (!bitnet__json_is(bitnet__json_get(bl, "type"), "ByteLevel"))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[1].type must be ByteLevel", path);
    if (bitnet__json_get(bl, "use_regex") && bitnet__json_get(bl, "use_regex")->type != BITNET__JSON_FALSE)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[1].use_regex must be false", path);
    if (bitnet__json_get(bl, "add_prefix_space") && bitnet__json_get(bl, "add_prefix_space")->type != BITNET__JSON_FALSE)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[1].add_prefix_space must be false", path);
    return BITNET_OK;
}

/* Reads tokenizer.json (and tokenizer_config.json, which may be NULL). */
BITNET__FN int bitnet__vocab_from_hf(const char *tokenizer_json, const char *tokenizer_config_json, bitnet__vocab *v,
                                     bitnet_error *err) {
    bitnet__arena tmp;
    bitnet__json root, cfg;
    const bitnet__json *model, *vocab, *merges, *added, *j;
    char *text = NULL, *ctext = NULL;
    size_t len = 0, clen = 0, i;
    int rc = BITNET_OK, n = 0, merge_cap = 0, have_cfg = 0;
    bitnet_error e;

    memset(v, 0, sizeof *v);
    memset(&tmp, 0, sizeof tmp);
    v->bos = v->eos = v->eot = -1;
    bitnet__ok(&e);
#define BITNET__BAIL(x) do { rc = (x); goto done; } while (0)
    if (!tokenizer_json) BITNET__BAIL(bitnet__fail(err, BITNET_E_ARG, "no tokenizer.json given"));
    if (!(text = bitnet__read_text_file(tokenizer_json, &len, &e))) BITNET__BAIL(bitnet__fail(err, e.code, "%s", e.message));
    if ((rc = bitnet__json_parse(text, len, tokenizer_json, &tmp, &root, err))) goto done;
    if (tokenizer_config_json) {
        if (!(ctext = bitnet__read_text_file(tokenizer_config_json, &clen, &e))) BITNET__BAIL(bitnet__fail(err, e.code, "%s", e.message));
        if ((rc = bitnet__json_parse(ctext, clen, tokenizer_config_json, &tmp, &cfg, err))) goto done;
        if (cfg.type != BITNET__JSON_OBJECT) BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s is not a JSON object", tokenizer_config_json));
        have_cfg = 1;
    }

    model = bitnet__json_get(&root, "model");
    if (!model || model->type != BITNET__JSON_OBJECT)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: no \"model\" object", tokenizer_json));
    j = bitnet__json_get(model, "type");
    if (j && !bitnet__json_is(j, "BPE"))
        BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: model.type is '%s'; only byte-level BPE is supported", tokenizer_json,
                                  j->type == BITNET__JSON_STRING ? j->str : "?"));
    if ((j = bitnet__json_get(model, "byte_fallback")) && j->type == BITNET__JSON_TRUE)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: model.byte_fallback is not supported (byte-level BPE only)", tokenizer_json));
    if ((j = bitnet__json_get(model, "dropout")) && j->type == BITNET__JSON_NUMBER && j->num > 0)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: model.dropout is not supported", tokenizer_json));
    if (((j = bitnet__json_get(model, "continuing_subword_prefix")) && j->type == BITNET__JSON_STRING && j->len) ||
        ((j = bitnet__json_get(model, "end_of_word_suffix")) && j->type == BITNET__JSON_STRING && j->len))
        BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED,
                                  "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported", tokenizer_json));
    if ((j = bitnet__json_get(&root, "normalizer")) && j->type != BITNET__JSON_NULL)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: normalizer must be null (byte-level BPE without normalization)", tokenizer_json));
    if ((rc = bitnet__hf_check_pretokenizer(bitnet__json_get(&root, "pre_tokenizer"), tokenizer_json, err))) goto done;
    if ((j = bitnet__json_get(&root, "decoder")) && j->type != BITNET__JSON_NULL && !bitnet__json_is(bitnet__json_get(j, "type"), "ByteLevel"))
        BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: decoder.type must be ByteLevel", tokenizer_json));
    v->ignore_merges = (j = bitnet__json_get(model, "ignore_merges")) && j->type == BITNET__JSON_TRUE;

    /* tokens: model.vocab {text: id}, then added_tokens [{id, content, special}] */
    vocab = bitnet__json_get(model, "vocab");
    added = bitnet__json_get(&root, "added_tokens");
    if (!vocab || vocab->type != BITNET__JSON_OBJECT)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: model.vocab must be an object", tokenizer_json));
    if (added && added->type != BITNET__JSON_ARRAY && added->type != BITNET__JSON_NULL)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: added_tokens must be an array", tokenizer_json));
    for (i = 0; i < vocab->len; i++) {
        double id = vocab->items[i].num;
        if (vocab->items[i].type != BITNET__JSON_NUMBER || id < 0 || id >= (1 << 24) || id != (double)(int)id)
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: model.vocab['%s'] is not a token id", tokenizer_json, vocab->keys[i]));
        if ((int)id >= n) n = (int)id + 1;
    }
    for (i = 0; added && i < added->len; i++) {
        const bitnet__json *id = bitnet__json_get(&added->items[i], "id"), *c = bitnet__json_get(&added->items[i], "content");
        if (!id || id->type != BITNET__JSON_NUMBER || id->num < 0 || id->num >= (1 << 24) || id->num != (double)(int)id->num ||
            !c || c->type != BITNET__JSON_STRING || c->len == 0)
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: added_tokens[%zu] needs an integer id and a non-empty content", tokenizer_json, i));
        if ((int)id->num >= n) n = (int)id->num + 1;
    }
    if (n < 256) BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: %d tokens cannot be a byte-level vocabulary", tokenizer_json, n));
    if (bitnet__vocab_resize(v, n)) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
    for (i = 0; i < vocab->len; i++) {
        int id = (int)vocab->items[i].num;
        if (v->tokens[id])
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: model.vocab gives id %d to '%s' and '%s'", tokenizer_json, id, v->tokens[id], vocab->keys[i]));
        if (!(v->tokens[id] = bitnet__vocab_strdup(v, vocab->keys[i], vocab->key_lens[i]))) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
        v->token_lens[id] = vocab->key_lens[i];
        v->types[id] = BITNET__TOKEN_NORMAL;
    }
    /* an added token replaces a model token of the same id, as in Hugging Face tokenizers */
    for (i = 0; added && i < added->len; i++) {
        const bitnet__json *c = bitnet__json_get(&added->items[i], "content"), *sp = bitnet__json_get(&added->items[i], "special");
        int id = (int)bitnet__json_get(&added->items[i], "id")->num;
        if (!(v->tokens[id] = bitnet__vocab_strdup(v, c->str, c->len))) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
        v->token_lens[id] = c->len;
        v->types[id] = sp && sp->type == BITNET__JSON_TRUE ? BITNET__TOKEN_CONTROL : BITNET__TOKEN_USER_DEFINED;
    }
    if ((rc = bitnet__vocab_pad(v, n, err))) goto done;

    /* merges: "a b" strings or ["a", "b"] pairs */
    merges = bitnet__json_get(model, "merges");
    if (!merges || merges->type != BITNET__JSON_ARRAY)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: model.merges must be an array", tokenizer_json));
    for (i = 0; i < merges->len; i++) {
        const bitnet__json *m = &merges->items[i];
        const char *a, *b;
        size_t na, nb;
        if (m->type == BITNET__JSON_STRING) {
            const char *sp = (const char *)memchr(m->str, ' ', m->len);
            if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->str)))
                BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: model.merges[%zu] = '%s' is not two tokens separated by a space",
                                          tokenizer_json, i, m->str));
            a = m->str; na = (size_t)(sp - m->str); b = sp + 1; nb = m->len - na - 1;
        } else if (m->type == BITNET__JSON_ARRAY && m->len == 2 && m->items[0].type == BITNET__JSON_STRING &&
                   m->items[1].type == BITNET__JSON_STRING) {
            a = m->items[0].str; na = m->items[0].len; b = m->items[1].str; nb = m->items[1].len;
            if (memchr(a, ' ', na) || memchr(b, ' ', nb))
                BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: model.merges[%zu] has a token with a space, which the model file cannot store",
                                          tokenizer_json, i));
        } else
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", tokenizer_json, i));
        if (!na || !nb) BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: model.merges[%zu] has an empty side", tokenizer_json, i));
        if (bitnet__vocab_add_merge(v, a, na, b, nb, &merge_cap)) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
    }

    /* special token ids: tokenizer_config.json names them; otherwise Llama 3's names */
    if (have_cfg && (j = bitnet__hf_token_text(bitnet__json_get(&cfg, "bos_token"))) &&
        (v->bos = bitnet__vocab_find(v, j->str)) < 0)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: bos_token '%s' is not a token", tokenizer_config_json, j->str));
    if (have_cfg && (j = bitnet__hf_token_text(bitnet__json_get(&cfg, "eos_token"))) &&
        (v->eos = bitnet__vocab_find(v, j->str)) < 0)
        BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "%s: eos_token '%s' is not a token", tokenizer_config_json, j->str));
    if (v->bos < 0) v->bos = bitnet__vocab_find(v, "<|begin_of_text|>");
    if (v->eos < 0) v->eos = bitnet__vocab_find(v, "<|end_of_text|>");
    v->eot = bitnet__vocab_find(v, "<|eot_id|>");
    v->add_bos = v->bos >= 0;
    if (have_cfg && (j = bitnet__json_get(&cfg, "add_bos_token")) && (j->type == BITNET__JSON_TRUE || j->type == BITNET__JSON_FALSE))
        v->add_bos = j->type == BITNET__JSON_TRUE && v->bos >= 0;
    if (have_cfg && (j = bitnet__json_get(&cfg, "chat_template"))) {
        const bitnet__json *t = j->type == BITNET__JSON_STRING ? j : NULL;
        for (i = 0; j->type == BITNET__JSON_ARRAY && i < j->len; i++) /* [{name, template}]: the default one */
            if (bitnet__json_is(bitnet__json_get(&j->items[i], "name"), "default")) t = bitnet__json_get(&j->items[i], "template");
        if (t && t->type == BITNET__JSON_STRING) {
            if (!(v->chat_template = bitnet__vocab_strdup(v, t->str, t->len))) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
            v->chat_template_len = t->len;
        }
    }
#undef BITNET__BAIL
done:
    bitnet__arena_free(&tmp);
    BITNET_FREE(text);
    BITNET_FREE(ctext);
    if (rc) bitnet__vocab_free(v);
    return rc;
}

/* A valid byte-level BPE vocabulary of exactly n_vocab tokens for random test
   models: the 256 byte tokens, merges that build English-like words, and as many
   of the Llama 3 special tokens as fit (at the end, as in Llama 3). */
BITNET__FN int bitnet__vocab_synthetic(bitnet__vocab *v, int n_vocab, bitnet_error *err) {
    static const char *const specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                           "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                           "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                                           "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
    /* common English pairs first (byte-level text; Ġ is a space), then random words */
    static const char *const seed_merges[] = {
        "Ġ t", "h e", "i n", "e r", "a n", "Ġ a", "o n", "r e", "o u", "Ġ s", "Ġ w", "a t", "e n", "Ġt he",
        "Ġ c", "i s", "o r", "e s", "Ġ b", "e d", "Ġ f", "i t", "a l", "Ġ o", "Ġ m", "a r", "Ġ p", "Ġ d",
        "n g", "in g", "Ġ h", "l e", "Ġ i", "Ġ l", "Ġ n", "l l", "Ġ the", "Ġ Ġ", "ĠĠ ĠĠ", "Ċ Ċ", ", Ġ", ". Ġ",
        "Ġ of", "o f", "Ġa nd", "n d", "Ġ to", "t o", "Ġ is", "Ġ in", "1 2", "0 0"};
    int n_special, n_merged, i, merge_cap = 0, rc = BITNET_OK;
    int32_t *words = NULL;
    int n_words = 0;
    bitnet__strmap map;
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    long long attempts = 0;

    memset(v, 0, sizeof *v);
    memset(&map, 0, sizeof map);
    v->bos = v->eos = v->eot = -1;
    if (n_vocab < 260 || n_vocab > (1 << 24))
        return bitnet__fail(err, BITNET_E_ARG, "a synthetic vocabulary needs 260 to 16777216 tokens, not %d", n_vocab);
    n_special = (n_vocab - 256) / 2;
    if (n_special > (int)(sizeof specials / sizeof specials[0])) n_special = (int)(sizeof specials / sizeof specials[0]);
    n_merged = n_vocab - 256 - n_special;
    if (bitnet__vocab_resize(v, n_vocab) || bitnet__strmap_init(&map, (size_t)n_vocab) ||
        !(words = (int32_t *)bitnet__calloc((size_t)n_vocab, sizeof *words))) {
        rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
        goto done;
    }
    for (i = 0; i < 256; i++) {
        char buf[4];
        size_t n = bitnet__utf8_put(buf, bitnet__byte_to_cp((unsigned)i));
        if (!(v->tokens[i] = bitnet__vocab_strdup(v, buf, n))) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); goto done; }
        v->token_lens[i] = n;
        v->types[i] = BITNET__TOKEN_NORMAL;
        bitnet__strmap_insert(&map, v->tokens, v->token_lens, i);
        if (i >= 'a' && i <= 'z') words[n_words++] = i;
    }
    for (i = 0; v->n_merges < n_merged; i++) {
        const char *a, *b;
        size_t na, nb;
        int32_t ia, ib, id = 256 + v->n_merges;
        char *t;
        if (i < (int)(sizeof seed_merges / sizeof seed_merges[0])) {
            const char *sp = strchr(seed_merges[i], ' ');
            ia = bitnet__strmap_find(&map, v->tokens, v->token_lens, seed_merges[i], (size_t)(sp - seed_merges[i]));
            ib = bitnet__strmap_find(&map, v->tokens, v->token_lens, sp + 1, strlen(sp + 1));
            if (ia < 0 || ib < 0) continue;
        } else {
            /* a space before a word-like token, or a word-like token and a letter */
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            if ((rng & 3) == 0) { ia = ' '; ib = words[(rng >> 8) % (uint64_t)n_words]; }
            else { ia = words[(rng >> 8) % (uint64_t)n_words]; ib = 'a' + (int32_t)((rng >> 40) % 26); }
            if (++attempts > 100LL * n_vocab) { rc = bitnet__fail(err, BITNET_E_ARG, "cannot make %d distinct tokens", n_vocab); goto done; }
        }
        a = v->tokens[ia]; na = v->token_lens[ia];
        b = v->tokens[ib]; nb = v->token_lens[ib];
        if (na + nb > 48 || !(t = (char *)bitnet__arena_alloc(&v->arena, na + nb + 1))) {
            if (na + nb > 48) continue;
            rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
            goto done;
        }
        memcpy(t, a, na);
        memcpy(t + na, b, nb);
        t[na + nb] = 0;
        v->tokens[id] = t;
        v->token_lens[id] = na + nb;
        v->types[id] = BITNET__TOKEN_NORMAL;
        if (bitnet__strmap_insert(&map, v->tokens, v->token_lens, id) >= 0) { v->tokens[id] = NULL; continue; }
        if (bitnet__vocab_add_merge(v, a, na, b, nb, &merge_cap)) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); goto done; }
        words[n_words++] = id;
    }
    for (i = 0; i < n_special; i++) {
        int id = n_vocab - n_special + i;
        if (!(v->tokens[id] = bitnet__vocab_strdup(v, specials[i], strlen(specials[i])))) {
            rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
            goto done;
        }
        v->token_lens[id] = strlen(specials[i]);
        v->types[id] = BITNET__TOKEN_CONTROL;
    }
    v->bos = bitnet__vocab_find(v, "<|begin_of_text|>");
    v->eos = bitnet__vocab_find(v, "<|end_of_text|>");
    v->eot = bitnet__vocab_find(v, "<|eot_id|>");
    v->add_bos = v->bos >= 0;
    v->ignore_merges = 1;
done:
    bitnet__strmap_free(&map);
    BITNET_FREE(words);
    if (rc) bitnet__vocab_free(v);
    return rc;
}

/* Writes the vocabulary with llama.cpp's keys. */
BITNET__FN void bitnet__vocab_write_gguf(bitnet__gguf_writer *w, const bitnet__vocab *v) {
    const char *pre = v->ignore_merges ? BITNET__PRE_LLAMA3 : BITNET__PRE_LLAMA3_MERGES;
    bitnet__gguf_add_str(w, "tokenizer.ggml.model", "gpt2", 4);
    bitnet__gguf_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre));
    bitnet__gguf_add_str_array(w, "tokenizer.ggml.tokens", v->tokens, v->token_lens, (uint64_t)v->n_tokens);
    bitnet__gguf_add_i32_array(w, "tokenizer.ggml.token_type", v->types, (uint64_t)v->n_tokens);
    bitnet__gguf_add_str_array(w, "tokenizer.ggml.merges", v->merges, v->merge_lens, (uint64_t)v->n_merges);
    if (v->bos >= 0) bitnet__gguf_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0) bitnet__gguf_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (v->eot >= 0) bitnet__gguf_add_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)v->eot);
    bitnet__gguf_add_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
    if (v->chat_template) bitnet__gguf_add_str(w, "tokenizer.chat_template", v->chat_template, v->chat_template_len);
}

/* ---- Unicode classes for the pre-tokenizer ---- */

/* BEGIN generated by tests/gen_unicode_tables.py from Unicode 16.0: do not edit */
#define BITNET__UNICODE_VERSION "16.0"
#define BITNET__UCLASS_BLOCK 256
/* block of code point cp: bitnet__uclass_stage1[cp / 256] */
static const uint8_t bitnet__uclass_stage1[4352] = {
    0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,1,17,18,19,1,20,21,22,23,24,25,26,27,1,28,
    29,30,31,31,32,31,31,33,31,31,31,31,34,35,36,31,37,38,39,31,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,27,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,40,1,41,42,43,44,45,46,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,47,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,1,48,49,1,50,51,52,
    53,54,55,56,57,58,1,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,
    1,1,1,84,85,86,31,31,31,31,31,31,31,31,31,87,1,1,1,1,88,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,89,1,1,90,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,91,31,31,31,31,31,31,1,1,92,93,31,94,95,96,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,97,1,1,1,1,98,99,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,100,1,101,102,31,31,31,31,31,31,31,31,31,103,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,104,31,31,31,31,31,105,106,107,108,109,110,31,31,31,31,31,31,31,111,
    112,113,114,31,115,116,31,117,118,119,31,31,120,121,122,31,31,123,31,31,31,31,31,31,31,31,31,104,31,31,31,31,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,124,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,125,126,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,127,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,128,1,1,129,31,31,31,31,31,31,31,31,31,1,1,130,31,31,31,31,31,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,131,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,132,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
    31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,31,
};
/* 133 blocks of 64 bytes: class of cp = (byte (cp % 256) / 4 >> 2 * (cp % 4)) & 3 */
static const uint8_t bitnet__uclass_blocks[8512] = {
    0,0,252,15,0,0,0,0,3,0,0,0,170,170,10,0,84,85,85,85,85,85,21,0,84,85,85,85,85,85,21,0,
    0,12,0,0,0,0,0,0,3,0,16,0,160,4,24,42,85,85,85,85,85,21,85,85,85,85,85,85,85,21,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,80,85,85,5,0,0,0,85,1,0,17,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,81,80,69,
    0,16,21,81,85,85,85,85,69,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,69,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    5,0,80,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,84,85,85,85,85,85,85,85,85,21,4,0,85,85,85,85,85,85,85,85,
    85,85,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,21,64,21,0,0,0,
    0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,85,85,85,21,0,0,0,0,0,170,170,10,80,84,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,4,0,0,0,20,0,80,170,170,90,65,
    0,0,0,0,81,85,85,85,85,85,85,85,0,0,0,0,0,0,0,84,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,5,0,0,4,0,0,0,170,170,90,85,85,85,85,85,85,85,21,0,0,5,16,0,
    85,85,85,85,85,5,16,0,0,1,1,0,0,0,0,0,85,85,85,85,85,85,1,0,85,85,21,0,85,85,85,85,
    85,85,84,21,0,0,0,0,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,85,85,85,85,85,85,85,85,85,85,85,85,85,5,4,0,0,0,0,1,0,85,85,5,160,170,170,84,85,85,85,
    1,84,85,65,65,85,85,85,85,85,81,85,17,80,5,4,0,0,0,16,0,0,0,69,5,160,170,170,5,170,10,1,
    0,84,21,64,65,85,85,85,85,85,81,85,81,20,5,0,0,0,0,0,0,0,84,17,0,160,170,170,80,1,0,0,
    0,84,85,69,69,85,85,85,85,85,81,85,81,84,5,4,0,0,0,0,1,0,0,0,5,160,170,170,0,0,4,0,
    0,84,85,65,65,85,85,85,85,85,81,85,81,84,5,4,0,0,0,0,0,0,0,69,5,160,170,170,164,170,0,0,
    64,84,21,80,81,5,20,81,64,1,21,80,85,85,5,0,0,0,0,0,1,0,0,0,0,160,170,170,42,0,0,0,
    0,84,85,81,81,85,85,85,85,85,81,85,85,85,5,4,0,0,0,0,0,0,21,4,5,160,170,170,0,0,170,42,
    1,84,85,81,81,85,85,85,85,85,81,85,85,84,5,4,0,0,0,0,0,0,0,20,5,160,170,170,20,0,0,0,
    0,85,85,81,81,85,85,85,85,85,85,85,85,85,21,4,0,0,0,16,0,21,170,106,5,160,170,170,170,170,82,85,
    0,84,85,85,85,21,80,85,85,85,85,85,69,85,85,4,85,21,0,0,0,0,0,0,0,160,170,170,0,0,0,0,
    84,85,85,85,85,85,85,85,85,85,85,85,81,0,0,0,85,21,0,0,170,170,10,0,0,0,0,0,0,0,0,0,
    20,81,21,85,85,85,85,85,85,68,85,85,81,0,0,4,85,17,0,0,170,170,10,85,0,0,0,0,0,0,0,0,
    1,0,0,0,0,0,0,0,170,170,170,170,170,0,0,0,85,85,84,85,85,85,85,85,85,85,85,1,0,0,0,0,
    0,0,85,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,21,0,0,0,0,64,170,170,10,0,85,5,80,5,4,20,0,80,1,84,85,85,
    5,0,0,16,170,170,10,0,85,85,85,85,85,85,85,85,85,69,0,4,85,85,85,85,85,85,85,85,85,85,21,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,81,5,85,21,81,5,85,85,85,85,85,85,85,85,
    85,85,81,5,85,85,85,85,85,85,85,85,81,5,85,21,81,5,85,85,85,21,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,81,5,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,168,170,170,170,170,2,
    85,85,85,85,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,85,5,
    84,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,65,85,85,85,85,
    87,85,85,85,85,85,21,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,160,86,85,1,0,
    85,85,85,85,5,0,0,64,85,85,85,85,5,0,0,0,85,85,85,85,5,0,0,0,85,85,85,81,1,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,64,0,1,170,170,10,0,170,170,10,0,
    0,0,0,0,170,170,10,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,
    85,65,85,85,85,85,85,85,85,85,17,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,
    85,85,85,85,85,85,85,21,0,0,0,0,0,0,0,0,0,160,170,170,85,85,85,85,85,85,85,5,85,1,0,0,
    85,85,85,85,85,85,85,85,85,85,85,0,85,85,85,85,85,85,5,0,170,170,42,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,21,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,0,0,0,0,0,0,0,0,0,
    170,170,10,0,170,170,10,0,0,64,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,84,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,84,85,1,170,170,10,0,0,0,0,0,0,0,0,0,
    64,85,85,85,85,85,85,85,1,0,0,80,170,170,90,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,170,170,10,84,170,170,90,85,85,85,85,85,85,85,85,5,
    85,85,21,0,85,85,85,85,85,85,85,85,85,85,21,84,0,0,0,0,0,0,0,0,0,0,84,81,85,20,16,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,5,85,5,85,85,85,85,85,85,85,85,85,5,85,5,85,85,68,68,85,85,85,85,85,85,85,5,
    85,85,85,85,85,85,85,85,85,85,85,85,85,81,85,17,80,81,85,1,85,80,85,0,85,85,85,1,80,81,85,1,
    255,255,63,0,0,0,0,0,0,0,15,192,0,0,0,0,0,0,0,0,0,0,0,192,0,0,0,0,6,170,10,64,
    170,170,10,0,85,85,85,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    16,64,80,85,85,4,84,5,0,17,81,69,85,85,5,85,0,84,5,16,170,170,170,170,170,170,170,170,170,170,170,170,
    106,169,10,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,170,170,170,170,170,170,170,170,
    170,170,170,170,170,170,170,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,160,170,170,170,170,170,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,160,170,170,
    170,170,170,170,170,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,64,21,80,0,0,8,
    85,85,85,85,85,85,85,85,85,69,0,4,85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,64,0,0,0,0,
    85,85,85,85,85,21,0,0,85,21,85,21,85,21,85,21,85,21,85,21,85,21,85,21,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,64,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    3,148,0,0,0,0,0,0,168,170,10,0,84,5,106,1,84,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,21,0,84,84,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,85,
    0,84,85,85,85,85,85,85,85,85,85,85,84,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,21,160,10,0,0,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,
    0,0,0,0,0,0,0,0,170,170,10,0,0,0,0,0,0,0,170,170,168,170,170,170,0,0,0,0,0,0,0,0,
    170,170,10,0,0,0,0,0,0,0,0,0,168,170,170,170,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,5,
    85,85,85,1,85,85,85,85,170,170,90,0,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,64,
    85,85,85,85,85,85,85,5,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,165,170,170,0,0,0,0,
    0,0,0,0,0,64,85,85,80,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,65,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,69,84,85,1,0,0,0,0,80,85,85,85,
    69,69,21,85,85,85,85,85,21,0,0,0,170,10,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,
    80,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,170,170,10,0,0,0,0,0,80,85,64,20,
    170,170,90,85,85,85,85,85,85,5,0,0,85,85,85,85,85,21,0,0,0,0,0,0,85,85,85,85,85,85,85,1,
    0,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,0,0,0,64,170,170,10,0,85,81,85,85,170,170,90,21,
    85,85,85,85,85,85,85,85,85,85,1,0,0,0,0,0,21,85,85,0,170,170,10,0,85,85,85,85,85,21,16,80,
    85,85,85,85,85,85,85,85,85,85,85,85,4,20,84,5,17,0,0,0,0,0,64,5,85,85,21,0,80,1,0,0,
    84,21,84,21,84,21,0,0,85,21,85,21,85,85,85,85,85,85,85,85,85,85,21,85,85,85,5,0,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,170,170,10,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,0,0,0,85,85,85,85,85,21,64,85,85,85,85,85,85,85,85,85,85,85,85,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,0,0,0,0,0,
    85,21,0,0,64,85,0,68,85,85,81,85,85,21,85,17,69,81,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,0,0,0,64,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,80,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,0,0,85,85,85,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,81,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,
    0,0,0,0,170,170,10,0,84,85,85,85,85,85,21,0,84,85,85,85,85,85,21,0,0,80,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,80,85,80,85,80,85,80,1,0,0,0,0,0,0,0,0,
    85,85,85,84,85,85,85,85,85,21,85,85,85,85,21,69,85,85,85,5,85,85,85,5,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,
    0,128,170,170,170,170,170,170,170,170,170,170,170,0,0,0,170,170,170,170,170,170,170,170,170,170,170,170,170,170,2,0,
    0,0,160,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,1,85,85,85,85,85,85,85,85,85,85,85,85,1,0,0,0,168,170,170,170,170,170,170,0,
    85,85,85,85,85,85,85,85,170,0,0,84,85,85,85,85,89,85,37,0,85,85,85,85,85,85,85,85,85,5,0,0,
    85,85,85,85,85,85,85,5,85,85,85,85,85,85,85,85,85,0,85,85,168,10,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,5,170,170,10,0,85,85,85,85,85,85,85,85,85,0,85,85,85,85,85,85,85,85,85,0,
    85,85,85,85,85,85,85,85,85,85,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,85,85,21,85,
    85,85,21,85,21,69,85,85,69,85,85,85,69,85,69,1,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,0,85,85,85,85,85,5,0,0,85,85,0,0,0,0,0,0,
    85,69,85,85,85,85,85,85,85,85,85,85,81,85,21,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,5,81,85,85,85,85,85,85,85,85,85,85,69,1,65,85,85,85,85,85,5,170,170,85,85,85,85,85,21,168,170,
    85,85,85,85,85,85,85,21,0,128,170,170,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,21,5,128,170,
    85,85,85,85,85,165,170,0,85,85,85,85,85,85,5,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,90,170,170,170,170,160,170,170,170,170,170,170,170,170,170,170,170,
    1,0,0,0,85,84,84,85,85,85,85,85,85,5,0,0,170,170,2,0,0,0,0,0,85,85,85,85,85,85,85,41,
    85,85,85,85,85,85,85,169,0,0,0,0,0,0,0,0,85,85,84,85,85,85,85,85,85,1,128,170,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,85,85,85,85,85,5,170,170,85,85,85,85,21,0,170,170,
    85,85,85,85,5,0,0,0,0,0,168,170,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,21,0,160,170,
    85,85,85,85,85,85,85,85,85,0,0,0,170,170,10,0,170,170,90,85,85,85,85,85,85,5,0,64,85,85,85,85,
    85,5,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,170,170,170,170,170,170,170,42,
    85,85,85,85,85,85,85,85,85,85,5,0,5,0,0,0,80,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,169,170,106,0,0,85,85,85,85,85,5,0,0,168,2,0,0,0,0,0,0,85,85,85,85,
    5,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,169,170,0,0,0,0,0,85,85,85,85,85,21,0,0,
    64,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,160,170,170,170,170,170,170,170,20,4,0,0,
    64,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,85,85,85,85,85,85,1,0,170,170,10,0,
    64,85,85,85,85,85,85,85,85,21,0,0,0,160,170,170,0,65,0,0,85,85,85,85,85,85,85,85,21,16,0,0,
    64,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,84,1,0,0,170,170,26,1,168,170,170,170,170,2,0,0,
    85,85,85,85,69,85,85,85,85,85,85,0,0,0,0,64,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,21,81,69,85,85,85,69,85,85,1,0,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,0,170,170,10,0,
    0,84,85,65,65,85,85,85,85,85,81,85,81,84,5,4,0,0,0,0,1,0,0,84,5,0,0,0,0,0,0,0,
    85,85,69,16,85,85,85,85,85,85,85,85,85,69,0,0,0,0,0,0,68,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,0,0,64,21,0,170,170,10,64,5,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,69,0,0,170,170,10,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,0,0,0,0,0,0,0,85,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,1,0,0,170,170,10,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,21,0,0,0,1,0,170,170,10,0,170,170,170,170,170,0,0,0,0,0,0,0,
    85,85,85,85,85,85,21,0,0,0,0,0,170,170,170,0,85,21,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,170,170,170,170,42,0,0,64,
    85,21,4,85,85,20,85,85,85,85,85,85,0,0,0,64,4,0,0,0,170,170,10,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,85,85,80,85,85,85,85,85,85,85,85,85,1,0,0,0,68,0,0,0,0,0,0,0,
    1,0,64,85,85,85,85,85,85,85,85,85,21,0,16,0,0,0,0,0,1,0,0,85,85,85,85,85,85,85,85,85,
    85,85,5,0,0,0,0,4,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,85,1,0,0,0,170,170,10,0,
    85,85,81,85,85,85,85,85,85,85,85,21,0,0,0,0,1,0,0,0,170,170,170,170,170,170,170,2,80,85,85,85,
    85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,21,69,85,85,85,85,85,85,85,85,85,1,0,0,0,0,16,0,0,170,170,10,0,85,69,81,85,85,85,85,85,
    85,85,5,0,0,0,1,0,170,170,10,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,21,0,0,0,
    16,85,85,85,81,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,170,170,10,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,1,0,0,0,170,170,170,170,170,2,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,5,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,170,42,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,84,21,0,0,0,0,0,0,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,5,0,0,0,0,170,170,10,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,85,85,85,85,85,85,85,21,170,170,10,0,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,170,170,10,0,85,85,85,85,85,85,85,5,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,85,0,0,0,170,170,138,170,74,85,85,85,85,85,0,84,
    85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,1,170,170,10,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    170,170,170,170,170,42,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,1,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,64,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,69,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,0,0,0,0,0,64,
    85,85,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,84,85,20,
    85,85,85,85,85,85,85,85,21,0,0,0,16,0,0,0,0,0,0,0,21,4,0,0,0,85,0,0,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,85,85,85,1,
    85,85,1,0,85,85,5,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,170,170,10,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,170,170,170,170,170,0,0,0,170,170,170,170,170,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,170,170,170,170,170,170,2,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,81,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,81,16,20,84,81,85,85,69,84,85,84,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,69,21,84,85,81,85,81,85,85,85,85,85,85,69,21,85,17,80,85,81,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,5,85,85,85,85,85,85,81,85,85,85,85,85,21,85,85,85,85,85,85,85,21,85,
    85,85,85,85,85,81,85,85,85,85,85,85,85,81,85,85,85,85,85,21,85,85,85,85,85,85,85,21,85,85,85,85,
    85,85,81,85,85,85,85,85,85,85,81,85,85,85,85,85,21,85,85,160,170,170,170,170,170,170,170,170,170,170,170,170,
    85,85,85,85,85,85,85,21,0,84,21,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,1,0,64,85,5,170,170,10,16,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,85,85,85,85,85,85,85,5,0,0,0,0,85,85,85,85,85,85,85,85,85,85,85,0,170,170,10,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,0,170,170,10,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,85,85,85,85,85,85,5,169,170,42,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,85,21,85,20,85,85,85,21,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,129,170,170,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,64,0,170,170,10,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,168,170,170,170,
    170,170,170,170,170,170,170,170,170,170,170,168,168,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    168,170,170,170,170,170,170,170,170,170,170,138,170,170,170,10,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,84,85,85,85,85,85,85,20,65,84,85,21,85,68,0,16,64,68,84,20,65,68,68,20,65,21,85,21,85,84,17,
    85,85,69,85,85,85,85,0,84,84,69,85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    170,170,170,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,5,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,5,0,0,0,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,1,0,0,0,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,5,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,5,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,21,0,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,85,
    85,85,85,85,85,85,85,85,85,85,85,85,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
};
/* END generated by tests/gen_unicode_tables.py */

enum { BITNET__CC_OTHER = 0, BITNET__CC_LETTER = 1, BITNET__CC_NUMBER = 2, BITNET__CC_SPACE = 3,
       BITNET__CC_NEWLINE = 4 /* \r and \n: spaces the pattern names on their own */ };

/* Class of the character at s (n > 0 bytes left) and its length in bytes.  A byte
   that starts no valid sequence is a one-byte character of class other. */
BITNET__FN int bitnet__char_class(const uint8_t *s, size_t n, size_t *len) {
    unsigned cp, c = s[0];
    if (c < 0x80) {
        /* ASCII: \t..\r and space are spaces, \r \n newlines */
        *len = 1;
        if (c == '\n' || c == '\r') return BITNET__CC_NEWLINE;
        if ((c >= '\t' && c <= '\r') || c == ' ') return BITNET__CC_SPACE;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return BITNET__CC_LETTER;
        if (c >= '0' && c <= '9') return BITNET__CC_NUMBER;
        return BITNET__CC_OTHER;
    }
    *len = (size_t)bitnet__utf8_decode(s, n, &cp);
    if (!*len) { *len = 1; return BITNET__CC_OTHER; }
    return (bitnet__uclass_blocks[bitnet__uclass_stage1[cp >> 8] * (BITNET__UCLASS_BLOCK / 4) + ((cp & 255) >> 2)] >>
            (2 * (cp & 3))) & 3;
}

/* Length of a contraction after an apostrophe at s[-1]: (?i:'s|'t|'re|'ve|'m|'ll|'d).
   Case-insensitive as Unicode case folding has it, so the long s (U+017F) is an s. */
BITNET__FN size_t bitnet__contraction(const uint8_t *s, size_t n) {
    int c0, c1;
    if (n == 0) return 0;
    c0 = s[0] | 0x20;
    c1 = n > 1 ? (s[1] | 0x20) : 0;
    if (s[0] == 0xC5 && n > 1 && s[1] == 0xBF) return 2; /* U+017F */
    if (c0 == 's' || c0 == 't' || c0 == 'm' || c0 == 'd') return 1;
    if ((c0 == 'r' || c0 == 'v') && c1 == 'e') return 2;
    if (c0 == 'l' && c1 == 'l') return 2;
    return 0;
}

/* End of the pre-token that starts at s[p] (p < n): the first alternative of the
   Llama 3 pattern that matches here, with the regex's greedy and backtracking
   semantics worked out per alternative:
     (?i:'s|'t|'re|'ve|'m|'ll|'d)   a contraction
     [^\r\n\p{L}\p{N}]?\p{L}+        letters, after at most one non-letter non-digit
     \p{N}{1,3}                      one to three digits
      ?[^\s\p{L}\p{N}]+[\r\n]*       punctuation and others, maybe after a space
     \s*[\r\n]+                      spaces up to the last newline of the run
     \s+(?!\S)                       spaces but the last one before a non-space
     \s+                             (a lone space before a non-space) */
BITNET__FN size_t bitnet__pretok_next(const uint8_t *s, size_t n, size_t p) {
    size_t len, len1, q, last_nl_end, last_start, count;
    int c = bitnet__char_class(s + p, n - p, &len), c1;

    if (s[p] == '\'' && (q = bitnet__contraction(s + p + 1, n - p - 1)) != 0) return p + 1 + q;
    c1 = p + len < n ? bitnet__char_class(s + p + len, n - p - len, &len1) : -1;
    if (c == BITNET__CC_LETTER || (c1 == BITNET__CC_LETTER && c != BITNET__CC_NEWLINE && c != BITNET__CC_NUMBER)) {
        q = c == BITNET__CC_LETTER ? p + len : p + len + len1;
        while (q < n && bitnet__char_class(s + q, n - q, &len) == BITNET__CC_LETTER) q += len;
        return q;
    }
    if (c == BITNET__CC_NUMBER) {
        q = p + len;
        for (count = 1; count < 3 && q < n && bitnet__char_class(s + q, n - q, &len) == BITNET__CC_NUMBER; count++) q += len;
        return q;
    }
    if (c == BITNET__CC_OTHER || (s[p] == ' ' && c1 == BITNET__CC_OTHER)) {
        q = c == BITNET__CC_OTHER ? p + len : p + 1 + len1;
        while (q < n && (c = bitnet__char_class(s + q, n - q, &len)) == BITNET__CC_OTHER) q += len;
        while (q < n && (s[q] == '\r' || s[q] == '\n')) q++;
        return q;
    }
    /* a run of spaces */
    q = p;
    last_nl_end = 0;
    last_start = p;
    while (q < n && ((c = bitnet__char_class(s + q, n - q, &len)) == BITNET__CC_SPACE || c == BITNET__CC_NEWLINE)) {
        last_start = q;
        q += len;
        if (c == BITNET__CC_NEWLINE) last_nl_end = q;
    }
    if (last_nl_end) return last_nl_end;
    if (q == n || last_start == p) return q;
    return last_start;
}

/* ---- the tokenizer built from the model file ---- */

typedef struct bitnet__merge_slot {
    uint64_t pair;            /* left << 32 | right; BITNET__NO_PAIR when empty */
    int32_t rank, result;
} bitnet__merge_slot;

#define BITNET__NO_PAIR (~(uint64_t)0)

struct bitnet__tokenizer {
    int n_vocab;
    const char **text;        /* token text as stored (points into the model file) */
    size_t *text_len;
    const char **piece;       /* the bytes a token stands for */
    size_t *piece_len;
    char *piece_bytes;        /* decoded bytes of the byte-level tokens */
    uint8_t *type;            /* BITNET__TOKEN_* */
    uint8_t *eog;             /* end of generation */
    int32_t byte_token[256];
    bitnet__strmap by_bytes;  /* normal tokens, by their bytes */
    size_t max_piece_len;     /* longest normal token in bytes */
    int ignore_merges;
    bitnet__merge_slot *merges;
    size_t merge_mask;
    /* added tokens, matched in the text before pre-tokenization */
    bitnet__strmap specials;  /* by text */
    int n_specials;
    size_t special_lens[256]; /* the distinct lengths, longest first */
    int n_special_lens;
    uint8_t special_start[8192]; /* bit (s[0] << 8 | s[1]) set: some special text starts so */
    uint8_t special_byte[32]; /* bit s[0] set: a one-byte special text */
    int has_user_defined;     /* user-defined tokens are matched even without BITNET_TOKENIZE_SPECIAL */
    int add_bos;
    bitnet_token bos;
    const char *chat_template;
    size_t chat_template_len;
    void *owned_file;         /* the model-file bytes, when the tokenizer owns them */
};

BITNET__FN void bitnet__tokenizer_free(bitnet__tokenizer *t) {
    if (!t) return;
    BITNET_FREE(t->owned_file);
    BITNET_FREE((void *)t->text);
    BITNET_FREE(t->text_len);
    BITNET_FREE((void *)t->piece);
    BITNET_FREE(t->piece_len);
    BITNET_FREE(t->piece_bytes);
    BITNET_FREE(t->type);
    BITNET_FREE(t->eog);
    BITNET_FREE(t->merges);
    bitnet__strmap_free(&t->by_bytes);
    bitnet__strmap_free(&t->specials);
    BITNET_FREE(t);
}

/* Decodes byte-level text to bytes; -1 if a character is outside the alphabet. */
BITNET__FN long bitnet__byte_level_decode(const uint8_t *s, size_t n, const int16_t *cp_to_byte, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned cp;
        int k = bitnet__utf8_decode(s + i, n - i, &cp);
        if (!k || cp >= 324 || cp_to_byte[cp] < 0) return -1;
        out[o++] = (char)cp_to_byte[cp];
        i += (size_t)k;
    }
    return (long)o;
}

BITNET__FN int bitnet__merge_find(const bitnet__tokenizer *t, int32_t left, int32_t right, int32_t *result) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->merge_mask;
    for (;; i = (i + 1) & t->merge_mask) {
        if (t->merges[i].pair == key) { *result = t->merges[i].result; return t->merges[i].rank; }
        if (t->merges[i].pair == BITNET__NO_PAIR) return -1;
    }
}

BITNET__FN void bitnet__merge_put(bitnet__tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t result) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->merge_mask;
    while (t->merges[i].pair != BITNET__NO_PAIR && t->merges[i].pair != key) i = (i + 1) & t->merge_mask;
    /* a repeated merge takes the later rank, as Hugging Face tokenizers' map does */
    t->merges[i].pair = key;
    t->merges[i].rank = rank;
    t->merges[i].result = result;
}

/* Builds the tokenizer from the model file's tokenizer.ggml.* keys, checking
   everything: counts, types, ids, and that every merge joins two tokens into a
   third.  *out stays NULL when the file has no vocabulary. */
BITNET__FN int bitnet__tokenizer_build(const bitnet__gguf *g, int n_vocab, bitnet__tokenizer **out, bitnet_error *err) {
    const bitnet__gguf_kv *tokens = bitnet__gguf_find(g, "tokenizer.ggml.tokens");
    const bitnet__gguf_kv *types = bitnet__gguf_find(g, "tokenizer.ggml.token_type");
    const bitnet__gguf_kv *merges = bitnet__gguf_find(g, "tokenizer.ggml.merges");
    bitnet__tokenizer *t = NULL;
    bitnet__strmap by_text;
    bitnet__str s;
    int16_t cp_to_byte[324];
    const uint8_t *p;
    size_t total = 0, cap;
    long long v;
    int rc = BITNET_OK, i;
    char *tmp = NULL;

    *out = NULL;
    memset(&by_text, 0, sizeof by_text);
    if ((rc = bitnet__gguf_get_str(g, "tokenizer.ggml.model", 0, &s, err))) return rc;
    if (!tokens && !s.ptr) return BITNET_OK; /* no vocabulary: the model cannot tokenize */
    if (!s.ptr || !bitnet__str_eq(s, "gpt2"))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "tokenizer.ggml.model is '%.*s'; only byte-level BPE ('gpt2') is supported",
                            (int)(s.len > 64 ? 64 : s.len), s.ptr ? s.ptr : "");
    if ((rc = bitnet__gguf_get_str(g, "tokenizer.ggml.pre", 0, &s, err))) return rc;
    if (s.ptr && !bitnet__str_eq(s, BITNET__PRE_LLAMA3) && !bitnet__str_eq(s, BITNET__PRE_LLAMA3_MERGES) && !bitnet__str_eq(s, "llama3"))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "tokenizer.ggml.pre is '%.*s'; only the Llama 3 pre-tokenizer ('llama-bpe') is supported",
                            (int)(s.len > 64 ? 64 : s.len), s.ptr);
#define BITNET__BAIL(x) do { rc = (x); goto fail; } while (0)
    if (!tokens || tokens->type != BITNET__GGUF_ARRAY || tokens->arr_type != BITNET__GGUF_STRING)
        return bitnet__fail(err, BITNET_E_FORMAT, "tokenizer.ggml.tokens must be an array of strings");
    if (tokens->arr_n != (uint64_t)n_vocab)
        return bitnet__fail(err, BITNET_E_FORMAT, "tokenizer.ggml.tokens has %llu tokens but the model has %d",
                            (unsigned long long)tokens->arr_n, n_vocab);
    if (!types || types->type != BITNET__GGUF_ARRAY || types->arr_n != (uint64_t)n_vocab ||
        (types->arr_type != BITNET__GGUF_I32 && types->arr_type != BITNET__GGUF_U32))
        return bitnet__fail(err, BITNET_E_FORMAT, "tokenizer.ggml.token_type must be %d 32-bit integers", n_vocab);
    if (!merges || merges->type != BITNET__GGUF_ARRAY || merges->arr_type != BITNET__GGUF_STRING || merges->arr_n > (1u << 30))
        return bitnet__fail(err, BITNET_E_FORMAT, "tokenizer.ggml.merges must be an array of strings");

    t = (bitnet__tokenizer *)bitnet__calloc(1, sizeof *t);
    if (!t) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    t->n_vocab = n_vocab;
    t->text = (const char **)bitnet__calloc((size_t)n_vocab, sizeof *t->text);
    t->text_len = (size_t *)bitnet__calloc((size_t)n_vocab, sizeof *t->text_len);
    t->piece = (const char **)bitnet__calloc((size_t)n_vocab, sizeof *t->piece);
    t->piece_len = (size_t *)bitnet__calloc((size_t)n_vocab, sizeof *t->piece_len);
    t->type = (uint8_t *)bitnet__calloc((size_t)n_vocab, 1);
    t->eog = (uint8_t *)bitnet__calloc((size_t)n_vocab, 1);
    if (!t->text || !t->text_len || !t->piece || !t->piece_len || !t->type || !t->eog ||
        bitnet__strmap_init(&by_text, (size_t)n_vocab) || bitnet__strmap_init(&t->by_bytes, (size_t)n_vocab))
        BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
    for (i = 0; i < 324; i++) cp_to_byte[i] = (int16_t)bitnet__cp_to_byte((unsigned)i);

    /* token texts and types; normal tokens are decoded to their bytes */
    p = tokens->arr_data;
    for (i = 0; i < n_vocab; i++) {
        s = bitnet__gguf_next_str(&p);
        t->text[i] = s.ptr;
        t->text_len[i] = (size_t)s.len;
        if (s.len == 0) BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "token %d is empty", i));
        total += (size_t)s.len;
        v = (long long)(int32_t)bitnet__rd(types->arr_data + 4 * (size_t)i, 4);
        if (v < BITNET__TOKEN_NORMAL || v > BITNET__TOKEN_BYTE)
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "token %d has type %lld (1..6 expected)", i, v));
        t->type[i] = (uint8_t)v;
        if (bitnet__strmap_insert(&by_text, t->text, t->text_len, i) >= 0 && v == BITNET__TOKEN_NORMAL)
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "token %d ('%.*s') appears twice", i, (int)(s.len > 64 ? 64 : s.len), s.ptr));
    }
    t->piece_bytes = (char *)BITNET_MALLOC(total ? total : 1);
    if (!t->piece_bytes) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
    total = 0;
    for (i = 0; i < 256; i++) t->byte_token[i] = -1;
    for (i = 0; i < n_vocab; i++) {
        long k = -1;
        if (t->type[i] == BITNET__TOKEN_NORMAL || t->type[i] == BITNET__TOKEN_BYTE)
            k = bitnet__byte_level_decode((const uint8_t *)t->text[i], t->text_len[i], cp_to_byte, t->piece_bytes + total);
        if (k < 0) { /* added tokens, and text outside the alphabet, stand for their own text */
            t->piece[i] = t->text[i];
            t->piece_len[i] = t->text_len[i];
            continue;
        }
        t->piece[i] = t->piece_bytes + total;
        t->piece_len[i] = (size_t)k;
        total += (size_t)k;
        if (bitnet__strmap_insert(&t->by_bytes, t->piece, t->piece_len, i) < 0) {
            if (k == 1) t->byte_token[(uint8_t)t->piece[i][0]] = i;
            if ((size_t)k > t->max_piece_len) t->max_piece_len = (size_t)k;
        }
    }
    for (i = 0; i < 256; i++)
        if (t->byte_token[i] < 0) BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "the vocabulary has no token for the byte 0x%02x", i));

    /* merges: rank i joins "left right" into the token left+right */
    cap = 16;
    while (cap < merges->arr_n + merges->arr_n / 2) cap *= 2;
    t->merges = (bitnet__merge_slot *)BITNET_MALLOC(cap * sizeof *t->merges);
    tmp = (char *)BITNET_MALLOC(1024);
    if (!t->merges || !tmp) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
    t->merge_mask = cap - 1;
    for (cap = 0; cap <= t->merge_mask; cap++) t->merges[cap].pair = BITNET__NO_PAIR;
    p = merges->arr_data;
    for (i = 0; (uint64_t)i < merges->arr_n; i++) {
        const char *sp;
        int32_t a, b, r;
        s = bitnet__gguf_next_str(&p);
        sp = s.len ? (const char *)memchr(s.ptr, ' ', (size_t)s.len) : NULL;
        if (!sp || sp == s.ptr || sp + 1 == s.ptr + s.len || memchr(sp + 1, ' ', (size_t)(s.ptr + s.len - sp - 1)) || s.len > 1022)
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "merge %d ('%.*s') is not two tokens separated by a space", i,
                                      (int)(s.len > 64 ? 64 : s.len), s.ptr));
        a = bitnet__strmap_find(&by_text, t->text, t->text_len, s.ptr, (size_t)(sp - s.ptr));
        b = bitnet__strmap_find(&by_text, t->text, t->text_len, sp + 1, (size_t)(s.ptr + s.len - sp - 1));
        memcpy(tmp, s.ptr, (size_t)(sp - s.ptr));
        memcpy(tmp + (sp - s.ptr), sp + 1, (size_t)(s.ptr + s.len - sp - 1));
        r = bitnet__strmap_find(&by_text, t->text, t->text_len, tmp, (size_t)s.len - 1);
        if (a < 0 || b < 0 || r < 0 || t->type[a] != BITNET__TOKEN_NORMAL || t->type[b] != BITNET__TOKEN_NORMAL ||
            t->type[r] != BITNET__TOKEN_NORMAL)
            BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "merge %d ('%.*s') does not join two normal tokens into a third", i,
                                      (int)(s.len > 64 ? 64 : s.len), s.ptr));
        bitnet__merge_put(t, a, b, i, r);
    }

    /* added tokens: control and user-defined ones are cut out of the text */
    for (i = 0, cap = 0; i < n_vocab; i++) cap += t->type[i] == BITNET__TOKEN_CONTROL || t->type[i] == BITNET__TOKEN_USER_DEFINED;
    if (bitnet__strmap_init(&t->specials, cap)) BITNET__BAIL(bitnet__fail(err, BITNET_E_NOMEM, "out of memory"));
    for (i = 0; i < n_vocab; i++) {
        size_t n = t->text_len[i];
        const uint8_t *u = (const uint8_t *)t->text[i];
        int k;
        if (t->type[i] != BITNET__TOKEN_CONTROL && t->type[i] != BITNET__TOKEN_USER_DEFINED) continue;
        if (bitnet__strmap_insert(&t->specials, t->text, t->text_len, i) >= 0) continue; /* same text: the first id wins */
        t->n_specials++;
        if (t->type[i] == BITNET__TOKEN_USER_DEFINED) t->has_user_defined = 1;
        if (n == 1) t->special_byte[u[0] >> 3] |= (uint8_t)(1 << (u[0] & 7));
        else t->special_start[(u[0] << 5) | (u[1] >> 3)] |= (uint8_t)(1 << (u[1] & 7));
        for (k = 0; k < t->n_special_lens && t->special_lens[k] != n; k++) {}
        if (k == t->n_special_lens) {
            if (k == (int)(sizeof t->special_lens / sizeof t->special_lens[0]))
                BITNET__BAIL(bitnet__fail(err, BITNET_E_UNSUPPORTED, "added tokens have more than %d different lengths", k));
            while (k > 0 && t->special_lens[k - 1] < n) { t->special_lens[k] = t->special_lens[k - 1]; k--; }
            t->special_lens[k] = n;
            t->n_special_lens++;
        }
    }

    if ((rc = bitnet__gguf_get_str(g, "tokenizer.ggml.pre", 0, &s, err))) goto fail;
    t->ignore_merges = !s.ptr || !bitnet__str_eq(s, BITNET__PRE_LLAMA3_MERGES);
    if ((rc = bitnet__gguf_get_int(g, "tokenizer.ggml.bos_token_id", 0, -1, -1, n_vocab - 1, &v, err))) goto fail;
    t->bos = (bitnet_token)v;
    {
        const bitnet__gguf_kv *kv = bitnet__gguf_find(g, "tokenizer.ggml.add_bos_token");
        if (kv && kv->type != BITNET__GGUF_BOOL) BITNET__BAIL(bitnet__fail(err, BITNET_E_FORMAT, "tokenizer.ggml.add_bos_token must be a bool"));
        t->add_bos = (kv ? kv->num.u != 0 : 1) && t->bos >= 0;
    }
    {
        static const char *const keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"};
        static const char *const names[] = {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"};
        int k;
        for (k = 0; k < 2; k++) {
            if ((rc = bitnet__gguf_get_int(g, keys[k], 0, -1, -1, n_vocab - 1, &v, err))) goto fail;
            if (v >= 0) t->eog[v] = 1;
        }
        for (k = 0; k < 3; k++) {
            int32_t id = bitnet__strmap_find(&by_text, t->text, t->text_len, names[k], strlen(names[k]));
            if (id >= 0 && t->type[id] == BITNET__TOKEN_CONTROL) t->eog[id] = 1;
        }
    }
    if ((rc = bitnet__gguf_get_str(g, "tokenizer.chat_template", 0, &s, err))) goto fail;
    t->chat_template = s.ptr;
    t->chat_template_len = (size_t)s.len;
#undef BITNET__BAIL
    bitnet__strmap_free(&by_text);
    BITNET_FREE(tmp);
    *out = t;
    return BITNET_OK;
fail:
    bitnet__strmap_free(&by_text);
    BITNET_FREE(tmp);
    bitnet__tokenizer_free(t);
    return rc;
}

BITNET__FN int bitnet__tokenizer_load(bitnet_model *model, bitnet_error *err) {
    return bitnet__tokenizer_build(&model->gguf, model->hp.n_vocab, &model->tokenizer, err);
}

/* Builds a tokenizer straight from a vocabulary, through its model-file form so
   that it is checked exactly as a loaded one (for tools and tests). */
BITNET__FN int bitnet__tokenizer_from_vocab(const bitnet__vocab *v, bitnet__tokenizer **out, bitnet_error *err) {
    bitnet__gguf_writer w;
    bitnet__gguf g;
    uint8_t *file;
    size_t size;
    int rc, i;
    *out = NULL;
    memset(&w, 0, sizeof w);
    bitnet__vocab_write_gguf(&w, v);
    size = 24 + w.kv_len;
    file = w.failed ? NULL : (uint8_t *)BITNET_MALLOC(size);
    if (!file) {
        bitnet__gguf_writer_free(&w);
        return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    }
    memcpy(file, "GGUF", 4);
    for (i = 0; i < 4; i++) file[4 + i] = (uint8_t)(3u >> (8 * i));
    for (i = 0; i < 8; i++) file[8 + i] = 0; /* no tensors */
    for (i = 0; i < 8; i++) file[16 + i] = (uint8_t)(w.n_kv >> (8 * i));
    memcpy(file + 24, w.kv, w.kv_len);
    bitnet__gguf_writer_free(&w);
    rc = bitnet__gguf_parse(&g, file, size, err);
    if (rc == BITNET_OK) rc = bitnet__tokenizer_build(&g, v->n_tokens, out, err);
    bitnet__gguf_free(&g);
    if (rc == BITNET_OK && !*out) rc = bitnet__fail(err, BITNET_E_FORMAT, "the vocabulary is empty");
    if (rc) BITNET_FREE(file);
    else (*out)->owned_file = file;
    return rc;
}

/* ---- BPE on one piece ---- */

/* Tokens go to out[0..max) and are counted past it, so a caller learns how many are needed. */
typedef struct bitnet__emit {
    bitnet_token *out;
    size_t max, count;
} bitnet__emit;

BITNET__FN void bitnet__put(bitnet__emit *e, int32_t id) {
    if (e->count < e->max) e->out[e->count] = id;
    e->count++;
}

/* Scratch memory of an encoder, grown to the longest piece seen. */
typedef struct bitnet__bpe_sym {
    int32_t id, prev, next;
} bitnet__bpe_sym;

typedef struct bitnet__bpe_work {
    bitnet__bpe_sym *sym;
    uint64_t *heap;           /* rank << 32 | position of the left symbol */
    size_t cap;
} bitnet__bpe_work;

BITNET__FN void bitnet__bpe_work_free(bitnet__bpe_work *w) {
    BITNET_FREE(w->sym);
    BITNET_FREE(w->heap);
    memset(w, 0, sizeof *w);
}

BITNET__FN void bitnet__heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = v;
}

BITNET__FN uint64_t bitnet__heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* Short pieces: ranks of adjacent pairs in an array, the leftmost lowest merged
   until none is left (the same order as the heap below, with less overhead). */
#define BITNET__BPE_SHORT 32

BITNET__FN void bitnet__bpe_short(const bitnet__tokenizer *t, const uint8_t *s, size_t n, bitnet__emit *e) {
    int32_t id[BITNET__BPE_SHORT], res[BITNET__BPE_SHORT], rank[BITNET__BPE_SHORT];
    size_t m = n, i, best;
    for (i = 0; i < n; i++) id[i] = t->byte_token[s[i]];
    for (i = 0; i + 1 < m; i++) rank[i] = bitnet__merge_find(t, id[i], id[i + 1], &res[i]);
    for (;;) {
        int32_t r = -1;
        best = 0;
        for (i = 0; i + 1 < m; i++)
            if (rank[i] >= 0 && (r < 0 || rank[i] < r)) { r = rank[i]; best = i; }
        if (r < 0) break;
        id[best] = res[best];
        for (i = best + 1; i + 1 < m; i++) { id[i] = id[i + 1]; rank[i] = rank[i + 1]; res[i] = res[i + 1]; }
        m--;
        if (best > 0) rank[best - 1] = bitnet__merge_find(t, id[best - 1], id[best], &res[best - 1]);
        if (best + 1 < m) rank[best] = bitnet__merge_find(t, id[best], id[best + 1], &res[best]);
    }
    for (i = 0; i < m; i++) bitnet__put(e, id[i]);
}

/* Any length in O(n log n): a heap of candidate merges, each checked when it comes up. */
BITNET__FN int bitnet__bpe_long(const bitnet__tokenizer *t, const uint8_t *s, size_t n, bitnet__bpe_work *w, bitnet__emit *e) {
    size_t i, nheap = 0;
    int32_t res, j;
    bitnet__bpe_sym *sym;
    if (n > 0xFFFFFFF0u) return BITNET_E_UNSUPPORTED;
    if (n > w->cap) {
        bitnet__bpe_sym *ns = (bitnet__bpe_sym *)BITNET_REALLOC(w->sym, n * sizeof *ns);
        uint64_t *nh;
        if (ns) w->sym = ns;
        nh = ns ? (uint64_t *)BITNET_REALLOC(w->heap, n * sizeof *nh) : NULL;
        if (!nh) return BITNET_E_NOMEM;
        w->heap = nh;
        w->cap = n;
    }
    sym = w->sym;
    for (i = 0; i < n; i++) {
        sym[i].id = t->byte_token[s[i]];
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (i = 0; i + 1 < n; i++) {
        int32_t r = bitnet__merge_find(t, sym[i].id, sym[i + 1].id, &res);
        if (r >= 0) bitnet__heap_push(w->heap, &nheap, (uint64_t)r << 32 | i);
    }
    while (nheap) {
        uint64_t top = bitnet__heap_pop(w->heap, &nheap);
        int32_t pos = (int32_t)(uint32_t)top, nx = sym[pos].next, r;
        if (sym[pos].id < 0 || nx < 0) continue;
        r = bitnet__merge_find(t, sym[pos].id, sym[nx].id, &res);
        if (r != (int32_t)(top >> 32)) continue; /* that pair changed since */
        sym[pos].id = res;
        sym[pos].next = sym[nx].next;
        if (sym[nx].next >= 0) sym[sym[nx].next].prev = pos;
        sym[nx].id = -1;
        if (sym[pos].prev >= 0 && (r = bitnet__merge_find(t, sym[sym[pos].prev].id, res, &j)) >= 0)
            bitnet__heap_push(w->heap, &nheap, (uint64_t)r << 32 | (uint32_t)sym[pos].prev);
        if (sym[pos].next >= 0 && (r = bitnet__merge_find(t, res, sym[sym[pos].next].id, &j)) >= 0)
            bitnet__heap_push(w->heap, &nheap, (uint64_t)r << 32 | (uint32_t)pos);
    }
    for (j = 0; j >= 0; j = sym[j].next) bitnet__put(e, sym[j].id);
    return BITNET_OK;
}

BITNET__FN int bitnet__bpe(const bitnet__tokenizer *t, const uint8_t *s, size_t n, bitnet__bpe_work *w, bitnet__emit *e) {
    if (n == 1) { bitnet__put(e, t->byte_token[s[0]]); return BITNET_OK; }
    if (t->ignore_merges && n <= t->max_piece_len) {
        int32_t id = bitnet__strmap_find(&t->by_bytes, t->piece, t->piece_len, (const char *)s, n);
        if (id >= 0) { bitnet__put(e, id); return BITNET_OK; }
    }
    if (n <= BITNET__BPE_SHORT) { bitnet__bpe_short(t, s, n, e); return BITNET_OK; }
    return bitnet__bpe_long(t, s, n, w, e);
}

/* ---- encoding a text ---- */

/* Ordinary text: pre-tokenize, then BPE each piece. */
BITNET__FN int bitnet__encode_ordinary(const bitnet__tokenizer *t, const uint8_t *s, size_t n, bitnet__bpe_work *w, bitnet__emit *e) {
    size_t p = 0;
    while (p < n) {
        size_t q = bitnet__pretok_next(s, n, p);
        int rc = bitnet__bpe(t, s + p, q - p, w, e);
        if (rc) return rc;
        p = q;
    }
    return BITNET_OK;
}

/* The leftmost, longest added token in s[p..n) that may be matched; n if none. */
BITNET__FN size_t bitnet__find_special(const bitnet__tokenizer *t, const uint8_t *s, size_t p, size_t n, int control,
                                       size_t *len, int32_t *id) {
    for (; p < n; p++) {
        int k;
        int two = p + 1 < n && (t->special_start[(s[p] << 5) | (s[p + 1] >> 3)] >> (s[p + 1] & 7)) & 1;
        if (!two && !((t->special_byte[s[p] >> 3] >> (s[p] & 7)) & 1)) continue;
        for (k = 0; k < t->n_special_lens; k++) {
            size_t l = t->special_lens[k];
            int32_t i;
            if (l > n - p || (l > 1 && !two)) continue;
            i = bitnet__strmap_find(&t->specials, t->text, t->text_len, (const char *)s + p, l);
            if (i >= 0 && (control || t->type[i] == BITNET__TOKEN_USER_DEFINED)) { *len = l; *id = i; return p; }
        }
    }
    return n;
}

BITNET__FN int bitnet__encode(const bitnet__tokenizer *t, const uint8_t *s, size_t n, int special, bitnet__bpe_work *w,
                              bitnet__emit *e) {
    size_t p = 0;
    int scan = t->n_specials && (special || t->has_user_defined);
    while (p < n) {
        size_t len = 0, q = n;
        int32_t id = -1;
        int rc;
        if (scan) q = bitnet__find_special(t, s, p, n, special, &len, &id);
        if ((rc = bitnet__encode_ordinary(t, s + p, q - p, w, e))) return rc;
        if (id >= 0) bitnet__put(e, id);
        p = q + len;
    }
    return BITNET_OK;
}

BITNET__FN int bitnet__encode_result(bitnet__emit *e, int rc, bitnet_error *err) {
    if (rc == BITNET_E_NOMEM) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory while tokenizing");
    if (rc) return bitnet__fail(err, rc, "a piece of more than 4 GB cannot be tokenized");
    if (e->count > (size_t)INT_MAX) return bitnet__fail(err, BITNET_E_UNSUPPORTED, "the text makes more than %d tokens", INT_MAX);
    if (e->count > e->max) {
        rc = bitnet__fail(err, BITNET_E_BUFFER_TOO_SMALL, "%zu tokens do not fit in %zu", e->count, e->max);
        if (err) err->needed = e->count;
        return rc;
    }
    bitnet__ok(err);
    return (int)e->count;
}

BITNET_API int bitnet_tokenize(const bitnet_model *model, const char *text, ptrdiff_t len, int flags, bitnet_token *out,
                               int max_tokens, bitnet_error *err) {
    const bitnet__tokenizer *t = model ? model->tokenizer : NULL;
    bitnet__emit e;
    bitnet__bpe_work w;
    int rc;
    if (!model) return bitnet__fail(err, BITNET_E_ARG, "bitnet_tokenize: model is NULL");
    if (!t) return bitnet__fail(err, BITNET_E_UNSUPPORTED, "bitnet_tokenize: the model file has no vocabulary");
    if (!text && len != 0) return bitnet__fail(err, BITNET_E_ARG, "bitnet_tokenize: text is NULL");
    if (max_tokens < 0 || (max_tokens > 0 && !out)) return bitnet__fail(err, BITNET_E_ARG, "bitnet_tokenize: no output buffer");
    if (flags & ~(BITNET_TOKENIZE_ADD_BOS | BITNET_TOKENIZE_SPECIAL)) return bitnet__fail(err, BITNET_E_ARG, "bitnet_tokenize: unknown flags 0x%x", flags);
    if ((flags & BITNET_TOKENIZE_ADD_BOS) && t->bos < 0) return bitnet__fail(err, BITNET_E_ARG, "bitnet_tokenize: the model has no BOS token");
    e.out = out;
    e.max = (size_t)max_tokens;
    e.count = 0;
    memset(&w, 0, sizeof w);
    if (flags & BITNET_TOKENIZE_ADD_BOS) bitnet__put(&e, t->bos);
    rc = bitnet__encode(t, (const uint8_t *)text, text ? (len < 0 ? strlen(text) : (size_t)len) : 0,
                        (flags & BITNET_TOKENIZE_SPECIAL) != 0, &w, &e);
    bitnet__bpe_work_free(&w);
    return bitnet__encode_result(&e, rc, err);
}

/* ---- decoding ---- */

BITNET__FN int bitnet__token_hidden(const bitnet__tokenizer *t, bitnet_token token) {
    return t->type[token] == BITNET__TOKEN_CONTROL || t->type[token] == BITNET__TOKEN_UNUSED;
}

BITNET_API int bitnet_token_to_piece(const bitnet_model *model, bitnet_token token, char *buf, size_t size) {
    const bitnet__tokenizer *t = model ? model->tokenizer : NULL;
    size_t n;
    if (!t || token < 0 || token >= t->n_vocab) return BITNET_E_ARG;
    n = t->piece_len[token];
    if (n > (size_t)INT_MAX) return BITNET_E_UNSUPPORTED;
    if (n <= size && buf) memcpy(buf, t->piece[token], n);
    return (int)n;
}

BITNET_API int bitnet_token_is_eog(const bitnet_model *model, bitnet_token token) {
    const bitnet__tokenizer *t = model ? model->tokenizer : NULL;
    if (!t) return model && token >= 0 && (token == model->hp.eos || token == model->hp.eot);
    return token >= 0 && token < t->n_vocab && t->eog[token];
}

BITNET_API int bitnet_detokenize(const bitnet_model *model, const bitnet_token *tokens, int n_tokens, int flags, char *buf,
                                 size_t size, bitnet_error *err) {
    const bitnet__tokenizer *t = model ? model->tokenizer : NULL;
    size_t total = 0;
    int i, rc;
    if (!t) return bitnet__fail(err, model ? BITNET_E_UNSUPPORTED : BITNET_E_ARG, "bitnet_detokenize: no model or no vocabulary");
    if (n_tokens < 0 || (n_tokens > 0 && !tokens) || (size > 0 && !buf))
        return bitnet__fail(err, BITNET_E_ARG, "bitnet_detokenize: bad arguments");
    if (flags & ~BITNET_DETOKENIZE_SPECIAL) return bitnet__fail(err, BITNET_E_ARG, "bitnet_detokenize: unknown flags 0x%x", flags);
    for (i = 0; i < n_tokens; i++) {
        bitnet_token k = tokens[i];
        if (k < 0 || k >= t->n_vocab) return bitnet__fail(err, BITNET_E_ARG, "bitnet_detokenize: token %d at %d is out of range", k, i);
        if (bitnet__token_hidden(t, k) && !(flags & BITNET_DETOKENIZE_SPECIAL)) continue;
        if (total + t->piece_len[k] <= size) memcpy(buf + total, t->piece[k], t->piece_len[k]);
        total += t->piece_len[k];
    }
    if (total > (size_t)INT_MAX) return bitnet__fail(err, BITNET_E_UNSUPPORTED, "bitnet_detokenize: more than %d bytes", INT_MAX);
    if (total > size) {
        rc = bitnet__fail(err, BITNET_E_BUFFER_TOO_SMALL, "%zu bytes do not fit in %zu", total, size);
        if (err) err->needed = total;
        return rc;
    }
    bitnet__ok(err);
    return (int)total;
}

BITNET_API void bitnet_decoder_init(bitnet_decoder *dec, const bitnet_model *model, int flags) {
    memset(dec, 0, sizeof *dec);
    dec->model = model;
    dec->flags = flags;
}

/* How many bytes at the end of s[0..n) are the start of a UTF-8 sequence that the
   next bytes could still complete (0..3). */
BITNET__FN size_t bitnet__utf8_incomplete_tail(const uint8_t *s, size_t n) {
    size_t back;
    for (back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = s[n - back];
        size_t need;
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte: look further back */
        need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
        if (need <= back) return 0;  /* complete, or not a lead byte at all */
        /* the second byte narrows the range for E0, ED, F0 and F4 */
        if (back >= 2) {
            uint8_t d = s[n - back + 1];
            if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) || (c == 0xF0 && d < 0x90) || (c == 0xF4 && d > 0x8F)) return 0;
        }
        return back;
    }
    return 0;
}

/* Byte i of the pending bytes followed by piece p. */
BITNET__FN uint8_t bitnet__decoder_byte(const bitnet_decoder *dec, const uint8_t *p, size_t i) {
    return i < (size_t)dec->n_pending ? dec->pending[i] : p[i - (size_t)dec->n_pending];
}

BITNET_API int bitnet_decoder_push(bitnet_decoder *dec, bitnet_token token, char *buf, size_t size) {
    const bitnet__tokenizer *t = dec && dec->model ? dec->model->tokenizer : NULL;
    const uint8_t *p;
    uint8_t tail[4];
    size_t n, total, hold = 0, out, i, k;
    if (!t || token < 0 || token >= t->n_vocab) return BITNET_E_ARG;
    if (bitnet__token_hidden(t, token) && !(dec->flags & BITNET_DETOKENIZE_SPECIAL)) return 0;
    p = (const uint8_t *)t->piece[token];
    n = t->piece_len[token];
    total = (size_t)dec->n_pending + n;
    if (total > (size_t)INT_MAX) return BITNET_E_UNSUPPORTED;
    /* added-token text is whole, so what was pending can no longer complete */
    if (t->type[token] == BITNET__TOKEN_NORMAL || t->type[token] == BITNET__TOKEN_BYTE) {
        k = total < 4 ? total : 4;
        for (i = 0; i < k; i++) tail[i] = bitnet__decoder_byte(dec, p, total - k + i);
        hold = bitnet__utf8_incomplete_tail(tail, k);
    }
    out = total - hold;
    if (out > size || (out && !buf)) return (int)out;
    for (i = 0; i < out; i++) buf[i] = (char)bitnet__decoder_byte(dec, p, i);
    for (i = 0; i < hold; i++) tail[i] = bitnet__decoder_byte(dec, p, out + i);
    memcpy(dec->pending, tail, hold);
    dec->n_pending = (int)hold;
    return (int)out;
}

BITNET_API int bitnet_decoder_flush(bitnet_decoder *dec, char *buf, size_t size) {
    int n = dec ? dec->n_pending : 0;
    if (!dec) return BITNET_E_ARG;
    if ((size_t)n > size || (n && !buf)) return n;
    if (n) memcpy(buf, dec->pending, (size_t)n);
    dec->n_pending = 0;
    return n;
}

/* ===========================================================================
   Chat template
   ===========================================================================
   No Jinja engine: the two formats the reference models use are written out
   here, and the model file's template string picks one (the caller may force it).

   BitNet b1.58 2B4T (its tokenizer_config.json):
       <|begin_of_text|>System: {content}<|eot_id|>User: {content}<|eot_id|>Assistant: 
   i.e. per message role|capitalize + ": " + content|trim + "<|eot_id|>", the BOS
   once before the first message, and "Assistant: " to prompt a reply.
   Llama 3:
       <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>...
       <|start_header_id|>assistant<|end_header_id|>\n\n

   Special tokens come only from the template: text in a message is ordinary text
   (unless BITNET_CHAT_CONTENT_SPECIAL), so a user cannot type an <|eot_id|>.  The
   text between two special tokens is tokenized as one piece of text, exactly as
   tokenizing the whole rendered string would do it.
*/

BITNET__FN int bitnet__memmem(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle), i;
    for (i = 0; i + k <= n; i++)
        if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0) return 1;
    return 0;
}

BITNET_API bitnet_chat_format bitnet_chat_format_detect(const bitnet_model *model) {
    const bitnet__tokenizer *t = model ? model->tokenizer : NULL;
    const char *s;
    size_t n;
    if (!t || !t->chat_template) return BITNET_CHAT_FORMAT_AUTO;
    s = t->chat_template;
    n = t->chat_template_len;
#define BITNET__HAS(x) bitnet__memmem(s, n, x)
    if (BITNET__HAS("<|start_header_id|>") && BITNET__HAS("<|end_header_id|>") && BITNET__HAS("<|eot_id|>"))
        return BITNET_CHAT_FORMAT_LLAMA3;
    if (BITNET__HAS("capitalize") && BITNET__HAS("': '") && BITNET__HAS("<|eot_id|>") && BITNET__HAS("Assistant: "))
        return BITNET_CHAT_FORMAT_BITNET;
#undef BITNET__HAS
    return BITNET_CHAT_FORMAT_AUTO;
}

/* Collects the rendered conversation as text, or as tokens. */
typedef struct bitnet__chat_out {
    const bitnet_model *model;
    const bitnet__tokenizer *t;
    int tokens;               /* 1: tokenize; 0: render text */
    int content_special;
    char *text;               /* text mode: the output so far; token mode: ordinary text not yet tokenized */
    size_t len, cap;
    int nomem;
    bitnet__emit emit;
    bitnet__bpe_work work;
    int rc;
} bitnet__chat_out;

BITNET__FN void bitnet__chat_text(bitnet__chat_out *o, const char *s, size_t n) {
    if (o->nomem || !n) return;
    if (o->len + n > o->cap) {
        size_t nc = o->cap ? o->cap : 256;
        char *p;
        while (nc < o->len + n) nc *= 2;
        if (!(p = (char *)BITNET_REALLOC(o->text, nc))) { o->nomem = 1; return; }
        o->text = p;
        o->cap = nc;
    }
    memcpy(o->text + o->len, s, n);
    o->len += n;
}

/* A special token of the template, by its text. */
BITNET__FN void bitnet__chat_special(bitnet__chat_out *o, const char *name) {
    int32_t id = bitnet__strmap_find(&o->t->specials, o->t->text, o->t->text_len, name, strlen(name));
    if (o->rc) return;
    if (id < 0) {
        o->rc = BITNET_E_UNSUPPORTED;
        return;
    }
    if (!o->tokens) { bitnet__chat_text(o, name, strlen(name)); return; }
    if (o->len && !o->nomem) o->rc = bitnet__encode(o->t, (const uint8_t *)o->text, o->len, o->content_special, &o->work, &o->emit);
    o->len = 0;
    bitnet__put(&o->emit, id);
}

/* Python's str.strip() as Jinja's trim uses it: White_Space and \x1c..\x1f. */
BITNET__FN int bitnet__py_space_at(const uint8_t *s, size_t n, size_t *len) {
    int c = bitnet__char_class(s, n, len);
    return c == BITNET__CC_SPACE || c == BITNET__CC_NEWLINE || (s[0] >= 0x1C && s[0] <= 0x1F);
}

BITNET__FN void bitnet__chat_trimmed(bitnet__chat_out *o, const char *s) {
    const uint8_t *u = (const uint8_t *)s;
    size_t n = strlen(s), start = 0, end, p, len;
    while (start < n && bitnet__py_space_at(u + start, n - start, &len)) start += len;
    for (end = p = start; p < n; p += len)
        if (!bitnet__py_space_at(u + p, n - p, &len)) end = p + len;
    bitnet__chat_text(o, s + start, end - start);
}

BITNET__FN void bitnet__chat_build(bitnet__chat_out *o, bitnet_chat_format fmt, const bitnet_chat_message *msgs, int n_msgs, int flags) {
    int i;
    if (flags & BITNET_CHAT_CLOSE_REPLY) bitnet__chat_special(o, "<|eot_id|>");
    if (flags & BITNET_CHAT_BEGIN) bitnet__chat_special(o, "<|begin_of_text|>");
    for (i = 0; i < n_msgs; i++) {
        const char *role = msgs[i].role;
        if (fmt == BITNET_CHAT_FORMAT_BITNET) {
            /* role|capitalize: the first letter upper case, the rest lower case (ASCII letters) */
            size_t k, n = strlen(role);
            for (k = 0; k < n; k++) {
                char c = role[k];
                if (k == 0 && c >= 'a' && c <= 'z') c = (char)(c - 32);
                if (k > 0 && c >= 'A' && c <= 'Z') c = (char)(c + 32);
                bitnet__chat_text(o, &c, 1);
            }
            bitnet__chat_text(o, ": ", 2);
        } else {
            bitnet__chat_special(o, "<|start_header_id|>");
            bitnet__chat_text(o, role, strlen(role));
            bitnet__chat_special(o, "<|end_header_id|>");
            bitnet__chat_text(o, "\n\n", 2);
        }
        bitnet__chat_trimmed(o, msgs[i].content);
        bitnet__chat_special(o, "<|eot_id|>");
    }
    if (flags & BITNET_CHAT_ADD_ASSISTANT) {
        if (fmt == BITNET_CHAT_FORMAT_BITNET) bitnet__chat_text(o, "Assistant: ", 11);
        else {
            bitnet__chat_special(o, "<|start_header_id|>");
            bitnet__chat_text(o, "assistant", 9);
            bitnet__chat_special(o, "<|end_header_id|>");
            bitnet__chat_text(o, "\n\n", 2);
        }
    }
    if (o->tokens && o->len && !o->nomem && !o->rc)
        o->rc = bitnet__encode(o->t, (const uint8_t *)o->text, o->len, o->content_special, &o->work, &o->emit);
}

/* Renders into o, which the caller has zeroed and set up for text or tokens. */
BITNET__FN int bitnet__chat_run(bitnet__chat_out *o, const bitnet_model *model, bitnet_chat_format fmt, const bitnet_chat_message *msgs,
                                int n_msgs, int flags, bitnet_error *err) {
    int i;
    o->model = model;
    o->t = model ? model->tokenizer : NULL;
    if (!o->t) return bitnet__fail(err, model ? BITNET_E_UNSUPPORTED : BITNET_E_ARG, "chat: no model or no vocabulary");
    if (n_msgs < 0 || (n_msgs > 0 && !msgs)) return bitnet__fail(err, BITNET_E_ARG, "chat: bad message list");
    if (flags & ~(BITNET_CHAT_BEGIN | BITNET_CHAT_ADD_ASSISTANT | BITNET_CHAT_CLOSE_REPLY | BITNET_CHAT_CONTENT_SPECIAL))
        return bitnet__fail(err, BITNET_E_ARG, "chat: unknown flags 0x%x", flags);
    for (i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content || !msgs[i].role[0])
            return bitnet__fail(err, BITNET_E_ARG, "chat: message %d has no role or no content", i);
    if (fmt == BITNET_CHAT_FORMAT_AUTO) fmt = bitnet_chat_format_detect(model);
    if (fmt == BITNET_CHAT_FORMAT_AUTO)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, o->t->chat_template ? "the model's chat template is not one this library knows; choose a format"
                                                                          : "the model file has no chat template; choose a format");
    if (fmt != BITNET_CHAT_FORMAT_BITNET && fmt != BITNET_CHAT_FORMAT_LLAMA3) return bitnet__fail(err, BITNET_E_ARG, "chat: unknown format %d", (int)fmt);
    o->content_special = (flags & BITNET_CHAT_CONTENT_SPECIAL) != 0;
    bitnet__chat_build(o, fmt, msgs, n_msgs, flags);
    if (o->nomem) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory rendering the chat");
    if (o->rc == BITNET_E_UNSUPPORTED) return bitnet__fail(err, BITNET_E_UNSUPPORTED, "the vocabulary lacks a special token this chat format needs");
    return o->rc ? bitnet__fail(err, o->rc, "out of memory tokenizing the chat") : BITNET_OK;
}

BITNET_API int bitnet_chat_render(const bitnet_model *model, bitnet_chat_format fmt, const bitnet_chat_message *msgs, int n_msgs,
                                  int flags, char *buf, size_t size, bitnet_error *err) {
    bitnet__chat_out o;
    int rc;
    memset(&o, 0, sizeof o);
    rc = bitnet__chat_run(&o, model, fmt, msgs, n_msgs, flags, err);
    if (rc == BITNET_OK && o.len > (size_t)INT_MAX - 1) rc = bitnet__fail(err, BITNET_E_UNSUPPORTED, "chat: more than 2 GB of text");
    if (rc == BITNET_OK && (o.len + 1 > size || !buf)) {
        rc = bitnet__fail(err, BITNET_E_BUFFER_TOO_SMALL, "%zu bytes (with the NUL) do not fit in %zu", o.len + 1, size);
        if (err) err->needed = o.len + 1;
    }
    if (rc == BITNET_OK) {
        if (o.len) memcpy(buf, o.text, o.len);
        buf[o.len] = 0;
        rc = (int)o.len;
        bitnet__ok(err);
    }
    BITNET_FREE(o.text);
    return rc;
}

BITNET_API int bitnet_chat_tokenize(const bitnet_model *model, bitnet_chat_format fmt, const bitnet_chat_message *msgs, int n_msgs,
                                    int flags, bitnet_token *out, int max_tokens, bitnet_error *err) {
    bitnet__chat_out o;
    int rc;
    if (max_tokens < 0 || (max_tokens > 0 && !out)) return bitnet__fail(err, BITNET_E_ARG, "bitnet_chat_tokenize: no output buffer");
    memset(&o, 0, sizeof o);
    o.tokens = 1;
    o.emit.out = out;
    o.emit.max = (size_t)max_tokens;
    rc = bitnet__chat_run(&o, model, fmt, msgs, n_msgs, flags, err);
    if (rc == BITNET_OK) rc = bitnet__encode_result(&o.emit, BITNET_OK, err);
    BITNET_FREE(o.text);
    bitnet__bpe_work_free(&o.work);
    return rc;
}

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

/* Puts the c best of ids[0..n) first, in rank order: quickselect, then a heap sort
   of the head (O(n + c log c), so a flat distribution over a large vocabulary
   stays fast). */
BITNET__FN void bitnet__sift_down(const float *v, int *ids, int root, int end) {
    for (;;) {
        int child = 2 * root + 1, t;
        if (child >= end) return;
        /* a min-heap in rank order: the root ranks last, so popping it fills the
           array from the back in rank order */
        if (child + 1 < end && bitnet__ranks_before(v, ids[child], ids[child + 1])) child++;
        if (!bitnet__ranks_before(v, ids[root], ids[child])) return;
        t = ids[root]; ids[root] = ids[child]; ids[child] = t;
        root = child;
    }
}

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
    for (i = c / 2 - 1; i >= 0; i--) bitnet__sift_down(v, ids, i, c);
    for (i = c - 1; i > 0; i--) {
        int t = ids[0]; ids[0] = ids[i]; ids[i] = t;
        bitnet__sift_down(v, ids, 0, i);
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
    if (c <= 0 || n_vocab <= 0) return 0;
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
/* Turns a Hugging Face BitNet b1.58 checkpoint directory into one model file.

   Input: config.json, model.safetensors (or model-0000N-of-0000M.safetensors with
   model.safetensors.index.json), tokenizer.json and tokenizer_config.json.  The
   layouts of the official releases, as transformers (integrations/bitnet.py,
   models/bitnet) reads them, all work:

     quantization_config                  projection weights      what a layer computes
     autobitlinear, online (the *-bf16    float [out][in]         x . ternary(W) / s, with
       master weights)                                            s = 1/mean|W| (WeightQuant)
     bitlinear (the packed release;       uint8 [out/4][in] and   x . T / weight_scale
       default when fields are absent)    weight_scale [1]
     autobitlinear, offline               uint8 [out/4][in] and   x . T * weight_scale
                                          weight_scale [1]

   Packed weights hold 4 ternary values per byte along the output dimension: value
   (i * out/4 + r, c) is bits 2i..2i+1 of byte (r, c), stored as value + 1.  Online
   ternarization follows WeightQuant exactly: float32 throughout, the absmean clamped
   to at least 1e-5, t = round(w * s) with round-half-even, clamped to [-1, 1] (so
   t = 1 exactly when w * s > 1/2).  Each projection becomes a Q2_0 tensor with d = 1
   and a .scale tensor with its multiplier (1/s, 1/weight_scale or weight_scale) as
   a float32, the one rounding of the whole conversion.

   HF tensor                                   model file tensor
   model.embed_tokens.weight                   token_embd.weight (dtype kept)
   lm_head.weight (when not tied)              output.weight (dtype kept)
   model.norm.weight                           output_norm.weight (F32)
   model.layers.N.input_layernorm.weight       blk.N.attn_norm.weight (F32)
   model.layers.N.self_attn.{q,k,v,o}_proj     blk.N.attn_{q,k,v,output}.{weight,scale}
   model.layers.N.self_attn.attn_sub_norm      blk.N.attn_sub_norm.weight (F32)
   model.layers.N.post_attention_layernorm     blk.N.ffn_norm.weight (F32)
   model.layers.N.mlp.{gate,up,down}_proj      blk.N.ffn_{gate,up,down}.{weight,scale}
   model.layers.N.mlp.ffn_sub_norm             blk.N.ffn_sub_norm.weight (F32)

   Q and K rows keep the Hugging Face order (RoPE rotates the two halves of each
   head).  Tensors the model does not use (rotary inv_freq buffers, lm_head.weight
   of a tied model, which transformers replaces by the embedding) are skipped.
   Everything is validated before the output is created; weights are streamed, so
   memory stays around the size of the largest projection (35 MB for 2B4T in bf16),
   and the file is written under OUT.tmp and renamed at the end. */

/* ---- safetensors ----
   A file is a u64 (little-endian) header length n, n bytes of JSON
   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
   "__metadata__": {...}}, then the data; offsets count from the end of the header. */

enum { BITNET__ST_F32, BITNET__ST_F16, BITNET__ST_BF16, BITNET__ST_U8, BITNET__ST_OTHER };

typedef struct bitnet__st_tensor {
    const char *name;
    int dtype;                 /* BITNET__ST_* */
    const char *dtype_name;    /* as the file says */
    int n_dims;
    uint64_t shape[8];
    uint64_t numel;
    uint64_t offset, nbytes;   /* offset from the start of its file */
    int file;
} bitnet__st_tensor;

typedef struct bitnet__checkpoint {
    FILE **files;
    const char **file_names;
    int n_files;
    bitnet__st_tensor *tensors;
    size_t n_tensors, cap;
    bitnet__arena arena;       /* names */
} bitnet__checkpoint;

#define BITNET__ST_MAX_HEADER ((uint64_t)100 << 20)

BITNET__FN void bitnet__checkpoint_close(bitnet__checkpoint *ck) {
    int i;
    for (i = 0; i < ck->n_files; i++)
        if (ck->files[i]) fclose(ck->files[i]);
    BITNET_FREE((void *)ck->files);
    BITNET_FREE((void *)ck->file_names);
    BITNET_FREE(ck->tensors);
    bitnet__arena_free(&ck->arena);
    memset(ck, 0, sizeof *ck);
}

BITNET__FN const bitnet__st_tensor *bitnet__checkpoint_find(const bitnet__checkpoint *ck, const char *name) {
    size_t i;
    for (i = 0; i < ck->n_tensors; i++)
        if (strcmp(ck->tensors[i].name, name) == 0) return &ck->tensors[i];
    return NULL;
}

/* A JSON number that is a whole number in [0, 2^53]. */
BITNET__FN int bitnet__json_uint(const bitnet__json *j, uint64_t *v) {
    if (!j || j->type != BITNET__JSON_NUMBER || !(j->num >= 0) || j->num > 9007199254740992.0 || j->num != floor(j->num))
        return 0;
    *v = (uint64_t)j->num;
    return 1;
}

BITNET__FN int bitnet__st_dtype(const char *s, int *dtype, uint32_t *size) {
    static const struct { const char *name; int dtype; uint32_t size; } t[] = {
        {"F32", BITNET__ST_F32, 4}, {"F16", BITNET__ST_F16, 2}, {"BF16", BITNET__ST_BF16, 2}, {"U8", BITNET__ST_U8, 1},
        {"F64", BITNET__ST_OTHER, 8}, {"I64", BITNET__ST_OTHER, 8}, {"U64", BITNET__ST_OTHER, 8},
        {"I32", BITNET__ST_OTHER, 4}, {"U32", BITNET__ST_OTHER, 4}, {"I16", BITNET__ST_OTHER, 2},
        {"U16", BITNET__ST_OTHER, 2}, {"I8", BITNET__ST_OTHER, 1}, {"BOOL", BITNET__ST_OTHER, 1},
        {"F8_E4M3", BITNET__ST_OTHER, 1}, {"F8_E5M2", BITNET__ST_OTHER, 1}};
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) { *dtype = t[i].dtype; *size = t[i].size; return 1; }
    return 0;
}

BITNET__FN int bitnet__st_cmp_offsets(const void *a, const void *b) {
    const bitnet__st_tensor *x = *(const bitnet__st_tensor *const *)a, *y = *(const bitnet__st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Opens one safetensors file and adds its tensors, validating the whole header
   against the file size: dtypes, shapes against byte ranges, overlaps. */
BITNET__FN int bitnet__st_open(bitnet__checkpoint *ck, const char *path, bitnet_error *err) {
    FILE *fp = NULL, **nf;
    const char **nn;
    uint8_t len8[8];
    uint64_t hlen, data_size, i;
    long long size;
    char *text = NULL;
    bitnet__arena tmp;
    bitnet__json root;
    const bitnet__st_tensor **sorted = NULL;
    size_t first = ck->n_tensors, k;
    int rc = BITNET_OK, file = ck->n_files;

    memset(&tmp, 0, sizeof tmp);
    nf = (FILE **)BITNET_REALLOC((void *)ck->files, (size_t)(file + 1) * sizeof *nf);
    if (nf) ck->files = nf;
    nn = nf ? (const char **)BITNET_REALLOC((void *)ck->file_names, (size_t)(file + 1) * sizeof *nn) : NULL;
    if (!nn) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    ck->file_names = nn;
    ck->files[file] = NULL;
    ck->file_names[file] = (const char *)bitnet__arena_alloc(&ck->arena, strlen(path) + 1);
    if (!ck->file_names[file]) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
    strcpy((char *)ck->file_names[file], path);
    ck->n_files++;

    fp = fopen(path, "rb");
    if (!fp) return bitnet__fail(err, BITNET_E_IO, "cannot open '%s': %s", path, strerror(errno));
    ck->files[file] = fp;
    if (fseek(fp, 0, SEEK_END) != 0 || (size = (long long)ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0)
        return bitnet__fail(err, BITNET_E_IO, "cannot read '%s'", path);
    if (size < 8 || fread(len8, 1, 8, fp) != 8)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: too short for a safetensors file (%lld bytes)", path, size);
    hlen = bitnet__rd(len8, 8);
    if (hlen > (uint64_t)size - 8)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: header length %llu runs past the end of the file (%lld bytes)", path,
                            (unsigned long long)hlen, size);
    if (hlen > BITNET__ST_MAX_HEADER)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: header of %llu bytes is larger than the 100 MB limit", path,
                            (unsigned long long)hlen);
    data_size = (uint64_t)size - 8 - hlen;
    text = (char *)BITNET_MALLOC((size_t)hlen + 1);
    if (!text) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory reading the header of '%s'", path);
    if (fread(text, 1, (size_t)hlen, fp) != (size_t)hlen) {
        rc = bitnet__fail(err, BITNET_E_IO, "%s: short read of the header", path);
        goto done;
    }
    text[hlen] = 0;
    if ((rc = bitnet__json_parse(text, (size_t)hlen, path, &tmp, &root, err))) goto done;
    if (root.type != BITNET__JSON_OBJECT) {
        rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: the header is not a JSON object", path);
        goto done;
    }
    for (i = 0; i < root.len; i++) {
        const char *name = root.keys[i];
        const bitnet__json *v = &root.items[i], *dt = bitnet__json_get(v, "dtype"), *shape = bitnet__json_get(v, "shape"),
                           *offs = bitnet__json_get(v, "data_offsets");
        bitnet__st_tensor *t;
        uint64_t begin, end, numel = 1, d;
        uint32_t esize;
        if (strcmp(name, "__metadata__") == 0) continue;
        if (strlen(name) != root.key_lens[i] || root.key_lens[i] == 0 || root.key_lens[i] > 255) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor %llu has an empty, overlong or NUL-containing name", path,
                              (unsigned long long)i);
            goto done;
        }
        if (bitnet__checkpoint_find(ck, name)) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' appears twice in the checkpoint", path, name);
            goto done;
        }
        if (v->type != BITNET__JSON_OBJECT || !dt || dt->type != BITNET__JSON_STRING || !shape ||
            shape->type != BITNET__JSON_ARRAY || !offs || offs->type != BITNET__JSON_ARRAY || offs->len != 2) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' needs a dtype, a shape and two data_offsets", path, name);
            goto done;
        }
        if (ck->n_tensors == ck->cap) {
            size_t nc = ck->cap ? ck->cap * 2 : 64;
            bitnet__st_tensor *nt = (bitnet__st_tensor *)BITNET_REALLOC(ck->tensors, nc * sizeof *nt);
            if (!nt) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); goto done; }
            ck->tensors = nt;
            ck->cap = nc;
        }
        t = &ck->tensors[ck->n_tensors];
        memset(t, 0, sizeof *t);
        if (!bitnet__st_dtype(dt->str, &t->dtype, &esize)) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' has the unknown dtype '%.16s'", path, name, dt->str);
            goto done;
        }
        if (shape->len > 8) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' has %zu dimensions", path, name, shape->len);
            goto done;
        }
        t->n_dims = (int)shape->len;
        for (d = 0; d < shape->len; d++) {
            if (!bitnet__json_uint(&shape->items[d], &t->shape[d])) {
                rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' has a shape entry that is not a whole number", path, name);
                goto done;
            }
            if (t->shape[d] && numel > ((uint64_t)1 << 62) / t->shape[d]) {
                rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' is impossibly large", path, name);
                goto done;
            }
            numel *= t->shape[d];
        }
        if (!bitnet__json_uint(&offs->items[0], &begin) || !bitnet__json_uint(&offs->items[1], &end) || begin > end) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' has invalid data_offsets", path, name);
            goto done;
        }
        if (end - begin != numel * esize) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' (%s, %llu values) needs %llu bytes but data_offsets give %llu",
                              path, name, dt->str, (unsigned long long)numel, (unsigned long long)(numel * esize),
                              (unsigned long long)(end - begin));
            goto done;
        }
        if (end > data_size) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensor '%s' ends at byte %llu of a %llu-byte data section", path, name,
                              (unsigned long long)end, (unsigned long long)data_size);
            goto done;
        }
        t->name = (const char *)bitnet__arena_alloc(&ck->arena, root.key_lens[i] + 1);
        t->dtype_name = (const char *)bitnet__arena_alloc(&ck->arena, dt->len + 1);
        if (!t->name || !t->dtype_name) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); goto done; }
        memcpy((char *)t->name, name, root.key_lens[i] + 1);
        memcpy((char *)t->dtype_name, dt->str, dt->len + 1);
        t->numel = numel;
        t->offset = 8 + hlen + begin;
        t->nbytes = end - begin;
        t->file = file;
        ck->n_tensors++;
    }
    /* no two tensors of this file may share bytes */
    if (ck->n_tensors - first > 1) {
        sorted = (const bitnet__st_tensor **)BITNET_MALLOC((ck->n_tensors - first) * sizeof *sorted);
        if (!sorted) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); goto done; }
        for (k = first; k < ck->n_tensors; k++) sorted[k - first] = &ck->tensors[k];
        qsort((void *)sorted, ck->n_tensors - first, sizeof *sorted, bitnet__st_cmp_offsets);
        for (k = 1; k < ck->n_tensors - first; k++)
            if (sorted[k - 1]->offset + sorted[k - 1]->nbytes > sorted[k]->offset) {
                rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: tensors '%s' and '%s' overlap", path, sorted[k - 1]->name, sorted[k]->name);
                goto done;
            }
    }
done:
    BITNET_FREE((void *)sorted);
    BITNET_FREE(text);
    bitnet__arena_free(&tmp);
    return rc;
}

/* Reads n bytes at byte `at` of tensor t. */
BITNET__FN int bitnet__st_read(const bitnet__checkpoint *ck, const bitnet__st_tensor *t, uint64_t at, void *dst, size_t n,
                               bitnet_error *err) {
    FILE *fp = ck->files[t->file];
    uint64_t pos = t->offset + at;
    if (at > t->nbytes || n > t->nbytes - at)
        return bitnet__fail(err, BITNET_E_ARG, "internal: read past the end of tensor '%s'", t->name);
    if (pos > (uint64_t)LONG_MAX)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: offsets past 2 GB are not supported on this platform",
                            ck->file_names[t->file]);
    if (fseek(fp, (long)pos, SEEK_SET) != 0 || fread(dst, 1, n, fp) != n)
        return bitnet__fail(err, BITNET_E_IO, "%s: cannot read tensor '%s'", ck->file_names[t->file], t->name);
    return BITNET_OK;
}

/* Value i of a float tensor's raw little-endian bytes. */
BITNET__FN float bitnet__st_float(const uint8_t *raw, int dtype, size_t i) {
    uint32_t u;
    float f;
    switch (dtype) {
    case BITNET__ST_BF16: return bitnet__bf16_to_f32((uint16_t)bitnet__rd(raw + 2 * i, 2));
    case BITNET__ST_F16: return bitnet__f16_to_f32((uint16_t)bitnet__rd(raw + 2 * i, 2));
    default:
        u = (uint32_t)bitnet__rd(raw + 4 * i, 4);
        memcpy(&f, &u, 4);
        return f;
    }
}

BITNET__FN int bitnet__st_is_float(const bitnet__st_tensor *t) {
    return t->dtype == BITNET__ST_F32 || t->dtype == BITNET__ST_F16 || t->dtype == BITNET__ST_BF16;
}

/* Joins a directory and a file name. */
BITNET__FN int bitnet__path_join(char *out, size_t size, const char *dir, const char *name, bitnet_error *err) {
    size_t n = strlen(dir);
    int w = snprintf(out, size, "%s%s%s", dir, !n || dir[n - 1] == '/' ? "" : "/", name);
    if (w < 0 || (size_t)w >= size) return bitnet__fail(err, BITNET_E_ARG, "path too long: '%s/%s'", dir, name);
    return BITNET_OK;
}

BITNET__FN int bitnet__file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Opens model.safetensors, or every shard model.safetensors.index.json names. */
BITNET__FN int bitnet__checkpoint_open(bitnet__checkpoint *ck, const char *dir, bitnet_error *err) {
    char path[4096], index[4096];
    char *text = NULL;
    size_t len, i;
    bitnet__arena tmp;
    bitnet__json root;
    const bitnet__json *map;
    bitnet_error e;
    int rc;

    memset(ck, 0, sizeof *ck);
    memset(&tmp, 0, sizeof tmp);
    if ((rc = bitnet__path_join(path, sizeof path, dir, "model.safetensors", err))) return rc;
    if (bitnet__file_exists(path)) return bitnet__st_open(ck, path, err);
    if ((rc = bitnet__path_join(index, sizeof index, dir, "model.safetensors.index.json", err))) return rc;
    if (!bitnet__file_exists(index))
        return bitnet__fail(err, BITNET_E_IO, "'%s' has neither model.safetensors nor model.safetensors.index.json", dir);
    if (!(text = bitnet__read_text_file(index, &len, &e))) return bitnet__fail(err, e.code, "%s", e.message);
    if ((rc = bitnet__json_parse(text, len, index, &tmp, &root, err))) goto done;
    map = bitnet__json_get(&root, "weight_map");
    if (!map || map->type != BITNET__JSON_OBJECT || map->len == 0) {
        rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: needs a non-empty \"weight_map\" object", index);
        goto done;
    }
    /* open each shard once, in the order the map first names it */
    for (i = 0; i < map->len; i++) {
        const bitnet__json *f = &map->items[i];
        size_t j;
        int seen = 0;
        if (f->type != BITNET__JSON_STRING || f->len == 0 || strlen(f->str) != f->len || strchr(f->str, '/') ||
            strchr(f->str, '\\') || strcmp(f->str, "..") == 0) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: weight_map['%s'] must be a file name in the same directory", index,
                              map->keys[i]);
            goto done;
        }
        for (j = 0; j < i && !seen; j++) seen = strcmp(map->items[j].str, f->str) == 0;
        if (seen) continue;
        if ((rc = bitnet__path_join(path, sizeof path, dir, f->str, err)) || (rc = bitnet__st_open(ck, path, err))) goto done;
    }
    /* the map must agree with what the shards hold */
    for (i = 0; i < map->len; i++) {
        const bitnet__st_tensor *t = bitnet__checkpoint_find(ck, map->keys[i]);
        const char *file = t ? ck->file_names[t->file] : NULL, *base = file ? strrchr(file, '/') : NULL;
        base = base ? base + 1 : file;
        if (!t || strcmp(base, map->items[i].str) != 0) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "%s: weight_map puts '%s' in %s, which does not hold it", index, map->keys[i],
                              map->items[i].str);
            goto done;
        }
    }
done:
    bitnet__arena_free(&tmp);
    BITNET_FREE(text);
    return rc;
}

/* ---- config.json ---- */

typedef struct bitnet__hf_config {
    int n_embd, n_ff, n_layer, n_head, n_head_kv, n_vocab, n_ctx, head_dim;
    float rope_theta, rms_eps;
    int act;                   /* BITNET__ACT_* */
    int tied;
    int bitlinear;             /* linear_class bitlinear: packed weights, divide by weight_scale */
    int online;                /* autobitlinear, quantization_mode online: ternarize float weights */
    int bos, eos;              /* config.json's ids, -1 when absent */
} bitnet__hf_config;

/* Reads an integer field; absent or null gives dflt (or an error when dflt < lo). */
BITNET__FN int bitnet__cfg_int(const bitnet__json *cfg, const char *key, long long dflt, long long lo, long long hi, int *out,
                               const char *path, bitnet_error *err) {
    const bitnet__json *j = bitnet__json_get(cfg, key);
    if (!j || j->type == BITNET__JSON_NULL) {
        if (dflt < lo) return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' is missing", path, key);
        *out = (int)dflt;
        return BITNET_OK;
    }
    if (j->type != BITNET__JSON_NUMBER || j->num != floor(j->num) || j->num < (double)lo || j->num > (double)hi)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' must be a whole number in [%lld, %lld]", path, key, lo, hi);
    *out = (int)j->num;
    return BITNET_OK;
}

/* A token id field: a number, or a list whose first entry counts; -1 when absent. */
BITNET__FN int bitnet__cfg_token(const bitnet__json *cfg, const char *key, int *out, const char *path, bitnet_error *err) {
    const bitnet__json *j = bitnet__json_get(cfg, key);
    if (j && j->type == BITNET__JSON_ARRAY) j = j->len ? &j->items[0] : NULL;
    *out = -1;
    if (!j || j->type == BITNET__JSON_NULL) return BITNET_OK;
    if (j->type != BITNET__JSON_NUMBER || j->num != floor(j->num) || j->num < 0 || j->num >= (1 << 24))
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' must be a token id", path, key);
    *out = (int)j->num;
    return BITNET_OK;
}

BITNET__FN int bitnet__cfg_float(const bitnet__json *j, const char *key, double dflt, float *out, const char *path,
                                 bitnet_error *err) {
    if (!j || j->type == BITNET__JSON_NULL) {
        *out = (float)dflt;
        return BITNET_OK;
    }
    if (j->type != BITNET__JSON_NUMBER || !(j->num > 0) || j->num > 1e30)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' must be a positive number", path, key);
    *out = (float)j->num;
    return BITNET_OK;
}

/* A boolean field that must be false (or absent) for us to run the model. */
BITNET__FN int bitnet__cfg_false(const bitnet__json *cfg, const char *key, const char *path, bitnet_error *err) {
    const bitnet__json *j = bitnet__json_get(cfg, key);
    if (!j || j->type == BITNET__JSON_NULL || j->type == BITNET__JSON_FALSE) return BITNET_OK;
    if (j->type == BITNET__JSON_TRUE) return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: '%s' = true is not supported", path, key);
    return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' must be true or false", path, key);
}

BITNET__FN int bitnet__cfg_bool(const bitnet__json *cfg, const char *key, int dflt, int *out, const char *path, bitnet_error *err) {
    const bitnet__json *j = bitnet__json_get(cfg, key);
    if (!j || j->type == BITNET__JSON_NULL) *out = dflt;
    else if (j->type == BITNET__JSON_TRUE || j->type == BITNET__JSON_FALSE) *out = j->type == BITNET__JSON_TRUE;
    else return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' must be true or false", path, key);
    return BITNET_OK;
}

/* A string field; absent or null gives dflt. */
BITNET__FN int bitnet__cfg_str(const bitnet__json *obj, const char *key, const char *dflt, const char **out, const char *path,
                               bitnet_error *err) {
    const bitnet__json *j = bitnet__json_get(obj, key);
    if (!j || j->type == BITNET__JSON_NULL) *out = dflt;
    else if (j->type == BITNET__JSON_STRING) *out = j->str;
    else return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' must be a string", path, key);
    return BITNET_OK;
}

/* Reads and checks config.json: anything this library would run differently from
   transformers is an error naming the field.  Defaults are BitNetConfig's. */
BITNET__FN int bitnet__hf_read_config(const bitnet__json *cfg, const char *path, bitnet__hf_config *c, bitnet_error *err) {
    const bitnet__json *j, *q, *rp;
    const char *s = NULL;
    int rc, head_dim;
    size_t i;

    if (cfg->type != BITNET__JSON_OBJECT) return bitnet__fail(err, BITNET_E_FORMAT, "%s is not a JSON object", path);
    if ((rc = bitnet__cfg_str(cfg, "model_type", NULL, &s, path, err))) return rc;
    if (s && strcmp(s, "bitnet") != 0)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: model_type '%.64s' is not supported (need 'bitnet')", path, s);
    j = bitnet__json_get(cfg, "architectures");
    if (j && j->type != BITNET__JSON_NULL) {
        int found = 0;
        if (j->type != BITNET__JSON_ARRAY) return bitnet__fail(err, BITNET_E_FORMAT, "%s: 'architectures' must be a list", path);
        for (i = 0; i < j->len; i++) found |= bitnet__json_is(&j->items[i], "BitNetForCausalLM");
        if (!found)
            return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: 'architectures' does not list BitNetForCausalLM (architecture '%.64s')",
                                path, j->len && j->items[0].type == BITNET__JSON_STRING ? j->items[0].str : "?");
    } else if (!s)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: neither model_type nor architectures says this is a BitNet model", path);

    if ((rc = bitnet__cfg_int(cfg, "hidden_size", -1, 1, 1 << 16, &c->n_embd, path, err)) ||
        (rc = bitnet__cfg_int(cfg, "intermediate_size", -1, 1, 1 << 18, &c->n_ff, path, err)) ||
        (rc = bitnet__cfg_int(cfg, "num_hidden_layers", -1, 1, 1024, &c->n_layer, path, err)) ||
        (rc = bitnet__cfg_int(cfg, "num_attention_heads", -1, 1, 1024, &c->n_head, path, err)) ||
        (rc = bitnet__cfg_int(cfg, "num_key_value_heads", c->n_head, 1, 1024, &c->n_head_kv, path, err)) ||
        (rc = bitnet__cfg_int(cfg, "vocab_size", -1, 1, 1 << 24, &c->n_vocab, path, err)) ||
        (rc = bitnet__cfg_int(cfg, "max_position_embeddings", 2048, 1, 1 << 24, &c->n_ctx, path, err)) ||
        (rc = bitnet__cfg_token(cfg, "bos_token_id", &c->bos, path, err)) ||
        (rc = bitnet__cfg_token(cfg, "eos_token_id", &c->eos, path, err)))
        return rc;
    if (c->n_embd % c->n_head)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->n_embd, c->n_head);
    c->head_dim = c->n_embd / c->n_head;
    if ((rc = bitnet__cfg_int(cfg, "head_dim", c->head_dim, 1, 1 << 16, &head_dim, path, err))) return rc;
    if (head_dim != c->head_dim)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: head_dim %d differs from hidden_size / num_attention_heads = %d", path,
                            head_dim, c->head_dim);
    if (c->head_dim % 2) return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: the head dimension %d is odd", path, c->head_dim);
    if (c->n_head % c->n_head_kv)
        return bitnet__fail(err, BITNET_E_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                            c->n_head, c->n_head_kv);
    if (c->n_embd % 64 || c->n_ff % 64)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: hidden_size %d and intermediate_size %d must be multiples of 64 (Q2_0 rows)",
                            path, c->n_embd, c->n_ff);
    if ((c->n_head_kv * c->head_dim) % 4)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: num_key_value_heads * head_dim must be a multiple of 4", path);

    if ((rc = bitnet__cfg_str(cfg, "hidden_act", "relu2", &s, path, err))) return rc;
    if (strcmp(s, "relu2") == 0) c->act = BITNET__ACT_RELU2;
    else if (strcmp(s, "silu") == 0) c->act = BITNET__ACT_SILU;
    else return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: hidden_act '%.64s' is not supported (relu2 or silu)", path, s);
    if ((rc = bitnet__cfg_false(cfg, "attention_bias", path, err)) || (rc = bitnet__cfg_false(cfg, "mlp_bias", path, err)))
        return rc;
    if ((rc = bitnet__cfg_bool(cfg, "tie_word_embeddings", 0, &c->tied, path, err))) return rc;
    if ((rc = bitnet__cfg_float(bitnet__json_get(cfg, "rms_norm_eps"), "rms_norm_eps", 1e-5, &c->rms_eps, path, err))) return rc;
    if (!(c->rms_eps < 1)) return bitnet__fail(err, BITNET_E_FORMAT, "%s: 'rms_norm_eps' must be below 1", path);

    /* RoPE: plain rotation only.  transformers 4 writes rope_theta and rope_scaling
       (null, or {"type"/"rope_type": ...}); transformers 5 writes rope_parameters
       {rope_type, rope_theta}.  Either dict may only say "default". */
    if ((rc = bitnet__cfg_float(bitnet__json_get(cfg, "rope_theta"), "rope_theta", 500000.0, &c->rope_theta, path, err))) return rc;
    for (i = 0; i < 2; i++) {
        const char *key = i ? "rope_parameters" : "rope_scaling";
        rp = bitnet__json_get(cfg, key);
        if (!rp || rp->type == BITNET__JSON_NULL) continue;
        if (rp->type != BITNET__JSON_OBJECT) return bitnet__fail(err, BITNET_E_FORMAT, "%s: '%s' must be an object", path, key);
        if ((rc = bitnet__cfg_str(rp, "rope_type", NULL, &s, path, err))) return rc;
        if (!s && (rc = bitnet__cfg_str(rp, "type", NULL, &s, path, err))) return rc;
        if (!s || strcmp(s, "default") != 0)
            return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: %s.rope_type '%.64s' is not supported (only 'default' RoPE)", path, key,
                                s ? s : "(missing)");
        if ((j = bitnet__json_get(rp, "partial_rotary_factor")) && !(j->type == BITNET__JSON_NUMBER && j->num == 1))
            return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: %s.partial_rotary_factor must be 1", path, key);
        if ((j = bitnet__json_get(rp, "rope_theta")) && (rc = bitnet__cfg_float(j, "rope_theta", 0, &c->rope_theta, path, err)))
            return rc;
    }
    if ((j = bitnet__json_get(cfg, "partial_rotary_factor")) && !(j->type == BITNET__JSON_NUMBER && j->num == 1))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: 'partial_rotary_factor' must be 1", path);

    /* quantization_config: BitNetQuantConfig's fields and defaults */
    q = bitnet__json_get(cfg, "quantization_config");
    if (!q || q->type != BITNET__JSON_OBJECT)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                            "%s: no 'quantization_config' object: not a BitNet b1.58 checkpoint (need quant_method 'bitnet')", path);
    if ((rc = bitnet__cfg_str(q, "quant_method", NULL, &s, path, err))) return rc;
    if (!s || strcmp(s, "bitnet") != 0)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "%s: quantization_config.quant_method '%.64s' is not supported (need 'bitnet')",
                            path, s ? s : "(missing)");
    if ((rc = bitnet__cfg_str(q, "linear_class", "bitlinear", &s, path, err))) return rc;
    if (strcmp(s, "bitlinear") && strcmp(s, "autobitlinear"))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                            "%s: quantization_config.linear_class '%.64s' is not supported (bitlinear or autobitlinear)", path, s);
    c->bitlinear = strcmp(s, "bitlinear") == 0;
    if ((rc = bitnet__cfg_str(q, "quantization_mode", "offline", &s, path, err))) return rc;
    if (strcmp(s, "online") && strcmp(s, "offline"))
        return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                            "%s: quantization_config.quantization_mode '%.64s' is not supported (online or offline)", path, s);
    /* transformers' BitLinear reads packed weights whatever the mode says */
    c->online = !c->bitlinear && strcmp(s, "online") == 0;
    if ((rc = bitnet__cfg_false(q, "use_rms_norm", path, err))) return rc;
    /* modules transformers keeps in full precision: only ones we do not quantize anyway */
    j = bitnet__json_get(q, "modules_to_not_convert");
    if (j && j->type != BITNET__JSON_NULL) {
        static const char *const proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        if (j->type != BITNET__JSON_ARRAY)
            return bitnet__fail(err, BITNET_E_FORMAT, "%s: quantization_config.modules_to_not_convert must be a list", path);
        for (i = 0; i < j->len; i++) {
            int l, p;
            if (j->items[i].type != BITNET__JSON_STRING)
                return bitnet__fail(err, BITNET_E_FORMAT, "%s: quantization_config.modules_to_not_convert must list strings", path);
            for (l = 0; l < c->n_layer; l++)
                for (p = 0; p < 7; p++) {
                    char name[96];
                    snprintf(name, sizeof name, "model.layers.%d.%s", l, proj[p]);
                    if (strstr(name, j->items[i].str))
                        return bitnet__fail(err, BITNET_E_UNSUPPORTED,
                                            "%s: quantization_config.modules_to_not_convert keeps '%s' in full precision; not supported",
                                            path, name);
                }
        }
    }
    return BITNET_OK;
}

/* ---- the conversion ---- */

typedef struct bitnet__converter {
    const bitnet__hf_config *cfg;
    bitnet__checkpoint ck;
    bitnet__gguf_writer w;
    const bitnet_convert_params *params;
    uint64_t total, done;      /* bytes of checkpoint tensors to read, read so far */
    bitnet_error *err;
} bitnet__converter;

BITNET__FN int bitnet__convert_progress(bitnet__converter *cv, uint64_t bytes, const char *what) {
    cv->done += bytes;
    if (cv->params && cv->params->progress &&
        cv->params->progress(cv->total ? (float)((double)cv->done / (double)cv->total) : 1.0f, what, cv->params->progress_user))
        return bitnet__fail(cv->err, BITNET_E_CANCELLED, "conversion cancelled");
    return BITNET_OK;
}

/* Finds a tensor and checks its shape (ne1 = 0: one dimension) and that it is float. */
BITNET__FN const bitnet__st_tensor *bitnet__hf_tensor(bitnet__converter *cv, const char *name, uint64_t ne0, uint64_t ne1,
                                                     int *rc) {
    const bitnet__st_tensor *t = bitnet__checkpoint_find(&cv->ck, name);
    *rc = BITNET_OK;
    if (!t) {
        *rc = bitnet__fail(cv->err, BITNET_E_FORMAT, "the checkpoint lacks the tensor '%s'", name);
        return NULL;
    }
    if (!bitnet__st_is_float(t)) {
        *rc = bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' is %s; expected F32, F16 or BF16", name, t->dtype_name);
        return NULL;
    }
    if (ne1 ? t->n_dims != 2 || t->shape[0] != ne0 || t->shape[1] != ne1 : t->n_dims != 1 || t->shape[0] != ne0) {
        if (ne1)
            *rc = bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' has shape [%llu, %llu] (%d dims), expected [%llu, %llu]", name,
                               (unsigned long long)t->shape[0], (unsigned long long)(t->n_dims > 1 ? t->shape[1] : 0), t->n_dims,
                               (unsigned long long)ne0, (unsigned long long)ne1);
        else
            *rc = bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' has %d dims (first %llu), expected [%llu]", name, t->n_dims,
                               (unsigned long long)(t->n_dims ? t->shape[0] : 0), (unsigned long long)ne0);
        return NULL;
    }
    return t;
}

/* What one BitLinear projection is stored as. */
typedef struct bitnet__hf_proj {
    const bitnet__st_tensor *weight, *scale;  /* scale: weight_scale, NULL for online */
    int packed;
} bitnet__hf_proj;

BITNET__FN int bitnet__hf_find_proj(bitnet__converter *cv, const char *base, int rows, int cols, bitnet__hf_proj *p) {
    char name[160];
    const bitnet__hf_config *c = cv->cfg;
    const bitnet__st_tensor *t;
    snprintf(name, sizeof name, "%s.weight", base);
    memset(p, 0, sizeof *p);
    t = p->weight = bitnet__checkpoint_find(&cv->ck, name);
    if (!t) return bitnet__fail(cv->err, BITNET_E_FORMAT, "the checkpoint lacks the tensor '%s'", name);
    p->packed = t->dtype == BITNET__ST_U8;
    if (!p->packed && !bitnet__st_is_float(t))
        return bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' is %s; expected packed U8 or F32/F16/BF16 weights", name, t->dtype_name);
    if (p->packed && c->online)
        return bitnet__fail(cv->err, BITNET_E_FORMAT,
                            "tensor '%s' holds packed uint8 weights but quantization_config.quantization_mode is 'online'", name);
    if (!p->packed && c->bitlinear)
        return bitnet__fail(cv->err, BITNET_E_FORMAT,
                            "tensor '%s' is %s but quantization_config.linear_class 'bitlinear' reads packed uint8 weights", name,
                            t->dtype_name);
    if (t->n_dims != 2 || t->shape[0] != (uint64_t)(p->packed ? rows / 4 : rows) || t->shape[1] != (uint64_t)cols)
        return bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' has shape [%llu, %llu] (%d dims), expected [%d, %d]%s", name,
                            (unsigned long long)(t->n_dims > 0 ? t->shape[0] : 0), (unsigned long long)(t->n_dims > 1 ? t->shape[1] : 0),
                            t->n_dims, p->packed ? rows / 4 : rows, cols, p->packed ? " (4 values per byte along the rows)" : "");
    if (c->online) return BITNET_OK;
    snprintf(name, sizeof name, "%s.weight_scale", base);
    p->scale = bitnet__checkpoint_find(&cv->ck, name);
    if (!p->scale) return bitnet__fail(cv->err, BITNET_E_FORMAT, "the checkpoint lacks the tensor '%s'", name);
    if (!bitnet__st_is_float(p->scale) || p->scale->numel != 1 || p->scale->n_dims > 1)
        return bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' must be one float (shape [1] or []), not %s with %llu values", name,
                            p->scale->dtype_name, (unsigned long long)p->scale->numel);
    return BITNET_OK;
}

/* Q2_0 row from ternary values: blocks of 64, d = 1.0, value j at bits 2(j%4) of byte j/4. */
BITNET__FN void bitnet__q2_0_row(const int8_t *t, int cols, uint8_t *out) {
    int b, j;
    for (b = 0; b < cols / BITNET__QK2_0; b++, out += BITNET__Q2_0_BYTES, t += BITNET__QK2_0) {
        out[0] = 0x00;
        out[1] = 0x3C;
        memset(out + 2, 0, 16);
        for (j = 0; j < BITNET__QK2_0; j++) out[2 + j / 4] |= (uint8_t)((t[j] + 1) << (2 * (j % 4)));
    }
}

/* Converts one projection: ternary values as Q2_0, then the multiplier as .scale. */
BITNET__FN int bitnet__convert_proj(bitnet__converter *cv, const bitnet__hf_proj *p, const char *gg_base, int rows, int cols) {
    const bitnet__hf_config *c = cv->cfg;
    const bitnet__st_tensor *t = p->weight;
    size_t row_bytes = (size_t)cols / BITNET__QK2_0 * BITNET__Q2_0_BYTES, n = (size_t)rows * (size_t)cols, i;
    int rows_per_chunk = (int)(((size_t)1 << 20) / row_bytes) + 1, r, rc;
    uint8_t *raw = (uint8_t *)BITNET_MALLOC((size_t)t->nbytes ? (size_t)t->nbytes : 1);
    uint8_t *q = (uint8_t *)BITNET_MALLOC((size_t)rows_per_chunk * row_bytes);
    int8_t *tern = (int8_t *)BITNET_MALLOC((size_t)cols);
    float mult = 1.0f, s = 1.0f;
    uint8_t le[4];
    uint32_t u;
    char what[160];

    if (!raw || !q || !tern) { rc = bitnet__fail(cv->err, BITNET_E_NOMEM, "out of memory converting '%s'", t->name); goto done; }
    if ((rc = bitnet__st_read(&cv->ck, t, 0, raw, (size_t)t->nbytes, cv->err))) goto done;
    if (p->scale) {
        uint8_t sb[4];
        float ws;
        if ((rc = bitnet__st_read(&cv->ck, p->scale, 0, sb, (size_t)p->scale->nbytes, cv->err))) goto done;
        ws = bitnet__st_float(sb, p->scale->dtype, 0);
        if (!(ws == ws) || ws == 0 || fabsf(ws) > 1e30f || (c->bitlinear && fabsf(1.0f / ws) > 1e30f)) {
            rc = bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' = %g is not a usable scale", p->scale->name, (double)ws);
            goto done;
        }
        /* bitlinear: y = x.T / weight_scale; autobitlinear: y = x.T * weight_scale */
        mult = c->bitlinear ? 1.0f / ws : ws;
    }
    if (p->packed) {
        for (i = 0; i < (size_t)t->nbytes; i++)
            if ((raw[i] & 0x03) == 3 || (raw[i] & 0x0c) == 0x0c || (raw[i] & 0x30) == 0x30 || (raw[i] & 0xc0) == 0xc0) {
                rc = bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' holds the 2-bit code 3 at byte %zu, which is no ternary value",
                                  t->name, i);
                goto done;
            }
    } else if (c->online) {
        /* WeightQuant: s = 1 / max(mean|w|, 1e-5) in float32.  The sum runs in double:
           the float32 mean is then correctly rounded (torch's own float32 sum may
           differ from it by an ulp). */
        double sum = 0;
        float mean;
        for (i = 0; i < n; i++) sum += fabs((double)bitnet__st_float(raw, t->dtype, i));
        if (!(sum <= 1e300)) {
            rc = bitnet__fail(cv->err, BITNET_E_FORMAT, "tensor '%s' holds a value that is not finite", t->name);
            goto done;
        }
        mean = (float)(sum / (double)n);
        if (mean < 1e-5f) mean = 1e-5f;
        s = 1.0f / mean;
        mult = 1.0f / s;
    }
    for (r = 0; r < rows && rc == BITNET_OK;) {
        int k, chunk = rows - r < rows_per_chunk ? rows - r : rows_per_chunk;
        for (k = 0; k < chunk; k++, r++) {
            int col;
            if (p->packed) { /* row r: byte row r mod rows/4, bits 2 (r div rows/4) */
                const uint8_t *src = raw + (size_t)(r % (rows / 4)) * (size_t)cols;
                int shift = 2 * (r / (rows / 4));
                for (col = 0; col < cols; col++) tern[col] = (int8_t)(((src[col] >> shift) & 3) - 1);
            } else {
                for (col = 0; col < cols; col++) {
                    float w = bitnet__st_float(raw, t->dtype, (size_t)r * (size_t)cols + (size_t)col);
                    if (c->online) {
                        /* round(w*s) clamped to [-1, 1], with ties to even: 1 exactly when w*s > 1/2 */
                        float v = w * s;
                        tern[col] = (int8_t)(v > 0.5f ? 1 : v < -0.5f ? -1 : 0);
                    } else if (w == 1.0f || w == -1.0f || w == 0.0f) {
                        tern[col] = (int8_t)w;
                    } else {
                        rc = bitnet__fail(cv->err, BITNET_E_FORMAT,
                                          "tensor '%s' holds %g at row %d, column %d: offline float weights must be -1, 0 or 1",
                                          t->name, (double)w, r, col);
                        goto done;
                    }
                }
            }
            bitnet__q2_0_row(tern, cols, q + (size_t)k * row_bytes);
        }
        rc = bitnet__gguf_write_data(&cv->w, q, (size_t)chunk * row_bytes, cv->err);
    }
    if (rc) goto done;
    memcpy(&u, &mult, 4);
    le[0] = (uint8_t)u; le[1] = (uint8_t)(u >> 8); le[2] = (uint8_t)(u >> 16); le[3] = (uint8_t)(u >> 24);
    if ((rc = bitnet__gguf_write_data(&cv->w, le, 4, cv->err))) goto done;
    snprintf(what, sizeof what, "%s.weight", gg_base);
    rc = bitnet__convert_progress(cv, t->nbytes, what);
done:
    BITNET_FREE(raw);
    BITNET_FREE(q);
    BITNET_FREE(tern);
    return rc;
}

/* Copies a float tensor as F32 (norms). */
BITNET__FN int bitnet__convert_f32(bitnet__converter *cv, const bitnet__st_tensor *t, const char *what) {
    uint8_t *raw = (uint8_t *)BITNET_MALLOC((size_t)t->nbytes), *out = (uint8_t *)BITNET_MALLOC((size_t)t->numel * 4);
    size_t i;
    int rc;
    if (!raw || !out) rc = bitnet__fail(cv->err, BITNET_E_NOMEM, "out of memory");
    else if (!(rc = bitnet__st_read(&cv->ck, t, 0, raw, (size_t)t->nbytes, cv->err))) {
        for (i = 0; i < (size_t)t->numel; i++) {
            float f = bitnet__st_float(raw, t->dtype, i);
            uint32_t u;
            memcpy(&u, &f, 4);
            out[4 * i] = (uint8_t)u; out[4 * i + 1] = (uint8_t)(u >> 8); out[4 * i + 2] = (uint8_t)(u >> 16); out[4 * i + 3] = (uint8_t)(u >> 24);
        }
        if (!(rc = bitnet__gguf_write_data(&cv->w, out, (size_t)t->numel * 4, cv->err))) rc = bitnet__convert_progress(cv, t->nbytes, what);
    }
    BITNET_FREE(raw);
    BITNET_FREE(out);
    return rc;
}

/* Copies a tensor's bytes unchanged, a few MB at a time (embeddings). */
BITNET__FN int bitnet__convert_copy(bitnet__converter *cv, const bitnet__st_tensor *t, const char *what) {
    size_t chunk = (size_t)4 << 20;
    uint8_t *buf = (uint8_t *)BITNET_MALLOC(chunk);
    uint64_t at;
    int rc = BITNET_OK;
    if (!buf) return bitnet__fail(cv->err, BITNET_E_NOMEM, "out of memory");
    for (at = 0; at < t->nbytes && rc == BITNET_OK; at += chunk) {
        size_t n = t->nbytes - at < chunk ? (size_t)(t->nbytes - at) : chunk;
        if (!(rc = bitnet__st_read(&cv->ck, t, at, buf, n, cv->err)) && !(rc = bitnet__gguf_write_data(&cv->w, buf, n, cv->err)))
            rc = bitnet__convert_progress(cv, n, what);
    }
    BITNET_FREE(buf);
    return rc;
}

BITNET__FN uint32_t bitnet__ggml_type_of(const bitnet__st_tensor *t) {
    return t->dtype == BITNET__ST_BF16 ? BITNET__TYPE_BF16 : t->dtype == BITNET__ST_F16 ? BITNET__TYPE_F16 : BITNET__TYPE_F32;
}

/* The seven projections of a layer: HF name, model file name, which size is rows / cols. */
static const struct { const char *hf, *gg; int rows, cols; } bitnet__hf_projs[7] = {
    {"self_attn.q_proj", "attn_q", 0, 0}, {"self_attn.k_proj", "attn_k", 1, 0}, {"self_attn.v_proj", "attn_v", 1, 0},
    {"self_attn.o_proj", "attn_output", 0, 0}, {"mlp.gate_proj", "ffn_gate", 2, 0}, {"mlp.up_proj", "ffn_up", 2, 0},
    {"mlp.down_proj", "ffn_down", 0, 2}};
/* ... and its four norms */
static const struct { const char *hf, *gg; int ff; } bitnet__hf_norms[4] = {
    {"input_layernorm", "attn_norm", 0}, {"self_attn.attn_sub_norm", "attn_sub_norm", 0},
    {"post_attention_layernorm", "ffn_norm", 0}, {"mlp.ffn_sub_norm", "ffn_sub_norm", 1}};

BITNET__FN int bitnet__hf_dim(const bitnet__hf_config *c, int which) {
    return which == 0 ? c->n_embd : which == 1 ? c->n_head_kv * c->head_dim : c->n_ff;
}

BITNET_API int bitnet_convert_hf(const char *hf_dir, const char *out_path, const bitnet_convert_params *params,
                                 bitnet_error *err) {
    bitnet__converter cv;
    bitnet__hf_config cfg;
    bitnet__vocab vocab;
    bitnet__hf_proj *projs = NULL;
    const bitnet__st_tensor *embd, *head = NULL, *onorm, **norms = NULL;
    bitnet__arena tmp;
    bitnet__json root;
    char path[4096], tpath[4096], tmp_path[4096], name[128];
    char *text = NULL;
    const char *dir_name;
    size_t len, i;
    int rc, l, k, have_vocab = 0, header_written = 0;
    uint64_t ne[2];
    bitnet_error e;

    memset(&cv, 0, sizeof cv);
    memset(&tmp, 0, sizeof tmp);
    memset(&cfg, 0, sizeof cfg);
    cv.cfg = &cfg;
    cv.params = params;
    cv.err = err;
    if (!hf_dir || !out_path) return bitnet__fail(err, BITNET_E_ARG, "bitnet_convert_hf: NULL argument");
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path) >= (int)sizeof tmp_path)
        return bitnet__fail(err, BITNET_E_ARG, "output path too long");

    /* config.json */
    if ((rc = bitnet__path_join(path, sizeof path, hf_dir, "config.json", err))) return rc;
    if (!(text = bitnet__read_text_file(path, &len, &e))) return bitnet__fail(err, e.code, "%s", e.message);
    if ((rc = bitnet__json_parse(text, len, path, &tmp, &root, err)) || (rc = bitnet__hf_read_config(&root, path, &cfg, err)))
        goto done;

    /* the weights: find and check every tensor before writing anything */
    if ((rc = bitnet__checkpoint_open(&cv.ck, hf_dir, err))) goto done;
    if (!(embd = bitnet__hf_tensor(&cv, "model.embed_tokens.weight", (uint64_t)cfg.n_vocab, (uint64_t)cfg.n_embd, &rc))) {
        const bitnet__st_tensor *t = bitnet__checkpoint_find(&cv.ck, "model.embed_tokens.weight");
        if (t && t->n_dims == 2 && t->shape[1] == (uint64_t)cfg.n_embd && bitnet__st_is_float(t))
            rc = bitnet__fail(err, BITNET_E_FORMAT, "config.json: vocab_size %d but model.embed_tokens.weight has %llu rows",
                              cfg.n_vocab, (unsigned long long)t->shape[0]);
        goto done;
    }
    if (!cfg.tied && !(head = bitnet__hf_tensor(&cv, "lm_head.weight", (uint64_t)cfg.n_vocab, (uint64_t)cfg.n_embd, &rc))) {
        if (!bitnet__checkpoint_find(&cv.ck, "lm_head.weight"))
            rc = bitnet__fail(err, BITNET_E_FORMAT, "config.json: tie_word_embeddings is false but the checkpoint has no lm_head.weight");
        goto done;
    }
    if (!(onorm = bitnet__hf_tensor(&cv, "model.norm.weight", (uint64_t)cfg.n_embd, 0, &rc))) goto done;
    projs = (bitnet__hf_proj *)bitnet__calloc((size_t)cfg.n_layer * 7, sizeof *projs);
    norms = (const bitnet__st_tensor **)bitnet__calloc((size_t)cfg.n_layer * 4, sizeof *norms);
    if (!projs || !norms) { rc = bitnet__fail(err, BITNET_E_NOMEM, "out of memory"); goto done; }
    cv.total = embd->nbytes + (head ? head->nbytes : 0) + onorm->nbytes;
    for (l = 0; l < cfg.n_layer; l++) {
        for (k = 0; k < 7; k++) {
            bitnet__hf_proj *p = &projs[l * 7 + k];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, bitnet__hf_projs[k].hf);
            if ((rc = bitnet__hf_find_proj(&cv, name, bitnet__hf_dim(&cfg, bitnet__hf_projs[k].rows),
                                           bitnet__hf_dim(&cfg, bitnet__hf_projs[k].cols), p)))
                goto done;
            cv.total += p->weight->nbytes;
        }
        for (k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, bitnet__hf_norms[k].hf);
            if (!(norms[l * 4 + k] = bitnet__hf_tensor(&cv, name, (uint64_t)(bitnet__hf_norms[k].ff ? cfg.n_ff : cfg.n_embd), 0, &rc)))
                goto done;
            cv.total += norms[l * 4 + k]->nbytes;
        }
    }
    /* weights of layers the config does not have mean the config is not this checkpoint's */
    for (i = 0; i < cv.ck.n_tensors; i++) {
        int layer;
        if (sscanf(cv.ck.tensors[i].name, "model.layers.%d.", &layer) == 1 && layer >= cfg.n_layer) {
            rc = bitnet__fail(err, BITNET_E_FORMAT, "config.json: num_hidden_layers is %d but the checkpoint has '%s'", cfg.n_layer,
                              cv.ck.tensors[i].name);
            goto done;
        }
    }

    /* the vocabulary: as many tokens as embedding rows (padding with unused ones) */
    if ((rc = bitnet__path_join(path, sizeof path, hf_dir, "tokenizer.json", err)) ||
        (rc = bitnet__path_join(tpath, sizeof tpath, hf_dir, "tokenizer_config.json", err)))
        goto done;
    if (!bitnet__file_exists(path)) { rc = bitnet__fail(err, BITNET_E_IO, "'%s' has no tokenizer.json", hf_dir); goto done; }
    if ((rc = bitnet__vocab_from_hf(path, bitnet__file_exists(tpath) ? tpath : NULL, &vocab, err))) goto done;
    have_vocab = 1;
    if (vocab.n_tokens > cfg.n_vocab) {
        rc = bitnet__fail(err, BITNET_E_FORMAT, "tokenizer.json has %d tokens but the model's vocab_size is %d", vocab.n_tokens, cfg.n_vocab);
        goto done;
    }
    if ((rc = bitnet__vocab_pad(&vocab, cfg.n_vocab, err))) goto done;
    if (vocab.bos < 0 && cfg.bos >= 0) vocab.bos = cfg.bos;
    if (vocab.eos < 0 && cfg.eos >= 0) vocab.eos = cfg.eos;

    /* header: metadata, then every tensor in the order its data follows */
    dir_name = hf_dir + strlen(hf_dir);
    while (dir_name > hf_dir && dir_name[-1] == '/') dir_name--;
    len = (size_t)(dir_name - hf_dir);
    while (dir_name > hf_dir && dir_name[-1] != '/') dir_name--;
    len -= (size_t)(dir_name - hf_dir);
    bitnet__gguf_add_str(&cv.w, "general.architecture", "bitnet", 6);
    if (len) bitnet__gguf_add_str(&cv.w, "general.name", dir_name, len);
    bitnet__gguf_add_u32(&cv.w, "bitnet.context_length", (uint32_t)cfg.n_ctx);
    bitnet__gguf_add_u32(&cv.w, "bitnet.embedding_length", (uint32_t)cfg.n_embd);
    bitnet__gguf_add_u32(&cv.w, "bitnet.block_count", (uint32_t)cfg.n_layer);
    bitnet__gguf_add_u32(&cv.w, "bitnet.feed_forward_length", (uint32_t)cfg.n_ff);
    bitnet__gguf_add_u32(&cv.w, "bitnet.attention.head_count", (uint32_t)cfg.n_head);
    bitnet__gguf_add_u32(&cv.w, "bitnet.attention.head_count_kv", (uint32_t)cfg.n_head_kv);
    bitnet__gguf_add_u32(&cv.w, "bitnet.rope.dimension_count", (uint32_t)cfg.head_dim);
    bitnet__gguf_add_f32(&cv.w, "bitnet.rope.freq_base", cfg.rope_theta);
    bitnet__gguf_add_f32(&cv.w, "bitnet.attention.layer_norm_rms_epsilon", cfg.rms_eps);
    bitnet__gguf_add_u32(&cv.w, "bitnet.vocab_size", (uint32_t)cfg.n_vocab);
    bitnet__gguf_add_str(&cv.w, "bitnet.hidden_activation", cfg.act == BITNET__ACT_RELU2 ? "relu2" : "silu",
                         cfg.act == BITNET__ACT_RELU2 ? 5 : 4);
    bitnet__vocab_write_gguf(&cv.w, &vocab);
    ne[0] = (uint64_t)cfg.n_embd;
    ne[1] = (uint64_t)cfg.n_vocab;
    bitnet__gguf_add_tensor(&cv.w, "token_embd.weight", bitnet__ggml_type_of(embd), 2, ne);
    if (head) bitnet__gguf_add_tensor(&cv.w, "output.weight", bitnet__ggml_type_of(head), 2, ne);
    bitnet__gguf_add_tensor(&cv.w, "output_norm.weight", BITNET__TYPE_F32, 1, ne);
    for (l = 0; l < cfg.n_layer; l++) {
        for (k = 0; k < 4; k++) {
            ne[0] = (uint64_t)(bitnet__hf_norms[k].ff ? cfg.n_ff : cfg.n_embd);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, bitnet__hf_norms[k].gg);
            bitnet__gguf_add_tensor(&cv.w, name, BITNET__TYPE_F32, 1, ne);
        }
        for (k = 0; k < 7; k++) {
            ne[0] = (uint64_t)bitnet__hf_dim(&cfg, bitnet__hf_projs[k].cols);
            ne[1] = (uint64_t)bitnet__hf_dim(&cfg, bitnet__hf_projs[k].rows);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, bitnet__hf_projs[k].gg);
            bitnet__gguf_add_tensor(&cv.w, name, BITNET__TYPE_Q2_0, 2, ne);
            ne[0] = 1;
            snprintf(name, sizeof name, "blk.%d.%s.scale", l, bitnet__hf_projs[k].gg);
            bitnet__gguf_add_tensor(&cv.w, name, BITNET__TYPE_F32, 1, ne);
        }
    }
    if ((rc = bitnet__gguf_write_header(&cv.w, tmp_path, err))) goto done;
    header_written = 1;

    /* data, in the same order */
    if ((rc = bitnet__convert_progress(&cv, 0, "token_embd.weight")) || (rc = bitnet__convert_copy(&cv, embd, "token_embd.weight")) ||
        (head && (rc = bitnet__convert_copy(&cv, head, "output.weight"))) ||
        (rc = bitnet__convert_f32(&cv, onorm, "output_norm.weight")))
        goto done;
    for (l = 0; l < cfg.n_layer; l++) {
        for (k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, bitnet__hf_norms[k].gg);
            if ((rc = bitnet__convert_f32(&cv, norms[l * 4 + k], name))) goto done;
        }
        for (k = 0; k < 7; k++) {
            snprintf(name, sizeof name, "blk.%d.%s", l, bitnet__hf_projs[k].gg);
            if ((rc = bitnet__convert_proj(&cv, &projs[l * 7 + k], name, bitnet__hf_dim(&cfg, bitnet__hf_projs[k].rows),
                                           bitnet__hf_dim(&cfg, bitnet__hf_projs[k].cols))))
                goto done;
        }
    }
    if ((rc = bitnet__gguf_finish(&cv.w, tmp_path, err))) goto done;
    if (rename(tmp_path, out_path) != 0) {
        rc = bitnet__fail(err, BITNET_E_IO, "cannot rename '%s' to '%s': %s", tmp_path, out_path, strerror(errno));
        goto done;
    }
    header_written = 0;
    bitnet__ok(err);
done:
    bitnet__gguf_writer_free(&cv.w);
    if (header_written) remove(tmp_path);
    if (have_vocab) bitnet__vocab_free(&vocab);
    bitnet__checkpoint_close(&cv.ck);
    BITNET_FREE(projs);
    BITNET_FREE((void *)norms);
    bitnet__arena_free(&tmp);
    BITNET_FREE(text);
    return rc;
}

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
        /* tokenizer_config.json next to tokenizer.json gives BOS/EOS and the chat template */
        char config[4096];
        const char *slash = strrchr(tokenizer_json, '/');
        FILE *probe;
        int dir_len = slash ? (int)(slash - tokenizer_json + 1) : 0;
        snprintf(config, sizeof config, "%.*stokenizer_config.json", dir_len, tokenizer_json);
        probe = fopen(config, "rb");
        if (probe) fclose(probe);
        if ((rc = bitnet__vocab_from_hf(tokenizer_json, probe ? config : NULL, &vocab, err))) return rc;
        if (!hp.n_vocab) hp.n_vocab = vocab.n_tokens;
        if (vocab.n_tokens > hp.n_vocab) {
            bitnet__vocab_free(&vocab);
            return bitnet__fail(err, BITNET_E_ARG, "the tokenizer has %d tokens, more than n_vocab %d", vocab.n_tokens, hp.n_vocab);
        }
        if ((rc = bitnet__vocab_pad(&vocab, hp.n_vocab, err))) {
            bitnet__vocab_free(&vocab);
            return rc;
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
    if (m->tok_embd_type != m->output_type)
        return bitnet__fail(err, BITNET_E_UNSUPPORTED, "CUDA backend: the embedding and LM head must have one type (file has %s / %s)",
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
    shape.embd_type = m->tok_embd_type == BITNET__TYPE_F16   ? BITNET__TABLE_F16
                      : m->tok_embd_type == BITNET__TYPE_F32 ? BITNET__TABLE_F32
                                                             : BITNET__TABLE_BF16;
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

/* ctx->cuda of a CUDA context.  The context struct's host fields keep their
   meaning (n_past, n_batch, n_logits, logits); the logits stay on the device
   until bitnet_logits asks for them. */
typedef struct bitnet__cuda_glue {
    void *dev;              /* bitnet_cuda.cu's context */
    int logits_on_host;     /* ctx->logits holds the last eval's logits */
} bitnet__cuda_glue;

BITNET__FN bitnet_context *bitnet__cuda_context_new(bitnet_model *model, const bitnet_context_params *p, bitnet_error *err) {
    const bitnet_hparams *hp = &model->hp;
    bitnet_context *ctx;
    bitnet__cuda_glue *g;
    int rc;
    if (p->cuda_device < 0) {
        if (p->backend == BITNET_BACKEND_CUDA) bitnet__fail(err, BITNET_E_ARG, "cuda_device %d is negative", p->cuda_device);
        return NULL;
    }
    if (bitnet__cuda_device_count() <= p->cuda_device) {
        if (p->backend == BITNET_BACKEND_CUDA)
            bitnet__fail(err, bitnet__cuda_device_count() ? BITNET_E_ARG : BITNET_E_BACKEND,
                         "CUDA backend: no CUDA device %d (%d found)", p->cuda_device, bitnet__cuda_device_count());
        return NULL;
    }
    ctx = (bitnet_context *)bitnet__calloc(1, sizeof *ctx);
    g = (bitnet__cuda_glue *)bitnet__calloc(1, sizeof *g);
    if (ctx) ctx->logits = (float *)bitnet__calloc((size_t)hp->n_vocab, sizeof(float));
    if (!ctx || !g || !ctx->logits) {
        if (ctx) BITNET_FREE(ctx->logits);
        BITNET_FREE(ctx);
        BITNET_FREE(g);
        bitnet__fail(err, BITNET_E_NOMEM, "out of memory");
        return NULL;
    }
    ctx->model = model;
    ctx->backend = BITNET_BACKEND_CUDA;
    ctx->n_ctx = p->n_ctx ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    ctx->n_threads = 1;
    ctx->logits_cap = (size_t)hp->n_vocab;
    ctx->cuda = g;
#ifndef BITNET_NO_THREADS
    pthread_mutex_lock(&model->cuda_lock);
#endif
    rc = bitnet__cuda_model_get(model, p->cuda_device, err);
    if (rc == BITNET_OK) rc = bitnet__cuda_context_create(model->cuda, ctx->n_ctx, p->lm_head_int8, &g->dev, err);
#ifndef BITNET_NO_THREADS
    pthread_mutex_unlock(&model->cuda_lock);
#endif
    if (rc != BITNET_OK) {
        bitnet_context_free(ctx);
        return NULL;
    }
    bitnet__ok(err);
    return ctx;
}

BITNET__FN void bitnet__cuda_context_release(bitnet_context *ctx) {
    bitnet__cuda_glue *g = (bitnet__cuda_glue *)ctx->cuda;
    if (!g) return;
    bitnet__cuda_context_free(g->dev);
    BITNET_FREE(g);
    ctx->cuda = NULL;
}

/* A prompt runs as one decode step per token (the graph), without waiting for the
   GPU in between unless every token's logits are wanted. */
BITNET__FN int bitnet__cuda_eval(bitnet_context *ctx, const bitnet_token *tokens, int n_tokens, int all_logits, bitnet_error *err) {
    bitnet__cuda_glue *g = (bitnet__cuda_glue *)ctx->cuda;
    const size_t n_vocab = (size_t)ctx->model->hp.n_vocab;
    int i, rc;
    if (all_logits && (size_t)n_tokens * n_vocab > ctx->logits_cap) {
        float *l = (size_t)n_tokens > SIZE_MAX / sizeof(float) / n_vocab
                       ? NULL
                       : (float *)BITNET_REALLOC(ctx->logits, (size_t)n_tokens * n_vocab * sizeof(float));
        if (!l) return bitnet__fail(err, BITNET_E_NOMEM, "out of memory for the logits of %d tokens", n_tokens);
        ctx->logits = l;
        ctx->logits_cap = (size_t)n_tokens * n_vocab;
    }
    g->logits_on_host = 0;
    ctx->n_logits = 0;
    for (i = 0; i < n_tokens; i++) {
        /* the last step waits for its argmax: the eval returns when the GPU is done,
           so errors surface here and callers' timings are real */
        bitnet_token argmax;
        rc = bitnet__cuda_decode(g->dev, tokens[i], ctx->n_past + i, i == n_tokens - 1 ? &argmax : NULL, err);
        if (rc == BITNET_OK && all_logits) rc = bitnet__cuda_get_logits(g->dev, ctx->logits + (size_t)i * n_vocab, err);
        if (rc != BITNET_OK) return rc;
    }
    ctx->n_past += n_tokens;
    ctx->n_batch = n_tokens;
    ctx->n_logits = all_logits ? n_tokens : 1;
    g->logits_on_host = all_logits;
    return BITNET_OK;
}

BITNET__FN int bitnet__cuda_logits_to_host(bitnet_context *ctx) {
    bitnet__cuda_glue *g = (bitnet__cuda_glue *)ctx->cuda;
    if (g->logits_on_host) return BITNET_OK;
    if (bitnet__cuda_get_logits(g->dev, ctx->logits, NULL) != BITNET_OK) return BITNET_E_BACKEND;
    g->logits_on_host = 1;
    return BITNET_OK;
}

/* Greedy sampling without a repetition penalty is the argmax the decode step
   computes on the GPU: only the token id crosses to the host.  Otherwise the GPU
   applies the penalty and returns the best BITNET__CUDA_CANDIDATES logits and the
   log-sum-exp, from which bitnet__sampler_finish usually decides; when it cannot
   (top-k wider than the candidates, a top-p cut beyond them, infinite logits) or
   the penalty lists too many tokens, the host samples from the full logits (one
   4 n_vocab-byte copy), with the same draw. */
BITNET__FN int bitnet__cuda_eval_sample(bitnet_context *ctx, bitnet_token token, bitnet_sampler *sampler, bitnet_token *next,
                                        bitnet_error *err) {
    bitnet__cuda_glue *g = (bitnet__cuda_glue *)ctx->cuda;
    const int n_vocab = ctx->model->hp.n_vocab;
    bitnet_token pen[BITNET__CUDA_MAX_PENALTY], ids[BITNET__CUDA_CANDIDATES];
    float cand[BITNET__CUDA_CANDIDATES];
    double lse;
    int rc, n_pen, n_cand, done = 0;
    if (token < 0 || token >= n_vocab)
        return bitnet__fail(err, BITNET_E_ARG, "bitnet_eval_sample: token %d is outside the vocabulary of %d", (int)token, n_vocab);
    if (ctx->n_past >= ctx->n_ctx)
        return bitnet__fail(err, BITNET_E_CONTEXT_FULL, "1 token does not fit in the context: %d of %d positions are used", ctx->n_past,
                            ctx->n_ctx);
    ctx->n_logits = 0;
    n_pen = bitnet__sampler_penalty_tokens(sampler, pen, BITNET__CUDA_MAX_PENALTY);
    if (sampler->p.temperature <= 0 && n_pen == 0) {
        if ((rc = bitnet__cuda_decode(g->dev, token, ctx->n_past, next, err)) != BITNET_OK) return rc;
        g->logits_on_host = 0;
        /* what bitnet_sampler_sample does for a greedy pick */
        sampler->has_pending_u = 0;
        bitnet__sampler_record(sampler, *next);
    } else {
        if ((rc = bitnet__cuda_decode(g->dev, token, ctx->n_past, NULL, err)) != BITNET_OK) return rc;
        g->logits_on_host = 0;
        if (n_pen <= BITNET__CUDA_MAX_PENALTY) {
            rc = bitnet__cuda_candidates(g->dev, pen, n_pen, sampler->p.repeat_penalty,
                                         sampler->p.temperature > 0 ? 1.0f / sampler->p.temperature : 1.0f, &n_cand, ids, cand, &lse, err);
            if (rc != BITNET_OK) return rc;
            done = bitnet__sampler_finish(sampler, ids, cand, n_cand, n_vocab, lse, next);
        }
        if (!done) {
            if ((rc = bitnet__cuda_get_logits(g->dev, ctx->logits, err)) != BITNET_OK) return rc;
            g->logits_on_host = 1;
            *next = bitnet_sampler_sample(sampler, ctx->logits, n_vocab);
        }
    }
    ctx->n_past++;
    ctx->n_batch = 1;
    ctx->n_logits = 1;
    bitnet__ok(err);
    return BITNET_OK;
}

#else
/* Without BITNET_CUDA no context ever has ctx->cuda set, so only the first of
   these is ever reached. */
BITNET__FN bitnet_context *bitnet__cuda_context_new(bitnet_model *model, const bitnet_context_params *p, bitnet_error *err) {
    (void)model;
    if (p->backend == BITNET_BACKEND_CUDA)
        bitnet__fail(err, BITNET_E_UNSUPPORTED, "the CUDA backend is not compiled in (define BITNET_CUDA and link bitnet_cuda.cu)");
    return NULL;
}
BITNET__FN void bitnet__cuda_context_release(bitnet_context *ctx) { (void)ctx; }
BITNET__FN int bitnet__cuda_eval(bitnet_context *ctx, const bitnet_token *tokens, int n_tokens, int all_logits, bitnet_error *err) {
    (void)ctx; (void)tokens; (void)n_tokens; (void)all_logits;
    return bitnet__fail(err, BITNET_E_UNSUPPORTED, "the CUDA backend is not compiled in");
}
BITNET__FN int bitnet__cuda_logits_to_host(bitnet_context *ctx) { (void)ctx; return BITNET_E_UNSUPPORTED; }
BITNET__FN int bitnet__cuda_eval_sample(bitnet_context *ctx, bitnet_token token, bitnet_sampler *sampler, bitnet_token *next,
                                        bitnet_error *err) {
    (void)ctx; (void)token; (void)sampler; (void)next;
    return bitnet__fail(err, BITNET_E_UNSUPPORTED, "the CUDA backend is not compiled in");
}
BITNET__FN void bitnet__cuda_model_release(bitnet_model *model) { (void)model; }
#endif

#endif /* BITNET_IMPLEMENTATION_DONE */
#endif /* BITNET_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the bitnet.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
------------------------------------------------------------------------------
*/
