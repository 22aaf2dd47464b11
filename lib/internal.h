/* Internal structures shared by lib/ modules. Not installed. */
#ifndef CLIPN_INTERNAL_H
#define CLIPN_INTERNAL_H

#include "clipn.h"
#include "../kernels/kernels.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors (lib/core/error.c) */

/* Sets err (if not NULL) and returns code, so callers can `return clipn_fail(...)`. */
clipn_status clipn_fail(clipn_error *err, clipn_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void clipn_clear_error(clipn_error *err);

/* ---- JSON (lib/core/json.c): cJSON_ParseWithLengthOpts under a process-wide lock, because
   every cJSON parse writes cJSON's global error position. Use it for all parsing. */
struct cJSON;
struct cJSON *clipn_json_parse(const char *text, size_t len, const char **end, int require_nul);

/* Strict parsing of JSON a file supplies, with its cost bounded before cJSON allocates:
 * nesting depth, and the values cJSON would build (counted in one pass over the text) at
 * most max_values + values_per_root_member * (members of the root object), with at most
 * max_root_members of those (0 = any). Then: no NUL byte, nothing but whitespace after the
 * value, and no key twice in any object. `what` starts each message ("x.safetensors:
 * header"). text need not be NUL-terminated. */
typedef struct clipn_json_limits {
    int max_depth;
    size_t max_values, values_per_root_member, max_root_members;
} clipn_json_limits;
clipn_status clipn_json_parse_strict(const char *text, size_t len, const clipn_json_limits *lim,
                                     const char *what, struct cJSON **out, clipn_error *err);

/* ---- files (lib/core/file_io.c) */

/* Opens `path` for reading without blocking (O_NONBLOCK | O_CLOEXEC), and refuses it unless
 * fstat says it is a regular file of at most max_bytes (CLIPN_E_IO / CLIPN_E_LIMIT). */
clipn_status clipn_open_input(const char *path, uint64_t max_bytes, int *fd, uint64_t *size,
                              clipn_error *err);
/* The whole file (checked as above) in a malloc'd buffer with a NUL after the last byte. */
clipn_status clipn_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                             clipn_error *err);

/* An output written to a fresh temporary file in the target's folder and renamed over the
 * target by clipn_output_commit only when every write, the fsync and the close succeeded.
 * On failure (or clipn_output_abort) the temporary file is removed and the target is
 * untouched. A target that exists and is not a regular file is refused; a symlink to one
 * is followed. Writes are checked; the first error is kept and reported by commit. */
typedef struct clipn_output {
    const char *path;                          /* as given, for messages */
    char *target, *tmp;
    int fd;
    int error;                                 /* errno of the first failed write */
} clipn_output;
clipn_status clipn_output_begin(clipn_output *o, const char *path, clipn_error *err);
void clipn_output_write(clipn_output *o, const void *data, size_t n);
clipn_status clipn_output_commit(clipn_output *o, clipn_error *err);
void clipn_output_abort(clipn_output *o);

/* ---- model (lib/model/load.c) */

/* One pre-norm residual block; names follow the checkpoint
 * (`transformer.resblocks.N.attn.in_proj_weight` -> attn_in_proj). */
typedef struct clipn_block {
    const float *ln_1_weight, *ln_1_bias;      /* [W] */
    clipn_linear attn_in_proj;                 /* [3W, W] + [3W] */
    clipn_linear attn_out_proj;                /* [W, W] + [W] */
    const float *ln_2_weight, *ln_2_bias;      /* [W] */
    clipn_linear mlp_c_fc;                     /* [M, W] + [M] */
    clipn_linear mlp_c_proj;                   /* [W, M] + [W] */
} clipn_block;

typedef struct clipn_transformer {
    int width, layers, heads, mlp_width;
    clipn_block *resblocks;                    /* [layers] */
} clipn_transformer;

