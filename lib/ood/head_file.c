/* Head files: yes/no class heads saved once, reused by classify/eval (docs/head-format.md).
 * A small safetensors file: tensors heads.yes / heads.no [C, D] F32 and a __metadata__
 * naming the classes, the templates and the fingerprint of the model that built them. */
#include "internal.h"
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADS_FORMAT "libclipn-heads"
#define HEADS_VERSION "1"
#define HEADS_VERSION_NEG "2" /* heads.neg present (NegLabel) */
#define HEADS_MAX_HEADER (64u << 20)   /* class names and templates, generously */
#define HEADS_MAX_CLASSES 1000000
#define HEADS_MAX_DIM 65536

/* ------------------------------------------------------------------ fingerprints */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Strings are hashed with their NUL so ["ab","c"] and ["a","bc"] differ. */
static uint64_t fnv1a_strings(uint64_t h, const char *const *s, int n)
{
    h = fnv1a(h, &n, sizeof n);
    for (int i = 0; i < n; i++)
        h = fnv1a(h, s[i], strlen(s[i]) + 1);
    return h;
}

static void hex64(uint64_t h, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

clipn_status clipn_model_fingerprint(const clipn_model *model, char out[17], clipn_error *err)
{
    if (!model || !out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_model_fingerprint: NULL argument");
    const clipn_config *cfg = &model->config;
    char json[4096];
    size_t n = clipn_config_to_json(cfg, json, sizeof json);
    if (n == 0) /* a fingerprint of a partial config would name another model */
        return clipn_fail(err, CLIPN_E_NOMEM,
                          "clipn_model_fingerprint: out of memory formatting the config");
    if (n >= sizeof json)
        return clipn_fail(err, CLIPN_E_INTERNAL, "clipn_model_fingerprint: config too long");
    uint64_t h = fnv1a(FNV_OFFSET, json, n);
    size_t E = cfg->embed_dim > 0 ? (size_t)cfg->embed_dim : 0;
    if (model->visual.proj && cfg->vision_width > 0)
        h = fnv1a(h, model->visual.proj, (size_t)cfg->vision_width * E * sizeof(float));
    if (model->text.text_projection && cfg->text_width > 0)
        h = fnv1a(h, model->text.text_projection, (size_t)cfg->text_width * E * sizeof(float));
    if (cfg->has_no_tower && model->text_no.text_projection && cfg->text_width > 0)
        h = fnv1a(h, model->text_no.text_projection,
                  (size_t)cfg->text_width * E * sizeof(float));
    hex64(h, out);
    return CLIPN_OK;
}

/* ------------------------------------------------------------------ save */

static cJSON *string_list(const char *const *s, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        cJSON *item = cJSON_CreateString(s[i]);
        if (!item || !cJSON_AddItemToArray(a, item)) {
            cJSON_Delete(item);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* Serialises a JSON value and stores it as a string field (safetensors metadata values
 * must be strings). Returns 0 on success. */
static int add_json_string(cJSON *obj, const char *key, cJSON *value)
{
    if (!value)
        return -1;
    char *text = cJSON_PrintUnformatted(value);
    cJSON_Delete(value);
    if (!text)
        return -1;
    cJSON *s = cJSON_AddStringToObject(obj, key, text);
    cJSON_free(text);
    return s ? 0 : -1;
}

/* Attach item under key; on failure (out of memory, or item NULL) free it and return 0.
 * cJSON_AddItemToObject fails when it cannot copy the key, and an unchecked add saved a
 * head file without its __metadata__ or a tensor's shape (the allocation-failure loop in
 * tests/test_faults.c found it). */
static int attach(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static int append_number(cJSON *array, double v)
{
    cJSON *n = cJSON_CreateNumber(v);
    if (!n || !cJSON_AddItemToArray(array, n)) {
        cJSON_Delete(n);
        return 0;
    }
    return 1;
}

static cJSON *tensor_entry(int C, int D, size_t begin, size_t end)
{
    cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *off = cJSON_CreateArray();
    if (!t || !append_number(shape, C) || !append_number(shape, D) ||
        !append_number(off, (double)begin) || !append_number(off, (double)end)) {
        cJSON_Delete(t);
        cJSON_Delete(shape);
        cJSON_Delete(off);
        return NULL;
    }
    int have_shape = attach(t, "shape", shape); /* attach frees what it cannot attach */
    if (!have_shape)
        cJSON_Delete(off);
    if (!have_shape || !attach(t, "data_offsets", off) ||
        !cJSON_AddStringToObject(t, "dtype", "F32")) {
        cJSON_Delete(t);
        return NULL;
    }
    return t;
}

/* Every row of a head must be a unit vector (clipn_heads_build normalises them; the
 * scores assume it): a zero, non-finite or unnormalised row means a broken writer. */
#define HEADS_NORM_TOLERANCE 1e-3

static clipn_status check_rows(const char *path, const float *x, size_t C, size_t D,
                               const char *name, clipn_error *err)
{
    for (size_t c = 0; c < C; c++) {
        double ss = 0.0;
        const float *row = x + c * D;
        for (size_t d = 0; d < D; d++) {
            if (!isfinite(row[d]))
                return clipn_fail(err, CLIPN_E_FORMAT, "%s: %s row %zu holds a non-finite value",
                                  path, name, c);
            ss += (double)row[d] * row[d];
        }
        double norm = sqrt(ss);
        if (norm == 0.0)
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: %s row %zu is zero", path, name, c);
        if (fabs(norm - 1.0) > HEADS_NORM_TOLERANCE)
            return clipn_fail(err, CLIPN_E_FORMAT,
                              "%s: %s row %zu has norm %.6g; head rows must be unit vectors "
                              "(within %g)",
                              path, name, c, norm, HEADS_NORM_TOLERANCE);
    }
    return CLIPN_OK;
}

static clipn_status check_strings(const char *const *s, int n, const char *what,
                                  clipn_error *err)
{
    if (n > 0 && !s)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_save: %s is NULL", what);
    for (int i = 0; i < n; i++)
        if (!s[i])
            return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_save: %s entry %d is NULL",
                              what, i);
    return CLIPN_OK;
}

clipn_status clipn_heads_save(const char *path, const clipn_model *model,
                              const clipn_heads *heads, const char *const *classes,
                              const char *const *templates, int n_templates,
                              const char *const *no_templates, int n_no_templates,
                              clipn_error *err)
{
    if (!path || !model || !heads || !heads->yes || !classes || heads->n_classes <= 0 ||
        heads->dim <= 0 || n_templates < 0 || (no_templates && n_no_templates < 0))
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_save: NULL or empty argument");
    if (heads->n_neg < 0 || (heads->n_neg > 0 && (heads->neg_groups < 1 ||
                                                  heads->neg_groups > heads->n_neg)))
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_save: %d negatives in %d "
                          "groups", heads->n_neg, heads->neg_groups);
    if (heads->n_classes > HEADS_MAX_CLASSES || heads->dim > HEADS_MAX_DIM)
        return clipn_fail(err, CLIPN_E_LIMIT, "clipn_heads_save: heads too large");
    if (!no_templates) {
        no_templates = templates;
        n_no_templates = n_templates;
    }
    clipn_status st;
    if ((st = check_strings(classes, heads->n_classes, "classes", err)) != CLIPN_OK ||
        (st = check_strings(templates, n_templates, "templates", err)) != CLIPN_OK ||
        (st = check_strings(no_templates, n_no_templates, "no_templates", err)) != CLIPN_OK)
        return st;
    size_t C = (size_t)heads->n_classes, D = (size_t)heads->dim, bytes = C * D * sizeof(float);
    if ((st = check_rows(path, heads->yes, C, D, "heads.yes", err)) != CLIPN_OK ||
        (heads->no && (st = check_rows(path, heads->no, C, D, "heads.no", err)) != CLIPN_OK) ||
        (heads->n_neg > 0 && heads->neg &&
         (st = check_rows(path, heads->neg, (size_t)heads->n_neg, D, "heads.neg", err)) !=
             CLIPN_OK))
        return st;
    /* Replacing the model's own file would lose it (the CLI refuses this too). */
    struct stat sb;
    if (model->file_ino && stat(path, &sb) == 0 && sb.st_dev == model->file_dev &&
        sb.st_ino == model->file_ino)
        return clipn_fail(err, CLIPN_E_INVALID_ARG,
                          "%s: is the model file; refusing to overwrite it with heads", path);
    char model_fp[17], prompts_fp[17];
    st = clipn_model_fingerprint(model, model_fp, err);
    if (st != CLIPN_OK)
        return st;
    uint64_t h = fnv1a_strings(FNV_OFFSET, classes, heads->n_classes);
    h = fnv1a_strings(h, templates, n_templates);
    h = fnv1a_strings(h, no_templates, n_no_templates);
    hex64(h, prompts_fp);

    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    int bad = !root;
    if (!attach(root, "__metadata__", bad ? (cJSON_Delete(meta), NULL) : meta))
        bad = 1;
    if (!bad)
        bad = !cJSON_AddStringToObject(meta, "format", HEADS_FORMAT) ||
              !cJSON_AddStringToObject(meta, "version",
                                       heads->n_neg > 0 ? HEADS_VERSION_NEG : HEADS_VERSION) ||
              !cJSON_AddStringToObject(meta, "model_fingerprint", model_fp) ||
              !cJSON_AddStringToObject(meta, "prompts_fingerprint", prompts_fp) ||
              add_json_string(meta, "classes", string_list(classes, heads->n_classes)) ||
              add_json_string(meta, "templates", string_list(templates, n_templates)) ||
              add_json_string(meta, "no_templates", string_list(no_templates, n_no_templates));
    const size_t data_end = heads->no ? 2 * bytes : bytes;
    const size_t neg_bytes = heads->n_neg > 0 ? (size_t)heads->n_neg * D * sizeof(float) : 0;
    if (!bad && neg_bytes) {
        char groups[16];
        snprintf(groups, sizeof groups, "%d", heads->neg_groups);
        bad = !heads->neg || !heads->neg_prompts ||
              !attach(root, "heads.neg",
                      tensor_entry(heads->n_neg, heads->dim, data_end, data_end + neg_bytes)) ||
              !cJSON_AddStringToObject(meta, "neg_groups", groups) ||
              add_json_string(meta, "negatives",
                              string_list((const char *const *)heads->neg_prompts,
                                          heads->n_neg));
    }
    if (!bad)
        bad = !attach(root, "heads.yes", tensor_entry(heads->n_classes, heads->dim, 0, bytes)) ||
              (heads->no &&
               !attach(root, "heads.no",
                       tensor_entry(heads->n_classes, heads->dim, bytes, 2 * bytes)));
    char *header = bad ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!header)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory building the header", path);

    /* Pad the header with spaces so the data starts 8-byte aligned, as safetensors does. */
    size_t hlen = strlen(header), padded = (8 + hlen + 7) / 8 * 8 - 8;
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    clipn_output out;
    if ((st = clipn_output_begin(&out, path, err)) != CLIPN_OK) {
        cJSON_free(header);
        return st;
    }
    static const char spaces[8] = "        ";
    clipn_output_write(&out, len_le, 8);
    clipn_output_write(&out, header, hlen);
    clipn_output_write(&out, spaces, padded - hlen);
    clipn_output_write(&out, heads->yes, bytes);
    if (heads->no)
        clipn_output_write(&out, heads->no, bytes);
    if (neg_bytes)
        clipn_output_write(&out, heads->neg, neg_bytes);
    cJSON_free(header);
    return clipn_output_commit(&out, err);
}

/* ------------------------------------------------------------------ load */

/* Checks one tensor is F32 [C, D] (C and D in range, equal to *C, *D when those are set).
 * The reader has checked its offsets against its shape, the data section and the other
 * tensors. */
static clipn_status check_tensor(const char *path, const clipn_st_tensor *t, const char *name,
                                 int64_t *C, int64_t *D, clipn_error *err)
{
    if (t->dtype != CLIPN_ST_F32 || t->ndim != 2)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor %s must be F32 with a 2-d shape",
                          path, name);
    const uint64_t c = t->shape[0], d = t->shape[1];
    if (c < 1 || c > HEADS_MAX_CLASSES || d < 1 || d > HEADS_MAX_DIM)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor %s has a bad shape", path, name);
    if (*C >= 0 && ((int64_t)c != *C || (int64_t)d != *D))
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: heads.yes and heads.no shapes differ", path);
    *C = (int64_t)c;
    *D = (int64_t)d;
    return CLIPN_OK;
}

static clipn_status read_floats(const char *path, const clipn_st_tensor *t, size_t count,
                                const char *name, float **out, clipn_error *err)
{
    float *x = malloc(count * sizeof *x);
    if (!x)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory for %s", path, name);
    memcpy(x, t->data, count * sizeof *x); /* t->data need not be aligned */
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i])) {
            free(x);
            return clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor %s holds a non-finite value",
                              path, name);
        }
    *out = x;
    return CLIPN_OK;
}

