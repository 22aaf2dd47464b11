/* Heads and progress for the head/classify/eval subcommands. */
#include "cli_heads.h"
#include "cli_backend.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
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
        return clipn_official_templates(CLIPN_TEMPLATES_OFFICIAL, templates);
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
