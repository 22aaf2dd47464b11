/* Helpers shared by the CLI subcommands. */
#include "cli.h"
#include "cli_backend.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    cli_backend_model = m;
    return m;
}

char *cli_read_file_capped(const char *cmd, const char *path, size_t cap, int allow_pipe,
                           size_t *len)
{
    /* non-blocking: opening a FIFO with no writer must not hang before the fstat */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        cli_fail(cmd, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    size_t n = 0, want;
    if (fstat(fd, &st) != 0) {
        cli_fail(cmd, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISREG(st.st_mode)) {
        if ((unsigned long long)st.st_size > cap) {
            cli_fail(cmd, "%s: %lld bytes, more than the limit of %zu", path,
                     (long long)st.st_size, cap);
            goto fail;
        }
        want = (size_t)st.st_size;
    } else if (S_ISFIFO(st.st_mode) && allow_pipe) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
            cli_fail(cmd, "%s: %s", path, strerror(errno));
            goto fail;
        }
        want = 1 << 16;
    } else {
        cli_fail(cmd, "%s: %s", path,
                 S_ISDIR(st.st_mode) ? "Is a directory"
                 : allow_pipe        ? "not a regular file or a pipe"
                                     : "not a regular file");
        goto fail;
    }
    /* read one byte more than expected, to see a file that grows or a pipe over the cap */
    size_t alloc = want + 1;
    if (!(buf = malloc(alloc + 1))) {
        cli_fail(cmd, "%s: out of memory", path);
        goto fail;
    }
    for (;;) {
        if (n == alloc) {
            if (S_ISREG(st.st_mode) || n > cap) {
                cli_fail(cmd, S_ISREG(st.st_mode) ? "%s: the file changed while being read"
                                                  : "%s: more than the limit of %zu bytes",
                         path, cap);
                goto fail;
            }
            size_t na = alloc > cap / 2 ? cap + 1 : alloc * 2;
            char *nb = realloc(buf, na + 1);
            if (!nb) {
                cli_fail(cmd, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
            alloc = na;
        }
        ssize_t got = read(fd, buf + n, alloc - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            cli_fail(cmd, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n > cap) {
        cli_fail(cmd, "%s: more than the limit of %zu bytes", path, cap);
        goto fail;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

char *cli_read_file(const char *cmd, const char *path, size_t *len)
{
    return cli_read_file_capped(cmd, path, CLI_MAX_TEXT_FILE, 1, len);
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

/* ------------------------------------------------------------------ .npy */

int cli_write_npy_f32(const char *cmd, const char *path, const float *data, int ndim,
                      const size_t *shape)
{
    char hdr[256];
    char dims[200] = "";
    size_t total = 1, used = 0;
    if (ndim < 0 || ndim > 8)
        return cli_fail(cmd, "%s: internal: %d dimensions", path, ndim);
    for (int i = 0; i < ndim; i++) {
        int k = snprintf(dims + used, sizeof dims - used, "%zu%s", shape[i],
                         (ndim == 1 || i < ndim - 1) ? ", " : "");
        if (k < 0 || (size_t)k >= sizeof dims - used)
            return cli_fail(cmd, "%s: internal: .npy shape does not fit the header", path);
        used += (size_t)k;
        total *= shape[i];
    }
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                     dims);
    if (n < 0 || (size_t)n >= sizeof hdr)
        return cli_fail(cmd, "%s: internal: .npy header too long", path);
    /* pad so that magic(6) + version(2) + len(2) + header is a multiple of 64, ending in \n */
    int total_hdr = 10 + n + 1;
    int pad = (64 - total_hdr % 64) % 64;
    cli_out *o = cli_out_open(cmd, path);
    if (!o)
        return 1;
    FILE *f = cli_out_file(o);
    unsigned short hl = (unsigned short)(n + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff),
                             (unsigned char)(hl >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)n, f);
    fprintf(f, "%*s\n", pad, "");
    if (total)
        fwrite(data, sizeof(float), total, f);
    return cli_out_close(o); /* every write's error is seen here */
}

/* The header dict exactly as numpy writes it, read strictly: Python literal syntax for a
 * dict of the three keys 'descr', 'fortran_order', 'shape', each once, with plain string,
 * bool and tuple-of-decimal-int values. Whatever numpy would read differently (duplicate
 * keys: the last one wins in numpy) or refuse is refused. */
typedef struct npy_hdr {
    const char *p, *end;
    char descr[16];
    int fortran, have_descr, have_fortran, have_shape, ndim;
    size_t shape[8];
} npy_hdr;

static void npy_ws(npy_hdr *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

/* 'text' or "text" without escapes, into out (size n). 0 or -1. */
static int npy_string(npy_hdr *h, char *out, size_t n)
{
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return -1;
    char q = *h->p++;
    size_t k = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || *h->p == '\n' || k + 1 >= n)
            return -1;
        out[k++] = *h->p++;
    }
    if (h->p >= h->end)
        return -1;
    h->p++;
    out[k] = '\0';
    return 0;
}

static int npy_word(npy_hdr *h, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(h->end - h->p) < n || memcmp(h->p, w, n))
        return 0;
    const char *after = h->p + n;
    if (after < h->end && (isalnum((unsigned char)*after) || *after == '_'))
        return 0;
    h->p = after;
    return 1;
}

/* (d0, d1, ...): a tuple of decimal ints; "(n)" is an int in Python, not a tuple. */
static int npy_shape(npy_hdr *h)
{
    if (h->p >= h->end || *h->p != '(')
        return -1;
    h->p++;
    int nd = 0, commas = 0;
    for (;;) {
        npy_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            break;
        }
        if (nd > commas) /* two numbers without a comma */
            return -1;
        if (nd == 8)
            return -3;
        if (h->p >= h->end || !isdigit((unsigned char)*h->p))
            return -1;
        if (*h->p == '0' && h->p + 1 < h->end && isdigit((unsigned char)h->p[1]))
            return -1; /* 012 is a SyntaxError in Python 3 */
        unsigned long long v = 0;
        while (h->p < h->end && isdigit((unsigned char)*h->p)) {
            if (v > (1ull << 40))
                return -2;
            v = v * 10 + (unsigned)(*h->p++ - '0');
        }
        if (v > (1ull << 40))
            return -2;
        if (h->p < h->end && (isalpha((unsigned char)*h->p) || *h->p == '_' || *h->p == '.'))
            return -1; /* 3L, 1_0, 2.0, 0x1... */
        h->shape[nd++] = (size_t)v;
        npy_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            commas++;
        }
    }
    if (nd == 1 && commas == 0)
        return -1;
    if (commas > nd)
        return -1; /* "(,)" */
    h->ndim = nd;
    return 0;
}

/* 0, or -1 with a reason in *why. */
static int npy_parse_header(npy_hdr *h, const char **why)
{
    *why = "malformed header dict";
    npy_ws(h);
    if (h->p >= h->end || *h->p++ != '{')
        return -1;
    for (;;) {
        npy_ws(h);
        if (h->p < h->end && *h->p == '}') {
            h->p++;
            break;
        }
        char key[32];
        if (npy_string(h, key, sizeof key))
            return -1;
        npy_ws(h);
        if (h->p >= h->end || *h->p++ != ':')
            return -1;
        npy_ws(h);
        int *seen;
        if (!strcmp(key, "descr")) {
            seen = &h->have_descr;
            if (npy_string(h, h->descr, sizeof h->descr)) {
                *why = "'descr' must be a plain dtype string";
                return -1;
            }
        } else if (!strcmp(key, "fortran_order")) {
            seen = &h->have_fortran;
            if (npy_word(h, "False"))
                h->fortran = 0;
            else if (npy_word(h, "True"))
                h->fortran = 1;
            else {
                *why = "'fortran_order' must be True or False";
                return -1;
            }
        } else if (!strcmp(key, "shape")) {
            seen = &h->have_shape;
            int r = npy_shape(h);
            if (r) {
                *why = r == -2   ? "shape too large"
                       : r == -3 ? "more than 8 dimensions"
                                 : "malformed shape tuple";
                return -1;
            }
        } else {
            *why = "unknown key in the header dict";
            return -1;
        }
        if ((*seen)++) {
            *why = "duplicate key in the header dict";
            return -1;
        }
        npy_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            continue;
        }
        npy_ws(h);
        if (h->p >= h->end || *h->p != '}')
            return -1;
    }
    npy_ws(h);
    if (h->p != h->end) {
        *why = "text after the header dict";
        return -1;
    }
    if (!h->have_descr || !h->have_fortran || !h->have_shape) {
        *why = "the header dict needs 'descr', 'fortran_order' and 'shape'";
        return -1;
    }
    return 0;
}

