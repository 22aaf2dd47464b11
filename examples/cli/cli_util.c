/* Helpers shared by the CLI subcommands. */
#include "cli.h"
#include "cli_backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "clipn %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_int_range(const char *cmd, const char *opt, const char *s, int lo, int hi,
                        int *out)
{
    long v;
    if (cli_parse_long(s, lo, hi, &v)) {
        cli_fail(cmd, "%s must be an integer in %d..%d", opt, lo, hi);
        return 2;
    }
    *out = (int)v;
    return 0;
}

int cli_parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                   void (*usage)(FILE *), int *n_pos)
{
    int n = 0, options_done = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (options_done || a[0] != '-' || !a[1]) {
            argv[1 + n++] = a; /* i >= 1 + n: never overwrites an unread word */
            continue;
        }
        if (!strcmp(a, "--")) {
            options_done = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return CLI_ARGS_HELP;
        }
        const cli_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (!strcmp(a, opts[k].name))
                o = &opts[k];
        if (!o) {
            cli_fail(cmd, "unknown option %s (see --help)", a);
            return 2;
        }
        if (o->kind == CLI_OPT_FLAG) {
            *(int *)o->dest = 1;
            continue;
        }
        if (i + 1 >= argc) {
            cli_fail(cmd, "%s needs a value (see --help)", a);
            return 2;
        }
        char *v = argv[++i];
        if (o->kind == CLI_OPT_STRING)
            *(const char **)o->dest = v;
        else if (o->kind == CLI_OPT_INT) {
            if (cli_parse_int_range(cmd, a, v, o->lo, o->hi, (int *)o->dest))
                return 2;
        } else if (o->parse(o->dest, cmd, v)) {
            return 2;
        }
    }
    *n_pos = n;
    return CLI_ARGS_OK;
}

int cli_fail_err(const char *cmd, const clipn_error *err)
{
    return cli_fail(cmd, "%s", err->message[0] ? err->message : clipn_status_name(err->code));
}

clipn_precision cli_precision = CLIPN_PRECISION_DEFAULT;

int cli_parse_precision(void *dest, const char *cmd, char *value)
{
    static const clipn_precision all[] = {CLIPN_PRECISION_FP32, CLIPN_PRECISION_BF16,
                                          CLIPN_PRECISION_INT8};
    for (int i = 0; i < 3; i++)
        if (strcmp(value, clipn_precision_name(all[i])) == 0) {
            *(clipn_precision *)dest = all[i];
            return 0;
        }
    cli_fail(cmd, "--precision must be fp32, bf16 or int8");
    return 2;
}

clipn_model *cli_load_model(const char *cmd, const char *path)
{
    clipn_model *m = NULL;
    clipn_error err;
    if (!path) {
        cli_fail(cmd, "--model MODEL is required");
        return NULL;
    }
    const clipn_load_opts opts = {.precision = cli_precision};
    if (clipn_model_load(path, &opts, &m, &err) != CLIPN_OK) {
        cli_fail_err(cmd, &err);
        return NULL;
    }
    if (*clipn_model_precision_note(m))
        fprintf(stderr, "clipn %s: warning: %s\n", cmd, clipn_model_precision_note(m));
    cli_backend_model_path = path;
    return m;
}

