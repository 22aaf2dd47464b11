/* Model loader: a libclipn model file (docs/model-format.md) -> struct clipn_model.
 *
 * Order: map + validate the safetensors structure (lib/model/safetensors.c), read and range-check
 * the config from __metadata__, then bind every tensor the config implies with its exact
 * dtype and shape, refuse leftovers, and prepare the linear layers. Aligned F32 tensors are
 * used in place in the read-only mapping; F16/BF16 are converted once into model-owned
 * buffers. Any failure frees everything: there is never a partial model. */
#include "internal.h"
#include "kernels_control.h"
#include "safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_MAX_HEADER_BYTES (100ull << 20)
#define DEFAULT_MAX_TENSORS 100000ull

typedef struct loader {
    const char *path;
    clipn_st_file file;
    clipn_model *m;
    clipn_error *err;
    int int8_group;           /* __metadata__ int8_group of an int8 file, else 0 */
    /* f32 copies dequantized from I8 tensors (index in m->owned): an INT8 model frees each
       once its layer is packed, so it never holds both */
    size_t *dequantized;
    size_t n_dequantized;
} loader;

/* ------------------------------------------------------------------ ownership */

/* On failure the buffer is not taken: the caller still owns (and frees) it. */
int clipn_model_own(clipn_model *m, void *p)
{
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 16;
        if (cap > SIZE_MAX / sizeof(void *))
            return -1;
        void **grown = realloc(m->owned, cap * sizeof(void *));
        if (!grown)
            return -1;
        m->owned = grown;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return 0;
}

static void *alloc_owned(loader *L, size_t n, size_t size, const char *what,
                         clipn_status *status)
{
    void *p = NULL;
    if (n <= SIZE_MAX / size)
        p = malloc(n * size > 0 ? n * size : 1);
    if (p && clipn_model_own(L->m, p) != 0) {
        free(p);
        p = NULL;
    }
    if (!p)
        *status = clipn_fail(L->err, CLIPN_E_NOMEM, "%s: out of memory for '%s'", L->path, what);
    return p;
}

/* Every clipn_linear of the model, for prepare and release; an LN-fed linear (in_proj,
 * c_fc) comes with its LayerNorm's gain and bias, the others with NULL. */
typedef int (*linear_visitor)(void *arg, clipn_linear *l, const float **ln_g, const float **ln_b);

static int visit_transformer(clipn_transformer *t, linear_visitor fn, void *arg)
{
    for (int i = 0; t->resblocks && i < t->layers; i++) {
        clipn_block *b = &t->resblocks[i];
        if (fn(arg, &b->attn_in_proj, &b->ln_1_weight, &b->ln_1_bias) ||
            fn(arg, &b->attn_out_proj, NULL, NULL) ||
            fn(arg, &b->mlp_c_fc, &b->ln_2_weight, &b->ln_2_bias) ||
            fn(arg, &b->mlp_c_proj, NULL, NULL))
            return -1;
    }
    return 0;
}

static int visit_linears(clipn_model *m, linear_visitor fn, void *arg)
{
    if (fn(arg, &m->visual.patch_embed, NULL, NULL) || fn(arg, &m->visual.proj_t, NULL, NULL) ||
        visit_transformer(&m->visual.transformer, fn, arg))
        return -1;
    clipn_text_tower *towers[2] = {&m->text, &m->text_no};
    for (int k = 0; k < 2; k++)
        if (visit_transformer(&towers[k]->transformer, fn, arg) ||
            fn(arg, &towers[k]->text_projection_t, NULL, NULL))
            return -1;
    return 0;
}

static int release_linear(void *arg, clipn_linear *l, const float **ln_g, const float **ln_b)
{
    (void)arg, (void)ln_g, (void)ln_b;
    if (l->packed)
        clipn_linear_release(l);
    return 0;
}

void clipn_model_free(clipn_model *m)
{
    if (!m)
        return;
    visit_linears(m, release_linear, NULL); /* before the owned buffers: resblocks live there */
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    if (m->map)
        munmap(m->map, m->map_len);
    free(m);
}

const clipn_config *clipn_model_config(const clipn_model *model)
{
    return model ? &model->config : NULL;
}

static clipn_status read_metadata(loader *L)
{
    const cJSON *meta = L->file.metadata;
    if (!meta)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: header has no __metadata__ (not a libclipn model file)", L->path);
    const cJSON *e;
    cJSON_ArrayForEach(e, meta)
    {
        if (!cJSON_IsString(e))
            return clipn_fail(L->err, CLIPN_E_FORMAT,
                              "%s: __metadata__ value '%.100s' is not a string", L->path,
                              e->string);
    }
    const char *format = clipn_st_meta_string(&L->file, "format");
    if (!format || strcmp(format, "libclipn") != 0)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: __metadata__ format is '%.64s', expected 'libclipn'", L->path,
                          format ? format : "(missing)");
    const char *version = clipn_st_meta_string(&L->file, "format_version");
    if (!version)
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: __metadata__ format_version is missing",
                          L->path);
    size_t digits = strspn(version, "0123456789");
    if (digits == 0 || digits > 9 || version[digits] != '\0')
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: __metadata__ format_version '%.32s' is not a version number",
                          L->path, version);
    long v = strtol(version, NULL, 10);
    if (v > CLIPN_FORMAT_VERSION)
        return clipn_fail(L->err, CLIPN_E_UNSUPPORTED,
                          "%s: format_version %ld is newer than this libclipn reads (%d)",
                          L->path, v, CLIPN_FORMAT_VERSION);
    if (v != CLIPN_FORMAT_VERSION)
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: format_version %ld is not %d", L->path, v,
                          CLIPN_FORMAT_VERSION);

    const char *group = clipn_st_meta_string(&L->file, "int8_group");
    if (group) {
        char *end;
        long g = strtol(group, &end, 10);
        if (*end || g < 16 || g > 1024 || g % 16)
            return clipn_fail(L->err, CLIPN_E_FORMAT,
                              "%s: __metadata__ int8_group '%.32s' is not a multiple of 16 in "
                              "16..1024", L->path, group);
        L->int8_group = (int)g;
    }
    const char *text = clipn_st_meta_string(&L->file, "config");
    if (!text)
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: __metadata__ config is missing", L->path);
    return clipn_config_parse(L->path, text, &L->m->config, L->err);
}

