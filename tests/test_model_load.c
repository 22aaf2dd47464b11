/* Model loader: a tiny model file built in C, loaded intact, then damaged every way the
 * format can be damaged. Each damage must give one specific status, a message naming the
 * field or tensor, and no model. */
#include "testutil.h"

#include "internal.h"
#include "model/safetensors.h"

#include <sys/resource.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ file builder */

#define MAX_TENSORS 80
#define MAX_FIELDS 32

typedef struct tensor_spec {
    char name[96];
    char dtype[8];
    int ndim;
    uint64_t shape[4];
    unsigned char *bytes;
    size_t nbytes;
    int raw_offsets; /* write begin/end below instead of the real ones */
    uint64_t begin, end;
} tensor_spec;

typedef struct builder {
    tensor_spec t[MAX_TENSORS];
    int n;
    char cfg_key[MAX_FIELDS][32], cfg_val[MAX_FIELDS][128]; /* raw JSON values */
    int n_cfg;
    const char *config_raw;             /* replaces the whole config string */
    const char *format, *format_version; /* NULL = omit */
    int omit_metadata;
    const char *int8_group;              /* __metadata__ int8_group, NULL = omit */
    int misalign;                        /* data section starts 2 bytes off a 4-byte boundary */
    size_t truncate;                     /* bytes cut off the end of the file */
} builder;

/* V: the 512 byte tokens, one per merge (3), <sot>, <eot>, and a few spare rows */
enum { W = 8, HEADS = 2, MLP = 32, P = 4, S = 8, G = S / P, C = 6, V = 520, E = 4, NP = 2 };
static const char MERGES[] = "h e\nl o\nhe llo</w>\n";

/* Distinct exactly-representable values: tensor k element i. */
static float val(int k, size_t i)
{
    return (float)(k * 1000 + (int)i) * 0.25f;
}

static tensor_spec *add(builder *b, const char *name, const char *dtype, int ndim,
                        const uint64_t *shape, size_t elem)
{
    ck_assert_int_lt(b->n, MAX_TENSORS);
    tensor_spec *t = &b->t[b->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)(t->shape[i] = shape[i]);
    t->nbytes = n * elem;
    t->bytes = malloc(t->nbytes + 1);
    ck_assert_ptr_nonnull(t->bytes);
    if (elem == 4)
        for (size_t i = 0; i < n; i++) {
            float v = val(b->n, i);
            memcpy(t->bytes + 4 * i, &v, 4);
        }
    b->n++;
    return t;
}

#define F32(b, name, ...)                                                                     \
    add((b), (name), "F32", (int)(sizeof((uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)),      \
        (uint64_t[]){__VA_ARGS__}, 4)

static void add_blocks(builder *b, const char *prefix)
{
    char n[96];
#define BLK(sfx, ...) (snprintf(n, sizeof n, "%s.resblocks.0.%s", prefix, sfx), F32(b, n, __VA_ARGS__))
    BLK("ln_1.weight", W);
    BLK("ln_1.bias", W);
    BLK("attn.in_proj_weight", 3 * W, W);
    BLK("attn.in_proj_bias", 3 * W);
    BLK("attn.out_proj.weight", W, W);
    BLK("attn.out_proj.bias", W);
    BLK("ln_2.weight", W);
    BLK("ln_2.bias", W);
    BLK("mlp.c_fc.weight", MLP, W);
    BLK("mlp.c_fc.bias", MLP);
    BLK("mlp.c_proj.weight", W, MLP);
    BLK("mlp.c_proj.bias", W);
#undef BLK
}

static void add_text(builder *b, const char *sfx)
{
    char n[96];
#define TXT(fmt, ...) (snprintf(n, sizeof n, fmt, sfx), F32(b, n, __VA_ARGS__))
    TXT("token_embedding%s.weight", V, W);
    TXT("positional_embedding%s", C, W);
    snprintf(n, sizeof n, "transformer%s", sfx);
    add_blocks(b, n);
    TXT("ln_final%s.weight", W);
    TXT("ln_final%s.bias", W);
    TXT("text_projection%s", W, E);
#undef TXT
}

static void set_cfg(builder *b, const char *key, const char *raw)
{
    for (int i = 0; i < b->n_cfg; i++)
        if (!strcmp(b->cfg_key[i], key)) {
            if (raw) {
                snprintf(b->cfg_val[i], sizeof b->cfg_val[i], "%s", raw);
            } else { /* remove */
                memmove(b->cfg_key[i], b->cfg_key[i + 1], (size_t)(b->n_cfg - i - 1) * 32);
                memmove(b->cfg_val[i], b->cfg_val[i + 1], (size_t)(b->n_cfg - i - 1) * 128);
                b->n_cfg--;
            }
            return;
        }
    ck_assert_int_lt(b->n_cfg, MAX_FIELDS);
    snprintf(b->cfg_key[b->n_cfg], 32, "%s", key);
    snprintf(b->cfg_val[b->n_cfg++], 128, "%s", raw);
}

static const char *const CONFIG_FIELDS[] = {
    "format_version", "embed_dim", "image_size", "patch_size", "vision_width",
    "vision_layers", "vision_heads", "vision_mlp_width", "context_length", "vocab_size",
    "text_width", "text_layers", "text_heads", "text_mlp_width", "activation", "ln_eps",
    "pad_id", "sot_id", "eot_id", "pooling", "has_no_tower", "has_prompt_no", "n_prompt_no",
    "image_mean", "image_std"};
#define N_CONFIG_FIELDS ((int)(sizeof CONFIG_FIELDS / sizeof CONFIG_FIELDS[0]))

static void builder_init(builder *b)
{
    memset(b, 0, sizeof *b);
    static const char *const values[] = {
        "1", "4", "8", "4", "8", "1", "2", "32", "6", "520", "8", "1", "2", "32", "\"gelu\"",
        "1e-05", "0", "515", "516", "\"argmax\"", "true", "true", "2",
        "[0.48145466, 0.4578275, 0.40821073]", "[0.26862954, 0.26130258, 0.27577711]"};
    for (int i = 0; i < N_CONFIG_FIELDS; i++)
        set_cfg(b, CONFIG_FIELDS[i], values[i]);
    b->format = "libclipn";
    b->format_version = "1";

    F32(b, "visual.conv1.weight", W, 3, P, P);
    F32(b, "visual.class_embedding", W);
    F32(b, "visual.positional_embedding", G * G + 1, W);
    F32(b, "visual.ln_pre.weight", W);
    F32(b, "visual.ln_pre.bias", W);
    add_blocks(b, "visual.transformer");
    F32(b, "visual.ln_post.weight", W);
    F32(b, "visual.ln_post.bias", W);
    F32(b, "visual.proj", W, E);
    add_text(b, "");
    tensor_spec *ls = add(b, "logit_scale", "F32", 0, NULL, 4);
    float two = 2.0f;
    memcpy(ls->bytes, &two, 4);
    add_text(b, "_no");
    F32(b, "prompt_no", NP, C, W);
    tensor_spec *m = add(b, "tokenizer.bpe_merges", "U8", 1, (uint64_t[]){sizeof MERGES - 1}, 1);
    memcpy(m->bytes, MERGES, sizeof MERGES - 1);
}

static void builder_free(builder *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->t[i].bytes);
    b->n = 0;
}

static tensor_spec *find(builder *b, const char *name)
{
    for (int i = 0; i < b->n; i++)
        if (!strcmp(b->t[i].name, name))
            return &b->t[i];
    ck_abort_msg("test bug: no tensor %s", name);
    return NULL;
}

static void drop(builder *b, const char *name)
{
    tensor_spec *t = find(b, name);
    free(t->bytes);
    int i = (int)(t - b->t);
    memmove(&b->t[i], &b->t[i + 1], (size_t)(b->n - i - 1) * sizeof *t);
    b->n--;
}

/* Replace a tensor's dtype, shape and bytes (zero-filled). */
static void reshape(builder *b, const char *name, const char *dtype, int ndim,
                    const uint64_t *shape, size_t elem)
{
    tensor_spec *t = find(b, name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)(t->shape[i] = shape[i]);
    free(t->bytes);
    t->nbytes = n * elem;
    t->bytes = calloc(1, t->nbytes + 1);
    ck_assert_ptr_nonnull(t->bytes);
}

/* A growing string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    if (sb->len + (size_t)n + 1 > sb->cap) {
        sb->cap = (sb->len + (size_t)n + 1) * 2;
        sb->s = realloc(sb->s, sb->cap);
        ck_assert_ptr_nonnull(sb->s);
    }
    va_start(ap, fmt);
    vsnprintf(sb->s + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* An 8-byte little-endian length, then `header` as is, then `data`. */
static void write_raw(const char *path, uint64_t header_len, const char *header, size_t hlen,
                      const void *data, size_t dlen)
{
    unsigned char *buf = malloc(8 + hlen + dlen + 1);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (dlen)
        memcpy(buf + 8 + hlen, data, dlen);
    write_bytes(path, buf, 8 + hlen + dlen);
    free(buf);
}

