/* Model config: the __metadata__ "config" JSON of a model file -> clipn_config, range-checked
 * (docs/model-format.md), and clipn_config_to_json, its writer. */
#include "internal.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_DEPTH 4

/* whose config it is (messages start with the path) and where errors go */
typedef struct config_reader {
    const char *path;
    clipn_error *err;
} config_reader;

static clipn_status missing(config_reader *L, const char *key)
{
    return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: config field '%s' is missing", L->path, key);
}

static clipn_status cfg_int(config_reader *L, const cJSON *cfg, const char *key, int lo, int hi,
                            int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v)
        return missing(L, key);
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble)
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: config field '%s' must be an integer",
                          L->path, key);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: config field '%s' is %.17g, must be in [%d, %d]", L->path, key,
                          v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return CLIPN_OK;
}

static clipn_status cfg_bool(config_reader *L, const cJSON *cfg, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v)
        return missing(L, key);
    if (!cJSON_IsBool(v))
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: config field '%s' must be true or false",
                          L->path, key);
    *out = cJSON_IsTrue(v);
    return CLIPN_OK;
}

/* Index of the field's string value in `choices` (NULL-terminated). */
static clipn_status cfg_choice(config_reader *L, const cJSON *cfg, const char *key,
                               const char *const *choices, const char *expected, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v)
        return missing(L, key);
    for (int i = 0; cJSON_IsString(v) && choices[i]; i++)
        if (strcmp(v->valuestring, choices[i]) == 0) {
            *out = i;
            return CLIPN_OK;
        }
    return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: config field '%s' must be %s", L->path, key,
                      expected);
}

/* A finite number in the open interval (lo, hi). */
static clipn_status cfg_number(config_reader *L, const cJSON *v, const char *key, double lo, double hi,
                               float *out)
{
    if (!v)
        return missing(L, key);
    if (!cJSON_IsNumber(v))
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: config field '%s' must be a number",
                          L->path, key);
    double d = v->valuedouble;
    if (!(d > lo && d < hi))
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: config field '%s' is %.9g, must be in (%g, %g)", L->path, key, d,
                          lo, hi);
    *out = (float)d;
    return CLIPN_OK;
}

static clipn_status cfg_vec3(config_reader *L, const cJSON *cfg, const char *key, double lo,
                             double hi, float out[3])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v)
        return missing(L, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: config field '%s' must be 3 numbers",
                          L->path, key);
    for (int i = 0; i < 3; i++) {
        clipn_status s = cfg_number(L, cJSON_GetArrayItem(v, i), key, lo, hi, &out[i]);
        if (s != CLIPN_OK)
            return s;
    }
    return CLIPN_OK;
}