/* ------------------------------------------------------------------ tensors */

static void format_shape(char *buf, size_t cap, int ndim, const uint64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += shape[i] == UINT64_MAX /* any length */
                 ? (size_t)snprintf(buf + n, cap - n, "%sn", i ? ", " : "")
                 : (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? ", " : "",
                                    (unsigned long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24 */
        float v = (float)mant * 0x1p-24f;
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else if (exp == 31) { /* inf / nan */
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void clipn_model_drop_mapped(const clipn_model *m, const void *p, size_t bytes)
{
    const uintptr_t lo = (uintptr_t)p, map_lo = (uintptr_t)m->map;
    const long page = sysconf(_SC_PAGESIZE);
    if (!m->map || lo < map_lo || lo - map_lo >= m->map_len || page <= 0)
        return; /* a converted copy, not the mapping */
    const uintptr_t start = (lo + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    const uintptr_t end = (lo + bytes) / (uintptr_t)page * (uintptr_t)page;
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_DONTNEED);
}

/* The `<name>_scale` F32 [rows of t, groups] next to I8 tensor t, marked used; every scale
 * finite and >= 0. */
static clipn_status i8_scale(loader *L, const clipn_st_tensor *t, uint64_t groups,
                             const float **scale)
{
    char name[256];
    snprintf(name, sizeof name, "%s_scale", t->name);
    clipn_st_tensor *sc = clipn_st_find(&L->file, name);
    if (!sc || sc->dtype != CLIPN_ST_F32 || sc->ndim != 2 || sc->shape[0] != t->shape[0] ||
        sc->shape[1] != groups || (uintptr_t)sc->data % _Alignof(float))
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: I8 tensor '%s' needs '%s', F32 [%llu, %llu] (4-byte aligned)",
                          L->path, t->name, name, (unsigned long long)t->shape[0],
                          (unsigned long long)groups);
    sc->used = 1;
    const float *v = (const float *)(const void *)sc->data;
    for (uint64_t i = 0; i < t->shape[0] * groups; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: '%s' holds %g (row %llu)", L->path,
                              name, (double)v[i], (unsigned long long)(i / groups));
    *scale = v;
    return CLIPN_OK;
}

/* An I8 weight [rows, cols] of an int8 file (docs/model-format.md): w = q * scale[row][k /
 * group] with `<name>_scale` F32 [rows, ceil(cols / group)]. dst (model-owned, just
 * allocated) receives w; it is remembered so an INT8 model can free it after packing. */
static clipn_status dequantize(loader *L, const clipn_st_tensor *t, float *dst,
                               const float **out)
{
    if (!L->int8_group || t->ndim != 2)
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: tensor '%s' is I8 but %s", L->path,
                          t->name, L->int8_group ? "not 2-D" : "__metadata__ has no int8_group");
    const uint64_t rows = t->shape[0], cols = t->shape[1], g = (uint64_t)L->int8_group;
    const uint64_t groups = (cols + g - 1) / g;
    const float *scale;
    clipn_status s = i8_scale(L, t, groups, &scale);
    if (s != CLIPN_OK)
        return s;
    const int8_t *q = (const int8_t *)t->data;
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++)
            dst[r * cols + c] = (float)q[r * cols + c] * scale[r * groups + c / g];
    clipn_model_drop_mapped(L->m, q, (size_t)t->numel); /* the copy is the weight now */
    clipn_model_drop_mapped(L->m, scale, (size_t)(rows * groups) * sizeof(float));
    size_t *grown = realloc(L->dequantized, (L->n_dequantized + 1) * sizeof(size_t));
    if (!grown)
        return clipn_fail(L->err, CLIPN_E_NOMEM, "%s: out of memory", L->path);
    L->dequantized = grown;
    L->dequantized[L->n_dequantized++] = L->m->n_owned - 1; /* alloc_owned just added dst */
    *out = dst;
    return CLIPN_OK;
}

/* The tensor's values as f32: in place when possible, else a converted model-owned copy. */
static clipn_status tensor_f32(loader *L, const clipn_st_tensor *t, const float **out)
{
    if (t->dtype == CLIPN_ST_F32 && (uintptr_t)t->data % _Alignof(float) == 0) {
        *out = (const float *)(const void *)t->data;
        return CLIPN_OK;
    }
    clipn_status s = CLIPN_OK;
    if (t->numel > SIZE_MAX / sizeof(float))
        return clipn_fail(L->err, CLIPN_E_LIMIT, "%s: tensor '%s' too large", L->path, t->name);
    size_t n = (size_t)t->numel;
    float *dst = alloc_owned(L, n, sizeof(float), t->name, &s);
    if (!dst)
        return s;
    const uint8_t *src = t->data;
    if (t->dtype == CLIPN_ST_I8)
        return dequantize(L, t, dst, out);
    if (t->dtype == CLIPN_ST_F32) {
        memcpy(dst, src, n * sizeof(float));
    } else if (t->dtype == CLIPN_ST_F16) {
        for (size_t i = 0; i < n; i++)
            dst[i] = f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &bits, 4);
        }
    }
    clipn_model_drop_mapped(L->m, src, n * clipn_st_dtype_size(t->dtype)); /* the copy is used */
    *out = dst;
    return CLIPN_OK;
}

