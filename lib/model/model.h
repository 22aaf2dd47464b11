/* The loaded model: towers, blocks and linears named after the checkpoint's tensors
 * (lib/model/load.c, lib/model/config.c). Private to lib/. */
#ifndef CLIPN_MODEL_MODEL_H
#define CLIPN_MODEL_MODEL_H

#include "clipn.h"
#include "../kernels/kernels.h"
#include <stddef.h>
#include <stdint.h>

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
    /* [V, W]: f32 (token_embedding), or int8 rows with one scale per group of
       token_embedding_group columns (row r, column c: q[r * W + c] * scale[r * groups +
       c / group], groups = ceil(W / group)): read with clipn_token_embedding_row */
    const float *token_embedding;              /* NULL when int8 */
    const int8_t *token_embedding_q;           /* NULL when f32 */
    const float *token_embedding_scale;        /* [V, groups] */
    int token_embedding_group;
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

/* Row `id` of a text tower's token embedding as f32 into dst[0, W): the stored values, or
 * q * scale (one float product per element) for int8 embeddings. */
void clipn_token_embedding_row(const clipn_text_tower *t, int id, int W, float *dst);

/* Hand back the resident pages of [p, p + bytes) when it lies in the model's mapping (the
 * page-aligned inside; a no-op for model-owned copies). Only advice: the pages refault from
 * the page cache, with the same bytes, when read again (the mapping is private and
 * read-only), so any thread may call it on a shared model. For what the load reads once and
 * encoding never again (converted, dequantized or transposed sources), and for token
 * embedding rows: a fault on a file mapping maps the page cache's whole folio around the
 * row (64 KB and more, not its 2 KB), so lookups over a varied prompt set would otherwise
 * keep most of a 96.5 MB table resident. */
void clipn_model_drop_mapped(const clipn_model *m, const void *p, size_t bytes);

/* Track a heap buffer for release in clipn_model_free. Returns 0 on success. */
int clipn_model_own(clipn_model *m, void *p);

/* lib/model/config.c: parse and range-check a model's config JSON text into *c; messages
 * start with `path`. */
clipn_status clipn_config_parse(const char *path, const char *text, clipn_config *c,
                                clipn_error *err);

/* lib/model/int8_layers.c: how an INT8 model runs linear `l`: the scheme (projections
 * fp32, the rest W8A16) or what CLIPN_INT8_LAYERS says (for measuring). */
enum {
    CLIPN_INT8_LAYER_W8A8 = 0,
    CLIPN_INT8_LAYER_W8 = 1,
    CLIPN_INT8_LAYER_FP32 = 2,
    CLIPN_INT8_LAYER_W8A16 = 3
};
int clipn_int8_layer_mode(const clipn_model *m, const clipn_linear *l);

#endif