/* Strict JSON; more entries or values than a head file has means it is not one. */
static clipn_status parse_json(const char *text, size_t len, const clipn_json_limits *lim,
                               const char *what, cJSON **out, clipn_error *err)
{
    clipn_status st = clipn_json_parse_strict(text, len, lim, what, out, err);
    if (st == CLIPN_E_LIMIT) {
        st = CLIPN_E_FORMAT;
        if (err)
            err->code = st;
    }
    return st;
}

/* Version 2: heads.neg [N, D] after the other tensors, metadata negatives (N prompts) and
 * neg_groups (1..N). */
static clipn_status parse_negatives(const char *path, const clipn_st_file *f, int D,
                                    clipn_heads *h, clipn_error *err)
{
    const clipn_st_tensor *t = clipn_st_find(f, "heads.neg");
    const char *groups = clipn_st_meta_string(f, "neg_groups");
    const char *names = clipn_st_meta_string(f, "negatives");
    if (!t || !groups || !names)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: version 2 needs heads.neg, negatives and "
                          "neg_groups", path);
    int64_t N = -1, Dn = -1;
    clipn_status st = check_tensor(path, t, "heads.neg", &N, &Dn, err);
    if (st != CLIPN_OK)
        return st;
    if (Dn != D)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: heads.neg has dim %lld, heads.yes %d", path,
                          (long long)Dn, D);
    char *end = NULL;
    long g = strtol(groups, &end, 10);
    if (!*groups || *end || g < 1 || g > N)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: neg_groups \"%.20s\" is not in 1..%lld",
                          path, groups, (long long)N);
    char what[300];
    snprintf(what, sizeof what, "%s: metadata negatives", path);
    const clipn_json_limits lim = {.max_depth = 1, .max_values = (size_t)N + 1};
    cJSON *list = NULL;
    if ((st = parse_json(names, strlen(names), &lim, what, &list, err)) != CLIPN_OK)
        return st;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != N) {
        cJSON_Delete(list);
        return clipn_fail(err, CLIPN_E_FORMAT, "%s: negatives is not a list of %lld prompts",
                          path, (long long)N);
    }
    h->neg_prompts = calloc((size_t)N, sizeof *h->neg_prompts);
    h->n_neg = (int)N; /* set now so that a failure below frees what was filled */
    h->neg_groups = (int)g;
    int i = 0;
    for (const cJSON *it = list->child; it && st == CLIPN_OK; it = it->next, i++) {
        if (!h->neg_prompts)
            st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
        else if (!cJSON_IsString(it))
            st = clipn_fail(err, CLIPN_E_FORMAT, "%s: negative %d is not a string", path, i);
        else if (!(h->neg_prompts[i] = strdup(it->valuestring)))
            st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    }
    cJSON_Delete(list);
    if (st == CLIPN_OK)
        st = read_floats(path, t, (size_t)N * (size_t)D, "heads.neg", &h->neg, err);
    return st;
}