/* Find `name`, check it is a float tensor of exactly `shape`, mark it used. */
static clipn_status find_tensor(loader *L, const char *name, int ndim, const uint64_t *shape,
                                int want_u8, const clipn_st_tensor **out)
{
    clipn_st_tensor *t = clipn_st_find(&L->file, name);
    if (!t)
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: tensor '%s' is missing", L->path, name);
    if (want_u8 ? t->dtype != CLIPN_ST_U8
                : t->dtype == CLIPN_ST_U8 || (t->dtype == CLIPN_ST_I8 && ndim != 2))
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: tensor '%s' has dtype %s, expected %s",
                          L->path, name, clipn_st_dtype_name(t->dtype),
                          want_u8 ? "U8" : "F32, F16 or BF16");
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = shape[i] == UINT64_MAX || t->shape[i] == shape[i]; /* UINT64_MAX: any length */
    if (!same) {
        char found[160], need[160];
        format_shape(found, sizeof found, t->ndim, t->shape);
        format_shape(need, sizeof need, ndim, shape);
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor '%s' has shape %s, config needs %s", L->path, name, found,
                          need);
    }
    t->used = 1;
    *out = t;
    return CLIPN_OK;
}

/* Non-zero when a block of 1024 floats holds a NaN or an infinity (exponent all ones).
 * A fixed trip count and no early exit, so that -O2 vectorises it. */
