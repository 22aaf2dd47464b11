/* Image inputs shared by preprocess, embed-image, classify and eval (cli_inputs.h). */
#include "cli_inputs.h"

#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static int list_push(cli_image_list *l, const char *path, const char *label)
{
    /* capacity 256, then doubled each time n reaches a power of two */
    if (l->n == 0 || (l->n >= 256 && !(l->n & (l->n - 1)))) {
        size_t nc = l->n == 0 ? 256 : l->n * 2;
        char **p = realloc(l->paths, nc * sizeof *p);
        if (!p)
            return -1;
        l->paths = p;
        char **q = realloc(l->labels, nc * sizeof *q);
        if (!q)
            return -1;
        l->labels = q;
    }
    l->paths[l->n] = strdup(path);
    l->labels[l->n] = label ? strdup(label) : NULL;
    if (!l->paths[l->n] || (label && !l->labels[l->n])) {
        free(l->paths[l->n]);
        free(l->labels[l->n]);
        return -1;
    }
    l->n++;
    return 0;
}

static int is_image_name(const char *path)
{
    static const char *ext[] = {"jpg", "jpeg", "png", "bmp", "gif", "ppm", "pgm",
                                "pnm", "tga", "psd", "hdr", "pic", "webp", "tif", "tiff"};
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot + 1, ext[i]))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ folders */

/* nftw has no user pointer: the walk is single-threaded, so statics are fine. */
static cli_image_list *walk_list;
static int walk_labels, walk_failed;

static int walk_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    /* regular files only: a FIFO or device named x.jpg would block or never end */
    if (type != FTW_F || !S_ISREG(st->st_mode) || !is_image_name(path))
        return 0;
    char label[256] = "";
    const char *end = strrchr(path, '/');
    if (walk_labels && end) { /* label = name of the parent folder */
        const char *start = end;
        while (start > path && start[-1] != '/')
            start--;
        size_t n = (size_t)(end - start);
        if (n < sizeof label) {
            memcpy(label, start, n);
            label[n] = '\0';
        }
    }
    if (list_push(walk_list, path, label[0] ? label : NULL)) {
        walk_failed = 1;
        return 1;
    }
    return 0;
}

static int cmp_path(const void *a, const void *b, void *list)
{
    const cli_image_list *l = list;
    return strcmp(l->paths[*(const size_t *)a], l->paths[*(const size_t *)b]);
}

/* Walk a folder, appending its images sorted by path (reproducible runs). */
static int add_folder(const char *cmd, const char *dir, int labels, cli_image_list *list)
{
    size_t first = list->n;
    walk_list = list;
    walk_labels = labels;
    walk_failed = 0;
    int rc = nftw(dir, walk_visit, 32, 0); /* follows symlinks: datasets often use them */
    if (rc != 0 || walk_failed)
        return cli_fail(cmd, "%s: %s", dir,
                        walk_failed ? "out of memory" : "cannot walk the folder"),
               -1;
    size_t n = list->n - first;
    if (n == 0)
        return cli_fail(cmd, "%s: no images in the folder", dir), -1;
    size_t *idx = malloc(n * sizeof *idx);
    char **p = malloc(n * sizeof *p), **q = malloc(n * sizeof *q);
    if (!idx || !p || !q) {
        free(idx);
        free(p);
        free(q);
        return cli_fail(cmd, "out of memory"), -1;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = first + i;
    qsort_r(idx, n, sizeof *idx, cmp_path, list);
    for (size_t i = 0; i < n; i++) {
        p[i] = list->paths[idx[i]];
        q[i] = list->labels[idx[i]];
    }
    memcpy(list->paths + first, p, n * sizeof *p);
    memcpy(list->labels + first, q, n * sizeof *q);
    free(idx);
    free(p);
    free(q);
    return 0;
}

int cli_inputs_add_path(const char *cmd, const char *path, int labels, cli_image_list *list)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return add_folder(cmd, path, labels, list);
    /* a file, or nothing there: the decoder reports it by name when it gets to it */
    if (list_push(list, path, NULL))
        return cli_fail(cmd, "out of memory"), -1;
    return 0;
}

/* ------------------------------------------------------------------ list files */