static void builder_write(const builder *b, const char *path)
{
    sbuf cfg = {0}, h = {0};
    if (b->config_raw) {
        sb_printf(&cfg, "%s", b->config_raw);
    } else {
        sb_printf(&cfg, "{");
        for (int i = 0; i < b->n_cfg; i++)
            sb_printf(&cfg, "%s\"%s\": %s", i ? ", " : "", b->cfg_key[i], b->cfg_val[i]);
        sb_printf(&cfg, "}");
    }
    sb_printf(&h, "{");
    if (!b->omit_metadata) {
        sb_printf(&h, "\"__metadata__\": {\"source\": \"test\"");
        if (b->format)
            sb_printf(&h, ", \"format\": \"%s\"", b->format);
        if (b->format_version)
            sb_printf(&h, ", \"format_version\": \"%s\"", b->format_version);
        if (b->int8_group)
            sb_printf(&h, ", \"int8_group\": \"%s\"", b->int8_group);
        sb_printf(&h, ", \"config\": \"");
        for (size_t i = 0; i < cfg.len; i++) /* the config travels as a JSON string */
            sb_printf(&h, "%s%c", cfg.s[i] == '"' || cfg.s[i] == '\\' ? "\\" : "", cfg.s[i]);
        sb_printf(&h, "\"}");
    }
    uint64_t off = 0;
    for (int i = 0; i < b->n; i++) {
        const tensor_spec *t = &b->t[i];
        sb_printf(&h, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [", (i || !b->omit_metadata) ? ", " : "",
                  t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++)
            sb_printf(&h, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
        uint64_t begin = t->raw_offsets ? t->begin : off, end = t->raw_offsets ? t->end : off + t->nbytes;
        sb_printf(&h, "], \"data_offsets\": [%llu, %llu]}", (unsigned long long)begin,
                  (unsigned long long)end);
        off = (off + t->nbytes + 63) / 64 * 64;
    }
    sb_printf(&h, "}");
    /* pad as the converter does: 8 + N a multiple of 64 (or 2 bytes past one) */
    while ((8 + h.len) % 64 != (b->misalign ? 2u : 0u))
        sb_printf(&h, " ");

    unsigned char *data = calloc(1, off + 1);
    ck_assert_ptr_nonnull(data);
    uint64_t end = off = 0; /* the file ends right after the last tensor */
    for (int i = 0; i < b->n; i++) {
        memcpy(data + off, b->t[i].bytes, b->t[i].nbytes);
        end = off + b->t[i].nbytes;
        off = (end + 63) / 64 * 64;
    }
    ck_assert_uint_le(b->truncate, end);
    write_raw(path, h.len, h.s, h.len, data, end - b->truncate);
    free(data);
    free(cfg.s);
    free(h.s);
}

/* ------------------------------------------------------------------ fixture + helpers */

static char dir[256], path[300];

static void setup(void)
{
    snprintf(dir, sizeof dir, "%s/clipn_test_model_XXXXXX", test_tmp_dir());
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
}

static void teardown(void)
{
    unlink(path);
    rmdir(dir);
}

static void expect_fail_opts(const clipn_load_opts *opts, clipn_status want, const char *needle)
{
    clipn_model *m = (clipn_model *)&m; /* must be reset to NULL */
    clipn_error err;
    memset(&err, 0, sizeof err);
    clipn_status s = clipn_model_load(path, opts, &m, &err);
    ck_assert_msg(s == want, "status %s, want %s (%s)", clipn_status_name(s),
                  clipn_status_name(want), err.message);
    ck_assert_int_eq(err.code, s);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.message, needle) != NULL, "message \"%s\" does not name '%s'",
                  err.message, needle);
    ck_assert_msg(strstr(err.message, path) != NULL, "message \"%s\" does not name the file",
                  err.message);
}

static void expect_fail(clipn_status want, const char *needle)
{
    expect_fail_opts(NULL, want, needle);
}

/* Build, write, expect failure, free. */
static void build_fail(builder *b, clipn_status want, const char *needle)
{
    builder_write(b, path);
    builder_free(b);
    expect_fail(want, needle);
}

static clipn_model *load_ok(void)
{
    clipn_model *m = NULL;
    clipn_error err;
    clipn_status s = clipn_model_load(path, NULL, &m, &err);
    ck_assert_msg(s == CLIPN_OK, "load failed: %s", err.message);
    ck_assert_ptr_nonnull(m);
    return m;
}

static int in_map(const clipn_model *m, const float *p)
{
    const char *c = (const char *)p, *base = m->map;
    return c >= base && c < base + m->map_len;
}

/* ------------------------------------------------------------------ good files */

START_TEST(good_file_loads_with_config_and_values)
{
    builder b;
    builder_init(&b);
    builder_write(&b, path);
    clipn_model *m = load_ok();
    const clipn_config *c = clipn_model_config(m);
    ck_assert_int_eq(c->format_version, 1);
    ck_assert_int_eq(c->embed_dim, E);
    ck_assert_int_eq(c->image_size, S);
    ck_assert_int_eq(c->patch_size, P);
    ck_assert_int_eq(c->vision_width, W);
    ck_assert_int_eq(c->vision_layers, 1);
    ck_assert_int_eq(c->vision_heads, HEADS);
    ck_assert_int_eq(c->vision_mlp_width, MLP);
    ck_assert_int_eq(c->context_length, C);
    ck_assert_int_eq(c->vocab_size, V);
    ck_assert_int_eq(c->text_width, W);
    ck_assert_int_eq(c->text_heads, HEADS);
    ck_assert_int_eq(c->text_mlp_width, MLP);
    ck_assert_int_eq(c->activation, CLIPN_ACT_GELU);
    ck_assert_float_eq(c->ln_eps, 1e-5f);
    ck_assert_int_eq(c->pad_id, 0);
    ck_assert_int_eq(c->sot_id, 515);
    ck_assert_int_eq(c->eot_id, 516);
    ck_assert_int_eq(c->pooling, CLIPN_POOL_ARGMAX);
    ck_assert_int_eq(c->has_no_tower, 1);
    ck_assert_int_eq(c->has_prompt_no, 1);
    ck_assert_int_eq(c->n_prompt_no, NP);
    ck_assert_float_eq(c->image_mean[0], 0.48145466f);
    ck_assert_float_eq(c->image_std[2], 0.27577711f);
    ck_assert_float_eq(c->logit_scale, expf(2.0f));

    /* F32 tensors are used in place, values intact */
    const tensor_spec *conv = find(&b, "visual.conv1.weight");
    int k_conv = (int)(conv - b.t);
    ck_assert(in_map(m, m->visual.conv1_weight));
    ck_assert_float_eq(m->visual.conv1_weight[37], val(k_conv, 37));
    ck_assert_ptr_eq(m->visual.patch_embed.weight, m->visual.conv1_weight);
    ck_assert_ptr_null(m->visual.patch_embed.bias);
    ck_assert_int_eq(m->visual.patch_embed.n_out, W);
    ck_assert_int_eq(m->visual.patch_embed.n_in, 3 * P * P);
    int k_pos = (int)(find(&b, "visual.positional_embedding") - b.t);
    ck_assert_float_eq(m->visual.positional_embedding[(G * G + 1) * W - 1],
                       val(k_pos, (G * G + 1) * W - 1));

    /* blocks */
    const clipn_transformer *tr = &m->text_no.transformer;
    ck_assert_int_eq(tr->layers, 1);
    ck_assert_int_eq(tr->width, W);
    ck_assert_int_eq(tr->heads, HEADS);
    ck_assert_int_eq(tr->mlp_width, MLP);
    const clipn_block *blk = &tr->resblocks[0];
    ck_assert_int_eq(blk->attn_in_proj.n_out, 3 * W);
    ck_assert_int_eq(blk->attn_in_proj.n_in, W);
    ck_assert_int_eq(blk->mlp_c_fc.n_out, MLP);
    ck_assert_int_eq(blk->mlp_c_proj.n_in, MLP);
    int k_fcb = (int)(find(&b, "transformer_no.resblocks.0.mlp.c_fc.bias") - b.t);
    ck_assert_float_eq(blk->mlp_c_fc.bias[MLP - 1], val(k_fcb, MLP - 1));
    int k_ln2 = (int)(find(&b, "visual.transformer.resblocks.0.ln_2.bias") - b.t);
    ck_assert_float_eq(m->visual.transformer.resblocks[0].ln_2_bias[3], val(k_ln2, 3));

    /* projections transposed: proj_t[e][w] = proj[w][e] */
    int k_proj = (int)(find(&b, "visual.proj") - b.t);
    int k_tproj = (int)(find(&b, "text_projection_no") - b.t);
    ck_assert_int_eq(m->visual.proj_t.n_out, E);
    ck_assert_int_eq(m->visual.proj_t.n_in, W);
    ck_assert_ptr_null(m->visual.proj_t.bias);
    for (int w = 0; w < W; w++)
        for (int e = 0; e < E; e++) {
            ck_assert_float_eq(m->visual.proj_t.weight[e * W + w], val(k_proj, (size_t)(w * E + e)));
            ck_assert_float_eq(m->text_no.text_projection_t.weight[e * W + w],
                               val(k_tproj, (size_t)(w * E + e)));
        }
    ck_assert_float_eq(m->text.text_projection[5], val((int)(find(&b, "text_projection") - b.t), 5));

    /* prompt_no and its mean */
    int k_prompt = (int)(find(&b, "prompt_no") - b.t);
    ck_assert_ptr_nonnull(m->text_no.prompt_no_mean);
    ck_assert_ptr_null(m->text.prompt_no);
    ck_assert_ptr_null(m->text.prompt_no_mean);
    for (size_t j = 0; j < C * W; j++)
        ck_assert_float_eq(m->text_no.prompt_no_mean[j],
                           (val(k_prompt, j) + val(k_prompt, C * W + j)) / 2);

    ck_assert_uint_eq(m->bpe_merges_len, sizeof MERGES - 1);
    ck_assert(memcmp(m->bpe_merges, MERGES, sizeof MERGES - 1) == 0);
    clipn_model_free(m);
    builder_free(&b);
}
END_TEST

START_TEST(misaligned_f32_is_copied)
{
    builder b;
    builder_init(&b);
    b.misalign = 1;
    builder_write(&b, path);
    clipn_model *m = load_ok();
    int k = (int)(find(&b, "visual.conv1.weight") - b.t);
    ck_assert(!in_map(m, m->visual.conv1_weight));
    ck_assert_uint_eq((uintptr_t)m->visual.conv1_weight % 4, 0);
    for (size_t i = 0; i < W * 3 * P * P; i++)
        ck_assert_float_eq(m->visual.conv1_weight[i], val(k, i));
    clipn_model_free(m);
    builder_free(&b);
}
END_TEST

START_TEST(f16_and_bf16_convert)
{
    /* (infinities and NaNs are refused at load: non_finite_weights_refused) */
    static const uint16_t f16[W] = {0x3c00, 0xc100, 0x0400, 0x0001, 0x7bff, 0x8000, 0xfbff, 0x3555};
    static const float f16_want[W] = {1.0f, -2.5f, 0x1p-14f, 0x1p-24f, 65504.0f, -0.0f, -65504.0f,
                                      0.333251953125f};
    static const uint16_t bf16[W] = {0x3f80, 0xc020, 0x4049, 0x0001, 0x7f7f, 0x0080, 0x3c00, 0x8000};
    static const float bf16_want[W] = {1.0f, -2.5f, 3.140625f, 0x1p-133f, 0x1.fep127f, 0x1p-126f,
                                       0.0078125f, -0.0f};
    builder b;
    builder_init(&b);
    reshape(&b, "visual.class_embedding", "F16", 1, (uint64_t[]){W}, 2);
    memcpy(find(&b, "visual.class_embedding")->bytes, f16, sizeof f16);
    reshape(&b, "ln_final_no.bias", "BF16", 1, (uint64_t[]){W}, 2);
    memcpy(find(&b, "ln_final_no.bias")->bytes, bf16, sizeof bf16);
    /* an F16 scalar and a converted prompt_no (its mean too) */
    reshape(&b, "logit_scale", "F16", 0, NULL, 2);
    memcpy(find(&b, "logit_scale")->bytes, &(uint16_t){0x4000}, 2); /* 2.0 */
    reshape(&b, "prompt_no", "BF16", 3, (uint64_t[]){NP, C, W}, 2);
    uint16_t *pn = (uint16_t *)(void *)find(&b, "prompt_no")->bytes;
    for (size_t i = 0; i < C * W; i++)
        pn[i] = 0x3f80, pn[C * W + i] = 0x4040; /* 1 and 3: mean 2 */
    builder_write(&b, path);
    clipn_model *m = load_ok();
    for (int i = 0; i < W; i++) {
        ck_assert_msg(memcmp(&m->visual.class_embedding[i], &f16_want[i], 4) == 0,
                      "f16 %d: %g, want %g", i, m->visual.class_embedding[i], f16_want[i]);
        ck_assert_msg(memcmp(&m->text_no.ln_final_bias[i], &bf16_want[i], 4) == 0,
                      "bf16 %d: %g, want %g", i, m->text_no.ln_final_bias[i], bf16_want[i]);
    }
    ck_assert(!in_map(m, m->visual.class_embedding));
    ck_assert_float_eq(m->config.logit_scale, expf(2.0f));
    for (size_t i = 0; i < C * W; i++)
        ck_assert_float_eq(m->text_no.prompt_no_mean[i], 2.0f);
    clipn_model_free(m);
    builder_free(&b);
}
END_TEST