static uint32_t block_non_finite(const float *x)
{
    uint32_t bad = 0;
    for (size_t k = 0; k < 1024; k++) {
        uint32_t bits;
        memcpy(&bits, &x[k], 4);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return bad;
}

/* Index of the first NaN or infinity in x[0, n), or n. A NaN weight makes every feature
 * NaN, silently, so every float tensor is checked once at load. */
static size_t first_non_finite(const float *x, size_t n)
{
    size_t i = 0;
    for (; i + 1024 <= n; i += 1024)
        if (block_non_finite(x + i))
            break;
    for (; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

static clipn_status bind(loader *L, const char *name, const float **out, int ndim,
                         const uint64_t *shape)
{
    const clipn_st_tensor *t;
    clipn_status s = find_tensor(L, name, ndim, shape, 0, &t);
    if (s == CLIPN_OK)
        s = tensor_f32(L, t, out);
    if (s != CLIPN_OK)
        return s;
    size_t bad = first_non_finite(*out, (size_t)t->numel);
    if (bad != (size_t)t->numel)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor '%s' holds a non-finite value (%g at element %zu)",
                          L->path, name, (double)(*out)[bad], bad);
    return CLIPN_OK;
}

#define SHAPE(...) (const uint64_t[]){__VA_ARGS__}
#define NDIM(...) ((int)(sizeof(SHAPE(__VA_ARGS__)) / sizeof(uint64_t)))
/* BIND(dst, name, dims...) */
#define BIND(dst, name, ...)                                                                  \
    do {                                                                                      \
        if ((s = bind(L, (name), (dst), NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))) != CLIPN_OK)  \
            return s;                                                                         \
    } while (0)

static void set_linear(clipn_linear *l, const float *weight, const float *bias, int n_out,
                       int n_in)
{
    l->weight = weight;
    l->bias = bias;
    l->n_out = n_out;
    l->n_in = n_in;
}

/* `prefix`.resblocks.{i}.* for a tower of width W and MLP width M. */
static clipn_status bind_transformer(loader *L, const char *prefix, int width, int layers,
                                     int heads, int mlp_width, clipn_transformer *tr)
{
    clipn_status s = CLIPN_OK;
    const uint64_t W = (uint64_t)width, M = (uint64_t)mlp_width;
    tr->width = width;
    tr->heads = heads;
    tr->mlp_width = mlp_width;
    tr->resblocks = alloc_owned(L, (size_t)layers, sizeof(clipn_block), prefix, &s);
    if (!tr->resblocks)
        return s;
    memset(tr->resblocks, 0, (size_t)layers * sizeof(clipn_block));
    tr->layers = layers;
    for (int i = 0; i < layers; i++) {
        clipn_block *b = &tr->resblocks[i];
        char name[200];
        const float *w, *bias;
#define NAME(suffix) (snprintf(name, sizeof name, "%s.resblocks.%d.%s", prefix, i, suffix), name)
        BIND(&b->ln_1_weight, NAME("ln_1.weight"), W);
        BIND(&b->ln_1_bias, NAME("ln_1.bias"), W);
        BIND(&w, NAME("attn.in_proj_weight"), 3 * W, W);
        BIND(&bias, NAME("attn.in_proj_bias"), 3 * W);
        set_linear(&b->attn_in_proj, w, bias, 3 * width, width);
        BIND(&w, NAME("attn.out_proj.weight"), W, W);
        BIND(&bias, NAME("attn.out_proj.bias"), W);
        set_linear(&b->attn_out_proj, w, bias, width, width);
        BIND(&b->ln_2_weight, NAME("ln_2.weight"), W);
        BIND(&b->ln_2_bias, NAME("ln_2.bias"), W);
        BIND(&w, NAME("mlp.c_fc.weight"), M, W);
        BIND(&bias, NAME("mlp.c_fc.bias"), M);
        set_linear(&b->mlp_c_fc, w, bias, mlp_width, width);
        BIND(&w, NAME("mlp.c_proj.weight"), W, M);
        BIND(&bias, NAME("mlp.c_proj.bias"), W);
        set_linear(&b->mlp_c_proj, w, bias, width, mlp_width);
#undef NAME
    }
    return CLIPN_OK;
}

/* proj [rows, cols] as stored -> a linear with weight [cols, rows] (y = x @ proj). */
static clipn_status transpose_linear(loader *L, const char *name, const float *proj, int rows,
                                     int cols, clipn_linear *out)
{
    clipn_status s = CLIPN_OK;
    float *t = alloc_owned(L, (size_t)rows, (size_t)cols * sizeof(float), name, &s);
    if (!t)
        return s;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            t[(size_t)c * rows + r] = proj[(size_t)r * cols + c];
    /* encoding reads the transpose only (the fingerprint reads proj again, rarely) */
    clipn_model_drop_mapped(L->m, proj, (size_t)rows * (size_t)cols * sizeof(float));
    set_linear(out, t, NULL, cols, rows);
    return CLIPN_OK;
}

static clipn_status bind_visual(loader *L)
{
    const clipn_config *c = &L->m->config;
    clipn_visual *v = &L->m->visual;
    clipn_status s;
    const uint64_t W = (uint64_t)c->vision_width, P = (uint64_t)c->patch_size,
                   G = (uint64_t)(c->image_size / c->patch_size), E = (uint64_t)c->embed_dim;
    BIND(&v->conv1_weight, "visual.conv1.weight", W, 3, P, P);
    set_linear(&v->patch_embed, v->conv1_weight, NULL, c->vision_width,
               3 * c->patch_size * c->patch_size);
    BIND(&v->class_embedding, "visual.class_embedding", W);
    BIND(&v->positional_embedding, "visual.positional_embedding", G * G + 1, W);
    BIND(&v->ln_pre_weight, "visual.ln_pre.weight", W);
    BIND(&v->ln_pre_bias, "visual.ln_pre.bias", W);
    s = bind_transformer(L, "visual.transformer", c->vision_width, c->vision_layers,
                         c->vision_heads, c->vision_mlp_width, &v->transformer);
    if (s != CLIPN_OK)
        return s;
    BIND(&v->ln_post_weight, "visual.ln_post.weight", W);
    BIND(&v->ln_post_bias, "visual.ln_post.bias", W);
    BIND(&v->proj, "visual.proj", W, E);
    return transpose_linear(L, "visual.proj", v->proj, c->vision_width, c->embed_dim,
                            &v->proj_t);
}

/* Free a model-owned buffer before the load ends (a temporary f32 copy). */
static void free_owned(clipn_model *m, const void *p)
{
    for (size_t i = m->n_owned; i-- > 0;)
        if (m->owned[i] == p) {
            free(m->owned[i]);
            m->owned[i] = NULL;
            return;
        }
}

/* The int8 token embedding of an int8 file, in place: `name` I8 [V, T] with `name`_scale
 * F32 [V, ceil(T / int8_group)], as the blocks' linear weights (docs/model-format.md). */
static clipn_status bind_int8_embedding(loader *L, const clipn_st_tensor *te,
                                        clipn_text_tower *t)
{
    const uint64_t T = te->shape[1];
    if (!L->int8_group)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor '%s' is I8 but __metadata__ has no int8_group", L->path,
                          te->name);
    const uint64_t g = (uint64_t)L->int8_group, groups = (T + g - 1) / g;
    const float *scale;
    clipn_status s = i8_scale(L, te, groups, &scale);
    if (s != CLIPN_OK)
        return s;
    t->token_embedding_q = (const int8_t *)te->data;
    t->token_embedding_scale = scale;
    t->token_embedding_group = (int)g;
    return CLIPN_OK;
}

/* The token embedding [V, T]: I8 (an int8 file) in place, else f32 as stored (at INT8 a
 * converted copy is replaced by int8 after the load: quantize_token_embedding). */
static clipn_status bind_token_embedding(loader *L, const char *name, clipn_text_tower *t)
{
    const clipn_config *c = &L->m->config;
    const uint64_t V = (uint64_t)c->vocab_size, T = (uint64_t)c->text_width;
    const clipn_st_tensor *te;
    clipn_status s = find_tensor(L, name, 2, SHAPE(V, T), 0, &te);
    if (s != CLIPN_OK)
        return s;
    if (te->dtype == CLIPN_ST_I8)
        return bind_int8_embedding(L, te, t);
    BIND(&t->token_embedding, name, V, T); /* finiteness checked on the f32 values */
    /* the check read all of it; encoding needs only the rows used */
    clipn_model_drop_mapped(L->m, t->token_embedding, (size_t)(V * T) * sizeof(float));
    return CLIPN_OK;
}

/* At INT8, an embedding the load converted to an f32 copy (an F16/BF16 file, or an int8
 * file from before I8 embeddings: 2 x 96.5 MB for a ViT-B-16 CLIPN) is quantized as an int8
 * file stores it instead (2 x 24.7 MB). One read in place stays f32 in the mapping: the text
 * towers hand its pages back every 256 rows looked up (text_forward). Returns 0 or -1
 * (memory). */
