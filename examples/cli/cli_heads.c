/* Heads and progress for the head/classify/eval subcommands. */
#include "cli_heads.h"
#include "cli_backend.h"
#include "cli_text.h"

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

int cli_head_args_check(const char *cmd, const cli_head_args *a)
{
    if (a->head && a->classes)
        return cli_fail(cmd, "give --head H or --classes FILE, not both"), 2;
    if (!a->head && !a->classes)
        return cli_fail(cmd, "--classes FILE or --head H is required (see --help)"), 2;
    if (a->head && (a->templates || a->no_templates))
        return cli_fail(cmd, "%s does nothing with --head H (the heads were built with their "
                             "own templates): drop it, or build heads with --classes",
                        a->templates ? "--templates" : "--no-templates"),
               2;
    return 0;
}

int cli_require_model(const char *cmd, const char *model_path)
{
    if (!model_path)
        return cli_fail(cmd, "--model M is required (see --help)"), 2;
    return 0;
}

static int cmp_str_index(const void *a, const void *b, void *lines)
{
    char **l = lines;
    int x = *(const int *)a, y = *(const int *)b;
    int c = strcmp(l[x], l[y]);
    return c ? c : (x > y) - (x < y);
}

int cli_read_classes(const char *cmd, const char *path, char ***lines)
{
    int n = cli_read_lines(cmd, path, lines);
    if (n < 0)
        return -1;
    if (n == 0) {
        free(*lines);
        *lines = NULL;
        return cli_fail(cmd, "%s: no class names in the file", path), -1;
    }
    for (int c = 0; c < n; c++)
        if (!(*lines)[c][strspn((*lines)[c], " \t\f\v")]) {
            free(*lines);
            *lines = NULL;
            return cli_fail(cmd, "%s: class %d is blank (a line of spaces only)", path, c + 1),
                   -1;
        }
    /* duplicates: sort the indices by name, warn once per repeated name */
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx)
        return n; /* the warning is only advice */
    for (int c = 0; c < n; c++)
        idx[c] = c;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_str_index, *lines);
    for (int i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && !strcmp((*lines)[idx[i]], (*lines)[idx[j]]); j++)
            ;
        if (j - i > 1) {
            fprintf(stderr, "clipn %s: warning: class '", cmd);
            cli_print_text(stderr, (*lines)[idx[i]]);
            fprintf(stderr, "' appears %d times in %s (first as class %d): the copies get the "
                            "same heads and share its probability\n", j - i, path, idx[i] + 1);
        }
    }
    free(idx);
    return n;
}

int cli_get_templates(const char *cmd, const char *path, const char *const **templates,
                      char ***owned)
{
    *owned = NULL;
    if (!path)
        return clipn_official_templates(CLIPN_TEMPLATES_OFFICIAL, templates);
    int n = cli_read_lines(cmd, path, owned);
    if (n == 0)
        cli_fail(cmd, "%s: no templates in the file", path);
    for (int t = 0; t < n; t++) {
        /* format with a marker: a template without a field gives every class the same text */
        char *out = NULL;
        clipn_error err;
        if (clipn_format_template((*owned)[t], "\x01", &out, &err) != CLIPN_OK) {
            cli_fail(cmd, "%s: %s", path, err.message);
            n = -1;
        } else if (!strchr(out, '\x01')) {
            fprintf(stderr, "clipn %s: %s: template %d '", cmd, path, t + 1);
            cli_print_text(stderr, (*owned)[t]);
            fprintf(stderr, "' has no {} field for the class name\n");
            n = -1;
        }
        free(out);
    }
    if (n <= 0) {
        free(*owned);
        *owned = NULL;
        return -1;
    }
    *templates = (const char *const *)*owned;
    return n;
}

/* Warn, one line per class, when prompts of that class exceed the context length: the
 * tokenizer cuts them (keeping <end_of_text>), as the official code does. */
static void warn_cut_prompts(const char *cmd, const clipn_model *model, char **classes,
                             int n_classes, const char *const *tmpl, int n_tmpl,
                             const char *tower)
{
    const clipn_config *cfg = clipn_model_config(model);
    clipn_tokenizer *tok = NULL;
    clipn_error err;
    int L = cfg->context_length, shown = 0, affected = 0;
    int32_t *ids = malloc((size_t)(L + 1) * sizeof *ids);
    if (!ids || clipn_tokenizer_from_model(model, &tok, &err) != CLIPN_OK) {
        free(ids);
        return; /* advice only; building the heads reports real errors */
    }
    for (int c = 0; c < n_classes; c++) {
        int cut = 0;
        for (int t = 0; t < n_tmpl; t++) {
            char *text = NULL;
            if (clipn_format_template(tmpl[t], classes[c], &text, &err) != CLIPN_OK)
                continue;
            /* one id more than the context: non-zero there = the prompt does not fit */
            if (clipn_tokenize(tok, text, strlen(text), ids, L + 1, &err) == CLIPN_OK &&
                ids[L] != 0)
                cut++;
            free(text);
        }
        if (!cut)
            continue;
        affected++;
        if (shown < 20) {
            shown++;
            fprintf(stderr, "clipn %s: warning: class '", cmd);
            cli_print_text(stderr, classes[c]);
            fprintf(stderr, "': %d of %d %sprompts exceed %d tokens and are cut\n", cut, n_tmpl,
                    tower, L);
        }
    }
    if (affected > shown)
        fprintf(stderr, "clipn %s: warning: ... and %d more classes with cut %sprompts\n", cmd,
                affected - shown, tower);
    clipn_tokenizer_free(tok);
    free(ids);
}

clipn_heads *cli_get_heads(const char *cmd, const clipn_model *model, clipn_ctx *ctx,
                           const cli_head_args *a)
{
    clipn_error err;
    clipn_heads *heads = NULL;
    if (cli_head_args_check(cmd, a))
        return NULL;
    if (a->head) {
        if (clipn_heads_load(a->head, model, &heads, &err) != CLIPN_OK) {
            cli_fail_err(cmd, &err);
            return NULL;
        }
        return heads;
    }
    char **classes = NULL, **tmpl_owned = NULL, **no_owned = NULL;
    const char *const *tmpl = NULL, *const *no_tmpl = NULL;
    int n_classes = cli_read_classes(cmd, a->classes, &classes), n_tmpl = -1, n_no = 0;
    if (n_classes > 0)
        n_tmpl = cli_get_templates(cmd, a->templates, &tmpl, &tmpl_owned);
    if (n_tmpl > 0 && a->no_templates)
        n_no = cli_get_templates(cmd, a->no_templates, &no_tmpl, &no_owned);
    if (n_classes > 0 && n_tmpl > 0 && n_no >= 0) {
        warn_cut_prompts(cmd, model, classes, n_classes, tmpl, n_tmpl, no_tmpl ? "yes " : "");
        if (no_tmpl && clipn_model_config(model)->has_no_tower)
            warn_cut_prompts(cmd, model, classes, n_classes, no_tmpl, n_no, "no ");
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