const char *cli_sniff(const unsigned char *s, size_t n)
{
    static const struct {
        const char *magic;
        size_t len;
        const char *what;
    } sig[] = {
        {"\xff\xd8\xff", 3, "a JPEG image"},       {"\x89PNG", 4, "a PNG image"},
        {"GIF8", 4, "a GIF image"},                 {"BM", 2, "a BMP image"},
        {"\x93NUMPY", 6, "a .npy array"},           {"PK\x03\x04", 4, "a zip archive"},
        {"\x1f\x8b", 2, "a gzip file"},             {"\x80", 1, "a Python pickle"},
    };
    for (size_t k = 0; k < sizeof sig / sizeof sig[0]; k++)
        if (n >= sig[k].len && !memcmp(s, sig[k].magic, sig[k].len))
            return sig[k].what;
    if (n >= 9 && s[8] == '{' && !s[7] && !s[6] && !s[5])
        return "a safetensors file (a model or heads)";
    return NULL;
}

/* NULL when the text can be a list; else what the bytes look like. */
static const char *not_a_list(const unsigned char *s, size_t n)
{
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (s[i] < 0x20 && s[i] != '\n' && s[i] != '\r' && s[i] != '\t')
            bad = i;
    if (bad == n)
        return NULL;
    const char *what = cli_sniff(s, n);
    if (what)
        return what;
    return s[bad] ? "binary data (a control byte)" : "binary data (NUL bytes)";
}

int cli_inputs_add_list(const char *cmd, const char *list_file, int labels, cli_image_list *list)
{
    int is_stdin = !strcmp(list_file, "-");
    const char *name = is_stdin ? "standard input" : list_file;
    struct stat st;
    if (!is_stdin && stat(list_file, &st) == 0 && S_ISDIR(st.st_mode))
        return cli_fail(cmd, "%s: a folder, not a list file (give it as IMAGE)", list_file),
               -1;
    /* a terminal would wait for typed paths and then be refused as not a pipe: say so now */
    if (is_stdin && isatty(STDIN_FILENO))
        return cli_fail(cmd, "--list -: standard input is a terminal; pipe the list in "
                        "(find DIR -name '*.jpg' | clipn %s ... --list -) or give --list FILE",
                        cmd),
               -1;
    /* bounded, non-blocking open, regular files or pipes only (cli_read_file) */
    size_t len = 0;
    char *text = cli_read_file(cmd, is_stdin ? "/dev/stdin" : list_file, &len);
    if (!text)
        return -1;
    const char *what = not_a_list((const unsigned char *)text, len);
    if (what) {
        free(text);
        return cli_fail(cmd, "%s is not a list of image paths: it looks like %s", name, what),
               -1;
    }
    size_t first = list->n;
    char *start = text;
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
        start += 3; /* a UTF-8 byte-order mark (Windows editors) is not part of the path */
    for (char *p = start; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len, *e = end;
        if (e > p && e[-1] == '\r')
            e--;
        *e = '\0';
        if (e > p) {
            char *comma = labels ? strrchr(p, ',') : NULL;
            if (comma)
                *comma = '\0';
            if (list_push(list, p, comma ? comma + 1 : NULL)) {
                free(text);
                return cli_fail(cmd, "out of memory"), -1;
            }
        }
        p = end + 1;
    }
    free(text);
    if (list->n == first)
        return cli_fail(cmd, "%s: no image paths in the list", name), -1;
    return 0;
}

int cli_inputs_add_spec(const char *cmd, const char *spec, int labels, cli_image_list *list)
{
    struct stat st;
    if (strcmp(spec, "-") && stat(spec, &st) == 0 && S_ISDIR(st.st_mode))
        return add_folder(cmd, spec, labels, list);
    return cli_inputs_add_list(cmd, spec, labels, list);
}

int cli_inputs_gather(const char *cmd, char **pos, int n_pos, const char *list_file, int labels,
                      cli_image_list *list)
{
    memset(list, 0, sizeof *list);
    if (n_pos == 0 && !list_file)
        return cli_fail(cmd, "no IMAGE or --list FILE given (see --help)"), 2;
    for (int i = 0; i < n_pos; i++) {
        if (!strcmp(pos[i], "-")) {
            cli_image_list_free(list);
            return cli_fail(cmd, "'-' is not an image: give --list - for paths on stdin"), 2;
        }
        if (cli_inputs_add_path(cmd, pos[i], labels, list)) {
            cli_image_list_free(list);
            return 1;
        }
    }
    if (list_file && cli_inputs_add_list(cmd, list_file, labels, list)) {
        cli_image_list_free(list);
        return 1;
    }
    return 0;
}

void cli_image_list_free(cli_image_list *list)
{
    for (size_t i = 0; i < list->n; i++) {
        free(list->paths[i]);
        free(list->labels[i]);
    }
    free(list->paths);
    free(list->labels);
    memset(list, 0, sizeof *list);
}