/* f16 NaN keeps its payload's NaN-ness */
/* A NaN or infinite weight loaded and made every feature NaN (embed-* wrote NaN with exit
 * 0): refused at load, naming the tensor, whatever its dtype (F16 NaN payloads included). */
START_TEST(non_finite_weights_refused)
{
    static const struct {
        const char *name, *dtype;
        uint32_t bits;
        size_t at;
    } cases[] = {
        {"visual.ln_post.bias", "F16", 0x7e00, 0},                        /* NaN */
        {"visual.ln_post.bias", "F16", 0xfc01, 3},                        /* NaN, sign set */
        {"ln_final_no.bias", "BF16", 0x7f80, 7},                          /* +inf */
        {"visual.conv1.weight", "F32", 0x7fc00000u, 100},                 /* in place */
        {"transformer.resblocks.0.mlp.c_fc.weight", "F32", 0xff800000u, 255}, /* -inf */
        {"token_embedding_no.weight", "F32", 0x7f800001u, 0},             /* signalling */
        {"prompt_no", "F32", 0x7fc00000u, 17},
        {"logit_scale", "F32", 0x7fc00000u, 0},
    };
    builder b;
    builder_init(&b);
    tensor_spec *t = find(&b, cases[_i].name);
    ck_assert_ptr_nonnull(t);
    size_t es = strcmp(cases[_i].dtype, "F32") ? 2 : 4;
    if (es == 2) {
        ck_assert_int_eq(t->ndim, 1);
        reshape(&b, cases[_i].name, cases[_i].dtype, 1, (uint64_t[]){W}, 2);
        t = find(&b, cases[_i].name);
    }
    memcpy(t->bytes + cases[_i].at * es, &cases[_i].bits, es);
    char needle[160];
    snprintf(needle, sizeof needle, "tensor '%s' holds a non-finite value", cases[_i].name);
    build_fail(&b, CLIPN_E_FORMAT, needle);
}
END_TEST

static void make_plain_clip(builder *b)
{
    builder_init(b);
    for (int i = b->n - 1; i >= 0; i--)
        if (strstr(b->t[i].name, "_no"))
            drop(b, b->t[i].name);
    set_cfg(b, "has_no_tower", "false");
    set_cfg(b, "has_prompt_no", "false");
    set_cfg(b, "n_prompt_no", "0");
}

START_TEST(plain_clip_without_no_tower)
{
    builder b;
    make_plain_clip(&b);
    set_cfg(&b, "activation", "\"quickgelu\"");
    builder_write(&b, path);
    clipn_model *m = load_ok();
    ck_assert_int_eq(m->config.has_no_tower, 0);
    ck_assert_int_eq(m->config.activation, CLIPN_ACT_QUICKGELU);
    ck_assert_ptr_null(m->text_no.token_embedding);
    ck_assert_ptr_null(m->text_no.transformer.resblocks);
    ck_assert_ptr_null(m->text_no.text_projection_t.weight);
    ck_assert_ptr_nonnull(m->text.transformer.resblocks);
    clipn_model_free(m);
    builder_free(&b);
}
END_TEST

START_TEST(no_tower_without_prompts)
{
    builder b;
    builder_init(&b);
    drop(&b, "prompt_no");
    set_cfg(&b, "has_prompt_no", "false");
    set_cfg(&b, "n_prompt_no", "0");
    builder_write(&b, path);
    clipn_model *m = load_ok();
    ck_assert_ptr_nonnull(m->text_no.token_embedding);
    ck_assert_ptr_null(m->text_no.prompt_no);
    ck_assert_ptr_null(m->text_no.prompt_no_mean);
    clipn_model_free(m);
    builder_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ config JSON */

START_TEST(config_json_round_trips)
{
    builder b;
    builder_init(&b);
    builder_write(&b, path);
    clipn_model *m = load_ok();
    const clipn_config *c = clipn_model_config(m);
    size_t need = clipn_config_to_json(c, NULL, 0);
    ck_assert_uint_gt(need, 100);
    char *json = malloc(need + 1);
    ck_assert_uint_eq(clipn_config_to_json(c, json, need + 1), need);
    ck_assert_uint_eq(strlen(json), need);
    ck_assert_ptr_nonnull(strstr(json, "\"ln_eps\": 1e-05"));
    /* shortest decimals that read back as the same float32 */
    ck_assert_msg(strstr(json, "\"image_mean\": [0.48145467, 0.4578275, 0.40821072]"), "%s", json);
    cJSON *j = cJSON_Parse(json);
    ck_assert_ptr_nonnull(j);
    for (int i = 0; i < N_CONFIG_FIELDS; i++)
        ck_assert_msg(cJSON_GetObjectItemCaseSensitive(j, CONFIG_FIELDS[i]) != NULL, "no %s",
                      CONFIG_FIELDS[i]);
    cJSON_Delete(j);

    /* snprintf semantics: truncated, NUL-terminated, same return value */
    char small[16];
    ck_assert_uint_eq(clipn_config_to_json(c, small, sizeof small), need);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert(strncmp(small, json, sizeof small - 1) == 0);

    /* the JSON is itself a valid config: a file carrying it loads to the same config */
    clipn_config before = *c;
    clipn_model_free(m);
    b.config_raw = json;
    builder_write(&b, path);
    m = load_ok();
    before.logit_scale = m->config.logit_scale;
    ck_assert(memcmp(&before, &m->config, sizeof before) == 0);
    clipn_model_free(m);
    free(json);
    builder_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ damaged files */

START_TEST(bad_arguments)
{
    clipn_error err;
    ck_assert_int_eq(clipn_model_load(path, NULL, NULL, &err), CLIPN_E_INVALID_ARG);
    clipn_model *m = (clipn_model *)&m;
    ck_assert_int_eq(clipn_model_load(NULL, NULL, &m, &err), CLIPN_E_INVALID_ARG);
    ck_assert_ptr_null(m);
    clipn_model_free(NULL);
    ck_assert_ptr_null(clipn_model_config(NULL));
}
END_TEST

START_TEST(missing_file_and_directory_are_io)
{
    expect_fail(CLIPN_E_IO, "No such file");
    clipn_model *m = (clipn_model *)&m;
    clipn_error err;
    ck_assert_int_eq(clipn_model_load(dir, NULL, &m, &err), CLIPN_E_IO);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(err.message, dir));
    /* a FIFO is refused without blocking on open */
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    clipn_status s = clipn_model_load(fifo, NULL, &m, &err);
    unlink(fifo);
    ck_assert_int_eq(s, CLIPN_E_IO);
    ck_assert_ptr_nonnull(strstr(err.message, "not a regular file"));
}
END_TEST

START_TEST(empty_and_short_files)
{
    write_bytes(path, "", 0);
    expect_fail(CLIPN_E_FORMAT, "0 bytes");
    write_bytes(path, "\x02\0\0\0\0", 5);
    expect_fail(CLIPN_E_FORMAT, "5 bytes");
    write_raw(path, 0, "", 0, NULL, 0); /* 8 bytes, empty header */
    expect_fail(CLIPN_E_FORMAT, "JSON");
}
END_TEST

START_TEST(header_length_beyond_file)
{
    write_raw(path, 100, "{}", 2, NULL, 0);
    expect_fail(CLIPN_E_FORMAT, "header length 100");
    write_raw(path, 1ull << 63, "{}", 2, NULL, 0);
    expect_fail(CLIPN_E_FORMAT, "header length 9223372036854775808");
    write_raw(path, UINT64_MAX, "{}", 2, NULL, 0);
    expect_fail(CLIPN_E_FORMAT, "header length");
}
END_TEST

START_TEST(limits)
{
    builder b;
    builder_init(&b);
    builder_write(&b, path);
    builder_free(&b);
    clipn_load_opts opts = {.max_header_bytes = 1024};
    expect_fail_opts(&opts, CLIPN_E_LIMIT, "header is");
    opts = (clipn_load_opts){.max_tensors = 10};
    expect_fail_opts(&opts, CLIPN_E_LIMIT, "tensors");
}
END_TEST

static void raw_header(const char *h)
{
    write_raw(path, strlen(h), h, strlen(h), NULL, 0);
}

START_TEST(bad_json)
{
    raw_header("{\"a\": ");
    expect_fail(CLIPN_E_FORMAT, "not valid JSON");
    raw_header("{} trailing");
    expect_fail(CLIPN_E_FORMAT, "not valid JSON");
    raw_header("[1, 2]");
    expect_fail(CLIPN_E_FORMAT, "not a JSON object");
    raw_header("\"text\"");
    expect_fail(CLIPN_E_FORMAT, "not a JSON object");
    write_raw(path, 4, "{}\0 ", 4, NULL, 0);
    expect_fail(CLIPN_E_FORMAT, "NUL");
    /* deep nesting is refused before cJSON recurses */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    ck_assert_ptr_nonnull(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    raw_header(deep);
    free(deep);
    expect_fail(CLIPN_E_FORMAT, "nests");
    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}}");
    expect_fail(CLIPN_E_FORMAT, "nests");
}
END_TEST

/* A key twice in any object of the header or the config: cJSON keeps both and its lookups
 * return the first, so the file meant one thing to us and may mean another to a reader
 * that keeps the last (Python's json, safetensors' serde). */
