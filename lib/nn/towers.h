/* The image and text towers' pieces the context and the public calls use
 * (lib/nn/vision_tower.c, lib/nn/vision_local.c, lib/nn/text_tower.c). Private to lib/. */
#ifndef CLIPN_NN_TOWERS_H
#define CLIPN_NN_TOWERS_H

#include "core/context.h"
#include <stdint.h>

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

#endif
