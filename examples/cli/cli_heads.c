/* Heads, progress and image lists for the head/classify/eval subcommands. */
#include "cli_heads.h"
#include "cli_backend.h"
#include "official_templates.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ progress */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double progress_start, progress_last;
static int progress_shown;

int cli_progress(void *user, size_t done, size_t total)
{
    const char *what = user ? (const char *)user : "";
    if (!isatty(STDERR_FILENO) || total == 0)
        return 0;
    double t = now_seconds();
    if (!progress_shown || done == 0) {
        progress_start = t;
        progress_shown = 1;
    }
    if (done < total && t - progress_last < 0.1 && done > 0)
        return 0; /* at most 10 redraws a second */
    progress_last = t;
    double elapsed = t - progress_start, rate = elapsed > 0 ? (double)done / elapsed : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int width = 30, filled = (int)((double)width * (double)done / (double)total);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s [%s] %zu/%zu  %.1f/s  ETA %dm%02ds ", what, bar, done, total, rate,
            (int)eta / 60, (int)eta % 60);
    fflush(stderr);
    return 0;
}

void cli_progress_end(void)
{
    if (progress_shown && isatty(STDERR_FILENO))
        fputc('\n', stderr);
    progress_shown = 0;
}

/* ------------------------------------------------------------------ heads */

int cli_get_templates(const char *cmd, const char *path, const char *const **templates,
                      char ***owned)
{
    *owned = NULL;
    if (!path) {
        *templates = clipn_official_templates;
        return clipn_n_official_templates;
    }
    int n = cli_read_lines(cmd, path, owned);
    if (n == 0) {
        free(*owned);
        *owned = NULL;
        cli_fail(cmd, "%s: no templates in the file", path);
        return -1;
    }
    *templates = (const char *const *)*owned;
    return n;
}

clipn_heads *cli_get_heads(const char *cmd, const clipn_model *model, clipn_ctx *ctx,
                           const cli_head_args *a)
{
    clipn_error err;
    clipn_heads *heads = NULL;
    if (a->head && a->classes) {
        cli_fail(cmd, "give --head or --classes, not both");
        return NULL;
    }
    if (a->head) {
        if (clipn_heads_load(a->head, model, &heads, &err) != CLIPN_OK) {
            cli_fail_err(cmd, &err);
            return NULL;
        }
        return heads;
    }
    if (!a->classes) {
        cli_fail(cmd, "--classes FILE or --head H is required");
        return NULL;
    }
    char **classes = NULL, **tmpl_owned = NULL, **no_owned = NULL;
    const char *const *tmpl = NULL, *const *no_tmpl = NULL;
    int n_classes = cli_read_lines(cmd, a->classes, &classes), n_tmpl = -1, n_no = 0;
    if (n_classes == 0)
        cli_fail(cmd, "%s: no class names in the file", a->classes);
    if (n_classes > 0)
        n_tmpl = cli_get_templates(cmd, a->templates, &tmpl, &tmpl_owned);
    if (n_tmpl > 0 && a->no_templates)
        n_no = cli_get_templates(cmd, a->no_templates, &no_tmpl, &no_owned);
    if (n_classes > 0 && n_tmpl > 0 && n_no >= 0) {
        if (cli_backend_active->build_heads(ctx, (const char *const *)classes, n_classes, tmpl,
                                            n_tmpl, no_tmpl, n_no, cli_progress, "class heads",
                                            &heads, &err) != CLIPN_OK) {
            cli_progress_end();
            cli_fail(cmd, "building class heads: %s", err.message);
            heads = NULL;
        } else {
            cli_progress_end();
            heads->class_names = calloc((size_t)n_classes, sizeof *heads->class_names);
            for (int c = 0; heads->class_names && c < n_classes; c++)
                if (!(heads->class_names[c] = strdup(classes[c]))) {
                    clipn_heads_free(heads);
                    heads = NULL;
                    cli_fail(cmd, "out of memory");
                    break;
                }
            if (heads && !heads->class_names) {
                clipn_heads_free(heads);
                heads = NULL;
                cli_fail(cmd, "out of memory");
            }
        }
    }
    free(classes);
    free(tmpl_owned);
    free(no_owned);
    return heads;
}