START_TEST(duplicate_json_keys_refused)
{
    builder b;
    builder_init(&b);
    set_cfg(&b, "embed_dim", "4, \"embed_dim\": 5");
    build_fail(&b, CLIPN_E_FORMAT, "config has the key \"embed_dim\" twice");
    builder_init(&b);
    b.format = "libclipn\", \"format\": \"libclipn";
    build_fail(&b, CLIPN_E_FORMAT, "header has the key \"format\" twice");
    static const char entry[] = "{\"x\": {\"dtype\": \"U8\", \"shape\": [1], \"dtype\": \"F32\", "
                                "\"data_offsets\": [0, 1]}}";
    write_raw(path, strlen(entry), entry, strlen(entry), "a", 1);
    expect_fail(CLIPN_E_FORMAT, "has the key \"dtype\" twice");
    /* and more than 16 keys (sorted, not pairwise) */
    char many[4096];
    size_t n = (size_t)snprintf(many, sizeof many, "{");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s\"t%d\": {\"dtype\": \"U8\", "
                              "\"shape\": [0], \"data_offsets\": [0, 0]}",
                              i ? ", " : "", i == 39 ? 7 : i);
    snprintf(many + n, sizeof many - n, "}");
    raw_header(many);
    expect_fail(CLIPN_E_FORMAT, "has the key \"t7\" twice");
}
END_TEST

static long max_rss_kb(void)
{
    struct rusage ru;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* A 10 MB header of one JSON array cost 435 MB of RSS in cJSON (50 MB: 2.2 GB, under the
 * 100 MiB header limit); the values are counted before cJSON runs now. */
START_TEST(header_json_cost_bounded)
{
    const size_t n = 10u << 20;
    char *h = malloc(n + 1);
    ck_assert_ptr_nonnull(h);
    for (int wrapped = 0; wrapped < 2; wrapped++) {
        size_t k = 0;
        if (wrapped)
            k += (size_t)sprintf(h, "{\"x\": ");
        h[k++] = '[';
        while (k + 4 < n)
            h[k++] = '0', h[k++] = ',';
        h[k++] = '0';
        h[k++] = ']';
        if (wrapped)
            h[k++] = '}';
        h[k] = '\0';
        write_raw(path, k, h, k, NULL, 0);
        long before = max_rss_kb();
        expect_fail(CLIPN_E_LIMIT, wrapped ? "JSON values" : "entries");
        long grown_mb = (max_rss_kb() - before) / 1024;
        printf("  %s: 10 MB header of one array, refused, max RSS grew %ld MB\n",
               wrapped ? "object" : "root array", grown_mb);
        ck_assert_int_lt(grown_mb, 64); /* the mapping and one copy of the header */
    }
    free(h);
}
END_TEST

START_TEST(metadata_damage)
{
    builder b;
    builder_init(&b);
    b.omit_metadata = 1;
    build_fail(&b, CLIPN_E_FORMAT, "__metadata__");

    builder_init(&b);
    b.format = "safetensors";
    build_fail(&b, CLIPN_E_FORMAT, "format is 'safetensors'");
    builder_init(&b);
    b.format = NULL;
    build_fail(&b, CLIPN_E_FORMAT, "format");
    builder_init(&b);
    b.format_version = "2";
    build_fail(&b, CLIPN_E_UNSUPPORTED, "format_version 2 is newer");
    builder_init(&b);
    b.format_version = "1.0";
    build_fail(&b, CLIPN_E_FORMAT, "format_version");
    builder_init(&b);
    b.format_version = NULL;
    build_fail(&b, CLIPN_E_FORMAT, "format_version");
    builder_init(&b);
    b.config_raw = "{not json";
    build_fail(&b, CLIPN_E_FORMAT, "config");
    builder_init(&b);
    b.config_raw = "[1]";
    build_fail(&b, CLIPN_E_FORMAT, "config");

    raw_header("{\"__metadata__\": {\"format\": 1}}");
    expect_fail(CLIPN_E_FORMAT, "__metadata__");
    raw_header("{\"__metadata__\": [1]}");
    expect_fail(CLIPN_E_FORMAT, "__metadata__");
}
END_TEST

START_TEST(each_config_field_is_required)
{
    const char *field = CONFIG_FIELDS[_i];
    builder b;
    builder_init(&b);
    set_cfg(&b, field, NULL);
    builder_write(&b, path);
    builder_free(&b);
    char needle[64];
    snprintf(needle, sizeof needle, "'%s' is missing", field);
    expect_fail(CLIPN_E_FORMAT, needle);
}
END_TEST

static const struct {
    const char *key, *value;
    clipn_status want;
    const char *needle;
} bad_configs[] = {
    {"vision_heads", "3", CLIPN_E_FORMAT, "vision_heads"},
    {"text_heads", "3", CLIPN_E_FORMAT, "text_heads"},
    {"embed_dim", "0", CLIPN_E_FORMAT, "embed_dim"},
    {"vision_layers", "0", CLIPN_E_FORMAT, "vision_layers"},
    {"text_mlp_width", "-32", CLIPN_E_FORMAT, "text_mlp_width"},
    {"vocab_size", "\"10\"", CLIPN_E_FORMAT, "vocab_size"},
    {"context_length", "6.5", CLIPN_E_FORMAT, "context_length"},
    {"image_size", "1e300", CLIPN_E_FORMAT, "image_size"},
    {"patch_size", "3", CLIPN_E_FORMAT, "patch_size"},
    {"ln_eps", "-1e-05", CLIPN_E_FORMAT, "ln_eps"},
    {"ln_eps", "1", CLIPN_E_FORMAT, "ln_eps"},
    {"ln_eps", "\"1e-5\"", CLIPN_E_FORMAT, "ln_eps"},
    {"ln_eps", "1e-300", CLIPN_E_FORMAT, "ln_eps"},
    {"activation", "\"relu\"", CLIPN_E_FORMAT, "activation"},
    {"activation", "1", CLIPN_E_FORMAT, "activation"},
    {"pooling", "\"mean\"", CLIPN_E_FORMAT, "pooling"},
    {"eot_id", "520", CLIPN_E_FORMAT, "eot_id"},
    {"pad_id", "-1", CLIPN_E_FORMAT, "pad_id"},
    {"sot_id", "516", CLIPN_E_FORMAT, "sot_id"},
    {"sot_id", "514", CLIPN_E_FORMAT, "sot_id 514 and eot_id 516 do not follow the 3 merges"},
    {"eot_id", "519", CLIPN_E_FORMAT, "expected 515 and 516"},
    {"has_no_tower", "1", CLIPN_E_FORMAT, "has_no_tower"},
    {"has_prompt_no", "false", CLIPN_E_FORMAT, "n_prompt_no"},
    {"n_prompt_no", "0", CLIPN_E_FORMAT, "n_prompt_no"},
    {"image_std", "[0.2, 0, 0.2]", CLIPN_E_FORMAT, "image_std"},
    /* a denormal std loaded, then every image normalised to inf */
    {"image_std", "[0.2, 1e-42, 0.2]", CLIPN_E_FORMAT, "image_std[1] is"},
    {"image_std", "[1e-7, 0.2, 0.2]", CLIPN_E_FORMAT, "must be at least 1e-6"},
    {"image_mean", "[0.5, 1e400, 0.5]", CLIPN_E_FORMAT, "image_mean"},
    {"image_mean", "[0.5, 0.5]", CLIPN_E_FORMAT, "image_mean"},
    {"image_mean", "[0.5, 0.5, \"x\"]", CLIPN_E_FORMAT, "image_mean"},
    {"format_version", "2", CLIPN_E_UNSUPPORTED, "format_version"},
    {"format_version", "0", CLIPN_E_FORMAT, "format_version"},
    /* valid config, but the tensors no longer match it */
    {"embed_dim", "5", CLIPN_E_FORMAT, "'visual.proj' has shape [8, 4], config needs [8, 5]"},
    {"vision_mlp_width", "16", CLIPN_E_FORMAT, "mlp.c_fc.weight"},
    {"vision_layers", "2", CLIPN_E_FORMAT, "'visual.transformer.resblocks.1.ln_1.weight' is missing"},
    {"image_size", "12", CLIPN_E_FORMAT, "visual.positional_embedding"},
    {"vocab_size", "521", CLIPN_E_FORMAT, "token_embedding.weight"},
    {"n_prompt_no", "3", CLIPN_E_FORMAT, "prompt_no"},
};

START_TEST(bad_config_values)
{
    builder b;
    builder_init(&b);
    set_cfg(&b, bad_configs[_i].key, bad_configs[_i].value);
    build_fail(&b, bad_configs[_i].want, bad_configs[_i].needle);
}
END_TEST

START_TEST(prompt_without_no_tower)
{
    builder b;
    make_plain_clip(&b);
    set_cfg(&b, "has_prompt_no", "true");
    set_cfg(&b, "n_prompt_no", "2");
    build_fail(&b, CLIPN_E_FORMAT, "has_prompt_no");
}
END_TEST

START_TEST(missing_tensor)
{
    static const char *const names[] = {"transformer_no.resblocks.0.mlp.c_fc.bias", "logit_scale",
                                        "tokenizer.bpe_merges", "prompt_no", "visual.conv1.weight"};
    builder b;
    builder_init(&b);
    drop(&b, names[_i]);
    char needle[128];
    snprintf(needle, sizeof needle, "'%s' is missing", names[_i]);
    build_fail(&b, CLIPN_E_FORMAT, needle);
}
END_TEST

START_TEST(extra_tensors)
{
    builder b;
    builder_init(&b);
    F32(&b, "visual.attn_mask", 2, 2);
    build_fail(&b, CLIPN_E_FORMAT, "unexpected tensor 'visual.attn_mask'");

    /* a no tower the config says is absent */
    builder_init(&b);
    set_cfg(&b, "has_no_tower", "false");
    set_cfg(&b, "has_prompt_no", "false");
    set_cfg(&b, "n_prompt_no", "0");
    build_fail(&b, CLIPN_E_FORMAT, "has_no_tower is false");

    builder_init(&b);
    set_cfg(&b, "has_prompt_no", "false");
    set_cfg(&b, "n_prompt_no", "0");
    build_fail(&b, CLIPN_E_FORMAT, "unexpected tensor 'prompt_no'");

    /* a second layer the config does not have */
    builder_init(&b);
    F32(&b, "transformer.resblocks.1.ln_1.weight", W);
    build_fail(&b, CLIPN_E_FORMAT, "transformer.resblocks.1.ln_1.weight");
}
END_TEST

START_TEST(dtypes)
{
    builder b;
    builder_init(&b);
    reshape(&b, "visual.ln_pre.bias", "F64", 1, (uint64_t[]){W}, 8);
    build_fail(&b, CLIPN_E_UNSUPPORTED, "'visual.ln_pre.bias' has dtype 'F64'");
    builder_init(&b);
    reshape(&b, "visual.ln_pre.bias", "Q4_K", 1, (uint64_t[]){W}, 1);
    build_fail(&b, CLIPN_E_UNSUPPORTED, "visual.ln_pre.bias");
    builder_init(&b);
    reshape(&b, "visual.ln_pre.bias", "U8", 1, (uint64_t[]){W}, 1);
    build_fail(&b, CLIPN_E_FORMAT, "'visual.ln_pre.bias' has dtype U8");
    builder_init(&b);
    reshape(&b, "tokenizer.bpe_merges", "F32", 1, (uint64_t[]){4}, 4);
    build_fail(&b, CLIPN_E_FORMAT, "'tokenizer.bpe_merges' has dtype F32");
    raw_header("{\"x\": {\"shape\": [], \"data_offsets\": [0, 0]}}");
    expect_fail(CLIPN_E_FORMAT, "'x' has no \"dtype\"");
}
END_TEST

START_TEST(shapes)
{
    builder b;
    builder_init(&b);
    reshape(&b, "visual.proj", "F32", 2, (uint64_t[]){W, 3}, 4);
    build_fail(&b, CLIPN_E_FORMAT, "tensor 'visual.proj' has shape [8, 3], config needs [8, 4]");
    builder_init(&b);
    reshape(&b, "logit_scale", "F32", 1, (uint64_t[]){1}, 4);
    build_fail(&b, CLIPN_E_FORMAT, "'logit_scale' has shape [1], config needs []");
    builder_init(&b);
    reshape(&b, "visual.conv1.weight", "F32", 2, (uint64_t[]){W, 3 * P * P}, 4);
    build_fail(&b, CLIPN_E_FORMAT, "visual.conv1.weight");
    builder_init(&b);
    reshape(&b, "tokenizer.bpe_merges", "U8", 2, (uint64_t[]){1, 4}, 1);
    build_fail(&b, CLIPN_E_FORMAT, "tokenizer.bpe_merges");

    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 0]}}");
    expect_fail(CLIPN_E_FORMAT, "'x' shape entry 0");
    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 0]}}");
    expect_fail(CLIPN_E_FORMAT, "'x' shape entry 0");
    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 0]}}");
    expect_fail(CLIPN_E_FORMAT, "'x' has no \"shape\"");
    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
               "\"data_offsets\": [0, 0]}}");
    expect_fail(CLIPN_E_FORMAT, "'x' element count overflows");
    raw_header("{\"x\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 0]}}");
    expect_fail(CLIPN_E_UNSUPPORTED, "'x' has 9 dims");
    /* a zero dim makes any other dim harmless */
    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [0, 9007199254740992], \"data_offsets\": [0, 0]}}");
    expect_fail(CLIPN_E_FORMAT, "__metadata__");
}
END_TEST