static clipn_status config_mismatch(config_reader *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static clipn_status config_mismatch(config_reader *L, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return clipn_fail(L->err, CLIPN_E_FORMAT, "%s: config: %s", L->path, what);
}

/* Ranges keep every derived size (e.g. (S/P)^2 + 1 rows of width W) well inside int. */
static clipn_status parse_config(config_reader *L, const cJSON *j, clipn_config *c)
{
    static const char *const activations[] = {"gelu", "quickgelu", NULL};
    static const char *const poolings[] = {"argmax", NULL};
    const int DIM = 1 << 16, LAYERS = 1024;
    int act = 0, pool = 0;
    clipn_status s;
#define TRY(call)                                                                             \
    do {                                                                                      \
        if ((s = (call)) != CLIPN_OK)                                                         \
            return s;                                                                         \
    } while (0)
    TRY(cfg_int(L, j, "format_version", 0, 1 << 30, &c->format_version));
    if (c->format_version > CLIPN_FORMAT_VERSION)
        return clipn_fail(L->err, CLIPN_E_UNSUPPORTED,
                          "%s: config format_version %d is newer than this libclipn reads (%d)",
                          L->path, c->format_version, CLIPN_FORMAT_VERSION);
    if (c->format_version != CLIPN_FORMAT_VERSION)
        return config_mismatch(L, "format_version %d, expected %d", c->format_version,
                               CLIPN_FORMAT_VERSION);
    TRY(cfg_int(L, j, "embed_dim", 1, DIM, &c->embed_dim));
    TRY(cfg_int(L, j, "image_size", 1, 1 << 13, &c->image_size));
    TRY(cfg_int(L, j, "patch_size", 1, 1 << 13, &c->patch_size));
    TRY(cfg_int(L, j, "vision_width", 1, DIM, &c->vision_width));
    TRY(cfg_int(L, j, "vision_layers", 1, LAYERS, &c->vision_layers));
    TRY(cfg_int(L, j, "vision_heads", 1, DIM, &c->vision_heads));
    TRY(cfg_int(L, j, "vision_mlp_width", 1, 1 << 18, &c->vision_mlp_width));
    TRY(cfg_int(L, j, "context_length", 1, DIM, &c->context_length));
    TRY(cfg_int(L, j, "vocab_size", 1, 1 << 24, &c->vocab_size));
    TRY(cfg_int(L, j, "text_width", 1, DIM, &c->text_width));
    TRY(cfg_int(L, j, "text_layers", 1, LAYERS, &c->text_layers));
    TRY(cfg_int(L, j, "text_heads", 1, DIM, &c->text_heads));
    TRY(cfg_int(L, j, "text_mlp_width", 1, 1 << 18, &c->text_mlp_width));
    TRY(cfg_choice(L, j, "activation", activations, "\"gelu\" or \"quickgelu\"", &act));
    c->activation = act == 0 ? CLIPN_ACT_GELU : CLIPN_ACT_QUICKGELU;
    TRY(cfg_number(L, cJSON_GetObjectItemCaseSensitive(j, "ln_eps"), "ln_eps", 0.0, 1.0,
                   &c->ln_eps));
    if (!(c->ln_eps > 0.0f)) /* a tiny double can round to 0 as float */
        return config_mismatch(L, "ln_eps rounds to 0 as float32");
    TRY(cfg_int(L, j, "pad_id", 0, c->vocab_size - 1, &c->pad_id));
    TRY(cfg_int(L, j, "sot_id", 0, c->vocab_size - 1, &c->sot_id));
    TRY(cfg_int(L, j, "eot_id", 0, c->vocab_size - 1, &c->eot_id));
    TRY(cfg_choice(L, j, "pooling", poolings, "\"argmax\"", &pool));
    c->pooling = CLIPN_POOL_ARGMAX;
    TRY(cfg_bool(L, j, "has_no_tower", &c->has_no_tower));
    TRY(cfg_bool(L, j, "has_prompt_no", &c->has_prompt_no));
    TRY(cfg_int(L, j, "n_prompt_no", 0, 1 << 12, &c->n_prompt_no));
    TRY(cfg_vec3(L, j, "image_mean", -1e6, 1e6, c->image_mean));
    TRY(cfg_vec3(L, j, "image_std", 0.0, 1e6, c->image_std));
#undef TRY
    /* (x - mean) / std for x in [0, 1] must stay a usable float: a denormal std (1e-42
       loaded, then every image came out infinite) is refused */
    for (int i = 0; i < 3; i++)
        if (!(c->image_std[i] >= 1e-6f))
            return config_mismatch(L, "image_std[%d] is %g, must be at least 1e-6", i,
                                   (double)c->image_std[i]);

    if (c->vision_width % c->vision_heads != 0)
        return config_mismatch(L, "vision_width %d is not a multiple of vision_heads %d",
                               c->vision_width, c->vision_heads);
    if (c->text_width % c->text_heads != 0)
        return config_mismatch(L, "text_width %d is not a multiple of text_heads %d",
                               c->text_width, c->text_heads);
    if (c->image_size % c->patch_size != 0)
        return config_mismatch(L, "image_size %d is not a multiple of patch_size %d",
                               c->image_size, c->patch_size);
    if (c->sot_id == c->eot_id)
        return config_mismatch(L, "sot_id and eot_id are both %d", c->sot_id);
    if (c->has_prompt_no && !c->has_no_tower)
        return config_mismatch(L, "has_prompt_no is true but has_no_tower is false");
    if (c->has_prompt_no != (c->n_prompt_no > 0))
        return config_mismatch(L, "n_prompt_no %d does not match has_prompt_no %s",
                               c->n_prompt_no, c->has_prompt_no ? "true" : "false");
    return CLIPN_OK;
}

clipn_status clipn_config_parse(const char *path, const char *text, clipn_config *c,
                                clipn_error *err)
{
    config_reader reader = {.path = path, .err = err}, *L = &reader;
    /* 25 fields and two arrays of 3: far fewer than 256 values, no key twice */
    char what[300];
    snprintf(what, sizeof what, "%s: __metadata__ config", L->path);
    const clipn_json_limits lim = {.max_depth = MAX_CONFIG_DEPTH, .max_values = 256};
    cJSON *cfg = NULL;
    clipn_status js = clipn_json_parse_strict(text, strlen(text), &lim, what, &cfg, L->err);
    if (js != CLIPN_OK)
        return js;
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return clipn_fail(L->err, CLIPN_E_FORMAT,
                          "%s: __metadata__ config is not a JSON object", L->path);
    }
    clipn_status s = parse_config(L, cfg, c);
    cJSON_Delete(cfg);
    return s;
}

