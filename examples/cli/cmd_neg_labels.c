/* clipn neg-labels: NegLabel negative mining (docs/methods.md), and the --negatives
 * option of `clipn head`. */
#include "cli_heads.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn neg-labels --model M --classes C --out NEG.txt\n"
            "                        [--nouns F --adjectives F | --wordnet DIR]\n"
            "                        [--fraction 0.15] [--percentile 0.95] [--threads N]\n"
            "                        [--nouns-out F --adjectives-out F]\n\n"
            "Mine NegLabel negative labels (Jiang et al., ICLR 2024): candidate words far from\n"
            "the ID classes. Every class (\"the nice {}\"), noun (\"the nice {}\") and adjective\n"
            "(\"This is a {} photo\") prompt goes through the yes tower; a candidate's score is\n"
            "the --percentile quantile of its cosines to the ID prompts; the lowest --fraction\n"
            "of the nouns and of the adjectives are kept. Writes the selected prompts, one per\n"
            "line, nouns first, each part in ascending order of its score. Give them to\n"
            "`clipn head --negatives NEG.txt`.\n\n"
            "  --classes C        ID class names, one per line\n"
            "  --nouns F          candidate nouns, one per line (with --adjectives)\n"
            "  --adjectives F     candidate adjectives, one per line\n"
            "  --wordnet DIR      WordNet 3.0 database to read the candidates from (default,\n"
            "                     without --nouns/--adjectives: %s, Debian's\n"
            "                     wordnet-base; NegLabel's lexicographer files)\n"
            "  --fraction X       part of each list kept (default 0.15)\n"
            "  --percentile Q     quantile of the cosines to the ID prompts (default 0.95)\n"
            "  --nouns-out F      also write the candidate nouns and adjectives used\n"
            "  --adjectives-out F (e.g. the WordNet words), one per line\n"
            "  --threads N        compute threads (default: all cores)\n",
            CLIPN_WORDNET_DEFAULT_DIR);
}

static int parse_fraction(void *dest, const char *cmd, char *v)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= 0 && x <= 1))
        return cli_fail(cmd, "expected a number in [0, 1], not '%s'", v), 2;
    *(double *)dest = x;
    return 0;
}

/* Writes lines to path through a checked temporary file renamed into place (cli_out). */
static int write_lines(const char *cmd, const char *path, const char *const *lines, int n)
{
    cli_out *o = cli_out_open(cmd, path);
    if (!o)
        return 1;
    FILE *f = cli_out_file(o);
    for (int i = 0; i < n; i++) {
        fputs(lines[i], f);
        fputc('\n', f);
    }
    return cli_out_close(o); /* every write's error is seen here */
}

int cli_add_negatives(const char *cmd, clipn_ctx *ctx, clipn_heads *heads, const char *path,
                      int groups)
{
    char **lines = NULL;
    int n = cli_read_lines(cmd, path, &lines);
    if (n <= 0) {
        if (n == 0)
            cli_fail(cmd, "%s: no negative prompts in the file", path);
        free(lines);
        return 1;
    }
    if (groups > n) {
        free(lines);
        return cli_fail(cmd, "--neg-groups %d is more than the %d negatives of %s", groups, n,
                        path);
    }
    clipn_error err;
    clipn_status st = clipn_heads_add_negatives(ctx, heads, (const char *const *)lines, n, groups,
                                                cli_progress, "negatives", &err);
    cli_progress_end();
    free(lines);
    if (st != CLIPN_OK)
        return cli_fail(cmd, "%s: %s", path, err.message);
    return 0; /* the caller's summary line says how many (one line even if saving fails) */
}