START_TEST(data_offsets)
{
    builder b;
    tensor_spec *t;
    builder_init(&b);
    t = find(&b, "visual.ln_post.weight");
    t->raw_offsets = 1, t->begin = 1u << 20, t->end = (1u << 20) + 4 * W;
    build_fail(&b, CLIPN_E_FORMAT, "'visual.ln_post.weight' data_offsets [1048576, 1048608] lie beyond");

    builder_init(&b);
    t = find(&b, "visual.ln_post.weight");
    t->raw_offsets = 1, t->begin = 64, t->end = 32;
    build_fail(&b, CLIPN_E_FORMAT, "'visual.ln_post.weight' data_offsets [64, 32] end before begin");

    builder_init(&b);
    t = find(&b, "visual.ln_post.weight");
    t->raw_offsets = 1, t->begin = 0, t->end = 4 * W - 4;
    build_fail(&b, CLIPN_E_FORMAT, "'visual.ln_post.weight' holds 28 bytes");

    /* ln_pre.bias placed on top of ln_pre.weight */
    builder_init(&b);
    uint64_t off = 0;
    for (int i = 0; i < b.n && strcmp(b.t[i].name, "visual.ln_pre.weight"); i++)
        off = (off + b.t[i].nbytes + 63) / 64 * 64;
    t = find(&b, "visual.ln_pre.bias");
    t->raw_offsets = 1, t->begin = off + 4, t->end = off + 4 + 4 * W;
    build_fail(&b, CLIPN_E_FORMAT, "overlap");

    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0]}}");
    expect_fail(CLIPN_E_FORMAT, "'x' needs \"data_offsets\"");
    raw_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [-4, 0]}}");
    expect_fail(CLIPN_E_FORMAT, "'x' needs \"data_offsets\"");
    raw_header("{\"x\": 5}");
    expect_fail(CLIPN_E_FORMAT, "'x' is not a JSON object");
    static const char twice[] = "{\"x\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 1]},"
                                " \"x\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [1, 2]}}";
    write_raw(path, strlen(twice), twice, strlen(twice), "ab", 2);
    expect_fail(CLIPN_E_FORMAT, "has the key \"x\" twice");
}
END_TEST

/* ------------------------------------------------------------------ int8 token embeddings */

/* `name` as an int8 file stores it: I8 [V, W] (q = (i * 37) % 255 - 127) and `name`_scale
 * F32 [V, 1] (W < 64: one group per row); __metadata__ int8_group 64. */
static void make_int8_embedding(builder *b, const char *name)
{
    b->int8_group = "64";
    reshape(b, name, "I8", 2, (uint64_t[]){V, W}, 1);
    tensor_spec *t = find(b, name);
    for (size_t i = 0; i < (size_t)V * W; i++)
        t->bytes[i] = (unsigned char)(int8_t)((int)(i * 37 % 255) - 127);
    char sn[96];
    snprintf(sn, sizeof sn, "%s_scale", name);
    tensor_spec *sc = add(b, sn, "F32", 2, (uint64_t[]){V, 1}, 4);
    for (size_t r = 0; r < V; r++) {
        const float v = 0.001f * (float)(r % 7 + 1) / 3.0f;
        memcpy(sc->bytes + 4 * r, &v, 4);
    }
}

/* An I8 token embedding is used in place; a row is q * scale, exactly, at fp32 and INT8.
 * The other tower's embedding: F32 is used in place at both precisions; F16 is an f32 copy
 * at fp32 and quantized at load at INT8 (within half a step, each row's largest value on
 * +-127). */
START_TEST(int8_embedding_rows_exact)
{
    builder b;
    builder_init(&b);
    make_int8_embedding(&b, "token_embedding.weight");
    const int f16 = _i == 1;
    if (f16) { /* F16 of -(i % 97) / 64: exact */
        reshape(&b, "token_embedding_no.weight", "F16", 2, (uint64_t[]){V, W}, 2);
        uint16_t *h = (uint16_t *)(void *)find(&b, "token_embedding_no.weight")->bytes;
        for (size_t i = 0; i < (size_t)V * W; i++) {
            const unsigned v = (unsigned)(i % 97); /* v / 64 as F16: exponent of v, 10-bit mantissa */
            unsigned e = 0;
            while (v >> (e + 1))
                e++;
            h[i] = !v ? 0 : (uint16_t)(0x8000u | (e + 15 - 6) << 10 | ((v << (10 - e)) & 0x3ffu));
        }
    }
    builder_write(&b, path);
    const int8_t *q = (const int8_t *)(const void *)find(&b, "token_embedding.weight")->bytes;
    const float *scale = (const float *)(const void *)find(&b, "token_embedding.weight_scale")->bytes;
    const float *f_no = (const float *)(const void *)find(&b, "token_embedding_no.weight")->bytes;
    for (int k = 0; k < 2; k++) {
        clipn_load_opts o = {.precision = k ? CLIPN_PRECISION_INT8 : CLIPN_PRECISION_FP32};
        clipn_model *m = NULL;
        clipn_error err;
        ck_assert_msg(clipn_model_load(path, &o, &m, &err) == CLIPN_OK, "%s", err.message);
        ck_assert_ptr_null(m->text.token_embedding);
        ck_assert(in_map(m, (const float *)(const void *)m->text.token_embedding_q));
        for (int id = 0; id < V; id++) {
            float row[W], want[W], x[W];
            clipn_token_embedding_row(&m->text, id, W, row);
            for (int i = 0; i < W; i++)
                want[i] = (float)q[(size_t)id * W + i] * scale[id];
            ck_assert_msg(memcmp(row, want, sizeof row) == 0, "row %d differs (%s)", id,
                          k ? "int8" : "fp32");
            for (int i = 0; i < W; i++) {
                const unsigned v = (unsigned)(((size_t)id * W + (size_t)i) % 97);
                x[i] = f16 ? (v ? -(float)v / 64.0f : 0.0f) : f_no[(size_t)id * W + i];
            }
            clipn_token_embedding_row(&m->text_no, id, W, row);
            if (!k || !f16) {
                ck_assert_mem_eq(row, x, sizeof row);
                continue;
            }
            float amax = 0, top = 0;
            for (int i = 0; i < W; i++)
                amax = fmaxf(amax, fabsf(x[i]));
            const float step = m->text_no.token_embedding_scale[id];
            ck_assert_float_eq(step, amax / 127.0f);
            for (int i = 0; i < W; i++) {
                ck_assert_float_le(fabsf(row[i] - x[i]), 0.5f * step * (1 + 1e-6f));
                top = fmaxf(top, fabsf((float)m->text_no.token_embedding_q[(size_t)id * W + i]));
            }
            ck_assert_float_eq(top, amax > 0 ? 127.0f : 0.0f);
        }
        if (!f16)
            ck_assert(in_map(m, m->text_no.token_embedding));
        else if (k)
            ck_assert(m->text_no.token_embedding == NULL && m->text_no.token_embedding_q);
        else
            ck_assert(!in_map(m, m->text_no.token_embedding));
        clipn_model_free(m);
    }
    builder_free(&b);
}
END_TEST

/* A row of several scale groups: column c uses scale c / group. */
START_TEST(int8_embedding_row_groups)
{
    int8_t q[2 * 40];
    float scale[2 * 3];
    for (int i = 0; i < 80; i++)
        q[i] = (int8_t)(i % 2 ? -i : i);
    for (int g = 0; g < 6; g++)
        scale[g] = 0.5f + (float)g;
    clipn_text_tower t = {.token_embedding_q = q, .token_embedding_scale = scale,
                          .token_embedding_group = 16};
    float row[40];
    clipn_token_embedding_row(&t, 1, 40, row);
    for (int c = 0; c < 40; c++)
        ck_assert_float_eq(row[c], (float)q[40 + c] * scale[3 + c / 16]);
}
END_TEST