typedef struct clipn_visual {
    const float *conv1_weight;                 /* [W, 3, P, P] */
    clipn_linear patch_embed;                  /* conv1 viewed as [W, 3*P*P], no bias */
    const float *class_embedding;              /* [W] */
    const float *positional_embedding;         /* [(S/P)^2 + 1, W] */
    const float *ln_pre_weight, *ln_pre_bias;
    clipn_transformer transformer;
    const float *ln_post_weight, *ln_post_bias;
    const float *proj;                         /* [W, E] as stored */
    clipn_linear proj_t;                       /* proj transposed to [E, W] for the kernels */
} clipn_visual;

typedef struct clipn_text_tower {
    const float *token_embedding;              /* [V, W] */
    const float *positional_embedding;         /* [C, W] */
    const float *prompt_no;                    /* [16, C, W] or NULL (no tower only) */
    const float *prompt_no_mean;               /* [C, W] mean over prompts, or NULL */
    clipn_transformer transformer;
    const float *ln_final_weight, *ln_final_bias;
    const float *text_projection;              /* [W, E] as stored */
    clipn_linear text_projection_t;            /* transposed to [E, W] */
} clipn_text_tower;

struct clipn_model {
    clipn_config config;
    clipn_visual visual;
    clipn_text_tower text;                     /* token_embedding, transformer, ln_final ... */
    clipn_text_tower text_no;                  /* *_no tensors; zeroed when !has_no_tower */

    /* BPE merges as embedded in the file: lines "a b\n", UTF-8, no header line. */
    const char *bpe_merges;
    size_t bpe_merges_len;

    clipn_precision precision;                 /* what the linears run at */
    char precision_note[160];                  /* "" or why that is not what was asked */

    /* storage */
    void *map;                                 /* mmap of the file */
    size_t map_len;
    uint64_t file_dev, file_ino;               /* the file it was loaded from (st_dev/st_ino),
                                                  so that no writer replaces it */
    void **owned;                              /* buffers the model allocated (converted
                                                  tensors, transposes, packed weights) */
    size_t n_owned, cap_owned;
};

/* Track a heap buffer for release in clipn_model_free. Returns 0 on success. */
int clipn_model_own(clipn_model *m, void *p);

/* lib/model/config.c: parse and range-check a model's config JSON text into *c; messages
 * start with `path`. */
clipn_status clipn_config_parse(const char *path, const char *text, clipn_config *c,
                                clipn_error *err);

/* ---- context (lib/core/context.c), towers (lib/nn/vision_tower.c, lib/nn/text_tower.c) */

/* Floats each scratch buffer holds. */
typedef struct clipn_scratch_sizes {
    size_t x;                                  /* residual stream (and h, same size) */
    size_t big;                                /* qkv / mlp hidden / im2col patches */
    size_t attn;                               /* clipn_attention scratch */
    size_t pooled;                             /* one row per sequence */
} clipn_scratch_sizes;

struct clipn_ctx {
    const clipn_model *model;
    int max_batch;
    int threads;
    clipn_tokenizer *tokenizer;                /* lazily created for heads building */
    /* scratch, allocated once in clipn_ctx_new, sized for max_batch (one block; grown only
       by clipn_encode_image_sized for inputs larger than the native size) */
    float *scratch;
    size_t scratch_floats;
    clipn_scratch_sizes cap;
    float *x, *h, *big, *attn, *pooled;        /* views into scratch */
    int *seq_len;                              /* [max_batch] tokens per sequence */
    /* interpolated position table for clipn_encode_image_sized, cached per size */
    float *pos_sized;
    size_t pos_sized_floats;
    int pos_sized_size;                        /* image size it was computed for, 0 = none */
    /* GL-MCM local features (lib/nn/vision_local.c), allocated on first use: the last
       image block's input and value rows of the patches */
    float *local_x;
    size_t local_x_floats;
    /* the text tower's row plan for up to text_cap prompts (lib/nn/text_tower.c) */
    void *text_prompts;
    int *text_paths, *text_ends;
    int text_cap;
};

/* Every public call that runs a context's work brackets it with these: the calling
   thread's kernels use at most ctx->threads threads in between (0: the process-wide count). */