/* heads.yes, heads.no and heads.neg at most */
#define HEADS_MAX_TENSORS 3

static clipn_status parse_heads(const char *path, const unsigned char *buf, size_t len,
                                const clipn_model *model, clipn_heads *h, clipn_error *err)
{
    /* The safetensors reader checks the structure: header length, strict JSON (no key
       twice, bounded values), dtypes, shapes against offsets, offsets inside the data, no
       two tensors sharing bytes. More tensors or values than a head file has means it is
       not one: a format error, not a limit. */
    clipn_st_file f;
    clipn_status st = clipn_st_open_memory(&f, path, buf, len, HEADS_MAX_HEADER,
                                           HEADS_MAX_TENSORS, err);
    if (st == CLIPN_E_LIMIT) {
        st = CLIPN_E_FORMAT;
        if (err)
            err->code = st;
    }
    if (st != CLIPN_OK)
        return st;
    const char *format = clipn_st_meta_string(&f, "format");
    const char *version = clipn_st_meta_string(&f, "version");
    const char *fp = clipn_st_meta_string(&f, "model_fingerprint");
    const char *names = clipn_st_meta_string(&f, "classes");
    cJSON *class_list = NULL;
    char what[300];
    if (!format || strcmp(format, HEADS_FORMAT)) {
        st = clipn_fail(err, CLIPN_E_FORMAT, "%s: not a libclipn head file (format is not \"%s\")",
                        path, HEADS_FORMAT);
        goto done;
    }
    const int with_neg = version && !strcmp(version, HEADS_VERSION_NEG);
    if (!version || (strcmp(version, HEADS_VERSION) && !with_neg)) {
        st = clipn_fail(err, CLIPN_E_UNSUPPORTED, "%s: head file version %s is not supported",
                        path, version ? version : "(missing)");
        goto done;
    }
    if (!fp || strlen(fp) != 16 || !names) {
        st = clipn_fail(err, CLIPN_E_FORMAT, "%s: metadata lacks model_fingerprint or classes",
                        path);
        goto done;
    }
    if (model) {
        char want[17];
        if ((st = clipn_model_fingerprint(model, want, err)) != CLIPN_OK)
            goto done;
        if (strcmp(want, fp)) {
            st = clipn_fail(err, CLIPN_E_INVALID_ARG,
                            "%s: heads were built from another model (fingerprint %s, this "
                            "model is %s); rebuild them with `clipn head`",
                            path, fp, want);
            goto done;
        }
    }
    for (size_t i = 0; i < f.n_tensors; i++) {
        const char *name = f.tensors[i].name;
        if (strcmp(name, "heads.yes") && strcmp(name, "heads.no") &&
            (!with_neg || strcmp(name, "heads.neg"))) {
            st = clipn_fail(err, CLIPN_E_FORMAT, "%s: unexpected tensor \"%.100s\"", path, name);
            goto done;
        }
    }
    const clipn_st_tensor *t_yes = clipn_st_find(&f, "heads.yes");
    const clipn_st_tensor *t_no = clipn_st_find(&f, "heads.no");
    if (!t_yes) {
        st = clipn_fail(err, CLIPN_E_FORMAT, "%s: tensor heads.yes is missing", path);
        goto done;
    }
    int64_t C = -1, D = -1;
    if ((st = check_tensor(path, t_yes, "heads.yes", &C, &D, err)) != CLIPN_OK)
        goto done;
    if (t_no && (st = check_tensor(path, t_no, "heads.no", &C, &D, err)) != CLIPN_OK)
        goto done;
    size_t count = (size_t)C * (size_t)D;
    if (model && D != model->config.embed_dim) {
        st = clipn_fail(err, CLIPN_E_INVALID_ARG, "%s: heads have dim %lld, the model %d", path,
                        (long long)D, model->config.embed_dim);
        goto done;
    }
    /* one array of C strings: C + 1 values */
    snprintf(what, sizeof what, "%s: metadata classes", path);
    const clipn_json_limits names_lim = {.max_depth = 1, .max_values = (size_t)C + 1};
    if ((st = parse_json(names, strlen(names), &names_lim, what, &class_list, err)) != CLIPN_OK)
        goto done;
    if (!cJSON_IsArray(class_list) || cJSON_GetArraySize(class_list) != C) {
        st = clipn_fail(err, CLIPN_E_FORMAT, "%s: classes is not a list of %lld names", path,
                        (long long)C);
        goto done;
    }
    h->n_classes = (int)C;
    h->dim = (int)D;
    h->class_names = calloc((size_t)C, sizeof *h->class_names);
    if (!h->class_names) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int c = 0;
    for (const cJSON *it = class_list->child; it; it = it->next, c++) {
        if (!cJSON_IsString(it)) {
            st = clipn_fail(err, CLIPN_E_FORMAT, "%s: class %d is not a string", path, c);
            goto done;
        }
        if (!(h->class_names[c] = strdup(it->valuestring))) {
            st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    if ((st = read_floats(path, t_yes, count, "heads.yes", &h->yes, err)) != CLIPN_OK)
        goto done;
    if (t_no && (st = read_floats(path, t_no, count, "heads.no", &h->no, err)) != CLIPN_OK)
        goto done;
    if ((st = check_rows(path, h->yes, (size_t)C, (size_t)D, "heads.yes", err)) != CLIPN_OK ||
        (h->no && (st = check_rows(path, h->no, (size_t)C, (size_t)D, "heads.no", err)) != CLIPN_OK))
        goto done;
    if (with_neg && (st = parse_negatives(path, &f, (int)D, h, err)) != CLIPN_OK)
        goto done;
    if (with_neg && (st = check_rows(path, h->neg, (size_t)h->n_neg, (size_t)D, "heads.neg",
                                     err)) != CLIPN_OK)
        goto done;
    if (model && model->config.has_no_tower && !t_no) {
        st = clipn_fail(err, CLIPN_E_FORMAT, "%s: heads.no is missing but the model has a no tower",
                        path);
        goto done;
    }
done:
    cJSON_Delete(class_list);
    clipn_st_close(&f);
    return st;
}

clipn_status clipn_heads_load(const char *path, const clipn_model *model, clipn_heads **out,
                              clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_load: out is NULL");
    *out = NULL;
    if (!path)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_heads_load: path is NULL");
    /* Two [C, D] float tensors plus the header: 1 GiB of data is 65k classes at D = 2048,
     * far beyond any real head; refuse bigger files before reading them. */
    const uint64_t max = (uint64_t)HEADS_MAX_HEADER + 8 + (1ull << 30);
    unsigned char *buf = NULL;
    size_t size = 0;
    clipn_status rs = clipn_read_file(path, max, &buf, &size, err);
    if (rs != CLIPN_OK)
        return rs;
    clipn_heads *h = calloc(1, sizeof *h);
    clipn_status st = h ? parse_heads(path, buf, size, model, h, err)
                        : clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    free(buf);
    if (st != CLIPN_OK) {
        if (h && !h->class_names)
            h->n_classes = 0;
        clipn_heads_free(h);
        return st;
    }
    *out = h;
    return CLIPN_OK;
}
