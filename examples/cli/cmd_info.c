/* clipn info FILE: a model's config plus a few derived facts (one JSON object), a heads
 * file's classes, templates and fingerprint; any other file is named for what it is, with
 * the converter call that makes a model of it. */
#include "cli_inputs.h"
#include "cli_text.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipn info FILE [--model M] [--json] [--precision P]\n\n"
               "A libclipn model file: load it (validating every tensor) and print its config\n"
               "as JSON, with the file size, tensor dtypes, source and parameter counts, and\n"
               "what runs (\"runs\": precision, and why when not what was asked; kernels).\n"
               "A heads file (clipn head): its classes (count and the first ones), templates\n"
               "and model fingerprint; with --model M, whether it was built from M (exit\n"
               "status 1 when not); --json prints one object instead of text.\n"
               "A PyTorch checkpoint, an open_clip or Hugging Face file: says so, and which\n"
               "weights_tools/clipn_convert.py call makes a model of it (exit status 1).\n\n"
               CLI_PRECISION_USAGE);
}

/* A JSON string from valid UTF-8 (cli_utf8_valid): control characters as \u00XX. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* Re-indent the library's one-line config object, one field per line. */
static void print_config(const char *json, int indent)
{
    int depth = 0, in_string = 0;
    for (const char *p = json; *p; p++) {
        char c = *p;
        if (in_string) {
            putchar(c);
            if (c == '\\' && p[1])
                putchar(*++p);
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0 && c == '}') {
                printf("\n%*s}", indent, "");
                continue;
            }
        } else if (c == ',' && depth == 1) {
            printf(",\n%*s", indent + 2, "");
            while (p[1] == ' ')
                p++;
            continue;
        }
        putchar(c);
        if (c == '{' && depth == 1)
            printf("\n%*s", indent + 2, "");
    }
}

static unsigned long long block_params(unsigned long long w, unsigned long long m)
{
    return 2 * w + (3 * w * w + 3 * w) + (w * w + w) + 2 * w + (m * w + m) + (w * m + w);
}

static unsigned long long text_params(const clipn_config *c)
{
    unsigned long long t = (unsigned long long)c->text_width;
    return (unsigned long long)c->vocab_size * t + (unsigned long long)c->context_length * t +
           (unsigned long long)c->text_layers * block_params(t, (unsigned long long)c->text_mlp_width) +
           2 * t + t * (unsigned long long)c->embed_dim;
}

/* Count tensors per dtype and read the informative "source" straight from the header
 * (already validated by clipn_model_load). 0, or -1 with the reason in *why. */
typedef struct header_facts {
    char *source; /* NULL when the file has none */
    unsigned long counts[4];
} header_facts;
static const char *const dtype_names[] = {"F32", "F16", "BF16", "U8"};

static int read_header_facts(const char *path, header_facts *hf, const char **why)
{
    memset(hf, 0, sizeof *hf);
    FILE *f = fopen(path, "rb");
    unsigned char len8[8];
    cJSON *header = NULL;
    *why = "cannot read the header";
    if (f && fread(len8, 1, 8, f) == 8) {
        unsigned long long n = 0;
        for (int i = 7; i >= 0; i--)
            n = n << 8 | len8[i];
        char *text = n < (1ull << 32) ? malloc((size_t)n + 1) : NULL;
        if (!text && n < (1ull << 32))
            *why = "out of memory";
        if (text && fread(text, 1, (size_t)n, f) == (size_t)n) {
            text[n] = '\0';
            header = cJSON_Parse(text);
            if (!header)
                *why = "out of memory parsing the header"; /* it parsed when loaded */
        }
        free(text);
    }
    if (f)
        fclose(f);
    if (!header)
        return -1;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(header, "__metadata__");
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(meta, "source");
    int rc = 0;
    if (cJSON_IsString(source) && !(hf->source = cli_utf8_valid(source->valuestring))) {
        *why = "out of memory";
        rc = -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, header)
    {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        for (int k = 0; k < 4 && cJSON_IsString(d); k++)
            hf->counts[k] += strcmp(d->valuestring, dtype_names[k]) == 0;
    }
    cJSON_Delete(header);
    return rc;
}