static int quantize_token_embedding(loader *L, clipn_text_tower *t)
{
    const uintptr_t p = (uintptr_t)t->token_embedding, map = (uintptr_t)L->m->map;
    if (!t->token_embedding || (p >= map && p - map < L->m->map_len))
        return 0; /* f32 in place: its rows are read from the mapping */
    const clipn_config *c = &L->m->config;
    const size_t V = (size_t)c->vocab_size, w = (size_t)c->text_width;
    const size_t g = L->int8_group ? (size_t)L->int8_group : 64, groups = (w + g - 1) / g;
    clipn_status s = CLIPN_OK;
    int8_t *q = alloc_owned(L, V, w, "token_embedding", &s);
    float *scale = q ? alloc_owned(L, V, groups * sizeof(float), "token_embedding", &s) : NULL;
    if (!scale)
        return -1;
    const float *f = t->token_embedding;
    clipn_int8_quantize_rows(f, V, w, g, q, scale);
    t->token_embedding = NULL;
    t->token_embedding_q = q;
    t->token_embedding_scale = scale;
    t->token_embedding_group = (int)g;
    free_owned(L->m, f);
    return 0;
}

/* The yes tower (suffix "") or the no tower (suffix "_no"). */
static clipn_status bind_text(loader *L, const char *sfx, clipn_text_tower *t)
{
    const clipn_config *c = &L->m->config;
    clipn_status s;
    const uint64_t T = (uint64_t)c->text_width, C = (uint64_t)c->context_length,
                   E = (uint64_t)c->embed_dim;
    char name[64];
#define NAME(fmt) (snprintf(name, sizeof name, fmt, sfx), name)
    if ((s = bind_token_embedding(L, NAME("token_embedding%s.weight"), t)) != CLIPN_OK)
        return s;
    BIND(&t->positional_embedding, NAME("positional_embedding%s"), C, T);
    s = bind_transformer(L, NAME("transformer%s"), c->text_width, c->text_layers, c->text_heads,
                         c->text_mlp_width, &t->transformer);
    if (s != CLIPN_OK)
        return s;
    BIND(&t->ln_final_weight, NAME("ln_final%s.weight"), T);
    BIND(&t->ln_final_bias, NAME("ln_final%s.bias"), T);
    BIND(&t->text_projection, NAME("text_projection%s"), T, E);
#undef NAME
    return transpose_linear(L, name, t->text_projection, c->text_width, c->embed_dim,
                            &t->text_projection_t);
}

/* prompt_no [n, C, T] and its mean over n (summed in double). */
static clipn_status bind_prompt_no(loader *L)
{
    const clipn_config *c = &L->m->config;
    clipn_text_tower *t = &L->m->text_no;
    clipn_status s;
    BIND(&t->prompt_no, "prompt_no", (uint64_t)c->n_prompt_no, (uint64_t)c->context_length,
         (uint64_t)c->text_width);
    size_t per = (size_t)c->context_length * (size_t)c->text_width;
    float *mean = alloc_owned(L, per, sizeof(float), "prompt_no", &s);
    if (!mean)
        return s;
    for (size_t j = 0; j < per; j++) {
        double sum = 0.0;
        for (int p = 0; p < c->n_prompt_no; p++)
            sum += t->prompt_no[(size_t)p * per + j];
        mean[j] = (float)(sum / c->n_prompt_no);
    }
    t->prompt_no_mean = mean;
    clipn_model_drop_mapped(L->m, t->prompt_no, (size_t)c->n_prompt_no * per * sizeof(float));
    return CLIPN_OK;
}

/* Strict UTF-8 (no overlongs, surrogates or NUL), at least one non-empty line. */
static size_t utf8_error_at(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t len;
        uint32_t cp;
        if (b == 0)
            return i;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return SIZE_MAX;
}