/* I8 embeddings with a bad or missing scale tensor, or without int8_group: refused. */
START_TEST(int8_embedding_bad_scale_refused)
{
    static const uint32_t bad_bits[] = {0x7fc00000u /* NaN */, 0x7f800000u /* inf */,
                                        0xbf800000u /* -1 */};
    builder b;
    if (_i < 3) {
        builder_init(&b);
        make_int8_embedding(&b, "token_embedding_no.weight");
        memcpy(find(&b, "token_embedding_no.weight_scale")->bytes + 4 * 100, &bad_bits[_i], 4);
        build_fail(&b, CLIPN_E_FORMAT, "'token_embedding_no.weight_scale' holds");
        return;
    }
    builder_init(&b);
    make_int8_embedding(&b, "token_embedding.weight");
    if (_i == 3) {
        reshape(&b, "token_embedding.weight_scale", "F32", 2, (uint64_t[]){V, 2}, 4);
    } else if (_i == 4) {
        reshape(&b, "token_embedding.weight_scale", "F16", 2, (uint64_t[]){V, 1}, 2);
    } else if (_i == 5) {
        drop(&b, "token_embedding.weight_scale");
    } else {
        b.int8_group = NULL;
        build_fail(&b, CLIPN_E_FORMAT, "'token_embedding.weight' is I8 but __metadata__ has no int8_group");
        return;
    }
    build_fail(&b, CLIPN_E_FORMAT,
               "I8 tensor 'token_embedding.weight' needs 'token_embedding.weight_scale', F32 [520, 1]");
}
END_TEST

/* An I8 embedding of the wrong shape names the tensor, as for any dtype. */
START_TEST(int8_embedding_bad_shape_refused)
{
    builder b;
    builder_init(&b);
    make_int8_embedding(&b, "token_embedding.weight");
    reshape(&b, "token_embedding.weight", "I8", 2, (uint64_t[]){V - 1, W}, 1);
    build_fail(&b, CLIPN_E_FORMAT, "'token_embedding.weight' has shape [519, 8]");
}
END_TEST

START_TEST(truncated_data_section)
{
    builder b;
    builder_init(&b);
    b.truncate = 10; /* cuts into the last tensor, the merges */
    build_fail(&b, CLIPN_E_FORMAT, "'tokenizer.bpe_merges' data_offsets");
    builder_init(&b);
    b.truncate = 200;
    build_fail(&b, CLIPN_E_FORMAT, "file truncated");
}
END_TEST

START_TEST(bad_merges_text)
{
    static const char *const bad[] = {"h e\n\xff\xfe\n", "\nh e\n", "h \xc0\xaf\n", "h e\0",
                                      "#version: 0.2\nh e\n", "h \xed\xa0\x80\n"};
    static const size_t len[] = {7, 5, 5, 4, 18, 6};
    builder b;
    builder_init(&b);
    reshape(&b, "tokenizer.bpe_merges", "U8", 1, (uint64_t[]){len[_i]}, 1);
    memcpy(find(&b, "tokenizer.bpe_merges")->bytes, bad[_i], len[_i]);
    build_fail(&b, CLIPN_E_FORMAT, "tokenizer.bpe_merges");
}
END_TEST

/* Lines the tokenizer cannot read (a blank line inside, one field, three fields) loaded,
 * then every clipn_tokenizer_from_model failed. */
START_TEST(bad_merges_lines)
{
    static const char *const bad[] = {"h e\n\nl o\n", "h e\nlo\nhe llo</w>\n",
                                      "h e\nl o x\nhe llo</w>\n", "h e\nl o\n \n"};
    builder b;
    builder_init(&b);
    size_t n = strlen(bad[_i]);
    reshape(&b, "tokenizer.bpe_merges", "U8", 1, (uint64_t[]){n}, 1);
    memcpy(find(&b, "tokenizer.bpe_merges")->bytes, bad[_i], n);
    build_fail(&b, CLIPN_E_FORMAT, "expected 2");
}
END_TEST

/* More merges than the tokenizer reads: a model with 60000 merges loaded, but the tokenizer
 * stopped at 48894 and emitted sot/eot ids other than the config's. */
START_TEST(too_many_merges_refused)
{
    const size_t n = CLIPN_TOK_MAX_MERGES + 1, V2 = 512 + n + 2;
    builder b;
    builder_init(&b);
    char v[16], sot[16], eot[16];
    snprintf(v, sizeof v, "%zu", V2);
    snprintf(sot, sizeof sot, "%zu", V2 - 2);
    snprintf(eot, sizeof eot, "%zu", V2 - 1);
    set_cfg(&b, "vocab_size", v);
    set_cfg(&b, "sot_id", sot);
    set_cfg(&b, "eot_id", eot);
    reshape(&b, "token_embedding.weight", "F32", 2, (uint64_t[]){V2, W}, 4);
    reshape(&b, "token_embedding_no.weight", "F32", 2, (uint64_t[]){V2, W}, 4);
    reshape(&b, "tokenizer.bpe_merges", "U8", 1, (uint64_t[]){4 * n}, 1);
    uint8_t *text = find(&b, "tokenizer.bpe_merges")->bytes;
    for (size_t i = 0; i < n; i++)
        memcpy(text + 4 * i, "h e\n", 4);
    build_fail(&b, CLIPN_E_FORMAT, "the tokenizer reads at most 48894");
}
END_TEST

/* 3 merges + 514 = 517 ids: a vocab of 516 rows cannot embed them all */
START_TEST(merges_must_fit_the_vocab)
{
    builder b;
    builder_init(&b);
    set_cfg(&b, "vocab_size", "516");
    set_cfg(&b, "sot_id", "514");
    set_cfg(&b, "eot_id", "515");
    reshape(&b, "token_embedding.weight", "F32", 2, (uint64_t[]){516, W}, 4);
    reshape(&b, "token_embedding_no.weight", "F32", 2, (uint64_t[]){516, W}, 4);
    build_fail(&b, CLIPN_E_FORMAT, "'tokenizer.bpe_merges' has 3 merges");
    /* 517 is enough, and a last line without "\n" still counts */
    builder_init(&b);
    set_cfg(&b, "vocab_size", "517");
    reshape(&b, "token_embedding.weight", "F32", 2, (uint64_t[]){517, W}, 4);
    reshape(&b, "token_embedding_no.weight", "F32", 2, (uint64_t[]){517, W}, 4);
    reshape(&b, "tokenizer.bpe_merges", "U8", 1, (uint64_t[]){sizeof MERGES - 2}, 1);
    memcpy(find(&b, "tokenizer.bpe_merges")->bytes, MERGES, sizeof MERGES - 2);
    builder_write(&b, path);
    clipn_model_free(load_ok());
    builder_free(&b);
}
END_TEST

START_TEST(logit_scale_overflow)
{
    builder b;
    builder_init(&b);
    float big = 1000.0f;
    memcpy(find(&b, "logit_scale")->bytes, &big, 4);
    build_fail(&b, CLIPN_E_FORMAT, "logit_scale");
}
END_TEST

/* ------------------------------------------------------------------ converter fixtures */

/* SHA-256 (FIPS 180-4), to compare loaded tensors with the converter fixtures' manifests. */
static void sha256_hex(const void *data, size_t len, char out[65])
{
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
#define ROR(x, n) ((x) >> (n) | (x) << (32 - (n)))
    const unsigned char *p = data;
    size_t total = (len + 9 + 63) / 64 * 64;
    for (size_t off = 0; off < total; off += 64) {
        unsigned char blk[64];
        for (size_t i = 0; i < 64; i++) {
            size_t j = off + i;
            blk[i] = j < len ? p[j] : j == len ? 0x80 : 0;
        }
        if (off + 64 == total)
            for (int i = 0; i < 8; i++)
                blk[56 + i] = (unsigned char)((uint64_t)len * 8 >> (56 - 8 * i));
        uint32_t w[64], a[8];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
                   (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        memcpy(a, h, sizeof a);
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) +
                          ((a[4] & a[5]) ^ (~a[4] & a[6])) + k[i] + w[i];
            uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) +
                          ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
            memmove(a + 1, a, 7 * sizeof a[0]);
            a[4] += t1;
            a[0] = t1 + t2;
        }
        for (int i = 0; i < 8; i++)
            h[i] += a[i];
    }
#undef ROR
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", h[i]);
}

/* Exact for values that came from f16 (the loader's conversion is lossless). */
static uint16_t f32_to_f16_exact(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000);
    int biased = (int)((b >> 23) & 0xff), exp = biased - 127;
    uint32_t mant = b & 0x7fffff;
    if (biased == 0xff)
        return sign | 0x7c00 | (mant ? 0x200 : 0);
    if (biased == 0)
        return sign;
    if (exp >= -14)
        return sign | (uint16_t)((exp + 15) << 10) | (uint16_t)(mant >> 13);
    return sign | (uint16_t)((mant | 0x800000) >> (-exp - 1)); /* f16 subnormal */
}