static void print_header_facts(const header_facts *hf)
{
    printf("  \"source\": ");
    if (hf->source) {
        print_json_string(hf->source);
    } else {
        printf("null");
    }
    printf(",\n  \"tensors_by_dtype\": {");
    int first = 1;
    for (int k = 0; k < 4; k++)
        if (hf->counts[k]) {
            printf("%s\"%s\": %lu", first ? "" : ", ", dtype_names[k], hf->counts[k]);
            first = 0;
        }
    printf("},\n");
}

/* ------------------------------------------------------------------ what a file is */

enum file_kind { KIND_OTHER, KIND_SAFETENSORS, KIND_ZIP, KIND_PICKLE, KIND_GZIP };

/* The first bytes of a file (up to cap), 0 bytes when it cannot be read. */
static size_t read_head(const char *path, unsigned char *buf, size_t cap)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0; /* let the model loader say why */
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static int contains(const unsigned char *buf, size_t n, const char *s)
{
    return memmem(buf, n, s, strlen(s)) != NULL;
}

/* The safetensors JSON header of path, or NULL. */
static cJSON *safetensors_header(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char len8[8];
    cJSON *header = NULL;
    if (f && fread(len8, 1, 8, f) == 8) {
        unsigned long long n = 0;
        for (int i = 7; i >= 0; i--)
            n = n << 8 | len8[i];
        char *text = n >= 2 && n <= (64ull << 20) ? malloc((size_t)n + 1) : NULL;
        if (text && fread(text, 1, (size_t)n, f) == (size_t)n) {
            text[n] = '\0';
            header = cJSON_ParseWithLength(text, (size_t)n);
        }
        free(text);
    }
    if (f)
        fclose(f);
    return header;
}

static const char *meta_string(const cJSON *header, const char *key)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(header, "__metadata__");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int has_tensor_prefix(const cJSON *header, const char *prefix)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, header) if (e->string && !strncmp(e->string, prefix, strlen(prefix)))
        return 1;
    return 0;
}

/* Not a libclipn file: one line saying what it is and how to convert it. Returns 1. */
static int not_a_model(const char *cmd, const char *path, enum file_kind kind,
                       const unsigned char *buf, size_t n, const cJSON *header)
{
    static const char convert[] = "convert it with: python3 -I -S weights_tools/clipn_convert.py";
    if (kind == KIND_ZIP) {
        if (!contains(buf, n, "data.pkl"))
            return cli_fail(cmd, "%s is a zip archive, not a libclipn model (a PyTorch "
                                 "checkpoint would hold data.pkl)", path);
        const char *what = contains(buf, n, "transformer_no") || contains(buf, n, "prompt_no")
                               ? "a CLIPN PyTorch checkpoint (torch.save zip)"
                           : contains(buf, n, "visual.transformer")
                               ? "an open_clip PyTorch checkpoint (torch.save zip, no \"no\" tower)"
                               : "a PyTorch checkpoint (torch.save zip)";
        return cli_fail(cmd, "%s is %s, not a libclipn model: %s %s OUT.safetensors "
                             "(docs/converting.md)", path, what, convert, path);
    }
    if (kind == KIND_PICKLE)
        return cli_fail(cmd, "%s is a legacy PyTorch checkpoint (a pickle, torch < 1.6): the "
                             "converter refuses it; re-save it with a recent torch if you trust "
                             "it, then %s (docs/converting.md)", path, convert);
    if (kind == KIND_GZIP)
        return cli_fail(cmd, "%s is a gzip file, not a libclipn model (gunzip it first)", path);
    /* safetensors without libclipn metadata */
    if (has_tensor_prefix(header, "vision_model.") || has_tensor_prefix(header, "text_model."))
        return cli_fail(cmd, "%s is a Hugging Face CLIPModel safetensors file, not a libclipn "
                             "model: %s %s OUT.safetensors (add --quickgelu if its config.json "
                             "says \"hidden_act\": \"quick_gelu\")", path, convert, path);
    if (has_tensor_prefix(header, "visual.") || has_tensor_prefix(header, "transformer"))
        return cli_fail(cmd, "%s is an open_clip / CLIPN state dict in safetensors, not a "
                             "libclipn model: %s %s OUT.safetensors", path, convert, path);
    return -1; /* unknown: the model loader says what is wrong */
}