static clipn_status bind_merges(loader *L)
{
    const clipn_st_tensor *t;
    clipn_status s = find_tensor(L, "tokenizer.bpe_merges", 1, SHAPE(UINT64_MAX), 1, &t);
    if (s != CLIPN_OK)
        return s;
    if (t->numel == 0 || t->data[0] == '\n' || t->data[0] == '\r')
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor 'tokenizer.bpe_merges' has no merge on its first line",
                          L->path);
    if (t->numel >= 8 && memcmp(t->data, "#version", 8) == 0)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor 'tokenizer.bpe_merges' starts with the vocab file's "
                          "header line (the format stores merges only)",
                          L->path);
    size_t bad = utf8_error_at(t->data, (size_t)t->numel);
    if (bad != SIZE_MAX)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor 'tokenizer.bpe_merges' is not UTF-8 text (byte %zu)",
                          L->path, bad);
    /* the tokenizer numbers 512 byte tokens, then one token per merge, then <sot> <eot>:
       every id it can emit needs a row in the token embedding */
    size_t lines = 0;
    for (const uint8_t *p = t->data, *end = p + t->numel; p < end; lines++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    if (L->m->config.vocab_size < 514 || lines > (size_t)L->m->config.vocab_size - 514)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor 'tokenizer.bpe_merges' has %zu merges, which with 512 byte "
                          "tokens and 2 special tokens need vocab_size >= %zu (config has %d)",
                          L->path, lines, lines + 514, L->m->config.vocab_size);
    if (lines > CLIPN_TOK_MAX_MERGES)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: tensor 'tokenizer.bpe_merges' has %zu merges; the tokenizer "
                          "reads at most %d (ids would disagree with the config)",
                          L->path, lines, CLIPN_TOK_MAX_MERGES);
    const clipn_config *c = &L->m->config;
    if ((size_t)c->sot_id != 512 + lines || (size_t)c->eot_id != 513 + lines)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: config sot_id %d and eot_id %d do not follow the %zu merges of "
                          "'tokenizer.bpe_merges' (expected %zu and %zu)",
                          L->path, c->sot_id, c->eot_id, lines, 512 + lines, 513 + lines);
    /* Build the tokenizer once, as clipn_tokenizer_from_model will: a line that is not two
       symbols (a blank line, no space) loaded before and then every tokenizer failed; and
       its special ids must be the config's. */
    clipn_tokenizer *tok = NULL;
    clipn_error terr;
    clipn_status st = clipn_tokenizer_from_merges((const char *)t->data, (size_t)t->numel,
                                                  &tok, &terr);
    if (st != CLIPN_OK)
        return clipn_fail(L->err, st == CLIPN_E_NOMEM ? CLIPN_E_NOMEM : CLIPN_E_FORMAT,
                          "%s: tensor 'tokenizer.bpe_merges': %s", L->path, terr.message);
    int32_t ids[2];
    st = clipn_tokenize(tok, "", 0, ids, 2, &terr);
    clipn_tokenizer_free(tok);
    if (st != CLIPN_OK)
        return clipn_fail(L->err, st, "%s: tokenizer: %s", L->path, terr.message);
    if (ids[0] != c->sot_id || ids[1] != c->eot_id)
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: the tokenizer built from 'tokenizer.bpe_merges' gives "
                          "<start_of_text> %d and <end_of_text> %d, the config %d and %d",
                          L->path, (int)ids[0], (int)ids[1], c->sot_id, c->eot_id);
    L->m->bpe_merges = (const char *)t->data;
    L->m->bpe_merges_len = (size_t)t->numel;
    return CLIPN_OK;
}

static clipn_status bind_all(loader *L)
{
    clipn_model *m = L->m;
    clipn_config *c = &m->config;
    clipn_status s;
    if ((s = bind_visual(L)) != CLIPN_OK || (s = bind_text(L, "", &m->text)) != CLIPN_OK)
        return s;
    const float *logit_scale;
    if ((s = bind(L, "logit_scale", &logit_scale, 0, NULL)) != CLIPN_OK) /* a scalar: [] */
        return s;
    c->logit_scale = expf(*logit_scale);
    if (!isfinite(c->logit_scale))
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: tensor 'logit_scale' is %g, exp overflows",
                          L->path, *logit_scale);
    if (c->has_no_tower && (s = bind_text(L, "_no", &m->text_no)) != CLIPN_OK)
        return s;
    if (c->has_prompt_no && (s = bind_prompt_no(L)) != CLIPN_OK)
        return s;
    if ((s = bind_merges(L)) != CLIPN_OK)
        return s;

    for (size_t i = 0; i < L->file.n_tensors; i++) {
        const char *name = L->file.tensors[i].name;
        if (L->file.tensors[i].used)
            continue;
        const char *why = "";
        if (!c->has_no_tower && strstr(name, "_no"))
            why = "; config has_no_tower is false";
        else if (!c->has_prompt_no && strcmp(name, "prompt_no") == 0)
            why = "; config has_prompt_no is false";
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: unexpected tensor '%.200s' (not in the libclipn format for this "
                          "config%s)",
                          L->path, name, why);
    }
    return CLIPN_OK;
}

/* ------------------------------------------------------------------ load */

