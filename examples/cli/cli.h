/* The clipn command-line tool: one file per subcommand, public API only. */
#ifndef CLIPN_CLI_H
#define CLIPN_CLI_H

#include "clipn.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every subcommand: argv[0] is the subcommand name. Returns the process exit status
 * (0 ok, 1 failure with one line on stderr, 2 usage error). */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_embed_image(int argc, char **argv);
int cmd_embed_text(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_head(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_neg_labels(int argc, char **argv);

/* ---- helpers (cli_util.c) */

/* "clipn <cmd>: <message>" on stderr, returns 1. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report a library error: "clipn <cmd>: <message>", returns 1. */
int cli_fail_err(const char *cmd, const clipn_error *err);
/* Load a model (at cli_precision) or print the reason; NULL on failure. A precision the
 * CPU cannot run loads at fp32 with a warning on stderr. */
clipn_model *cli_load_model(const char *cmd, const char *path);
/* --precision fp32|bf16|int8, one row shared by every subcommand that runs a model. */
extern clipn_precision cli_precision; /* 0 = the model file's own */
int cli_parse_precision(void *dest, const char *cmd, char *value);
#define CLI_PRECISION_OPTION CLI_CUSTOM("--precision", &cli_precision, cli_parse_precision)
#define CLI_PRECISION_USAGE \
    "  --precision P    fp32, bf16 or int8 (default: the model file's own; docs/cli.md)\n"
/* Read a whole file; NULL + message on failure. Caller frees. */
char *cli_read_file(const char *cmd, const char *path, size_t *len);
/* Split text into lines (no trailing newline or CR, empty lines dropped); the array and
 * strings live in one allocation with *lines pointing into it. Returns count or -1. */
int cli_read_lines(const char *cmd, const char *path, char ***lines);
/* Parse a whole decimal integer in [lo, hi]; 0 on success. */
int cli_parse_long(const char *s, long lo, long hi, long *out);
/* Option value in [lo, hi]: on failure prints "<opt> must be an integer in lo..hi" and
 * returns 2 (a usage error), else 0. */
int cli_parse_int_range(const char *cmd, const char *opt, const char *s, int lo, int hi,
                        int *out);
/* ---- option parsing: one table per subcommand, one parser for all (cli_util.c) */

typedef enum cli_opt_kind {
    CLI_OPT_STRING, /* --name VALUE: *(const char **)dest = VALUE */
    CLI_OPT_INT,    /* --name N: *(int *)dest = N, checked to lie in [lo, hi] */
    CLI_OPT_FLAG,   /* --name: *(int *)dest = 1 */
    CLI_OPT_CUSTOM  /* --name VALUE: parse(dest, cmd, VALUE) returns 0 or 2 (message printed) */
} cli_opt_kind;

typedef struct cli_opt {
    const char *name;
    cli_opt_kind kind;
    void *dest;
    int lo, hi;                                          /* CLI_OPT_INT */
    int (*parse)(void *dest, const char *cmd, char *value); /* CLI_OPT_CUSTOM */
} cli_opt;

#define CLI_STRING(n, d) {.name = (n), .kind = CLI_OPT_STRING, .dest = (d)}
#define CLI_INT(n, d, min, max) {.name = (n), .kind = CLI_OPT_INT, .dest = (d), .lo = (min), .hi = (max)}
#define CLI_FLAG(n, d) {.name = (n), .kind = CLI_OPT_FLAG, .dest = (d)}
#define CLI_CUSTOM(n, d, fn) {.name = (n), .kind = CLI_OPT_CUSTOM, .dest = (d), .parse = (fn)}

enum { CLI_ARGS_OK = 0, CLI_ARGS_HELP = -1 };
#define CLI_MAX_THREADS 4096 /* --threads N: 0 = all cores */

/* Parse argv[1..argc-1] against the n_opts options. Options and positionals may mix;
 * "--" ends the options; "-" is a positional (stdin where the subcommand says so).
 * Positionals are moved, in order, to argv[1..*n_pos] (argv[0] stays the subcommand).
 * --help / -h prints usage to stdout and returns CLI_ARGS_HELP (exit 0). An unknown
 * option, a missing or bad value prints one line and returns 2 (a usage error). */
int cli_parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                   void (*usage)(FILE *), int *n_pos);

/* Write a float32 C-order .npy of the given shape. Returns 0 or 1 (message printed). */
int cli_write_npy_f32(const char *cmd, const char *path, const float *data, int ndim,
                      const size_t *shape);
/* Read a float32 (little-endian, C order) .npy; returns 0 or 1 (message printed). */
int cli_read_npy_f32(const char *cmd, const char *path, float **data, int *ndim,
                     size_t shape[8]);

#endif
