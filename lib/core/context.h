/* The per-thread context: scratch sizes, the arena, thread limits (lib/core/context.c).
 * Private to lib/. */
#ifndef CLIPN_CORE_CONTEXT_H
#define CLIPN_CORE_CONTEXT_H

#include "model/model.h"
#include <stddef.h>


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
    int *class_rows;                           /* [max_batch] image i's class-token row */
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
    int text_rows_mapped;          /* embedding rows read from the mapping since its pages
                                      were last handed back (lib/nn/text_tower.c) */
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

#endif
