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

/* ---- helpers (cli_util.c) */

/* "clipn <cmd>: <message>" on stderr, returns 1. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report a library error: "clipn <cmd>: <message>", returns 1. */
int cli_fail_err(const char *cmd, const clipn_error *err);
/* Load a model or print the reason; NULL on failure. */
clipn_model *cli_load_model(const char *cmd, const char *path);
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
/* Write a float32 C-order .npy of the given shape. Returns 0 or 1 (message printed). */
int cli_write_npy_f32(const char *cmd, const char *path, const float *data, int ndim,
                      const size_t *shape);
/* Read a float32 (little-endian, C order) .npy; returns 0 or 1 (message printed). */
int cli_read_npy_f32(const char *cmd, const char *path, float **data, int *ndim,
                     size_t shape[8]);

#endif