/* The loaded values of a checkpoint tensor name, from the model struct. */
static const float *model_tensor(const clipn_model *m, const char *name, size_t *n)
{
    const clipn_config *c = &m->config;
    static const struct {
        const char *prefix;
        size_t offset; /* of the clipn_transformer in clipn_model */
        int vision;
    } towers[] = {
        {"visual.transformer.resblocks.", offsetof(clipn_model, visual.transformer), 1},
        {"transformer.resblocks.", offsetof(clipn_model, text.transformer), 0},
        {"transformer_no.resblocks.", offsetof(clipn_model, text_no.transformer), 0},
    };
    for (int k = 0; k < 3; k++) {
        size_t len = strlen(towers[k].prefix);
        if (strncmp(name, towers[k].prefix, len) != 0)
            continue;
        const clipn_transformer *t = (const void *)((const char *)m + towers[k].offset);
        char *rest;
        long i = strtol(name + len, &rest, 10);
        if (i < 0 || i >= t->layers || *rest != '.')
            return NULL;
        const clipn_block *b = &t->resblocks[i];
        size_t W = (size_t)t->width, M = (size_t)t->mlp_width;
        rest++;
        const struct {
            const char *sfx;
            const float *p;
            size_t n;
        } f[] = {{"ln_1.weight", b->ln_1_weight, W}, {"ln_1.bias", b->ln_1_bias, W},
                 {"attn.in_proj_weight", b->attn_in_proj.weight, 3 * W * W},
                 {"attn.in_proj_bias", b->attn_in_proj.bias, 3 * W},
                 {"attn.out_proj.weight", b->attn_out_proj.weight, W * W},
                 {"attn.out_proj.bias", b->attn_out_proj.bias, W},
                 {"ln_2.weight", b->ln_2_weight, W}, {"ln_2.bias", b->ln_2_bias, W},
                 {"mlp.c_fc.weight", b->mlp_c_fc.weight, M * W},
                 {"mlp.c_fc.bias", b->mlp_c_fc.bias, M},
                 {"mlp.c_proj.weight", b->mlp_c_proj.weight, W * M},
                 {"mlp.c_proj.bias", b->mlp_c_proj.bias, W}};
        for (size_t j = 0; j < sizeof f / sizeof f[0]; j++)
            if (!strcmp(rest, f[j].sfx)) {
                *n = f[j].n;
                return f[j].p;
            }
        return NULL;
    }
    size_t Wv = (size_t)c->vision_width, T = (size_t)c->text_width, E = (size_t)c->embed_dim,
           P = (size_t)c->patch_size, G = (size_t)(c->image_size / c->patch_size),
           Cn = (size_t)c->context_length, Vn = (size_t)c->vocab_size;
    const struct {
        const char *name;
        const float *p;
        size_t n;
    } f[] = {
        {"visual.conv1.weight", m->visual.conv1_weight, Wv * 3 * P * P},
        {"visual.class_embedding", m->visual.class_embedding, Wv},
        {"visual.positional_embedding", m->visual.positional_embedding, (G * G + 1) * Wv},
        {"visual.ln_pre.weight", m->visual.ln_pre_weight, Wv},
        {"visual.ln_pre.bias", m->visual.ln_pre_bias, Wv},
        {"visual.ln_post.weight", m->visual.ln_post_weight, Wv},
        {"visual.ln_post.bias", m->visual.ln_post_bias, Wv},
        {"visual.proj", m->visual.proj, Wv * E},
        {"token_embedding.weight", m->text.token_embedding, Vn * T},
        {"positional_embedding", m->text.positional_embedding, Cn * T},
        {"ln_final.weight", m->text.ln_final_weight, T},
        {"ln_final.bias", m->text.ln_final_bias, T},
        {"text_projection", m->text.text_projection, T * E},
        {"token_embedding_no.weight", m->text_no.token_embedding, Vn * T},
        {"positional_embedding_no", m->text_no.positional_embedding, Cn * T},
        {"ln_final_no.weight", m->text_no.ln_final_weight, T},
        {"ln_final_no.bias", m->text_no.ln_final_bias, T},
        {"text_projection_no", m->text_no.text_projection, T * E},
        {"prompt_no", m->text_no.prompt_no, (size_t)c->n_prompt_no * Cn * T},
    };
    for (size_t j = 0; j < sizeof f / sizeof f[0]; j++)
        if (!strcmp(name, f[j].name)) {
            *n = f[j].n;
            return f[j].p;
        }
    return NULL;
}

/* Every tensor of the converter fixture's manifest, hashed from the loaded model. */
static void check_against_manifest(const char *model_path, const char *manifest_path,
                                   const char *dtype)
{
    clipn_model *m = NULL;
    clipn_error err;
    ck_assert_msg(clipn_model_load(model_path, NULL, &m, &err) == CLIPN_OK, "%s", err.message);
    FILE *f = fopen(manifest_path, "rb");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    cJSON *manifest = cJSON_Parse(text);
    ck_assert_ptr_nonnull(manifest);

    const cJSON *cfg = cJSON_GetObjectItem(manifest, "config"), *e;
    char json[2048];
    clipn_config_to_json(&m->config, json, sizeof json);
    cJSON *ours = cJSON_Parse(json);
    ck_assert_ptr_nonnull(ours);
    cJSON_ArrayForEach(e, cfg)
    {
        const cJSON *v = cJSON_GetObjectItem(ours, e->string);
        ck_assert_msg(v && cJSON_Compare(v, e, 1), "config %s differs", e->string);
    }
    cJSON_Delete(ours);

    int checked = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(manifest, "tensors"))
    {
        const char *want = cJSON_GetObjectItem(e, dtype)->valuestring;
        char got[65];
        if (!strcmp(e->string, "logit_scale")) { /* kept as exp() in the config */
            float ls = logf(m->config.logit_scale);
            ck_assert_float_eq_tol(ls, logf(1 / 0.07f), strcmp(dtype, "f16") ? 1e-6f : 1e-3f);
            continue;
        }
        size_t n = 0;
        const float *p = model_tensor(m, e->string, &n);
        ck_assert_msg(p != NULL, "manifest tensor %s not in the model", e->string);
        if (!strcmp(dtype, "f16")) {
            uint16_t *half = malloc(n * 2 + 1);
            ck_assert_ptr_nonnull(half);
            for (size_t i = 0; i < n; i++)
                half[i] = f32_to_f16_exact(p[i]);
            sha256_hex(half, n * 2, got);
            free(half);
        } else {
            sha256_hex(p, n * 4, got);
        }
        ck_assert_msg(!strcmp(got, want), "tensor %s: sha256 %s, manifest %s", e->string, got,
                      want);
        checked++;
    }
    ck_assert_int_gt(checked, 50);
    cJSON_Delete(manifest);
    clipn_model_free(m);
}

START_TEST(sha256_known_answers)
{
    char h[65];
    sha256_hex("abc", 3, h);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex("", 0, h);
    ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(converted_clipn_fixture_matches_manifest)
{
    check_against_manifest(FIXTURE("model/tiny_clipn.safetensors"),
                           FIXTURE("ckpt/tiny_clipn.json"), "f32");
}
END_TEST

START_TEST(converted_f16_openclip_fixture_matches_manifest)
{
    check_against_manifest(FIXTURE("model/tiny_openclip_f16.safetensors"),
                           FIXTURE("ckpt/tiny_openclip.json"), "f16");
}
END_TEST

/* The converter's int8 file (tests/fixtures/model/regen.sh): every row of both token
 * embeddings reads back as the file's q * scale, exactly, at INT8 and at fp32, within half
 * a step of the f32 file's rows; the f32 file at INT8 reads its own f32 rows. */
START_TEST(converted_int8_embeddings_round_trip)
{
    clipn_st_file f;
    clipn_error err;
    const char *int8_file = FIXTURE("model/tiny_clipn_int8.safetensors");
    ck_assert_int_eq(clipn_st_open(&f, int8_file, 1 << 20, 1000, &err), CLIPN_OK);
    clipn_model *m[3] = {NULL, NULL, NULL};
    const clipn_precision prec[3] = {CLIPN_PRECISION_DEFAULT, CLIPN_PRECISION_FP32,
                                     CLIPN_PRECISION_INT8};
    for (int k = 0; k < 3; k++) {
        clipn_load_opts o = {.precision = prec[k]};
        const char *p = k < 2 ? int8_file : FIXTURE("model/tiny_clipn.safetensors");
        ck_assert_msg(clipn_model_load(p, &o, &m[k], &err) == CLIPN_OK, "%s", err.message);
    }
    ck_assert_int_eq(clipn_model_precision(m[0]), CLIPN_PRECISION_INT8);
    ck_assert_int_eq(clipn_model_precision(m[2]), CLIPN_PRECISION_INT8);
    const int Vv = m[0]->config.vocab_size, Tw = m[0]->config.text_width;
    for (int tw = 0; tw < 2; tw++) {
        const clipn_st_tensor *q = clipn_st_find(&f, tw ? "token_embedding_no.weight"
                                                         : "token_embedding.weight");
        const clipn_st_tensor *sc = clipn_st_find(&f, tw ? "token_embedding_no.weight_scale"
                                                          : "token_embedding.weight_scale");
        ck_assert_ptr_nonnull(q);
        ck_assert_ptr_nonnull(sc);
        ck_assert_int_eq(q->dtype, CLIPN_ST_I8);
        ck_assert_int_eq(sc->dtype, CLIPN_ST_F32);
        const size_t groups = (size_t)sc->shape[1];
        ck_assert_uint_eq(groups, (size_t)(Tw + 63) / 64);
        const clipn_text_tower *t32 = tw ? &m[2]->text_no : &m[2]->text;
        ck_assert(in_map(m[2], t32->token_embedding));
        float *row = malloc(sizeof(float) * (size_t)Tw);
        ck_assert_ptr_nonnull(row);
        for (int id = 0; id < Vv; id++)
            for (int k = 0; k < 2; k++) {
                const clipn_text_tower *t = tw ? &m[k]->text_no : &m[k]->text;
                clipn_token_embedding_row(t, id, Tw, row);
                for (int c = 0; c < Tw; c++) {
                    float s;
                    memcpy(&s, sc->data + 4 * ((size_t)id * groups + (size_t)c / 64), 4);
                    const float want = (float)(int8_t)q->data[(size_t)id * Tw + c] * s;
                    ck_assert_msg(memcmp(&row[c], &want, 4) == 0,
                                  "tower %d row %d col %d model %d: %a, want %a", tw, id, c, k,
                                  row[c], want);
                    const float x = t32->token_embedding[(size_t)id * Tw + c];
                    ck_assert_float_le(fabsf(row[c] - x), 0.5f * s * (1 + 1e-6f));
                }
            }
        free(row);
    }
    for (int k = 0; k < 3; k++)
        clipn_model_free(m[k]);
    clipn_st_close(&f);
}
END_TEST

/* Pages of [p, p + n) mapped in this process (/proc/self/pagemap bit 63), counting only
 * the pages wholly inside. */
static size_t present_pages(const void *p, size_t n)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)p + page - 1) / page, hi = ((uintptr_t)p + n) / page;
    FILE *f = fopen("/proc/self/pagemap", "rb");
    ck_assert_ptr_nonnull(f);
    size_t count = 0;
    ck_assert_int_eq(fseeko(f, (off_t)(lo * 8), SEEK_SET), 0);
    for (uintptr_t i = lo; i < hi; i++) {
        uint64_t e;
        ck_assert_uint_eq(fread(&e, 8, 1, f), 1);
        count += (size_t)(e >> 63);
    }
    fclose(f);
    return count;
}

/* Token-embedding rows read from the mapping fault in whole page-cache folios: once a
 * context has looked up 256 rows (lib/nn/text_tower.c, EMBED_DROP_ROWS) none of the table's
 * pages stay mapped (f32 at fp32 and INT8, I8 in place), and the features do not change
 * when the pages come back. 8 prompts of 36 distinct tokens each: 8 x 38 rows, one call. */