int clipn_ctx_enter(const clipn_ctx *ctx);
void clipn_ctx_leave(int saved);
/* Per-thread scratch for the calls without a context (clipn_score*): at least `bytes`,
   64-byte aligned, kept for the thread's later calls (grown when asked for more, freed when
   the thread exits). NULL when out of memory. */
void *clipn_thread_scratch(size_t bytes);

size_t clipn_mul_size(size_t a, size_t b, int *ok);
/* Grow the scratch to at least `need` (keeps nothing). */
clipn_status clipn_ctx_reserve(clipn_ctx *ctx, const clipn_scratch_sizes *need,
                               clipn_error *err);
/* Raise `need` to what n images of side `size` take. 0 on size_t overflow. */
int clipn_vision_need(const clipn_model *m, size_t n, int size, clipn_scratch_sizes *need);
/* PyTorch F.interpolate(mode='bicubic', align_corners=False) of a [g_in, g_in, W] grid to
 * [g_out, g_out, W] (a = -0.75, border clamping, no antialias). */
void clipn_bicubic_grid(const float *in, int g_in, float *out, int g_out, int W);
/* Image tower pieces (lib/nn/vision_tower.c): patch embedding + class token + positions +
 * ln_pre of n images into ctx->x (returns tokens per image, T; sets ctx->seq_len), and
 * ln_post of the class rows @ proj -> out [n, E]. */
size_t clipn_vision_embed(clipn_ctx *ctx, const float *pixels, int n, int size, const float *pos);
void clipn_vision_pool(clipn_ctx *ctx, int n, size_t T, float *out);
/* Frees the GL-MCM scratch of a ctx (lib/nn/vision_local.c). */
void clipn_vision_local_free(clipn_ctx *ctx);
/* Raise `need` to what n prompts over `rows` distinct rows take in the text towers. 0 on
 * size_t overflow. */
int clipn_text_need(const clipn_model *m, size_t n, size_t rows, clipn_scratch_sizes *need);
/* Room for the row plan of n prompts in ctx (grown, never shrunk). */
clipn_status clipn_text_plan_reserve(clipn_ctx *ctx, int n, clipn_error *err);
/* Text pooling position: the first index of the largest id in ids[0, context_length). */
int clipn_text_pool_index(const int32_t *ids, int context_length);
/* n prompts through the yes (no_tower = 0) or no tower as ONE batch, whatever the ctx's
 * max_batch (the scratch grows to fit, once): rows of common token prefixes are computed
 * once when share != 0 (share = 0: every prompt alone, for tests and benchmarks). */
clipn_status clipn_text_encode_batch(clipn_ctx *ctx, int no_tower, const int32_t *ids, int n,
                                     int share, float *out, clipn_error *err);

/* ---- GL-MCM and NegLabel (lib/ood/glmcm.c, lib/ood/neglabel.c) */
/* max over patches of max_c softmax_c(cos(local_p, yes_c) / T), T = 1. scratch: n_local *
 * (dim + n_classes) floats (the caller's; clipn_score_image takes its thread's). */
clipn_status clipn_glmcm_local(const clipn_heads *heads, const float *local, int n_local,
                               float *scratch, double *out, clipn_error *err);
/* The grouped NegLabel score from the ID logits (100 cos, max max_logit) and the feature
 * (scale = 100 / |feature|). scratch: n_neg + neg_groups doubles. */
clipn_status clipn_neglabel_score(const clipn_heads *heads, const float *feature,
                                  const double *logits, double max_logit, double scale,
                                  double *scratch, double *out, clipn_error *err);
void clipn_heads_free_negatives(clipn_heads *heads);

/* ---- tokenizer internals, for tests and the CLI (lib/text/tokenizer.c) */
/* Merges the tokenizer reads (the official merges[1:49152-256-2+1]); more are ignored, as
 * the official code does with the vocab file, so a model file with more is refused. */
#define CLIPN_TOK_MAX_MERGES (49152 - 256 - 2)
clipn_status clipn_tokenizer_from_merges(const char *merges, size_t len,
                                         clipn_tokenizer **out, clipn_error *err);

/* the shared residual block and layer loop */
#include "nn/transformer.h"

#endif
