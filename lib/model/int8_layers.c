/* Which INT8 scheme each linear of an INT8 model runs (docs/performance.md, "INT8"):
 * visual.proj and text_projection fp32 (their error goes straight into the features; 0.3%
 * of the multiply-adds), every other linear W8A16 (int8 weights, int16 activations: with
 * int8 activations CTW/ATD moved by up to 0.05 on the ViT-B-16 parity model and its int8
 * file; the W8A16 kernel is 6-10% slower than the W8A8 one).
 *
 * CLIPN_INT8_LAYERS, for measuring where the drift against fp32 comes from: a comma list
 * of SELECTOR=MODE applied in order (the last match wins; unmatched layers: the scheme):
 *
 *     SELECTOR  tower[.kind[.first[-last]]], each part may be *
 *               tower: image, text, no_text; kind: patch_embed, in_proj, out_proj, c_fc,
 *               c_proj, proj (visual.proj, text_projection); first-last: block numbers
 *     MODE      w8a16, w8a8, w8 (fp32 GEMM on the weights rounded to the INT8 grid: the
 *               weight error alone), fp32
 *
 * e.g. CLIPN_INT8_LAYERS='*=fp32,image=w8a16' runs only the image tower at INT8. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const TOWERS[3] = {"image", "text", "no_text"};
static const char *const KINDS[6] = {"patch_embed", "in_proj", "out_proj", "c_fc", "c_proj",
                                     "proj"};

/* tower, kind (indices into the tables above) and block (-1: not in a block) of l */
static int locate(const clipn_model *m, const clipn_linear *l, int *tower, int *kind, int *block)
{
    *block = -1;
    if (l == &m->visual.patch_embed)
        return *tower = 0, *kind = 0, 0;
    if (l == &m->visual.proj_t)
        return *tower = 0, *kind = 5, 0;
    const clipn_transformer *t[3] = {&m->visual.transformer, &m->text.transformer,
                                     &m->text_no.transformer};
    for (int k = 1; k < 3; k++)
        if (l == &(k == 1 ? &m->text : &m->text_no)->text_projection_t)
            return *tower = k, *kind = 5, 0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; t[k]->resblocks && i < t[k]->layers; i++) {
            const clipn_block *b = &t[k]->resblocks[i];
            const clipn_linear *ls[4] = {&b->attn_in_proj, &b->attn_out_proj, &b->mlp_c_fc,
                                         &b->mlp_c_proj};
            for (int j = 0; j < 4; j++)
                if (l == ls[j])
                    return *tower = k, *kind = 1 + j, *block = i, 0;
        }
    return -1;
}

/* does the selector s[0, n) name the layer? */
static int matches(const char *s, size_t n, int tower, int kind, int block)
{
    char buf[64];
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *parts[3] = {buf, NULL, NULL};
    for (int i = 0; i < 2 && parts[i]; i++) {
        char *dot = strchr(parts[i], '.');
        if (dot)
            *dot = '\0', parts[i + 1] = dot + 1;
    }
    if (strcmp(parts[0], "*") != 0 && strcmp(parts[0], TOWERS[tower]) != 0)
        return 0;
    if (parts[1] && strcmp(parts[1], "*") != 0 && strcmp(parts[1], KINDS[kind]) != 0)
        return 0;
    if (parts[2] && strcmp(parts[2], "*") != 0) {
        char *end;
        const long a = strtol(parts[2], &end, 10);
        const long b = *end == '-' ? strtol(end + 1, NULL, 10) : a;
        if (block < a || block > b)
            return 0;
    }
    return 1;
}

int clipn_int8_layer_mode(const clipn_model *m, const clipn_linear *l)
{
    const char *spec = getenv("CLIPN_INT8_LAYERS");
    int tower, kind, block;
    if (locate(m, l, &tower, &kind, &block) != 0)
        return CLIPN_INT8_LAYER_W8A16;
    /* the scheme: the output projections fp32, every other linear W8A16 */
    int mode = kind == 5 ? CLIPN_INT8_LAYER_FP32 : CLIPN_INT8_LAYER_W8A16;
    if (!spec || !*spec)
        return mode;
    for (const char *p = spec; *p;) {
        const size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        if (eq && matches(p, (size_t)(eq - p), tower, kind, block)) {
            const size_t ml = len - (size_t)(eq + 1 - p);
            if (ml == 4 && strncmp(eq + 1, "w8a8", 4) == 0)
                mode = CLIPN_INT8_LAYER_W8A8;
            else if (ml == 5 && strncmp(eq + 1, "w8a16", 5) == 0)
                mode = CLIPN_INT8_LAYER_W8A16;
            else if (ml == 2 && strncmp(eq + 1, "w8", 2) == 0)
                mode = CLIPN_INT8_LAYER_W8;
            else if (ml == 4 && strncmp(eq + 1, "fp32", 4) == 0)
                mode = CLIPN_INT8_LAYER_FP32;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return mode;
}
