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
/* Read a whole text file (cli_read_file_capped with CLI_MAX_TEXT_FILE, pipes allowed);
 * NULL + message on failure. Caller frees. */
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

/* ---- outputs (cli_output.c): every file is written to a temporary file in the target's
 * folder, every write checked, fsync'ed and renamed into place; on failure the target is
 * untouched and the temporary removed. An existing device or FIFO target (/dev/null,
 * /dev/stdout) is written in place. Symbolic links are followed. */
typedef struct cli_out cli_out;
/* NULL + message on failure. */
cli_out *cli_out_open(const char *cmd, const char *path);
FILE *cli_out_file(cli_out *o);
/* Flush, fsync, rename into place; 0, or 1 with "clipn <cmd>: <path>: <strerror>".
 * Frees o either way. */
int cli_out_close(cli_out *o);
/* Abandon: the temporary file is removed, the target untouched. Frees o (NULL is fine). */
void cli_out_discard(cli_out *o);
/* A file some other code writes by name (clipn_heads_save): save(tmp, arg) writes a
 * temporary file this creates (next to path, or in $TMPDIR for a device target), which is
 * then renamed onto path (or copied into the device). save prints its own error and
 * returns non-zero on failure; the temporary is then removed and path untouched. */
int cli_out_save_with(const char *cmd, const char *path,
                      int (*save)(const char *tmp, void *arg), void *arg);
int cli_out_write_all(const char *cmd, const char *path, const void *data, size_t n);
/* Can path be written (folder exists and is writable, not a directory)? 0 or 1 (printed). */
int cli_out_check(const char *cmd, const char *opt, const char *path);

/* Standard output with error tracking: cli_stdout_init at start (main), cli_stdout_close
 * at exit: flush, and on a write error "clipn <cmd>: standard output: <strerror>", 1. */
void cli_stdout_init(void);
int cli_stdout_close(const char *cmd);
int cli_stdout_failed(void); /* a write to stdout has failed already */

/* A path and the option that named it ("" for a positional), for the checks below. */
typedef struct cli_path {
    const char *opt;
    const char *path; /* NULL entries are ignored */
} cli_path;
/* Before any work: refuse (exit 2) an output that is the same file as an input (same path,
 * or same device and inode) or as another output; then check every output is writable
 * (1). Returns 0, 1 or 2 (message printed). */
int cli_check_paths(const char *cmd, const cli_path *outs, int n_outs, const cli_path *ins,
                    int n_ins);
/* The same for a list of input paths (images): 0 or 2. */
int cli_check_paths_list(const char *cmd, const cli_path *outs, int n_outs, const char *what,
                         char *const *paths, size_t n);

/* ---- bounded inputs (cli_util.c): opened non-blocking, fstat'ed; a regular file is read
 * if it is at most `cap` bytes; a pipe (`<(...)`, a FIFO) is read as a stream up to `cap`
 * only where allow_pipe; anything else (/dev/zero, a directory, a socket) is refused. */
#define CLI_MAX_TEXT_FILE ((size_t)256 << 20) /* class, template, image lists, --file */
#define CLI_MAX_NPY_FILE ((size_t)16 << 30)   /* .npy inputs */
char *cli_read_file_capped(const char *cmd, const char *path, size_t cap, int allow_pipe,
                           size_t *len);

/* JSON strings: a copy of s that is valid UTF-8 (each invalid byte becomes U+FFFD), for
 * cJSON (which escapes control characters itself). NULL when out of memory. */
char *cli_utf8_valid(const char *s);
/* cJSON_AddStringToObject with the name and value made valid UTF-8; NULL on no memory. */
struct cJSON;
struct cJSON *cli_json_add_string(struct cJSON *obj, const char *name, const char *value);
struct cJSON *cli_json_add_item(struct cJSON *obj, const char *name, struct cJSON *item);

/* Write a float32 C-order .npy of the given shape. Returns 0 or 1 (message printed). */
int cli_write_npy_f32(const char *cmd, const char *path, const float *data, int ndim,
                      const size_t *shape);
/* Read a float32 (little-endian, C order) .npy; returns 0 or 1 (message printed). */
int cli_read_npy_f32(const char *cmd, const char *path, float **data, int *ndim,
                     size_t shape[8]);

#endif