int cli_read_npy_f32(const char *cmd, const char *path, float **data, int *ndim,
                     size_t shape[8])
{
    size_t len;
    char *buf = cli_read_file_capped(cmd, path, CLI_MAX_NPY_FILE, 0, &len);
    if (!buf)
        return 1;
    int rc = 1;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        cli_fail(cmd, "%s: not a .npy file", path);
        goto out;
    }
    unsigned char major = (unsigned char)buf[6], minor = (unsigned char)buf[7];
    size_t hl, off;
    if (minor != 0 || major < 1 || major > 3) {
        cli_fail(cmd, "%s: unsupported .npy version %d.%d", path, major, minor);
        goto out;
    }
    if (major == 1) {
        hl = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
        off = 10;
    } else {
        if (len < 12) {
            cli_fail(cmd, "%s: truncated .npy header", path);
            goto out;
        }
        hl = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8) |
             ((size_t)(unsigned char)buf[10] << 16) | ((size_t)(unsigned char)buf[11] << 24);
        off = 12;
    }
    if (hl > len - off) {
        cli_fail(cmd, "%s: truncated .npy header", path);
        goto out;
    }
    if (hl > 65536) {
        cli_fail(cmd, "%s: .npy header longer than 64 KiB", path);
        goto out;
    }
    npy_hdr h = {.p = buf + off, .end = buf + off + hl};
    for (const char *c = h.p; c < h.end; c++)
        if (!*c || ((unsigned char)*c >= 0x80 && major < 3)) {
            cli_fail(cmd, "%s: bad byte in the .npy header", path);
            goto out;
        }
    const char *why;
    if (npy_parse_header(&h, &why)) {
        cli_fail(cmd, "%s: .npy header: %s", path, why);
        goto out;
    }
    if (strcmp(h.descr, "<f4")) {
        cli_fail(cmd, "%s: .npy dtype must be float32 little-endian ('<f4'), not '%s'", path,
                 h.descr);
        goto out;
    }
    if (h.fortran) {
        cli_fail(cmd, "%s: .npy must be C order (fortran_order False)", path);
        goto out;
    }
    size_t total = 1;
    for (int i = 0; i < h.ndim; i++) {
        if (h.shape[i] && total > ((size_t)1 << 40) / h.shape[i]) {
            cli_fail(cmd, "%s: .npy shape too large", path);
            goto out;
        }
        total *= h.shape[i];
        shape[i] = h.shape[i];
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
    *ndim = h.ndim;
    rc = 0;
out:
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ JSON strings */

char *cli_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out; /* at worst every byte becomes U+FFFD */
    if (!out)
        return NULL;
    while (*p) {
        unsigned c = p[0];
        size_t k = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3
                                : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        int ok = k > 0;
        for (size_t i = 1; ok && i < k; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && k == 3) {
            unsigned cp = (c & 0x0f) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff); /* no overlongs, surrogates */
        } else if (ok && k == 4) {
            unsigned cp = (c & 0x07) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 |
                          (p[3] & 0x3fu);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (ok) {
            memcpy(o, p, k);
            o += k;
            p += k;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

cJSON *cli_json_add_item(cJSON *obj, const char *name, cJSON *item)
{
    char *n = item ? cli_utf8_valid(name) : NULL;
    if (!n || !cJSON_AddItemToObject(obj, n, item)) {
        cJSON_Delete(item);
        item = NULL;
    }
    free(n);
    return item;
}

cJSON *cli_json_add_string(cJSON *obj, const char *name, const char *value)
{
    char *v = cli_utf8_valid(value);
    cJSON *item = v ? cJSON_CreateString(v) : NULL;
    free(v);
    return cli_json_add_item(obj, name, item);
}
