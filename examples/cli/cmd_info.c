/* clipn info MODEL: the model's config plus a few derived facts, as one JSON object. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipn info MODEL\n\n"
               "Load a libclipn model file (validating every tensor) and print its config as\n"
               "JSON, with the file size, tensor dtypes, source and parameter counts.\n");
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

int cmd_info(int argc, char **argv)
{
    int n_models;
    int parsed = cli_parse_args(argv[0], argc, argv, NULL, 0, usage, &n_models);
    if (parsed != CLI_ARGS_OK)
        return parsed == CLI_ARGS_HELP ? 0 : parsed;
    if (n_models != 1) {
        if (n_models > 1)
            return cli_fail(argv[0], "one MODEL only (see --help)"), 2;
        usage(stderr);
        return 2;
    }
    const char *path = argv[1];

    clipn_model *model = NULL;
    clipn_error err;
    if (clipn_model_load(path, NULL, &model, &err) != CLIPN_OK)
        return cli_fail_err(argv[0], &err);
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
    printf("  \"config\": ");
    print_config(json, 2);
    printf("\n}\n");
    free(file_json);
    free(hf.source);
    free(json);
    clipn_model_free(model);
    return 0;
}