/* ------------------------------------------------------------------ config JSON */

typedef struct json_out {
    char *buf;
    size_t cap, len;
    int failed;                                /* a vsnprintf failed (glibc allocates) */
} json_out;

static void put(json_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(json_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->len < o->cap ? o->buf + o->len : NULL,
                      o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        o->failed = 1;
    else
        o->len += (size_t)n;
}

/* Shortest decimal that reads back as the same float; null for inf/nan (not JSON). */
static void put_float(json_out *o, float v)
{
    char tmp[32];
    if (!isfinite(v)) {
        put(o, "null");
        return;
    }
    for (int prec = 1; prec <= 9; prec++) {
        if (snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v) < 0) {
            o->failed = 1;
            return;
        }
        if (strtof(tmp, NULL) == v)
            break;
    }
    put(o, "%s", tmp);
}

static void put_vec3(json_out *o, const float v[3])
{
    put(o, "[");
    for (int i = 0; i < 3; i++) {
        put(o, i ? ", " : "");
        put_float(o, v[i]);
    }
    put(o, "]");
}

/* 0 when any piece failed to format: never a text with a piece silently missing (head
 * wrote a wrong fingerprint from one, info printed broken JSON). */
static size_t json_done(json_out *o)
{
    if (!o->failed)
        return o->len;
    if (o->cap)
        o->buf[0] = '\0';
    return 0;
}

size_t clipn_config_to_json(const clipn_config *c, char *buf, size_t cap)
{
    json_out o = {buf, buf ? cap : 0, 0, 0};
    if (!c) {
        put(&o, "null");
        return json_done(&o);
    }
    put(&o,
        "{\"format_version\": %d, \"embed_dim\": %d, \"image_size\": %d, \"patch_size\": %d, "
        "\"vision_width\": %d, \"vision_layers\": %d, \"vision_heads\": %d, "
        "\"vision_mlp_width\": %d, \"context_length\": %d, \"vocab_size\": %d, "
        "\"text_width\": %d, \"text_layers\": %d, \"text_heads\": %d, \"text_mlp_width\": %d, "
        "\"activation\": \"%s\", \"ln_eps\": ",
        c->format_version, c->embed_dim, c->image_size, c->patch_size, c->vision_width,
        c->vision_layers, c->vision_heads, c->vision_mlp_width, c->context_length,
        c->vocab_size, c->text_width, c->text_layers, c->text_heads, c->text_mlp_width,
        c->activation == CLIPN_ACT_QUICKGELU ? "quickgelu" : "gelu");
    put_float(&o, c->ln_eps);
    put(&o,
        ", \"pad_id\": %d, \"sot_id\": %d, \"eot_id\": %d, \"pooling\": \"argmax\", "
        "\"has_no_tower\": %s, \"has_prompt_no\": %s, \"n_prompt_no\": %d, \"image_mean\": ",
        c->pad_id, c->sot_id, c->eot_id, c->has_no_tower ? "true" : "false",
        c->has_prompt_no ? "true" : "false", c->n_prompt_no);
    put_vec3(&o, c->image_mean);
    put(&o, ", \"image_std\": ");
    put_vec3(&o, c->image_std);
    put(&o, ", \"logit_scale\": ");
    put_float(&o, c->logit_scale);
    put(&o, "}");
    return json_done(&o);
}