char *cli_read_file(const char *cmd, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_fail(cmd, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        cli_fail(cmd, "%s: out of memory", path);
        return NULL;
    }
    if (bad) {
        free(buf);
        cli_fail(cmd, "%s: read error", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int cli_read_lines(const char *cmd, const char *path, char ***lines)
{
    size_t len;
    char *text = cli_read_file(cmd, path, &len);
    if (!text)
        return -1;
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += text[i] == '\n';
    count++;
    /* one block: pointer array, then the text */
    char **arr = malloc(count * sizeof(char *) + len + 1);
    if (!arr) {
        free(text);
        cli_fail(cmd, "%s: out of memory", path);
        return -1;
    }
    char *copy = (char *)(arr + count);
    memcpy(copy, text, len + 1);
    free(text);
    int n = 0;
    char *p = copy;
    while (p < copy + len) {
        char *nl = memchr(p, '\n', (size_t)(copy + len - p));
        char *end = nl ? nl : copy + len;
        char *e = end;
        if (e > p && e[-1] == '\r')
            e--;
        *e = '\0';
        if (e > p)
            arr[n++] = p;
        p = end + 1;
    }
    *lines = arr;
    return n;
}

int cli_write_npy_f32(const char *cmd, const char *path, const float *data, int ndim,
                      const size_t *shape)
{
    char hdr[256];
    char dims[160] = "";
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        char d[32];
        snprintf(d, sizeof d, "%zu%s", shape[i], (ndim == 1 || i < ndim - 1) ? ", " : "");
        strncat(dims, d, sizeof dims - strlen(dims) - 1);
        total *= shape[i];
    }
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                     dims);
    /* pad so that magic(6) + version(2) + len(2) + header is a multiple of 64, ending in \n */
    int total_hdr = 10 + n + 1;
    int pad = (64 - total_hdr % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return cli_fail(cmd, "%s: %s", path, strerror(errno));
    unsigned short hl = (unsigned short)(n + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff),
                             (unsigned char)(hl >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(data, sizeof(float), total, f);
    if (fclose(f) != 0)
        return cli_fail(cmd, "%s: write error", path);
    return 0;
}

int cli_read_npy_f32(const char *cmd, const char *path, float **data, int *ndim,
                     size_t shape[8])
{
    size_t len;
    char *buf = cli_read_file(cmd, path, &len);
    if (!buf)
        return 1;
    int rc = 1;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        cli_fail(cmd, "%s: not a .npy file", path);
        goto out;
    }
    unsigned char major = (unsigned char)buf[6];
    size_t hl, off;
    if (major == 1) {
        hl = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
        off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            cli_fail(cmd, "%s: truncated .npy header", path);
            goto out;
        }
        hl = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8) |
             ((size_t)(unsigned char)buf[10] << 16) | ((size_t)(unsigned char)buf[11] << 24);
        off = 12;
    } else {
        cli_fail(cmd, "%s: unsupported .npy version %d", path, major);
        goto out;
    }
    if (hl > len - off) {
        cli_fail(cmd, "%s: truncated .npy header", path);
        goto out;
    }
    char hdr[4096];
    if (hl >= sizeof hdr) {
        cli_fail(cmd, "%s: .npy header too long", path);
        goto out;
    }
    memcpy(hdr, buf + off, hl);
    hdr[hl] = '\0';
    if (!strstr(hdr, "'descr': '<f4'")) {
        cli_fail(cmd, "%s: .npy dtype must be float32 little-endian ('<f4')", path);
        goto out;
    }
    if (!strstr(hdr, "'fortran_order': False")) {
        cli_fail(cmd, "%s: .npy must be C order", path);
        goto out;
    }
    char *s = strstr(hdr, "'shape': (");
    if (!s) {
        cli_fail(cmd, "%s: .npy header has no shape", path);
        goto out;
    }
    s += 10;
    int nd = 0;
    size_t total = 1;
    while (*s && *s != ')') {
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == ')')
            break;
        if (*s < '0' || *s > '9' || nd == 8) {
            cli_fail(cmd, "%s: bad .npy shape", path);
            goto out;
        }
        errno = 0;
        unsigned long long v = strtoull(s, &s, 10);
        if (errno || v > ((size_t)1 << 40) || (v && total > ((size_t)1 << 40) / v)) {
            cli_fail(cmd, "%s: .npy shape too large", path);
            goto out;
        }
        shape[nd++] = (size_t)v;
        total *= (size_t)v;
    }
    off += hl;
    if (total > (len - off) / sizeof(float) || (len - off) != total * sizeof(float)) {
        cli_fail(cmd, "%s: .npy data is %zu bytes, shape needs %zu", path, len - off,
                 total * sizeof(float));
        goto out;
    }
    *data = malloc(total * sizeof(float) + 1);
    if (!*data) {
        cli_fail(cmd, "%s: out of memory", path);
        goto out;
    }
    memcpy(*data, buf + off, total * sizeof(float));
    *ndim = nd;
    rc = 0;
out:
    free(buf);
    return rc;
}