/* ------------------------------------------------------------------ heads files */

/* Print a heads file's facts (text or one JSON object); with a model, whether it matches.
 * The file is validated by clipn_heads_load first. Returns the exit status. */
/* Appends s, made valid UTF-8, to a JSON array; 0 when out of memory. */
static int string_to_array(cJSON *arr, const char *s)
{
    char *v = cli_utf8_valid(s);
    cJSON *item = v ? cJSON_CreateString(v) : NULL;
    free(v);
    if (!item || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static int info_heads(const char *cmd, const char *path, const cJSON *header,
                      const char *model_path, int json)
{
    clipn_heads *h = NULL;
    clipn_error err;
    if (clipn_heads_load(path, NULL, &h, &err) != CLIPN_OK)
        return cli_fail_err(cmd, &err);
    const char *fp = meta_string(header, "model_fingerprint");
    cJSON *tmpl = cJSON_Parse(meta_string(header, "templates") ? meta_string(header, "templates") : "[]");
    cJSON *no_tmpl = cJSON_Parse(meta_string(header, "no_templates") ? meta_string(header, "no_templates") : "[]");
    if (!tmpl || !no_tmpl) { /* the header loaded: out of memory, or malformed lists */
        clipn_heads_free(h);
        cJSON_Delete(tmpl);
        cJSON_Delete(no_tmpl);
        return cli_fail(cmd, "%s: cannot read the template lists (out of memory?)", path);
    }
    char model_fp[17] = "";
    int match = -1;
    if (model_path) {
        clipn_model *m = cli_load_model(cmd, model_path);
        if (!m) {
            clipn_heads_free(h);
            cJSON_Delete(tmpl);
            cJSON_Delete(no_tmpl);
            return 1;
        }
        clipn_model_fingerprint(m, model_fp, NULL);
        match = fp && !strcmp(fp, model_fp) && clipn_model_config(m)->embed_dim == h->dim;
        clipn_model_free(m);
    }
    int n_t = cJSON_GetArraySize(tmpl), n_no = cJSON_GetArraySize(no_tmpl);
    int no_same = n_t == n_no;
    for (int i = 0; no_same && i < n_t; i++) {
        const cJSON *a = cJSON_GetArrayItem(tmpl, i), *b = cJSON_GetArrayItem(no_tmpl, i);
        no_same = cJSON_IsString(a) && cJSON_IsString(b) && !strcmp(a->valuestring, b->valuestring);
    }
    if (json) {
        /* every string valid UTF-8, every allocation checked: a failure prints one line */
        cJSON *o = cJSON_CreateObject();
        int ok = o && cli_json_add_string(o, "file", path) &&
                 cli_json_add_string(o, "kind", "heads") &&
                 cli_json_add_item(o, "n_classes", cJSON_CreateNumber(h->n_classes)) &&
                 cli_json_add_item(o, "dim", cJSON_CreateNumber(h->dim)) &&
                 cli_json_add_item(o, "has_no_heads", cJSON_CreateBool(h->no != NULL));
        cJSON *cl = ok ? cli_json_add_item(o, "classes", cJSON_CreateArray()) : NULL;
        ok = ok && cl;
        for (int c = 0; ok && c < h->n_classes; c++)
            ok = string_to_array(cl, h->class_names[c]);
        const cJSON *lists[2] = {tmpl, no_tmpl};
        const char *names[2] = {"templates", "no_templates"};
        for (int k = 0; ok && k < 2; k++) {
            cJSON *arr = cli_json_add_item(o, names[k], cJSON_CreateArray());
            const cJSON *e;
            ok = arr != NULL;
            cJSON_ArrayForEach(e, lists[k])
            {
                if (ok && cJSON_IsString(e))
                    ok = string_to_array(arr, e->valuestring);
            }
        }
        ok = ok && cli_json_add_string(o, "model_fingerprint", fp ? fp : "");
        if (ok && model_path)
            ok = cli_json_add_string(o, "model", model_path) &&
                 cli_json_add_string(o, "given_model_fingerprint", model_fp) &&
                 cli_json_add_item(o, "matches_model", cJSON_CreateBool(match == 1));
        char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (!text) {
            clipn_heads_free(h);
            cJSON_Delete(tmpl);
            cJSON_Delete(no_tmpl);
            return cli_fail(cmd, "out of memory");
        }
        puts(text);
        cJSON_free(text);
    } else {
        printf("file: ");
        cli_print_text(stdout, path);
        printf("\nkind: libclipn heads (%s)\n", h->no ? "yes + no heads" : "yes heads only");
        printf("classes: %d x %d dims:", h->n_classes, h->dim);
        for (int c = 0; c < h->n_classes && c < 10; c++) {
            printf("%s ", c ? "," : "");
            cli_print_text(stdout, h->class_names[c]);
        }
        printf("%s\n", h->n_classes > 10 ? ", ..." : "");
        if (n_t) {
            const cJSON *first = cJSON_GetArrayItem(tmpl, 0);
            printf("templates: %d, first: ", n_t);
            cli_print_text(stdout, cJSON_IsString(first) ? first->valuestring : "");
            putchar('\n');
        } else {
            printf("templates: none recorded (imported heads)\n");
        }
        if (h->no) {
            if (no_same)
                printf("no templates: the same\n");
            else {
                const cJSON *first = cJSON_GetArrayItem(no_tmpl, 0);
                printf("no templates: %d, first: ", n_no);
                cli_print_text(stdout, cJSON_IsString(first) ? first->valuestring : "");
                putchar('\n');
            }
        }
        printf("model fingerprint: %s\n", fp ? fp : "?");
        if (model_path) {
            printf("model ");
            cli_print_text(stdout, model_path);
            printf(": %s (fingerprint %s)\n", match == 1 ? "matches" : "does NOT match", model_fp);
        }
    }
    int rc = 0;
    if (match == 0)
        rc = cli_fail(cmd, "%s was built from another model than %s (fingerprint %s, the model's "
                           "%s)", path, model_path, fp ? fp : "?", model_fp);
    fflush(stdout);
    cJSON_Delete(tmpl);
    cJSON_Delete(no_tmpl);
    clipn_heads_free(h);
    return rc;
}

int cmd_info(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL;
    int n_files, as_json = 0;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_FLAG("--json", &as_json),
        CLI_PRECISION_OPTION,
    };
    int parsed = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]),
                                usage, &n_files);
    if (parsed != CLI_ARGS_OK)
        return parsed == CLI_ARGS_HELP ? 0 : parsed;
    if (n_files != 1)
        return cli_fail(cmd, n_files ? "one FILE only (see --help)" : "no FILE given (see --help)"), 2;
    const char *path = argv[1];

    /* what is it? (by content, never by name) */
    static unsigned char buf[4 << 20]; /* a torch zip's data.pkl (the key names) comes first */
    size_t n = read_head(path, buf, sizeof buf);
    enum file_kind kind = KIND_OTHER;
    if (n >= 4 && !memcmp(buf, "PK\x03\x04", 4))
        kind = KIND_ZIP;
    else if (n >= 2 && buf[0] == 0x80 && buf[1] >= 2 && buf[1] <= 5)
        kind = KIND_PICKLE;
    else if (n >= 2 && buf[0] == 0x1f && buf[1] == 0x8b)
        kind = KIND_GZIP;
    else if (n >= 9 && buf[8] == '{')
        kind = KIND_SAFETENSORS;
    cJSON *header = kind == KIND_SAFETENSORS ? safetensors_header(path) : NULL;
    const char *format = meta_string(header, "format");
    if (format && !strcmp(format, "libclipn-heads")) {
        int rc = info_heads(cmd, path, header, model_path, as_json);
        cJSON_Delete(header);
        return rc;
    }
    if (kind != KIND_OTHER &&
        (kind != KIND_SAFETENSORS || (header && (!format || strcmp(format, "libclipn"))))) {
        int rc = not_a_model(cmd, path, kind, buf, n, header);
        cJSON_Delete(header);
        if (rc >= 0)
            return rc;
    } else {
        cJSON_Delete(header);
    }
    if (kind == KIND_OTHER && cli_sniff(buf, n)) /* an image, a .npy ... */
        return cli_fail(cmd, "%s is %s, not a libclipn model", path, cli_sniff(buf, n));
    if (model_path)
        return cli_fail(cmd, "--model is for heads files; %s is not one", path), 2;

    clipn_model *model = cli_load_model(cmd, path);
    if (!model)
        return 1;
    const clipn_config *c = clipn_model_config(model);

    /* everything is gathered before the first byte is printed: a failure prints one
     * line on stderr and nothing on stdout */
    size_t need = clipn_config_to_json(c, NULL, 0);
    char *json = need ? malloc(need + 1) : NULL;
    header_facts hf = {0};
    const char *why = "out of memory";
    if (!json || clipn_config_to_json(c, json, need + 1) != need || strlen(json) != need ||
        read_header_facts(path, &hf, &why)) {
        free(hf.source);
        free(json);
        clipn_model_free(model);
        return cli_fail(argv[0], "%s: %s", path, why);
    }
    char *file_json = cli_utf8_valid(path);
    if (!file_json) {
        free(hf.source);
        free(json);
        clipn_model_free(model);
        return cli_fail(argv[0], "out of memory");
    }

    unsigned long long W = (unsigned long long)c->vision_width,
                       P = (unsigned long long)c->patch_size,
                       G = (unsigned long long)(c->image_size / c->patch_size);
    unsigned long long visual = W * 3 * P * P + W + (G * G + 1) * W + 2 * W +
                                (unsigned long long)c->vision_layers *
                                    block_params(W, (unsigned long long)c->vision_mlp_width) +
                                2 * W + W * (unsigned long long)c->embed_dim;
    unsigned long long text = text_params(c);
    unsigned long long text_no = c->has_no_tower ? text_params(c) : 0;
    if (c->has_prompt_no)
        text_no += (unsigned long long)c->n_prompt_no * (unsigned long long)c->context_length *
                   (unsigned long long)c->text_width;

    struct stat st;
    printf("{\n  \"file\": ");
    print_json_string(file_json);
    printf(",\n  \"file_bytes\": %lld,\n", stat(path, &st) == 0 ? (long long)st.st_size : -1LL);
    print_header_facts(&hf);
    printf("  \"parameters\": {\"visual\": %llu, \"text\": %llu, \"text_no\": %llu, "
           "\"total\": %llu},\n",
           visual, text, text_no, visual + text + text_no + 1 /* logit_scale */);
    printf("  \"runs\": {\"precision\": \"%s\", \"precision_note\": ",
           clipn_precision_name(clipn_model_precision(model)));
    print_json_string(clipn_model_precision_note(model));
    printf(", \"isa\": \"%s\", \"int8_kernel\": \"%s\"},\n", clipn_runtime_isa(),
           clipn_runtime_int8_kernel());
    printf("  \"config\": ");
    print_config(json, 2);
    printf("\n}\n");
    free(file_json);
    free(hf.source);
    free(json);
    clipn_model_free(model);
    return 0;
}