static int little_endian(void)
{
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Pack every linear, and right after each, hand its source pages back: the native GEMM
 * reads only the panels, so resident memory stays ~1x the file (and so does the peak)
 * instead of ~2x. MADV_DONTNEED on the page-aligned inside of the weight in the read-only
 * private mapping is safe: the pages refault from the page cache if anything reads them
 * again (OpenBLAS under a forced variant, a BF16 layer on an ISA without BF16). Copies the
 * model owns (transposed projections, converted F16/BF16 or misaligned tensors) are kept:
 * the model's tensors point at them. */
static int prepare_and_drop_source(loader *L, clipn_linear *l)
{
    clipn_model *m = L->m;
    if (!l->weight)
        return 0;
    l->format = m->precision == CLIPN_PRECISION_INT8   ? CLIPN_WEIGHTS_INT8
              : m->precision == CLIPN_PRECISION_BF16 ? CLIPN_WEIGHTS_BF16
                                                     : CLIPN_WEIGHTS_FP32;
    l->int8_group = L->int8_group; /* an int8 file's groups: packing repeats its values */
    const int mode = l->format == CLIPN_WEIGHTS_INT8 ? clipn_int8_layer_mode(m, l)
                                                     : CLIPN_INT8_LAYER_W8A8;
    l->int8_act_bits = mode == CLIPN_INT8_LAYER_W8A16 ? 16 : 8;
    if (mode == CLIPN_INT8_LAYER_W8 || mode == CLIPN_INT8_LAYER_FP32) /* measuring: fp32 */
        l->format = CLIPN_WEIGHTS_FP32;
    if (mode == CLIPN_INT8_LAYER_W8) { /* ... on the weights rounded to the INT8 grid */
        clipn_status st = CLIPN_OK;
        float *w = alloc_owned(L, (size_t)l->n_out * (size_t)l->n_in, sizeof(float), "w8", &st);
        if (!w)
            return -1;
        clipn_int8_round_weights(l->weight, l->n_out, l->n_in, L->int8_group, w);
        l->weight = w;
    }
    if (clipn_linear_prepare(l) != 0)
        return -1;
    if (clipn_linear_format(l) == CLIPN_WEIGHTS_INT8)
        for (size_t i = 0; i < L->n_dequantized; i++) {
            void **owned = &m->owned[L->dequantized[i]];
            if (*owned == (const void *)l->weight) { /* from an I8 tensor: packed, not needed */
                free(*owned);
                *owned = NULL;
                l->weight = NULL;
                return 0;
            }
        }
    const uintptr_t lo = (uintptr_t)l->weight, map_lo = (uintptr_t)m->map;
    const long page = sysconf(_SC_PAGESIZE);
    if (!l->packed || !m->map || lo < map_lo || lo - map_lo >= m->map_len || page <= 0)
        return 0;
    /* n_out * n_in floats lie inside the mapping: bound-checked when the tensor was bound */
    const uintptr_t bytes = (uintptr_t)l->n_out * (uintptr_t)l->n_in * sizeof(float);
    const uintptr_t start = (lo + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    const uintptr_t end = (lo + bytes) / (uintptr_t)page * (uintptr_t)page;
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_DONTNEED); /* only advice */
    return 0;
}

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* INT8 only: a LayerNorm gain channel far above the others (|g_j| > 4 x the median) is an
 * outlier feature of every row the linear after it sees, and would set the activation
 * scale of its whole K group. Move half of it (in log scale) into the weights, as
 * SmoothQuant does with alpha = 1/2: g_j, b_j /= s_j and W[:, j] *= s_j, s_j = sqrt(|g_j| /
 * median). Exact in real arithmetic; the LayerNorm output feeds only this linear (pre-norm
 * blocks). The scaled weights are a temporary copy, packed then freed. Returns 0, 1 (nothing
 * to do) or -1 (memory). */
static int smooth_outliers(loader *L, const float **g, const float **b, clipn_linear *l)
{
    const int W = l->n_in;
    float *mag = malloc(sizeof(float) * (size_t)W);
    if (!mag)
        return -1;
    for (int j = 0; j < W; j++)
        mag[j] = fabsf((*g)[j]);
    qsort(mag, (size_t)W, sizeof(float), cmp_float);
    const float median = mag[W / 2];
    free(mag);
    int any = 0;
    for (int j = 0; j < W && median > 0; j++)
        any |= fabsf((*g)[j]) > 4.0f * median;
    if (!any)
        return 1;
    clipn_status st = CLIPN_OK;
    float *g2 = alloc_owned(L, (size_t)W, sizeof(float), "ln", &st);
    float *b2 = g2 ? alloc_owned(L, (size_t)W, sizeof(float), "ln", &st) : NULL;
    float *w = malloc(sizeof(float) * (size_t)W * (size_t)l->n_out);
    if (!g2 || !b2 || !w) {
        free(w);
        return -1;
    }
    const float *w0 = l->weight;
    for (int j = 0; j < W; j++) {
        const float r = fabsf((*g)[j]) / median;
        const float sj = r > 4.0f ? sqrtf(r) : 1.0f;
        g2[j] = (*g)[j] / sj;
        b2[j] = (*b)[j] / sj;
        for (int o = 0; o < l->n_out; o++)
            w[(size_t)o * W + j] = w0[(size_t)o * W + j] * sj;
    }
    *g = g2;
    *b = b2;
    l->weight = w;
    const int rc = clipn_linear_prepare(l);
    free(w);
    l->weight = NULL; /* packed as INT8: the panels are the weights now */
    if (rc != 0)
        return -1;
    clipn_model_drop_mapped(L->m, w0, sizeof(float) * (size_t)W * (size_t)l->n_out);
    for (size_t i = 0; i < L->n_dequantized; i++) { /* from an I8 tensor: not needed now */
        void **owned = &L->m->owned[L->dequantized[i]];
        if (*owned == (const void *)w0) {
            free(*owned);
            *owned = NULL;
        }
    }
    return 0;
}

/* prepare_and_drop_source, after smoothing an LN-fed linear when the model runs INT8 */
static int prepare_ln_fed(loader *L, const float **g, const float **b, clipn_linear *l)
{
    const int mode = clipn_int8_layer_mode(L->m, l);
    if (L->m->precision == CLIPN_PRECISION_INT8 && l->weight && !getenv("CLIPN_INT8_NO_SMOOTH") &&
        (mode == CLIPN_INT8_LAYER_W8A8 || mode == CLIPN_INT8_LAYER_W8A16)) {
        l->format = CLIPN_WEIGHTS_INT8;
        l->int8_group = L->int8_group;
        l->int8_act_bits = mode == CLIPN_INT8_LAYER_W8A16 ? 16 : 8;
        const int rc = smooth_outliers(L, g, b, l);
        if (rc <= 0)
            return rc;
    }
    return prepare_and_drop_source(L, l);
}

static int prepare_linear(void *arg, clipn_linear *l, const float **ln_g, const float **ln_b)
{
    loader *L = arg;
    return ln_g ? prepare_ln_fed(L, ln_g, ln_b, l) : prepare_and_drop_source(L, l);
}

static int prepare_linears(loader *L) { return visit_linears(L->m, prepare_linear, L); }

const char *clipn_precision_name(clipn_precision p)
{
    switch (p) {
    case CLIPN_PRECISION_DEFAULT: return "default";
    case CLIPN_PRECISION_FP32: return "fp32";
    case CLIPN_PRECISION_BF16: return "bf16";
    case CLIPN_PRECISION_INT8: return "int8";
    }
    return NULL;
}

const char *clipn_runtime_isa(void) { return clipn_kernels_isa(); }
const char *clipn_runtime_int8_kernel(void) { return clipn_kernels_int8_kernel(); }

clipn_precision clipn_model_precision(const clipn_model *model)
{
    return model ? model->precision : CLIPN_PRECISION_DEFAULT;
}

const char *clipn_model_precision_note(const clipn_model *model)
{
    return model ? model->precision_note : "";
}

/* What the model asks to run at: the caller's choice; else CLIPN_WEIGHTS (or the process
 * default set through the kernels); else the file's own, from the dtype of the first
 * block's weight. */
static clipn_precision asked_precision(loader *L, const clipn_load_opts *opts)
{
    if (opts && opts->precision != CLIPN_PRECISION_DEFAULT)
        return opts->precision;
    const char *env = getenv("CLIPN_WEIGHTS");
    const int process = clipn_kernels_default_weights();
    if ((env && *env) || process != CLIPN_WEIGHTS_FP32)
        return process == CLIPN_WEIGHTS_INT8   ? CLIPN_PRECISION_INT8
             : process == CLIPN_WEIGHTS_BF16 ? CLIPN_PRECISION_BF16
             : env && strcmp(env, "bf16") == 0 ? CLIPN_PRECISION_BF16 /* unsupported: noted */
                                               : CLIPN_PRECISION_FP32;
    const clipn_st_tensor *t =
        clipn_st_find(&L->file, "visual.transformer.resblocks.0.attn.in_proj_weight");
    return !t                         ? CLIPN_PRECISION_FP32
         : t->dtype == CLIPN_ST_I8   ? CLIPN_PRECISION_INT8
         : t->dtype == CLIPN_ST_BF16 ? CLIPN_PRECISION_BF16
                                     : CLIPN_PRECISION_FP32;
}

/* After packing: what really runs (the first block's attention input projection speaks
 * for every layer: all are prepared alike), and why when it is not what was asked. */
static void settle_precision(clipn_model *m, clipn_precision asked)
{
    const clipn_linear *probe = m->visual.transformer.resblocks
                                    ? &m->visual.transformer.resblocks[0].attn_in_proj
                                    : &m->visual.patch_embed;
    const int f = clipn_linear_format(probe);
    m->precision = f == CLIPN_WEIGHTS_INT8   ? CLIPN_PRECISION_INT8
                 : f == CLIPN_WEIGHTS_BF16 ? CLIPN_PRECISION_BF16
                                           : CLIPN_PRECISION_FP32;
    m->precision_note[0] = '\0';
    if (m->precision != asked)
        snprintf(m->precision_note, sizeof m->precision_note, "%s asked: %s; running %s",
                 clipn_precision_name(asked),
                 asked == CLIPN_PRECISION_BF16 && !clipn_kernels_bf16_native()
                     ? "this CPU has no AVX512_BF16 (no fast BF16 instruction)"
                     : "the selected GEMM backend cannot run it",
                 clipn_precision_name(m->precision));
}

clipn_status clipn_model_load(const char *path, const clipn_load_opts *opts, clipn_model **out,
                              clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_model_load: out is NULL");
    *out = NULL;
    if (!path)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_model_load: path is NULL");
    if (!little_endian())
        return clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: big-endian hosts are not supported",
                          path);
    uint64_t max_header = opts && opts->max_header_bytes ? opts->max_header_bytes
                                                          : DEFAULT_MAX_HEADER_BYTES;
    uint64_t max_tensors = opts && opts->max_tensors ? opts->max_tensors : DEFAULT_MAX_TENSORS;

    loader L = {.path = path, .err = err};
    clipn_status s = clipn_st_open(&L.file, path, max_header, max_tensors, err);
    if (s != CLIPN_OK)
        return s;
    L.m = calloc(1, sizeof *L.m);
    if (!L.m) {
        clipn_st_close(&L.file);
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    }
    /* the model owns the mapping from here on; clipn_model_free unmaps it */
    L.m->map = L.file.map;
    L.m->map_len = L.file.map_len;
    L.m->file_dev = L.file.dev;
    L.m->file_ino = L.file.ino;
    L.file.map = NULL;

    clipn_kernels_init();
    clipn_precision asked = CLIPN_PRECISION_FP32;
    if (opts && (opts->precision < CLIPN_PRECISION_DEFAULT ||
                 opts->precision > CLIPN_PRECISION_INT8))
        s = clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: unknown precision %d", path,
                       (int)opts->precision);
    else
        s = read_metadata(&L);
    if (s == CLIPN_OK) {
        asked = asked_precision(&L, opts);
        /* prepare_linears packs what is asked; BF16 without the instruction packs fp32 */
        L.m->precision = asked;
        s = bind_all(&L);
    }
    if (s == CLIPN_OK && prepare_linears(&L) != 0)
        s = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory packing weights", path);
    if (s == CLIPN_OK)
        settle_precision(L.m, asked);
    if (s == CLIPN_OK && L.m->precision == CLIPN_PRECISION_INT8 &&
        (quantize_token_embedding(&L, &L.m->text) != 0 ||
         quantize_token_embedding(&L, &L.m->text_no) != 0))
        s = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for 'token_embedding'", path);
    clipn_st_close(&L.file);
    free(L.dequantized);
    if (s != CLIPN_OK) {
        clipn_model_free(L.m);
        return s;
    }
    clipn_clear_error(err);
    *out = L.m;
    return CLIPN_OK;
}