START_TEST(embedding_pages_handed_back_after_lookup)
{
    static const char *const files[3] = {"model/tiny_clipn.safetensors",
                                         "model/tiny_clipn.safetensors",
                                         "model/tiny_clipn_int8.safetensors"};
    char p[256];
    snprintf(p, sizeof p, "tests/fixtures/%s", files[_i]);
    clipn_load_opts o = {.precision = _i == 1 ? CLIPN_PRECISION_INT8 : CLIPN_PRECISION_DEFAULT};
    clipn_model *m = NULL;
    clipn_ctx *ctx = NULL;
    clipn_error err;
    ck_assert_msg(clipn_model_load(p, &o, &m, &err) == CLIPN_OK, "%s", err.message);
    clipn_ctx_opts co = {.max_batch = 8};
    ck_assert_int_eq(clipn_ctx_new(m, &co, &ctx, &err), CLIPN_OK);
    const clipn_config *c = clipn_model_config(m);
    ck_assert_int_eq(c->context_length, 77);
    const size_t V8 = (size_t)c->vocab_size * (size_t)c->text_width;
    const void *table = m->text.token_embedding ? (const void *)m->text.token_embedding
                                                : (const void *)m->text.token_embedding_q;
    const size_t bytes = V8 * (m->text.token_embedding ? sizeof(float) : 1);
    ck_assert(in_map(m, table));
    int32_t ids[8 * 77] = {0};
    for (int k = 0; k < 8; k++) { /* sot, 36 ids spread over the vocab, eot */
        ids[k * 77] = c->sot_id;
        for (int t = 1; t <= 36; t++)
            ids[k * 77 + t] = (k * 36 + t * 13) % (c->vocab_size - 2);
        ids[k * 77 + 37] = c->eot_id;
    }
    float a[8 * 512], b2[8 * 512];
    ck_assert_int_le(c->embed_dim, 512);
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 8, a, &err), CLIPN_OK);
    ck_assert_uint_eq(present_pages(table, bytes), 0);
    volatile unsigned char touch = ((const unsigned char *)table)[bytes / 2]; /* refault */
    (void)touch;
    ck_assert_int_eq(clipn_encode_text(ctx, ids, 8, b2, &err), CLIPN_OK);
    ck_assert_mem_eq(a, b2, sizeof(float) * 8 * (size_t)c->embed_dim);
    ck_assert_uint_eq(present_pages(table, bytes), 0);
    clipn_ctx_free(ctx);
    clipn_model_free(m);
}
END_TEST

/* An int8 file from before I8 token embeddings (F16 embeddings) still loads: at fp32 its
 * embeddings are the F16 values, at INT8 (its default) they are quantized at load. */
START_TEST(old_int8_file_with_f16_embeddings_loads)
{
    const char *old = FIXTURE("model/tiny_clipn_int8_f16emb.safetensors");
    clipn_st_file f;
    clipn_error err;
    ck_assert_int_eq(clipn_st_open(&f, old, 1 << 20, 1000, &err), CLIPN_OK);
    const clipn_st_tensor *te = clipn_st_find(&f, "token_embedding.weight");
    ck_assert_int_eq(te->dtype, CLIPN_ST_F16);
    ck_assert_ptr_null(clipn_st_find(&f, "token_embedding.weight_scale"));
    for (int k = 0; k < 2; k++) {
        clipn_load_opts o = {.precision = k ? CLIPN_PRECISION_DEFAULT : CLIPN_PRECISION_FP32};
        clipn_model *m = NULL;
        ck_assert_msg(clipn_model_load(old, &o, &m, &err) == CLIPN_OK, "%s", err.message);
        ck_assert_int_eq(clipn_model_precision(m), k ? CLIPN_PRECISION_INT8 : CLIPN_PRECISION_FP32);
        const int Tw = m->config.text_width;
        ck_assert_int_le(Tw, 64);
        float row[64];
        for (int id = 0; id < m->config.vocab_size; id += 7) {
            clipn_token_embedding_row(&m->text, id, Tw, row);
            const float step = k ? m->text.token_embedding_scale[id] : 0.0f;
            for (int c = 0; c < Tw; c++) {
                const uint8_t *h = te->data + 2 * ((size_t)id * Tw + c);
                uint16_t bits = (uint16_t)(h[0] | h[1] << 8);
                /* normal F16 values (the random embeddings have no subnormals) */
                uint32_t e = (bits >> 10) & 0x1f, fb = (uint32_t)(bits & 0x8000) << 16 |
                                                       (e ? (e + 112) << 23 | (uint32_t)(bits & 0x3ff) << 13 : 0);
                float x;
                memcpy(&x, &fb, 4);
                if (k)
                    ck_assert_float_le(fabsf(row[c] - x), 0.5f * step * (1 + 1e-6f));
                else if (e)
                    ck_assert_float_eq(row[c], x);
            }
        }
        ck_assert(k ? m->text.token_embedding_q != NULL : m->text.token_embedding != NULL);
        clipn_model_free(m);
    }
    clipn_st_close(&f);
}
END_TEST

/* The reader from memory (head files use it) is the reader from a file: on the good file
 * and on every cut and byte flip of its header, both give the same status, message and
 * index. */
static unsigned char *slurp_file(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void same_as_file(const unsigned char *buf, size_t len, const char *what)
{
    write_bytes(path, buf, len);
    clipn_st_file ff, fm;
    clipn_error ef = {0}, em = {0};
    clipn_status sf = clipn_st_open(&ff, path, 1 << 20, 1000, &ef);
    clipn_status sm = clipn_st_open_memory(&fm, path, buf, len, 1 << 20, 1000, &em);
    ck_assert_msg(sf == sm, "%s: file %d (%s), memory %d (%s)", what, sf, ef.message, sm,
                  em.message);
    if (sf != CLIPN_OK) {
        ck_assert_str_eq(ef.message, em.message);
        return;
    }
    ck_assert_ptr_null(fm.map); /* the buffer stays the caller's */
    ck_assert_uint_eq(ff.n_tensors, fm.n_tensors);
    ck_assert_uint_eq(ff.data_len, fm.data_len);
    for (size_t i = 0; i < ff.n_tensors; i++) {
        const clipn_st_tensor *a = &ff.tensors[i], *b = &fm.tensors[i];
        ck_assert_str_eq(a->name, b->name);
        ck_assert_int_eq(a->dtype, b->dtype);
        ck_assert_int_eq(a->ndim, b->ndim);
        ck_assert_mem_eq(a->shape, b->shape, sizeof a->shape);
        ck_assert_uint_eq(a->begin, b->begin);
        ck_assert_uint_eq(a->end, b->end);
        ck_assert_ptr_eq(b->data, buf + (a->data - ff.map));
    }
    const char *fa = clipn_st_meta_string(&ff, "format"), *fb = clipn_st_meta_string(&fm, "format");
    if (fa)
        ck_assert_str_eq(fa, fb ? fb : "(missing)");
    else
        ck_assert_ptr_null(fb);
    clipn_st_close(&ff);
    clipn_st_close(&fm);
}

START_TEST(safetensors_from_memory_matches_file)
{
    builder b;
    builder_init(&b);
    builder_write(&b, path);
    builder_free(&b);
    size_t len;
    unsigned char *good = slurp_file(path, &len);
    same_as_file(good, len, "good file");
    clipn_st_file f;
    ck_assert_int_eq(clipn_st_open_memory(&f, path, good, len, 1 << 20, 1000, NULL), CLIPN_OK);
    ck_assert_str_eq(clipn_st_meta_string(&f, "format"), "libclipn");
    clipn_st_close(&f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | good[i];
    ck_assert_uint_lt(hlen, len);
    unsigned char *bad = malloc(len);
    ck_assert_ptr_nonnull(bad);
    char what[64];
    for (size_t cut = 0; cut < 8 + hlen + 64 && cut < len; cut += cut < 64 ? 1 : 13) {
        snprintf(what, sizeof what, "cut at %zu", cut);
        same_as_file(good, cut, what);
    }
    for (size_t i = 0; i < 8 + hlen; i += i < 8 ? 1 : 5) {
        memcpy(bad, good, len);
        bad[i] ^= i < 8 ? 0x40 : 0x01; /* '"' -> '#', digits -> neighbours, '[' -> 'Z' */
        snprintf(what, sizeof what, "byte %zu flipped", i);
        same_as_file(bad, len, what);
    }
    free(bad);
    free(good);
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("model_load");
    TCase *good = tcase_create("good");
    tcase_add_checked_fixture(good, setup, teardown);
    tcase_add_test(good, good_file_loads_with_config_and_values);
    tcase_add_test(good, misaligned_f32_is_copied);
    tcase_add_test(good, f16_and_bf16_convert);
        tcase_add_test(good, plain_clip_without_no_tower);
    tcase_add_test(good, no_tower_without_prompts);
    tcase_add_test(good, config_json_round_trips);
    suite_add_tcase(s, good);

    TCase *bad = tcase_create("damaged");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_set_timeout(bad, 30);
    tcase_add_test(bad, bad_arguments);
    tcase_add_test(bad, missing_file_and_directory_are_io);
    tcase_add_test(bad, empty_and_short_files);
    tcase_add_test(bad, header_length_beyond_file);
    tcase_add_test(bad, limits);
    tcase_add_test(bad, bad_json);
    tcase_add_test(bad, metadata_damage);
    tcase_add_loop_test(bad, each_config_field_is_required, 0, N_CONFIG_FIELDS);
    tcase_add_loop_test(bad, bad_config_values, 0,
                        (int)(sizeof bad_configs / sizeof bad_configs[0]));
    tcase_add_test(bad, prompt_without_no_tower);
    tcase_add_loop_test(bad, missing_tensor, 0, 5);
    tcase_add_test(bad, extra_tensors);
    tcase_add_test(bad, dtypes);
    tcase_add_test(bad, shapes);
    tcase_add_test(bad, data_offsets);
    tcase_add_test(bad, truncated_data_section);
    tcase_add_loop_test(bad, bad_merges_text, 0, 6);
    tcase_add_test(bad, merges_must_fit_the_vocab);
    tcase_add_loop_test(bad, bad_merges_lines, 0, 4);
    tcase_add_test(bad, too_many_merges_refused);
    tcase_add_test(bad, duplicate_json_keys_refused);
    tcase_add_test(bad, header_json_cost_bounded);
    tcase_add_test(bad, safetensors_from_memory_matches_file);
    tcase_add_loop_test(bad, non_finite_weights_refused, 0, 8);
    tcase_add_test(bad, logit_scale_overflow);
    tcase_add_loop_test(bad, int8_embedding_rows_exact, 0, 2);
    tcase_add_test(bad, int8_embedding_row_groups);
    tcase_add_loop_test(bad, int8_embedding_bad_scale_refused, 0, 7);
    tcase_add_test(bad, int8_embedding_bad_shape_refused);
    suite_add_tcase(s, bad);

    TCase *fixtures = tcase_create("converter_fixtures");
    tcase_add_test(fixtures, sha256_known_answers);
    tcase_add_test(fixtures, converted_clipn_fixture_matches_manifest);
    tcase_add_test(fixtures, converted_f16_openclip_fixture_matches_manifest);
    tcase_add_test(fixtures, converted_int8_embeddings_round_trip);
    tcase_add_loop_test(fixtures, embedding_pages_handed_back_after_lookup, 0, 3);
    tcase_add_test(fixtures, old_int8_file_with_f16_embeddings_loads);
    suite_add_tcase(s, fixtures);
    return s;
}