int cli_class_index(const clipn_heads *heads, const char *label)
{
    if (!label || !heads->class_names)
        return -1;
    for (int c = 0; c < heads->n_classes; c++)
        if (!strcmp(heads->class_names[c], label))
            return c;
    for (int c = 0; c < heads->n_classes; c++) {
        const char *a = heads->class_names[c], *b = label;
        while (*a && *b) {
            char x = *a == '_' ? ' ' : (char)tolower((unsigned char)*a);
            char y = *b == '_' ? ' ' : (char)tolower((unsigned char)*b);
            if (x != y)
                break;
            a++;
            b++;
        }
        if (!*a && !*b)
            return c;
    }
    return -1;
}

/* ------------------------------------------------------------------ image lists */

static int list_push(cli_image_list *l, size_t *cap, const char *path, const char *label)
{
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        char **p = realloc(l->paths, nc * sizeof *p);
        if (!p)
            return -1;
        l->paths = p;
        char **q = realloc(l->labels, nc * sizeof *q);
        if (!q)
            return -1;
        l->labels = q;
        *cap = nc;
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

/* nftw has no user pointer: the walk is single-threaded, so statics are fine. */
static cli_image_list *walk_list;
static size_t walk_cap;
static int walk_failed;

static int walk_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type != FTW_F || !is_image_name(path))
        return 0;
    /* label = name of the parent folder */
    const char *end = strrchr(path, '/');
    char label[256] = "";
    if (end) {
        const char *start = end;
        while (start > path && start[-1] != '/')
            start--;
        size_t n = (size_t)(end - start);
        if (n < sizeof label) {
            memcpy(label, start, n);
            label[n] = '\0';
        }
    }
    if (list_push(walk_list, &walk_cap, path, label[0] ? label : NULL)) {
        walk_failed = 1;
        return 1;
    }
    return 0;
}

static int cmp_index_by_path(const void *a, const void *b, void *list)
{
    const cli_image_list *l = list;
    return strcmp(l->paths[*(const size_t *)a], l->paths[*(const size_t *)b]);
}

int cli_image_list_read(const char *cmd, const char *spec, cli_image_list *list)
{
    memset(list, 0, sizeof *list);
    struct stat st;
    if (stat(spec, &st) != 0) {
        cli_fail(cmd, "%s: %s", spec, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    if (S_ISDIR(st.st_mode)) {
        walk_list = list;
        walk_cap = 0;
        walk_failed = 0;
        int rc = nftw(spec, walk_visit, 32, 0); /* follows symlinks: datasets often use them */
        if (rc != 0 || walk_failed) {
            cli_image_list_free(list);
            cli_fail(cmd, "%s: %s", spec, walk_failed ? "out of memory" : "cannot walk the folder");
            return -1;
        }
        /* sort by path so runs are reproducible */
        size_t *idx = malloc((list->n ? list->n : 1) * sizeof *idx);
        char **p = malloc((list->n ? list->n : 1) * sizeof *p);
        char **q = malloc((list->n ? list->n : 1) * sizeof *q);
        if (!idx || !p || !q) {
            free(idx);
            free(p);
            free(q);
            cli_image_list_free(list);
            cli_fail(cmd, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < list->n; i++)
            idx[i] = i;
        qsort_r(idx, list->n, sizeof *idx, cmp_index_by_path, list);
        for (size_t i = 0; i < list->n; i++) {
            p[i] = list->paths[idx[i]];
            q[i] = list->labels[idx[i]];
        }
        free(list->paths);
        free(list->labels);
        list->paths = p;
        list->labels = q;
        free(idx);
    } else {
        char **lines = NULL;
        int n = cli_read_lines(cmd, spec, &lines);
        if (n < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            char *comma = strrchr(lines[i], ',');
            if (comma)
                *comma = '\0';
            if (list_push(list, &cap, lines[i], comma ? comma + 1 : NULL)) {
                free(lines);
                cli_image_list_free(list);
                cli_fail(cmd, "out of memory");
                return -1;
            }
        }
        free(lines);
    }
    if (list->n == 0) {
        cli_fail(cmd, "%s: no images found", spec);
        return -1;
    }
    return (int)(list->n > 0x7fffffff ? 0x7fffffff : list->n);
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