int cmd_neg_labels(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *classes_path = NULL, *out = NULL;
    const char *nouns_path = NULL, *adjs_path = NULL, *wordnet = NULL;
    const char *nouns_out = NULL, *adjs_out = NULL;
    clipn_neg_opts no;
    clipn_neg_opts_default(&no);
    int threads = 0, n_extra;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_STRING("--classes", &classes_path),
        CLI_STRING("--out", &out),
        CLI_STRING("--nouns", &nouns_path),
        CLI_STRING("--adjectives", &adjs_path),
        CLI_STRING("--wordnet", &wordnet),
        CLI_STRING("--nouns-out", &nouns_out),
        CLI_STRING("--adjectives-out", &adjs_out),
        CLI_CUSTOM("--fraction", &no.fraction, parse_fraction),
        CLI_CUSTOM("--percentile", &no.percentile, parse_fraction),
        CLI_INT("--threads", &threads, 0, CLI_MAX_THREADS),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]),
                            usage, &n_extra);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if (n_extra > 0)
        return cli_fail(cmd, "unexpected argument '%s' (see --help)", argv[1]), 2;
    if ((st = cli_require_model(cmd, model_path)))
        return st;
    if (!classes_path || !out)
        return cli_fail(cmd, "--classes C and --out NEG.txt are required (see --help)"), 2;
    if ((nouns_path != NULL) != (adjs_path != NULL) || (nouns_path && wordnet))
        return cli_fail(cmd, "give --nouns and --adjectives together, or --wordnet DIR"), 2;
    if (!(no.fraction > 0))
        return cli_fail(cmd, "--fraction must be more than 0"), 2;
    const cli_path outs[] = {{"--out", out}, {"--nouns-out", nouns_out},
                             {"--adjectives-out", adjs_out}};
    const cli_path ins[] = {{"--model", model_path}, {"--classes", classes_path},
                            {"--nouns", nouns_path}, {"--adjectives", adjs_path}};
    if ((st = cli_check_paths(cmd, outs, 3, ins, 4)))
        return st;

    int rc = 1, n_classes = 0, n_nouns = 0, n_adjs = 0;
    char **classes = NULL, **nouns = NULL, **adjs = NULL;
    clipn_word_lists *wl = NULL;
    clipn_model *model = NULL;
    clipn_ctx *ctx = NULL;
    clipn_neg_labels *labels = NULL;
    clipn_error err;
    if ((n_classes = cli_read_classes(cmd, classes_path, &classes)) <= 0)
        goto done;
    if (nouns_path) {
        if ((n_nouns = cli_read_lines(cmd, nouns_path, &nouns)) < 0 ||
            (n_adjs = cli_read_lines(cmd, adjs_path, &adjs)) < 0)
            goto done;
    } else {
        const char *dir = wordnet ? wordnet : CLIPN_WORDNET_DEFAULT_DIR;
        if (clipn_wordnet_read(dir, &wl, &err) != CLIPN_OK) {
            cli_fail_err(cmd, &err);
            goto done;
        }
    }
    const char *const *cn = wl ? (const char *const *)wl->nouns : (const char *const *)nouns;
    const char *const *ca =
        wl ? (const char *const *)wl->adjectives : (const char *const *)adjs;
    if (wl) {
        n_nouns = wl->n_nouns;
        n_adjs = wl->n_adjectives;
    }
    if ((nouns_out && write_lines(cmd, nouns_out, cn, n_nouns)) ||
        (adjs_out && write_lines(cmd, adjs_out, ca, n_adjs)))
        goto done;
    if (!(model = cli_load_model(cmd, model_path)))
        goto done;
    clipn_ctx_opts opts = {.max_batch = 32, .threads = threads};
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clipn_status s = clipn_neg_labels_mine(ctx, (const char *const *)classes, n_classes, cn,
                                           n_nouns, ca, n_adjs, &no, cli_progress, "prompts",
                                           &labels, &err);
    cli_progress_end();
    if (s != CLIPN_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (write_lines(cmd, out, (const char *const *)labels->prompts, labels->n))
        goto done;
    /* one line, also saying where the candidates came from (a failure prints only its own) */
    fprintf(stderr, "clipn %s: %d negatives (%d nouns, %d adjectives) from %d candidates (%s%s: "
            "%d nouns, %d adjectives) in %.1f s -> %s\n", cmd, labels->n, labels->n_nouns,
            labels->n - labels->n_nouns, n_nouns + n_adjs, wl ? "WordNet in " : "given",
            wl ? (wordnet ? wordnet : CLIPN_WORDNET_DEFAULT_DIR) : "", n_nouns, n_adjs,
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), out);
    rc = 0;
done:
    clipn_neg_labels_free(labels);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    clipn_word_lists_free(wl);
    free(classes);
    free(nouns);
    free(adjs);
    return rc;
}
